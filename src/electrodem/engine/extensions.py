"""Force extensions: interactions beyond sphere–sphere contacts and planar walls.

Bonds between particles, mesh and analytic tools (rollers) and similar models plug into a
`Simulation` through `Simulation.add_extension`. The engine calls each extension after every force
evaluation, once the pair and wall forces of that state are known, and the extension adds its own
forces and torques to the particles (``sim._store.f`` / ``sim._store.tq``, internal order; a particle
of external index e sits at internal index ``sim._store.intern[e]``, which changes at every neighbour
build). Those forces then enter the next velocity-Verlet kick like any contact force.

An extension keeps its own state (bond lists, tool positions, history) and hands it to checkpoints
through `state_dict` / `load_state_dict`; a checkpoint rebuilds it from its class path with
`from_state`.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np


class Extension:
    """Base class of a force extension (override what applies; the defaults do nothing).

    ``name`` must be unique within a simulation; it keys the extension in checkpoints and reports.
    """

    name: str = "extension"

    def attach(self, sim: Any) -> None:
        """Called once by `Simulation.add_extension` (allocate fields, check the model)."""

    def add_forces(self, sim: Any, time_s: float, dt_s: float) -> None:
        """Add this extension's forces (N) and torques (N m) to the particles for the state at
        ``time_s`` (s). ``dt_s`` is the step that led there (0 when the forces are only being primed:
        history must not advance then)."""

    def max_time_step_s(self, sim: Any) -> float | None:
        """Largest stable time step this extension allows (s), or None for no limit."""
        return None

    def elastic_energy_J(self, sim: Any) -> float:
        """Elastic energy stored in the extension (J), for the energy guard."""
        return 0.0

    def work_done_J(self, sim: Any) -> float:
        """Work done on the particles by moving parts of the extension since the start (J), for the
        energy guard; an estimate is enough (it only widens the guard's budget)."""
        return 0.0

    def describe(self) -> dict[str, Any]:
        """JSON-able parameters (go into `Simulation.describe` and checkpoints)."""
        return {}

    def state_dict(self) -> dict[str, np.ndarray]:
        """Arrays that, with `describe`, restore the extension exactly."""
        return {}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore arrays written by `state_dict` (called after `attach`)."""

    @classmethod
    def from_state(cls, description: dict[str, Any]) -> Extension:
        """Build the extension from `describe`'s output (before `attach` and `load_state_dict`)."""
        raise NotImplementedError(f"{cls.__name__} cannot be restored from a checkpoint")


def class_path(ext: Extension) -> str:
    """``module:QualName`` of the extension's class, as stored in checkpoints."""
    return f"{type(ext).__module__}:{type(ext).__qualname__}"


def restore(path: str, description: dict[str, Any]) -> Extension:
    """Build an extension from its class path and description (see `class_path`)."""
    module, _, qual = path.partition(":")
    obj: Any = importlib.import_module(module)
    for part in qual.split("."):
        obj = getattr(obj, part)
    if not (isinstance(obj, type) and issubclass(obj, Extension)):
        raise ValueError(f"{path} is not an Extension class")
    return obj.from_state(description)
