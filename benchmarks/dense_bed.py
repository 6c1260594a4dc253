"""Dense-bed DEM benchmark of issue 3: electrodem's Taichi engine, and LIGGGHTS where installed.

Standard case (``--mix bidisperse``, defaults): box 0.1 x 0.1 x 0.4 m periodic in x and y, floor wall at
z = 0 and ceiling at 0.4 m, gravity 9.81 m/s^2, N = 20,000 spheres, 50/50 by number of radius 1.5 and
2.5 mm, density 2500 kg/m^3, E = 5 MPa, nu = 0.3, restitution 0.5, friction 0.5, Hertz + Mindlin
tangential history, dt = 1e-5 s. Spheres are inserted at random without overlap, settle for
``--settle-steps`` and then ``--steps`` steps of the settled bed are timed. Other N keep the bed depth:
the box side grows as sqrt(N / 20000). ``--mix electrode`` is the size-ratio-20 mix whose large spheres
hold 85 % of the solid volume. Case definitions (box, counts, dt, skin) come from
``benchmarks/liggghts_ref.py`` so that both codes run the same case.

The last line printed is one JSON object: n, steps, particle_steps_per_s, peak_rss_mb, and when
LIGGGHTS ran liggghts_particle_steps_per_s and ratio (electrodem / LIGGGHTS).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def _load_ref():
    path = HERE / "liggghts_ref.py"
    if not path.exists():
        return None
    spec = importlib.util.spec_from_file_location("liggghts_ref", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("liggghts_ref", mod)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def random_insert(
    radii: np.ndarray,
    box: tuple[float, float, float],
    rng: np.random.Generator,
    periodic: tuple[bool, bool, bool] = (True, True, False),
) -> np.ndarray:
    """Random non-overlapping centres for ``radii`` (placed largest first) inside the box (m)."""
    from scipy.spatial import cKDTree

    box_a = np.asarray(box, float)
    order = np.argsort(-radii, kind="stable")
    pos = np.full((len(radii), 3), np.nan)
    placed: list[int] = []
    r_max = float(radii.max())
    todo = list(order)
    attempts = 0
    while todo:
        attempts += 1
        if attempts > 20000:
            raise RuntimeError(f"could not insert {len(todo)} spheres: the box is too full")
        # Place by radius bands, largest first: fines placed early would leave no hole for a big sphere.
        band = radii[todo[0]] * 0.5
        batch = np.array([t for t in todo[:4096] if radii[t] >= band])
        r = radii[batch]
        lo = np.where(periodic, 0.0, r[:, None])
        hi = np.where(periodic, box_a, box_a - r[:, None])
        cand = lo + rng.random((len(batch), 3)) * (hi - lo)
        ok = np.ones(len(batch), bool)
        boxsize = np.where(periodic, box_a, box_a * 4 + 1.0)
        if placed:
            p_idx = np.array(placed)
            tree = cKDTree(np.mod(pos[p_idx], boxsize), boxsize=boxsize)
            hits = tree.query_ball_point(np.mod(cand, boxsize), r + r_max)
            for k, h in enumerate(hits):
                if h:
                    d = np.linalg.norm(_min_image(pos[p_idx[h]] - cand[k], box_a, periodic), axis=1)
                    if np.any(d < radii[p_idx[h]] + r[k]):
                        ok[k] = False
        tree_c = cKDTree(np.mod(cand, boxsize), boxsize=boxsize)
        for a, b in tree_c.query_pairs(2 * r_max):
            if ok[a] and ok[b]:
                d = np.linalg.norm(_min_image(cand[a] - cand[b], box_a, periodic))
                if d < r[a] + r[b]:
                    ok[max(a, b)] = False
        for k in np.nonzero(ok)[0]:
            pos[batch[k]] = cand[k]
            placed.append(int(batch[k]))
        done = set(batch[ok].tolist())
        todo = [t for t in todo if t not in done]
    return pos


def _min_image(d: np.ndarray, box: np.ndarray, periodic: tuple[bool, ...]) -> np.ndarray:
    d = np.array(d, dtype=float)
    for a in range(3):
        if periodic[a]:
            d[..., a] -= box[a] * np.round(d[..., a] / box[a])
    return d


def engine_memory_bytes(sim) -> dict[str, float]:
    """Bytes of the engine's Taichi storage per particle (particle arrays) and per listed pair."""
    s, p = sim._store, sim._nl.pairs
    real = 8 if sim.np_real == np.float64 else 4
    from electrodem.engine.walls import MAX_WALLS

    per_particle = (6 * 3 + 3) * real + 6 * 4 + 2 * MAX_WALLS * 3 * real + 3 * 4  # + pair starts
    per_pair = 6 * 3 * real + 3 * 4
    return {
        "bytes_per_particle": per_particle,
        "bytes_per_pair": per_pair,
        "pairs_per_particle": sim._nl.n_pairs / max(sim.n, 1),
        "capacity_particles": s.cap,
        "capacity_pairs": p.p_cap if p is not None else 0,
    }


