"""Percolation: continuum threshold of overlapping spheres, periodic wrapping, isolated active material."""

from __future__ import annotations

import numpy as np
import pytest

from electrodem.analysis.contacts import build_contact_graph
from electrodem.analysis.percolation import (
    NOT_APPLICABLE_IONIC,
    cluster_labels,
    percolation_analysis,
    winding_axes,
)
from electrodem.io.snapshot import Microstructure, Species

AM = Species("nmc", "AM", 4750.0, 2e11, 0.25, sigma_e_S_per_m=1.0)
CB = Species("cb", "CB", 1900.0, 1e10, 0.3, sigma_e_S_per_m=100.0)
SE = Species("lpscl", "SE", 1860.0, 2.5e10, 0.3, sigma_i_S_per_m=0.3)
BINDER = Species("ptfe", "binder", 2200.0, 5e8, 0.46)


def _micro(pos, rad, sid, box, species, top=None) -> Microstructure:
    meta = {} if top is None else {"top_z_m": top}
    return Microstructure(np.asarray(pos, float), np.asarray(rad, float), np.asarray(sid), species,
                          box_m=np.asarray(box, float), metadata=meta)


def _poisson_spans(phi: float, size: float, rng: np.random.Generator) -> bool:
    """One realisation of overlapping unit spheres (volume fraction phi) in a size^3 box: spans in z?"""
    eta = -np.log1p(-phi)  # phi = 1 - exp(-n v) for a Poisson process of spheres of volume v
    n = rng.poisson(eta * size**3 / (4.0 / 3.0 * np.pi))
    m = _micro(rng.uniform(0, size, (n, 3)), np.ones(n), np.zeros(n), [size] * 3, (CB,), top=size)
    g = build_contact_graph(m, gap_tolerance_rel=0.0)
    return percolation_analysis(m, g).electronic.spans_z


def test_overlapping_spheres_percolate_near_phi_c():
    """Continuum percolation of overlapping spheres: phi_c = 0.2895 (reduced density eta_c = 0.3418).

    Box 20 radii (10 diameters) wide, periodic in x/y, spanning CC -> top in z. The finite box smears
    the transition; a 700-realisation study with this code gave P_span = 0 at phi = 0.20, 0.05 at 0.24,
    0.51 at 0.29, 0.97 at 0.34 and 1.0 at 0.38 (a 30-radii box gave 0.51 at 0.29 with a sharper
    transition: the 50 % crossing of this geometry sits at phi_c, not shifted). With 80 realisations per
    point the crossing estimate has a standard error of about 0.005 (binomial error 0.056 on P over a
    slope dP/dphi ~ 13): the tolerance of +-0.02 on the crossing is 4 standard errors and half the
    10-90 % width of the transition in this box.
    """
    rng = np.random.default_rng(2024)
    p = {phi: np.mean([_poisson_spans(phi, 20.0, rng) for _ in range(reps)])
         for phi, reps in ((0.20, 40), (0.26, 80), (0.29, 80), (0.32, 80), (0.38, 40))}
    assert p[0.20] <= 0.05
    assert p[0.38] >= 0.95
    assert p[0.26] < p[0.29] < p[0.32]
    xs = np.array([0.26, 0.29, 0.32])
    ps = np.array([p[x] for x in xs])
    k = int(np.searchsorted(ps, 0.5))
    assert 0 < k < 3, ps
    crossing = xs[k - 1] + (0.5 - ps[k - 1]) * (xs[k] - xs[k - 1]) / (ps[k] - ps[k - 1])
    assert abs(crossing - 0.2895) < 0.02, (crossing, ps)


def _chain(n_x: int, r: float, missing: int | None = None, x0: float = 0.0):
    pos = [[x0 + (2 * k + 1) * r, 5 * r, 5 * r] for k in range(n_x) if k != missing]
    return np.array(pos)


def test_periodic_wrapping_winding_test():
    r = 1e-6
    box = [8 * r, 10 * r, 10 * r]
    # a closed ring of 4 touching spheres around the periodic x axis wraps x, not y
    ring = _micro(_chain(4, r), [r] * 4, [0] * 4, box, (AM,), top=10 * r)
    net = percolation_analysis(ring, build_contact_graph(ring)).electronic
    assert net.wraps_x and not net.wraps_y and not net.spans_z
    assert net.fraction_volume_wrapping_x == pytest.approx(1.0)
    # one sphere removed: the chain still crosses the periodic side x = 0 but does not wrap
    cut = _micro(_chain(4, r, missing=2), [r] * 3, [0] * 3, box, (AM,), top=10 * r)
    g = build_contact_graph(cut)
    assert np.any(g.shift[:, 0] != 0)
    net = percolation_analysis(cut, g).electronic
    assert not net.wraps_x and net.fraction_particles_wrapping_x == 0.0


def test_winding_diagonal_helix_wraps_both_axes_and_counts_clusters():
    """A diagonal chain that closes after one period in x and y, plus a separate non-wrapping pair."""
    r = 1.0
    L = 6 * 1.9 * r / np.sqrt(2.0)  # 6 steps of length 1.9 r along the (1, 1) diagonal
    steps = np.arange(6) * (L / 6)
    helix = np.stack([steps, steps, np.full(6, 10.0)], axis=1)
    pair = np.array([[L / 2, 0.2 * L, 3.0], [L / 2 + 1.5, 0.2 * L, 3.0]])
    m = _micro(np.vstack([helix, pair]), [r] * 8, [0] * 8, [L, L, 20.0], (AM,), top=20.0)
    g = build_contact_graph(m, gap_tolerance_rel=0.0)
    nc, labels = cluster_labels(m.n, g.i, g.j)
    assert nc == 2
    w = winding_axes(m.n, g.i, g.j, g.shift, labels, nc)
    assert w[labels[0]].tolist() == [True, True, False]
    assert w[labels[6]].tolist() == [False, False, False]


