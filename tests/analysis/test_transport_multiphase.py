"""Multi-phase voxel transport (issue 15, item 2): laminates with contrasts up to 1e6, the single-phase
limit, insulating gaps, boundaries, and the high-contrast multigrid it runs on."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.ndimage as ndi
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from electrodem.analysis import voxel_multigrid
from electrodem.analysis.transport import (
    effective_conductivity_multiphase,
    effective_conductivity_multiphase_axes,
    solve_transport,
)
from electrodem.analysis.voxelize import VoxelImage
from electrodem.config.errors import ConfigError

FLUX_RTOL = 1e-4
"""The solver's stopping criterion in these tests (its default): inlet, outlet and every slice
current agree within 1e-4 (relative spread)."""
LAMINATE_RTOL = 1e-3
"""Acceptance tolerance on sigma_eff of a laminate (issue 15: 0.1 %). Derived from FLUX_RTOL: a
laminate of whole-voxel layers is exactly a set of resistors in series (layers normal to the axis,
the Dirichlet half-voxels included) or in parallel (layers along it), so the exact discrete
solution IS the harmonic / arithmetic mean and the only error is the iterative one. The reported
current is the mean of slice currents that all agree within FLUX_RTOL, and the exact current
conserves slice by slice, so the error is of order FLUX_RTOL = 1e-4; 1e-3 leaves a factor 10."""

SIGMA_2 = (1.0, 1e-6)  # S/m: contrast 1e6
SIGMA_3 = (2.0, 2e-3, 2e-6)  # S/m: contrasts 1e3 and 1e6


@pytest.fixture
def force_multigrid(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make even tiny systems go through the multigrid hierarchy instead of the direct solve, so
    that the laminates exercise the high-contrast aggregation and cycle, not SuperLU."""
    monkeypatch.setattr(voxel_multigrid, "MAX_DIRECT_UNKNOWNS", 16)


def _laminate(
    sigma: tuple[float, ...], axis: int, kind: str, shape: tuple[int, int, int] = (14, 12, 16)
) -> tuple[np.ndarray, dict[int, float], float]:
    """Labels 1..len(sigma) in whole-voxel layers of uneven thickness; the exact sigma_eff (S/m).

    ``kind="series"``: layers normal to the transport ``axis`` (harmonic mean over the voxels along
    it); ``"parallel"``: layers along it, stacked along the next axis (arithmetic mean).
    """
    stack = axis if kind == "series" else (axis + 1) % 3
    n = shape[stack]
    # Uneven, fixed layer sequence containing every phase: thicknesses 1, 2 and 3 voxels.
    seq = np.concatenate([np.full(1 + k % 3, k % len(sigma)) for k in range(n)])[:n]
    assert len(np.unique(seq)) == len(sigma)
    bshape = [1, 1, 1]
    bshape[stack] = n
    labels = np.broadcast_to(seq.reshape(bshape) + 1, shape).astype(np.uint8)
    s = np.asarray(sigma)[seq]
    exact = 1.0 / np.mean(1.0 / s) if kind == "series" else float(np.mean(s))
    return labels, {k + 1: v for k, v in enumerate(sigma)}, exact


# ---------------------------------------------------------------- laminates: harmonic, arithmetic means
@pytest.mark.parametrize("sigma", [SIGMA_2, SIGMA_3], ids=["2-phase", "3-phase"])
@pytest.mark.parametrize("kind", ["series", "parallel"])
@pytest.mark.parametrize("axis", ["x", "y", "z"])
def test_laminates_give_harmonic_and_arithmetic_means(
    sigma: tuple[float, ...], kind: str, axis: str, force_multigrid: None
) -> None:
    t = "xyz".index(axis)
    labels, cond, exact = _laminate(sigma, t, kind)
    sides = {}
    for boundary in ("no_flux", "periodic"):
        res = effective_conductivity_multiphase(labels, cond, axis, boundary=boundary, flux_rtol=FLUX_RTOL)
        assert res.converged and res.percolates and res.reason == ""
        assert res.slice_flux_spread <= FLUX_RTOL
        assert res.sigma_eff_S_per_m == pytest.approx(exact, rel=LAMINATE_RTOL)
        # TauFactor's multi-phase tau = sigma_mean / sigma_eff: 1 for a parallel laminate (the
        # arithmetic mean is the volume mean), the mean-over-harmonic ratio for a series one.
        mean = sum(cond[k] * f for k, f in res.volume_fraction_by_label.items())
        assert res.sigma_mean_S_per_m == pytest.approx(mean, rel=1e-12)
        assert res.conducting_fraction == 1.0
        assert res.sigma_ref_S_per_m == pytest.approx(mean, rel=1e-12)
        assert res.tortuosity_factor == pytest.approx(mean / exact, rel=LAMINATE_RTOL)
        # Contrast >= 1e3: float64 from the start, no wasted float32 attempt.
        assert res.precision == "float64" and res.precision_fallback == ""
        assert res.boundary[t] == "dirichlet"
        sides[boundary] = res.sigma_eff_S_per_m
    # No current crosses the sides of a laminate: periodic and insulating sides must agree (to the
    # iterative error of the two solves).
    assert sides["periodic"] == pytest.approx(sides["no_flux"], rel=2 * FLUX_RTOL)


