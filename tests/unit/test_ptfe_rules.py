"""The PTFE agent rules (`electrodem.process.ptfe`) against hand-worked cases: each rule is a small
function of a bead's state and contacts, so each result below is computed by hand from its formula."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from electrodem.config.errors import ConfigError
from electrodem.process import ptfe

F = ptfe.FibrilParams()


def _contacts(i, j, normal, *, overlap=None, a=None, fn=None, ft=None, branch=None) -> dict[str, np.ndarray]:
    """A `Simulation.contact_arrays`-like table."""
    k = len(i)
    return {
        "i": np.asarray(i), "j": np.asarray(j), "normal": np.asarray(normal, float).reshape(k, 3),
        "overlap_m": np.zeros(k) if overlap is None else np.asarray(overlap, float),
        "contact_radius_m": np.ones(k) * 1e-7 if a is None else np.asarray(a, float),
        "normal_force_N": np.zeros(k) if fn is None else np.asarray(fn, float),
        "tangential_force_N": np.zeros(k) if ft is None else np.asarray(ft, float),
        "branch_vector_m": np.zeros((k, 3)) if branch is None else np.asarray(branch, float),
    }


def test_the_softer_body_takes_the_plastic_flow_in_proportion_to_the_others_hardness() -> None:
    s = ptfe.plastic_work_share(np.array([25e6, 25e6, 25e6, 25e6]), np.array([200e6, 25e6, 0.0, np.inf]))
    np.testing.assert_allclose(s, [200 / 225, 0.5, 1.0, 1.0])


def test_the_squeeze_is_the_mean_contact_pressure_over_the_yield_pressure_capped_at_one() -> None:
    a = 1e-7
    c = _contacts([0, 0, 0], [1, 2, 3], [[0, 0, 1]] * 3, a=[a] * 3,
                  fn=[0.5 * 25e6 * math.pi * a * a, 3 * 25e6 * math.pi * a * a, -1e-9])
    np.testing.assert_allclose(ptfe.squeeze_weight(c, np.full(3, 25e6)), [0.5, 1.0, 0.0])


def test_strain_increment_is_squeeze_times_share_times_slip_over_the_bead_diameter() -> None:
    """Bead 0 (PTFE, r = 0.5 um, p_y 25 MPa) pressed by an AM (p_y 200 MPa) at its yield pressure and by
    another bead (same hardness) at half of it; both slide at 0.1 m/s for 1 us."""
    r, a, dt, v = 0.5e-6, 1e-7, 1e-6, 0.1
    py = np.array([25e6, 200e6, 25e6])
    c = _contacts([0, 0], [1, 2], [[0, 0, 1]] * 2, a=[a, a],
                  fn=[25e6 * math.pi * a * a, 0.5 * 25e6 * math.pi * a * a])
    slip = np.array([[v, 0, 0], [0, v, 0]])
    bead = np.array([True, False, True])
    radii = np.array([r, 5e-6, r])
    d = ptfe.strain_increments(c, slip, bead, py, radii, dt)
    per = v * dt / (2 * r)
    np.testing.assert_allclose(d, [per * (200 / 225 + 0.5 * 0.5), 0.0, per * 0.5 * 0.5])


def test_slip_velocity_counts_spin_and_the_lees_edwards_image() -> None:
    """(1) i spins at w about y on top of j: its contact point moves at -w r along x. (2) a pair across
    the z face of a sheared box, both at rest: j's image below moves at -rate Lz."""
    r, w, lz, dv = 1e-6, 1e3, 1e-5, 0.2
    state = {"positions_m": np.array([[0, 0, 2 * r], [0, 0, 0]]), "velocities_m_per_s": np.zeros((2, 3)),
             "angular_velocities_rad_per_s": np.array([[0, w, 0], [0, 0, 0]]), "radii_m": np.array([r, r])}
    c = _contacts([0], [1], [[0, 0, 1]], branch=[[0, 0, 2 * r]])
    # The contact point of i is at -r n below its centre: v = w x (-r n) = (0, w, 0) x (0, 0, -r).
    np.testing.assert_allclose(ptfe.slip_velocities(c, state, 0.0, lz), [[-w * r, 0, 0]], atol=1e-15)
    state = {"positions_m": np.array([[0, 0, 0.5 * r], [0, 0, lz - 0.5 * r]]),
             "velocities_m_per_s": np.zeros((2, 3)), "angular_velocities_rad_per_s": np.zeros((2, 3)),
             "radii_m": np.array([r, r])}
    # i at the bottom, j's image below it (x_j - lz): the branch vector x_i - x_j_img = (0, 0, r); j's
    # image below moves at -dv, so i slides at +dv relative to it.
    c = _contacts([0], [1], [[0, 0, 1]], branch=[[0, 0, r]])
    np.testing.assert_allclose(ptfe.slip_velocities(c, state, dv, lz), [[dv, 0, 0]], atol=1e-15)


