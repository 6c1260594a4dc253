"""Analytic process tools as force extensions: a rotating cylinder (calender roll) over a periodic strip.

`RollerCylinder` is an infinite cylinder of radius R whose axis runs along y (the strip is periodic in
y, so the roll spans the whole box width) at (x_c, z_c). The axis moves at a prescribed velocity (the
roll traverses the strip, or stays put while the strip moves through the nip) or, in ``servo`` mode,
moves along z to hold a target line load. The roll turns about its axis at angular velocity
omega_y (rad/s), or equivalently at a surface speed s = -omega_y R: a positive ``surface_speed`` moves
the roll surface at its lowest point (the nip) along +x.

Contact with a sphere (centre x, radius r) is exact: with d the distance from the axis in the xz plane,
the overlap is r + R - d and the normal points from the axis to the sphere centre. The force is the
Hertz–Mindlin law of sphere–wall contacts (`electrodem.engine.contact.contact_law`) with the pair
properties of (particle material, roll material), R* = r R / (r + R) (convex–convex), m* = the sphere
mass, lever r - overlap from the sphere centre (the contact point on the roll surface, as walls use),
and the roll surface velocity at the contact point, v_axis + omega x (R n), which is what drags the
particles through the nip by friction. Tangential (and epsd rolling) history is kept per particle by
its external index, so it survives the neighbour list's re-ordering; fixed particles (infinite mass)
do not touch the roll, as with planar walls.

Reports (`report`): force of the particles on the roll (N), torque about the roll axis (N m, the drive
must supply minus it), line load = vertical load / box length along y (N/m and N/mm), contact count,
gap (lowest roll point above z = 0, m), and work done on the particles (J). The roll's ``temperature_K``
is a plain attribute for the process layer (no heat transfer here).

Periodic x: distances along x use the minimum image, so the contact arc sqrt(2 R h) of a roll pressing
a layer h deep must stay below half the box length.
"""

import math
from typing import Any

import numpy as np
import taichi as ti

from electrodem.config import ConfigError
from electrodem.engine import arch
from electrodem.engine.contact import table_contact_law
from electrodem.engine.extensions import Extension, kept_index_map
from electrodem.engine.model import P_ESTAR

ROLLER_MODES = ("velocity", "servo")
N_OUT = 11
# Columns of the kernel output: force on the tool (3), torque about the axis / reference (3), contact
# count, power delivered to the particles (W).
O_F, O_T, O_N, O_P, O_E, O_W, O_AW = 0, 3, 6, 7, 8, 9, 10
N_STEP_OUT = 9  # slots reset at every evaluation; O_W, O_AW accumulate the work (J) over the run


