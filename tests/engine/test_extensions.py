"""Force-extension hook: an extension's force enters the integration exactly, follows particles across
the neighbour-list re-ordering, and survives a checkpoint."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from electrodem.engine import EngineOptions, Material, Simulation, init
from electrodem.engine.extensions import Extension


@pytest.fixture(scope="module", autouse=True)
def _engine() -> None:
    init(EngineOptions(arch="cpu", precision="f64"))


class PushOne(Extension):
    """A constant force (N) on one particle given by external index (test double)."""

    def __init__(self, index: int, force_N: tuple[float, float, float], name: str = "push") -> None:
        self.index, self.force, self.name = int(index), np.asarray(force_N, float), name
        self.calls = 0

    def add_forces(self, sim: Any, time_s: float, dt_s: float) -> None:
        i = int(sim._store.intern[self.index])
        sim._store.f[i] = sim._store.f[i] + self.force
        self.calls += 1

    def work_done_J(self, sim: Any) -> float:
        # The pushed particle's displacement (from rest at its start position) under the constant force.
        if not hasattr(self, "x0"):
            self.x0 = sim.state()["positions_m"][self.index]
        return float(self.force @ (sim.state()["positions_m"][self.index] - self.x0))

    def describe(self) -> dict[str, Any]:
        return {"index": self.index, "force_N": self.force.tolist(), "name": self.name}

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"calls": np.array(self.calls)}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.calls = int(state["calls"])

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> PushOne:
        return cls(d["index"], tuple(d["force_N"]), d["name"])


def _sim() -> Simulation:
    sim = Simulation([Material("m", 1000.0, 1e7, 0.3)], box_m=(1e-2, 1e-2, 1e-2), gravity_m_per_s2=(0, 0, 0))
    rng = np.random.default_rng(1)
    # A sparse cloud (no contacts) so that the pushed particle moves under the extension force alone;
    # the pushed one is added last so that re-ordering moves it to another internal index.
    x = rng.uniform(1e-3, 9e-3, size=(30, 3))
    x = x[np.argsort(x[:, 0])][::-1].copy()
    x[:, 2] = np.linspace(1e-3, 9e-3, 30)
    sim.add_particles(x, 5e-5, "m")
    return sim


def test_extension_force_integrates_exactly_and_follows_reordering(tmp_path) -> None:
    sim = _sim()
    f = (2e-12, -1e-12, 0.5e-12)  # small enough that the particle stays inside the periodic box
    ext = sim.add_extension(PushOne(29, f))
    ext.x0 = sim.state()["positions_m"][29]
    sim.set_time_step(1e-4)
    st0 = sim.state()
    m = st0["masses_kg"][29]
    steps = 400
    sim.run(steps=steps, progress=False)
    st = sim.state()
    t = steps * 1e-4
    expect = st0["positions_m"][29] + 0.5 * np.asarray(f) / m * t**2
    np.testing.assert_allclose(
        st["positions_m"][29] - st0["positions_m"][29], expect - st0["positions_m"][29], rtol=1e-8
    )
    np.testing.assert_allclose(st["velocities_m_per_s"][29], np.asarray(f) / m * t, rtol=1e-9)
    # Nobody else moved: the force went to the right particle whatever the internal order.
    others = np.delete(np.arange(30), 29)
    assert np.abs(st["velocities_m_per_s"][others]).max() == 0.0
    assert sim.neighbor_builds >= 1 and ext.calls >= steps

    # The checkpoint rebuilds the extension and the run continues identically.
    ck = sim.save_checkpoint(tmp_path / "ck.npz")
    sim.run(steps=100, progress=False)
    ref = sim.state()["positions_m"]
    back = Simulation.load_checkpoint(ck)
    back.extensions[0].x0 = ext.x0
    assert [e.name for e in back.extensions] == ["push"]
    back.run(steps=100, progress=False)
    np.testing.assert_allclose(back.state()["positions_m"], ref, rtol=0, atol=1e-15)


def test_extension_names_are_unique_and_typed() -> None:
    from electrodem.config import ConfigError

    sim = _sim()
    sim.add_extension(PushOne(0, (0, 0, 0)))
    with pytest.raises(ConfigError, match="extension.name"):
        sim.add_extension(PushOne(1, (0, 0, 0)))
    with pytest.raises(ConfigError, match="Extension"):
        sim.add_extension(object())  # type: ignore[arg-type]
