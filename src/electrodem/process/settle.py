"""Settling: a placed (loose, non-overlapping) microstructure falls under gravity onto the current
collector (floor wall at z = 0, x and y periodic) until it is at rest.

Real electrode particles are um-sized with GPa moduli and the smallest (CB/binder, 0.4 um) dictates
the time step: settling under real gravity would take ~1e6 steps. The step therefore uses named,
logged shortcuts (DOMAIN.md §6), each a field of `SettleParams`, all written to
``metadata['shortcuts']['settle']`` (the runner copies that into metrics.json):

* **Softened, equalised moduli** (``modulus_scale``, ``modulus_cap_Pa``): E_used = min(E x scale,
  cap). With automatic gravity the step count does not depend on E (below); the cap (default 1 GPa,
  the CB modulus) matters because it makes the stiff AM (200 GPa) no stiffer than the CB it presses
  on, so that the AM contacts do not dictate the time step.
* **Automatic gravity** (``gravity_scale: auto``): the overlap a fine particle suffers under the
  column load is Hertzian, d = (3F / (4 E* sqrt(R*)))^(2/3), with F = safety x P x pi R_max^2 / 3:
  the pressure at the bottom of the bed, P = sum(m g') / area, on the projected area of the largest
  particle, shared by ~3 supporting contacts (`column_overlap_estimate`). F is proportional to g', so
  d/r depends on g'/E only. g' is chosen so that the estimated overlap of the smallest particle of
  each species, pressed by the largest particle (or the collector) with the softest partner
  modulus, equals ``overlap_target`` x its radius. The settle takes ~ sqrt(2 H / g') / dt steps with
  dt ~ r_min sqrt(rho/E): independent of E.
* **Fall at a higher gravity, then relax** (``fall_overlap_target``): the bed falls and comes to rest
  at the gravity whose estimated overlap is ``fall_overlap_target`` (1.5 %: ~1.8x faster than at the
  final gravity; transient impact overlaps reach a few %, the guard stops the run above 10 %). The
  static overlap is then measured; where it exceeds ``overlap_target`` the gravity is lowered by the
  Hertz scaling d ~ g^(2/3) (times 0.9) and the bed relaxes again at rest (contacts spring back,
  all loads scale down), and measured again: until it is at or below the target (at most
  `MAX_GRAVITY_STEPS` times; each relaxation is measured, the last one included), or until a
  lowering leaves the largest overlap where it was (`overlap_is_locked`: a fine wedged between AM
  particles during the fall keeps an overlap the weight no longer sets; measured on the beds of
  tests/engine/test_settle.py: 0.0056 of the radius while g fell 26x). The report says which
  (``overlap_target_met``, ``overlap_locked``); the gravity
  the bed ends at is ``settling_gravity_m_per_s2`` in the report. The estimate is meant as an upper
  bound: measured overlaps lie from about equal to it (fines wedged between AM particles) to 6x below
  it (AM resting on a carpet of fines); the measured overlap, not the estimate, sets the final gravity.
* **Mass-scaled fines** (``shortcuts.fines_density_scale`` for radii below ``fines_radius_um``;
  `electrodem.process.engine_map`): their inertia is multiplied, so that their contact oscillation (the
  time step) slows by sqrt(scale). The settle is a dynamic fall, and the fines' weight is scaled
  with their inertia (``shortcuts.fines_weight: scaled``, the default): they fall at g with the AM.
  With their real weight and scaled inertia they fall at g / scale: measured on the 840-particle bed of
  tests/engine/test_settle.py, no convergence in 120k steps; and a bed settled with scaled weights
  and then given the real ones back springs its fines off their contacts (27 % of the particles left
  touching nothing, hopping in slow motion at g / scale). So the settled bed carries fines that weigh
  scale x their real weight (counted in P above, g' lowered accordingly; ``fines_weight_fraction``
  reports their share of the weight). The steps after it keep the same weights (a calender pass with
  the real ones released the settled fines: the strip came out thicker than it went in).
* **Background damping** -c m v (``damping_ratio``): c = 2 damping_ratio / t_fall with
  t_fall = sqrt(2 H0 / g_fall) the free-fall time of the top of the loose bed; damping_ratio = 0.5
  damps the fall lightly (the bed collapses in about 1.5 fall times) and brings the collapsed bed to
  rest within a few more. ``background_damping_per_s`` overrides it.
* **A larger time step** than the usual 0.2 Rayleigh times (``rayleigh_fraction`` 0.35,
  ``steps_per_contact`` 5): at overlaps below ~1 % a single Hertz contact oscillates at ~1.3 /
  t_Rayleigh, but in a dense packing the fastest collective (network) modes are several times faster
  (tangential modes of a light particle with ~6-10 contacts); velocity Verlet turns unstable at
  omega dt = 2. Measured: 0.5 t_Rayleigh leaves a bounded period-2 "buzz" in beds with ~0.7 %
  overlaps (caught by the unbalanced-force test below: such a bed never converges), 0.4 settles
  cleanly; 0.35 keeps a margin for the transient overlaps of the fall.

Convergence (checked every ``check_every_steps`` once the top of the bed had time to fall): the
kinetic energy is below ``ke_threshold_ratio`` x sum(m g d) (the energy to lift every particle by its
own diameter) and the unbalanced-force ratio mean|F_contact + m g| / mean|m g| (contact forces and
weight, the background damping excluded: damping cannot fake equilibrium; with cohesion the
denominator also holds the contact forces each particle carries, since adhesive forces dwarf a fine's
weight) is below ``unbalanced_force_tolerance``; both leave out the ``max_moving_fraction`` (1 %)
most energetic particles. Those are fines still raining down through the pores of the AM
skeleton: without cohesion, fines 10-50x smaller than the AM percolate to the collector (a real
effect of dry non-cohesive mixtures, slow to finish); the report counts the particles still
moving (``moving_particles``). A third condition is the momentum balance of the whole bed: the
collector carries its weight, |P_cc - P_w| < ``load_balance_tolerance`` x P_w, with P_cc the
collector's normal force over the box area and P_w = sum(m g') / area. Summed over the bed the
internal contact forces cancel, P_cc A - W = sum m_i (a_i + c v_i)_z, which the per-particle criterion
bounds only by its own tolerance (5 % of the mean weight, when the residuals all point one way as in a
slow breathing mode of the bed) plus the weight of the excluded fines still in flight: a bed can pass
it with the collector carrying 3 % less than the weight. ``converged`` is True only when all three
conditions hold at the end.

Thickness and porosity (`electrodem.analysis.composition.layer_thickness`, the definition every
step shares): ``metadata['top_z_m']`` and the headline ``thickness_m``/``porosity`` are the gauge
thickness, the highest particle surface max(z + r), with the porosity of the solid below it (exact
spherical caps). Next to them, ``thickness_bulk_m``/``porosity_bulk``: the height above which the
solid-fraction profile, smoothed over the volume-weighted mean radius, stays below half its bulk value
(insensitive to the surface roughness; <= the gauge thickness). ``packing_fraction`` is the bulk
packing of the bed interior, 1 - ``porosity_bulk`` (`bed_packing`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from electrodem.analysis.composition import bed_profile as bed_profile  # re-export: tests/benchmarks use it
from electrodem.analysis.composition import bulk_top_m, layer_thickness, porosity_below
from electrodem.config import ConfigError
from electrodem.engine.arch import EngineOptions
from electrodem.io.snapshot import Microstructure
from electrodem.process.engine_map import (
    ContactParams,
    ShortcutParams,
    collector_for,
    engine_materials,
    shortcuts_log,
)
from electrodem.process.engine_map import masses as engine_masses
from electrodem.process.live import EngineSetup, HoldsEngine, engine_for, release, with_engine_extras

CONTACT: dict[str, Any] = {}
"""The settle's built-in overrides of the shared ``contact`` group (none: it is the reference)."""
SHORTCUTS: dict[str, Any] = {"rayleigh_fraction": 0.35}
"""The settle's built-in overrides of the shared ``shortcuts`` group (see the module docstring)."""
MAX_GRAVITY_STEPS = 5
"""Most times the settling gravity is lowered after the fall (each one a relaxation at rest)."""
SUPPORTING_CONTACTS = 3.0
"""Contacts that share the column load under one particle (a sphere resting in a pocket)."""


