"""Reductions over the state (energies, overlaps, NaN) and the export of contacts as arrays."""

import taichi as ti

from electrodem.engine import arch
from electrodem.engine.cohesion import cohesive_energy as cohesive_energy_of
from electrodem.engine.contact import thornton_ning_normal
from electrodem.engine.integrate import D_G, WALL_BOND_BIT, _vec
from electrodem.engine.model import P_D0, P_DCUT, P_ESTAR, P_HAM, P_PY, P_W
from electrodem.engine.neighbors import min_image
from electrodem.engine.walls import MAX_WALLS, W_NX, W_PX

# Slots of the diagnostics buffer ``s.diag``.
(O_KE_T, O_KE_R, O_NAN, O_MAX_OVL, O_MAX_SPEED, O_PE_G, O_ELASTIC, O_WORST, O_MOM,
 O_MAX_EL, O_WORST_EL) = range(11)  # fmt: skip


@ti.func
def _elastic_state(s, delta, d_max, r_star, ma, mb):
    """(recoverable elastic energy (J), elastic overlap (m)) of a contact at overlap ``delta`` (m) whose
    largest overlap so far is ``d_max`` (m; used by the Thornton–Ning law only)."""
    e_star = s.table[ma, mb, P_ESTAR]
    energy = 8.0 / 15.0 * e_star * ti.sqrt(r_star) * delta**2.5
    x_el = delta
    if ti.static(s.plastic):
        f, _s_n, x = thornton_ning_normal(delta, ti.max(d_max, delta), r_star, e_star, s.table[ma, mb, P_PY])
        energy, x_el = 0.4 * f * x, x
    return energy, x_el


@ti.func
def _track_overlap(s, i, total_ratio, elastic_ratio):
    """Running maxima of the total and the elastic overlap ratios, with the particle of each."""
    old = ti.atomic_max(s.diag[O_MAX_OVL], total_ratio)
    if total_ratio > old:
        s.diag[O_WORST] = i
    old_el = ti.atomic_max(s.diag[O_MAX_EL], elastic_ratio)
    if elastic_ratio > old_el:
        s.diag[O_WORST_EL] = i


@ti.kernel
def diagnostics(s: ti.template(), p: ti.template(), n: ti.i32, nw: ti.i32):
    """Fill ``s.diag``: kinetic energy of translation and rotation (J), count of non-finite
    particles, max overlap divided by the smaller radius (pairs and walls), max speed (m/s),
    gravitational potential -sum m g.x (J), elastic energy over all contacts (J), index of a particle
    in the worst overlap, |total momentum| (kg m/s), and the max elastic overlap ratio with its
    particle (the overlap minus the plastic overlap delta_p of a Thornton–Ning contact; the overlap
    itself for elastic laws).

    Elastic energy: Hertz 8/15 E* sqrt(R*) d^2.5; with the Thornton–Ning law the energy recoverable by
    unloading the contact, 8/15 E* sqrt(R_p) (d - d_p)^2.5 = 2/5 F (d - d_p) (the plastic work is
    dissipated and not counted)."""
    g = ti.Vector([s.dom[D_G], s.dom[D_G + 1], s.dom[D_G + 2]])
    ti.loop_config(serialize=arch.SERIAL_LOOPS)
    for k in range(11):
        s.diag[k] = 0.0
    mom = g * 0.0
    ti.loop_config(serialize=arch.SERIAL_LOOPS)
    for i in range(n):
        xi, vi, wi = s.x[i], s.v[i], s.w[i]
        bad = False
        for a in ti.static(range(3)):
            if not (ti.abs(xi[a]) < 1e30 and ti.abs(vi[a]) < 1e30 and ti.abs(wi[a]) < 1e30):
                bad = True
        if bad:
            s.diag[O_NAN] += 1.0
        else:
            if s.invm[i] > 0.0:
                m = 1.0 / s.invm[i]
                s.diag[O_KE_T] += 0.5 * m * vi.dot(vi)
                s.diag[O_PE_G] += -s.gm[i] * g.dot(xi)
                mom += m * vi
            if s.invI[i] > 0.0:
                s.diag[O_KE_R] += 0.5 * wi.dot(wi) / s.invI[i]
            ti.atomic_max(s.diag[O_MAX_SPEED], vi.norm())
    ti.loop_config(serialize=arch.SERIAL_LOOPS)
    for i in range(n):
        xi, ri, mi = s.x[i], s.r[i], s.mat[i]
        for k in range(p.start[i], p.start[i + 1]):
            j = p.j[k]
            d = min_image(xi - s.x[j], s.dom)
            delta = ri + s.r[j] - d.norm()
            if delta > 0.0:
                rstar = ri * s.r[j] / (ri + s.r[j])
                d_max = 0.0
                if ti.static(s.plastic):  # the history field is allocated for plastic runs only
                    d_max = p.dm[k]
                energy, x_el = _elastic_state(s, delta, d_max, rstar, mi, s.mat[j])
                s.diag[O_ELASTIC] += energy
                r_min = ti.min(ri, s.r[j])
                _track_overlap(s, i, delta / r_min, x_el / r_min)
        for wk in ti.static(range(MAX_WALLS)):
            if wk < nw:
                delta = ri - (xi - _vec(s.walls, wk, W_PX)).dot(_vec(s.walls, wk, W_NX))
                if delta > 0.0:
                    d_max = 0.0
                    if ti.static(s.plastic):
                        d_max = s.wdm[i, wk]
                    energy, x_el = _elastic_state(s, delta, d_max, ri, mi, s.wmat[wk])
                    s.diag[O_ELASTIC] += energy
                    _track_overlap(s, i, delta / ri, x_el / ri)
    s.diag[O_MOM] = mom.norm()


