"""Velocity-Verlet step with rotation in one fused kernel per step, and the automatic time step.

One step of length dt, as `step` runs it:

1. (only when the previous step of the same chunk is not finished yet) each particle adds minus the
   stored force of the pairs it does not own (reverse list; a gather, so no float atomics) and gets
   the second half kick of the previous step;
2. walls move (servo walls set their speed from last step's load); every particle gets the first
   half kick v += dt/2 F/m, w += dt/2 T/I and drifts x += dt v (periodic axes wrapped); a flag is
   raised if some particle moved more than half the skin since the last neighbour build;
3. unless the flag is up, the forces: each particle walks the pairs it owns (half list), evaluates
   the contact law once per pair, keeps its own share and stores the pair force / partner torque;
   adds wall contacts, gravity and background damping. Forces use the half-step velocities, as
   LIGGGHTS does. With the flag up the caller rebuilds the list and runs `forces`.

`finish` is step 1 alone: it ends a chunk of steps so that forces and velocities are those of a
complete step. So a chunk of k steps costs k + 1 kernel launches (plus a list build and a `forces`
launch per rebuild) instead of three launches and three passes over the particles per step, and
the arithmetic of every particle is that of the unfused kick–drift–force–kick sequence.

Where the time goes (CPU, f64): the force loop waits on the divider (square roots and divisions),
so the contact law keeps them few (see `electrodem.engine.contact`), R* and m* come per pair from
the list, and the body force takes one division per particle.

``dom`` packs the domain scalars: [Lx, Ly, Lz, px, py, pz, gx, gy, gz, c_bg, dt] with box lengths
(m), periodic flags (0/1), gravity (m/s^2), background damping rate c_bg (1/s; force -c m v and
torque -c I w) and dt (s), followed by the Lees–Edwards slots of `electrodem.engine.state`
(D_LE_SHIFT, D_LE_DV).

Lees–Edwards (simple shear, flow x, gradient z, u_x = gamma_dot (z - Lz/2)): the image of the box
above it (z + Lz) is offset by s(t) = gamma_dot Lz t (mod Lx) in x and moves at +gamma_dot Lz in x.
So a pair vector crossing the z faces also changes by -/+ s in x and its relative velocity by
-/+ gamma_dot Lz (`_wrap_v`), and a particle leaving through the top (bottom) face re-enters at the
bottom (top) with x -/+ s and v_x -/+ gamma_dot Lz. ``step`` advances s. With s = 0 and a zero rate
the extra terms sit inside the z-crossing branches only and add nothing.
"""

import math

import numpy as np
import taichi as ti

