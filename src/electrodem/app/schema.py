"""Validation of a composed run configuration into typed parameter objects, before any compute.

Every step's parameters are a dataclass that validates itself in ``__post_init__`` (raising
`ConfigError` with the dotted key). This module builds them all from the Hydra config up front, so a
bad value anywhere fails the run before placement starts: every config group is validated on every
run, whether or not the route uses it (a typo in ``engine`` or ``compact`` is refused on a
``route=place`` run too), unknown keys are refused with the nearest valid name, and ``resume_from``
is read and checked here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from electrodem.config.errors import ConfigError, require, require_known_keys
from electrodem.io.snapshot import Microstructure, SnapshotError
from electrodem.materials.formulation import Formulation, RVESpec, expected_counts
from electrodem.materials.library import Material, load_library
from electrodem.process.place import PlaceParams

TOP_LEVEL_KEYS = ("material", "formulation", "rve", "route", "seed", "place", "settle", "compact",
                  "calender", "shear", "engine", "analysis", "output", "progress", "resume_from")
"""Keys of the composed run configuration (``hydra`` aside: present only when Hydra's own node is
composed in, e.g. ``compose(..., return_hydra_config=True)``)."""
ROUTE_KEYS = ("name", "steps")
OUTPUT_KEYS = ("vtu", "render")


def build(cls: type, cfg: Mapping[str, Any] | None, prefix: str) -> Any:
    """Instantiate dataclass ``cls`` from a mapping, naming unknown keys (with the nearest known one)
    and bad types."""
    cfg = dict(cfg or {})
    require(all(isinstance(k, str) for k in cfg), prefix, cfg, "a mapping with text keys")
    require_known_keys(cfg, (f.name for f in dataclasses.fields(cls)), prefix)
    try:
        return cls(**cfg)
    except TypeError as e:  # a wrong type that the dataclass could not even compare
        # Name the key: the first one that fails on its own against the defaults.
        bad = next((k for k in cfg if _type_error_alone(cls, k, cfg[k])), None)
        key, value = (f"{prefix}.{bad}", cfg[bad]) if bad is not None else (prefix, cfg)
        raise ConfigError(key, value, f"a value of the right type ({e})") from e


def _type_error_alone(cls: type, key: str, value: Any) -> bool:
    """Whether ``cls(key=value)`` with every other field at its default raises TypeError."""
    try:
        cls(**{key: value})
    except TypeError:
        return True
    except ValueError:  # ConfigError included: a checked value, not a type the checks choke on
        return False
    return False


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
    resume: Microstructure | None = None
    """The snapshot ``resume_from`` names, read and checked by `validate` (None: a fresh run)."""


def validate(cfg: DictConfig | Mapping[str, Any]) -> RunConfig:
    """Validate a composed config; raises `ConfigError` naming the first bad key.

    Every group is built (and so checked) whatever the route; the parameters of steps that the route
    does not run are then dropped (None in `RunConfig`), as are the engine options of a route without
    an engine step. Checks that only make sense for a step that runs (the periodic box against the
    largest particle for DEM steps, the shear cell's z period) stay with the route. ``resume_from`` is
    loaded here (`RunConfig.resume`), so a missing or corrupt checkpoint is refused before any compute.
    """
    c = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    assert isinstance(c, dict)
    require_known_keys({k: v for k, v in c.items() if k != "hydra"}, TOP_LEVEL_KEYS, "")
    mats = c.get("material")
    require(isinstance(mats, dict) and len(mats) > 0, "material", mats, "a mapping of materials")
    library = load_library(mats)
    form_cfg = c.get("formulation")
    require(isinstance(form_cfg, dict), "formulation", form_cfg, "a formulation mapping")
    formulation = Formulation.from_config(form_cfg, library)
    targets = form_cfg.get("targets") or {}
    rve_cfg = c.get("rve") or {}
    require(isinstance(rve_cfg, dict), "rve", rve_cfg, "a mapping of RVE sizes")
    rve = RVESpec.from_config(rve_cfg, default_porosity=targets.get("porosity"))
    expected_counts(formulation, rve)  # impossible loadings and oversized RVEs fail here

    route = c.get("route") or {}
    require(isinstance(route, dict), "route", route, "a mapping {name, steps}")
    require_known_keys(route, ROUTE_KEYS, "route")
    steps_cfg = route.get("steps") or ()
    require(isinstance(steps_cfg, (list, tuple)), "route.steps", steps_cfg,
            f"a list of steps starting with 'place', from {STEPS}")
    steps = tuple(steps_cfg)
    require(len(steps) > 0 and steps[0] == "place", "route.steps", list(steps),
            f"a list of steps starting with 'place', from {STEPS}")
    for s in steps:
        require(isinstance(s, str) and s in STEPS, "route.steps", s, f"one of the implemented steps {STEPS}")
    require(len(set(steps)) == len(steps), "route.steps", list(steps), "each step at most once")
    seed = c.get("seed", 0)
    require(isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0, "seed", seed,
            "a non-negative integer")

    species = sorted(comp.material.name for comp in formulation.components)
    place = build(PlaceParams, c.get("place"), "place")
    settle_cls, _ = _settle_types()
    settle = build(settle_cls, c.get("settle"), "settle")
    from electrodem.process.compact import CompactParams

    compact = build(CompactParams, c.get("compact"), "compact")
    calender = calender_params(c.get("calender"), library, formulation)
    from electrodem.process.shear_mix import ShearParams

    shear = build(ShearParams, c.get("shear"), "shear")
    # Species named by per-species settings must be in the run (else refused only after placement).
    for group, params in (("settle", settle), ("compact", compact), ("shear", shear)):
        for name, ov in params.species_overrides.items():
            require(name in species, f"{group}.species_overrides.{name}", ov,
                    f"a material of the formulation: {species}")
    for name, v in compact.yield_pressure_MPa_by_species.items():
        require(name in species, f"compact.yield_pressure_MPa_by_species.{name}", v,
                f"a material of the formulation: {species}")
    engine = build(_engine_options_type(), c.get("engine"), "engine")
    ap = _analysis_params_type()
    analysis = build(ap, c.get("analysis"), "analysis") if ap is not None else None

    if any(s in steps for s in ("settle", "compact", "calender", "shear")):
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
    else:
        engine = None  # no engine step: the options were checked, nothing initialises Taichi
    output = c.get("output") or {}
    require(isinstance(output, dict), "output", output, f"a mapping with keys among {OUTPUT_KEYS}")
    require_known_keys(output, OUTPUT_KEYS, "output")
    output = dict(output)
    for k in OUTPUT_KEYS:
        require(isinstance(output.get(k, True), bool), f"output.{k}", output.get(k), "true or false")
    progress = c.get("progress", True)
    require(isinstance(progress, bool), "progress", progress, "true or false")
    resume = load_resume(c.get("resume_from"), steps)
    # Steps the route does not run keep None, as the runner and earlier runs expect.
    return RunConfig(library, formulation, rve, steps, str(route.get("name", "custom")), seed, place,
                     settle if "settle" in steps else None, engine,
                     compact if "compact" in steps else None,
                     analysis if "analyse" in steps else None, progress, output,
                     shear if "shear" in steps else None,
                     calender if "calender" in steps else None, resume)


def load_resume(resume_from: Any, steps: tuple[str, ...]) -> Microstructure | None:
    """The snapshot ``resume_from`` names (None when null), checked: a readable snapshot written by a
    run, whose completed stages begin ``steps``; `ConfigError` naming the file and what is wrong."""
    if resume_from is None:
        return None
    require(isinstance(resume_from, str) and resume_from.strip() != "", "resume_from", resume_from,
            "null or the path of a run's checkpoint.npz")
    allowed = "the path of a run's checkpoint.npz (or snapshots/NN_step.npz)"
    try:
        micro = Microstructure.load(resume_from)
    except SnapshotError as e:
        raise ConfigError("resume_from", resume_from, f"{allowed}; this file: {e.reason}") from None
    done = micro.metadata.get("completed_stages")
    require(isinstance(done, list) and len(done) > 0, "resume_from", resume_from,
            f"{allowed}; this snapshot records no completed stages (not written by an electrodem run)")
    require(list(steps[: len(done)]) == done, "resume_from", resume_from,
            f"a snapshot whose completed stages begin route.steps={list(steps)}; it completed {done}")
    return micro


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
    # CalenderParams' own fields plus this app key; checked here so the message lists both.
    require_known_keys(cfg, [*(f.name for f in dataclasses.fields(CalenderParams)), *CALENDER_APP_KEYS],
                       "calender")
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
