"""Gravity packings against published values.

2,500 monodisperse spheres (d = 1 mm) poured onto a floor in a periodic 10 d x 10 d box, from a
jittered lattice with random velocities: frictionless they reach random close packing, phi = 0.64 +-
0.02, with about 6 contacts per non-rattler (isostatic; O'Hern et al. 2003, Silbert et al. 2002);
with mu = 0.5 the poured packing is looser, 0.55-0.62 (DOMAIN.md §4), with fewer contacts, between the
frictional (4) and frictionless (6) isostatic values. phi is measured in the bulk, more than 4 d from
the floor and from the top surface (walls and the free surface loosen the packing locally), from the
exact sphere–slab solid-fraction profile; contacts are counted for bulk spheres with at least 4
contacts (the rest are rattlers, which carry no load in a frictionless packing). The frictionless
packing's contact network percolates, site by site, at p_c = 0.31 +- 0.02 (Powell 1979; Ziff &
Torquato 2017: 0.3116), measured on a 10 d bulk cube with the analysis layer's cluster labelling.

Stated softening: E = 20 MPa keeps the overlap at the floor below 1 % of the radius, and the median
overlap in the bulk at ~0.1 % of the radius, where a frictionless packing is within a few per cent
of jamming (Z - 6 ~ (phi - phi_J)^0.5). The time step is 0.4 Rayleigh times: at overlaps below
0.5 % of the radius a Hertz contact oscillates at ~1.1 / t_Rayleigh and the fastest network modes of
a packing with ~6 contacts stay below omega dt ~ 1.5 (velocity Verlet is stable to 2). Background
damping (a settling shortcut) drains the kinetic energy; the pour runs until the kinetic energy is
1e-3 (frictionless) or 1e-4 (frictional) of m g d per sphere.

A bidisperse mix of size ratio 20 (eight 2 mm spheres resting in two layers, ~1,600 spheres of
0.1 mm raining into their pores) packs without losing particles or overlapping by more than 1 % of the
smaller radius; the small spheres are mass-scaled x100 (stated: they fall at the same acceleration,
their contacts oscillate 10x slower so the time step is set by the large ones' contacts).
"""

import math

import numpy as np
import pytest
from scipy.spatial import cKDTree

from electrodem.analysis.percolation import cluster_labels
from electrodem.engine import ContactModel, EngineOptions, Material, Simulation, Wall, init
from electrodem.process.settle import bed_profile

D = 1.0e-3
N = 2500
L = 10
"""Box side in diameters: periodic, so no lateral wall loosens the packing; 10 d leaves ~1,800
bulk spheres, whose packing fraction is known to +-0.005, inside the +-0.02 tolerance."""


@pytest.fixture(scope="module", autouse=True)
def _engine():
    init(EngineOptions())


