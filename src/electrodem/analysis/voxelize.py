"""Voxelization of a sphere `Microstructure` into a labelled 3D image.

The image is what the voxel transport solver (`electrodem.analysis.transport`) and tools such as
TauFactor read: one ``uint8`` label per voxel, 0 = pore, ``k + 1`` = species ``k`` by default (or the
labels of a user map ``phase_of_species``).

Geometry
--------
* Array axes are ``labels[ix, iy, iz]`` = (x, y, z); z = 0 is the current collector (CC).
* x and y span the periodic box ``[0, Lx) x [0, Ly)``: spheres crossing a periodic side wrap around.
  z spans ``[0, z_max_m]`` (the electrode top `Microstructure.top_m` by default); spheres are clipped
  at both z ends.
* The voxel count per axis is ``n = round(L / h)`` for the requested size ``h``, and the voxel edge on
  that axis is ``L / n`` so the periodic image closes exactly. Edges therefore differ from ``h`` (and
  from each other) by at most ``h / (2 n)``; `VoxelImage.voxel_size_m` holds all three.
* A voxel belongs to a sphere when its centre lies inside it (centre sampling).

Overlap rule
------------
Where a voxel centre lies inside several spheres, the sphere with the smallest *power distance*
``|x - c|^2 - r^2`` wins. Two overlapping spheres are thus split by their radical plane, the plane
that holds their intersection circle (the contact disc), whatever their sizes: neither phase
swallows the other's contact lens. (A sphere lying entirely inside a larger one, which a contact
model never produces, is hidden by it.) Species mapped to label 0 (pore) are dropped before
rasterising, so they never carve pore space out of solid.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from electrodem.config.errors import ConfigError
from electrodem.io.snapshot import Microstructure

DEFAULT_VOXELS_PER_SMALLEST_DIAMETER = 10.0
"""Resolution used when neither a resolution nor a voxel size is given (see `voxelize`)."""

_CHUNK_ELEMENTS = 1 << 21
"""Candidate voxels handled per vectorised chunk: large enough to amortise NumPy call overhead,
small enough to keep the temporaries at a few tens of MB."""


@dataclass(frozen=True)
class VoxelImage:
    """A labelled voxel image of an electrode.

    Attributes
    ----------
    labels : (nx, ny, nz) uint8 phase labels, indexed ``[x, y, z]``; 0 is pore.
    voxel_size_m : (hx, hy, hz) voxel edges in metres.
    origin_m : position (m) of the low corner of voxel ``[0, 0, 0]``.
    phase_names : name of each label ``0 .. max label`` ("pore" for 0; species names joined by "+"
        when several species share a label; "" for an unused label).
    voxels_per_smallest_diameter : smallest sphere diameter divided by the largest voxel edge
        (the resolution that matters for the finest phase).
    periodic : periodicity of the image axes (x, y as in the snapshot; z never).
    """

    labels: np.ndarray
    voxel_size_m: tuple[float, float, float]
    origin_m: tuple[float, float, float]
    phase_names: tuple[str, ...]
    voxels_per_smallest_diameter: float
    periodic: tuple[bool, bool, bool]

    @property
    def shape(self) -> tuple[int, int, int]:
        """Voxel counts (nx, ny, nz)."""
        return tuple(int(s) for s in self.labels.shape)  # type: ignore[return-value]

    @property
    def extent_m(self) -> tuple[float, float, float]:
        """Physical size (m) of the image along x, y, z."""
        return tuple(float(n * h) for n, h in zip(self.labels.shape, self.voxel_size_m, strict=True))  # type: ignore[return-value]

    def volume_fractions(self) -> dict[str, float]:
        """Volume fraction of every label present or named, keyed by phase name (label 0 = "pore")."""
        counts = np.bincount(self.labels.ravel(), minlength=len(self.phase_names))
        total = float(self.labels.size)
        return {
            (
                self.phase_names[k] if k < len(self.phase_names) and self.phase_names[k] else f"label{k}"
            ): float(c) / total
            for k, c in enumerate(counts)
        }

    def phase_mask(self, label: int) -> np.ndarray:
        """Boolean mask of the voxels carrying ``label``."""
        return self.labels == label


def _label_table(micro: Microstructure, phase_of_species: object) -> np.ndarray:
    """Label (0..255) of each species index, from the user map or the default ``k + 1``."""
    n_species = len(micro.species)
    if phase_of_species is None:
        if n_species > 255:
            raise ConfigError(
                "phase_of_species", None, f"a map is needed: {n_species} species exceed 255 labels"
            )
        return np.arange(1, n_species + 1, dtype=np.int64)
    names = [s.name for s in micro.species]
    table = np.full(n_species, -1, dtype=np.int64)
    if isinstance(phase_of_species, Mapping):
        for key, lab in phase_of_species.items():
            if isinstance(key, str):
                if key not in names:
                    raise ConfigError(
                        f"phase_of_species[{key!r}]",
                        lab,
                        f"keys must be species names {names} or indices 0..{n_species - 1}",
                    )
                k = names.index(key)
            elif isinstance(key, (int, np.integer)) and 0 <= int(key) < n_species:
                k = int(key)
            else:
                raise ConfigError(
                    f"phase_of_species[{key!r}]",
                    lab,
                    f"keys must be species names {names} or indices 0..{n_species - 1}",
                )
            table[k] = _check_label(lab, f"phase_of_species[{key!r}]")
    elif isinstance(phase_of_species, Sequence) or isinstance(phase_of_species, np.ndarray):
        if len(phase_of_species) != n_species:
            raise ConfigError(
                "phase_of_species", phase_of_species, f"a sequence needs one label per species ({n_species})"
            )
        for k, lab in enumerate(phase_of_species):
            table[k] = _check_label(lab, f"phase_of_species[{k}]")
    else:
        raise ConfigError(
            "phase_of_species",
            phase_of_species,
            "None, a mapping species name/index -> label, or a sequence of labels",
        )
    missing = [names[k] for k in np.flatnonzero(table < 0)]
    if missing:
        raise ConfigError(
            "phase_of_species", phase_of_species, f"every species needs a label; missing {missing}"
        )
    return table


def _check_label(lab: object, key: str) -> int:
    if not isinstance(lab, (int, np.integer)) or isinstance(lab, bool) or not 0 <= int(lab) <= 255:
        raise ConfigError(key, lab, "an integer label 0..255 (0 = pore)")
    return int(lab)


def _phase_names(micro: Microstructure, table: np.ndarray) -> tuple[str, ...]:
    n_labels = int(table.max(initial=0)) + 1
    names = [""] * n_labels
    names[0] = "pore"
    for lab in range(1, n_labels):
        members = [micro.species[k].name for k in np.flatnonzero(table == lab)]
        names[lab] = "+".join(members)
    return tuple(names)


def voxelize(
    micro: Microstructure,
    voxels_per_smallest_diameter: float | None = None,
    voxel_size_m: float | None = None,
    z_max_m: float | None = None,
    phase_of_species: Mapping[str | int, int] | Sequence[int] | None = None,
    max_voxels: int = 1_000_000_000,
) -> VoxelImage:
    """Rasterise the spheres of ``micro`` into a labelled voxel image (see the module docstring).

    Parameters
    ----------
    micro : the snapshot.
    voxels_per_smallest_diameter : resolution: voxel edge = smallest sphere diameter / this value.
    voxel_size_m : voxel edge in metres (alternative to the resolution; give at most one). With
        neither, ``voxels_per_smallest_diameter = 10`` is used.
    z_max_m : top of the image (m); default ``micro.top_m()``.
    phase_of_species : label of each species: a mapping from species name (or index) to a label
        0..255, or a sequence with one label per species. Default: species ``k`` -> ``k + 1``.
        Label 0 removes a species from the image (it becomes pore).
    max_voxels : refuse to allocate an image with more voxels than this.

    Returns
    -------
    `VoxelImage` with ``labels[x, y, z]`` (uint8).

    Cost is proportional to the number of voxel centres inside the spheres' bounding boxes (about
    twice the solid voxel count), processed in vectorised chunks grouped by box size.
    """
    if not isinstance(micro, Microstructure):
        raise ConfigError("micro", type(micro).__name__, "an electrodem.io.snapshot.Microstructure")
    if micro.n == 0:
        raise ConfigError("micro", "0 particles", "a snapshot with at least one sphere")
    if voxels_per_smallest_diameter is not None and voxel_size_m is not None:
        raise ConfigError(
            "voxel_size_m", voxel_size_m, "give either voxels_per_smallest_diameter or voxel_size_m"
        )
    d_min_m = 2.0 * float(micro.radii_m.min())
    if voxel_size_m is None:
        res = (
            DEFAULT_VOXELS_PER_SMALLEST_DIAMETER
            if voxels_per_smallest_diameter is None
            else voxels_per_smallest_diameter
        )
        if not np.isfinite(res) or res <= 0:
            raise ConfigError(
                "voxels_per_smallest_diameter", voxels_per_smallest_diameter, "a finite number > 0"
            )
        h = d_min_m / float(res)
    else:
        if not np.isfinite(voxel_size_m) or voxel_size_m <= 0:
            raise ConfigError("voxel_size_m", voxel_size_m, "a finite length > 0 in metres")
        h = float(voxel_size_m)
    z_top = micro.top_m() if z_max_m is None else z_max_m
    if not np.isfinite(z_top) or z_top <= 0:
        raise ConfigError("z_max_m", z_max_m, "a finite height > 0 in metres (default micro.top_m())")
    extent = np.array([micro.box_m[0], micro.box_m[1], z_top], dtype=np.float64)
    if np.any(extent[:2] <= 0):
        raise ConfigError("micro.box_m", micro.box_m.tolist(), "positive box lengths along x and y")
    shape = np.maximum(1, np.rint(extent / h)).astype(np.int64)
    n_total = int(np.prod(shape))
    if n_total > max_voxels:
        raise ConfigError(
            "voxel_size_m",
            h,
            f"gives {shape.tolist()} = {n_total} voxels > max_voxels={max_voxels}; "
            "use a coarser resolution or raise max_voxels",
        )
    spacing = extent / shape
    table = _label_table(micro, phase_of_species)
    periodic = (bool(micro.periodic[0]), bool(micro.periodic[1]), False)

    labels = _rasterise(micro, table, shape, spacing, periodic)
    return VoxelImage(
        labels=labels,
        voxel_size_m=tuple(float(s) for s in spacing),  # type: ignore[arg-type]
        origin_m=(0.0, 0.0, 0.0),
        phase_names=_phase_names(micro, table),
        voxels_per_smallest_diameter=d_min_m / float(spacing.max()),
        periodic=periodic,
    )


def _rasterise(
    micro: Microstructure,
    table: np.ndarray,
    shape: np.ndarray,
    spacing: np.ndarray,
    periodic: tuple[bool, bool, bool],
) -> np.ndarray:
    """Centre-sampling rasteriser with the power-distance overlap rule (module docstring)."""
    nx, ny, nz = (int(s) for s in shape)
    lab_of_sphere = table[micro.species_id]
    pos = micro.positions_m.copy()
    for ax in (0, 1):
        if periodic[ax]:
            pos[:, ax] = np.mod(pos[:, ax], micro.box_m[ax])
    # Work in voxel units (voxel i has its centre at u = i), scaled per axis so anisotropic spacing
    # is exact; the power distance is kept in units of the smallest edge squared.
    h_ref = float(spacing.min())
    centre_u = pos / spacing - 0.5
    radius_u = micro.radii_m[:, None] / spacing[None, :]
    lo = np.ceil(centre_u - radius_u).astype(np.int64)
    extent = (np.floor(centre_u + radius_u).astype(np.int64) - lo) + 1
    keep = (lab_of_sphere > 0) & np.all(extent > 0, axis=1)
    keep &= (lo[:, 2] < nz) & (lo[:, 2] + extent[:, 2] > 0)
    for ax, n in ((0, nx), (1, ny)):
        if not periodic[ax]:
            keep &= (lo[:, ax] < n) & (lo[:, ax] + extent[:, ax] > 0)
    idx = np.flatnonzero(keep)

    labels = np.zeros(nx * ny * nz, dtype=np.uint8)
    best = np.full(nx * ny * nz, np.inf, dtype=np.float32)
    if idx.size == 0:
        return labels.reshape(nx, ny, nz)
    # The box extent of a sphere depends on its radius and on where its centre falls in the voxel,
    # so group by the actual extent triple: every sphere of a group shares one offset grid.
    ext = extent[idx]
    base = int(ext.max()) + 1
    key = (ext[:, 0] * base + ext[:, 1]) * base + ext[:, 2]
    order = np.argsort(key, kind="stable")
    idx, key = idx[order], key[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    stops = np.r_[starts[1:], len(idx)]
    scale = (spacing / h_ref).astype(np.float32)
    for s0, s1 in zip(starts, stops, strict=True):
        ex, ey, ez = (int(e) for e in extent[idx[s0]])
        # Spheres larger than a chunk are stamped in slabs along x.
        slab = max(1, min(ex, _CHUNK_ELEMENTS // (ey * ez)))
        step = max(1, _CHUNK_ELEMENTS // (slab * ey * ez))
        for c0 in range(s0, s1, step):
            sel = idx[c0 : min(s1, c0 + step)]
            for x0 in range(0, ex, slab):
                lo_sel = lo[sel].copy()
                lo_sel[:, 0] += x0
                _stamp(
                    lo_sel,
                    (min(slab, ex - x0), ey, ez),
                    centre_u[sel],
                    micro.radii_m[sel] / h_ref,
                    scale,
                    lab_of_sphere[sel],
                    (nx, ny, nz),
                    periodic,
                    labels,
                    best,
                )
    return labels.reshape(nx, ny, nz)


def _stamp(
    lo: np.ndarray,
    ext: tuple[int, int, int],
    centre_u: np.ndarray,
    radius_ref: np.ndarray,
    scale: np.ndarray,
    lab: np.ndarray,
    shape: tuple[int, int, int],
    periodic: tuple[bool, bool, bool],
    labels: np.ndarray,
    best: np.ndarray,
) -> None:
    """Stamp one chunk of spheres sharing a bounding-box extent into ``labels``/``best`` (in place)."""
    m = len(lo)
    flat = np.zeros((m, 1, 1, 1), dtype=np.int64)
    power = np.broadcast_to(-(radius_ref.astype(np.float32) ** 2)[:, None, None, None], (m, 1, 1, 1))
    valid = np.ones((m, 1, 1, 1), dtype=bool)
    for ax in range(3):
        off = np.arange(ext[ax], dtype=np.int64)
        i = lo[:, ax][:, None] + off[None, :]
        d2 = ((i - centre_u[:, ax][:, None]).astype(np.float32) * scale[ax]) ** 2
        ok = np.ones_like(i, dtype=bool)
        if periodic[ax]:
            i = np.mod(i, shape[ax])
        else:
            ok = (i >= 0) & (i < shape[ax])
            i = np.clip(i, 0, shape[ax] - 1)
        bshape = [m, 1, 1, 1]
        bshape[ax + 1] = ext[ax]
        flat = flat * shape[ax] + i.reshape(bshape)
        power = power + d2.reshape(bshape)
        valid = valid & ok.reshape(bshape)
    inside = valid & (power < 0)
    flat = flat[inside]
    pw = power[inside]
    labs = np.broadcast_to(lab[:, None, None, None], inside.shape)[inside].astype(np.uint8)
    np.minimum.at(best, flat, pw)
    # After the scatter-min, a candidate that equals the stored minimum is (one of) the winner(s);
    # later chunks overwrite its label only if they beat it.
    win = pw <= best[flat]
    labels[flat[win]] = labs[win]
