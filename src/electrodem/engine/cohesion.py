"""Cohesive contact laws: JKR adhesion and van der Waals (Hamaker) attraction, as Taichi functions
plus their analytic values on the host (for the skin rule, reports and tests).

Both act along the contact normal and are ADDED to the Hertz–Mindlin law of `electrodem.engine.contact`,
which stays untouched: for ``jkr`` the added force is the JKR force minus the Hertz force at the same
overlap, so the sum is exactly JKR; for ``vdw`` it is the Hamaker attraction.

JKR (Johnson, Kendall & Roberts 1971; Johnson, Contact Mechanics §5.5), for effective radius R*,
modulus E* and work of adhesion W (J/m^2): the contact radius a and the overlap d are related by
d = a^2 / R* - sqrt(2 pi W a / E*), and the normal force (repulsive > 0) is
F = 4 E* a^3 / (3 R*) - sqrt(8 pi W E* a^3). A contact forms when the spheres touch (d > 0) and then
persists, under displacement control, down to the negative overlap -d_c with
d_c = 3/4 (pi^2 W^2 R* / E*^2)^(1/3), where dd/da = 0 (the unstable branch starts). On the way the
tensile force passes its maximum, the pull-off force 3/2 pi W R*. At zero load the overlap is
d_0 = a_0^2 / (3 R*) with a_0^3 = 9 pi W R*^2 / (2 E*). Whether a pair is in contact (the hysteresis
between snap-in at d = 0 and break at -d_c) is a per-pair flag (``PairStore.hc``; for walls a bit of
``wflag``).

a(d) in closed form: with s = sqrt(a) and c = sqrt(2 pi W / E*), R* d = s^4 - R* c s, a depressed quartic.
Ferrari's resolvent y^3 + R* d y - R*^2 c^2 / 8 = 0 has one real positive root over the whole contact
range d > -d_c (its discriminant vanishes exactly at -d_c); it is taken in a cancellation-free form, and
then s = (u + sqrt(2 R* c / u - u^2)) / 2 with u = sqrt(2 y).

Energy: the JKR potential (dV/dd = F, zero when detached) is
V(a) = 8 E* a^5 / (15 R*^2) - 4/3 sqrt(2 pi W E*) a^3.5 / R* + pi W a^2. The energy dissipated at the break
(V(a_c) < 0 is not recovered) is JKR's adhesion hysteresis.

Van der Waals (Hamaker 1937) between two spheres at a gap D << R*: F = A R* / (6 D^2) (attractive),
with D floored at the minimum separation D_0 (so touching and overlapping spheres feel A R* / (6 D_0^2))
and zero for D >= the cut-off. Its potential is -A R* / 6 (1/D - 1/D_cut) for D_0 <= D < D_cut,
continued linearly below D_0, so that the truncated force is conservative.

Walls use the same laws with R* = the particle radius.
"""

import math

import taichi as ti

COH_NONE, COH_JKR, COH_VDW = 0, 1, 2


# ---------------------------------------------------------------------- JKR, device side
@ti.func
def jkr_contact_radius(delta, r_star, e_star, w):
    """JKR contact radius a (m) at overlap ``delta`` (m; > -d_c) for R* (m), E* (Pa), W (J/m^2)."""
    c = ti.sqrt(2.0 * ti.math.pi * w / e_star)
    q = r_star * r_star * c * c / 16.0
    p3 = r_star * delta / 3.0
    disc = ti.max(q * q + p3 * p3 * p3, 0.0)
    wc = ti.pow(q + ti.sqrt(disc), 1.0 / 3.0)
    y = wc - p3 / wc
    if p3 >= 0.0:
        # Same root as wc - p3 / wc, written without the cancellation that form suffers at large
        # overlaps (there y -> R* c^2 / (8 d) is small against wc).
        y = 2.0 * q * wc * wc / (wc * wc * wc * wc + wc * wc * p3 + p3 * p3)
    u = ti.sqrt(2.0 * y)
    s = 0.5 * (u + ti.sqrt(ti.max(2.0 * r_star * c / u - u * u, 0.0)))
    return s * s


@ti.func
def jkr_break_overlap(r_star, e_star, w):
    """d_c (m): a JKR contact breaks when the overlap falls below -d_c."""
    return 0.75 * ti.pow(ti.math.pi * ti.math.pi * w * w * r_star / (e_star * e_star), 1.0 / 3.0)


@ti.func
def jkr_force(a, r_star, e_star, w):
    """JKR normal force (N, repulsive > 0) at contact radius a (m)."""
    a3 = a * a * a
    return 4.0 * e_star * a3 / (3.0 * r_star) - ti.sqrt(8.0 * ti.math.pi * w * e_star * a3)


@ti.func
def jkr_energy(a, r_star, e_star, w):
    """JKR potential energy (J) at contact radius a (m), zero for a detached pair."""
    a2 = a * a
    return (
        8.0 * e_star * a2 * a2 * a / (15.0 * r_star * r_star)
        - 4.0 / 3.0 * ti.sqrt(2.0 * ti.math.pi * w * e_star) * a2 * a * ti.sqrt(a) / r_star
        + ti.math.pi * w * a2
    )


