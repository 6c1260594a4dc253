"""Transport benchmarks of issue 5: the voxel solver, and the contact resistor network.

Voxel solver. Images are overlapping-sphere (Boolean) media: sphere centres drawn as a Poisson
process in an n^3-voxel box of 1 um voxels, radius ``--radius-vox`` voxels, density chosen for the
target ``--porosity`` (exp(-lambda v) = porosity; the realised value is a little higher because z is
not periodic), built as a `Microstructure` and rasterised with `electrodem.analysis.voxelize`. For
each size and phase the table gives the volume fraction, tau, CG iterations, setup / solve / total
wall seconds, the CPU seconds of the process, and the peak memory of the solve in bytes per image
voxel (NumPy allocations traced by tracemalloc; the image itself, 1 byte/voxel, is not included).
The solver runs to its default physical criterion (inlet, outlet and slice currents agree to 1e-4).

With ``--taufactor`` and the optional ``taufactor`` package (and torch) installed, TauFactor 2's
CPU solver runs on the same images for comparison; it is never a dependency of electrodem.

Resistor network. ``bench_resistor`` (the hook for ``electrodem.analysis.resistor.solve_network``)
times random contact networks: nodes uniformly in a unit cube with about six contacts each
(so n_nodes = n_contacts / 3), contacts between nodes closer than the matching radius, log-uniform
conductances over two decades, source = nodes with z < 0.05, sink = nodes with z > 0.95.

The machine may be shared: wall times include waiting for a CPU; the CPU column does not.

Usage: ``python benchmarks/transport.py --sizes 100,200,300 --phases pore,solid``
"""

from __future__ import annotations

import argparse
import gc
import math
import time
import tracemalloc
from typing import Any

import numpy as np

from electrodem.analysis.transport import solve_transport
from electrodem.analysis.voxelize import voxelize
from electrodem.io.snapshot import Microstructure, Species

VOXEL_M = 1e-6


def boolean_microstructure(n_vox: int, porosity: float, radius_vox: float, seed: int) -> Microstructure:
    """Overlapping spheres (Poisson centres) filling an n_vox^3 box of 1 um voxels to ``porosity``."""
    rng = np.random.default_rng(seed)
    side_m = n_vox * VOXEL_M
    radius_m = radius_vox * VOXEL_M
    rate = -math.log(porosity) / (4.0 / 3.0 * math.pi * radius_m**3)
    count = rng.poisson(rate * side_m**3)
    species = (Species("AM", "AM", 4700.0, 1.4e11, 0.3),)
    return Microstructure(
        positions_m=rng.random((count, 3)) * side_m,
        radii_m=np.full(count, radius_m),
        species_id=np.zeros(count, dtype=np.int32),
        species=species,
        box_m=[side_m] * 3,
        metadata={"top_z_m": side_m},
    )


def bench_voxel(sizes: list[int], porosity: float, radius_vox: float, phases: list[str], axis: str,
                seed: int, taufactor: bool) -> list[dict[str, Any]]:
    """Time `solve_transport` on Boolean images; one row per (size, phase)."""
    rows = []
    for n in sizes:
        micro = boolean_microstructure(n, porosity, radius_vox, seed)
        t0 = time.perf_counter()
        labels = voxelize(micro, voxel_size_m=VOXEL_M).labels
        t_vox = time.perf_counter() - t0
        for phase_name in phases:
            phase = 0 if phase_name == "pore" else 1
            image = labels if phase == 0 else (labels > 0).astype(np.uint8)
            gc.collect()
            tracemalloc.start()
            w0, c0 = time.perf_counter(), time.process_time()
            res = solve_transport(image, phase, axis)
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            row = {
                "size": n, "phase": phase_name, "spheres": micro.n, "voxelize_s": t_vox,
                "eps": res.volume_fraction, "tau": res.tortuosity_factor, "iterations": res.iterations,
                "setup_s": res.setup_time_s, "solve_s": res.solve_time_s, "total_s": wall, "cpu_s": cpu,
                "bytes_per_voxel": peak / image.size, "spread": res.slice_flux_spread,
                "converged": res.converged,
            }
            if taufactor:
                row.update(bench_taufactor(image == phase, axis))
            rows.append(row)
            print(_voxel_line(row), flush=True)
    return rows


