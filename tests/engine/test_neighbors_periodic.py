"""Neighbour list equals brute force; periodic images keep contacts, history and momentum."""

import numpy as np
import pytest

from electrodem.engine import ContactModel, EngineOptions, Material, Simulation, init


@pytest.fixture(scope="module", autouse=True)
def _engine():
    init(EngineOptions())


def _brute_pairs(x, r, box, periodic, skin):
    d = x[:, None, :] - x[None, :, :]
    for a in range(3):
        if periodic[a]:
            d[..., a] -= box[a] * np.round(d[..., a] / box[a])
    dist = np.linalg.norm(d, axis=-1)
    close = dist < r[:, None] + r[None, :] + skin
    i, j = np.nonzero(np.triu(close, 1))
    return set(zip(i.tolist(), j.tolist(), strict=True))


def test_neighbor_list_equals_brute_force_size_ratio_20():
    rng = np.random.default_rng(1)
    n = 700
    r = np.where(rng.random(n) < 0.05, 1.0, rng.uniform(0.05, 0.2, n))
    box = np.array([9.0, 7.0, 12.0])
    x = rng.random((n, 3)) * box
    sim = Simulation(
        [Material("m", 1000.0, 1e6, 0.3)],
        box_m=box,
        periodic=(True, True, False),
        gravity_m_per_s2=(0, 0, 0),
        skin_m=0.03,
    )
    sim.add_particles(x, r, "m")
    i, j = sim.neighbor_pairs()
    got = {(min(a, b), max(a, b)) for a, b in zip(i.tolist(), j.tolist(), strict=True)}
    assert len(got) == len(i), "a pair is listed twice"
    assert got == _brute_pairs(x, r, box, (True, True, False), 0.03)
    assert sim._nl.n_levels >= 3  # the size ratio really used several grid levels


LX = 8 * 1.99e-3  # a ring of 8 spheres of radius 1 mm, compressed by 1 % by the periodic x length


def _ring_sim(y0, skin=None):
    mat = Material("m", 2500.0, 1e7, 0.3, restitution=0.5, friction=0.4, rolling_friction=0.05)
    sim = Simulation(
        [mat],
        box_m=(LX, 0.04, 0.04),
        periodic=(True, True, True),
        gravity_m_per_s2=(0, 0, 0),
        contact=ContactModel(rolling="epsd"),
        dt_s=2e-6,
        skin_m=skin,
    )
    rng = np.random.default_rng(3)
    # The compressed ring keeps its contacts; random spins give them tangential and rolling history.
    # It drifts at 0.5 m/s along y (and 0.1 m/s along x, so spheres also cross the x faces).
    x = np.stack([np.arange(8) * 1.99e-3 + 1e-4, np.full(8, y0), np.full(8, 0.02)], axis=1)
    v = np.array([0.1, 0.5, 0.0]) + rng.normal(0, 0.01, (8, 3))
    w = rng.normal(0, 20.0, (8, 3))
    sim.add_particles(x, 1e-3, "m", velocities_m_per_s=v, angular_velocities_rad_per_s=w)
    return sim


def _relative(sim):
    st = sim.state()
    d = st["positions_m"] - st["positions_m"][0]
    box = np.array([LX, 0.04, 0.04])
    d -= box * np.round(d / box)
    return d, st["velocities_m_per_s"], st["angular_velocities_rad_per_s"], sim.contact_arrays()


def test_crossing_a_periodic_face_changes_nothing():
    steps = 2500  # 2.5 mm of drift along y: the ring starting near y = L crosses the face
    runs = {}
    # One simulation at a time, freed before the next: the next one reuses its pooled store and the
    # kernels compiled for it (three live simulations compiled every kernel three times).
    cases = (("inside", 0.019, None), ("near_face", 0.039, None), ("never_rebuilt", 0.019, 5.9e-3))
    for name, y0, skin in cases:
        sim = _ring_sim(y0, skin)
        sim.run(steps=10, progress=False)
        c0 = sim.contact_arrays()
        p0 = sim.state()
        sim.run(steps=steps, progress=False)
        p1 = sim.state()
        mom0 = (p0["masses_kg"][:, None] * p0["velocities_m_per_s"]).sum(0)
        mom1 = (p1["masses_kg"][:, None] * p1["velocities_m_per_s"]).sum(0)
        assert np.allclose(mom1, mom0, rtol=0, atol=1e-12 * np.abs(mom0).max())
        runs[name] = (c0, _relative(sim), sim.neighbor_builds, p1["positions_m"])
        sim.free()
    assert runs["near_face"][2] > 3 and runs["never_rebuilt"][2] == 1
    assert np.any(runs["near_face"][3][:, 1] < 0.01)  # it did cross
    c0, ref = runs["inside"][:2]
    for other in ("near_face", "never_rebuilt"):
        got = runs[other][1]
        for a, b in zip(got[:3], ref[:3], strict=True):
            assert np.allclose(a, b, rtol=1e-7, atol=1e-9 * np.abs(b).max())
        assert np.array_equal(got[3]["i"], ref[3]["i"]) and np.array_equal(got[3]["j"], ref[3]["j"])
        assert np.allclose(got[3]["tangential_force_N"], ref[3]["tangential_force_N"], rtol=1e-6, atol=1e-12)
    # The ring's 8 contacts persisted through the crossing and carry friction.
    assert len(c0["i"]) == 8
    assert np.array_equal(ref[3]["i"], c0["i"]) and np.array_equal(ref[3]["j"], c0["j"])
    assert np.max(ref[3]["tangential_force_N"]) > 0


def test_momentum_conserved_in_a_periodic_box():
    rng = np.random.default_rng(7)
    n = 400
    mat = Material("m", 2500.0, 1e7, 0.3, restitution=0.6, friction=0.5, rolling_friction=0.1)
    sim = Simulation(
        [mat],
        box_m=(0.03, 0.03, 0.03),
        periodic=(True, True, True),
        gravity_m_per_s2=(0, 0, 0),
        contact=ContactModel(rolling="constant"),
    )
    g = np.stack(np.meshgrid(*[np.arange(8)] * 3, indexing="ij"), -1).reshape(-1, 3)[:n]
    r = rng.uniform(0.8e-3, 1.6e-3, n)
    sim.add_particles(
        (g + 0.5) * 0.03 / 8,
        r,
        "m",
        velocities_m_per_s=rng.normal(0, 0.3, (n, 3)),
        angular_velocities_rad_per_s=rng.normal(0, 30, (n, 3)),
    )
    st = sim.state()
    ke0 = sim.diagnostics()["kinetic_energy_J"]
    p0 = (st["masses_kg"][:, None] * st["velocities_m_per_s"]).sum(0)
    scale = (st["masses_kg"] * np.linalg.norm(st["velocities_m_per_s"], axis=1)).sum()
    sim.run(steps=2000, progress=False)
    st = sim.state()
    p1 = (st["masses_kg"][:, None] * st["velocities_m_per_s"]).sum(0)
    assert sim.diagnostics()["kinetic_energy_J"] < 0.8 * ke0  # many dissipative collisions happened
    assert np.max(np.abs(p1 - p0)) < 1e-12 * scale
