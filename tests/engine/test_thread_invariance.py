"""The engine's trajectories do not depend on the CPU thread count, bit for bit.

Why this holds, and why it matters: a chaotic DEM trajectory amplifies any round-off difference, so a
force summed in another order on another thread count would give another bed. The engine avoids
order-dependent float sums on the contact path: cells are sorted by index after the counting sort,
each particle gathers the forces of the pairs it does not own through a sorted reverse list instead
of float atomics, and the contact list is sorted before it leaves the engine (see
`electrodem.engine.neighbors`). Integer atomics (slot counters) and max-reductions are order-free.
Bonds are the exception: their forces are scattered with float atomics (`electrodem.engine.bonds`),
so a bonded run is reproducible only to round-off and is not exercised here.

The check: one cohesive (JKR), elastic–plastic (Thornton–Ning), frictional bed with rolling
resistance (every contact sub-model a settle or a press uses) of two sizes falls onto a floor for
4,000 steps and is pressed by a servo plate (its speed follows the force the bed puts on it) for
2,000 more, in two
fresh processes at 1 and 2 threads (``$ELECTRODEM_CPU_THREADS``, the way the test suite's
``--cpu-threads`` reaches the engine); positions, velocities and the plate force must be equal, and
each process must report the thread count it was asked for. At one thread the engine's loops run
serially in the calling thread (`electrodem.engine.arch.SERIAL_LOOPS`, 5x faster per step on small
systems), so this also checks that the serial and the parallel form of every kernel agree bit for bit
(which is why the engine compiles without fast-math).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = r'''
import json, sys
import numpy as np
from electrodem.engine import ContactModel, Material, Simulation, Wall, arch, init

init()
rng = np.random.default_rng(7)
n_big, n_small, box = 36, 800, 6e-3
r = np.r_[np.full(n_big, 0.4e-3), rng.uniform(0.08e-3, 0.12e-3, n_small)]
# Jittered lattices (no overlaps): one layer of big spheres on the floor, two of small ones above.
gb = np.stack(np.meshgrid(np.arange(6), np.arange(6), np.arange(1), indexing="ij"), -1).reshape(-1, 3)
xb = (gb + 0.5) * 1.0e-3 + rng.uniform(-0.05e-3, 0.05e-3, gb.shape)
xb[:, 2] = 0.45e-3
gs = np.stack(np.meshgrid(np.arange(20), np.arange(20), np.arange(2), indexing="ij"), -1).reshape(-1, 3)
xs = gs * 0.3e-3 + np.array([0.15e-3, 0.15e-3, 1.05e-3]) + rng.uniform(-0.02e-3, 0.02e-3, gs.shape)
mat = Material("m", 2500.0, 2e6, 0.3, restitution=0.4, friction=0.5, rolling_friction=0.05,
               yield_pressure_Pa=2e5, surface_energy_J_per_m2=0.02)
sim = Simulation([mat], box_m=(box, box, 8e-3),
                 contact=ContactModel(normal="thornton_ning", rolling="epsd", cohesion="jkr"),
                 walls=[Wall((0, 0, 0), (0, 0, 1), "m", name="floor"),
                        Wall((0, 0, 1.5e-3), (0, 0, -1), "m", mode="velocity", name="plate",
                             velocity_m_per_s=(0, 0, 0.0))],
                 gravity_m_per_s2=(0, 0, -200.0), background_damping_per_s=50.0, impact_speed_m_per_s=0.5)
sim.add_particles(np.r_[xb, xs], r, "m", velocities_m_per_s=rng.normal(0, 0.02, (n_big + n_small, 3)))
sim.run(steps=4000, progress=False)  # the fall
# A servo plate: its speed follows the summed contact force on it, so the trajectory depends on the
# order that sum is taken in (linear regime: 0.04 m/s at zero load, below the speed limit; the bed
# top is at ~1.09 mm).
sim.set_wall(1, point_m=(0, 0, 1.12e-3), mode="servo", target_force_N=1e-4, servo_gain_m_per_s_per_N=400.0,
             max_speed_m_per_s=0.05)
sim.run(steps=2000, progress=False)  # the press
st = sim.state()
np.savez(sys.argv[1], x=st["positions_m"], v=st["velocities_m_per_s"],
         plate=np.asarray(sim.wall_state()[1]["force_N"]))
print(json.dumps({"threads": arch.effective_cpu_threads(), "serial": arch.SERIAL_LOOPS,
                  "contacts": int(len(sim.contact_arrays()["i"])),
                  "max_overlap_ratio": float(sim.diagnostics()["max_overlap_ratio"]), "dt": sim.dt_s}))
'''


def _run(threads: int, out: Path) -> dict:
    env = {**os.environ, "ELECTRODEM_CPU_THREADS": str(threads)}
    p = subprocess.run([sys.executable, "-c", SCRIPT, str(out)], capture_output=True, text=True, env=env,
                       timeout=600)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_cohesive_plastic_bed_is_bitwise_the_same_at_one_and_two_threads(tmp_path):
    one = _run(1, tmp_path / "t1.npz")
    two = _run(2, tmp_path / "t2.npz")
    assert one["threads"] == 1 and two["threads"] == 2
    # At one thread the loops run serially in the calling thread (`arch.SERIAL_LOOPS`), at two in
    # Taichi's thread pool: two compiled forms of every kernel, which must agree bit for bit.
    assert one["serial"] is True and two["serial"] is False
    # A dense, loaded bed, not a gas (596 contacts among 836 spheres here): the contact path ran.
    assert one["contacts"] > 300
    a, b = np.load(tmp_path / "t1.npz"), np.load(tmp_path / "t2.npz")
    assert np.any(a["plate"] != 0.0)  # the plate pressed the bed
    for key in ("x", "v", "plate"):
        assert np.array_equal(a[key], b[key]), key
