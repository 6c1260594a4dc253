"""Cluster labelling and percolation of the conducting networks of a particle microstructure.

Networks
--------
* **electronic**: particles of every species with ``sigma_e_S_per_m > 0`` (AM, CB, ...). Electrons leave
  through the current collector, so the terminal is the CC (z = 0).
* **ionic**: particles of every species with ``sigma_i_S_per_m > 0`` (solid electrolyte). Ions come from
  the separator side, so the terminal is the top. With a liquid electrolyte no species conducts ions:
  the pore space is the ionic phase, its connectivity is a voxel question (`analyse` reports open and
  closed porosity), and particle-level ionic isolation is reported as not applicable.

Spanning
--------
* through-plane (z): a cluster that holds a particle touching the CC and one touching the top.
* in-plane (x, y, periodic): a cluster that wraps the periodic axis. Each cluster gets a spanning tree
  (breadth-first, from a virtual root joined to one node per cluster); every node receives the integer
  image offset accumulated along its tree path; a contact that closes a loop with a non-zero net
  offset ``off[i] + shift - off[j]`` winds around the torus, so its cluster is infinite in that
  direction (the standard winding-number test).

Isolated active material
------------------------
An AM particle is electronically connected when it belongs to, or touches, an electronic cluster that
reaches the CC; ionically connected when it belongs to, or touches, an ionic cluster that reaches the top.
Isolated electronically / ionically / both, and inactive (isolated from either) are reported by count and
by AM volume (the loss-of-active-material proxy of 002 §6.1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.sparse import csgraph

from electrodem.analysis.contacts import ContactGraph
from electrodem.io.snapshot import Microstructure

__all__ = [
    "NetworkPercolation",
    "PercolationResult",
    "cluster_labels",
    "network_mask",
    "percolation_analysis",
    "winding_axes",
]

NOT_APPLICABLE_IONIC = (
    "not applicable: no species conducts ions (liquid electrolyte); the pore space is the ionic phase, "
    "see the voxel porosity/tortuosity metrics"
)


@dataclass(frozen=True)
class NetworkPercolation:
    """Percolation of one conducting network. Fractions are of the network's particles / volume."""

    name: str
    species: tuple[str, ...]
    terminal: str
    n_particles: int
    volume_m3: float
    n_clusters: int
    labels: np.ndarray
    cluster_spans_z: np.ndarray
    cluster_wraps: np.ndarray
    spans_z: bool
    wraps_x: bool
    wraps_y: bool
    fraction_particles_spanning_z: float
    fraction_volume_spanning_z: float
    fraction_particles_wrapping_x: float
    fraction_volume_wrapping_x: float
    fraction_particles_wrapping_y: float
    fraction_volume_wrapping_y: float
    fraction_particles_terminal_connected: float
    fraction_volume_terminal_connected: float
    fraction_volume_largest_cluster: float
    terminal_connected: np.ndarray

    def summary(self) -> dict:
        """JSON-able summary (no per-particle arrays)."""
        return {
            "species": list(self.species),
            "terminal": self.terminal,
            "n_particles": self.n_particles,
            "volume_m3": self.volume_m3,
            "n_clusters": self.n_clusters,
            "percolates_z_through_plane": self.spans_z,
            "percolates_x_in_plane": self.wraps_x,
            "percolates_y_in_plane": self.wraps_y,
            "fraction_particles_spanning_z": self.fraction_particles_spanning_z,
            "fraction_volume_spanning_z": self.fraction_volume_spanning_z,
            "fraction_particles_wrapping_x": self.fraction_particles_wrapping_x,
            "fraction_volume_wrapping_x": self.fraction_volume_wrapping_x,
            "fraction_particles_wrapping_y": self.fraction_particles_wrapping_y,
            "fraction_volume_wrapping_y": self.fraction_volume_wrapping_y,
            f"fraction_particles_connected_to_{self.terminal}": self.fraction_particles_terminal_connected,
            f"fraction_volume_connected_to_{self.terminal}": self.fraction_volume_terminal_connected,
            "fraction_volume_largest_cluster": self.fraction_volume_largest_cluster,
        }


@dataclass(frozen=True)
class PercolationResult:
    """Electronic and ionic networks (ionic is None without an ion-conducting species) and AM isolation."""

    electronic: NetworkPercolation | None
    ionic: NetworkPercolation | None
    isolated_am: dict
    am_electronically_connected: np.ndarray
    am_ionically_connected: np.ndarray | None

    def summary(self) -> dict:
        """JSON-able summary."""
        return {
            "electronic": self.electronic.summary() if self.electronic else "no electron-conducting species",
            "ionic": self.ionic.summary() if self.ionic else NOT_APPLICABLE_IONIC,
            "isolated_am": self.isolated_am,
        }


