"""One mapping from a microstructure's materials to the engine, shared by every engine step.

Two config groups hold what every engine step shares, so that a difference between two steps (or two
routes) comes from the process and never from a second copy of the same parameter:

* ``contact`` (`ContactParams`): the engine's contact sub-models under their engine names (``normal``,
  ``damping``, ``tangential``, ``rolling``, ``cohesion``: `electrodem.engine.ContactModel`), the surface
  values (friction, restitution, rolling friction, per-species overrides, surface-energy scale), the
  plastic yield pressures and softening ranges (from the materials library unless overridden) and the
  current collector foil;
* ``shortcuts`` (`ShortcutParams`): the named speed-ups (modulus softening, fines mass scaling, gravity
  scaling, time-step fraction), each logged into ``metrics.json -> shortcuts`` by the steps that use it;
* ``bonds`` (`BondLaw` per bond kind): the parallel-bond laws of the bonds a route creates (PTFE fibrils,
  binder bridges), each turned into the engine's bond extension by `BondLaw.extension`.

A step's own config group may hold ``contact:`` and ``shortcuts:`` mappings: overrides of the shared
groups for that step (e.g. the calender's elastic-plastic normal law), merged over them by
`step_params`. `engine_materials` is the only place that turns species into engine materials: the
particles, the current collector (the real foil's elasticity, softened like the particles') and the
tools (plates and rolls: tool steel, softened likewise).

Fines mass scaling (``fines_density_scale`` for radii below ``fines_radius_um``) multiplies the inertia
of the fines so that their contact oscillation, hence the time step, slows by sqrt(scale).
``fines_weight: scaled`` (default) multiplies their weight too (density scaled: they fall at g).
``fines_weight: real`` lets gravity act on the real mass (`masses` returns both; the engine's
gravitational mass): static loads and the sifting of fines under their own weight are those of the
real powder, but a fine in free flight accelerates at g / scale. Not the default, measured: a settle
with real weights did not come to rest (120k steps, tests/engine/test_settle.py's bed), and switching
a settled bed to real weights springs the fines off their contacts (`electrodem.process.settle`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from electrodem.config.errors import ConfigError, is_number, require, unknown_key
from electrodem.config.params import build
from electrodem.io.snapshot import Microstructure
from electrodem.materials.collector import COLLECTORS, CollectorFoil
from electrodem.process.recipe import check_species_names

NORMAL_MODELS = ("hertz", "thornton_ning")
DAMPING_MODELS = ("restitution",)
TANGENTIAL_MODELS = ("mindlin", "none")
ROLLING_MODELS = ("none", "constant", "epsd")
COHESION_MODELS = ("none", "jkr")
COLLECTOR_CHOICES = ("auto", "aluminium", "copper")
FINES_WEIGHT = ("real", "scaled")
OVERRIDE_KEYS = ("friction", "restitution", "rolling_friction")
CC_MATERIAL = "current_collector"
TOOL_STEEL = CollectorFoil(
    name="tool_steel", density_kg_per_m3=7800.0, youngs_modulus_Pa=210e9, poisson_ratio=0.3,
    surface_energy_J_per_m2=0.0,
    sources={"youngs_modulus_Pa": "hardened tool steel ~200-210 GPa, nu 0.3, 7.8 g/cm3 (handbook)",
             "surface_energy_J_per_m2": "0: a polished, release-coated roll or plate (assumed)"},
)  # fmt: skip
"""Plates and rolls: elastic tool steel (their density does not enter: tools move as prescribed)."""


def _num(v: Any, key: str) -> float:
    if not is_number(v):
        raise ConfigError(key, v, "a finite number")
    return float(v)


@dataclass(frozen=True)
class ContactParams:
    """The shared ``contact`` config group (see the module docstring).

    normal, damping, tangential, rolling, cohesion : engine sub-model names (`ContactModel`); rolling
        ``none`` also when ``rolling_friction`` is 0.
    friction, restitution, rolling_friction : particle–particle and particle–collector surface values.
    tool_friction : friction of particles on tools (plates, rolls).
    species_overrides : {species: {friction|restitution|rolling_friction: value}}.
    surface_energy_scale : shortcut factor on every surface energy (JKR; 1 = library values).
    yield_pressure_from_library : the Thornton–Ning yield pressure and softening range of each species
        from the materials library (``contact_yield_pressure_MPa``, ``softening_onset_K``, ``melting_K``);
        false: elastic unless named below.
    yield_pressure_MPa : {species: MPa} overrides of the yield pressure (``thornton_ning``).
    softening_K : {species: [onset K, melting K]} overrides of the softening range.
    current_collector : ``auto`` (copper under a graphite AM, else aluminium), ``aluminium``, ``copper``.
    where : dotted path named in errors (the config group, or a step's override).
    """

    normal: str = "hertz"
    damping: str = "restitution"
    tangential: str = "mindlin"
    rolling: str = "epsd"
    cohesion: str = "jkr"
    friction: float = 0.5
    restitution: float = 0.3
    rolling_friction: float = 0.05
    tool_friction: float = 0.3
    species_overrides: dict[str, dict[str, float]] = field(default_factory=dict)
    surface_energy_scale: float = 1.0
    yield_pressure_from_library: bool = True
    yield_pressure_MPa: dict[str, float] = field(default_factory=dict)
    softening_K: dict[str, list[float]] = field(default_factory=dict)
    current_collector: str = "auto"
    where: str = field(default="contact", repr=False, compare=False)

    def __post_init__(self) -> None:
        w = self.where
        for key, allowed in (("normal", NORMAL_MODELS), ("damping", DAMPING_MODELS),
                             ("tangential", TANGENTIAL_MODELS), ("rolling", ROLLING_MODELS),
                             ("cohesion", COHESION_MODELS), ("current_collector", COLLECTOR_CHOICES)):
            require(getattr(self, key) in allowed, f"{w}.{key}", getattr(self, key), f"one of {allowed}")
        for key in ("friction", "rolling_friction", "tool_friction", "surface_energy_scale"):
            require(_num(getattr(self, key), f"{w}.{key}") >= 0, f"{w}.{key}", getattr(self, key), ">= 0")
        require(0 < _num(self.restitution, f"{w}.restitution") <= 1, f"{w}.restitution", self.restitution,
                "in (0, 1]")
        require(isinstance(self.yield_pressure_from_library, bool), f"{w}.yield_pressure_from_library",
                self.yield_pressure_from_library, "true or false")
        check_species_overrides(self.species_overrides, f"{w}.species_overrides")
        require(isinstance(self.yield_pressure_MPa, dict), f"{w}.yield_pressure_MPa", self.yield_pressure_MPa,
                "a mapping species -> yield pressure (MPa)")
        for name, v in self.yield_pressure_MPa.items():
            require(is_number(v) and v > 0, f"{w}.yield_pressure_MPa.{name}", v, "> 0 (MPa)")
        require(isinstance(self.softening_K, dict), f"{w}.softening_K", self.softening_K,
                "a mapping species -> [onset K, melting K]")
        for name, v in self.softening_K.items():
            ok = (isinstance(v, (list, tuple)) and len(v) == 2 and all(is_number(x) for x in v)
                  and 0 < v[0] < v[1])  # fmt: skip
            require(ok, f"{w}.softening_K.{name}", v, "[onset K, melting K] with 0 < onset < melting")

    def model(self) -> Any:
        """The engine's `ContactModel` (rolling ``none`` when there is no rolling friction anywhere)."""
        from electrodem.engine import ContactModel

        rolls = self.rolling_friction > 0 or any(
            o.get("rolling_friction", 0) > 0 for o in self.species_overrides.values())
        return ContactModel(normal=self.normal, damping=self.damping, tangential=self.tangential,
                            rolling=self.rolling if rolls else "none", cohesion=self.cohesion)



@dataclass(frozen=True)
class ShortcutParams:
    """The shared ``shortcuts`` config group (DOMAIN.md §6; each logged by the steps that use it).

    modulus_scale : factor on every Young's modulus (softened contacts), in (0, 1].
    modulus_cap_Pa : no species (nor tool, nor foil) stiffer than this after scaling (Pa); null = none.
    fines_radius_um : particles with a radius below this (um) are fines.
    fines_density_scale : factor (>= 1) on the fines' inertia (the time step grows by its square root).
    fines_weight : ``scaled`` (weight x the same factor) or ``real`` (gravity on the real mass:
        inertia-only scaling; see the module docstring).
    gravity_scale : factor on gravity, or ``auto`` (the settle chooses it from overlap targets).
    rayleigh_fraction : time step as a fraction of the Rayleigh time, in (0, 0.5].
    where : dotted path named in errors.
    """

    modulus_scale: float = 1.0
    modulus_cap_Pa: float | None = 1.0e9
    fines_radius_um: float = 1.5
    fines_density_scale: float = 100.0
    fines_weight: str = "scaled"
    gravity_scale: float | str = "auto"
    rayleigh_fraction: float = 0.3
    where: str = field(default="shortcuts", repr=False, compare=False)

    def __post_init__(self) -> None:
        w = self.where
        require(0 < _num(self.modulus_scale, f"{w}.modulus_scale") <= 1, f"{w}.modulus_scale",
                self.modulus_scale, "in (0, 1] (1 = real moduli)")
        if self.modulus_cap_Pa is not None:
            require(_num(self.modulus_cap_Pa, f"{w}.modulus_cap_Pa") > 0, f"{w}.modulus_cap_Pa",
                    self.modulus_cap_Pa, "null or > 0 (Pa)")
        require(_num(self.fines_radius_um, f"{w}.fines_radius_um") >= 0, f"{w}.fines_radius_um",
                self.fines_radius_um, ">= 0 (um)")
        require(_num(self.fines_density_scale, f"{w}.fines_density_scale") >= 1, f"{w}.fines_density_scale",
                self.fines_density_scale, ">= 1")
        require(self.fines_weight in FINES_WEIGHT, f"{w}.fines_weight", self.fines_weight,
                f"one of {FINES_WEIGHT}")
        if self.gravity_scale != "auto":
            require(is_number(self.gravity_scale) and self.gravity_scale > 0, f"{w}.gravity_scale",
                    self.gravity_scale, "'auto' or a number > 0")
        require(0 < _num(self.rayleigh_fraction, f"{w}.rayleigh_fraction") <= 0.5, f"{w}.rayleigh_fraction",
                self.rayleigh_fraction, "in (0, 0.5]")

    def modulus_Pa(self, youngs_modulus_Pa: float) -> float:
        """Softened Young's modulus (Pa): min(E x modulus_scale, modulus_cap_Pa)."""
        e = youngs_modulus_Pa * self.modulus_scale
        return min(e, self.modulus_cap_Pa) if self.modulus_cap_Pa is not None else e

    def log(self) -> dict[str, Any]:
        """The values as ``metrics.json -> shortcuts`` records them."""
        d = asdict(self)
        d.pop("where")
        return d


def check_species_overrides(overrides: Any, key: str) -> None:
    """Refuse a ``species_overrides`` mapping {species: {friction|restitution|rolling_friction: value}}
    whose shape, keys or values are invalid (restitution in (0, 1], the others >= 0, all finite); species
    names are checked against the formulation by the steps' ``check`` and against the microstructure by
    `engine_materials`."""
    require(isinstance(overrides, dict), key, overrides, "a mapping species -> {key: value}")
    for name, ov in overrides.items():
        require(isinstance(ov, dict), f"{key}.{name}", ov, f"a mapping with keys among {OVERRIDE_KEYS}")
        for k, v in ov.items():
            if k not in OVERRIDE_KEYS:
                raise unknown_key(f"{key}.{name}.{k}", v, OVERRIDE_KEYS)
            ok = is_number(v) and (0 < v <= 1 if k == "restitution" else v >= 0)
            require(ok, f"{key}.{name}.{k}", v, "in (0, 1]" if k == "restitution" else ">= 0")


# ------------------------------------------------------------------------------------- config
SHARED_GROUPS: dict[str, type] = {"contact": ContactParams, "shortcuts": ShortcutParams}
"""Top-level config groups every engine step draws on, by name."""


def shared_params(step_cfg: Mapping[str, Any], shared: Mapping[str, Any], prefix: str,
                  defaults: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """``step_cfg`` with its ``contact`` / ``shortcuts`` entries turned into validated `ContactParams` /
    `ShortcutParams`: the run's shared group (``shared[group]``, refused under ``contact.<key>``) with the
    step's overrides merged over it (``step_cfg[group]``, else the step's built-in ``defaults[group]``;
    refused under ``<prefix>.contact.<key>``)."""
    out = dict(step_cfg)
    for group, cls in SHARED_GROUPS.items():
        known = [f.name for f in fields(cls) if f.name != "where"]
        base = shared.get(group) or {}
        require(isinstance(base, Mapping), group, base, f"a mapping with keys among {known}")
        over = out.get(group, defaults.get(group, {})) or {}
        require(isinstance(over, Mapping), f"{prefix}.{group}", over,
                f"a mapping of {group} keys to override for this step, among {known}")
        for where, cfg in ((group, base), (f"{prefix}.{group}", over)):
            for k in cfg:
                if k not in known:
                    raise unknown_key(f"{where}.{k}", cfg[k], known)
        build(cls, {**base, "where": group}, group)  # the shared group alone: its errors name it
        out[group] = build(cls, {**base, **over, "where": f"{prefix}.{group}"}, f"{prefix}.{group}")
    return out


def step_params_builder(cls: type, defaults: Mapping[str, Mapping[str, Any]]) -> Any:
    """A `ProcessStep.build_params` for an engine step whose parameter class ``cls`` has ``contact`` and
    ``shortcuts`` fields: the shared groups (`RunInputs.shared`) with the step's overrides merged."""

    def build_params(cfg: Mapping[str, Any], inputs: Any, prefix: str) -> Any:
        own = {f.name for f in fields(cls)}
        for key, value in cfg.items():
            if key in MOVED_KEYS and key not in own:
                raise ConfigError(f"{prefix}.{key}", value,
                                  f"moved to the shared group: {MOVED_KEYS[key]} (every step), or "
                                  f"{prefix}.{MOVED_KEYS[key]} (this step only)")
        return build(cls, shared_params(cfg, inputs.shared, prefix, defaults), prefix)

    return build_params


SPECIES_TABLES = ("species_overrides", "yield_pressure_MPa", "softening_K")


def check_contact_species(c: ContactParams, inputs: Any) -> None:
    """Every species named in a per-species table of the shared ``contact`` group (refused under
    ``contact.<table>.<name>``) and of the step's merged ``c`` (under ``<c.where>.<table>.<name>``) is a
    material of the run's formulation, before any compute."""
    shared = inputs.shared.get("contact") or {}
    tables = [("contact", shared.get(k) or {}, k) for k in SPECIES_TABLES]
    tables += [(c.where, getattr(c, k), k) for k in SPECIES_TABLES]
    for where, table, key in tables:
        check_species_names(table, f"{where}.{key}", inputs)


MOVED_KEYS = {
    **{k: f"contact.{k}" for k in ("friction", "restitution", "rolling_friction", "species_overrides",
                                   "cohesion", "surface_energy_scale", "current_collector", "softening_K",
                                   "yield_pressure_from_library")},
    **{k: f"shortcuts.{k}" for k in ("modulus_scale", "modulus_cap_Pa", "fines_radius_um",
                                     "fines_density_scale", "gravity_scale", "rayleigh_fraction")},
    "rolling_model": "contact.rolling", "contact_normal": "contact.normal", "normal_model": "contact.normal",
    "roll_friction": "contact.tool_friction", "yield_pressure_Pa": "contact.yield_pressure_MPa",
    "yield_pressure_MPa": "contact.yield_pressure_MPa",
    "yield_pressure_MPa_by_species": "contact.yield_pressure_MPa",
}  # fmt: skip
"""Keys an engine step's group held before the shared groups, and where each lives now."""


# ------------------------------------------------------------------------------------- mapping
def collector_for(micro: Microstructure, choice: str = "auto") -> CollectorFoil:
    """The current-collector foil of ``micro``: ``aluminium``, ``copper`` or ``auto`` (copper under a
    graphite active material, aluminium otherwise)."""
    if choice == "auto":
        graphite = any(s.role == "AM" and "graphite" in s.name for s in micro.species)
        choice = "copper" if graphite else "aluminium"
    require(choice in COLLECTORS, "contact.current_collector", choice, f"one of {COLLECTOR_CHOICES}")
    return COLLECTORS[choice]


def _elastic(name: str, body: Any, c: ContactParams, sh: ShortcutParams, friction: float,
             gamma_scale: float) -> Any:
    from electrodem.engine import Material

    return Material(name=name, density_kg_per_m3=body.density_kg_per_m3,
                    youngs_modulus_Pa=sh.modulus_Pa(body.youngs_modulus_Pa), poisson_ratio=body.poisson_ratio,
                    restitution=c.restitution, friction=friction, rolling_friction=c.rolling_friction,
                    surface_energy_J_per_m2=gamma_scale * body.surface_energy_J_per_m2)  # fmt: skip


def engine_materials(micro: Microstructure, c: ContactParams, sh: ShortcutParams,
                     tools: tuple[str, ...] = ()) -> list[Any]:
    """Engine materials, in this order: ``micro``'s species (index = species id), the current collector
    (``current_collector``: the foil of ``c.current_collector``), then one elastic tool-steel material
    per name of ``tools`` (plates, rolls; friction ``c.tool_friction``). Moduli are softened by ``sh``,
    surface energies scaled by ``c.surface_energy_scale``; yield pressures and softening ranges follow
    ``c`` (library values unless overridden; used by the ``thornton_ning`` law only). A species name in
    ``c`` that the microstructure lacks is a `ConfigError`."""
    from electrodem.engine import Material

    names = [s.name for s in micro.species]
    for key in ("species_overrides", "yield_pressure_MPa", "softening_K"):
        table = getattr(c, key)
        unknown = sorted(set(table) - set(names))
        require(not unknown, f"{c.where}.{key}.{unknown[0] if unknown else ''}",
                table.get(unknown[0]) if unknown else None, f"a species of the microstructure: {names}")
    # The engine mixes W by geometric mean: 2 gamma per material gives W_ab = 2 sqrt(gamma_a gamma_b)
    # (Dupre for a like pair, Girifalco-Good/Berthelot for unlike dispersive surfaces).
    w_scale = 2.0 * float(c.surface_energy_scale)
    mats = []
    for s in micro.species:
        ov = c.species_overrides.get(s.name, {})
        lib = c.yield_pressure_from_library
        yield_pa = c.yield_pressure_MPa[s.name] * 1e6 if s.name in c.yield_pressure_MPa else (
            s.yield_pressure_Pa if lib else 0.0)
        soft = c.softening_K.get(s.name) or ((s.softening_onset_K, s.melting_K) if lib else (None, None))
        mats.append(Material(
            name=s.name, density_kg_per_m3=s.density_kg_per_m3,
            youngs_modulus_Pa=sh.modulus_Pa(s.youngs_modulus_Pa), poisson_ratio=s.poisson_ratio,
            restitution=ov.get("restitution", c.restitution), friction=ov.get("friction", c.friction),
            rolling_friction=ov.get("rolling_friction", c.rolling_friction),
            yield_pressure_Pa=yield_pa or None,
            softening_onset_K=None if soft[0] is None else float(soft[0]),
            melting_K=None if soft[1] is None else float(soft[1]),
            surface_energy_J_per_m2=w_scale * s.surface_energy_J_per_m2,
        ))  # fmt: skip
    mats.append(_elastic(CC_MATERIAL, collector_for(micro, c.current_collector), c, sh, c.friction, w_scale))
    mats += [_elastic(t, TOOL_STEEL, c, sh, c.tool_friction, w_scale) for t in tools]
    return mats


def masses(micro: Microstructure, sh: ShortcutParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(inertial masses, gravitational masses, fines mask) of ``micro``'s particles (kg): the fines'
    inertia x ``fines_density_scale``; their weight real (``fines_weight: real``) or scaled likewise."""
    fines = micro.radii_m < sh.fines_radius_um * 1e-6
    real = micro.masses_kg
    inertial = real * np.where(fines, sh.fines_density_scale, 1.0)
    return inertial, (real.copy() if sh.fines_weight == "real" else inertial.copy()), fines


def shortcuts_log(sh: ShortcutParams, c: ContactParams, fines: np.ndarray) -> dict[str, Any]:
    """The shared shortcuts a step logs into ``metrics.json -> shortcuts`` (its own come on top)."""
    out = sh.log()
    out.pop("gravity_scale")  # only the settle chooses a gravity; it logs its own
    out.update(fines_count=int(fines.sum()), surface_energy_scale=c.surface_energy_scale, cohesion=c.cohesion,
               contact_normal=c.normal)
    return out



# ------------------------------------------------------------------------------------- bonds
BOND_FAILURE = ("brittle", "plastic")


@dataclass(frozen=True)
class BondLaw:
    """One entry of the ``bonds`` config group: the parallel-bond law (`electrodem.engine.bonds.Bonds`,
    Potyondy–Cundall) of one kind of bond a route creates (PTFE fibrils, binder bridges).

    youngs_modulus_MPa, poisson_ratio : bond material E_b (MPa), nu_b: k_n = E_b / L_0, k_s = G_b / L_0.
    radius_multiplier : bond radius / smaller particle radius.
    tensile_strength_MPa, shear_strength_MPa : failure stresses (MPa; null = never).
    failure : ``brittle`` or ``plastic`` (axial flow at ``yield_stress_MPa``, break at
        ``breaking_strain``).
    damping_ratio : bond dashpot ratio to critical.
    source : where the numbers come from (or "calibrated on ...").
    where : dotted path named in errors.
    """

    youngs_modulus_MPa: float
    poisson_ratio: float
    radius_multiplier: float = 1.0
    tensile_strength_MPa: float | None = None
    shear_strength_MPa: float | None = None
    failure: str = "brittle"
    yield_stress_MPa: float | None = None
    breaking_strain: float | None = None
    damping_ratio: float = 0.0
    source: str = ""
    where: str = field(default="bonds", repr=False, compare=False)

    def __post_init__(self) -> None:
        w = self.where
        require(_num(self.youngs_modulus_MPa, f"{w}.youngs_modulus_MPa") > 0, f"{w}.youngs_modulus_MPa",
                self.youngs_modulus_MPa, "> 0 (MPa)")
        require(-1 < _num(self.poisson_ratio, f"{w}.poisson_ratio") < 0.5, f"{w}.poisson_ratio",
                self.poisson_ratio, "in (-1, 0.5)")
        require(_num(self.radius_multiplier, f"{w}.radius_multiplier") > 0, f"{w}.radius_multiplier",
                self.radius_multiplier, "> 0")
        for key in ("tensile_strength_MPa", "shear_strength_MPa", "yield_stress_MPa", "breaking_strain"):
            v = getattr(self, key)
            require(v is None or (is_number(v) and v > 0), f"{w}.{key}", v, "null or > 0")
        require(self.failure in BOND_FAILURE, f"{w}.failure", self.failure, f"one of {BOND_FAILURE}")
        if self.failure == "plastic":
            for key in ("yield_stress_MPa", "breaking_strain"):
                require(getattr(self, key) is not None, f"{w}.{key}", None,
                        "set (> 0) with failure 'plastic'")
        require(_num(self.damping_ratio, f"{w}.damping_ratio") >= 0, f"{w}.damping_ratio", self.damping_ratio,
                ">= 0")
        require(isinstance(self.source, str) and self.source.strip() != "", f"{w}.source", self.source,
                "where the numbers come from, or 'calibrated on ...'")

    def extension(self, name: str) -> Any:
        """The engine's bond extension (`Bonds`) with this law as the default of every bond added."""
        from electrodem.engine.bonds import Bonds

        def pa(v: float | None) -> float:
            return math.inf if v is None else float(v) * 1e6

        return Bonds(radius_multiplier=float(self.radius_multiplier),
                     youngs_modulus_Pa=float(self.youngs_modulus_MPa) * 1e6,
                     poisson_ratio=float(self.poisson_ratio),
                     tensile_strength_Pa=pa(self.tensile_strength_MPa),
                     shear_strength_Pa=pa(self.shear_strength_MPa), failure=self.failure,
                     yield_stress_Pa=None if self.yield_stress_MPa is None else pa(self.yield_stress_MPa),
                     breaking_strain=self.breaking_strain, damping_ratio=float(self.damping_ratio),
                     name=name)  # fmt: skip


def bond_laws(cfg: Any) -> dict[str, BondLaw]:
    """The ``bonds`` config group, validated: {bond kind: `BondLaw`}."""
    cfg = cfg or {}
    require(isinstance(cfg, Mapping), "bonds", cfg, "a mapping {bond kind: {law keys}}")
    out = {}
    known = [f.name for f in fields(BondLaw) if f.name != "where"]
    for kind, law in cfg.items():
        where = f"bonds.{kind}"
        require(isinstance(law, Mapping), where, law, f"a mapping with keys among {known}")
        for k in law:
            if k not in known:
                raise unknown_key(f"{where}.{k}", law[k], known)
        for k in ("youngs_modulus_MPa", "poisson_ratio"):
            require(k in law, f"{where}.{k}", None, "set: every bond law needs it")
        out[str(kind)] = build(BondLaw, {**law, "where": where}, where)
    return out
