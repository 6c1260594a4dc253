"""Dry blending with PTFE fibrillation agents in a dense Lees–Edwards shear cell (issue #13, items 1–2).

1. **Packing** (`densify`): the placed AM / CB / PTFE powder (a loose layer) becomes a fully periodic box
   at ``start_solid_fraction``: the radii grow by small stages in the placed box with frictionless,
   damped contacts (Lubachevsky–Stillinger-type packing generation), then lengths are scaled back so that
   every particle has its own radius again in a box smaller by the same factor. Only geometry leaves
   this phase.
2. **Kneading** (`dry_mix`): the box is sheared (flow x, gradient z) at ``shear_rate_per_s`` up to
   ``strain`` at ``temperature_K`` (the Thornton–Ning yield pressures soften with it) under the dough's
   confining pressure ``pressure_MPa``. The box of a Lees–Edwards cell cannot change, so the pressure is
   held by scaling every length of the particles instead (`Barostat`: all radii x g, masses x g^3).
   A uniform scaling of lengths leaves stresses, strains and the agents' dimensionless rules unchanged
   (Hertz forces go as L^2, areas as L^2); at the end lengths are divided by g again: the real radii in
   a box of side L / g. Every ``agent_interval_steps`` the PTFE rules of `electrodem.process.ptfe` act:
   strain from squeezing partners, drawing of beads past their threshold into bonded half-radius pairs,
   anchoring to harder particles and welding of drawn beads; fibril bonds cleave by the bond law.
   Mixing is strain-based, not time-based (a named shortcut: the shear rate is far above a kneader's).

Agent fields carried by the engine state and the snapshot: ``ptfe_mass_kg`` (the real PTFE mass of a
bead; 0 for other particles), ``ptfe_strain`` (plastic shear strain since its last drawing) and
``ptfe_generation`` (times drawn). The report's ``history`` holds the read-outs against shear strain.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from electrodem.config.errors import ConfigError, is_number, require
from electrodem.io.snapshot import Microstructure
from electrodem.process import ptfe
from electrodem.process.engine_map import (
    BondLaw,
    ContactParams,
    ShortcutParams,
    engine_materials,
    shortcuts_log,
)
from electrodem.process.engine_map import masses as engine_masses

CONTACT: dict[str, Any] = {"normal": "thornton_ning", "cohesion": "none", "rolling_friction": 0.0}
"""The dry mix's overrides of the shared ``contact`` group: elastic–plastic contacts (PTFE yields at its
temperature-softened yield pressure), no adhesion (a dense dough is held by pressure and fibrils)."""
SHORTCUTS: dict[str, Any] = {"rayleigh_fraction": 0.2}
FIELDS = ("ptfe_mass_kg", "ptfe_strain", "ptfe_generation", "smeared_mass_kg", "smeared_ptfe_kg")
GROWTH_MODULUS_PA = 1.0e9
"""Packing: Young's modulus of the frictionless growth phase (geometry only)."""
GROWTH_OVERLAP = 0.02
"""Packing: largest overlap / smaller radius a growth stage relaxes back to."""
GROWTH_RELAX_PERIODS = 10.0
"""Packing: longest relaxation per stage, in 1/omega of the heaviest particle's contact."""
HISTORY = ("strain", "time_s", "shear_stress_Pa", "pressure_Pa", "solid_fraction", "degree_of_fibrillation",
           "network_fraction", "fibril_count", "drawn_beads", "bonds_intact", "bonds_broken",
           "am_in_network_fraction", "length_per_ptfe_mass_m_per_kg")


