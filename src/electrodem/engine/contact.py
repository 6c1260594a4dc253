"""The pair law as a pure Taichi function: geometry and state in, force/torques/history out.

Separate from pair enumeration (neighbors.py) and from the step kernels (integrate.py), so the same
law serves sphere–sphere and sphere–wall contacts. See `electrodem.engine.model` for the physics of
each named sub-model and the units of the pair table.

The law runs once per contact and step, so it is written to keep long-latency operations (square
roots, divisions) few: both dashpots share sqrt(m* a) (their coefficients eta sqrt(2 E*) and
eta sqrt(8 G*) come precomputed from the pair table), the Coulomb test compares squares, and the
history rotation rescales with a polynomial when the frame turned by a tiny angle.
"""

import math

import taichi as ti

from electrodem.engine.model import P_ESTAR, P_ETA, P_GSTAR, P_MU, P_MUR
from electrodem.engine.state import T_CN, T_CT


@ti.func
def _rotate_into_plane(h, n):
    """Project history vector ``h`` onto the plane normal to ``n`` keeping its length (the contact
    frame turned since the last step)."""
    out = h * 0.0
    h2 = h.dot(h)
    if h2 > 0.0:
        hp = h - h.dot(n) * n
        hp2 = hp.dot(hp)
        if hp2 > 0.0:
            # The frame turns by a tiny angle per step, so the rescale factor sqrt(1 + eps) is within
            # round-off of its Taylor polynomial (the next term, 5 eps^4 / 128, is < 1e-17 for
            # |eps| < 1e-4): no square root in the common case.
            eps = (h2 - hp2) / hp2
            scale = 1.0 + eps * (0.5 - eps * (0.125 - 0.0625 * eps))
            if ti.abs(eps) > 1e-4:
                scale = ti.sqrt(h2 / hp2)
            out = hp * scale
    return out


@ti.func
def thornton_ning_normal(delta, delta_max, r_star, e_star, p_y):
    """Elastic part of the Thornton–Ning (1998) elastic–perfectly-plastic Hertzian normal force.

    Source: C. Thornton and Z. Ning, "A theoretical model for the stick/bounce behaviour of adhesive,
    elastic-plastic spheres", Powder Technology 99 (1998) 154-162 (limiting contact pressure p_y,
    non-adhesive part). Inputs (SI): overlap ``delta`` > 0 (m), largest overlap of the contact so far
    ``delta_max`` >= delta (m), effective radius ``r_star`` (m), E* (Pa), yield (limiting contact)
    pressure ``p_y`` (Pa; <= 0 means elastic: plain Hertz).

    * Loading while the Hertz peak pressure 2 E* a / (pi R*) stays below p_y, i.e. delta <= delta_y
      with a_y = pi p_y R* / (2 E*), delta_y = a_y^2 / R*: Hertz, F = 4/3 E* sqrt(R*) delta^1.5.
    * Loading beyond (delta = delta_max > delta_y): F = F_y + pi p_y R* (delta - delta_y) with
      F_y = 4/3 E* sqrt(R*) delta_y^1.5 (= 2/3 pi p_y a_y^2).
    * Unloading/reloading below delta_max: Hertz with the enlarged radius
      R_p = 4 E* a_p^3 / (3 F_max), a_p^2 = (2 F_max + F_y) / (2 pi p_y), about the plastic overlap
      delta_p = delta_max - (3 F_max / (4 E* sqrt(R_p)))^(2/3) = delta_max - 3 F_max / (4 E* a_p);
      zero force below delta_p.

    The pieces join continuously (checked in the tests): at delta_max = delta_y, a_p = a_y, R_p = R*,
    delta_p = 0; at delta = delta_max the unloading curve gives F_max. The form with a_p avoids
    fractional powers: one square root per branch.

    Returns (F (N) >= 0, current stiffness dF/d delta (N/m), elastic overlap delta - delta_p (m));
    the recoverable elastic energy of the contact is 2/5 F (delta - delta_p).
    """
    a = ti.sqrt(r_star * delta)
    f = 4.0 / 3.0 * e_star * a * delta
    s_n = 2.0 * e_star * a
    x_el = delta
    if p_y > 0.0:
        a_y = math.pi * p_y * r_star / (2.0 * e_star)
        d_y = a_y * a_y / r_star
        if delta_max > d_y:
            k_p = math.pi * p_y * r_star
            f_y = 4.0 / 3.0 * e_star * a_y * d_y
            if delta >= delta_max:
                f = f_y + k_p * (delta - d_y)
                s_n = k_p
                f_max = f
                a_p = ti.sqrt((2.0 * f_max + f_y) / (2.0 * math.pi * p_y))
                x_el = 3.0 * f_max / (4.0 * e_star * a_p)
            else:
                f_max = f_y + k_p * (delta_max - d_y)
                a_p2 = (2.0 * f_max + f_y) / (2.0 * math.pi * p_y)
                w = 3.0 * f_max / (4.0 * e_star * ti.sqrt(a_p2))
                r_p = a_p2 / w
                x_el = delta - (delta_max - w)
                f = 0.0
                s_n = 0.0
                if x_el > 0.0:
                    a_u = ti.sqrt(r_p * x_el)
                    f = 4.0 / 3.0 * e_star * a_u * x_el
                    s_n = 2.0 * e_star * a_u
                else:
                    x_el = 0.0
    return f, s_n, x_el


