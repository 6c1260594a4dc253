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


def _field_bytes(obj) -> int:
    """Bytes of the Taichi fields held as attributes of ``obj``."""
    import taichi as ti

    total = 0
    for v in vars(obj).values():
        if isinstance(v, ti.Field):
            comps = getattr(v, "n", 1) * getattr(v, "m", 1) if isinstance(v, ti.MatrixField) else 1
            size = 8 if v.dtype in (ti.f64, ti.i64) else 4
            total += int(np.prod(v.shape)) * comps * size
    return total


def engine_memory_bytes(sim) -> dict[str, float]:
    """Bytes of the engine's Taichi storage: per particle slot (particle store, the per-particle arrays
    of the pair store and the cell grid, divided by the particle capacity) and per pair slot (the
    per-pair arrays divided by the pair capacity), read from the allocated fields themselves."""
    s, p, c = sim._store, sim._nl.pairs, sim._nl.cells
    per_particle = _field_bytes(s) / s.cap
    per_pair = 0.0
    if p is not None:
        n_arrays = sum(_field_bytes_of(p, name) for name in ("start", "old_start", "rev_start"))
        per_particle += n_arrays / s.cap
        per_pair = (_field_bytes(p) - n_arrays) / p.p_cap
    grid = _field_bytes(c) if c is not None else 0
    return {
        "bytes_per_particle": per_particle,
        "bytes_per_pair": per_pair,
        "grid_bytes": grid,
        "pairs_per_particle": sim._nl.n_pairs / max(sim.n, 1),
        "capacity_particles": s.cap,
        "capacity_pairs": p.p_cap if p is not None else 0,
        "engine_bytes_total": _field_bytes(s) + (_field_bytes(p) if p is not None else 0) + grid,
    }


def _field_bytes_of(obj, name: str) -> int:
    class _One:
        pass

    one = _One()
    one.f = getattr(obj, name)
    return _field_bytes(one)