def test_laminate_solves_are_exact_with_the_direct_coarse_solve() -> None:
    """Below MAX_DIRECT_UNKNOWNS the preconditioner is the exact inverse: the means to round-off."""
    for sigma in (SIGMA_2, SIGMA_3):
        for kind in ("series", "parallel"):
            labels, cond, exact = _laminate(sigma, 0, kind, shape=(16, 9, 10))
            res = effective_conductivity_multiphase(labels, cond, "x")
            assert res.sigma_eff_S_per_m == pytest.approx(exact, rel=1e-8)
            assert res.iterations <= 2


# ---------------------------------------------------------------- one conducting phase = today's solver
def _blobs(n: int, fractions: list[float], seed: int) -> np.ndarray:
    """Labels 0..len(fractions)-1 thresholded from smoothed noise (connected, blob-like phases)."""
    rng = np.random.default_rng(seed)
    field = ndi.gaussian_filter(rng.random((n, n, n)), 1.5, mode="wrap")
    cuts = np.quantile(field, np.cumsum(fractions)[:-1])
    return np.searchsorted(cuts, field).astype(np.uint8)


@pytest.mark.parametrize(
    ("boundary", "voxel_size_m"), [("no_flux", None), ("periodic", (1.0e-6, 1.3e-6, 0.8e-6))]
)
def test_single_phase_reproduces_the_binary_solver_exactly(boundary: str, voxel_size_m) -> None:
    labels = _blobs(24, [0.45, 0.4, 0.15], seed=1)  # 24^3 voxels: the multigrid path, not SuperLU
    for axis in "xz":
        ref = solve_transport(
            labels,
            [1, 2],
            axis,
            periodic_sides=boundary == "periodic",
            voxel_size_m=voxel_size_m,
            sigma0_S_per_m=2.5,
        )
        # Two labels with one conductivity, the rest insulating: a single conducting phase.
        res = effective_conductivity_multiphase(
            labels, {0: 0.0, 1: 2.5, 2: 2.5}, axis, voxel_size_m=voxel_size_m, boundary=boundary
        )
        assert ref.n_unknowns > voxel_multigrid.MAX_DIRECT_UNKNOWNS
        # The same system and solver: the same current bit for bit; tau differs only by the
        # rounding of eps * sigma_0 (binary) vs sum_i eps_i sigma_i (map).
        assert res.sigma_eff_S_per_m == ref.sigma_eff_S_per_m
        assert res.tortuosity_factor == pytest.approx(ref.tortuosity_factor, rel=1e-14)
        assert res.iterations == ref.iterations and res.precision == ref.precision
        assert res.conducting_fraction == ref.volume_fraction
        assert res.sigma_ref_S_per_m == pytest.approx(2.5, rel=1e-14)
        # tau = sigma_ref eps / sigma_eff, the documented reference.
        assert res.tortuosity_factor == pytest.approx(
            res.sigma_ref_S_per_m * res.conducting_fraction / res.sigma_eff_S_per_m, rel=1e-12
        )


