"""The pair law as a pure Taichi function: geometry and state in, force/torques/history out.

Separate from pair enumeration (neighbors.py) and from the step kernels (integrate.py), so the same
law serves sphere–sphere and sphere–wall contacts. See `electrodem.engine.model` for the physics of
each named sub-model and the units of the pair table.
"""

import taichi as ti


@ti.func
def _rotate_into_plane(h, n):
    """Project history vector ``h`` onto the plane normal to ``n`` keeping its length (the contact
    frame turned since the last step)."""
    mag0 = h.norm()
    hp = h - h.dot(n) * n
    mag1 = hp.norm()
    out = hp * 0.0
    if mag1 > 0.0:
        out = hp * (mag0 / mag1)
    return out


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
    eta,
    mu,
    mu_r,
    ht,
    hr,
    dt,
    tangential: ti.template(),
    rolling: ti.template(),
):
    """Hertz–Mindlin contact between body i and body j (a sphere, or a wall with w_j = 0).

    Inputs (SI): unit normal ``n`` from j to i, overlap ``delta`` > 0 (m), effective radius ``r_star``
    and mass ``m_star``, lever arms ``li``/``lj`` from the centres to the contact point (m),
    centre velocity difference ``v_rel`` = v_i - v_j (m/s), angular velocities (rad/s), pair
    properties, tangential history ``ht`` (m, displacement of i relative to j) and rolling history
    ``hr`` (N m, moment on i), time step ``dt`` (s).

    Returns (force on i (N), torque on i (N m), torque on j (N m), new ht, new hr, normal force (N)).
    The force on j is minus the force on i.
    """
    a = ti.sqrt(r_star * delta)
    s_n = 2.0 * e_star * a
    v_c = v_rel - (li * w_i + lj * w_j).cross(n)
    v_n = v_c.dot(n)
    v_t = v_c - v_n * n
    fn = 4.0 / 3.0 * e_star * a * delta - eta * ti.sqrt(m_star * s_n) * v_n
    fn = ti.max(fn, 0.0)
    force = fn * n
    torque_i = n * 0.0
    torque_j = n * 0.0
    ht_new = ht * 0.0
    hr_new = hr * 0.0
    if ti.static(tangential):
        k_t = 8.0 * g_star * a
        gam_t = eta * ti.sqrt(m_star * k_t)
        h = _rotate_into_plane(ht, n) + v_t * dt
        f_t = -k_t * h - gam_t * v_t
        f_t_max = mu * fn
        f_t_mag = f_t.norm()
        if f_t_mag > f_t_max:
            # Coulomb sliding: cap the force and reset the spring so that spring + dashpot = cap.
            f_t = f_t * (f_t_max / f_t_mag)
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