# ---------------------------------------------------------------------- van der Waals, device side
@ti.func
def vdw_attraction(gap, r_star, ham, d0, d_cut):
    """Hamaker attraction magnitude (N, >= 0) at gap ``gap`` (m; negative = overlap)."""
    f = 0.0
    if gap < d_cut:
        d = ti.max(gap, d0)
        f = ham * r_star / (6.0 * d * d)
    return f


@ti.func
def vdw_energy(gap, r_star, ham, d0, d_cut):
    """Potential (J, <= 0) of the truncated Hamaker force at gap ``gap`` (m)."""
    u = 0.0
    if gap < d_cut:
        d = ti.max(gap, d0)
        u = -ham * r_star / 6.0 * (1.0 / d - 1.0 / d_cut)
        if gap < d0:
            u -= ham * r_star / (6.0 * d0 * d0) * (d0 - gap)
    return u


# ---------------------------------------------------------------------- what the force loop calls
@ti.func
def cohesive_normal_force(delta, r_star, e_star, w, ham, d0, d_cut, bonded, cohesion: ti.template()):
    """Normal force (N, repulsive > 0) that the cohesion model ``cohesion`` (COH_JKR or COH_VDW) adds to
    the Hertz force at overlap ``delta`` (m; negative = gap), and the new JKR contact flag.

    ``bonded`` (0/1) says whether the JKR contact already exists. For JKR the added force is
    F_JKR(a(delta)) - 4/3 E* sqrt(R*) delta^1.5 while delta > 0 (the caller adds the Hertz part) and
    F_JKR alone while -d_c < delta <= 0; zero when not bonded or past the break."""
    fn = 0.0
    flag = 0
    if ti.static(cohesion == COH_JKR):
        if w > 0.0:
            if delta > 0.0:
                flag = 1
            elif bonded != 0 and delta > -jkr_break_overlap(r_star, e_star, w):
                flag = 1
            if flag != 0:
                a = jkr_contact_radius(delta, r_star, e_star, w)
                fn = jkr_force(a, r_star, e_star, w)
                if delta > 0.0:
                    fn -= 4.0 / 3.0 * e_star * ti.sqrt(r_star * delta) * delta
    if ti.static(cohesion == COH_VDW):
        if ham > 0.0:
            fn = -vdw_attraction(-delta, r_star, ham, d0, d_cut)
    return fn, flag


@ti.func
def cohesive_energy(delta, r_star, e_star, w, ham, d0, d_cut, bonded, cohesion: ti.template()):
    """Cohesive potential energy (J) of a pair at overlap ``delta``: what it adds to the Hertz elastic
    energy 8/15 E* sqrt(R*) delta^2.5 (counted for delta > 0 by the diagnostics)."""
    u = 0.0
    if ti.static(cohesion == COH_JKR):
        if w > 0.0 and (delta > 0.0 or (bonded != 0 and delta > -jkr_break_overlap(r_star, e_star, w))):
            u = jkr_energy(jkr_contact_radius(delta, r_star, e_star, w), r_star, e_star, w)
            if delta > 0.0:
                u -= 8.0 / 15.0 * e_star * ti.sqrt(r_star) * delta * delta * ti.sqrt(delta)
    if ti.static(cohesion == COH_VDW):
        if ham > 0.0:
            u = vdw_energy(-delta, r_star, ham, d0, d_cut)
    return u


# ---------------------------------------------------------------------- host-side analytic values
def jkr_pull_off_force_N(r_star_m: float, w_J_per_m2: float) -> float:
    """Largest tensile force of a JKR contact, 3/2 pi W R* (N)."""
    return 1.5 * math.pi * w_J_per_m2 * r_star_m


def jkr_break_overlap_m(r_star_m: float, e_star_Pa: float, w_J_per_m2: float) -> float:
    """d_c = 3/4 (pi^2 W^2 R* / E*^2)^(1/3) (m): the contact breaks at overlap -d_c."""
    return 0.75 * (math.pi**2 * w_J_per_m2**2 * r_star_m / e_star_Pa**2) ** (1.0 / 3.0)


def jkr_equilibrium_overlap_m(r_star_m: float, e_star_Pa: float, w_J_per_m2: float) -> float:
    """Overlap at zero load, a_0^2 / (3 R*) with a_0^3 = 9 pi W R*^2 / (2 E*) (m)."""
    a0 = (4.5 * math.pi * w_J_per_m2 * r_star_m**2 / e_star_Pa) ** (1.0 / 3.0)
    return a0 * a0 / (3.0 * r_star_m)


def vdw_force_N(gap_m: float, r_star_m: float, hamaker_J: float, d0_m: float, cutoff_m: float) -> float:
    """Hamaker attraction magnitude A R* / (6 max(D, D_0)^2) (N), zero for D >= the cut-off."""
    if gap_m >= cutoff_m:
        return 0.0
    d = max(gap_m, d0_m)
    return hamaker_J * r_star_m / (6.0 * d * d)
