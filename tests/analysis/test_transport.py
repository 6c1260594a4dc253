"""Voxel transport solver: exact discrete answers, bounds, brute force and grid convergence."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from electrodem.analysis import voxel_multigrid
from electrodem.analysis.transport import (
    TransportSolver,
    percolating_mask,
    solve_transport,
    solve_transport_axes,
)
from electrodem.analysis.voxelize import voxelize
from electrodem.config.errors import ConfigError
from electrodem.io.snapshot import Microstructure, Species


@pytest.fixture
def force_multigrid(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make even tiny systems go through the multigrid hierarchy instead of the direct solve."""
    monkeypatch.setattr(voxel_multigrid, "MAX_DIRECT_UNKNOWNS", 16)


def _boolean_spheres(n: int, porosity: float, radius_vox: float, seed: int) -> np.ndarray:
    """Boolean model (overlapping spheres, Poisson centres) on a periodic n^3 grid; True = in a sphere."""
    rng = np.random.default_rng(seed)
    count = rng.poisson(-math.log(porosity) / (4.0 / 3.0 * math.pi * radius_vox**3) * n**3)
    centres = rng.random((count, 3)) * n
    grid = (np.arange(n) + 0.5)[:, None]
    solid = np.zeros((n, n, n), dtype=bool)
    r = int(math.ceil(radius_vox))
    for c in centres:
        idx = [np.arange(int(c[d]) - r - 1, int(c[d]) + r + 2) for d in range(3)]
        dist = [((grid[i % n, 0] - c[d] + n / 2) % n - n / 2) ** 2 for d, i in enumerate(idx)]
        inside = dist[0][:, None, None] + dist[1][None, :, None] + dist[2][None, None, :] < radius_vox**2
        solid[np.ix_(idx[0] % n, idx[1] % n, idx[2] % n)] |= inside
    return solid


# ---------------------------------------------------------------- exact discrete answers
@pytest.mark.parametrize("axis", ["x", "y", "z"])
def test_straight_channels_have_tau_one(axis: str, force_multigrid: None) -> None:
    t = "xyz".index(axis)
    shape = [12, 10, 14]
    cross = np.zeros([s for d, s in enumerate(shape) if d != t], dtype=bool)
    cross[1:4, 2:5] = True  # a rectangular channel ...
    cross[6:, 7] = True  # ... and an L-shaped one
    cross[6, 3:8] = True
    mask = np.expand_dims(cross, t).repeat(shape[t], axis=t)
    res = solve_transport(mask, axis=axis)
    eps = mask.mean()
    assert res.volume_fraction == pytest.approx(eps)
    assert res.percolating_fraction == 1.0
    assert res.tortuosity_factor == pytest.approx(1.0, abs=2e-4)
    assert res.relative_conductivity == pytest.approx(eps, rel=2e-4)
    assert res.macmullin_number == pytest.approx(1.0 / eps, rel=2e-4)
    assert res.converged and res.slice_flux_spread <= 1e-4


def test_channel_potential_is_linear_between_the_half_voxel_faces() -> None:
    mask = np.zeros((10, 3, 3), dtype=bool)
    mask[:, 1, 1] = True
    solver = TransportSolver(mask, axis="x", flux_rtol=1e-8)
    assert solver.solve() == pytest.approx(1.0, abs=1e-9)
    v = solver.potential_field()
    # Dirichlet faces sit half a voxel outside the first and last voxel centres (TauFactor 2).
    assert np.allclose(v[:, 1, 1], 1.0 - (np.arange(10) + 0.5) / 10, atol=1e-9)
    assert np.isnan(v[0, 0, 0])