# ---------------------------------------------------------------- no current: sigma = 0, tau = inf, a reason
def test_insulating_gap_gives_zero_conductivity_and_infinite_tau() -> None:
    labels, cond, _ = _laminate(SIGMA_3, 2, "series")
    labels = labels.copy()
    labels[:, :, 7] = 0  # an insulating layer across the transport axis z
    res = effective_conductivity_multiphase(labels, {**cond, 0: 0.0}, "z", boundary="periodic")
    assert res.sigma_eff_S_per_m == 0.0 and not res.percolates and res.percolating_fraction == 0.0
    assert math.isinf(res.tortuosity_factor) and res.tortuosity_factor > 0
    assert "do not connect" in res.reason and "z" in res.reason
    assert res.conducting_fraction == pytest.approx(1 - 1 / 16)
    payload = json.dumps(res.to_dict(), allow_nan=False)  # strict JSON: no NaN, no Infinity
    assert '"tortuosity_factor": "inf"' in payload
    # The same gap along x does not block a current along x.
    along = effective_conductivity_multiphase(labels, {**cond, 0: 0.0}, "x")
    assert along.percolates and along.reason == "" and 0 < along.tortuosity_factor < math.inf


def test_all_insulating_image_says_so() -> None:
    res = effective_conductivity_multiphase(np.zeros((4, 5, 6), np.uint8), {0: 0.0, 3: 1.0}, "y")
    assert res.sigma_eff_S_per_m == 0.0 and res.sigma_ref_S_per_m == 0.0
    assert math.isinf(res.tortuosity_factor) and "no conducting voxels" in res.reason
    assert res.volume_fraction_by_label == {0: 1.0} and res.sigma_by_label_S_per_m == {0: 0.0}


# ---------------------------------------------------------------- high contrast: islands, coarse operator
def test_good_islands_in_a_poor_matrix_converge(monkeypatch: pytest.MonkeyPatch) -> None:
    """Good conductor islands (sigma 1) floating in a matrix 1e6 poorer, plus a third phase (1e-3).

    The single-phase aggregation needs 38 float64 iterations on this 15^3 image (190 at 24^3, and
    it stalled at 500 on 64^3); the high-contrast multigrid 12 (16 at 24^3). The reference is the
    same system with the exact coarse solve (SuperLU)."""
    labels = _blobs(15, [0.12, 0.73, 0.15], seed=3)  # 3375 voxels: exact coarse solve
    cond = {0: 1.0, 1: 1e-6, 2: 1e-3}
    ref = effective_conductivity_multiphase(labels, cond, "z", flux_rtol=1e-9)
    assert ref.n_unknowns <= voxel_multigrid.MAX_DIRECT_UNKNOWNS and ref.iterations <= 2
    monkeypatch.setattr(voxel_multigrid, "MAX_DIRECT_UNKNOWNS", 16)
    res = effective_conductivity_multiphase(labels, cond, "z")
    assert res.converged and res.iterations <= 20
    assert res.sigma_eff_S_per_m == pytest.approx(ref.sigma_eff_S_per_m, rel=10 * FLUX_RTOL)
    # The same map given as conductivities per voxel: the same classes, hence the same solve.
    field = np.array([cond[k] for k in range(3)])[labels]
    as_map = solve_transport(field, axis="z", contrast_aware=True, precision="float64")
    assert as_map.sigma_eff_S_per_m == pytest.approx(res.sigma_eff_S_per_m, rel=1e-12)


def test_high_contrast_multigrid_on_odd_periodic_anisotropic_image(monkeypatch: pytest.MonkeyPatch) -> None:
    """Odd sizes (partial blocks, faces wrapping into the first block), periodic sides and
    anisotropic voxels through the class-aware hierarchy, against the exact coarse solve."""
    labels = _blobs(16, [0.3, 0.5, 0.2], seed=5)[:15, :13, :11]
    cond = {0: 0.0, 1: 1e-2, 2: 1e2}  # pore, active material, carbon-binder domain
    kw = {"boundary": "periodic", "voxel_size_m": (1e-6, 1.4e-6, 0.8e-6)}
    for axis in "xz":
        ref = effective_conductivity_multiphase(labels, cond, axis, flux_rtol=1e-9, **kw)
        with monkeypatch.context() as m:
            m.setattr(voxel_multigrid, "MAX_DIRECT_UNKNOWNS", 16)
            res = effective_conductivity_multiphase(labels, cond, axis, **kw)
        assert ref.percolates and res.converged and res.iterations <= 30
        assert res.sigma_eff_S_per_m == pytest.approx(ref.sigma_eff_S_per_m, rel=10 * FLUX_RTOL)


