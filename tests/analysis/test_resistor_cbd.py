"""Resistor network with CBD neck fillets (issue 15, item 3): the neck conductance against the exact
half-space solution and its analytic limits, the disc-on-a-sphere factor against its series solution,
a CBD-coated simple-cubic lattice against the multi-phase voxel solve of the same lattice, the
sigma_CBD -> 0 limit, and the independence of the contact-radius floor."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.integrate import quad

from electrodem.analysis.cbd import build_cbd, cbd_image
from electrodem.analysis.contacts import build_contact_graph
from electrodem.analysis.neck import (
    half_space_neck,
    neck_conductance,
    neck_slab_limit,
    sphere_spreading_factor,
    two_cap_sphere_factor,
)
from electrodem.analysis.report import AnalysisParams, analyse
from electrodem.analysis.resistor import resistor_conductivity
from electrodem.analysis.terminals import voxel_conductivity
from electrodem.io.snapshot import Microstructure, Species

UM = 1e-6
SIGMA_AM = 1e-3  # NMC
SIGMA_CBD = AnalysisParams().cbd_sigma_e_S_per_m  # 10 S/m
AM = Species("nmc", "AM", 4750.0, 2e11, 0.25, sigma_e_S_per_m=SIGMA_AM)
BINDER = Species("binder", "binder", 2000.0, 1e9, 0.4)


def _coated_lattice(n: tuple[int, int, int], radius_um: float, bead_um: float,
                    rng: np.random.Generator | None = None) -> Microstructure:
    """Simple-cubic lattice of touching AM spheres (spacing 2R, first layer on the CC, periodic x/y) with
    one binder bead in the neck of every AM-AM contact: the bead touches both spheres, off the contact
    point along the diagonal of the two other axes, where it touches no third sphere. Unbonded binder
    beads are CBD binder and sit in a neck (`build_cbd`), so each becomes that contact's fillet. With
    ``rng`` the bead radii are drawn from [bead_um / 1.5, 1.5 bead_um]."""
    R = radius_um
    g = np.stack(np.meshgrid(*[np.arange(k) for k in n], indexing="ij"), -1).reshape(-1, 3)
    pos = (g + 0.5) * 2 * R
    beads, bead_r = [], []
    for p in pos:
        for ax in range(3):
            if ax == 2 and p[2] + R >= n[2] * 2 * R:
                continue  # no sphere above the top layer
            rb = bead_um if rng is None else bead_um * rng.uniform(1 / 1.5, 1.5)
            q = p.copy()
            q[ax] += R
            d = np.ones(3)
            d[ax] = 0.0
            beads.append(q + math.sqrt((R + rb) ** 2 - R**2) * d / math.sqrt(2.0))
            bead_r.append(rb)
    beads_a = np.array(beads)
    box = np.array(n, float) * 2 * R
    beads_a[:, :2] %= box[:2]
    all_pos = np.vstack([pos, beads_a])
    rad = np.r_[np.full(len(pos), R), bead_r]
    sid = np.r_[np.zeros(len(pos), int), np.ones(len(beads_a), int)]
    return Microstructure(all_pos * UM, rad * UM, sid, (AM, BINDER), box_m=box * UM,
                          periodic=(True, True, False), metadata={"top_z_m": box[2] * UM})


def _psi(alpha: float) -> float:
    """Psi(alpha) = int_alpha^1 (1 - (2/pi) arcsin u)^2 du / u (`electrodem.analysis.neck`)."""
    return quad(lambda u: (1.0 - 2.0 / math.pi * math.asin(u)) ** 2 / u, alpha, 1.0)[0]


# ------------------------------------------------------------------------------- (a) one neck
def test_neck_conductance_matches_the_exact_half_space_solution_and_its_limits():
    """One neck on the half-space model (G_sp(c) = s c, s = 4 / (1/sigma_1 + 1/sigma_2), unlike
    conductivities), physical units: R1 = 3 um, R2 = 1.5 um, r_f = 0.8 um, sigma_1 = 2, sigma_2 = 0.5 S/m.

    * Against a direct solution: `neck_conductance` (a 60-element solution tabulated on a
      (ln alpha, ln lambda) grid and interpolated) vs a fresh boundary-element solve with 240 film
      elements at off-grid points across the crossover: 1 %, the mesh error of the table (0.1-0.3 %,
      measured against 400 elements) plus the interpolation (< 0.5 % over 25 random points).
    * The solver itself: no film gives the core disc, s a, and a perfect film the disc of radius r_f,
      s r_f, which is Holm's exact result for an equipotential disc (0.3 %: the mesh error).
    * lambda -> 0: the film adds K Psi(alpha), K = 4 pi sigma_f R_eff: the slab integral over the ring
      weighted by the square of the potential jump that the contact's own spreading leaves across it
      (first-order variational result, derived analytically; checked to 1 % at lambda = 1e-3, where
      the second order is -0.5 %). The bare slab integral K ln(r_f / a) (equipotential spheres)
      overestimates it by 1.119 / Psi for r_f >> a, 58 % at a / r_f = 0.05: the film effectively
      starts at 3.06 a.
    * lambda -> infinity: G -> s r_f, independent of a.
    """
    r1, r2, rf = 3e-6, 1.5e-6, 0.8e-6
    s1, s2 = 2.0, 0.5
    s = 4.0 / (1 / s1 + 1 / s2)
    r_eff = r1 * r2 / (r1 + r2)

    def g_sp(c):
        return s * np.asarray(c)

    def sigma_f(lam):  # film conductivity giving lambda = K / (s r_f)
        return lam * s * rf / (4 * math.pi * r_eff)

    for alpha, lam in [(0.03, 0.4), (0.07, 3.0), (0.12, 0.05), (0.25, 1.3), (0.45, 12.0), (0.6, 0.2)]:
        a = alpha * rf
        g = float(neck_conductance(g_sp, np.array([a]), np.array([rf]), np.array([r_eff]), sigma_f(lam))[0])
        t, t0, t_inf = half_space_neck(alpha, np.array([lam]), n=240)
        assert g == pytest.approx(s * rf * t, rel=0.01), (alpha, lam)
        assert t0 == pytest.approx(alpha, rel=3e-3) and t_inf == pytest.approx(1.0, rel=3e-3)
    for alpha in (0.05, 0.2):
        a = alpha * rf
        k = 4 * math.pi * sigma_f(1e-3) * r_eff
        g = float(neck_conductance(g_sp, np.array([a]), np.array([rf]), np.array([r_eff]), sigma_f(1e-3))[0])
        assert (g - s * a) == pytest.approx(k * _psi(alpha), rel=0.01)
        slab = float(neck_slab_limit(a, rf, r_eff, sigma_f(1e-3)))
        assert slab == pytest.approx(k * math.log(1 / alpha))
        assert slab > 1.3 * (g - s * a)
    assert math.log(1 / 1e-4) - _psi(1e-4) == pytest.approx(1.119, abs=2e-3)
    g_big = neck_conductance(g_sp, np.array([0.05, 0.2]) * rf, np.full(2, rf), np.full(2, r_eff),
                             sigma_f(1e5))
    np.testing.assert_allclose(g_big, s * rf, rtol=2e-3)
    # no film, or a fillet inside the contact disc: the bare contact, exactly
    a = np.array([0.1, 0.9]) * rf
    np.testing.assert_array_equal(neck_conductance(g_sp, a, np.array([rf, 0.5 * rf]), np.full(2, r_eff), 0.0),
                                  s * a)
    assert neck_conductance(g_sp, a, np.array([rf, 0.5 * rf]), np.full(2, r_eff), 1.0)[1] == s * a[1]


def test_disc_on_a_sphere_factor_matches_the_series_solution():
    """F(a/R) of ``bulk="sphere"``: the interpolated table against the Legendre-Galerkin solution of a
    sphere between two antipodal equipotential caps at off-node points (0.05 %: interpolation of a smooth
    function between nodes 0.05 apart). An independent axisymmetric finite-volume solve of the same
    problem gave R sigma R = 1.898 and 1.4165 at a/R = 0.3 and 0.4 with 1600 cells per radius, i.e.
    F = 1.139 and 1.133, vs 1.1366 and 1.1311 here (its error shrinks as 1/N: +1.2 % at 200 cells).
    Small caps: F -> 1 (Holm) with the sphere's log correction, F - 1 ~ (a/R) ln(R/a) / pi."""
    for x in (0.27, 0.62):
        exact = two_cap_sphere_factor(x, nmax=3000, n_nodes=400)
        assert float(sphere_spreading_factor(x)) == pytest.approx(exact, rel=5e-4)
    assert float(sphere_spreading_factor(0.0)) == 1.0
    x = 0.004
    assert float(sphere_spreading_factor(x)) - 1 == pytest.approx(x * (math.log(1 / x) + 0.48) / math.pi,
                                                                  rel=0.02)