@pytest.mark.parametrize("map_kind", ["labels", "float"])
def test_series_laminate_gives_harmonic_mean(map_kind: str, force_multigrid: None) -> None:
    sig = np.array([2.0, 0.5, 1.0, 0.05])
    layers = np.arange(16) % 4  # layers normal to the transport axis x
    labels = np.broadcast_to(layers[:, None, None] + 1, (16, 6, 5)).astype(np.uint8)
    if map_kind == "labels":
        res = solve_transport(
            labels, axis="x", conductivity={k + 1: s for k, s in enumerate(sig)}, flux_rtol=1e-8
        )
    else:
        res = solve_transport(sig[labels - 1], axis="x", flux_rtol=1e-8)
    harmonic = 1.0 / np.mean(1.0 / sig[layers])
    assert res.sigma_eff_S_per_m == pytest.approx(harmonic, rel=1e-7)
    assert res.sigma0_S_per_m == 2.0  # default reference: the largest conductivity
    assert res.relative_conductivity == pytest.approx(harmonic / 2.0, rel=1e-7)
    # tau = sigma_mean / sigma_eff (multi-phase convention); no Bruggeman fit for several values.
    assert res.tortuosity_factor == pytest.approx(np.mean(sig[layers]) / harmonic, rel=1e-7)
    assert res.bruggeman_exponent is None


def test_parallel_laminate_gives_arithmetic_mean(force_multigrid: None) -> None:
    sig = np.array([3.0, 0.2, 1.0])
    cols = np.arange(9) % 3  # layers parallel to the transport axis z
    field = np.broadcast_to(sig[cols][:, None, None], (9, 4, 11)).copy()
    res = solve_transport(field, axis="z", flux_rtol=1e-8)
    assert res.sigma_eff_S_per_m == pytest.approx(sig[cols].mean(), rel=1e-7)
    assert res.tortuosity_factor == pytest.approx(1.0, rel=1e-7)


def test_brute_force_matrix_agrees_with_multigrid(force_multigrid: None) -> None:
    """Random three-phase image, anisotropic voxels, periodic sides: the fast path equals a
    loop-assembled sparse system solved directly."""
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, (9, 11, 8))
    labels[rng.random(labels.shape) < 0.35] = 1
    cond = {1: 1.0, 2: 0.25}
    h = (1.0, 1.5, 0.7)
    for axis, periodic in ((0, (False, True, True)), (2, False)):
        res = solve_transport(
            labels, axis=axis, conductivity=cond, periodic_sides=periodic, voxel_size_m=h, flux_rtol=1e-9
        )
        per = (False, True, True) if periodic else (False, False, False)
        assert res.sigma_eff_S_per_m == pytest.approx(
            _brute_force_sigma(labels, cond, axis, per, h), rel=1e-8
        )
        res32 = solve_transport(labels, axis=axis, conductivity=cond, periodic_sides=periodic, voxel_size_m=h)
        assert res32.sigma_eff_S_per_m == pytest.approx(res.sigma_eff_S_per_m, rel=1e-4)


def _brute_force_sigma(
    labels: np.ndarray, cond: dict[int, float], t: int, per: tuple[bool, ...], h: tuple[float, ...]
) -> float:
    sig = np.vectorize(lambda v: cond.get(int(v), 0.0))(labels).astype(float)
    sig[~percolating_mask(sig > 0, t, per)] = 0.0  # type: ignore[arg-type]
    shape = sig.shape
    index = np.arange(sig.size).reshape(shape)
    area = [h[1] * h[2], h[0] * h[2], h[0] * h[1]]
    rows, cols, vals = [], [], []
    diag = np.zeros(sig.size)
    rhs = np.zeros(sig.size)
    for i in np.ndindex(shape):
        if sig[i] == 0:
            continue
        for d in range(3):
            for step in (-1, 1):
                j = list(i)
                j[d] += step
                if not 0 <= j[d] < shape[d]:
                    if d == t:
                        gb = 2 * sig[i] * area[d] / h[d]
                        diag[index[i]] += gb
                        rhs[index[i]] += gb if step == -1 else 0.0
                        continue
                    if not per[d]:
                        continue
                    j[d] %= shape[d]
                if sig[tuple(j)] == 0:
                    continue
                g = 2 * sig[i] * sig[tuple(j)] / (sig[i] + sig[tuple(j)]) * area[d] / h[d]
                diag[index[i]] += g
                rows.append(index[i])
                cols.append(index[tuple(j)])
                vals.append(-g)
    active = np.flatnonzero(sig.ravel() > 0)
    a = (sp.csr_matrix((vals, (rows, cols)), shape=(sig.size,) * 2) + sp.diags(diag)).tocsr()
    v = np.zeros(sig.size)
    v[active] = spla.spsolve(a[active][:, active].tocsc(), rhs[active])
    v = v.reshape(shape)
    inlet = np.take(sig, 0, axis=t)
    current = np.sum(2 * inlet * area[t] / h[t] * (1 - np.take(v, 0, axis=t)))
    cross = np.prod([shape[d] * h[d] for d in range(3) if d != t])
    return float(current * shape[t] * h[t] / cross)


