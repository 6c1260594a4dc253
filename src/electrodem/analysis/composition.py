"""Composition metrics of a snapshot: the practical reporting set (002 Table 5, 004 Table 1).

Thickness, porosity, density, mass loading, areal capacity, wt% and vol% per phase, particle size
distribution per phase and counts. Pure NumPy on a `Microstructure`; no engine.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from electrodem.analysis.profiles import sphere_volume_below_m3
from electrodem.io.snapshot import Microstructure
from electrodem.materials.psd import d_values


def solid_volume_below_m3(micro: Microstructure, z_top_m: float) -> float:
    """Solid volume (m3) between the current collector (z = 0) and ``z_top_m``.

    Spheres cut by the plane count only their part below it (exact spherical-cap volumes), so the
    porosity of a layer whose top is fixed by a plate or a percentile is not biased by protrusions.
    """
    return float(np.sum(sphere_volume_below_m3(z_top_m, micro.positions_m[:, 2], micro.radii_m)))


def composition_metrics(micro: Microstructure) -> dict[str, Any]:
    """The composition part of the reporting set, with units in the keys.

    Thickness is `Microstructure.top_m` (the plate/front position if a process recorded one, else the
    highest particle surface). Porosity counts the solid between the CC and that top.
    """
    lx, ly = float(micro.box_m[0]), float(micro.box_m[1])
    area_m2 = lx * ly
    top = micro.top_m()
    v_solid = solid_volume_below_m3(micro, top)
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
        "density_g_cm3": m_total * 1e3 / (area_m2 * top * 1e6) if top > 0 else float("nan"),
        "mass_loading_mg_cm2": m_total * 1e6 / (area_m2 * 1e4),
        "areal_capacity_mAh_cm2": capacity_mAh / (area_m2 * 1e4),
        "phases": phases,
    }
