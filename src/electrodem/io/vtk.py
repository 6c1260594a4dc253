"""Particle snapshots as VTU (meshio) and a ParaView ``.pvd`` time series.

Each particle is a VTK vertex with point data ``radius`` (m), ``diameter`` (m), ``species`` (int),
``id`` and ``velocity`` (m/s), plus the snapshot's per-particle agent fields. In ParaView apply "Glyph"
with a sphere, scale array ``diameter``, scale factor 1, colour by ``species``. Coordinates are in
metres.

Bonds (PTFE fibrils, binder bridges: `Microstructure.bonds`) are VTK line cells between the particles
they join, with the bond table's per-bond arrays as cell data (vertices carry NaN there), so "Extract
Cells By Type" or a threshold on ``cell_kind`` (0 particle, 1 bond) shows them apart. A bond that
crosses a periodic face is drawn to its partner's minimum image: that end is an extra point after the
N particles (``id`` -1, ``species`` -1, ``diameter`` 0: no glyph).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import meshio
import numpy as np

from electrodem.io.snapshot import Microstructure


def write_vtu(micro: Microstructure, path: str | Path, overwrite: bool = False) -> Path:
    """Write one snapshot as an XML unstructured grid of vertices."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    n = micro.n
    point_data: dict[str, np.ndarray] = {
        "radius": micro.radii_m,
        "diameter": 2.0 * micro.radii_m,
        "species": micro.species_id.astype(np.int32),
        "id": micro.ids.astype(np.int64),
        "velocity": micro.velocities_m_per_s,
    }
    for k, v in micro.fields.items():
        if len(v) == n:
            point_data[k] = np.asarray(v)
    points = micro.positions_m
    cells = [("vertex", np.arange(n, dtype=np.int64).reshape(-1, 1))]
    cell_data: dict[str, list[np.ndarray]] = {"cell_kind": [np.zeros(n, np.int32)]}
    bonds = micro.bonds or {}
    if len(bonds.get("i", ())):
        lines, ghosts = _bond_lines(micro)
        if len(ghosts):
            points = np.concatenate([points, ghosts])
            point_data = {k: _pad_rows(v, len(ghosts), k) for k, v in point_data.items()}
        cells.append(("line", lines))
        cell_data["cell_kind"].append(np.ones(len(lines), np.int32))
        for k, v in bonds.items():
            v = np.asarray(v)
            if k in ("i", "j") or v.dtype.kind not in "biuf" or v.shape[:1] != (len(lines),):
                continue
            v = v.astype(np.float64)
            cell_data[f"bond_{k}"] = [np.full((n, *v.shape[1:]), np.nan), v]
    path.parent.mkdir(parents=True, exist_ok=True)
    mesh = meshio.Mesh(points, cells, point_data=point_data, cell_data=cell_data)
    meshio.write(path, mesh, binary=True)
    return path


def _bond_lines(micro: Microstructure) -> tuple[np.ndarray, np.ndarray]:
    """(line connectivity (B, 2), ghost points (G, 3)): bond i -> j, or i -> a ghost point at j's
    minimum image where the bond crosses a periodic face (``i``, ``j`` are particle indices)."""
    i = np.asarray(micro.bonds["i"], np.int64)  # type: ignore[index]
    j = np.asarray(micro.bonds["j"], np.int64)  # type: ignore[index]
    x = micro.positions_m
    d = x[j] - x[i]
    image = d.copy()
    for a in range(3):
        if micro.periodic[a]:
            image[:, a] -= micro.box_m[a] * np.round(d[:, a] / micro.box_m[a])
    crossing = np.any(image != d, axis=1)
    ghost_ids = micro.n + np.arange(int(crossing.sum()))
    end = j.copy()
    end[crossing] = ghost_ids
    return np.stack([i, end], axis=1), x[i[crossing]] + image[crossing]


def _pad_rows(v: np.ndarray, k: int, name: str) -> np.ndarray:
    """``v`` with ``k`` rows for ghost points appended: -1 for ids and species, NaN for agent fields, 0
    for the rest (no glyph, no velocity)."""
    v = np.asarray(v)
    fill: float = -1 if name in ("id", "species") else (0 if name in _POINT_KEYS else np.nan)
    if v.dtype.kind in "iu" and not np.isfinite(fill):
        v, fill = v.astype(np.float64), np.nan
    return np.concatenate([v, np.full((k, *v.shape[1:]), fill, dtype=v.dtype)])


_POINT_KEYS = ("radius", "diameter", "velocity")


def read_vtu(path: str | Path) -> meshio.Mesh:
    """Read a VTU back (for tests and for tools that want the raw mesh)."""
    return meshio.read(Path(path))


class PVDSeries:
    """A ParaView collection file (``.pvd``) that lists VTU snapshots against time.

    The file is rewritten after every `add`, so an interrupted run still leaves a valid series.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.entries: list[tuple[float, str]] = []

    def add(self, time_s: float, vtu_path: str | Path) -> None:
        """Append a snapshot (its path is stored relative to the ``.pvd`` file)."""
        rel = Path(vtu_path).resolve().relative_to(self.path.parent.resolve())
        self.entries.append((float(time_s), rel.as_posix()))
        self._write()

    def _write(self) -> None:
        root = ET.Element("VTKFile", type="Collection", version="0.1", byte_order="LittleEndian")
        coll = ET.SubElement(root, "Collection")
        for t, f in self.entries:
            ET.SubElement(coll, "DataSet", timestep=repr(t), group="", part="0", file=f)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        ET.ElementTree(root).write(self.path, xml_declaration=True, encoding="utf-8")


def read_pvd(path: str | Path) -> list[tuple[float, Path]]:
    """(time, absolute VTU path) entries of a ``.pvd`` file."""
    path = Path(path)
    root = ET.parse(path).getroot()
    return [(float(d.get("timestep", "0")), path.parent / str(d.get("file"))) for d in root.iter("DataSet")]