# ---------------------------------------------------------------- dead ends, trimming
def test_dead_end_pore_has_infinite_tortuosity_and_zero_conductivity() -> None:
    mask = np.zeros((12, 5, 5), dtype=bool)
    mask[:8, 2, 2] = True  # enters at x = 0, stops before the outlet
    res = solve_transport(mask, axis="x")
    assert res.sigma_eff_S_per_m == 0.0 and res.relative_conductivity == 0.0
    assert math.isinf(res.tortuosity_factor) and res.tortuosity_factor > 0
    assert math.isinf(res.macmullin_number) and res.bruggeman_exponent == math.inf
    assert not res.percolates and res.percolating_fraction == 0.0
    assert res.volume_fraction == pytest.approx(8 / mask.size)
    payload = json.dumps(res.to_dict(), allow_nan=False)  # strict JSON: no NaN, no Infinity
    assert '"tortuosity_factor": "inf"' in payload


def test_dead_end_branch_and_isolated_cluster_carry_no_current(force_multigrid: None) -> None:
    mask = np.zeros((16, 9, 9), dtype=bool)
    mask[:, 1, 1] = True  # through channel
    mask[6, 1:8, 1] = True  # dead-end side branch, attached
    mask[3:9, 6, 6] = True  # isolated cluster, trimmed
    res = solve_transport(mask, axis="x", flux_rtol=1e-8)
    eps = mask.mean()
    assert res.relative_conductivity == pytest.approx(16 / mask.size, rel=1e-7)
    assert res.tortuosity_factor == pytest.approx(eps * mask.size / 16, rel=1e-7)
    assert res.percolating_fraction == pytest.approx((16 + 6) / mask.sum())


def test_empty_phase_gives_zero_not_nan() -> None:
    res = solve_transport(np.zeros((4, 4, 4), dtype=np.uint8), phase=1, axis="y")
    assert res.volume_fraction == 0.0 and res.sigma_eff_S_per_m == 0.0
    assert math.isinf(res.tortuosity_factor) and res.bruggeman_exponent is None


