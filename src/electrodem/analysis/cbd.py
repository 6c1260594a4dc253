"""The carbon-binder domain (CBD) as a phase, built from the snapshot's state.

In a wet-cast electrode the dissolved binder dries into a nanoporous carbon + binder matrix that wets
the AM, bridges its contacts and carries the electrons between AM particles; ions move through its
own pores. In a dry (fibrillated) electrode the PTFE is drawn into fibrils that make point contacts
"without coating their surfaces" and the carbon coats the AM instead of forming a separate CBD
(004 §2.2.4, §2.3). The snapshot does not say which route made it, so the phase is built from what
the particles *are doing* (their bonds and contacts), never from species names:

Classification (`build_cbd`)
----------------------------
* **fibril bead**: a binder bead with an intact bond (``micro.bonds``) to another binder bead: a bead
  of a drawn-out fibril chain. It stays a dense, insulating solid of its own volume (PTFE is not
  porous and conducts nothing) and never becomes CBD, so fibrils cannot block pores.
* **CBD binder bead**: any other binder bead (binder that was not drawn into a fibril: the dried
  solution of the wet route).
* **CBD carbon bead**: a CB bead in a contact/bond cluster of CB beads that touches a CBD binder bead
  (the binder glues that carbon into the matrix).
* **bare carbon**: every other CB bead (e.g. CB smeared on AM in a dry mix, or CB next to fibrils
  only): dense carbon spheres as before, no porosity added, no fillets.

Geometry of the CBD volume
--------------------------
The solid of the CBD beads becomes CBD of internal porosity eps_CBD, i.e. volume V_s / (1 - eps_CBD):
* a CBD bead that touches both particles of an AM-AM contact sits in that contact's neck: its CBD
  volume becomes a **neck fillet**, the pendular ring filling the wedge-shaped gap around the contact.
  For a gap ``g(rho) = rho^2 / (2 R_eff)`` (two spheres, rho << R, R_eff = R1 R2 / (R1 + R2)) the
  ring out to radius r_f holds V = pi r_f^4 / (4 R_eff); it is drawn as a sphere of radius
  ``r_f = (4 R_eff V / pi)^(1/4)`` centred on the contact point, and `cbd_image` gives it only the
  voxels that no particle occupies, i.e. that ring. Several beads in the same neck pool their volume
  into one ring (``neck_i``, ``neck_j``, ``neck_radius_m``: one entry per neck contact; the resistor
  network adds the ring's conductance to that contact, `electrodem.analysis.neck`).
* every other CBD bead keeps its centre and is inflated to radius ``r (1 - eps_CBD)^(-1/3)`` (the
  part that overlaps a particle is lost in the image: the image's CBD fraction is reported);
* a **bridge** (an intact bond with a CBD bead at one end and a non-fibril partner) is drawn as a
  chain of spheres of the bond's ``radius_m`` along the segment joining the two centres.

Transport properties (parameters of `electrodem.analysis.report.AnalysisParams`)
------------------------------------------------------------------------------
``cbd_porosity`` (eps_CBD), ``cbd_sigma_e_S_per_m`` (effective electronic conductivity of the porous
CBD) and ``cbd_ionic_transport_factor`` (sigma_ion,CBD / sigma_electrolyte = eps_CBD / tau_CBD;
default Bruggeman eps_CBD^1.5). In the voxel image the CBD is one label (`cbd_image`), solved with
the multi-phase solver for electrons (AM + CBD + bare CB) and for ions (pore + CBD x factor).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import sparse
from scipy.sparse import csgraph

from electrodem.analysis.contacts import ContactGraph
from electrodem.analysis.voxelize import VoxelImage, voxelize
from electrodem.io.snapshot import Microstructure, Species

__all__ = ["CBDPhase", "build_cbd", "cbd_image", "fillet_radius_m"]

CBD_SPECIES_NAME = "CBD"


def fillet_radius_m(volume_m3: np.ndarray, r1_m: np.ndarray, r2_m: np.ndarray) -> np.ndarray:
    """Outer radius (m) of the pendular ring of ``volume_m3`` in the neck of two touching spheres of
    radii ``r1_m``, ``r2_m``: V = pi r_f^4 / (4 R_eff), R_eff = r1 r2 / (r1 + r2) (gap rho^2/(2 R_eff))."""
    r_eff = r1_m * r2_m / (r1_m + r2_m)
    return (4.0 * r_eff * np.asarray(volume_m3) / math.pi) ** 0.25


@dataclass(frozen=True)
class CBDPhase:
    """The CBD of one snapshot (module docstring). Per-particle masks are (N,) bool.

    fibril : binder beads in fibrils (dense, insulating, not CBD).
    cbd_binder, cbd_carbon : beads whose solid forms the CBD.
    bare_carbon : CB beads outside the CBD (dense carbon).
    in_neck : CBD beads drawn as a neck fillet; ``neck_contact`` (N,) the contact index, -1 otherwise.
    centres_m, radii_m : (M, 3), (M,) the CBD pseudo-spheres (beads, fillets, bridge chains).
    porosity : eps_CBD used.
    solid_volume_m3 : solid (CB + binder) volume turned into CBD.
    cbd_volume_m3 : solid_volume / (1 - eps_CBD) (beads and fillets; bridges add their own volume).
    bridge_volume_m3 : volume of the bridge chains (cylinders of the bonds' radius).
    neck_i, neck_j : (F,) particle indices of the AM-AM contacts that hold a neck fillet.
    neck_radius_m : (F,) outer radius r_f of each fillet (the pooled volume of its beads).
    """

    fibril: np.ndarray
    cbd_binder: np.ndarray
    cbd_carbon: np.ndarray
    bare_carbon: np.ndarray
    in_neck: np.ndarray
    neck_contact: np.ndarray
    centres_m: np.ndarray
    radii_m: np.ndarray
    porosity: float
    solid_volume_m3: float
    cbd_volume_m3: float
    bridge_volume_m3: float
    neck_i: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    neck_j: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    neck_radius_m: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def member(self) -> np.ndarray:
        """(N,) bool: beads whose solid is part of the CBD."""
        return self.cbd_binder | self.cbd_carbon

    def summary(self) -> dict:
        """JSON-able counts and volumes."""
        return {
            "n_cbd_binder_beads": int(self.cbd_binder.sum()),
            "n_cbd_carbon_beads": int(self.cbd_carbon.sum()),
            "n_fibril_beads": int(self.fibril.sum()),
            "n_bare_carbon_beads": int(self.bare_carbon.sum()),
            "n_neck_fillets": int(self.in_neck.sum()),
            "n_neck_contacts": int(len(self.neck_radius_m)),
            "cbd_porosity": self.porosity,
            "solid_volume_um3": self.solid_volume_m3 * 1e18,
            "cbd_volume_um3": self.cbd_volume_m3 * 1e18,
            "bridge_volume_um3": self.bridge_volume_m3 * 1e18,
        }


def _bond_arrays(micro: Microstructure) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    b = micro.bonds
    if not b or "i" not in b or "j" not in b:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), None
    i, j = np.asarray(b["i"], np.int64), np.asarray(b["j"], np.int64)
    ok = ~np.asarray(b.get("broken", np.zeros(len(i), bool)), bool)
    rad = np.asarray(b["radius_m"], float)[ok] if "radius_m" in b else None
    return i[ok], j[ok], rad


def build_cbd(micro: Microstructure, graph: ContactGraph, porosity: float) -> CBDPhase:
    """Classify the beads and lay out the CBD volume (module docstring). ``porosity`` in [0, 1)."""
    if not (0.0 <= porosity < 1.0):
        raise ValueError(f"porosity={porosity!r} is invalid: must be in [0, 1)")
    n = micro.n
    binder = micro.role_mask("binder")
    cb = micro.role_mask("CB")
    am = micro.role_mask("AM")
    bi, bj, brad = _bond_arrays(micro)
    fibril = np.zeros(n, bool)
    bb = binder[bi] & binder[bj]
    fibril[bi[bb]] = fibril[bj[bb]] = True
    cbd_binder = binder & ~fibril
    # CB clusters (contacts + bonds among CB beads); a cluster joins the CBD if one of its beads
    # touches or is bonded to a CBD binder bead.
    ci = np.concatenate([graph.i, bi])
    cj = np.concatenate([graph.j, bj])
    both_cb = cb[ci] & cb[cj]
    adj = sparse.coo_matrix((np.ones(both_cb.sum()), (ci[both_cb], cj[both_cb])), shape=(n, n))
    _, lab = csgraph.connected_components(adj, directed=False)
    glued = np.zeros(n, bool)
    for a, b in ((ci, cj), (cj, ci)):
        hit = cb[a] & cbd_binder[b]
        glued[a[hit]] = True
    glued_cluster = np.zeros(lab.max() + 1 if n else 0, bool)
    glued_cluster[lab[glued]] = True
    cbd_carbon = cb & glued_cluster[lab] if n else np.zeros(0, bool)
    bare = cb & ~cbd_carbon
    member = cbd_binder | cbd_carbon

    r = micro.radii_m
    x = micro.positions_m
    scale = (1.0 - porosity) ** (-1.0 / 3.0)
    # neck beads: a CBD bead touching both particles of an AM-AM contact (first such contact)
    am_am = np.flatnonzero(am[graph.i] & am[graph.j])
    neck_contact = np.full(n, -1, np.int64)
    if am_am.size and member.any():
        touch = sparse.coo_matrix((np.ones(graph.n_contacts * 2),
                                   (np.concatenate([graph.i, graph.j]), np.concatenate([graph.j, graph.i]))),
                                  shape=(n, n)).tocsr()
        beads = np.flatnonzero(member)
        t_b = touch[beads]
        for e in am_am:
            both = np.flatnonzero((t_b[:, graph.i[e]].toarray().ravel() > 0)
                                  & (t_b[:, graph.j[e]].toarray().ravel() > 0))
            for k in beads[both]:
                if neck_contact[k] < 0:
                    neck_contact[k] = e
    in_neck = neck_contact >= 0
    v_cbd = micro.volumes_m3 / (1.0 - porosity)
    centres = [x[member & ~in_neck]]
    radii = [r[member & ~in_neck] * scale]
    neck_i = neck_j = np.zeros(0, np.int64)
    neck_r = np.zeros(0)
    if in_neck.any():
        k = np.flatnonzero(in_neck)
        e, inv = np.unique(neck_contact[k], return_inverse=True)  # one ring per neck contact
        gi, gj = graph.i[e], graph.j[e]
        # contact point: from centre i along the branch vector by the distance to the contact plane
        unit = graph.branch_m[e] / np.linalg.norm(graph.branch_m[e], axis=1)[:, None]
        centres.append(x[gi] + unit * graph.l_i_m[e][:, None])
        neck_i, neck_j = gi.astype(np.int64), gj.astype(np.int64)
        neck_r = fillet_radius_m(np.bincount(inv, weights=v_cbd[k], minlength=len(e)), r[gi], r[gj])
        radii.append(neck_r)
    bridge_volume = 0.0
    if brad is not None and len(bi):
        is_bridge = (member[bi] | member[bj]) & ~(fibril[bi] | fibril[bj])
        for a, b, rb in zip(bi[is_bridge], bj[is_bridge], brad[is_bridge], strict=True):
            seg = x[b] - x[a]
            for k in range(2):  # minimum image on periodic x/y
                if micro.periodic[k]:
                    seg[k] -= round(seg[k] / micro.box_m[k]) * micro.box_m[k]
            length = float(np.linalg.norm(seg))
            if rb <= 0 or length == 0:
                continue
            m = max(2, math.ceil(length / rb) + 1)
            t = np.linspace(0.0, 1.0, m)[:, None]
            centres.append(x[a] + t * seg)
            radii.append(np.full(m, rb))
            bridge_volume += math.pi * rb * rb * length
    solid = float(micro.volumes_m3[member].sum())
    return CBDPhase(
        fibril=fibril, cbd_binder=cbd_binder, cbd_carbon=cbd_carbon, bare_carbon=bare, in_neck=in_neck,
        neck_contact=neck_contact, centres_m=np.concatenate(centres).reshape(-1, 3),
        radii_m=np.concatenate(radii), porosity=float(porosity), solid_volume_m3=solid,
        cbd_volume_m3=solid / (1.0 - porosity), bridge_volume_m3=bridge_volume,
        neck_i=neck_i, neck_j=neck_j, neck_radius_m=np.asarray(neck_r, float),
    )


def cbd_image(
    micro: Microstructure,
    cbd: CBDPhase,
    voxel_size_m: float,
    z_max_m: float | None = None,
    max_voxels: int = 1_000_000_000,
) -> tuple[VoxelImage, int]:
    """Voxel image with the CBD as its own label. Species ``k`` keep label ``k + 1`` (the CBD beads are
    removed), the CBD gets label ``len(micro.species) + 1`` in the voxels that the CBD pseudo-spheres
    cover and that no other particle occupies: the CBD fills gaps, it never replaces AM, SE, bare CB or
    fibril voxels (so a neck fillet is the ring in the wedge around the contact, not a disc through it).
    Returns ``(image, cbd_label)``."""
    z_top = micro.top_m() if z_max_m is None else z_max_m
    keep = ~cbd.member
    ns = len(micro.species)
    if not keep.any():
        raise ValueError("the snapshot holds only CBD beads: no skeleton to voxelize around")
    base_m = Microstructure(micro.positions_m[keep], micro.radii_m[keep], micro.species_id[keep],
                            micro.species, box_m=micro.box_m, periodic=micro.periodic,
                            metadata=dict(micro.metadata))
    base = voxelize(base_m, voxel_size_m=voxel_size_m, z_max_m=z_top, max_voxels=max_voxels)
    labels = base.labels
    if len(cbd.radii_m):
        if ns + 1 > 255:
            raise ValueError(f"{ns} species leave no uint8 label for the CBD")
        marker = Species(CBD_SPECIES_NAME, "other", 1.0, 1.0, 0.0)
        cm = Microstructure(cbd.centres_m, cbd.radii_m, np.zeros(len(cbd.radii_m)), (marker,),
                            box_m=micro.box_m, periodic=micro.periodic, metadata=dict(micro.metadata))
        cov = voxelize(cm, voxel_size_m=voxel_size_m, z_max_m=z_top, max_voxels=max_voxels).labels > 0
        labels = labels.copy()
        labels[cov & (labels == 0)] = ns + 1
    names = tuple(base.phase_names)[: ns + 1] + (CBD_SPECIES_NAME,)
    img = VoxelImage(labels=labels, voxel_size_m=base.voxel_size_m, origin_m=base.origin_m,
                     phase_names=names, voxels_per_smallest_diameter=base.voxels_per_smallest_diameter,
                     periodic=base.periodic)
    return img, ns + 1
