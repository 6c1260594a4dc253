"""Compaction-law fits recover known parameters from synthetic curves."""

from __future__ import annotations

import numpy as np
import pytest

from electrodem.analysis.compaction import fit_heckel, fit_meyer, spring_back_pct


def test_meyer_fit_recovers_parameters_from_noisy_data():
    """Calendering-like curve: eps 0.45 -> 0.25 with gamma_c = 400 N/mm, 0.002 porosity noise."""
    rng = np.random.default_rng(0)
    q = np.linspace(0, 2000, 25)
    eps = 0.25 + 0.20 * np.exp(-q / 400.0) + rng.normal(0, 0.002, q.size)
    f = fit_meyer(q, eps)
    assert f.eps_min == pytest.approx(0.25, abs=0.005)
    assert f.eps_0 == pytest.approx(0.45, abs=0.005)
    assert f.gamma_c == pytest.approx(400.0, rel=0.08)
    assert f.rmse < 0.003
    # the inverse gives back the load of a porosity on the curve
    assert f.load_for(float(f.porosity(800.0))) == pytest.approx(800.0, rel=1e-9)
    assert f.load_for(0.2) == float("inf") and f.load_for(0.5) == 0.0


def test_heckel_fit_is_exact_on_a_heckel_line():
    k, a = 1 / 50e6, 0.4  # 50 MPa yield pressure
    p = np.linspace(1e6, 100e6, 10)
    eps = np.exp(-(k * p + a))
    f = fit_heckel(p, eps)
    assert f.k_per_Pa == pytest.approx(k, rel=1e-9) and f.A == pytest.approx(a, rel=1e-9)
    assert f.yield_pressure_Pa == pytest.approx(50e6, rel=1e-9) and f.r2 == pytest.approx(1.0)


def test_spring_back_and_bad_input():
    assert spring_back_pct(100e-6, 103e-6) == pytest.approx(3.0)
    with pytest.raises(ValueError, match="porosity must lie in"):
        fit_meyer([0, 1, 2], [0.4, 1.2, 0.3])
    with pytest.raises(ValueError, match="at least 3"):
        fit_meyer([0, 1], [0.4, 0.3])
    with pytest.raises(ValueError, match="thickness_loaded_m"):
        spring_back_pct(0.0, 1.0)


def test_load_at_porosity_interpolates_the_first_crossing():
    from electrodem.analysis.compaction import load_at_porosity

    q = np.array([0.0, 1.0, 2.0, 3.0, 2.5])
    eps = np.array([0.50, 0.45, 0.40, 0.35, 0.34])
    assert load_at_porosity(q, eps, 0.42) == pytest.approx(1.6, rel=1e-12)
    assert load_at_porosity(q, eps, 0.50) == 0.0
    assert np.isnan(load_at_porosity(q, eps, 0.30))
    # A Meyer curve sampled finely: the inverse of the law to the sampling error.
    qq = np.linspace(0.0, 50.0, 2001)
    ee = 0.25 + 0.2 * np.exp(-qq / 10.0)
    assert load_at_porosity(qq, ee, 0.30) == pytest.approx(10.0 * np.log(0.2 / 0.05), rel=1e-4)
    with pytest.raises(ValueError, match="1-D"):
        load_at_porosity(q, eps[:3], 0.4)
