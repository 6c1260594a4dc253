"""Velocity-Verlet step with rotation in three fat kernels, and the automatic time step.

One step of length dt:

1. `pre_force`: walls move (servo walls set their speed from last step's load); every particle
   gets the first half kick v += dt/2 F/m, w += dt/2 T/I and drifts x += dt v (periodic axes wrapped);
   returns the largest squared displacement since the last neighbour build (rebuild test).
2. `forces`: each particle walks the pairs it owns (half list), evaluates the contact law once per
   pair, keeps its own share and stores the pair force / partner torque; adds wall contacts, gravity
   and background damping. Forces use the half-step velocities, as LIGGGHTS does.
3. `gather`: each particle adds minus the stored force of the pairs it does not own (reverse list),
   so no float atomics are needed, then gets the second half kick.

``dom`` packs the domain scalars: [Lx, Ly, Lz, px, py, pz, gx, gy, gz, c_bg, dt] with box lengths
(m), periodic flags (0/1), gravity (m/s^2), background damping rate c_bg (1/s; force -c m v and
torque -c I w) and dt (s).
"""

import math

import numpy as np
import taichi as ti

from electrodem.engine.contact import contact_law
from electrodem.engine.neighbors import min_image
from electrodem.engine.walls import (
    MAX_WALLS,
    W_GAIN,
    W_NX,
    W_PX,
    W_TARGET,
    W_VMAX,
    W_VX,
)

D_G, D_BG, D_DT = 6, 9, 10


@ti.func
def _vec(a, row, col0):
    return ti.Vector([a[row, col0], a[row, col0 + 1], a[row, col0 + 2]])


@ti.kernel
def pre_force(s: ti.template(), n: ti.i32, nw: ti.i32) -> float:
    dt = s.dom[D_DT]
    for k in range(nw):
        nrm = _vec(s.walls, k, W_NX)
        if s.wmode[k] == 2:
            load = -s.wforce[k].dot(nrm)
            speed = s.walls[k, W_GAIN] * (s.walls[k, W_TARGET] - load)
            speed = ti.min(ti.max(speed, -s.walls[k, W_VMAX]), s.walls[k, W_VMAX])
            for a in ti.static(range(3)):
                s.walls[k, W_VX + a] = speed * nrm[a]
        step = _vec(s.walls, k, W_VX).dot(nrm) * dt
        for a in ti.static(range(3)):
            s.walls[k, W_PX + a] += step * nrm[a]
    max_d2 = 0.0
    for i in range(n):
        vi = s.v[i] + 0.5 * dt * s.invm[i] * s.f[i]
        wi = s.w[i] + 0.5 * dt * s.invI[i] * s.tq[i]
        xi = s.x[i] + dt * vi
        for a in ti.static(range(3)):
            if s.dom[3 + a] > 0.5:
                xi[a] -= s.dom[a] * ti.floor(xi[a] / s.dom[a])
        s.v[i] = vi
        s.w[i] = wi
        s.x[i] = xi
        d = min_image(xi - s.xref[i], s.dom)
        ti.atomic_max(max_d2, d.dot(d))
    return max_d2


