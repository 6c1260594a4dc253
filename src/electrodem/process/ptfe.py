"""PTFE fibrillation agents: small rules of a bead's state and contacts (DOMAIN.md §7, §8; issue #13).

No published particle model of PTFE fibrillation exists; these rules are the project's. Each one reads
only material records (contact yield pressures and their temperature softening, the crystal
transition) and the mechanics of the contacts, never a species name or a formulation's wt%: a bead
fibrillates when its material record has a crystal ``transition_temperature_C`` (`fibrillating`).

1. **Strain from squeezing partners** (`plastic_work_share`, `squeeze_weight`, `strain_increments`): a
   bead pressed by a partner flows plastically as far as its contact is loaded towards the bead's yield
   pressure p_y,bead(T): weight w = min(1, F_n / (pi a^2 p_y,bead(T))). The slip of the partner over it
   then shears it by |v_slip| dt / (2 r), of which it takes the share s = p_y,partner / (p_y,partner +
   p_y,bead) (the two bodies share the plastic flow by their hardness: the softer flows). So
   d(eps) = sum over contacts of w s |v_slip| dt / (2 r). Contact-based: the cell's affine strain does not
   enter; harder partners and a softer (hotter) PTFE give more strain per unit of cell strain.
2. **Threshold** (`threshold_strain`): none below the crystal transition (phase II PTFE does not
   fibrillate: infinite threshold); above it eps_th = eps_0 x f(T), f the yield softening factor of the
   material record (the threshold falls with temperature as the yield stress does). eps_0 is a bead-level
   value, "calibrated on ..." in the config (Luo 2021's 0.6/0.9 are macroscopic tensile strains).
3. **Drawing** (`split_bead`): a bead past its threshold, whose half radius is not below the smallest bead
   allowed (a fraction of the AM radius: the neighbour grid and time step stay sane), draws into two
   bonded beads of half its radius (less where a neighbour leaves less room, `clear_radius`: no new
   overlap), placed along the drawing direction inside its old sphere, each with exactly half its mass
   and half its PTFE mass (halving is exact in binary floating point: conserved to the last bit). Their
   strain restarts at 0: each generation of drawing needs eps_th more. A bead of mass m at radius r/2
   has the density x 4 and keeps the Rayleigh time (r sqrt(rho)): the time step does not fall
   (`DRAWN_DENSITY_FACTOR`, a named shortcut).
4. **Anchoring and welding** (`anchor_pairs`): a drawn bead pressed onto a harder particle at a mean
   contact pressure of at least ``anchor_pressure_fraction`` x its own yield pressure bonds to it
   (PTFE pressed into the surface roughness); two drawn beads pressed together likewise weld into one
   network. Cleavage is the bond law's own failure (`electrodem.engine.bonds`): over-kneading shortens
   fibrils.
5. **Read-outs** (`fibril_metrics`): degree of fibrillation (PTFE mass fraction in drawn beads), fibril
   count (connected PTFE bond networks of >= 2 beads), length per PTFE mass, the real fibril diameter
   (bead volume spread over its length), the orientation tensor of PTFE–PTFE bonds, AM bridged per fibril
   and the fraction of AM held by the network.
6. **Smearing** (`smeared_radii`): a particle softer than the hardest of the mix (a PTFE bead, a
   carbon-black agglomerate) flattened by its partners past ``smear_overlap_ratio`` x its radius (summed
   overlaps: the dough's force chains crush small soft particles) thins at constant mass — it spreads as
   a film the sphere cannot show — instead of passing through its partners.
7. **Smeared onto a partner** (`crushed_onto`): a soft particle already at the smallest bead radius and
   still flattened past the limit is spread onto the harder partner that presses it most: it leaves the
   simulation, its mass (and PTFE mass) booked on that partner (agent fields ``smeared_mass_kg``,
   ``smeared_ptfe_kg``): carbon black smeared onto AM (AM coverage), PTFE filmed onto AM.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from electrodem.config.errors import is_number, require

DRAWN_DENSITY_FACTOR = 4.0
"""Density multiplier of a drawn bead per generation (half the mass at half the radius)."""


@dataclass(frozen=True)
class FibrilParams:
    """Parameters of the PTFE agent rules (the ``dry_mix.fibrils`` mapping).

    threshold_strain : bead-level plastic shear strain at which a bead draws, at the crystal transition
        (falls with temperature as the yield stress does). Assumed; to be calibrated on the film test.
    min_bead_radius_ratio : smallest drawn bead radius / the smallest AM median radius (issue: ~1/20).
    anchor_pressure_fraction : mean contact pressure / the bead's yield pressure at which a drawn bead
        bonds to a harder particle or welds to another drawn bead.
    smear_overlap_ratio : summed overlap / radius past which a bead thins (rule 6).
    source : where the numbers come from.
    """

    threshold_strain: float = 1.0
    min_bead_radius_ratio: float = 0.05
    anchor_pressure_fraction: float = 0.5
    smear_overlap_ratio: float = 0.6
    source: str = ("assumed: threshold of the order of the macroscopic onset (Luo 2021: 0.6-0.9); "
                   "1/20 of the AM radius (issue #13); anchoring at half the yield pressure")
    where: str = field(default="dry_mix.fibrils", repr=False, compare=False)

    def __post_init__(self) -> None:
        w = self.where
        for key in ("threshold_strain", "min_bead_radius_ratio", "anchor_pressure_fraction",
                    "smear_overlap_ratio"):
            v = getattr(self, key)
            require(is_number(v) and v > 0, f"{w}.{key}", v, "a finite number > 0")
        require(self.min_bead_radius_ratio < 1, f"{w}.min_bead_radius_ratio", self.min_bead_radius_ratio,
                "< 1 (a fraction of the AM radius)")
        require(isinstance(self.source, str) and self.source.strip() != "", f"{w}.source", self.source,
                "where the numbers come from, or 'calibrated on ...'")


def fibrillating(material: Any) -> bool:
    """True for a material record with a crystal transition (``transition_temperature_C`` in its
    extra keys): a fibrillating polymer such as PTFE."""
    return is_number((getattr(material, "extra", None) or {}).get("transition_temperature_C"))


def plastic_work_share(p_y_bead_Pa: np.ndarray, p_y_partner_Pa: np.ndarray) -> np.ndarray:
    """Fraction of a contact's plastic flow taken by the bead: p_partner / (p_partner + p_bead), yield
    pressures in Pa at the mixing temperature (an elastic partner, p = inf or 0 = no
    yield given, counts as infinitely hard)."""
    pb = np.asarray(p_y_bead_Pa, float)
    pp = np.asarray(p_y_partner_Pa, float)
    pp = np.where((pp <= 0) | ~np.isfinite(pp), np.inf, pp)
    with np.errstate(invalid="ignore"):
        s = np.where(np.isinf(pp), 1.0, pp / (pp + pb))
    return s


def slip_velocities(contacts: dict[str, np.ndarray], state: dict[str, np.ndarray],
                    image_dv_m_per_s: float, box_z_m: float) -> np.ndarray:
    """Tangential slip velocity (m/s) of i relative to j at each contact point, (m, 3).

    ``contacts``: `Simulation.contact_arrays`; ``state``: `Simulation.state`. A Lees–Edwards partner
    seen through the z face moves at +/- ``image_dv_m_per_s`` along x (gamma_dot Lz; 0 otherwise)."""
    i, j = contacts["i"], contacts["j"]
    x, v, r = state["positions_m"], state["velocities_m_per_s"], state["radii_m"]
    w = state["angular_velocities_rad_per_s"]
    n = contacts["normal"]  # from j to i
    vj = v[j].copy()
    if image_dv_m_per_s and box_z_m > 0:
        # The branch vector is x_i - (image of x_j): the image sits k periods above x_j.
        k = np.rint(((x[i] - x[j]) - contacts["branch_vector_m"])[:, 2] / box_z_m)
        vj[:, 0] += k * image_dv_m_per_s
    # Contact-point velocities: v + w x (lever from the centre to the contact point).
    vci = v[i] + np.cross(w[i], -r[i, None] * n)
    vcj = vj + np.cross(w[j], r[j, None] * n)
    dv = vci - vcj
    return dv - np.sum(dv * n, axis=1)[:, None] * n


def squeeze_weight(contacts: dict[str, np.ndarray], p_y_bead_Pa: np.ndarray) -> np.ndarray:
    """min(1, mean contact pressure F_n / (pi a^2) / the bead's yield pressure) per contact (0 where the
    contact pulls or has no area); ``p_y_bead_Pa`` one value per contact (Pa, > 0)."""
    a = contacts["contact_radius_m"]
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(a > 0, contacts["normal_force_N"] / (math.pi * a * a), 0.0)
    return np.clip(p / np.asarray(p_y_bead_Pa, float), 0.0, 1.0)


def strain_increments(contacts: dict[str, np.ndarray], slip_m_per_s: np.ndarray, bead: np.ndarray,
                      p_y_Pa: np.ndarray, radii_m: np.ndarray, dt_s: float) -> np.ndarray:
    """Plastic shear strain each bead takes over ``dt_s`` (s) from its squeezing partners (rule 1).

    bead : bool per particle, True for a fibrillating bead.
    p_y_Pa : contact yield pressure per particle at the mixing temperature (Pa; beads need one > 0;
        0 or inf for a partner = infinitely hard).
    radii_m : particle radii. Returns one increment per particle (0 for non-beads)."""
    i, j = contacts["i"], contacts["j"]
    slip = np.linalg.norm(slip_m_per_s, axis=1)
    out = np.zeros(len(bead))
    for a, b in ((i, j), (j, i)):
        on = bead[a]
        if not on.any():
            continue
        sub = {k: v[on] for k, v in contacts.items()}
        w = squeeze_weight(sub, p_y_Pa[a[on]])
        share = plastic_work_share(p_y_Pa[a[on]], p_y_Pa[b[on]])
        np.add.at(out, a[on], w * share * slip[on] * dt_s / (2.0 * radii_m[a[on]]))
    return out


def threshold_strain(temperature_K: float, transition_K: float, softening_factor: float,
                     params: FibrilParams) -> float:
    """Bead-level drawing threshold (rule 2): inf below the crystal transition, else eps_0 x f(T)."""
    if temperature_K < transition_K:
        return math.inf
    return float(params.threshold_strain) * float(softening_factor)


def contacts_at(contacts: dict[str, np.ndarray], particles: np.ndarray) -> list[np.ndarray]:
    """For each particle index in ``particles``, the indices of its contacts in ``contacts`` (ascending),
    from one sort of the contact ends rather than one scan of the whole table per particle."""
    i, j = np.asarray(contacts["i"], np.int64), np.asarray(contacts["j"], np.int64)
    ends = np.concatenate([i, j])
    cid = np.tile(np.arange(len(i)), 2)
    order = np.lexsort((cid, ends))
    ends, cid = ends[order], cid[order]
    p = np.asarray(particles, np.int64)
    lo, hi = np.searchsorted(ends, p, "left"), np.searchsorted(ends, p, "right")
    return [cid[a:b] for a, b in zip(lo.tolist(), hi.tolist(), strict=True)]


def drawing_directions(contacts: dict[str, np.ndarray], slip_m_per_s: np.ndarray, beads: np.ndarray,
                       fallback: np.ndarray) -> np.ndarray:
    """Unit drawing direction of each bead index in ``beads``: the slip direction of its contact with
    the largest tangential power (the partner that drags it most); ``fallback`` (unit) without one."""
    power = np.abs(contacts["tangential_force_N"]) * np.linalg.norm(slip_m_per_s, axis=1)
    out = np.tile(np.asarray(fallback, float) / np.linalg.norm(fallback), (len(beads), 1))
    for k, at in enumerate(contacts_at(contacts, beads)):
        if at.size == 0 or not np.any(power[at] > 0):
            continue
        c = at[int(np.argmax(power[at]))]
        s = np.linalg.norm(slip_m_per_s[c])
        if s > 0:
            out[k] = slip_m_per_s[c] / s
    return out


def split_bead(position_m: np.ndarray, radius_m: float, mass_kg: float, ptfe_mass_kg: float,
               direction: np.ndarray) -> tuple[np.ndarray, float, float, float]:
    """Rule 3: the two daughters of a drawn bead: their centres (2, 3) at +/- r/2 along ``direction``
    (inside the parent sphere, touching each other), radius r/2, and each one's mass and PTFE mass
    (exactly half: the two halves add up to the parent bit for bit)."""
    e = np.asarray(direction, float) / np.linalg.norm(direction)
    h = 0.5 * float(radius_m)
    x = np.asarray(position_m, float)
    return np.stack([x + h * e, x - h * e]), h, 0.5 * float(mass_kg), 0.5 * float(ptfe_mass_kg)


def clear_radius(nominal_m: float, gaps_m: np.ndarray, min_fraction: float = 0.8) -> float:
    """Radius a daughter bead takes (rule 3): ``nominal_m`` (half its parent's), shrunk to the
    clearance to its neighbours (``gaps_m``: centre distance minus the neighbour's radius, m) so that it
    is born without overlap — a new contact has no plastic history, and an overlap inherited from the
    parent's flattened contact would act as a fresh elastic one. 0 when that leaves less than
    ``min_fraction`` of the nominal radius (the bead waits for room)."""
    g = np.asarray(gaps_m, float)
    r = min(float(nominal_m), float(g.min()) * (1.0 - 1e-6)) if g.size else float(nominal_m)
    return r if r >= min_fraction * nominal_m else 0.0


def smeared_radii(radii_m: np.ndarray, total_overlap_m: np.ndarray, contacts_n: np.ndarray,
                  limit: float, floor_m: float) -> np.ndarray:
    """Rule 6: radii of soft particles flattened past ``limit`` x their radius (summed overlaps
    ``total_overlap_m`` over ``contacts_n`` contacts): a sphere no longer represents such a particle, it is
    smeared into a film; it thins at constant mass just enough that its summed overlap is back at the
    limit (each of its n contacts loses the radius change: r' = r - (sum - limit r) / (n - limit)), never
    below ``floor_m`` (the smallest bead the neighbour grid is built for) nor below its own radius if it
    is there already. Others keep their radius."""
    r = np.asarray(radii_m, float)
    tot = np.asarray(total_overlap_m, float)
    n = np.maximum(np.asarray(contacts_n, float), 1.0)
    over = tot > limit * r
    out = r.copy()
    dr = (tot[over] - limit * r[over]) / np.maximum(n[over] - limit, 0.5)
    out[over] = np.maximum(r[over] - dr, np.minimum(floor_m, r[over]))
    return out


def crushed_onto(contacts: dict[str, np.ndarray], candidates: np.ndarray, p_y_Pa: np.ndarray) -> np.ndarray:
    """Rule 7: for each particle index in ``candidates`` (soft particles that rule 6 can thin no more and
    that are still flattened past its limit), the partner it is smeared onto: the harder partner it
    overlaps most (-1 if none is harder). The caller removes the particle and books its mass on that
    partner (a film on the AM surface the spheres cannot show)."""
    i, j, ov = contacts["i"], contacts["j"], contacts["overlap_m"]
    py = np.where(np.asarray(p_y_Pa, float) > 0, p_y_Pa, np.inf)
    candidates = np.asarray(candidates, np.int64)
    out = np.full(len(candidates), -1, np.int64)
    for k, (c, at) in enumerate(zip(candidates.tolist(), contacts_at(contacts, candidates), strict=True)):
        other = np.where(i[at] == c, j[at], i[at])
        harder = py[other] > py[c]
        if harder.any():
            out[k] = int(other[harder][np.argmax(ov[at][harder])])
    return out


def anchor_pairs(contacts: dict[str, np.ndarray], drawn: np.ndarray, p_y_Pa: np.ndarray,
                 params: FibrilParams) -> np.ndarray:
    """Rule 4: contacts (indices into ``contacts``) that become bonds: a drawn bead pressed at a mean
    pressure F_n / (pi a^2) >= ``anchor_pressure_fraction`` x its yield pressure onto a particle at
    least as hard (another drawn bead welds, a harder particle anchors)."""
    i, j = contacts["i"], contacts["j"]
    a = contacts["contact_radius_m"]
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(a > 0, contacts["normal_force_N"] / (math.pi * a * a), 0.0)
    pi_, pj = p_y_Pa[i], p_y_Pa[j]
    hard_j = np.where(pj > 0, pj, np.inf) >= pi_
    hard_i = np.where(pi_ > 0, pi_, np.inf) >= pj
    frac = params.anchor_pressure_fraction
    ok_i = drawn[i] & hard_j & (p >= frac * np.where(pi_ > 0, pi_, np.inf))
    ok_j = drawn[j] & hard_i & (p >= frac * np.where(pj > 0, pj, np.inf))
    return np.flatnonzero(ok_i | ok_j)


def orientation_tensor(vectors: np.ndarray) -> np.ndarray:
    """<e e^T> of the unit vectors along ``vectors`` (3, 3; trace 1); zeros without any."""
    v = np.asarray(vectors, float).reshape(-1, 3)
    n = np.linalg.norm(v, axis=1)
    v = v[n > 0] / n[n > 0, None]
    return (v.T @ v) / len(v) if len(v) else np.zeros((3, 3))


def fibril_metrics(ptfe_mass_kg: np.ndarray, generation: np.ndarray, radii_m: np.ndarray,
                   bead: np.ndarray, am: np.ndarray, bond_i: np.ndarray, bond_j: np.ndarray,
                   bond_vectors_m: np.ndarray, density_kg_per_m3: float,
                   elsewhere_kg: float = 0.0) -> dict[str, Any]:
    """Rule 5: the fibril read-outs of a state. Bonds are the intact ones (external indices); a fibril
    is a connected network of >= 2 drawn beads through PTFE–PTFE bonds. ``elsewhere_kg``: PTFE no
    longer in beads (smeared, rule 7), part of the total the fractions refer to. Lengths in m, masses
    in kg."""
    n = len(bead)
    total = float(ptfe_mass_kg[bead].sum()) + float(elsewhere_kg)
    drawn = bead & (generation > 0)
    pp = bead[bond_i] & bead[bond_j]
    g = coo_matrix((np.ones(int(pp.sum())), (bond_i[pp], bond_j[pp])), shape=(n, n))
    _, label = connected_components(g, directed=False)
    sizes = np.bincount(label[drawn], minlength=label.max() + 1) if drawn.any() else np.zeros(1, int)
    fibril_labels = np.flatnonzero(sizes >= 2)
    in_fibril = drawn & np.isin(label, fibril_labels)
    length = float(2.0 * radii_m[in_fibril].sum())
    # Real diameter: the bead's PTFE volume spread over its length 2 r (a cylinder).
    vol = ptfe_mass_kg[in_fibril] / density_kg_per_m3
    diam = np.sqrt(4.0 * vol / (math.pi * 2.0 * radii_m[in_fibril])) if in_fibril.any() else np.zeros(0)
    # AM held: anchored to a bead of a fibril.
    anc = (in_fibril[bond_i] & am[bond_j]) | (in_fibril[bond_j] & am[bond_i])
    am_end = np.where(am[bond_i[anc]], bond_i[anc], bond_j[anc])
    bead_end = np.where(am[bond_i[anc]], bond_j[anc], bond_i[anc])
    per_fibril = {int(f): set() for f in fibril_labels}
    for a_, b_ in zip(am_end.tolist(), bead_end.tolist(), strict=True):
        per_fibril[int(label[b_])].add(a_)
    fib_mass = float(ptfe_mass_kg[in_fibril].sum())
    return {
        "ptfe_mass_kg": total,
        "degree_of_fibrillation": float(ptfe_mass_kg[drawn].sum() / total) if total > 0 else 0.0,
        "network_fraction": fib_mass / total if total > 0 else 0.0,
        "fibril_count": int(len(fibril_labels)),
        "drawn_beads": int(drawn.sum()),
        "max_generation": int(generation[bead].max()) if bead.any() else 0,
        "length_per_ptfe_mass_m_per_kg": length / total if total > 0 else 0.0,
        "fibril_diameter_m": float(np.median(diam)) if diam.size else None,
        "orientation_tensor": orientation_tensor(bond_vectors_m[pp]).tolist(),
        "am_per_fibril": float(np.mean([len(s) for s in per_fibril.values()])) if per_fibril else 0.0,
        "am_in_network_fraction": float(len(set(am_end.tolist())) / am.sum()) if am.any() else 0.0,
    }
