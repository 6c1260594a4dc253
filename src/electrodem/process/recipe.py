"""The process recipe: a registry of steps, and a route as an ordered list of them.

A step is one module that defines ``STEP = ProcessStep(...)``: its name (also the name of its config
group), its validated parameter dataclass, ``run(state, params, ctx) -> report``, the block it adds to
``metrics.json`` and the files it writes (CSVs, plots) from ``run``. The built-in steps live in
`electrodem.process.steps` and are found by walking that package; more come from the modules a run
names under ``plugins`` (a module on ``sys.path`` with its own ``STEP``, its config group in a Hydra
search path). Schema, runner and summary loop over the registry; none of them names a step, so adding
one is one module plus one config file.

A route is a list of entries, each a step name or a one-key mapping ``{name: {overrides}}`` whose
overrides are merged into the step's config group for that entry only. A step may appear several
times (``[place, settle, calender, calender]``); the entries are labelled by name, then ``name_2``,
``name_3``... in order, and the labels key the step reports, snapshots and resume.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from electrodem.config.errors import ConfigError, require
from electrodem.config.params import build
from electrodem.io.snapshot import Microstructure


@dataclass(frozen=True)
class RunInputs:
    """What a run is made of, for building and checking step parameters (validated already)."""

    library: dict[str, Any]
    """Material name -> `electrodem.materials.library.Material`."""
    formulation: Any
    """`electrodem.materials.formulation.Formulation`."""
    rve: Any
    """`electrodem.materials.formulation.RVESpec`."""
    seed: int
    shared: Mapping[str, Any] = field(default_factory=dict)
    """The run's shared config groups every engine step draws on (``contact``, ``shortcuts``: see
    `electrodem.process.engine_map`), as mappings."""

    @property
    def species(self) -> list[str]:
        """Material names of the formulation, sorted."""
        return sorted(c.material.name for c in self.formulation.components)


@dataclass
class ProcessState:
    """What a route carries from step to step: the microstructure (positions, radii, species, bonds,
    agent fields, metadata with the shortcuts in force) and the live engine state behind it."""

    micro: Microstructure | None = None
    sim: Any = None
    """The route's live `electrodem.engine.Simulation` (`electrodem.process.live`): built by the first
    step that uses the engine, reconfigured by the next ones, so contact history, bonds and agent fields
    carry over; ``micro`` is its snapshot after the last step. None before any engine step."""


@dataclass
class StepContext:
    """Where a step runs: its place in the route, the run's inputs and output options."""

    label: str
    """The entry's label (``calender``, ``calender_2``...): prefix of its outputs when repeated."""
    index: int
    """Position in the route (0 = first)."""
    repeat: int
    """Which occurrence of the step in the route this entry is (1 = first)."""
    inputs: RunInputs
    run_dir: Path
    engine: Any = None
    """`electrodem.engine.EngineOptions` of the run (None on a route without an engine step)."""
    progress: bool = False
    output: dict[str, Any] = field(default_factory=dict)
    """``output`` config group: ``vtu``, ``render`` (true/false)."""
    reports: dict[str, Any] = field(default_factory=dict)
    """Reports of the entries already run, by label (read-only for a step)."""

    def out(self, name: str) -> Path:
        """Path of an output file ``name`` of this entry in the run directory: ``name`` itself for a
        step's first entry, ``<label>_<name>`` for a repeat (so passes do not overwrite each other)."""
        return self.run_dir / (name if self.repeat == 1 else f"{self.label}_{name}")


Check = Callable[[Any, RunInputs, str, Mapping[str, Any]], None]
"""``check(params, inputs, prefix, groups)``: cross-checks of a step's parameters against the run
(``groups``: the validated parameters of every registered step, by config group), raising
`ConfigError` under ``prefix``."""


@dataclass(frozen=True)
class ProcessStep:
    """One process step of the registry (see the module docstring)."""

    name: str
    """Registry name: what a route lists."""
    params_type: type
    """Dataclass of the step's parameters; validates itself on construction."""
    run: Callable[[ProcessState, Any, StepContext], dict[str, Any]]
    """Changes ``state`` (through the engine's public API, for engine steps) and returns the report
    (JSON-able; goes into ``metrics.json -> steps.<label>``)."""
    group: str = ""
    """Config group of the parameters; empty: ``name``."""
    metrics_block: str | None = None
    """Top-level ``metrics.json`` block this step fills (from the route's last entry of the step)."""
    metrics: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    """Report -> that block."""
    uses_engine: bool = False
    """Runs the DEM engine (the run then initialises it and checks the box against the particles)."""
    creates_state: bool = False
    """Makes the microstructure from the formulation (must come first, and only there)."""
    changes_state: bool = True
    """False for a step that only reads the state (no snapshot after it)."""
    build_params: Callable[[Mapping[str, Any], RunInputs, str], Any] | None = None
    """Custom ``(config, inputs, prefix) -> params`` (default: `electrodem.config.params.build`)."""
    check: Check | None = None
    """Cross-checks of the step's config group against the run, on every run (e.g. species names)."""
    check_in_route: Check | None = None
    """Checks that only make sense when the route runs the step (e.g. a box length the step needs)."""

    @property
    def config_group(self) -> str:
        return self.group or self.name

    def params(self, cfg: Mapping[str, Any] | None, inputs: RunInputs, prefix: str) -> Any:
        """Validated parameters from the config mapping; errors are keyed under ``prefix`` (a
        parameter class names its keys under its config group: a route entry's override is refused
        under the entry, e.g. ``route.steps.3.calender.gap_um``)."""
        cfg = dict(cfg or {})
        try:
            if self.build_params is not None:
                return self.build_params(cfg, inputs, prefix)
            return build(self.params_type, cfg, prefix)
        except ConfigError as e:
            group = self.config_group
            if prefix == group or not (e.key == group or e.key.startswith(group + ".")):
                raise
            raise ConfigError(prefix + e.key[len(group):], e.value, e.allowed) from None