@ti.kernel
def export_contacts(
    s: ti.template(),
    p: ti.template(),
    n: ti.i32,
    ci: ti.types.ndarray(),
    cj: ti.types.ndarray(),
    cval: ti.types.ndarray(),
) -> ti.i32:
    """Touching pairs: i, j and per pair [overlap (m), contact radius sqrt(R* d) (m), normal force (N),
    tangential force magnitude (N), unit normal n from j to i (3), tangential force on i (N, 3), branch
    vector x_i - x_j (m, minimum image, 3)]; returns their number. Order is arbitrary (the caller
    sorts)."""
    count = 0
    ti.loop_config(serialize=arch.SERIAL_LOOPS)
    for i in range(n):
        xi, ri = s.x[i], s.r[i]
        for k in range(p.start[i], p.start[i + 1]):
            j = p.j[k]
            d = min_image(xi - s.x[j], s.dom)
            dist = d.norm()
            delta = ri + s.r[j] - dist
            if delta > 0.0:
                slot = ti.atomic_add(count, 1)
                nrm = d / dist
                fk = p.pair_f[k]
                fn = fk.dot(nrm)
                ci[slot] = i
                cj[slot] = j
                cval[slot, 0] = delta
                cval[slot, 1] = ti.sqrt(ri * s.r[j] / (ri + s.r[j]) * delta)
                cval[slot, 2] = fn
                ft = fk - fn * nrm
                cval[slot, 3] = ft.norm()
                for a in ti.static(range(3)):
                    cval[slot, 4 + a] = nrm[a]
                    cval[slot, 7 + a] = ft[a]
                    cval[slot, 10 + a] = d[a]
    return count


@ti.kernel
def wall_overlaps(s: ti.template(), n: ti.i32, wk: ti.i32, out: ti.types.ndarray()):
    """Overlap (m) of every particle with wall ``wk`` (<= 0 means no contact)."""
    ti.loop_config(serialize=arch.SERIAL_LOOPS)
    for i in range(n):
        out[i] = s.r[i] - (s.x[i] - _vec(s.walls, wk, W_PX)).dot(_vec(s.walls, wk, W_NX))


@ti.kernel
def cohesive_energy(
    s: ti.template(), p: ti.template(), n: ti.i32, nw: ti.i32, cohesion: ti.template()
) -> float:
    """Cohesive potential energy (J, <= 0) of all pairs and wall contacts for cohesion model
    ``cohesion`` (see `electrodem.engine.cohesion.cohesive_energy`); JKR counts the pairs whose contact
    flag is set or that overlap."""
    total = 0.0
    ti.loop_config(serialize=arch.SERIAL_LOOPS)
    for i in range(n):
        xi, ri, mi = s.x[i], s.r[i], s.mat[i]
        for k in range(p.start[i], p.start[i + 1]):
            j = p.j[k]
            mj = s.mat[j]
            d = min_image(xi - s.x[j], s.dom)
            bonded = 0
            if ti.static(cohesion == 1):
                bonded = p.hc[k]
            total += cohesive_energy_of(
                ri + s.r[j] - d.norm(),
                p.rm[k][0],
                s.table[mi, mj, P_ESTAR],
                s.table[mi, mj, P_W],
                s.table[mi, mj, P_HAM],
                s.table[mi, mj, P_D0],
                s.table[mi, mj, P_DCUT],
                bonded,
                cohesion,
            )
        if s.invm[i] > 0.0:
            for wk in ti.static(range(MAX_WALLS)):
                if wk < nw:
                    mw = s.wmat[wk]
                    delta = ri - (xi - _vec(s.walls, wk, W_PX)).dot(_vec(s.walls, wk, W_NX))
                    total += cohesive_energy_of(
                        delta,
                        ri,
                        s.table[mi, mw, P_ESTAR],
                        s.table[mi, mw, P_W],
                        s.table[mi, mw, P_HAM],
                        s.table[mi, mw, P_D0],
                        s.table[mi, mw, P_DCUT],
                        (s.wflag[i] >> (WALL_BOND_BIT + wk)) & 1,
                        cohesion,
                    )
    return total
