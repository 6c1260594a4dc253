"""Resistor network: analytic lattices, series chains, parallel bundles, non-percolating packings."""

from __future__ import annotations

import numpy as np
import pytest

from electrodem.analysis.contacts import build_contact_graph
from electrodem.analysis.resistor import (
    DIRECT_MAX_UNKNOWNS,
    half_contact_resistance,
    resistor_conductivity,
    solve_network,
)
from electrodem.io.snapshot import Microstructure, Species

SIGMA = 7.0


def _species(sigma_e: float = SIGMA, name: str = "am") -> Species:
    return Species(name, "AM", 4750.0, 2e11, 0.25, sigma_e_S_per_m=sigma_e)


def _lattice(n: tuple[int, int, int], radius: float, spacing: float) -> Microstructure:
    """Simple-cubic lattice, first layer centred at spacing/2 above the CC, top plate at n_z * spacing."""
    g = np.stack(np.meshgrid(*[np.arange(k) for k in n], indexing="ij"), -1).reshape(-1, 3)
    pos = (g + 0.5) * spacing
    return Microstructure(pos, np.full(len(pos), radius), np.zeros(len(pos)), (_species(),),
                          box_m=np.array(n) * spacing, metadata={"top_z_m": n[2] * spacing})


@pytest.mark.parametrize("axis", ["x", "y", "z"])
@pytest.mark.parametrize("n", [(3, 4, 5), (5, 3, 2)])
def test_simple_cubic_touching_spheres_give_a_over_R(axis, n):
    """Simple-cubic lattice of touching spheres (radius R, spacing 2R), Holm contacts G = 2 a sigma.

    Derivation with this module's conventions (bulk resistance neglected, ``bulk="none"``):
    * z: each column of n_z spheres is a series of n_z - 1 contacts (1/G = 1/(2 a sigma) each) plus
      one half-contact with each ideal plate (1/(4 a sigma) each), total n_z / (2 a sigma). A column
      carries I = 2 a sigma V / n_z through a cross-section (2R)^2 over the height h = 2 n_z R, so
      sigma_eff = I h / (V (2R)^2) = a sigma / R.
    * x (periodic): a ring of n_x contacts around the box carries I = 2 a sigma V / n_x per row of
      cross-section (2R)^2 over the length L = 2 n_x R: sigma_eff = a sigma / R again.
    Touching spheres have a zero geometric lens, so a is the floor min_contact_radius_rel * R.
    """
    R = 1.3e-6
    a_rel = 0.08
    res = resistor_conductivity(_lattice(n, R, 2 * R), axis=axis, bulk="none", min_contact_radius_rel=a_rel)
    assert res.percolating
    assert res.relative_to_bulk == pytest.approx(a_rel, rel=1e-9)
    assert res.sigma_eff_S_per_m == pytest.approx(a_rel * SIGMA, rel=1e-9)
    # every particle is on a straight column/row carrying the same current
    ax = "xyz".index(axis)
    i_line = res.current_total_A / (np.prod(n) / n[ax])
    np.testing.assert_allclose(res.current_per_particle_A, i_line, rtol=1e-9)


@pytest.mark.parametrize("axis", ["x", "z"])
def test_overlapping_lattice_lens_contacts_and_flux_tube_model(axis):
    """Spacing s = 1.8 R: lens radius a = sqrt(R^2 - s^2/4) for particle pairs and the CC alike.

    bulk="none": sigma_eff / sigma = 2 a / s (as above with the column cross-section s^2 and height
    n s). bulk="flux_tube": every half-contact is R_half = (1 - a/R)^1.5 / (4 a sigma) +
    (s/2) / (sigma pi R^2), 2 n_z of them per column: sigma_eff / sigma = 1 / (2 R_half sigma s).
    """
    R, s = 1.0e-6, 1.8e-6
    a = np.sqrt(R**2 - s**2 / 4)
    m = _lattice((4, 4, 4), R, s)
    none = resistor_conductivity(m, axis=axis, bulk="none", min_contact_radius_rel=0.01)
    assert none.relative_to_bulk == pytest.approx(2 * a / s, rel=1e-9)
    tube = resistor_conductivity(m, axis=axis, bulk="flux_tube", min_contact_radius_rel=0.01)
    r_half = (1 - a / R) ** 1.5 / (4 * a * SIGMA) + (s / 2) / (SIGMA * np.pi * R**2)
    assert tube.relative_to_bulk == pytest.approx(1 / (2 * r_half * SIGMA * s), rel=1e-9)


