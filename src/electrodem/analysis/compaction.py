"""Compaction laws fitted to pressure (or line load) – porosity data, and spring-back.

* Meyer (Meyer et al. 2017, calendering of Li-ion electrodes):
  eps(q) = eps_min + (eps_0 - eps_min) * exp(-q / gamma_c), with q the line load (N/mm) or the
  pressure (Pa); gamma_c has the unit of q ("compaction resistance").
* Heckel (powder compaction): ln(1 / (1 - D)) = k P + A, with D = 1 - eps the relative density and P
  the pressure (Pa); 1/k is the Heckel yield pressure (Pa).
* Spring-back: relative thickness recovery (h_unloaded - h_loaded) / h_loaded, in %.

Pure NumPy/SciPy on measured curves; used by the compaction and calendering steps and by studies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import curve_fit


@dataclass(frozen=True)
class MeyerFit:
    """Fitted Meyer law; ``gamma_c`` is in the unit of the load given to `fit_meyer`."""

    eps_min: float
    eps_0: float
    gamma_c: float
    rmse: float

    def porosity(self, q: np.ndarray | float) -> np.ndarray:
        """Porosity predicted at load ``q`` (same unit as the fit)."""
        return self.eps_min + (self.eps_0 - self.eps_min) * np.exp(-np.asarray(q, float) / self.gamma_c)

    def load_for(self, eps: float) -> float:
        """Load needed for porosity ``eps`` (inf if below eps_min, 0 if above eps_0)."""
        if eps <= self.eps_min:
            return float("inf")
        if eps >= self.eps_0:
            return 0.0
        return float(-self.gamma_c * np.log((eps - self.eps_min) / (self.eps_0 - self.eps_min)))


@dataclass(frozen=True)
class HeckelFit:
    """Fitted Heckel line; ``k_per_Pa`` slope, ``A`` intercept, yield pressure 1/k (Pa)."""

    k_per_Pa: float
    A: float
    r2: float

    @property
    def yield_pressure_Pa(self) -> float:
        """Heckel yield pressure 1/k (Pa)."""
        return 1.0 / self.k_per_Pa if self.k_per_Pa > 0 else float("inf")


def _check(x: np.ndarray, y: np.ndarray, nx: str, ny: str, n_min: int) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, float).ravel(), np.asarray(y, float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"{nx} and {ny} must have the same length; got {x.size} and {y.size}")
    if x.size < n_min:
        raise ValueError(f"need at least {n_min} points to fit; got {x.size}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError(f"{nx} and {ny} must be finite")
    if np.any(x < 0):
        raise ValueError(f"{nx} must be >= 0")
    if np.any((y <= 0) | (y >= 1)):
        raise ValueError(f"{ny} must lie in (0, 1)")
    return x, y


def fit_meyer(load: np.ndarray, porosity: np.ndarray) -> MeyerFit:
    """Least-squares fit of the Meyer law to (load, porosity) points (at least 3)."""
    q, eps = _check(load, porosity, "load", "porosity", 3)
    order = np.argsort(q)
    q, eps = q[order], eps[order]

    def law(x: np.ndarray, e_min: float, e0: float, g: float) -> np.ndarray:
        return e_min + (e0 - e_min) * np.exp(-x / g)

    span = float(q.max() - q.min()) or 1.0
    p0 = (float(eps.min()) * 0.95, float(eps.max()), span / 3.0)
    bounds = ([0.0, 0.0, span * 1e-6], [1.0, 1.0, span * 1e6])
    (e_min, e0, g), _ = curve_fit(law, q, eps, p0=p0, bounds=bounds, maxfev=20_000)
    rmse = float(np.sqrt(np.mean((law(q, e_min, e0, g) - eps) ** 2)))
    return MeyerFit(float(e_min), float(e0), float(g), rmse)


def fit_heckel(pressure_Pa: np.ndarray, porosity: np.ndarray) -> HeckelFit:
    """Linear fit of ln(1/eps) = k P + A (D = 1 - eps) to (pressure, porosity) points (at least 2)."""
    p, eps = _check(pressure_Pa, porosity, "pressure_Pa", "porosity", 2)
    y = np.log(1.0 / eps)
    k, a = np.polyfit(p, y, 1)
    resid = y - (k * p + a)
    ss = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum(resid**2)) / ss if ss > 0 else 1.0
    return HeckelFit(float(k), float(a), r2)


def spring_back_pct(thickness_loaded_m: float, thickness_unloaded_m: float) -> float:
    """Elastic recovery after unloading, (h_unloaded - h_loaded) / h_loaded in %."""
    if not thickness_loaded_m > 0:
        raise ValueError(f"thickness_loaded_m must be > 0; got {thickness_loaded_m}")
    return 100.0 * (thickness_unloaded_m - thickness_loaded_m) / thickness_loaded_m


def load_at_porosity(load: np.ndarray, porosity: np.ndarray, target: float) -> float:
    """Load (unit of ``load``) at which a loading curve first reaches porosity ``target``, linearly
    interpolated between the two records that bracket it; NaN if the curve never gets there.

    The records must be in loading order. The first crossing is the answer, since at a given plate
    position a bed may relax (porosity steady, load falling) and the load history is what a press
    reading reports."""
    q, e = np.asarray(load, float), np.asarray(porosity, float)
    if q.shape != e.shape or q.ndim != 1:
        raise ValueError(f"load and porosity must be 1-D arrays of one length; got {q.shape}, {e.shape}")
    below = np.nonzero(e <= target)[0]
    if not len(below):
        return float("nan")
    k = int(below[0])
    if k == 0:
        return float(q[0])
    t = (e[k - 1] - target) / (e[k - 1] - e[k])
    return float(q[k - 1] + t * (q[k] - q[k - 1]))