def _pour(friction: float, ke_ratio: float, chaos) -> tuple[Simulation, float, float]:
    """Pour N spheres (the chaos case's seed and perturbation); return (simulation, bulk phi, mean
    contacts of bulk non-rattlers)."""
    rng = np.random.default_rng(11 + chaos.seed)
    mat = Material("g", 2500.0, 2.0e7, 0.3, restitution=0.5, friction=friction)
    box = (L * D, L * D, 80 * D)
    sim = Simulation(
        [mat],
        box_m=box,
        walls=[Wall((0, 0, 0), (0, 0, 1), "g")],
        background_damping_per_s=40.0,
        contact=ContactModel(tangential="mindlin" if friction > 0 else "none"),
        rayleigh_fraction=0.4,
        steps_per_contact=10.0,
        impact_speed_m_per_s=0.3,  # terminal speed under the damping is g / c = 0.25 m/s
    )
    n_side = L - 1
    layers = -(-N // n_side**2)
    g = np.stack(np.meshgrid(np.arange(n_side), np.arange(n_side), np.arange(layers), indexing="ij"), -1)
    g = g.reshape(-1, 3)
    g = g[np.argsort(g[:, 2], kind="stable")][:N]
    x = (g + 0.5) * np.array([L / n_side, L / n_side, 1.1]) * D + rng.uniform(-0.03, 0.03, g.shape) * D
    x = chaos.perturb(x, np.full(len(x), 0.5 * D), np.array(box))
    sim.add_particles(x, 0.5 * D, "g", velocities_m_per_s=rng.normal(0, 0.05, g.shape))
    lift = N * 2500.0 * math.pi / 6 * D**3 * 9.81 * D
    sim.run(
        until=lambda s: s.time_s > 0.06 and s.diagnostics()["kinetic_energy_J"] < ke_ratio * lift,
        steps=30_000,
        every=1000,
        progress=False,
    )
    assert sim.diagnostics()["kinetic_energy_J"] < ke_ratio * lift, "the pour did not come to rest"
    st = sim.state()
    z, r = st["positions_m"][:, 2], st["radii_m"]
    edges, prof = bed_profile(z, r, box[0] * box[1], 0.25 * D)
    top = float(np.max(z + r))
    bulk = (edges > 4 * D) & (edges < top - 4 * D)
    phi = float(np.mean(prof[bulk]))
    c = sim.contact_arrays()
    zc = np.bincount(np.r_[c["i"], c["j"]], minlength=sim.n)
    inner = (z > 4 * D) & (z < top - 4 * D) & (zc >= 4)
    assert inner.sum() > 1000  # enough bulk spheres for the statistics
    return sim, phi, float(zc[inner].mean())


def spanning_probability(i, j, z, lo: float, hi: float, p: float, trials: int, rng) -> float:
    """Fraction of ``trials`` random site occupations (each sphere with z in (lo, hi) occupied with
    probability ``p``) in which a cluster of occupied, touching spheres joins the slab's bottom layer
    (within one diameter of ``lo``) to its top layer (within one diameter of ``hi``)."""
    inside = (z > lo) & (z < hi)
    bottom, top = inside & (z < lo + D), inside & (z > hi - D)
    hits = 0
    for _ in range(trials):
        occ = inside & (rng.random(len(z)) < p)
        _, lab = cluster_labels(len(z), i, j, occ)
        hits += np.intersect1d(lab[bottom & occ], lab[top & occ]).size > 0
    return hits / trials


def site_percolation_threshold(i, j, z, lo: float, hi: float, rng, trials: int = 200) -> float:
    """Occupation probability at which the slab (lo, hi) is spanned in half the trials (bisection,
    10 halvings of [0.1, 0.6]: 5e-4, below the sampling error of the crossing)."""
    a, b = 0.1, 0.6
    for _ in range(10):
        m = 0.5 * (a + b)
        a, b = (m, b) if spanning_probability(i, j, z, lo, hi, m, trials, rng) < 0.5 else (a, m)
    return 0.5 * (a + b)


@pytest.mark.slow
@pytest.mark.chaotic
def test_frictionless_pour_reaches_random_close_packing(chaos):
    sim, phi, z_mean = _pour(0.0, 1e-3, chaos)
    assert sim.diagnostics()["max_overlap_ratio"] < 0.01
    assert phi == pytest.approx(0.64, abs=0.02)
    assert z_mean == pytest.approx(6.0, abs=0.3)
    # Site percolation on the packing's contact network (the analysis layer's cluster labelling): a
    # 10 d cube of the bulk (4 d above the floor), periodic in x and y, spanned from face to face in
    # half of 200 random occupations at p_c = 0.310 (Powell 1979; 0.3116, Ziff & Torquato 2017).
    # Tolerance 0.02: the crossing of a 10 d cube lies within ~L^(-1/nu) x O(0.1) = 0.01 of the
    # infinite-system p_c (nu = 0.88), and 200 trials place it to ~0.004.
    c = sim.contact_arrays()
    z = sim.state()["positions_m"][:, 2]
    p_c = site_percolation_threshold(c["i"], c["j"], z, 4 * D, 14 * D, np.random.default_rng(chaos.seed))
    assert p_c == pytest.approx(0.31, abs=0.02)


@pytest.mark.slow
@pytest.mark.chaotic
def test_frictional_pour_is_a_loose_random_packing(chaos):
    sim, phi, z_mean = _pour(0.5, 1e-4, chaos)
    assert sim.diagnostics()["max_overlap_ratio"] < 0.01
    assert 0.55 <= phi <= 0.62
    assert 4.0 <= z_mean < 6.0


@pytest.mark.slow
@pytest.mark.chaotic
def test_bidisperse_size_ratio_20_packs_without_losses_or_deep_overlaps(chaos):
    rng = np.random.default_rng(5 + chaos.seed)
    r_s, r_l = 50e-6, 1.0e-3
    box = (4.4e-3, 4.4e-3, 20e-3)
    mat = Material("g", 2500.0, 1.0e9, 0.3, restitution=0.5, friction=0.5)
    # Large spheres: four on the floor, four in the pockets above them, each 2 um from contact.
    z_up = 1.0 + math.sqrt(4.0 - 2 * 1.1**2) + 0.002
    big = 1e-3 * np.array(
        [[1.1, 1.1, 1.002], [3.3, 1.1, 1.002], [1.1, 3.3, 1.002], [3.3, 3.3, 1.002]]
        + [[2.2, 2.2, z_up], [0.0, 2.2, z_up], [2.2, 0.0, z_up], [0.0, 0.0, z_up]]
    )
    p = rng.random((2500, 3)) * np.array([box[0], box[1], 2.0e-3]) + np.array([0, 0, r_s])
    d = big[None, :, :] - p[:, None, :]
    d[..., :2] -= np.array(box[:2]) * np.round(d[..., :2] / np.array(box[:2]))
    p = p[np.all(np.linalg.norm(d, axis=2) > r_l + r_s, axis=1)]
    keep = np.ones(len(p), bool)
    for a, b in cKDTree(p, boxsize=[box[0], box[1], 1.0]).query_pairs(2.2 * r_s):
        keep[max(a, b)] = False
    small = p[keep]
    n = len(big) + len(small)
    m_small = 100.0 * 2500.0 * 4 / 3 * math.pi * r_s**3
    sim = Simulation(
        [mat],
        box_m=box,
        walls=[Wall((0, 0, 0), (0, 0, 1), "g")],
        background_damping_per_s=50.0,
        rayleigh_fraction=0.4,
        steps_per_contact=10.0,
        impact_speed_m_per_s=0.3,
    )
    radii = np.r_[np.full(len(big), r_l), np.full(len(small), r_s)]
    masses = np.r_[np.full(len(big), 2500.0 * 4 / 3 * math.pi * r_l**3), np.full(len(small), m_small)]
    sim.add_particles(chaos.perturb(np.r_[big, small], radii, np.array(box)), radii, "g", masses_kg=masses)
    z_small0 = float(small[:, 2].mean())
    sim.run(steps=20_000, progress=False)
    st = sim.state()
    z = st["positions_m"][:, 2]
    assert sim.n == n and np.all(np.isfinite(st["positions_m"]))
    assert np.all(z - radii > -0.01 * radii) and np.all(z < 20e-3)  # none through the floor or away
    assert float(z[len(big) :].mean()) < z_small0 - 0.2e-3  # the small spheres rained down
    c = sim.contact_arrays()
    small_r = np.minimum(st["radii_m"][c["i"]], st["radii_m"][c["j"]])
    assert np.max(c["overlap_m"] / small_r) < 0.01
    assert np.max(sim.wall_overlaps_m(0) / st["radii_m"]) < 0.01
    # Large-small pairs found by the two-level grid equal brute force (no tunnelling, no missed pair).
    xl, xs = st["positions_m"][: len(big)], st["positions_m"][len(big) :]
    dd = xs[:, None, :] - xl[None, :, :]
    dd[..., :2] -= np.array(box[:2]) * np.round(dd[..., :2] / np.array(box[:2]))
    touching = int(np.count_nonzero(np.linalg.norm(dd, axis=2) < r_l + r_s))
    mixed = int(np.count_nonzero((c["i"] < len(big)) ^ (c["j"] < len(big))))
    assert touching == mixed > 0
    assert sim._nl.n_levels == 2
