"""The Lees–Edwards cell's barostat (`electrodem.engine.shear.Barostat`, used by the dry mix and the
pressure-controlled shear cell) on a stand-in simulation: the sign and
size of its length changes, their accumulation below `BAROSTAT_STEP` and the clip at the gain."""

from __future__ import annotations

import math

import numpy as np
import pytest

from electrodem.engine.shear import BAROSTAT_STEP, Barostat


class _Sim:
    """Records the radii a barostat sets (what `Simulation.set_radii` would do)."""

    def __init__(self) -> None:
        self.ids = np.arange(3)
        self.r = np.array([1.0, 2.0, 3.0])
        self.calls = 0

    def state(self) -> dict[str, np.ndarray]:
        return {"radii_m": self.r.copy()}

    def set_radii(self, ids: np.ndarray, radii: np.ndarray, rescale_mass: bool) -> None:
        assert rescale_mass  # masses follow the lengths (density kept)
        self.r = np.asarray(radii, float)
        self.calls += 1


def test_a_low_pressure_grows_the_particles_at_most_gain_per_unit_strain() -> None:
    sim, b = _Sim(), Barostat(target_Pa=1e5, gain=0.1)
    b.update(sim, pressure_Pa=0.0, d_strain=0.01)  # error clipped to 1: ln g += 0.1 x 0.01 = 1e-3
    assert sim.calls == 1 and b.scale == pytest.approx(math.exp(1e-3))
    np.testing.assert_allclose(sim.r, np.array([1.0, 2.0, 3.0]) * math.exp(1e-3))


def test_a_high_pressure_shrinks_them_and_small_changes_wait() -> None:
    sim, b = _Sim(), Barostat(target_Pa=1e5, gain=0.1)
    for _ in range(2):  # ln g -= 0.1 x 0.0015 x 0.5 = 7.5e-5 each: 1.5e-4 pending, below BAROSTAT_STEP
        b.update(sim, pressure_Pa=1.5e5, d_strain=0.0015)
    assert sim.calls == 0 and b.scale == 1.0 and 1.5e-4 < BAROSTAT_STEP < 2.25e-4
    b.update(sim, pressure_Pa=1.5e5, d_strain=0.0015)
    assert sim.calls == 1 and b.scale == pytest.approx(math.exp(-2.25e-4))


def test_gain_zero_keeps_the_volume() -> None:
    sim, b = _Sim(), Barostat(target_Pa=1e5, gain=0.0)
    b.update(sim, pressure_Pa=0.0, d_strain=1.0)
    assert sim.calls == 0 and b.scale == 1.0
