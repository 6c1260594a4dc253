"""Viscous damping of the Hertz contact that reproduces a requested coefficient of restitution.

The normal force is ``F = K d^1.5 - eta * sqrt(m* S_n) * v_n`` with ``K = 4/3 E* sqrt(R*)`` and the
contact stiffness ``S_n = 2 E* sqrt(R* d)`` (the Tsuji form used by LIGGGHTS). With that damping the
restitution coefficient does not depend on impact speed, masses or moduli, but the usual closed form
``eta = -2 sqrt(5/6) ln e / sqrt(ln^2 e + pi^2)`` is exact only for a linear spring: for Hertz it misses
e = 0.3 by several per cent. So we solve the dimensionless collision once and invert it:

    s'' = -s^1.5 - eta sqrt(3/2) s^0.25 s',   s(0) = 0, s'(0) = 1,

integrated until the total (repulsive-only) force vanishes; then e = -s'. The force is clamped at
zero exactly as the engine clamps it (no attraction), so the map matches the engine's collisions.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy.integrate import solve_ivp
from scipy.optimize import brentq


def restitution_of_damping(eta: float) -> float:
    """Restitution coefficient (dimensionless) of a Hertz collision with damping factor ``eta`` >= 0."""
    if eta < 0:
        raise ValueError(f"eta={eta} must be >= 0")
    if eta == 0.0:
        return 1.0
    c = eta * math.sqrt(1.5)

    def rhs(_t: float, y: np.ndarray) -> list[float]:
        s = max(y[0], 0.0)
        return [y[1], -(s**1.5) - c * s**0.25 * y[1]]

    def force_zero(_t: float, y: np.ndarray) -> float:
        s = max(y[0], 0.0)
        # Total force crosses zero only while separating (y[1] < 0); before that it is positive.
        return s**1.5 + c * s**0.25 * y[1] if y[1] < 0 else 1.0

    force_zero.terminal = True  # type: ignore[attr-defined]
    force_zero.direction = -1  # type: ignore[attr-defined]

    def s_zero(_t: float, y: np.ndarray) -> float:
        return y[0]

    s_zero.terminal = True  # type: ignore[attr-defined]
    s_zero.direction = -1  # type: ignore[attr-defined]
    # Start a hair inside the contact so s**0.25 has a finite derivative for the solver.
    y0 = [1e-9, 1.0]
    sol = solve_ivp(
        rhs, (0.0, 50.0), y0, events=(force_zero, s_zero), rtol=1e-11, atol=1e-13, method="DOP853"
    )
    if sol.status != 1:
        # Heavily overdamped: the sphere creeps to rest inside the contact.
        return 0.0
    return float(max(-sol.y[1, -1], 0.0))


@lru_cache(maxsize=256)
def damping_for_restitution(e: float) -> float:
    """Damping factor ``eta`` (dimensionless) that gives restitution ``e`` in (0, 1] for Hertz contacts."""
    if not 0.0 < e <= 1.0:
        raise ValueError(f"restitution={e} must lie in (0, 1]")
    if e == 1.0:
        return 0.0
    hi = 1.0
    while restitution_of_damping(hi) > e:
        hi *= 2.0
        if hi > 1e4:
            raise ValueError(f"restitution={e} is too small to reach with viscous damping")
    return float(brentq(lambda x: restitution_of_damping(x) - e, 0.0, hi, xtol=1e-12, rtol=1e-10))
