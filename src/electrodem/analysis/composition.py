"""Composition metrics of a snapshot: the practical reporting set (002 Table 5, 004 Table 1).

Thickness, porosity, density, mass loading, areal capacity, wt% and vol% per phase, particle size
distribution per phase and counts. Pure NumPy on a `Microstructure`; no engine.

Electrode thickness, one definition for every process step and the analysis (`layer_thickness`):

* **gauge** (the headline ``thickness``/``porosity``): the highest solid point, max(z + r), or the
  plate/roll position while a tool presses the layer (whichever is lower) — what a micrometer reads
  and what experiments combine with the mass loading to give the porosity. Its porosity is that
  mass-based one, 1 - (all the solid) / (area x thickness): the caps of spheres flattened against a
  tool (a plastic contact flattens, a sphere cannot, so they poke through it) are material of the
  layer, not material lost;
* **bulk** (``_bulk`` suffix, secondary): the height above which the solid-fraction profile, smoothed
  over the volume-weighted mean radius, stays below half its bulk value (`bulk_top_m`); insensitive
  to surface roughness, always <= the gauge thickness.

The bulk porosity at a height h = 1 - (solid volume below h, exact spherical caps) / (area x h).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from electrodem.analysis.profiles import sphere_volume_below_m3
from electrodem.io.snapshot import Microstructure
from electrodem.materials.psd import d_values

THICKNESS_DEFINITION = (
    "thickness/porosity: gauge, max(z + r) or the tool position while it presses, porosity mass-based "
    "(1 - solid volume / (area x thickness)); *_bulk: height where the smoothed solid fraction falls "
    "below half its bulk value, solid below it (electrodem.analysis.composition)"
)
"""The ``thickness_definition`` entry of the processing blocks of metrics.json."""

_PROFILE_BLOCK = 4_000_000
"""Particles x slab edges evaluated per vectorised block of `bed_profile` (bounds memory to ~32 MB)."""


def gauge_top_m(z_m: np.ndarray, r_m: np.ndarray, tool_z_m: float | None = None) -> float:
    """Gauge thickness (m): the highest particle surface max(z + r), or the tool (plate/roll)
    position ``tool_z_m`` when that is lower (a tool pressing the layer). 0 for no particles."""
    top = float(np.max(np.asarray(z_m) + np.asarray(r_m))) if len(z_m) else 0.0
    return top if tool_z_m is None else min(float(tool_z_m), top)


def bed_profile(
    z_m: np.ndarray, r_m: np.ndarray, area_m2: float, dz_m: float
) -> tuple[np.ndarray, np.ndarray]:
    """Solid fraction in horizontal slabs of thickness dz_m from z = 0 to the highest particle
    surface: (slab lower edges (m), solid fraction), from exact sphere-cap volumes."""
    z_m, r_m = np.asarray(z_m, dtype=np.float64), np.asarray(r_m, dtype=np.float64)
    top = gauge_top_m(z_m, r_m)
    edges = np.arange(0.0, top + dz_m, dz_m)
    vol = np.zeros(len(edges) - 1)
    chunk = max(1, _PROFILE_BLOCK // len(edges))
    for s in range(0, len(z_m), chunk):
        below = sphere_volume_below_m3(edges[None, :], z_m[s : s + chunk, None], r_m[s : s + chunk, None])
        vol += np.diff(below, axis=1).sum(axis=0)
    return edges[:-1], vol / (area_m2 * dz_m)


def bulk_top_m(z_m: np.ndarray, r_m: np.ndarray, area_m2: float) -> float:
    """Bulk thickness (m): the height above which the solid-fraction profile stays below half its
    bulk value.

    The profile is taken in slabs r_min / 8 thick and smoothed with a running mean over the
    volume-weighted mean radius (sum r^4 / sum r^3, the scale of the surface roughness). The bulk
    value is the solid volume between the heights below which 20 % and 70 % of the solid lies over
    that slab's volume (robust to the looser layer at the collector and to stray particles on top).
    The crossing is interpolated linearly inside its slab.
    """
    z_m, r_m = np.asarray(z_m, dtype=np.float64), np.asarray(r_m, dtype=np.float64)
    dz = float(r_m.min()) / 8.0
    z0, prof = bed_profile(z_m, r_m, area_m2, dz)
    width = max(1, int(round(float(np.sum(r_m**4) / np.sum(r_m**3)) / dz)))
    smooth = np.convolve(prof, np.ones(width) / width, mode="same")
    cum = np.cumsum(prof) * dz
    lo, hi = np.searchsorted(cum, [0.2 * cum[-1], 0.7 * cum[-1]])
    bulk = float((cum[hi] - cum[lo]) / ((hi - lo) * dz)) if hi > lo else float(prof.mean())
    half = 0.5 * bulk
    above = np.nonzero(smooth >= half)[0]
    k = int(above[-1]) if len(above) else len(smooth) - 1
    zc = z0 + 0.5 * dz
    if k + 1 < len(smooth) and smooth[k] > smooth[k + 1]:
        return float(zc[k] + (smooth[k] - half) / (smooth[k] - smooth[k + 1]) * dz)
    return float(zc[k] + 0.5 * dz)


def porosity_below(z_m: np.ndarray, r_m: np.ndarray, area_m2: float, h_m: float) -> float:
    """1 - (solid volume below h_m, exact spherical caps) / (area_m2 x h_m); NaN for h_m <= 0."""
    if not h_m > 0:
        return float("nan")
    return 1.0 - float(np.sum(sphere_volume_below_m3(h_m, z_m, r_m))) / (area_m2 * h_m)


def layer_thickness(
    z_m: np.ndarray,
    r_m: np.ndarray,
    area_m2: float,
    tool_z_m: float | None = None,
    *,
    bulk: bool = True,
) -> dict[str, float]:
    """Thickness (m) and porosity of a layer on the collector, on both definitions (module doc).

    Returns ``thickness_m`` and ``porosity`` (gauge: h = min(tool_z_m, max(z + r)), porosity 1 - sum
    of the sphere volumes / (area x h)) and, with ``bulk``, ``thickness_bulk_m`` and ``porosity_bulk``
    (half-bulk solid-fraction rule, `bulk_top_m`, solid below it by exact caps; the tool does not enter
    it). z_m, r_m: particle centre heights and radii (m); area_m2: the collector area (m^2) the
    particles stand on.
    """
    z_m, r_m = np.asarray(z_m, dtype=np.float64), np.asarray(r_m, dtype=np.float64)
    h = gauge_top_m(z_m, r_m, tool_z_m)
    solid = float(np.sum(4.0 / 3.0 * np.pi * r_m**3))
    out = {"thickness_m": h, "porosity": 1.0 - solid / (area_m2 * h) if h > 0 else float("nan")}
    if bulk:
        hb = bulk_top_m(z_m, r_m, area_m2) if len(z_m) else 0.0
        out |= {"thickness_bulk_m": hb, "porosity_bulk": porosity_below(z_m, r_m, area_m2, hb)}
    return out


def solid_volume_below_m3(micro: Microstructure, z_top_m: float) -> float:
    """Solid volume (m3) between the current collector (z = 0) and ``z_top_m``.

    Spheres cut by the plane count only their part below it (exact spherical-cap volumes), so the
    porosity of a layer whose top is fixed by a plate or a percentile is not biased by protrusions.
    """
    return float(np.sum(sphere_volume_below_m3(z_top_m, micro.positions_m[:, 2], micro.radii_m)))


def composition_metrics(micro: Microstructure) -> dict[str, Any]:
    """The composition part of the reporting set, with units in the keys.

    Thickness is `Microstructure.top_m` (the gauge thickness a process recorded, else the highest
    particle surface). Porosity counts the solid between the CC and that top. ``thickness_bulk_um``
    and ``porosity_bulk`` are the secondary, roughness-insensitive half-bulk measure (module doc).
    """
    lx, ly = float(micro.box_m[0]), float(micro.box_m[1])
    area_m2 = lx * ly
    top = micro.top_m()
    v_solid = solid_volume_below_m3(micro, top)
    z, r = micro.positions_m[:, 2], micro.radii_m
    h_bulk = bulk_top_m(z, r, area_m2) if micro.n else 0.0
    masses = micro.masses_kg
    vols = micro.volumes_m3
    m_total = float(masses.sum())
    v_total = float(vols.sum())
    phases: dict[str, Any] = {}
    capacity_mAh = 0.0
    for k, s in enumerate(micro.species):
        sel = micro.species_id == k
        d_um = 2e6 * micro.radii_m[sel]
        m_k = float(masses[sel].sum())
        capacity_mAh += m_k * 1e3 * s.specific_capacity_mAh_per_g
        dv = d_values(d_um, "volume")
        dn = d_values(d_um, "number")
        phases[s.name] = {
            "role": s.role,
            "count": int(sel.sum()),
            "wt_pct": 100.0 * m_k / m_total if m_total else 0.0,
            "vol_pct_of_solid": 100.0 * float(vols[sel].sum()) / v_total if v_total else 0.0,
            "vol_fraction_of_electrode": float(vols[sel].sum()) / (area_m2 * top) if top > 0 else 0.0,
            "psd_volume_basis_um": {"d10": dv[0], "d50": dv[1], "d90": dv[2]},
            "psd_number_basis_um": {"d10": dn[0], "d50": dn[1], "d90": dn[2]},
            "d_min_um": float(d_um.min()) if d_um.size else float("nan"),
            "d_max_um": float(d_um.max()) if d_um.size else float("nan"),
        }
    return {
        "n_particles": micro.n,
        "box_x_um": lx * 1e6,
        "box_y_um": ly * 1e6,
        "thickness_um": top * 1e6,
        "porosity": 1.0 - v_solid / (area_m2 * top) if top > 0 else float("nan"),
        "solid_fraction": v_solid / (area_m2 * top) if top > 0 else float("nan"),
        "thickness_bulk_um": h_bulk * 1e6,
        "porosity_bulk": porosity_below(z, r, area_m2, h_bulk),
        "density_g_cm3": m_total * 1e3 / (area_m2 * top * 1e6) if top > 0 else float("nan"),
        "mass_loading_mg_cm2": m_total * 1e6 / (area_m2 * 1e4),
        "areal_capacity_mAh_cm2": capacity_mAh / (area_m2 * 1e4),
        "phases": phases,
    }