def _rss_now_mb() -> float | None:
    """Resident memory now (MB; the peak also holds transient copies made while building the bed)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return None


def _cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def tile_checkpoint(src: Path, dst: Path, k: int) -> None:
    """Write to ``dst`` a checkpoint of k x k periodic copies (x, y) of the checkpoint ``src``.

    A bed in a box periodic in x and y is exactly periodic, so its copies side by side are a settled
    bed of the box k times wider, with the same contacts: every pair of the copy is a pair of the
    original, with the partner taken in the copy that holds its minimum image. Particles, spins,
    forces, wall and pair histories are copied; wall forces scale with the area."""
    with np.load(src, allow_pickle=False) as z:
        data = {key: z[key] for key in z.files}
    model = json.loads(str(data["model_json"]))
    lb = np.asarray(model["box_m"], float)
    if not (model["periodic"][0] and model["periodic"][1]):
        raise ValueError("tiling needs a box periodic in x and y")
    nb = len(data["p_r"])
    x = data["p_x"]
    tiles = [(a, b) for a in range(k) for b in range(k)]
    out = dict(data)
    for key in [q for q in data if q.startswith("p_")]:
        out[key] = np.concatenate([data[key]] * len(tiles))
    out["p_x"] = np.concatenate([x + np.array([a * lb[0], b * lb[1], 0.0]) for a, b in tiles])
    out["ids"] = np.arange(nb * len(tiles), dtype=np.int64)
    out["next_id"] = np.array(nb * len(tiles))
    hi, hj = data["h_i"].astype(np.int64), data["h_j"].astype(np.int64)
    shift = np.rint((x[hi, :2] - x[hj, :2]) / lb[:2]).astype(np.int64)
    new_i, new_j = [], []
    for a, b in tiles:
        t_i = a * k + b
        t_j = ((a + shift[:, 0]) % k) * k + (b + shift[:, 1]) % k
        new_i.append(t_i * nb + hi)
        new_j.append(t_j * nb + hj)
    out["h_i"], out["h_j"] = np.concatenate(new_i), np.concatenate(new_j)
    out["h_ht"] = np.concatenate([data["h_ht"]] * len(tiles))
    out["h_hr"] = np.concatenate([data["h_hr"]] * len(tiles))
    out["wforce"] = data["wforce"] * len(tiles)
    model["box_m"] = [k * lb[0], k * lb[1], lb[2]]
    model["n_particles"] = nb * len(tiles)
    out["model_json"] = np.array(json.dumps(model))
    np.savez(dst, **out)


def _build_and_settle(n, settle_steps, mix, seed, progress, ref, timings) -> object:
    """Insert n spheres of ``mix`` at random in the benchmark box and settle them (see module doc)."""
    from electrodem.engine import ContactModel, Guards, Material, Simulation, Wall

    params = ref.MIXES[mix]
    std = ref.STANDARD
    box = ref.box_m(n, mix)
    counts = ref.species_counts(n, mix)
    radii = np.concatenate([np.full(c, r) for r, c in counts])
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    pos = random_insert(radii, box, rng)
    timings["insert_s"] = time.perf_counter() - t0
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
        # 5 MPa spheres dropped from up to 0.4 m hit at ~2.8 m/s: the Hertz impact overlap is ~0.2-0.25 of
        # the radius (sphere-sphere and sphere-floor), and a 2.5 mm sphere landing on 0.125 mm ones
        # (electrode mix) dents them by more than half their radius. The default 10 % overlap guard
        # would stop the case LIGGGHTS runs without any guard; the NaN and energy guards stay on.
        guards=Guards(max_overlap_ratio=2.0, max_total_overlap_ratio=2.0),
    )
    sim.add_particles(pos, radii, "bench")
    t0 = time.perf_counter()
    sim.run(steps=1, progress=False)  # compiles the kernels
    timings["compile_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    settle = sim.run(steps=max(settle_steps - 1, 0), progress=progress) if settle_steps > 1 else None
    timings["settle_s"] = time.perf_counter() - t0
    timings["settle_particle_steps_per_s"] = settle.particle_steps_per_s if settle else None
    return sim


def run_electrodem(
    n: int,
    steps: int,
    settle_steps: int,
    mix: str,
    seed: int,
    precision: str,
    progress: bool,
    threads: int | None = None,
    tile: int = 1,
    load_bed: Path | None = None,
    save_bed: Path | None = None,
) -> dict:
    ref = _load_ref()
    if ref is None:
        raise RuntimeError("benchmarks/liggghts_ref.py (case definitions) is missing")
    from electrodem.engine import EngineOptions, Simulation, init

    init(EngineOptions(arch="cpu", precision=precision, seed=seed, cpu_threads=threads))
    timings: dict = {}
    if load_bed is not None:
        sim = Simulation.load_checkpoint(load_bed)
        if sim.n != n:
            raise ValueError(f"--load-bed {load_bed} holds {sim.n} spheres, not --n {n}")
    elif tile > 1:
        if n % (tile * tile):
            raise ValueError(f"--n {n} is not a multiple of --tile^2 = {tile * tile}")
        base = _build_and_settle(n // (tile * tile), settle_steps, mix, seed, progress, ref, timings)
        with tempfile.TemporaryDirectory() as tmp:
            base.save_checkpoint(Path(tmp) / "base.npz")
            base.free()
            tile_checkpoint(Path(tmp) / "base.npz", Path(tmp) / "tiled.npz", tile)
            sim = Simulation.load_checkpoint(Path(tmp) / "tiled.npz")
    else:
        sim = _build_and_settle(n, settle_steps, mix, seed, progress, ref, timings)
    if save_bed is not None:
        sim.save_checkpoint(save_bed)
    box = sim.box_m
    sim.run(steps=1, progress=False)  # compiles the kernels for this store size if not yet done
    load_before = os.getloadavg()[0]
    cpu0 = _cpu_s()
    timed = sim.run(steps=steps, progress=progress)
    cpu_timed = _cpu_s() - cpu0
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
        "tile": tile,
        "bed_from": str(load_bed) if load_bed is not None else ("tiled" if tile > 1 else "settled"),
        "mix": mix,
        "seed": seed,
        "precision": precision,
        "particle_steps_per_s": timed.particle_steps_per_s,
        "wall_s": timed.wall_time_s,
        "cpu_s": cpu_timed,
        "particle_steps_per_cpu_s": n * steps / cpu_timed if cpu_timed > 0 else float("nan"),
        "neighbor_builds_timed": timed.neighbor_builds,
        **timings,
        "dt_s": sim.dt_s,
        "box_m": [float(b) for b in box],
        "ke_end_J": d["kinetic_energy_J"],
        "max_overlap_ratio": d["max_overlap_ratio"],
        "mean_contacts_per_sphere": 2.0 * len(c["i"]) / n,
        "bed_top_z_m": z_top,
        "lost_particles": lost,
        "cpu_threads": threads or os.cpu_count(),
        "load_avg_1min_before": load_before,
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
    ap.add_argument("--threads", type=int, default=None, help="CPU threads of the engine (default: all)")
    ap.add_argument(
        "--tile",
        type=int,
        default=1,
        help="settle n/tile^2 spheres in a box tile x smaller laterally, then time tile x tile periodic "
        "copies of that bed (for large n; electrodem only)",
    )
    ap.add_argument("--save-bed", type=Path, default=None, help="write the settled bed as a checkpoint")
    ap.add_argument("--load-bed", type=Path, default=None, help="time a bed from --save-bed (no settling)")
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--workdir", type=Path, default=None, help="LIGGGHTS input/log directory")
    a = ap.parse_args(argv)
    for name in ("n", "steps"):
        if getattr(a, name) < 1:
            ap.error(f"--{name.replace('_', '-')}={getattr(a, name)} must be >= 1")
    if a.settle_steps < 0:
        ap.error(f"--settle-steps={a.settle_steps} must be >= 0")
    if a.threads is not None and a.threads < 1:
        ap.error(f"--threads={a.threads} must be >= 1")
    if a.tile < 1:
        ap.error(f"--tile={a.tile} must be >= 1")
    if (a.tile > 1 or a.load_bed is not None) and not a.no_liggghts:
        ap.error("--tile and --load-bed time a bed LIGGGHTS did not build: add --no-liggghts")
    res = run_electrodem(
        a.n,
        a.steps,
        a.settle_steps,
        a.mix,
        a.seed,
        a.precision,
        a.progress,
        a.threads,
        a.tile,
        a.load_bed,
        a.save_bed,
    )
    res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    res["rss_end_mb"] = _rss_now_mb()
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
            res["liggghts_cpu_share"] = lig.get("cpu_share")
            res["ratio"] = res["particle_steps_per_s"] / lig["particle_steps_per_s"]
    print(json.dumps(res))


if __name__ == "__main__":
    main()
