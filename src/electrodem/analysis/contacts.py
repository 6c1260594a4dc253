"""Contact graph of a particle microstructure: who touches whom, through how large a contact disc.

Conventions (shared with `percolation` and `resistor`)
-------------------------------------------------------
* A contact ``e`` joins particles ``i[e] < j[e]``; ``shift[e]`` (integers, one per axis) is the periodic
  image of ``j`` that touches ``i``: the branch vector is ``x[j] + shift * box - x[i]`` (minimum image).
  z is never periodic, so ``shift[:, 2] == 0``.
* ``overlap_m = r_i + r_j - d`` (> 0 interpenetration, < 0 a gap). Two particles are in contact when
  ``overlap_m >= -gap_tolerance_rel * min(r_i, r_j)``.
* Contact radius ``a``: for an overlap, the radius of the circle where the two sphere surfaces intersect
  (lens geometry); for a gap within tolerance (or an overlap so small that the lens is tiny) the rule
  ``a = max(a_geometric, min_contact_radius_rel * min(r_i, r_j))`` applies to every contact, so a
  contact that counts as one never has a zero-conductance disc. The same two rules hold for contacts
  with the current collector (plane z = 0) and the top (plane z = top).
* ``l_i_m`` / ``l_j_m``: distance from each centre to the contact plane (clipped to ``[0, r]``); the
  resistor model uses it for the particles' bulk resistance.

Through-plane terminals (what a measurement uses)
-------------------------------------------------
* The current collector is the plane z = 0: a particle touches it when ``z - r <= tol``.
* The top terminal is a probe plate pressed onto the electrode (or the separator in a cell). A gauge
  (micrometer, or the calender plate recorded in ``metadata['top_z_m']``) reads the *gauge top*
  ``h_g = micro.top_m()``: the highest asperities. Pressed with the probe pressure, the plate
  flattens those asperities and touches every particle of the free surface whose top lies within the
  *probe contact depth* ``delta`` of the gauge top. Rule: a particle touches the probe when (1) it is
  exposed, i.e. it owns at least one point of the surface height map (seen from above, no other
  particle's surface lies higher there; `exposed_particles`), and (2) ``z + r >= h_g - delta - tol``.
  Buried particles never touch the plate, however close to the top they are.
* Default ``delta`` (``top_layer_m=None``): one mean diameter of the AM particles (of all particles
  when there is no AM). Physical argument: the free surface of a particle packing is one particle
  layer thick, so its peak-to-valley roughness depth is about one particle diameter (the tops of the
  surface-layer particles scatter between the gauge top and about one diameter below it); a probe
  pressed hard enough to give a reproducible reading (the plateau of resistance against probe
  pressure) touches that layer. It is an assumption of this model, not a measured number; ``0``
  gives a rigid plate at zero load (only the highest asperities).
* The sample thickness under the probe, ``plate_level_m``, is the median of the tops of the probe's
  contacts, weighted by the area each particle exposes (capped at the gauge top): the level the
  pressed plate rests at. A lone asperity standing above the surface therefore neither defines
  the terminal nor inflates the thickness (a pressure cannot rest on one particle). The through-plane
  conductivity is sigma_z = I * plate_level_m / (V * Lx * Ly).
* The contact disc with the plate is the geometric one against the plane ``h_g`` (a particle that
  the calender plate cut through), floored at ``min_contact_radius_rel * r``.

Contacts come from the engine's ``micro.contacts`` when present (``source == "engine"``; the engine's
contact radius is kept where it is positive, the gap tolerance does not apply to them because the engine
reports only what it saw), else from geometry with a k-d tree (``source == "geometry"``). CC/top
contacts are always geometric.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from electrodem.io.snapshot import Microstructure

__all__ = [
    "ContactGraph",
    "build_contact_graph",
    "default_probe_depth_m",
    "exposed_particles",
    "lens_contact_radius",
    "lens_volume_m3",
    "phase_pair_table",
    "surface_owner_map",
]

MAX_HEIGHT_MAP_POINTS = 4_000_000
"""Largest surface height map (grid points) used to find the exposed particles; coarser maps miss
only exposed particles smaller than the grid pitch."""


@dataclass(frozen=True)
class ContactGraph:
    """Particle contacts and terminal (CC / top) contacts of one snapshot. Lengths in metres.

    Attributes
    ----------
    n_particles : number of particles (nodes).
    i, j : (E,) int64 particle indices, ``i < j``.
    shift : (E, 3) int64 periodic image of ``j`` (see module docstring).
    branch_m : (E, 3) vector from centre i to the touching image of centre j.
    overlap_m : (E,) ``r_i + r_j - d`` (negative for a gap within tolerance).
    contact_radius_m : (E,) contact disc radius a.
    l_i_m, l_j_m : (E,) distance from centre i / j to the contact plane.
    cc : (N,) bool, particle touches the current collector (z - r <= tol).
    cc_contact_radius_m, cc_l_m : (N,) disc radius and centre-to-plane distance (0 where not touching).
    top : (N,) bool, particle touches the top probe (module docstring: exposed, top within the probe
        contact depth of the gauge top).
    top_contact_radius_m, top_l_m : (N,) as for the CC (against the gauge-top plane).
    top_m : sample thickness under the probe (m): the plate level, the length of through-plane
        transport (module docstring).
    gauge_top_m : gauge top ``micro.top_m()`` (m).
    probe_depth_m : probe contact depth used (m).
    box_m : (3,) box lengths.
    periodic : periodic flags (x, y, z).
    source : "engine" or "geometry" (particle-particle contacts).
    gap_tolerance_rel, min_contact_radius_rel : the rules used.
    """

    n_particles: int
    i: np.ndarray
    j: np.ndarray
    shift: np.ndarray
    branch_m: np.ndarray
    overlap_m: np.ndarray
    contact_radius_m: np.ndarray
    l_i_m: np.ndarray
    l_j_m: np.ndarray
    cc: np.ndarray
    cc_contact_radius_m: np.ndarray
    cc_l_m: np.ndarray
    top: np.ndarray
    top_contact_radius_m: np.ndarray
    top_l_m: np.ndarray
    top_m: float
    gauge_top_m: float
    probe_depth_m: float
    box_m: np.ndarray
    periodic: tuple[bool, bool, bool]
    source: str
    gap_tolerance_rel: float
    min_contact_radius_rel: float

    @property
    def n_contacts(self) -> int:
        """Number of particle-particle contacts."""
        return len(self.i)

    def coordination(self) -> np.ndarray:
        """(N,) number of particle-particle contacts of each particle."""
        return np.bincount(np.concatenate([self.i, self.j]), minlength=self.n_particles)

    def subgraph(self, node_mask: np.ndarray) -> np.ndarray:
        """Boolean (E,) mask of contacts whose two ends are both in ``node_mask``."""
        return node_mask[self.i] & node_mask[self.j]


def lens_contact_radius(d: np.ndarray, r1: np.ndarray, r2: np.ndarray) -> np.ndarray:
    """Radius (m) of the intersection circle of two spheres with centre distance ``d``.

    Zero when the spheres do not overlap; ``min(r1, r2)`` when one contains the other.
    Heron-like product form, stable for small overlaps.
    """
    d, r1, r2 = np.broadcast_arrays(np.asarray(d, float), np.asarray(r1, float), np.asarray(r2, float))
    prod = (-d + r1 + r2) * (d - r1 + r2) * (d + r1 - r2) * (d + r1 + r2)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.sqrt(np.clip(prod, 0.0, None)) / (2.0 * d)
    a = np.where(d + np.minimum(r1, r2) <= np.maximum(r1, r2), np.minimum(r1, r2), a)
    return np.where(d >= r1 + r2, 0.0, a)


def lens_volume_m3(d: np.ndarray, r1: np.ndarray, r2: np.ndarray) -> np.ndarray:
    """Volume (m3) common to two spheres of radii ``r1``, ``r2`` (m) with centre distance ``d`` (m):
    pi (r1 + r2 - d)^2 (d^2 + 2 d (r1 + r2) - 3 (r1 - r2)^2) / (12 d); 0 apart, the smaller sphere's
    volume when it lies inside the other. The solid a sphere packing counts twice in its contacts."""
    d, r1, r2 = np.broadcast_arrays(np.asarray(d, float), np.asarray(r1, float), np.asarray(r2, float))
    h = np.clip(r1 + r2 - d, 0.0, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.pi * h**2 * (d * d + 2.0 * d * (r1 + r2) - 3.0 * (r1 - r2) ** 2) / (12.0 * d)
    inside = d + np.minimum(r1, r2) <= np.maximum(r1, r2)
    return np.where(inside, 4.0 / 3.0 * np.pi * np.minimum(r1, r2) ** 3, np.where(h > 0, v, 0.0))


def _plane_distance(d: np.ndarray, r1: np.ndarray, r2: np.ndarray) -> np.ndarray:
    """Distance from centre 1 to the radical plane of the two spheres, clipped to [0, r1]."""
    with np.errstate(divide="ignore", invalid="ignore"):
        x1 = (d * d + r1 * r1 - r2 * r2) / (2.0 * d)
    return np.clip(np.nan_to_num(x1, nan=0.0), 0.0, r1)


def default_probe_depth_m(micro: Microstructure) -> float:
    """Default probe contact depth (m): one mean diameter of the AM particles, or of all particles when
    there is no AM (the roughness depth of a one-particle-thick free surface; module docstring)."""
    if micro.n == 0:
        return 0.0
    am = micro.role_mask("AM")
    r = micro.radii_m[am] if am.any() else micro.radii_m
    return float(2.0 * r.mean())


def surface_owner_map(
    micro: Microstructure,
    candidates: np.ndarray,
    shape_xy: tuple[int, int],
    x: np.ndarray | None = None,
) -> np.ndarray:
    """(nx, ny) index of the particle whose surface is highest above each lateral grid point, -1 where
    no candidate covers the point: the surface height map of the free top, seen from above.

    Grid point (i, k) sits at ((i + 0.5) Lx / nx, (k + 0.5) Ly / ny), the voxel-column centres of
    `electrodem.analysis.voxelize`; x/y wrap when periodic. Only ``candidates`` ((N,) bool) are
    rasterised: a particle can hide a candidate only if its own top is higher, so passing every
    particle whose top lies within the probe depth of the gauge top is exact for those particles.
    """
    nx, ny = shape_xy
    pos = micro.positions_m if x is None else x
    r = micro.radii_m
    dx, dy = float(micro.box_m[0]) / nx, float(micro.box_m[1]) / ny
    height = np.full(nx * ny, -np.inf)
    owner = np.full(nx * ny, -1, np.int64)
    idx = np.flatnonzero(candidates)
    # Highest tops first: a later (lower-topped) particle wins a point only by being higher there.
    for k in idx[np.argsort(-(pos[idx, 2] + r[idx]), kind="stable")]:
        xc, yc, zc, rk = pos[k, 0], pos[k, 1], pos[k, 2], r[k]
        ix = np.arange(math.ceil((xc - rk) / dx - 0.5), math.floor((xc + rk) / dx - 0.5) + 1)
        iy = np.arange(math.ceil((yc - rk) / dy - 0.5), math.floor((yc + rk) / dy - 0.5) + 1)
        if ix.size == 0 or iy.size == 0:
            continue
        d2 = (((ix + 0.5) * dx - xc) ** 2)[:, None] + (((iy + 0.5) * dy - yc) ** 2)[None, :]
        inside = d2 < rk * rk
        if micro.periodic[0]:
            ix = np.mod(ix, nx)
        else:
            inside &= ((ix >= 0) & (ix < nx))[:, None]
            ix = np.clip(ix, 0, nx - 1)
        if micro.periodic[1]:
            iy = np.mod(iy, ny)
        else:
            inside &= ((iy >= 0) & (iy < ny))[None, :]
            iy = np.clip(iy, 0, ny - 1)
        flat = (ix[:, None] * ny + iy[None, :])[inside]
        zs = zc + np.sqrt(rk * rk - d2[inside])
        win = zs > height[flat]
        height[flat[win]] = zs[win]
        owner[flat[win]] = k
    return owner.reshape(nx, ny)


def exposed_particles(
    micro: Microstructure,
    candidates: np.ndarray,
    x: np.ndarray | None = None,
    max_points: int = MAX_HEIGHT_MAP_POINTS,
) -> tuple[np.ndarray, np.ndarray]:
    """Which particles form the free top surface, and the footprint area (m2) each of them shows.

    A particle is exposed when it owns at least one point of the surface height map
    (`surface_owner_map`). The grid pitch is half the smallest candidate radius (so every candidate
    covers grid points), coarsened to at most ``max_points`` points; a coarse map can miss an exposed
    particle smaller than its pitch. Returns ``(exposed, area_m2)``, both (N,), False / 0 outside
    ``candidates``.
    """
    n = micro.n
    idx = np.flatnonzero(candidates)
    if idx.size == 0:
        return np.zeros(n, bool), np.zeros(n)
    lx, ly = float(micro.box_m[0]), float(micro.box_m[1])
    pitch = max(0.5 * float(micro.radii_m[idx].min()), math.sqrt(lx * ly / max_points))
    nx, ny = max(1, round(lx / pitch)), max(1, round(ly / pitch))
    owner = surface_owner_map(micro, candidates, (nx, ny), x)
    counts = np.bincount(owner[owner >= 0], minlength=n)
    return counts > 0, counts * (lx / nx) * (ly / ny)


def _probe(micro: Microstructure, x: np.ndarray, r: np.ndarray, tol: np.ndarray, depth_m: float
           ) -> tuple[np.ndarray, float, float]:
    """(touching (N,), gauge top, plate level) of the probe rule in the module docstring."""
    h_g = float(micro.top_m())
    tops = x[:, 2] + r
    near = tops >= h_g - depth_m - tol
    exposed, area = exposed_particles(micro, near, x)
    touch = near & exposed
    if not touch.any():
        return touch, h_g, h_g
    t = np.minimum(tops[touch], h_g)
    w = area[touch]
    order = np.argsort(t)
    cw = np.cumsum(w[order])
    level = float(t[order][np.searchsorted(cw, 0.5 * cw[-1])])
    return touch, h_g, level


def _check(micro: Microstructure, gap_tolerance_rel: float, min_contact_radius_rel: float) -> None:
    if not (np.isfinite(gap_tolerance_rel) and 0.0 <= gap_tolerance_rel < 1.0):
        raise ValueError(f"gap_tolerance_rel={gap_tolerance_rel!r} is invalid: must be in [0, 1)")
    if not (np.isfinite(min_contact_radius_rel) and 0.0 < min_contact_radius_rel <= 1.0):
        raise ValueError(
            f"min_contact_radius_rel={min_contact_radius_rel!r} is invalid: must be in (0, 1]"
        )
    if micro.periodic[2]:
        raise ValueError("micro.periodic[2]=True is invalid: z must not be periodic (z = 0 is the CC)")
    if not np.all(np.isfinite(micro.positions_m)):
        raise ValueError("micro.positions_m contains non-finite values")


def _candidate_pairs(x: np.ndarray, r: np.ndarray, boxsize: np.ndarray, tol_rel: float) -> np.ndarray:
    """All pairs (i < j) whose minimum-image distance is below ``(r_i + r_j)(1 + tol)``.

    Radii are grouped in bins of a factor 2 so that a few large particles do not inflate the search
    radius of the many small ones (size ratios of 10-50 are normal for AM vs coarse-grained CB).
    """
    n = len(r)
    if n < 2:
        return np.zeros((0, 2), np.int64)
    rmin = r.min()
    bins = np.floor(np.log2(r / rmin) + 1e-12).astype(np.int64)
    groups = [np.flatnonzero(bins == b) for b in np.unique(bins)]
    trees = [cKDTree(x[g], boxsize=boxsize) for g in groups]
    rmax = [r[g].max() for g in groups]
    out = []
    for a in range(len(groups)):
        for b in range(a, len(groups)):
            cut = (rmax[a] + rmax[b]) * (1.0 + tol_rel)
            if a == b:
                p = trees[a].query_pairs(cut, output_type="ndarray")
                if len(p):
                    out.append(groups[a][p])
            else:
                sdm = trees[a].sparse_distance_matrix(trees[b], cut, output_type="ndarray")
                if len(sdm):
                    out.append(np.stack([groups[a][sdm["i"]], groups[b][sdm["j"]]], axis=1))
    if not out:
        return np.zeros((0, 2), np.int64)
    p = np.concatenate(out).astype(np.int64)
    p.sort(axis=1)
    return p


def _min_image(x: np.ndarray, i: np.ndarray, j: np.ndarray, box: np.ndarray, per: np.ndarray):
    dx = x[j] - x[i]
    shift = np.zeros_like(dx, dtype=np.int64)
    for k in range(3):
        if per[k]:
            shift[:, k] = -np.round(dx[:, k] / box[k]).astype(np.int64)
            dx[:, k] += shift[:, k] * box[k]
    return dx, shift


def build_contact_graph(
    micro: Microstructure,
    gap_tolerance_rel: float = 0.01,
    min_contact_radius_rel: float = 0.05,
    use_engine_contacts: bool = True,
    top_layer_m: float | None = None,
) -> ContactGraph:
    """Contact graph of ``micro`` (see the module docstring for the rules).

    Parameters
    ----------
    gap_tolerance_rel : a gap up to this fraction of the smaller radius still counts as a contact
        (also for the CC and top planes, relative to the particle's radius).
    min_contact_radius_rel : floor of the contact radius, as a fraction of the smaller radius.
    use_engine_contacts : take particle-particle contacts from ``micro.contacts`` when present.
    top_layer_m : probe contact depth (m): exposed particles whose top lies within this distance below
        the gauge top touch the top probe; None (default) = one mean AM diameter
        (`default_probe_depth_m`); 0 = a rigid plate at zero load. Module docstring: the rule and why.
    """
    _check(micro, gap_tolerance_rel, min_contact_radius_rel)
    if top_layer_m is None:
        top_layer_m = default_probe_depth_m(micro)
    if not (np.isfinite(top_layer_m) and top_layer_m >= 0.0):
        raise ValueError(f"top_layer_m={top_layer_m!r} is invalid: must be None or a finite length >= 0")
    n = micro.n
    r = micro.radii_m
    box = micro.box_m
    per = np.array(micro.periodic[:2] + (False,))
    cutoff = 2.0 * (r.max() if n else 0.0) * (1.0 + gap_tolerance_rel)
    for k in range(2):
        if per[k] and n and box[k] <= 2.0 * cutoff:
            raise ValueError(
                f"micro.box_m[{k}]={box[k]!r} is invalid: a periodic axis must exceed twice the largest "
                f"contact distance ({2 * cutoff:.3e} m) for the minimum-image convention"
            )
    x = micro.positions_m.copy()
    for k in range(2):
        if per[k]:
            x[:, k] = np.mod(x[:, k], box[k])
            x[x[:, k] >= box[k], k] = 0.0

    if use_engine_contacts and micro.contacts is not None:
        source = "engine"
        c = micro.contacts
        ij = np.stack([np.asarray(c.i, np.int64), np.asarray(c.j, np.int64)], axis=1)
        keep = ij[:, 0] != ij[:, 1]
        ij, a_eng = ij[keep], np.asarray(c.contact_radius_m, float)[keep]
        order = np.argsort(ij, axis=1)
        ij = np.take_along_axis(ij, order, axis=1)
        ij, first = np.unique(ij, axis=0, return_index=True)
        a_eng = a_eng[first]
        i, j = ij[:, 0], ij[:, 1]
        dx, shift = _min_image(x, i, j, box, per)
        d = np.linalg.norm(dx, axis=1)
    else:
        source = "geometry"
        boxsize = np.where(per, box, 0.0)
        p = _candidate_pairs(x, r, boxsize, gap_tolerance_rel)
        i, j = p[:, 0], p[:, 1]
        dx, shift = _min_image(x, i, j, box, per)
        d = np.linalg.norm(dx, axis=1)
        rmin_pair = np.minimum(r[i], r[j])
        keep = r[i] + r[j] - d >= -gap_tolerance_rel * rmin_pair
        i, j, shift, d, dx = i[keep], j[keep], shift[keep], d[keep], dx[keep]
        a_eng = None

    ri, rj = r[i], r[j]
    a_geo = lens_contact_radius(d, ri, rj)
    if a_eng is not None:
        a_geo = np.where(np.isfinite(a_eng) & (a_eng > 0), a_eng, a_geo)
    a = np.maximum(a_geo, min_contact_radius_rel * np.minimum(ri, rj))

    z = x[:, 2]
    tol = gap_tolerance_rel * r
    cc = z - r <= tol
    tp, top, level = _probe(micro, x, r, tol, float(top_layer_m)) if n else (np.zeros(0, bool), 0.0, 0.0)
    a_min = min_contact_radius_rel * r
    a_cc = np.where(cc, np.maximum(np.sqrt(np.clip(r**2 - z**2, 0, None)), a_min), 0.0)
    h_top = top - z
    a_top = np.where(tp, np.maximum(np.sqrt(np.clip(r**2 - h_top**2, 0, None)), a_min), 0.0)
    return ContactGraph(
        n_particles=n,
        i=i.astype(np.int64),
        j=j.astype(np.int64),
        shift=shift.astype(np.int64),
        branch_m=dx,
        overlap_m=ri + rj - d,
        contact_radius_m=a,
        l_i_m=_plane_distance(d, ri, rj),
        l_j_m=_plane_distance(d, rj, ri),
        cc=cc,
        cc_contact_radius_m=a_cc,
        cc_l_m=np.where(cc, np.clip(z, 0.0, r), 0.0),
        top=tp,
        top_contact_radius_m=a_top.astype(float),
        top_l_m=np.where(tp, np.clip(h_top, 0.0, r), 0.0),
        top_m=level,
        gauge_top_m=top,
        probe_depth_m=float(top_layer_m),
        box_m=box.copy(),
        periodic=tuple(bool(v) for v in per),  # type: ignore[arg-type]
        source=source,
        gap_tolerance_rel=float(gap_tolerance_rel),
        min_contact_radius_rel=float(min_contact_radius_rel),
    )


def phase_pair_table(micro: Microstructure, graph: ContactGraph, by: str = "role") -> dict[str, dict]:
    """Contacts per phase pair: count and total disc area (m2), plus the CC and top contacts.

    ``by`` is "role" (AM, CB, SE, binder, other) or "species" (species names). Keys are sorted pair
    names "A-B"; the pseudo-phases "CC" and "top" name the two planes.
    """
    if by not in ("role", "species"):
        raise ValueError(f"by={by!r} is invalid: use 'role' or 'species'")
    names = np.array([s.role if by == "role" else s.name for s in micro.species])[micro.species_id]
    area = np.pi * graph.contact_radius_m**2
    table: dict[str, dict] = {}

    def add(key: str, count: int, a_m2: float) -> None:
        t = table.setdefault(key, {"count": 0, "area_m2": 0.0})
        t["count"] += int(count)
        t["area_m2"] += float(a_m2)

    if graph.n_contacts:
        uniq, code = np.unique(names, return_inverse=True)
        ci, cj = code[graph.i], code[graph.j]
        pair = np.minimum(ci, cj) * len(uniq) + np.maximum(ci, cj)
        counts = np.bincount(pair, minlength=len(uniq) ** 2)
        areas = np.bincount(pair, weights=area, minlength=len(uniq) ** 2)
        for p in np.flatnonzero(counts):
            add(f"{uniq[p // len(uniq)]}-{uniq[p % len(uniq)]}", counts[p], areas[p])
    for plane, mask, ar in (("CC", graph.cc, graph.cc_contact_radius_m),
                            ("top", graph.top, graph.top_contact_radius_m)):
        for nm in np.unique(names[mask]):
            sel = mask & (names == nm)
            add(f"{nm}-{plane}", np.count_nonzero(sel), (np.pi * ar[sel] ** 2).sum())
    return dict(sorted(table.items()))
