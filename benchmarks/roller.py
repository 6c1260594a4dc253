"""Throughput of the process tools: a periodic strip of spheres passed under a `RollerCylinder` at a fixed
gap, and a `MeshWall` plate of ~10^3 vs ~10^4 triangles pressing the same bed (the broad phase must make
the cost independent of the triangle count).

Run: ``python benchmarks/roller.py [--particles 3000] [--steps 2000]``. Prints a table and a final JSON line.
Timings on a shared machine are indicative only.
"""

import argparse
import json
import resource
import time

import numpy as np

from electrodem.engine import EngineOptions, Material, Simulation, Wall, init
from electrodem.engine.mesh_wall import MeshWall, plate_mesh
from electrodem.engine.tools import RollerCylinder

R = 5e-6  # particle radius (m)


def _layer(n: int, seed: int = 1) -> tuple[np.ndarray, tuple[float, float, float]]:
    """A dense random-ish layer: jittered simple-cubic stack 4 layers thick on a strip 4:1 in x:y."""
    pitch = 2.05 * R
    layers = 4
    ny = max(2, int(round(np.sqrt(n / layers / 4))))
    nx = max(2, int(round(n / layers / ny)))
    g = np.meshgrid(np.arange(nx), np.arange(ny), np.arange(layers), indexing="ij")
    pts = (np.column_stack([a.ravel() for a in g]) + 0.5) * pitch
    pts[:, 2] += 0.02 * R - 0.5 * pitch + R
    pts += np.random.default_rng(seed).uniform(-0.02, 0.02, pts.shape) * R
    return pts, (nx * pitch, ny * pitch, 40 * R)


def _sim(pts: np.ndarray, box: tuple[float, float, float], damping_per_s: float = 0.0) -> Simulation:
    mats = [Material("am", 4700.0, 1.0e9, 0.3, friction=0.4), Material("steel", 7800.0, 2.0e11, 0.3)]
    sim = Simulation(
        mats,
        box_m=box,
        walls=[Wall((0, 0, 0), (0, 0, 1), "steel", name="cc")],
        gravity_m_per_s2=(0, 0, 0),
        background_damping_per_s=damping_per_s,
    )
    sim.add_particles(pts, R * np.random.default_rng(2).uniform(0.95, 1.0, len(pts)), "am")
    return sim


def _timed(sim: Simulation, steps: int, callbacks: tuple = ()) -> float:
    sim.run(steps=20, progress=False)  # compile and prime outside the timing
    t0 = time.perf_counter()
    sim.run(steps=steps, progress=False, callbacks=callbacks, every=100)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--particles", type=int, default=3000)
    ap.add_argument("--steps", type=int, default=2000)
    args = ap.parse_args()
    init(EngineOptions(arch="cpu", precision="f64"))
    rows = []
    pts, box = _layer(args.particles)
    top = float(pts[:, 2].max() + R)
    # Roll of 100 R pressing 0.08 R into the top layer (the overlap guard is 0.1 R): contact arc ~8 R.
    # Without gravity the spheres the roll pushes down rebound and drift off the layer: a light
    # background damping (decay time 50 us, ~5000 contact times) keeps them in the strip.
    sim = _sim(pts, box, damping_per_s=2.0e4)
    radius = 100 * R
    roll = sim.add_extension(
        RollerCylinder(
            radius,
            (0.1 * box[0], top + radius - 0.08 * R),
            "steel",
            velocity_m_per_s=(0.5, 0.0),
            surface_speed_m_per_s=0.5,
        )
    )
    seen: list[tuple[float, int]] = []
    wall = _timed(
        sim,
        args.steps,
        (lambda s: seen.append((roll.report()["line_load_N_per_mm"], roll.report()["contacts"])),),
    )
    rep = roll.report()
    sim.free()  # the next case reuses the pooled store and the kernels compiled for it
    rows.append(
        {
            "case": "roller",
            "particles": sim.n,
            "steps": args.steps,
            "wall_s": wall,
            "particle_steps_per_s": sim.n * args.steps / wall,
            "line_load_N_per_mm": float(np.mean([a for a, _ in seen])) if seen else rep["line_load_N_per_mm"],
            "contacts": float(np.mean([c for _, c in seen])) if seen else rep["contacts"],
        }
    )
    sim = _sim(pts, box)
    base = _timed(sim, args.steps)
    sim.free()
    rows.append(
        {
            "case": "no tool",
            "particles": sim.n,
            "steps": args.steps,
            "wall_s": base,
            "particle_steps_per_s": sim.n * args.steps / base,
        }
    )
    for div in (22, 70):  # 2 x 4 x 22^2 ~ 3.9e3 and 2 x 4 x 70^2 ~ 3.9e4 triangles
        sim = _sim(pts, box)
        mesh = plate_mesh((0, box[0]), (0, box[1]), top + 0.05 * R, (4 * div // 2, div // 2))
        m = sim.add_extension(MeshWall(mesh, "steel", velocity_m_per_s=(0, 0, -0.2)))
        wall = _timed(sim, args.steps)
        rep = m.report()
        grid = m.grid_info
        sim.free()
        rows.append(
            {
                "case": f"mesh {m.geom.n_triangles} tri",
                "particles": sim.n,
                "steps": args.steps,
                "wall_s": wall,
                "particle_steps_per_s": sim.n * args.steps / wall,
                "pressure_Pa": rep["pressure_Pa"],
                "contacts": rep["contacts"],
                "grid": grid,
            }
        )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f"{'case':<18}{'particles':>10}{'steps':>7}{'wall s':>9}{'p-steps/s':>12}{'N/mm or Pa':>14}")
    for r in rows:
        extra = r.get("line_load_N_per_mm", r.get("pressure_Pa", float("nan")))
        print(
            f"{r['case']:<18}{r['particles']:>10}{r['steps']:>7}{r['wall_s']:>9.2f}{r['particle_steps_per_s']:>12.3g}"
            f"{extra:>14.4g}"
        )
    print(f"peak RSS {rss:.0f} MiB")
    print(json.dumps({"benchmark": "roller", "rows": rows, "peak_rss_MiB": rss}))


if __name__ == "__main__":
    main()