@ti.kernel
def forces(
    s: ti.template(),
    p: ti.template(),
    n: ti.i32,
    nw: ti.i32,
    tangential: ti.template(),
    rolling: ti.template(),
):
    dt = s.dom[D_DT]
    g = ti.Vector([s.dom[D_G], s.dom[D_G + 1], s.dom[D_G + 2]])
    c_bg = s.dom[D_BG]
    for k in range(MAX_WALLS):
        s.wforce[k] = s.wforce[k] * 0.0
    for i in range(n):
        xi, vi, wi, ri, mi = s.x[i], s.v[i], s.w[i], s.r[i], s.mat[i]
        im_i = s.invm[i]
        fi = vi * 0.0
        ti_ = vi * 0.0
        for k in range(p.start[i], p.start[i + 1]):
            j = p.j[k]
            d = min_image(xi - s.x[j], s.dom)
            dist2 = d.dot(d)
            rj = s.r[j]
            rs = ri + rj
            fk = vi * 0.0
            tjk = vi * 0.0
            if dist2 < rs * rs:
                dist = ti.sqrt(dist2)
                nrm = d / dist
                delta = rs - dist
                im_sum = im_i + s.invm[j]
                m_star = 0.0
                if im_sum > 0.0:
                    m_star = 1.0 / im_sum
                mj = s.mat[j]
                force, t_i, t_j, h_t, h_r, _fn = contact_law(
                    nrm,
                    delta,
                    ri * rj / rs,
                    m_star,
                    ri - 0.5 * delta,
                    rj - 0.5 * delta,
                    vi - s.v[j],
                    wi,
                    s.w[j],
                    s.table[mi, mj, 0],
                    s.table[mi, mj, 1],
                    s.table[mi, mj, 2],
                    s.table[mi, mj, 3],
                    s.table[mi, mj, 4],
                    p.ht[k],
                    p.hr[k],
                    dt,
                    tangential,
                    rolling,
                )
                p.ht[k] = h_t
                p.hr[k] = h_r
                fk = force
                tjk = t_j
                ti_ += t_i
            else:
                p.ht[k] = vi * 0.0
                p.hr[k] = vi * 0.0
            fi += fk
            p.pair_f[k] = fk
            p.pair_tj[k] = tjk
        for wk in ti.static(range(MAX_WALLS)):
            if wk < nw:
                nrm = _vec(s.walls, wk, W_NX)
                delta = ri - (xi - _vec(s.walls, wk, W_PX)).dot(nrm)
                if delta > 0.0 and im_i > 0.0:
                    mw = s.wmat[wk]
                    force, t_i, _t_j, h_t, h_r, _fn = contact_law(
                        nrm,
                        delta,
                        ri,
                        1.0 / im_i,
                        ri - delta,
                        0.0,
                        vi - _vec(s.walls, wk, W_VX),
                        wi,
                        wi * 0.0,
                        s.table[mi, mw, 0],
                        s.table[mi, mw, 1],
                        s.table[mi, mw, 2],
                        s.table[mi, mw, 3],
                        s.table[mi, mw, 4],
                        s.wht[i, wk],
                        s.whr[i, wk],
                        dt,
                        tangential,
                        rolling,
                    )
                    s.wht[i, wk] = h_t
                    s.whr[i, wk] = h_r
                    fi += force
                    ti_ += t_i
                    s.wforce[wk] -= force
                else:
                    s.wht[i, wk] = vi * 0.0
                    s.whr[i, wk] = vi * 0.0
        if im_i > 0.0:
            fi += (g - c_bg * vi) / im_i
            if s.invI[i] > 0.0:
                ti_ -= (c_bg / s.invI[i]) * wi
        s.f[i] = fi
        s.tq[i] = ti_


@ti.kernel
def gather(s: ti.template(), p: ti.template(), n: ti.i32):
    dt = s.dom[D_DT]
    for i in range(n):
        fi = s.f[i]
        ti_ = s.tq[i]
        for t in range(p.rev_start[i], p.rev_start[i + 1]):
            k = p.rev_k[t]
            fi -= p.pair_f[k]
            ti_ += p.pair_tj[k]
        s.f[i] = fi
        s.tq[i] = ti_
        s.v[i] += 0.5 * dt * s.invm[i] * fi
        s.w[i] += 0.5 * dt * s.invI[i] * ti_


def rayleigh_time_s(
    radius_m: np.ndarray,
    density_kg_per_m3: np.ndarray,
    shear_modulus_Pa: np.ndarray,
    poisson_ratio: np.ndarray,
) -> float:
    """Smallest Rayleigh-wave time pi r sqrt(rho/G) / (0.1631 nu + 0.8766) over the particles (s)."""
    t = math.pi * radius_m * np.sqrt(density_kg_per_m3 / shear_modulus_Pa) / (0.1631 * poisson_ratio + 0.8766)
    return float(np.min(t))


def hertz_contact_time_s(
    m_star_kg: float, r_star_m: float, e_star_Pa: float, impact_speed_m_per_s: float
) -> float:
    """Duration of an elastic Hertz collision, 2.868 (m*^2 / (R* E*^2 v))^(1/5) (s)."""
    return 2.868 * (m_star_kg**2 / (r_star_m * e_star_Pa**2 * impact_speed_m_per_s)) ** 0.2