class ExternalHistory:
    """Per-particle contact history rows keyed by external index (grows with the particle count).

    ``slots`` history vectors per particle, each of 3 components, held in Taichi ndarrays of the run's
    precision: ``ht`` (tangential, m) and ``hr`` (rolling, N m).
    """

    def __init__(self, real: Any, slots: int = 1) -> None:
        self.real, self.slots, self.cap = real, int(slots), 0
        self.ht: Any = None
        self.hr: Any = None

    def _new(self, cap: int) -> Any:
        shape = (cap,) if self.slots == 1 else (cap, self.slots)
        return ti.Vector.ndarray(3, self.real, shape=shape)

    def ensure(self, n: int) -> None:
        """Room for external indices 0..n-1, keeping what is stored."""
        if n <= self.cap:
            return
        cap = max(64, 1 << (max(n, 1) - 1).bit_length())
        old = self.to_numpy() if self.cap else None
        self.ht, self.hr, self.cap = self._new(cap), self._new(cap), cap
        self.ht.fill(0)
        self.hr.fill(0)
        if old is not None:
            self.from_numpy(old[0], old[1])

    def to_numpy(self, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """float64 copies (ht, hr) of the first n rows (all when None)."""
        k = self.cap if n is None else n
        return self.ht.to_numpy()[:k].astype(np.float64), self.hr.to_numpy()[:k].astype(np.float64)

    def from_numpy(self, ht: np.ndarray, hr: np.ndarray) -> None:
        """Load the first len(ht) rows (the rest is zero)."""
        self.ensure(len(ht))
        np_real = np.float64 if self.real == ti.f64 else np.float32
        for arr, dst in ((ht, self.ht), (hr, self.hr)):
            full = np.zeros(dst.shape + (3,), dtype=np_real)
            full[: len(arr)] = np.asarray(arr).reshape(full[: len(arr)].shape)
            dst.from_numpy(full)


@ti.kernel
def _roller_forces(
    s: ti.template(),
    n: ti.i32,
    ht: ti.types.ndarray(),
    hr: ti.types.ndarray(),
    out: ti.types.ndarray(),
    cx: float,
    cz: float,
    radius: float,
    vx: float,
    vz: float,
    omega: float,
    mw: ti.i32,
    dt: float,
    tangential: ti.template(),
    rolling: ti.template(),
):
    """Add the roll's contact forces to the particles (internal order) and sum its reports in ``out``."""
    ti.loop_config(serialize=arch.SERIAL_LOOPS)
    for k in range(N_STEP_OUT):
        out[k] = 0.0
    lx = s.dom[0]
    perx = s.dom[3] > 0.5
    ti.loop_config(serialize=arch.SERIAL_LOOPS)
    for i in range(n):
        im_i = s.invm[i]
        if im_i > 0.0:
            xi = s.x[i]
            ri = s.r[i]
            e = s.ext[i]
            dx = xi[0] - cx
            if perx:
                dx -= lx * ti.round(dx / lx)
            dz = xi[2] - cz
            dist2 = dx * dx + dz * dz
            rs = ri + radius
            zero = xi * 0.0
            if dist2 < rs * rs:
                dist = ti.sqrt(dist2)
                nrm = ti.Vector([dx / dist, 0.0, dz / dist])
                delta = rs - dist
                arm = radius * nrm
                # omega along +y: omega x arm = omega (arm_z, 0, -arm_x).
                vw = ti.Vector([vx + omega * arm[2], 0.0, vz - omega * arm[0]])
                mi = s.mat[i]
                force, t_i, _t_j, h_t, h_r, _fn = table_contact_law(
                    s.table,
                    mi,
                    mw,
                    nrm,
                    delta,
                    ri * radius / rs,
                    1.0 / im_i,
                    ri - delta,
                    0.0,
                    s.v[i] - vw,
                    s.w[i],
                    zero,
                    ht[e],
                    hr[e],
                    dt,
                    tangential,
                    rolling,
                    0.0,
                    0.0,
                    False,
                )
                if dt > 0.0:
                    ht[e] = h_t
                    hr[e] = h_r
                s.f[i] += force
                s.tq[i] += t_i
                for a in ti.static(range(3)):
                    out[O_F + a] -= force[a]
                # Torque of the force on the roll (-force at arm) about its axis, y component.
                out[O_T + 1] += -arm[2] * force[0] + arm[0] * force[2]
                out[O_N] += 1.0
                # Hertz elastic energy of the (elastic) roll contact, for the energy guard.
                out[O_E] += (
                    0.5333333333333333 * s.table[mi, mw, P_ESTAR] * ti.sqrt(ri * radius / rs) * delta**2.5
                )
                out[O_P] += force.dot(vw)
            elif dt > 0.0:
                if ht[e].any() or hr[e].any():
                    ht[e] = zero
                    hr[e] = zero
    # Serial epilogue (one iteration): the work integrates the power of this evaluation over dt.
    ti.loop_config(serialize=arch.SERIAL_LOOPS)
    for _ in range(1):
        out[O_W] += out[O_P] * dt
        out[O_AW] += ti.abs(out[O_P]) * dt


def _vec(value: Any, size: int, key: str) -> np.ndarray:
    a = np.asarray(value, dtype=float).reshape(-1)
    if a.size != size or not np.all(np.isfinite(a)):
        raise ConfigError(key, value, f"a finite {size}-vector")
    return a


class ToolExtension(Extension):
    """Read-out shared by the tools: a device buffer ``_outbuf`` of per-evaluation sums (force,
    torque, contacts, power, elastic energy) and run totals (work, |work|) at the slots ``_O_E``,
    ``_O_W``, ``_O_AW``; copied to the host only when a report or the energy guard asks."""

    _O_E, _O_W, _O_AW = O_E, O_W, O_AW
    _outbuf: Any
    _out_host: np.ndarray
    _synced: bool

    @property
    def _out(self) -> np.ndarray:
        """Outputs of the last evaluation (see the O_* slots), copied from the device when stale."""
        if not self._synced:
            self._out_host = self._outbuf.to_numpy().astype(np.float64)
            self._synced = True
        return self._out_host

    @property
    def work_J(self) -> float:
        """Work done on the particles since the tool was attached (J)."""
        return float(self._out[self._O_W])

    @property
    def abs_work_J(self) -> float:
        """Sum of |power| dt (J): an upper bound of the energy the tool put in."""
        return float(self._out[self._O_AW])

    def elastic_energy_J(self, sim: Any) -> float:
        """Hertz elastic energy stored in the tool's contacts at the last evaluation (J)."""
        return float(self._out[self._O_E])

    def work_done_J(self, sim: Any) -> float:
        # The guard only needs an upper bound of the energy the tool put in.
        return self.abs_work_J


class RollerCylinder(ToolExtension):
    """Analytic calender roll: an infinite cylinder along y (see module docstring).

    Parameters
    ----------
    radius_m : roll radius R (m).
    axis_xz_m : (x, z) of the axis at the time the roll is attached (m).
    material : name of the roll's material (its pair table row sets E*, G*, damping and friction).
    velocity_m_per_s : (vx, vz) of the axis (m/s); in ``servo`` mode vz is set by the servo.
    angular_velocity_rad_per_s : omega about +y (rad/s); or give ``surface_speed_m_per_s``
        (omega = -s / R: the nip surface moves along +x for s > 0). Not both.
    mode : ``velocity`` (prescribed axis motion; zero velocity = fixed gap) or ``servo``.
    target_line_load_N_per_m : servo target of the vertical load per metre of roll (N/m).
    servo_gain_m_per_s_per_N : servo gain (m/s per N of load error; see `electrodem.engine.walls`).
    max_speed_m_per_s : servo speed limit (m/s).
    temperature_K : roll temperature (K), read by the process layer.
    name : unique extension name.
    """

    def __init__(
        self,
        radius_m: float,
        axis_xz_m: tuple[float, float],
        material: str,
        velocity_m_per_s: tuple[float, float] = (0.0, 0.0),
        angular_velocity_rad_per_s: float | None = None,
        surface_speed_m_per_s: float | None = None,
        mode: str = "velocity",
        target_line_load_N_per_m: float = 0.0,
        servo_gain_m_per_s_per_N: float = 0.0,
        max_speed_m_per_s: float = 0.0,
        temperature_K: float = 293.15,
        name: str = "roller",
    ) -> None:
        key = f"roller[{name}]"
        if not (isinstance(radius_m, (int, float)) and math.isfinite(radius_m) and radius_m > 0):
            raise ConfigError(f"{key}.radius_m", radius_m, "a finite radius > 0 (m)")
        self.radius_m = float(radius_m)
        self.axis = _vec(axis_xz_m, 2, f"{key}.axis_xz_m")
        self.velocity = _vec(velocity_m_per_s, 2, f"{key}.velocity_m_per_s")
        if angular_velocity_rad_per_s is not None and surface_speed_m_per_s is not None:
            raise ConfigError(
                f"{key}.surface_speed_m_per_s", surface_speed_m_per_s, "null when angular_velocity is given"
            )
        if surface_speed_m_per_s is not None:
            omega = -float(surface_speed_m_per_s) / self.radius_m
        else:
            omega = float(angular_velocity_rad_per_s or 0.0)
        if not math.isfinite(omega):
            raise ConfigError(f"{key}.angular_velocity_rad_per_s", omega, "finite (rad/s)")
        self.omega = omega
        if mode not in ROLLER_MODES:
            raise ConfigError(f"{key}.mode", mode, f"one of {ROLLER_MODES}")
        self.mode = mode
        if mode == "servo":
            if not target_line_load_N_per_m >= 0:
                raise ConfigError(f"{key}.target_line_load_N_per_m", target_line_load_N_per_m, ">= 0 (N/m)")
            if not servo_gain_m_per_s_per_N > 0:
                raise ConfigError(
                    f"{key}.servo_gain_m_per_s_per_N", servo_gain_m_per_s_per_N, "> 0 in servo mode"
                )
            if not max_speed_m_per_s > 0:
                raise ConfigError(f"{key}.max_speed_m_per_s", max_speed_m_per_s, "> 0 in servo mode")
        self.target_line_load = float(target_line_load_N_per_m)
        self.gain = float(servo_gain_m_per_s_per_N)
        self.vmax = float(max_speed_m_per_s)
        if not temperature_K > 0:
            raise ConfigError(f"{key}.temperature_K", temperature_K, "> 0 (K)")
        self.temperature_K = float(temperature_K)
        self.material = str(material)
        self.name = name
        self._out_host = np.zeros(N_OUT)
        self._synced = True
        self._hist: ExternalHistory | None = None
        self._ly = 1.0
        self._mat = 0

    # ------------------------------------------------------------------ engine hooks
    def attach(self, sim: Any) -> None:
        self._mat = sim.materials.index(self.material)
        if not sim.periodic[1]:
            raise ConfigError(f"roller[{self.name}]", sim.periodic, "a box periodic along y (the roll axis)")
        self._ly = float(sim.box_m[1])
        self._hist = ExternalHistory(sim.real)
        self._hist.ensure(max(sim.n, 1))
        self._outbuf = ti.ndarray(sim.real, N_OUT)
        self._outbuf.fill(0)

    def _load_N(self) -> float:
        return float(self._out[O_F + 2])

    def on_particles_removed(self, sim: Any, removed_ids: np.ndarray) -> None:
        # The contact history is kept by external index: close up the rows of the removed particles.
        assert self._hist is not None
        self._hist.ensure(sim.n)
        keep = kept_index_map(sim.ids, removed_ids) >= 0
        ht, hr = self._hist.to_numpy(sim.n)
        self._hist.from_numpy(ht[keep], hr[keep])

    def on_model_changed(self, sim: Any) -> None:
        # Material indices follow the table (set_materials may reorder it).
        self._mat = sim.materials.index(self.material)

    def add_forces(self, sim: Any, time_s: float, dt_s: float) -> None:
        assert self._hist is not None
        self._hist.ensure(sim.n)
        if dt_s > 0:
            if self.mode == "servo":
                err = self.target_line_load * self._ly - self._load_N()
                self.velocity[1] = -min(max(self.gain * err, -self.vmax), self.vmax)
            self.axis += self.velocity * dt_s
        _roller_forces(
            sim._store,
            sim.n,
            self._hist.ht,
            self._hist.hr,
            self._outbuf,
            float(self.axis[0]),
            float(self.axis[1]),
            self.radius_m,
            float(self.velocity[0]),
            float(self.velocity[1]),
            self.omega,
            self._mat,
            float(dt_s),
            sim.contact.tangential == "mindlin",
            sim.contact.rolling_code,
        )
        # Read back lazily: a device-to-host copy per step would cost more than the contacts.
        self._synced = False

    # ------------------------------------------------------------------ reports
    @property
    def surface_speed_m_per_s(self) -> float:
        """Speed of the roll surface at the nip along +x (m/s), -omega R."""
        return -self.omega * self.radius_m

    def report(self) -> dict[str, Any]:
        """Force of the particles on the roll (N), load (N, +z), line load (N/m, N/mm), torque about the
        axis (N m), contacts, axis position and gap (m), velocities, work done on the particles (J)."""
        load = self._load_N()
        return {
            "name": self.name,
            "axis_xz_m": self.axis.copy(),
            "gap_m": float(self.axis[1] - self.radius_m),
            "velocity_m_per_s": self.velocity.copy(),
            "angular_velocity_rad_per_s": self.omega,
            "force_N": self._out[O_F : O_F + 3].copy(),
            "load_N": load,
            "line_load_N_per_m": load / self._ly,
            "line_load_N_per_mm": load / self._ly * 1e-3,
            "torque_N_m": float(self._out[O_T + 1]),
            "contacts": int(round(self._out[O_N])),
            "power_W": float(self._out[O_P]),
            "work_J": self.work_J,
            "temperature_K": self.temperature_K,
        }

    # ------------------------------------------------------------------ checkpoints
    def describe(self) -> dict[str, Any]:
        return {
            "radius_m": self.radius_m,
            "axis_xz_m": self.axis.tolist(),
            "material": self.material,
            "velocity_m_per_s": self.velocity.tolist(),
            "angular_velocity_rad_per_s": self.omega,
            "mode": self.mode,
            "target_line_load_N_per_m": self.target_line_load,
            "servo_gain_m_per_s_per_N": self.gain,
            "max_speed_m_per_s": self.vmax,
            "temperature_K": self.temperature_K,
            "name": self.name,
        }

    def state_dict(self) -> dict[str, np.ndarray]:
        assert self._hist is not None
        ht, hr = self._hist.to_numpy()
        return {
            "axis": self.axis.copy(),
            "velocity": self.velocity.copy(),
            "omega": np.array(self.omega),
            "temperature_K": np.array(self.temperature_K),
            "out": self._out.copy(),
            "ht": ht,
            "hr": hr,
        }

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        assert self._hist is not None
        self.axis = np.asarray(state["axis"], float).copy()
        self.velocity = np.asarray(state["velocity"], float).copy()
        self.omega = float(state["omega"])
        self.temperature_K = float(state["temperature_K"])
        out = np.zeros(N_OUT)
        saved = np.asarray(state["out"], float).reshape(-1)
        out[: saved.size] = saved
        self._outbuf.from_numpy(out.astype(self._outbuf.to_numpy().dtype))
        self._out_host, self._synced = out, True
        self._hist.from_numpy(state["ht"], state["hr"])

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> "RollerCylinder":
        return cls(
            d["radius_m"],
            tuple(d["axis_xz_m"]),
            d["material"],
            velocity_m_per_s=tuple(d["velocity_m_per_s"]),
            angular_velocity_rad_per_s=d["angular_velocity_rad_per_s"],
            mode=d["mode"],
            target_line_load_N_per_m=d["target_line_load_N_per_m"],
            servo_gain_m_per_s_per_N=d["servo_gain_m_per_s_per_N"],
            max_speed_m_per_s=d["max_speed_m_per_s"],
            temperature_K=d["temperature_K"],
            name=d["name"],
        )