@dataclass
class DryMixParams:
    """Parameters of the dry mix (SI unless the key says otherwise).

    start_solid_fraction : solid fraction of the packing the kneading starts from (0.3–0.64).
    pressure_MPa : confining pressure of the kneaded dough (MPa), held by the `Barostat`.
    shear_rate_per_s : shear rate gamma_dot (1/s); SHORTCUT against ``industrial_shear_rate_per_s``.
    strain : total shear strain of the cell (> 0).
    temperature_K : mixing temperature (K).
    samples : history read-outs over the strain.
    agent_interval_steps : engine steps between two applications of the agent rules and the barostat.
    agents : apply the PTFE rules (false: the same kneading without them, a reference run).
    barostat_gain : largest relative change of the particle lengths per unit shear strain (0: constant
        volume); see `electrodem.engine.shear.Barostat`.
    max_overlap_ratio : engine guard: a contact's elastic overlap / the smaller radius (drawn beads,
        a tenth of the AM size, are squeezed between AM well past the default 0.1).
    max_total_overlap_ratio : engine guard: a particle's summed overlaps / its radius (fines squeezed
        between AM flatten far: crushed carbon-black aggregates).
    growth_per_stage : packing: radius growth factor per stage (> 1).
    growth_stage_steps : packing: engine steps per relaxation chunk.
    industrial_shear_rate_per_s : a real mixer's shear rate (1/s), for the reported speed-up.
    fibrils : `electrodem.process.ptfe.FibrilParams`.
    contact, shortcuts : the shared groups with the step's overrides.
    """

    start_solid_fraction: float = 0.6
    pressure_MPa: float = 0.2
    shear_rate_per_s: float = 2.0e4
    strain: float = 3.0
    temperature_K: float = 333.15
    samples: int = 30
    agent_interval_steps: int = 200
    agents: bool = True
    barostat_gain: float = 0.1
    max_overlap_ratio: float = 0.25
    max_total_overlap_ratio: float = 1.5
    growth_per_stage: float = 1.02
    growth_stage_steps: int = 40
    industrial_shear_rate_per_s: float = 1.0e2
    fibrils: ptfe.FibrilParams = field(default_factory=ptfe.FibrilParams)
    contact: ContactParams = field(default_factory=lambda: ContactParams(**CONTACT, where="dry_mix.contact"))
    shortcuts: ShortcutParams = field(
        default_factory=lambda: ShortcutParams(**SHORTCUTS, where="dry_mix.shortcuts"))

    def __post_init__(self) -> None:
        if isinstance(self.fibrils, dict):
            self.fibrils = ptfe.FibrilParams(**self.fibrils)

        def num(key: str, ok: Any, allowed: str) -> None:
            v = getattr(self, key)
            require(is_number(v) and ok(float(v)), f"dry_mix.{key}", v, allowed)

        def integer(key: str, lo: int) -> None:
            v = getattr(self, key)
            require(isinstance(v, int) and not isinstance(v, bool) and v >= lo, f"dry_mix.{key}", v,
                    f"an integer >= {lo}")

        num("start_solid_fraction", lambda v: 0.3 <= v <= 0.64, "in [0.3, 0.64]")
        num("pressure_MPa", lambda v: v > 0, "> 0 (MPa)")
        num("shear_rate_per_s", lambda v: v > 0, "> 0 (1/s)")
        num("strain", lambda v: v > 0, "> 0")
        num("temperature_K", lambda v: v > 0, "> 0 (K)")
        num("barostat_gain", lambda v: 0 <= v <= 1, "in [0, 1] (per unit strain; 0: constant volume)")
        num("max_overlap_ratio", lambda v: 0 < v <= 0.5, "in (0, 0.5]")
        num("max_total_overlap_ratio", lambda v: 0.5 <= v <= 3, "in [0.5, 3]")
        num("growth_per_stage", lambda v: 1.0 < v <= 1.05, "in (1, 1.05]")
        num("industrial_shear_rate_per_s", lambda v: v > 0, "> 0 (1/s)")
        integer("samples", 1)
        integer("agent_interval_steps", 1)
        integer("growth_stage_steps", 1)
        require(isinstance(self.agents, bool), "dry_mix.agents", self.agents, "true or false")
        require(isinstance(self.fibrils, ptfe.FibrilParams), "dry_mix.fibrils", self.fibrils,
                "a mapping of FibrilParams keys")
        require(isinstance(self.contact, ContactParams), "dry_mix.contact", self.contact, "a ContactParams")
        require(isinstance(self.shortcuts, ShortcutParams), "dry_mix.shortcuts", self.shortcuts,
                "a ShortcutParams")


@dataclass(frozen=True)
class BeadMaterial:
    """What the rules need of a fibrillating material record (SI)."""

    transition_K: float
    density_kg_per_m3: float


