"""Validation of a composed run configuration into typed parameter objects, before any compute.

Every step's parameters are a dataclass that validates itself in ``__post_init__`` (raising
`ConfigError` with the dotted key). This module builds them all from the Hydra config up front, so a
bad value anywhere fails the run before placement starts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from electrodem.config.errors import ConfigError, require
from electrodem.materials.formulation import Formulation, RVESpec, expected_counts
from electrodem.materials.library import Material, load_library
from electrodem.process.place import PlaceParams


def build(cls: type, cfg: Mapping[str, Any] | None, prefix: str) -> Any:
    """Instantiate dataclass ``cls`` from a mapping, naming unknown keys and bad types."""
    cfg = dict(cfg or {})
    names = {f.name for f in dataclasses.fields(cls)}
    for k, v in cfg.items():
        require(k in names, f"{prefix}.{k}", v, f"a known key of {prefix}: {sorted(names)}")
    try:
        return cls(**cfg)
    except TypeError as e:  # a wrong type that the dataclass could not even compare
        raise ConfigError(prefix, cfg, f"values of the right type ({e})") from e


def _settle_types() -> tuple[type, Callable[..., Any]]:
    from electrodem.process.settle import SettleParams, settle

    return SettleParams, settle


def _engine_options_type() -> type:
    from electrodem.engine import EngineOptions

    return EngineOptions


def _analysis_params_type() -> type | None:
    try:
        from electrodem.analysis.report import AnalysisParams
    except ImportError:
        return None
    return AnalysisParams


STEPS = ("place", "settle", "compact", "calender", "shear", "analyse")
"""Process steps that exist. A route is an ordered subset starting with ``place``."""


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs, validated."""

    library: dict[str, Material]
    formulation: Formulation
    rve: RVESpec
    steps: tuple[str, ...]
    route_name: str
    seed: int
    place: PlaceParams
    settle: Any | None
    engine: Any | None
    compact: Any | None
    analysis: Any | None
    progress: bool
    output: dict[str, Any]
    shear: Any | None = None
    calender: Any | None = None


def validate(cfg: DictConfig | Mapping[str, Any]) -> RunConfig:
    """Validate a composed config; raises `ConfigError` naming the first bad key."""
    c = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    assert isinstance(c, dict)
    mats = c.get("material")
    require(isinstance(mats, dict) and len(mats) > 0, "material", mats, "a mapping of materials")
    library = load_library(mats)
    form_cfg = c.get("formulation")
    require(isinstance(form_cfg, dict), "formulation", form_cfg, "a formulation mapping")
    formulation = Formulation.from_config(form_cfg, library)
    targets = form_cfg.get("targets") or {}
    rve = RVESpec.from_config(c.get("rve") or {}, default_porosity=targets.get("porosity"))
    expected_counts(formulation, rve)  # impossible loadings and oversized RVEs fail here

    route = c.get("route") or {}
    steps = tuple(route.get("steps") or ())
    require(len(steps) > 0 and steps[0] == "place", "route.steps", list(steps),
            f"a list of steps starting with 'place', from {STEPS}")
    for s in steps:
        require(s in STEPS, "route.steps", s, f"one of the implemented steps {STEPS}")
    require(len(set(steps)) == len(steps), "route.steps", list(steps), "each step at most once")
    seed = c.get("seed", 0)
    require(isinstance(seed, int) and seed >= 0, "seed", seed, "a non-negative integer")

    place = build(PlaceParams, c.get("place"), "place")
    engine = settle = compact = None
    if "settle" in steps:
        settle_cls, _ = _settle_types()
        settle = build(settle_cls, c.get("settle"), "settle")
    if "compact" in steps:
        from electrodem.process.compact import CompactParams

        compact = build(CompactParams, c.get("compact"), "compact")
    calender = None
    if "calender" in steps:
        calender = calender_params(c.get("calender"), library, formulation)
    shear = None
    if "shear" in steps:
        from electrodem.process.shear_mix import ShearParams

        shear = build(ShearParams, c.get("shear"), "shear")
    if any(s in steps for s in ("settle", "compact", "calender", "shear")):
        engine = build(_engine_options_type(), c.get("engine"), "engine")
        # Minimum-image contacts need each periodic length above 2 x (largest diameter + skin); the
        # engine's automatic skin is half the smallest radius.
        d_max = max(comp.material.psd.largest_um for comp in formulation.components)
        d_min = min(comp.material.psd.smallest_um for comp in formulation.components)
        need = 2.0 * d_max + 0.5 * d_min
        for k in ("box_x_um", "box_y_um"):
            require(getattr(rve, k) > need, f"rve.{k}", getattr(rve, k),
                    f"> {need:.3g} µm for DEM steps: twice the largest particle diameter ({d_max:.3g} µm) "
                    f"plus the neighbour skin; enlarge the box or lower the largest d_max_um")
        if "shear" in steps:
            # The shear cell is periodic in z too, with the loose placed height as its period.
            h_um = loose_height_um(formulation, rve, place.packing_fraction)
            require(h_um > need, "rve.thickness_um", rve.thickness_um,
                    f"a loading whose loose placed height (now {h_um:.3g} µm at place.packing_fraction="
                    f"{place.packing_fraction}) exceeds {need:.3g} µm, the z period the shear cell needs")
    analysis = None
    if "analyse" in steps:
        ap = _analysis_params_type()
        if ap is not None:
            analysis = build(ap, c.get("analysis"), "analysis")
    output = dict(c.get("output") or {})
    for k in ("vtu", "render"):
        require(isinstance(output.get(k, True), bool), f"output.{k}", output.get(k), "true or false")
    progress = c.get("progress", True)
    require(isinstance(progress, bool), "progress", progress, "true or false")
    return RunConfig(library, formulation, rve, steps, str(route.get("name", "custom")), seed, place,
                     settle, engine, compact, analysis, progress, output, shear, calender)


