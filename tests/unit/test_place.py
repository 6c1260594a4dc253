"""Random sequential addition: no overlaps, inside the box, periodic images respected, size ratio 50."""

from __future__ import annotations

import numpy as np
import pytest

from electrodem.config.errors import ConfigError
from electrodem.io.snapshot import Species
from electrodem.materials.formulation import Population
from electrodem.process.place import PlacementError, PlaceParams, place

SPECIES = (Species("big", "AM", 4750.0, 2e11, 0.25), Species("small", "CB", 1900.0, 1e9, 0.3))


def _population(n_big: int, n_small: int, d_big: float, d_small: float, seed: int = 0) -> Population:
    rng = np.random.default_rng(seed)
    d = np.concatenate([d_big * rng.uniform(0.8, 1.0, n_big), d_small * rng.uniform(0.8, 1.0, n_small)])
    sid = np.concatenate([np.zeros(n_big, np.int32), np.ones(n_small, np.int32)])
    return Population(d, sid, SPECIES, {})


def min_gap_m(pos: np.ndarray, r: np.ndarray, box: np.ndarray) -> float:
    """Smallest surface gap over all pairs, with x/y minimum image; independent of the placer:
    every large particle against all particles directly, small ones among themselves by k-d tree."""
    from scipy.spatial import cKDTree

    thr = np.quantile(r, 0.5) * 2.0
    big = np.flatnonzero(r > thr)
    worst = np.inf
    for i in big:
        d = pos - pos[i]
        d[:, :2] -= box[:2] * np.round(d[:, :2] / box[:2])
        gap = np.linalg.norm(d, axis=1) - r - r[i]
        gap[i] = np.inf
        worst = min(worst, gap.min())
    small = np.flatnonzero(r <= thr)
    t = cKDTree(pos[small], boxsize=[box[0], box[1], 100 * box[2]])
    pairs = t.query_pairs(2 * r[small].max(), output_type="ndarray")
    if len(pairs):
        a, b = small[pairs[:, 0]], small[pairs[:, 1]]
        d = pos[a] - pos[b]
        d[:, :2] -= box[:2] * np.round(d[:, :2] / box[:2])
        worst = min(worst, float((np.linalg.norm(d, axis=1) - r[a] - r[b]).min()))
    return float(worst)


@pytest.mark.parametrize("ratio", [1, 5, 50])
def test_no_overlaps_and_inside_box(ratio):
    d_big = 10e-6
    pop = _population(150, 4000 if ratio > 1 else 0, d_big, d_big / ratio)
    box_xy = 50e-6
    m = place(pop, box_xy, box_xy, PlaceParams(packing_fraction=0.3), seed=1, progress=False)
    assert m.n == len(pop.diameters_m) and np.all(np.isfinite(m.positions_m))
    assert min_gap_m(m.positions_m, m.radii_m, m.box_m) >= 0.0
    z, r = m.positions_m[:, 2], m.radii_m
    assert np.all(z - r >= 0.0) and np.all(z + r <= m.box_m[2])  # above the CC, below the loose top
    assert np.all((m.positions_m[:, :2] >= 0) & (m.positions_m[:, :2] < m.box_m[:2]))  # wrapped
    phi = m.volumes_m3.sum() / np.prod(m.box_m)
    assert phi == pytest.approx(0.3, rel=1e-9)


def test_periodic_images_are_respected():
    """Spheres placed near x = 0 and x = L must not overlap through the periodic face: a dense
    monodisperse layer only fits if the placer uses periodic distances."""
    pop = _population(300, 0, 10e-6, 1e-6, seed=4)
    m = place(pop, 40e-6, 40e-6, PlaceParams(packing_fraction=0.3), seed=2, progress=False)
    pos, r, box = m.positions_m, m.radii_m, m.box_m
    near_lo = pos[:, 0] < r.max()
    near_hi = pos[:, 0] > box[0] - r.max()
    assert near_lo.any() and near_hi.any()
    assert min_gap_m(pos, r, box) >= 0.0


def test_jamming_is_reported():
    pop = _population(2000, 0, 10e-6, 1e-6)
    with pytest.raises(PlacementError, match="lower place.packing_fraction"):
        place(pop, 60e-6, 60e-6, PlaceParams(packing_fraction=0.45, max_rounds=30), seed=0, progress=False)


def test_bad_place_params():
    with pytest.raises(ConfigError, match="place.packing_fraction"):
        PlaceParams(packing_fraction=0.7)
    with pytest.raises(PlacementError, match="smaller than the largest particle"):
        place(_population(2, 0, 30e-6, 1e-6), 20e-6, 20e-6, PlaceParams(), seed=0, progress=False)


def test_hundred_thousand_particles_with_size_ratio_50():
    """10^5 particles, 10 µm AM with 0.2 µm fines, place without overlaps (timing: benchmarks/place.py)."""
    pop = _population(150, 100_000, 10e-6, 0.2e-6, seed=7)
    m = place(pop, 40e-6, 40e-6, PlaceParams(packing_fraction=0.3), seed=3, progress=False)
    assert m.n == 100_150
    assert min_gap_m(m.positions_m, m.radii_m, m.box_m) >= 0.0


def test_sequential_bed_places_without_overlap_inside_its_layer_or_says_it_cannot():
    """The tests' and studies' reference placer: no two spheres overlap (minimum image in x, y), every
    sphere lies between the collector and the layer height, and a sphere that finds no room within its
    draws is an error, not an overlap."""
    from electrodem.process.place import sequential_bed

    rng = np.random.default_rng(3)
    r = np.r_[np.full(20, 4e-6), rng.uniform(0.5e-6, 1e-6, 400)]
    side = 30e-6
    pos, h = sequential_bed(r, side, 0.3, rng)
    assert h > 2 * r.max()
    d = pos[:, None, :] - pos[None, :, :]
    d[..., :2] -= side * np.round(d[..., :2] / side)
    gap = np.linalg.norm(d, axis=-1) - (r[:, None] + r[None, :])
    np.fill_diagonal(gap, np.inf)
    assert gap.min() > 0
    assert np.all(pos[:, 2] >= r) and np.all(pos[:, 2] <= h - r)
    assert np.all((pos[:, :2] >= 0) & (pos[:, :2] < side))
    with pytest.raises(RuntimeError, match="found no room"):
        sequential_bed(np.full(60, 4e-6), 20e-6, 0.6, np.random.default_rng(0), max_tries=50)
    with pytest.raises(ValueError, match="cannot hold a sphere"):  # thinner than one diameter
        sequential_bed(np.full(2, 4e-6), 30e-6, 0.3, np.random.default_rng(0))
