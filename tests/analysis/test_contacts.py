"""Contact graph: geometry against brute force, lens contact radius, tolerances, planes, engine contacts."""

from __future__ import annotations

import numpy as np
import pytest

from electrodem.analysis.contacts import build_contact_graph, lens_contact_radius, phase_pair_table
from electrodem.io.snapshot import ContactSet, Microstructure, Species

AM = Species("nmc", "AM", 4750.0, 2e11, 0.25, sigma_e_S_per_m=1.0)
CB = Species("cb", "CB", 1900.0, 1e10, 0.3, sigma_e_S_per_m=100.0)


def _micro(pos, rad, sid, box, species=(AM, CB), **kw) -> Microstructure:
    return Microstructure(np.asarray(pos, float), np.asarray(rad, float), np.asarray(sid), species,
                          box_m=np.asarray(box, float), **kw)


def _brute_force(micro: Microstructure, tol: float) -> set[tuple[int, int, int, int]]:
    """All contacts (i, j, sx, sy) by checking every pair against the 9 in-plane images."""
    x, r, box = micro.positions_m, micro.radii_m, micro.box_m
    out = set()
    upper = np.triu(np.ones((micro.n, micro.n), bool), 1)
    for sx in (-1, 0, 1):
        for sy in (-1, 0, 1):
            img = np.array([sx * box[0], sy * box[1], 0.0])
            d = np.linalg.norm(x[None, :, :] + img - x[:, None, :], axis=2)
            touch = (r[:, None] + r[None, :] - d >= -tol * np.minimum(r[:, None], r[None, :])) & upper
            out |= {(int(i), int(j), sx, sy) for i, j in zip(*np.nonzero(touch), strict=True)}
    return out


def test_geometry_contacts_equal_brute_force_polydisperse_periodic():
    """Size ratio 12 (radius binning in the k-d tree search) and many pairs across the periodic sides."""
    rng = np.random.default_rng(3)
    n = 300
    box = np.array([40e-6, 30e-6, 25e-6])
    rad = np.where(rng.random(n) < 0.2, rng.uniform(3e-6, 6e-6, n), rng.uniform(0.5e-6, 1.5e-6, n))
    pos = rng.random((n, 3)) * box
    m = _micro(pos, rad, (rad < 2e-6).astype(int), box)
    g = build_contact_graph(m, gap_tolerance_rel=0.02)
    got = {(int(a), int(b), int(s[0]), int(s[1])) for a, b, s in zip(g.i, g.j, g.shift, strict=True)}
    assert got == _brute_force(m, 0.02)
    assert g.source == "geometry"
    assert np.any(g.shift[:, :2] != 0)  # the test exercises the periodic images
    assert np.all(g.shift[:, 2] == 0)
    d = np.linalg.norm(g.branch_m, axis=1)
    np.testing.assert_allclose(g.overlap_m, rad[g.i] + rad[g.j] - d, rtol=0, atol=1e-18)


def test_lens_contact_radius_lies_on_both_spheres():
    rng = np.random.default_rng(0)
    r1, r2 = rng.uniform(1, 3, 50), rng.uniform(1, 3, 50)
    d = np.abs(r1 - r2) + rng.uniform(0.01, 0.99, 50) * (r1 + r2 - np.abs(r1 - r2))
    a = lens_contact_radius(d, r1, r2)
    x1 = (d**2 + r1**2 - r2**2) / (2 * d)  # the circle sits at distance x1 from centre 1 on the axis
    np.testing.assert_allclose(x1**2 + a**2, r1**2, rtol=1e-12)
    np.testing.assert_allclose((d - x1) ** 2 + a**2, r2**2, rtol=1e-12)
    # equal spheres: a = sqrt(R^2 - d^2/4); touching: 0; nested: the smaller radius
    assert lens_contact_radius(1.6, 1.0, 1.0) == pytest.approx(0.6)
    assert lens_contact_radius(2.0, 1.0, 1.0) == 0.0
    assert lens_contact_radius(0.5, 2.0, 1.0) == 1.0


def test_gap_tolerance_and_minimum_contact_radius_rule():
    r = 1e-6
    box = [20e-6, 20e-6, 20e-6]
    pos = [[5e-6, 5e-6, 5e-6], [5e-6 + 2 * r * 1.005, 5e-6, 5e-6]]  # gap = 1 % of the diameter = 0.01 r
    m = _micro(pos, [r, r], [0, 0], box)
    assert build_contact_graph(m, gap_tolerance_rel=0.005).n_contacts == 0
    g = build_contact_graph(m, gap_tolerance_rel=0.02, min_contact_radius_rel=0.07)
    assert g.n_contacts == 1
    assert g.overlap_m[0] == pytest.approx(-0.01 * r)
    assert g.contact_radius_m[0] == pytest.approx(0.07 * r)
    # an overlap whose lens exceeds the floor keeps the geometric radius
    pos2 = [[5e-6, 5e-6, 5e-6], [5e-6 + 1.6 * r, 5e-6, 5e-6]]
    g2 = build_contact_graph(_micro(pos2, [r, r], [0, 0], box), min_contact_radius_rel=0.07)
    assert g2.contact_radius_m[0] == pytest.approx(0.6 * r)
    assert g2.l_i_m[0] == pytest.approx(0.8 * r)