def test_amg_path_on_a_large_lattice():
    n = (16, 16, 16)
    assert np.prod(n) > DIRECT_MAX_UNKNOWNS
    res = resistor_conductivity(_lattice(n, 1e-6, 2e-6), axis="z", bulk="none", min_contact_radius_rel=0.05)
    assert "AMG" in res.solver
    assert res.relative_to_bulk == pytest.approx(0.05, rel=1e-7)
    resx = resistor_conductivity(_lattice(n, 1e-6, 2e-6), axis="x", bulk="none", min_contact_radius_rel=0.05)
    assert "AMG" in resx.solver and resx.relative_to_bulk == pytest.approx(0.05, rel=1e-7)


def _column(x: float, radii: list[float], sid: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    z, pos = 0.0, []
    for r in radii:
        pos.append([x, 20e-6, z + r])
        z += 2 * r
    return np.array(pos), np.array(radii), np.array(sid)


def test_series_chain_of_unlike_materials():
    """A single column of touching spheres of two materials and varied radii between the plates.

    Each contact is two half-constrictions 1/(4 a sigma_1) + 1/(4 a sigma_2) with a the floor radius
    0.1 * min(r_1, r_2); each plate adds one half-constriction of the particle touching it. The column
    current is 1 V over the sum.
    """
    radii = [1.0e-6, 2.0e-6, 0.5e-6, 1.5e-6, 1.0e-6]
    sid = [0, 1, 1, 0, 1]
    sig = np.array([3.0, 250.0])
    pos, rad, sp = _column(20e-6, radii, sid)
    top = float((pos[:, 2] + rad).max())
    m = Microstructure(pos, rad, sp, (_species(3.0, "a"), _species(250.0, "b")),
                       box_m=[40e-6, 40e-6, top], metadata={"top_z_m": top})
    # a rigid plate on the column (probe depth 0): the default probe would also reach the exposed
    # shoulder of the wider sphere 2 um below the top
    res = resistor_conductivity(m, axis="z", bulk="none", gap_tolerance_rel=1e-6, min_contact_radius_rel=0.1,
                                top_layer_m=0.0)
    r_total = 1 / (4 * 0.1 * rad[0] * sig[sp[0]]) + 1 / (4 * 0.1 * rad[-1] * sig[sp[-1]])
    for k in range(len(rad) - 1):
        a = 0.1 * min(rad[k], rad[k + 1])
        r_total += 1 / (4 * a * sig[sp[k]]) + 1 / (4 * a * sig[sp[k + 1]])
    assert res.current_total_A == pytest.approx(1 / r_total, rel=1e-9)
    assert res.sigma_eff_S_per_m == pytest.approx(top / (r_total * 40e-6 * 40e-6), rel=1e-9)
    assert res.n_contacts == len(rad) - 1


def test_parallel_bundle_adds_column_currents():
    """Three separate columns of equal height 12 um (different radii and conductivities) in parallel."""
    cols = [(10e-6, [1e-6] * 6, 0), (30e-6, [1.5e-6] * 4, 1), (50e-6, [2e-6] * 3, 2)]
    sig = [1.0, 10.0, 0.5]
    parts = [_column(x, radii, [s] * len(radii)) for x, radii, s in cols]
    pos = np.vstack([p[0] for p in parts])
    rad = np.concatenate([p[1] for p in parts])
    sid = np.concatenate([p[2] for p in parts])
    species = tuple(_species(s, f"p{k}") for k, s in enumerate(sig))
    m = Microstructure(pos, rad, sid, species, box_m=[60e-6, 40e-6, 12e-6], metadata={"top_z_m": 12e-6})
    for bulk in ("none", "flux_tube"):
        res = resistor_conductivity(m, axis="z", bulk=bulk, min_contact_radius_rel=0.1)
        expected = 0.0
        for _, radii, s in cols:
            r = radii[0]
            r_half = half_contact_resistance(np.array(sig[s]), np.array(0.1 * r), np.array(r), np.array(r),
                                             bulk)
            expected += 1 / (2 * len(radii) * float(r_half))
        assert res.current_total_A == pytest.approx(expected, rel=1e-9)
    assert res.sigma_bulk_ref_S_per_m == pytest.approx(np.sum(np.array(sig)[sid] * rad**3) / np.sum(rad**3))


def test_non_percolating_packing_gives_zero_and_says_so():
    m = _lattice((3, 3, 4), 1e-6, 2e-6)
    pos = m.positions_m.copy()
    pos[pos[:, 2] > 4e-6, 2] += 0.3e-6  # a gap between layers 2 and 3
    cut = m.with_(positions_m=pos, metadata={"top_z_m": 8.3e-6})
    res = resistor_conductivity(cut, axis="z")
    assert res.sigma_eff_S_per_m == 0.0 and res.relative_to_bulk == 0.0 and not res.percolating
    assert "does not percolate" in res.message
    assert np.all(np.isfinite(res.current_per_particle_A)) and np.all(res.current_per_particle_A == 0)
    # in-plane the layers still wrap x
    assert resistor_conductivity(cut, axis="x").percolating
    # isolated columns (spacing 2.2 R in x) cannot carry current along x
    cols = _lattice((3, 3, 4), 1e-6, 2e-6)
    pos = cols.positions_m.copy()
    pos[:, 0] *= 1.1
    res_x = resistor_conductivity(cols.with_(positions_m=pos, box_m=cols.box_m * [1.1, 1, 1]), axis="x")
    assert res_x.sigma_eff_S_per_m == 0.0 and not res_x.percolating and "wrap" in res_x.message
    # no conducting species at all
    ins = cols.with_(species=(Species("ptfe", "binder", 2200.0, 5e8, 0.46),))
    res_i = resistor_conductivity(ins, axis="z")
    assert res_i.sigma_eff_S_per_m == 0.0 and "no electronic" in res_i.message


def test_random_packing_is_finite_nonnegative_and_conserves_current():
    rng = np.random.default_rng(5)
    n, size = 1500, 20e-6
    rad = rng.uniform(0.8e-6, 1.6e-6, n)
    m = Microstructure(rng.random((n, 3)) * size, rad, np.zeros(n), (_species(),),
                       box_m=[size] * 3, metadata={"top_z_m": size})
    g = build_contact_graph(m)
    for axis in "xyz":
        res = resistor_conductivity(m, axis=axis, graph=g, bulk="flux_tube")
        assert np.isfinite(res.sigma_eff_S_per_m) and res.sigma_eff_S_per_m > 0
        assert np.all(res.current_per_particle_A >= 0)
    # plate currents: what enters at the top leaves at the CC
    res = resistor_conductivity(m, axis="z", graph=g, bulk="flux_tube")
    cc = g.cc
    r_half = half_contact_resistance(SIGMA, g.cc_contact_radius_m[cc], rad[cc], g.cc_l_m[cc], "flux_tube")
    i_cc = np.sum(res.potentials_V[cc] / r_half)
    assert i_cc == pytest.approx(res.current_total_A, rel=1e-6)


def test_solve_network_bridge_dangling_and_floating_nodes():
    """Nodes: 0 source, 1 sink; paths 0-2-1 (g = 1, 1) and 0-3-1 (g = 2, 2), a balanced bridge 2-3,
    node 4 hanging on the source only, nodes 5-6 floating. Current = 1/2 + 1 = 1.5 A."""
    i = [0, 2, 0, 3, 2, 0, 5]
    j = [2, 1, 3, 1, 3, 4, 6]
    g = [1.0, 1.0, 2.0, 2.0, 5.0, 3.0, 1.0]
    phi, cur = solve_network(7, i, j, g, [0], [1])
    assert cur == pytest.approx(1.5, rel=1e-12)
    np.testing.assert_allclose(phi, [1.0, 0.0, 0.5, 0.5, 1.0, 0.0, 0.0], atol=1e-12)


def test_solve_network_matches_dense_solve():
    rng = np.random.default_rng(1)
    n = 60
    i, j = rng.integers(0, n, 400), rng.integers(0, n, 400)
    g = 10.0 ** rng.uniform(-3, 3, 400)
    phi, cur = solve_network(n, i, j, g, [0, 1], [2])
    lap = np.zeros((n, n))
    for a, b, c in zip(i, j, g, strict=True):
        if a != b:
            lap[a, a] += c
            lap[b, b] += c
            lap[a, b] -= c
            lap[b, a] -= c
    unk = np.arange(3, n)
    ref = np.zeros(n)
    ref[[0, 1]] = 1.0
    ref[unk] = np.linalg.solve(lap[np.ix_(unk, unk)], -lap[np.ix_(unk, [0, 1])] @ np.ones(2))
    np.testing.assert_allclose(phi, ref, rtol=1e-9, atol=1e-12)
    assert cur == pytest.approx(float((lap @ ref)[[0, 1]].sum()), rel=1e-9)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="disjoint"):
        solve_network(3, [0, 1], [1, 2], [1.0, 1.0], [0], [0])
    with pytest.raises(ValueError, match="g must be finite"):
        solve_network(3, [0, 1], [1, 2], [1.0, -1.0], [0], [2])
    with pytest.raises(ValueError, match="n_nodes"):
        solve_network(2, [0, 1], [1, 2], [1.0, 1.0], [0], [1])
    m = _lattice((3, 3, 3), 1e-6, 2e-6)
    with pytest.raises(ValueError, match="axis"):
        resistor_conductivity(m, axis="w")
    with pytest.raises(ValueError, match="bulk"):
        resistor_conductivity(m, bulk="cylinder")
    with pytest.raises(ValueError, match="network"):
        resistor_conductivity(m, network="thermal")
    with pytest.raises(ValueError, match="in-plane"):
        resistor_conductivity(m.with_(periodic=(False, True, False)), axis="x")


