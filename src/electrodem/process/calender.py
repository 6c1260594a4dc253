"""Roll calendering of an electrode layer on its current collector (floor wall at z = 0, x/y periodic).

Geometry. An RVE strip is 40-100 um long, the nip contact arc sqrt(2 R dh) of an industrial roll
(R = 50-400 mm, dh ~ 10-40 um) is 1-5 mm. Two geometries, chosen by ``geometry`` and named in the
run metadata:

* ``roll`` — the strip passes under an exact cylinder (`electrodem.engine.tools.RollerCylinder`,
  elastic Hertz–Mindlin roll contacts). The roll is lowered onto the strip at one spot (at the
  largest compression speed the nip would impose) and then rolls one full strip period, so every
  point of the periodic strip passes under the minimum gap once, then lifts off. Valid only when
  the contact arc is below ``max_arc_fraction`` (1/3) of the strip length, otherwise `ConfigError`.
* ``nip`` (R >> strip, the default) — over the strip the roll surface is flat to within
  Lx^2 / (8 R) (reported as ``roll_sag_over_strip_m``), so a planar top wall follows the roll
  profile as the strip travels through the nip at line speed v:
  z_top(t) = gap + R - sqrt(R^2 - x(t)^2), x(t) = -x_in + v t, x_in where the roll first touches
  the layer. The wall's in-plane velocity is the roll surface velocity relative to the strip,
  s cos(theta) - v (s = surface speed, sin(theta) = x / R), and its normal velocity the profile's
  dz_top/dt = v x / sqrt(R^2 - x^2), so friction drags as in the nip. Line load
  q = int p dx = int p(t) v dt (quasi-static: the whole strip carries the pressure of its place in
  the nip); reported with the peak pressure.

Line speed. Contacts here are rate-independent (Hertz / Thornton–Ning, restitution damping), so the
line speed enters only through inertia. The simulated line speed (a named shortcut) is by default
chosen so that the largest compression strain rate of the nip, v tan(theta_in) / h, gives the inertial
number I = eps_dot d sqrt(rho / p) = ``target_inertial_number`` at ``design_pressure_Pa``. The
inertial number is then measured at every sample with p >= 10 % of the peak pressure; the pass is
``quasi_static`` when its maximum stays below ``max_inertial_number`` (1e-3), else the report says it
was not. Binder rate effects (viscoelastic PVDF) are therefore not modelled.

Control modes (``control``): ``gap`` (gap per pass, or one for all), ``gap_fraction`` (each pass's
gap is ``gap_fraction`` x the gauge thickness of the layer entering it: the compression of the
tallest particles, hence the largest overlaps, no longer depends on how tall the rough top of one
RVE happens to be), ``line_load`` (the gap whose
pass takes ``target_line_load_N_per_mm``) and ``target_porosity`` (the gap whose porosity after
spring-back hits the target; with several passes, pass k aims at the linear interpolation between the
incoming and the target porosity). Both searches run full passes on copies of the incoming
microstructure with a bracketed secant (regula falsi, Illinois) in the gap, at most
``search_passes`` of them, and keep the evaluated pass closest to the target (no re-run); the
evaluations are listed in the pass report.

Temperature. The layer is taken to be at the roll temperature during the pass (no heat transfer:
a thin layer in a heated nip), passed to `Simulation(temperature_K=...)`, which softens the
Thornton–Ning yield pressures of species with a softening range (``softening_K``).

After each pass the tool is moved far away and the bed relaxes (background damping, gravity of the
settled state) until its kinetic energy is below ``relax_ke_ratio`` x the elastic energy at the
minimum gap. Reported per pass: spring-back % = 100 (h_relaxed - h_min) / h_min with h_min the layer
thickness at the minimum gap, elastic recovery % = 100 (h_relaxed - h_min) / (h_before - h_min),
porosity, thickness, density, mean coordination number, and particle stress statistics.

Thickness and porosity follow the definition every step shares
(`electrodem.analysis.composition.layer_thickness`): the headline ``thickness*_um``/``porosity*`` are
the gauge thickness, the highest particle surface max(z + r), or the tool position while it presses
the layer (at the minimum gap: min(gap, max(z + r)); nip: over the whole strip, which is under the
planar wall at once; roll: over the particles within half a contact arc of the axis, the bed being at
the minimum gap only there), porosity = 1 - (all the solid) / (area x it), mass-based (caps flattened
against the roll belong to the layer).
Next to each, the ``_bulk`` measure (half-bulk solid-fraction rule, `bulk_top_m`, slabs r_min / 8:
spring-backs of a few % are below one r_min), insensitive to the surface roughness; its spring-back
and elastic recovery are reported too. In a DEM bed of rigid-shaped spheres the plastic flattening
against the roll is not kept in the particle shapes once the roll has gone, so the gauge spring-back
of a thin layer includes that surface part; the bulk one measures the interior.

Particle stress: sigma_i = (1 / V_i) sum_c f_c (x) r_c over the particle–particle contacts of
particle i with the normal forces only (f_c = F_n n_c, r_c = (r_i - delta r_i / (r_i + r_j)) n_c
from the centre to the contact point; compression positive; wall contacts and tangential forces are
not in the engine's contact export and are left out). Reported at the minimum gap and after
relaxation: the largest and 99th-percentile von Mises stress and largest principal (compressive)
stress, as proxies for AM cracking risk.

Shortcuts (as in settle, all in ``metadata['shortcuts']['calender']``): softened/capped moduli,
mass-scaled fines, simulated line speed, background damping in the relaxation only.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from electrodem.analysis.composition import bulk_top_m, layer_thickness
from electrodem.config import ConfigError
from electrodem.config.errors import is_number
from electrodem.engine.arch import EngineOptions
from electrodem.io.snapshot import Microstructure
from electrodem.process.engine_map import (
    CC_MATERIAL,
    ContactParams,
    ShortcutParams,
    engine_materials,
    shortcuts_log,
)
from electrodem.process.engine_map import masses as engine_masses
from electrodem.process.live import EngineSetup, HoldsEngine, engine_for, release, with_engine_extras

GEOMETRIES = ("nip", "roll")
CONTROLS = ("gap", "gap_fraction", "line_load", "target_porosity")
ROLL_MATERIAL = "calender_roll"
CONTACT: dict[str, Any] = {"normal": "thornton_ning", "cohesion": "none"}
"""The calender's built-in overrides of the shared ``contact`` group: elastic–plastic contacts (yield
pressures from the library), no adhesion unless asked (``jkr``: the coating resists the roll)."""
SHORTCUTS: dict[str, Any] = {"rayleigh_fraction": 0.3}
"""The calender's built-in overrides of the shared ``shortcuts`` group."""


