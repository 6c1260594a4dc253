"""Voxelization of sphere snapshots: brute force, periodic wrap, overlap rule, volume convergence."""

from __future__ import annotations

import math

import numpy as np
import pytest

import electrodem.analysis.voxelize as voxelize_module
from electrodem.analysis.voxelize import VoxelImage, voxelize
from electrodem.config.errors import ConfigError
from electrodem.io.snapshot import Microstructure, Species

SPECIES = (
    Species("NMC", "AM", 4700.0, 1.4e11, 0.3),
    Species("CB", "CB", 1900.0, 1e10, 0.3),
    Species("PTFE", "binder", 2200.0, 5e8, 0.46),
)


def _micro(
    pos: np.ndarray, radii: np.ndarray, species: np.ndarray, box: list[float], top: float | None = None
) -> Microstructure:
    meta = {} if top is None else {"top_z_m": top}
    return Microstructure(pos, radii, species, SPECIES, box, metadata=meta)


def _brute_force(micro: Microstructure, image: VoxelImage, table: np.ndarray) -> np.ndarray:
    """Every voxel centre against every periodic image of every sphere; smallest power wins."""
    h = np.array(image.voxel_size_m)
    centres = [(np.arange(n) + 0.5) * h[d] for d, n in enumerate(image.shape)]
    grid = np.stack(np.meshgrid(*centres, indexing="ij"), axis=-1).reshape(-1, 1, 3)
    best = np.full(grid.shape[0], np.inf)
    labels = np.zeros(grid.shape[0], dtype=np.uint8)
    box = micro.box_m
    for sx in (-1, 0, 1):
        for sy in (-1, 0, 1):
            pos = micro.positions_m + np.array([sx * box[0], sy * box[1], 0.0])
            power = np.sum((grid - pos[None]) ** 2, axis=-1) - micro.radii_m[None] ** 2
            power[:, table[micro.species_id] == 0] = np.inf
            k = np.argmin(power, axis=1)
            p = power[np.arange(len(k)), k]
            better = (p < 0) & (p < best)
            best[better] = p[better]
            labels[better] = table[micro.species_id[k[better]]]
    return labels.reshape(image.shape)