CALENDER_APP_KEYS = ("yield_pressure_from_library",)
"""Keys of the ``calender`` config group read here, not fields of `CalenderParams`."""


def calender_params(cfg: Mapping[str, Any] | None, library: dict[str, Material],
                    formulation: Formulation) -> Any:
    """`CalenderParams` from the ``calender`` config group (its own checks run on construction).

    ``yield_pressure_from_library: true`` (with ``normal_model: thornton_ning``) fills the yield
    pressure (``contact_yield_pressure_MPa`` > 0) and softening range (``softening_onset_K``,
    ``melting_K``) of every formulation species the config does not name from the materials library;
    explicit ``yield_pressure_Pa`` / ``softening_K`` entries win. Species keys must be materials of the
    formulation.
    """
    from electrodem.process.calender import CalenderParams

    cfg = dict(cfg or {})
    from_lib = cfg.pop("yield_pressure_from_library", False)
    require(isinstance(from_lib, bool), "calender.yield_pressure_from_library", from_lib, "true or false")
    names = sorted(comp.material.name for comp in formulation.components)
    for key in ("yield_pressure_Pa", "softening_K"):
        table = cfg.get(key) or {}
        require(isinstance(table, dict), f"calender.{key}", table, "a mapping species -> value")
        for k in table:
            require(k in names, f"calender.{key}.{k}", table[k], f"a material of the formulation: {names}")
    if from_lib and cfg.get("normal_model", "thornton_ning") == "thornton_ning":
        yields = dict(cfg.get("yield_pressure_Pa") or {})
        soft = dict(cfg.get("softening_K") or {})
        for n in names:
            mat = library[n]
            if n not in yields and mat.contact_yield_pressure_MPa > 0:
                yields[n] = mat.contact_yield_pressure_MPa * 1e6
            if n not in soft and mat.softening_onset_K is not None and mat.melting_K is not None:
                soft[n] = (float(mat.softening_onset_K), float(mat.melting_K))
        cfg["yield_pressure_Pa"], cfg["softening_K"] = yields, soft
    return build(CalenderParams, cfg, "calender")


def loose_height_um(formulation: Formulation, rve: RVESpec, packing_fraction: float) -> float:
    """Height (µm) of the loose bed `electrodem.process.place.place` builds: solid volume / (area x
    packing fraction), from the formulation's mass and densities (no particle drawn)."""
    from electrodem.materials.formulation import solid_mass_g

    m_g = solid_mass_g(formulation, rve)
    v_um3 = sum(c.wt_pct / 100.0 * m_g / c.material.density_g_cm3 * 1e12 for c in formulation.components)
    return v_um3 / (rve.box_x_um * rve.box_y_um * packing_fraction)
