"""Tangential and rolling behaviour against rigid-body Coulomb/Mindlin results.

Oblique impact of a sphere on a wall (Maw, Barber & Fawcett 1976; Thornton et al. 2011 benchmark):
with the normalised incidence Psi1 = v_t / (3.5 mu (1 + e) v_n) and rebound Psi2 (same scaling of the
contact-point slip velocity after impact), gross sliding (Psi1 > 1) gives exactly Psi2 = Psi1 - 1
(friction impulse mu (1 + e) m v_n, I = 2/5 m R^2); at small angles the contact sticks, the Mindlin
spring is linear so Psi2 / Psi1 is constant and equals the solution of the no-slip Hertz–Mindlin
equations, which we integrate independently here (for nu = 0.3 and no damping the tangential
oscillation nearly completes a period during the impact, so Psi2 / Psi1 is close to +1).

Rolling resistance on an incline: a sphere rolling without slip down a slope of angle theta with a
resisting torque mu_r R F_n has acceleration g (sin theta - mu_r cos theta) / (1 + 2/5): it stops when
tan theta < mu_r and speeds up otherwise.
"""

import math

import numpy as np
import pytest

from electrodem.engine import ContactModel, EngineOptions, Material, Simulation, Wall, init

R = 1.0e-3
MU = 0.3


@pytest.fixture(scope="module", autouse=True)
def _engine():
    init(EngineOptions())


def _oblique(psi1: float, e: float = 1.0) -> float:
    mat = Material("m", 2500.0, 1.0e8, 0.3, restitution=e, friction=MU)
    sim = Simulation(
        [mat],
        box_m=(1.0, 1.0, 1.0),
        gravity_m_per_s2=(0, 0, 0),
        steps_per_contact=100,
        contact=ContactModel(tangential="mindlin", damping="none" if e == 1.0 else "restitution"),
        walls=[Wall((0, 0, 0), (0, 0, 1), "m")],
    )
    vn = 0.2
    vt = psi1 * 3.5 * MU * (1 + e) * vn
    sim.add_particles([[0.5, 0.5, R * 1.001]], [R], "m", velocities_m_per_s=[[vt, 0, -vn]])
    sim.run(
        until=lambda s: s.state()["velocities_m_per_s"][0, 2] > 0 and s.wall_overlaps_m(0)[0] < 0,
        steps=100_000,
        every=5,
        progress=False,
    )
    st = sim.state()
    v, w = st["velocities_m_per_s"][0], st["angular_velocities_rad_per_s"][0]
    e_meas = v[2] / vn
    slip = v[0] - R * w[1]
    return slip / (3.5 * MU * (1 + e_meas) * vn)


@pytest.mark.parametrize("psi1", [1.5, 3.0])
def test_oblique_gross_sliding_is_coulomb(psi1):
    assert _oblique(psi1) == pytest.approx(psi1 - 1.0, abs=0.01 * psi1)


def _no_slip_reference(psi1: float) -> float:
    """Psi2 of the same impact from an independent integration of the Hertz + no-slip Mindlin equations
    (normal: m d'' = -4/3 E* sqrt(R) d^1.5; tangential: spring F_t = -8 G* sqrt(R d) xi on the
    contact-point slip xi, lever arm R - d as in the engine)."""
    from scipy.integrate import solve_ivp

    nu, e_mod, rho = 0.3, 1.0e8, 2500.0
    g_mod = e_mod / (2 * (1 + nu))
    e_star = e_mod / (1 - nu**2) / 1.0  # sphere on a wall of the same material: E* = E / (2 (1 - nu^2))
    e_star /= 2.0
    g_star = 1.0 / (2 * (2 - nu) / g_mod)
    m = rho * 4 / 3 * math.pi * R**3
    inertia = 0.4 * m * R**2
    vn = 0.2
    vt = psi1 * 3.5 * MU * 2 * vn

    def rhs(_t, y):
        d, dd, vx, w, xi = y
        dpos = max(d, 0.0)
        fn = 4 / 3 * e_star * math.sqrt(R) * dpos**1.5
        ft = -8 * g_star * math.sqrt(R * dpos) * xi
        lev = R - dpos
        return [dd, -fn / m, ft / m, -lev * ft / inertia, vx - lev * w]

    def leave(_t, y):
        return y[0]

    leave.terminal, leave.direction = True, -1
    t_c = 2.868 * ((m / 1.0) ** 2 / (R * e_star**2 * vn)) ** 0.2
    sol = solve_ivp(
        rhs,
        (0.0, 2.0 * t_c),
        [1e-12, vn, vt, 0.0, 0.0],
        events=leave,
        rtol=1e-9,
        atol=[1e-15, 1e-12, 1e-12, 1e-9, 1e-15],
        method="LSODA",
    )
    _d, _dd, vx, w, _xi = sol.y[:, -1]
    return (vx - R * w) / (3.5 * MU * 2 * vn)