def network_mask(micro: Microstructure, network: str) -> np.ndarray:
    """(N,) bool: particles of the species that conduct electrons ("electronic") or ions ("ionic")."""
    if network == "electronic":
        ok = [s.sigma_e_S_per_m > 0 for s in micro.species]
    elif network == "ionic":
        ok = [s.sigma_i_S_per_m > 0 for s in micro.species]
    else:
        raise ValueError(f"network={network!r} is invalid: use 'electronic' or 'ionic'")
    return np.asarray(ok, bool)[micro.species_id] if micro.n else np.zeros(0, bool)


def cluster_labels(n: int, i: np.ndarray, j: np.ndarray, node_mask: np.ndarray | None = None):
    """Connected components of the graph restricted to ``node_mask``.

    Returns ``(n_clusters, labels)`` with ``labels[v] in [0, n_clusters)`` for nodes in the mask and -1
    outside it.
    """
    mask = np.ones(n, bool) if node_mask is None else np.asarray(node_mask, bool)
    keep = mask[i] & mask[j]
    idx = np.flatnonzero(mask)
    remap = np.full(n, -1, np.int64)
    remap[idx] = np.arange(len(idx))
    m = len(idx)
    a = sparse.coo_matrix((np.ones(keep.sum()), (remap[i[keep]], remap[j[keep]])), shape=(m, m)).tocsr()
    nc, lab = csgraph.connected_components(a, directed=False)
    labels = np.full(n, -1, np.int64)
    labels[idx] = lab
    return int(nc), labels


def winding_axes(
    n: int, i: np.ndarray, j: np.ndarray, shift: np.ndarray, labels: np.ndarray, n_clusters: int
) -> np.ndarray:
    """(n_clusters, 3) bool: does cluster c wrap around periodic axis k (non-zero winding)?

    ``labels`` as from `cluster_labels` (-1 = not in the network); contacts with an end outside the
    network are ignored.
    """
    wraps = np.zeros((n_clusters, 3), bool)
    keep = (labels[i] >= 0) & (labels[j] >= 0)
    i, j, shift = i[keep], j[keep], shift[keep]
    if n_clusters == 0 or not np.any(shift):
        return wraps
    idx = np.flatnonzero(labels >= 0)
    remap = np.full(n, -1, np.int64)
    remap[idx] = np.arange(len(idx))
    m = len(idx)
    root = m
    reps = np.zeros(n_clusters, np.int64)
    reps[labels[idx][::-1]] = np.arange(m)[::-1]
    ei, ej = remap[i], remap[j]
    rows = np.concatenate([ei, np.full(n_clusters, root)])
    cols = np.concatenate([ej, reps])
    g = sparse.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(m + 1, m + 1)).tocsr()
    _, pred = csgraph.breadth_first_order(g, root, directed=False, return_predecessors=True)
    # edge lookup: +k+1 for the stored direction i->j, -(k+1) for j->i (pairs are unique)
    eid = np.arange(1, len(ei) + 1, dtype=np.float64)
    lut = sparse.coo_matrix(
        (np.concatenate([eid, -eid]), (np.concatenate([ei, ej]), np.concatenate([ej, ei]))), shape=(m, m)
    ).tocsr()
    par = pred.copy()
    par[root] = root
    rel = np.zeros((m + 1, 3), np.int64)
    v = np.flatnonzero((par[:m] != root) & (par[:m] >= 0))
    k = np.asarray(lut[par[v], v]).ravel().astype(np.int64)
    sign = np.sign(k)
    rel[v] = shift[np.abs(k) - 1] * sign[:, None]
    off = rel
    # pointer jumping: after log2(depth) rounds every node holds the sum of offsets to the root
    while np.any(par != root):
        off = off + off[par]
        par = par[par]
    w = off[ei] + shift - off[ej]
    bad = np.any(w != 0, axis=1)
    if np.any(bad):
        lab = labels[i[bad]]
        for ax in range(3):
            wraps[lab[w[bad, ax] != 0], ax] = True
    return wraps


