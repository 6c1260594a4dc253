"""One live engine state for a whole route.

A process step that uses the engine describes the engine it needs (`EngineSetup`: materials, contact
sub-models, walls, gravity, masses with their shortcuts, time-step rule, guards, temperature) and asks
`engine_for` for it. The first such step builds the `Simulation` from the snapshot; every later one
reconfigures the same simulation through the engine's public API (`Simulation.set_materials`,
`set_walls`, `set_contact`, `set_masses`...), so particles keep their velocities, every contact keeps
its history (tangential and rolling springs, the Thornton–Ning largest overlap, JKR contact flags),
bonds and agent fields stay attached, and walls matched by name keep their per-particle history.

At a step boundary the runner writes the live state as an engine checkpoint and continues from that
checkpoint (`checkpoint_boundary`): a route resumed from it therefore takes exactly the path an
uninterrupted run takes, bit for bit on the same machine and thread count.
"""

from __future__ import annotations

import logging
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from electrodem.config.errors import ConfigError
from electrodem.io.snapshot import Microstructure, bonds_from_state

log = logging.getLogger("electrodem")


class HoldsEngine(Protocol):
    """Anything carrying the live simulation between steps (`electrodem.process.recipe.ProcessState`)."""

    sim: Any


@dataclass
class EngineSetup:
    """What a step needs from the engine (SI). ``masses_kg`` (inertial) follows the snapshot's particle
    order and carries the step's mass shortcuts (fines mass scaling); ``gravitational_masses_kg`` is what
    gravity acts on (None: the inertial masses; `electrodem.process.engine_map.masses` gives both)."""

    materials: list[Any]
    contact: Any
    walls: list[Any]
    gravity_m_per_s2: tuple[float, float, float]
    masses_kg: np.ndarray
    rayleigh_fraction: float = 0.2
    steps_per_contact: float = 50.0
    impact_speed_m_per_s: float | None = None
    background_damping_per_s: float = 0.0
    guards: Any = None
    temperature_K: float = 293.15
    box_m: tuple[float, float, float] | None = None
    shortcuts: dict[str, Any] = field(default_factory=dict)
    gravitational_masses_kg: np.ndarray | None = None


def engine_for(holder: HoldsEngine | None, micro: Microstructure, setup: EngineSetup, options: Any) -> Any:
    """The simulation a step runs on: ``holder.sim`` reconfigured to ``setup`` when the route already has
    a live engine state of ``micro``'s particles, else a new one built from ``micro`` (and kept in
    ``holder`` when there is one). Wall forces are always recorded (a simulation keeps that choice for
    its life, and a later step may need them)."""
    from electrodem.engine import Guards, Simulation

    sim = getattr(holder, "sim", None) if holder is not None else None
    if sim is not None and sim.n != micro.n:
        log.warning("the live engine state holds %d particles, the snapshot %d: building a new one",
                    sim.n, micro.n)
        sim.free()
        sim = None
    if sim is None:
        sim = Simulation(
            setup.materials,
            box_m=setup.box_m or micro.box_m,
            periodic=micro.periodic,
            contact=setup.contact,
            walls=setup.walls,
            gravity_m_per_s2=setup.gravity_m_per_s2,
            rayleigh_fraction=setup.rayleigh_fraction,
            steps_per_contact=setup.steps_per_contact,
            impact_speed_m_per_s=setup.impact_speed_m_per_s,
            background_damping_per_s=setup.background_damping_per_s,
            guards=setup.guards,
            options=options,
            temperature_K=setup.temperature_K,
            record_wall_forces=True,
        )
        sim.add_particles(micro.positions_m, micro.radii_m, micro.species_id.astype(int),
                          masses_kg=setup.masses_kg, velocities_m_per_s=micro.velocities_m_per_s,
                          gravitational_masses_kg=setup.gravitational_masses_kg)
    else:
        # Materials first (the walls in place keep theirs by name), then the new walls, then the model.
        sim.set_materials(setup.materials)
        sim.set_walls(setup.walls)
        sim.set_contact(setup.contact)
        gm = setup.masses_kg if setup.gravitational_masses_kg is None else setup.gravitational_masses_kg
        sim.set_masses(sim.ids, setup.masses_kg, gm)
        sim.set_gravity(setup.gravity_m_per_s2)
        sim.set_background_damping(setup.background_damping_per_s)
        sim.set_guards(setup.guards or Guards())
        sim.set_temperature(setup.temperature_K)
        sim.set_time_step_rule(setup.rayleigh_fraction, setup.steps_per_contact, setup.impact_speed_m_per_s)
        sim.scalings.clear()
    sim.scalings.update(setup.shortcuts)
    if holder is not None:
        holder.sim = sim
    return sim


def release(holder: HoldsEngine | None, sim: Any) -> None:
    """End of a step: the simulation stays alive in ``holder``; without one it is freed."""
    if holder is None:
        sim.free()


def with_engine_extras(micro: Microstructure, sim: Any) -> Microstructure:
    """``micro`` with the bonds of the simulation's bond extensions (one table, the keys they share) and
    its agent fields, so the snapshot, VTU and restart carry them."""
    from electrodem.engine.bonds import Bonds

    tables = []
    for e in sim.extensions:
        if isinstance(e, Bonds):
            st = bonds_from_state(e.state())
            if len(st["i"]):
                tables.append(st)
    bonds = None
    if tables:
        keys = set.intersection(*(set(t) for t in tables))
        bonds = {k: np.concatenate([t[k] for t in tables]) for k in sorted(keys)}
    fields = {**micro.fields, **{k: np.array(v) for k, v in sim.fields.copy_arrays().items()}}
    return micro.with_(bonds=bonds, fields=fields)


def engine_state_path(snapshot: Path) -> Path:
    """Where the engine state of a route snapshot lies: ``NN_label.npz`` -> ``NN_label.engine.npz``."""
    return snapshot.with_name(snapshot.stem + ".engine.npz")


def checkpoint_boundary(holder: HoldsEngine, path: Path, label: str, options: Any) -> None:
    """Write the live state to ``path`` (engine checkpoint) and continue from what was written, so that a
    run resumed from this file and the uninterrupted run take the same path."""
    from electrodem.engine import Simulation

    sim = holder.sim
    if sim is None:
        return
    sim.scalings["recipe_stage"] = label
    sim.save_checkpoint(path)
    sim.free()
    holder.sim = Simulation.load_checkpoint(path, options)


def resume_engine(holder: HoldsEngine, path: Path, label: str, options: Any) -> bool:
    """Load the engine checkpoint written after stage ``label`` into ``holder``; False (and a warning)
    when there is none or it belongs to another stage: the route then goes on from the snapshot alone,
    without contact history or bonds. An unreadable file is a `ConfigError` naming it."""
    from electrodem.engine import Simulation

    if not path.is_file():
        log.warning("no engine state %s: resuming from the snapshot alone (contact history not carried)",
                    path)
        return False
    try:
        sim = Simulation.load_checkpoint(path, options)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise ConfigError("resume_from", str(path),
                          f"an engine state written by electrodem beside the snapshot, readable: {e}") from e
    if sim.scalings.get("recipe_stage") != label:
        log.warning("engine state %s is of stage %r, not %r: resuming from the snapshot alone", path,
                    sim.scalings.get("recipe_stage"), label)
        sim.free()
        return False
    holder.sim = sim
    return True
