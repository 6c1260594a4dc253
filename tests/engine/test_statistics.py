"""Contact statistics: coordination per material pair and the force distribution."""

from __future__ import annotations

import numpy as np
import pytest

from electrodem.engine.statistics import coordination_by_material, force_distribution


def test_coordination_by_material_counts_partners() -> None:
    mat = np.array([0, 0, 1, 1, 1])
    i = np.array([0, 0, 2, 3, 1])
    j = np.array([1, 2, 3, 4, 4])  # AA, AB, BB, BB, AB
    out = coordination_by_material(i, j, mat, 2)
    np.testing.assert_array_equal(out["contacts"], [[1, 2], [2, 2]])
    np.testing.assert_allclose(out["coordination"], [[1.0, 1.0], [2 / 3, 4 / 3]])
    # Each row sums to that material's mean number of contacts (every particle here has two).
    np.testing.assert_allclose(out["coordination"].sum(axis=1), [2.0, 2.0])
    assert out["mean"] == pytest.approx(2.0)


def test_force_distribution_of_an_exponential_sample() -> None:
    f = np.random.default_rng(3).exponential(2.0, size=200_000)
    d = force_distribution(f, bins=50, f_max_rel=5.0)
    assert d["mean_force_N"] == pytest.approx(2.0, rel=0.01)
    # P(f > <f>) = 1/e for an exponential; the sampling error is ~0.001 at this size.
    assert d["fraction_above_mean"] == pytest.approx(np.exp(-1.0), abs=0.005)
    centers = 0.5 * (d["edges"][1:] + d["edges"][:-1])
    mid = (centers > 0.2) & (centers < 3.0)
    np.testing.assert_allclose(d["density"][mid], np.exp(-centers[mid]), rtol=0.06)


def test_simulation_contact_statistics_match_the_hertz_force() -> None:
    from electrodem.engine import EngineOptions, Material, Simulation, init

    init(EngineOptions(arch="cpu", precision="f64"))
    e, nu, r, d = 1e8, 0.3, 1e-3, 2e-6
    sim = Simulation(
        [Material("a", 2500, e, nu), Material("b", 2500, e, nu)],
        box_m=(0.02, 0.02, 0.02),
        gravity_m_per_s2=(0, 0, 0),
    )
    x = np.array([[0.005 + k * (2 * r - d), 0.01, 0.01] for k in range(3)])
    sim.add_particles(x, r, ["a", "b", "a"])
    st = sim.contact_statistics()
    np.testing.assert_array_equal(st["contacts"], [[0, 2], [2, 0]])
    np.testing.assert_allclose(st["coordination"], [[0, 1], [2, 0]])
    e_star = e / (2 * (1 - nu**2))
    hertz = 4 / 3 * e_star * np.sqrt(r / 2) * d**1.5
    assert st["force_distribution"]["mean_force_N"] == pytest.approx(hertz, rel=1e-9)
    assert st["materials"] == ["a", "b"]
