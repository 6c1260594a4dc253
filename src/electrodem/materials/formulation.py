"""Formulation (wt%) -> volume fractions -> particle counts for a representative volume element.

The representative volume element (RVE) is a box ``box_x_um`` x ``box_y_um`` on the current collector,
sized through exactly one of: a dense thickness at a target porosity, a mass loading, or an areal
capacity. Each component's solid volume V_k = w_k M / rho_k is filled by drawing particle diameters
from its PSD until the drawn volume is as close as possible to V_k, so the achieved wt% differ from the
requested ones only by the granularity of one particle (reported as ``wt_pct_achieved``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from electrodem.config.errors import ConfigError, is_integer, is_number, require, require_known_keys
from electrodem.io.snapshot import Species
from electrodem.materials.library import Material

WT_SUM_TOLERANCE_PCT = 0.05
ROUTES = ("wet", "dry", "assb", "film")
FORMULATION_KEYS = ("name", "route", "description", "components", "targets", "source")
COMPONENT_KEYS = ("material", "wt_pct")
TARGET_KEYS = ("areal_capacity_mAh_cm2", "porosity")
RVE_KEYS = ("box_x_um", "box_y_um", "thickness_um", "mass_loading_mg_cm2", "areal_capacity_mAh_cm2",
            "porosity", "max_particles")


@dataclass(frozen=True)
class Component:
    """One slot of a formulation: a material and its mass fraction (wt%)."""

    slot: str
    material: Material
    wt_pct: float


@dataclass(frozen=True)
class Formulation:
    """A validated formulation: components whose wt% sum to 100."""

    name: str
    route: str
    components: tuple[Component, ...]
    description: str = ""
    source: str = ""

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], library: Mapping[str, Material]) -> Formulation:
        """Validate ``formulation`` against the material library; errors name the dotted key."""
        require_known_keys(dict(cfg), FORMULATION_KEYS, "formulation")
        route = cfg.get("route", "wet")
        require(isinstance(route, str) and route in ROUTES, "formulation.route", route, f"one of {ROUTES}")
        targets = cfg.get("targets") or {}
        require(isinstance(targets, Mapping), "formulation.targets", targets,
                f"a mapping with keys among {TARGET_KEYS}")
        require_known_keys(dict(targets), TARGET_KEYS, "formulation.targets")
        # Typical targets of the formulation: targets.porosity is the RVE's default porosity.
        por, q = targets.get("porosity"), targets.get("areal_capacity_mAh_cm2")
        require(por is None or (is_number(por) and 0.0 <= por < 1.0), "formulation.targets.porosity", por,
                "null or a porosity in [0, 1)")
        require(q is None or (is_number(q) and q > 0), "formulation.targets.areal_capacity_mAh_cm2", q,
                "null or a finite areal capacity > 0 (mAh/cm2)")
        comps = cfg.get("components")
        require(isinstance(comps, Mapping) and len(comps) > 0, "formulation.components", comps,
                "a non-empty mapping slot -> {material, wt_pct}")
        out = []
        for slot, c in comps.items():
            key = f"formulation.components.{slot}"
            require(isinstance(c, Mapping), key, c, "a mapping {material: NAME, wt_pct: NUMBER}")
            require_known_keys(dict(c), COMPONENT_KEYS, key)
            name = c.get("material")
            require(isinstance(name, str) and name in library, f"{key}.material", name,
                    f"a known material: {sorted(library)}")
            w = c.get("wt_pct")
            require(is_number(w) and 0 < w <= 100, f"{key}.wt_pct", w, "a mass fraction in (0, 100] wt%")
            out.append(Component(str(slot), library[name], float(w)))
        total = sum(c.wt_pct for c in out)
        require(abs(total - 100.0) <= WT_SUM_TOLERANCE_PCT, "formulation.components.*.wt_pct", total,
                f"wt% must sum to 100 (within {WT_SUM_TOLERANCE_PCT})")
        names = [c.material.name for c in out]
        require(len(set(names)) == len(names), "formulation.components", names,
                "each material at most once (merge the slots)")
        return cls(str(cfg.get("name", "custom")), route, tuple(out), str(cfg.get("description", "")),
                   str(cfg.get("source", "")))

    def volume_fractions(self) -> np.ndarray:
        """Solid volume fraction of each component (sums to 1)."""
        v = np.array([c.wt_pct / c.material.density_g_cm3 for c in self.components])
        return v / v.sum()

    def solid_density_g_cm3(self) -> float:
        """Density of the pore-free solid mixture (g/cm3)."""
        return 100.0 / sum(c.wt_pct / c.material.density_g_cm3 for c in self.components)

    def specific_capacity_mAh_g(self) -> float:
        """Capacity per gram of electrode solid (mAh/g)."""
        return sum(c.wt_pct / 100.0 * c.material.specific_capacity_mAh_g for c in self.components)


@dataclass(frozen=True)
class RVESpec:
    """Size of the representative volume. Exactly one of thickness / loading / capacity is set."""

    box_x_um: float
    box_y_um: float
    porosity: float
    thickness_um: float | None = None
    mass_loading_mg_cm2: float | None = None
    areal_capacity_mAh_cm2: float | None = None
    max_particles: int = 2_000_000

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], default_porosity: float | None = None) -> RVESpec:
        """Validate the ``rve`` mapping (lengths in µm; ``default_porosity`` stands in for a null
        ``porosity``)."""
        require_known_keys(dict(cfg), RVE_KEYS, "rve")
        for k in ("box_x_um", "box_y_um"):
            v = cfg.get(k)
            require(is_number(v) and v > 0, f"rve.{k}", v, "a finite length > 0 µm")
        por = cfg.get("porosity")
        if por is None:
            por = default_porosity
        require(is_number(por) and 0.0 <= por < 1.0, "rve.porosity", por,
                "a target porosity in [0, 1) (or set formulation.targets.porosity)")
        given = {k: cfg.get(k) for k in ("thickness_um", "mass_loading_mg_cm2", "areal_capacity_mAh_cm2")}
        set_keys = [k for k, v in given.items() if v is not None]
        require(len(set_keys) == 1, "rve.{thickness_um|mass_loading_mg_cm2|areal_capacity_mAh_cm2}",
                set_keys, "exactly one of them set (the others null)")
        k = set_keys[0]
        require(is_number(given[k]) and given[k] > 0, f"rve.{k}", given[k], "a finite value > 0")
        mp = cfg.get("max_particles", 2_000_000)
        require(is_integer(mp) and mp > 0, "rve.max_particles", mp, "a positive integer")
        return cls(float(cfg["box_x_um"]), float(cfg["box_y_um"]), float(por),
                   **{kk: (float(v) if v is not None else None) for kk, v in given.items()},
                   max_particles=mp)

    @property
    def area_cm2(self) -> float:
        """Footprint of the box (cm2)."""
        return self.box_x_um * self.box_y_um * 1e-8


@dataclass(frozen=True)
class Population:
    """Particles to place: diameters (m) and species ids, plus the conversion report."""

    diameters_m: np.ndarray
    species_id: np.ndarray
    species: tuple[Species, ...]
    report: dict[str, Any]


def solid_mass_g(form: Formulation, rve: RVESpec) -> float:
    """Total solid mass (g) the RVE must hold."""
    if rve.mass_loading_mg_cm2 is not None:
        return rve.mass_loading_mg_cm2 * 1e-3 * rve.area_cm2
    if rve.areal_capacity_mAh_cm2 is not None:
        q = form.specific_capacity_mAh_g()
        require(q > 0, "rve.areal_capacity_mAh_cm2", rve.areal_capacity_mAh_cm2,
                f"only with a formulation that stores charge; {form.name} has no specific capacity")
        return rve.areal_capacity_mAh_cm2 / q * rve.area_cm2
    assert rve.thickness_um is not None
    v_solid_cm3 = rve.area_cm2 * rve.thickness_um * 1e-4 * (1.0 - rve.porosity)
    return v_solid_cm3 * form.solid_density_g_cm3()


def _draw_to_volume(mat: Material, target_um3: float, rng: np.random.Generator) -> np.ndarray:
    """Diameters (µm) whose total volume is as close as possible to ``target_um3``."""
    if target_um3 <= 0:
        return np.zeros(0)
    mean_v = mat.psd.mean_volume_um3(rng)
    chunks: list[np.ndarray] = []
    total = 0.0
    while True:
        n = max(16, int(1.2 * (target_um3 - total) / mean_v) + 16)
        d = mat.psd.sample_um(n, rng)
        cum = total + np.cumsum(np.pi / 6.0 * d**3)
        k = int(np.searchsorted(cum, target_um3))
        if k < n:
            # Keep particle k only if that brings the total nearer the target.
            prev = cum[k - 1] if k > 0 else total
            keep = k + 1 if abs(cum[k] - target_um3) < abs(prev - target_um3) else k
            chunks.append(d[:keep])
            return np.concatenate(chunks)
        chunks.append(d)
        total = float(cum[-1])


def expected_counts(form: Formulation, rve: RVESpec) -> list[float]:
    """Expected particle count of each component; raises `ConfigError` for an impossible request.

    Cheap (no particle drawn), so the app calls it while validating, before any compute.
    """
    rng = np.random.default_rng(0)
    m_total = solid_mass_g(form, rve)
    expected = [c.wt_pct / 100.0 * m_total / c.material.density_g_cm3 * 1e12
                / c.material.psd.mean_volume_um3(rng) for c in form.components]
    n_exp = int(sum(expected))
    if n_exp > rve.max_particles:
        raise ConfigError("rve.max_particles", rve.max_particles,
                          f"this RVE needs about {n_exp} particles; raise rve.max_particles, shrink the "
                          f"box or the loading, or coarse-grain the fines")
    return expected


def make_population(form: Formulation, rve: RVESpec, seed: int) -> Population:
    """Convert a formulation and an RVE size into particles; the report states the conversion."""
    rng = np.random.default_rng(seed)
    m_total = solid_mass_g(form, rve)
    vfrac = form.volume_fractions()
    comps_report: dict[str, Any] = {}
    diam, sid = [], []
    expected = expected_counts(form, rve)
    for k, c in enumerate(form.components):
        v_um3 = c.wt_pct / 100.0 * m_total / c.material.density_g_cm3 * 1e12
        d = _draw_to_volume(c.material, v_um3, rng)
        if len(d) == 0:
            raise ConfigError(f"formulation.components.{c.slot}.wt_pct", c.wt_pct,
                              f"too small to give one {c.material.name} particle in this RVE "
                              f"({v_um3:.3g} µm3 of it); enlarge the box or remove the component")
        diam.append(d * 1e-6)
        sid.append(np.full(len(d), k, dtype=np.int32))
    diameters = np.concatenate(diam)
    species_id = np.concatenate(sid)
    vols = [float(np.sum(np.pi / 6.0 * d**3)) for d in diam]  # m3
    masses = [v * c.material.density_kg_m3 for v, c in zip(vols, form.components, strict=True)]
    m_sum, v_sum = sum(masses), sum(vols)
    for k, c in enumerate(form.components):
        comps_report[c.slot] = {
            "material": c.material.name,
            "role": c.material.role,
            "wt_pct_requested": c.wt_pct,
            "wt_pct_achieved": 100.0 * masses[k] / m_sum,
            "vol_pct_requested": 100.0 * float(vfrac[k]),
            "vol_pct_achieved": 100.0 * vols[k] / v_sum,
            "count": int(len(diam[k])),
            "expected_count": float(expected[k]),
            "mass_g": masses[k] * 1e3,
            "solid_volume_um3": vols[k] * 1e18,
        }
    report = {
        "formulation": form.name,
        "box_x_um": rve.box_x_um,
        "box_y_um": rve.box_y_um,
        "target_porosity": rve.porosity,
        "solid_mass_g_requested": m_total,
        "solid_mass_g": m_sum * 1e3,
        "mass_loading_mg_cm2": m_sum * 1e6 / rve.area_cm2,
        "solid_density_g_cm3": form.solid_density_g_cm3(),
        "thickness_um_at_target_porosity": v_sum * 1e18 / (rve.box_x_um * rve.box_y_um)
        / (1.0 - rve.porosity),
        "areal_capacity_mAh_cm2": sum(
            masses[k] * 1e3 * c.material.specific_capacity_mAh_g for k, c in enumerate(form.components)
        ) / rve.area_cm2,
        "n_particles": int(len(diameters)),
        "components": comps_report,
    }
    species = tuple(c.material.to_species() for c in form.components)
    return Population(diameters, species_id, species, report)