def test_plane_contacts_cc_and_top():
    r = 1e-6
    pos = [[5e-6, 5e-6, 0.8e-6], [9e-6, 5e-6, 1.005e-6], [5e-6, 9e-6, 3e-6], [9e-6, 9e-6, 9.4e-6]]
    m = _micro(pos, [r] * 4, [0] * 4, [20e-6, 20e-6, 12e-6], metadata={"top_z_m": 10e-6})
    g = build_contact_graph(m, gap_tolerance_rel=0.01, min_contact_radius_rel=0.05)
    assert g.cc.tolist() == [True, True, False, False]
    assert g.top.tolist() == [False, False, False, True]
    assert g.cc_contact_radius_m[0] == pytest.approx(0.6 * r)  # sqrt(1 - 0.8^2)
    assert g.cc_contact_radius_m[1] == pytest.approx(0.05 * r)  # gap 0.5 % r within tolerance: floor
    assert g.top_contact_radius_m[3] == pytest.approx(0.8 * r)  # sqrt(1 - 0.6^2)
    assert g.top_l_m[3] == pytest.approx(0.6 * r)
    # a free rough surface: a top layer widens the terminal set
    assert build_contact_graph(m, top_layer_m=7.5e-6).top.tolist() == [False, False, True, True]


def test_engine_contacts_are_used_when_present():
    r = 1e-6
    pos = [[0.5e-6, 5e-6, 5e-6], [2.4e-6, 5e-6, 5e-6], [19e-6, 5e-6, 5e-6]]
    cs = ContactSet(i=np.array([1, 0]), j=np.array([0, 2]), overlap_m=np.array([0.1e-6, 0.5e-6]),
                    contact_radius_m=np.array([0.3e-6, 0.0]), normal_force_N=np.array([1e-3, 1e-3]))
    m = _micro(pos, [r] * 3, [0] * 3, [20e-6, 20e-6, 20e-6], contacts=cs)
    g = build_contact_graph(m, min_contact_radius_rel=0.01)
    assert g.source == "engine"
    assert g.i.tolist() == [0, 0] and g.j.tolist() == [1, 2]
    assert g.contact_radius_m[0] == pytest.approx(0.3e-6)  # the engine's value is kept
    # engine radius 0: fall back to the lens of the periodic image (centre distance 5.5 um -> 1.5 um)
    assert g.shift[1].tolist() == [-1, 0, 0]
    assert g.overlap_m[1] == pytest.approx(0.5e-6)
    assert g.contact_radius_m[1] == pytest.approx(lens_contact_radius(1.5e-6, r, r))
    assert build_contact_graph(m, use_engine_contacts=False).source == "geometry"


def test_phase_pair_table_counts_and_areas():
    R, rc = 2e-6, 0.5e-6
    pos = [[10e-6, 10e-6, 1.9e-6], [10e-6, 10e-6 + R + rc * 0.9, 1.9e-6], [10e-6 + 1.8 * R, 10e-6, 1.9e-6]]
    m = _micro(pos, [R, rc, R], [0, 1, 0], [30e-6, 30e-6, 20e-6], metadata={"top_z_m": 10e-6})
    g = build_contact_graph(m, gap_tolerance_rel=0.0, min_contact_radius_rel=0.01)
    t = phase_pair_table(m, g)
    assert t["AM-AM"]["count"] == 1 and t["AM-CB"]["count"] == 1 and t["AM-CC"]["count"] == 2
    a_amam = lens_contact_radius(1.8 * R, R, R)
    assert t["AM-AM"]["area_m2"] == pytest.approx(np.pi * a_amam**2)
    assert t["AM-CC"]["area_m2"] == pytest.approx(2 * np.pi * (R**2 - (1.9e-6) ** 2))
    assert "AM-top" not in t
    assert set(phase_pair_table(m, g, by="species")) == {"cb-nmc", "nmc-nmc", "nmc-CC"}


def test_bad_input_is_refused():
    m = _micro([[1e-6, 1e-6, 1e-6]], [1e-6], [0], [3e-6, 3e-6, 5e-6])
    with pytest.raises(ValueError, match="box_m"):
        build_contact_graph(m)  # periodic axis too short for the minimum-image convention
    ok = _micro([[1e-6, 1e-6, 1e-6]], [1e-6], [0], [20e-6, 20e-6, 5e-6])
    with pytest.raises(ValueError, match="gap_tolerance_rel"):
        build_contact_graph(ok, gap_tolerance_rel=-0.1)
    with pytest.raises(ValueError, match="min_contact_radius_rel"):
        build_contact_graph(ok, min_contact_radius_rel=0.0)
    zper = _micro([[1e-6, 1e-6, 1e-6]], [1e-6], [0], [20e-6, 20e-6, 20e-6], periodic=(True, True, True))
    with pytest.raises(ValueError, match="periodic"):
        build_contact_graph(zper)


def test_lens_volume_is_the_sum_of_the_two_caps_cut_by_the_radical_plane():
    from electrodem.analysis.contacts import lens_volume_m3

    r1, r2 = np.array([1.0, 1.0, 2.0, 0.5]), np.array([1.0, 0.3, 1.0, 2.0])
    d = np.array([1.5, 1.1, 2.5, 2.3])  # overlapping, neither inside the other
    x1 = (d**2 + r1**2 - r2**2) / (2 * d)  # centre 1 to the radical plane
    h1, h2 = r1 - x1, r2 - (d - x1)

    def cap(h, r):
        return np.pi * h**2 * (3 * r - h) / 3

    assert np.allclose(lens_volume_m3(d, r1, r2), cap(h1, r1) + cap(h2, r2), rtol=1e-12)
    # Equal spheres: pi (4 r + d) (2 r - d)^2 / 12.
    assert lens_volume_m3(1.5, 1.0, 1.0) == pytest.approx(np.pi * 5.5 * 0.25 / 12, rel=1e-12)
    # Apart: nothing; one inside the other: the smaller sphere.
    assert lens_volume_m3(2.5, 1.0, 1.0) == 0.0
    assert lens_volume_m3(0.5, 2.0, 1.0) == pytest.approx(4 / 3 * np.pi, rel=1e-12)
