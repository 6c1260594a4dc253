"""Head-on collisions against Hertz theory: force law, peak overlap, contact time, restitution, energy.

Two unequal spheres of two materials (so E* and R* mixing are exercised) collide without gravity.
Hertz (elastic): F = 4/3 E* sqrt(R*) d^1.5, peak overlap d_max = (15 m* v^2 / (16 E* sqrt(R*)))^(2/5),
duration t_c = 2.868 (m*^2 / (R* E*^2 v))^(1/5) (Johnson, Contact Mechanics, §11.4).
"""

import math

import numpy as np
import pytest

from electrodem.engine import ContactModel, EngineOptions, Material, Simulation, Wall, init

R1, R2 = 1.0e-3, 0.6e-3
V = 0.5  # closing speed (m/s)


@pytest.fixture(scope="module", autouse=True)
def _engine():
    init(EngineOptions())


def _materials(e: float) -> list[Material]:
    return [
        Material("a", 7800.0, 2.0e8, 0.3, restitution=e, friction=0.0),
        Material("b", 2500.0, 7.0e7, 0.22, restitution=e, friction=0.0),
    ]


def _star(mats: list[Material]) -> tuple[float, float, float]:
    a, b = mats
    e_star = 1.0 / (
        (1 - a.poisson_ratio**2) / a.youngs_modulus_Pa + (1 - b.poisson_ratio**2) / b.youngs_modulus_Pa
    )
    m1 = a.density_kg_per_m3 * 4 / 3 * math.pi * R1**3
    m2 = b.density_kg_per_m3 * 4 / 3 * math.pi * R2**3
    return e_star, R1 * R2 / (R1 + R2), m1 * m2 / (m1 + m2)


def _collide(e: float, damping: str = "restitution", record: bool = False):
    mats = _materials(e)
    sim = Simulation(
        mats,
        box_m=(0.1, 0.1, 0.1),
        periodic=(False, False, False),
        gravity_m_per_s2=(0, 0, 0),
        contact=ContactModel(damping=damping, tangential="none"),
        steps_per_contact=100,
    )
    m1 = mats[0].density_kg_per_m3 * 4 / 3 * math.pi * R1**3
    m2 = mats[1].density_kg_per_m3 * 4 / 3 * math.pi * R2**3
    # Centre-of-mass frame so that the pair stays put; a small gap before contact.
    v1, v2 = V * m2 / (m1 + m2), -V * m1 / (m1 + m2)
    gap = 0.02e-3
    sim.add_particles(
        [[0.05, 0.05, 0.05], [0.05 + R1 + R2 + gap, 0.05, 0.05]],
        [R1, R2],
        ["a", "b"],
        velocities_m_per_s=[[v1, 0, 0], [v2, 0, 0]],
    )
    rows = []

    def rec(s):
        c = s.contact_arrays()
        st = s.state()
        d = s.diagnostics()
        ovl = float(c["overlap_m"][0]) if len(c["i"]) else 0.0
        fn = float(c["normal_force_N"][0]) if len(c["i"]) else 0.0
        rows.append(
            (
                s.time_s,
                ovl,
                fn,
                st["forces_N"][0, 0],
                st["forces_N"][1, 0],
                d["kinetic_energy_J"],
                d["elastic_energy_J"],
            )
        )

    t_gap = gap / V
    sim.run(until=t_gap * 0.5, progress=False)
    sim.run(
        until=lambda s: s.state()["velocities_m_per_s"][0, 0] < 0 and s.contact_arrays()["i"].size == 0,
        steps=200_000,
        every=1 if record else 10,
        callbacks=[rec] if record else [],
        progress=False,
    )
    v = sim.state()["velocities_m_per_s"]
    e_meas = -(v[0, 0] - v[1, 0]) / (v1 - v2)
    return sim, np.array(rows) if record else None, e_meas, (m1, m2, v1, v2)


def test_hertz_force_peak_overlap_and_duration():
    sim, rows, e_meas, (m1, m2, v1, v2) = _collide(1.0, damping="none", record=True)
    e_star, r_star, m_star = _star(_materials(1.0))
    ovl, fn, f0, f1 = rows[:, 1], rows[:, 2], rows[:, 3], rows[:, 4]
    touching = ovl > 0
    hertz = 4.0 / 3.0 * e_star * math.sqrt(r_star) * ovl[touching] ** 1.5
    assert np.max(np.abs(fn[touching] / hertz - 1.0)) < 0.01
    # The force acts on both spheres, equal and opposite, along the line of centres (-x on sphere 0).
    assert np.allclose(-f0[touching], fn[touching], rtol=1e-9)
    assert np.allclose(f1[touching], fn[touching], rtol=1e-9)
    d_max = (15.0 * m_star * V**2 / (16.0 * e_star * math.sqrt(r_star))) ** 0.4
    assert ovl.max() == pytest.approx(d_max, rel=0.01)
    t_c = 2.868 * (m_star**2 / (r_star * e_star**2 * V)) ** 0.2
    dt = sim.dt_s
    duration = dt * np.count_nonzero(touching)
    assert duration == pytest.approx(t_c, rel=0.02)


def test_energy_conserved_without_damping():
    _sim, rows, e_meas, _ = _collide(1.0, damping="restitution", record=True)
    ke, el = rows[:, 5], rows[:, 6]
    e0 = ke[0]
    # Total mechanical energy during the contact and kinetic energy after it, within 0.1 %.
    assert np.max(np.abs((ke + el) / e0 - 1.0)) < 1e-3
    assert e_meas == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("e", [0.3, 0.5, 0.9])
def test_restitution_sphere_sphere(e):
    _sim, _rows, e_meas, _ = _collide(e)
    assert e_meas == pytest.approx(e, rel=0.02)


@pytest.mark.parametrize("e", [0.3, 0.9])
def test_restitution_sphere_wall(e):
    mats = [Material("a", 7800.0, 2.0e8, 0.3, restitution=e, friction=0.0)]
    sim = Simulation(
        mats,
        box_m=(0.1, 0.1, 0.1),
        gravity_m_per_s2=(0, 0, 0),
        contact=ContactModel(tangential="none"),
        walls=[Wall((0, 0, 0), (0, 0, 1), "a")],
    )
    sim.add_particles([[0.05, 0.05, R1 * 1.01]], [R1], "a", velocities_m_per_s=[[0, 0, -V]])
    sim.run(
        until=lambda s: s.state()["velocities_m_per_s"][0, 2] > 0 and s.wall_overlaps_m(0)[0] < 0,
        steps=100_000,
        every=10,
        progress=False,
    )
    assert sim.state()["velocities_m_per_s"][0, 2] / V == pytest.approx(e, rel=0.02)
