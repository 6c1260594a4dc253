"""Steady means of the shear cell (`electrodem.process.shear_mix.steady_means`): undefined samples of
mu = tau / p and I (p <= 0, NaN in the series) never turn a mean into NaN; the mean is over the
defined samples, or None with the reason when there are none."""

from __future__ import annotations

import math

import numpy as np

from electrodem.process.shear_mix import steady_means


def _series(mu: list[float]) -> dict[str, np.ndarray]:
    n = len(mu)
    return {"strain": np.linspace(0.1, 1.0, n), "time_s": np.arange(n, dtype=float),
            "pressure_Pa": np.array([0.0 if math.isnan(m) else 10.0 for m in mu]),
            "friction_coefficient": np.array(mu), "inertial_number": np.array(mu) * 1e-3}


def test_mean_skips_undefined_samples_and_says_how_many():
    s = _series([0.1, 0.2, math.nan, 0.4, 0.6])
    window = s["strain"] >= 0.5  # strains 0.55, 0.775, 1.0: mu = NaN, 0.4, 0.6
    steady, undefined = steady_means(s, window)
    assert steady["friction_coefficient"] == np.mean([0.4, 0.6])  # the window's defined samples only
    assert undefined["friction_coefficient"].startswith("mean of 2 of 3 samples")
    steady, undefined = steady_means(s, np.ones(5, bool))
    assert steady["friction_coefficient"] == np.mean([0.1, 0.2, 0.4, 0.6])
    assert undefined["friction_coefficient"].startswith("mean of 4 of 5 samples")
    assert steady["pressure_Pa"] == 8.0 and "pressure_Pa" not in undefined
    assert "strain" not in steady and "time_s" not in steady


def test_all_undefined_is_none_with_the_reason_never_nan():
    s = _series([math.nan] * 4)
    steady, undefined = steady_means(s, np.ones(4, bool))
    assert steady["friction_coefficient"] is None and steady["inertial_number"] is None
    assert "zero or negative" in undefined["inertial_number"]
    assert all(v is None or math.isfinite(v) for v in steady.values())
