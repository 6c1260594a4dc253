"""Material records: validated from the ``material/`` config group, converted to SI `Species`.

Each YAML under ``configs/material/`` describes one material with units in its keys and a source per
number (see ``docs/materials.md``). The Hydra config composes all of them under ``material.<name>``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from electrodem.config.errors import is_number, require
from electrodem.io.snapshot import ROLES, Species
from electrodem.materials.psd import PSD

_REQUIRED_POSITIVE = ("density_g_cm3", "youngs_modulus_GPa")
_COLOR = re.compile(r"#[0-9a-fA-F]{6}(?:[0-9a-fA-F]{2})?|#[0-9a-fA-F]{3}|[A-Za-z][A-Za-z0-9 :_-]*")
"""Colours the renders accept: hex (with alpha) or a matplotlib colour name."""
_NON_NEGATIVE = ("electronic_conductivity_S_m", "ionic_conductivity_S_m", "specific_capacity_mAh_g")


@dataclass(frozen=True)
class Material:
    """One material (phase), with the units of its configuration keys."""

    name: str
    role: str
    density_g_cm3: float
    youngs_modulus_GPa: float
    poisson_ratio: float
    psd: PSD
    electronic_conductivity_S_m: float = 0.0
    ionic_conductivity_S_m: float = 0.0
    specific_capacity_mAh_g: float = 0.0
    friction_coefficient: float = 0.5
    restitution_coefficient: float = 0.5
    color: str = "#888888"
    coarse_graining: str | None = None
    description: str = ""
    surface_energy_J_m2: float = 0.0
    contact_yield_pressure_MPa: float = 0.0
    softening_onset_K: float | None = None
    melting_K: float | None = None
    sources: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, name: str, cfg: Mapping[str, Any]) -> Material:
        """Validate one ``material.<name>`` mapping; errors name the dotted key."""
        key = f"material.{name}"
        cfg = dict(cfg)
        role = cfg.get("role")
        require(isinstance(role, str) and role in ROLES, f"{key}.role", role, f"one of {ROLES}")
        # is_number: finite and not a bool; an inf modulus or density would pass "> 0" and reach the
        # engine as an infinite stiffness or mass.
        for k in _REQUIRED_POSITIVE:
            v = cfg.get(k)
            require(is_number(v) and v > 0, f"{key}.{k}", v, "a finite number > 0")
        nu = cfg.get("poisson_ratio", 0.3)
        require(is_number(nu) and -1.0 < nu < 0.5, f"{key}.poisson_ratio", nu, "a number in (-1, 0.5)")
        for k in _NON_NEGATIVE:
            v = cfg.get(k, 0.0)
            require(is_number(v) and v >= 0, f"{key}.{k}", v, "a finite number >= 0")
        mu = cfg.get("friction_coefficient", 0.5)
        require(is_number(mu) and mu >= 0, f"{key}.friction_coefficient", mu, "a finite number >= 0")
        e = cfg.get("restitution_coefficient", 0.5)
        require(is_number(e) and 0 < e <= 1, f"{key}.restitution_coefficient", e, "a number in (0, 1]")
        color = cfg.get("color", "#888888")
        require(isinstance(color, str) and _COLOR.fullmatch(color) is not None, f"{key}.color", color,
                "a colour: '#rrggbb', '#rgb' or a name such as 'tab:blue' (matplotlib)")
        sources = cfg.get("sources") or {}
        require(isinstance(sources, Mapping), f"{key}.sources", sources, "a mapping key -> source text")
        mech = _mechanics(key, cfg)
        psd_cfg = cfg.get("psd")
        require(isinstance(psd_cfg, Mapping), f"{key}.psd", psd_cfg, "a mapping with at least d50_um")
        known = {f for f in cls.__dataclass_fields__ if f not in ("psd", "extra", "name")}
        extra = {k: v for k, v in cfg.items() if k not in known and k not in ("psd", "name")}
        return cls(
            name=name,
            role=role,
            density_g_cm3=float(cfg["density_g_cm3"]),
            youngs_modulus_GPa=float(cfg["youngs_modulus_GPa"]),
            poisson_ratio=float(nu),
            psd=PSD.from_config(dict(psd_cfg), f"{key}.psd"),
            electronic_conductivity_S_m=float(cfg.get("electronic_conductivity_S_m", 0.0)),
            ionic_conductivity_S_m=float(cfg.get("ionic_conductivity_S_m", 0.0)),
            specific_capacity_mAh_g=float(cfg.get("specific_capacity_mAh_g", 0.0)),
            friction_coefficient=float(mu),
            restitution_coefficient=float(e),
            color=str(cfg.get("color", "#888888")),
            coarse_graining=cfg.get("coarse_graining"),
            description=str(cfg.get("description", "")),
            **mech,
            sources={str(k): str(v) for k, v in dict(cfg.get("sources") or {}).items()},
            extra=extra,
        )

    @property
    def density_kg_m3(self) -> float:
        """Density in kg/m3."""
        return self.density_g_cm3 * 1e3

    def to_species(self) -> Species:
        """The SI species record carried by snapshots."""
        return Species(
            name=self.name,
            role=self.role,
            density_kg_per_m3=self.density_kg_m3,
            youngs_modulus_Pa=self.youngs_modulus_GPa * 1e9,
            poisson_ratio=self.poisson_ratio,
            sigma_e_S_per_m=self.electronic_conductivity_S_m,
            sigma_i_S_per_m=self.ionic_conductivity_S_m,
            specific_capacity_mAh_per_g=self.specific_capacity_mAh_g,
            color=self.color,
            surface_energy_J_per_m2=self.surface_energy_J_m2,
            yield_pressure_Pa=self.contact_yield_pressure_MPa * 1e6,
            softening_onset_K=self.softening_onset_K,
            melting_K=self.melting_K,
        )


def _mechanics(key: str, cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Validate the optional mechanical/adhesive keys (surface energy J/m2, contact yield pressure MPa,
    softening onset and melting temperatures K); absent keys take the elastic, non-adhesive defaults."""
    out: dict[str, Any] = {}
    for k in ("surface_energy_J_m2", "contact_yield_pressure_MPa"):
        v = cfg.get(k, 0.0)
        v = 0.0 if v is None else v
        require(is_number(v) and v >= 0, f"{key}.{k}", v, "null or a finite number >= 0")
        out[k] = float(v)
    t0, tm = cfg.get("softening_onset_K"), cfg.get("melting_K")
    for k, v in (("softening_onset_K", t0), ("melting_K", tm)):
        require(v is None or (is_number(v) and v > 0), f"{key}.{k}", v, "null or a temperature > 0 (K)")
    require(
        (t0 is None) == (tm is None),
        f"{key}.softening_onset_K/melting_K",
        (t0, tm),
        "both null (no softening) or both given (K)",
    )
    if t0 is not None:
        require(t0 < tm, f"{key}.softening_onset_K", t0, f"< melting_K = {tm} K")
    out["softening_onset_K"] = None if t0 is None else float(t0)
    out["melting_K"] = None if tm is None else float(tm)
    return out


def load_library(cfg: Mapping[str, Any]) -> dict[str, Material]:
    """Validate every ``material.<name>`` entry of a composed config."""
    return {str(name): Material.from_config(str(name), m) for name, m in cfg.items()}
