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

Stages. ``Extension.stage`` says where in a step the engine calls the extension:

* ``post_force`` (default): `add_forces` after every force evaluation, as above;
* ``pre_force``: `on_stage` after the drift of a step, before its pair forces (positions are those
  of the new step, velocities the half-step ones); what it changes enters that step's forces;
* ``end_of_step``: `on_stage` after the step's final half kick (a complete state, as a run callback
  sees it, but every step);
* ``on_rebuild``: `on_stage` right after each neighbour-list build (the internal order just changed).

Only ``post_force`` extensions get `add_forces`. The fused one-kernel step is kept whenever no
``pre_force`` / ``end_of_step`` extension is attached; those two stages cost a few kernel launches and
Python calls per step (the step is split around them).

Live changes. `on_particles_removed` is called by `Simulation.remove_particles` BEFORE the particles
go (``sim.ids`` and the external indices are still the old ones; `kept_index_map` gives the new index
of each old one), `on_model_changed` after materials, contact model, walls or particle properties
changed (re-read cached material indices or radius bounds there).
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

STAGES = ("post_force", "pre_force", "end_of_step", "on_rebuild")
"""Where in a step an extension is called (see the module docstring)."""


class Extension:
    """Base class of a force extension (override what applies; the defaults do nothing).

    ``name`` must be unique within a simulation; it keys the extension in checkpoints and reports.
    ``stage`` is one of `STAGES` (a class attribute; see the module docstring).
    """

    name: str = "extension"
    stage: str = "post_force"

    def attach(self, sim: Any) -> None:
        """Called once by `Simulation.add_extension` (allocate fields, check the model)."""

    def add_forces(self, sim: Any, time_s: float, dt_s: float) -> None:
        """Add this extension's forces (N) and torques (N m) to the particles for the state at
        ``time_s`` (s). ``dt_s`` is the step that led there (0 when the forces are only being primed:
        history must not advance then)."""

    def on_stage(self, sim: Any, stage: str, time_s: float, dt_s: float) -> None:
        """Called at ``stage`` (this extension's `stage`, not ``post_force``) of the step that ends at
        ``time_s`` (s); ``dt_s`` is the step (s)."""

    def on_particles_removed(self, sim: Any, removed_ids: np.ndarray) -> None:
        """Particles with persistent ids ``removed_ids`` (int64) are about to be removed: drop what
        refers to them and renumber external indices (`kept_index_map`). Called before the removal."""

    def on_model_changed(self, sim: Any) -> None:
        """Materials, contact model, walls or particle radii/masses/materials of ``sim`` changed."""

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


def kept_index_map(ids: np.ndarray, removed_ids: np.ndarray) -> np.ndarray:
    """For particles of persistent ids ``ids`` (external order) of which ``removed_ids`` go: the new
    external index of each old one (int64), -1 for a removed one. The others keep their order."""
    keep = ~np.isin(np.asarray(ids, np.int64), np.asarray(removed_ids, np.int64))
    return np.where(keep, np.cumsum(keep) - 1, -1).astype(np.int64)


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