from electrodem.engine import arch
from electrodem.engine.cohesion import cohesive_normal_force
from electrodem.engine.contact import table_contact_law
from electrodem.engine.model import (
    P_D0,
    P_DCUT,
    P_ESTAR,
    P_HAM,
    P_PY,
    P_W,
)
from electrodem.engine.state import D_LE_DV, D_LE_SHIFT, WALL_CHUNK, WW_DX, WW_WORK
from electrodem.engine.walls import (
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


@ti.func
def _wrap_v(d, box, per):
    """Minimum image of ``d`` = x_i - x_j with the box held in registers (``box`` = [Lx, Ly, Lz,
    Lees–Edwards shift s, image speed gamma_dot Lz]) and the x velocity (m/s) of the image of j used:
    the relative velocity is v_i - v_j - that. z goes first: crossing the z faces shifts x by s
    (|s| <= Lx/2, so one more shift by Lx restores the x minimum image)."""
    dvx = d[0] * 0.0
    if per[2]:
        if d[2] > 0.5 * box[2]:
            d[2] -= box[2]
            d[0] -= box[3]
            dvx = box[4]
        elif d[2] < -0.5 * box[2]:
            d[2] += box[2]
            d[0] += box[3]
            dvx = -box[4]
    for a in ti.static(range(2)):
        if per[a]:
            if d[a] > 0.5 * box[a]:
                d[a] -= box[a]
            elif d[a] < -0.5 * box[a]:
                d[a] += box[a]
    return d, dvx


@ti.func
def _wrap(d, box, per):
    """Minimum image of ``d`` (Lees–Edwards aware, see `_wrap_v`)."""
    d, _dvx = _wrap_v(d, box, per)
    return d


@ti.func
def _box(s):
    box = ti.Vector([s.dom[0], s.dom[1], s.dom[2], s.dom[D_LE_SHIFT], s.dom[D_LE_DV]])
    per = ti.Vector([s.dom[3] > 0.5, s.dom[4] > 0.5, s.dom[5] > 0.5])
    return box, per


@ti.func
def _advance_shift(s, dt):
    """s += gamma_dot Lz dt, kept in [-Lx/2, Lx/2) (a serial statement: runs once per step)."""
    if s.dom[D_LE_DV] != 0.0:
        sh = s.dom[D_LE_SHIFT] + s.dom[D_LE_DV] * dt
        if sh >= 0.5 * s.dom[0]:
            sh -= s.dom[0]
        elif sh < -0.5 * s.dom[0]:
            sh += s.dom[0]
        s.dom[D_LE_SHIFT] = sh


@ti.func
def _move_wall(s, k, dt):
    """Move wall k by one step and add its work on the particles.

    Work: trapezoidal rule over the wall's displacements dx_n = v_n dt (the full velocity: an in-plane
    component drags particles by friction and works too), W = sum_n -1/2 (F_(n-1) + F_n) . dx_n with
    F the force of the particles on the wall. At step n the force of the last evaluation, F_(n-1),
    closes step n-1 and opens step n: W += -1/2 F_(n-1) . (dx_(n-1) + dx_n); the half step still
    open, -1/2 F_n . dx_n, is added when the work is read (`Simulation.wall_work_J`)."""
    nrm = _vec(s.walls, k, W_NX)
    f_prev = s.wforce[k]
    if s.wmode[k] == 2:
        load = -f_prev.dot(nrm)
        speed = s.walls[k, W_GAIN] * (s.walls[k, W_TARGET] - load)
        speed = ti.min(ti.max(speed, -s.walls[k, W_VMAX]), s.walls[k, W_VMAX])
        for a in ti.static(range(3)):
            s.walls[k, W_VX + a] = speed * nrm[a]
    vel = _vec(s.walls, k, W_VX)
    step = vel.dot(nrm) * dt
    for a in ti.static(range(3)):
        s.walls[k, W_PX + a] += step * nrm[a]
    dx = vel * dt
    s.wwork[k, WW_WORK] -= 0.5 * f_prev.dot(_vec(s.wwork, k, WW_DX) + dx)
    for a in ti.static(range(3)):
        s.wwork[k, WW_DX + a] = dx[a]


@ti.func
def _gather(i, s, p):
    """Owner share of particle i's force/torque plus minus the pair forces (and the partner torques)
    of the pairs it does not own."""
    fi = s.f[i]
    ti_ = s.tq[i]
    for t in range(p.rev_start[i], p.rev_start[i + 1]):
        k = p.rev_k[t]
        fi -= p.pair_f[k]
        ti_ += p.pair_tj[k]
    return fi, ti_


WALL_BOND_BIT = 8
"""``wflag`` bit WALL_BOND_BIT + k is set while particle i has a JKR contact with wall k (bits 0..k
flag the tangential history; MAX_WALLS <= 8)."""


@ti.func
def _plastic_inputs(s, delta, dm: ti.template(), k, mi, mj):
    """(largest overlap so far including this step (m), yield pressure (Pa)) of pair k; zeros (unused)
    unless the store was built for the Thornton–Ning law."""
    d_max = delta * 0.0
    p_y = delta * 0.0
    if ti.static(s.plastic):
        d_max = ti.max(dm[k], delta)
        p_y = s.table[mi, mj, P_PY]
    return d_max, p_y


@ti.func
def _plastic_inputs_wall(s, delta, i, wk, mi, mw):
    """As `_plastic_inputs` for the contact of particle i with wall wk."""
    d_max = delta * 0.0
    p_y = delta * 0.0
    if ti.static(s.plastic):
        d_max = ti.max(s.wdm[i, wk], delta)
        p_y = s.table[mi, mw, P_PY]
    return d_max, p_y


@ti.func
def _cohesion(s, mi, mj, delta, r_star, bonded, cohesion: ti.template()):
    """Cohesive normal force (N, repulsive > 0) and JKR flag of a pair of materials mi, mj (see
    `electrodem.engine.cohesion.cohesive_normal_force`)."""
    return cohesive_normal_force(
        delta,
        r_star,
        s.table[mi, mj, P_ESTAR],
        s.table[mi, mj, P_W],
        s.table[mi, mj, P_HAM],
        s.table[mi, mj, P_D0],
        s.table[mi, mj, P_DCUT],
        bonded,
        cohesion,
    )


@ti.func
def _apart_cohesion(d, dist2, rs, r_star, mi, mj, s, p, k, cohesion: ti.template()):
    """Cohesive force on i (N) of listed pair k whose spheres do not overlap: a JKR contact stretched
    to negative overlap, or van der Waals attraction across the gap; updates the JKR flag."""
    f = d * 0.0
    look = False
    if ti.static(cohesion == 1):
        look = p.hc[k] != 0
    if ti.static(cohesion == 2):
        reach = rs + s.table[mi, mj, P_DCUT]
        look = dist2 < reach * reach
    if look:
        dist = ti.sqrt(dist2)
        bonded = 0
        if ti.static(cohesion == 1):
            bonded = p.hc[k]
        fn, flag = _cohesion(s, mi, mj, rs - dist, r_star, bonded, cohesion)
        if ti.static(cohesion == 1):
            p.hc[k] = flag
        f = d * (fn / dist)
    return f


@ti.func
def _particle_forces(
    i,
    s,
    p,
    nw,
    dt,
    g,
    c_bg,
    box,
    per,
    tangential: ti.template(),
    rolling: ti.template(),
    cohesion: ti.template(),
):
    """Owner share of particle i's force and torque: its pairs, its wall contacts, gravity and
    background damping; stores pair forces and updates pair and wall history."""
    xi, vi, wi, ri, mi = s.x[i], s.v[i], s.w[i], s.r[i], s.mat[i]
    im_i = s.invm[i]
    zero = vi * 0.0
    fi = zero
    ti_ = zero
    for k in range(p.start[i], p.start[i + 1]):
        j = p.j[k]
        d, dvx = _wrap_v(xi - s.x[j], box, per)
        dist2 = d.dot(d)
        rj = s.r[j]
        rs = ri + rj
        if dist2 < rs * rs:
            dist = ti.sqrt(dist2)
            nrm = d * (1.0 / dist)
            delta = rs - dist
            rm = p.rm[k]
            mj = s.mat[j]
            hr = zero
            if ti.static(rolling == 2):
                hr = p.hr[k]
            d_max, p_y = _plastic_inputs(s, delta, p.dm, k, mi, mj)
            force, t_i, t_j, h_t, h_r, _fn = table_contact_law(
                s.table,
                mi,
                mj,
                nrm,
                delta,
                rm[0],
                rm[1],
                ri - 0.5 * delta,
                rj - 0.5 * delta,
                vi - s.v[j] - ti.Vector([dvx, 0.0, 0.0]),
                wi,
                s.w[j],
                p.ht[k],
                hr,
                dt,
                tangential,
                rolling,
                d_max,
                p_y,
                s.plastic,
            )
            if ti.static(s.plastic):
                p.dm[k] = d_max
            if ti.static(tangential):
                p.ht[k] = h_t
            if ti.static(rolling == 2):
                p.hr[k] = h_r
            if ti.static(cohesion):
                bonded = 0
                if ti.static(cohesion == 1):
                    bonded = p.hc[k]
                f_c, flag = _cohesion(s, mi, mj, delta, rm[0], bonded, cohesion)
                if ti.static(cohesion == 1):
                    p.hc[k] = flag
                force += f_c * nrm
            p.pair_f[k] = force
            p.pair_tj[k] = t_j
            fi += force
            ti_ += t_i
        else:
            # Contact lost (or never made): history restarts from zero. Most listed pairs stay apart
            # for many steps, so the history is only written when it is not zero already.
            if ti.static(tangential):
                if p.ht[k].any():
                    p.ht[k] = zero
            if ti.static(rolling == 2):
                if p.hr[k].any():
                    p.hr[k] = zero
            if ti.static(s.plastic):
                if p.dm[k] != 0.0:
                    p.dm[k] = 0.0
            p.pair_f[k] = zero
            p.pair_tj[k] = zero
            if ti.static(cohesion):
                f_c = _apart_cohesion(d, dist2, rs, p.rm[k][0], mi, s.mat[j], s, p, k, cohesion)
                p.pair_f[k] = f_c
                fi += f_c
    flags = s.wflag[i]
    new_flags = 0
    for wk in range(nw):
        nrm = _vec(s.walls, wk, W_NX)
        delta = ri - (xi - _vec(s.walls, wk, W_PX)).dot(nrm)
        f_wall = zero  # force of particle i on wall wk, summed in `_reduce_wall_forces`
        if delta > 0.0 and im_i > 0.0:
            mw = s.wmat[wk]
            hr = zero
            if ti.static(rolling == 2):
                hr = s.whr[i, wk]
            d_max, p_y = _plastic_inputs_wall(s, delta, i, wk, mi, mw)
            force, t_i, _t_j, h_t, h_r, _fn = table_contact_law(
                s.table,
                mi,
                mw,
                nrm,
                delta,
                ri,
                1.0 / im_i,
                ri - delta,
                0.0,
                vi - _vec(s.walls, wk, W_VX),
                wi,
                zero,
                s.wht[i, wk],
                hr,
                dt,
                tangential,
                rolling,
                d_max,
                p_y,
                s.plastic,
            )
            s.wht[i, wk] = h_t
            if ti.static(s.plastic):
                s.wdm[i, wk] = d_max
            if ti.static(rolling == 2):
                s.whr[i, wk] = h_r
            if ti.static(cohesion):
                f_c, flag = _cohesion(s, mi, mw, delta, ri, (flags >> (WALL_BOND_BIT + wk)) & 1, cohesion)
                new_flags |= flag << (WALL_BOND_BIT + wk)
                force += f_c * nrm
            new_flags |= 1 << wk
            fi += force
            ti_ += t_i
            f_wall -= force
            if ti.static(s.record):
                s.wrec[s.ext[i], wk] = force
        else:
            if flags & (1 << wk):
                s.wht[i, wk] = zero
                if ti.static(rolling == 2):
                    s.whr[i, wk] = zero
                if ti.static(s.plastic):
                    s.wdm[i, wk] = 0.0
                if ti.static(s.record):
                    s.wrec[s.ext[i], wk] = zero
            if ti.static(cohesion):
                if im_i > 0.0:
                    # Apart from the wall: JKR contact stretched to negative overlap, or vdW across the gap.
                    bond = (flags >> (WALL_BOND_BIT + wk)) & 1
                    f_n, flag = _cohesion(s, mi, s.wmat[wk], delta, ri, bond, cohesion)
                    new_flags |= flag << (WALL_BOND_BIT + wk)
                    if f_n != 0.0:
                        fi += f_n * nrm
                        f_wall -= f_n * nrm
                        if ti.static(s.record):
                            # Bit wk marks the record to clear once the attraction ends.
                            s.wrec[s.ext[i], wk] = f_n * nrm
                            new_flags |= 1 << wk
        s.wpf[i, wk] = f_wall
    if new_flags != flags:
        s.wflag[i] = new_flags
    if im_i > 0.0:
        # One division per particle: the divider is what the force loop waits for.
        m_i = 1.0 / im_i
        # Weight acts on the gravitational mass gm, background damping (a rate) on the inertial one:
        # mass scaling changes the inertia, not the weight.
        fi += g * s.gm[i]
        if c_bg > 0.0:
            fi -= (c_bg * m_i) * vi
            if s.invI[i] > 0.0:
                ti_ -= (c_bg / s.invI[i]) * wi
    s.f[i] = fi
    s.tq[i] = ti_


@ti.kernel
def forces(
    s: ti.template(),
    p: ti.template(),
    n: ti.i32,
    nw: ti.i32,
    tangential: ti.template(),
    rolling: ti.template(),
    cohesion: ti.template(),
):
    """Owner shares of all forces at the current state (after a rebuild, or to prime a run)."""
    dt = s.dom[D_DT]
    g = ti.Vector([s.dom[D_G], s.dom[D_G + 1], s.dom[D_G + 2]])
    c_bg = s.dom[D_BG]
    box, per = _box(s)
    ti.loop_config(serialize=arch.SERIAL_LOOPS)
    for i in range(n):
        _particle_forces(i, s, p, nw, dt, g, c_bg, box, per, tangential, rolling, cohesion)
    _reduce_wall_forces(s, n, nw, 1)


@ti.func
def _reduce_wall_forces(s, n, nw, active):
    """``wforce[k]`` = sum over particles of ``wpf[i, k]`` in a fixed order, whatever the thread count:
    chunks of `WALL_CHUNK` particles summed in index order (in parallel), then the chunks in order.
    Called at the top level of a kernel (its loops are the kernel's own); ``active`` = 0 skips it."""
    n_chunks = (n + WALL_CHUNK - 1) // WALL_CHUNK
    ti.loop_config(serialize=arch.SERIAL_LOOPS)
    for c in range(n_chunks):
        if active:
            for k in range(nw):
                acc = s.wpf[0, 0] * 0.0
                for i in range(c * WALL_CHUNK, ti.min(n, (c + 1) * WALL_CHUNK)):
                    acc += s.wpf[i, k]
                s.wchunk[c, k] = acc
    ti.loop_config(serialize=True)
    for k in range(nw):
        if active:
            acc = s.wpf[0, 0] * 0.0
            for c in range(n_chunks):
                acc += s.wchunk[c, k]
            s.wforce[k] = acc


@ti.kernel
def finish(s: ti.template(), p: ti.template(), n: ti.i32):
    """Complete the forces (reverse pairs) and give the second half kick: the step is done."""
    dt = s.dom[D_DT]
    ti.loop_config(serialize=arch.SERIAL_LOOPS)
    for i in range(n):
        fi, ti_ = _gather(i, s, p)
        s.f[i] = fi
        s.tq[i] = ti_
        s.v[i] += 0.5 * dt * s.invm[i] * fi
        s.w[i] += 0.5 * dt * s.invI[i] * ti_


@ti.kernel
def step(
    s: ti.template(),
    p: ti.template(),
    n: ti.i32,
    nw: ti.i32,
    finish_prev: ti.i32,
    trigger_d2: float,
    tangential: ti.template(),
    rolling: ti.template(),
    cohesion: ti.template(),
) -> ti.i32:
    """One velocity-Verlet step (see module docstring). Returns 1 when the forces were computed, 0 when
    some particle moved farther than sqrt(trigger_d2) (m) since the last build: then the forces were
    NOT computed; rebuild the list, then call `forces`."""
    dt = s.dom[D_DT]
    _advance_shift(s, dt)
    ti.loop_config(serialize=True)
    for k in range(nw):
        _move_wall(s, k, dt)
    box, per = _box(s)
    moved = 0
    ti.loop_config(serialize=arch.SERIAL_LOOPS)
    for i in range(n):
        im_i = s.invm[i]
        iI_i = s.invI[i]
        fi = s.f[i]
        ti_ = s.tq[i]
        vi = s.v[i]
        wi = s.w[i]
        if finish_prev:
            # The completed force is only needed for this kick: the force loop below (or `forces`
            # after a rebuild) overwrites s.f and s.tq, so they are not stored.
            fi, ti_ = _gather(i, s, p)
            vi += 0.5 * dt * im_i * fi
            wi += 0.5 * dt * iI_i * ti_
        vi = vi + 0.5 * dt * im_i * fi
        wi = wi + 0.5 * dt * iI_i * ti_
        xi = s.x[i] + dt * vi
        # z first: a Lees–Edwards crossing shifts x (by at most Lx/2), which the x wrap then folds.
        if per[2]:
            if xi[2] >= box[2]:
                xi[2] -= box[2]
                xi[0] -= box[3]
                vi[0] -= box[4]
            elif xi[2] < 0.0:
                xi[2] += box[2]
                xi[0] += box[3]
                vi[0] += box[4]
        for a in ti.static(range(2)):
            if per[a]:
                if xi[a] >= box[a]:
                    xi[a] -= box[a]
                elif xi[a] < 0.0:
                    xi[a] += box[a]
        s.v[i] = vi
        s.w[i] = wi
        s.x[i] = xi
        d = _wrap(xi - s.xref[i], box, per)
        if d.dot(d) > trigger_d2:
            # A flag, not a max reduction: written (with the same value) only when a rebuild is due.
            moved = 1
    ok = 1 - moved
    g = ti.Vector([s.dom[D_G], s.dom[D_G + 1], s.dom[D_G + 2]])
    c_bg = s.dom[D_BG]
    ti.loop_config(serialize=arch.SERIAL_LOOPS)
    for i in range(n):
        if ok:
            _particle_forces(i, s, p, nw, dt, g, c_bg, box, per, tangential, rolling, cohesion)
    _reduce_wall_forces(s, n, nw, ok)
    return ok


@ti.kernel
def drifted(s: ti.template(), n: ti.i32, trigger_d2: float) -> ti.i32:
    """1 when some particle moved farther than sqrt(trigger_d2) (m) since the last neighbour build (the
    test `step` makes, for the split step of ``pre_force`` extensions; see `electrodem.engine.live`)."""
    box, per = _box(s)
    moved = 0
    ti.loop_config(serialize=arch.SERIAL_LOOPS)
    for i in range(n):
        d = _wrap(s.x[i] - s.xref[i], box, per)
        if d.dot(d) > trigger_d2:
            moved = 1
    return moved


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
