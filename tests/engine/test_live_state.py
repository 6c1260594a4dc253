"""A live simulation across phases: materials, contact model, walls, guards and particles changed on one
`Simulation` between runs, agent fields, extension stages, and in-memory snapshots.

What the tests hold the engine to, and why none can pass by accident:

* Contact history carried across a change is compared EXACTLY (np.array_equal), pair by pair keyed by
  the particles' persistent ids, right after the change and a neighbour-list rebuild (which re-orders
  the particles and re-finds every pair: the history has to go through the carry to survive), before
  any force evaluation (which would project the springs and could change their last bits). The beds
  are chosen so that dozens of pairs have non-zero springs and JKR flags: an empty history would fail
  the counts asserted first.
* Forces after a change of modulus or radius are checked against the closed-form Hertz force of the
  pair's geometry, to 1e-12 relative: one evaluation of F = 4/3 E* sqrt(R* d) d^1.5 in float64 is a few
  ulps from the formula, and a missed change is off by the ratio of the moduli (here 4x) or more.
* A wall removed under a resting sphere: from then on it falls freely, and velocity Verlet is exact for
  a constant force, so z(t) = z0 + v0 t - g t^2 / 2 holds to the round-off of the position sums
  (1e-15 m over these few thousand steps; checked to 1e-12 m), and x, y, the spin stay bit for bit.
* Snapshot and restore: the continuation from a restored snapshot is compared bit for bit with the
  first continuation from the same point (positions, velocities, spins, forces, every history array).
  The engine's contact path is deterministic at any thread count (tests/engine/test_thread_invariance.py:
  no float atomics, sorted cells and reverse lists), so this holds at 1 and at 2 threads alike (checked
  with ``pytest --cpu-threads 1`` and ``--cpu-threads 2``); it runs at the suite's thread count. Bonds
  are left out of it: they scatter their forces with float atomics (`electrodem.engine.bonds`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from electrodem.config import ConfigError
from electrodem.engine import (
    ContactModel,
    EngineOptions,
    Guards,
    Material,
    Simulation,
    SimulationError,
    Wall,
    init,
)
from electrodem.engine.bonds import Bonds
from electrodem.engine.extensions import Extension

MAT = Material(
    "m",
    2500.0,
    1e7,
    0.3,
    restitution=0.5,
    friction=0.5,
    rolling_friction=0.05,
    yield_pressure_Pa=2e5,
    surface_energy_J_per_m2=0.02,
)
FLOOR = Wall((0, 0, 0), (0, 0, 1), "m", name="floor")


@pytest.fixture(scope="module", autouse=True)
def _engine() -> None:
    init(EngineOptions())


def _bed(contact: ContactModel, n: int = 64, seed: int = 0, steps: int = 400, **kw: Any) -> Simulation:
    """``n`` spheres (r ~ 1 mm) on a lattice barely wider than their diameters, thrown at each other
    and onto a floor under strong gravity: after ``steps`` nearly every neighbour touches, with
    tangential springs, JKR flags and largest overlaps all non-zero."""
    rng = np.random.default_rng(seed)
    sim = Simulation(
        [MAT],
        box_m=(8e-3, 8e-3, 0.03),
        contact=contact,
        walls=kw.pop("walls", [FLOOR]),
        gravity_m_per_s2=(0, 0, -200.0),
        impact_speed_m_per_s=0.5,
        **kw,
    )
    grid = np.meshgrid(np.arange(4), np.arange(4), np.arange(n // 16), indexing="ij")
    g = np.stack(grid, -1).reshape(-1, 3)
    x = (g + 0.5) * 2.0e-3 + rng.uniform(-2e-5, 2e-5, g.shape)
    sim.add_particles(
        x, rng.uniform(0.98e-3, 1.01e-3, len(x)), "m", velocities_m_per_s=rng.normal(0, 0.05, (len(x), 3))
    )
    if steps:
        sim.run(steps=steps, progress=False)
    return sim


def _history_by_ids(sim: Simulation) -> dict[tuple[int, int], tuple[np.ndarray, ...]]:
    """Pairs with any non-zero history, keyed by (smaller id, larger id), springs seen from the smaller."""
    h = sim.contact_history()
    out = {}
    for k in range(len(h["i"])):
        a, b = int(sim.ids[h["i"][k]]), int(sim.ids[h["j"][k]])
        s = 1.0 if a < b else -1.0
        vals = (s * h["tangential_m"][k], s * h["rolling_N_m"][k], h["max_overlap_m"][k], h["jkr_contact"][k])
        if np.any(vals[0]) or np.any(vals[1]) or vals[2] != 0 or vals[3]:
            out[(min(a, b), max(a, b))] = vals
    return out


def _same_history(a: dict, b: dict, fields: tuple[int, ...] = (0, 1, 2, 3)) -> None:
    assert a.keys() == b.keys()
    for key, va in a.items():
        for f in fields:
            assert np.array_equal(va[f], b[key][f]), (key, f, va[f], b[key][f])


def _pair(materials: list[Material], r: tuple[float, float], delta: float) -> Simulation:
    """Two resting spheres (material 0) overlapping by ``delta`` (m), no gravity: a static contact."""
    sim = Simulation(materials, box_m=(0.01, 0.01, 0.01), gravity_m_per_s2=(0, 0, 0))
    x0 = 4e-3
    sim.add_particles([[x0, 5e-3, 5e-3], [x0 + r[0] + r[1] - delta, 5e-3, 5e-3]], list(r), materials[0].name)
    return sim


def _hertz_N(sim: Simulation, e_star: float) -> float:
    """Closed-form Hertz force (N) of the two spheres of ``sim`` at their current geometry."""
    st = sim.state()
    r0, r1 = st["radii_m"]
    delta = r0 + r1 - float(np.linalg.norm(st["positions_m"][1] - st["positions_m"][0]))
    return 4.0 / 3.0 * e_star * np.sqrt(r0 * r1 / (r0 + r1)) * delta**1.5


def _stored(mass_kg: Any) -> Any:
    """What `Simulation.state` reports for a mass set to ``mass_kg``: the store holds 1/m."""
    return 1.0 / (1.0 / np.asarray(mass_kg, dtype=float))


def _e_star(a: Material, b: Material) -> float:
    return 1.0 / (
        (1 - a.poisson_ratio**2) / a.youngs_modulus_Pa + (1 - b.poisson_ratio**2) / b.youngs_modulus_Pa
    )


# ---------------------------------------------------------------------- 1. materials
def test_set_materials_scales_a_static_contact_by_the_hertz_ratio_and_keeps_masses():
    soft = Material("a", 2500.0, 1e7, 0.3)
    sim = _pair([soft], (1e-3, 1e-3), 2e-5)
    f0 = float(sim.contact_arrays()["normal_force_N"][0])
    assert f0 == pytest.approx(_hertz_N(sim, _e_star(soft, soft)), rel=1e-12)
    masses = sim.state()["masses_kg"]
    # A stiffer "a" behind a new material: the particles keep "a" by name (index 0 -> 1).
    stiff = Material("a", 4000.0, 4e7, 0.3)
    sim.set_materials([Material("other", 1000.0, 1e9, 0.2), stiff])
    assert np.array_equal(sim.state()["material_id"], [1, 1])
    f1 = float(sim.contact_arrays()["normal_force_N"][0])
    assert f1 / f0 == pytest.approx(_e_star(stiff, stiff) / _e_star(soft, soft), rel=1e-12)  # 4x
    assert f1 == pytest.approx(_hertz_N(sim, _e_star(stiff, stiff)), rel=1e-12)
    # Masses are the caller's (maybe scaled) until asked: then density x volume of the new material.
    assert np.array_equal(sim.state()["masses_kg"], masses)
    sim.set_materials([Material("other", 1000.0, 1e9, 0.2), stiff], rescale_masses=True)
    r = sim.state()["radii_m"]
    assert np.array_equal(sim.state()["masses_kg"], _stored(4.0 / 3.0 * np.pi * r**3 * 4000.0))
    # A material in use must stay.
    with pytest.raises(ConfigError, match="'a'"):
        sim.set_materials([Material("other", 1000.0, 1e9, 0.2)])
    assert sim.materials.materials[1] == stiff  # the refused change left the table alone


def test_set_materials_keeps_every_pair_and_wall_history_exactly():
    sim = _bed(ContactModel(normal="thornton_ning", cohesion="jkr"))
    before = _history_by_ids(sim)
    wall = sim.wall_history("floor")
    assert len(before) > 50 and np.count_nonzero(np.any(wall["tangential_m"] != 0, axis=1)) >= 8
    assert sum(bool(v[3]) for v in before.values()) > 50 and sum(v[2] > 0 for v in before.values()) > 50
    # Thornton–Ning -> Thornton–Ning with another yield pressure (and stiffness, friction, adhesion).
    sim.set_materials([Material("m", 2500.0, 2e7, 0.3, friction=0.3, yield_pressure_Pa=5e5,
                                surface_energy_J_per_m2=0.01)])
    sim.neighbor_pairs()  # rebuild: the history must survive the re-ordering and the carry
    _same_history(before, _history_by_ids(sim))
    after = sim.wall_history("floor")
    for k in wall:
        assert np.array_equal(wall[k], after[k])
    sim.run(steps=50, progress=False)  # and the bed goes on under the new table


# ---------------------------------------------------------------------- 2. contact model
def test_set_contact_carries_the_histories_both_models_keep():
    sim = _bed(ContactModel(cohesion="jkr"))
    before = _history_by_ids(sim)
    n_jkr = sum(bool(v[3]) for v in before.values())
    n_spring = sum(bool(np.any(v[0])) for v in before.values())
    assert n_jkr > 50 and n_spring > 50
    wall = sim.wall_history("floor")
    assert np.count_nonzero(wall["jkr_contact"]) >= 8
    # Hertz + JKR -> Thornton–Ning + JKR: springs and flags exactly, dm fresh.
    sim.set_contact(ContactModel(normal="thornton_ning", cohesion="jkr"))
    sim.neighbor_pairs()
    after = _history_by_ids(sim)
    _same_history(before, after, fields=(0, 1, 3))
    assert all(v[2] == 0.0 for v in after.values())
    w2 = sim.wall_history("floor")
    assert np.array_equal(w2["tangential_m"], wall["tangential_m"])
    assert np.array_equal(w2["jkr_contact"], wall["jkr_contact"])
    # A fresh Thornton–Ning contact takes its current overlap as its largest one (as a new contact does).
    sim.run(steps=0, progress=False)
    c = sim.contact_arrays()
    h = sim.contact_history()
    dm = {(a, b): d for a, b, d in zip(h["i"], h["j"], h["max_overlap_m"], strict=True)}
    assert len(c["i"]) > 50
    # contact_arrays computes the overlap r_i + r_j - |d| in another kernel, whose |d| may differ in its
    # last bit: equal up to 2 ulps of r_i + r_j (~2 mm) = 9e-19 m, against overlaps of 1e-7..1e-5 m.
    ulp2 = 2.0 * np.spacing(2.1e-3)
    assert all(abs(dm[(a, b)] - d) <= ulp2 for a, b, d in zip(c["i"], c["j"], c["overlap_m"], strict=True))
    sim.run(steps=200, progress=False)
    # Thornton–Ning -> Thornton–Ning with a rolling spring: dm, springs, flags exactly; rolling fresh.
    before = _history_by_ids(sim)
    assert sum(v[2] > 0 for v in before.values()) > 50
    sim.set_contact(ContactModel(normal="thornton_ning", rolling="epsd", cohesion="jkr"))
    sim.neighbor_pairs()
    after = _history_by_ids(sim)
    _same_history(before, after, fields=(0, 2, 3))
    sim.run(steps=100, progress=False)
    assert any(np.any(v[1]) for v in _history_by_ids(sim).values())
    # A history the new model lacks is dropped, and does not come back with the model.
    before = _history_by_ids(sim)
    sim.set_contact(ContactModel(normal="thornton_ning", tangential="none", cohesion="jkr"))
    sim.set_contact(ContactModel(normal="thornton_ning", cohesion="jkr"))
    sim.neighbor_pairs()
    after = _history_by_ids(sim)
    assert all(not np.any(v[0]) and not np.any(v[1]) for v in after.values())
    assert {k: v[2] for k, v in after.items()} == {k: v[2] for k, v in before.items() if v[2] or v[3]}
    assert not np.any(sim.wall_history("floor")["tangential_m"])


# ---------------------------------------------------------------------- 3. walls
def test_a_sphere_whose_floor_is_removed_falls_at_g():
    sim = Simulation([MAT], box_m=(0.01, 0.01, 0.01), walls=[Wall((0, 0, 0), (0, 0, 1), "m", name="floor")],
                     background_damping_per_s=200.0)
    sim.add_particles([[5e-3, 5e-3, 1.0e-3]], [1e-3], "m")
    sim.run(steps=3000, progress=False)  # comes to rest on the floor (damped)
    sim.set_background_damping(0.0)
    assert sim.wall_history("floor")["max_overlap_m"].shape == (1,)
    sim.remove_wall("floor")
    assert sim.walls == [] and sim.wall_state() == []
    st0 = sim.state()
    t0, z0, vz0 = sim.time_s, st0["positions_m"][0, 2], st0["velocities_m_per_s"][0, 2]
    assert abs(vz0) < 1e-3 and st0["positions_m"][0, 2] < 1e-3  # it was resting, pressed into the floor
    sim.run(steps=6000, progress=False)
    st = sim.state()
    t = sim.time_s - t0
    assert st["positions_m"][0, 2] == pytest.approx(z0 + vz0 * t - 0.5 * 9.81 * t**2, rel=0, abs=1e-12)
    assert st["velocities_m_per_s"][0, 2] == pytest.approx(vz0 - 9.81 * t, rel=0, abs=1e-12)
    assert np.array_equal(st["positions_m"][0, :2], st0["positions_m"][0, :2])
    assert np.array_equal(st["angular_velocities_rad_per_s"], st0["angular_velocities_rad_per_s"])
    assert z0 - st["positions_m"][0, 2] > 3e-3  # it did fall (several radii)


def test_a_mass_scaling_of_the_inertia_keeps_the_real_weight(tmp_path):
    """Inertial mass 100 m, gravitational mass m (the fines' shortcut): at rest the floor carries the
    REAL weight m g (static equilibrium, whatever the inertia), and in free fall the sphere accelerates
    at g m / (100 m) = g / 100 (velocity Verlet is exact for a constant force: 1e-12 m). The weight
    survives a checkpoint and `set_masses` (which changes only the inertia unless told)."""
    m_real = 4.0 / 3.0 * np.pi * 1e-3**3 * 2500.0
    sim = Simulation([MAT], box_m=(0.01, 0.01, 0.01), walls=[Wall((0, 0, 0), (0, 0, 1), "m", name="floor")],
                     background_damping_per_s=200.0, record_wall_forces=True)
    sim.add_particles([[5e-3, 5e-3, 1.0e-3]], [1e-3], "m", masses_kg=[100.0 * m_real],
                      gravitational_masses_kg=[m_real])
    sim.run(steps=6000, progress=False)
    st = sim.state()
    assert st["masses_kg"][0] == pytest.approx(100.0 * m_real, rel=1e-15)
    assert st["gravitational_masses_kg"][0] == pytest.approx(m_real, rel=1e-15)
    # At rest (|v| below 1e-9 m/s after the damped settle): the floor force balances m g to the
    # residual acceleration c v ~ 2e-7 m/s^2 against g: relative 1e-6.
    assert abs(st["velocities_m_per_s"][0, 2]) < 1e-9
    fz = sim.wall_state()[0]["force_N"][2]  # the force the sphere exerts on the floor (down)
    assert -fz == pytest.approx(m_real * 9.81, rel=1e-6)
    path = tmp_path / "gm.npz"
    sim.save_checkpoint(path)
    back = Simulation.load_checkpoint(path)
    assert np.array_equal(back.state()["gravitational_masses_kg"], st["gravitational_masses_kg"])
    sim.set_masses([0], 50.0 * m_real)  # the inertia changes, the weight stays
    assert sim.state()["gravitational_masses_kg"][0] == st["gravitational_masses_kg"][0]
    sim.set_background_damping(0.0)
    sim.remove_wall("floor")
    z0, vz0, t0 = sim.state()["positions_m"][0, 2], sim.state()["velocities_m_per_s"][0, 2], sim.time_s
    sim.run(steps=3000, progress=False)
    t, a = sim.time_s - t0, 9.81 * m_real / (50.0 * m_real)
    assert sim.state()["positions_m"][0, 2] == pytest.approx(z0 + vz0 * t - 0.5 * a * t**2, rel=0, abs=1e-12)


def test_walls_kept_by_name_keep_their_history_and_position():
    lid = Wall((0, 0, 9e-3), (0, 0, -1), "m", mode="velocity", velocity_m_per_s=(0, 0, -0.01), name="lid")
    sim = _bed(ContactModel(), walls=[FLOOR, lid])
    floor = sim.wall_history("floor")
    assert np.count_nonzero(np.any(floor["tangential_m"] != 0, axis=1)) >= 8
    lid_at = sim.wall_state()[1]["point_m"]
    assert lid_at[2] < 9e-3  # the lid moved
    work = sim.wall_work_J(0)
    # Add a side wall: nothing else changes, the moved lid stays where it is.
    side = Wall((0, 0, 0), (1, 0, 0), "m", name="side")
    assert sim.add_wall(side) == 2
    assert np.array_equal(sim.wall_state()[1]["point_m"], lid_at)
    assert not np.any(sim.wall_history("side")["tangential_m"])
    # Remove the floor: the others move down one index, history and position kept.
    sim.remove_wall("floor")
    assert [w.name for w in sim.walls] == ["lid", "side"]
    assert np.array_equal(sim.wall_state()[0]["point_m"], lid_at)
    # set_walls: the floor under another name is fresh; back under its own name it would match a wall
    # kept by name: show it with the lid (its Wall object is where it started).
    sim.set_walls([FLOOR, lid])
    assert not np.any(sim.wall_history("floor")["tangential_m"])
    assert sim.wall_state()[1]["point_m"][2] == 9e-3
    sim.set_walls([lid, FLOOR])  # reordered: both matched by name
    assert [w.name for w in sim.walls] == ["lid", "floor"]
    sim.run(steps=0, progress=False)
    # A second bed: the floor kept by name keeps its springs and work bit for bit through set_walls.
    sim2 = _bed(ContactModel(), walls=[FLOOR, lid])
    floor = sim2.wall_history("floor")
    work = sim2.wall_work_J(0)
    sim2.set_walls([side, FLOOR])
    for k in floor:
        assert np.array_equal(sim2.wall_history("floor")[k], floor[k])
    assert sim2.wall_work_J(1) == work
    sim2.run(steps=50, progress=False)
    with pytest.raises(ConfigError, match="wall"):
        sim2.remove_wall("nope")


def test_set_guards():
    sim = _bed(ContactModel(), steps=0)
    sim.set_guards(Guards(every_steps=10, max_overlap_ratio=1e-9, max_total_overlap_ratio=1e-9))
    assert sim.guards.every_steps == 10
    with pytest.raises(SimulationError, match="overlap"):
        sim.run(steps=200, progress=False)
    with pytest.raises(ConfigError, match="guards"):
        sim.set_guards({"every_steps": 3})  # type: ignore[arg-type]


# ---------------------------------------------------------------------- 5. particles
def test_remove_particles_keeps_the_rest_and_bonds_drop_exactly_those_touching_them():
    sim = _bed(ContactModel(normal="thornton_ning", cohesion="jkr"))
    sim.add_field("tag", np.int64)
    sim.field("tag")[:] = sim.ids * 10
    bonds = sim.add_extension(Bonds(youngs_modulus_Pa=1e7, poisson_ratio=0.3, name="bonds"))
    assert isinstance(bonds, Bonds)
    bonds.create_within(sim, 2e-5)
    b0 = bonds.state()
    assert len(b0["i"]) > 50
    before = _history_by_ids(sim)
    st0 = sim.state()
    wall0 = sim.wall_history("floor")
    gone = np.array([3, 17, 18, 40, 63])
    assert sum(k[0] in gone or k[1] in gone for k in before) > 5  # they were in contact
    assert np.array_equal(sim.remove_particles(gone[::-1]), gone[::-1])
    keep = ~np.isin(st0["ids"], gone)
    assert np.array_equal(sim.ids, st0["ids"][keep])
    st = sim.state()
    for k in ("positions_m", "velocities_m_per_s", "angular_velocities_rad_per_s", "radii_m", "masses_kg"):
        assert np.array_equal(st[k], st0[k][keep])
    sim.neighbor_pairs()
    kept = {k: v for k, v in before.items() if k[0] not in gone and k[1] not in gone}
    _same_history(kept, _history_by_ids(sim))
    w = sim.wall_history("floor")
    for k in wall0:
        assert np.array_equal(w[k], wall0[k][keep])
    assert np.array_equal(sim.field("tag"), st0["ids"][keep] * 10)
    # Bonds: exactly those with an end removed are gone; the others are unchanged, ends renumbered.
    b1 = bonds.state()
    ids0, ids1 = st0["ids"], sim.ids
    touching = np.isin(ids0[b0["i"]], gone) | np.isin(ids0[b0["j"]], gone)
    assert touching.sum() > 0 and len(b1["i"]) == int((~touching).sum())
    assert np.array_equal(ids1[b1["i"]], ids0[b0["i"]][~touching])
    assert np.array_equal(ids1[b1["j"]], ids0[b0["j"]][~touching])
    for k in ("equilibrium_length_m", "radius_m", "normal_force_N", "shear_force_N"):
        assert np.array_equal(b1[k], b0[k][~touching])
    sim.run(steps=100, progress=False)  # and the bed goes on
    with pytest.raises(ConfigError, match="ids"):
        sim.remove_particles([3])  # gone already


def test_set_radii_masses_and_material_update_the_hertz_force():
    soft, hard = Material("a", 2500.0, 1e7, 0.3), Material("b", 5000.0, 5e7, 0.25)
    sim = _pair([soft, hard], (1e-3, 1e-3), 2e-5)
    f0 = float(sim.contact_arrays()["normal_force_N"][0])
    assert f0 == pytest.approx(_hertz_N(sim, _e_star(soft, soft)), rel=1e-12)
    m0 = sim.state()["masses_kg"]
    # Particle 1 grows by 10 um: the overlap grows to 30 um and R* changes.
    sim.set_radii([1], 1.01e-3)
    st = sim.state()
    assert st["radii_m"][1] == 1.01e-3 and st["radii_m"][0] == 1e-3
    # m ~ r^3, to round-off: the ratio's cube and the stored 1/m round once each, and libm's pow may
    # land an ulp apart from numpy's on another CPU (a Xeon did); the untouched particle is exact.
    assert st["masses_kg"][0] == m0[0]
    assert st["masses_kg"][1] == pytest.approx(m0[1] * 1.01**3, rel=4 * np.finfo(float).eps)
    f1 = float(sim.contact_arrays()["normal_force_N"][0])
    assert f1 == pytest.approx(_hertz_N(sim, _e_star(soft, soft)), rel=1e-12)
    assert f1 > 1.8 * f0
    sim.set_radii([1], 1e-3, rescale_mass=False)
    assert sim.state()["masses_kg"][1] == st["masses_kg"][1]
    sim.set_masses([0, 1], [2e-5, 3e-5])
    assert np.array_equal(sim.state()["masses_kg"], _stored([2e-5, 3e-5]))
    # Particle 1 becomes "b": the pair mixes E* of both materials.
    sim.set_material([1], "b")
    assert np.array_equal(sim.state()["material_id"], [0, 1])
    f2 = float(sim.contact_arrays()["normal_force_N"][0])
    assert f2 == pytest.approx(_hertz_N(sim, _e_star(soft, hard)), rel=1e-12)
    sim.set_material([1], "b", rescale_mass=True)
    assert sim.state()["masses_kg"][1] == _stored(4.0 / 3.0 * np.pi * 1e-3**3 * 5000.0)
    sim.run(steps=10, progress=False)
    fixed = Simulation([soft], box_m=(0.01, 0.01, 0.01))
    fixed.add_particles([[5e-3, 5e-3, 5e-3]], [1e-3], "a", fixed=[True])
    with pytest.raises(ConfigError, match="mobile"):
        fixed.set_masses([0], 1e-5)


# ---------------------------------------------------------------------- 6. agent fields
def test_agent_fields_follow_the_particles_and_checkpoints(tmp_path):
    sim = _bed(ContactModel(), n=32, steps=0)
    age = sim.add_field("age_s", np.float64)
    label = sim.add_field("label", "int64", shape=3, fill=-1)
    assert age.shape == (32,) and label.shape == (32, 3) and np.all(label == -1)
    age[:] = np.arange(32) * 0.5
    sim.field("label")[:, 0] = sim.ids
    sim.add_particles([[4e-3, 4e-3, 2e-2]], [1e-3], "m")
    assert sim.field("age_s")[-1] == 0.0 and np.array_equal(sim.field("label")[-1], [-1, -1, -1])
    sim.remove_particles([0, 5])
    assert np.array_equal(sim.field("age_s")[:-1], np.delete(np.arange(32) * 0.5, [0, 5]))
    assert np.array_equal(sim.field("label")[:-1, 0], np.delete(np.arange(32), [0, 5]))
    sim.run(steps=20, progress=False)
    path = sim.save_checkpoint(tmp_path / "ck.npz")
    back = Simulation.load_checkpoint(path)
    for k in ("age_s", "label"):
        assert np.array_equal(back.field(k), sim.field(k)) and back.field(k).dtype == sim.field(k).dtype
    back.add_particles([[4e-3, 4e-3, 2.4e-2]], [1e-3], "m")
    assert np.array_equal(back.field("label")[-1], [-1, -1, -1])  # the fill came back too
    assert sim.describe()["fields"][1] == {"name": "label", "dtype": "int64", "shape": [3], "fill": -1}
    with pytest.raises(ConfigError, match="field"):
        sim.add_field("age_s")
    with pytest.raises(ConfigError, match="dtype"):
        sim.add_field("x", np.float32)
    with pytest.raises(ConfigError, match="field"):
        sim.field("nope")


# ---------------------------------------------------------------------- 7. extension stages
class Recorder(Extension):
    """Records the step, time and one particle's position/velocity each time it is called."""

    def __init__(self, stage: str, name: str) -> None:
        self.stage, self.name = stage, name
        self.calls: list[tuple[int, float, np.ndarray, np.ndarray]] = []

    def _record(self, sim: Any, time_s: float) -> None:
        st = sim.particles()
        self.calls.append((sim.step, time_s, st["positions_m"][0].copy(), st["velocities_m_per_s"][0].copy()))

    def on_stage(self, sim: Any, stage: str, time_s: float, dt_s: float) -> None:
        assert stage == self.stage
        self._record(sim, time_s)

    def add_forces(self, sim: Any, time_s: float, dt_s: float) -> None:
        assert self.stage == "post_force"
        self._record(sim, time_s)


def test_extension_stages_are_called_where_they_say_and_leave_the_trajectory_alone(monkeypatch):
    plain = _bed(ContactModel(), steps=120)
    staged = _bed(ContactModel(), steps=0)
    pre = staged.add_extension(Recorder("pre_force", "pre"))
    end = staged.add_extension(Recorder("end_of_step", "end"))
    reb = staged.add_extension(Recorder("on_rebuild", "reb"))
    assert isinstance(pre, Recorder) and isinstance(end, Recorder) and isinstance(reb, Recorder)
    builds0 = staged.neighbor_builds
    staged.run(steps=120, progress=False)
    # Splitting the fused step changes no bit of the trajectory.
    a, b = plain.state(), staged.state()
    for k in ("positions_m", "velocities_m_per_s", "angular_velocities_rad_per_s", "forces_N"):
        assert np.array_equal(a[k], b[k]), k
    dt = staged.dt_s
    assert [c[0] for c in pre.calls] == list(range(1, 121)) == [c[0] for c in end.calls]
    assert pre.calls[-1][1] == end.calls[-1][1] == staged.time_s == pytest.approx(120 * dt, rel=1e-12)
    # pre_force sees the drifted positions of its step (they do not change after it), end_of_step the
    # velocities after the final kick: at the last step both are the state the run ends with.
    assert np.array_equal(pre.calls[-1][2], b["positions_m"][0])
    assert np.array_equal(end.calls[-1][3], b["velocities_m_per_s"][0])
    assert not np.array_equal(pre.calls[-1][3], b["velocities_m_per_s"][0])  # half-step velocity then
    assert len(reb.calls) == staged.neighbor_builds - builds0 >= 1
    # Without pre_force / end_of_step extensions the fused step is the only path taken.
    import electrodem.engine.live as live

    def refuse(sim: Any, k: int) -> None:
        raise AssertionError("split step taken")

    monkeypatch.setattr(live, "advance_staged", refuse)
    plain.add_extension(Recorder("post_force", "post"))
    plain.add_extension(Recorder("on_rebuild", "reb"))
    plain.run(steps=10, progress=False)
    assert len(plain.extension("post").calls) == 10 + 1  # every step, and the priming
    with pytest.raises(ConfigError, match="stage"):
        plain.add_extension(Recorder("mid_step", "bad"))
    assert set(plain.particles()) >= {"ids", "positions_m", "radii_m", "masses_kg", "material_id", "fixed"}


# ---------------------------------------------------------------------- 8. snapshots
class Counter(Extension):
    """A deterministic extension with state: a constant push on particle 0 and a call counter."""

    name = "counter"

    def __init__(self) -> None:
        self.calls = 0

    def add_forces(self, sim: Any, time_s: float, dt_s: float) -> None:
        i = int(sim._store.intern[0])
        sim._store.f[i] = sim._store.f[i] + np.array([1e-6, 0.0, 0.0])
        self.calls += 1

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"calls": np.array(self.calls)}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.calls = int(state["calls"])


