"""Uniaxial plate compaction of an electrode layer on its current collector (floor wall at z = 0,
x and y periodic, a flat top plate): load → unload → relax, with the pressure–porosity curve.

Stages
------
* **load**: displacement-controlled (the plate descends at ``plate_speed_m_per_s`` to the gap of
  ``target_thickness_um``, or to the gap at which the solid below it gives ``target_porosity``) or
  pressure-controlled (the engine's servo wall drives the plate load to ``target_pressure_MPa`` and
  the stage ends when it stayed within ``pressure_tolerance`` for ``hold_checks`` records; the
  servo's gain is set for the softer of the plate's Hertz contacts and the bed's tangent stiffness
  measured on the approach, `bed_tangent_stiffness_N_per_m`, reported as
  ``shortcuts.servo_stiffness_N_per_m``);
* **unload**: the plate withdraws at the plate speed until it carries no load, under the relaxation
  damping below (without gravity or adhesion, particles whose contacts unload to zero force would
  otherwise fly apart at the unloading speed and open gaps the real layer does not have; against the
  contact forces of the loaded bed that damping is a per-mille perturbation);
* **relax**: the plate is parked above the layer and the bed comes to rest (kinetic energy below
  ``relax_ke_ratio`` x the elastic energy stored at the largest load) under a background damping
  (a named shortcut: without gravity, a particle launched by the released elastic energy would
  otherwise drift away forever).

Quantities (recorded every ``record_every_steps``):
* pressure = plate load / box cross-section (Pa; the engine sums the particle–plate forces, and
  ``plate_contact_force_sum_N`` re-sums the per-particle forces the engine records, the contact law's
  own: damping, friction, plasticity included);
* thickness = min(plate position, highest particle top z + r): the plate gap while it presses, the
  micrometer-gauge thickness after release (the gauge thickness every step reports,
  `electrodem.analysis.composition.layer_thickness`, and `Microstructure.top_m`'s fallback);
* porosity = 1 - (solid volume) / (area x thickness), density = (mass, real densities) / (area x
  thickness): mass-based, as an experiment gets them from mass loading and gauge thickness (the caps
  of particles flattened against the plate belong to the layer);
* particle stress: sigma_i = (1 / V_i) sum_c l_c f_c (x) n_c over the particle's contacts (full
  contact force f_c on the particle, normal and tangential; n_c the unit normal toward the particle;
  lever l = distance from the centre to the contact point), compressive positive (Love–Weber: the
  volume-weighted sum over particles is the contact virial sum f_ij (x) d_ij); the largest principal
  value of its symmetric part is the cracking-risk proxy (max and 99th percentile reported);
* inertial number I = (plate speed / thickness) d_v / sqrt(p / rho) with d_v the volume-weighted
  mean diameter (sum d^4 / sum d^3) and rho the bed's simulated (mass-scaled) density; loading is
  quasi-static when I < ``inertial_number_max`` wherever p >= ``quasi_static_pressure_fraction``
  x the largest pressure (at p -> 0 every finite speed has I -> inf; the curve there carries no load);
* overlap: the largest overlap and elastic overlap / smaller radius (the engine guards both), and the
  solid volume in contact lenses / solid volume (``overlap_volume_fraction``): perfectly plastic
  contacts flatten, spheres cannot, so the flattened volume is counted twice by a union-of-spheres
  geometry. The porosity above is mass-based (sphere volumes, as the gauge-and-mass porosity of an
  experiment) and does not carry it; the voxel analysis of the result does, by that fraction of the
  solid. Checked against ``max_overlap_volume_fraction``.

After unloading: spring-back (`electrodem.analysis.compaction.spring_back_pct`, recovery relative
to the loaded thickness), elastic recovery (recovered / compressed thickness, 100 % for a purely
elastic bed that does not rearrange), final porosity, thickness, density, and Meyer (pressure in MPa)
and Heckel fits of the load-bearing part of the loading curve (p >= ``fit_pressure_fraction`` x the
largest pressure). The initial, loaded and final states also carry the secondary,
roughness-insensitive ``thickness_bulk_m``/``thickness_bulk_um``/``porosity_bulk`` (half-bulk
solid-fraction rule, the settle step's ``packing_fraction`` = 1 - its initial ``porosity_bulk``).

Plasticity: ``contact.normal = "thornton_ning"`` gives every species the yield (limiting contact)
pressure of the materials library, or of ``contact.yield_pressure_MPa`` where given (MPa, by species;
`electrodem.process.engine_map`); the current collector (the foil) and the plate (tool steel) stay
elastic, so a particle–plate contact yields at the particle's pressure. Yield pressures are used as
given (not scaled with ``shortcuts.modulus_scale``).

Shortcuts (DOMAIN.md §6), all in ``metadata['shortcuts']['compact']``: the plate speed against
``industrial_plate_speed_m_per_s`` (speed-up factor), mass-scaled fines, softened moduli if
``shortcuts.modulus_scale``/``modulus_cap_Pa`` are set (default: the real moduli, since pressures scale with
them), the relaxation damping. Gravity is off: the column weight is ~10^-5 of calendering pressures.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from electrodem.analysis.composition import gauge_top_m, layer_thickness
from electrodem.analysis.contacts import lens_volume_m3
from electrodem.config import ConfigError
from electrodem.engine.arch import EngineOptions
from electrodem.io.snapshot import Microstructure
from electrodem.process.engine_map import ContactParams, ShortcutParams, engine_materials, shortcuts_log
from electrodem.process.engine_map import masses as engine_masses
from electrodem.process.live import EngineSetup, HoldsEngine, engine_for, release, with_engine_extras

MODES = ("displacement", "pressure")
CONTACT: dict[str, Any] = {"normal": "hertz", "friction": 0.3, "rolling_friction": 0.0, "cohesion": "none"}
"""The compaction's built-in overrides of the shared ``contact`` group: elastic Hertz spheres (the plate
test of the wave-1 validation), plate-test friction, no rolling resistance, no adhesion (``jkr`` keeps
a settled bed's adhesive contacts through the press)."""
SHORTCUTS: dict[str, Any] = {"modulus_cap_Pa": None, "rayleigh_fraction": 0.2}
"""The compaction's built-in overrides of the shared ``shortcuts`` group: real moduli (pressures scale
with them)."""
PLATE_MATERIAL = "plate"
PLATE = 1
"""Index of the plate among the simulation's walls (0 is the current collector)."""

CURVE_KEYS = (
    "stage", "step", "time_s", "plate_z_m", "thickness_m", "pressure_Pa", "pressure_MPa",
    "plate_contact_force_sum_N", "plate_force_N", "porosity", "density_g_cm3", "plate_speed_m_per_s",
    "inertial_number", "kinetic_energy_J", "mean_coordination_number", "max_particle_stress_Pa",
    "p99_particle_stress_Pa", "max_overlap_ratio", "max_elastic_overlap_ratio", "overlap_volume_fraction",
)  # fmt: skip
"""Columns of the compaction curve (CSV and ``metadata['compact']['curve']``)."""


@dataclass
class CompactParams:
    """Parameters of the plate compaction (SI unless the key says otherwise).

    contact : the shared ``contact`` group with the step's overrides (`CONTACT`): ``normal`` ``hertz``
        (elastic) or ``thornton_ning`` (elastic–perfectly plastic: yield pressures from the library or
        ``yield_pressure_MPa``), ``cohesion`` ``none`` or ``jkr`` (a bed settled with ``jkr`` keeps its
        adhesive contacts through the press only with ``jkr`` here), surface values; the plate is tool
        steel (``tool_friction``), the collector the foil.
    shortcuts : the shared ``shortcuts`` group with the step's overrides (`SHORTCUTS`: real moduli).
    mode : ``displacement`` (plate speed to a target gap) or ``pressure`` (servo to a target pressure).
    target_porosity : displacement mode: porosity at the end of loading (the gap follows from the
        solid volume); exactly one of it and ``target_thickness_um`` is set in that mode.
    target_thickness_um : displacement mode: plate gap above the collector at the end of loading (um).
    target_pressure_MPa : pressure mode: plate pressure to reach and hold (MPa).
    plate_speed_m_per_s : plate speed while loading and unloading (servo speed limit in pressure mode).
    industrial_plate_speed_m_per_s : reference speed of a real press, only to report the speed-up.
    pressure_tolerance : pressure mode: relative band around the target that counts as reached ...
    hold_checks : ... for this many consecutive records.
    record_every_steps : interval of the curve records (steps).
    max_steps : most steps of the loading stage (and of the unloading stage).
    inertial_number_max : quasi-static criterion on the inertial number.
    quasi_static_pressure_fraction : the criterion applies where p >= this x the largest pressure.
    relax_damping_per_s : shortcut: background damping while relaxing (1/s); null = min(1000 v /
        r_mean, 0.1 / dt) (a particle moving at the plate speed stops within 0.1 % of a radius).
    relax_ke_ratio : relaxed when the kinetic energy < this x the elastic energy at the largest load.
    relax_max_steps : most steps of the relaxation.
    max_overlap_ratio : the engine's guard on the ELASTIC overlap (largest elastic overlap / smaller
        radius before the run stops as unstable; the whole overlap for Hertz, the overlap above the
        plastic one for Thornton–Ning).
    max_total_overlap_ratio : the engine's guard on the whole overlap (elastic + plastic flattening)
        / smaller radius: perfectly plastic (Thornton–Ning) fines flatten legitimately far past 0.1.
    fit_pressure_fraction : the Meyer and Heckel laws are fitted to the loading records whose pressure
        is at least this fraction of the largest (the load-bearing compaction).
    max_overlap_volume_fraction : CHECK on what the flattening costs the geometry: the solid volume
        counted twice in contact lenses, as a fraction of the solid volume (the error of a porosity
        computed from the union of the spheres, e.g. by the voxel analysis; the reported porosity is
        mass-based and does not carry it). Reported at the largest load and after release, with a flag.
    """

    mode: str = "displacement"
    target_porosity: float | None = 0.30
    target_thickness_um: float | None = None
    target_pressure_MPa: float | None = None
    plate_speed_m_per_s: float = 0.05
    industrial_plate_speed_m_per_s: float = 1.0e-3
    pressure_tolerance: float = 0.03
    hold_checks: int = 5
    contact: ContactParams = field(default_factory=lambda: ContactParams(**CONTACT, where="compact.contact"))
    shortcuts: ShortcutParams = field(
        default_factory=lambda: ShortcutParams(**SHORTCUTS, where="compact.shortcuts"))
    record_every_steps: int = 200
    max_steps: int = 2_000_000
    inertial_number_max: float = 1.0e-3
    quasi_static_pressure_fraction: float = 0.1
    relax_damping_per_s: float | None = None
    relax_ke_ratio: float = 1.0e-4
    relax_max_steps: int = 200_000
    max_overlap_ratio: float = 0.1
    max_total_overlap_ratio: float = 1.0
    max_overlap_volume_fraction: float = 0.02
    fit_pressure_fraction: float = 0.01

    def __post_init__(self) -> None:
        def req(cond: bool, key: str, allowed: str) -> None:
            if not cond:
                raise ConfigError(f"compact.{key}", getattr(self, key), allowed)

        def num(key: str) -> float:
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ConfigError(f"compact.{key}", v, "a finite number")
            return float(v)

        def opt(key: str) -> float | None:
            return None if getattr(self, key) is None else num(key)

        req(self.mode in MODES, "mode", f"one of {MODES}")
        por, thick, pres = opt("target_porosity"), opt("target_thickness_um"), opt("target_pressure_MPa")
        if por is not None:
            req(0 < por < 1, "target_porosity", "null or in (0, 1)")
        if thick is not None:
            req(thick > 0, "target_thickness_um", "null or > 0 (um)")
        if pres is not None:
            req(pres > 0, "target_pressure_MPa", "null or > 0 (MPa)")
        if self.mode == "displacement":
            if (por is None) == (thick is None):
                raise ConfigError(
                    "compact.target_porosity",
                    {"target_porosity": por, "target_thickness_um": thick},
                    "exactly one of compact.target_porosity and compact.target_thickness_um set "
                    "(the other null) in mode=displacement",
                )
        else:
            req(pres is not None, "target_pressure_MPa", "a pressure > 0 (MPa) in mode=pressure")
        req(num("plate_speed_m_per_s") > 0, "plate_speed_m_per_s", "> 0 (m/s)")
        req(num("industrial_plate_speed_m_per_s") > 0, "industrial_plate_speed_m_per_s", "> 0 (m/s)")
        req(0 < num("pressure_tolerance") < 0.5, "pressure_tolerance", "in (0, 0.5)")
        req(isinstance(self.contact, ContactParams), "contact", "a ContactParams")
        req(isinstance(self.shortcuts, ShortcutParams), "shortcuts", "a ShortcutParams")
        req(0 < num("max_overlap_ratio") <= 0.5, "max_overlap_ratio", "in (0, 0.5] (overlap / radius)")
        req(num("max_overlap_ratio") <= num("max_total_overlap_ratio") <= 2.0, "max_total_overlap_ratio",
            f"in [max_overlap_ratio ({self.max_overlap_ratio}), 2] (overlap / smaller radius)")  # fmt: skip
        req(0 < num("max_overlap_volume_fraction") < 1, "max_overlap_volume_fraction", "in (0, 1)")
        req(0 <= num("fit_pressure_fraction") < 1, "fit_pressure_fraction", "in [0, 1)")
        for key in ("hold_checks", "record_every_steps", "max_steps", "relax_max_steps"):
            v = getattr(self, key)
            req(isinstance(v, int) and not isinstance(v, bool) and v >= 1, key, "an integer >= 1")
        req(0 < num("inertial_number_max") < 1, "inertial_number_max", "in (0, 1)")
        req(0 <= num("quasi_static_pressure_fraction") < 1, "quasi_static_pressure_fraction", "in [0, 1)")
        if opt("relax_damping_per_s") is not None:
            req(num("relax_damping_per_s") >= 0, "relax_damping_per_s", "null or >= 0 (1/s)")
        req(0 < num("relax_ke_ratio") < 1, "relax_ke_ratio", "in (0, 1)")


# ---------------------------------------------------------------------- forces and stresses
def wall_contact_forces_N(sim: Any, index: int) -> np.ndarray:
    """Normal force (N) of every particle on wall ``index`` (0 where apart), external order: the
    component along the wall normal of the force the engine's force loop recorded
    (`Simulation.wall_contact_forces`; needs ``record_wall_forces=True``). Sums to the wall's load."""
    return sim.wall_contact_forces(index) @ np.asarray(sim.walls[index].normal)


def particle_stress_Pa(sim: Any, contacts: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """Per-particle stress tensors (N, 3, 3) in Pa, compressive positive, external order:
    sigma_i = (1 / V_i) sum_c l_c f_c (x) n_c over particle–particle (``sim.contact_arrays``) and
    particle–wall contacts (``sim.wall_contact_forces``): f_c the full contact force on i (normal and
    tangential), n_c the unit normal pointing toward i, lever l = r - d/2 (pairs) or r - d (walls).
    Not symmetric unless the particle's torques balance (`max_principal_Pa` takes the symmetric part).
    """
    st = sim.state()
    r = st["radii_m"]
    n = len(r)
    c = contacts if contacts is not None else sim.contact_arrays()
    i, j = c["i"], c["j"]
    nrm = c["normal"]
    f = c["normal_force_N"][:, None] * nrm + c["tangential_force_vector_N"]  # on i from j
    outer = f[:, :, None] * nrm[:, None, :]  # f_i (x) n_i = f_j (x) n_j (both signs flip for j)
    ov = c["overlap_m"]
    s = np.zeros((n, 3, 3))
    np.add.at(s, i, (r[i] - 0.5 * ov)[:, None, None] * outer)
    np.add.at(s, j, (r[j] - 0.5 * ov)[:, None, None] * outer)
    for k, w in enumerate(sim.walls):
        fw = sim.wall_contact_forces(k)
        touch = np.any(fw != 0.0, axis=1)
        if np.any(touch):
            wn = np.asarray(w.normal)
            lever = r[touch] - np.clip(sim.wall_overlaps_m(k)[touch], 0.0, None)
            s[touch] += lever[:, None, None] * fw[touch][:, :, None] * wn[None, None, :]
    return s / (4.0 / 3.0 * np.pi * r**3)[:, None, None]


def max_principal_Pa(stress: np.ndarray) -> np.ndarray:
    """Largest principal value of the symmetric part of each (N, 3, 3) tensor (Pa)."""
    if len(stress) == 0:
        return np.zeros(0)
    return np.linalg.eigvalsh(0.5 * (stress + np.swapaxes(stress, 1, 2)))[:, -1]


# ---------------------------------------------------------------------- the step
@dataclass
class _Bed:
    """Fixed quantities of the bed used by the records."""

    area_m2: float
    real_mass_kg: np.ndarray
    rho_sim_kg_per_m3: float
    d_vol_m: float
    solid_m3: float
    step0: int = 0
    """Engine step at the start of the press (a live route's engine has run before)."""
    time0_s: float = 0.0
    """Engine time (s) at the start of the press."""


def bed_tangent_stiffness_N_per_m(plate_z_m: Sequence[float], force_N: Sequence[float]) -> float | None:
    """Tangent stiffness (N/m) of a bed under a plate that has pressed it from ``plate_z_m[0]`` down,
    from the recorded plate heights (m) and forces (N): a Hertz-like bed loads as F ~ delta^(3/2)
    from first contact, so dF/d(delta) = 1.5 F / delta at the last record (exact for a Hertz stack,
    an underestimate by at most ~2x for a rearranging bed, F ~ delta^2-3). None before any load."""
    z, f = np.asarray(plate_z_m, float), np.asarray(force_N, float)
    loaded = np.flatnonzero(f > 0)
    if len(loaded) < 2 or f[-1] <= 0:
        return None
    k0 = loaded[0]
    # First contact: between the last unloaded record and the first loaded one (the midpoint: an
    # error of half a record's travel, small against the approach to half the target).
    z_touch = 0.5 * (z[k0 - 1] + z[k0]) if k0 > 0 else z[k0]
    delta = z_touch - z[-1]
    return 1.5 * float(f[-1]) / delta if delta > 0 else None


def _record(sim: Any, bed: _Bed, stage: str) -> dict[str, Any]:
    ws = sim.wall_state()[PLATE]
    st = sim.state()
    z, r = st["positions_m"][:, 2], st["radii_m"]
    zp = float(ws["point_m"][2])
    h = gauge_top_m(z, r, zp)
    p = float(ws["pressure_Pa"])
    speed = abs(float(ws["velocity_m_per_s"][2]))
    c = sim.contact_arrays()
    sig = max_principal_Pa(particle_stress_Pa(sim, c))
    ri, rj = r[c["i"]], r[c["j"]]
    lens = float(lens_volume_m3(ri + rj - c["overlap_m"], ri, rj).sum())
    diag = sim.diagnostics()
    inertial = (speed / h) * bed.d_vol_m / math.sqrt(p / bed.rho_sim_kg_per_m3) if p > 0 else math.inf
    return {
        "stage": stage,
        "step": int(sim.step) - bed.step0,
        "time_s": float(sim.time_s) - bed.time0_s,
        "plate_z_m": zp,
        "thickness_m": h,
        "pressure_Pa": p,
        "pressure_MPa": p * 1e-6,
        "plate_contact_force_sum_N": float(wall_contact_forces_N(sim, PLATE).sum()),
        "plate_force_N": float(ws["load_N"]),
        "porosity": layer_thickness(z, r, bed.area_m2, zp, bulk=False)["porosity"],
        "density_g_cm3": float(np.sum(bed.real_mass_kg)) / (bed.area_m2 * h) * 1e-3,
        "plate_speed_m_per_s": speed,
        "inertial_number": inertial,
        "kinetic_energy_J": float(diag["kinetic_energy_J"]),
        "mean_coordination_number": 2.0 * len(c["i"]) / max(sim.n, 1),
        "max_particle_stress_Pa": float(sig.max()) if len(sig) else 0.0,
        "p99_particle_stress_Pa": float(np.percentile(sig, 99)) if len(sig) else 0.0,
        "max_overlap_ratio": float(diag["max_overlap_ratio"]),
        "max_elastic_overlap_ratio": float(diag["max_elastic_overlap_ratio"]),
        "overlap_volume_fraction": lens / bed.solid_m3,
    }


def _bulk_keys(layer: dict[str, float]) -> dict[str, float]:
    """The ``_bulk`` thickness (m, um) and porosity of a `layer_thickness` result."""
    h = layer["thickness_bulk_m"]
    return {"thickness_bulk_m": h, "thickness_bulk_um": h * 1e6, "porosity_bulk": layer["porosity_bulk"]}


def _bulk(sim: Any, area_m2: float) -> dict[str, float]:
    """The ``_bulk`` keys of the bed's current state (the plate does not enter the bulk rule)."""
    st = sim.state()
    return _bulk_keys(layer_thickness(st["positions_m"][:, 2], st["radii_m"], area_m2))


def _fits(load: list[dict[str, Any]], pressure_fraction: float) -> dict[str, Any]:
    """Meyer (pressure in MPa) and Heckel fits of the load-bearing part of the loading curve: the
    records with p >= ``pressure_fraction`` x the largest pressure (before it the plate flattens the
    surface roughness and rearranges a bed that carries next to no load, which no compaction law
    describes)."""
    from electrodem.analysis.compaction import fit_heckel, fit_meyer

    p_max = max((rec["pressure_Pa"] for rec in load), default=0.0)
    p_min = max(pressure_fraction * p_max, 0.0)
    pts = [(rec["pressure_Pa"], rec["porosity"]) for rec in load
           if rec["pressure_Pa"] > 0 and rec["pressure_Pa"] >= p_min]  # fmt: skip
    out: dict[str, Any] = {"points": len(pts), "pressure_fraction": pressure_fraction,
                           "porosity_at_first_point": pts[0][1] if pts else None}  # fmt: skip
    if len(pts) < 3:
        out["error"] = f"{len(pts)} loaded points: too few to fit"
        return out
    p, eps = np.array(pts).T
    try:
        m = fit_meyer(p * 1e-6, eps)
        out["meyer"] = {"eps_min": m.eps_min, "eps_0": m.eps_0, "gamma_c_MPa": m.gamma_c, "rmse": m.rmse}
    except (ValueError, RuntimeError) as e:
        out["meyer"] = {"error": str(e)}
    try:
        h = fit_heckel(p, eps)
        out["heckel"] = {"k_per_MPa": h.k_per_Pa * 1e6, "A": h.A, "r2": h.r2,
                         "yield_pressure_MPa": h.yield_pressure_Pa * 1e-6}  # fmt: skip
    except (ValueError, RuntimeError) as e:
        out["heckel"] = {"error": str(e)}
    return out


def compact(
    micro: Microstructure,
    params: CompactParams,
    options: EngineOptions,
    *,
    checkpoint_path: Path | None = None,
    progress: bool = True,
    live: HoldsEngine | None = None,
) -> tuple[Microstructure, dict[str, Any]]:
    """Compact ``micro`` between its current collector and a top plate, unload, relax.

    ``live``: the route's live engine state (`electrodem.process.live`): the press then acts on it
    (contact history, bonds and agent fields carried) and leaves it alive.

    Returns (compacted copy, report). The report holds the loading/unloading curve (lists under
    ``curve``, columns `CURVE_KEYS`), the state at the largest load and after relaxation (thickness
    (m and um), porosity, density g/cm^3, pressure Pa and MPa), spring-back and elastic recovery (%),
    the fits, the quasi-static check, particle-stress statistics and the shortcuts. The snapshot gets
    ``metadata['compact']`` (report and parameters), ``metadata['top_z_m']`` (final thickness),
    ``metadata['shortcuts']['compact']`` and ``fields['particle_stress_max_load_Pa']`` (largest
    principal stress at the largest load) and ``fields['particle_stress_Pa']`` (after relaxation).
    """
    from electrodem.engine import Guards, Wall, init
    from electrodem.engine.walls import hertz_stiffness_N_per_m, servo_gain_m_per_s_per_N

    if not isinstance(params, CompactParams):
        raise ConfigError("compact", type(params).__name__, "a CompactParams")
    if micro.n == 0:
        raise ConfigError("compact.microstructure", 0, "at least one particle")
    if micro.periodic[2] or not (micro.periodic[0] and micro.periodic[1]):
        raise ConfigError("compact.microstructure.periodic", micro.periodic, "x and y periodic, z not")
    z0, r0 = micro.positions_m[:, 2], micro.radii_m
    if np.any(z0 - r0 < -0.1 * r0):  # contacts with the CC overlap; more than the guard allows is not a bed
        raise ConfigError("compact.microstructure.positions_m", "z - r < -0.1 r", "particles above the CC")
    area = float(micro.box_m[0] * micro.box_m[1])
    v_solid = float(micro.volumes_m3.sum())
    layer0 = layer_thickness(z0, r0, area)
    h0, eps0 = layer0["thickness_m"], layer0["porosity"]
    h_dense = v_solid / area
    h_target = None
    if params.mode == "displacement":
        if params.target_porosity is not None:
            if not params.target_porosity < eps0:
                raise ConfigError("compact.target_porosity", params.target_porosity,
                                  f"below the porosity before compaction ({eps0:.4f})")  # fmt: skip
            h_target = h_dense / (1.0 - params.target_porosity)
        else:
            h_target = float(params.target_thickness_um) * 1e-6
            if not h_dense < h_target < h0:
                raise ConfigError("compact.target_thickness_um", params.target_thickness_um,
                                  f"between the dense thickness {h_dense * 1e6:.4g} um and the layer "
                                  f"thickness {h0 * 1e6:.4g} um")  # fmt: skip

    init(options)
    c, sh = params.contact, params.shortcuts
    mats = engine_materials(micro, c, sh, tools=(PLATE_MATERIAL,))
    masses, weights, fines = engine_masses(micro, sh)
    v = float(params.plate_speed_m_per_s)
    floor = Wall((0.0, 0.0, 0.0), (0.0, 0.0, 1.0), "current_collector", name="current_collector")
    plate = Wall((0.0, 0.0, h0), (0.0, 0.0, -1.0), PLATE_MATERIAL, mode="velocity",
                 velocity_m_per_s=(0.0, 0.0, -v), name="plate")  # fmt: skip
    setup = EngineSetup(
        mats,
        c.model(),
        [floor, plate],
        (0.0, 0.0, 0.0),
        masses,
        gravitational_masses_kg=weights,
        rayleigh_fraction=sh.rayleigh_fraction,
        impact_speed_m_per_s=v,
        guards=Guards(max_overlap_ratio=float(params.max_overlap_ratio),
                      max_total_overlap_ratio=float(params.max_total_overlap_ratio)),  # fmt: skip
        box_m=(micro.box_m[0], micro.box_m[1], max(float(micro.box_m[2]), 2.0 * h0)),
    )
    sim = engine_for(live, micro, setup, options)
    sim.run(steps=0, progress=False)  # chooses the time step
    dt = sim.dt_s
    d_vol = float(2.0 * np.sum(r0**4) / np.sum(r0**3))
    bed = _Bed(area, micro.masses_kg, float(masses.sum() / v_solid), d_vol, float(v_solid), sim.step,
               sim.time_s)
    r_mean = float(np.mean(r0))
    c_relax = params.relax_damping_per_s
    if c_relax is None:
        c_relax = min(1000.0 * v / r_mean, 0.1 / dt)
    shortcuts: dict[str, Any] = {
        "plate_speed_m_per_s": v,
        "industrial_plate_speed_m_per_s": params.industrial_plate_speed_m_per_s,
        "plate_speed_up_factor": v / params.industrial_plate_speed_m_per_s,
        **shortcuts_log(sh, c, fines),
        "relax_background_damping_per_s": float(c_relax),
        "gravity": "off",
        "dt_s": float(dt),
    }
    sim.scalings.update(shortcuts)
    curve: list[dict[str, Any]] = [_record(sim, bed, "load")]

    def rec(stage: str) -> Any:
        return lambda s: curve.append(_record(s, bed, stage))

    common = dict(every=params.record_every_steps, progress=progress, checkpoint_path=checkpoint_path)
    converged_load = True
    if params.mode == "displacement":
        assert h_target is not None
        n_load = int(math.ceil((h0 - h_target) / (v * dt)))
        if n_load > params.max_steps:
            raise ConfigError("compact.plate_speed_m_per_s", v,
                              f"fast enough to load within compact.max_steps = {params.max_steps} "
                              f"(needs {n_load} steps at dt = {dt:.3g} s)")  # fmt: skip
        sim.run(steps=n_load, callbacks=[rec("load")], **common)
        if curve[-1]["step"] != sim.step - bed.step0:
            curve.append(_record(sim, bed, "load"))
        sim.set_wall(PLATE, mode="fixed")
    else:
        f_target = float(params.target_pressure_MPa) * 1e6 * area
        st_e = sim.materials.pair_table(c.model())[:, :, 0]
        n_top = max(1, int(area / (math.pi * r_mean**2)))
        k_est = hertz_stiffness_N_per_m(f_target, float(st_e.max()), r_mean, n_top)
        gain = servo_gain_m_per_s_per_N(k_est, dt, math.sqrt(float(masses.sum()) / k_est))
        # The servo speed is gain x force error, which is slow for a loose bed far from the target
        # (gain is set for the stiff loaded bed): approach at the plate speed until half the target.
        res = sim.run(steps=params.max_steps, callbacks=[rec("load")],
                      until=lambda s: curve[-1]["step"] == s.step - bed.step0
                      and curve[-1]["pressure_Pa"] * area >= 0.5 * f_target, **common)  # fmt: skip
        # The Hertz estimate counts the plate's contacts only; the bed behind them is a chain of
        # contacts in series (a stack of n layers is ~n x softer), and a gain set for the plate's
        # contacts alone closes the last per cent of the error n x slower (a 128-sphere stack of 8
        # layers: 190k steps). The bed's own tangent stiffness, measured on the approach, is used where
        # it is lower.
        k_bed = bed_tangent_stiffness_N_per_m(
            [c["plate_z_m"] for c in curve], [c["pressure_Pa"] * area for c in curve]
        )
        if k_bed is not None and k_bed < k_est:
            k_est = k_bed
            gain = servo_gain_m_per_s_per_N(k_est, dt, math.sqrt(float(masses.sum()) / k_est))
        sim.set_wall(PLATE, mode="servo", target_force_N=f_target, servo_gain_m_per_s_per_N=gain,
                     max_speed_m_per_s=v)  # fmt: skip
        shortcuts["servo_gain_m_per_s_per_N"] = gain
        shortcuts["servo_stiffness_N_per_m"] = k_est
        inside = [0]

        def held(s: Any) -> bool:
            if not curve or curve[-1]["step"] != s.step - bed.step0:
                return False
            ok = abs(curve[-1]["pressure_Pa"] * area - f_target) <= params.pressure_tolerance * f_target
            inside[0] = inside[0] + 1 if ok else 0
            return inside[0] >= params.hold_checks

        left = max(params.max_steps - res.steps, 1)
        res = sim.run(steps=left, until=held, callbacks=[rec("load")], **common)
        converged_load = res.stopped_by == "until"
        sim.set_wall(PLATE, mode="fixed")
    i_max = max(range(len(curve)), key=lambda k: curve[k]["pressure_Pa"])
    at_max = dict(curve[i_max])
    loaded = dict(curve[-1])
    loaded_bulk = _bulk(sim, area)
    elastic_max = float(sim.diagnostics()["elastic_energy_J"])
    stress_max_load = max_principal_Pa(particle_stress_Pa(sim))
    load_curve = list(curve)

    # Unload: withdraw until the plate carries no load and touches nothing.
    sim.set_wall(PLATE, mode="velocity", velocity_m_per_s=(0.0, 0.0, v))
    sim.set_background_damping(float(c_relax))

    def free(s: Any) -> bool:
        return float(np.max(s.wall_overlaps_m(PLATE))) <= 0.0

    res_u = sim.run(steps=params.max_steps, until=free, callbacks=[rec("unload")], **common)
    curve.append(_record(sim, bed, "unload"))
    # Relax with the plate parked out of reach.
    st = sim.state()
    park = float(np.max(st["positions_m"][:, 2] + st["radii_m"])) + 4.0 * float(np.max(r0))
    sim.set_wall(PLATE, mode="fixed", point_m=(0.0, 0.0, park))
    sim.set_background_damping(float(c_relax))
    ke_stop = params.relax_ke_ratio * max(elastic_max, 1e-300)
    res_r = sim.run(steps=params.relax_max_steps,
                    until=lambda s: s.diagnostics()["kinetic_energy_J"] < ke_stop,
                    callbacks=[rec("relax")], **common)  # fmt: skip
    final = _record(sim, bed, "relax")
    curve.append(final)
    final_bulk = _bulk(sim, area)
    stress_final = max_principal_Pa(particle_stress_Pa(sim))

    from electrodem.analysis.compaction import spring_back_pct

    h_loaded = loaded["thickness_m"]
    h_final = final["thickness_m"]
    strain = h0 - h_loaded
    qs = [c["inertial_number"] for c in load_curve
          if c["pressure_Pa"] > 0 and c["pressure_Pa"] >= params.quasi_static_pressure_fraction
          * at_max["pressure_Pa"]]  # fmt: skip
    i_worst = max(qs) if qs else math.inf
    report: dict[str, Any] = {
        "mode": params.mode,
        "contact_normal": c.normal,
        "yield_pressure_MPa_by_species": {
            m.name: (m.yield_pressure_Pa or 0.0) * 1e-6 for m in mats[: len(micro.species)]
        } if c.normal == "thornton_ning" else None,
        "initial": {"thickness_m": h0, "thickness_um": h0 * 1e6, "porosity": eps0,
                    **_bulk_keys(layer0)},
        "target_thickness_m": h_target,
        "loaded": {
            "thickness_m": h_loaded, "thickness_um": h_loaded * 1e6, "porosity": loaded["porosity"],
            "density_g_cm3": loaded["density_g_cm3"], "pressure_Pa": loaded["pressure_Pa"],
            "pressure_MPa": loaded["pressure_MPa"], **loaded_bulk,
        },
        "max_pressure_Pa": at_max["pressure_Pa"],
        "max_pressure_MPa": at_max["pressure_MPa"],
        "load_converged": bool(converged_load),
        "final": {
            "thickness_m": h_final, "thickness_um": h_final * 1e6, "porosity": final["porosity"],
            "density_g_cm3": final["density_g_cm3"], **final_bulk,
        },
        "spring_back_pct": spring_back_pct(h_loaded, h_final),
        "elastic_recovery_pct": 100.0 * (h_final - h_loaded) / strain if strain > 0 else float("nan"),
        "unload_converged": res_u.stopped_by == "until",
        "relax_converged": res_r.stopped_by == "until",
        "fits": _fits(load_curve, params.fit_pressure_fraction),
        "quasi_static": {
            "inertial_number_max": i_worst,
            "threshold": params.inertial_number_max,
            "quasi_static": bool(i_worst < params.inertial_number_max),
            "factor_over_threshold": i_worst / params.inertial_number_max,
            "pressure_fraction_checked": params.quasi_static_pressure_fraction,
            "d_volume_mean_m": d_vol,
            "rho_simulated_kg_per_m3": bed.rho_sim_kg_per_m3,
        },
        "max_particle_stress_Pa": float(stress_max_load.max()),
        "max_particle_stress_MPa": float(stress_max_load.max()) * 1e-6,
        "p99_particle_stress_MPa": float(np.percentile(stress_max_load, 99)) * 1e-6,
        "overlap": {
            "max_ratio_max_load": at_max["max_overlap_ratio"],
            "max_elastic_ratio_max_load": at_max["max_elastic_overlap_ratio"],
            "volume_fraction_max_load": at_max["overlap_volume_fraction"],
            "volume_fraction_final": final["overlap_volume_fraction"],
            "volume_fraction_limit": params.max_overlap_volume_fraction,
            "ok": bool(max(c["overlap_volume_fraction"] for c in curve)
                       <= params.max_overlap_volume_fraction),
        },
        "mean_coordination_number_max_load": at_max["mean_coordination_number"],
        "mean_coordination_number_final": final["mean_coordination_number"],
        "elastic_energy_max_load_J": elastic_max,
        "steps": int(sim.step) - bed.step0,
        "dt_s": float(dt),
        "simulated_time_s": float(sim.time_s) - bed.time0_s,
        "shortcuts": shortcuts,
        "n_particles": int(micro.n),
        "curve": {k: [c[k] for c in curve] for k in CURVE_KEYS},
    }  # fmt: skip
    st = sim.state()
    out = micro.with_(
        positions_m=st["positions_m"],
        velocities_m_per_s=st["velocities_m_per_s"],
        contacts=sim.contacts(),
        time_s=micro.time_s + float(sim.time_s) - bed.time0_s,
        fields={**micro.fields, "particle_stress_max_load_Pa": stress_max_load,
                "particle_stress_Pa": stress_final},  # fmt: skip
        metadata={
            "stage": "compacted",
            "top_z_m": h_final,
            "calendering_state": "plate-compacted",
            "shortcuts": {**micro.metadata.get("shortcuts", {}), "compact": shortcuts},
            "compact": {**report, "params": asdict(params), "engine": sim.describe()},
        },
    )
    out = with_engine_extras(out, sim)
    release(live, sim)
    return out, report