def _necked_packing(seed: int = 0, n: int = 60, inflate: float = 1.05) -> Microstructure:
    """A random packing of slightly polydisperse spheres (radius 0.45-0.55 um) between two plates.

    Random positions are pushed apart (overlap removal, x/y periodic, z confined to the plates) at a
    solid fraction of 0.55; the radii are then inflated by ``inflate`` so that touching and near-touching
    spheres overlap with resolved necks (median a/r = 0.32 for 1.05), as a compressed or sintered
    packing would. Touching spheres alone would have point contacts that no voxel image resolves.
    """
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(seed)
    r = 0.5 * rng.uniform(0.9, 1.1, n)
    vol = np.sum(4 / 3 * np.pi * r**3) / 0.55
    h = 0.77 * vol ** (1 / 3)
    side = np.sqrt(vol / h)
    pos = rng.random((n, 3)) * [side, side, h]
    for _ in range(2000):
        pos[:, 2] = np.clip(pos[:, 2], r, h - r)
        pos[:, :2] %= side
        p = cKDTree(pos, boxsize=[side, side, 0.0]).query_pairs(2 * r.max(), output_type="ndarray")
        d = pos[p[:, 1]] - pos[p[:, 0]]
        d[:, :2] -= np.round(d[:, :2] / side) * side
        dist = np.linalg.norm(d, axis=1)
        ov = r[p[:, 0]] + r[p[:, 1]] - dist
        hit = ov > 1e-6
        if not hit.any():
            break
        u = d[hit] / dist[hit, None] * ov[hit, None] * 0.525
        np.add.at(pos, p[hit, 0], -u)
        np.add.at(pos, p[hit, 1], u)
    pos[:, 2] = np.clip(pos[:, 2], r, h - r)
    um = 1e-6
    return Microstructure(pos * um, r * inflate * um, np.zeros(n), (_species(),),
                          box_m=np.array([side, side, h]) * um, metadata={"top_z_m": h * um})


