"""Parallel-bond model (`electrodem.engine.bonds`): Hooke's law and strength of a bonded chain, beam
bending of a bonded cantilever, exact twist/bend/shear loads of a kinematically driven pair, the plastic
law, periodic bonds, energy conservation at the automatic time step and the checkpoint round trip.

All particles: radius 10 um, density 2000 kg/m^3, beads 0.2 um apart (surface gap) so that no
sphere–sphere contact acts; gravity off. Bonds: E_b = 1 GPa, nu_b = 0.3, lambda = 1, so k_n = E_b / L_0.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from electrodem.config import ConfigError
from electrodem.engine import EngineOptions, Material, Simulation, init
from electrodem.engine.bonds import Bonds
from electrodem.engine.extensions import Extension

R = 1e-5
SPACING = 2.02e-5
E_B, NU_B = 1e9, 0.3
AREA = np.pi * R**2
I_B = np.pi * R**4 / 4
J_B = 2 * I_B
KN = E_B / SPACING
KS = E_B / (2 * (1 + NU_B)) / SPACING


@pytest.fixture(scope="module", autouse=True)
def _engine() -> None:
    init(EngineOptions(arch="cpu", precision="f64"))


def _sim(
    periodic: tuple[bool, bool, bool] = (False, False, False), box: float = 1e-3, **kw: Any
) -> Simulation:
    return Simulation(
        [Material("m", 2000.0, 1e9, 0.3, friction=0.0)],
        box_m=(box, box, box),
        periodic=periodic,
        gravity_m_per_s2=(0, 0, 0),
        **kw,
    )


def _chain(sim: Simulation, n: int, fixed: np.ndarray, v: np.ndarray | None = None) -> None:
    x = np.zeros((n, 3))
    x[:, 0] = np.arange(n) * SPACING
    x += 2e-4
    sim.add_particles(x, R, "m", fixed=fixed, velocities_m_per_s=v)


class TipForce(Extension):
    """Constant force (N) on one particle (test double)."""

    name = "tip"

    def __init__(self, index: int, force_N: tuple[float, float, float]) -> None:
        self.index, self.force = index, np.asarray(force_N, float)

    def add_forces(self, sim: Any, time_s: float, dt_s: float) -> None:
        i = int(sim._store.intern[self.index])
        sim._store.f[i] = sim._store.f[i] + self.force

    def work_done_J(self, sim: Any) -> float:
        x = sim.state()["positions_m"][self.index]
        self.x0 = getattr(self, "x0", x)
        return float(self.force @ (x - self.x0))


def test_axial_chain_hooke_and_tensile_strength() -> None:
    """Series springs: a chain of N bonds of axial stiffness k_n A each, pulled quasi-statically, has
    F = (k_n A / N) * elongation; the weakest bond (strength 0.8 sigma_t) breaks when F = 0.8 sigma_t A."""
    nb = 10
    sim = _sim(dt_s=5e-9)
    v = np.zeros((nb + 1, 3))
    v[-1, 0] = 0.05
    fixed = np.zeros(nb + 1, bool)
    fixed[[0, -1]] = True
    _chain(sim, nb + 1, fixed, v)
    sigma_t = 1e7
    strength = np.full(nb, sigma_t)
    strength[3] = 0.8 * sigma_t
    bonds = sim.add_extension(Bonds(youngs_modulus_Pa=E_B, poisson_ratio=NU_B, damping_ratio=0.5))
    bonds.add(np.arange(nb), np.arange(1, nb + 1), tensile_strength_Pa=strength)
    x_end0 = sim.state()["positions_m"][-1, 0]
    rec: list[tuple[float, float]] = []

    def record(s: Simulation) -> None:
        st = s.state()
        rec.append((st["positions_m"][-1, 0] - x_end0, st["forces_N"][0, 0]))

    res = sim.run(
        steps=20000, until=lambda s: bonds.broken_count > 0, every=5, callbacks=[record], progress=False
    )
    assert res.stopped_by == "until"
    elong, force = np.array(rec).T
    f_break = 0.8 * sigma_t * AREA
    k_series = KN * AREA / nb
    sel = (force > 0.2 * f_break) & (force < 0.9 * f_break)
    slope = np.polyfit(elong[sel], force[sel], 1)[0]
    print(f"chain: slope/k = {slope / k_series:.5f}, Fmax/F_break = {force.max() / f_break:.5f}")
    assert slope == pytest.approx(k_series, rel=0.01)
    # The weak bond, and only it, broke; the chain carried its strength (measured at the fixed end).
    st = bonds.state()
    assert bonds.broken_count == 1 and np.flatnonzero(st["broken"]).tolist() == [3]
    assert st["broken_step"][3] > 0 and np.all(st["broken_step"][st["intact"]] == -1)
    assert force.max() == pytest.approx(f_break, rel=0.02)
    assert st["normal_force_N"][3] == pytest.approx(f_break, rel=0.02)
    assert elong[np.argmax(force)] == pytest.approx(f_break / k_series, rel=0.02)
    # After the break the fixed end is unloaded (the remaining bonds relax).
    sim.run(steps=200, progress=False)
    assert abs(sim.state()["forces_N"][0, 0]) < 0.05 * f_break


def _discrete_cantilever(force: float, n_free: int) -> float:
    """Tip deflection of the bonded chain: bond moments at bond centres (midpoint rule for
    theta' = M / (k_n I L_0)), trapezoid for y' = theta, plus the shear offset F / (k_s A) per bond."""
    ei = KN * I_B * SPACING
    lc = n_free * SPACING
    theta, y = 0.0, 0.0
    for k in range(1, n_free + 1):
        m = force * (lc - (k - 0.5) * SPACING)
        th_new = theta + m * SPACING / ei
        y += SPACING * 0.5 * (theta + th_new) + force / (KS * AREA)
        theta = th_new
    return y


def test_cantilever_matches_beam_theory() -> None:
    """A bonded cantilever (2 clamped beads, 15 free bonds) under a small tip load settles at the
    Euler–Bernoulli deflection F L^3 / (3 E_b I) (E I of the chain = k_n I L_0 = E_b I)."""
    n = 17
    n_free = n - 2
    lc = n_free * SPACING
    force = 3e-7
    mass = 2000.0 * 4 / 3 * np.pi * R**3
    # Fundamental frequency of the continuous cantilever; background damping 2 omega_1 is critical.
    omega1 = 3.516 * np.sqrt(E_B * I_B / (mass / SPACING * lc**4))
    sim = _sim(dt_s=5e-9, background_damping_per_s=2 * omega1)
    fixed = np.zeros(n, bool)
    fixed[:2] = True
    _chain(sim, n, fixed)
    bonds = sim.add_extension(Bonds(youngs_modulus_Pa=E_B, poisson_ratio=NU_B))
    made = bonds.create_within(sim, gap_m=1e-6)
    assert len(made) == n - 1
    sim.add_extension(TipForce(n - 1, (0.0, 0.0, -force)))
    z0 = sim.state()["positions_m"][-1, 2]
    sim.run(steps=16000, progress=False)
    delta = z0 - sim.state()["positions_m"][-1, 2]
    eb = force * lc**3 / (3 * E_B * I_B)
    assert delta / lc < 2e-3  # small deflection
    assert delta == pytest.approx(eb, rel=0.05)
    assert delta == pytest.approx(_discrete_cantilever(force, n_free), rel=0.005)
    print(
        f"cantilever: delta/EB = {delta / eb:.5f}, "
        f"delta/discrete = {delta / _discrete_cantilever(force, n_free):.5f}"
    )
    # Static: what the largest remaining speed would move in 1/omega_1 is small against delta.
    assert np.abs(sim.state()["velocities_m_per_s"]).max() / omega1 < 1e-3 * delta


def test_twist_bend_and_shear_of_a_driven_pair() -> None:
    """Two fixed beads, the second spinning: twisting moment k_s J theta, bending moment k_n I theta
    and the shear force k_s A d theta of the bond-centre slip, exactly (increments are linear)."""
    dt, steps, w = 1e-8, 100, 1e3
    theta = w * dt * steps
    d = SPACING / 2
    out = {}
    for axis in ("x", "z"):
        sim = _sim(dt_s=dt)
        omega = np.zeros((2, 3))
        omega[1, "xyz".index(axis)] = w
        x = np.array([[0, 0, 0], [SPACING, 0, 0]]) + 2e-4
        sim.add_particles(x, R, "m", fixed=np.ones(2, bool), angular_velocities_rad_per_s=omega)
        bonds = sim.add_extension(Bonds(youngs_modulus_Pa=E_B, poisson_ratio=NU_B))
        bonds.add([0], [1])
        sim.run(steps=steps, progress=False)
        out[axis] = (sim.state(), bonds.state())
    st, bs = out["x"]
    np.testing.assert_allclose(st["torques_N_m"][0], [KS * J_B * theta, 0, 0], rtol=1e-9, atol=1e-30)
    np.testing.assert_allclose(st["torques_N_m"][1], -st["torques_N_m"][0], rtol=1e-12)
    assert bs["twisting_moment_N_m"][0] == pytest.approx(KS * J_B * theta, rel=1e-9)
    assert bs["shear_stress_Pa"][0] == pytest.approx(KS * J_B * theta * R / J_B, rel=1e-9)
    st, bs = out["z"]
    fs = -KS * AREA * d * theta
    np.testing.assert_allclose(st["forces_N"][0], [0, fs, 0], rtol=1e-9, atol=1e-18)
    np.testing.assert_allclose(st["forces_N"][1], [0, -fs, 0], rtol=1e-9, atol=1e-18)
    tq0 = KN * I_B * theta + d * fs
    np.testing.assert_allclose(st["torques_N_m"][0], [0, 0, tq0], rtol=1e-9, atol=1e-30)
    np.testing.assert_allclose(bs["bending_moment_N_m"][0], [0, 0, KN * I_B * theta], rtol=1e-9, atol=1e-30)
    assert bs["stress_Pa"][0] == pytest.approx(KN * I_B * theta * R / I_B, rel=1e-9)


def test_plastic_bond_yields_then_breaks_at_strain() -> None:
    """Elastic–perfectly-plastic axial law: F = k_n A (L - L_0) up to sigma_y A, flat while it flows,
    broken at the breaking strain; brittle bonds break at the tensile strength."""
    dt, v = 1e-8, 0.1
    sigma_y, eps_b, sigma_t = 5e6, 0.02, 8e6
    forces = {}
    for mode in ("plastic", "brittle"):
        sim = _sim(dt_s=dt)
        x = np.array([[0, 0, 0], [SPACING, 0, 0]]) + 2e-4
        sim.add_particles(x, R, "m", fixed=np.ones(2, bool), velocities_m_per_s=[[0, 0, 0], [v, 0, 0]])
        extra = {"yield_stress_Pa": sigma_y, "breaking_strain": eps_b} if mode == "plastic" else {}
        bonds = sim.add_extension(
            Bonds(
                youngs_modulus_Pa=E_B, poisson_ratio=NU_B, tensile_strength_Pa=sigma_t, failure=mode, **extra
            )
        )
        bonds.add([0], [1])
        rec: list[float] = []

        def record(s: Simulation, rec: list[float] = rec) -> None:
            rec.append(s.state()["forces_N"][0, 0])

        sim.run(steps=600, every=1, callbacks=[record], progress=False)
        forces[mode] = (np.array(rec), bonds.state())
        sim.free()  # the next mode reuses the pooled store and its compiled kernels
    f, st = forces["plastic"]
    stretch = v * dt * np.arange(1, len(f) + 1)
    elastic = stretch < 0.99 * sigma_y / KN
    np.testing.assert_allclose(f[elastic], KN * AREA * stretch[elastic], rtol=1e-9)
    flowing = (stretch > 1.01 * sigma_y / KN) & (stretch < 0.99 * eps_b * SPACING)
    assert flowing.sum() > 100
    np.testing.assert_allclose(f[flowing], sigma_y * AREA, rtol=1e-12)
    assert bool(st["broken"][0])
    assert st["broken_step"][0] == pytest.approx(eps_b * SPACING / (v * dt), abs=1)
    assert st["equilibrium_length_m"][0] > SPACING  # permanent elongation
    f, st = forces["brittle"]
    assert bool(st["broken"][0]) and f.max() == pytest.approx(sigma_t * AREA, rel=0.01)
    assert st["broken_step"][0] == pytest.approx(sigma_t / KN / (v * dt), abs=1)


def test_bond_across_a_periodic_face() -> None:
    box = 4e-4
    sim = _sim(periodic=(True, True, False), box=box, dt_s=1e-8)
    x = np.array([[box - SPACING / 2, 2e-4, 2e-4], [SPACING / 2, 2e-4, 2e-4]])
    v = 0.1
    sim.add_particles(x, R, "m", fixed=np.ones(2, bool), velocities_m_per_s=[[0, 0, 0], [v, 0, 0]])
    bonds = sim.add_extension(Bonds(youngs_modulus_Pa=E_B, poisson_ratio=NU_B))
    assert len(bonds.create_within(sim, gap_m=1e-6)) == 1
    sim.run(steps=100, progress=False)
    stretch = v * 1e-8 * 100
    np.testing.assert_allclose(sim.state()["forces_N"][0], [KN * AREA * stretch, 0, 0], rtol=1e-6)
    assert bonds.state()["length_m"][0] == pytest.approx(SPACING + stretch, rel=1e-9)


def _cluster(seed: int = 3) -> tuple[Simulation, Bonds]:
    """A bent 3D chain of 8 free beads with random velocities and spins (no contacts, no damping)."""
    rng = np.random.default_rng(seed)
    sim = _sim()
    x = [np.full(3, 2e-4)]
    for _ in range(7):
        d = rng.normal(size=3)
        d[0] = abs(d[0]) + 1.0
        x.append(x[-1] + SPACING * d / np.linalg.norm(d))
    sim.add_particles(
        np.array(x),
        R,
        "m",
        velocities_m_per_s=rng.normal(scale=0.01, size=(8, 3)),
        angular_velocities_rad_per_s=rng.normal(scale=1e3, size=(8, 3)),
    )
    bonds = sim.add_extension(Bonds(youngs_modulus_Pa=E_B, poisson_ratio=NU_B))
    bonds.add(np.arange(7), np.arange(1, 8))
    return sim, bonds


def test_energy_conserved_at_the_bond_time_step() -> None:
    """The automatic time step follows the bond criterion, and at it kinetic + bond elastic energy is
    conserved (forces and torques of the bond are consistent with its elastic energy)."""
    sim, bonds = _cluster()
    e0 = sim.diagnostics()["kinetic_energy_J"]
    sim.run(steps=3000, progress=False)
    assert sim.time_step_report is not None and sim.time_step_report.rule == "bonds"
    assert sim.dt_s == pytest.approx(bonds.max_time_step_s(sim))
    d = sim.diagnostics()
    assert d["elastic_energy_J"] > 0.05 * e0  # the bonds were loaded
    assert d["kinetic_energy_J"] + d["elastic_energy_J"] == pytest.approx(e0, rel=0.01)


def test_checkpoint_round_trip_continues_identically(tmp_path) -> None:
    sim, bonds = _cluster(5)
    sim.run(steps=300, progress=False)
    mask = np.zeros(7, bool)
    mask[2] = True
    assert bonds.break_where(mask) == 1
    ck = sim.save_checkpoint(tmp_path / "ck.npz")
    sim.run(steps=300, progress=False)
    ref, ref_b = sim.state(), bonds.state()
    back = Simulation.load_checkpoint(ck)
    bb = back.extension("bonds")
    assert isinstance(bb, Bonds) and bb.broken_count == 1
    back.run(steps=300, progress=False)
    scale = np.abs(ref["positions_m"]).max()
    # Parallel atomic adds may change the last bits of a force between runs.
    np.testing.assert_allclose(back.state()["positions_m"], ref["positions_m"], rtol=0, atol=1e-12 * scale)
    got = bb.state()
    for k in ("i", "j", "intact", "broken_step"):
        np.testing.assert_array_equal(got[k], ref_b[k])
    np.testing.assert_allclose(got["shear_force_N"], ref_b["shear_force_N"], rtol=1e-6, atol=1e-14)


def test_snapshot_table_and_bad_input(tmp_path) -> None:
    from electrodem.io.snapshot import Microstructure, Species, bonds_from_state

    sim, bonds = _cluster()
    sim.run(steps=10, progress=False)
    st = sim.state()
    micro = Microstructure(
        positions_m=st["positions_m"],
        radii_m=st["radii_m"],
        species_id=np.zeros(sim.n, np.int32),
        species=(Species("AM", "AM", 2000.0, 1e9, 0.3),),
        box_m=sim.box_m,
        periodic=sim.periodic,
        bonds=bonds_from_state(bonds.state()),
    )
    back = Microstructure.load(micro.save(tmp_path / "m.npz"))
    assert back.bonds is not None
    np.testing.assert_array_equal(back.bonds["i"], np.arange(7))
    np.testing.assert_allclose(back.bonds["radius_m"], R)
    assert not back.bonds["broken"].any()
    with pytest.raises(ConfigError, match="failure"):
        Bonds(youngs_modulus_Pa=E_B, poisson_ratio=NU_B, failure="ductile")
    with pytest.raises(ConfigError, match="yield_stress_Pa"):
        Bonds(youngs_modulus_Pa=E_B, poisson_ratio=NU_B, failure="plastic", breaking_strain=0.1)
    with pytest.raises(ConfigError, match="shear_stiffness_Pa_per_m"):
        Bonds(normal_stiffness_Pa_per_m=1e13)
    with pytest.raises(ConfigError, match="j"):
        bonds.add([0], [0])
    with pytest.raises(ConfigError, match="i"):
        bonds.add([99], [0])
    with pytest.raises(ConfigError, match="mask"):
        bonds.break_where(np.zeros(3, bool))


def _sheared(rate: float, box: float = 4e-4) -> Simulation:
    return _sim(periodic=(True, True, True), box=box, dt_s=1e-9, shear_rate_per_s=rate)


def test_a_bond_across_the_lees_edwards_face_shears_like_one_inside() -> None:
    """Two identical bonds along z, both ends driven at the streaming velocity u_x = rate (z - Lz/2):
    one inside the box, one joining a particle at the top to one at the bottom (through the z face,
    whose image moves at rate Lz). Both see the same affine shear rate x length, so after t their
    shear forces are both k_s A rate L t. (The bond kernel once measured the pair across the face
    without the image's velocity: a spurious rate Lz, 400 times the real one here.)"""
    box, rate, steps = 4e-4, 1e3, 100
    sim = _sheared(rate, box)
    half = SPACING / 2
    x = np.array([[2e-4, 1e-4, 2e-4 + half], [2e-4, 1e-4, 2e-4 - half],   # inside
                  [2e-4, 3e-4, box - half], [2e-4, 3e-4, half]])           # across the z face
    v = np.zeros((4, 3))
    v[:, 0] = rate * (x[:, 2] - box / 2)
    sim.add_particles(x, R, "m", fixed=np.ones(4, bool), velocities_m_per_s=v)
    bonds = sim.add_extension(Bonds(youngs_modulus_Pa=E_B, poisson_ratio=NU_B))
    bonds.add([0, 3], [1, 2])  # i the upper end of each (the top particle's image lies below the bottom one)
    sim.run(steps=steps, progress=False)
    shear = bonds.state()["shear_force_N"]
    expect = KS * AREA * rate * SPACING * steps * 1e-9
    np.testing.assert_allclose(np.abs(shear[:, 0]), expect, rtol=1e-6)
    np.testing.assert_allclose(shear[1], shear[0], rtol=1e-9, atol=1e-12 * expect)
    np.testing.assert_allclose(bonds.state()["length_m"], bonds.state()["length_m"][0], rtol=1e-9)


def test_a_particle_added_past_the_lees_edwards_face_is_its_image_inside() -> None:
    """A position above the box is the image of one inside it: x moves back by the image offset s and
    the velocity by the image speed rate Lz, exactly as a particle crossing the face in a step; and
    `Simulation.min_image` gives the branch vector the contact kernel uses across that face."""
    box, rate = 4e-4, 1e3
    sim = _sheared(rate, box)
    sim.set_lees_edwards_shift(7e-5)
    s = sim.lees_edwards_shift_m
    sim.add_particles([[2e-4, 2e-4, box + 3e-5]], R, "m", velocities_m_per_s=[[0.01, 0, 0]])
    st = sim.state()
    np.testing.assert_allclose(st["positions_m"][0], [2e-4 - s, 2e-4, 3e-5], rtol=0, atol=1e-18)
    np.testing.assert_allclose(st["velocities_m_per_s"][0], [0.01 - rate * box, 0, 0], rtol=1e-12)
    # A partner just below the top face, touching the added particle's image above it.
    sim.add_particles([[2e-4 + 0.5 * R, 2e-4, box + 3e-5 - 1.5 * R]], R, "m")
    ca = sim.contact_arrays()
    assert len(ca["i"]) == 1
    x = sim.state()["positions_m"]
    np.testing.assert_allclose(sim.min_image(x[ca["i"]] - x[ca["j"]]), ca["branch_vector_m"], rtol=1e-9)
