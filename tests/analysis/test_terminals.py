"""Measurement terminals: the probe plate on a rough top (network and voxels), a real gap, four-probe."""

from __future__ import annotations

import numpy as np
import pytest

from electrodem.analysis.contacts import build_contact_graph
from electrodem.analysis.resistor import resistor_conductivity
from electrodem.analysis.terminals import probe_columns, voxel_conductivity
from electrodem.analysis.voxelize import voxelize
from electrodem.io.snapshot import Microstructure, Species

SIGMA = 5.0
R = 1.0e-6
A_REL = 0.08
NX, NY, NZ = 4, 4, 5
AM = Species("am", "AM", 4750.0, 2e11, 0.25, sigma_e_S_per_m=SIGMA)


def _lattice(nz: int = NZ, extra_on: tuple[int, int] | None = None, skip_layer: int | None = None,
             plate: bool = False) -> Microstructure:
    """Simple-cubic lattice of touching spheres (spacing 2R), CC at z = 0, no recorded top (the gauge
    top is the highest sphere surface). ``extra_on``: one more sphere on top of that column (a raised
    asperity, touching the column's top sphere). ``skip_layer``: that layer is left empty (a gap)."""
    g = np.stack(np.meshgrid(np.arange(NX), np.arange(NY), np.arange(nz), indexing="ij"), -1).reshape(-1, 3)
    if skip_layer is not None:
        g = g[g[:, 2] != skip_layer]
    pos = (g + 0.5) * 2 * R
    if extra_on is not None:
        pos = np.vstack([pos, [(extra_on[0] + 0.5) * 2 * R, (extra_on[1] + 0.5) * 2 * R, (nz + 0.5) * 2 * R]])
    meta = {"top_z_m": nz * 2 * R} if plate else {}
    return Microstructure(pos, np.full(len(pos), R), np.zeros(len(pos)), (AM,),
                          box_m=np.array([NX * 2 * R, NY * 2 * R, (nz + 2) * 2 * R]), metadata=meta)


def _sigma_network(m: Microstructure, depth: float | None = None) -> tuple[float, object]:
    res = resistor_conductivity(m, axis="z", min_contact_radius_rel=A_REL, top_layer_m=depth)
    return res.sigma_eff_S_per_m, res


def test_probe_rule_on_a_rough_top():
    """Default probe depth = one mean AM diameter (2R here). On the flat lattice the probe touches the
    16 top spheres and no buried one (the second layer's tops lie exactly 2R below: inside the depth,
    but hidden); with one raised asperity it touches the asperity and the 15 uncovered top spheres,
    the covered one is hidden; the lone asperity sets the gauge top but not the thickness."""
    flat = build_contact_graph(_lattice(), min_contact_radius_rel=A_REL)
    assert flat.probe_depth_m == pytest.approx(2 * R)
    assert flat.top.sum() == NX * NY
    assert flat.top_m == pytest.approx(2 * NZ * R) == flat.gauge_top_m
    m = _lattice(extra_on=(1, 2))
    rough = build_contact_graph(m, min_contact_radius_rel=A_REL)
    assert rough.gauge_top_m == pytest.approx(2 * (NZ + 1) * R)
    assert rough.top_m == pytest.approx(2 * NZ * R)  # area-weighted median of the contacts' tops
    covered = np.flatnonzero(np.all(np.isclose(m.positions_m[:, :2], m.positions_m[-1, :2]), axis=1)
                             & np.isclose(m.positions_m[:, 2], (2 * NZ - 1) * R))
    assert rough.top.sum() == NX * NY and rough.top[-1] and not rough.top[covered].any()
    # a rigid plate at zero load (depth 0): only the asperity, today's behaviour
    assert build_contact_graph(m, min_contact_radius_rel=A_REL, top_layer_m=0.0).top.sum() == 1


def test_network_rough_top_equals_flat_up_to_the_asperity_column():
    """Flat: sigma_z = a sigma / R exactly (each column: n_z contacts of 1/(2 a sigma) in series,
    counting the two plate half-contacts). Rough: same thickness (the plate level), and the asperity's
    column has one more contact in series (n_z + 1). By Rayleigh's monotonicity (removing resistors
    never raises the conductance), cutting the lateral contacts bounds the rough lattice from below by
    16 independent columns: (15 + n_z / (n_z + 1)) / 16 <= sigma_rough / sigma_flat <= 1, i.e. within
    1.05 % for n_z = 5; the lateral contacts let the current bypass the extra contact, so the ratio
    lies strictly inside. A rigid plate at zero load (depth 0) touches only the asperity and reads
    < 1/4 of it (0.19: the current spreads from one sphere): the failure this fixes."""
    s_flat, _ = _sigma_network(_lattice())
    assert s_flat == pytest.approx(A_REL * SIGMA, rel=1e-9)
    s_rough, res = _sigma_network(_lattice(extra_on=(1, 2)))
    assert res.percolating and "probe" in res.terminals
    lower = (NX * NY - 1 + NZ / (NZ + 1)) / (NX * NY)
    assert lower < s_rough / s_flat < 1.0
    s_rigid, _ = _sigma_network(_lattice(extra_on=(1, 2)), depth=0.0)
    assert s_rigid < 0.25 * s_flat


