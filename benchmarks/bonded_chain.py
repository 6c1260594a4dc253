"""Bonded-chain benchmark (issue 4): throughput of the parallel-bond extension.

Case: straight chains of 101 beads along x (radius 10 um, spacing 20.2 um, density 2000 kg/m^3), laid on
a square grid 60 um apart (no contacts between chains), bonded neighbour to neighbour (E_b = 1 GPa,
nu_b = 0.3, damping ratio 0.1), gravity off, random velocities of 1 cm/s; box periodic in x and y.
The time step is the bond criterion. ``--bonds`` sets the target bond counts (chains = bonds / 100).

Prints a table (bonds, particles, steps, bond-steps per s, particle-steps per s, peak RSS) and, last, one
JSON object with the rows.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np


def run_case(n_bonds: int, steps: int, arch: str) -> dict[str, float]:
    from electrodem.engine import EngineOptions, Material, Simulation, init
    from electrodem.engine.bonds import Bonds

    init(EngineOptions(arch=arch, precision="f64"))
    r, spacing, pitch, per_chain = 1e-5, 2.02e-5, 6e-5, 100
    chains = max(1, n_bonds // per_chain)
    side = int(np.ceil(np.sqrt(chains)))
    beads = per_chain + 1
    lx = beads * spacing
    gy, gz = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    origins = np.stack([gy.ravel(), gz.ravel()], axis=1)[:chains] * pitch + pitch / 2
    x = np.zeros((chains, beads, 3))
    x[:, :, 0] = np.arange(beads) * spacing
    x[:, :, 1] = origins[:, None, 0]
    x[:, :, 2] = origins[:, None, 1]
    rng = np.random.default_rng(0)
    # The box is two spacings longer than a chain: its ends face each other across the periodic x face
    # with a gap, so no contact acts anywhere.
    sim = Simulation(
        [Material("m", 2000.0, 1e9, 0.3)],
        box_m=(lx + spacing, side * pitch, side * pitch),
        periodic=(True, True, False),
        gravity_m_per_s2=(0, 0, 0),
    )
    sim.add_particles(
        x.reshape(-1, 3), r, "m", velocities_m_per_s=rng.normal(scale=0.01, size=(chains * beads, 3))
    )
    bonds = sim.add_extension(Bonds(youngs_modulus_Pa=1e9, poisson_ratio=0.3, damping_ratio=0.1))
    i = (np.arange(chains)[:, None] * beads + np.arange(per_chain)[None, :]).ravel()
    bonds.add(i, i + 1)
    sim.run(steps=20, progress=False)  # compile and prime
    t0 = time.perf_counter()
    sim.run(steps=steps, progress=False)
    wall = time.perf_counter() - t0
    return {
        "bonds": int(bonds.n),
        "particles": int(sim.n),
        "steps": steps,
        "dt_s": sim.dt_s,
        "bond_steps_per_s": bonds.n * steps / wall,
        "particle_steps_per_s": sim.n * steps / wall,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bonds", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--arch", default="cpu")
    a = ap.parse_args()
    rows = [run_case(n, a.steps, a.arch) for n in a.bonds]
    head = ("bonds", "particles", "steps", "bond-steps/s", "particle-steps/s", "RSS MB")
    print(" ".join(f"{h:>{w}}" for h, w in zip(head, (8, 9, 6, 13, 16, 8), strict=True)))
    for r in rows:
        print(
            f"{r['bonds']:>8} {r['particles']:>9} {r['steps']:>6} {r['bond_steps_per_s']:>13.3g} "
            f"{r['particle_steps_per_s']:>16.3g} {r['peak_rss_mb']:>8.0f}"
        )
    print(json.dumps({"case": "bonded_chain", "rows": rows}))


if __name__ == "__main__":
    main()
