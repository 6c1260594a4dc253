"""The structure-dependent reporting set (DOMAIN.md §3) of one snapshot: `analyse` and `format_table`.

`analyse(micro, params)` returns a JSON-serialisable dict whose keys carry units. Sections:

* ``snapshot``: size, box, thickness, where the contacts came from.
* ``composition``: `electrodem.analysis.composition.composition_metrics` (thickness, porosity, density,
  loading, areal capacity, wt%/vol%, PSD per phase).
* ``contacts``: counts, coordination, contact count and area per phase pair (CC and top included).
* ``porosity``: geometric (sphere volumes below the top) and from the voxel image: total, open
  (connected to the separator side), through-connected (connected to the separator and the CC),
  dead-end (open, not through) and closed (not connected to the separator).
* ``profiles``: through-thickness volume fractions (porosity, each role, each species) from exact
  sphere-slab volumes, and top/bottom ratios of CB, binder, CBD (= CB + binder) and AM.
* ``surface``: specific solid-pore surface, exposed AM surface, CBD-AM, CB-AM, CBD-CC, AM-CC and AM-SE
  contact areas.
* ``percolation``: per network (electronic, ionic) through-plane and in-plane spanning and fractions;
  ``isolated_am``.
* ``conductivity``: sigma_eff per network and direction from the resistor network and from the voxel
  solver.
* ``tortuosity``: eps, sigma_eff/sigma_0, tau = eps sigma_0 / sigma_eff, MacMullin number and Bruggeman
  exponent per direction for the pore phase (liquid electrolyte) and the SE phase (when present).
* ``bonds``: fibril / bridge network when the snapshot carries bonds (counts, length per binder mass,
  particles bridged).
* ``rate_capability``: penetration depth L_d = (eps / tau) D0 C0 F / ((1 - t+) I) and usable capacity
  ratio Q_eff / Q0 = min(1, L_d / h) for the chosen C-rate (004 eq. 2-3).

Infinite values (tau of a non-percolating phase, ratios over an empty bottom slab) are written as the
string "inf"; nothing is NaN.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from electrodem.analysis.composition import composition_metrics, solid_volume_below_m3
from electrodem.analysis.contacts import ContactGraph, build_contact_graph, phase_pair_table
from electrodem.analysis.percolation import NOT_APPLICABLE_IONIC, percolation_analysis
from electrodem.analysis.profiles import sphere_volume_below_m3
from electrodem.analysis.resistor import BULK_MODELS, resistor_conductivity
from electrodem.config.errors import ConfigError, require_known_keys
from electrodem.io.snapshot import Microstructure

__all__ = ["AnalysisParams", "analyse", "format_table", "write_metrics"]

FARADAY_C_PER_MOL = 96485.33212
ELECTROLYTES = ("auto", "liquid", "solid")


def _err(key: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"analysis.{key}", value, allowed)


def _num(v: Any) -> bool:
    return isinstance(v, (int, float, np.number)) and not isinstance(v, bool) and math.isfinite(float(v))


@dataclass(frozen=True)
class AnalysisParams:
    """Parameters of `analyse`; every value is validated at construction (`ConfigError` on bad input).

    Contacts: ``gap_tolerance_rel`` (gap / smaller radius still counted as contact),
    ``min_contact_radius_rel`` (floor of the contact radius / smaller radius), ``use_engine_contacts``,
    ``top_layer_thickness_um``: the probe contact depth (um) of the through-plane top terminal, a probe
    plate pressed on the electrode: the exposed particles whose top lies within this depth of the gauge
    top touch it (`electrodem.analysis.contacts`, "Through-plane terminals"); None (default) = one mean
    AM diameter, the roughness depth of a one-particle-thick free surface (assumed); 0 = a rigid plate
    at zero load, touching only the highest asperities.
    Resistor: ``run_resistor``, ``bulk_resistance`` ("none" = Holm constriction only, "flux_tube", or
    "sphere" = the exact spreading factor of a disc on a sphere; see `electrodem.analysis.resistor` for
    the models and how they compare with the voxel solver). With ``run_cbd`` the electronic network
    adds the CBD neck fillets (conductivity ``cbd_sigma_e_S_per_m``) to the AM-AM contacts they bridge.
    Voxel: ``run_voxel``, ``voxels_per_smallest_diameter`` (coarsened if the image would exceed
    ``max_voxels``; the resolution used is reported), ``voxel_flux_rtol`` (stopping criterion).
    ``directions``: subset of x, y, z for conductivities and tortuosities.
    CBD (`electrodem.analysis.cbd`): ``cbd_porosity`` (internal porosity of the carbon-binder domain;
    0.5 assumed, mid of the 0.4-0.6 range of issue 15), ``cbd_sigma_e_S_per_m`` (effective electronic
    conductivity of the porous CBD; 10 S/m assumed, to be calibrated on the wet in-plane four-probe
    value, Kang et al. 2025: 4 S/m for the electrode), ``cbd_ionic_transport_factor`` (conductivity of
    the electrolyte-filled CBD / that of the free electrolyte = eps_CBD / tau_CBD; None = Bruggeman
    eps_CBD^1.5, assumed); ``run_cbd`` (build the CBD, add its neck fillets to the electronic resistor
    network and solve it in the voxel image).
    Profiles: ``n_profile_bins`` slabs over the thickness; top/bottom ratios compare the top and bottom
    ``top_bottom_fraction`` of the thickness.
    Rate capability: ``electrolyte`` ("auto": solid when a species conducts ions, else liquid),
    ``c_rate_per_h``, ``electrolyte_D0_m2_per_s``, ``electrolyte_C0_mol_per_m3``, ``transference_number``.
    """

    gap_tolerance_rel: float = 0.01
    min_contact_radius_rel: float = 0.05
    use_engine_contacts: bool = True
    top_layer_thickness_um: float | None = None
    run_resistor: bool = True
    bulk_resistance: str = "none"
    run_voxel: bool = True
    voxels_per_smallest_diameter: float = 10.0
    max_voxels: int = 8_000_000
    voxel_flux_rtol: float = 1e-4
    directions: tuple[str, ...] = ("x", "y", "z")
    run_cbd: bool = True
    cbd_porosity: float = 0.5
    cbd_sigma_e_S_per_m: float = 10.0
    cbd_ionic_transport_factor: float | None = None
    n_profile_bins: int = 20
    top_bottom_fraction: float = 0.2
    electrolyte: str = "auto"
    c_rate_per_h: float = 1.0
    electrolyte_D0_m2_per_s: float = 3.0e-10
    electrolyte_C0_mol_per_m3: float = 1000.0
    transference_number: float = 0.38
    progress: bool = False

    def __post_init__(self) -> None:
        for key in ("use_engine_contacts", "run_resistor", "run_voxel", "progress", "run_cbd"):
            if not isinstance(getattr(self, key), bool):
                raise _err(key, getattr(self, key), "true or false")
        checks = {
            "gap_tolerance_rel": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
            "min_contact_radius_rel": (lambda v: 0 < v <= 1, "a number in (0, 1]"),
            "voxels_per_smallest_diameter": (lambda v: v > 0, "a number > 0"),
            "voxel_flux_rtol": (lambda v: 1e-9 <= v < 1, "a relative tolerance in [1e-9, 1)"),
            "top_bottom_fraction": (lambda v: 0 < v <= 0.5, "a fraction in (0, 0.5]"),
            "c_rate_per_h": (lambda v: v > 0, "a C-rate > 0 (1/h)"),
            "electrolyte_D0_m2_per_s": (lambda v: 0 < v < 1e-6, "a diffusivity in (0, 1e-6) m2/s"),
            "electrolyte_C0_mol_per_m3": (lambda v: v > 0, "a concentration > 0 in mol/m3"),
            "transference_number": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
            "cbd_porosity": (lambda v: 0 <= v < 1, "an internal porosity in [0, 1) (0.4-0.6 typical)"),
            "cbd_sigma_e_S_per_m": (lambda v: 0 < v < 1e8, "a conductivity in (0, 1e8) S/m"),
        }
        f = self.cbd_ionic_transport_factor
        if f is not None and (not _num(f) or not 0 < float(f) <= 1):
            raise _err("cbd_ionic_transport_factor", f,
                       "null (Bruggeman cbd_porosity^1.5) or a factor in (0, 1]")
        tl = self.top_layer_thickness_um
        if tl is not None and (not _num(tl) or float(tl) < 0):
            raise _err("top_layer_thickness_um", tl,
                       "null (one mean AM diameter) or a probe contact depth >= 0 in um")
        for key, (ok, allowed) in checks.items():
            v = getattr(self, key)
            if not _num(v) or not ok(float(v)):
                raise _err(key, v, allowed)
        for key, lo in (("max_voxels", 1000), ("n_profile_bins", 1)):
            v = getattr(self, key)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < lo:
                raise _err(key, v, f"an integer >= {lo}")
        if self.bulk_resistance not in BULK_MODELS:
            raise _err("bulk_resistance", self.bulk_resistance, f"one of {BULK_MODELS}")
        if self.electrolyte not in ELECTROLYTES:
            raise _err("electrolyte", self.electrolyte, f"one of {ELECTROLYTES}")
        d = self.directions
        if isinstance(d, str) or not isinstance(d, (list, tuple)) or not d \
                or any(a not in ("x", "y", "z") for a in d) or len(set(d)) != len(d):
            raise _err("directions", d, "a non-empty list of distinct axes from x, y, z")
        object.__setattr__(self, "directions", tuple(d))

    def cbd_transport_factor(self) -> float:
        """sigma_ion(CBD) / sigma_electrolyte: the parameter, or Bruggeman cbd_porosity^1.5."""
        f = self.cbd_ionic_transport_factor
        return float(f) if f is not None else float(self.cbd_porosity) ** 1.5

    @classmethod
    def from_dict(cls, cfg: dict[str, Any] | None) -> AnalysisParams:
        """Build from a config mapping (e.g. ``configs/analysis/*.yaml``), refusing unknown keys."""
        cfg = dict(cfg or {})
        require_known_keys(cfg, (f.name for f in fields(cls)), "analysis")
        return cls(**cfg)


# ---------------------------------------------------------------------------------------------- helpers
def _slab_volumes(micro: Microstructure, edges: np.ndarray, sel: np.ndarray) -> np.ndarray:
    """Solid volume of the selected spheres inside each slab [edges[k], edges[k+1]) (m3)."""
    z, r = micro.positions_m[sel, 2], micro.radii_m[sel]
    if len(z) == 0:
        return np.zeros(len(edges) - 1)
    return np.diff(sphere_volume_below_m3(edges[:, None], z[None, :], r[None, :]).sum(axis=1))


def _ratio(top: float, bottom: float, scale: float) -> float:
    """top / bottom, treating volumes below 1e-12 of ``scale`` (cap-volume round-off) as zero."""
    tiny = 1e-12 * scale
    top, bottom = (top if top > tiny else 0.0), (bottom if bottom > tiny else 0.0)
    if bottom > 0:
        return top / bottom
    return math.inf if top > 0 else 1.0


def _profiles(micro: Microstructure, h: float, p: AnalysisParams) -> dict[str, Any]:
    area = float(micro.box_m[0] * micro.box_m[1])
    edges = np.linspace(0.0, h, p.n_profile_bins + 1)
    vslab = area * np.diff(edges)
    by_role: dict[str, list[float]] = {}
    total = np.zeros(p.n_profile_bins)
    for role in sorted({s.role for s in micro.species}):
        v = _slab_volumes(micro, edges, micro.role_mask(role))
        by_role[role] = (v / vslab).tolist()
        total += v
    by_species = {
        s.name: (_slab_volumes(micro, edges, micro.species_id == k) / vslab).tolist()
        for k, s in enumerate(micro.species)
    }
    f = p.top_bottom_fraction
    tb_edges = np.array([0.0, f * h, (1 - f) * h, h])
    ratios: dict[str, Any] = {}
    groups = {"CB": ("CB",), "binder": ("binder",), "CBD": ("CB", "binder"), "AM": ("AM",)}
    for name, roles in groups.items():
        sel = np.zeros(micro.n, bool)
        for role in roles:
            sel |= micro.role_mask(role)
        if not sel.any():
            ratios[name] = "no such phase"
            continue
        v = _slab_volumes(micro, tb_edges, sel)
        ratios[name] = _ratio(v[2], v[0], float(micro.volumes_m3[sel].sum()))
    return {
        "z_center_um": (0.5 * (edges[1:] + edges[:-1]) * 1e6).tolist(),
        "bin_thickness_um": float(h / p.n_profile_bins * 1e6),
        "porosity": np.clip(1.0 - total / vslab, 0.0, 1.0).tolist(),
        "vol_fraction_by_role": by_role,
        "vol_fraction_by_species": by_species,
        "top_bottom_ratio": ratios,
        "top_bottom_definition": (
            f"mean volume fraction in the top {f:.0%} of the thickness / in the bottom {f:.0%} "
            "(exact sphere-slab volumes; CBD = CB + binder)"
        ),
    }


def _surface(micro: Microstructure, g: ContactGraph, pairs: dict[str, dict], h: float) -> dict[str, Any]:
    """Sphere surfaces minus the areas hidden by contacts (lens caps, or the contact disc for a gap)."""
    r = micro.radii_m
    area_fp = float(micro.box_m[0] * micro.box_m[1])
    hidden = np.zeros(micro.n)
    disc = np.pi * g.contact_radius_m**2
    np.add.at(hidden, g.i, np.maximum(2 * np.pi * r[g.i] * (r[g.i] - g.l_i_m), disc))
    np.add.at(hidden, g.j, np.maximum(2 * np.pi * r[g.j] * (r[g.j] - g.l_j_m), disc))
    cc = g.cc
    a_cc = g.cc_contact_radius_m[cc]
    hidden[cc] += np.maximum(2 * np.pi * r[cc] * (r[cc] - g.cc_l_m[cc]), np.pi * a_cc**2)
    # The top probe is a measuring device, not part of the electrode: it hides only the cap it cuts
    # geometrically (a calender plate pressed into a particle), never the probe's floor disc.
    tp = g.top
    hidden[tp] += 2 * np.pi * r[tp] * (r[tp] - g.top_l_m[tp])
    full = 4 * np.pi * r**2
    exposed = np.clip(full - hidden, 0.0, None)
    am = micro.role_mask("AM")
    am_surface = float(full[am].sum())
    mass_g = float(micro.masses_kg.sum() * 1e3)

    def pair_area(*keys: str) -> float:
        return float(sum(pairs.get(k, {}).get("area_m2", 0.0) for k in keys))

    out: dict[str, Any] = {
        "specific_surface_m2_per_m3": float(exposed.sum() / (area_fp * h)) if h > 0 else 0.0,
        "specific_surface_m2_per_g_solid": float(exposed.sum() / mass_g) if mass_g > 0 else 0.0,
        "am_surface_m2_per_m2_footprint": am_surface / area_fp,
        "exposed_am_surface_m2_per_m2_footprint": float(exposed[am].sum() / area_fp),
        "exposed_am_surface_fraction": float(exposed[am].sum() / am_surface) if am_surface > 0 else 0.0,
    }
    contact = {
        "cb_am": pair_area("AM-CB"),
        "cbd_am": pair_area("AM-CB", "AM-binder"),
        "cbd_cc": pair_area("CB-CC", "binder-CC"),
        "am_cc": pair_area("AM-CC"),
        "am_se": pair_area("AM-SE"),
        "se_se": pair_area("SE-SE"),
        "am_am": pair_area("AM-AM"),
    }
    for k, v in contact.items():
        out[f"{k}_contact_area_m2_per_m2_footprint"] = v / area_fp
    if am_surface > 0:
        for k in ("cb_am", "cbd_am", "am_se"):
            out[f"{k}_contact_area_per_am_surface"] = contact[k] / am_surface
    out["note"] = (
        "geometric: sphere surfaces minus lens caps / contact discs; coarse-grained CB underestimates "
        "BET-like surfaces"
    )
    return out


def _bonds(micro: Microstructure) -> dict[str, Any] | str:
    """Bond (fibril / solid-bridge) network: intact and broken counts, total intact length, length per
    binder mass, particles bridged by intact bonds (per role), fraction of AM bridged."""
    bonds = micro.bonds
    if not bonds or "i" not in bonds or "j" not in bonds:
        return "no bonds in the snapshot"
    i, j = np.asarray(bonds["i"], np.int64), np.asarray(bonds["j"], np.int64)
    broken = np.asarray(bonds.get("broken", np.zeros(len(i), bool)), bool)
    ok = ~broken
    out: dict[str, Any] = {"n_intact": int(ok.sum()), "n_broken": int(broken.sum())}
    binder_g = float(micro.masses_kg[micro.role_mask("binder")].sum() * 1e3)
    if "length_m" in bonds:
        length = float(np.asarray(bonds["length_m"], float)[ok].sum())
        out["intact_length_um"] = length * 1e6
        out["intact_length_m_per_g_binder"] = length / binder_g if binder_g > 0 else "no binder"
    bridged = np.zeros(micro.n, bool)
    bridged[i[ok]] = bridged[j[ok]] = True
    roles = np.array([s.role for s in micro.species])[micro.species_id]
    out["particles_bridged_by_role"] = {str(r): int(np.count_nonzero(bridged & (roles == r)))
                                        for r in np.unique(roles)}
    am = micro.role_mask("AM")
    out["fraction_am_bridged"] = float(bridged[am].mean()) if am.any() else 0.0
    out["note"] = "degree of fibrillation needs the fibrillation model's per-particle state; not derived here"
    return out


def _pore_connectivity(pore: np.ndarray, periodic: tuple[bool, bool, bool]) -> tuple[np.ndarray, np.ndarray]:
    """(open, through) masks: pore voxels face-connected to the top layer / to the top and bottom layers,
    with clusters merged across the periodic x/y sides."""
    lab, n = ndi.label(pore)
    if n == 0:
        return np.zeros_like(pore), np.zeros_like(pore)
    a, b = [], []
    for d in (0, 1):
        if periodic[d] and pore.shape[d] > 1:
            lo, hi = np.take(lab, 0, axis=d).ravel(), np.take(lab, -1, axis=d).ravel()
            both = (lo > 0) & (hi > 0)
            a.append(lo[both])
            b.append(hi[both])
    if a:
        ai, bi = np.concatenate(a), np.concatenate(b)
        _, comp = connected_components(coo_matrix((np.ones(len(ai)), (ai, bi)), shape=(n + 1, n + 1)),
                                       directed=False)
    else:
        comp = np.arange(n + 1)
    top = np.zeros(comp.max() + 1, bool)
    bot = np.zeros(comp.max() + 1, bool)
    top[comp[np.unique(lab[:, :, -1])]] = True
    bot[comp[np.unique(lab[:, :, 0])]] = True
    top[comp[0]] = bot[comp[0]] = False
    c = comp[lab]
    open_ = pore & top[c]
    return open_, open_ & bot[c]


def _voxel_size(micro: Microstructure, h: float, p: AnalysisParams) -> tuple[float, list[str]]:
    d_min = 2.0 * float(micro.radii_m.min())
    want = d_min / p.voxels_per_smallest_diameter
    vol = float(micro.box_m[0] * micro.box_m[1] * h)
    floor = (vol / p.max_voxels) ** (1.0 / 3.0) * 1.0001
    warn = []
    if floor > want:
        warn.append(
            f"voxel image coarsened to {floor * 1e6:.3g} um ({d_min / floor:.2f} voxels per smallest "
            f"diameter instead of {p.voxels_per_smallest_diameter}) to stay below max_voxels={p.max_voxels}"
        )
    size = max(want, floor)
    if d_min / size < 2.0:
        warn.append("fewer than 2 voxels per smallest particle diameter: the finest phase is poorly resolved")
    return size, warn


def _transport_dict(res: Any) -> dict[str, Any]:
    keep = ("volume_fraction", "percolating_fraction", "percolates", "sigma_eff_S_per_m",
            "relative_conductivity", "tortuosity_factor", "macmullin_number", "bruggeman_exponent",
            "converged", "flux_mismatch", "iterations")
    d = res.to_dict()
    return {k: d[k] for k in keep}


def _voxel_section(micro, p, h, electrolyte, out_porosity, warnings, g: ContactGraph
                   ) -> tuple[dict, dict, dict]:
    """Voxel porosity connectivity, tortuosities and voxel conductivities (measurement terminals:
    `electrodem.analysis.terminals`, with the probe of the contact graph ``g``)."""
    try:
        from electrodem.analysis.terminals import probe_columns, voxel_conductivity
        from electrodem.analysis.transport import solve_transport
        from electrodem.analysis.voxelize import voxelize
    except ImportError:  # the voxel layer is optional at import time
        warnings.append("voxel solver not available: voxel metrics skipped")
        return {}, {}, {}
    size, warn = _voxel_size(micro, h, p)
    warnings.extend(warn)
    img = voxelize(micro, voxel_size_m=size, z_max_m=h, max_voxels=max(p.max_voxels, 1000) * 2)
    pore = img.labels == 0
    open_, through = _pore_connectivity(pore, img.periodic)
    nvox = pore.size
    eps = pore.sum() / nvox
    out_porosity.update({
        "voxel_total": float(eps),
        "voxel_open": float(open_.sum() / nvox),
        "voxel_through_connected": float(through.sum() / nvox),
        "voxel_dead_end": float((open_.sum() - through.sum()) / nvox),
        "voxel_closed": float((pore.sum() - open_.sum()) / nvox),
        "voxel_shape": list(img.shape),
        "voxel_size_um": [v * 1e6 for v in img.voxel_size_m],
        "voxels_per_smallest_diameter_used": float(img.voxels_per_smallest_diameter),
        "definitions": "open: connected to the separator (top) face; through-connected: to the top and "
                       "the CC; dead-end: open but not through; closed: not connected to the top",
    })
    tort: dict[str, Any] = {}
    cond: dict[str, Any] = {}

    def sides(axis: str) -> tuple[bool, bool, bool]:
        per = list(img.periodic)
        per["xyz".index(axis)] = False
        return tuple(per)  # type: ignore[return-value]

    kw = {"flux_rtol": p.voxel_flux_rtol, "progress": p.progress}
    if electrolyte == "liquid":
        tort["pore"] = {a: _transport_dict(solve_transport(img, 0, a, periodic_sides=sides(a), **kw))
                        for a in p.directions}
    se_labels = [k + 1 for k, s in enumerate(micro.species) if s.sigma_i_S_per_m > 0]
    if se_labels:
        tort["SE"] = {a: _transport_dict(solve_transport(img, se_labels, a, periodic_sides=sides(a), **kw))
                      for a in p.directions}
    for net, attr in (("electronic", "sigma_e_S_per_m"), ("ionic", "sigma_i_S_per_m")):
        cmap = {k + 1: float(getattr(s, attr)) for k, s in enumerate(micro.species) if getattr(s, attr) > 0}
        if not cmap:
            continue
        cmap = {lab: cmap.get(lab, 0.0) for lab in range(len(img.phase_names))}
        cols = probe_columns(micro, g.top, img.shape[:2]) if "z" in p.directions else None
        cond[net] = {a: voxel_conductivity(img.labels, cmap, a, img.voxel_size_m, sides(a),
                                           probe=cols, plate_level_m=g.top_m, **kw)
                     for a in p.directions}
    return tort, cond, {
        "voxel_size_um": img.voxel_size_m[0] * 1e6,
        "shape": list(img.shape),
        "boundary_conditions": "conductivities: CC face and a probe plate pressed on the top (z), "
                               "inner-plane four-probe reading with the current through the cut faces "
                               "(x/y), periodic x/y sides; tortuosities: Dirichlet on the two image "
                               "faces normal to the axis, periodic x/y sides, insulating z sides",
    }


def _cbd_section(micro: Microstructure, p: AnalysisParams, h: float, electrolyte: str, g: ContactGraph,
                 warnings: list[str], cbd: Any) -> dict[str, Any] | str:
    """The carbon-binder domain ``cbd`` (`electrodem.analysis.cbd.build_cbd` on ``g``): classification,
    volumes, and its voxel transport: electrons through AM + CBD + bare CB (probe terminals), ions
    through pore + CBD."""
    from electrodem.analysis.cbd import cbd_image
    from electrodem.analysis.terminals import probe_columns, voxel_conductivity

    out: dict[str, Any] = {**cbd.summary(), "cbd_sigma_e_S_per_m": p.cbd_sigma_e_S_per_m,
                           "cbd_ionic_transport_factor": p.cbd_transport_factor()}
    if not cbd.member.any():
        out["note"] = ("no CBD: no binder outside fibrils and no carbon glued by such binder (e.g. a dry "
                       "electrode: fibrils and CB coating keep the pores open)")
        return out
    if not p.run_voxel:
        return out
    size, warn = _voxel_size(micro, h, p)
    warnings.extend(w for w in warn if w not in warnings)
    img, lab = cbd_image(micro, cbd, size, z_max_m=h, max_voxels=max(p.max_voxels, 1000) * 2)
    frac = np.bincount(img.labels.ravel(), minlength=lab + 1) / img.labels.size
    eps_pore, eps_cbd = float(frac[0]), float(frac[lab])
    out["voxel_cbd_fraction"] = eps_cbd
    out["voxel_free_pore_fraction"] = eps_pore

    def sides(axis: str) -> tuple[bool, bool, bool]:
        per = list(img.periodic)
        per["xyz".index(axis)] = False
        return tuple(per)  # type: ignore[return-value]

    kw = {"flux_rtol": p.voxel_flux_rtol, "progress": p.progress}
    emap = {k + 1: float(s.sigma_e_S_per_m) for k, s in enumerate(micro.species)}
    emap[0], emap[lab] = 0.0, p.cbd_sigma_e_S_per_m
    cols = probe_columns(micro, g.top, img.shape[:2]) if "z" in p.directions else None
    out["electronic"] = {a: voxel_conductivity(img.labels, emap, a, img.voxel_size_m, sides(a), probe=cols,
                                               plate_level_m=g.top_m, **kw) for a in p.directions}
    if electrolyte == "liquid":
        f = p.cbd_transport_factor()
        eps_e = eps_pore + eps_cbd * p.cbd_porosity  # electrolyte volume: free pore + CBD pores
        ion: dict[str, Any] = {}
        for a in p.directions:
            res = {}
            for name, fac, eps in (("cbd_counted", f, eps_e), ("cbd_omitted", 1.0, eps_pore + eps_cbd)):
                imap = {k: 0.0 for k in range(lab + 1)}
                imap[0], imap[lab] = 1.0, fac
                r = voxel_conductivity(img.labels, imap, a, img.voxel_size_m, sides(a),
                                       probe=np.zeros(img.shape[:2], bool), plate_level_m=h, **kw)
                rel = r["sigma_eff_S_per_m"]
                res[name] = {"electrolyte_fraction": eps, "relative_conductivity": rel,
                             "tortuosity_factor": eps / rel if rel > 0 else math.inf, "reason": r["reason"]}
            t1, t0 = res["cbd_counted"]["tortuosity_factor"], res["cbd_omitted"]["tortuosity_factor"]
            res["tau_ratio_counted_over_omitted"] = t1 / t0 if math.isfinite(t0) and t0 > 0 else math.inf
            ion[a] = res
        out["ionic_pore"] = ion
        out["ionic_definition"] = (
            "relative to the free electrolyte; cbd_counted: CBD conducts with the transport factor, "
            "electrolyte fraction = free pore + CBD x cbd_porosity; cbd_omitted: the CBD counted as free "
            "electrolyte (what a model without a CBD phase does, Usseglio-Viretta 2018); tau = eps / rel")
    return out


def _rate_capability(micro, p, h, electrolyte, porosity_geo, tort) -> dict[str, Any]:
    area_cm2 = float(micro.box_m[0] * micro.box_m[1]) * 1e4
    cap = np.array([s.specific_capacity_mAh_per_g for s in micro.species])[micro.species_id]
    q_areal = float(np.sum(micro.masses_kg * 1e3 * cap) / area_cm2)  # mAh/cm2
    i_A_m2 = q_areal * 10.0 * p.c_rate_per_h  # 1 mAh/cm2 = 10 Ah/m2
    out: dict[str, Any] = {
        "c_rate_per_h": p.c_rate_per_h,
        "areal_capacity_mAh_cm2": q_areal,
        "current_density_A_per_m2": i_A_m2,
        "electrolyte_D0_m2_per_s": p.electrolyte_D0_m2_per_s,
        "electrolyte_C0_mol_per_m3": p.electrolyte_C0_mol_per_m3,
        "transference_number": p.transference_number,
        "thickness_um": h * 1e6,
        "equation": "L_d = (eps/tau) D0 C0 F / ((1 - t+) I); Q_eff/Q0 = min(1, L_d / h) (004 eq. 2-3)",
    }
    if electrolyte == "solid":
        out["penetration_depth_um"] = "not applicable"
        out["usable_capacity_ratio"] = "not applicable"
        out["note"] = ("solid electrolyte: a single-ion conductor (t+ = 1) has no salt depletion, so the "
                       "diffusion-limited penetration depth does not apply; see the SE conductivity")
        return out
    z = tort.get("pore", {}).get("z")
    if z is not None and z["volume_fraction"] > 0:
        eps, tau, src = z["volume_fraction"], z["tortuosity_factor"], "voxel solver (pore phase, z)"
    else:
        eps = porosity_geo
        tau = eps**-0.5 if eps > 0 else math.inf
        src = "Bruggeman estimate tau = eps^-0.5 with the geometric porosity (voxel solver not run)"
    tau = math.inf if tau == "inf" else float(tau)
    out.update({"porosity": float(eps), "tortuosity_factor": tau, "tortuosity_source": src})
    if i_A_m2 <= 0:
        out["penetration_depth_um"] = math.inf
        out["usable_capacity_ratio"] = 1.0
        out["note"] = "no areal capacity (species specific_capacity_mAh_per_g are 0): no current to limit"
        return out
    if not math.isfinite(tau) or eps <= 0:
        ld = 0.0
    else:
        ld = (eps / tau) * p.electrolyte_D0_m2_per_s * p.electrolyte_C0_mol_per_m3 * FARADAY_C_PER_MOL / (
            (1.0 - p.transference_number) * i_A_m2)
    out["penetration_depth_um"] = ld * 1e6
    out["usable_capacity_ratio"] = min(1.0, ld / h) if h > 0 else 0.0
    return out


def _jsonable(o: Any) -> Any:
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, np.ndarray):
        return [_jsonable(v) for v in o.tolist()]
    if isinstance(o, (bool, np.bool_)):
        return bool(o)
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (float, np.floating)):
        v = float(o)
        if math.isnan(v):
            return None
        return v if math.isfinite(v) else ("inf" if v > 0 else "-inf")
    return o


# ---------------------------------------------------------------------------------------------- public
def analyse(micro: Microstructure, params: AnalysisParams | None = None) -> dict[str, Any]:
    """Every structure-dependent metric of DOMAIN.md §3 for ``micro`` (see the module docstring)."""
    p = AnalysisParams() if params is None else params
    if not isinstance(p, AnalysisParams):
        raise ConfigError("analysis", type(p).__name__, "an AnalysisParams")
    if not isinstance(micro, Microstructure) or micro.n == 0:
        raise ConfigError("micro", getattr(micro, "n", micro), "a Microstructure with at least one particle")
    timings: dict[str, float] = {}
    warnings: list[str] = []
    t0 = time.perf_counter()
    h = micro.top_m()
    if not h > 0:
        raise ConfigError("micro.top_m()", h, "a positive electrode thickness")
    ionic_species = [s.name for s in micro.species if s.sigma_i_S_per_m > 0]
    electrolyte = p.electrolyte if p.electrolyte != "auto" else ("solid" if ionic_species else "liquid")
    area = float(micro.box_m[0] * micro.box_m[1])

    g = build_contact_graph(micro, p.gap_tolerance_rel, p.min_contact_radius_rel, p.use_engine_contacts,
                            top_layer_m=None if p.top_layer_thickness_um is None
                            else float(p.top_layer_thickness_um) * 1e-6)
    pairs = phase_pair_table(micro, g, by="role")
    timings["contacts_s"] = time.perf_counter() - t0

    metrics: dict[str, Any] = {
        "snapshot": {
            "n_particles": micro.n,
            "box_um": (micro.box_m * 1e6).tolist(),
            "thickness_um": h * 1e6,
            "periodic": list(micro.periodic),
            "species": [{"name": s.name, "role": s.role, "sigma_e_S_per_m": s.sigma_e_S_per_m,
                         "sigma_i_S_per_m": s.sigma_i_S_per_m} for s in micro.species],
            "electrolyte": electrolyte,
            "stage": micro.metadata.get("stage", "unknown"),
        },
    }
    metrics["composition"] = composition_metrics(micro)

    metrics["contacts"] = {
        "source": g.source,
        "rules": {"gap_tolerance_rel": p.gap_tolerance_rel,
                  "min_contact_radius_rel": p.min_contact_radius_rel},
        "n_contacts": g.n_contacts,
        "mean_coordination": float(2 * g.n_contacts / micro.n),
        "n_touching_cc": int(g.cc.sum()),
        "n_touching_top": int(g.top.sum()),
        "top_probe": {
            "contact_depth_um": g.probe_depth_m * 1e6,
            "gauge_top_um": g.gauge_top_m * 1e6,
            "thickness_under_probe_um": g.top_m * 1e6,
            "n_particles_touching": int(g.top.sum()),
            "rule": "a probe plate pressed on the top touches every exposed particle (highest surface in "
                    "the height map) whose top lies within contact_depth_um of the gauge top; through-plane "
                    "sigma uses thickness_under_probe_um (area-weighted median top of those particles)",
        },
        "by_phase_pair": {k: {"count": v["count"], "area_um2": v["area_m2"] * 1e12}
                          for k, v in pairs.items()},
    }
    if g.top.sum() < 3:
        warnings.append(f"only {int(g.top.sum())} particles touch the top probe: through-plane results "
                        "depend on them; top_layer_thickness_um sets the probe contact depth")

    v_below = solid_volume_below_m3(micro, h)
    porosity_geo = max(0.0, 1.0 - v_below / (area * h))
    porosity: dict[str, Any] = {"geometric_total": porosity_geo}
    t1 = time.perf_counter()
    metrics["profiles"] = _profiles(micro, h, p)
    metrics["surface"] = _surface(micro, g, pairs, h)
    timings["profiles_surface_s"] = time.perf_counter() - t1

    t1 = time.perf_counter()
    perc = percolation_analysis(micro, g)
    summ = perc.summary()
    metrics["percolation"] = {"electronic": summ["electronic"], "ionic": summ["ionic"]}
    metrics["isolated_am"] = summ["isolated_am"]
    metrics["bonds"] = _bonds(micro)
    timings["percolation_s"] = time.perf_counter() - t1

    cbd = None
    if p.run_cbd:  # one classification for the resistor's necks and the voxel image
        from electrodem.analysis.cbd import build_cbd

        t1 = time.perf_counter()
        cbd = build_cbd(micro, g, p.cbd_porosity)
        timings["cbd_build_s"] = time.perf_counter() - t1

    cond: dict[str, Any] = {}
    t1 = time.perf_counter()
    if p.run_resistor:
        for net, present in (("electronic", perc.electronic is not None), ("ionic", perc.ionic is not None)):
            if not present:
                cond[net] = {"resistor": NOT_APPLICABLE_IONIC if net == "ionic" else "no conducting species"}
                continue
            cond[net] = {"resistor": {a: resistor_conductivity(micro, net, a, graph=g, bulk=p.bulk_resistance,
                                                               cbd=cbd,
                                                               cbd_sigma_e_S_per_m=p.cbd_sigma_e_S_per_m)
                                      .summary() for a in p.directions}}
    timings["resistor_s"] = time.perf_counter() - t1

    tort: dict[str, Any] = {}
    t1 = time.perf_counter()
    if p.run_voxel:
        tort, vcond, vinfo = _voxel_section(micro, p, h, electrolyte, porosity, warnings, g)
        for net, d in vcond.items():
            cond.setdefault(net, {})["voxel"] = d
        if vinfo:
            cond["voxel_image"] = vinfo
    timings["voxel_s"] = time.perf_counter() - t1
    if p.run_cbd:
        t1 = time.perf_counter()
        metrics["cbd"] = _cbd_section(micro, p, h, electrolyte, g, warnings, cbd)
        timings["cbd_s"] = time.perf_counter() - t1
    metrics["porosity"] = porosity
    metrics["conductivity"] = cond
    metrics["tortuosity"] = tort
    metrics["tortuosity_definition"] = "tau = eps * sigma_0 / sigma_eff (not squared); MacMullin = tau / eps"
    metrics["rate_capability"] = _rate_capability(micro, p, h, electrolyte, porosity_geo, tort)
    timings["total_s"] = time.perf_counter() - t0
    metrics["timings_s"] = timings
    metrics["warnings"] = warnings
    # None selects a derived default (probe depth, CBD transport factor): say so instead of null
    metrics["params"] = {k: ("auto" if v is None else v) for k, v in asdict(p).items()}
    return _jsonable(metrics)


def write_metrics(metrics: dict[str, Any], path: str | Path) -> Path:
    """Write ``metrics`` as strict JSON (``metrics.json``) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_jsonable(metrics), indent=2, allow_nan=False))
    return path


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list) and len(v) > 6 and all(isinstance(x, (int, float)) for x in v):
        return "[" + ", ".join(f"{x:.3g}" for x in v[:3]) + f", ... ({len(v)} values)]"
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v)


def _walk(d: dict[str, Any], indent: int, lines: list[str]) -> None:
    for k, v in d.items():
        if isinstance(v, dict):
            lines.append(" " * indent + f"{k}:")
            _walk(v, indent + 2, lines)
        else:
            lines.append(" " * indent + f"{k:<48s} {_fmt(v)}")


def format_table(metrics: dict[str, Any]) -> str:
    """A readable text table of ``analyse`` output: the headline numbers, the profiles as columns,
    then every section in full."""
    lines: list[str] = ["== electrode microstructure report =="]
    comp = metrics.get("composition", {})
    rc = metrics.get("rate_capability", {})
    head = [
        ("thickness (um)", metrics.get("snapshot", {}).get("thickness_um")),
        ("porosity, geometric", metrics.get("porosity", {}).get("geometric_total")),
        ("porosity, voxel open / through", (metrics.get("porosity", {}).get("voxel_open"),
                                            metrics.get("porosity", {}).get("voxel_through_connected"))),
        ("areal capacity (mAh/cm2)", comp.get("areal_capacity_mAh_cm2", rc.get("areal_capacity_mAh_cm2"))),
        ("inactive AM (by volume)", metrics.get("isolated_am", {}).get("inactive_fraction_by_volume")),
        ("penetration depth (um)", rc.get("penetration_depth_um")),
        ("usable capacity ratio", rc.get("usable_capacity_ratio")),
    ]
    for name, v in head:
        lines.append(f"{name:<48s} {_fmt(list(v) if isinstance(v, tuple) else v)}")
    for net, d in metrics.get("conductivity", {}).items():
        if isinstance(d, dict) and isinstance(d.get("resistor"), dict):
            vals = ", ".join(f"{a}={_fmt(r['sigma_eff_S_per_m'])}" for a, r in d["resistor"].items())
            lines.append(f"{'sigma_' + net + ' resistor (S/m)':<48s} {vals}")
    for ph, d in metrics.get("tortuosity", {}).items():
        vals = ", ".join(f"{a}={_fmt(r['tortuosity_factor'])}" for a, r in d.items())
        lines.append(f"{'tau ' + ph:<48s} {vals}")
    prof = metrics.get("profiles")
    if prof:
        roles = list(prof["vol_fraction_by_role"])
        lines.append("")
        lines.append("-- through-thickness profile (volume fractions) --")
        lines.append(f"{'z (um)':>9s} {'porosity':>9s} " + " ".join(f"{r:>9s}" for r in roles))
        for k, z in enumerate(prof["z_center_um"]):
            row = [prof["porosity"][k]] + [prof["vol_fraction_by_role"][r][k] for r in roles]
            lines.append(f"{z:9.2f} " + " ".join(f"{v:9.4f}" for v in row))
    lines.append("")
    lines.append("-- all metrics --")
    _walk({k: v for k, v in metrics.items() if k not in ("profiles",)}, 0, lines)
    return "\n".join(lines)