def run_electrodem(
    n: int, steps: int, settle_steps: int, mix: str, seed: int, precision: str, progress: bool
) -> dict:
    ref = _load_ref()
    if ref is None:
        raise RuntimeError("benchmarks/liggghts_ref.py (case definitions) is missing")
    from electrodem.engine import ContactModel, EngineOptions, Material, Simulation, Wall, init

    init(EngineOptions(arch="cpu", precision=precision, seed=seed))
    params = ref.MIXES[mix]
    std = ref.STANDARD
    box = ref.box_m(n, mix)
    counts = ref.species_counts(n, mix)
    radii = np.concatenate([np.full(c, r) for r, c in counts])
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    pos = random_insert(radii, box, rng)
    t_insert = time.perf_counter() - t0
    mat = Material(
        "bench",
        std["density_kg_m3"],
        std["youngs_modulus_Pa"],
        std["poisson_ratio"],
        restitution=std["restitution"],
        friction=std["friction"],
    )
    walls = [
        Wall((0, 0, 0), (0, 0, 1), "bench", name="floor"),
        Wall((0, 0, box[2]), (0, 0, -1), "bench", name="ceiling"),
    ]
    sim = Simulation(
        [mat],
        box_m=box,
        periodic=(True, True, False),
        contact=ContactModel(tangential="mindlin"),
        walls=walls,
        gravity_m_per_s2=(0, 0, -std["gravity_m_s2"]),
        dt_s=params["dt_s"],
        skin_m=params["skin_m"],
    )
    sim.add_particles(pos, radii, "bench")
    t0 = time.perf_counter()
    sim.run(steps=1, progress=False)  # compiles the kernels
    t_compile = time.perf_counter() - t0
    t0 = time.perf_counter()
    settle = sim.run(steps=max(settle_steps - 1, 0), progress=progress) if settle_steps > 1 else None
    t_settle = time.perf_counter() - t0
    timed = sim.run(steps=steps, progress=progress)
    d = sim.diagnostics()
    c = sim.contact_arrays()
    st = sim.state()
    z_top = float(np.max(st["positions_m"][:, 2] + st["radii_m"]))
    lost = int(np.sum(st["positions_m"][:, 2] < 0) + np.sum(st["positions_m"][:, 2] > box[2]))
    out = {
        "engine": "electrodem",
        "n": n,
        "steps": steps,
        "settle_steps": settle_steps,
        "mix": mix,
        "seed": seed,
        "precision": precision,
        "particle_steps_per_s": timed.particle_steps_per_s,
        "wall_s": timed.wall_time_s,
        "neighbor_builds_timed": timed.neighbor_builds,
        "settle_particle_steps_per_s": settle.particle_steps_per_s if settle else None,
        "insert_s": t_insert,
        "compile_s": t_compile,
        "settle_s": t_settle,
        "dt_s": sim.dt_s,
        "box_m": list(box),
        "ke_end_J": d["kinetic_energy_J"],
        "max_overlap_ratio": d["max_overlap_ratio"],
        "mean_contacts_per_sphere": 2.0 * len(c["i"]) / n,
        "bed_top_z_m": z_top,
        "lost_particles": lost,
        "cpu_threads": os.cpu_count(),
        "load_avg_1min": os.getloadavg()[0],
        **engine_memory_bytes(sim),
    }
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--steps", type=int, default=10_000)
    ap.add_argument("--settle-steps", type=int, default=50_000)
    ap.add_argument("--mix", choices=("bidisperse", "electrode"), default="bidisperse")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--precision", choices=("f64", "f32"), default="f64")
    ap.add_argument("--no-liggghts", action="store_true", help="do not run LIGGGHTS even if installed")
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--workdir", type=Path, default=None, help="LIGGGHTS input/log directory")
    a = ap.parse_args(argv)
    for name in ("n", "steps"):
        if getattr(a, name) < 1:
            ap.error(f"--{name.replace('_', '-')}={getattr(a, name)} must be >= 1")
    if a.settle_steps < 0:
        ap.error(f"--settle-steps={a.settle_steps} must be >= 0")
    res = run_electrodem(a.n, a.steps, a.settle_steps, a.mix, a.seed, a.precision, a.progress)
    res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({k: v for k, v in res.items()}), flush=True)
    if not a.no_liggghts:
        ref = _load_ref()
        lig = None
        if ref is not None and hasattr(ref, "run_liggghts"):
            workdir = a.workdir or Path(tempfile.mkdtemp(prefix="dense_bed_liggghts_"))
            lig = ref.run_liggghts(a.n, a.steps, a.settle_steps, a.mix, a.seed, workdir)
        if lig is None:
            res["liggghts"] = "not installed"
        else:
            print(json.dumps({"liggghts": lig}), flush=True)
            res["liggghts_particle_steps_per_s"] = lig["particle_steps_per_s"]
            res["liggghts_peak_rss_mb"] = lig.get("peak_rss_mb")
            res["liggghts_wall_s"] = lig.get("wall_s")
            res["ratio"] = res["particle_steps_per_s"] / lig["particle_steps_per_s"]
    print(json.dumps(res))


if __name__ == "__main__":
    main()
