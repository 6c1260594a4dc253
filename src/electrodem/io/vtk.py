"""Particle snapshots as VTU (meshio) and a ParaView ``.pvd`` time series.

Each particle is a VTK vertex with point data ``radius`` (m), ``diameter`` (m), ``species`` (int),
``id`` and ``velocity`` (m/s). In ParaView apply "Glyph" with a sphere, scale array ``diameter``,
scale factor 1, colour by ``species``. Coordinates are in metres.
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
    cells = [("vertex", np.arange(micro.n, dtype=np.int64).reshape(-1, 1))]
    point_data = {
        "radius": micro.radii_m,
        "diameter": 2.0 * micro.radii_m,
        "species": micro.species_id.astype(np.int32),
        "id": micro.ids.astype(np.int64),
        "velocity": micro.velocities_m_per_s,
    }
    for k, v in micro.fields.items():
        if len(v) == micro.n:
            point_data[k] = np.asarray(v)
    path.parent.mkdir(parents=True, exist_ok=True)
    meshio.write(path, meshio.Mesh(micro.positions_m, cells, point_data=point_data), binary=True)
    return path


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
