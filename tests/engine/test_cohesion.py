"""Cohesion: JKR adhesion and van der Waals attraction against their analytic values.

JKR (Johnson, Contact Mechanics §5.5): overlap d = a^2/R* - sqrt(2 pi W a / E*), force
F = 4 E* a^3 / (3 R*) - sqrt(8 pi W E* a^3); pull-off (largest tensile) force 3/2 pi W R*; overlap at zero
load a_0^2 / (3 R*) with a_0^3 = 9 pi W R*^2 / (2 E*); the contact breaks at
d = -3/4 (pi^2 W^2 R* / E*^2)^(1/3).
Van der Waals (Hamaker): F = A R* / (6 D^2) at gap D >= D_0, zero beyond the cut-off.
"""

import math

import numpy as np
import pytest
import taichi as ti

from electrodem.engine import ContactModel, EngineOptions, Material, Simulation, Wall, init
from electrodem.engine.cohesion import (
    jkr_break_overlap_m,
    jkr_contact_radius,
    jkr_equilibrium_overlap_m,
    jkr_pull_off_force_N,
    vdw_force_N,
)
from electrodem.engine.simulation import Guards

R = 5.0e-6  # sphere radius (m)
E, NU, RHO = 1.0e7, 0.3, 2000.0
W = 0.05  # work of adhesion (J/m^2)
HAM = 1.0e-19  # Hamaker constant (J)
E_STAR_PAIR = E / (2.0 * (1.0 - NU**2))
E_STAR_WALL = E / (2.0 * (1.0 - NU**2))  # the wall is of the same material
BOX = (1e-3, 1e-3, 1e-3)


@pytest.fixture(scope="module", autouse=True)
def _engine():
    init(EngineOptions())


def _sim(
    cohesion: str, walls=(), dt_s=None, damping: str = "restitution", guards=None, **contact
) -> Simulation:
    mat = Material("p", RHO, E, NU, restitution=0.5, friction=0.0, surface_energy_J_per_m2=W, hamaker_J=HAM)
    return Simulation(
        [mat],
        box_m=BOX,
        periodic=(False, False, False),
        contact=ContactModel(cohesion=cohesion, damping=damping, tangential="none", **contact),
        walls=walls,
        gravity_m_per_s2=(0, 0, 0),
        dt_s=dt_s,
        guards=guards,
    )


# A sphere driven at a prescribed velocity (a fixed particle) does work the energy guard does not count.
DRIVEN = Guards(energy_growth_factor=1e30)


def test_jkr_contact_radius_inverts_the_overlap_relation():
    """The closed-form a(d) of the kernel satisfies d = a^2/R - sqrt(2 pi W a/E*) over the whole
    contact range, from just above the break to deep overlap."""
    r_star, e_star = 0.5 * R, E_STAR_PAIR
    d_c = jkr_break_overlap_m(r_star, e_star, W)
    deltas = np.concatenate([-d_c * np.array([0.999, 0.9, 0.5, 0.1]), d_c * np.logspace(-3, 3, 13)])
    out = ti.ndarray(ti.f64, len(deltas))

    @ti.kernel
    def radii(d: ti.types.ndarray(), o: ti.types.ndarray()):
        for k in range(d.shape[0]):
            o[k] = jkr_contact_radius(d[k], r_star, e_star, W)

    radii(deltas, out)
    a = out.to_numpy()
    back = a**2 / r_star - np.sqrt(2 * math.pi * W * a / e_star)
    assert np.all(np.abs(back - deltas) < 1e-9 * np.maximum(np.abs(deltas), d_c))


def _pull(sim: Simulation, force_of, separation_of, steps: int, every: int):
    rows = []

    def rec(s):
        rows.append((separation_of(s), force_of(s)))

    rec(sim)
    sim.run(steps=steps, every=every, callbacks=[rec], progress=False)
    return np.array(rows)


