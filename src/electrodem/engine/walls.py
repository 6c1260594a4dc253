"""Planar walls: fixed, moving at a prescribed velocity, or servo-controlled to a target normal force.

A wall is an infinite plane with a unit normal pointing into the particle domain. It contacts a
particle with the same contact law as a sphere of infinite radius and mass (R* = r, m* = m). The engine
sums the force the particles exert on each wall every step, so a wall reports its force (N) and, with
its area, its pressure (Pa). A servo wall moves along its normal at
``v = clip(gain * (F_target - F_measured), -v_max, v_max)`` where ``F_measured`` is the compressive
load on it (force along -normal); that is how a calender plate holds a line load or a pressure.

Choosing the servo gain: the law makes the wall a Maxwell element, a force source F_target in series
with a dashpot of coefficient 1/gain. In continuous time that is passive, hence stable for any gain;
against contacts of total stiffness k the force error relaxes as exp(-t/tau) with tau = 1/(k gain).
The explicit update (the wall speed is set from the previous step's load) turns this into
e_{n+1} = (1 - k gain dt) e_n: stable for k gain dt < 2, without overshoot for k gain dt < 1. The
dashpot damps the loaded bed best when tau is about 1/omega of the bed on its contacts,
sqrt(M/k). `servo_gain_m_per_s_per_N` returns gain = 1 / (k tau) with tau = max(that response time,
``min_response_steps`` dt), with k from `hertz_stiffness_N_per_m` (an upper bound is the safe side).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from electrodem.config import ConfigError

WALL_MODES = ("fixed", "velocity", "servo")
MAX_WALLS = 6
"""Walls are compiled into the kernels as a fixed-size unrolled loop."""

# Columns of the wall table handed to kernels (float part).
W_PX, W_PY, W_PZ, W_NX, W_NY, W_NZ, W_VX, W_VY, W_VZ, W_TARGET, W_GAIN, W_VMAX = range(12)
N_WALL_COLS = 12


@dataclass
class Wall:
    """One plane.

    Parameters
    ----------
    point_m : a point on the plane (m).
    normal : normal pointing into the domain (normalised on construction).
    material : name of the wall's material.
    mode : ``fixed``, ``velocity`` (moves at ``velocity_m_per_s``) or ``servo``.
    velocity_m_per_s : wall velocity vector (m/s) in ``velocity`` mode (any direction; the plane only
        moves along its normal, the tangential part drags particles, as a shearing plate would).
    target_force_N : servo target of the compressive load on the wall (N).
    servo_gain_m_per_s_per_N : servo gain (m/s per N of force error).
    max_speed_m_per_s : servo speed limit (m/s).
    area_m2 : area used to turn force into pressure; ``None`` means the periodic box cross-section
        normal to the wall (set by the simulation).
    name : label used in reports.
    """

    point_m: tuple[float, float, float]
    normal: tuple[float, float, float]
    material: str
    mode: str = "fixed"
    velocity_m_per_s: tuple[float, float, float] = (0.0, 0.0, 0.0)
    target_force_N: float = 0.0
    servo_gain_m_per_s_per_N: float = 0.0
    max_speed_m_per_s: float = 0.0
    area_m2: float | None = None
    name: str = "wall"

    def __post_init__(self) -> None:
        key = f"wall[{self.name}]"
        n = np.asarray(self.normal, dtype=float).reshape(-1)
        if n.size != 3 or not np.all(np.isfinite(n)) or np.linalg.norm(n) == 0:
            raise ConfigError(f"{key}.normal", self.normal, "a non-zero finite 3-vector")
        self.normal = tuple(float(c) for c in n / np.linalg.norm(n))  # type: ignore[assignment]
        p = np.asarray(self.point_m, dtype=float).reshape(-1)
        if p.size != 3 or not np.all(np.isfinite(p)):
            raise ConfigError(f"{key}.point_m", self.point_m, "a finite 3-vector")
        self.point_m = tuple(float(c) for c in p)  # type: ignore[assignment]
        if self.mode not in WALL_MODES:
            raise ConfigError(f"{key}.mode", self.mode, f"one of {WALL_MODES}")
        v = np.asarray(self.velocity_m_per_s, dtype=float).reshape(-1)
        if v.size != 3 or not np.all(np.isfinite(v)):
            raise ConfigError(f"{key}.velocity_m_per_s", self.velocity_m_per_s, "a finite 3-vector")
        self.velocity_m_per_s = tuple(float(c) for c in v)  # type: ignore[assignment]
        if self.mode == "servo":
            if not self.servo_gain_m_per_s_per_N > 0:
                raise ConfigError(
                    f"{key}.servo_gain_m_per_s_per_N", self.servo_gain_m_per_s_per_N, "> 0 in servo mode"
                )
            if not self.max_speed_m_per_s > 0:
                raise ConfigError(f"{key}.max_speed_m_per_s", self.max_speed_m_per_s, "> 0 in servo mode")
        if self.area_m2 is not None and not self.area_m2 > 0:
            raise ConfigError(f"{key}.area_m2", self.area_m2, "null or > 0")

    def row(self) -> np.ndarray:
        """The float row of the kernel wall table."""
        row = np.zeros(N_WALL_COLS)
        row[W_PX : W_PZ + 1] = self.point_m
        row[W_NX : W_NZ + 1] = self.normal
        row[W_VX : W_VZ + 1] = self.velocity_m_per_s if self.mode == "velocity" else (0.0, 0.0, 0.0)
        row[W_TARGET] = self.target_force_N
        row[W_GAIN] = self.servo_gain_m_per_s_per_N
        row[W_VMAX] = self.max_speed_m_per_s
        return row

    @property
    def mode_code(self) -> int:
        """0 fixed, 1 velocity, 2 servo."""
        return WALL_MODES.index(self.mode)


def hertz_stiffness_N_per_m(load_N: float, e_star_Pa: float, r_star_m: float, n_contacts: int = 1) -> float:
    """Tangent normal stiffness dF/d(delta) (N/m) of ``n_contacts`` Hertz contacts sharing ``load_N``.

    Each carries F = load/n at overlap d = (3F / (4 E* sqrt(R*)))^(2/3) with stiffness 2 E* sqrt(R* d);
    the total grows as n^(2/3), so counting every contact that can touch the wall bounds it from above.
    """
    if not (load_N > 0 and e_star_Pa > 0 and r_star_m > 0 and n_contacts >= 1):
        raise ConfigError(
            "hertz_stiffness", (load_N, e_star_Pa, r_star_m, n_contacts), "load, E*, R* > 0 and n >= 1"
        )
    f = load_N / n_contacts
    d = (3.0 * f / (4.0 * e_star_Pa * math.sqrt(r_star_m))) ** (2.0 / 3.0)
    return n_contacts * 2.0 * e_star_Pa * math.sqrt(r_star_m * d)


def servo_gain_m_per_s_per_N(
    stiffness_N_per_m: float,
    dt_s: float,
    response_time_s: float = 0.0,
    min_response_steps: float = 20.0,
) -> float:
    """Servo gain (m/s per N) that relaxes the force error of a wall pressing on contacts of total
    stiffness ``stiffness_N_per_m`` with time constant tau = max(response_time_s, min_response_steps
    x dt_s): gain = 1 / (k tau), so k gain dt <= 1 / min_response_steps (stable, no overshoot).

    ``response_time_s`` ~ sqrt(M / k) for a bed of mass M damps the bed's mode on its contacts best.
    """
    if not stiffness_N_per_m > 0:
        raise ConfigError("stiffness_N_per_m", stiffness_N_per_m, "> 0 (N/m)")
    if not dt_s > 0:
        raise ConfigError("dt_s", dt_s, "> 0 (s)")
    if not response_time_s >= 0:
        raise ConfigError("response_time_s", response_time_s, ">= 0 (s)")
    if not min_response_steps >= 1:
        raise ConfigError("min_response_steps", min_response_steps, ">= 1")
    tau = max(float(response_time_s), float(min_response_steps) * float(dt_s))
    return 1.0 / (float(stiffness_N_per_m) * tau)
