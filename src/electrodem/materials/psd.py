"""Particle size distributions: lognormal by volume or number, truncated, sampled by number.

Laser-diffraction datasheets report volume-weighted D-values. A lognormal number distribution with
median d_n and log-spread s has a volume-weighted median d_v = d_n * exp(3 s^2) (Hatch–Choate), so a
volume-basis D50 is converted to the number median before sampling particles one by one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import norm

from electrodem.config.errors import is_number, require, require_known_keys

Z90 = float(norm.ppf(0.9))  # 1.2816: standard-normal quantile of D90 (and -Z90 of D10)
DISTRIBUTIONS = ("lognormal", "d10_d50_d90", "monodisperse")
BASES = ("volume", "number")
PSD_KEYS = ("distribution", "basis", "d50_um", "geometric_std", "d10_um", "d90_um", "d_min_um", "d_max_um")
"""Keys of a material's ``psd`` mapping."""


@dataclass(frozen=True)
class PSD:
    """A truncated lognormal particle-size distribution (diameters in µm, as in datasheets).

    ``d50_um`` is the median of the chosen ``basis`` (volume or number); ``geometric_std`` is
    sigma_g = exp(s) of ln(d) (1 = monodisperse). ``d_min_um``/``d_max_um`` truncate the sampled
    number distribution.
    """

    d50_um: float
    geometric_std: float = 1.0
    basis: str = "volume"
    d_min_um: float | None = None
    d_max_um: float | None = None

    @classmethod
    def from_config(cls, cfg: dict[str, Any], key: str) -> PSD:
        """Build from a material's ``psd`` mapping; ``key`` is its dotted config path for errors."""
        # A misspelt key would otherwise be ignored and its default used in silence.
        require_known_keys(cfg, PSD_KEYS, key)
        dist = cfg.get("distribution", "lognormal")
        require(isinstance(dist, str) and dist in DISTRIBUTIONS, f"{key}.distribution", dist,
                f"one of {DISTRIBUTIONS}")
        basis = cfg.get("basis", "volume")
        require(isinstance(basis, str) and basis in BASES, f"{key}.basis", basis, f"one of {BASES}")
        # is_number: finite and not a bool (an inf diameter passes "> 0" and breaks sampling).
        d50 = cfg.get("d50_um")
        require(is_number(d50) and d50 > 0, f"{key}.d50_um", d50, "a finite diameter > 0 µm")
        sg_cfg = cfg.get("geometric_std")
        if sg_cfg is not None:
            require(is_number(sg_cfg) and sg_cfg >= 1.0, f"{key}.geometric_std", sg_cfg,
                    "null or a finite geometric standard deviation >= 1 (1 = monodisperse)")
        d10, d90 = cfg.get("d10_um"), cfg.get("d90_um")
        need = dist == "d10_d50_d90"  # they define the spread there; elsewhere checked when given
        if need or d10 is not None:
            require(is_number(d10) and 0 < d10 < d50, f"{key}.d10_um", d10, f"0 < d10_um < d50_um={d50}")
        if need or d90 is not None:
            require(is_number(d90) and d90 > d50, f"{key}.d90_um", d90, f"a finite d90_um > d50_um={d50}")
        if dist == "monodisperse":
            sg = 1.0
        elif dist == "lognormal":
            sg = 1.0 if sg_cfg is None else sg_cfg
        else:
            # Lognormal fitted through D10 and D90 (symmetric in ln d about the median).
            sg = float(np.exp(np.log(d90 / d10) / (2.0 * Z90)))
        dmin, dmax = cfg.get("d_min_um"), cfg.get("d_max_um")
        if dmin is not None:
            require(is_number(dmin) and 0 < dmin <= d50, f"{key}.d_min_um", dmin,
                    f"null or 0 < d_min_um <= d50_um={d50}")
        if dmax is not None:
            require(is_number(dmax) and dmax >= d50, f"{key}.d_max_um", dmax,
                    f"null or a finite d_max_um >= d50_um={d50}")
        return cls(float(d50), float(sg), basis, dmin, dmax)

    @property
    def sigma_ln(self) -> float:
        """Standard deviation of ln(d)."""
        return float(np.log(self.geometric_std))

    @property
    def number_median_um(self) -> float:
        """Median diameter of the number distribution (µm), before truncation."""
        if self.basis == "number":
            return self.d50_um
        return self.d50_um * float(np.exp(-3.0 * self.sigma_ln**2))

    @property
    def largest_um(self) -> float:
        """Largest diameter that sampling can return (µm): ``d_max_um``, else the number median times
        sigma_g^4 (beyond 4 standard deviations of ln d, one particle in 30 000)."""
        if self.d_max_um is not None:
            return float(self.d_max_um)
        return self.number_median_um * self.geometric_std**4

    @property
    def smallest_um(self) -> float:
        """Smallest diameter that sampling can return (µm), by the same rule as `largest_um`."""
        if self.d_min_um is not None:
            return float(self.d_min_um)
        return self.number_median_um / self.geometric_std**4

    def sample_um(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Draw ``n`` diameters (µm) from the truncated number distribution (inverse-CDF sampling)."""
        if self.sigma_ln == 0.0:
            return np.full(n, self.d50_um)
        mu, s = np.log(self.number_median_um), self.sigma_ln
        lo = norm.cdf((np.log(self.d_min_um) - mu) / s) if self.d_min_um else 0.0
        hi = norm.cdf((np.log(self.d_max_um) - mu) / s) if self.d_max_um else 1.0
        u = rng.uniform(lo, hi, size=n)
        return np.exp(mu + s * norm.ppf(u))

    def mean_volume_um3(self, rng: np.random.Generator, n_probe: int = 20000) -> float:
        """Mean particle volume (µm3) of the truncated distribution, estimated by sampling."""
        d = self.sample_um(n_probe, rng)
        return float(np.mean(np.pi / 6.0 * d**3))


def d_values(diameters: np.ndarray, basis: str = "volume",
             quantiles: tuple[float, ...] = (0.1, 0.5, 0.9)) -> np.ndarray:
    """Empirical D-values (same unit as ``diameters``) on a volume or number basis."""
    d = np.sort(np.asarray(diameters, dtype=float))
    if d.size == 0:
        return np.full(len(quantiles), np.nan)
    w = d**3 if basis == "volume" else np.ones_like(d)
    cdf = np.cumsum(w) / w.sum()
    # Midpoint CDF so that a single size or symmetric samples give the exact median.
    cdf_mid = cdf - 0.5 * w / w.sum()
    return np.interp(quantiles, cdf_mid, d)