def bead_materials(micro: Microstructure, library: dict[str, Any]) -> dict[int, BeadMaterial]:
    """Species index -> `BeadMaterial` for every fibrillating species of ``micro`` (`ptfe.fibrillating`)."""
    out = {}
    for k, s in enumerate(micro.species):
        rec = library.get(s.name)
        if rec is not None and ptfe.fibrillating(rec):
            out[k] = BeadMaterial(float(rec.extra["transition_temperature_C"]) + 273.15, s.density_kg_per_m3)
    return out


def densify(micro: Microstructure, solid_fraction: float, params: DryMixParams, options: Any,
            progress: bool = False) -> tuple[Microstructure, dict[str, Any]]:
    """``micro`` as a fully periodic box at ``solid_fraction`` (module docstring, step 1). Returns the
    dense copy and a report (growth factor, stages, steps, solid fractions, largest overlap / radius)."""
    from electrodem.engine import ContactModel, Guards, Material, Simulation, init

    box = np.asarray(micro.box_m, float)
    phi0 = float(micro.volumes_m3.sum() / np.prod(box))
    if phi0 >= solid_fraction:
        return micro.with_(periodic=(True, True, True)), {
            "growth_factor": 1.0, "stages": 0, "steps": 0, "initial_solid_fraction": phi0,
            "solid_fraction": phi0, "max_overlap_ratio": 0.0}
    init(options)
    g_end = (solid_fraction / phi0) ** (1.0 / 3.0)
    stages = int(math.ceil(math.log(g_end) / math.log(params.growth_per_stage)))
    per = g_end ** (1.0 / stages)
    # Frictionless, damped spheres: only the geometry of this phase is kept.
    mats = [Material(name=s.name, density_kg_per_m3=s.density_kg_per_m3, youngs_modulus_Pa=GROWTH_MODULUS_PA,
                     poisson_ratio=0.3, restitution=0.2, friction=0.0) for s in micro.species]
    sim = Simulation(mats, box_m=box, periodic=(True, True, True),
                     contact=ContactModel(tangential="none", rolling="none"),
                     gravity_m_per_s2=(0.0, 0.0, 0.0), guards=Guards(max_overlap_ratio=0.3), options=options)
    bar = None
    try:
        sim.add_particles(np.mod(micro.positions_m, box), micro.radii_m, micro.species_id.astype(int))
        sim.run(steps=0, progress=False)
        # Critical damping of the heaviest particles on a contact at 1 % overlap (linearised Hertz,
        # k = 2 E* sqrt(R* d)); they set the pace; the fines' own contacts damp them (restitution).
        big = int(np.argmax(micro.radii_m))
        rho = float(micro.masses_kg[big] / micro.volumes_m3[big])
        e_star = GROWTH_MODULUS_PA / (2.0 * (1.0 - 0.3**2))
        omega = math.sqrt(0.048 * e_star / (rho * float(micro.radii_m[big]) ** 2))
        sim.set_background_damping(2.0 * omega)
        relax_steps = GROWTH_RELAX_PERIODS / (omega * sim.dt_s)
        relax_chunks = max(1, math.ceil(relax_steps / params.growth_stage_steps))

        def worst_overlap() -> float:
            ca = sim.contact_arrays()
            if not len(ca["i"]):
                return 0.0
            rr = sim.state()["radii_m"]
            return float((ca["overlap_m"] / np.minimum(rr[ca["i"]], rr[ca["j"]])).max())

        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=stages, unit="stage", desc="packing", leave=False, dynamic_ncols=True)
        for k in range(stages):
            sim.set_radii(sim.ids, micro.radii_m * per ** (k + 1), rescale_mass=True)
            # Relax until the largest overlap is back below GROWTH_OVERLAP (the heavy AM move far
            # slower than the fines), at most GROWTH_RELAX_PERIODS / omega.
            for _ in range(relax_chunks):
                sim.run(steps=params.growth_stage_steps, progress=False)
                if worst_overlap() < GROWTH_OVERLAP:
                    break
            if bar is not None:
                bar.update(1)
        x = sim.state()["positions_m"]
        worst = worst_overlap()
        steps = int(sim.step)
    finally:
        if bar is not None:
            bar.close()
        sim.free()
    out = micro.with_(positions_m=x / g_end, box_m=box / g_end, periodic=(True, True, True),
                      velocities_m_per_s=np.zeros_like(x), contacts=None)
    return out, {"growth_factor": g_end, "stages": stages, "steps": steps, "initial_solid_fraction": phi0,
                 "solid_fraction": float(out.volumes_m3.sum() / np.prod(out.box_m)),
                 "max_overlap_ratio": worst}