_REGISTRY: dict[str, ProcessStep] = {}
_BUILTINS_LOADED = False


def register(step: ProcessStep) -> ProcessStep:
    """Add ``step`` to the registry (a second step of the same name from another module is refused)."""
    have = _REGISTRY.get(step.name)
    if have is not None and have.run.__module__ != step.run.__module__:  # a re-import is fine
        raise ValueError(f"process step {step.name!r} is registered twice "
                         f"({have.run.__module__} and {step.run.__module__})")
    _REGISTRY[step.name] = step
    return step


def _register_module(module: str, key: str) -> None:
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise ConfigError(key, module, f"an importable module defining STEP ({e})") from None
    step = getattr(mod, "STEP", None)
    require(isinstance(step, ProcessStep), key, module,
            "a module that defines STEP = electrodem.process.recipe.ProcessStep(...)")
    register(step)


def registry(plugins: Iterable[str] = ()) -> dict[str, ProcessStep]:
    """The registered steps by name: the built-ins of `electrodem.process.steps`, then ``plugins``
    (module names; `ConfigError` under ``plugins`` for one that cannot be imported or has no STEP)."""
    global _BUILTINS_LOADED
    if not _BUILTINS_LOADED:
        import electrodem.process.steps as pkg

        for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
            _register_module(f"{pkg.__name__}.{info.name}", "plugins")
        _BUILTINS_LOADED = True
    for k, module in enumerate(plugins):
        require(isinstance(module, str) and module.strip() != "", f"plugins.{k}", module,
                "a module name (dotted, importable) that defines STEP")
        _register_module(module, f"plugins.{k}")
    return dict(_REGISTRY)


@dataclass(frozen=True)
class RouteEntry:
    """One entry of a route."""

    name: str
    label: str
    repeat: int
    """Occurrence of the step in the route (1 = first)."""
    overrides: dict[str, Any]


def parse_route(steps_cfg: Any, steps: Mapping[str, ProcessStep]) -> tuple[RouteEntry, ...]:
    """Route entries from ``route.steps``: names or one-key mappings ``{name: {overrides}}``; the first
    entry creates the state (e.g. ``place``), no later one does."""
    names = sorted(steps)
    allowed = f"a list of steps, each a name or {{name: {{overrides}}}}, names from {names}"
    require(isinstance(steps_cfg, (list, tuple)) and len(steps_cfg) > 0, "route.steps", steps_cfg, allowed)
    entries: list[RouteEntry] = []
    seen: dict[str, int] = {}
    for k, item in enumerate(steps_cfg):
        key = f"route.steps.{k}"
        overrides: Any = {}
        if isinstance(item, Mapping):
            require(len(item) == 1, key, dict(item), allowed)
            ((name, overrides),) = item.items()
            overrides = overrides if overrides is not None else {}
            require(isinstance(overrides, Mapping), f"{key}.{name}", overrides,
                    "a mapping of this step's config keys to override for this entry")
        else:
            name = item
        require(isinstance(name, str) and name in steps, key, name, f"one of the registered steps {names}")
        creates = steps[name].creates_state
        require(creates == (k == 0), key, name,
                "a step that makes the microstructure first (e.g. place), and only there")
        seen[name] = seen.get(name, 0) + 1
        label = name if seen[name] == 1 else f"{name}_{seen[name]}"
        entries.append(RouteEntry(name, label, seen[name], dict(overrides)))
    return tuple(entries)


def merged(base: Mapping[str, Any] | None, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` merged in depth (mappings merged, anything else replaced)."""
    if not overrides:
        return dict(base or {})
    out = OmegaConf.to_container(OmegaConf.merge(OmegaConf.create(dict(base or {})),
                                                 OmegaConf.create(dict(overrides))), resolve=True)
    assert isinstance(out, dict)
    return out


def check_species_names(table: Mapping[str, Any], key: str, inputs: RunInputs) -> None:
    """Every key of a per-species table names a material of the formulation (else `ConfigError`
    under ``key.<name>``): a misspelt species would otherwise be refused only after placement."""
    for name, v in table.items():
        require(name in inputs.species, f"{key}.{name}", v,
                f"a material of the formulation: {inputs.species}")


def min_periodic_length_um(formulation: Any) -> float:
    """Shortest periodic box length (µm) the engine's minimum-image contacts allow for this
    formulation: twice the largest particle diameter plus the automatic neighbour skin (half the
    smallest radius)."""
    d_max = max(c.material.psd.largest_um for c in formulation.components)
    d_min = min(c.material.psd.smallest_um for c in formulation.components)
    return 2.0 * d_max + 0.5 * d_min
