"""Reductions over the state (energies, overlaps, NaN) and the export of contacts as arrays."""

import taichi as ti

from electrodem.engine.cohesion import cohesive_energy as cohesive_energy_of
from electrodem.engine.contact import thornton_ning_normal
from electrodem.engine.integrate import D_G, WALL_BOND_BIT, _vec
from electrodem.engine.model import P_D0, P_DCUT, P_ESTAR, P_HAM, P_PY, P_W
from electrodem.engine.neighbors import min_image
from electrodem.engine.walls import MAX_WALLS, W_NX, W_PX

# Slots of the diagnostics buffer ``s.diag``.
O_KE_T, O_KE_R, O_NAN, O_MAX_OVL, O_MAX_SPEED, O_PE_G, O_ELASTIC, O_WORST, O_MOM = range(9)


@ti.func
def _tn_energy(s, delta, d_max, r_star, ma, mb):
    e_star = s.table[ma, mb, P_ESTAR]
    f, _s_n, x_el = thornton_ning_normal(delta, ti.max(d_max, delta), r_star, e_star, s.table[ma, mb, P_PY])
    return 0.4 * f * x_el


@ti.func
def _elastic_energy(s, delta, dm: ti.template(), k, r_star, ma, mb):
    """Recoverable elastic energy (J) of pair k at overlap ``delta`` (m)."""
    energy = 8.0 / 15.0 * s.table[ma, mb, P_ESTAR] * ti.sqrt(r_star) * delta**2.5
    if ti.static(s.plastic):
        energy = _tn_energy(s, delta, dm[k], r_star, ma, mb)
    return energy


@ti.func
def _elastic_energy_wall(s, delta, i, wk, r_star, ma):
    """Recoverable elastic energy (J) of particle i's contact with wall wk."""
    mb = s.wmat[wk]
    energy = 8.0 / 15.0 * s.table[ma, mb, P_ESTAR] * ti.sqrt(r_star) * delta**2.5
    if ti.static(s.plastic):
        energy = _tn_energy(s, delta, s.wdm[i, wk], r_star, ma, mb)
    return energy


@ti.kernel
def diagnostics(s: ti.template(), p: ti.template(), n: ti.i32, nw: ti.i32):
    """Fill ``s.diag``: kinetic energy of translation and rotation (J), count of non-finite
    particles, max overlap divided by the smaller radius (pairs and walls), max speed (m/s),
    gravitational potential -sum m g.x (J), elastic energy over all contacts (J), index of a particle
    in the worst overlap, and |total momentum| (kg m/s).

    Elastic energy: Hertz 8/15 E* sqrt(R*) d^2.5; with the Thornton–Ning law the energy recoverable by
    unloading the contact, 8/15 E* sqrt(R_p) (d - d_p)^2.5 = 2/5 F (d - d_p) (the plastic work is
    dissipated and not counted)."""
    g = ti.Vector([s.dom[D_G], s.dom[D_G + 1], s.dom[D_G + 2]])
    for k in range(9):
        s.diag[k] = 0.0
    mom = g * 0.0
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
                s.diag[O_PE_G] += -m * g.dot(xi)
                mom += m * vi
            if s.invI[i] > 0.0:
                s.diag[O_KE_R] += 0.5 * wi.dot(wi) / s.invI[i]
            ti.atomic_max(s.diag[O_MAX_SPEED], vi.norm())
    for i in range(n):
        xi, ri, mi = s.x[i], s.r[i], s.mat[i]
        for k in range(p.start[i], p.start[i + 1]):
            j = p.j[k]
            d = min_image(xi - s.x[j], s.dom)
            delta = ri + s.r[j] - d.norm()
            if delta > 0.0:
                rstar = ri * s.r[j] / (ri + s.r[j])
                s.diag[O_ELASTIC] += _elastic_energy(s, delta, p.dm, k, rstar, mi, s.mat[j])
                ratio = delta / ti.min(ri, s.r[j])
                old = ti.atomic_max(s.diag[O_MAX_OVL], ratio)
                if ratio > old:
                    s.diag[O_WORST] = i
        for wk in ti.static(range(MAX_WALLS)):
            if wk < nw:
                delta = ri - (xi - _vec(s.walls, wk, W_PX)).dot(_vec(s.walls, wk, W_NX))
                if delta > 0.0:
                    s.diag[O_ELASTIC] += _elastic_energy_wall(s, delta, i, wk, ri, mi)
                    old = ti.atomic_max(s.diag[O_MAX_OVL], delta / ri)
                    if delta / ri > old:
                        s.diag[O_WORST] = i
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