def test_through_plane_spanning_lattice_with_and_without_gap():
    r = 1e-6
    n = 4
    grid = np.stack(np.meshgrid(np.arange(n), np.arange(n), np.arange(5), indexing="ij"), -1).reshape(-1, 3)
    pos = (2 * grid + 1) * r
    full = _micro(pos, [r] * len(pos), [0] * len(pos), [2 * n * r, 2 * n * r, 10 * r], (AM,), top=10 * r)
    assert percolation_analysis(full, build_contact_graph(full)).electronic.spans_z
    gap = pos.copy()
    gap[gap[:, 2] > 6 * r, 2] += 0.5 * r  # separate the top two layers from the rest
    cut = _micro(gap, [r] * len(pos), [0] * len(pos), [2 * n * r, 2 * n * r, 11 * r], (AM,), top=10.5 * r)
    res = percolation_analysis(cut, build_contact_graph(cut))
    assert not res.electronic.spans_z
    assert res.electronic.fraction_volume_terminal_connected == pytest.approx(3 / 5)
    assert res.isolated_am["electronically_isolated_fraction_by_count"] == pytest.approx(2 / 5)


def test_isolated_active_material_assb_known_answer():
    """Hand-built ASSB: CB column on the CC, SE column from the top, four AM particles.

    AM 0 (radius 2) touches the CB column and the SE column: active.
    AM 1 (radius 1) touches only the CB column: ionically isolated.
    AM 2 (radius 1.5) touches only the SE column: electronically isolated.
    AM 3 (radius 1) floats, touching a binder particle only: isolated from both.
    By count: ionic 2/4, electronic 2/4, both 1/4, inactive 3/4; by volume with r^3 weights
    (8, 1, 3.375, 1) / 13.375.
    """
    rc = 1.0
    cb = [[20.0, 20.0, (2 * k + 1) * rc] for k in range(10)]  # z from 0 to 20, touches CC
    se = [[26.0, 20.0, 40 - (2 * k + 1) * rc] for k in range(15)]  # z from 10 to 40, touches top
    am = [
        [23.0, 20.0, 15.0],  # r = 2: 3 from both column axes, overlaps CB (z=15) and SE (z=15)
        [20.0, 22.0, 5.0],  # r = 1: touches CB at z = 5 only
        [28.5, 20.0, 31.0],  # r = 1.5: touches SE at z = 31 only
        [10.0, 10.0, 30.0],  # r = 1: floating
    ]
    binder = [[10.0, 11.9, 30.0]]
    pos = cb + se + am + binder
    rad = [rc] * 10 + [rc] * 15 + [2.0, 1.0, 1.5, 1.0] + [1.0]
    sid = [1] * 10 + [2] * 15 + [0] * 4 + [3]
    m = _micro(pos, rad, sid, [50.0, 50.0, 40.0], (AM, CB, SE, BINDER), top=40.0)
    g = build_contact_graph(m, gap_tolerance_rel=0.0)
    res = percolation_analysis(m, g)
    iso = res.isolated_am
    assert iso["electronically_isolated_fraction_by_count"] == pytest.approx(0.5)
    assert iso["ionically_isolated_fraction_by_count"] == pytest.approx(0.5)
    assert iso["isolated_both_fraction_by_count"] == pytest.approx(0.25)
    assert iso["inactive_fraction_by_count"] == pytest.approx(0.75)
    v = np.array([8.0, 1.0, 3.375, 1.0])
    assert iso["electronically_isolated_fraction_by_volume"] == pytest.approx((v[2] + v[3]) / v.sum())
    assert iso["ionically_isolated_fraction_by_volume"] == pytest.approx((v[1] + v[3]) / v.sum())
    assert iso["isolated_both_fraction_by_volume"] == pytest.approx(v[3] / v.sum())
    assert res.ionic is not None and res.ionic.spans_z is False  # SE column does not reach the CC
    assert res.summary()["ionic"]["fraction_volume_connected_to_top"] == pytest.approx(1.0)
    assert res.ionic.fraction_volume_terminal_connected == pytest.approx(1.0)
    assert res.electronic.species == ("nmc", "cb")


def test_liquid_electrolyte_ionic_isolation_not_applicable():
    r = 1.0
    pos = [[5.0, 5.0, 1.0], [5.0, 5.0, 3.0]]
    m = _micro(pos, [r, r], [0, 1], [20.0, 20.0, 4.0], (AM, CB), top=4.0)
    res = percolation_analysis(m, build_contact_graph(m))
    assert res.ionic is None and res.am_ionically_connected is None
    assert res.isolated_am["ionically_isolated"] == NOT_APPLICABLE_IONIC
    assert "liquid" in res.summary()["ionic"]
    assert res.isolated_am["electronically_isolated_fraction_by_count"] == 0.0
    assert res.electronic.spans_z
