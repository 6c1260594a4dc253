"""Bonded-particle model: Potyondy–Cundall parallel bonds as a force extension.

A bond joins two particles (external indices i, j) with a cylinder of radius R_b = lambda min(r_i, r_j),
area A = pi R_b^2, second moment I = pi R_b^4 / 4 and polar moment J = 2 I. It carries (Potyondy &
Cundall 2004, Int. J. Rock Mech. Min. Sci. 41, 1329)

* a normal force F_n = k_n A (L - L_0) along the bond axis n = (x_j - x_i)/L (tension positive), with
  L the centre distance (minimum image on periodic axes) and L_0 the equilibrium length (the length at
  creation, moved by plastic flow);
* a shear force F_s, a bending moment M_b and a twisting moment M_t, accumulated incrementally:
  dF_s = k_s A du_s, dM_b = k_n I dtheta_b, dM_t = k_s J dtheta_t, with du_s the tangential relative
  displacement of the two particles at the bond centre and dtheta the relative rotation, split into
  the parts normal to and along n. Before each increment F_s and M_b are projected onto the plane
  normal to the current n and rescaled to their previous magnitude (the bond frame follows rigid
  rotations, as in PFC and LIGGGHTS).

k_n, k_s are stiffnesses per area (Pa/m). Given a bond Young's modulus E_b and Poisson ratio nu_b
instead, k_n = E_b / L_0 and k_s = G_b / L_0 with G_b = E_b / (2 (1 + nu_b)), so that the bond behaves
as an elastic beam of length L_0, section A and moduli E_b, G_b.

The bond centre sits in the middle of the gap between the surfaces, at d_i = r_i + (L - r_i - r_j)/2
from particle i and d_j = L - d_i from j. The force on i is F = F_n n + F_s (on j: -F); the torque on
i is d_i n x F + M_b + M_t n and on j d_j n x F - M_b - M_t n.

Failure. The largest tensile and shear stresses on the bond section are
sigma = F_n / A + |M_b| R_b / I and tau = |F_s| / A + |M_t| R_b / J; the bond breaks (permanently,
carrying nothing afterwards) in the step where sigma >= tensile strength or tau >= shear strength.
``failure="brittle"`` (default) is linear elastic up to that point. ``failure="plastic"`` adds an
elastic–perfectly-plastic axial response: once |F_n| / A reaches ``yield_stress_Pa`` the bond flows
(L_0 moves with L, so |F_n| stays at yield_stress x A, in tension and compression alike) and it breaks
when its axial strain (L - L_init) / L_init reaches ``breaking_strain`` (the stress criteria still
apply; shear and moments stay elastic).

Damping (optional, ``damping_ratio`` beta >= 0): viscous dashpots in parallel with each spring,
F_d = c_n v_n n + c_s v_t and M_d = c_b omega_b + c_t omega_t n with the relative velocities at the bond
centre and c = 2 beta sqrt(m* k) per mode: c_n = 2 beta sqrt(m* k_n A), c_s = 2 beta sqrt(m* k_s A),
c_b = 2 beta sqrt(I* k_n I), c_t = 2 beta sqrt(I* k_s J), where m* = 1/(1/m_i + 1/m_j) and
I* = 1/(1/I_i + 1/I_j) (particle inertias). Dashpot forces are not part of the stored history.

Beam stiffness of a bonded chain (derivation used by the cantilever test): along a straight chain of
beads at spacing L_0, a bond between beads k and k+1 turns the relative rotation into a moment
M = k_n I (theta_{k+1} - theta_k); equilibrium puts that moment at the bond centre. Compared with
M = E I dtheta/ds, the chain is an Euler–Bernoulli beam with bending stiffness (E I)_eff = k_n I L_0,
i.e. E_b I when k_n = E_b / L_0. The shear springs add a Timoshenko shear compliance: per bond a
transverse offset V / (k_s A), so (G A)_eff = k_s A L_0. A cantilever of n_b bonds, free length
L_c = n_b L_0, tip load F: delta = F L_c^3 / (3 k_n I L_0) + F n_b / (k_s A) (+ a discretisation term
of relative size 1/(4 n_b^2) from the trapezoidal sum of the rotations).

Storage. Per bond (Taichi ndarrays, so that growing the capacity, by doubling, never recompiles the
kernel): end points (external indices), state (1 intact, 0 broken), step of breaking, parameters
(R_b, k_n, k_s, strengths, yield stress, breaking strain, initial length, damping ratio) and history
(L_0, F_n, F_s, M_b, M_t). One kernel launch per force evaluation looks up the internal indices through
``intern``, updates every intact bond and adds its forces with atomic adds (bonds share particles).
Parallel atomic adds make the order of summation, hence the last bits of the force, vary between runs.
"""

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import taichi as ti