def _network(micro: Microstructure, g: ContactGraph, name: str, terminal: str) -> NetworkPercolation | None:
    mask = network_mask(micro, name)
    if not np.any(mask):
        return None
    vol = micro.volumes_m3
    nc, labels = cluster_labels(g.n_particles, g.i, g.j, mask)
    wraps = winding_axes(g.n_particles, g.i, g.j, g.shift, labels, nc)
    in_net = labels >= 0
    has_cc = np.zeros(nc, bool)
    has_top = np.zeros(nc, bool)
    has_cc[labels[in_net & g.cc]] = True
    has_top[labels[in_net & g.top]] = True
    spans = has_cc & has_top
    term = has_cc if terminal == "CC" else has_top
    vtot = vol[in_net].sum()
    ntot = int(in_net.sum())
    cvol = np.bincount(labels[in_net], weights=vol[in_net], minlength=nc)
    ccount = np.bincount(labels[in_net], minlength=nc)

    def frac(sel: np.ndarray) -> tuple[float, float]:
        return float(ccount[sel].sum() / ntot), float(cvol[sel].sum() / vtot)

    fz, fx, fy, ft = frac(spans), frac(wraps[:, 0]), frac(wraps[:, 1]), frac(term)
    return NetworkPercolation(
        name=name,
        species=tuple(s.name for s, ok in zip(micro.species, _species_ok(micro, name), strict=True) if ok),
        terminal=terminal,
        n_particles=ntot,
        volume_m3=float(vtot),
        n_clusters=nc,
        labels=labels,
        cluster_spans_z=spans,
        cluster_wraps=wraps,
        spans_z=bool(spans.any()),
        wraps_x=bool(wraps[:, 0].any()),
        wraps_y=bool(wraps[:, 1].any()),
        fraction_particles_spanning_z=fz[0],
        fraction_volume_spanning_z=fz[1],
        fraction_particles_wrapping_x=fx[0],
        fraction_volume_wrapping_x=fx[1],
        fraction_particles_wrapping_y=fy[0],
        fraction_volume_wrapping_y=fy[1],
        fraction_particles_terminal_connected=ft[0],
        fraction_volume_terminal_connected=ft[1],
        fraction_volume_largest_cluster=float(cvol.max() / vtot),
        terminal_connected=in_net & term[np.maximum(labels, 0)],
    )


def _species_ok(micro: Microstructure, name: str) -> list[bool]:
    if name == "electronic":
        return [s.sigma_e_S_per_m > 0 for s in micro.species]
    return [s.sigma_i_S_per_m > 0 for s in micro.species]


def _reached(g: ContactGraph, connected: np.ndarray) -> np.ndarray:
    """Particles that are in ``connected`` or touch a particle in it."""
    out = connected.copy()
    out[g.i[connected[g.j]]] = True
    out[g.j[connected[g.i]]] = True
    return out


def percolation_analysis(micro: Microstructure, graph: ContactGraph) -> PercolationResult:
    """Percolation of the electronic and ionic networks and isolated-AM fractions of ``micro``."""
    if graph.n_particles != micro.n:
        raise ValueError(f"graph.n_particles={graph.n_particles} does not match micro.n={micro.n}")
    el = _network(micro, graph, "electronic", "CC")
    io = _network(micro, graph, "ionic", "top")
    am = micro.role_mask("AM")
    vol = micro.volumes_m3
    e_ok = _reached(graph, el.terminal_connected) if el else np.zeros(micro.n, bool)
    i_ok = _reached(graph, io.terminal_connected) if io else None
    iso: dict = {"n_am_particles": int(am.sum())}
    if not am.any():
        iso["note"] = "no AM particles"
        return PercolationResult(el, io, iso, e_ok & am, None if i_ok is None else i_ok & am)
    vam = vol[am].sum()

    def put(key: str, sel: np.ndarray) -> None:
        iso[f"{key}_fraction_by_count"] = float(np.count_nonzero(sel & am) / am.sum())
        iso[f"{key}_fraction_by_volume"] = float(vol[sel & am].sum() / vam)

    put("electronically_isolated", ~e_ok)
    if i_ok is None:
        iso["ionically_isolated"] = NOT_APPLICABLE_IONIC
        iso["isolated_both"] = NOT_APPLICABLE_IONIC
        put("inactive", ~e_ok)
        iso["inactive_definition"] = "electronically isolated (ionic isolation not applicable)"
    else:
        put("ionically_isolated", ~i_ok)
        put("isolated_both", ~e_ok & ~i_ok)
        put("inactive", ~e_ok | ~i_ok)
        iso["inactive_definition"] = "isolated electronically or ionically (either network missing)"
    return PercolationResult(el, io, iso, e_ok & am, None if i_ok is None else i_ok & am)