def test_class_aware_coarsening_is_the_scaled_galerkin_product() -> None:
    """The first coarsening with conductivity classes: aggregates hold one class and are
    face-connected, and the coarse matrix is CONTRAST_COARSE_SCALE * P^T A P (odd periodic axis
    included, where faces wrap into the first block)."""
    rng = np.random.default_rng(7)
    shape = (10, 9, 8)
    periodic = (False, True, True)
    values = np.array([1.0, 0.5, 1e-3, 1e-6])
    sig = values[rng.integers(0, 4, shape)].ravel()
    cells = voxel_multigrid.block_ordered_cells(np.ones(shape, bool), 2)
    up, down = voxel_multigrid.neighbour_indices(cells, shape, periodic)
    s = sig[cells]
    g: list[np.ndarray | float] = []
    for d in range(3):
        nb = s[np.maximum(up[d], 0)]
        g.append(np.where(up[d] >= 0, 2 * s * nb / (s + nb), 0.0))
    gdir = np.zeros(len(cells))
    gdir[:50] = 2.0 * s[:50]
    classes = voxel_multigrid.contrast_classes(s, voxel_multigrid.CONTRAST_CLASS_RATIO)
    assert sorted(np.unique(classes)) == [0, 1, 2]  # 1 and 0.5 share a class
    level = voxel_multigrid.Level(shape, cells, up, down, g, gdir, periodic, cell_class=classes)
    a = voxel_multigrid.assemble_csr(level)
    scale = voxel_multigrid.CONTRAST_COARSE_SCALE
    coarse, tr, _, _, coarse_class = voxel_multigrid.coarsen_grid(level, scale)
    parent = tr.prolong(np.arange(tr.n_coarse))
    n = len(cells)
    p = sp.csr_matrix((np.ones(n), (np.arange(n), parent)), shape=(n, tr.n_coarse))
    galerkin = (scale * (p.T @ a @ p)).toarray()
    assert np.allclose(coarse.toarray(), galerkin, rtol=1e-12, atol=1e-15)
    assert np.array_equal(coarse_class[parent], classes)  # one class per aggregate
    # Face-connected: the fine graph restricted to edges inside aggregates has one piece per aggregate.
    coo = a.tocoo()
    inside = (coo.row != coo.col) & (parent[coo.row] == parent[coo.col])
    graph = sp.coo_matrix((np.ones(inside.sum()), (coo.row[inside], coo.col[inside])), shape=a.shape)
    assert connected_components(graph, directed=False)[0] == tr.n_coarse


# ---------------------------------------------------------------- API
def test_voxel_image_axes_and_mixed_sides() -> None:
    labels, cond, exact = _laminate(SIGMA_2, 0, "parallel", shape=(8, 6, 5))
    img = VoxelImage(labels, (2e-6,) * 3, (0.0,) * 3, ("pore", "a", "b"), 4.0, (True, True, False))
    res = effective_conductivity_multiphase_axes(img, cond, boundary=img.periodic)
    assert set(res) == {"x", "y", "z"}
    assert res["x"].boundary == ("dirichlet", "periodic", "no_flux")
    assert res["z"].boundary == ("periodic", "periodic", "dirichlet")
    assert res["x"].voxel_size_m == (2e-6, 2e-6, 2e-6)
    assert res["x"].sigma_eff_S_per_m == pytest.approx(exact, rel=1e-8)
    across = np.array(SIGMA_2)[labels[0, :, 0] - 1]  # the layers are stacked along y
    assert res["y"].sigma_eff_S_per_m == pytest.approx(1 / np.mean(1 / across), rel=1e-8)


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"sigma_by_label": {1: 1.0}}, "sigma_by_label"),  # label 2 present, no conductivity
        ({"sigma_by_label": {1: 1.0, 2: -1.0}}, "conductivity"),
        ({"sigma_by_label": {}}, "sigma_by_label"),
        ({"boundary": "open"}, "boundary"),
        ({"boundary": ("periodic", "no_flux")}, "boundary"),
        ({"axis": "w"}, "axis"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict, key: str) -> None:
    labels = np.ones((4, 4, 4), np.uint8)
    labels[0] = 2
    args = {"sigma_by_label": {1: 1.0, 2: 0.5}, **kwargs}
    with pytest.raises(ConfigError, match=key):
        effective_conductivity_multiphase(labels, **args)
    with pytest.raises(ConfigError, match="labels"):
        effective_conductivity_multiphase(np.ones((3, 3, 3)), {1: 1.0})
