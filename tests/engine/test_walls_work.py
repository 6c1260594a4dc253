"""Exact work of moving walls (summed every step in the step kernel) and the per-particle wall forces
recorded by the force loop: a plate striking a free sphere (work = 2 m v^2, the guard stays quiet
with a growth factor of 1.01), a plate compressing an undamped stack (work = int F v dt = elastic +
kinetic energy gained, kept across a checkpoint), and the recorded forces summing to the wall force
for the Hertz, Thornton–Ning and JKR laws with friction and damping."""

from __future__ import annotations

import numpy as np
import pytest

from electrodem.config import ConfigError
from electrodem.engine import ContactModel, EngineOptions, Guards, Material, Simulation, Wall, init

R = 5e-6
E, NU, RHO = 5e7, 0.3, 2000.0


@pytest.fixture(autouse=True)
def _taichi():
    init(EngineOptions())


def test_plate_striking_a_free_sphere_does_work_2mv2_and_the_guard_stays_quiet():
    """A plate at speed v (infinite mass) hitting a sphere at rest elastically sends it off at 2v: the
    plate's work is 1/2 m (2v)^2. The collision (~50 steps) falls between guard checks, where the
    plate carries no force, so a work estimate sampled at the checks would see energy created."""
    v = 0.1
    sim = Simulation(
        [Material("m", RHO, E, NU, restitution=1.0, friction=0.0)],
        box_m=(8 * R, 8 * R, 8 * R),
        contact=ContactModel(tangential="none"),
        walls=[Wall((0, 0, 4 * R), (0, 0, -1), "m", mode="velocity", velocity_m_per_s=(0, 0, -v))],
        gravity_m_per_s2=(0, 0, 0),
        guards=Guards(energy_growth_factor=1.01, every_steps=200),
    )
    sim.add_particles(np.array([[4 * R, 4 * R, 2 * R]]), R, "m")
    sim.run(steps=0, progress=False)
    n = int(2.0 * R / v / sim.dt_s)  # the plate meets the sphere after R / v
    sim.run(steps=n, progress=False)
    m = sim.state()["masses_kg"][0]
    vz = sim.state()["velocities_m_per_s"][0, 2]
    assert vz == pytest.approx(-2 * v, rel=1e-3)
    assert sim.wall_state()[0]["force_N"] @ np.ones(3) == 0.0  # apart again
    assert sim.wall_state()[0]["work_J"] == pytest.approx(2 * m * v**2, rel=1e-3)
    assert sim.wall_work_J(0) == pytest.approx(sim.diagnostics()["kinetic_energy_J"], rel=1e-6)


def _stack(v: float, **kw) -> Simulation:
    sim = Simulation(
        [Material("m", RHO, E, NU, restitution=1.0, friction=0.0)],
        box_m=(6 * R, 6 * R, 12 * R),
        contact=ContactModel(tangential="none"),
        walls=[
            Wall((0, 0, 0), (0, 0, 1), "m", name="floor"),
            Wall((0, 0, 8 * R), (0, 0, -1), "m", mode="velocity", velocity_m_per_s=(0, 0, -v), name="plate"),
        ],
        gravity_m_per_s2=(0, 0, 0),
        guards=Guards(energy_growth_factor=1.05),
        **kw,
    )
    sim.add_particles(np.array([[3 * R, 3 * R, R + 2 * R * k] for k in range(4)]), R, "m")
    return sim


