"""Thornton–Ning elastic–plastic normal contact: the law's loop, impacts, walls, temperature, checkpoints.

Analytic references (Thornton & Ning, Powder Technol. 99 (1998) 154): Hertz loading up to
delta_y = (pi p_y / (2 E*))^2 R*, then F = F_y + pi p_y R* (delta - delta_y); unloading is Hertz with
R_p = (4 E* / (3 F_max)) ((2 F_max + F_y) / (2 pi p_y))^1.5 about delta_p = delta_max -
(3 F_max / (4 E* sqrt(R_p)))^(2/3). Written here in that power form, independently of the engine's
algebra. Restitution without damping: Thornton & Ning's closed form e(V_i / V_y).
"""

import math

import numpy as np
import pytest
import taichi as ti

from electrodem.config import ConfigError
from electrodem.engine import ContactModel, EngineOptions, Material, Simulation, Wall, init
from electrodem.engine.contact import contact_law
from electrodem.engine.model import P_PY, MaterialTable, PairOverride

E_PA, NU, RHO, PY = 1.0e8, 0.3, 2500.0, 2.0e6
R = 1.0e-3
TN = ContactModel(normal="thornton_ning", tangential="none")


@pytest.fixture(scope="module", autouse=True)
def _engine():
    init(EngineOptions())


def _mat(name: str = "a", py: float | None = PY, e: float = 1.0, **kw) -> Material:
    return Material(name, RHO, E_PA, NU, restitution=e, friction=0.0, yield_pressure_Pa=py, **kw)


def _analytic(e_star: float, r_star: float, p_y: float):
    d_y = (math.pi * p_y / (2 * e_star)) ** 2 * r_star
    f_y = 4 / 3 * e_star * math.sqrt(r_star) * d_y**1.5

    def load(d):
        d = np.asarray(d, float)
        return np.where(
            d <= d_y, 4 / 3 * e_star * np.sqrt(r_star) * d**1.5, f_y + math.pi * p_y * r_star * (d - d_y)
        )

    def unload_params(d_max):
        f_max = float(load(d_max))
        r_p = 4 * e_star / (3 * f_max) * ((2 * f_max + f_y) / (2 * math.pi * p_y)) ** 1.5
        d_p = d_max - (3 * f_max / (4 * e_star * math.sqrt(r_p))) ** (2 / 3)
        return r_p, d_p, f_max

    def work_load(d_max):
        if d_max <= d_y:
            return 8 / 15 * e_star * math.sqrt(r_star) * d_max**2.5
        return (
            8 / 15 * e_star * math.sqrt(r_star) * d_y**2.5
            + f_y * (d_max - d_y)
            + 0.5 * math.pi * p_y * r_star * (d_max - d_y) ** 2
        )

    return d_y, f_y, load, unload_params, work_load


@ti.kernel
def _law(
    d: ti.types.ndarray(),
    dmax: ti.types.ndarray(),
    out: ti.types.ndarray(),
    r_star: float,
    e_star: float,
    p_y: float,
    plastic: ti.template(),
):
    for k in range(d.shape[0]):
        n = ti.Vector([1.0, 0.0, 0.0])
        z = n * 0.0
        _f, _ti, _tj, _ht, _hr, fn = contact_law(
            n, d[k], r_star, 1e-6, z, z, z, z, z, e_star, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, z, z, 0.0,
            False, 0, dmax[k], p_y, plastic,
        )  # fmt: skip
        out[k] = fn


def _run_law(d: np.ndarray, e_star: float, r_star: float, p_y: float, plastic: bool = True) -> np.ndarray:
    out = np.zeros_like(d)
    _law(d, np.maximum.accumulate(d), out, r_star, e_star, p_y, plastic)
    return out