# ------------------------------------------------------------------------ (b) coated lattice
def test_cbd_coated_lattice_resistor_matches_the_voxel_solve():
    """3 x 3 x 2 simple-cubic lattice of touching NMC spheres (R = 2 um, sigma 1e-3 S/m), a binder bead
    (0.3 um) in the neck of each of the 45 contacts; CBD porosity 0.5 and sigma_CBD = 10 S/m (the report
    defaults). In-plane x conductivity from the resistor network (periodic, imposed gradient) and from the
    multi-phase voxel solve of `cbd_image` (AM + CBD label).

    Voxel value: face to face between the contact planes x = 0 and x = Lx. In the periodic lattice those
    planes are equipotentials (mirror symmetry with the potential reversed), so the face value is the
    bulk one; the inner four-probe planes at 1/4 and 3/4 of three periods are not equivalent positions of
    the lattice and read low here. The mean over 16, 20 and 24 voxels per radius is used (the single
    values scatter by +-3 % with how the sphere surfaces and the fillet rim fall on the grid).

    Expected agreement: with sigma_CBD / sigma_AM = 1e4 (lambda ~ 1e4) the ring is a contact disc of
    radius r_f and each sphere of a row is a sphere between two antipodal equipotential caps, whose
    resistance the ``bulk="sphere"`` model reproduces exactly (F). Two known differences remain, both
    making the network higher: the image's fillet (a sphere of radius r_f about the contact point) wets
    the sphere out to r_f cos(theta/2), 1.7 % less than the parabolic ring's r_f (-> 1.7 % lower G), and
    the voxel solver reads the spreading at the cap rim resistive by 3-5 % at this resolution (the mean
    over 11 resolutions, 12-40 voxels per radius, lies 3-4 % below the exact cap solution; an
    axisymmetric finite-volume solve of the exact problem shows the same +3 to +8 % resistance at 16-40
    cells per radius). Hence the tolerance: the network within -3 % and +8 % of the voxel mean (measured
    +6 %). The half-space Holm model (``bulk="none"``) is 13 % higher still: F(r_f / R).
    """
    m = _coated_lattice((3, 3, 2), 2.0, 0.3)
    g = build_contact_graph(m)
    p = AnalysisParams()
    cbd = build_cbd(m, g, p.cbd_porosity)
    am_am = (m.species_id[g.i] == 0) & (m.species_id[g.j] == 0)
    assert am_am.sum() == 45 and len(cbd.neck_radius_m) == 45 and cbd.in_neck.sum() == 45
    rf_rel = float(cbd.neck_radius_m.mean() / (2 * UM))
    assert 0.3 < rf_rel < 0.45
    res = resistor_conductivity(m, "electronic", "x", graph=g, bulk="sphere", cbd=cbd,
                                cbd_sigma_e_S_per_m=p.cbd_sigma_e_S_per_m)
    assert res.n_cbd_necks == 45
    vox = []
    for vpr in (16, 20, 24):
        img, lab = cbd_image(m, cbd, 2 * UM / vpr)
        smap = {0: 0.0, 1: SIGMA_AM, 2: 0.0, lab: p.cbd_sigma_e_S_per_m}
        r = voxel_conductivity(img.labels, smap, "x", img.voxel_size_m, (False, True, False), flux_rtol=1e-6)
        assert r["converged"]
        vox.append(r["sigma_faces_S_per_m"])
    ratio = res.sigma_eff_S_per_m / float(np.mean(vox))
    assert 0.97 < ratio < 1.08, (ratio, vox)
    holm = resistor_conductivity(m, "electronic", "x", graph=g, bulk="none", cbd=cbd,
                                 cbd_sigma_e_S_per_m=p.cbd_sigma_e_S_per_m)
    assert holm.sigma_eff_S_per_m / res.sigma_eff_S_per_m == pytest.approx(
        float(sphere_spreading_factor(rf_rel)), rel=0.01)