class _Agents:
    """The rules of `electrodem.process.ptfe` applied to a live simulation (host side, between engine
    chunks). ``scale`` arguments are the barostat's length factor (real length = engine length / scale)."""

    def __init__(self, sim: Any, micro: Microstructure, beads: dict[int, BeadMaterial], params: DryMixParams,
                 law: BondLaw) -> None:
        self.sim, self.beads, self.f = sim, beads, params.fibrils
        mats = sim.materials.materials
        t = params.temperature_K
        self.p_y_mat = np.array([(m.yield_pressure_Pa or 0.0) * m.softening_factor(t) for m in mats])
        for k in beads:
            require(self.p_y_mat[k] > 0, f"dry_mix.contact.yield_pressure_MPa.{mats[k].name}",
                    mats[k].yield_pressure_Pa, "> 0 for a fibrillating bead (its squeeze is measured by it)")
        self.threshold = {k: ptfe.threshold_strain(t, b.transition_K, mats[k].softening_factor(t), self.f)
                          for k, b in beads.items()}
        self.bond = law.extension("ptfe_fibril")
        sim.add_extension(self.bond)
        bead = np.isin(micro.species_id, list(beads))
        am = np.array([s.role == "AM" for s in micro.species])[micro.species_id]
        self.r_min = self.f.min_bead_radius_ratio * float(np.median(micro.radii_m[am])) if am.any() else 0.0
        for name in FIELDS:
            sim.add_field(name, np.int64 if name == "ptfe_generation" else np.float64)
        sim.field("ptfe_mass_kg")[bead] = micro.masses_kg[bead]
        self.ptfe_total = float(micro.masses_kg[bead].sum())
        # Real masses (the engine's carry the fines' mass scaling): what rule 7 books on the partner.
        self.real_mass = dict(zip(sim.ids.tolist(), micro.masses_kg.tolist(), strict=True))
        soft = self.p_y_mat[micro.species_id] < self.p_y_mat.max()
        self.soft_other_kg = float(micro.masses_kg[soft & ~bead].sum())
        self.density = next(iter(beads.values())).density_kg_per_m3 if beads else 1.0
        self.events = {"drawing": 0, "thinning": 0, "smeared_off": 0}

    def _contacts(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]:
        sim = self.sim
        st, ca = sim.state(), sim.contact_arrays()
        lz = float(sim.box_m[2])
        return st, ca, ptfe.slip_velocities(ca, st, sim.shear_rate_per_s * lz, lz)

    def apply(self, dt_s: float, scale: float) -> None:
        """The rules over the last ``dt_s`` (s) of kneading: 1 (strain), 6–7 (crushed particles), 4
        (anchors, welds), 2–3 (drawing)."""
        st, ca, slip = self._contacts()
        mat = st["material_id"]
        bead = np.isin(mat, list(self.beads))
        p_y = self.p_y_mat[mat]
        strain = self.sim.field("ptfe_strain")
        strain += ptfe.strain_increments(ca, slip, bead, p_y, st["radii_m"], dt_s)
        if self._crushed(st, ca, p_y, scale):
            st, ca, slip = self._contacts()
            mat = st["material_id"]
            bead = np.isin(mat, list(self.beads))
            p_y = self.p_y_mat[mat]
            strain = self.sim.field("ptfe_strain")
        drawn = bead & (self.sim.field("ptfe_generation") > 0)
        hit = ptfe.anchor_pairs(ca, drawn, p_y, self.f)
        if hit.size:
            self._bond_new(ca["i"][hit], ca["j"][hit])
        thr = np.full(self.sim.n, np.inf)
        for k, v in self.threshold.items():
            thr[mat == k] = v
        ready = np.flatnonzero(bead & (strain >= thr) & (0.5 * st["radii_m"] / scale >= self.r_min))
        if ready.size:
            dirs = ptfe.drawing_directions(ca, slip, ready, np.array([1.0, 0.0, 1.0]))
            self._draw(ready, dirs, st, ca)

    def _crushed(self, st: dict[str, np.ndarray], ca: dict[str, np.ndarray], p_y: np.ndarray,
                 scale: float) -> bool:
        """Rules 6–7: soft particles (softer than the hardest of the mix) flattened past the limit thin;
        those at the smallest bead radius already are smeared onto a partner. True if anything changed."""
        sim, limit, floor = self.sim, self.f.smear_overlap_ratio, self.r_min * scale
        r = st["radii_m"]
        tot, cnt = np.zeros(sim.n), np.zeros(sim.n)
        for end in (ca["i"], ca["j"]):
            np.add.at(tot, end, np.maximum(ca["overlap_m"], 0.0))
            np.add.at(cnt, end, 1.0)
        soft = p_y < self.p_y_mat.max()
        r_new = np.where(soft, ptfe.smeared_radii(r, tot, cnt, limit, floor), r)
        left = tot - (r - r_new) * cnt  # summed overlap once thinned
        stuck = np.flatnonzero(soft & (r_new <= floor * (1.0 + 1e-9)) & (left > limit * r_new))
        if stuck.size:
            self._smear_onto(stuck, ptfe.crushed_onto(ca, stuck, p_y))
            return True  # indices changed: thinning waits for the next interval
        thin = np.flatnonzero(r_new < r)
        if thin.size:
            sim.set_radii(sim.ids[thin], r_new[thin], rescale_mass=False)
            self.events["thinning"] += int(thin.size)
        return bool(thin.size)

    def _smear_onto(self, stuck: np.ndarray, onto: np.ndarray) -> None:
        """Rule 7 for the particles at external indices ``stuck`` (partners ``onto``, -1 = none): their
        mass, and whatever was smeared onto them before, is booked on the partner; they leave."""
        sim = self.sim
        ok = onto >= 0
        stuck, onto = stuck[ok], onto[ok]
        if not stuck.size:
            return
        ptfe_kg = sim.field("ptfe_mass_kg")[stuck]
        # A bead's real mass is its PTFE mass (drawn beads have new ids); others' from the snapshot.
        own = np.where(ptfe_kg > 0, ptfe_kg, [self.real_mass.get(int(p), 0.0) for p in sim.ids[stuck]])
        np.add.at(sim.field("smeared_mass_kg"), onto, own + sim.field("smeared_mass_kg")[stuck])
        np.add.at(sim.field("smeared_ptfe_kg"), onto, ptfe_kg + sim.field("smeared_ptfe_kg")[stuck])
        sim.remove_particles(sim.ids[stuck])
        self.events["smeared_off"] += int(stuck.size)

    def _intact_bonds(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.bond.n:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        bs = self.bond.state()
        ok = bs["intact"]
        return bs["i"][ok].astype(np.int64), bs["j"][ok].astype(np.int64)

    def _bond_new(self, i: np.ndarray, j: np.ndarray) -> None:
        """Bond the pairs i[k]–j[k] that no intact bond joins yet."""
        bi, bj = self._intact_bonds()
        have = set(zip(np.minimum(bi, bj).tolist(), np.maximum(bi, bj).tolist(), strict=True))
        pairs = {(min(a, b), max(a, b)) for a, b in zip(i.tolist(), j.tolist(), strict=True)} - have
        if pairs:
            ii, jj = np.array(sorted(pairs)).T
            self.bond.add(ii, jj)

    def _draw(self, ready: np.ndarray, dirs: np.ndarray, st: dict[str, np.ndarray],
              ca: dict[str, np.ndarray]) -> None:
        """Rule 3 for the beads at external indices ``ready`` (drawing directions ``dirs``, contacts
        ``ca``): each daughter takes half the radius, or less where a neighbour leaves less room
        (`ptfe.clear_radius`; a bead with too little room waits). The parent's bonds go to its daughter
        nearer the other end; its agent fields are halved (masses) or carried (generation + 1)."""
        sim = self.sim
        x, r = st["positions_m"], st["radii_m"]
        fit, radii = [], []
        for k, (b, at) in enumerate(zip(ready.tolist(), ptfe.contacts_at(ca, ready), strict=True)):
            nb = np.where(ca["i"][at] == b, ca["j"][at], ca["i"][at])
            centres = ptfe.split_bead(x[b], r[b], 1.0, 1.0, dirs[k])[0]
            rd = [ptfe.clear_radius(0.5 * r[b], np.linalg.norm(sim.min_image(x[nb] - c), axis=1) - r[nb])
                  for c in centres]
            if min(rd) > 0:
                fit.append(k)
                radii += rd
        if not fit:
            return
        ready, dirs = ready[fit], dirs[fit]
        parents = sim.ids[ready]
        bi, bj = self._intact_bonds()
        going = np.isin(bi, ready) | np.isin(bj, ready)
        old_bonds = np.stack([sim.ids[bi[going]], sim.ids[bj[going]]], axis=1)
        f = {name: sim.field(name)[ready].copy() for name in FIELDS}
        pos, mass, gmass, halves = [], [], [], []
        for k, b in enumerate(ready):
            c2, _, mh, ph = ptfe.split_bead(x[b], r[b], st["masses_kg"][b], f["ptfe_mass_kg"][k], dirs[k])
            pos.append(c2)
            mass += [mh, mh]
            gmass += [0.5 * st["gravitational_masses_kg"][b]] * 2
            halves.append(ph)
        sim.remove_particles(parents)
        first = sim.n
        sim.add_particles(np.concatenate(pos), np.array(radii), np.repeat(st["material_id"][ready], 2),
                          velocities_m_per_s=np.repeat(st["velocities_m_per_s"][ready], 2, axis=0),
                          angular_velocities_rad_per_s=np.repeat(st["angular_velocities_rad_per_s"][ready], 2,
                                                                 axis=0),
                          masses_kg=np.array(mass), gravitational_masses_kg=np.array(gmass))
        sim.field("ptfe_mass_kg")[first:] = np.repeat(halves, 2)
        sim.field("ptfe_strain")[first:] = 0.0
        sim.field("ptfe_generation")[first:] = np.repeat(f["ptfe_generation"] + 1, 2)
        for name in ("smeared_mass_kg", "smeared_ptfe_kg"):
            sim.field(name)[first:] = np.repeat(0.5 * f[name], 2)
        # The daughters' own bond, then each old bond re-attached to the daughter nearer its other end.
        daughters = {int(p): (first + 2 * k, first + 2 * k + 1) for k, p in enumerate(parents.tolist())}
        index = {int(p): k for k, p in enumerate(sim.ids.tolist())}
        xs = sim.state()["positions_m"]

        def end(p: int, other: int) -> int:
            if p not in daughters:
                return index[p]
            target = xs[daughters[other][0]] if other in daughters else xs[index[other]]
            d0, d1 = daughters[p]
            return d0 if np.linalg.norm(sim.min_image(xs[d0] - target)) <= np.linalg.norm(
                sim.min_image(xs[d1] - target)) else d1

        new_i = [d[0] for d in daughters.values()] + [end(a, b) for a, b in old_bonds.tolist()]
        new_j = [d[1] for d in daughters.values()] + [end(b, a) for a, b in old_bonds.tolist()]
        keep = np.array(new_i) != np.array(new_j)
        self._bond_new(np.array(new_i)[keep], np.array(new_j)[keep])
        self.events["drawing"] += len(ready)

    def metrics(self, am_roles: np.ndarray, scale: float) -> dict[str, Any]:
        """`ptfe.fibril_metrics` at real lengths, the event counts, the smeared fractions (PTFE, other
        soft particles), the fraction of AM carrying smeared mass, and the particles' real volumes
        (``_volumes_m3``, for the solid fraction)."""
        sim = self.sim
        st = sim.state()
        mat = st["material_id"]
        bi, bj = self._intact_bonds()
        vec = sim.min_image(st["positions_m"][bj] - st["positions_m"][bi])
        r = st["radii_m"] / scale
        smeared, smeared_ptfe = sim.field("smeared_mass_kg"), sim.field("smeared_ptfe_kg")
        out = ptfe.fibril_metrics(sim.field("ptfe_mass_kg"), sim.field("ptfe_generation"), r,
                                  np.isin(mat, list(self.beads)), am_roles[mat], bi, bj, vec, self.density,
                                  elsewhere_kg=float(smeared_ptfe.sum()))
        am = am_roles[mat]
        out.update(
            bonds_intact=int(len(bi)), bonds_broken=int(self.bond.broken_count) if self.bond.n else 0,
            **{f"{k}_events": v for k, v in self.events.items()},
            smeared_ptfe_fraction=float(smeared_ptfe.sum() / self.ptfe_total) if self.ptfe_total else 0.0,
            smeared_other_fraction=float((smeared - smeared_ptfe).sum() / self.soft_other_kg)
            if self.soft_other_kg else 0.0,
            am_coated_fraction=float(np.mean(smeared[am] > 0)) if am.any() else 0.0,
            _volumes_m3=4.0 / 3.0 * np.pi * r**3)
        return out


def dry_mix(micro: Microstructure, params: DryMixParams, options: Any, library: dict[str, Any],
            law: BondLaw, *, csv_path: Path | None = None,
            progress: bool = False) -> tuple[Microstructure, dict[str, Any]]:
    """Pack ``micro`` and knead it with the PTFE agents (module docstring); returns (the kneaded dough as a
    fully periodic microstructure with bonds and agent fields, report)."""
    from electrodem.engine import Guards, Simulation, init
    from electrodem.engine.shear import Barostat, impose_affine_velocity, shear_state, write_series_csv
    from electrodem.process.live import with_engine_extras

    if not isinstance(params, DryMixParams):
        raise ConfigError("dry_mix", type(params).__name__, "a DryMixParams")
    beads = bead_materials(micro, library)
    dough, dens = densify(micro, params.start_solid_fraction, params, options, progress=progress)
    box = np.asarray(dough.box_m, float)
    need = 4.0 * float(dough.radii_m.max()) + 0.5 * float(dough.radii_m.min())
    if not np.all(box > need):
        raise ConfigError("dry_mix.start_solid_fraction", params.start_solid_fraction,
                          f"a packed box whose sides ({(box * 1e6).round(2).tolist()} µm) exceed "
                          f"{need * 1e6:.3g} µm (twice the largest diameter plus the skin): enlarge the RVE")
    init(options)
    c, sh = params.contact, params.shortcuts
    mats = engine_materials(dough, c, sh)[:-1]  # no current collector in a fully periodic box
    masses, weights, fines = engine_masses(dough, sh)
    rate = float(params.shear_rate_per_s)
    sim = Simulation(mats, box_m=box, periodic=(True, True, True), contact=c.model(),
                     gravity_m_per_s2=(0.0, 0.0, 0.0), rayleigh_fraction=sh.rayleigh_fraction,
                     impact_speed_m_per_s=abs(rate) * float(box[2]), options=options, shear_rate_per_s=rate,
                     guards=Guards(max_overlap_ratio=params.max_overlap_ratio,
                                   max_total_overlap_ratio=params.max_total_overlap_ratio))
    baro = Barostat(params.pressure_MPa * 1e6, params.barostat_gain)
    bar = None
    try:
        sim.set_temperature(params.temperature_K)
        sim.add_particles(np.mod(dough.positions_m, box), dough.radii_m, dough.species_id.astype(int),
                          masses_kg=masses, gravitational_masses_kg=weights)
        agents = _Agents(sim, dough, beads, params, law)
        am_roles = np.array([s.role == "AM" for s in dough.species])
        impose_affine_velocity(sim, keep_fluctuations=False)
        marks = list(np.linspace(0.0, params.strain, params.samples + 1)[1:])
        history: dict[str, list[float]] = {k: [] for k in HISTORY}
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=params.strain, unit="strain", desc="dry mix", leave=False, dynamic_ncols=True,
                       bar_format="{l_bar}{bar}| {n:.2f}/{total:.2f} [{elapsed}<{remaining}]")
        strain = 0.0
        sim.run(steps=0, progress=False)
        while marks:
            # The time step follows the particle sizes (barostat, drawing): the last one is close enough
            # to aim at the next read-out; the strain is counted from the time actually run.
            left = math.ceil((marks[0] - strain) / (rate * sim.dt_s) - 1e-9)
            t0 = sim.time_s
            sim.run(steps=max(1, min(params.agent_interval_steps, left)), progress=False)
            d_strain = rate * (sim.time_s - t0)
            strain += d_strain
            pressure = float(np.trace(sim.stress_tensor()) / 3.0)
            if params.agents:
                agents.apply(sim.time_s - t0, baro.scale)
            baro.update(sim, pressure, d_strain)
            if bar is not None:
                bar.update(d_strain)
            if strain >= marks[0] * (1.0 - 1e-9):
                marks.pop(0)
                fm = agents.metrics(am_roles, baro.scale)
                solid = float(np.sum(fm.pop("_volumes_m3")) / np.prod(box / baro.scale))
                rh = shear_state(sim)
                row = {"strain": strain, "time_s": sim.time_s, "shear_stress_Pa": rh["shear_stress_Pa"],
                       "pressure_Pa": rh["pressure_Pa"], "solid_fraction": solid, **fm}
                for k in HISTORY:
                    history[k].append(float(row[k]))
        final = agents.metrics(am_roles, baro.scale)
        volumes = final.pop("_volumes_m3")
        g = baro.scale
        st = sim.state()
        live = with_engine_extras(
            Microstructure(positions_m=st["positions_m"] / g, radii_m=st["radii_m"] / g,
                           species_id=st["material_id"].astype(dough.species_id.dtype), species=dough.species,
                           box_m=box / g, periodic=(True, True, True), ids=st["ids"],
                           velocities_m_per_s=st["velocities_m_per_s"] / g,
                           metadata=dict(dough.metadata), time_s=dough.time_s + sim.time_s),
            sim)
        dt = float(sim.dt_s)
        steps = int(sim.step)
    finally:
        if bar is not None:
            bar.close()
        sim.free()
    bonds = live.bonds
    if bonds is not None:
        # Back to real lengths (the barostat's scale; strains and stresses are scale-free).
        bonds = {k: (v / g if k in ("length_m", "radius_m") else v) for k, v in bonds.items()}
    if csv_path is not None:
        write_series_csv(csv_path, HISTORY, history)
    shortcuts = {
        "shear_rate_per_s": rate, "industrial_shear_rate_per_s": params.industrial_shear_rate_per_s,
        "shear_rate_speed_up_factor": rate / params.industrial_shear_rate_per_s,
        "mixing": "strain-based: the cell strain stands for the kneader's work (not its time)",
        "drawn_bead_density_factor_per_generation": ptfe.DRAWN_DENSITY_FACTOR,
        "packing": "radius growth to start_solid_fraction, then lengths scaled back",
        "barostat": "the pressure is held by scaling particle lengths, not the box; undone at the end",
        **shortcuts_log(sh, c, fines), "gravity": "off",
    }
    report = {
        "solid_fraction": float(np.sum(volumes) / np.prod(box / g)),
        "pressure_MPa": params.pressure_MPa,
        "pressure_mean_MPa": float(np.mean(history["pressure_Pa"][len(history["pressure_Pa"]) // 2:]) * 1e-6),
        "barostat_scale": g, "packing": dens, "strain": strain, "shear_rate_per_s": rate,
        "temperature_K": params.temperature_K, "box_um": (box / g * 1e6).tolist(),
        "n_particles_start": int(dough.n), "n_particles": int(live.n), "steps": steps, "dt_s": dt,
        "fibrils": final, "history": history, "shortcuts": shortcuts, "fibril_params": asdict(params.fibrils),
    }
    out = live.with_(bonds=bonds, metadata={**live.metadata, "stage": "dry_mixed",
                                            "shortcuts": {**dough.metadata.get("shortcuts", {}),
                                                          "dry_mix": shortcuts}})
    return out, report