class SettleError(RuntimeError):
    """The settled bed violates a check (overlap too large for the softened modulus)."""


@dataclass
class SettleParams:
    """Parameters of the settling step (SI unless the key says otherwise).

    contact : the shared ``contact`` group with the step's overrides (`electrodem.process.engine_map`):
        contact sub-models, surface values, cohesion (``jkr``: pair work of adhesion
        W = 2 sqrt(gamma_a gamma_b) from the species' surface energies), current collector.
    shortcuts : the shared ``shortcuts`` group with the step's overrides: moduli softening, fines mass
        scaling, ``gravity_scale`` (a factor on gravity, one gravity throughout, or ``auto``: fall at the
        gravity of ``fall_overlap_target``, end at rest with the measured overlap <= ``overlap_target``;
        see module doc), ``rayleigh_fraction``.
    gravity_m_per_s2 : magnitude of real gravity (along -z).
    overlap_target : largest static overlap / radius wanted at the end (measured; with a numeric
        shortcuts.gravity_scale only reported against).
    fall_overlap_target : estimated overlap / radius at the fall gravity (auto gravity only); null
        falls at the estimate-based gravity of ``overlap_target``.
    load_safety_factor : factor (>= 1) on the estimated column load per contact (force chains carry
        more than the mean).
    damping_ratio : background damping c = 2 damping_ratio / t_fall (1/s), t_fall = sqrt(2 H0 / g_fall).
    background_damping_per_s : explicit background damping rate (1/s); ``None`` uses damping_ratio.
    ke_threshold_ratio : at rest when the kinetic energy < ratio x sum(m g d) ...
    unbalanced_force_tolerance : ... and mean|F_contact + m g| / mean|m g| < this ...
    max_moving_fraction : ... both without this fraction of the most energetic particles ...
    load_balance_tolerance : ... and the collector pressure is within this relative distance of the
        bed's weight per area (momentum balance of the whole bed).
    max_steps : give up (converged = False in the report) after this many steps.
    check_every_steps : how often convergence is tested (steps).
    steps_per_contact : time steps per Hertz collision at the settling impact speed (the other
        time-step criterion; the smaller dt wins).
    max_overlap_ratio : allowed max overlap / smaller radius at the end (checked, else `SettleError`);
        with ``jkr`` the zero-load adhesive overlap of the pair is allowed on top of it.
    """

    contact: ContactParams = field(default_factory=lambda: ContactParams(**CONTACT, where="settle.contact"))
    shortcuts: ShortcutParams = field(
        default_factory=lambda: ShortcutParams(**SHORTCUTS, where="settle.shortcuts"))
    gravity_m_per_s2: float = 9.81
    overlap_target: float = 0.005
    fall_overlap_target: float | None = 0.015
    load_safety_factor: float = 1.5
    damping_ratio: float = 0.5
    background_damping_per_s: float | None = None
    ke_threshold_ratio: float = 1e-4
    unbalanced_force_tolerance: float = 0.05
    max_moving_fraction: float = 0.01
    load_balance_tolerance: float = 0.02
    max_steps: int = 400_000
    check_every_steps: int = 500
    steps_per_contact: float = 5.0
    max_overlap_ratio: float = 0.01

    def __post_init__(self) -> None:
        def req(cond: bool, key: str, allowed: str) -> None:
            if not cond:
                raise ConfigError(f"settle.{key}", getattr(self, key), allowed)

        def num(key: str) -> float:
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ConfigError(f"settle.{key}", v, "a finite number")
            return float(v)

        req(isinstance(self.contact, ContactParams), "contact", "a ContactParams")
        req(isinstance(self.shortcuts, ShortcutParams), "shortcuts", "a ShortcutParams")
        req(num("gravity_m_per_s2") > 0, "gravity_m_per_s2", "> 0 (m/s^2)")
        req(0 < num("overlap_target") <= 0.01, "overlap_target", "in (0, 0.01] (fraction of the radius)")
        if self.fall_overlap_target is not None:
            req(0 < num("fall_overlap_target") <= 0.1, "fall_overlap_target", "null or in (0, 0.1]")
        req(num("load_safety_factor") >= 1, "load_safety_factor", ">= 1")
        req(num("damping_ratio") > 0, "damping_ratio", "> 0")
        if self.background_damping_per_s is not None:
            req(num("background_damping_per_s") >= 0, "background_damping_per_s", "null or >= 0 (1/s)")
        req(0 < num("ke_threshold_ratio") < 1, "ke_threshold_ratio", "in (0, 1)")
        req(num("unbalanced_force_tolerance") > 0, "unbalanced_force_tolerance", "> 0")
        req(0 <= num("max_moving_fraction") < 0.1, "max_moving_fraction", "in [0, 0.1)")
        req(0 < num("load_balance_tolerance") < 1, "load_balance_tolerance", "in (0, 1)")
        for key in ("max_steps", "check_every_steps"):
            v = getattr(self, key)
            req(isinstance(v, int) and not isinstance(v, bool) and v >= 1, key, "an integer >= 1")
        req(num("steps_per_contact") >= 5, "steps_per_contact", ">= 5")
        req(0 < num("max_overlap_ratio") < 0.2, "max_overlap_ratio", "in (0, 0.2)")