def test_law_loading_unloading_reloading_loop():
    e_star, r_star = 5.0e7, 0.4e-3
    d_y, _f_y, load, unload_params, _w = _analytic(e_star, r_star, PY)
    d1 = 30 * d_y
    up = np.linspace(d_y / 50, d1, 400)
    r_p, d_p, f_max = unload_params(d1)
    down = np.linspace(d1, 0.0, 401)[1:]
    d2 = 60 * d_y
    reup = np.linspace(down[-1], d2, 500)
    f = _run_law(np.concatenate([up, down, reup]), e_star, r_star, PY)
    f_up, f_down, f_re = f[:400], f[400:800], f[800:]
    # Loading: Hertz, then the plastic line (both parts sampled).
    assert np.any(up < d_y) and np.any(up > d_y)
    np.testing.assert_allclose(f_up, load(up), rtol=1e-9)
    # Unloading: Hertz with R_p about delta_p, zero below delta_p.
    ana_down = np.where(down > d_p, 4 / 3 * e_star * math.sqrt(r_p) * np.clip(down - d_p, 0, None) ** 1.5, 0)
    on = down > d_p * 1.001
    np.testing.assert_allclose(f_down[on], ana_down[on], rtol=1e-9)
    assert np.all(f_down[down < d_p] == 0.0)
    # Residual overlap where the unloading force vanishes, on the sampled path.
    d_zero = down[np.argmax(f_down == 0.0)]
    assert d_zero == pytest.approx(d_p, rel=0.01)
    assert 0.5 * d1 < d_p < d1  # mostly permanent at 30 delta_y
    # Reloading retraces the unloading curve up to delta_max, then continues on the plastic line.
    below = reup <= d1
    ana_re = np.where(reup > d_p, 4 / 3 * e_star * math.sqrt(r_p) * np.clip(reup - d_p, 0, None) ** 1.5, 0)
    np.testing.assert_allclose(
        f_re[below & (reup > 1.001 * d_p)], ana_re[below & (reup > 1.001 * d_p)], rtol=1e-9
    )
    np.testing.assert_allclose(f_re[~below], load(reup[~below]), rtol=1e-9)
    # The force is continuous at delta_max on the unloading curve.
    assert 4 / 3 * e_star * math.sqrt(r_p) * (d1 - d_p) ** 1.5 == pytest.approx(f_max, rel=1e-12)


def test_law_is_hertz_when_yield_pressure_is_huge_or_zero():
    e_star, r_star = 5.0e7, 0.4e-3
    d = np.concatenate([np.linspace(1e-8, 2e-5, 200), np.linspace(2e-5, 1e-8, 200)])
    hertz = _run_law(d, e_star, r_star, 0.0, plastic=False)
    np.testing.assert_allclose(hertz, 4 / 3 * e_star * np.sqrt(r_star) * d**1.5, rtol=1e-12)
    assert np.array_equal(_run_law(d, e_star, r_star, 1e30), hertz)
    assert np.array_equal(_run_law(d, e_star, r_star, 0.0), hertz)


def _pair_sim(v_rel: float, e: float = 1.0, py: float | None = PY, skin_m: float | None = None, **kw):
    mats = [_mat("a", py, e), _mat("b", py, e)]
    sim = Simulation(
        mats,
        box_m=(0.1, 0.1, 0.1),
        periodic=(False, False, False),
        gravity_m_per_s2=(0, 0, 0),
        contact=kw.pop("contact", TN),
        steps_per_contact=100,
        impact_speed_m_per_s=v_rel,
        skin_m=skin_m,
        **kw,
    )
    gap = 0.01 * R
    sim.add_particles(
        [[0.05, 0.05, 0.05], [0.05 + 2 * R + gap, 0.05, 0.05]],
        [R, R],
        ["a", "b"],
        velocities_m_per_s=[[0.5 * v_rel, 0, 0], [-0.5 * v_rel, 0, 0]],
    )
    sim.run(until=0.4 * gap / v_rel, progress=False)
    return sim


def _collide(v_rel: float, **kw) -> tuple[float, float, Simulation]:
    """Restitution coefficient and largest overlap (m) of a head-on collision of two equal spheres."""
    sim = _pair_sim(v_rel, **kw)
    peak = [0.0]

    def rec(s):
        c = s.contact_arrays()
        if len(c["i"]):
            peak[0] = max(peak[0], float(c["overlap_m"][0]))

    sim.run(
        until=lambda s: s.state()["velocities_m_per_s"][0, 0] < 0 and s.contact_arrays()["i"].size == 0,
        steps=400_000,
        every=5,
        callbacks=[rec],
        progress=False,
    )
    v = sim.state()["velocities_m_per_s"]
    return -(v[0, 0] - v[1, 0]) / v_rel, peak[0], sim


def _star():
    e_star = E_PA / (2 * (1 - NU**2))
    m = RHO * 4 / 3 * math.pi * R**3
    return e_star, R / 2, m / 2


def _v_yield() -> float:
    e_star, r_star, m_star = _star()
    d_y, *_rest, work = _analytic(e_star, r_star, PY)
    return math.sqrt(2 * work(d_y) / m_star)


def _e_thornton_ning(v: float, v_y: float) -> float:
    q = v_y / v
    return (
        math.sqrt(6 * math.sqrt(3) / 5)
        * math.sqrt(1 - q * q / 6)
        * (q / (q + 2 * math.sqrt(6 / 5 - q * q / 5))) ** 0.25
    )


