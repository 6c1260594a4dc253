"""Conductance of a contact bridged by a conducting neck (a CBD pendular ring), and the spreading
resistance of a disc on a finite sphere. Used by `electrodem.analysis.resistor`.

Neck of a CBD fillet (`neck_conductance`)
-----------------------------------------
Two particles (radii R1, R2, conductivities sigma_1, sigma_2) touch through a disc of radius a (the
contact graph's radius, floor included). A CBD fillet of conductivity sigma_f fills the wedge around
the contact out to the radius r_f (`electrodem.analysis.cbd.fillet_radius_m`). Around a contact the
two surfaces are parabolic: the gap at the distance rho from the axis is g(rho) = rho^2 / (2 R_eff),
R_eff = R1 R2 / (R1 + R2) (the same gap that gives the ring its volume pi r_f^4 / (4 R_eff)).

1. **Equipotential spheres (the slab integral).** If the particles conduct much better than the film,
   each annulus [rho, rho + d rho] of the ring is a slab of area 2 pi rho d rho and thickness g(rho)
   between two equipotentials: dG = sigma_f 2 pi rho d rho / g(rho) = 4 pi sigma_f R_eff d rho / rho.
   The annuli are in parallel, so the ring from a to r_f conducts

       G_film = 4 pi sigma_f R_eff ln(r_f / a) = K ln(r_f / a),   K = 4 pi sigma_f R_eff,

   in parallel with the bare contact. It diverges logarithmically for a -> 0: the touching point
   must be cut off. The cut-off is physical: electrons also have to spread inside the particles.
2. **Spreading.** The current that crosses the ring enters and leaves the particles through a disc of
   radius r_f. Even a perfectly conducting film (sigma_f -> infinity) cannot beat the spreading
   resistance of that disc: G -> G_sp(r_f), where G_sp(c) = 1 / (R_half,1(c) + R_half,2(c)) is the
   resistor's own bare-contact conductance for a disc of radius c (`half_contact_resistance`, with the
   chosen ``bulk`` model). For the half-space (Holm) model G_sp(c) = s c, s = 4 / (1/sigma_1 + 1/sigma_2).
   Without a film (sigma_f = 0), G = G_sp(a), today's contact.
3. **Coupled problem, solved exactly on the half-space.** Between the two limits, film and spreading
   interact non-locally: the interface between two half-spaces (conductivities sigma_1, sigma_2) is
   a perfect contact for rho < a and a film of conductance per area h(rho) = sigma_f / g(rho) =
   K / (2 pi rho^2) for a < rho < r_f. Its conductance depends on two numbers only,
   alpha = a / r_f and lambda = K / (s r_f) (film vs spreading): G = s r_f T(alpha, lambda). T is
   computed by a boundary-element solution (`half_space_neck`: axisymmetric ring sources with the
   half-space Green function 1 / (2 pi sigma d), the interface current on each ring set by the
   potential jump, a linear system) and tabulated once per process (0.1 s) on a (ln alpha, ln lambda)
   grid; 60 film elements are within 0.1-0.3 % of 400, and the interpolated table within 0.5 % of a
   fine solve (tests/analysis/test_resistor_cbd.py).
   Exact limits: for lambda -> 0 the film is a perturbation and adds its energy in the unperturbed
   field (first-order variational principle): the contact alone leaves the potential jump
   dV (1 - (2/pi) arcsin(a/rho)) across the film at rho > a, so

       T -> alpha + lambda Psi(alpha),   Psi(alpha) = int_alpha^1 (1 - (2/pi) arcsin u)^2 du / u,

   i.e. G -> G_sp(a) + K Psi(a / r_f): the slab integral of item 1 with the film starting at an
   effective 3.06 a instead of a (Psi -> ln(r_f / a) - 1.119 for r_f >> a); for lambda -> infinity,
   T -> 1. In between, the simpler closed forms err by up to +35 % (adding film and spreading annulus
   by annulus in series, or a film in parallel with the contact behind a shared spreading disc),
   which is why the exact solution is used.
4. **Any spreading model.** The neck adds to the bare contact the fraction Q = (T - alpha) / (1 - alpha)
   of what a perfect film would add:

       G = G_sp(a) + (G_sp(r_f) - G_sp(a)) Q(alpha, lambda),   alpha = a / r_f,   lambda = K / G_sp(r_f).

   For the half-space model (G_sp(c) = s c) this is exactly s r_f T; for the others it keeps both
   limits exact (G_sp(a) without film, G_sp(r_f) for a perfect film) and uses the half-space coupling
   in between. A fillet no wider than the contact (r_f <= a) adds nothing. With a film far better
   than the particles (lambda >> 1, e.g. NMC 1e-3 S/m and CBD 10 S/m: lambda ~ 1e4) the neck is a
   contact disc of radius r_f and G no longer depends on a, i.e. on the contact radius floor.

The gap neglects the contact's overlap (consistent with the ring volume of `cbd.fillet_radius_m`):
with the lens the gap is (rho^2 - a^2) / (2 R_eff), thinner near the disc, but there the film is
spreading-limited (h rho >> sigma) whenever it matters, so its thickness does not enter.

Disc on a sphere (`sphere_spreading_factor`)
--------------------------------------------
Holm's 1 / (4 a sigma) is the spreading resistance of a disc on a half-space. A particle is a sphere,
and a wide disc (a neck fillet wets r_f / R = 0.2-0.6) sees less conducting volume: a sphere of radius
R between two antipodal equipotential caps of base radius a has the resistance 2 F(a/R) / (4 a sigma),
F computed exactly (`two_cap_sphere_factor`: Legendre series of the potential, Galerkin on the cap
flux with the edge singularity built in; a variational upper bound, converged to 1e-5; an
independent axisymmetric finite-volume solve agrees to 0.2 % at 1600 cells per radius). F = 1.055,
1.087, 1.136, 1.108, 1.001, 0.756 at a/R = 0.05, 0.1, 0.3, 0.5, 0.7, 0.9; F -> 1 + (a/R) (ln(R/a) +
0.49) / pi for a -> 0. The ``bulk="sphere"`` model of the resistor uses R_half = F(a/r) / (4 a sigma):
exact for a chain of spheres touching end to end, and for a sphere between two plates.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy.interpolate import PchipInterpolator, RegularGridInterpolator
from scipy.special import ellipk

__all__ = [
    "half_space_neck",
    "neck_conductance",
    "neck_fraction",
    "neck_slab_limit",
    "sphere_spreading_factor",
    "two_cap_sphere_factor",
]

# --------------------------------------------------------------------------------- disc on a sphere
_F_X = np.array([0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6,
                 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95])
_F_VAL = np.array([1.01620, 1.02798, 1.03802, 1.05499, 1.07230, 1.08657, 1.10838, 1.12324, 1.13241, 1.13657,
                   1.13608, 1.13114, 1.12178, 1.10792, 1.08938, 1.06580, 1.03667, 1.00120, 0.95821, 0.90580,
                   0.84068, 0.75619, 0.63432])
"""F(a/R) from `two_cap_sphere_factor` (nmax 6000, 4 basis functions, 800 nodes); tests recompute some."""


@functools.lru_cache(maxsize=1)
def _f_smooth() -> PchipInterpolator:
    # F = 1 + x (ln(1/x) + g(x)) / pi with g smooth (0.48 at 0): interpolate g, not F (x ln x at 0)
    g = (_F_VAL - 1.0) * math.pi / _F_X - np.log(1.0 / _F_X)
    return PchipInterpolator(_F_X, g, extrapolate=False)


def sphere_spreading_factor(x: np.ndarray) -> np.ndarray:
    """F(a/R): spreading resistance of a disc of radius a on a sphere of radius R over Holm's
    1 / (4 a sigma) (module docstring). ``x`` is clipped to [0, 0.95]; F(0) = 1."""
    x = np.clip(np.asarray(x, float), 0.0, _F_X[-1])
    g = _f_smooth()(np.clip(x, _F_X[0], _F_X[-1]))
    with np.errstate(divide="ignore", invalid="ignore"):
        f = 1.0 + x * (np.log(1.0 / x) + g) / math.pi
    return np.where(x > 0, f, 1.0)


def two_cap_sphere_factor(x: float, nmax: int = 6000, n_basis: int = 4, n_nodes: int = 800) -> float:
    """Exact F(x) (module docstring): 2 x times the resistance (in 1 / (sigma R)) of a sphere between two
    antipodal equipotential caps of base radius x R, x in (0, 1).

    The potential is sum_n A_n (r/R)^n P_n(cos theta) over odd n (antisymmetric); the cap flux is
    expanded in w_k = t^(2k) / sqrt(mu - mu0) (mu = cos theta, mu0 = cos theta0, t^2 = (mu - mu0) /
    (1 - mu0)), so the inverse-square-root edge singularity of an equipotential disc is built in;
    zero flux elsewhere. Galerkin on the cap potential (= 1/2) gives the flux weights, and the
    resistance is a variational upper bound that converges from above. The w_0 coefficients are
    analytic, sqrt(2) sin((n + 1/2) theta0) / (n + 1/2); the others come from Gauss quadrature;
    the truncated tail of the w_0 self term, sum over odd n > nmax of ~2 / n^2, is added as 1 / nmax.
    """
    if not 0.0 < x < 1.0:
        raise ValueError(f"x={x!r} is invalid: must be in (0, 1)")
    try:  # small dense products: BLAS threads only spin (see `electrodem.analysis.resistor`)
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional dependency
        return _two_cap(x, nmax, n_basis, n_nodes)
    with threadpool_limits(limits=1, user_api="blas"):
        return _two_cap(x, nmax, n_basis, n_nodes)


def _two_cap(x: float, nmax: int, n_basis: int, n_nodes: int) -> float:
    th0 = math.asin(x)
    mu0 = math.cos(th0)
    t, wt = np.polynomial.legendre.leggauss(n_nodes)
    t, wt = 0.5 * (t + 1.0), 0.5 * wt
    mu = mu0 + (1.0 - mu0) * t * t
    wd = np.array([t ** (2 * k) * 2.0 * math.sqrt(1.0 - mu0) * wt for k in range(n_basis)])
    p = np.empty((nmax // 2, n_nodes))
    p0, p1 = np.ones_like(mu), mu.copy()
    for n in range(1, nmax + 1):
        if n % 2:
            p[n // 2] = p1
        p0, p1 = p1, ((2 * n + 1) * mu * p1 - n * p0) / (n + 1)
    c = p @ wd.T
    n = np.arange(1, nmax + 1, 2)
    c[:, 0] = math.sqrt(2.0) * np.sin((n + 0.5) * th0) / (n + 0.5)
    m = (c * ((2 * n + 1) / n)[:, None]).T @ c
    m[0, 0] += 1.0 / nmax
    q = np.r_[2.0 * math.sqrt(1.0 - mu0), wd[1:].sum(axis=1)]
    b = np.linalg.solve(m, 0.5 * q)
    return 2.0 * x / (2.0 * math.pi * float(b @ q))


# --------------------------------------------------------------------------- neck on the half-space
def _graded(lo: float, hi: float, k: int) -> np.ndarray:
    """k elements on [lo, hi], refined towards both ends (cosine spacing)."""
    return lo + (hi - lo) * 0.5 * (1.0 - np.cos(np.pi * np.linspace(0.0, 1.0, k + 1)))


def _ring_kernel(rho: np.ndarray, rp: np.ndarray) -> np.ndarray:
    """Surface potential at radius ``rho`` of a half-space of unit conductivity carrying a unit current
    into its surface along the ring of radius ``rp``: (1 / 2 pi) * 2 K(m) / (pi (rho + rp)),
    m = 4 rho rp / (rho + rp)^2 (the point source 1 / (2 pi d) averaged over the ring)."""
    m = 4.0 * rho * rp / (rho + rp) ** 2
    return ellipk(np.minimum(m, 1.0 - 1e-16)) / (math.pi**2 * (rho + rp))


def _neck_system(alpha: float, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Elements (edges), influence matrix and core mask of the disc [0, 1] with a core [0, alpha]."""
    n_core = max(8, n // 3)
    edges = np.unique(np.concatenate([_graded(0.0, alpha, n_core), _graded(alpha, 1.0, n)]))
    lo, hi = edges[:-1], edges[1:]
    mid, w = 0.5 * (lo + hi), hi - lo
    xg, wg = np.polynomial.legendre.leggauss(8)
    rp = mid[None, :] + 0.5 * w[None, :] * xg[:, None]  # (8, N) source points of each element
    wt = wg[:, None] * rp
    wt = wt / wt.sum(axis=0)  # uniform current density over the element, unit total
    a = np.einsum("qj,iqj->ij", wt, _ring_kernel(mid[:, None, None], rp[None, :, :]))
    # self term: a thin band of width w at radius rho, ln(8 rho / |d rho|) averaged over the band
    a[np.diag_indices_from(a)] = (np.log(8.0 * mid / w) + 1.5) / (2.0 * math.pi**2 * mid)
    return edges, a, mid < alpha


def half_space_neck(alpha: float, lam: np.ndarray, n: int = 60) -> np.ndarray:
    """T(alpha, lambda) = G / (s r_f) of the neck on two half-spaces (module docstring, item 3), by a
    boundary-element solution with ``n`` film elements (and n / 3 core elements), graded towards the
    core edge and the rim. Returns ``len(lam) + 2`` values: T at each lambda, then on the same mesh T
    without film (-> alpha) and with a perfect film (-> 1); `neck_fraction` normalises with those two
    so that the mesh error largely cancels.

    Units: r_f = 1, sigma_1 = sigma_2 = 1 (s = 2). The unknowns are the ring currents I crossing the
    interface; the potential jump across ring i is 1 - (1/sigma_1 + 1/sigma_2) (A I)_i with A the
    ring-to-ring influence of the half-space (uniform current over each element, 8-point Gauss; the
    self term of a thin band analytically). Core rings have no jump; film rings carry I_i = H_i times
    their jump, H_i = K ln(hi / lo), the integral of h = K / (2 pi rho^2) over the element.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha={alpha!r} is invalid: must be in (0, 1)")
    edges, a, core = _neck_system(alpha, n)
    lo, hi = edges[:-1], edges[1:]
    lam = np.atleast_1d(np.asarray(lam, float))
    ctot = 2.0
    out = np.empty(len(lam) + 2)
    for k, lm in enumerate(lam):
        k_film = lm * 2.0  # K = lambda s r_f
        with np.errstate(divide="ignore"):
            inv_h = np.where(core, 0.0, 1.0 / (k_film * np.log(hi / lo)))
        out[k] = np.linalg.solve(np.diag(inv_h) + ctot * a, np.ones(len(lo))).sum() / 2.0
    ci = np.flatnonzero(core)
    out[-2] = np.linalg.solve(ctot * a[np.ix_(ci, ci)], np.ones(len(ci))).sum() / 2.0
    out[-1] = np.linalg.solve(ctot * a, np.ones(len(lo))).sum() / 2.0
    return out


_ALPHA = np.array([0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9,
                   0.95])
_LAM = np.logspace(-4.0, 5.0, 46)


@functools.lru_cache(maxsize=1)
def _q_table() -> RegularGridInterpolator:
    """logit Q on the (ln alpha, ln lambda) grid: nearly linear in ln lambda at both ends (Q ~ lambda,
    1 - Q ~ ln(lambda) / lambda), so linear interpolation is accurate (< 0.5 %, tested)."""
    logit = np.empty((len(_ALPHA), len(_LAM)))
    for i, al in enumerate(_ALPHA):
        t = half_space_neck(float(al), _LAM)
        q = (t[:-2] - t[-2]) / (t[-1] - t[-2])
        q = np.clip(q, 1e-12, 1.0 - 1e-12)
        logit[i] = np.log(q) - np.log1p(-q)
    return RegularGridInterpolator((np.log(_ALPHA), np.log(_LAM)), logit)


def neck_fraction(alpha: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """Q(alpha, lambda) = (T - alpha) / (1 - alpha) in [0, 1] (module docstring, item 4): the fraction
    of the perfect-film gain that a film of strength ``lam`` gives. alpha is clipped to the table
    [0.005, 0.95] (T is continuous there); beyond the lambda range Q follows its asymptotes
    (Q ~ lambda below 1e-4, 1 - Q ~ 1 / lambda above 1e5)."""
    alpha, lam = np.broadcast_arrays(np.asarray(alpha, float), np.asarray(lam, float))
    out = np.zeros(alpha.shape)
    ok = lam > 0
    if not ok.any():
        return out
    la = np.log(np.clip(alpha[ok], _ALPHA[0], _ALPHA[-1]))
    ll = np.log(lam[ok])
    lo, hi = math.log(_LAM[0]), math.log(_LAM[-1])
    logit = _q_table()(np.stack([la, np.clip(ll, lo, hi)], axis=-1))
    logit = logit + np.minimum(ll - lo, 0.0) + np.maximum(ll - hi, 0.0)  # Q ~ lam / (1 - Q) ~ 1 / lam
    out[ok] = 1.0 / (1.0 + np.exp(-logit))
    return out


def neck_slab_limit(a: np.ndarray, r_f: np.ndarray, r_eff: np.ndarray, sigma_f: np.ndarray) -> np.ndarray:
    """The equipotential-sphere slab integral G_film = 4 pi sigma_f R_eff ln(r_f / a) (S; 0 where
    r_f <= a): the film alone, valid when the particles conduct far better than the film."""
    a, r_f = np.asarray(a, float), np.asarray(r_f, float)
    return np.where(r_f > a, 4.0 * math.pi * np.asarray(sigma_f) * np.asarray(r_eff)
                    * np.log(np.maximum(r_f, a) / a), 0.0)


def neck_conductance(g_spread, a: np.ndarray, r_f: np.ndarray, r_eff: np.ndarray,
                     sigma_f: float | np.ndarray) -> np.ndarray:
    """Conductance (S) of contacts of disc radius ``a`` (m) with a CBD fillet out to ``r_f`` (m) of
    conductivity ``sigma_f`` (S/m), R_eff = R1 R2 / (R1 + R2) (m): G = G_sp(a) + (G_sp(r_f) - G_sp(a))
    Q(a / r_f, 4 pi sigma_f R_eff / G_sp(r_f)) (module docstring). ``g_spread(c)`` returns the bare
    contact conductance G_sp for disc radii ``c`` (same shape). sigma_f = 0 or r_f <= a gives
    G_sp(a) exactly."""
    a = np.asarray(a, float)
    r_f = np.asarray(r_f, float)
    g_a = np.asarray(g_spread(a), float)
    wide = (r_f > a) & (np.asarray(sigma_f, float) > 0)
    if not wide.any():
        return g_a
    c = np.where(wide, r_f, a)
    g_c = np.asarray(g_spread(c), float)
    k_film = 4.0 * math.pi * np.asarray(sigma_f, float) * np.asarray(r_eff, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = np.where(wide, k_film / g_c, 0.0)
        alpha = np.where(wide, a / c, 1.0)
    q = np.zeros(a.shape)
    q[wide] = neck_fraction(alpha[wide], lam[wide])
    return np.where(wide, g_a + (g_c - g_a) * q, g_a)
