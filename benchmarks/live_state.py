"""What the live engine state costs at a step boundary, against building a fresh simulation.

A route now carries one `Simulation` from step to step (`electrodem.process.live`). At each boundary it
reconfigures the live simulation for the next step (materials, walls, contact model, masses) and, in the
runner, writes an engine checkpoint and continues from it (`checkpoint_boundary`); a calender search
takes in-memory copies (`snapshot_state` / `restore_state`). This script times each of those on a
settled-like bed of N Hertz–Mindlin spheres (after a short run so that the contact history is full), and
a fresh build of the same bed (Simulation + add_particles + first force evaluation) for comparison.
Each size runs once untimed first: kernel compilation (seconds per store capacity and contact-model
variant, once per process) is left out of the rows.
Columns: particles, contacts, fresh build (s), reconfigure (s), checkpoint write + reload (s), snapshot
(s), restore (s), checkpoint size (MB), then particle-steps/s of the bed's run. The last line is one
JSON object with all rows.

    python benchmarks/live_state.py [--sizes 1000 5000 20000] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def _bed(n: int, seed: int = 0):
    from electrodem.engine import ContactModel, Material, Simulation, Wall

    rng = np.random.default_rng(seed)
    mat = Material("m", 2500.0, 5e6, 0.3, restitution=0.5, friction=0.5, rolling_friction=0.05,
                   yield_pressure_Pa=2e5)
    side = 2.1e-3 * np.ceil(np.sqrt(n / 8))
    sim = Simulation([mat], box_m=(side, side, 0.2), contact=ContactModel(normal="thornton_ning"),
                     walls=[Wall((0, 0, 0), (0, 0, 1), "m", name="floor")], gravity_m_per_s2=(0, 0, -200.0),
                     impact_speed_m_per_s=0.5, record_wall_forces=True)
    row = int(side / 2.1e-3)
    k = np.arange(n)
    g = np.column_stack([k % row, k // row % row, k // row**2])
    pos = (g + 0.5) * 2.1e-3 + rng.uniform(-5e-5, 5e-5, (n, 3))
    v = rng.normal(0, 0.05, (n, 3))
    sim.add_particles(pos, rng.uniform(0.98e-3, 1.02e-3, n), "m", velocities_m_per_s=v)
    return sim, mat


def _case(n: int, steps: int) -> dict:
    from electrodem.engine import ContactModel, Simulation, Wall

    t0 = time.perf_counter()
    sim, mat = _bed(n)
    sim.run(steps=0, progress=False)
    fresh = time.perf_counter() - t0
    t0 = time.perf_counter()
    sim.run(steps=steps, progress=False)
    run_s = time.perf_counter() - t0
    contacts = len(sim.contacts().i)
    t0 = time.perf_counter()
    sim.set_materials([mat])
    sim.set_walls([Wall((0, 0, 0), (0, 0, 1), "m", name="floor"),
                   Wall((0, 0, 0.1), (0, 0, -1), "m", name="plate")])
    sim.set_contact(ContactModel(normal="thornton_ning", rolling="epsd"))
    sim.set_masses(sim.ids, sim.state()["masses_kg"])
    sim.run(steps=0, progress=False)
    reconf = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "b.engine.npz"
        t0 = time.perf_counter()
        sim.save_checkpoint(path)
        sim.free()
        sim = Simulation.load_checkpoint(path)
        sim.run(steps=0, progress=False)
        boundary = time.perf_counter() - t0
        size_mb = path.stat().st_size / 1e6
    t0 = time.perf_counter()
    snap = sim.snapshot_state()
    snap_s = time.perf_counter() - t0
    sim.run(steps=10, progress=False)
    t0 = time.perf_counter()
    sim.restore_state(snap)
    restore_s = time.perf_counter() - t0
    sim.free()
    return {"n": n, "contacts": contacts, "fresh_build_s": fresh, "reconfigure_s": reconf,
            "checkpoint_boundary_s": boundary, "snapshot_s": snap_s, "restore_s": restore_s,
            "checkpoint_MB": size_mb, "particle_steps_per_s": n * steps / run_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 20000])
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    from electrodem.engine import EngineOptions, init

    init(EngineOptions(cpu_threads=a.threads))
    rows = []
    for n in a.sizes:
        # Once to compile (each store capacity and contact-model variant compiles its kernels on first
        # use, seconds each), then the timed case: the rows time the work, not Taichi's compiler.
        _case(n, 10)
        rows.append(_case(n, a.steps))
    hdr = ("N", "contacts", "fresh s", "reconf s", "ckpt+reload s", "snapshot s", "restore s", "ckpt MB",
           "p-steps/s")
    print(" ".join(f"{h:>13}" for h in hdr))
    for r in rows:
        print(f"{r['n']:>13} {r['contacts']:>13} {r['fresh_build_s']:>13.3f} {r['reconfigure_s']:>13.3f} "
              f"{r['checkpoint_boundary_s']:>13.3f} {r['snapshot_s']:>13.3f} {r['restore_s']:>13.3f} "
              f"{r['checkpoint_MB']:>13.2f} {r['particle_steps_per_s']:>13.3g}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