def _everything(sim: Simulation) -> dict[str, Any]:
    out: dict[str, Any] = {f"p_{k}": v for k, v in sim.state().items()}
    out.update({f"h_{k}": v for k, v in sim.contact_history().items()})
    for w in sim.walls:
        out.update({f"w_{w.name}_{k}": v for k, v in sim.wall_history(w.name).items()})
    out.update({f"ws_{k}": s["force_N"] for k, s in enumerate(sim.wall_state())})
    out.update({f"wp_{k}": s["point_m"] for k, s in enumerate(sim.wall_state())})
    out["step"], out["time"], out["dt"] = sim.step, sim.time_s, sim.dt_s
    out["calls"] = sim.extension("counter").calls
    out["field"] = sim.field("f").copy()
    return out


def _same(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), k


def test_restore_state_continues_bit_for_bit_even_after_reconfiguring():
    """Bit-for-bit at the suite's thread count: the contact path is deterministic on any number of
    threads (see the module docstring; checked at 1 and 2), so no thread count is forced here."""
    lid = Wall((0, 0, 8.6e-3), (0, 0, -1), "m", mode="servo", target_force_N=2e-3,
               servo_gain_m_per_s_per_N=5.0, max_speed_m_per_s=0.05, name="lid")
    full = ContactModel(normal="thornton_ning", rolling="epsd", cohesion="jkr")
    sim = _bed(full, walls=[FLOOR, lid], steps=0)
    sim.add_extension(Counter())
    sim.add_field("f", np.float64)
    sim.run(steps=300, progress=False)
    snap = sim.snapshot_state()
    assert snap.step == 300 and snap.model["contact"]["normal"] == "thornton_ning"
    sim.run(steps=500, progress=False)
    first = _everything(sim)
    assert len(first["h_i"]) > 50 and first["calls"] > 800
    # Back, and the same 500 steps again.
    sim.field("f")[:] = 1.0  # an agent rule wrote after the snapshot: restored too
    sim.restore_state(snap)
    assert sim.step == 300 and not np.any(sim.field("f"))
    sim.run(steps=500, progress=False)
    _same(first, _everything(sim))
    # Back, then another phase on the same simulation: other materials, contact model, walls,
    # particles, extensions; back again and the first continuation comes out.
    sim.restore_state(snap)
    sim.set_materials([Material("m", 2500.0, 3e7, 0.3, friction=0.2), Material("x", 1000.0, 1e7, 0.3)])
    sim.set_contact(ContactModel())
    sim.remove_wall("lid")
    sim.add_wall(Wall((0, 0, 0), (1, 0, 0), "x", name="side"))
    sim.remove_particles([1, 2])
    sim.set_guards(Guards(every_steps=50))
    sim.add_extension(Recorder("end_of_step", "extra"))
    sim.run(steps=200, progress=False)
    sim.restore_state(snap)
    assert [e.name for e in sim.extensions] == ["counter"] and sim.guards == Guards()
    sim.run(steps=500, progress=False)
    _same(first, _everything(sim))
    other = _bed(ContactModel(), n=16, steps=0)
    with pytest.raises(ConfigError, match="snapshot"):
        other.restore_state(snap)
