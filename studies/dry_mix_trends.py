"""Trends of the dry mix's PTFE agents (issue #13): degree of fibrillation against kneading strain at
three temperatures, over seeds; fibril bonds made and cleaved (over-kneading); the PTFE smeared.

Protocol: the `+experiment=dry_smoke` formulation (dry 96:2:2 NMC811, NMC d50 5 µm, d_max 6 µm) placed
in a 20 x 20 µm box (~1,000 particles) per seed, packed once to a solid fraction of 0.6, then kneaded
from that same dough at 12 °C (below PTFE's 19 °C crystal transition), 25 °C and 60 °C to the strain
``--strain`` at the defaults of ``configs/dry_mix/default.yaml`` (0.2 MPa confining pressure, shear rate
2e4 /s). Nothing is calibrated: the bead threshold strain is the assumed default (1.0). The table gives
the degree of fibrillation (PTFE mass fraction in drawn beads) at the strain marks, mean and spread
over the seeds; the plot draws each seed. A seed's runs start from the same packed dough, so the
temperature comparison is paired.

Usage: ``python studies/dry_mix_trends.py [--seeds 0 1 2] [--strain 2.0] [--out ...results.md]``
(about 3 min per seed and temperature at strain 2 on one core; runs the seeds in parallel processes;
the plot and the raw histories go to ``outputs/studies/``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

TEMPERATURES_K = (285.0, 298.15, 333.15)
OVERRIDES = ["+experiment=dry_smoke", "route=place", "material.nmc811.psd.d50_um=5.0",
             "material.nmc811.psd.d_max_um=6.0", "rve.box_x_um=20", "rve.box_y_um=20", "rve.thickness_um=10",
             "engine.cpu_threads=1"]


def _seed(seed: int, strain: float, samples: int) -> dict:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from electrodem.app import schema
    from electrodem.cli import config_dir
    from electrodem.materials.formulation import make_population
    from electrodem.process import dry_mix as dm
    from electrodem.process.place import place
    from electrodem.process.steps.dry_mix import build_params

    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        cfg = compose("config", overrides=[*OVERRIDES, f"seed={seed}"])
    rc = schema.validate(cfg)
    inp = rc.inputs
    place_params = next(p.params for p in rc.plan if p.entry.name == "place")
    pop = make_population(inp.formulation, inp.rve, inp.seed)
    micro = place(pop, inp.rve.box_x_um * 1e-6, inp.rve.box_y_um * 1e-6, place_params, inp.seed, False)
    params = build_params(OmegaConf.to_container(cfg.dry_mix, resolve=True), inp, "dry_mix")
    dough, _ = dm.densify(micro, params.start_solid_fraction, params, rc.engine)
    out = {"seed": seed, "n": int(dough.n), "runs": {}}
    for t in TEMPERATURES_K:
        p = dataclasses.replace(params, strain=strain, temperature_K=t, samples=samples)
        t0 = time.perf_counter()
        _, rep = dm.dry_mix(dough, p, rc.engine, inp.library, inp.shared["bonds"]["ptfe_fibril"])
        out["runs"][str(t)] = {"history": rep["history"], "fibrils": rep["fibrils"],
                               "seconds": time.perf_counter() - t0, "steps": rep["steps"]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--strain", type=float, default=2.0)
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("studies/dry_mix_trends_results.md"))
    ap.add_argument("--data-dir", type=Path, default=Path("outputs/studies"),
                    help="where the plot and the raw histories (JSON) go (run outputs stay out of git)")
    a = ap.parse_args()
    a.data_dir.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(max_workers=a.workers) as ex:
        results = list(ex.map(_seed, a.seeds, [a.strain] * len(a.seeds), [a.samples] * len(a.seeds)))
    (a.data_dir / "dry_mix_trends.json").write_text(json.dumps(results))
    strain = np.array(results[0]["runs"][str(TEMPERATURES_K[0])]["history"]["strain"])
    lines = [f"# Dry-mix trends (studies/dry_mix_trends.py, seeds {a.seeds}, strain {a.strain})", "",
             f"Particles per dough: {[r['n'] for r in results]}. Degree of fibrillation (PTFE mass fraction "
             "in drawn beads), mean ± standard deviation over the seeds:", "",
             "| strain | " + " | ".join(f"{t - 273.15:.0f} °C" for t in TEMPERATURES_K) + " |",
             "|---|" + "---|" * len(TEMPERATURES_K)]
    for k, g in enumerate(strain):
        cells = []
        for t in TEMPERATURES_K:
            v = np.array([r["runs"][str(t)]["history"]["degree_of_fibrillation"][k] for r in results])
            cells.append(f"{v.mean():.3f} ± {v.std():.3f}")
        lines.append(f"| {g:.2f} | " + " | ".join(cells) + " |")
    lines += ["", "At the end of the kneading, per seed (25 and 60 °C): fibrils, drawn beads, bonds intact "
              "/ cleaved, PTFE smeared, AM carrying smeared mass:", ""]
    for r in results:
        for t in TEMPERATURES_K[1:]:
            f = r["runs"][str(t)]["fibrils"]
            lines.append(f"- seed {r['seed']}, {t - 273.15:.0f} °C: {f['fibril_count']} fibrils, "
                         f"{f['drawn_beads']} drawn beads, bonds {f['bonds_intact']} / {f['bonds_broken']}, "
                         f"PTFE smeared {f['smeared_ptfe_fraction']:.3f}, "
                         f"AM coated {f['am_coated_fraction']:.2f}, "
                         f"{r['runs'][str(t)]['seconds']:.0f} s")
    a.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    try:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6.5, 4.0))
        ax = fig.subplots()
        for t, c in zip(TEMPERATURES_K, ("#1f77b4", "#2ca02c", "#d62728"), strict=True):
            for j, r in enumerate(results):
                h = r["runs"][str(t)]["history"]
                ax.plot(h["strain"], h["degree_of_fibrillation"], "-", color=c, alpha=0.8,
                        label=f"{t - 273.15:.0f} °C" if j == 0 else None)
        ax.set_xlabel("cell shear strain γ")
        ax.set_ylabel("degree of fibrillation")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.savefig(a.data_dir / "dry_mix_trends.png", dpi=120)
    except ImportError:
        pass


if __name__ == "__main__":
    main()
