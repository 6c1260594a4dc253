"""`Simulation`: the public face of the engine.

Build it with materials, a box and walls (the static model), add particles (capacity grows as
needed), then ``run(steps=..., until=..., callbacks=[...])``. The time step is chosen automatically
from the Rayleigh and Hertz criteria unless given, and reported in `time_step_report`. Guards check
every ``guards.every_steps`` steps for non-finite values, overlaps beyond a bound and kinetic-energy
blow-up; on failure the last state that passed is written as a checkpoint (when a path was given)
and `SimulationError` is raised with a diagnosis.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from electrodem.config import ConfigError
from electrodem.engine import arch
from electrodem.engine.extensions import STAGES, Extension, class_path
from electrodem.engine.fields import ParticleFields
from electrodem.engine.model import ContactModel, Material, MaterialTable, PairOverride
from electrodem.engine.state import D_LE_DV, D_LE_SHIFT
from electrodem.engine.walls import MAX_WALLS, N_WALL_COLS, W_PX, W_VX, Wall


def _check_time_step_rule(
    rayleigh_fraction: float, steps_per_contact: float, impact_speed_m_per_s: float | None
) -> None:
    """Refuse time-step criteria outside their ranges (ConfigError naming the key)."""
    if not 0 < rayleigh_fraction <= 1:
        raise ConfigError("rayleigh_fraction", rayleigh_fraction, "in (0, 1]")
    if not steps_per_contact >= 5:
        raise ConfigError("steps_per_contact", steps_per_contact, ">= 5")
    if impact_speed_m_per_s is not None and not impact_speed_m_per_s > 0:
        raise ConfigError("impact_speed_m_per_s", impact_speed_m_per_s, "null or > 0 (m/s)")


class SimulationError(RuntimeError):
    """A guard stopped the run. ``diagnosis`` says what and where; ``checkpoint_path`` holds the last
    good state when the run was given one."""

    def __init__(self, diagnosis: str, step: int, checkpoint_path: Path | None) -> None:
        self.diagnosis, self.step, self.checkpoint_path = diagnosis, step, checkpoint_path
        where = f"; last good state written to {checkpoint_path}" if checkpoint_path else ""
        super().__init__(f"simulation stopped at step {step}: {diagnosis}{where}")


@dataclass(frozen=True)
class Guards:
    """Run guards.

    every_steps : how often the state is checked (steps).
    max_overlap_ratio : largest allowed ELASTIC overlap divided by the smaller radius of the pair (or
        the radius, for a wall). For elastic laws that is the overlap itself; for the Thornton–Ning law
        it is the overlap minus the plastic overlap delta_p, the part Hertz theory must still describe.
        A runaway of it means the contacts are too soft for the load or the time step is too large.
    max_total_overlap_ratio : largest allowed overlap (elastic + plastic) divided by the smaller
        radius. Plastic flattening is a legitimate deformation, so this is wider; beyond ~1 the smaller
        sphere's centre has passed into the other body, and a sphere no longer represents it. Must be
        >= ``max_overlap_ratio``.
    energy_growth_factor : stop when kinetic + elastic (+ cohesive, <= 0) energy exceeds this factor
        times the energy available (initial kinetic + elastic + cohesive energy + gravitational energy
        released + the work of the walls, summed every step in the step kernel (`wall_work_J`)); a
        stable run cannot exceed 1. The work of fixed particles given a velocity and of the
        Lees–Edwards boundaries is estimated from the force and speed at each check.
    """

    every_steps: int = 200
    max_overlap_ratio: float = 0.1
    max_total_overlap_ratio: float = 1.0
    energy_growth_factor: float = 10.0

    def __post_init__(self) -> None:
        if not (isinstance(self.every_steps, int) and self.every_steps >= 1):
            raise ConfigError("guards.every_steps", self.every_steps, "an integer >= 1")
        if not self.max_overlap_ratio > 0:
            raise ConfigError("guards.max_overlap_ratio", self.max_overlap_ratio, "> 0")
        if not self.max_total_overlap_ratio >= self.max_overlap_ratio:
            raise ConfigError(
                "guards.max_total_overlap_ratio",
                self.max_total_overlap_ratio,
                f">= guards.max_overlap_ratio ({self.max_overlap_ratio})",
            )
        if not self.energy_growth_factor > 1:
            raise ConfigError("guards.energy_growth_factor", self.energy_growth_factor, "> 1")


@dataclass
class RunResult:
    """What a call to `Simulation.run` did."""

    steps: int
    time_s: float
    stopped_by: str
    wall_time_s: float
    neighbor_builds: int
    particle_steps_per_s: float


@dataclass
class TimeStep:
    """How the time step was chosen (all in s, speed in m/s)."""

    dt_s: float
    rule: str
    rayleigh_time_s: float
    hertz_contact_time_s: float
    impact_speed_m_per_s: float
    rayleigh_fraction: float
    steps_per_contact: float
    extra: dict[str, Any] = field(default_factory=dict)


class Simulation:
    """A DEM simulation of spheres.

    Parameters
    ----------
    materials : particle and wall materials (`Material`).
    box_m : (Lx, Ly, Lz) in m. Periodic axes span [0, L); a non-periodic axis is unbounded unless a
        wall closes it (Lz is then only used for the energy guard and reports).
    periodic : periodic flags per axis (default x and y).
    contact : named sub-models of the contact law.
    walls : planar walls (at most `MAX_WALLS`).
    gravity_m_per_s2 : gravity vector.
    dt_s : fixed time step; ``None`` chooses min(rayleigh_fraction * Rayleigh time, Hertz contact
        time / steps_per_contact) from the particles present at the first run.
    rayleigh_fraction, steps_per_contact : the two automatic time-step criteria.
    impact_speed_m_per_s : speed for the Hertz criterion; ``None`` estimates it from the particle
        speeds, gravity over the bed height and wall speeds.
    skin_m : neighbour-list skin; ``None`` is half the smallest radius. With cohesion the list's skin
        is this plus the cohesive reach (the vdW cut-off, or the largest JKR break distance), so that
        pairs apart within the reach are always listed; the list is still rebuilt when a particle moved
        half of ``skin_m`` (see `cohesion_reach_m`).
    background_damping_per_s : viscous damping rate c (force -c m v, torque -c I w); a settling
        shortcut, 0 for physical runs.
    pair_overrides : {(material a, material b): PairOverride} replacing the mixing rule.
    guards : run guards.
    options : engine options; Taichi is initialised with them if it is not already.
    temperature_K : temperature of the particles (K); softens the Thornton–Ning yield pressures of
        materials with a softening range (`Material.softening_factor`); change it with
        `set_temperature`.

    record_wall_forces : keep the force of every wall on every particle from each force evaluation
        (one vector per particle and wall of memory), read by `wall_contact_forces`.
    shear_rate_per_s : Lees–Edwards simple shear rate gamma_dot (1/s) of a fully periodic box: flow
        along x, gradient along z, streaming profile u_x = gamma_dot (z - Lz/2); the image above the
        box is offset by s(t) = gamma_dot Lz t (mod Lx). 0 (default) is a plain periodic box. See
        `set_shear_rate`, `stress_tensor` and `electrodem.engine.shear`.
    """

    created: int = 0
    """Simulations built in this process (a test harness collects leftovers only when it grew)."""

    def __init__(
        self,
        materials: Sequence[Material],
        box_m: Sequence[float],
        periodic: Sequence[bool] = (True, True, False),
        contact: ContactModel | None = None,
        walls: Sequence[Wall] = (),
        gravity_m_per_s2: Sequence[float] = (0.0, 0.0, -9.81),
        dt_s: float | None = None,
        rayleigh_fraction: float = 0.2,
        steps_per_contact: float = 50.0,
        impact_speed_m_per_s: float | None = None,
        skin_m: float | None = None,
        background_damping_per_s: float = 0.0,
        pair_overrides: dict[tuple[str, str], PairOverride] | None = None,
        guards: Guards | None = None,
        options: arch.EngineOptions | None = None,
        temperature_K: float = 293.15,
        shear_rate_per_s: float = 0.0,
        record_wall_forces: bool = False,
    ) -> None:
        self.options = arch.init(options) if options is not None else arch.ensure_init()
        self._generation = arch.generation()
        import taichi as ti

        self._ti = ti
        self.real = arch.real_dtype()
        self.np_real = arch.numpy_real()
        self.contact = contact or ContactModel()
        self.materials = MaterialTable(tuple(materials), dict(pair_overrides or {}))
        self.box_m = np.asarray(box_m, dtype=float).reshape(-1)
        if self.box_m.size != 3 or not np.all(self.box_m > 0):
            raise ConfigError("box_m", list(box_m), "three lengths > 0 (m)")
        self.periodic = tuple(bool(p) for p in periodic)
        if len(self.periodic) != 3:
            raise ConfigError("periodic", periodic, "three booleans")
        self.walls = list(walls)
        if len(self.walls) > MAX_WALLS:
            raise ConfigError("walls", len(self.walls), f"at most {MAX_WALLS} walls")
        for w in self.walls:
            self.materials.index(w.material)
        self.gravity = np.asarray(gravity_m_per_s2, dtype=float).reshape(3)
        if dt_s is not None and not dt_s > 0:
            raise ConfigError("dt_s", dt_s, "null (automatic) or > 0 (s)")
        _check_time_step_rule(rayleigh_fraction, steps_per_contact, impact_speed_m_per_s)
        if skin_m is not None and not skin_m > 0:
            raise ConfigError("skin_m", skin_m, "null (automatic) or > 0 (m)")
        if not background_damping_per_s >= 0:
            raise ConfigError("background_damping_per_s", background_damping_per_s, ">= 0 (1/s)")
        self._dt_fixed = dt_s
        self.shear_rate_per_s = 0.0
        self._le_drift_m = 0.0
        """Shift change (m, absolute, summed) since the last neighbour build (Lees–Edwards skin budget)."""
        self._check_shear_rate(shear_rate_per_s)
        self.shear_rate_per_s = float(shear_rate_per_s)
        self.rayleigh_fraction = rayleigh_fraction
        self.steps_per_contact = steps_per_contact
        self.impact_speed = impact_speed_m_per_s
        self._skin_user = skin_m
        self.background_damping_per_s = float(background_damping_per_s)
        if not (temperature_K > 0 and math.isfinite(temperature_K)):
            raise ConfigError("temperature_K", temperature_K, "finite > 0 (K)")
        self.temperature_K = float(temperature_K)
        self.guards = guards or Guards()
        self.scalings: dict[str, Any] = {}
        """Named shortcuts the caller used (mass/time scaling, softened moduli...); saved in
        checkpoints and `describe`."""

        self.step = 0
        self.time_s = 0.0
        self.n = 0
        self.ids = np.zeros(0, np.int64)
        self._next_id = 0
        self.time_step_report: TimeStep | None = None
        self.dt_s = float(dt_s) if dt_s is not None else 0.0
        self._store: Any = None
        self._forces_valid = False
        self._list_valid = False
        from electrodem.engine.neighbors import NeighborList

        self._nl = NeighborList(
            self.real,
            rolling=self.contact.rolling == "epsd",
            plastic=self.contact.normal == "thornton_ning",
            cohesion=self.contact.cohesion == "jkr",
        )
        self.cohesion_reach_m = 0.0
        """Gap (m) out to which cohesion acts between spheres; added to the neighbour-list skin."""
        self._wall_work_J = 0.0
        """Work (J) of driven fixed particles and Lees–Edwards boundaries, estimated at the guard checks."""
        self._wall_work_at_ref_J = 0.0
        """Exact wall work (J, all walls) when the energy reference was taken."""
        self.record_wall_forces = bool(record_wall_forces)
        self._driven_fixed = False
        self._energy_ref: float | None = None
        self._last_good: dict[str, Any] | None = None
        self.extensions: list[Extension] = []
        """Force extensions (bonds, tools...) in the order they add their forces."""
        self.fields = ParticleFields()
        """Per-particle agent fields (external order; see `add_field`)."""
        Simulation.created += 1
        self._live_token = object()
        """Identifies this simulation to its snapshots (`snapshot_state`)."""
        self._alloc_store(64)

    # ------------------------------------------------------------------ storage
    def _alloc_store(self, cap: int) -> None:
        """Take a store of at least ``cap`` particles (from the pool), carrying over what the old one held."""
        from electrodem.engine.state import (
            ParticleStore,
            acquire,
            material_slots,
            release,
            round_capacity,
            wall_slots,
        )

        old = self._store
        self._store = acquire(
            ParticleStore,
            round_capacity(cap),
            material_slots(len(self.materials.materials)),
            self.real,
            self.contact.rolling == "epsd",
            self.contact.normal == "thornton_ning",
            self.record_wall_forces,
            wall_slots(len(self.walls)),
        )
        self._write_globals()
        if old is None:
            self._store.wwork.fill(0.0)
        else:
            self._store.walls.from_numpy(old.walls.to_numpy())
            self._store.wforce.from_numpy(old.wforce.to_numpy())
            self._store.wwork.from_numpy(old.wwork.to_numpy())
            self._store.dom.from_numpy(old.dom.to_numpy())
            release(old)

    def _write_globals(self) -> None:
        s = self._store
        dom = np.zeros(s.dom.shape[0])
        dom[0:3] = self.box_m
        dom[3:6] = [1.0 if p else 0.0 for p in self.periodic]
        dom[6:9] = self.gravity
        dom[9] = self.background_damping_per_s
        dom[10] = self.dt_s
        dom[D_LE_DV] = self.shear_rate_per_s * self.box_m[2]
        s.dom.from_numpy(dom.astype(self.np_real))
        table = np.zeros((MAX_WALLS, N_WALL_COLS))
        mode = np.zeros(MAX_WALLS, np.int32)
        mat = np.zeros(MAX_WALLS, np.int32)
        for k, w in enumerate(self.walls):
            table[k] = w.row()
            mode[k] = w.mode_code
            mat[k] = self.materials.index(w.material)
        s.walls.from_numpy(table.astype(self.np_real))
        s.wmode.from_numpy(mode)
        s.wmat.from_numpy(mat)
        self._upload_table()

    def _upload_table(self) -> None:
        """Copy `_kernel_table` into the store's (padded) pair table."""
        t = self._kernel_table()
        full = np.zeros(self._store.table.shape)
        full[: t.shape[0], : t.shape[1]] = t
        self._store.table.from_numpy(full.astype(self.np_real))

    def _kernel_table(self) -> np.ndarray:
        """The pair table plus the dashpot coefficients the kernels use (see `state.TABLE_COLS`)."""
        from electrodem.engine.model import P_ESTAR, P_ETA, P_GSTAR
        from electrodem.engine.state import T_CN, T_CT, TABLE_COLS

        base = self.materials.pair_table(self.contact, self.temperature_K)
        table = np.zeros((*base.shape[:2], TABLE_COLS))
        table[..., : base.shape[2]] = base
        table[..., T_CN] = base[..., P_ETA] * np.sqrt(2.0 * base[..., P_ESTAR])
        table[..., T_CT] = base[..., P_ETA] * np.sqrt(8.0 * base[..., P_GSTAR])
        return table

    def _set_dom(self, index: int, value: float) -> None:
        self._store.dom[index] = value

    def _check_alive(self) -> None:
        if arch.generation() != self._generation:
            raise RuntimeError(
                "Taichi was re-initialised after this Simulation was built; its memory is gone"
            )

    # ------------------------------------------------------------------ particles
    def add_particles(
        self,
        positions_m: np.ndarray,
        radii_m: np.ndarray,
        material: str | int | Sequence[str | int] | np.ndarray = 0,
        velocities_m_per_s: np.ndarray | None = None,
        angular_velocities_rad_per_s: np.ndarray | None = None,
        masses_kg: np.ndarray | None = None,
        fixed: np.ndarray | None = None,
        ids: np.ndarray | None = None,
        gravitational_masses_kg: np.ndarray | None = None,
    ) -> np.ndarray:
        """Add spheres; returns their ids (persistent, default consecutive).

        ``material`` is one name/index or one per particle. ``masses_kg`` overrides density x volume
        (mass scaling: record it in `scalings`). ``gravitational_masses_kg`` sets the mass gravity acts
        on (default: the inertial mass), so that a mass scaling can change the inertia and keep the
        real weight. ``fixed`` particles have infinite mass and inertia (they keep their velocity).
        The moment of inertia is 2/5 m r^2.
        """
        self._check_alive()
        x = np.asarray(positions_m, dtype=float).reshape(-1, 3)
        k = len(x)
        r = np.asarray(radii_m, dtype=float).reshape(-1)
        if r.size == 1 and k > 1:
            r = np.full(k, float(r[0]))
        if r.shape != (k,) or not np.all(r > 0) or not np.all(np.isfinite(r)):
            raise ConfigError("radii_m", "array", f"{k} finite radii > 0 (m)")
        if not np.all(np.isfinite(x)):
            raise ConfigError("positions_m", "array", "finite coordinates (m)")
        mats = np.atleast_1d(np.asarray(material, dtype=object))
        if mats.size == 1:
            mats = np.repeat(mats, k)
        if mats.shape != (k,):
            raise ConfigError("material", f"{mats.size} values", f"one value or {k}")
        mat = np.array(
            [m if isinstance(m, (int, np.integer)) else self.materials.index(str(m)) for m in mats],
            dtype=np.int32,
        )
        if k and (mat.min() < 0 or mat.max() >= len(self.materials.materials)):
            raise ConfigError("material", mat.max(), f"indices < {len(self.materials.materials)}")
        rho = np.array([m.density_kg_per_m3 for m in self.materials.materials])[mat]
        mass = (
            4.0 / 3.0 * np.pi * r**3 * rho if masses_kg is None else np.asarray(masses_kg, float).reshape(k)
        )
        if not np.all(mass > 0):
            raise ConfigError("masses_kg", "array", "masses > 0 (kg)")
        gm = mass.copy() if gravitational_masses_kg is None else (
            np.asarray(gravitational_masses_kg, float).reshape(-1) * np.ones(k))
        if gm.shape != (k,) or not np.all(np.isfinite(gm)) or not np.all(gm >= 0):
            raise ConfigError("gravitational_masses_kg", "array", f"one or {k} finite masses >= 0 (kg)")
        inertia = 0.4 * mass * r**2
        invm, invI = 1.0 / mass, 1.0 / inertia
        if fixed is not None:
            fx = np.asarray(fixed, bool).reshape(k)
            invm[fx] = 0.0
            invI[fx] = 0.0
            if velocities_m_per_s is not None and np.any(
                np.asarray(velocities_m_per_s, float).reshape(k, 3)[fx]
            ):
                self._driven_fixed = True
        v = (
            np.zeros((k, 3))
            if velocities_m_per_s is None
            else np.asarray(velocities_m_per_s, float).reshape(k, 3)
        )
        w = (
            np.zeros((k, 3))
            if angular_velocities_rad_per_s is None
            else np.asarray(angular_velocities_rad_per_s, float).reshape(k, 3)
        )
        x = x.copy()
        if self._lees_edwards:
            # A position past a z face is the image of one inside: x shifts by the image offset and the
            # velocity by the image speed, as when a particle crosses the face during a step.
            img = np.floor(x[:, 2] / self.box_m[2])
            x[:, 2] -= img * self.box_m[2]
            x[:, 0] -= img * self.lees_edwards_shift_m
            v = v.copy()
            v[:, 0] -= img * self.shear_rate_per_s * float(self.box_m[2])
        for a in range(3):
            if self.periodic[a]:
                x[:, a] = np.mod(x[:, a], self.box_m[a])
        new_ids = (
            np.arange(self._next_id, self._next_id + k, dtype=np.int64)
            if ids is None
            else np.asarray(ids, np.int64).reshape(k)
        )
        all_r = np.concatenate([self._radii(), r])
        self.cohesion_reach_m, skin = self._skin_for(all_r)
        cur = self._store.particles_to_numpy(self.n)
        add = {
            "x": x,
            "v": v,
            "w": w,
            "f": np.zeros((k, 3)),
            "tq": np.zeros((k, 3)),
            "r": r,
            "invm": invm,
            "invI": invI,
            "gm": gm,
            "mat": mat,
            "wht": np.zeros((k, MAX_WALLS, 3)),
            "whr": np.zeros((k, MAX_WALLS, 3)),
            "wdm": np.zeros((k, MAX_WALLS)),
            "wrec": np.zeros((k, MAX_WALLS, 3)),
        }
        merged = {key: np.concatenate([cur[key], add[key]]) for key in cur}
        # Loading resets the internal particle order to the external one: keep the contact history by
        # re-installing the current list in external indices (the next build carries it over).
        hist = self._nl.history_numpy() if self._nl.n_pairs else None
        wall_bonds = self._wall_bonds()
        n_new = self.n + k
        if n_new > self._store.cap:
            self._alloc_store(n_new)
        self._store.particles_from_numpy(merged)
        self._set_wall_bonds(wall_bonds)
        if hist is not None:
            self._nl.load_history(hist, n_new)
        self.n = n_new
        self.ids = np.concatenate([self.ids, new_ids])
        self.fields.append(k)
        self._next_id = int(max(self._next_id, new_ids.max() + 1 if k else 0))
        self._nl.assign_levels(self._store, merged["r"], skin)
        self._forces_valid = False
        self._list_valid = False
        self._energy_ref = None
        if self._dt_fixed is None:
            self.time_step_report = None
        return new_ids

    def _radii(self) -> np.ndarray:
        """Radii (m) in internal order."""
        return self._store.r.to_numpy()[: self.n].astype(np.float64) if self.n else np.zeros(0)

    def _skin_for(self, radii: np.ndarray) -> tuple[float, float]:
        """(cohesive reach, neighbour-list skin incl. that reach) (m) for particles of ``radii`` (m) under
        the current model; ConfigError when a periodic box is too short for them (nothing changed)."""
        if len(radii) == 0:
            return 0.0, 0.0
        reach = self._cohesion_reach(radii)
        skin = self._skin(radii) + reach
        cut = 2.0 * float(np.max(radii)) + skin
        for a in range(3):
            if self.periodic[a] and self.box_m[a] <= 2.0 * cut:
                raise ConfigError(
                    "box_m",
                    self.box_m.tolist(),
                    f"periodic length > 2 x (largest diameter + skin) = {2 * cut:.4g} m on axis {'xyz'[a]}",
                )
        return reach, skin

    def _invalidate(self, list_: bool = False) -> None:
        """After a change of the model or the particles: forces (and with ``list_`` the neighbour list)
        are recomputed before the next step, the energy guard takes a new reference and an automatic
        time step is chosen anew."""
        self._forces_valid = False
        if list_:
            self._list_valid = False
        self._energy_ref = None
        if self._dt_fixed is None:
            self.time_step_report = None

    def _skin(self, radii: np.ndarray) -> float:
        return float(self._skin_user) if self._skin_user is not None else 0.5 * float(radii.min())

    def _cohesion_reach(self, radii: np.ndarray) -> float:
        """Largest gap (m) at which two listed spheres still attract: the vdW cut-off, or the JKR break
        distance d_c of the largest R* (<= r_max / 2) over all material pairs."""
        if self.contact.cohesion == "vdw":
            return float(self.contact.vdw_cutoff_m)
        if self.contact.cohesion == "jkr" and len(radii):
            from electrodem.engine.cohesion import jkr_break_overlap_m
            from electrodem.engine.model import P_ESTAR, P_W

            table = self.materials.pair_table(self.contact)
            r_star = 0.5 * float(radii.max())
            return max(
                jkr_break_overlap_m(r_star, float(e), float(w))
                for e, w in zip(table[..., P_ESTAR].ravel(), table[..., P_W].ravel(), strict=True)
            )
        return 0.0

    def _wall_bonds(self) -> np.ndarray:
        """JKR wall-contact bits of ``wflag`` (int32, external order), which a reload would clear."""
        from electrodem.engine.integrate import WALL_BOND_BIT

        if self.contact.cohesion != "jkr" or self.n == 0:
            return np.zeros(self.n, np.int32)
        flags = self._store.to_external(self._store.wflag.to_numpy(), self.n)
        return (flags >> WALL_BOND_BIT) << WALL_BOND_BIT

    def _set_wall_bonds(self, bonds: np.ndarray) -> None:
        """OR the bits from `_wall_bonds` into ``wflag`` of the first len(bonds) particles, right after
        a reload (internal order = external order then)."""
        if not np.any(bonds):
            return
        flags = self._store.wflag.to_numpy()
        flags[: len(bonds)] |= bonds.astype(np.int32)
        self._store.wflag.from_numpy(flags)

    # ------------------------------------------------------------------ extensions
    def add_extension(self, ext: Extension) -> Extension:
        """Add a force extension (see `electrodem.engine.extensions`); returns it."""
        self._check_alive()
        if not isinstance(ext, Extension):
            raise ConfigError("extension", type(ext).__name__, "an electrodem.engine.extensions.Extension")
        if getattr(ext, "stage", None) not in STAGES:
            raise ConfigError("extension.stage", getattr(ext, "stage", None), f"one of {STAGES}")
        if any(e.name == ext.name for e in self.extensions):
            raise ConfigError(
                "extension.name", ext.name, f"a name not in {[e.name for e in self.extensions]}"
            )
        ext.attach(self)
        self.extensions.append(ext)
        self._forces_valid = False
        self._energy_ref = None
        if self._dt_fixed is None:
            self.time_step_report = None
        return ext

    def remove_extension(self, name: str) -> Extension:
        """Detach the extension called ``name`` (its forces stop from the next evaluation); returns it."""
        ext = self.extension(name)
        self.extensions.remove(ext)
        self._invalidate()
        return ext

    def extension(self, name: str) -> Extension:
        """The extension called ``name``."""
        for e in self.extensions:
            if e.name == name:
                return e
        raise ConfigError("extension", name, f"one of {[e.name for e in self.extensions]}")

    def _extension_forces(self, time_s: float, dt_s: float) -> None:
        for e in self.extensions:
            if e.stage == "post_force":
                e.add_forces(self, time_s, dt_s)

    # ------------------------------------------------------------------ time step
    def _choose_dt(self) -> None:
        from electrodem.engine.integrate import hertz_contact_time_s, rayleigh_time_s

        st = self._store.particles_to_numpy(self.n)
        r, invm, mat = st["r"], st["invm"], st["mat"]
        mobile = invm > 0
        if not np.any(mobile):
            mobile = np.ones(self.n, bool)
            invm = np.where(invm > 0, invm, 1.0)
        mats = self.materials.materials
        mass = 1.0 / invm[mobile]
        rm = r[mobile]
        rho = mass / (4.0 / 3.0 * np.pi * rm**3)
        g_mod = np.array([m.shear_modulus_Pa for m in mats])[mat[mobile]]
        nu = np.array([m.poisson_ratio for m in mats])[mat[mobile]]
        t_r = rayleigh_time_s(rm, rho, g_mod, nu)
        speed = self.impact_speed
        if speed is None:
            v = np.linalg.norm(st["v"], axis=1)
            z = st["x"] @ (self.gravity / (np.linalg.norm(self.gravity) or 1.0))
            height = float(z.max() - z.min()) if self.n > 1 else 2.0 * float(r.max())
            wall_v = max(
                [np.linalg.norm(w.velocity_m_per_s) for w in self.walls]
                + [w.max_speed_m_per_s for w in self.walls]
                + [0.0]
            )
            speed = max(
                float(v.max()) if self.n else 0.0,
                math.sqrt(2.0 * np.linalg.norm(self.gravity) * height),
                wall_v,
            )
            speed = max(speed, 1e-3 * math.sqrt(np.linalg.norm(self.gravity) * float(r.max())), 1e-12)
        # Hertz time is shortest for the lightest pair: smallest mass with the stiffest partner material.
        table = self.materials.pair_table(self.contact)
        k = int(np.argmin(mass))
        e_max = float(table[mat[mobile][k], :, 0].max())
        t_h = hertz_contact_time_s(mass[k] / 2.0, rm[k] / 2.0, e_max, speed)
        limits = {e.name: e.max_time_step_s(self) for e in self.extensions}
        limits = {k: float(v) for k, v in limits.items() if v is not None}
        if self.contact.cohesion == "vdw":
            from electrodem.engine.model import P_HAM

            # Between D_0 and 2 D_0 the Hamaker force is far stiffer than the Hertz contact
            # (k = A R* / (3 D_0^3)): resolve that oscillation too, for the lightest pair.
            d0 = self.contact.vdw_min_separation_m
            k_vdw = float(table[mat[mobile][k], :, P_HAM].max()) * rm[k] / (3.0 * d0**3)
            if k_vdw > 0:
                limits["vdw"] = 2.0 * math.pi * math.sqrt(mass[k] / k_vdw) / self.steps_per_contact
        if self._dt_fixed is not None:
            dt, rule = float(self._dt_fixed), "fixed"
        elif self.rayleigh_fraction * t_r <= t_h / self.steps_per_contact:
            dt, rule = self.rayleigh_fraction * t_r, "rayleigh"
        else:
            dt, rule = t_h / self.steps_per_contact, "hertz"
        if rule != "fixed" and limits and min(limits.values()) < dt:
            rule = min(limits, key=limits.__getitem__)
            dt = limits[rule]
        self.dt_s = dt
        self.time_step_report = TimeStep(
            float(dt),
            rule,
            float(t_r),
            float(t_h),
            float(speed),
            self.rayleigh_fraction,
            float(t_h / dt),
            {"extension_limits_s": limits} if limits else {},
        )
        self._set_dom(10, dt)

    def set_time_step_rule(
        self, rayleigh_fraction: float, steps_per_contact: float, impact_speed_m_per_s: float | None
    ) -> None:
        """Choose the automatic time step anew at the next run with these criteria (as in the
        constructor); a fixed time step is released."""
        _check_time_step_rule(rayleigh_fraction, steps_per_contact, impact_speed_m_per_s)
        self.rayleigh_fraction = float(rayleigh_fraction)
        self.steps_per_contact = float(steps_per_contact)
        self.impact_speed = impact_speed_m_per_s
        self._dt_fixed = None
        self._invalidate()

    def set_time_step(self, dt_s: float) -> None:
        """Fix the time step (s) from now on."""
        if not dt_s > 0:
            raise ConfigError("dt_s", dt_s, "> 0 (s)")
        self._dt_fixed = float(dt_s)
        if self.n:
            self._choose_dt()
        self.dt_s = float(dt_s)
        self._set_dom(10, self.dt_s)

    # ------------------------------------------------------------------ settings during a run
    def set_gravity(self, gravity_m_per_s2: Sequence[float]) -> None:
        """Change the gravity vector (m/s^2)."""
        self.gravity = np.asarray(gravity_m_per_s2, float).reshape(3)
        for a in range(3):
            self._set_dom(6 + a, float(self.gravity[a]))
        self._energy_ref = None

    def set_background_damping(self, rate_per_s: float) -> None:
        """Change the background damping rate c (1/s)."""
        if not rate_per_s >= 0:
            raise ConfigError("background_damping_per_s", rate_per_s, ">= 0 (1/s)")
        self.background_damping_per_s = float(rate_per_s)
        self._set_dom(9, self.background_damping_per_s)

    def set_temperature(self, temperature_K: float) -> None:
        """Change the particle temperature (K): the pair table's yield pressures are recomputed on the
        host (contact history, including the largest overlaps, is kept)."""
        if not (temperature_K > 0 and math.isfinite(temperature_K)):
            raise ConfigError("temperature_K", temperature_K, "finite > 0 (K)")
        self.temperature_K = float(temperature_K)
        self._upload_table()
        if self.contact.normal == "thornton_ning":
            # The stored forces used the old yield pressures: recompute them before the next kick.
            self._forces_valid = False

    # ------------------------------------------------------------------ Lees–Edwards shear
    def _check_shear_rate(self, rate: float) -> None:
        if not (isinstance(rate, (int, float, np.floating)) and math.isfinite(rate)):
            raise ConfigError("shear_rate_per_s", rate, "a finite number (1/s)")
        if rate != 0.0 and not all(self.periodic):
            raise ConfigError(
                "shear_rate_per_s", rate, "0 unless the box is periodic on x, y and z (Lees–Edwards)"
            )

    def set_shear_rate(self, rate_per_s: float) -> None:
        """Set the Lees–Edwards shear rate gamma_dot (1/s; flow x, gradient z). The image shift
        accumulated so far is kept; 0 stops the shear (the box stays offset by the current shift).
        Particle velocities are not changed: see `electrodem.engine.shear.impose_affine_velocity`."""
        self._check_shear_rate(rate_per_s)
        self.shear_rate_per_s = float(rate_per_s)
        self._set_dom(D_LE_DV, self.shear_rate_per_s * float(self.box_m[2]))

    @property
    def lees_edwards_shift_m(self) -> float:
        """Current x offset s (m) of the periodic image above the box, in [-Lx/2, Lx/2)."""
        return float(self._store.dom[D_LE_SHIFT])

    def set_lees_edwards_shift(self, shift_m: float) -> None:
        """Set the image offset s (m; folded into [-Lx/2, Lx/2)); the neighbour list is rebuilt."""
        if not math.isfinite(shift_m):
            raise ConfigError("shift_m", shift_m, "a finite length (m)")
        if shift_m != 0.0 and not all(self.periodic):
            raise ConfigError("shift_m", shift_m, "0 unless the box is periodic on x, y and z")
        lx = float(self.box_m[0])
        self._set_dom(D_LE_SHIFT, (shift_m + 0.5 * lx) % lx - 0.5 * lx)
        self._list_valid = False
        self._forces_valid = False

    def min_image(self, d_m: np.ndarray) -> np.ndarray:
        """Minimum-image copies of separation vectors ``d_m`` (m, (k, 3)) on the periodic axes; in a
        Lees–Edwards box crossing a z face also shifts x by the image offset (as the kernels do)."""
        d = np.array(d_m, dtype=float, ndmin=2)
        if self._lees_edwards:
            k = np.round(d[:, 2] / self.box_m[2])
            d[:, 2] -= k * self.box_m[2]
            d[:, 0] -= k * self.lees_edwards_shift_m
        for a in range(3):
            if self.periodic[a]:
                d[:, a] -= self.box_m[a] * np.round(d[:, a] / self.box_m[a])
        return d

    @property
    def _lees_edwards(self) -> bool:
        return self.periodic[2] and (self.shear_rate_per_s != 0.0 or self.lees_edwards_shift_m != 0.0)

    def stress_tensor(self, regions: int | None = None, kinetic: bool = True) -> np.ndarray:
        """Stress tensor (Pa), compressive positive: sigma = (1/V) [sum over contacts f_ij (x) d_ij
        + sum over particles m v' (x) v'] with f_ij the contact force on i from j, d_ij = x_i - x_j
        (minimum image) and v' = v - gamma_dot (z - Lz/2) e_x the velocity relative to the shear flow.
        Forces are those of the last force evaluation; wall and extension forces are not included.
        V is the box volume (all three lengths of ``box_m``).

        regions : None for the whole box -> (3, 3); an integer k for k horizontal slabs of equal
            height in z -> (k, 3, 3) (each pair counted in the slab of its mid-point, each particle in
            the slab of its centre; the slab stresses average to the box stress).
        kinetic : include the kinetic (streaming-corrected) part.
        """
        from electrodem.engine.stress import stress_tensor

        if regions is not None and not (isinstance(regions, (int, np.integer)) and regions >= 1):
            raise ConfigError("regions", regions, "None (whole box) or a number of z slabs >= 1")
        if not self._forces_valid:
            self._prime()
        return stress_tensor(self, 1 if regions is None else int(regions), kinetic, regions is None)

    def set_wall(self, index: int, **changes: Any) -> None:
        """Change a wall's fields (e.g. ``mode``, ``velocity_m_per_s``, ``target_force_N``); its current
        position is kept unless ``point_m`` is given."""
        cur = self.wall_state()[index]
        w = self.walls[index]
        params = {**asdict(w), "point_m": tuple(cur["point_m"]), **changes}
        self.walls[index] = Wall(**params)
        row = self.walls[index].row()
        for c in range(N_WALL_COLS):
            self._store.walls[index, c] = row[c]
        self._store.wmode[index] = self.walls[index].mode_code
        self._store.wmat[index] = self.materials.index(self.walls[index].material)

    def set_walls(self, walls: Sequence[Wall]) -> None:
        """Replace the wall list (at most `MAX_WALLS`). A new wall whose name matches an old wall's (the
        first not matched yet, in order) keeps that wall's per-particle history (tangential, rolling,
        largest overlap, JKR contact, recorded force), force and work; the others start fresh. Each
        wall's position and velocity are those of its `Wall` (read `wall_state` to carry a moved wall's
        position over; `add_wall` / `remove_wall` keep the others where they are)."""
        from electrodem.engine.live import set_walls

        set_walls(self, walls)

    def add_wall(self, wall: Wall) -> int:
        """Add ``wall`` (fresh history); returns its index. The other walls keep everything, their
        current positions and servo speeds included."""
        from electrodem.engine.live import apply_walls

        apply_walls(self, [*self.walls, wall], [*range(len(self.walls)), None], keep_rows=True)
        return len(self.walls) - 1

    def remove_wall(self, wall: str | int) -> None:
        """Remove the wall of that name (the first one) or index; the others keep everything, their
        current positions and servo speeds included, and move down to fill its index."""
        from electrodem.engine.live import apply_walls, wall_index

        k = wall_index(self, wall)
        keep = [i for i in range(len(self.walls)) if i != k]
        apply_walls(self, [self.walls[i] for i in keep], keep, keep_rows=True)

    def wall_history(self, wall: str | int) -> dict[str, np.ndarray]:
        """Per-particle contact history with one wall (external order): tangential_m (n, 3) spring,
        rolling_N_m (n, 3) (zeros unless ``rolling="epsd"``), max_overlap_m (n,) largest overlap of the
        contact (zeros unless Thornton–Ning) and jkr_contact (n,) bool."""
        from electrodem.engine.integrate import WALL_BOND_BIT
        from electrodem.engine.live import wall_index

        k = wall_index(self, wall)
        st = self._store.particles_to_numpy(self.n)
        return {
            "tangential_m": st["wht"][:, k],
            "rolling_N_m": st["whr"][:, k],
            "max_overlap_m": st["wdm"][:, k],
            "jkr_contact": ((self._wall_bonds() >> (WALL_BOND_BIT + k)) & 1).astype(bool),
        }

    # ------------------------------------------------------------------ a live simulation across phases
    def set_materials(
        self,
        materials: Sequence[Material],
        pair_overrides: dict[tuple[str, str], PairOverride] | None = None,
        rescale_masses: bool = False,
    ) -> None:
        """Replace the material table (``pair_overrides`` as in the constructor: None is none).

        Particles, walls and tool extensions keep their material by name: every material in use must be
        in the new table (ConfigError naming the first one missing). Contact history is kept; the
        pair table is uploaded again, forces are recomputed before the next step and an automatic time
        step is chosen anew at the next run. Masses (kg) stay as they are (the caller may have scaled
        them) unless ``rescale_masses``: then density x volume for every mobile particle."""
        from electrodem.engine.live import set_materials

        self._check_alive()
        set_materials(self, materials, pair_overrides, rescale_masses)

    def set_contact(self, contact: ContactModel) -> None:
        """Switch the contact sub-models. Particles and every per-pair / per-wall history both models
        keep are carried over exactly (tangential spring, rolling spring of ``epsd``, largest overlap
        dm of ``thornton_ning``, JKR contact flags); one only the new model has starts at zero (a
        Thornton–Ning contact then takes its current overlap as dm at its first evaluation, as a new
        contact does: beyond the yield overlap it is on the plastic loading line); one it lacks is
        dropped. Storage is re-acquired for the fields the new model needs; forces, neighbour list and
        an automatic time step are recomputed before the next step."""
        from electrodem.engine.live import set_contact

        self._check_alive()
        set_contact(self, contact)

    def set_guards(self, guards: Guards) -> None:
        """Replace the run guards (from the next check on)."""
        from electrodem.engine.live import guards_checked

        self.guards = guards_checked(guards)

    def remove_particles(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Remove the particles of persistent ids ``ids`` (`ids`); returns them. Every other particle
        keeps its state, wall history, agent fields and the history of its contacts with the others;
        extensions are told first (`Extension.on_particles_removed`: bonds drop those touching them).
        External indices of the remaining particles close up (order kept)."""
        from electrodem.engine.live import remove_particles

        self._check_alive()
        return remove_particles(self, ids)

    def set_radii(
        self, ids: Sequence[int] | np.ndarray, radii_m: float | np.ndarray, rescale_mass: bool = True
    ) -> None:
        """Change the radii (m) of the particles of ``ids``. ``rescale_mass``: mass x (r_new / r_old)^3
        (a mass scaling the caller applied is kept); else the mass stays. The moment of inertia is
        2/5 m r^2 again. Contact history is kept; the list is rebuilt and forces recomputed."""
        from electrodem.engine.live import set_radii

        self._check_alive()
        set_radii(self, ids, radii_m, rescale_mass)

    def set_masses(
        self,
        ids: Sequence[int] | np.ndarray,
        masses_kg: float | np.ndarray,
        gravitational_masses_kg: float | np.ndarray | None = None,
    ) -> None:
        """Set the inertial masses (kg) of the mobile particles of ``ids`` (inertia 2/5 m r^2); their
        weight stays unless ``gravitational_masses_kg`` is given (a mass scaling changes only inertia)."""
        from electrodem.engine.live import set_masses

        self._check_alive()
        set_masses(self, ids, masses_kg, gravitational_masses_kg)

    def set_material(
        self, ids: Sequence[int] | np.ndarray, material: str | int, rescale_mass: bool = False
    ) -> None:
        """Give the particles of ``ids`` another material (name or index); ``rescale_mass``: density x
        volume of the new material, else masses stay."""
        from electrodem.engine.live import set_material

        self._check_alive()
        set_material(self, ids, material, rescale_mass)

    def add_field(
        self, name: str, dtype: Any = np.float64, shape: tuple[int, ...] | int = (), fill: float | int = 0
    ) -> np.ndarray:
        """Add a per-particle agent field (float64 or int64, shape (n,) or (n, k)), every row ``fill``;
        returns it (see `electrodem.engine.fields`)."""
        return self.fields.add(name, dtype, shape, fill, self.n)

    def field(self, name: str) -> np.ndarray:
        """The agent field ``name`` (external order: row k is particle ``ids[k]``); write into it."""
        return self.fields[name]

    def snapshot_state(self) -> Any:
        """A deep in-memory copy of the whole state (`electrodem.engine.live.LiveState`): particles,
        histories, walls, extensions, agent fields, model, step, time and time step, plus the neighbour
        list in the kernels' order, so that `restore_state` continues bit for bit."""
        from electrodem.engine.live import snapshot_state

        self._check_alive()
        return snapshot_state(self)

    def restore_state(self, snapshot: Any) -> None:
        """Put this simulation back to ``snapshot`` (from its own `snapshot_state`): materials, contact
        model, walls and guards as they were then, storage re-acquired where they differ; extensions
        attached since are detached, removed ones re-attached."""
        from electrodem.engine.live import restore_state

        self._check_alive()
        restore_state(self, snapshot)

    # ------------------------------------------------------------------ stepping
    def _rebuild(self, time_s: float | None = None) -> None:
        """Build the neighbour list (re-orders the particles); ``time_s`` (s) for ``on_rebuild``
        extensions (default: the current time)."""
        self._nl.build(
            self._store, self.n, self.box_m, self.periodic, len(self.walls), lees_edwards=self._lees_edwards
        )
        self._list_valid = True
        self._le_drift_m = 0.0
        for e in self.extensions:
            if e.stage == "on_rebuild":
                e.on_stage(self, "on_rebuild", self.time_s if time_s is None else time_s, self.dt_s)

    def _prime(self) -> None:
        """Forces at the current state without advancing (history is not incremented: dt = 0)."""
        from electrodem.engine.integrate import finish, forces

        if not self._list_valid:
            self._rebuild()
        self._set_dom(10, 0.0)
        forces(
            self._store,
            self._nl.pairs,
            self.n,
            len(self.walls),
            self.contact.tangential == "mindlin",
            self.contact.rolling_code,
            self.contact.cohesion_code,
        )
        self._extension_forces(self.time_s, 0.0)
        finish(self._store, self._nl.pairs, self.n)
        self._set_dom(10, self.dt_s)
        self._forces_valid = True

    def _advance(self, k: int) -> None:
        """k steps: one fused kernel per step (see `electrodem.engine.integrate`), a rebuild and a
        separate force evaluation when a particle moved more than half the skin, and `finish` at the
        end so that the state is that of a complete step."""
        from electrodem.engine.integrate import finish, forces, step

        if k <= 0:
            return
        if not self._list_valid:
            # Particles were added, removed or resized since the last step (a run callback): the list
            # holds only their history until it is rebuilt.
            self._prime()
        if any(e.stage in ("pre_force", "end_of_step") for e in self.extensions):
            from electrodem.engine.live import advance_staged

            advance_staged(self, k)
            return
        nl = self._nl
        n, nw = self.n, len(self.walls)
        tang = self.contact.tangential == "mindlin"
        roll = self.contact.rolling_code
        coh = self.contact.cohesion_code
        # The cohesive reach is part of the list's skin but not of the motion allowance.
        trigger = (0.5 * (nl.skin_m - self.cohesion_reach_m)) ** 2
        s = self._store
        ext = any(e.stage == "post_force" for e in self.extensions)
        dt = self.dt_s
        pending = False
        # Lees–Edwards: pairs across the z faces also move apart by the shift change ds since the
        # build, and a particle that crossed a face is measured against its reference with an error
        # up to ds; so rebuild when a particle moved more than skin/2 - 1.5 ds (or ds > skin/4).
        dshift = abs(self.shear_rate_per_s * float(self.box_m[2])) * dt
        try:
            for t in range(k):
                if dshift > 0.0:
                    self._le_drift_m += dshift
                    base = nl.skin_m - self.cohesion_reach_m
                    h = 0.5 * base - 1.5 * self._le_drift_m
                    trigger = h * h if h > 0.125 * base else -1.0
                if not step(s, nl.pairs, n, nw, 1 if t else 0, trigger, tang, roll, coh):
                    pending = True
                    self._rebuild(self.time_s + (t + 1) * dt)
                    forces(s, nl.pairs, n, nw, tang, roll, coh)
                    pending = False
                if ext:
                    self._extension_forces(self.time_s + (t + 1) * dt, dt)
        finally:
            # Also on an interruption, unless it came between a drift and its forces.
            if not pending:
                finish(s, nl.pairs, n)
        self.step += k
        self.time_s = float(self.time_s + k * self.dt_s)

    def run(
        self,
        steps: int | None = None,
        until: Callable[[Simulation], bool] | float | None = None,
        callbacks: Iterable[Callable[[Simulation], Any]] = (),
        every: int = 100,
        progress: bool = True,
        checkpoint_path: str | Path | None = None,
        checkpoint_every: int | None = None,
    ) -> RunResult:
        """Advance the simulation.

        steps : number of steps (with ``until``: the most steps to take).
        until : a predicate ``f(sim) -> bool`` or a simulated time (s) to reach; checked every
            ``every`` steps.
        callbacks : ``f(sim)`` called every ``every`` steps (e.g. to record or to change a wall).
        progress : tqdm progress bar.
        checkpoint_path : where the last good state goes if a guard trips; with ``checkpoint_every``
            (steps) it is also written periodically and at the end.
        """
        self._check_alive()
        if self.n == 0:
            raise ConfigError("particles", 0, "add particles before run()")
        if steps is None and until is None:
            raise ConfigError("run", None, "give steps=..., until=..., or both")
        if steps is not None and (not isinstance(steps, (int, np.integer)) or steps < 0):
            raise ConfigError("steps", steps, "an integer >= 0")
        if not (isinstance(every, int) and every >= 1):
            raise ConfigError("every", every, "an integer >= 1")
        if checkpoint_every is not None and not (isinstance(checkpoint_every, int) and checkpoint_every >= 1):
            raise ConfigError("checkpoint_every", checkpoint_every, "null or an integer >= 1")
        ck = Path(checkpoint_path) if checkpoint_path is not None else None
        if (
            self.time_step_report is None
            or self._dt_fixed is None
            and self.time_step_report.dt_s != self.dt_s
        ):
            self._choose_dt()
        if not self._forces_valid:
            self._prime()
        if isinstance(until, (int, float)) and not isinstance(until, bool):
            t_end = float(until)
            stop_fn: Callable[[Simulation], bool] | None = lambda sim: sim.time_s >= t_end - 0.5 * sim.dt_s  # noqa: E731
            if steps is None:
                steps = max(0, int(math.ceil((t_end - self.time_s) / self.dt_s - 1e-9)))
        else:
            stop_fn = until  # type: ignore[assignment]
        callbacks = list(callbacks)
        total = int(steps) if steps is not None else None
        if self._energy_ref is None:
            self._energy_ref = self._energy_available_reference()
            self._wall_work_at_ref_J = float(sum(self.wall_work_J(k) for k in range(len(self.walls))))
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, unit="step", desc="dem", leave=False, dynamic_ncols=True)
        t0 = time.perf_counter()
        builds0 = self._nl.builds
        done = 0
        stopped_by = "steps"
        guard_every = self.guards.every_steps
        next_guard = guard_every
        next_ck = checkpoint_every or 0
        if ck is not None:
            self._last_good = self._capture()
        try:
            while total is None or done < total:
                if stop_fn is not None and done % every == 0 and stop_fn(self):
                    stopped_by = "until"
                    break
                chunk = min(every - done % every, next_guard - done)
                if total is not None:
                    chunk = min(chunk, total - done)
                self._advance(chunk)
                done += chunk
                if bar is not None:
                    bar.update(chunk)
                if done >= next_guard:
                    next_guard += guard_every
                    self._guard(ck)
                if done % every == 0:
                    for cb in callbacks:
                        cb(self)
                if checkpoint_every and ck is not None and done >= next_ck:
                    next_ck += checkpoint_every
                    self.save_checkpoint(ck)
            else:
                if stop_fn is not None and stop_fn(self):
                    stopped_by = "until"
        finally:
            if bar is not None:
                bar.close()
        if done % guard_every:
            self._guard(ck)
        if ck is not None and checkpoint_every:
            self.save_checkpoint(ck)
        wall = time.perf_counter() - t0
        return RunResult(
            done,
            self.time_s,
            stopped_by,
            wall,
            self._nl.builds - builds0,
            self.n * done / wall if wall > 0 else float("nan"),
        )

    # ------------------------------------------------------------------ guards
    def _kinetic_for_budget(self, d: dict[str, float]) -> float:
        """Kinetic energy for the energy guard (J): under Lees–Edwards shear the translational part
        relative to the shear flow (a face crossing changes v_x by gamma_dot Lz, not the physics)."""
        if not self._lees_edwards:
            return d["kinetic_energy_J"]
        vol = float(np.prod(self.box_m))
        kin = np.trace(self.stress_tensor(kinetic=True) - self.stress_tensor(kinetic=False))
        return 0.5 * vol * float(kin) + d["kinetic_rotational_J"]

    def _energy_available_reference(self) -> float:
        d = self.diagnostics()
        return (
            self._kinetic_for_budget(d)
            + d["elastic_energy_J"]
            + d["gravity_potential_J"]
            + d["cohesive_energy_J"]
            - sum(e.work_done_J(self) for e in self.extensions)
        )

    def _guard(self, ck: Path | None) -> None:
        from electrodem.engine.diagnostics import O_WORST, O_WORST_EL

        d = self.diagnostics()
        problem = None

        def worst(slot: int) -> int:
            return int(self._store.external_index(self.n)[int(self._store.diag[slot])])

        if d["non_finite_particles"] > 0:
            problem = f"{int(d['non_finite_particles'])} particles have non-finite position or velocity"
        elif d["max_elastic_overlap_ratio"] > self.guards.max_overlap_ratio:
            problem = (
                f"elastic overlap/radius = {d['max_elastic_overlap_ratio']:.3g} > "
                f"{self.guards.max_overlap_ratio} (particle index {worst(O_WORST_EL)}); the contacts are "
                f"too soft for the load or dt = {self.dt_s:.3g} s too large"
            )
        elif d["max_overlap_ratio"] > self.guards.max_total_overlap_ratio:
            problem = (
                f"overlap/radius = {d['max_overlap_ratio']:.3g} > {self.guards.max_total_overlap_ratio} "
                f"(particle index {worst(O_WORST)}, elastic + plastic); a sphere flattened this far no "
                f"longer represents the body: the load is beyond what the model can carry"
            )
        else:
            # Work of the walls since the reference: exact, summed every step by the step kernel.
            wall_work = (
                float(sum(self.wall_work_J(k) for k in range(len(self.walls)))) - self._wall_work_at_ref_J
            )
            # Fixed particles moved at a prescribed velocity (clamps, drivers) work on the others too.
            if self._driven_fixed:
                st = self._store.particles_to_numpy(self.n)
                drv = (st["invm"] == 0) & np.any(st["v"] != 0, axis=1)
                self._wall_work_J += (
                    float(np.abs(np.einsum("ij,ij->i", st["f"][drv], st["v"][drv])).sum())
                    * self.guards.every_steps
                    * self.dt_s
                )
            if self.shear_rate_per_s != 0.0:
                # Work of the Lees–Edwards boundaries since the last check: tau |gamma_dot| V dt per step.
                sigma = self.stress_tensor()
                self._wall_work_J += (
                    abs(float(sigma[0, 2]) * self.shear_rate_per_s)
                    * float(np.prod(self.box_m))
                    * self.guards.every_steps
                    * self.dt_s
                )
            budget = (
                (self._energy_ref or 0.0)
                - d["gravity_potential_J"]
                + self._wall_work_J
                + wall_work
                + sum(e.work_done_J(self) for e in self.extensions)
            )
            # Cohesive energy is potential energy, negative where attraction has done work: it is part
            # of the mechanical energy on both sides (the reference holds its initial value). JKR's
            # snap-in and break only ever lower it (see `electrodem.engine.cohesion`).
            energy = self._kinetic_for_budget(d) + d["elastic_energy_J"] + d["cohesive_energy_J"]
            # Energies are sums over n particles in the run's precision: a budget smaller than their
            # round-off (easily reached in f32, where the potential energy carries ~1e-7 relative
            # error) says nothing, so it counts as that round-off.
            roundoff = (
                float(np.finfo(self.np_real).eps)
                * max(self.n, 1)
                * (
                    abs(self._energy_ref or 0.0)
                    + abs(d["gravity_potential_J"])
                    + abs(d["cohesive_energy_J"])
                    + self._wall_work_J
                    + abs(wall_work)
                )
            )
            scale = max(budget, 0.0) + roundoff + 1e-300
            if energy > self.guards.energy_growth_factor * scale and energy > 1e-30:
                problem = (
                    f"energy blow-up: kinetic + elastic (+ cohesive) energy {energy:.3g} J exceeds "
                    f"{self.guards.energy_growth_factor} x the energy available {budget:.3g} J; "
                    f"dt = {self.dt_s:.3g} s "
                    "is likely too large for the stiffest contact"
                )
        if problem is None:
            if ck is not None:
                self._last_good = self._capture()
            return
        written = None
        if ck is not None and self._last_good is not None:
            from electrodem.engine.checkpoint import write_checkpoint

            written = write_checkpoint(self._last_good, ck)
        raise SimulationError(problem, self.step, written)

    # ------------------------------------------------------------------ outputs
    def diagnostics(self) -> dict[str, float]:
        """Energies (J), overlap ratios, speed (m/s), momentum (kg m/s) and NaN count of the current state.

        ``max_overlap_ratio``: largest overlap / smaller radius; ``max_elastic_overlap_ratio``: the same
        for the elastic part of the overlap (smaller than the overlap only for Thornton–Ning contacts).

        ``elastic_energy_J`` is the Hertz energy of the overlaps; ``cohesive_energy_J`` (<= 0) what
        cohesion adds to it (JKR: the JKR potential minus Hertz; vdW: the truncated Hamaker potential)."""
        from electrodem.engine import diagnostics as dg

        if not self._list_valid:
            self._rebuild()
        dg.diagnostics(self._store, self._nl.pairs, self.n, len(self.walls))
        o = self._store.diag.to_numpy().astype(np.float64)
        return {
            "kinetic_energy_J": float(o[dg.O_KE_T] + o[dg.O_KE_R]),
            "kinetic_translational_J": float(o[dg.O_KE_T]),
            "kinetic_rotational_J": float(o[dg.O_KE_R]),
            "non_finite_particles": float(o[dg.O_NAN]),
            "max_overlap_ratio": float(o[dg.O_MAX_OVL]),
            "max_elastic_overlap_ratio": float(o[dg.O_MAX_EL]),
            "max_speed_m_per_s": float(o[dg.O_MAX_SPEED]),
            "gravity_potential_J": float(o[dg.O_PE_G]),
            "elastic_energy_J": float(o[dg.O_ELASTIC])
            + sum(e.elastic_energy_J(self) for e in self.extensions),
            "momentum_norm_kg_m_per_s": float(o[dg.O_MOM]),
            "cohesive_energy_J": self._cohesive_energy_J(),
        }

    def _cohesive_energy_J(self) -> float:
        """Cohesive potential energy (J, <= 0) of pairs and wall contacts; 0 without cohesion."""
        if self.contact.cohesion == "none":
            return 0.0
        from electrodem.engine.diagnostics import cohesive_energy

        return float(
            cohesive_energy(self._store, self._nl.pairs, self.n, len(self.walls), self.contact.cohesion_code)
        )

    def state(self) -> dict[str, np.ndarray]:
        """Current particle arrays (float64, SI, external order): positions_m, velocities_m_per_s,
        angular_velocities_rad_per_s, forces_N, torques_N_m, radii_m, masses_kg (inertial; inf if fixed),
        gravitational_masses_kg (what gravity acts on), material_id, fixed (bool), ids."""
        st = self._store.particles_to_numpy(self.n)
        with np.errstate(divide="ignore"):
            mass = np.where(st["invm"] > 0, 1.0 / np.where(st["invm"] > 0, st["invm"], 1.0), np.inf)
        return {
            "positions_m": st["x"],
            "velocities_m_per_s": st["v"],
            "angular_velocities_rad_per_s": st["w"],
            "forces_N": st["f"],
            "torques_N_m": st["tq"],
            "radii_m": st["r"],
            "masses_kg": mass,
            "gravitational_masses_kg": st["gm"],
            "material_id": st["mat"],
            "fixed": st["invm"] == 0,
            "ids": self.ids.copy(),
        }

    def particles(self) -> dict[str, np.ndarray]:
        """The particle view for extensions and agent rules: `state` (ids, positions, velocities, spins,
        radii, masses, material index, fixed flag, in external order). Writing into it changes nothing."""
        return self.state()

    def contact_history(self) -> dict[str, np.ndarray]:
        """Per-pair history of the neighbour list (external indices i < j, sorted): tangential_m (n, 3)
        spring as seen from i, rolling_N_m (n, 3), max_overlap_m (dm, Thornton–Ning) and jkr_contact
        (bool); pairs apart with no history have zeros."""
        h = self._nl.history_numpy()
        i, j = h["i"], h["j"]
        # The list stores a pair once, from its owner: seen from the other end the springs change sign.
        sign = np.where(i > j, -1.0, 1.0)[:, None]
        lo, hi = np.minimum(i, j), np.maximum(i, j)
        order = np.lexsort((hi, lo))
        return {
            "i": lo[order],
            "j": hi[order],
            "tangential_m": (sign * h["ht"])[order],
            "rolling_N_m": (sign * h["hr"])[order],
            "max_overlap_m": h["dm"][order],
            "jkr_contact": h["hc"][order] != 0,
        }

    def contacts(self) -> Any:
        """Touching particle pairs as an `electrodem.io.snapshot.ContactSet` sorted by (i, j)."""
        from electrodem.io.snapshot import ContactSet

        c = self.contact_arrays()
        return ContactSet(
            i=c["i"],
            j=c["j"],
            overlap_m=c["overlap_m"],
            contact_radius_m=c["contact_radius_m"],
            normal_force_N=c["normal_force_N"],
        )

    def contact_arrays(self) -> dict[str, np.ndarray]:
        """Touching pairs sorted by (i, j), i < j (external indices), from the last force evaluation:
        i, j, overlap_m, contact_radius_m, normal_force_N (damping and cohesion included; repulsive
        > 0), tangential_force_N (magnitude), and as (m, 3) vectors: normal (unit, from j to i),
        tangential_force_vector_N (on i from j) and branch_vector_m (x_i - x_j, minimum image). The
        force on i from j is normal_force_N * normal + tangential_force_vector_N."""
        from electrodem.engine.diagnostics import export_contacts

        if not self._forces_valid:
            self._prime()
        m = max(self._nl.n_pairs, 1)
        ti = self._ti
        ci, cj = ti.ndarray(ti.i32, m), ti.ndarray(ti.i32, m)
        cval = ti.ndarray(self.real, (m, 13))
        cnt = int(export_contacts(self._store, self._nl.pairs, self.n, ci, cj, cval))
        ext = self._store.external_index(self.n)
        i, j = ext[ci.to_numpy()[:cnt]], ext[cj.to_numpy()[:cnt]]
        val = cval.to_numpy()[:cnt].astype(np.float64)
        lo, hi = np.minimum(i, j), np.maximum(i, j)
        order = np.lexsort((hi, lo))
        # Swapping i and j reverses the normal, the branch vector and the force on i.
        sign = np.where(i > j, -1.0, 1.0)[order, None]
        return {
            "i": lo[order],
            "j": hi[order],
            "overlap_m": val[order, 0],
            "contact_radius_m": val[order, 1],
            "normal_force_N": val[order, 2],
            "tangential_force_N": val[order, 3],
            "normal": sign * val[order, 4:7],
            "tangential_force_vector_N": sign * val[order, 7:10],
            "branch_vector_m": sign * val[order, 10:13],
        }

    def contact_statistics(self, bins: int = 40) -> dict[str, Any]:
        """Coordination per material pair and the normal-force distribution of the current contacts
        (see `electrodem.engine.statistics`); material names under ``materials``."""
        from electrodem.engine.statistics import coordination_by_material, force_distribution

        c = self.contact_arrays()
        mats = self._store.particles_to_numpy(self.n)["mat"]
        out: dict[str, Any] = coordination_by_material(c["i"], c["j"], mats, len(self.materials.materials))
        out["materials"] = [m.name for m in self.materials.materials]
        out["force_distribution"] = force_distribution(c["normal_force_N"], bins=bins)
        return out

    def wall_overlaps_m(self, index: int) -> np.ndarray:
        """Overlap (m) of every particle with wall ``index`` (<= 0: not touching)."""
        from electrodem.engine.diagnostics import wall_overlaps

        out = self._ti.ndarray(self.real, max(self.n, 1))
        wall_overlaps(self._store, self.n, index, out)
        return self._store.to_external(out.to_numpy().astype(np.float64), self.n)

    def wall_work_J(self, index: int) -> float:
        """Work (J) wall ``index`` has done on the particles since the simulation began: the sum over
        steps of -F . v dt (trapezoidal rule, F the force of the particles on the wall, v the wall
        velocity including in-plane components), accumulated every step by the step kernel."""
        from electrodem.engine.state import WW_DX, WW_WORK

        ww = self._store.wwork.to_numpy().astype(np.float64)[index]
        frc = self._store.wforce.to_numpy().astype(np.float64)[index]
        return float(ww[WW_WORK] - 0.5 * frc @ ww[WW_DX : WW_DX + 3])

    def wall_contact_forces(self, index: int) -> np.ndarray:
        """(n, 3) force (N) of wall ``index`` on each particle (external order; zero where apart), from
        the last force evaluation: the contact law's own force (damping, friction, plasticity,
        cohesion included), recorded by the force loop. Their sum is minus ``wall_state()[index]
        ["force_N"]``. Needs ``Simulation(record_wall_forces=True)``."""
        if not self.record_wall_forces:
            raise ConfigError(
                "record_wall_forces", False, "True (Simulation(record_wall_forces=True)) to read wall forces"
            )
        if not 0 <= index < len(self.walls):
            raise ConfigError("index", index, f"a wall index in [0, {len(self.walls)})")
        if not self._forces_valid:
            self._prime()
        return self._store.wrec.to_numpy()[: self.n, index].astype(np.float64)

    def wall_state(self) -> list[dict[str, Any]]:
        """Per wall: name, point_m, normal, velocity_m_per_s, force_N (exerted by the particles during
        the last step), load_N (compressive, along -normal), pressure_Pa (load / area) and work_J (see
        `wall_work_J`)."""
        tab = self._store.walls.to_numpy().astype(np.float64)
        frc = self._store.wforce.to_numpy().astype(np.float64)
        out = []
        for k, w in enumerate(self.walls):
            nrm = np.asarray(w.normal)
            load = -float(frc[k] @ nrm)
            out.append(
                {
                    "name": w.name,
                    "point_m": tab[k, W_PX : W_PX + 3].copy(),
                    "normal": nrm,
                    "velocity_m_per_s": tab[k, W_VX : W_VX + 3].copy(),
                    "force_N": frc[k].copy(),
                    "load_N": load,
                    "pressure_Pa": load / self.wall_area_m2(k),
                    "work_J": self.wall_work_J(k),
                }
            )
        return out

    def wall_area_m2(self, index: int) -> float:
        """Area used for a wall's pressure: its ``area_m2`` or the box cross-section normal to it."""
        w = self.walls[index]
        if w.area_m2 is not None:
            return float(w.area_m2)
        nrm = np.abs(np.asarray(w.normal))
        a = int(np.argmax(nrm))
        if nrm[a] < 1 - 1e-9:
            raise ConfigError(f"wall[{w.name}].area_m2", None, "an area for a wall that is not axis-aligned")
        others = [b for b in range(3) if b != a]
        return float(self.box_m[others[0]] * self.box_m[others[1]])

    def neighbor_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """(i, j) of every pair in the neighbour list (closer than r_i + r_j + skin at the last build)."""
        if not self._list_valid:
            self._rebuild()
        return self._nl.pairs_numpy()

    @property
    def skin_m(self) -> float:
        """Neighbour-list skin (m)."""
        return self._nl.skin_m

    @property
    def neighbor_builds(self) -> int:
        """Number of neighbour-list builds so far."""
        return self._nl.builds

    def describe(self) -> dict[str, Any]:
        """JSON-able description of the model, time step, scalings and engine options."""
        return {
            "materials": [asdict(m) for m in self.materials.materials],
            "pair_overrides": [[a, b, asdict(o)] for (a, b), o in self.materials.overrides.items()],
            "contact": asdict(self.contact),
            "box_m": self.box_m.tolist(),
            "periodic": list(self.periodic),
            "walls": [asdict(w) for w in self.walls],
            "gravity_m_per_s2": self.gravity.tolist(),
            "background_damping_per_s": self.background_damping_per_s,
            "temperature_K": self.temperature_K,
            "shear_rate_per_s": self.shear_rate_per_s,
            "record_wall_forces": self.record_wall_forces,
            "lees_edwards_shift_m": self.lees_edwards_shift_m,
            "time_step": asdict(self.time_step_report) if self.time_step_report else None,
            "dt_fixed_s": self._dt_fixed,
            "rayleigh_fraction": self.rayleigh_fraction,
            "steps_per_contact": self.steps_per_contact,
            "impact_speed_m_per_s": self.impact_speed,
            "skin_m": self._skin_user,
            "neighbor_skin_m": self._nl.skin_m,
            "cohesion_reach_m": self.cohesion_reach_m,
            "guards": asdict(self.guards),
            "scalings": dict(self.scalings),
            "engine": arch.options_dict(),
            "step": self.step,
            "time_s": self.time_s,
            "n_particles": self.n,
            "fields": self.fields.describe(),
            "extensions": [
                {"name": e.name, "class": class_path(e), "params": e.describe()} for e in self.extensions
            ],
        }

    # ------------------------------------------------------------------ checkpoints
    def _capture(self) -> dict[str, Any]:
        from electrodem.engine.checkpoint import capture

        return capture(self)

    def save_checkpoint(self, path: str | Path) -> Path:
        """Write the full state (particles, contact history, walls, model) to ``path`` (.npz)."""
        from electrodem.engine.checkpoint import write_checkpoint

        return write_checkpoint(self._capture(), Path(path))

    @classmethod
    def load_checkpoint(cls, path: str | Path, options: arch.EngineOptions | None = None) -> Simulation:
        """Rebuild a simulation from `save_checkpoint`'s file; it continues exactly where it stopped."""
        from electrodem.engine.checkpoint import read_checkpoint

        return read_checkpoint(cls, Path(path), options)

    def free(self) -> None:
        """Hand the Taichi storage back to the engine's pool (the simulation cannot be used afterwards).

        Called automatically when the simulation is garbage-collected; a later simulation of similar
        size reuses the storage and its compiled kernels."""
        from electrodem.engine.state import release

        if getattr(self, "_store", None) is not None and arch.generation() == self._generation:
            release(self._store)
            self._nl.destroy()
        self._store = None

    def __del__(self) -> None:
        try:
            self.free()
        except Exception:  # noqa: BLE001 - interpreter shutdown: nothing left to release
            pass
