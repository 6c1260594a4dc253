"""Start-up cost of small simulations in one process: Taichi kernel compilation against the run itself.

Taichi compiles every kernel anew for each store object it is handed, and its on-disk cache keys hold
the stores' field ids (which depend on all the process allocated before), so a new store costs seconds
of compilation while a small bed runs its steps in a fraction of that. The engine therefore hands out
stores of coarse capacities from a pool (`electrodem.engine.state.MIN_CAPACITY`, `material_slots`,
`wall_slots`, `electrodem.engine.neighbors.pair_capacity`): later simulations of other sizes, material
counts or wall counts reuse them and compile nothing.

This script runs a sequence of small Hertz–Mindlin beds (sizes, material and wall counts varied) in one
process, each for ``--steps`` steps, and prints per case: particles, materials, walls, wall time (s), seconds
spent compiling (Taichi's AST pass and the first launch of each kernel instance: LLVM compilation or a
cache load) and particle-steps/s. The last line is
one JSON object with the totals.

    python benchmarks/startup.py [--steps 2000] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def _bed(n: int, n_materials: int, n_walls: int, seed: int):
    from electrodem.engine import Material, Simulation, Wall

    rng = np.random.default_rng(seed)
    mats = [Material(f"m{k}", 2500.0, 5e6, 0.3, restitution=0.5, friction=0.5) for k in range(n_materials)]
    side = 2.4e-3 * np.ceil(np.sqrt(n / 8))
    walls = [Wall((0, 0, 0), (0, 0, 1), "m0", name="floor")]
    if n_walls > 1:
        walls.append(Wall((0, 0, 0.2), (0, 0, -1), "m0", name="lid"))
    sim = Simulation(mats, box_m=(side, side, 0.2), walls=walls[:n_walls])
    row = int(side / 2.4e-3)
    k = np.arange(n)
    g = np.column_stack([k % row, k // row % row, k // row**2])
    pos = (g + 0.5) * 2.4e-3 + rng.uniform(-1e-4, 1e-4, (n, 3))
    sim.add_particles(pos, rng.uniform(0.9e-3, 1.1e-3, n), [f"m{k % n_materials}" for k in range(n)])
    return sim


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    import taichi.lang.kernel_impl as ki

    from electrodem.engine import EngineOptions, init

    init(EngineOptions(cpu_threads=a.threads))
    first = [0.0]
    seen: set[int] = set()
    launch = ki.Kernel.launch_kernel

    def timed(self, t_kernel, *args):  # first launch of each compiled kernel = compile or cache load
        t0 = time.perf_counter()
        out = launch(self, t_kernel, *args)
        if id(t_kernel) not in seen:
            seen.add(id(t_kernel))
            first[0] += time.perf_counter() - t0
        return out

    ensure = ki.Kernel.ensure_compiled

    def timed_ensure(self, *args):  # Python AST -> Taichi IR of a new instance (a lookup otherwise)
        t0 = time.perf_counter()
        out = ensure(self, *args)
        first[0] += time.perf_counter() - t0
        return out

    ki.Kernel.launch_kernel = timed
    ki.Kernel.ensure_compiled = timed_ensure
    cases = [(200, 1, 1), (600, 2, 1), (900, 3, 2), (300, 2, 2), (1000, 1, 1), (150, 4, 1)]
    print(f"{'case':>4} {'n':>6} {'mats':>4} {'walls':>5} {'wall_s':>7} {'compile_s':>9} {'p-steps/s':>11}")
    total, total_first = 0.0, 0.0
    for c, (n, nm, nw) in enumerate(cases):
        f0, t0 = first[0], time.perf_counter()
        sim = _bed(n, nm, nw, c)
        sim.run(steps=a.steps, progress=False)
        wall = time.perf_counter() - t0
        sim.free()
        total, total_first = total + wall, total_first + first[0] - f0
        print(f"{c:>4} {n:>6} {nm:>4} {nw:>5} {wall:>7.2f} {first[0] - f0:>9.2f} {n * a.steps / wall:>11.3g}")
    print(json.dumps({"cases": len(cases), "steps": a.steps, "wall_s": total, "compile_s": total_first}))


if __name__ == "__main__":
    main()
