"""Validation of a composed run configuration into typed parameter objects, before any compute.

Every step's parameters are a dataclass that validates itself in ``__post_init__`` (raising
`ConfigError` with the dotted key). This module builds them all from the Hydra config up front, looping
over the step registry (`electrodem.process.recipe`), so a bad value anywhere fails the run before
placement starts: every registered step's config group is validated on every run, whether or not the
route uses it (a typo in ``engine`` or ``compact`` is refused on a ``route=place`` run too), each route
entry's overrides are validated with its step, unknown keys are refused with the nearest valid name,
and ``resume_from`` is read and checked here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from electrodem.config.errors import ConfigError, require, require_known_keys
from electrodem.config.params import build
from electrodem.io.snapshot import Microstructure, SnapshotError
from electrodem.materials.formulation import Formulation, RVESpec, expected_counts
from electrodem.materials.library import Material, load_library
from electrodem.process.engine_map import bond_laws
from electrodem.process.recipe import (
    ProcessStep,
    RouteEntry,
    RunInputs,
    merged,
    min_periodic_length_um,
    parse_route,
    registry,
)

BASE_KEYS = ("material", "formulation", "rve", "route", "seed", "engine", "output", "progress", "resume_from",
             "plugins", "contact", "shortcuts", "bonds")
"""Top-level keys of a run configuration besides the registered steps' config groups (``hydra``
aside: present only when Hydra's own node is composed in, e.g. ``compose(...,
return_hydra_config=True)``)."""
ROUTE_KEYS = ("name", "steps")
OUTPUT_KEYS = ("vtu", "render")


def top_level_keys(steps: Mapping[str, ProcessStep]) -> tuple[str, ...]:
    """Every top-level key a run configuration may hold, with these steps registered."""
    return (*BASE_KEYS, *sorted({s.config_group for s in steps.values()}))


def _engine_options_type() -> type:
    from electrodem.engine import EngineOptions

    return EngineOptions


@dataclass(frozen=True)
class PlannedStep:
    """One route entry, validated: the step, its label and its parameters (overrides merged)."""

    entry: RouteEntry
    step: ProcessStep
    params: Any

    @property
    def label(self) -> str:
        return self.entry.label


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs, validated."""

    inputs: RunInputs
    route_name: str
    plan: tuple[PlannedStep, ...]
    engine: Any | None
    """`EngineOptions`; None on a route without an engine step (nothing initialises Taichi)."""
    progress: bool
    output: dict[str, Any]
    resume: Microstructure | None = None
    """The snapshot ``resume_from`` names, read and checked by `validate` (None: a fresh run)."""

    @property
    def steps(self) -> tuple[str, ...]:
        """The route's entry labels, in order."""
        return tuple(p.label for p in self.plan)

    @property
    def formulation(self) -> Formulation:
        return self.inputs.formulation

    @property
    def seed(self) -> int:
        return self.inputs.seed


def validate(cfg: DictConfig | Mapping[str, Any]) -> RunConfig:
    """Validate a composed config; raises `ConfigError` naming the first bad key.

    Every registered step's group is built (and so checked) whatever the route, then each route entry's
    parameters (its overrides merged into its group, refused under ``route.steps.<k>.<name>``); the
    engine options are dropped for a route without an engine step. Checks that only make sense for a
    step that runs (the periodic box against the largest particle for engine steps, each step's own
    ``check``) stay with the route. ``resume_from`` is loaded here (`RunConfig.resume`), so a missing or
    corrupt checkpoint is refused before any compute.
    """
    c = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    assert isinstance(c, dict)
    plugins = c.get("plugins") or []
    require(isinstance(plugins, (list, tuple)), "plugins", plugins, "a list of module names defining STEP")
    steps = registry(plugins)
    require_known_keys({k: v for k, v in c.items() if k != "hydra"}, top_level_keys(steps), "")
    mats = c.get("material")
    require(isinstance(mats, dict) and len(mats) > 0, "material", mats, "a mapping of materials")
    library: dict[str, Material] = load_library(mats)
    form_cfg = c.get("formulation")
    require(isinstance(form_cfg, dict), "formulation", form_cfg, "a formulation mapping")
    formulation = Formulation.from_config(form_cfg, library)
    targets = form_cfg.get("targets") or {}
    rve_cfg = c.get("rve") or {}
    require(isinstance(rve_cfg, dict), "rve", rve_cfg, "a mapping of RVE sizes")
    rve = RVESpec.from_config(rve_cfg, default_porosity=targets.get("porosity"))
    expected_counts(formulation, rve)  # impossible loadings and oversized RVEs fail here
    seed = c.get("seed", 0)
    require(isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0, "seed", seed,
            "a non-negative integer")
    # The groups every engine step shares (`electrodem.process.engine_map`): contact and shortcuts are
    # validated with each step's overrides as its parameters are built below, bonds here.
    shared = {"contact": c.get("contact"), "shortcuts": c.get("shortcuts"),
              "bonds": bond_laws(c.get("bonds"))}
    inputs = RunInputs(library, formulation, rve, seed, shared)

    route = c.get("route") or {}
    require(isinstance(route, dict), "route", route, "a mapping {name, steps}")
    require_known_keys(route, ROUTE_KEYS, "route")
    entries = parse_route(route.get("steps"), steps)

    # Every group, whether the route runs it or not.
    groups: dict[str, Any] = {}
    for step in steps.values():
        g = step.config_group
        groups[g] = step.params(c.get(g), inputs, g)
    for step in steps.values():
        if step.check is not None:
            step.check(groups[step.config_group], inputs, step.config_group, groups)
    plan = []
    for k, e in enumerate(entries):
        step = steps[e.name]
        g = step.config_group
        if e.overrides:
            prefix = f"route.steps.{k}.{e.name}"
            params = step.params(merged(c.get(g), e.overrides), inputs, prefix)
            if step.check is not None:
                step.check(params, inputs, prefix, groups)
        else:
            prefix, params = g, groups[g]
        if step.check_in_route is not None:
            step.check_in_route(params, inputs, prefix, groups)
        plan.append(PlannedStep(e, step, params))
    engine = build(_engine_options_type(), c.get("engine"), "engine")
    if any(p.step.uses_engine for p in plan):
        # Minimum-image contacts need each periodic length above 2 x (largest diameter + skin).
        need = min_periodic_length_um(formulation)
        for k in ("box_x_um", "box_y_um"):
            require(getattr(rve, k) > need, f"rve.{k}", getattr(rve, k),
                    f"> {need:.3g} µm for DEM steps: twice the largest particle diameter plus the neighbour "
                    f"skin; enlarge the box or lower the largest d_max_um")
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
    resume = load_resume(c.get("resume_from"), tuple(e.label for e in entries))
    return RunConfig(inputs, str(route.get("name", "custom")), tuple(plan), engine, progress, output, resume)


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