# ----------------------------------------------------------------------------- (c) sigma -> 0
def test_vanishing_cbd_conductivity_gives_the_holm_network():
    """sigma_CBD = 0 (or no CBD, or run_cbd=False in the report) is today's network bit for bit: on the
    touching lattice every contact is the floor disc a = 0.05 R and sigma_eff / sigma = a / R exactly
    (Holm, `test_resistor.py`). A vanishing sigma_CBD approaches it continuously: to first order a neck
    adds K Psi(a / r_f) with K = 4 pi sigma_CBD R_eff = 1.3e-17 S at 1e-12 S/m (R_eff = 1 um), against
    G_sp(a) = 2e-10 S: a relative change ~ 1e-7. The result grows monotonically with sigma_CBD
    (Rayleigh: a better conductor in the necks)."""
    m = _coated_lattice((3, 3, 2), 2.0, 0.3)
    g = build_contact_graph(m, min_contact_radius_rel=0.05)
    cbd = build_cbd(m, g, 0.5)
    bare = resistor_conductivity(m, "electronic", "x", graph=g)
    assert bare.relative_to_bulk == pytest.approx(0.05, rel=1e-9)
    zero = resistor_conductivity(m, "electronic", "x", graph=g, cbd=cbd, cbd_sigma_e_S_per_m=0.0)
    assert zero.sigma_eff_S_per_m == bare.sigma_eff_S_per_m and zero.n_cbd_necks == 0
    np.testing.assert_array_equal(zero.potentials_V, bare.potentials_V)
    for axis in ("x", "z"):
        ref = resistor_conductivity(m, "electronic", axis, graph=g).sigma_eff_S_per_m
        sig = [resistor_conductivity(m, "electronic", axis, graph=g, cbd=cbd, cbd_sigma_e_S_per_m=s)
               .sigma_eff_S_per_m for s in (1e-12, 1e-6, 1e-3, 1.0, 10.0)]
        assert abs(sig[0] / ref - 1) < 1e-6
        assert sig[0] > ref and np.all(np.diff(sig) > 0)
    # the report: run_cbd=False is today's resistor; run_cbd=True passes the same classification
    off = analyse(m, AnalysisParams(run_voxel=False, run_cbd=False, directions=("x",)))
    on = analyse(m, AnalysisParams(run_voxel=False, directions=("x",)))
    r_off = off["conductivity"]["electronic"]["resistor"]["x"]
    r_on = on["conductivity"]["electronic"]["resistor"]["x"]
    assert r_off["sigma_eff_S_per_m"] == bare.sigma_eff_S_per_m and r_off["n_cbd_necks"] == 0
    with_cbd = resistor_conductivity(m, "electronic", "x", graph=g, cbd=cbd, cbd_sigma_e_S_per_m=SIGMA_CBD)
    assert r_on["sigma_eff_S_per_m"] == pytest.approx(with_cbd.sigma_eff_S_per_m, rel=1e-12)
    assert r_on["n_cbd_necks"] == 45 and on["cbd"]["n_neck_contacts"] == 45