@ti.func
def contact_law(
    n,
    delta,
    r_star,
    m_star,
    li,
    lj,
    v_rel,
    w_i,
    w_j,
    e_star,
    g_star,
    c_n,
    c_t,
    eta,
    mu,
    mu_r,
    ht,
    hr,
    dt,
    tangential: ti.template(),
    rolling: ti.template(),
    delta_max,
    p_y,
    plastic: ti.template(),
):
    """Hertz–Mindlin contact between body i and body j (a sphere, or a wall with w_j = 0).

    Inputs (SI): unit normal ``n`` from j to i, overlap ``delta`` > 0 (m), effective radius ``r_star``
    and mass ``m_star``, lever arms ``li``/``lj`` from the centres to the contact point (m),
    centre velocity difference ``v_rel`` = v_i - v_j (m/s), angular velocities (rad/s), pair
    properties (E*, G* in Pa; dashpot coefficients c_n = eta sqrt(2 E*), c_t = eta sqrt(8 G*) in
    sqrt(Pa); damping factor eta, friction mu, rolling friction mu_r), tangential history ``ht``
    (m, displacement of i relative to j) and rolling history ``hr`` (N m, moment on i), time step
    ``dt`` (s). With ``plastic`` (compile-time switch) the elastic normal force is Thornton–Ning's
    (`thornton_ning_normal`, largest overlap so far ``delta_max`` (m) >= delta, yield pressure ``p_y``
    (Pa)) and the dashpot uses its current stiffness S_n: -eta sqrt(m* S_n) v_n.

    Normal force 4/3 E* a delta - eta sqrt(m* S_n) v_n with a = sqrt(R* delta), S_n = 2 E* a;
    tangential spring k_t = 8 G* a with dashpot eta sqrt(m* k_t), capped at mu F_n.

    Returns (force on i (N), torque on i (N m), torque on j (N m), new ht, new hr, normal force (N)).
    The force on j is minus the force on i.
    """
    a = ti.sqrt(r_star * delta)
    sq = ti.sqrt(m_star * a)
    v_c = v_rel - (li * w_i + lj * w_j).cross(n)
    v_n = v_c.dot(n)
    v_t = v_c - v_n * n
    f_el = 4.0 / 3.0 * e_star * a * delta
    gam_n = c_n * sq
    if ti.static(plastic):
        f_el, s_pl, _x_el = thornton_ning_normal(delta, delta_max, r_star, e_star, p_y)
        gam_n = eta * ti.sqrt(m_star * s_pl)
    fn = ti.max(f_el - gam_n * v_n, 0.0)
    force = fn * n
    torque_i = n * 0.0
    torque_j = n * 0.0
    ht_new = ht * 0.0
    hr_new = hr * 0.0
    if ti.static(tangential):
        k_t = 8.0 * g_star * a
        gam_t = c_t * sq
        h = _rotate_into_plane(ht, n) + v_t * dt
        f_t = -k_t * h - gam_t * v_t
        f_t_max = mu * fn
        f_t2 = f_t.dot(f_t)
        if f_t2 > f_t_max * f_t_max:
            # Coulomb sliding: cap the force and reset the spring so that spring + dashpot = cap.
            f_t = f_t * (f_t_max / ti.sqrt(f_t2))
            h = -(f_t + gam_t * v_t) / k_t
        ht_new = h
        force += f_t
        nxf = n.cross(f_t)
        torque_i = -li * nxf
        torque_j = -lj * nxf
    if ti.static(rolling == 1):
        w_r = w_i - w_j
        w_r = w_r - w_r.dot(n) * n
        w_mag = w_r.norm()
        if w_mag > 0.0:
            m_r = -(mu_r * r_star * fn / w_mag) * w_r
            torque_i += m_r
            torque_j -= m_r
    if ti.static(rolling == 2):
        s_n = 2.0 * e_star * a
        w_r = w_i - w_j
        w_r = w_r - w_r.dot(n) * n
        k_r = 2.25 * s_n * mu_r * mu_r * r_star * r_star
        m_r = _rotate_into_plane(hr, n) - k_r * w_r * dt
        m_max = mu_r * r_star * fn
        m_mag = m_r.norm()
        m_d = m_r * 0.0
        if m_mag > m_max:
            m_r = m_r * (m_max / m_mag)
        else:
            # Viscous part of the EPSD model, active in the elastic regime only (Ai et al. 2011), with
            # damping ratio 0.3 on the rolling inertia m* R*^2 / 3.5.
            m_d = -0.6 * ti.sqrt(m_star * r_star * r_star / 3.5 * k_r) * w_r
        hr_new = m_r
        torque_i += m_r + m_d
        torque_j -= m_r + m_d
    return force, torque_i, torque_j, ht_new, hr_new, fn


@ti.func
def table_contact_law(
    table: ti.template(),
    ma,
    mb,
    n,
    delta,
    r_star,
    m_star,
    li,
    lj,
    v_rel,
    w_i,
    w_j,
    ht,
    hr,
    dt,
    tangential: ti.template(),
    rolling: ti.template(),
    delta_max,
    p_y,
    plastic: ti.template(),
):
    """`contact_law` with the pair properties of materials ``ma``, ``mb`` read from the kernels' pair
    table (columns of `electrodem.engine.model` and `electrodem.engine.state.TABLE_COLS`): the one
    entry point of sphere–sphere, wall and tool contacts."""
    return contact_law(
        n,
        delta,
        r_star,
        m_star,
        li,
        lj,
        v_rel,
        w_i,
        w_j,
        table[ma, mb, P_ESTAR],
        table[ma, mb, P_GSTAR],
        table[ma, mb, T_CN],
        table[ma, mb, T_CT],
        table[ma, mb, P_ETA],
        table[ma, mb, P_MU],
        table[ma, mb, P_MUR],
        ht,
        hr,
        dt,
        tangential,
        rolling,
        delta_max,
        p_y,
        plastic,
    )