def test_impact_restitution_follows_thornton_ning_and_carries_history_over_rebuilds():
    v_y = _v_yield()
    e_star, r_star, m_star = _star()
    _d_y, _f_y, _load, unload_params, work = _analytic(e_star, r_star, PY)
    es = []
    for ratio in (3.0, 10.0):
        v = ratio * v_y
        # A skin of a few overlaps forces list rebuilds during the contact: delta_max must survive them.
        e, peak, sim = _collide(v, skin_m=2e-6)
        assert sim.neighbor_builds > 3
        assert e == pytest.approx(_e_thornton_ning(v, v_y), rel=0.01)
        # Energy balance: incoming KE = loading work to the peak; outgoing KE = elastic unloading energy.
        d_max = peak
        assert work(d_max) == pytest.approx(0.5 * m_star * v * v, rel=0.01)
        r_p, d_p, f_max = unload_params(d_max)
        assert 0.5 * m_star * (e * v) ** 2 == pytest.approx(0.4 * f_max * (d_max - d_p), rel=0.02)
        es.append(e)
        sim.free()
    assert es[1] < es[0] < 1.0


def test_impact_below_yield_keeps_restitution():
    v = 0.5 * _v_yield()
    e_el, _p, sim = _collide(v)
    sim.free()
    assert e_el == pytest.approx(1.0, abs=2e-3)
    e_tn, _p, sim = _collide(v, e=0.7)
    sim.free()
    e_hz, _p, sim = _collide(v, e=0.7, contact=ContactModel(tangential="none"))
    sim.free()
    assert e_tn == pytest.approx(0.7, rel=0.02)
    assert e_tn == pytest.approx(e_hz, rel=1e-6)


def _wall_sim(g: float) -> Simulation:
    sim = Simulation(
        [_mat("a", PY, 0.3), _mat("b", PY, 0.3)],
        box_m=(0.1, 0.1, 0.1),
        periodic=(False, False, False),
        gravity_m_per_s2=(0, 0, -g),
        contact=TN,
        walls=[Wall((0, 0, 0), (0, 0, 1), "b")],
        background_damping_per_s=2.0e4,
        impact_speed_m_per_s=0.1,
        steps_per_contact=50,
    )
    sim.add_particles([[0.05, 0.05, R]], [R], "a")
    return sim


def test_wall_press_and_release_leaves_residual_overlap():
    g = 6000.0
    sim = _wall_sim(g)
    m = RHO * 4 / 3 * math.pi * R**3
    e_star = E_PA / (2 * (1 - NU**2))
    d_y, f_y, _load, unload_params, _w = _analytic(e_star, R, PY)
    f = m * g
    assert f > 3 * f_y
    d_load = d_y + (f - f_y) / (math.pi * PY * R)
    sim.run(until=0.02, progress=False)
    loaded = float(sim.wall_overlaps_m(0)[0])
    assert loaded == pytest.approx(d_load, rel=0.01)
    # The guard's elastic overlap is the overlap above the plastic one delta_p(delta_max); delta_max (the
    # wall history, read from the store) exceeds the resting overlap by the damped oscillation's swing.
    diag = sim.diagnostics()
    d_max = float(sim._store.particles_to_numpy(sim.n)["wdm"][0, 0])
    assert loaded <= d_max < 1.01 * loaded
    assert diag["max_overlap_ratio"] == pytest.approx(loaded / R, rel=1e-12)
    assert diag["max_elastic_overlap_ratio"] == pytest.approx(
        (loaded - unload_params(d_max)[1]) / R, rel=1e-9
    )
    sim.set_gravity((0, 0, 0))
    sim.run(until=0.04, progress=False)
    residual = float(sim.wall_overlaps_m(0)[0])
    _r_p, d_p, _f = unload_params(loaded)
    assert residual == pytest.approx(d_p, rel=0.02)
    assert residual > 0.2 * loaded  # a quarter of the loaded overlap is permanent at F = 4.6 F_y
    # Recoverable elastic energy is that of the unloading branch: ~0 at the residual overlap.
    assert sim.diagnostics()["elastic_energy_J"] < 1e-3 * f * loaded
    sim.free()


def test_guard_bounds_the_elastic_overlap_and_the_total_flattening_separately():
    g = 6000.0
    sim = _wall_sim(g)
    sim.run(until=0.02, progress=False)
    total, elastic = (sim.diagnostics()[k] for k in ("max_overlap_ratio", "max_elastic_overlap_ratio"))
    assert elastic < 0.8 * total  # a quarter of the overlap is plastic flattening
    sim.free()
    from electrodem.engine import Guards, SimulationError

    def press(elastic_guard: float, total_guard: float) -> None:
        guarded = _wall_sim(g)
        guarded.guards = Guards(max_overlap_ratio=elastic_guard, max_total_overlap_ratio=total_guard,
                                every_steps=50)  # fmt: skip
        try:
            guarded.run(until=0.02, progress=False)
        finally:
            guarded.free()

    # Elastic guard between the two: a plastic contact passes where an elastic one of this overlap stops.
    press(1.05 * elastic, 1.2 * total)
    with pytest.raises(SimulationError, match="elastic \\+ plastic"):
        press(1.05 * elastic, 0.95 * total)
    with pytest.raises(SimulationError, match="elastic overlap/radius"):
        press(0.8 * elastic, 10 * total)
    with pytest.raises(ConfigError, match="max_total_overlap_ratio"):
        Guards(max_overlap_ratio=0.5, max_total_overlap_ratio=0.4)


