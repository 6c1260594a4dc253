"""Exact planar cross-sections of a sphere packing (pure NumPy).

A vertical plane ``axis = position`` (axis "x" or "y") cuts a sphere of radius r whose centre lies at
signed distance d from the plane in a disc of radius sqrt(r**2 - d**2). Periodic axes use the minimum
image for d, and discs that cross a periodic lateral boundary are repeated on the other side so that
the section of the periodic box is complete.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from electrodem.io.snapshot import Microstructure

AXES = ("x", "y")


@dataclass(frozen=True)
class Section:
    """Discs where the plane cuts the spheres.

    ``u_m`` is the in-plane horizontal coordinate (y for an x-section, x for a y-section), ``z_m`` the
    height, ``radius_m`` the disc radius, all in metres; ``species_id`` per disc; ``width_m`` is the
    box length along u.
    """

    axis: str
    position_m: float
    u_m: np.ndarray
    z_m: np.ndarray
    radius_m: np.ndarray
    species_id: np.ndarray
    width_m: float


def section_discs(micro: Microstructure, axis: str = "y", position_m: float | None = None) -> Section:
    """Cut ``micro`` with the plane ``axis = position_m`` (m; default: the middle of the box)."""
    if axis not in AXES:
        raise ValueError(f"axis must be one of {AXES}; got {axis!r}")
    a = AXES.index(axis)
    b = 1 - a
    length = float(micro.box_m[a])
    pos = 0.5 * length if position_m is None else float(position_m)
    if not np.isfinite(pos) or not 0.0 <= pos <= length:
        raise ValueError(f"position_m must lie in [0, {length:g}] m (the box along {axis}); "
                         f"got {position_m!r}")
    d = micro.positions_m[:, a] - pos
    if micro.periodic[a]:
        d -= length * np.round(d / length)
    r = micro.radii_m
    hit = np.abs(d) < r
    rs = np.sqrt(r[hit] ** 2 - d[hit] ** 2)
    u = micro.positions_m[hit, b].copy()
    z = micro.positions_m[hit, 2]
    sid = micro.species_id[hit]
    width = float(micro.box_m[b])
    if micro.periodic[b]:
        u = np.mod(u, width)
        left = u - rs < 0.0
        right = u + rs > width
        u = np.concatenate([u, u[left] + width, u[right] - width])
        z = np.concatenate([z, z[left], z[right]])
        rs = np.concatenate([rs, rs[left], rs[right]])
        sid = np.concatenate([sid, sid[left], sid[right]])
    return Section(axis=axis, position_m=pos, u_m=u, z_m=z, radius_m=rs, species_id=sid, width_m=width)