@pytest.mark.slow
def test_resistor_network_agrees_with_voxel_solver_on_a_necked_packing():
    """Through-plane sigma_eff/sigma of the solid of a random necked packing (60 spheres, Z ~ 5.6,
    median a/r ~ 0.32): resistor network (Holm, bulk="none") vs the finite-volume voxel solver at
    25 voxels per smallest diameter (periodic x/y sides, plates at z = 0 and top) within 10 %.

    Measured while writing this test: resistor 0.283; voxel 0.287 / 0.276 / 0.271 at 15 / 25 / 35 voxels
    per smallest diameter, i.e. first-order convergence towards ~0.259 at zero voxel size (the
    resistor is 2.5 % above the 25-voxel value and ~9 % above the extrapolated one; three other seeds
    and neck sizes gave -6 to +9 % at 25 voxels and +9 to +12 % extrapolated).
    """
    from electrodem.analysis.transport import solve_transport
    from electrodem.analysis.voxelize import voxelize

    m = _necked_packing()
    g = build_contact_graph(m, gap_tolerance_rel=0.0, min_contact_radius_rel=0.01)
    a_rel = g.contact_radius_m / np.minimum(m.radii_m[g.i], m.radii_m[g.j])
    assert 0.25 < np.median(a_rel) < 0.4
    res = resistor_conductivity(m, axis="z", graph=g, bulk="none")
    img = voxelize(m, voxels_per_smallest_diameter=25)
    vox = solve_transport(img, [1], "z", periodic_sides=(True, True, False), flux_rtol=1e-3)
    # a 1 % current balance is ample for a 10 % comparison (the solver's own tests hold it to 1e-4)
    assert vox.percolates and vox.slice_flux_spread <= 0.01
    assert res.relative_to_bulk == pytest.approx(vox.relative_conductivity, rel=0.10)