def _e_star_Pa(a: Any, b: Any) -> float:
    """Effective modulus E* of two materials (Pa)."""
    return 1.0 / (
        (1 - a.poisson_ratio**2) / a.youngs_modulus_Pa + (1 - b.poisson_ratio**2) / b.youngs_modulus_Pa
    )


def overlap_is_locked(before: float, after: float, g_before: float, g_after: float) -> bool:
    """True when lowering the gravity from ``g_before`` to ``g_after`` (m/s^2) shrank the largest static
    overlap ratio (``before`` -> ``after``) by less than half of what the weight would: a contact
    the weight loads unloads as Hertz, d ~ g^(2/3); one that keeps its overlap is held by the
    skeleton's frictional lock (a fine wedged between AM particles during the fall), which no further
    lowering releases."""
    expected = (g_after / g_before) ** (2.0 / 3.0)
    return after > before * (1.0 - 0.5 * (1.0 - expected))


def column_overlap_estimate(
    radii_m: np.ndarray,
    species_id: np.ndarray,
    masses_kg: np.ndarray,
    area_m2: float,
    materials: list[Any],
    gravity_m_per_s2: float,
    load_safety_factor: float,
) -> tuple[float, dict[str, Any]]:
    """Estimated largest static overlap / radius of the smallest particles under the column load.

    F = safety x P x pi R_max^2 / 3 with P = sum(m) g / area; for the smallest particle of every
    species, pressed by the largest particle (R* = r R_max / (r + R_max)) with the softest partner
    modulus among all species, or by the collector (last material, R* = r):
    d = (3 F / (4 E* sqrt(R*)))^(2/3). Returns (max d / r, details: pressure_Pa, force_N, species).
    """
    pressure = float(np.sum(masses_kg)) * gravity_m_per_s2 / area_m2
    r_max = float(radii_m.max())
    force = load_safety_factor * pressure * math.pi * r_max**2 / SUPPORTING_CONTACTS
    worst, worst_name = 0.0, ""
    wall = materials[-1]
    for k in np.unique(species_id):
        r = float(radii_m[species_id == k].min())
        mk = materials[int(k)]
        cases = [(_e_star_Pa(mk, mj), r * r_max / (r + r_max)) for mj in materials[:-1]]
        cases.append((_e_star_Pa(mk, wall), r))
        for e_star, r_star in cases:
            d = (3.0 * force / (4.0 * e_star * math.sqrt(r_star))) ** (2.0 / 3.0)
            if d / r > worst:
                worst, worst_name = d / r, mk.name
    return worst, {"pressure_Pa": pressure, "force_N": force, "species": worst_name}