def bench_taufactor(mask: np.ndarray, axis: str) -> dict[str, Any]:
    """TauFactor 2 (CPU) on the same binary image, if installed; flow along its first axis."""
    try:
        import taufactor  # type: ignore[import-not-found]
    except ImportError:
        return {"taufactor_tau": None, "taufactor_s": None}
    img = np.moveaxis(mask, "xyz".index(axis), 0).astype(np.float32)
    t0 = time.perf_counter()
    solver = taufactor.Solver(img, device="cpu")
    solver.solve(verbose=False)
    return {"taufactor_tau": float(solver.tau), "taufactor_s": time.perf_counter() - t0}


def _voxel_line(r: dict[str, Any]) -> str:
    line = (f"{r['size']:>4}^3 {r['phase']:>5} {r['eps']:6.3f} {r['tau']:8.4f} {r['iterations']:5d} "
            f"{r['setup_s']:7.2f} {r['solve_s']:7.2f} {r['total_s']:7.2f} {r['cpu_s']:7.2f} "
            f"{r['bytes_per_voxel']:7.1f} {r['voxelize_s']:7.2f}")
    if r.get("taufactor_tau") is not None:
        line += f" {r['taufactor_tau']:8.4f} {r['taufactor_s']:7.2f}"
    return line


VOXEL_HEADER = ("size  phase    eps      tau    it  setup_s solve_s total_s   cpu_s   B/vox  voxelize_s"
                "  [TauFactor tau, s]")


# ====================================================================================== resistor hook
def bench_resistor(n_contacts_list: list[int], seed: int = 0) -> list[dict[str, Any]] | None:
    """HOOK: time ``electrodem.analysis.resistor.solve_network`` on random contact networks.

    Returns None (after printing "resistor network: not available") when the module or the
    function is missing.
    """
    try:
        from electrodem.analysis.resistor import solve_network
    except ImportError:
        print("resistor network: not available")
        return None
    from scipy.spatial import cKDTree

    rows = []
    print("contacts     nodes   seconds  current_A")
    for n_contacts in n_contacts_list:
        rng = np.random.default_rng(seed)
        n_nodes = max(8, n_contacts // 3)
        pts = rng.random((n_nodes, 3))
        # Mean degree 2 E / N = 6 for nodes uniform in a unit cube: (4/3) pi r^3 N = 6.
        radius = (6.0 / (4.0 / 3.0 * math.pi * n_nodes)) ** (1.0 / 3.0)
        pairs = cKDTree(pts).query_pairs(radius, output_type="ndarray")
        g = 10.0 ** rng.uniform(-1.0, 1.0, len(pairs))
        source = np.flatnonzero(pts[:, 2] < 0.05)
        sink = np.flatnonzero(pts[:, 2] > 0.95)
        t0 = time.perf_counter()
        _, current = solve_network(n_nodes, pairs[:, 0], pairs[:, 1], g, source, sink)
        dt = time.perf_counter() - t0
        rows.append({"contacts": len(pairs), "nodes": n_nodes, "seconds": dt, "current_A": float(current)})
        print(f"{len(pairs):>8} {n_nodes:>9} {dt:9.3f} {current:10.4g}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="100,200,300", help="image edge lengths in voxels (comma list)")
    p.add_argument("--porosity", type=float, default=0.4, help="target porosity of the Boolean model")
    p.add_argument("--radius-vox", type=float, default=8.0, help="sphere radius in voxels")
    p.add_argument("--phases", default="pore,solid", help="phases to solve: pore, solid (comma list)")
    p.add_argument("--axis", default="z", choices=["x", "y", "z"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--taufactor", action="store_true", help="also run TauFactor 2 (CPU) if installed")
    p.add_argument("--contacts", default="10000,100000,1000000",
                   help="resistor-network sizes in contacts (comma list; empty to skip)")
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    phases = [s for s in args.phases.split(",") if s]
    if any(ph not in ("pore", "solid") for ph in phases):
        p.error(f"--phases={args.phases!r}: use pore and/or solid")
    if sizes:
        print(VOXEL_HEADER)
        bench_voxel(sizes, args.porosity, args.radius_vox, phases, args.axis, args.seed, args.taufactor)
    contacts = [int(float(s)) for s in args.contacts.split(",") if s]
    if contacts:
        bench_resistor(contacts, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