def test_high_contrast_composite_matches_direct_solve(monkeypatch):
    """NMC-like AM (1e-3 S/m) with carbon-black-like islands (1e3 S/m): a conductance contrast of 10^6
    with hub nodes. Whatever path the iterative solver takes (AMG-CG, or the SuperLU fallback when CG
    misses the current criterion), sigma_eff equals a plain direct solve."""
    import electrodem.analysis.resistor as resistor_module

    rng = np.random.default_rng(0)
    side, h, n_am, n_cb = 46e-6, 37e-6, 200, 10_000
    pos = np.vstack([rng.random((n_am, 3)), rng.random((n_cb, 3))]) * [side, side, h]
    rad = np.concatenate([rng.uniform(4e-6, 6e-6, n_am), np.full(n_cb, 0.6e-6)])
    species = (_species(1e-3, "nmc"), Species("cb", "CB", 1900.0, 1e10, 0.3, sigma_e_S_per_m=1e3))
    m = Microstructure(pos, rad, np.r_[np.zeros(n_am), np.ones(n_cb)], species, box_m=[side, side, h],
                       metadata={"top_z_m": h})
    g = build_contact_graph(m)
    res = resistor_conductivity(m, axis="z", graph=g)
    assert res.n_nodes_solved > DIRECT_MAX_UNKNOWNS
    assert "AMG" in res.solver or "after AMG-CG" in res.solver
    monkeypatch.setattr(resistor_module, "DIRECT_MAX_UNKNOWNS", 10**9)
    ref = resistor_conductivity(m, axis="z", graph=g)
    assert ref.solver == "direct (SuperLU)"
    assert res.sigma_eff_S_per_m == pytest.approx(ref.sigma_eff_S_per_m, rel=1e-5)


@pytest.mark.parametrize("axis", ["z", "y"])
def test_amg_current_criterion_matches_direct_solve_on_random_packing(axis, monkeypatch):
    """Overlapping random spheres (4000 nodes): AMG-CG stopped on the current balance (1e-6) gives
    sigma_eff within 1e-5 of a direct solve, in-plane (cut criterion) and through-plane."""
    import electrodem.analysis.resistor as resistor_module

    rng = np.random.default_rng(11)
    n, size = 4000, 24e-6
    m = Microstructure(rng.random((n, 3)) * size, rng.uniform(0.8e-6, 1.2e-6, n), np.zeros(n), (_species(),),
                       box_m=[size] * 3, metadata={"top_z_m": size})
    g = build_contact_graph(m)
    res = resistor_conductivity(m, axis=axis, graph=g)
    assert res.solver.startswith("AMG")
    monkeypatch.setattr(resistor_module, "DIRECT_MAX_UNKNOWNS", 10**9)
    ref = resistor_conductivity(m, axis=axis, graph=g)
    assert res.sigma_eff_S_per_m == pytest.approx(ref.sigma_eff_S_per_m, rel=1e-5)
