"""Placement throughput: random sequential addition of an electrode-like mix (default size ratio 20).

Prints a table (particles, size ratio, seconds, particles/s, peak RSS). Run:
    python benchmarks/place.py --n 10000 100000 1000000
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from electrodem.io.snapshot import Species
from electrodem.materials.formulation import Population
from electrodem.process.place import PlaceParams, place


def electrode_mix(n: int, ratio: float, seed: int = 0) -> tuple[Population, float]:
    """10 µm AM holding 85 % of the solid volume, fines of 10/ratio µm; returns the box side (m)."""
    rng = np.random.default_rng(seed)
    d_big, d_small = 10e-6, 10e-6 / ratio
    q = 0.85 / 0.15 * (d_small / d_big) ** 3  # big/small number ratio for 85 % of the volume in big
    n_big = max(1, int(round(n * q / (1 + q))))
    n_small = n - n_big
    d = np.r_[np.full(n_big, d_big), np.full(n_small, d_small)] * rng.uniform(0.9, 1.0, n)
    sid = np.r_[np.zeros(n_big, np.int32), np.ones(n_small, np.int32)]
    sp = (Species("am", "AM", 4750.0, 2e11, 0.25), Species("cb", "CB", 1900.0, 1e9, 0.3))
    v = np.sum(np.pi / 6 * d**3)
    side = (v / 0.3) ** (1 / 3)  # a cubic loose bed
    return Population(d, sid, sp, {}), side


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--ratio", type=float, default=20.0)
    a = ap.parse_args()
    print(f"{'particles':>10} {'ratio':>6} {'seconds':>8} {'particles/s':>12} {'peak RSS MB':>12}")
    for n in a.n:
        pop, side = electrode_mix(n, a.ratio)
        t = time.perf_counter()
        place(pop, side, side, PlaceParams(packing_fraction=0.3), seed=0, progress=False)
        dt = time.perf_counter() - t
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{n:>10d} {a.ratio:>6.0f} {dt:>8.2f} {n / dt:>12.0f} {rss:>12.0f}")


if __name__ == "__main__":
    main()