def _sigma_voxel(m: Microstructure, k: float = 12.0) -> dict:
    g = build_contact_graph(m, min_contact_radius_rel=A_REL)
    img = voxelize(m, voxels_per_smallest_diameter=k)
    cols = probe_columns(m, g.top, img.shape[:2])
    return voxel_conductivity(img.labels, {0: 0.0, 1: SIGMA}, "z", img.voxel_size_m, (True, True, False),
                              probe=cols, plate_level_m=g.top_m, flux_rtol=1e-6)


def test_voxel_rough_top_equals_flat_within_the_derived_bound():
    """Same lattices in the voxel solver (12 voxels per diameter). Both images are identical below the
    flat top (same spacing, the asperity lies above it), the probe wets the exposed top of every
    touching sphere in both; the only change is the asperity's column: its top sphere is reached
    through the asperity and one more neck instead of being wetted directly. Upper bound 1 (Rayleigh:
    that route is the direct wetting with resistance inserted). Estimate of the lower bound: a column's
    resistance is its n_z - 1 internal necks plus the CC neck (the wetted top adds ~0), one more neck
    lowers that column's conductance by at most the factor (n_z - 1) / n_z and the other 15 columns are
    untouched, so 1 - 1 / (16 n_z) <= sigma_rough / sigma_flat (the rigorous Rayleigh bound, dropping
    the column, is 15/16). Measured: 0.998 at 8 and 12 voxels per diameter."""
    flat = _sigma_voxel(_lattice())
    rough = _sigma_voxel(_lattice(extra_on=(1, 2)))
    assert flat["percolates"] and rough["percolates"] and flat["reason"] == ""
    ratio = rough["sigma_eff_S_per_m"] / flat["sigma_eff_S_per_m"]
    assert 1 - 1 / (NX * NY * NZ) <= ratio <= 1 + 1e-5
    assert ratio < 1 - 1e-4  # the asperity column does change: the test sees it


def test_a_real_gap_gives_zero_with_a_reason():
    """An empty layer (layer 2 of 5 removed) is a real gap: sigma_z = 0, never NaN, with a reason,
    in the network and in the voxel solver, whatever the probe depth."""
    m = _lattice(skip_layer=2)
    for depth in (None, 0.0, 6 * R):
        s, res = _sigma_network(m, depth)
        assert s == 0.0 and not res.percolating and "does not percolate" in res.message
    v = _sigma_voxel(m, k=8.0)
    assert v["sigma_eff_S_per_m"] == 0.0 and not v["percolates"]
    assert "no connected conducting path" in v["reason"]


def test_calender_plate_top_is_unchanged():
    """A recorded plate height (calendered top) with the lattice cut flush: same a/R as before."""
    s, res = _sigma_network(_lattice(plate=True))
    assert s == pytest.approx(A_REL * SIGMA, rel=1e-9)


def test_four_probe_inner_planes_in_plane():
    """In-plane x on a laminate of two conductors parallel to x (sigma 1 and 4, equal thickness):
    the potential is exactly linear, so the inner-plane (four-probe) value equals the face-to-face one
    and the arithmetic mean 2.5. On a random packing of touching spheres (current injected through
    cut faces), the inner-plane value lies below the face-to-face one: the Dirichlet faces short the
    particles they cut, which the inner probes do not see (Thomson: a forced equipotential can only
    raise the conductance)."""
    lab = np.ones((24, 6, 8), np.uint8)
    lab[:, :, 4:] = 2
    out = voxel_conductivity(lab, {1: 1.0, 2: 4.0}, "x", (1.0, 1.0, 1.0), (False, True, False),
                             flux_rtol=1e-7)
    assert out["sigma_eff_S_per_m"] == pytest.approx(2.5, rel=1e-5)
    assert out["sigma_faces_S_per_m"] == pytest.approx(2.5, rel=1e-5)
    rng = np.random.default_rng(1)
    pos = rng.random((400, 3)) * [30e-6, 10e-6, 10e-6]
    m = Microstructure(pos, np.full(400, 1.0e-6), np.zeros(400), (AM,), box_m=np.array([30e-6, 10e-6, 10e-6]),
                       metadata={"top_z_m": 10e-6})
    img = voxelize(m, voxels_per_smallest_diameter=6)
    out = voxel_conductivity(img.labels, {0: 0.0, 1: SIGMA}, "x", img.voxel_size_m, (False, True, False),
                             flux_rtol=1e-6)
    assert out["percolates"]
    assert 0 < out["sigma_eff_S_per_m"] <= out["sigma_faces_S_per_m"] * (1 + 1e-6)
