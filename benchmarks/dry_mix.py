"""Cost of the PTFE agent rules in the dry mix: particle-steps per second of the kneading with the rules
on, against the same cell with them off (barostat and read-outs kept), per dough size.

The dough is the `+experiment=dry_smoke` formulation (dry 96:2:2 NMC811, NMC d50 5 µm, d_max 6 µm) in a
square box of side ``--box-um`` (the placed powder, before packing), packed once per size (untimed),
then kneaded by ``--strain`` with the rules (untimed: kernels compile once per store and neighbour-list
capacity, and the list grows as beads draw), then timed with and without them. Columns: box side
(µm), particles, engine steps, seconds and particle-steps/s with the rules, the same without them,
the rules' overhead (%), and the process's peak resident memory (MB). The last line is one JSON
object with all rows.

    python benchmarks/dry_mix.py [--box-um 24 48 100] [--strain 0.02] [--threads 2]

10^4 particles is a box of ~48 µm, 10^5 of ~100 µm (packing that takes minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import time


def _dough(box_um: float, threads: int):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from electrodem.app import schema
    from electrodem.cli import config_dir
    from electrodem.materials.formulation import make_population
    from electrodem.process import dry_mix as dm
    from electrodem.process.place import place
    from electrodem.process.steps.dry_mix import build_params

    ov = ["+experiment=dry_smoke", "route=place", "material.nmc811.psd.d50_um=5.0",
          "material.nmc811.psd.d_max_um=6.0", f"rve.box_x_um={box_um}", f"rve.box_y_um={box_um}",
          "rve.thickness_um=10", f"engine.cpu_threads={threads}", "rve.max_particles=5000000"]
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        cfg = compose("config", overrides=ov)
    rc = schema.validate(cfg)
    inp = rc.inputs
    place_params = next(p.params for p in rc.plan if p.entry.name == "place")
    pop = make_population(inp.formulation, inp.rve, inp.seed)
    micro = place(pop, box_um * 1e-6, box_um * 1e-6, place_params, inp.seed, False)
    params = build_params(OmegaConf.to_container(cfg.dry_mix, resolve=True), inp, "dry_mix")
    dough, _ = dm.densify(micro, params.start_solid_fraction, params, rc.engine)
    return dough, params, rc


def _knead(dough, params, rc, strain: float, rules: bool) -> tuple[int, float]:
    from electrodem.process import dry_mix as dm

    p = dataclasses.replace(params, strain=strain, samples=1, agents=rules)
    t0 = time.perf_counter()
    _, rep = dm.dry_mix(dough, p, rc.engine, rc.inputs.library, rc.inputs.shared["bonds"]["ptfe_fibril"])
    return rep["steps"], time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--box-um", type=float, nargs="+", default=[24.0, 48.0])
    ap.add_argument("--strain", type=float, default=0.02)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    rows = []
    for box in a.box_um:
        dough, params, rc = _dough(box, a.threads)
        _knead(dough, params, rc, a.strain, True)  # compile (the neighbour list grows as beads draw)
        steps_on, t_on = _knead(dough, params, rc, a.strain, True)
        steps_off, t_off = _knead(dough, params, rc, a.strain, False)
        n = dough.n
        rows.append({"box_um": box, "n": n, "steps": steps_on, "seconds_rules": t_on,
                     "particle_steps_per_s_rules": n * steps_on / t_on, "seconds_no_rules": t_off,
                     "particle_steps_per_s_no_rules": n * steps_off / t_off,
                     "rules_overhead_pct": 100.0 * ((t_on / steps_on) / (t_off / steps_off) - 1.0),
                     "peak_rss_MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0})
    hdr = ("box um", "particles", "steps", "s rules", "p-steps/s", "s no rules", "p-steps/s", "overhead %",
           "peak MB")
    print(" ".join(f"{h:>11}" for h in hdr))
    for r in rows:
        print(f"{r['box_um']:>11.0f} {r['n']:>11} {r['steps']:>11} {r['seconds_rules']:>11.2f} "
              f"{r['particle_steps_per_s_rules']:>11.3g} {r['seconds_no_rules']:>11.2f} "
              f"{r['particle_steps_per_s_no_rules']:>11.3g} {r['rules_overhead_pct']:>11.1f} "
              f"{r['peak_rss_MB']:>11.0f}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
