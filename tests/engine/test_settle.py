"""The settle process step: a loose electrode-like bed (size ratio ~10) settles onto the current
collector; particle count, order, species and mass are conserved, the bed densifies, overlaps stay
below 1 % of the smaller radius and every shortcut is recorded in the metadata."""

import json

import numpy as np
import pytest

from electrodem.config import ConfigError
from electrodem.engine import EngineOptions
from electrodem.io.snapshot import Microstructure, Species
from electrodem.process.settle import SettleParams, bed_packing, settle


def _loose_bed(seed: int = 0) -> Microstructure:
    """40 AM spheres (d 4-10 um) and 800 CB spheres (d 0.6-1.2 um), non-overlapping at solid fraction
    ~0.2 in a 24 x 24 um periodic box (sequential random addition, largest first)."""
    rng = np.random.default_rng(seed)
    r = np.concatenate([rng.uniform(2e-6, 5e-6, 40), rng.uniform(0.3e-6, 0.6e-6, 800)])
    box = np.array([24e-6, 24e-6, 0.0])
    h = (4 / 3 * np.pi * r**3).sum() / (box[0] * box[1] * 0.2)
    pos = np.zeros((len(r), 3))
    for k in range(len(r)):
        for _ in range(10_000):
            p = np.array([rng.random() * box[0], rng.random() * box[1], r[k] + rng.random() * (h - 2 * r[k])])
            d = pos[:k] - p
            d[:, :2] -= box[:2] * np.round(d[:, :2] / box[:2])
            if k == 0 or np.all(np.linalg.norm(d, axis=1) > r[:k] + r[k]):
                pos[k] = p
                break
        else:
            raise RuntimeError("could not place the loose bed")
    species = (Species("nmc", "AM", 4750.0, 200e9, 0.25), Species("cb", "CB", 1900.0, 1e9, 0.3))
    sid = np.r_[np.zeros(40, int), np.ones(800, int)]
    return Microstructure(pos, r, sid, species, np.array([24e-6, 24e-6, 2 * h]), metadata={"stage": "placed"})


@pytest.mark.slow
def test_settle_packs_the_bed_and_records_its_shortcuts():
    micro = _loose_bed()
    phi0, _ = bed_packing(micro.positions_m[:, 2], micro.radii_m, 24e-6**2)
    out, rep = settle(micro, SettleParams(max_steps=60_000), EngineOptions(), progress=False)
    assert rep["converged"], rep
    assert out.n == micro.n and np.array_equal(out.ids, micro.ids)
    assert np.array_equal(out.species_id, micro.species_id) and np.allclose(out.radii_m, micro.radii_m)
    assert np.isclose(out.masses_kg.sum(), micro.masses_kg.sum(), rtol=1e-12)
    assert rep["max_overlap_ratio"] < 0.01
    assert rep["packing_fraction"] > phi0 + 0.15 and 0.4 < rep["packing_fraction"] < 0.75
    assert rep["mean_coordination_number"] > 3.0
    z = out.positions_m[:, 2]
    assert np.all(z - out.radii_m > -0.01 * out.radii_m)  # nothing fell through the collector
    assert np.all((out.positions_m[:, :2] >= 0) & (out.positions_m[:, :2] < 24e-6))
    meta = out.metadata["settle"]
    for key in (
        "modulus_scale",
        "modulus_cap_Pa",
        "fines_density_scale",
        "gravity_scale",
        "background_damping_per_s",
    ):
        assert key in meta["scalings"]
    assert out.metadata["stage"] == "settled" and meta["dt_s"] == rep["dt_s"] > 0
    assert out.contacts is not None and len(out.contacts.i) == round(
        rep["mean_coordination_number"] * out.n / 2
    )
    json.dumps(rep)  # the report is JSON-able


@pytest.mark.parametrize(
    "kw, key",
    [
        ({"restitution": 0.0}, "settle.restitution"),
        ({"modulus_scale": 2.0}, "settle.modulus_scale"),
        ({"rolling_model": "sticky"}, "settle.rolling_model"),
        ({"max_steps": 0}, "settle.max_steps"),
        ({"species_overrides": {"nmc": {"stickiness": 1.0}}}, "settle.species_overrides.nmc.stickiness"),
    ],
)
def test_settle_params_are_validated(kw, key):
    with pytest.raises(ConfigError, match=key):
        SettleParams(**kw)


def test_bed_packing_of_a_known_lattice():
    # Simple cubic lattice of touching spheres: phi = pi / 6 exactly.
    g = np.stack(np.meshgrid(np.arange(6), np.arange(6), np.arange(8), indexing="ij"), -1).reshape(-1, 3)
    x = (g + 0.5) * 2.0
    phi, top = bed_packing(x[:, 2], np.ones(len(x)), 12.0 * 12.0)
    assert phi == pytest.approx(np.pi / 6, rel=0.01) and top == pytest.approx(16.0, abs=0.5)