def jkr_overlap_estimate(radii_m: np.ndarray, species_id: np.ndarray, materials: list[Any]) -> float:
    """Largest zero-load JKR overlap / smaller radius over species pairs and species–collector pairs,
    each at the smallest radii present (the adhesive overlap grows relative to r as r^(-2/3)); the
    materials carry the engine's W per material (last one: the collector)."""
    from electrodem.engine.cohesion import jkr_equilibrium_overlap_m

    wall = materials[-1]
    ks = [int(k) for k in np.unique(species_id)]
    r_min = {k: float(radii_m[species_id == k].min()) for k in ks}
    worst = 0.0
    for a in ks:
        ma = materials[a]
        partners = [(materials[b], r_min[b]) for b in ks] + [(wall, math.inf)]
        for mb, rb in partners:
            w = math.sqrt(ma.surface_energy_J_per_m2 * mb.surface_energy_J_per_m2)
            if w <= 0:
                continue
            ra = r_min[a]
            r_star = ra if math.isinf(rb) else ra * rb / (ra + rb)
            d0 = jkr_equilibrium_overlap_m(r_star, _e_star_Pa(ma, mb), w)
            worst = max(worst, d0 / min(ra, rb))
    return worst


def bed_packing(z_m: np.ndarray, r_m: np.ndarray, area_m2: float) -> tuple[float, float]:
    """(packing fraction of the bed interior, bulk top height (m)): the solid fraction below the
    half-bulk top `electrodem.analysis.composition.bulk_top_m`, i.e. 1 - its ``porosity_bulk``."""
    top = bulk_top_m(z_m, r_m, area_m2)
    return 1.0 - porosity_below(z_m, r_m, area_m2, top), top