def test_plate_compressing_an_undamped_stack_work_is_int_fv_and_the_energy_gained(tmp_path):
    v = 0.02
    sim = _stack(v)
    sim.run(steps=0, progress=False)
    e0 = sim.diagnostics()
    n = int(0.2 * R / v / sim.dt_s)  # compress the column of 4 by 0.2 R
    loads = [sim.wall_state()[1]["load_N"]]

    def rec(s: Simulation) -> None:
        loads.append(s.wall_state()[1]["load_N"])

    half = (n // 2) // 10 * 10
    sim.run(steps=half, callbacks=[rec], every=10, progress=False)
    sim.save_checkpoint(tmp_path / "ck.npz")
    sim.run(steps=n - half, callbacks=[rec], every=10, progress=False)
    ws = sim.wall_state()
    assert ws[0]["work_J"] == 0.0  # a fixed wall does no work
    # Sampled every 10 steps and integrated by the trapezoidal rule: within 1 %.
    t = np.arange(len(loads)) * 10 * sim.dt_s
    t[-1] = n * sim.dt_s
    w_sampled = float(np.sum(0.5 * (np.array(loads[1:]) + loads[:-1]) * np.diff(t)) * v)
    assert ws[1]["work_J"] > 0 and ws[1]["work_J"] == pytest.approx(w_sampled, rel=0.01)
    # No damping, no gravity: the work is the elastic + kinetic energy gained (velocity-Verlet error).
    e1 = sim.diagnostics()
    gained = e1["elastic_energy_J"] + e1["kinetic_energy_J"] - e0["elastic_energy_J"] - e0["kinetic_energy_J"]
    assert ws[1]["work_J"] == pytest.approx(gained, rel=1e-3)
    # The work is part of the checkpoint: the restarted run continues the same sum.
    back = Simulation.load_checkpoint(tmp_path / "ck.npz")
    back.run(steps=n - half, progress=False)
    assert back.wall_work_J(1) == pytest.approx(ws[1]["work_J"], rel=1e-9)
    back.free()
    sim.free()


@pytest.mark.parametrize(
    ("normal", "cohesion", "extra"),
    [
        ("hertz", "none", {}),
        ("thornton_ning", "none", {"yield_pressure_Pa": 2e6}),
        ("hertz", "jkr", {"surface_energy_J_per_m2": 0.05}),
    ],
)
def test_recorded_wall_forces_sum_to_the_wall_force(normal, cohesion, extra):
    """Frictional, damped contacts of a random bed pressed by a plate: the per-particle forces the force
    loop records sum to the force on each wall to round-off, through neighbour rebuilds (particles
    are re-ordered) and a reload of the particles."""
    rng = np.random.default_rng(3)
    L = 8 * R
    mat = Material("m", RHO, E, NU, restitution=0.5, friction=0.4, **extra)
    sim = Simulation(
        [mat],
        box_m=(L, L, 10 * R),
        contact=ContactModel(normal=normal, cohesion=cohesion),
        walls=[
            Wall((0, 0, 0), (0, 0, 1), "m"),
            Wall((0, 0, 4.2 * R), (0, 0, -1), "m", mode="velocity", velocity_m_per_s=(0.2, 0, -0.2)),
        ],
        gravity_m_per_s2=(0, 0, 0),
        record_wall_forces=True,
    )
    pos = np.array([(i + 0.5, j + 0.5, 0.0) for i in range(4) for j in range(4)]) * [2 * R, 2 * R, 0]
    pos = np.vstack([pos + [0, 0, 0.9 * R], pos + [0, 0, 3.0 * R]]) + rng.normal(0, 0.02 * R, (32, 3))
    sim.add_particles(pos, rng.uniform(0.92, 1.0, 32) * R, "m")
    sim.run(steps=0, progress=False)
    chunk = int(0.45 * R / 0.2 / sim.dt_s) // 4  # the plate descends 0.45 R in all
    checked = 0
    for _ in range(4):
        sim.run(steps=chunk, progress=False)
        for k in range(2):
            f = sim.wall_contact_forces(k)
            total = sim.wall_state()[k]["force_N"]
            assert np.linalg.norm(f.sum(axis=0) + total) <= 1e-12 * np.linalg.norm(total)
            touching = sim.wall_overlaps_m(k) > 0
            if cohesion == "none":
                assert np.all(np.linalg.norm(f[~touching], axis=1) == 0.0)
            checked += int(np.count_nonzero(touching))
    assert checked > 20 and sim.neighbor_builds > 1
    # Friction makes in-plane forces on the dragging plate.
    assert abs(sim.wall_state()[1]["force_N"][0]) > 0
    # Adding a particle reloads the store (internal order reset) and re-evaluates the forces.
    sim.add_particles(np.array([[2 * R, 2 * R, 1.9 * R]]), 0.4 * R, "m")  # in a hollow of the bed
    sim.run(steps=50, progress=False)
    for k in range(2):
        total = sim.wall_state()[k]["force_N"]
        assert np.linalg.norm(sim.wall_contact_forces(k).sum(axis=0) + total) <= 1e-12 * np.linalg.norm(total)
    sim.free()


def test_wall_forces_need_the_recording_switch():
    sim = _stack(0.01)
    with pytest.raises(ConfigError, match="record_wall_forces"):
        sim.wall_contact_forces(0)
    sim.free()