def test_temperature_softening_of_the_yield_pressure():
    soft = Material(
        "pvdf", 1780.0, 2e9, 0.35, yield_pressure_Pa=5e7, softening_onset_K=400.0, melting_K=450.0
    )
    hard = _mat("am", 2e8)
    elastic = _mat("el", None)
    tab = MaterialTable((soft, hard, elastic))
    assert soft.softening_factor(300.0) == 1.0
    assert soft.softening_factor(400.0) == 1.0
    assert soft.softening_factor(425.0) == pytest.approx(0.51)
    assert soft.softening_factor(450.0) == pytest.approx(0.02)
    assert soft.softening_factor(900.0) == pytest.approx(0.02)
    assert hard.softening_factor(900.0) == 1.0
    t = tab.pair_table(TN, 425.0)
    assert t[0, 0, P_PY] == pytest.approx(0.51 * 5e7)
    assert t[0, 1, P_PY] == pytest.approx(0.51 * 5e7)  # the softer body limits the pressure
    assert t[1, 1, P_PY] == pytest.approx(2e8)
    assert t[1, 2, P_PY] == pytest.approx(2e8)  # an elastic partner never limits it
    assert t[2, 2, P_PY] == 0.0
    assert tab.pair_table(ContactModel(), 425.0)[..., P_PY].max() == 0.0  # Hertz: column unused
    ov = MaterialTable((soft, hard), {("am", "pvdf"): PairOverride(yield_pressure_Pa=1e7)})
    assert ov.pair_table(TN, 450.0)[0, 1, P_PY] == pytest.approx(0.02 * 1e7)
    sim = Simulation([soft, hard], box_m=(1, 1, 1), contact=TN, temperature_K=300.0)
    table = sim._store.table.to_numpy()
    assert table[0, 0, P_PY] == pytest.approx(5e7)
    sim.set_temperature(450.0)
    assert sim._store.table.to_numpy()[0, 0, P_PY] == pytest.approx(0.02 * 5e7)
    assert sim.describe()["temperature_K"] == 450.0
    sim.free()
    with pytest.raises(ConfigError, match="melting_K"):
        _mat("x", 1e6, softening_onset_K=400.0)
    with pytest.raises(ConfigError, match="melting_K"):
        _mat("x", 1e6, softening_onset_K=400.0, melting_K=300.0)
    with pytest.raises(ConfigError, match="yield_pressure_Pa"):
        _mat("x", -1.0)
    with pytest.raises(ConfigError, match="temperature_K"):
        Simulation([hard], box_m=(1, 1, 1), temperature_K=-5.0)


def test_checkpoint_round_trip_keeps_largest_overlaps(tmp_path):
    v = 10 * _v_yield()
    sim = _pair_sim(v, walls=[Wall((0, 0, 0.05 - 1.5 * R), (0, 0, 1), "b")], temperature_K=350.0)
    # A third sphere hits the wall at the same time as the pair collides.
    sim.add_particles([[0.08, 0.08, 0.05 - 0.5 * R + 0.006 * R]], [R], "a", velocities_m_per_s=[[0, 0, -v]])
    sim.run(until=lambda s: s.state()["velocities_m_per_s"][0, 0] < 0, steps=100_000, every=5, progress=False)
    sim.run(steps=5, progress=False)  # unloading: the force now depends on delta_max
    assert len(sim.contact_arrays()["i"]) == 1 and sim.wall_overlaps_m(0)[2] > 0
    path = sim.save_checkpoint(tmp_path / "ck.npz")
    with np.load(path) as z:
        assert np.max(z["h_dm"]) > 0 and np.max(z["p_wdm"]) > 0
    sim2 = Simulation.load_checkpoint(path)
    assert sim2.temperature_K == 350.0
    for s in (sim, sim2):
        s.run(steps=100, progress=False)
    a, b = sim.state(), sim2.state()
    np.testing.assert_allclose(a["positions_m"], b["positions_m"], rtol=0, atol=1e-15)
    np.testing.assert_allclose(a["velocities_m_per_s"], b["velocities_m_per_s"], rtol=1e-12, atol=1e-15)
    sim.free()
    sim2.free()
