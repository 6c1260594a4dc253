"""Modulus similarity of the compaction, checked (issue #18): the same small random bed re-pressed at
modulus scale s = 1 (the material's own moduli), 0.05 and 0.005 (``shortcuts.modulus_scale``, every
modulus softened, the collector and the plate included, no cap) gives the same p/s–porosity curve as
long as the press is quasi-static.

Why it should: an elastic Hertz–Mindlin contact force at a given overlap is E* times a function of the
geometry; friction is a force ratio; the restitution damping acts through inertia only. In a
quasi-static press (no inertia, no gravity, no cohesion: the compaction has none of the three) every
contact force, hence the plate pressure at a given porosity, is therefore s times the real one. What
breaks it is inertia: at the same plate speed a softer bed is further from quasi-static (the inertial
number I = gamma_dot d sqrt(rho / p) grows as 1 / sqrt(s), since p ~ s), so the study also presses
faster and reports I.

Protocol: 150 equal spheres (R = 5 um, rho = 2000 kg/m^3, E = 10 GPa, nu = 0.3; friction 0.3, elastic
Hertz, the compaction's own contact) placed loose (solid fraction 0.33, random sequential addition)
in a 60 x 60 um periodic box on the collector; pre-pressed at s = 0.005 to 47 % porosity and released:
that jammed bed is the common start. Each case re-presses it to 44 % at the given plate speed and s,
records at the same simulated-time interval, and the table compares its p/s with the s = 1 curve at the
slowest speed on a common porosity grid (the load-bearing part, p >= 10 % of the largest). The
chaos reference: the s = 0.005 slow case again with the start positions perturbed by 1e-12 of the
box (a frictional bed rearranges, and a rearrangement is a chaotic event).

Usage: ``python studies/modulus_similarity.py [--out studies/modulus_similarity_results.md]
[--speeds 0.005,0.02] [--scales 1,0.05,0.005] [--n 150]`` (about 2 min on one core of a 2-core VM;
ELECTRODEM_CPU_THREADS=1 recommended: a 150-particle bed is too small for threads).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from electrodem.engine import EngineOptions, SimulationError
from electrodem.io.snapshot import Microstructure, Species
from electrodem.process.compact import CONTACT, CompactParams, compact
from electrodem.process.engine_map import ContactParams, ShortcutParams
from electrodem.process.place import perturb_positions, sequential_bed

R, RHO, E, NU = 5e-6, 2000.0, 1e10, 0.3
PRE_POROSITY, TARGET_POROSITY = 0.47, 0.44
RECORD_STEPS_SOFT = 50
"""Steps between records at s = 0.005; the time step scales as 1 / sqrt(s), so a case at s records
every 50 sqrt(s / 0.005) steps: the same simulated time."""


def loose_bed(n: int, seed: int) -> Microstructure:
    """n equal spheres without overlap at solid fraction 0.33 (random sequential addition), 12 R box."""
    side = 12 * R
    pos, h = sequential_bed(np.full(n, R), side, 0.33, np.random.default_rng(seed))
    species = (Species("am", "AM", RHO, E, NU),)
    return Microstructure(pos, np.full(n, R), np.zeros(n, int), species, np.array([side, side, 2 * h]))


def params(s: float, speed: float, target: float) -> CompactParams:
    shortcuts = ShortcutParams(fines_radius_um=0.0, modulus_cap_Pa=None, rayleigh_fraction=0.2,
                               modulus_scale=s)
    every = max(1, round(RECORD_STEPS_SOFT * np.sqrt(s / 0.005)))
    return CompactParams(target_porosity=target, contact=ContactParams(**CONTACT), shortcuts=shortcuts,
                         plate_speed_m_per_s=speed, record_every_steps=every)


def load_curve(rep: dict, s: float) -> tuple[np.ndarray, np.ndarray, float]:
    """(porosity, pressure / s in Pa, largest inertial number where p >= 10 % of its max) of the load."""
    c = rep["curve"]
    k = [i for i, st in enumerate(c["stage"]) if st == "load"]
    eps = np.asarray(c["porosity"])[k]
    p = np.asarray(c["pressure_Pa"])[k] / s
    inertial = np.asarray(c["inertial_number"], dtype=float)[k]
    bearing = p >= 0.1 * p.max()
    return eps, p, float(np.nanmax(inertial[bearing]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("modulus_similarity_results.md"))
    ap.add_argument("--speeds", default="0.005,0.02",
                    help="plate speeds, m/s (comma list; the first is the reference)")
    ap.add_argument("--scales", default="1,0.05,0.005",
                    help="modulus scales s (comma list; the first is the reference)")
    ap.add_argument("--target", type=float, default=TARGET_POROSITY, help="porosity at the end of loading")
    ap.add_argument("--n", type=int, default=150)
    ap.add_argument("--seed", type=int, default=5)
    a = ap.parse_args()
    speeds = [float(v) for v in a.speeds.split(",")]
    scales = [float(v) for v in a.scales.split(",")]
    opts = EngineOptions()

    t0 = time.perf_counter()
    loose = loose_bed(a.n, a.seed)
    start, pre = compact(loose, params(0.005, 0.2, PRE_POROSITY), opts, progress=False)
    print(f"common start: {start.n} spheres, porosity {pre['final']['porosity']:.4f} after pre-pressing "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)
    perturbed = start.with_(positions_m=perturb_positions(start.positions_m, start.radii_m, start.box_m,
                                                          1e-12, a.seed))
    cases = [(s, v, False) for v in speeds for s in scales] + [(scales[-1], speeds[0], True)]
    rows = []
    for s, v, pert in cases:
        t = time.perf_counter()
        bed = perturbed if pert else start
        try:
            _, rep = compact(bed, params(s, v, a.target), opts, progress=False)
        except SimulationError as e:  # a guard tripped: say so in the table and go on
            print(f"s={s:g} v={v:g}: stopped: {e.diagnosis}", flush=True)
            continue
        eps, p, i_max = load_curve(rep, s)
        rows.append({"s": s, "v": v, "perturbed": pert, "eps": eps, "p": p, "I": i_max,
                     "steps": rep["curve"]["step"][-1], "wall_s": time.perf_counter() - t})
        print(f"s={s:g} v={v:g}{' perturbed' if pert else ''}: I_max {i_max:.2e}, p/s at the end "
              f"{p[-1] / 1e6:.3f} MPa, {rows[-1]['wall_s']:.0f} s", flush=True)

    ref = rows[0]
    grid = np.linspace(a.target, ref["eps"][ref["p"] >= 0.1 * ref["p"].max()].max(), 6)
    ref_p = np.interp(grid, ref["eps"][::-1], ref["p"][::-1])
    lines = [
        "# Modulus similarity of the compaction: results",
        "",
        f"`studies/modulus_similarity.py` (defaults; {time.strftime('%Y-%m-%d')}): {a.n} equal spheres, "
        f"E = {E / 1e9:g} GPa, re-pressed from {pre['final']['porosity'] * 100:.1f} % to "
        f"{a.target * 100:g} % porosity. p/s in MPa on the load curve at the porosities of the "
        f"first column; deviation = largest |p/s - p/s(s = {scales[0]:g}, v = {speeds[0]:g} m/s)| over "
        "the grid, relative to the reference's largest p/s. I_max: largest inertial number where "
        "p >= 10 % of the largest (the compaction's quasi-static criterion is I < 1e-3).",
        "",
        "| s | plate speed m/s | I_max | " + " | ".join(f"ε {e * 100:.2f} %" for e in grid)
        + " | deviation | steps | wall s |",
        "|---|---|---|" + "---|" * len(grid) + "---|---|---|",
    ]
    for r in rows:
        pr = np.interp(grid, r["eps"][::-1], r["p"][::-1])
        dev = float(np.max(np.abs(pr - ref_p)) / ref_p.max())
        label = f"{r['s']:g}" + (" (perturbed 1e-12)" if r["perturbed"] else "")
        lines.append(f"| {label} | {r['v']:g} | {r['I']:.1e} | " + " | ".join(f"{x / 1e6:.3f}" for x in pr)
                     + f" | {dev * 100:.1f} % | {r['steps']} | {r['wall_s']:.0f} |")
    a.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"written: {a.out}")


if __name__ == "__main__":
    main()