def _random_spheres(
    n: int, box: np.ndarray, r_range: tuple[float, float], seed: int, overlap: bool, z_margin: bool
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    pos, rad = [], []
    while len(pos) < n:
        r = rng.uniform(*r_range)
        lo = np.array([0.0, 0.0, r if z_margin else -r])
        hi = np.array([box[0], box[1], box[2] - r if z_margin else box[2] + r])
        p = lo + rng.random(3) * (hi - lo)
        if not overlap and pos:
            d = np.array(pos) - p
            d[:, :2] -= np.round(d[:, :2] / box[:2]) * box[:2]
            if np.any(np.linalg.norm(d, axis=1) < np.array(rad) + r):
                continue
        pos.append(p)
        rad.append(r)
    return np.array(pos), np.array(rad)


def test_equals_brute_force_with_periodic_wrap_clipping_and_overlaps() -> None:
    box = np.array([20e-6, 24e-6, 16e-6])
    pos, rad = _random_spheres(30, box, (1.5e-6, 4.5e-6), seed=5, overlap=True, z_margin=False)
    species = np.arange(30) % 3
    micro = _micro(pos, rad, species, box.tolist(), top=15e-6)
    image = voxelize(micro, voxel_size_m=1e-6)
    assert image.shape == (20, 24, 15)
    assert np.array_equal(image.labels, _brute_force(micro, image, np.array([1, 2, 3])))
    mapped = voxelize(micro, voxel_size_m=1e-6, phase_of_species={"NMC": 1, "CB": 2, "PTFE": 0})
    assert np.array_equal(mapped.labels, _brute_force(micro, mapped, np.array([1, 2, 0])))
    assert mapped.phase_names == ("pore", "NMC", "CB")


def test_volume_fractions_converge_to_the_analytic_sphere_volumes() -> None:
    box = np.array([30e-6, 30e-6, 24e-6])
    pos, rad = _random_spheres(40, box, (1.5e-6, 3.5e-6), seed=11, overlap=False, z_margin=True)
    species = (np.arange(40) % 2).astype(np.int32)
    micro = _micro(pos, rad, species, box.tolist(), top=float(box[2]))
    vol = 4.0 / 3.0 * math.pi * rad**3
    exact = np.array([vol[species == k].sum() for k in (0, 1)]) / np.prod(box)
    errors = []
    for res in (4, 8, 16):
        image = voxelize(micro, voxels_per_smallest_diameter=res)
        assert image.voxels_per_smallest_diameter == pytest.approx(res, rel=0.05)
        fr = image.volume_fractions()
        got = np.array([fr["NMC"], fr["CB"]])
        assert fr["pore"] == pytest.approx(1 - got.sum())
        errors.append(np.abs(got / exact - 1).max())
    assert errors[2] < 0.01
    assert errors[2] < errors[1] < errors[0]


def test_periodic_images_are_translations() -> None:
    box = [16e-6, 16e-6, 16e-6]
    centred = voxelize(
        _micro(np.array([[8e-6, 8e-6, 8e-6]]), np.array([5e-6]), np.array([0]), box),
        voxel_size_m=1e-6,
        z_max_m=16e-6,
    )
    corner = voxelize(
        _micro(np.array([[0.0, 0.0, 8e-6]]), np.array([5e-6]), np.array([0]), box),
        voxel_size_m=1e-6,
        z_max_m=16e-6,
    )
    assert np.array_equal(np.roll(centred.labels, (8, 8), axis=(0, 1)), corner.labels)
    assert centred.periodic == (True, True, False)


def test_overlapping_spheres_are_split_on_the_radical_plane() -> None:
    r1, r2, dist = 6e-6, 3e-6, 6.5e-6
    micro = _micro(
        np.array([[10e-6, 12e-6, 12e-6], [10e-6 + dist, 12e-6, 12e-6]]),
        np.array([r1, r2]),
        np.array([0, 1]),
        [30e-6, 24e-6, 24e-6],
        top=24e-6,
    )
    image = voxelize(micro, voxel_size_m=0.5e-6)
    x_plane = 10e-6 + (dist**2 + r1**2 - r2**2) / (2 * dist)  # plane of the contact circle
    centres = [(np.arange(n) + 0.5) * h for n, h in zip(image.shape, image.voxel_size_m, strict=True)]
    x, y, z = np.meshgrid(*centres, indexing="ij")
    in1 = (x - 10e-6) ** 2 + (y - 12e-6) ** 2 + (z - 12e-6) ** 2 < r1**2
    in2 = (x - 10e-6 - dist) ** 2 + (y - 12e-6) ** 2 + (z - 12e-6) ** 2 < r2**2
    both = in1 & in2
    assert both.sum() > 100
    assert np.all(image.labels[both & (x < x_plane)] == 1)
    assert np.all(image.labels[both & (x > x_plane)] == 2)
    assert np.all(image.labels[in1 & ~in2] == 1) and np.all(image.labels[in2 & ~in1] == 2)


def test_species_mapped_to_pore_do_not_carve_solid() -> None:
    # A binder bead sitting on the AM surface: with its own label it takes its side of the
    # radical plane; mapped to pore it must leave the AM sphere whole.
    micro = _micro(
        np.array([[8e-6, 8e-6, 8e-6], [12.5e-6, 8e-6, 8e-6]]),
        np.array([5e-6, 2e-6]),
        np.array([0, 2]),
        [16e-6] * 3,
        top=16e-6,
    )
    alone = voxelize(
        _micro(micro.positions_m[:1], micro.radii_m[:1], np.array([0]), [16e-6] * 3, top=16e-6),
        voxel_size_m=0.5e-6,
    )
    dropped = voxelize(micro, voxel_size_m=0.5e-6, phase_of_species=[1, 1, 0])
    assert np.array_equal(dropped.labels, alone.labels)
    carved = voxelize(micro, voxel_size_m=0.5e-6)
    assert np.count_nonzero(carved.labels == 3) > 0


def test_z_range_defaults_to_the_top_and_clips() -> None:
    box = [10e-6, 10e-6, 40e-6]
    micro = _micro(
        np.array([[5e-6, 5e-6, 3e-6], [5e-6, 5e-6, 9e-6]]), np.array([3e-6, 2e-6]), np.array([0, 1]), box
    )
    image = voxelize(micro, voxel_size_m=1e-6)
    assert micro.top_m() == pytest.approx(11e-6)
    assert image.shape == (10, 10, 11)
    low = voxelize(micro, voxel_size_m=1e-6, z_max_m=5e-6)
    assert low.shape == (10, 10, 5)
    assert np.array_equal(low.labels, image.labels[:, :, :5])
    assert image.extent_m == pytest.approx((10e-6, 10e-6, 11e-6))


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"voxels_per_smallest_diameter": 4, "voxel_size_m": 1e-6}, "voxel_size_m"),
        ({"voxels_per_smallest_diameter": -1.0}, "voxels_per_smallest_diameter"),
        ({"voxel_size_m": 0.0}, "voxel_size_m"),
        ({"voxel_size_m": 1e-9}, "max_voxels"),
        ({"z_max_m": -1.0}, "z_max_m"),
        ({"phase_of_species": {"graphite": 1}}, "phase_of_species"),
        ({"phase_of_species": [1, 2]}, "phase_of_species"),
        ({"phase_of_species": {"NMC": 1}}, "missing"),
        ({"phase_of_species": [1, 2, 300]}, "phase_of_species"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict, key: str) -> None:
    micro = _micro(np.array([[5e-6, 5e-6, 5e-6]]), np.array([2e-6]), np.array([0]), [10e-6] * 3)
    with pytest.raises(ConfigError, match=key):
        voxelize(micro, **kwargs)


def test_chunked_and_slabbed_stamping_give_the_same_image(monkeypatch: pytest.MonkeyPatch) -> None:
    box = np.array([20e-6, 20e-6, 20e-6])
    pos, rad = _random_spheres(25, box, (1e-6, 6e-6), seed=2, overlap=True, z_margin=False)
    micro = _micro(pos, rad, np.arange(25) % 3, box.tolist(), top=20e-6)
    whole = voxelize(micro, voxel_size_m=0.5e-6)
    monkeypatch.setattr(voxelize_module, "_CHUNK_ELEMENTS", 700)  # far smaller than one sphere's box
    assert np.array_equal(voxelize(micro, voxel_size_m=0.5e-6).labels, whole.labels)