from electrodem.config import ConfigError
from electrodem.engine import arch
from electrodem.engine.extensions import Extension, kept_index_map
from electrodem.engine.integrate import _box, _wrap_v

# Parameter columns (per bond).
B_RB, B_KN, B_KS, B_ST, B_SS, B_SY, B_EB, B_LI, B_BETA = range(9)
N_PAR = 9
# History columns (per bond).
H_L0, H_FN, H_FS, H_MB, H_MT = 0, 1, 2, 5, 8
N_HIST = 9

FAILURE_MODES = ("brittle", "plastic")


@ti.func
def _keep_tangent(v, n):
    """``v`` projected on the plane normal to ``n``, rescaled to its previous length."""
    t = v - v.dot(n) * n
    mag = v.norm()
    tn = t.norm()
    out = t * 0.0
    if tn > 0.0:
        out = t * (mag / tn)
    return out


@ti.func
def _row3(a: ti.template(), b, c0: ti.template()):
    return ti.Vector([a[b, c0], a[b, c0 + 1], a[b, c0 + 2]])


@ti.kernel
def _bond_forces(
    s: ti.template(),
    ends: ti.types.ndarray(),
    state: ti.types.ndarray(),
    bstep: ti.types.ndarray(),
    par: ti.types.ndarray(),
    hist: ti.types.ndarray(),
    work: ti.types.ndarray(),
    nb: ti.i32,
    dt: float,
    step: ti.i32,
):
    """Update every intact bond (history only when dt > 0) and add its loads to both particles."""
    box, per = _box(s)
    advance = dt > 0.0
    ti.loop_config(serialize=arch.SERIAL_LOOPS)
    for b in range(nb):
        if state[b] == 1:
            i = s.intern[ends[b, 0]]
            j = s.intern[ends[b, 1]]
            # Lees–Edwards: the image of i that j sees across a z face moves at dvx along x.
            d, dvx = _wrap_v(s.x[j] - s.x[i], box, per)
            length = d.norm()
            n = d / length
            rb = par[b, B_RB]
            kn = par[b, B_KN]
            ks = par[b, B_KS]
            area = math.pi * rb * rb
            inert = 0.25 * area * rb * rb
            polar = 2.0 * inert
            ri = s.r[i]
            di = ri + 0.5 * (length - ri - s.r[j])
            dj = length - di
            vrel = (s.v[j] + s.w[j].cross(-dj * n)) - (s.v[i] + s.w[i].cross(di * n))
            vrel[0] -= dvx
            vn = vrel.dot(n)
            vt = vrel - vn * n
            wrel = s.w[j] - s.w[i]
            wn = wrel.dot(n)
            wb = wrel - wn * n
            l0 = hist[b, H_L0]
            fs = _row3(hist, b, H_FS)
            mb = _row3(hist, b, H_MB)
            mt = hist[b, H_MT]
            if advance:
                fs = _keep_tangent(fs, n) + (ks * area * dt) * vt
                mb = _keep_tangent(mb, n) + (kn * inert * dt) * wb
                mt += ks * polar * dt * wn
            fn = kn * area * (length - l0)
            sy = par[b, B_SY]
            if advance and ti.abs(fn) > sy * area:
                sgn = 1.0 if fn > 0.0 else -1.0
                l0 = length - sgn * sy / kn
                fn = sgn * sy * area
            broken = 0
            if advance:
                sigma = fn / area + mb.norm() * rb / inert
                tau = fs.norm() / area + ti.abs(mt) * rb / polar
                strain = (length - par[b, B_LI]) / par[b, B_LI]
                if sigma >= par[b, B_ST] or tau >= par[b, B_SS] or strain >= par[b, B_EB]:
                    broken = 1
            if advance:
                hist[b, H_L0] = l0
                hist[b, H_FN] = fn
                for a in ti.static(range(3)):
                    hist[b, H_FS + a] = fs[a]
                    hist[b, H_MB + a] = mb[a]
                hist[b, H_MT] = mt
            if broken:
                state[b] = 0
                bstep[b] = step
            else:
                f = fn * n + fs
                m = mb + mt * n
                beta = par[b, B_BETA]
                if beta > 0.0:
                    imsum = s.invm[i] + s.invm[j]
                    iisum = s.invI[i] + s.invI[j]
                    if imsum > 0.0:
                        mstar = 1.0 / imsum
                        f += 2.0 * beta * ti.sqrt(mstar * kn * area) * vn * n
                        f += 2.0 * beta * ti.sqrt(mstar * ks * area) * vt
                    if iisum > 0.0:
                        istar = 1.0 / iisum
                        m += 2.0 * beta * ti.sqrt(istar * kn * inert) * wb
                        m += 2.0 * beta * ti.sqrt(istar * ks * polar) * wn * n
                tq_i = (di * n).cross(f) + m
                tq_j = (dj * n).cross(f) - m
                ti.atomic_add(s.f[i], f)
                ti.atomic_add(s.f[j], -f)
                ti.atomic_add(s.tq[i], tq_i)
                ti.atomic_add(s.tq[j], tq_j)
                # Fixed particles move as prescribed: the work they do through the bond (|power| dt,
                # an upper bound) widens the energy guard's budget.
                if s.invm[i] == 0.0:
                    ti.atomic_add(work[0], ti.abs(f.dot(s.v[i]) + tq_i.dot(s.w[i])) * dt)
                if s.invm[j] == 0.0:
                    ti.atomic_add(work[0], ti.abs(f.dot(s.v[j]) - tq_j.dot(s.w[j])) * dt)