# ---------------------------------------------------------------- periodic sides
def test_periodic_sides_connect_across_the_boundary(force_multigrid: None) -> None:
    n = 16
    mask = np.zeros((n, n, 6), dtype=bool)
    mask[: n // 2 + 2, n - 3 :, 2:4] = True  # from the inlet, near the top y side
    mask[n // 2 - 2 :, :3, 2:4] = True  # to the outlet, near the bottom y side
    closed = solve_transport(mask, axis="x")
    assert math.isinf(closed.tortuosity_factor)
    wrapped = solve_transport(mask, axis="x", periodic_sides=True, flux_rtol=1e-8)
    assert wrapped.percolating_fraction == 1.0 and 1.0 < wrapped.tortuosity_factor < 10.0
    # Rolling the image along y by 3 joins the two parts inside the box; nothing then touches the
    # y sides, so insulating sides must give exactly the periodic answer.
    rolled = solve_transport(np.roll(mask, 3, axis=1), axis="x", flux_rtol=1e-8)
    assert rolled.tortuosity_factor == pytest.approx(wrapped.tortuosity_factor, rel=1e-7)


def test_periodic_sides_cannot_include_the_transport_axis() -> None:
    with pytest.raises(ConfigError, match="periodic_sides"):
        solve_transport(np.ones((4, 4, 4), bool), axis="z", periodic_sides=(True, True, True))


# ---------------------------------------------------------------- bounds and analytic limits
def test_boolean_insulating_spheres_obey_hashin_shtrikman() -> None:
    """Conducting matrix around overlapping insulating spheres: sigma_eff/sigma <= 2 eps/(3 - eps).

    The bound is nearly attained for dilute inclusions (it equals Maxwell Garnett), so the solver
    must land just below it, not merely anywhere below it.
    """
    for porosity, seed in ((0.9, 1), (0.7, 2), (0.5, 3)):
        matrix = ~_boolean_spheres(40, porosity, 5.0, seed)
        for res in solve_transport_axes(matrix).values():
            eps = res.volume_fraction
            bound = 2 * eps / (3 - eps)
            assert res.relative_conductivity <= bound
            if eps > 0.85:
                assert res.relative_conductivity >= 0.95 * bound
            assert res.bruggeman_exponent == pytest.approx(-math.log(res.tortuosity_factor) / math.log(eps))


def test_insulating_sphere_lattice_converges_to_rayleigh_with_order_one() -> None:
    """Simple cubic array of insulating spheres (volume fraction 0.3) in a conducting matrix.

    One unit cell with the sphere in its centre: the cell faces normal to the field are planes of
    antisymmetry (equipotentials) and the side faces planes of symmetry, so the cell solved with
    the TauFactor boundary conditions is the infinite lattice. Rayleigh (1892):
    sigma_eff/sigma = 1 - 3 phi / (2 + phi - 0.979 phi^(10/3)) = 0.6057 at phi = 0.3.
    Voxel staircases underestimate it by O(h).
    """
    a, phi = 1e-5, 0.3
    radius = (3 * phi / (4 * math.pi)) ** (1 / 3) * a
    micro = Microstructure(
        [[a / 2] * 3],
        [radius],
        [0],
        (Species("s", "SE", 2000.0, 1e10, 0.3),),
        [a] * 3,
        metadata={"top_z_m": a},
    )
    rayleigh = 1 - 3 * phi / (2 + phi - 0.979 * phi ** (10 / 3))
    sigma, tau = [], []
    for n in (16, 32, 64):
        res = solve_transport(voxelize(micro, voxel_size_m=a / n), phase=0, axis="x", flux_rtol=1e-6)
        sigma.append(res.relative_conductivity)
        tau.append(res.tortuosity_factor)
    err = [abs(s / rayleigh - 1) for s in sigma]
    order_err = math.log2(err[0] / err[2]) / 2
    order_diff = math.log2(abs(sigma[1] - sigma[0]) / abs(sigma[2] - sigma[1]))
    assert err[2] < 0.015 and order_err > 0.6 and order_diff > 0.6
    assert 2 * sigma[2] - sigma[1] == pytest.approx(rayleigh, rel=0.005)  # Richardson, order 1
    assert abs(tau[2] - tau[1]) < abs(tau[1] - tau[0])


# ---------------------------------------------------------------- API behaviour
def test_three_axes_of_an_isotropic_medium_agree() -> None:
    pore = ~_boolean_spheres(36, 0.45, 4.0, 7)
    res = solve_transport_axes(pore)
    taus = [res[a].tortuosity_factor for a in "xyz"]
    assert set(res) == {"x", "y", "z"}
    assert max(taus) / min(taus) < 1.15
    assert all(r.converged and 1.0 < r.tortuosity_factor < 4.0 for r in res.values())


def test_label_image_phase_selection_and_sigma0() -> None:
    labels = np.zeros((10, 4, 4), dtype=np.uint8)
    labels[:, :2] = 3
    labels[:, 2:, :1] = 5
    res = solve_transport(labels, phase=[3, 5], axis="x", sigma0_S_per_m=0.01)
    eps = np.isin(labels, [3, 5]).mean()
    assert res.tortuosity_factor == pytest.approx(1.0, abs=1e-4)
    assert res.sigma_eff_S_per_m == pytest.approx(0.01 * eps, rel=1e-4)
    assert res.relative_conductivity == pytest.approx(eps, rel=1e-4)


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"axis": "w", "phase": 1}, "axis"),
        ({"axis": 3, "phase": 1}, "axis"),
        ({"phase": None}, "phase"),
        ({"phase": -1}, "phase"),
        ({"phase": 1, "conductivity": {1: 1.0}}, "phase"),
        ({"conductivity": {1: -2.0}}, "conductivity"),
        ({"phase": 1, "flux_rtol": 0.0}, "flux_rtol"),
        ({"phase": 1, "max_iterations": 0}, "max_iterations"),
        ({"phase": 1, "voxel_size_m": (1.0, -1.0, 1.0)}, "voxel_size_m"),
        ({"phase": 1, "sigma0_S_per_m": 0.0}, "sigma0_S_per_m"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict, key: str) -> None:
    labels = np.ones((4, 4, 4), dtype=np.uint8)
    with pytest.raises(ConfigError, match=key):
        TransportSolver(labels, **kwargs)