def test_jkr_pair_pull_off_equilibrium_and_break():
    """Two spheres, one fixed, the other pulled away at constant speed from overlap 2 d_0: the largest
    tensile force is 3/2 pi W R*, the force vanishes at d_0, the contact breaks at -d_c."""
    r_star = 0.5 * R
    d0 = jkr_equilibrium_overlap_m(r_star, E_STAR_PAIR, W)
    d_c = jkr_break_overlap_m(r_star, E_STAR_PAIR, W)
    travel = 2 * d0 + 1.5 * d_c
    steps, dt = 3000, 1e-9
    v = travel / (steps * dt)
    sim = _sim("jkr", dt_s=dt, guards=DRIVEN)
    sim.add_particles(
        [[5e-4, 5e-4, 5e-4], [5e-4 + 2 * R - 2 * d0, 5e-4, 5e-4]],
        R,
        velocities_m_per_s=[[0, 0, 0], [v, 0, 0]],
        fixed=[True, True],
    )
    # Overlap and the force on the pulled sphere along the line of centres (> 0: repulsive).
    rows = _pull(
        sim,
        lambda s: float(s.state()["forces_N"][1, 0]),
        lambda s: 2 * R - float(np.diff(s.state()["positions_m"][:, 0])[0]),
        steps,
        5,
    )
    delta, f = rows[:, 0], rows[:, 1]
    assert -f.min() == pytest.approx(jkr_pull_off_force_N(r_star, W), rel=0.01)
    k = np.flatnonzero((f[:-1] > 0) & (f[1:] <= 0))[0]
    d_zero = delta[k] + (delta[k + 1] - delta[k]) * f[k] / (f[k] - f[k + 1])
    assert d_zero == pytest.approx(d0, rel=0.01)
    attached = delta[f != 0]
    assert attached.min() == pytest.approx(-d_c, rel=0.02)
    assert np.all(f[delta < -1.02 * d_c] == 0.0)
    # Past the break the pair is an ordinary non-touching one: the flag was cleared.
    assert sim.describe()["cohesion_reach_m"] >= d_c


def test_jkr_wall_pull_off():
    """A (very heavy) sphere on a wall that recedes slowly: the largest tensile force on the wall is
    3/2 pi W R with R* = the sphere radius."""
    d0 = jkr_equilibrium_overlap_m(R, E_STAR_WALL, W)
    d_c = jkr_break_overlap_m(R, E_STAR_WALL, W)
    steps, dt = 3000, 1e-9
    v = (2 * d0 + 1.5 * d_c) / (steps * dt)
    wall = Wall((0, 0, 0), (0, 0, 1), "p", mode="velocity", velocity_m_per_s=(0, 0, -v), name="cc")
    sim = _sim("jkr", walls=[wall], dt_s=dt)
    sim.add_particles([[5e-4, 5e-4, R - 2 * d0]], R, masses_kg=[1e3])
    rows = _pull(
        sim,
        lambda s: float(s.wall_state()[0]["force_N"][2]),
        lambda s: R - float(s.state()["positions_m"][0, 2] - s.wall_state()[0]["point_m"][2]),
        steps,
        5,
    )
    # The wall is pulled towards the sphere (+z) by the adhesion.
    assert rows[:, 1].max() == pytest.approx(jkr_pull_off_force_N(R, W), rel=0.01)
    assert rows[rows[:, 1] != 0, 0].min() == pytest.approx(-d_c, rel=0.02)


def test_jkr_spheres_released_touching_stick_at_the_zero_load_overlap():
    sim = _sim("jkr")
    d0 = jkr_equilibrium_overlap_m(0.5 * R, E_STAR_PAIR, W)
    sim.add_particles([[5e-4, 5e-4, 5e-4], [5e-4 + 2 * R - 0.3 * d0, 5e-4, 5e-4]], R)
    sim.run(steps=6000, progress=False)
    x = sim.state()["positions_m"][:, 0]
    assert 2 * R - (x[1] - x[0]) == pytest.approx(d0, rel=0.01)
    assert sim.diagnostics()["kinetic_energy_J"] < 1e-6 * abs(sim.diagnostics()["cohesive_energy_J"])


def test_vdw_force_at_three_gaps_and_cut_off():
    """Fixed spheres (pairs) and a fixed-in-place heavy sphere (wall) at prescribed gaps."""
    cut = 100e-9
    d_min = 0.4e-9
    for gap in (1e-9, 10e-9, 60e-9, 150e-9):
        wall = Wall((0, 0, 0), (0, 0, 1), "p", name="cc")
        sim = _sim("vdw", walls=[wall], dt_s=1e-12, vdw_min_separation_m=d_min, vdw_cutoff_m=cut)
        sim.add_particles(
            [[2e-4, 5e-4, 5e-4], [2e-4 + 2 * R + gap, 5e-4, 5e-4], [7e-4, 5e-4, R + gap]],
            R,
            fixed=[True, True, False],
            masses_kg=[1.0, 1.0, 1e3],
        )
        assert sim.skin_m >= cut
        sim.run(steps=1, progress=False)
        f = sim.state()["forces_N"]
        want_pair = vdw_force_N(gap, 0.5 * R, HAM, d_min, cut)
        want_wall = vdw_force_N(gap, R, HAM, d_min, cut)
        if gap < cut:
            assert want_pair == pytest.approx(HAM * 0.5 * R / (6 * gap**2))
            assert f[0, 0] == pytest.approx(want_pair, rel=0.01)
            assert f[1, 0] == pytest.approx(-want_pair, rel=0.01)
            assert f[2, 2] == pytest.approx(-want_wall, rel=0.01)
        else:
            assert np.all(f == 0.0)