def _positive(name: str, value: float, allow_inf: bool = False) -> float:
    v = float(value)
    if not (v > 0 and (allow_inf or math.isfinite(v))) or math.isnan(v):
        raise ConfigError(name, value, "> 0" + (" (inf allowed)" if allow_inf else " and finite"))
    return v


class Bonds(Extension):
    """Potyondy–Cundall parallel bonds between particles (see the module docstring for the physics).

    Defaults for every bond added later (each can be overridden per bond in `add`):

    radius_multiplier : lambda; R_b = lambda min(r_i, r_j) (m).
    normal_stiffness_Pa_per_m, shear_stiffness_Pa_per_m : k_n, k_s (Pa/m); or give
    youngs_modulus_Pa (E_b) and poisson_ratio (nu_b): k_n = E_b / L_0, k_s = E_b / (2 (1 + nu_b) L_0).
    tensile_strength_Pa, shear_strength_Pa : break when sigma / tau reach them (inf: never).
    failure : "brittle" or "plastic" (then yield_stress_Pa and breaking_strain are required).
    damping_ratio : beta >= 0 of the bond dashpots.
    safety_factor : `max_time_step_s` returns safety_factor x min sqrt(m / k) (and sqrt(I / k_rot)).
    """

    def __init__(
        self,
        radius_multiplier: float = 1.0,
        normal_stiffness_Pa_per_m: float | None = None,
        shear_stiffness_Pa_per_m: float | None = None,
        youngs_modulus_Pa: float | None = None,
        poisson_ratio: float | None = None,
        tensile_strength_Pa: float = math.inf,
        shear_strength_Pa: float = math.inf,
        failure: str = "brittle",
        yield_stress_Pa: float | None = None,
        breaking_strain: float | None = None,
        damping_ratio: float = 0.0,
        safety_factor: float = 0.2,
        name: str = "bonds",
    ) -> None:
        self.name = str(name)
        self.defaults = self._check_params(
            radius_multiplier,
            normal_stiffness_Pa_per_m,
            shear_stiffness_Pa_per_m,
            youngs_modulus_Pa,
            poisson_ratio,
            tensile_strength_Pa,
            shear_strength_Pa,
            failure,
            yield_stress_Pa,
            breaking_strain,
            damping_ratio,
        )
        if not 0 < safety_factor <= 1:
            raise ConfigError("safety_factor", safety_factor, "in (0, 1]")
        self.safety_factor = float(safety_factor)
        self.n = 0
        self.cap = 0
        self._sim: Any = None

    # ------------------------------------------------------------------ parameters
    @staticmethod
    def _check_params(
        radius_multiplier: float,
        kn: float | None,
        ks: float | None,
        e_b: float | None,
        nu_b: float | None,
        st: float,
        ss: float,
        failure: str,
        sy: float | None,
        eb: float | None,
        beta: float,
    ) -> dict[str, Any]:
        _positive("radius_multiplier", radius_multiplier)
        if (kn is None) != (ks is None):
            raise ConfigError(
                "shear_stiffness_Pa_per_m" if ks is None else "normal_stiffness_Pa_per_m",
                None,
                "both normal and shear stiffness, or neither (then youngs_modulus_Pa and poisson_ratio)",
            )
        if kn is not None:
            if e_b is not None or nu_b is not None:
                raise ConfigError("youngs_modulus_Pa", e_b, "null when the stiffnesses are given")
            _positive("normal_stiffness_Pa_per_m", kn)
            _positive("shear_stiffness_Pa_per_m", ks)  # type: ignore[arg-type]
        elif e_b is not None or nu_b is not None:
            _positive("youngs_modulus_Pa", e_b if e_b is not None else float("nan"))
            if nu_b is None or not -1.0 < nu_b < 0.5:
                raise ConfigError("poisson_ratio", nu_b, "in (-1, 0.5) with youngs_modulus_Pa")
        _positive("tensile_strength_Pa", st, allow_inf=True)
        _positive("shear_strength_Pa", ss, allow_inf=True)
        if failure not in FAILURE_MODES:
            raise ConfigError("failure", failure, f"one of {FAILURE_MODES}")
        if failure == "plastic":
            if sy is None:
                raise ConfigError("yield_stress_Pa", sy, "> 0 (Pa) with failure='plastic'")
            if eb is None:
                raise ConfigError("breaking_strain", eb, "> 0 with failure='plastic'")
            _positive("yield_stress_Pa", sy)
            _positive("breaking_strain", eb, allow_inf=True)
        elif sy is not None or eb is not None:
            raise ConfigError(
                "failure", failure, "'plastic' when yield_stress_Pa / breaking_strain are given"
            )
        if not (beta >= 0 and math.isfinite(beta)):
            raise ConfigError("damping_ratio", beta, ">= 0")
        return {
            "radius_multiplier": float(radius_multiplier),
            "normal_stiffness_Pa_per_m": None if kn is None else float(kn),
            "shear_stiffness_Pa_per_m": None if ks is None else float(ks),
            "youngs_modulus_Pa": None if e_b is None else float(e_b),
            "poisson_ratio": None if nu_b is None else float(nu_b),
            "tensile_strength_Pa": float(st),
            "shear_strength_Pa": float(ss),
            "failure": failure,
            "yield_stress_Pa": None if sy is None else float(sy),
            "breaking_strain": None if eb is None else float(eb),
            "damping_ratio": float(beta),
        }

    # ------------------------------------------------------------------ storage
    def attach(self, sim: Any) -> None:
        self._sim = sim
        self._real = sim.real
        self._np_real = sim.np_real
        if self.cap == 0:
            self._alloc(64)

    def _alloc(self, cap: int) -> None:
        old = self._host() if self.cap else None
        self.cap = cap
        self._ends = ti.ndarray(ti.i32, (cap, 2))
        self._state = ti.ndarray(ti.i32, cap)
        self._bstep = ti.ndarray(ti.i32, cap)
        self._par = ti.ndarray(self._real, (cap, N_PAR))
        self._hist = ti.ndarray(self._real, (cap, N_HIST))
        if not hasattr(self, "_work"):
            self._work = ti.ndarray(self._real, 1)
            self._work.from_numpy(np.zeros(1, self._np_real))
        if old is not None:
            self._upload(old)

    def _host(self) -> dict[str, np.ndarray]:
        """float64/int arrays of the first n bonds."""
        n = self.n
        return {
            "ends": self._ends.to_numpy()[:n].astype(np.int64),
            "state": self._state.to_numpy()[:n].astype(np.int32),
            "broken_step": self._bstep.to_numpy()[:n].astype(np.int64),
            "par": self._par.to_numpy()[:n].astype(np.float64),
            "hist": self._hist.to_numpy()[:n].astype(np.float64),
        }

    def _upload(self, h: dict[str, np.ndarray]) -> None:
        n = len(h["state"])
        if n > self.cap:
            self._alloc(max(64, 1 << (n - 1).bit_length()))

        def pad(a: np.ndarray, dtype: Any) -> np.ndarray:
            out = np.zeros((self.cap, *a.shape[1:]), dtype)
            out[:n] = a
            return out

        self._ends.from_numpy(pad(h["ends"], np.int32))
        self._state.from_numpy(pad(h["state"], np.int32))
        self._bstep.from_numpy(pad(h["broken_step"], np.int32))
        self._par.from_numpy(pad(h["par"], self._np_real))
        self._hist.from_numpy(pad(h["hist"], self._np_real))
        self.n = n

    def _need_sim(self) -> Any:
        if self._sim is None:
            raise ConfigError("bonds", self.name, "an extension added with sim.add_extension() first")
        return self._sim

    def _positions_radii(self) -> tuple[np.ndarray, np.ndarray]:
        st = self._sim._store.particles_to_numpy(self._sim.n)
        return st["x"], st["r"]

    def _min_image(self, d: np.ndarray) -> np.ndarray:
        return self._sim.min_image(d)

    # ------------------------------------------------------------------ creating and breaking
    def add(
        self,
        i: np.ndarray,
        j: np.ndarray,
        radius_multiplier: float | np.ndarray | None = None,
        normal_stiffness_Pa_per_m: float | np.ndarray | None = None,
        shear_stiffness_Pa_per_m: float | np.ndarray | None = None,
        youngs_modulus_Pa: float | np.ndarray | None = None,
        poisson_ratio: float | np.ndarray | None = None,
        tensile_strength_Pa: float | np.ndarray | None = None,
        shear_strength_Pa: float | np.ndarray | None = None,
        yield_stress_Pa: float | np.ndarray | None = None,
        breaking_strain: float | np.ndarray | None = None,
        damping_ratio: float | np.ndarray | None = None,
    ) -> np.ndarray:
        """Bond particles i[k]–j[k] (external indices) at their current distance (the equilibrium
        length); returns the new bond indices. Every parameter is a scalar or one value per bond;
        None takes the constructor's default. Stiffness comes from k_n, k_s when those are set (here
        or as defaults), otherwise from E_b, nu_b."""
        sim = self._need_sim()
        ii = np.atleast_1d(np.asarray(i, np.int64)).reshape(-1)
        jj = np.atleast_1d(np.asarray(j, np.int64)).reshape(-1)
        k = len(ii)
        if jj.shape != (k,):
            raise ConfigError("j", f"{jj.size} values", f"{k} values (as many as i)")
        if k == 0:
            return np.zeros(0, np.int64)
        for nm, a in (("i", ii), ("j", jj)):
            if a.min() < 0 or a.max() >= sim.n:
                raise ConfigError(nm, int(a.max() if a.max() >= sim.n else a.min()), f"in [0, {sim.n})")
        if np.any(ii == jj):
            raise ConfigError("j", int(jj[ii == jj][0]), "different from i (no bond of a particle to itself)")
        d = self.defaults

        def col(nm: str, v: Any) -> np.ndarray:
            v = d[nm] if v is None else v
            a = np.broadcast_to(np.asarray(np.nan if v is None else v, float), (k,)).astype(float)
            return a

        lam = col("radius_multiplier", radius_multiplier)
        if normal_stiffness_Pa_per_m is not None or shear_stiffness_Pa_per_m is not None:
            kn_v, ks_v, e_v, nu_v = normal_stiffness_Pa_per_m, shear_stiffness_Pa_per_m, None, None
        elif youngs_modulus_Pa is not None or poisson_ratio is not None:
            kn_v, ks_v, e_v, nu_v = None, None, youngs_modulus_Pa, poisson_ratio
        else:
            kn_v, ks_v = d["normal_stiffness_Pa_per_m"], d["shear_stiffness_Pa_per_m"]
            e_v, nu_v = d["youngs_modulus_Pa"], d["poisson_ratio"]
        x, r = self._positions_radii()
        length = np.linalg.norm(self._min_image(x[jj] - x[ii]), axis=1)
        if np.any(length <= 0):
            raise ConfigError("i, j", "coincident particles", "particles at distinct positions")
        if kn_v is not None or ks_v is not None:
            kn = np.broadcast_to(np.asarray(kn_v, float), (k,)).astype(float)
            ks = np.broadcast_to(np.asarray(ks_v, float), (k,)).astype(float)
        elif e_v is not None and nu_v is not None:
            e_b = np.broadcast_to(np.asarray(e_v, float), (k,))
            nu = np.broadcast_to(np.asarray(nu_v, float), (k,))
            if np.any(~((nu > -1) & (nu < 0.5))):
                raise ConfigError("poisson_ratio", nu_v, "in (-1, 0.5)")
            kn = e_b / length
            ks = e_b / (2.0 * (1.0 + nu)) / length
        else:
            raise ConfigError(
                "normal_stiffness_Pa_per_m", None, "stiffnesses or youngs_modulus_Pa + poisson_ratio"
            )
        st = col("tensile_strength_Pa", tensile_strength_Pa)
        ss = col("shear_strength_Pa", shear_strength_Pa)
        plastic = d["failure"] == "plastic" or yield_stress_Pa is not None or breaking_strain is not None
        sy = col("yield_stress_Pa", yield_stress_Pa) if plastic else np.full(k, np.inf)
        eb = col("breaking_strain", breaking_strain) if plastic else np.full(k, np.inf)
        sy = np.where(np.isnan(sy), np.inf, sy)
        eb = np.where(np.isnan(eb), np.inf, eb)
        beta = col("damping_ratio", damping_ratio)
        for nm, a, inf_ok in (
            ("radius_multiplier", lam, False),
            ("normal_stiffness_Pa_per_m", kn, False),
            ("shear_stiffness_Pa_per_m", ks, False),
            ("tensile_strength_Pa", st, True),
            ("shear_strength_Pa", ss, True),
            ("yield_stress_Pa", sy, True),
            ("breaking_strain", eb, True),
        ):
            bad = ~(a > 0) | (~np.isfinite(a) if not inf_ok else np.isnan(a))
            if np.any(bad):
                raise ConfigError(nm, float(a[bad][0]), "> 0" + (" or inf" if inf_ok else ", finite"))
        if np.any(~(beta >= 0)):
            raise ConfigError("damping_ratio", float(beta[~(beta >= 0)][0]), ">= 0")
        par = np.zeros((k, N_PAR))
        par[:, B_RB] = lam * np.minimum(r[ii], r[jj])
        par[:, B_KN], par[:, B_KS] = kn, ks
        par[:, B_ST], par[:, B_SS], par[:, B_SY], par[:, B_EB] = st, ss, sy, eb
        par[:, B_LI] = length
        par[:, B_BETA] = beta
        hist = np.zeros((k, N_HIST))
        hist[:, H_L0] = length
        h = self._host()
        new = {
            "ends": np.stack([ii, jj], axis=1),
            "state": np.ones(k, np.int32),
            "broken_step": np.full(k, -1, np.int64),
            "par": par,
            "hist": hist,
        }
        first = self.n
        self._upload({key: np.concatenate([h[key], new[key]]) for key in h})
        # New stiffness may lower the stable time step.
        if sim._dt_fixed is None:
            sim.time_step_report = None
        return np.arange(first, first + k, dtype=np.int64)

    def create_within(
        self,
        sim: Any,
        gap_m: float,
        pair_filter: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
        **params: Any,
    ) -> np.ndarray:
        """Bond every pair of particles whose surfaces are closer than ``gap_m`` (m), i.e. centre
        distance < r_i + r_j + gap_m (minimum image on periodic axes), that is not bonded already by an
        intact bond. ``pair_filter(i, j) -> bool mask`` (external indices) selects among them (the
        process layer's rule); ``params`` go to `add`. Returns the new bond indices."""
        from scipy.spatial import cKDTree

        if sim is not self._need_sim():
            raise ConfigError("sim", "another simulation", "the simulation this extension is attached to")
        if not (gap_m >= 0 and math.isfinite(gap_m)):
            raise ConfigError("gap_m", gap_m, ">= 0 (m)")
        x, r = self._positions_radii()
        if len(r) < 2:
            return np.zeros(0, np.int64)
        cut = 2.0 * float(r.max()) + gap_m
        lo = x.min(axis=0)
        span = x.max(axis=0) - lo
        per = np.asarray(sim.periodic)
        box = np.where(per, sim.box_m, span + 2.0 * cut + 1.0)
        pts = np.where(per, np.mod(x, sim.box_m), x - lo)
        pts = np.mod(pts, box)
        pairs = cKDTree(pts, boxsize=box).query_pairs(cut, output_type="ndarray")
        if len(pairs) == 0:
            return np.zeros(0, np.int64)
        i, j = pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)
        dist = np.linalg.norm(self._min_image(x[j] - x[i]), axis=1)
        keep = dist < r[i] + r[j] + gap_m
        if self.n:
            h = self._host()
            intact = h["state"] == 1
            e = np.sort(h["ends"][intact], axis=1)
            have = set((e[:, 0] * len(r) + e[:, 1]).tolist())
            key = np.minimum(i, j) * len(r) + np.maximum(i, j)
            keep &= ~np.isin(key, np.fromiter(have, np.int64, len(have)))
        i, j = i[keep], j[keep]
        if pair_filter is not None and len(i):
            m = np.asarray(pair_filter(i, j), bool).reshape(-1)
            if m.shape != i.shape:
                raise ConfigError("pair_filter", f"{m.size} values", f"a boolean mask of {len(i)} pairs")
            i, j = i[m], j[m]
        return self.add(i, j, **params)

    def break_where(self, mask: np.ndarray) -> int:
        """Break the intact bonds where ``mask`` (one boolean per bond) is True; returns how many."""
        sim = self._need_sim()
        m = np.asarray(mask, bool).reshape(-1)
        if m.shape != (self.n,):
            raise ConfigError("mask", f"{m.size} values", f"one boolean per bond ({self.n})")
        h = self._host()
        hit = m & (h["state"] == 1)
        h["state"][hit] = 0
        h["broken_step"][hit] = sim.step
        self._upload(h)
        return int(hit.sum())

    # ------------------------------------------------------------------ engine hooks
    def on_particles_removed(self, sim: Any, removed_ids: np.ndarray) -> None:
        """Drop every bond (intact or broken) with an end among the removed particles and renumber the
        ends of the others to the external indices they get after the removal. Bond indices close up
        (order kept), so indices returned by `add` earlier no longer hold."""
        if self.n == 0:
            return
        new_index = kept_index_map(sim.ids, removed_ids)
        h = self._host()
        ends = new_index[h["ends"]]
        keep = np.all(ends >= 0, axis=1)
        h = {k: v[keep] for k, v in h.items()}
        h["ends"] = ends[keep]
        self._upload(h)

    def add_forces(self, sim: Any, time_s: float, dt_s: float) -> None:
        if self.n == 0:
            return
        step = sim.step + (round((time_s - sim.time_s) / dt_s) if dt_s > 0 else 0)
        _bond_forces(
            sim._store,
            self._ends,
            self._state,
            self._bstep,
            self._par,
            self._hist,
            self._work,
            self.n,
            dt_s,
            step,
        )

    def work_done_J(self, sim: Any) -> float:
        """Upper bound of the work done through the bonds by fixed (prescribed-motion) particles (J)."""
        return float(self._work.to_numpy()[0]) if self.cap else 0.0

    def max_time_step_s(self, sim: Any) -> float | None:
        """safety_factor x min over bonded particles of sqrt(m / k_t) and sqrt(I / k_r), with k_t the sum
        of max(k_n, k_s) A and k_r the sum of max(k_n I, k_s J) + k_s A d^2 over the particle's intact
        bonds (d its distance to the bond centre) (s)."""
        if self.n == 0:
            return None
        h = self._host()
        ok = h["state"] == 1
        if not np.any(ok):
            return None
        st = sim._store.particles_to_numpy(sim.n)
        invm, r = st["invm"], st["r"]
        par, ends = h["par"][ok], h["ends"][ok]
        rb = par[:, B_RB]
        area = np.pi * rb**2
        inert = 0.25 * area * rb**2
        kt = np.maximum(par[:, B_KN], par[:, B_KS]) * area
        # Lever arm of the shear spring: distance from a particle to the bond centre, L/2 + |r_i - r_j|/2.
        arm = 0.5 * h["hist"][ok, H_L0] + 0.5 * np.abs(r[ends[:, 0]] - r[ends[:, 1]])
        kr = np.maximum(par[:, B_KN] * inert, par[:, B_KS] * 2.0 * inert) + par[:, B_KS] * area * arm**2
        kt_p = np.bincount(ends.ravel(), np.repeat(kt, 2), sim.n)
        kr_p = np.bincount(ends.ravel(), np.repeat(kr, 2), sim.n)
        mobile = (invm > 0) & (kt_p > 0)
        if not np.any(mobile):
            return None
        m = 1.0 / invm[mobile]
        inertia = 0.4 * m * r[mobile] ** 2
        t = min(np.sqrt(m / kt_p[mobile]).min(), np.sqrt(inertia / kr_p[mobile]).min())
        return float(self.safety_factor * t)

    def elastic_energy_J(self, sim: Any) -> float:
        """F_n^2/(2 k_n A) + |F_s|^2/(2 k_s A) + |M_b|^2/(2 k_n I) + M_t^2/(2 k_s J) over intact bonds (J)."""
        if self.n == 0:
            return 0.0
        h = self._host()
        ok = h["state"] == 1
        p, q = h["par"][ok], h["hist"][ok]
        area = np.pi * p[:, B_RB] ** 2
        inert = 0.25 * area * p[:, B_RB] ** 2
        kn, ks = p[:, B_KN], p[:, B_KS]
        fs2 = (q[:, H_FS : H_FS + 3] ** 2).sum(axis=1)
        mb2 = (q[:, H_MB : H_MB + 3] ** 2).sum(axis=1)
        e = (
            q[:, H_FN] ** 2 / (2 * kn * area)
            + fs2 / (2 * ks * area)
            + mb2 / (2 * kn * inert)
            + q[:, H_MT] ** 2 / (4 * ks * inert)
        )
        return float(e.sum())

    # ------------------------------------------------------------------ reports
    @property
    def broken_count(self) -> int:
        """Number of broken bonds."""
        return int((self._state.to_numpy()[: self.n] == 0).sum()) if self.n else 0

    def state(self) -> dict[str, np.ndarray]:
        """Per bond (float64 SI): i, j (external indices), intact, broken (bool), broken_step (-1 while
        intact), length_m (current centre distance, minimum image), equilibrium_length_m,
        initial_length_m, radius_m, normal_force_N (tension > 0), shear_force_N (n, 3), bending_moment_N_m
        (n, 3), twisting_moment_N_m (along the bond axis from i to j), stress_Pa and shear_stress_Pa (the
        failure measures sigma, tau). Forces and moments are those on particle i from the last update
        (for a broken bond: at its breaking step). The keys i, j, length_m, radius_m, broken are those
        of `electrodem.io.snapshot.Microstructure.bonds` (see `snapshot.bonds_from_state`)."""
        sim = self._need_sim()
        h = self._host()
        e, p, q = h["ends"], h["par"], h["hist"]
        if self.n:
            x, _ = self._positions_radii()
            length = np.linalg.norm(self._min_image(x[e[:, 1]] - x[e[:, 0]]), axis=1)
        else:
            length = np.zeros(0)
        del sim
        rb = p[:, B_RB]
        area = np.pi * rb**2
        inert = 0.25 * area * rb**2
        fs = q[:, H_FS : H_FS + 3]
        mb = q[:, H_MB : H_MB + 3]
        with np.errstate(invalid="ignore", divide="ignore"):
            sigma = q[:, H_FN] / area + np.linalg.norm(mb, axis=1) * rb / inert
            tau = np.linalg.norm(fs, axis=1) / area + np.abs(q[:, H_MT]) * rb / (2 * inert)
        intact = h["state"] == 1
        return {
            "i": e[:, 0].copy(),
            "j": e[:, 1].copy(),
            "intact": intact,
            "broken": ~intact,
            "broken_step": h["broken_step"],
            "length_m": length,
            "equilibrium_length_m": q[:, H_L0].copy(),
            "initial_length_m": p[:, B_LI].copy(),
            "radius_m": rb.copy(),
            "normal_force_N": q[:, H_FN].copy(),
            "shear_force_N": fs.copy(),
            "bending_moment_N_m": mb.copy(),
            "twisting_moment_N_m": q[:, H_MT].copy(),
            "stress_Pa": sigma,
            "shear_stress_Pa": tau,
        }

    # ------------------------------------------------------------------ checkpoints
    def describe(self) -> dict[str, Any]:
        return {**self.defaults, "safety_factor": self.safety_factor, "name": self.name}

    def state_dict(self) -> dict[str, np.ndarray]:
        return {**self._host(), "work_J": np.array(self.work_done_J(None))} if self.cap else {}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        if not state:
            return
        self._work.from_numpy(np.asarray(state["work_J"], self._np_real).reshape(1))
        self._upload({k: np.asarray(state[k]) for k in ("ends", "state", "broken_step", "par", "hist")})

    @classmethod
    def from_state(cls, description: dict[str, Any]) -> "Bonds":
        return cls(**description)
