"""Engine API: initialisation, input validation, capacity growth, walls, guards, checkpoints."""

import subprocess
import sys

import numpy as np
import pytest

from electrodem.config import ConfigError
from electrodem.engine import (
    EngineInitError,
    EngineOptions,
    Guards,
    Material,
    Simulation,
    SimulationError,
    Wall,
    init,
)
from electrodem.engine.walls import hertz_stiffness_N_per_m, servo_gain_m_per_s_per_N

MAT = Material("glass", 2500.0, 1e7, 0.3, restitution=0.5, friction=0.5)


@pytest.fixture(scope="module", autouse=True)
def _engine():
    init(EngineOptions())


def _column(n=60, seed=0, **kw):
    """Spheres on a loose lattice above a floor in a periodic 1 x 1 cm box."""
    rng = np.random.default_rng(seed)
    sim = Simulation(
        [MAT], box_m=(0.01, 0.01, 0.05), walls=[Wall((0, 0, 0), (0, 0, 1), "glass", name="floor")], **kw
    )
    g = np.stack(np.meshgrid(np.arange(4), np.arange(4), np.arange(n // 16 + 1), indexing="ij"), -1).reshape(
        -1, 3
    )
    x = (g[:n] + 0.5) * 2.4e-3 + rng.uniform(-1e-4, 1e-4, (n, 3))
    sim.add_particles(x, rng.uniform(0.9e-3, 1.1e-3, n), "glass")
    return sim


def test_init_is_idempotent_and_refuses_other_options():
    assert init(EngineOptions()) == EngineOptions()
    with pytest.raises(EngineInitError, match="reinit=True"):
        init(EngineOptions(precision="f32"))


@pytest.mark.parametrize(
    "kw, key",
    [
        ({"arch": "tpu"}, "engine.arch"),
        ({"precision": "f16"}, "engine.precision"),
        ({"seed": -1}, "engine.seed"),
    ],
)
def test_engine_options_validated(kw, key):
    with pytest.raises(ConfigError, match=key):
        EngineOptions(**kw)


def test_bad_inputs_name_the_parameter():
    with pytest.raises(ConfigError, match="restitution"):
        Material("x", 1000.0, 1e6, 0.3, restitution=1.5)
    with pytest.raises(ConfigError, match="mode"):
        Wall((0, 0, 0), (0, 0, 1), "glass", mode="wobble")
    sim = Simulation([MAT], box_m=(0.005, 0.005, 0.05))
    with pytest.raises(ConfigError, match="box_m"):
        sim.add_particles([[0.001, 0.001, 0.01]], [2e-3], "glass")  # periodic box too small for the sphere
    with pytest.raises(ConfigError, match="radii_m"):
        sim.add_particles([[0.001, 0.001, 0.01]], [-1.0], "glass")
    with pytest.raises(ConfigError, match="material"):
        sim.add_particles([[0.001, 0.001, 0.01]], [1e-4], "steel")
    with pytest.raises(ConfigError, match="dt_s"):
        Simulation([MAT], box_m=(1, 1, 1), dt_s=-1.0)


def test_capacity_grows_and_particles_keep_their_state():
    sim = _column(30)
    sim.run(steps=200, progress=False)
    before = sim.state()
    cap = sim._store.cap
    m = cap - 30 + 100  # enough to outgrow the store
    k = np.arange(m)
    new = np.column_stack([(k % 10 + 0.5) * 1e-3, (k // 10 % 10 + 0.5) * 1e-3, 0.03 + (k // 100) * 1e-3])
    ids = sim.add_particles(new, 0.4e-3, "glass")
    assert sim.n == 30 + m and sim._store.cap > cap
    after = sim.state()
    assert np.array_equal(after["ids"][:30], before["ids"]) and np.array_equal(ids, np.arange(30, 30 + m))
    assert np.allclose(after["positions_m"][:30], before["positions_m"])
    sim.run(steps=100, progress=False)
    assert sim.diagnostics()["non_finite_particles"] == 0


def test_small_simulations_of_other_sizes_share_pooled_stores():
    """Kernels compile per store object (docs/engine.md, "Storage and compilation"): a later simulation
    of another particle count, material count and pair count must get the same stores back from the
    pool, and the pair capacities stay within 1.5x of what is asked."""
    from electrodem.engine.neighbors import pair_capacity

    first = _column(30)
    first.run(steps=20, progress=False)
    stores = (first._store, first._nl.pairs, first._nl.cells)
    first.free()
    other = Material("steel", 7800.0, 2e7, 0.3)
    second = Simulation([MAT, other, Material("grit", 2000.0, 1e7, 0.25)], box_m=(0.01, 0.01, 0.05),
                        walls=[Wall((0, 0, 0), (0, 0, 1), "steel", name="floor")])
    k = np.arange(400)
    lattice = np.column_stack([k % 8, k // 8 % 8, k // 64]) + 0.5
    second.add_particles(lattice * 1.25e-3, 0.6e-3, [("glass", "steel", "grit")[i % 3] for i in k])
    second.run(steps=20, progress=False)
    assert (second._store, second._nl.pairs, second._nl.cells) == stores
    for m in (1, 16_384, 16_385, 24_577, 10**6, 3 * 2**20 + 1):
        cap = pair_capacity(m)
        top = 1 << (cap.bit_length() - 1)
        assert m <= cap <= max(1.5 * m, 16_384) and cap in (top, 3 * top // 2)


def _stack(walls, **kw) -> Simulation:
    """16 columns of 4 spheres (r = 1 mm) on a square lattice in a periodic 8.08 mm box, 5 um apart
    vertically: each column is a chain of Hertz contacts, so loads and stiffnesses are exact."""
    sim = Simulation([MAT], box_m=(8.08e-3, 8.08e-3, 0.05), walls=walls, background_damping_per_s=60.0, **kw)
    g = np.stack(np.meshgrid(np.arange(4), np.arange(4), np.arange(4), indexing="ij"), -1).reshape(-1, 3)
    sim.add_particles((g + 0.5) * np.array([2.02e-3, 2.02e-3, 2.005e-3]), 1e-3, "glass")
    return sim


def test_settled_column_floor_carries_its_weight_and_servo_holds_its_target():
    floor_wall = Wall((0, 0, 0), (0, 0, 1), "glass", name="floor")
    sim = _stack([floor_wall])
    sim.run(steps=6000, progress=False)
    # Time-averaged over the stack's residual bouncing, the floor carries exactly the weight.
    floor_loads = []
    sim.run(
        steps=2000,
        every=10,
        progress=False,
        callbacks=[lambda s: floor_loads.append(s.wall_state()[0]["load_N"])],
    )
    st = sim.state()
    weight = st["masses_kg"].sum() * 9.81
    assert np.mean(floor_loads) == pytest.approx(weight, rel=0.01)
    floor = sim.wall_state()[0]
    assert floor["pressure_Pa"] == pytest.approx(floor["load_N"] / 8.08e-3**2, rel=1e-12)
    # A servo lid pushes down with 2 x the weight: the floor then carries 3 x the weight. The gain comes
    # from the lid's contact stiffness at the target (16 top spheres) and the response time sqrt(M / k)
    # of the stack on those contacts.
    target = 2.0 * weight
    e_star = 1.0 / (2.0 * (1.0 - 0.3**2) / 1e7)
    k = hertz_stiffness_N_per_m(target, e_star, 1e-3, n_contacts=16)
    gain = servo_gain_m_per_s_per_N(k, sim.dt_s, response_time_s=np.sqrt(st["masses_kg"].sum() / k))
    assert k * gain * sim.dt_s < 1.0
    top = float(np.max(st["positions_m"][:, 2] + st["radii_m"]))
    lid_wall = Wall(
        (0, 0, top + 2e-5),
        (0, 0, -1),
        "glass",
        mode="servo",
        target_force_N=target,
        servo_gain_m_per_s_per_N=gain,
        max_speed_m_per_s=0.05,
        name="lid",
    )
    sim2 = Simulation(
        [MAT], box_m=(8.08e-3, 8.08e-3, 0.05), background_damping_per_s=60.0, walls=[floor_wall, lid_wall]
    )
    sim2.add_particles(st["positions_m"], st["radii_m"], "glass")
    sim2.run(steps=3000, progress=False)
    loads = []
    sim2.run(
        steps=2000,
        every=10,
        progress=False,
        callbacks=[lambda s: loads.append([w["load_N"] for w in s.wall_state()])],
    )
    floor2, lid = np.mean(loads, axis=0)
    assert lid == pytest.approx(target, rel=0.02)
    assert floor2 == pytest.approx(3 * weight, rel=0.02)
    # Held, not just passing through the target: the load barely fluctuates over the last 2000 steps.
    assert np.std(np.asarray(loads)[:, 1]) < 0.02 * target


def test_servo_gain_rule():
    k, dt = 1.0e4, 1.0e-6
    assert servo_gain_m_per_s_per_N(k, dt) == pytest.approx(1.0 / (k * 20 * dt))
    assert servo_gain_m_per_s_per_N(k, dt, response_time_s=1e-3) == pytest.approx(0.1)
    # Hertz: n contacts sharing a load are stiffer than one by n^(2/3); F = 2/3 k d for one contact.
    one = hertz_stiffness_N_per_m(1.0, 1e7, 1e-3)
    assert hertz_stiffness_N_per_m(1.0, 1e7, 1e-3, n_contacts=8) == pytest.approx(4.0 * one)
    d = (3.0 / (4.0 * 1e7 * np.sqrt(1e-3))) ** (2.0 / 3.0)
    assert one == pytest.approx(1.5 / d)
    with pytest.raises(ConfigError, match="dt_s"):
        servo_gain_m_per_s_per_N(k, 0.0)


def test_guard_stops_a_blow_up_after_writing_the_last_good_state(tmp_path):
    sim = _column(40, dt_s=2e-4, guards=Guards(every_steps=50))  # ~10 x the stable time step
    ck = tmp_path / "last_good.npz"
    with pytest.raises(SimulationError) as err:
        sim.run(steps=20_000, progress=False, checkpoint_path=ck)
    assert err.value.checkpoint_path == ck and ck.exists()
    assert any(w in err.value.diagnosis for w in ("overlap", "energy", "non-finite"))
    good = Simulation.load_checkpoint(ck)
    assert good.step < err.value.step and good.diagnostics()["non_finite_particles"] == 0


def test_checkpoint_restart_continues_the_same_trajectory(tmp_path):
    a = _column(48, background_damping_per_s=5.0)
    a.run(steps=1500, progress=False)
    path = a.save_checkpoint(tmp_path / "ck.npz")
    a.run(steps=1500, progress=False)
    b = Simulation.load_checkpoint(path)
    assert b.step == 1500
    b.run(steps=1500, progress=False)
    sa, sb = a.state(), b.state()
    assert np.allclose(sb["positions_m"], sa["positions_m"], rtol=0, atol=1e-9)
    assert np.allclose(sb["velocities_m_per_s"], sa["velocities_m_per_s"], rtol=0, atol=1e-6)
    assert b.time_step_report.dt_s == a.time_step_report.dt_s


def test_time_step_is_reported_and_respects_both_criteria():
    sim = _column(20)
    sim.run(steps=1, progress=False)
    ts = sim.time_step_report
    assert ts.dt_s <= 0.2 * ts.rayleigh_time_s * (1 + 1e-12)
    assert ts.dt_s <= ts.hertz_contact_time_s / 50 * (1 + 1e-12)
    assert ts.rule in ("rayleigh", "hertz")
    assert sim.describe()["time_step"]["dt_s"] == ts.dt_s


def test_f32_precision_runs_in_a_fresh_process():
    code = (
        "import numpy as np\n"
        "from electrodem.engine import EngineOptions, init, Simulation, Material, Wall\n"
        "init(EngineOptions(precision='f32'))\n"
        "m = Material('g', 2500.0, 1e7, 0.3)\n"
        "s = Simulation([m], box_m=(0.01, 0.01, 0.05), walls=[Wall((0, 0, 0), (0, 0, 1), 'g')],"
        " background_damping_per_s=30.0)\n"
        "s.add_particles([[0.005, 0.005, 0.002]], [1e-3], 'g')\n"
        "s.run(steps=20000, progress=False)\n"
        "z = s.state()['positions_m'][0, 2]\n"
        "assert s._store.x.dtype.to_string() == 'f32', s._store.x.dtype\n"
        "print(z)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    z = float(out.stdout.strip().splitlines()[-1])
    # Resting on the floor with the static Hertz overlap (3 m g / (4 E* sqrt(R)))^(2/3) = 0.583 um.
    assert z == pytest.approx(1e-3 - 0.583e-6, abs=0.03e-6)


@pytest.mark.gpu
def test_gpu_backend_runs_the_same_kernels():
    import ctypes.util

    if ctypes.util.find_library("cuda") is None and ctypes.util.find_library("vulkan") is None:
        pytest.skip("no CUDA or Vulkan driver on this machine")
    code = (
        "from electrodem.engine import EngineOptions, init, EngineInitError\n"
        "try:\n    init(EngineOptions(arch='gpu', precision='f32'))\n"
        "except EngineInitError:\n    print('NO_GPU'); raise SystemExit(0)\n"
        "from electrodem.engine import Simulation, Material, Wall\n"
        "m = Material('g', 2500.0, 1e7, 0.3)\n"
        "s = Simulation([m], box_m=(0.01, 0.01, 0.05), walls=[Wall((0, 0, 0), (0, 0, 1), 'g')],"
        " background_damping_per_s=30.0)\n"
        "s.add_particles([[0.005, 0.005, 0.002]], [1e-3], 'g')\n"
        "s.run(steps=4000, progress=False)\n"
        "print(s.state()['positions_m'][0, 2])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    if "NO_GPU" in out.stdout:
        pytest.skip("no GPU found by Taichi")
    assert out.returncode == 0, out.stderr[-2000:]
    assert float(out.stdout.strip().splitlines()[-1]) == pytest.approx(1e-3 - 0.583e-6, abs=0.05e-6)
