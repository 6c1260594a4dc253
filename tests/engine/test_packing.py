"""Gravity packings against published values.

5,000 monodisperse spheres poured onto a floor in a periodic 12 d x 12 d box: frictionless they
reach random close packing, phi = 0.64 +- 0.02 with about 6 contacts per (non-rattler) sphere
(isostatic); with mu = 0.5 the poured packing lies in 0.55-0.62 (DOMAIN.md §4). E = 20 MPa keeps the
largest overlap well below 1 % of the radius at the bottom of the bed (stated softening).
A bidisperse bed of size ratio 20 packs without losing particles or overlapping by 1 % of the small
radius.
"""

import numpy as np
import pytest

from electrodem.engine import ContactModel, EngineOptions, Material, Simulation, Wall, init
from electrodem.process.settle import bed_profile

D = 1.0e-3


@pytest.fixture(scope="module", autouse=True)
def _engine():
    init(EngineOptions())


def _pour(friction: float) -> tuple[Simulation, float, float]:
    rng = np.random.default_rng(11)
    mat = Material("g", 2500.0, 2.0e7, 0.3, restitution=0.5, friction=friction)
    box = (12 * D, 12 * D, 80 * D)
    sim = Simulation(
        [mat],
        box_m=box,
        walls=[Wall((0, 0, 0), (0, 0, 1), "g")],
        background_damping_per_s=10.0,
        contact=ContactModel(tangential="mindlin" if friction > 0 else "none"),
    )
    g = np.stack(np.meshgrid(np.arange(10), np.arange(10), np.arange(50), indexing="ij"), -1).reshape(-1, 3)
    x = (g + 0.5) * 1.2 * D + rng.uniform(-0.09, 0.09, g.shape) * D
    sim.add_particles(x, 0.5 * D, "g", velocities_m_per_s=rng.normal(0, 0.05, g.shape))
    sim.run(
        until=lambda s: s.time_s > 0.15 and s.diagnostics()["kinetic_energy_J"] < 1e-9,
        steps=60_000,
        every=1000,
        progress=False,
    )
    st = sim.state()
    z, r = st["positions_m"][:, 2], st["radii_m"]
    edges, prof = bed_profile(z, r, box[0] * box[1], 0.5 * D)
    top = float(np.max(z + r))
    bulk = (edges > 5 * D) & (edges < top - 5 * D)
    phi = float(np.mean(prof[bulk]))
    c = sim.contact_arrays()
    zc = np.bincount(np.r_[c["i"], c["j"]], minlength=sim.n)
    inner = (z > 5 * D) & (z < top - 5 * D) & (zc >= 4)  # non-rattlers of the bulk
    return sim, phi, float(zc[inner].mean())


@pytest.mark.slow
def test_frictionless_pour_reaches_random_close_packing():
    sim, phi, z_mean = _pour(0.0)
    assert sim.diagnostics()["max_overlap_ratio"] < 0.01
    assert phi == pytest.approx(0.64, abs=0.02)
    assert z_mean == pytest.approx(6.0, abs=0.4)


@pytest.mark.slow
def test_frictional_pour_is_a_loose_random_packing():
    _sim, phi, z_mean = _pour(0.5)
    assert 0.55 <= phi <= 0.62
    assert 3.5 < z_mean < 6.0


@pytest.mark.slow
def test_bidisperse_size_ratio_20_packs_without_losses_or_deep_overlaps():
    rng = np.random.default_rng(5)
    r_s, r_l = 50e-6, 1.0e-3
    box = (4.4e-3, 4.4e-3, 20e-3)
    mat = Material("g", 2500.0, 1.0e8, 0.3, restitution=0.5, friction=0.5)
    sim = Simulation([mat], box_m=box, walls=[Wall((0, 0, 0), (0, 0, 1), "g")], background_damping_per_s=20.0)
    # Large spheres on a loose lattice, the small ones scattered between them without overlaps.
    big = (
        np.array(
            [
                [1.1, 1.1, 1.2],
                [3.3, 1.1, 1.4],
                [1.1, 3.3, 1.6],
                [3.3, 3.3, 1.8],
                [2.2, 2.2, 4.0],
                [1.1, 1.1, 6.0],
                [3.3, 3.3, 6.3],
                [1.1, 3.3, 8.5],
                [3.3, 1.1, 8.8],
                [2.2, 2.2, 11.0],
            ]
        )
        * 1e-3
    )
    small = []
    while len(small) < 4000:
        p = rng.random(3) * np.array([box[0], box[1], 14e-3]) + np.array([0, 0, r_s])
        d = big - p
        d[:, :2] -= np.array(box[:2]) * np.round(d[:, :2] / np.array(box[:2]))
        if np.all(np.linalg.norm(d, axis=1) > r_l + r_s):
            small.append(p)
    small = np.array(small)
    keep = np.ones(len(small), bool)
    from scipy.spatial import cKDTree

    for a, b in cKDTree(small).query_pairs(2 * r_s):
        keep[max(a, b)] &= not (keep[a] and keep[b])
    small = small[keep]
    n = len(big) + len(small)
    sim.add_particles(np.r_[big, small], np.r_[np.full(len(big), r_l), np.full(len(small), r_s)], "g")
    sim.run(
        until=lambda s: s.time_s > 0.05 and s.diagnostics()["kinetic_energy_J"] < 1e-10,
        steps=120_000,
        every=1000,
        progress=False,
    )
    st = sim.state()
    z = st["positions_m"][:, 2]
    assert sim.n == n and np.all(np.isfinite(st["positions_m"]))
    assert np.all(z > 0) and np.all(z < 20e-3)
    c = sim.contact_arrays()
    small_r = np.minimum(st["radii_m"][c["i"]], st["radii_m"][c["j"]])
    assert np.max(c["overlap_m"] / small_r) < 0.01
    assert np.max(sim.wall_overlaps_m(0) / st["radii_m"]) < 0.01
    assert sim._nl.n_levels == 2