def test_vdw_approach_conserves_energy_then_spheres_stick():
    """Spheres released at rest 20 nm apart (cut-off 100 nm): without damping the kinetic plus cohesive energy
    is conserved during the approach; with damping they stick at the overlap where Hertz balances
    the attraction A R* / (6 D_0^2)."""
    cut, d_min = 100e-9, 0.4e-9
    r_star = 0.5 * R
    xs = [[5e-4, 5e-4, 5e-4], [5e-4 + 2 * R + 20e-9, 5e-4, 5e-4]]
    sim = _sim("vdw", damping="none", vdw_min_separation_m=d_min, vdw_cutoff_m=cut)
    sim.add_particles(xs, R)
    d = sim.diagnostics()
    e0 = d["kinetic_energy_J"] + d["cohesive_energy_J"]
    energies = []

    def gap(s):
        x = s.state()["positions_m"][:, 0]
        return x[1] - x[0] - 2 * R

    def rec(s):
        # Down to 10 nm, where a step moves the spheres by a small fraction of the gap (Verlet error).
        if gap(s) > 10e-9:
            dd = s.diagnostics()
            energies.append((dd["kinetic_energy_J"] + dd["cohesive_energy_J"], dd["kinetic_energy_J"]))

    sim.run(steps=20000, every=10, until=lambda s: gap(s) < 0.0, callbacks=[rec], progress=False)
    # The time step resolves the stiff Hamaker well near D_0 (the "vdw" rule).
    assert sim.time_step_report.rule == "vdw"
    assert gap(sim) < 0.0
    en = np.array(energies)
    assert en[-1, 1] > 0.5 * abs(e0)  # they did accelerate towards each other
    assert np.max(np.abs(en[:, 0] - e0)) < 1e-3 * en[:, 1].max()

    sim = _sim("vdw", vdw_min_separation_m=d_min, vdw_cutoff_m=cut)
    sim.add_particles(xs, R)
    sim.run(steps=30000, progress=False)
    x = sim.state()["positions_m"][:, 0]
    f_att = HAM * r_star / (6 * d_min**2)
    d_eq = (3 * f_att / (4 * E_STAR_PAIR * math.sqrt(r_star))) ** (2 / 3)
    assert 2 * R - (x[1] - x[0]) == pytest.approx(d_eq, rel=0.01)


def test_no_cohesion_by_default_and_bad_input():
    mat = Material("p", RHO, E, NU, surface_energy_J_per_m2=W, hamaker_J=HAM)
    from electrodem.engine.model import P_HAM, P_W, MaterialTable

    table = MaterialTable((mat,)).pair_table(ContactModel())
    assert table[0, 0, P_W] == 0.0 and table[0, 0, P_HAM] == 0.0
    assert MaterialTable((mat,)).pair_table(ContactModel(cohesion="jkr"))[0, 0, P_W] == W
    from electrodem.config import ConfigError

    with pytest.raises(ConfigError, match="cohesion"):
        ContactModel(cohesion="glue")
    with pytest.raises(ConfigError, match="vdw_cutoff_m"):
        ContactModel(cohesion="vdw", vdw_cutoff_m=1e-10)
    with pytest.raises(ConfigError, match="surface_energy_J_per_m2"):
        Material("p", RHO, E, NU, surface_energy_J_per_m2=-1.0)


def test_jkr_flag_survives_a_neighbour_rebuild():
    """A pair stretched to negative overlap keeps its adhesive contact through a list rebuild (the
    flag is carried like the tangential history), so the force is the same before and after."""
    r_star = 0.5 * R
    d0 = jkr_equilibrium_overlap_m(r_star, E_STAR_PAIR, W)
    d_c = jkr_break_overlap_m(r_star, E_STAR_PAIR, W)
    steps, dt = 1000, 1e-9
    v = (d0 + 0.5 * d_c) / (steps * dt)
    sim = _sim("jkr", dt_s=dt, guards=DRIVEN)
    sim.add_particles(
        [[5e-4, 5e-4, 5e-4], [5e-4 + 2 * R - d0, 5e-4, 5e-4]],
        R,
        velocities_m_per_s=[[0, 0, 0], [v, 0, 0]],
        fixed=[True, True],
    )
    sim.run(steps=steps, progress=False)
    before = sim.state()["forces_N"][1, 0]
    assert before < 0.0  # attracted at negative overlap
    builds = sim.neighbor_builds
    sim._rebuild()
    sim._forces_valid = False
    sim.run(steps=0, progress=False)
    assert sim.neighbor_builds == builds + 1
    assert sim.state()["forces_N"][1, 0] == pytest.approx(before, rel=1e-12)