def test_oblique_sticking_regime_matches_no_slip_mindlin():
    ratios = [_oblique(p) / p for p in (0.05, 0.025)]
    ref = _no_slip_reference(0.05) / 0.05
    assert ratios[0] == pytest.approx(ref, abs=0.02)
    # Linear (no slip): the same ratio at half the angle.
    assert ratios[1] == pytest.approx(ratios[0], abs=0.02)
    # Below Coulomb sliding the rebound slip is less than the sliding prediction would allow.
    assert ratios[0] < 1.0


def _incline(theta: float, mu_r: float, model: str, t_end: float, v0: float):
    g = 9.81
    mat = Material("m", 2500.0, 1.0e7, 0.3, restitution=0.5, friction=0.8, rolling_friction=mu_r)
    sim = Simulation(
        [mat],
        box_m=(0.05, 0.05, 0.05),
        gravity_m_per_s2=(g * math.sin(theta), 0, -g * math.cos(theta)),
        contact=ContactModel(tangential="mindlin", rolling=model),
        walls=[Wall((0, 0, 0), (0, 0, 1), "m")],
    )
    m = 2500.0 * 4 / 3 * math.pi * R**3
    e_star = mat.youngs_modulus_Pa / (1 - mat.poisson_ratio**2) / 2.0
    d_eq = (3 * m * g * math.cos(theta) / (4 * e_star * math.sqrt(R))) ** (2 / 3)
    sim.add_particles(
        [[0.01, 0.025, R - d_eq]],
        [R],
        "m",
        velocities_m_per_s=[[v0, 0, 0]],
        angular_velocities_rad_per_s=[[0, v0 / R, 0]],
    )
    times, vel = [], []

    def rec(s):
        times.append(s.time_s)
        vel.append(s.state()["velocities_m_per_s"][0, 0])

    sim.run(until=t_end, every=20, callbacks=[rec], progress=False)
    return np.array(times), np.array(vel), g * (math.sin(theta) - mu_r * math.cos(theta)) / 1.4


@pytest.mark.parametrize("model", ["epsd", "constant"])
def test_rolling_resistance_speeds_up_above_the_critical_slope(model):
    t, v, a = _incline(math.atan(0.15), 0.1, model, 0.06, 0.02)
    sel = t > 0.01
    slope = np.polyfit(t[sel], v[sel], 1)[0]
    assert slope == pytest.approx(a, rel=0.03)


def test_rolling_resistance_stops_below_the_critical_slope():
    v0 = 0.02
    theta = math.atan(0.05)
    a = 9.81 * (math.sin(theta) - 0.1 * math.cos(theta)) / 1.4
    t_stop = v0 / -a
    t, v, _ = _incline(theta, 0.1, "epsd", 2.0 * t_stop, v0)
    half = np.argmin(np.abs(t - 0.5 * t_stop))
    assert v[half] == pytest.approx(0.5 * v0, rel=0.05)
    # At rest afterwards: the elastic rolling spring holds the sphere on the slope.
    late = t > 1.3 * t_stop
    assert np.max(np.abs(v[late])) < 0.01 * v0