# ------------------------------------------------------------------- (d) contact-radius floor
@pytest.mark.parametrize("bulk", ["none", "sphere", "flux_tube"])
def test_cbd_necks_make_the_result_independent_of_the_contact_radius_floor(bulk):
    """Doubling min_contact_radius_rel (0.05 -> 0.1) doubles the bare Holm lattice (sigma_eff / sigma =
    a / R) but, with a CBD neck in every contact, changes the in-plane result by < 1 % (measured
    1e-6): with sigma_CBD / sigma_AM = 1e4 the ring is the contact (lambda = K / G_sp(r_f) ~ 1e4 and
    G = G_sp(r_f) (1 - O(ln(lambda) / lambda))), so a enters only through that small remainder. Same with
    fillets of different sizes (bead radii 0.2-0.45 um, r_f / R = 0.27-0.44).
    Through-plane (z) the CC and probe half-contacts still scale with the floor: the CBD classification
    puts no fillet between a particle and the plates."""
    m = _coated_lattice((3, 3, 2), 2.0, 0.3)
    mixed = _coated_lattice((3, 3, 2), 2.0, 0.3, rng=np.random.default_rng(3))
    for micro in (m, mixed):
        cbd = build_cbd(micro, build_contact_graph(micro), 0.5)
        assert len(cbd.neck_radius_m) == 45
        out = {}
        for floor in (0.05, 0.1):
            g = build_contact_graph(micro, min_contact_radius_rel=floor)
            out[floor] = [resistor_conductivity(micro, "electronic", axis, graph=g, bulk=bulk, cbd=cbd,
                                                cbd_sigma_e_S_per_m=SIGMA_CBD).sigma_eff_S_per_m
                          for axis in ("x", "y")]
        np.testing.assert_allclose(out[0.1], out[0.05], rtol=0.01)
    bare = [resistor_conductivity(m, "electronic", "x", min_contact_radius_rel=f).sigma_eff_S_per_m
            for f in (0.05, 0.1)]
    assert bare[1] / bare[0] == pytest.approx(2.0, rel=1e-9)