def settle(
    micro: Microstructure,
    params: SettleParams,
    options: EngineOptions,
    *,
    checkpoint_path: Path | None = None,
    progress: bool = True,
    live: HoldsEngine | None = None,
) -> tuple[Microstructure, dict[str, Any]]:
    """Settle ``micro`` under gravity onto the current collector; returns (settled copy, report).

    ``live``: the route's live engine state (`electrodem.process.live`): settling then runs on it (or
    builds it) and leaves it alive; without it a simulation is built and freed here.

    The report holds steps, simulated time (s), dt (s), wall time (s), the gauge thickness and
    porosity (``thickness_m``, ``thickness_um``, ``porosity``), the bulk ones (``thickness_bulk_m``,
    ``thickness_bulk_um``, ``porosity_bulk``), the packing fraction of the bed interior, mean
    coordination number (contacts per particle), max overlap / smaller radius, final kinetic-to-lift
    energy and unbalanced-force ratios, convergence flag and the shortcuts used. The
    snapshot gets ``metadata['settle']`` (report, parameters, engine description),
    ``metadata['top_z_m']`` (the gauge thickness) and ``metadata['shortcuts']['settle']``.
    """
    from electrodem.engine import SimulationError, Wall, init

    if not isinstance(params, SettleParams):
        raise ConfigError("settle", type(params).__name__, "a SettleParams")
    if micro.n == 0:
        raise ConfigError("settle.microstructure", 0, "at least one particle")
    if micro.periodic[2]:
        raise ConfigError(
            "settle.microstructure.periodic", micro.periodic, "z not periodic (the CC is at z = 0)"
        )
    if np.any(micro.positions_m[:, 2] - micro.radii_m < -1e-12 * micro.radii_m.max()):
        raise ConfigError(
            "settle.microstructure.positions_m", "z - r < 0", "every particle above the CC (z >= r)"
        )
    init(options)
    c, sh = params.contact, params.shortcuts
    mats = engine_materials(micro, c, sh)
    masses, weights, fines = engine_masses(micro, sh)
    area = float(micro.box_m[0] * micro.box_m[1])
    sid = micro.species_id.astype(int)

    def estimate(g_m_per_s2: float) -> tuple[float, dict[str, Any]]:
        return column_overlap_estimate(
            micro.radii_m, sid, weights, area, mats, g_m_per_s2, params.load_safety_factor
        )

    # The estimated overlap grows as g^(2/3): invert it from its value at 1 m/s^2.
    ratio_1, _ = estimate(1.0)
    if sh.gravity_scale == "auto":
        g = (params.overlap_target / ratio_1) ** 1.5
    else:
        g = params.gravity_m_per_s2 * float(sh.gravity_scale)
    g_fall = g
    if params.fall_overlap_target is not None and sh.gravity_scale == "auto":
        g_fall = max(g, (params.fall_overlap_target / ratio_1) ** 1.5)
    est_ratio, est = estimate(g)
    h0 = float(np.max(micro.positions_m[:, 2] + micro.radii_m))
    t_fall = math.sqrt(2.0 * h0 / g_fall)
    damping = params.background_damping_per_s
    if damping is None:
        damping = 2.0 * params.damping_ratio / t_fall
    impact = math.sqrt(2.0 * g_fall * h0)
    if damping > 0:
        impact = min(impact, g_fall / damping)
    adhesive = jkr_overlap_estimate(micro.radii_m, sid, mats) if c.cohesion == "jkr" else 0.0
    setup = EngineSetup(
        mats,
        c.model(),
        [Wall((0.0, 0.0, 0.0), (0.0, 0.0, 1.0), "current_collector", name="current_collector")],
        (0.0, 0.0, -g_fall),
        masses,
        rayleigh_fraction=sh.rayleigh_fraction,
        steps_per_contact=params.steps_per_contact,
        impact_speed_m_per_s=impact,
        background_damping_per_s=damping,
        gravitational_masses_kg=weights,
    )
    sim = engine_for(live, micro, setup, options)
    weight_fines = float(weights[fines].sum() / weights.sum())
    shortcuts: dict[str, Any] = {
        **shortcuts_log(sh, c, fines),
        "gravity_auto": sh.gravity_scale == "auto",
        "gravity_for_overlap_target_m_per_s2": g,
        "fall_gravity_m_per_s2": g_fall,
        "overlap_target": params.overlap_target,
        "fall_overlap_target": params.fall_overlap_target,
        "load_safety_factor": params.load_safety_factor,
        "estimated_max_overlap_ratio": est_ratio,
        "estimated_column_pressure_Pa": est["pressure_Pa"],
        "estimated_contact_force_N": est["force_N"],
        "modulus_factor_by_species": {
            s.name: sh.modulus_Pa(s.youngs_modulus_Pa) / s.youngs_modulus_Pa for s in micro.species
        },
        "fines_weight_fraction": weight_fines,
        "background_damping_per_s": damping,
        "damping_ratio": params.damping_ratio if params.background_damping_per_s is None else None,
        "steps_per_contact": params.steps_per_contact,
        "adhesive_overlap_ratio_estimate": adhesive,
        "current_collector": collector_for(micro, c.current_collector).name,
    }
    sim.scalings.update(shortcuts)

    n_free = int(params.max_moving_fraction * micro.n)
    inertia = 0.4 * masses * micro.radii_m**2

    def balance(s: Any) -> tuple[float, float, int]:
        """(kinetic / lift energy, unbalanced-force ratio, particles still moving) at the current
        gravity, the two ratios without the ``n_free`` most energetic particles."""
        st = s.state()
        gz = float(-s.gravity[2])
        lift = weights * gz * 2.0 * micro.radii_m
        v, w = st["velocities_m_per_s"], st["angular_velocities_rad_per_s"]
        ke = 0.5 * masses * np.einsum("ij,ij->i", v, v) + 0.5 * inertia * np.einsum("ij,ij->i", w, w)
        keep = np.argsort(ke)[: micro.n - n_free]
        f_static = st["forces_N"] + damping * masses[:, None] * v
        scale = weights[keep] * gz
        if c.cohesion != "none":
            # Adhesive contacts carry forces far above a fine's weight (Bond number >> 1): relative
            # to the weight alone, the residual jitter of those forces never looks balanced.
            # The usual DEM measure compares with the contact forces a particle carries.
            ca = s.contact_arrays()
            fn = np.abs(ca["normal_force_N"])
            carried = np.bincount(ca["i"], fn, micro.n) + np.bincount(ca["j"], fn, micro.n)
            scale = scale + carried[keep]
        unb = float(np.mean(np.linalg.norm(f_static[keep], axis=1)) / np.mean(scale))
        moving = int(np.count_nonzero(ke > params.ke_threshold_ratio * lift))
        return float(ke[keep].sum() / lift.sum()), unb, moving

    def load_balance(s: Any) -> tuple[float, float]:
        """(collector pressure, weight per area) in Pa at the current gravity."""
        weight = float(weights.sum()) * float(-s.gravity[2]) / area
        return float(s.wall_state()[0]["pressure_Pa"]), weight

    t_min = [t_fall]

    def calm(s: Any) -> bool:
        # Before the top of the bed had time to fall, a low kinetic energy means "not yet moving".
        if s.time_s < t_min[0]:
            return False
        ke, unb, _ = balance(s)
        if not (ke < params.ke_threshold_ratio and unb < params.unbalanced_force_tolerance):
            return False
        p_cc, p_w = load_balance(s)
        return abs(p_cc - p_w) < params.load_balance_tolerance * p_w

    budget = params.max_steps

    def run(n_steps: int) -> Any:
        try:
            return sim.run(
                steps=n_steps,
                until=calm,
                every=params.check_every_steps,
                progress=progress,
                checkpoint_path=checkpoint_path,
            )
        except SimulationError as e:
            hint = (
                f"; settling at g = {float(-sim.gravity[2]):.4g} m/s^2: lower settle.fall_overlap_target "
                f"(now {params.fall_overlap_target}) or raise settle.damping_ratio (now "
                f"{params.damping_ratio}) for gentler impacts"
            )
            raise SimulationError(e.diagnosis + hint, e.step, e.checkpoint_path) from e

    res = run(budget)
    steps, wall, phases = res.steps, res.wall_time_s, [{"gravity_m_per_s2": g_fall, "steps": res.steps}]
    converged = res.stopped_by == "until"
    g_final = g_fall
    locked = False
    # One more pass than lowerings: the overlap after the last relaxation is measured too.
    for lowering in range(MAX_GRAVITY_STEPS + 1):
        # The adhesive (zero-load JKR) overlap does not shrink with gravity: only the excess counts.
        measured = float(sim.diagnostics()["max_overlap_ratio"]) - adhesive
        phases[-1]["max_overlap_ratio"] = measured + adhesive
        if lowering:
            locked = overlap_is_locked(phases[-2]["max_overlap_ratio"] - adhesive, measured,
                                       phases[-2]["gravity_m_per_s2"], g_final)
        if (
            measured <= params.overlap_target
            or locked
            or g_fall == g
            or steps >= budget
            or lowering == MAX_GRAVITY_STEPS
        ):
            break
        # Static Hertz overlaps scale as g^(2/3); 0.9 covers the rearrangement while unloading. All
        # loads drop, the contacts spring back, and the bed comes to rest again at the lower gravity.
        g_final *= 0.9 * (params.overlap_target / measured) ** 1.5
        sim.set_gravity((0.0, 0.0, -g_final))
        t_min[0] = sim.time_s + params.check_every_steps * sim.dt_s
        res = run(budget - steps)
        steps, wall = steps + res.steps, wall + res.wall_time_s
        phases.append({"gravity_m_per_s2": g_final, "steps": res.steps})
        converged = res.stopped_by == "until"
    ke_ratio, unbalanced, moving = balance(sim)
    p_cc, p_w = load_balance(sim)
    diag = sim.diagnostics()
    st = sim.state()
    contacts = sim.contacts()
    pos = st["positions_m"]
    layer = layer_thickness(pos[:, 2], st["radii_m"], area)
    shortcuts["dt_s"] = float(sim.dt_s)
    shortcuts["settling_gravity_m_per_s2"] = g_final
    shortcuts["gravity_scale"] = g_final / params.gravity_m_per_s2
    report: dict[str, Any] = {
        "steps": int(steps),
        "phases": phases,
        "simulated_time_s": float(sim.time_s),
        "dt_s": float(sim.dt_s),
        "time_step_rule": sim.time_step_report.rule if sim.time_step_report else "unknown",
        "wall_time_s": float(wall),
        "fall_time_s": t_fall,
        "thickness_m": layer["thickness_m"],
        "thickness_um": layer["thickness_m"] * 1e6,
        "porosity": layer["porosity"],
        "thickness_bulk_m": layer["thickness_bulk_m"],
        "thickness_bulk_um": layer["thickness_bulk_m"] * 1e6,
        "porosity_bulk": layer["porosity_bulk"],
        "packing_fraction": 1.0 - layer["porosity_bulk"],
        "mean_coordination_number": 2.0 * len(contacts.i) / micro.n,
        "max_overlap_ratio": float(diag["max_overlap_ratio"]),
        "estimated_max_overlap_ratio": est_ratio,
        "estimated_max_overlap_ratio_final_gravity": estimate(g_final)[0],
        "settling_gravity_m_per_s2": g_final,
        "kinetic_to_lift_energy_ratio": ke_ratio,
        "unbalanced_force_ratio": unbalanced,
        "moving_particles": moving,
        "kinetic_energy_per_particle_J": diag["kinetic_energy_J"] / micro.n,
        "current_collector_pressure_Pa": p_cc,
        "weight_pressure_Pa": p_w,
        "converged": bool(converged),
        "overlap_target_met": bool(measured <= params.overlap_target),
        "overlap_locked": bool(locked),
        "shortcuts": shortcuts,
        "n_particles": int(micro.n),
    }
    if report["max_overlap_ratio"] > params.max_overlap_ratio + adhesive:
        raise SettleError(
            f"max overlap / radius = {report['max_overlap_ratio']:.3g} exceeds settle.max_overlap_ratio = "
            f"{params.max_overlap_ratio} + the adhesive overlap {adhesive:.3g} (the column-load estimate "
            f"gave {est_ratio:.3g}): lower "
            f"settle.overlap_target (now {params.overlap_target}) or shortcuts.gravity_scale, or raise "
            f"settle.load_safety_factor (now {params.load_safety_factor})"
        )
    # The engine keeps particle order, so ids and species carry over as they are.
    out = micro.with_(
        positions_m=pos,
        velocities_m_per_s=st["velocities_m_per_s"],
        contacts=contacts,
        time_s=micro.time_s + float(res.time_s),
        metadata={
            "stage": "settled",
            "top_z_m": layer["thickness_m"],
            "shortcuts": {**micro.metadata.get("shortcuts", {}), "settle": shortcuts},
            "settle": {**report, "params": asdict(params), "engine": sim.describe()},
        },
    )
    out = with_engine_extras(out, sim)
    release(live, sim)
    return out, report