@dataclass
class CalenderParams:
    """Parameters of roll calendering (SI unless the key says otherwise).

    geometry : ``nip`` (planar wall following the roll profile) or ``roll`` (exact cylinder).
    roll_radius_m : roll radius R (m).
    control : ``gap`` | ``gap_fraction`` | ``line_load`` | ``target_porosity``.
    gap_um : roll gap (um, lowest roll point above the collector): one value or one per pass (``gap``).
    gap_fraction : roll gap / gauge thickness of the incoming layer, each pass (``gap_fraction``).
    target_line_load_N_per_mm : line load every pass should take (``line_load``).
    target_porosity : porosity after the last pass, after spring-back (``target_porosity``).
    passes : number of passes.
    roll_temperature_K : roll (and layer) temperature during the pass (K).
    surface_speed_ratio : roll surface speed / line speed (1 = no slip at the nip centre).
    line_speed_m_per_s : simulated line speed (m/s); None = from the inertial-number rule (module doc).
    target_inertial_number, design_pressure_Pa : that rule's inertial number and pressure (Pa).
    max_inertial_number : the pass is quasi-static when the measured I stays below this.
    contact : the shared ``contact`` group with the step's overrides (`CONTACT`: ``thornton_ning``
        normal law, yield pressures and softening ranges from the library unless overridden,
        ``cohesion`` ``none``; ``jkr``: a cohesive, dried coating resists the roll); the roll is tool
        steel with ``tool_friction``, the collector the foil.
    shortcuts : the shared ``shortcuts`` group with the step's overrides (`SHORTCUTS`).
    gravity_m_per_s2 : gravity during the pass and relaxation; None = the settling gravity recorded
        by settle (else 0).
    samples_per_nip : samples of the load curve while the strip crosses the nip.
    relax_ke_ratio : relaxation ends when kinetic < this x elastic energy at the minimum gap ...
    relax_damping_ratio : ... with background damping of this ratio to critical for the bed thickness mode ...
    max_relax_steps : ... or after this many steps.
    max_arc_fraction : ``roll`` geometry: largest allowed contact arc / strip length.
    search_passes : most evaluated passes per search (``line_load``, ``target_porosity``).
    search_tolerance : relative line-load tolerance, or absolute porosity tolerance, of a search.
    max_overlap_ratio : the engine's guard on the elastic overlap (fraction of the smaller radius; the
        overlap above the plastic one for Thornton–Ning contacts).
    max_total_overlap_ratio : the engine's guard on the whole overlap, plastic flattening included.
    max_steps_per_pass : refuse a pass that would need more steps than this.
    """

    geometry: str = "nip"
    roll_radius_m: float = 0.1
    control: str = "gap"
    gap_um: float | list[float] | None = None
    gap_fraction: float | None = None
    target_line_load_N_per_mm: float | None = None
    target_porosity: float | None = None
    passes: int = 1
    roll_temperature_K: float = 293.15
    surface_speed_ratio: float = 1.0
    line_speed_m_per_s: float | None = None
    target_inertial_number: float = 3e-4
    design_pressure_Pa: float = 1e6
    max_inertial_number: float = 1e-3
    contact: ContactParams = field(default_factory=lambda: ContactParams(**CONTACT, where="calender.contact"))
    shortcuts: ShortcutParams = field(
        default_factory=lambda: ShortcutParams(**SHORTCUTS, where="calender.shortcuts"))
    gravity_m_per_s2: float | None = None
    samples_per_nip: int = 200
    relax_ke_ratio: float = 1e-4
    relax_damping_ratio: float = 1.0
    max_relax_steps: int = 200_000
    max_arc_fraction: float = 1.0 / 3.0
    search_passes: int = 5
    search_tolerance: float = 0.05
    max_overlap_ratio: float = 0.25
    max_total_overlap_ratio: float = 1.0
    max_steps_per_pass: int = 2_000_000

    def __post_init__(self) -> None:
        def req(cond: bool, key: str, allowed: str) -> None:
            if not cond:
                raise ConfigError(f"calender.{key}", getattr(self, key), allowed)

        def num(key: str) -> float:
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ConfigError(f"calender.{key}", v, "a finite number")
            return float(v)

        def integer(key: str, lo: int) -> None:
            v = getattr(self, key)
            req(isinstance(v, int) and not isinstance(v, bool) and v >= lo, key, f"an integer >= {lo}")

        req(self.geometry in GEOMETRIES, "geometry", f"one of {GEOMETRIES}")
        req(num("roll_radius_m") > 0, "roll_radius_m", "> 0 (m)")
        req(self.control in CONTROLS, "control", f"one of {CONTROLS}")
        integer("passes", 1)
        # Every target that is set is checked, whichever control reads it: a bad value left in the
        # config would otherwise surface only when someone switches the control.
        g = self.gap_um
        if g is not None:
            gaps = g if isinstance(g, (list, tuple)) else [g]
            req(
                all(is_number(v) and v > 0 for v in gaps) and len(gaps) in (1, self.passes),
                "gap_um",
                f"null, a gap > 0 (um), or a list of {self.passes} (one per pass)",
            )
        v = self.gap_fraction
        req(v is None or (is_number(v) and 0 < v <= 1), "gap_fraction",
            "null or a fraction of the incoming gauge thickness in (0, 1]")
        v = self.target_line_load_N_per_mm
        req(v is None or (is_number(v) and v > 0), "target_line_load_N_per_mm",
            "null or a line load > 0 (N/mm)")
        v = self.target_porosity
        req(v is None or (is_number(v) and 0 < v < 1), "target_porosity", "null or a porosity in (0, 1)")
        needed = {"gap": "gap_um", "gap_fraction": "gap_fraction", "line_load": "target_line_load_N_per_mm",
                  "target_porosity": "target_porosity"}[self.control]
        req(getattr(self, needed) is not None, needed, f"set (not null) with control {self.control!r}")
        req(num("roll_temperature_K") > 0, "roll_temperature_K", "> 0 (K)")
        req(num("surface_speed_ratio") >= 0, "surface_speed_ratio", ">= 0")
        if self.line_speed_m_per_s is not None:
            req(num("line_speed_m_per_s") > 0, "line_speed_m_per_s", "null (automatic) or > 0 (m/s)")
        req(0 < num("max_inertial_number") < 1, "max_inertial_number", "in (0, 1)")
        req(
            0 < num("target_inertial_number") <= num("max_inertial_number"),
            "target_inertial_number",
            "in (0, max_inertial_number]",
        )
        req(num("design_pressure_Pa") > 0, "design_pressure_Pa", "> 0 (Pa)")
        req(isinstance(self.contact, ContactParams), "contact", "a ContactParams")
        req(isinstance(self.shortcuts, ShortcutParams), "shortcuts", "a ShortcutParams")
        if self.gravity_m_per_s2 is not None:
            req(num("gravity_m_per_s2") >= 0, "gravity_m_per_s2", "null or >= 0 (m/s^2)")
        integer("samples_per_nip", 10)
        req(0 < num("relax_ke_ratio") < 1, "relax_ke_ratio", "in (0, 1)")
        req(num("relax_damping_ratio") > 0, "relax_damping_ratio", "> 0")
        integer("max_relax_steps", 1)
        req(0 < num("max_arc_fraction") < 0.5, "max_arc_fraction", "in (0, 0.5) (periodic strip)")
        integer("search_passes", 2)
        req(0 < num("search_tolerance") < 1, "search_tolerance", "in (0, 1)")
        req(0 < num("max_overlap_ratio") < 0.5, "max_overlap_ratio", "in (0, 0.5)")
        req(num("max_overlap_ratio") <= num("max_total_overlap_ratio") <= 2.0, "max_total_overlap_ratio",
            f"in [max_overlap_ratio ({self.max_overlap_ratio}), 2] (overlap / smaller radius)")  # fmt: skip
        integer("max_steps_per_pass", 1)

    def gaps_m(self) -> list[float]:
        """Gap of every pass (m), control ``gap`` only."""
        g = self.gap_um
        gaps = list(g) if isinstance(g, (list, tuple)) else [g] * self.passes
        return [float(v) * 1e-6 for v in gaps]


