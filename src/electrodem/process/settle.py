"""Settling: a placed (loose, non-overlapping) microstructure falls under gravity onto the current
collector (floor wall at z = 0, x and y periodic) until the kinetic energy per particle is small.

Real electrode particles are um-sized with GPa moduli: the time step would be ~1e-10 s and settling
under real gravity would need ~1e7 steps. The settle therefore uses named, logged shortcuts
(DOMAIN.md §6), every one a field of `SettleParams` and written to the snapshot metadata:

* ``modulus_scale`` and ``modulus_cap_Pa``: every species' Young's modulus becomes
  min(E x modulus_scale, modulus_cap_Pa) (softened contacts; the time step grows as E^-1/2).
  Checked: the largest overlap divided by the smaller radius of the pair must stay below
  ``max_overlap_ratio`` (1 %), else `SettleError`.
* ``fines_density_scale`` for particles of radius below ``fines_radius_um``: their density (mass and
  weight) is multiplied, so that the fines no longer dictate the time step.
* ``gravity_scale``: gravity is multiplied (shortens the fall; raises the load on contacts).
* ``background_damping_per_s``: viscous damping -c m v of every particle while settling.

Convergence: the mean kinetic energy per particle falls below ``ke_threshold_ratio`` times the mean
of m g' d (the energy to lift a particle by its own diameter under the settling gravity g').
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from electrodem.config import ConfigError
from electrodem.engine.arch import EngineOptions
from electrodem.io.snapshot import Microstructure

ROLLING_MODELS = ("none", "constant", "epsd")
_OVERRIDE_KEYS = ("friction", "restitution", "rolling_friction")


class SettleError(RuntimeError):
    """The settled bed violates a check (overlap too large for the softened modulus)."""


@dataclass
class SettleParams:
    """Parameters of the settling step (SI unless the key says otherwise).

    friction : Coulomb friction coefficient of particle–particle and particle–CC contacts.
    restitution : coefficient of restitution in (0, 1].
    rolling_friction : rolling-resistance coefficient mu_r (torque mu_r R* F_n); 0 disables it.
    rolling_model : ``epsd`` (elastic–plastic spring-dashpot), ``constant`` or ``none``.
    species_overrides : {species name: {friction|restitution|rolling_friction: value}}.
    gravity_m_per_s2 : magnitude of real gravity (along -z).
    gravity_scale : shortcut factor on gravity (1 = real).
    modulus_scale : shortcut factor on every Young's modulus (softened contacts).
    modulus_cap_Pa : shortcut: no species is stiffer than this after scaling (Pa); ``None`` = no cap.
        The used modulus is min(E x modulus_scale, modulus_cap_Pa): moduli of electrode phases span
        200 GPa (NMC) to 1 GPa (CB), and a uniform factor leaves the stiffest one dictating dt.
    fines_radius_um : particles with a radius below this (um) count as fines.
    fines_density_scale : shortcut factor on the density of the fines (1 = real).
    background_damping_per_s : viscous damping rate during settling (1/s); ``None`` picks
        2 sqrt(g'/H0) with H0 the initial bed height (a fall is damped within about its own time).
    ke_threshold_ratio : converged when mean KE per particle < ratio x mean(m g' d).
    max_steps : give up (converged = False in the report) after this many steps.
    check_every_steps : how often convergence is tested.
    rayleigh_fraction : time step as a fraction of the Rayleigh time of the softened particles.
    steps_per_contact : time steps per Hertz collision at the settling impact speed (the other
        time-step criterion; the smaller dt wins).
    max_overlap_ratio : allowed max overlap / smaller radius at the end (checked).
    """

    friction: float = 0.5
    restitution: float = 0.3
    rolling_friction: float = 0.05
    rolling_model: str = "epsd"
    species_overrides: dict[str, dict[str, float]] = field(default_factory=dict)
    gravity_m_per_s2: float = 9.81
    gravity_scale: float = 1.0
    modulus_scale: float = 1.0
    modulus_cap_Pa: float | None = 1.0e7
    fines_radius_um: float = 1.5
    fines_density_scale: float = 10.0
    background_damping_per_s: float | None = None
    ke_threshold_ratio: float = 1e-4
    max_steps: int = 200_000
    check_every_steps: int = 500
    rayleigh_fraction: float = 0.2
    steps_per_contact: float = 20.0
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

        req(num("friction") >= 0, "friction", ">= 0")
        req(0 < num("restitution") <= 1, "restitution", "in (0, 1]")
        req(num("rolling_friction") >= 0, "rolling_friction", ">= 0")
        req(self.rolling_model in ROLLING_MODELS, "rolling_model", f"one of {ROLLING_MODELS}")
        req(num("gravity_m_per_s2") > 0, "gravity_m_per_s2", "> 0 (m/s^2)")
        req(num("gravity_scale") > 0, "gravity_scale", "> 0")
        req(0 < num("modulus_scale") <= 1, "modulus_scale", "in (0, 1] (1 = real moduli)")
        if self.modulus_cap_Pa is not None:
            req(num("modulus_cap_Pa") > 0, "modulus_cap_Pa", "null or > 0 (Pa)")
        req(num("fines_radius_um") >= 0, "fines_radius_um", ">= 0 (um)")
        req(num("fines_density_scale") >= 1, "fines_density_scale", ">= 1")
        if self.background_damping_per_s is not None:
            req(num("background_damping_per_s") >= 0, "background_damping_per_s", "null or >= 0 (1/s)")
        req(num("ke_threshold_ratio") > 0, "ke_threshold_ratio", "> 0")
        for key in ("max_steps", "check_every_steps"):
            v = getattr(self, key)
            req(isinstance(v, int) and not isinstance(v, bool) and v >= 1, key, "an integer >= 1")
        req(0 < num("rayleigh_fraction") <= 0.5, "rayleigh_fraction", "in (0, 0.5]")
        req(num("steps_per_contact") >= 10, "steps_per_contact", ">= 10")
        req(0 < num("max_overlap_ratio") < 0.2, "max_overlap_ratio", "in (0, 0.2)")
        if not isinstance(self.species_overrides, dict):
            raise ConfigError(
                "settle.species_overrides", self.species_overrides, "a mapping species -> {key: value}"
            )
        for name, ov in self.species_overrides.items():
            if not isinstance(ov, dict):
                raise ConfigError(
                    f"settle.species_overrides.{name}", ov, f"a mapping with keys among {_OVERRIDE_KEYS}"
                )
            for k, v in ov.items():
                if k not in _OVERRIDE_KEYS:
                    raise ConfigError(
                        f"settle.species_overrides.{name}.{k}", v, f"a key among {_OVERRIDE_KEYS}"
                    )
                ok = (
                    isinstance(v, (int, float))
                    and not isinstance(v, bool)
                    and math.isfinite(v)
                    and (0 < v <= 1 if k == "restitution" else v >= 0)
                )
                if not ok:
                    raise ConfigError(
                        f"settle.species_overrides.{name}.{k}",
                        v,
                        "in (0, 1]" if k == "restitution" else ">= 0",
                    )


def used_modulus_Pa(youngs_modulus_Pa: float, p: SettleParams) -> float:
    """Softened Young's modulus (Pa) of a species during settling."""
    e = youngs_modulus_Pa * p.modulus_scale
    return min(e, p.modulus_cap_Pa) if p.modulus_cap_Pa is not None else e


def _materials(micro: Microstructure, p: SettleParams) -> list[Any]:
    from electrodem.engine import Material

    unknown = sorted(set(p.species_overrides) - {s.name for s in micro.species})
    if unknown:
        raise ConfigError(
            f"settle.species_overrides.{unknown[0]}",
            p.species_overrides[unknown[0]],
            f"a species of the microstructure: {[s.name for s in micro.species]}",
        )
    mats = []
    for s in micro.species:
        ov = p.species_overrides.get(s.name, {})
        mats.append(
            Material(
                name=s.name,
                density_kg_per_m3=s.density_kg_per_m3,
                youngs_modulus_Pa=used_modulus_Pa(s.youngs_modulus_Pa, p),
                poisson_ratio=s.poisson_ratio,
                restitution=ov.get("restitution", p.restitution),
                friction=ov.get("friction", p.friction),
                rolling_friction=ov.get("rolling_friction", p.rolling_friction),
            )
        )
    # The current collector takes the stiffest species' (softened) modulus and the default surface values.
    stiff = max(micro.species, key=lambda s: s.youngs_modulus_Pa)
    mats.append(
        Material(
            name="current_collector",
            density_kg_per_m3=stiff.density_kg_per_m3,
            youngs_modulus_Pa=used_modulus_Pa(stiff.youngs_modulus_Pa, p),
            poisson_ratio=stiff.poisson_ratio,
            restitution=p.restitution,
            friction=p.friction,
            rolling_friction=p.rolling_friction,
        )
    )
    return mats


def bed_profile(
    z_m: np.ndarray, r_m: np.ndarray, area_m2: float, dz_m: float
) -> tuple[np.ndarray, np.ndarray]:
    """Solid fraction in horizontal slabs of thickness dz_m: (slab lower edges (m), fraction).

    Exact sphere–slab intersection volumes: a sphere cap below height h has volume pi h^2 (3r - h) / 3.
    """
    top = float(np.max(z_m + r_m)) if len(z_m) else 0.0
    edges = np.arange(0.0, top + dz_m, dz_m)

    vol = np.zeros(len(edges) - 1)
    # Chunk the particles so memory stays small for big beds.
    for s in range(0, len(z_m), 20000):
        zz, rr = z_m[s : s + 20000], r_m[s : s + 20000]
        t = np.clip(edges[None, :] - (zz - rr)[:, None], 0.0, 2.0 * rr[:, None])
        capv = np.pi * t**2 * (3.0 * rr[:, None] - t) / 3.0
        vol += np.diff(capv, axis=1).sum(axis=0)
    return edges[:-1], vol / (area_m2 * dz_m)


def bed_packing(z_m: np.ndarray, r_m: np.ndarray, area_m2: float) -> tuple[float, float]:
    """(packing fraction of the bed, bed top height (m)).

    The solid-fraction profile is taken in slabs one smallest diameter thick; the bulk fraction is
    the median of the slabs between 20 % and 80 % of the top particle surface; the bed top is the
    highest slab whose fraction is still above half of that bulk value; the packing fraction is the
    solid volume below the top over area x top.
    """
    dz = 2.0 * float(r_m.min())
    z0, prof = bed_profile(z_m, r_m, area_m2, dz)
    top_surface = z0[-1] + dz
    mid = (z0 >= 0.2 * top_surface) & (z0 <= 0.8 * top_surface)
    bulk = float(np.median(prof[mid])) if np.any(mid) else float(prof.mean())
    above = np.nonzero(prof > 0.5 * bulk)[0]
    top = float(z0[above[-1]] + dz) if len(above) else top_surface
    phi = float(np.sum(prof[z0 < top]) * dz / top)
    return phi, top


def settle(
    micro: Microstructure,
    params: SettleParams,
    options: EngineOptions,
    *,
    checkpoint_path: Path | None = None,
    progress: bool = True,
) -> tuple[Microstructure, dict[str, Any]]:
    """Settle ``micro`` under gravity onto the current collector; returns (settled copy, report).

    The report holds steps, simulated time (s), dt (s), packing fraction of the bed, mean coordination
    number (contacts per particle), max overlap / smaller radius, kinetic energy (J), convergence
    flag and the shortcuts used; the same goes into ``metadata["settle"]``.
    """
    from electrodem.engine import ContactModel, Simulation, Wall, init

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
    g = params.gravity_m_per_s2 * params.gravity_scale
    mats = _materials(micro, params)
    fines = micro.radii_m < params.fines_radius_um * 1e-6
    dens = micro.densities_kg_per_m3 * np.where(fines, params.fines_density_scale, 1.0)
    masses = micro.volumes_m3 * dens
    h0 = float(np.max(micro.positions_m[:, 2] + micro.radii_m))
    damping = params.background_damping_per_s
    if damping is None:
        damping = 2.0 * math.sqrt(g / h0)
    contact = ContactModel(rolling=params.rolling_model if params.rolling_friction > 0 else "none")
    sim = Simulation(
        mats,
        box_m=micro.box_m,
        periodic=micro.periodic,
        contact=contact,
        walls=[Wall((0.0, 0.0, 0.0), (0.0, 0.0, 1.0), "current_collector", name="current_collector")],
        gravity_m_per_s2=(0.0, 0.0, -g),
        rayleigh_fraction=params.rayleigh_fraction,
        steps_per_contact=params.steps_per_contact,
        impact_speed_m_per_s=math.sqrt(2.0 * g * h0),
        background_damping_per_s=damping,
        options=options,
    )
    scalings = {
        "modulus_scale": params.modulus_scale,
        "modulus_cap_Pa": params.modulus_cap_Pa,
        "modulus_factor_by_species": {
            s.name: used_modulus_Pa(s.youngs_modulus_Pa, params) / s.youngs_modulus_Pa for s in micro.species
        },
        "gravity_scale": params.gravity_scale,
        "fines_radius_um": params.fines_radius_um,
        "fines_density_scale": params.fines_density_scale,
        "fines_count": int(fines.sum()),
        "background_damping_per_s": damping,
    }
    sim.scalings.update(scalings)
    sim.add_particles(
        micro.positions_m,
        micro.radii_m,
        micro.species_id.astype(int),
        masses_kg=masses,
        velocities_m_per_s=micro.velocities_m_per_s,
    )
    lift = float(np.mean(masses * g * 2.0 * micro.radii_m))
    threshold_J = params.ke_threshold_ratio * lift

    # Before the top particles had time to fall the bed height, a low kinetic energy means "not yet
    # moving", not "settled".
    t_fall = math.sqrt(2.0 * h0 / g)

    def calm(s: Any) -> bool:
        return s.time_s >= t_fall and s.diagnostics()["kinetic_energy_J"] / s.n < threshold_J

    res = sim.run(
        steps=params.max_steps,
        until=calm,
        every=params.check_every_steps,
        progress=progress,
        checkpoint_path=checkpoint_path,
    )
    converged = res.stopped_by == "until"
    diag = sim.diagnostics()
    st = sim.state()
    contacts = sim.contacts()
    pos = st["positions_m"]
    area = float(micro.box_m[0] * micro.box_m[1])
    phi, top = bed_packing(pos[:, 2], st["radii_m"], area)
    report: dict[str, Any] = {
        "steps": int(res.steps),
        "simulated_time_s": float(res.time_s),
        "dt_s": float(sim.dt_s),
        "time_step_rule": sim.time_step_report.rule if sim.time_step_report else "unknown",
        "wall_time_s": float(res.wall_time_s),
        "packing_fraction": phi,
        "bed_top_z_m": top,
        "mean_coordination_number": 2.0 * len(contacts.i) / micro.n,
        "max_overlap_ratio": float(diag["max_overlap_ratio"]),
        "kinetic_energy_per_particle_J": diag["kinetic_energy_J"] / micro.n,
        "ke_threshold_per_particle_J": threshold_J,
        "current_collector_pressure_Pa": float(sim.wall_state()[0]["pressure_Pa"]),
        "converged": bool(converged),
        "scalings": scalings,
        "n_particles": int(micro.n),
    }
    if report["max_overlap_ratio"] > params.max_overlap_ratio:
        raise SettleError(
            f"max overlap / radius = {report['max_overlap_ratio']:.3g} exceeds settle.max_overlap_ratio = "
            f"{params.max_overlap_ratio}: raise settle.modulus_cap_Pa (now {params.modulus_cap_Pa}) / "
            "settle.modulus_scale or lower "
            f"settle.gravity_scale / settle.fines_density_scale"
        )
    # Reorder nothing: the engine keeps particle order, so ids and species carry over as they are.
    out = micro.with_(
        positions_m=pos,
        velocities_m_per_s=st["velocities_m_per_s"],
        contacts=contacts,
        time_s=micro.time_s + float(res.time_s),
        metadata={
            "stage": "settled",
            "settle": {**report, "params": asdict(params), "engine": sim.describe()},
        },
    )
    sim.free()
    return out, report