def test_bad_images_are_rejected() -> None:
    with pytest.raises(ConfigError, match="image"):
        TransportSolver(np.ones((2, 2, 2, 2), np.uint8), phase=1)
    with pytest.raises(ConfigError, match="image"):
        TransportSolver(np.full((3, 3, 3), -1.0))
    with pytest.raises(ConfigError, match="image"):
        TransportSolver([[1, 2]], phase=1)  # type: ignore[arg-type]


def test_progress_bar_and_potential_before_solve(capsys: pytest.CaptureFixture[str]) -> None:
    mask = np.random.default_rng(0).random((20, 20, 20)) < 0.6
    solver = TransportSolver(mask, axis="x", progress=True)
    with pytest.raises(RuntimeError, match="solve"):
        solver.potential_field()
    tau = solver.solve()
    assert solver.result is not None and tau == solver.result.tortuosity_factor
    assert "voxel CG" in capsys.readouterr().err
    v = solver.potential_field(fill_value=-1.0)
    inside = v != -1.0  # the trimmed (non-percolating) voxels keep the fill value
    assert v.shape == mask.shape and inside.sum() == solver.result.n_unknowns
    assert v[inside].max() <= 1.0 + 1e-4 and v[inside].min() >= -1e-4  # maximum principle


def test_a_failed_solve_is_an_error_and_an_unconverged_one_a_warned_result(monkeypatch, caplog) -> None:
    """A solve that yields no finite current through a phase that connects both faces is a solver
    failure (`TransportSolveError`), never sigma = 0 / tau = inf, which read as "does not percolate";
    a solve stopped by its iteration cap is returned with converged = False and a logged warning."""
    import logging

    from electrodem.analysis import transport

    img = (np.random.default_rng(0).random((24, 24, 24)) < 0.6).astype(np.uint8)
    with caplog.at_level(logging.WARNING, logger="electrodem"):
        res = transport.solve_transport(img, 1, "z", max_iterations=1)
    assert res.percolates and not res.converged and math.isfinite(res.tortuosity_factor)
    assert any("did NOT converge" in r.getMessage() for r in caplog.records)

    real = transport.pcg

    def nan_pcg(*args, **kwargs):
        out = real(*args, **kwargs)
        out.x[:] = np.nan
        return out

    monkeypatch.setattr(transport, "pcg", nan_pcg)
    with pytest.raises(transport.TransportSolveError, match="solver failure, not a percolation result"):
        transport.solve_transport(img, 1, "z")