# ---------------------------------------------------------------------------------------------- measures
def particle_stress_Pa(
    positions_m: np.ndarray,
    radii_m: np.ndarray,
    box_m: np.ndarray,
    periodic: tuple[bool, ...],
    i: np.ndarray,
    j: np.ndarray,
    overlap_m: np.ndarray,
    normal_force_N: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """(von Mises, largest principal) stress (Pa, compression positive) of every particle from its
    particle–particle contacts: sigma_i = (1/V_i) sum_c F_n (r_i - delta r_i/(r_i+r_j)) n (x) n."""
    n = len(radii_m)
    sig = np.zeros((n, 3, 3))
    if len(i):
        d = positions_m[j] - positions_m[i]
        for a in range(3):
            if periodic[a]:
                d[:, a] -= box_m[a] * np.round(d[:, a] / box_m[a])
        nrm = d / np.linalg.norm(d, axis=1)[:, None]
        ri, rj = radii_m[i], radii_m[j]
        outer = nrm[:, :, None] * nrm[:, None, :]
        fn = np.maximum(normal_force_N, 0.0)
        for idx, r_self, r_oth in ((i, ri, rj), (j, rj, ri)):
            lever = r_self - overlap_m * r_self / (r_self + r_oth)
            np.add.at(sig, idx, (fn * lever)[:, None, None] * outer)
        sig /= (4.0 / 3.0 * np.pi * radii_m**3)[:, None, None]
    dev = sig - np.trace(sig, axis1=1, axis2=2)[:, None, None] / 3.0 * np.eye(3)
    vm = np.sqrt(1.5 * np.einsum("kab,kab->k", dev, dev))
    principal = np.linalg.eigvalsh(sig)[:, -1]
    return vm, principal


def _stress_stats(prefix: str, vm: np.ndarray, pr: np.ndarray) -> dict[str, float]:
    return {
        f"{prefix}von_mises_max_Pa": float(vm.max()) if len(vm) else 0.0,
        f"{prefix}von_mises_p99_Pa": float(np.percentile(vm, 99)) if len(vm) else 0.0,
        f"{prefix}principal_max_Pa": float(pr.max()) if len(pr) else 0.0,
        f"{prefix}principal_p99_Pa": float(np.percentile(pr, 99)) if len(pr) else 0.0,
    }


# ---------------------------------------------------------------------------------------------- engine
def _materials(micro: Microstructure, p: CalenderParams) -> list[Any]:
    """Species, current collector, roll (`electrodem.process.engine_map.engine_materials`)."""
    return engine_materials(micro, p.contact, p.shortcuts, tools=(ROLL_MATERIAL,))


def _gravity(micro: Microstructure, p: CalenderParams) -> float:
    if p.gravity_m_per_s2 is not None:
        return float(p.gravity_m_per_s2)
    return float(micro.metadata.get("settle", {}).get("settling_gravity_m_per_s2", 0.0))


def _masses(micro: Microstructure, p: CalenderParams) -> tuple[np.ndarray, np.ndarray]:
    """(inertial masses (kg), fines mask)."""
    inertial, _, fines = engine_masses(micro, p.shortcuts)
    return inertial, fines


def _build_sim(
    micro: Microstructure,
    p: CalenderParams,
    options: EngineOptions,
    walls: list[Any],
    impact_m_per_s: float,
    live: HoldsEngine | None = None,
) -> Any:
    """The pass's simulation: the route's live engine state reconfigured for the pass, or a new one."""
    from electrodem.engine import Guards

    inertial, weights, _ = engine_masses(micro, p.shortcuts)
    setup = EngineSetup(
        _materials(micro, p),
        p.contact.model(),
        walls,
        (0.0, 0.0, -_gravity(micro, p)),
        inertial,
        gravitational_masses_kg=weights,
        rayleigh_fraction=p.shortcuts.rayleigh_fraction,
        steps_per_contact=20.0,
        impact_speed_m_per_s=max(impact_m_per_s, 1e-9),
        guards=Guards(max_overlap_ratio=p.max_overlap_ratio,
                      max_total_overlap_ratio=p.max_total_overlap_ratio),
        temperature_K=p.roll_temperature_K,
    )
    return engine_for(live, micro, setup, options)


def _tool_force_z_check(sim: Any, masses: np.ndarray) -> float:
    """Vertical force of the particles on the tool (N) from Newton's third law alone: the particles'
    net forces minus what the collector, gravity and background damping put on them."""
    st = sim.state()
    f_sum = st["forces_N"].sum(axis=0)
    floor = sim.wall_state()[0]["force_N"]
    damp = sim.background_damping_per_s * (masses[:, None] * st["velocities_m_per_s"]).sum(axis=0)
    grav = masses.sum() * sim.gravity
    return float(-(f_sum + floor + damp - grav)[2])


# ---------------------------------------------------------------------------------------------- one pass
@dataclass
class _Plan:
    gap_m: float
    h_before_bulk_m: float  # bulk thickness of the incoming layer: the scale of the strain rates
    z_touch_m: float
    x_in_m: float
    arc_m: float
    speed_m_per_s: float
    strain_rate_max_per_s: float


def _plan(micro: Microstructure, p: CalenderParams, gap_m: float) -> _Plan:
    area = float(micro.box_m[0] * micro.box_m[1])
    # The strain rates of the nip compress the bed interior: their length scale is the bulk thickness
    # (roughness-insensitive), not the gauge one (which the report uses for the thickness itself).
    h0 = bulk_top_m(micro.positions_m[:, 2], micro.radii_m, area)
    peak = float(np.max(micro.positions_m[:, 2] + micro.radii_m))
    r_mean = float(micro.radii_m.mean())
    R = p.roll_radius_m
    # Start where the roll clears the highest particle by a mean radius (also for a gap above the bed:
    # the pass then really runs and must find nothing to touch).
    z_touch = max(peak, gap_m) + r_mean
    depth = min(z_touch - gap_m, R)
    x_in = math.sqrt(max(R * R - (R - depth) ** 2, 0.0))
    # The arc is measured to the highest particle top: where the roll first presses the layer.
    arc = math.sqrt(2.0 * R * max(peak - gap_m, 0.0))
    tan_in = x_in / math.sqrt(R * R - x_in * x_in) if x_in < R else 1.0
    if p.line_speed_m_per_s is not None:
        v = float(p.line_speed_m_per_s)
        rate = v * tan_in / max(h0, 1e-30)
    else:
        am = micro.radii_m
        d = 2.0 * float(np.sum(am**4) / np.sum(am**3))
        masses, _ = _masses(micro, p)
        rho = float(masses.sum() / micro.volumes_m3.sum())
        rate = p.target_inertial_number / (d * math.sqrt(rho / p.design_pressure_Pa))
        v = rate * h0 / tan_in
    return _Plan(gap_m, h0, z_touch, x_in, arc, v, rate)


def _inertial(rate: float, p_Pa: float, d_m: float, rho: float) -> float:
    return rate * d_m * math.sqrt(rho / p_Pa) if p_Pa > 0 else float("inf")


def _run_pass(
    micro: Microstructure,
    p: CalenderParams,
    options: EngineOptions,
    gap_m: float,
    progress: bool,
    live: HoldsEngine | None = None,
) -> tuple[Microstructure, dict[str, Any], list[dict[str, Any]]]:
    from electrodem.engine import Wall
    from electrodem.engine.tools import RollerCylinder

    pl = _plan(micro, p, gap_m)
    R, v, lx, ly = p.roll_radius_m, pl.speed_m_per_s, float(micro.box_m[0]), float(micro.box_m[1])
    area = lx * ly
    if p.geometry == "roll" and pl.arc_m > p.max_arc_fraction * lx:
        raise ConfigError(
            "calender.roll_radius_m/gap_um",
            (R, gap_m * 1e6),
            f"geometry 'roll' needs a contact arc sqrt(2 R (h_peak - gap)) = {pl.arc_m * 1e6:.4g} um below "
            f"{p.max_arc_fraction:.3g} x the strip length {lx * 1e6:.4g} um: use a longer strip "
            f"(box x), a smaller roll_radius_m, a larger gap, or geometry 'nip'",
        )
    masses, _ = _masses(micro, p)
    d_mean = 2.0 * float(np.sum(micro.radii_m**4) / np.sum(micro.radii_m**3))
    rho = float(masses.sum() / micro.volumes_m3.sum())
    floor = Wall((0.0, 0.0, 0.0), (0.0, 0.0, 1.0), CC_MATERIAL, name=CC_MATERIAL)
    walls = [floor]
    if p.geometry == "nip":
        walls.append(
            Wall((0.0, 0.0, pl.z_touch_m), (0.0, 0.0, -1.0), ROLL_MATERIAL, mode="velocity", name="roll_nip")
        )
    sim = _build_sim(
        micro, p, options, walls, v * max(pl.strain_rate_max_per_s * pl.h_before_bulk_m / v, 1e-3), live
    )
    sim.run(steps=0, progress=False)
    # Times and steps of the pass count from its start (a live engine state has run before).
    step0, time0 = sim.step, sim.time_s
    dt = sim.dt_s
    curve: list[dict[str, Any]] = []
    roller = None
    s_speed = p.surface_speed_ratio * v
    t_nip = pl.x_in_m / v
    every = max(1, int(t_nip / dt / p.samples_per_nip))

    # Largest overlaps over the samples of the pass (the engine guards bound them at every check; the
    # report shows the margin to those guards, which the state at the minimum gap alone does not).
    peak = {"max_overlap_ratio": 0.0, "max_elastic_overlap_ratio": 0.0}

    def sample(phase: str, x_m: float, z_m: float, load: float, rate: float) -> None:
        pressure = load / area if p.geometry == "nip" else load / ly / max(pl.arc_m, 1e-30)
        diag = sim.diagnostics()
        for key in peak:
            peak[key] = max(peak[key], float(diag[key]))
        curve.append(
            {
                "phase": phase,
                "time_s": float(sim.time_s) - time0,
                "x_m": x_m,
                "tool_z_m": z_m,
                "load_N": load,
                "load_check_N": _tool_force_z_check(sim, masses),
                "pressure_Pa": pressure,
                "floor_load_N": float(sim.wall_state()[0]["load_N"]) - float(masses.sum() * -sim.gravity[2]),
                "line_load_N_per_mm": load / ly * 1e-3,
                "strain_rate_per_s": rate,
                "inertial_number": _inertial(rate, pressure, d_mean, rho),
            }
        )

    def nip_z(x: float) -> float:
        return gap_m + R - math.sqrt(R * R - x * x)

    def nip_set(x: float) -> float:
        sin_t = x / R
        cos_t = math.sqrt(1.0 - sin_t * sin_t)
        vz = v * x / math.sqrt(R * R - x * x)
        sim.set_wall(1, point_m=(0.0, 0.0, nip_z(x)), velocity_m_per_s=(s_speed * cos_t - v, 0.0, vz))
        return vz

    steps_in = max(1, int(math.ceil(t_nip / dt)))
    if steps_in > p.max_steps_per_pass:
        raise ConfigError(
            "calender.max_steps_per_pass",
            p.max_steps_per_pass,
            f">= {steps_in} steps this pass needs to reach the nip centre (dt = {dt:.3g} s, "
            f"line speed {v:.3g} m/s): raise it, or calender.line_speed_m_per_s",
        )
    min_gap: dict[str, Any] = {}
    if p.geometry == "nip":
        # v is adjusted so that the strip reaches the nip centre exactly at the end of a step.
        v = pl.x_in_m / (steps_in * dt)
        t0 = sim.time_s
        x_of = lambda s: -pl.x_in_m + v * (s.time_s - t0)  # noqa: E731
        state = {"vz": nip_set(-pl.x_in_m)}

        def drive(s: Any) -> None:
            x = x_of(s)
            if abs(x) < pl.x_in_m:
                state["vz"] = nip_set(x)
            ws = s.wall_state()[1]
            sample(
                "nip", x, float(ws["point_m"][2]), float(ws["load_N"]), abs(state["vz"]) / pl.h_before_bulk_m
            )

        sample("nip", -pl.x_in_m, nip_z(-pl.x_in_m), 0.0, abs(state["vz"]) / pl.h_before_bulk_m)
        sim.run(steps=steps_in, callbacks=[drive], every=every, progress=progress)
        sim.set_wall(1, point_m=(0.0, 0.0, nip_z(0.0)), velocity_m_per_s=(s_speed - v, 0.0, 0.0))
        min_gap = _snapshot(sim, area, gap_m)
        drive(sim)

        def released(s: Any) -> bool:
            return x_of(s) >= pl.x_in_m or (x_of(s) > 0 and s.wall_state()[1]["load_N"] <= 0.0)

        sim.run(steps=steps_in + 1, until=released, callbacks=[drive], every=every, progress=progress)
        sim.set_wall(
            1,
            point_m=(0.0, 0.0, pl.z_touch_m + 10 * float(micro.radii_m.max())),
            velocity_m_per_s=(0.0, 0.0, 0.0),
        )
    else:
        plunge = v * pl.x_in_m / math.sqrt(R * R - pl.x_in_m**2)
        roller = RollerCylinder(
            R,
            (0.5 * lx, pl.z_touch_m + R),
            ROLL_MATERIAL,
            velocity_m_per_s=(0.0, -plunge),
            surface_speed_m_per_s=0.0,
            temperature_K=p.roll_temperature_K,
            name="calender_roll",
        )
        sim.add_extension(roller)

        def rec(phase: str) -> Any:
            def cb(s: Any) -> None:
                rep = roller.report()
                rate = (
                    abs(rep["velocity_m_per_s"][1]) / pl.h_before_bulk_m
                    if phase != "roll"
                    else pl.strain_rate_max_per_s
                )
                sample(phase, float(rep["axis_xz_m"][0]), float(rep["gap_m"]), float(rep["load_N"]), rate)

            return cb

        n_plunge = max(1, int(math.ceil((pl.z_touch_m - gap_m) / plunge / dt)))
        roller.velocity[1] = -(pl.z_touch_m - gap_m) / (n_plunge * dt)
        sim.run(steps=n_plunge, callbacks=[rec("plunge")], every=every, progress=progress)
        roller.axis[1] = gap_m + R
        n_roll = max(1, int(math.ceil(lx / v / dt)))
        if n_plunge + n_roll > p.max_steps_per_pass:
            raise ConfigError(
                "calender.max_steps_per_pass",
                p.max_steps_per_pass,
                f">= {n_plunge + n_roll} steps (dt = {dt:.3g} s): raise it or the line speed",
            )
        roller.velocity[:] = (-lx / (n_roll * dt), 0.0)
        roller.omega = -s_speed / R
        sim.run(steps=n_roll, callbacks=[rec("roll")], every=every, progress=progress)
        min_gap = _snapshot(sim, area, gap_m)
        # The bed is at the minimum gap only under the roll: thickness and porosity there are measured
        # on the particles within half a contact arc (at least two mean radii) of the axis.
        xs = sim.state()["positions_m"]
        dxa = xs[:, 0] - roller.axis[0]
        dxa -= lx * np.round(dxa / lx)
        w = max(0.5 * pl.arc_m, 2.0 * float(micro.radii_m.mean()))
        near = np.abs(dxa) < w
        min_gap["layer"] = layer_thickness(xs[near, 2], micro.radii_m[near], 2.0 * w * ly, gap_m)
        min_gap["tool_contacts"] = roller.report()["contacts"]
        roller.velocity[:] = (0.0, plunge)
        roller.omega = 0.0

        def lifted(s: Any) -> bool:
            return roller.report()["contacts"] == 0

        sim.run(steps=n_plunge * 4 + 1, until=lifted, callbacks=[rec("lift")], every=every, progress=progress)
        roller.velocity[:] = (0.0, 0.0)
        roller.axis[1] = pl.z_touch_m + R + 10 * float(micro.radii_m.max())
    # Relaxation: the roll has passed. The background damping is critical (relax_damping_ratio = 1)
    # for the bed's fundamental thickness mode, omega = (pi / 2) sqrt(K / rho_bulk) / h, with the bed
    # modulus K = peak pressure / strain at the minimum gap; 2 / t_nip when the tool never loaded.
    # The mode lives in the bed interior: strain and thickness on the bulk (roughness-insensitive)
    # measure; the gauge strain would count the flattened surface asperities as bed strain.
    loaded = [r for r in curve if r["phase"] in ("nip", "roll")]
    peak_p = max((r["pressure_Pa"] for r in loaded), default=0.0)
    lay_b, lay_m = layer_thickness(micro.positions_m[:, 2], micro.radii_m, area), min_gap["layer"]
    h_min_b = float(lay_m["thickness_bulk_m"])
    strain = (pl.h_before_bulk_m - h_min_b) / pl.h_before_bulk_m
    if peak_p > 0 and strain > 0:
        rho_bulk = float(masses.sum()) / (area * h_min_b)
        omega = 0.5 * math.pi * math.sqrt(peak_p / strain / rho_bulk) / h_min_b
        c = 2.0 * p.relax_damping_ratio * omega
    else:
        c = 2.0 * p.relax_damping_ratio / max(t_nip, 10 * dt)
    sim.set_background_damping(c)
    e_ref = float(min_gap.get("elastic_energy_J", 0.0))

    def calm(s: Any) -> bool:
        return s.diagnostics()["kinetic_energy_J"] < p.relax_ke_ratio * e_ref

    relax = sim.run(steps=p.max_relax_steps if peak_p > 0 else 0, until=calm, every=200, progress=progress)
    st = sim.state()
    contacts = sim.contacts()
    pos = st["positions_m"]
    lay_r = layer_thickness(pos[:, 2], micro.radii_m, area)
    h_rel = lay_r["thickness_m"]
    vm, pr = particle_stress_Pa(
        pos,
        micro.radii_m,
        micro.box_m,
        micro.periodic,
        contacts.i,
        contacts.j,
        contacts.overlap_m,
        contacts.normal_force_N,
    )
    mass = float(micro.masses_kg.sum())
    x = np.array([r["x_m"] for r in loaded])
    pres = np.array([r["pressure_Pa"] for r in loaded])
    if p.geometry == "nip":
        line_load = float(np.trapezoid(pres, x)) if len(x) > 1 else 0.0
        line_check = float(np.trapezoid([r["load_check_N"] / area for r in loaded], x)) if len(x) > 1 else 0.0
        line_floor = float(np.trapezoid([r["floor_load_N"] / area for r in loaded], x)) if len(x) > 1 else 0.0
    else:
        roll_rows = [r for r in curve if r["phase"] == "roll"]
        line_load = float(np.mean([r["load_N"] for r in roll_rows])) / ly if roll_rows else 0.0
        line_check = float(np.mean([r["load_check_N"] for r in roll_rows])) / ly if roll_rows else 0.0
        line_floor = float(np.mean([r["floor_load_N"] for r in roll_rows])) / ly if roll_rows else 0.0
    inert = [r["inertial_number"] for r in loaded if r["pressure_Pa"] >= 0.1 * peak_p and peak_p > 0]
    i_max = float(max(inert)) if inert else 0.0
    row: dict[str, Any] = {
        "geometry": p.geometry,
        "gap_um": gap_m * 1e6,
        **_thickness_columns(lay_b, lay_m, lay_r),
        # Gauge top = highest particle surface after relaxation: the whole mass lies below it.
        "density_g_per_cm3": mass / (area * h_rel) * 1e-3,
        "line_load_N_per_mm": line_load * 1e-3,
        "line_load_check_N_per_mm": line_check * 1e-3,
        "peak_pressure_Pa": peak_p,
        "line_load_floor_N_per_mm": line_floor * 1e-3,
        "max_tool_contacts_at_min_gap": int(min_gap.get("tool_contacts", 0)),
        "mean_coordination_number": 2.0 * len(contacts.i) / micro.n,
        "mean_coordination_number_at_min_gap": min_gap["coordination"],
        **_stress_stats("stress_at_min_gap_", min_gap["vm"], min_gap["pr"]),
        **_stress_stats("stress_relaxed_", vm, pr),
        "stress_measure": "particle-particle normal forces; von Mises and largest principal, compression +",
        "max_overlap_ratio_at_min_gap": min_gap["max_overlap_ratio"],
        "max_elastic_overlap_ratio_at_min_gap": min_gap["max_elastic_overlap_ratio"],
        "max_overlap_ratio_in_pass": peak["max_overlap_ratio"],
        "max_elastic_overlap_ratio_in_pass": peak["max_elastic_overlap_ratio"],
        "inertial_number_max": i_max,
        "quasi_static": bool(i_max <= p.max_inertial_number),
        "contact_arc_m": pl.arc_m,
        "x_in_m": pl.x_in_m,
        "roll_sag_over_strip_m": lx**2 / (8.0 * R),
        "line_speed_m_per_s": v,
        "roll_surface_speed_m_per_s": s_speed,
        "strain_rate_max_per_s": pl.strain_rate_max_per_s,
        "roll_temperature_K": p.roll_temperature_K,
        "dt_s": dt,
        "steps": int(sim.step) - step0,
        "relax_steps": int(relax.steps),
        "relaxed": relax.stopped_by == "until",
        "relax_damping_per_s": c,
    }
    if roller is not None:
        row["roll_work_J"] = roller.work_J
    out = micro.with_(
        positions_m=pos,
        velocities_m_per_s=np.zeros_like(pos),
        contacts=contacts,
        time_s=micro.time_s + float(sim.time_s) - time0,
        metadata={"top_z_m": h_rel},
    )
    if roller is not None:
        sim.remove_extension(roller.name)
    out = with_engine_extras(out, sim)
    release(live, sim)
    return out, row, curve


def _thickness_columns(before: dict[str, float], at_min: dict[str, float], after: dict[str, float]) -> dict:
    """Thickness (um), porosity, spring-back and elastic recovery (%) columns of a pass row, gauge
    (headline) and ``_bulk``, from the `layer_thickness` of the bed before, at the minimum gap and
    after relaxation."""
    cols: dict[str, float] = {}
    for suffix, tk, pk in (("", "thickness_m", "porosity"), ("_bulk", "thickness_bulk_m", "porosity_bulk")):
        h0, h1, h2 = before[tk], at_min[tk], after[tk]
        cols |= {
            f"thickness_before{suffix}_um": h0 * 1e6,
            f"thickness_at_min_gap{suffix}_um": h1 * 1e6,
            f"thickness{suffix}_um": h2 * 1e6,
            f"porosity_before{suffix}": before[pk],
            f"porosity_at_min_gap{suffix}": at_min[pk],
            f"porosity{suffix}": after[pk],
            f"spring_back{suffix}_pct": 100.0 * (h2 - h1) / h1,
            f"elastic_recovery{suffix}_pct": 100.0 * (h2 - h1) / (h0 - h1)
            if h0 - h1 > 1e-12
            else float("nan"),
        }
    return cols


def _snapshot(sim: Any, area: float, gap_m: float) -> dict[str, Any]:
    """Thickness and porosity (`layer_thickness`, the tool at ``gap_m``), stresses, coordination and
    energy of the bed at the minimum gap."""
    st = sim.state()
    c = sim.contact_arrays()
    pos, r = st["positions_m"], st["radii_m"]
    vm, pr = particle_stress_Pa(
        pos, r, sim.box_m, sim.periodic, c["i"], c["j"], c["overlap_m"], c["normal_force_N"]
    )
    d = sim.diagnostics()
    tool = int(np.count_nonzero(sim.wall_overlaps_m(1) > 0)) if len(sim.walls) > 1 else 0
    return {
        "layer": layer_thickness(pos[:, 2], r, area, gap_m),
        "vm": vm,
        "pr": pr,
        "coordination": 2.0 * len(c["i"]) / sim.n,
        "elastic_energy_J": d["elastic_energy_J"],
        "max_overlap_ratio": d["max_overlap_ratio"],
        "max_elastic_overlap_ratio": d["max_elastic_overlap_ratio"],
        "tool_contacts": tool,
    }


# ---------------------------------------------------------------------------------------------- searches
def _search_gap(
    evaluate: Any,
    target: float,
    increasing: bool,
    g_lo: float,
    g_hi: float,
    g0: float,
    tol: float,
    relative: bool,
    n_max: int,
) -> tuple[Any, list[dict[str, Any]]]:
    """Bracketed secant (Illinois) in the gap for a monotone f(gap) = target; returns the evaluation
    closest to the target and the list of (gap, value)."""
    tried: list[tuple[float, float, Any]] = []
    lo: tuple[float, float] | None = None  # f below the target
    hi: tuple[float, float] | None = None  # f above the target
    g = g0
    side = 0
    from electrodem.engine import SimulationError

    failed: list[dict[str, Any]] = []
    for _ in range(n_max):
        try:
            val, res = evaluate(g)
        except SimulationError as e:
            # A gap so small that the engine's overlap guard trips is infeasible for these contacts:
            # it becomes the lower bound and the next try goes halfway back up.
            failed.append({"gap_um": g * 1e6, "error": str(e)})
            g_lo = g
            g = 0.5 * (g + (min(t[0] for t in tried if t[0] > g) if any(t[0] > g for t in tried) else g_hi))
            continue
        tried.append((g, val, res))
        err = val - target
        if abs(err) <= tol * (abs(target) if relative else 1.0):
            break
        below = err < 0
        if below:
            lo = (g, val)
        else:
            hi = (g, val)
        if lo is not None and hi is not None:
            (ga, fa), (gb, fb) = lo, hi
            # Illinois: halve the weight of the end that stayed, so regula falsi does not stall.
            wa, wb = (0.5 if side == 1 else 1.0), (0.5 if side == -1 else 1.0)
            side = -1 if below else 1
            g = ga + (target - fa) * (gb - ga) / ((fb - target) * wb + (target - fa) * wa) * wa
            g = ga + (gb - ga) * min(max((g - ga) / (gb - ga), 0.05), 0.95)
        else:
            # Not bracketed yet: step the gap toward the target (f increases with the gap when
            # ``increasing``), doubling the distance to the bound each time.
            up = below == increasing
            g = 0.5 * (g + g_hi) if up else 0.5 * (g + g_lo)
    if not tried:
        raise ConfigError(
            "calender.search_passes",
            n_max,
            f"enough passes for a feasible gap; every try tripped the engine guard: {failed}",
        )
    best = min(tried, key=lambda t: abs(t[1] - target))
    return best[2], [{"gap_um": t[0] * 1e6, "value": t[1]} for t in tried] + failed


# ---------------------------------------------------------------------------------------------- public
def calender(
    micro: Microstructure,
    params: CalenderParams,
    options: EngineOptions,
    *,
    progress: bool = True,
    live: HoldsEngine | None = None,
) -> tuple[Microstructure, dict[str, Any]]:
    """Calender ``micro`` pass by pass; returns (calendered copy, report).

    ``live``: the route's live engine state (`electrodem.process.live`): every pass runs on it, so the
    plastic flattening, contact springs and bonds of the previous passes and steps stay; a search
    (``line_load``, ``target_porosity``) tries each gap from an in-memory copy of the incoming state
    (`Simulation.snapshot_state`) and goes on from the state after the pass it keeps.

    The report holds ``passes`` (one CSV-ready dict per pass, see `_run_pass` keys: gap_um,
    thickness_*_um, porosity*, density_g_per_cm3, spring_back_pct, elastic_recovery_pct,
    line_load_N_per_mm, peak_pressure_Pa, coordination, stress statistics (Pa), inertial_number_max,
    quasi_static ...), ``curve`` (one dict per sample: pass, phase, time_s, x_m, tool_z_m, load_N,
    load_check_N, pressure_Pa, line_load_N_per_mm, strain_rate_per_s, inertial_number), ``searches``
    and ``shortcuts``. The snapshot gets ``metadata['calender']``, ``metadata['top_z_m']``,
    ``metadata['shortcuts']['calender']`` and the contacts after relaxation.
    """
    from electrodem.engine import Wall, init

    if not isinstance(params, CalenderParams):
        raise ConfigError("calender", type(params).__name__, "a CalenderParams")
    if micro.n == 0:
        raise ConfigError("calender.microstructure", 0, "at least one particle")
    if tuple(micro.periodic) != (True, True, False):
        raise ConfigError(
            "calender.microstructure.periodic",
            micro.periodic,
            "(True, True, False): a strip periodic in x and y on the collector at z = 0",
        )
    if np.any(micro.positions_m[:, 2] - micro.radii_m < -0.05 * micro.radii_m):
        raise ConfigError(
            "calender.microstructure.positions_m",
            "z - r < 0",
            "every particle above the current collector (z >= r)",
        )
    _materials(micro, params)  # species keys checked before any compute
    area = float(micro.box_m[0] * micro.box_m[1])
    peak = float(np.max(micro.positions_m[:, 2] + micro.radii_m))
    if params.control == "gap":
        for g in params.gaps_m():
            if params.geometry == "roll":
                arc = math.sqrt(2.0 * params.roll_radius_m * max(peak - g, 0.0))
                if arc > params.max_arc_fraction * micro.box_m[0]:
                    raise ConfigError(
                        "calender.roll_radius_m/gap_um",
                        (params.roll_radius_m, g * 1e6),
                        f"geometry 'roll' needs a contact arc sqrt(2 R (h_peak - gap)) = {arc * 1e6:.4g} "
                        f"um below {params.max_arc_fraction:.3g} x the strip length "
                        f"{micro.box_m[0] * 1e6:.4g} um: use a longer strip (box x), a smaller "
                        "roll_radius_m, a larger gap, or geometry 'nip'",
                    )
    init(options)
    solid = float(micro.volumes_m3.sum())
    rows: list[dict[str, Any]] = []
    curve: list[dict[str, Any]] = []
    searches: list[dict[str, Any]] = []
    cur = micro
    # The porosity targets interpolate from the incoming porosity on the canonical (gauge) definition,
    # the one the passes report and the search compares with.
    eps0 = layer_thickness(micro.positions_m[:, 2], micro.radii_m, area, bulk=False)["porosity"]
    for k in range(params.passes):
        # Search bounds and first guesses only: the roll starts to load the bed near its bulk top
        # (the gauge top sits an asperity higher), so the roughness-insensitive measure guesses better.
        h_now = bulk_top_m(cur.positions_m[:, 2], cur.radii_m, area)
        r_max = float(cur.radii_m.max())

        searching = params.control in ("line_load", "target_porosity")
        incoming = None
        if searching and live is not None:
            if live.sim is None:  # the route's engine state starts here (each pass reconfigures it)
                floor = Wall((0.0, 0.0, 0.0), (0.0, 0.0, 1.0), CC_MATERIAL, name=CC_MATERIAL)
                _build_sim(cur, params, options, [floor], 1.0, live)
            incoming = live.sim.snapshot_state()
        after: dict[int, Any] = {}

        def run(
            g: float, c: Microstructure = cur, incoming: Any = incoming, searching: bool = searching,
            after: dict[int, Any] = after,
        ) -> tuple[Microstructure, dict[str, Any], list[Any]]:
            if incoming is not None:
                live.sim.restore_state(incoming)  # type: ignore[union-attr]
            res = _run_pass(c, params, options, g, progress, live)
            if searching and live is not None:
                after[id(res)] = live.sim.snapshot_state()
            return res

        if params.control == "gap":
            out, row, crv = run(params.gaps_m()[k])
        elif params.control == "gap_fraction":
            out, row, crv = run(float(params.gap_fraction) * cur.top_m())  # type: ignore[arg-type]
        else:
            g_lo, g_hi = 0.3 * h_now, h_now + r_max
            if params.control == "line_load":
                target = float(params.target_line_load_N_per_mm)  # type: ignore[arg-type]

                def ev(g: float) -> tuple[float, Any]:
                    res = run(g)
                    return res[1]["line_load_N_per_mm"], res

                res, tried = _search_gap(
                    ev,
                    target,
                    False,
                    g_lo,
                    g_hi,
                    0.9 * h_now,
                    params.search_tolerance,
                    True,
                    params.search_passes,
                )
            else:
                eps_t = eps0 + (float(params.target_porosity) - eps0) * (k + 1) / params.passes  # type: ignore[arg-type]

                def ev(g: float) -> tuple[float, Any]:
                    res = run(g)
                    return res[1]["porosity"], res

                # First guess: the (gauge) thickness of the target porosity, minus a 3 % spring-back; the
                # relaxed gauge top has the whole solid below it, so solid / (area (1 - eps)) is exact.
                g0 = min(solid / (area * (1.0 - eps_t)) / 1.03, 0.99 * h_now)
                res, tried = _search_gap(
                    ev,
                    eps_t,
                    True,
                    g_lo,
                    g_hi,
                    g0,
                    params.search_tolerance * 0.1,
                    False,
                    params.search_passes,
                )
                target = eps_t
            if id(res) in after:
                # Go on from the state after the kept pass, not after the last one tried.
                live.sim.restore_state(after[id(res)])  # type: ignore[union-attr]
            out, row, crv = res
            searches.append(
                {"pass": k + 1, "control": params.control, "target": target, "evaluations": tried}
            )
        row = {"pass": k + 1, **row}
        rows.append(row)
        curve += [{"pass": k + 1, **r} for r in crv]
        cur = out
    _, fines = _masses(micro, params)
    sh = params.shortcuts
    shortcuts = {
        **shortcuts_log(sh, params.contact, fines),
        "geometry": params.geometry,
        "modulus_factor_by_species": {
            s.name: sh.modulus_Pa(s.youngs_modulus_Pa) / s.youngs_modulus_Pa for s in micro.species
        },
        "simulated_line_speed_m_per_s": [r["line_speed_m_per_s"] for r in rows],
        "line_speed_rule": "given"
        if params.line_speed_m_per_s is not None
        else f"inertial number {params.target_inertial_number} at {params.design_pressure_Pa} Pa",
        "relax_background_damping_per_s": [r["relax_damping_per_s"] for r in rows],
        "gravity_m_per_s2": _gravity(micro, params),
        "layer_temperature_equals_roll_temperature": True,
    }
    report = {
        "passes": rows,
        "curve": curve,
        "searches": searches,
        "shortcuts": shortcuts,
        "params": asdict(params),
        "geometry": params.geometry,
    }
    final = cur.with_(
        metadata={
            "stage": "calendered",
            "top_z_m": cur.metadata["top_z_m"],
            "shortcuts": {**micro.metadata.get("shortcuts", {}), "calender": shortcuts},
            "calender": {
                "geometry": params.geometry,
                "control": params.control,
                "passes": rows,
                "searches": searches,
                "params": asdict(params),
            },
        }
    )
    return final, report
