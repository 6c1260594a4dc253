"""The carbon-binder domain built from the snapshot's state: fibrils and CB coating stay out of it,
wet binder forms it, neck fillets hold the pendular-ring volume, ions slow down through it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from electrodem.analysis.cbd import build_cbd, cbd_image, fillet_radius_m
from electrodem.analysis.contacts import build_contact_graph
from electrodem.analysis.report import AnalysisParams
from electrodem.analysis.terminals import voxel_conductivity
from electrodem.analysis.voxelize import voxelize
from electrodem.config.errors import ConfigError
from electrodem.io.snapshot import Microstructure, Species

UM = 1e-6
AM = Species("nmc", "AM", 4750.0, 2e11, 0.25, sigma_e_S_per_m=1e-3)
CB = Species("c65", "CB", 1900.0, 1e10, 0.3, sigma_e_S_per_m=1e3)
BINDER = Species("binder", "binder", 2000.0, 1e9, 0.4)


def _micro(pos_um, rad_um, sid, box_um, bonds=None, periodic=(True, True, False)) -> Microstructure:
    return Microstructure(np.asarray(pos_um, float) * UM, np.asarray(rad_um, float) * UM, np.asarray(sid),
                          (AM, CB, BINDER), box_m=np.asarray(box_um, float) * UM, bonds=bonds,
                          periodic=periodic, metadata={"top_z_m": box_um[2] * UM})


def _dry_and_wet() -> tuple[Microstructure, Microstructure]:
    """Two AM spheres (R 3 um) on the CC; a chain of 4 binder beads (r 0.4 um) between their tops and
    two CB beads (r 0.3 um) sitting on the AM, one of them touching the chain. Dry: the chain is bonded
    bead to bead (a fibril). Wet: the same beads without bonds."""
    pos = [[4, 5, 3], [10.2, 5, 3]]
    rad = [3.0, 3.0]
    sid = [0, 0]
    chain = [[5.9, 5, 5.9 + 0.45 * k] for k in range(4)]
    pos += chain
    rad += [0.4] * 4
    sid += [2] * 4
    pos += [[5.9, 5, 5.2], [4, 8.3, 3]]
    rad += [0.3, 0.3]
    sid += [1, 1]
    bonds = {"i": np.array([2, 3, 4]), "j": np.array([3, 4, 5]), "radius_m": np.full(3, 0.1 * UM),
             "broken": np.zeros(3, bool)}
    box = [14, 14, 8]
    return _micro(pos, rad, sid, box, bonds), _micro(pos, rad, sid, box)


def test_fibrils_and_cb_coating_do_not_become_cbd():
    """Dry: binder beads bonded to each other are fibrils, the CB touches only AM and fibrils: no CBD,
    and the CBD image equals the plain voxel image (the pores stay open). Wet (same beads, no bonds):
    the binder is CBD, the CB bead touching it is glued in, the one touching only AM stays bare, and
    the CBD takes pore volume."""
    dry, wet = _dry_and_wet()
    c = build_cbd(dry, build_contact_graph(dry), porosity=0.5)
    assert not c.member.any() and c.fibril.sum() == 4 and c.bare_carbon.sum() == 2
    img, lab = cbd_image(dry, c, 0.25 * UM)
    np.testing.assert_array_equal(img.labels, voxelize(dry, voxel_size_m=0.25 * UM).labels)
    assert not (img.labels == lab).any()
    w = build_cbd(wet, build_contact_graph(wet), porosity=0.5)
    assert w.cbd_binder.sum() == 4 and not w.fibril.any()
    glued = np.flatnonzero(w.cbd_carbon)
    assert glued.tolist() == [6] and w.bare_carbon[7]
    wimg, wlab = cbd_image(wet, w, 0.25 * UM)
    assert (wimg.labels == wlab).sum() > 0
    assert (wimg.labels == 0).sum() < (img.labels == 0).sum()


def test_neck_fillet_holds_the_pendular_ring_volume():
    """Two touching AM spheres (R = 5 um) and one binder bead (r 0.6 um) touching both at the neck.
    Its CBD volume V = (4/3 pi r^3) / (1 - eps) is laid out as the ring in the wedge around the contact:
    with the gap rho^2 / (2 R_eff) (R_eff = R/2) the ring out to r_f holds pi r_f^4 / (4 R_eff), so
    the image's CBD volume must equal V. The parabolic gap underestimates the true sphere gap by
    O((r_f / R)^2) ~ 5 % here and the staircase adds a voxel-scale error; 15 % bounds both at 0.1 um
    voxels (r_f ~ 15 voxels). A bead placed in the open pore instead is simply inflated: its image
    volume is (4/3) pi (r (1 - eps)^(-1/3))^3 = V (within the voxel error, 10 %)."""
    R, rb, eps = 5.0, 0.6, 0.5
    y = math.sqrt((R + rb) ** 2 - R**2)
    pos = [[5, 6, 6], [15, 6, 6], [10, 6 + y, 6]]
    solo = (False, False, False)  # a 20 x 12 um window, not a periodic cell
    m = _micro(pos, [R, R, rb], [0, 0, 2], [20, 12, 12], periodic=solo)
    c = build_cbd(m, build_contact_graph(m), porosity=eps)
    assert c.in_neck.tolist() == [False, False, True]
    v = 4 / 3 * math.pi * (rb * UM) ** 3 / (1 - eps)
    assert c.radii_m[0] == pytest.approx(fillet_radius_m(v, R * UM, R * UM))
    h = 0.1 * UM
    img, lab = cbd_image(m, c, h)
    v_img = (img.labels == lab).sum() * np.prod(img.voxel_size_m)
    assert v_img == pytest.approx(v, rel=0.15)
    # the fillet never replaces AM: the AM volume is that of the image without the bead
    np.testing.assert_array_equal(img.labels == 1, voxelize(m.with_(radii_m=np.array([R, R, 1e-9]) * UM),
                                                            voxel_size_m=h).labels == 1)
    free = _micro([[5, 6, 6], [15, 6, 6], [10, 6, 11]], [R, R, rb], [0, 0, 2], [20, 12, 12], periodic=solo)
    cf = build_cbd(free, build_contact_graph(free), porosity=eps)
    assert not cf.in_neck.any()
    fimg, flab = cbd_image(free, cf, h)
    assert (fimg.labels == flab).sum() * np.prod(fimg.voxel_size_m) == pytest.approx(v, rel=0.10)


def test_counting_the_cbd_slows_ions_by_a_bounded_factor():
    """Pore around a simple-cubic lattice of separated AM spheres, with binder beads in the pore. Ionic
    conductivity with the CBD counted (transport factor f = eps_CBD^1.5 = 0.35) vs omitted (CBD =
    free electrolyte, f = 1). The conductivity map with f is pointwise >= f times the one with 1, so
    1 <= sigma_omitted / sigma_counted <= 1 / f (Rayleigh monotonicity); it must be strictly > 1 since
    the CBD lies on the current paths. Usseglio-Viretta's 1.35-1.81 on tau is the magnitude expected
    for real CBD loadings; here the direction and the bound are what is tested."""
    rng = np.random.default_rng(4)
    g = np.stack(np.meshgrid(*[np.arange(3)] * 3, indexing="ij"), -1).reshape(-1, 3)
    am = (g + 0.5) * 4.4
    beads = []
    while len(beads) < 120:
        p = rng.random(3) * 13.2
        p[2] = np.clip(p[2], 0.5, 12.7)
        d = np.abs(am - p)
        d[:, :2] = np.minimum(d[:, :2], 13.2 - d[:, :2])
        if np.linalg.norm(d, axis=1).min() > 2.0 + 0.45 and all(np.linalg.norm(p - b) > 0.85 for b in beads):
            beads.append(p)
    pos = np.vstack([am, beads])
    rad = np.r_[np.full(len(am), 2.0), np.full(len(beads), 0.4)]
    sid = np.r_[np.zeros(len(am), int), np.full(len(beads), 2)]
    m = _micro(pos, rad, sid, [13.2, 13.2, 13.2])
    p = AnalysisParams()
    c = build_cbd(m, build_contact_graph(m), porosity=p.cbd_porosity)
    assert c.member.sum() == len(beads)
    img, lab = cbd_image(m, c, 0.2 * UM)
    f = p.cbd_transport_factor()
    assert f == pytest.approx(0.5**1.5)
    sig = {}
    for fac in (f, 1.0):
        imap = {0: 1.0, 1: 0.0, 2: 0.0, 3: 0.0, lab: fac}
        r = voxel_conductivity(img.labels, imap, "z", img.voxel_size_m, (True, True, False),
                               probe=np.zeros(img.shape[:2], bool), plate_level_m=13.2 * UM, flux_rtol=1e-6)
        sig[fac] = r["sigma_eff_S_per_m"]
    ratio = sig[1.0] / sig[f]
    assert 1.02 < ratio <= 1 / f


@pytest.mark.parametrize(("key", "value"), [("cbd_porosity", 1.0), ("cbd_porosity", -0.1),
                                            ("cbd_sigma_e_S_per_m", 0.0), ("cbd_sigma_e_S_per_m", "10"),
                                            ("cbd_ionic_transport_factor", 1.5),
                                            ("cbd_ionic_transport_factor", 0.0), ("run_cbd", "yes"),
                                            ("top_layer_thickness_um", -1.0)])
def test_cbd_and_probe_params_are_validated(key, value):
    with pytest.raises(ConfigError, match=f"analysis.{key}="):
        AnalysisParams(**{key: value})