def test_no_drawing_below_the_crystal_transition_and_a_threshold_that_softens_above() -> None:
    assert ptfe.threshold_strain(285.0, 292.15, 1.0, F) == math.inf
    assert ptfe.threshold_strain(333.15, 292.15, 0.87, F) == pytest.approx(0.87 * F.threshold_strain)


@pytest.mark.parametrize("seed", range(5))
def test_a_drawn_bead_splits_its_mass_exactly_inside_its_old_sphere(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x, r = rng.normal(size=3) * 1e-5, rng.uniform(0.2e-6, 1e-6)
    m, pm = rng.uniform(1e-16, 1e-14), rng.uniform(1e-17, 1e-15)
    e = rng.normal(size=3)
    centres, h, mh, ph = ptfe.split_bead(x, r, m, pm, e)
    assert mh + mh == m and ph + ph == pm  # bit for bit: halving is exact in binary floating point
    assert h == 0.5 * r
    np.testing.assert_allclose(np.linalg.norm(centres - x, axis=1) + h, r, rtol=1e-12)  # inside, touching it
    assert np.linalg.norm(centres[0] - centres[1]) == pytest.approx(2 * h, rel=1e-12)  # daughters touch
    np.testing.assert_allclose(np.cross(centres[0] - centres[1], e), 0, atol=1e-12 * r)  # along the drawing


def test_a_daughter_is_born_without_overlap_or_waits() -> None:
    assert ptfe.clear_radius(1.0, np.array([2.0, 1.5])) == 1.0
    assert ptfe.clear_radius(1.0, np.array([0.9, 3.0])) == pytest.approx(0.9, rel=1e-5)
    assert ptfe.clear_radius(1.0, np.array([0.5])) == 0.0  # less than 0.8 of the nominal radius: wait
    assert ptfe.clear_radius(1.0, np.zeros(0)) == 1.0


def test_a_crushed_soft_particle_thins_until_its_summed_overlap_is_at_the_limit() -> None:
    r = np.array([1.0, 1.0, 1.0, 0.3])
    tot = np.array([1.2, 0.5, 2.0, 1.0])
    n = np.array([2, 2, 3, 2])
    out = ptfe.smeared_radii(r, tot, n, 0.6, floor_m=0.2)
    assert out[1] == 1.0  # below the limit: untouched
    dr = 1.0 - out[0]
    assert tot[0] - n[0] * dr == pytest.approx(0.6 * out[0])  # back at the limit, every contact shrunk
    assert out[2] == pytest.approx(1.0 - (2.0 - 0.6) / (3 - 0.6))
    assert out[3] == 0.2  # floored at the smallest bead radius


def test_a_particle_that_cannot_thin_more_is_smeared_onto_the_harder_partner_pressing_it_most() -> None:
    c = _contacts([0, 0, 1, 2], [1, 2, 3, 3], [[0, 0, 1]] * 4, overlap=[0.1, 0.3, 0.2, 0.05])
    py = np.array([5e6, 200e6, 200e6, 1e6])
    np.testing.assert_array_equal(ptfe.crushed_onto(c, np.array([0, 3]), py), [2, 1])
    np.testing.assert_array_equal(ptfe.crushed_onto(c, np.array([1]), py), [-1])  # nothing harder


def test_only_drawn_beads_pressed_onto_a_harder_or_equal_partner_anchor() -> None:
    a = 1e-7
    p = 25e6 * math.pi * a * a
    c = _contacts([0, 0, 0, 1], [2, 3, 4, 2], [[0, 0, 1]] * 4, a=[a] * 4,
                  fn=[0.6 * p, 0.6 * p, 0.6 * p, 0.2 * p])
    py = np.array([25e6, 25e6, 200e6, 5e6, 25e6])
    drawn = np.array([True, True, False, False, True])
    # 0-2 (AM, pressed past half the yield), 0-4 (two drawn beads weld); not 0-3 (softer CB), not 1-2
    # (pressed too little).
    np.testing.assert_array_equal(ptfe.anchor_pairs(c, drawn, py, F), [0, 2])


def test_fibril_read_outs_of_a_hand_built_network() -> None:
    """Beads 0-1-2 drawn and bonded along x (one fibril), anchored to AM 4; bead 3 undrawn, alone."""
    mass = np.array([1.0, 1.0, 2.0, 4.0, 0.0])
    gen = np.array([1, 1, 1, 0, 0])
    r = np.array([0.1, 0.1, 0.2, 0.4, 5.0])
    bead = np.array([True, True, True, True, False])
    am = ~bead
    bi, bj = np.array([0, 1, 2]), np.array([1, 2, 4])
    vec = np.array([[0.2, 0, 0], [0.3, 0, 0], [0, 0, 5.2]])
    out = ptfe.fibril_metrics(mass, gen, r, bead, am, bi, bj, vec, density_kg_per_m3=2.0, elsewhere_kg=2.0)
    assert out["ptfe_mass_kg"] == 10.0
    assert out["degree_of_fibrillation"] == pytest.approx(0.4)
    assert out["network_fraction"] == pytest.approx(0.4)
    assert out["fibril_count"] == 1 and out["drawn_beads"] == 3 and out["max_generation"] == 1
    assert out["length_per_ptfe_mass_m_per_kg"] == pytest.approx(2 * 0.4 / 10.0)
    np.testing.assert_allclose(out["orientation_tensor"], np.diag([1.0, 0, 0]))
    assert out["am_per_fibril"] == 1.0 and out["am_in_network_fraction"] == 1.0
    # Bead 0: volume 0.5 spread over length 0.2: d = sqrt(4 V / (pi L)).
    d = np.sqrt(4 * np.array([0.5, 0.5, 1.0]) / (math.pi * 2 * r[:3]))
    assert out["fibril_diameter_m"] == pytest.approx(float(np.median(d)))


def test_fibrillating_is_read_from_the_material_record_and_params_are_checked_by_name() -> None:
    assert ptfe.fibrillating(SimpleNamespace(extra={"transition_temperature_C": 19.0}))
    assert not ptfe.fibrillating(SimpleNamespace(extra={}))
    assert not ptfe.fibrillating(SimpleNamespace(extra={"transition_temperature_C": "room"}))
    with pytest.raises(ConfigError, match="dry_mix.fibrils.min_bead_radius_ratio"):
        ptfe.FibrilParams(min_bead_radius_ratio=1.5)


def test_contacts_of_each_particle_from_one_sort_equal_a_scan_of_the_table() -> None:
    rng = np.random.default_rng(7)
    i = rng.integers(0, 30, 200)
    j = (i + rng.integers(1, 30, 200)) % 31
    c = {"i": np.minimum(i, j), "j": np.maximum(i, j)}
    parts = np.array([0, 5, 30, 12, 5])
    got = ptfe.contacts_at(c, parts)
    for p, at in zip(parts, got, strict=True):
        np.testing.assert_array_equal(at, np.flatnonzero((c["i"] == p) | (c["j"] == p)))
