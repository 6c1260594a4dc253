"""Resistor-network conductivity of a particle packing: nodes are particles, edges are contacts.

Contact model
-------------
Every contact of disc radius a between particles 1 and 2 is two half-contacts in series, one in each
particle, each the spreading (constriction) resistance of a disc on a body plus, optionally, the
particle's bulk resistance between the disc and its centre::

    R_half(sigma, a, r, l) = psi(a / r) / (4 a sigma) + R_bulk(sigma, r, l)
    1 / G = R_half(sigma_1, a, r_1, l_1) + R_half(sigma_2, a, r_2, l_2)

* ``bulk="none"`` (default): psi = 1, R_bulk = 0, i.e. Holm's half-space constriction 1/(4 a sigma):
  like materials give G = 2 a sigma, unlike ones 1/G = 1/(4 a sigma_1) + 1/(4 a sigma_2).
* ``bulk="flux_tube"``: the particle is modelled as a flux tube of its own radius r between the disc and
  the centre: psi = (1 - a/r)^1.5 (constriction of a disc in a tube of radius r, the
  Cooper-Mikic-Yovanovich approximation; it vanishes when the disc fills the tube) and
  R_bulk = l / (sigma * pi * r^2) with l the distance from the centre to the contact plane. Small discs:
  Holm plus a cylinder; full-width contacts (a = r): a cylinder.
* ``bulk="sphere"``: psi = F(a/r), R_bulk = 0, with F the exact spreading factor of a disc on a sphere
  (`electrodem.analysis.neck.sphere_spreading_factor`: a sphere between two antipodal equipotential
  caps of base radius a has the resistance 2 F / (4 a sigma)); F = 1.05, 1.09, 1.14, 1.11 at
  a/r = 0.05, 0.1, 0.3, 0.5. Exact for spheres touching end to end and for a sphere between plates;
  Holm's half-space underestimates a sphere's spreading resistance by that factor.

Which one is closer to the continuum answer was measured against the finite-volume voxel solver
(`electrodem.analysis.transport`, periodic sides) on four random packings of 60 slightly polydisperse
spheres between two plates, radii inflated to create necks (the packing of
``tests/analysis/test_resistor.py``), extrapolating the voxel result to zero voxel size from 15 and 25
voxels per diameter (first-order convergence, checked at 35). For median a/r = 0.25, 0.31, 0.31, 0.39,
"none" is 10, 9, 9 and 12 % above the continuum value (and -6 to +9 % from the 25-voxel value);
"flux_tube" is 15, 15, 15 and 19 % above. So the Holm constriction alone is the better default, the
spheres' own geometry adds resistance rather than removing it, and both models overestimate sigma_eff
by ~10 % at these neck sizes (the half-space assumption weakens as necks widen). ``"sphere"`` was added
later (for the wide discs of CBD necks) and has not been re-measured on these packings; its factor
F(a/r) = 1.13 at a/r = 0.25-0.39 is about the bias measured for "none".

CBD necks (``cbd``, ``cbd_sigma_e_S_per_m``; electronic network only)
-------------------------------------------------------------------
Where the CBD phase (`electrodem.analysis.cbd.build_cbd`, the same classification as the voxel image)
puts a neck fillet of outer radius r_f around an AM-AM contact, that contact's conductance becomes

    G = G_sp(a) + (G_sp(r_f) - G_sp(a)) Q(a / r_f, 4 pi sigma_CBD R_eff / G_sp(r_f)),

G_sp(c) the bare contact above with a disc of radius c (same ``bulk`` model), R_eff = r1 r2 / (r1 + r2)
and Q in [0, 1] the exact coupling, on the half-space, of the ring's film (conductance per area
sigma_CBD / g(rho) across the gap g = rho^2 / (2 R_eff); equipotential particles would give the slab
integral G_film = 4 pi sigma_CBD R_eff ln(r_f / a)) with the particles' spreading (derivation and
limits: `electrodem.analysis.neck`). A film much better than the particles (NMC 1e-3 S/m, CBD 10 S/m)
makes the whole ring a contact disc: G -> G_sp(r_f), independent of the contact radius a and hence of
``min_contact_radius_rel``; a poor film (graphite 1e4 S/m) adds K Psi(a / r_f) ~ the slab integral
from 3 a to the bare contact, and then the floor still matters, as it should (the bare contact is a
real parallel path). r_f is capped at the smaller radius. Without ``cbd``, with sigma_CBD = 0 or on
contacts without a fillet the conductance is the bare one, bit for bit.

Checked on a simple-cubic lattice of touching NMC spheres with a CBD bead in every neck (r_f = 0.37 R,
tests/analysis/test_resistor_cbd.py): in-plane, ``bulk="sphere"`` is 6 % above the multi-phase voxel
solve of `cbd.cbd_image` (mean of 16-24 voxels per radius; the voxel solver reads the spreading at the
cap rim 3-5 % resistive there, and the image's fillet wets 1.7 % less than r_f), ``"none"`` 20 % above
(Holm's half-space, F(0.37) = 1.13), ``"flux_tube"`` 24 %. Doubling ``min_contact_radius_rel`` changes
the in-plane result by 1e-6 (the bare lattice: x 2).

Not modelled: other CBD beads keep their species in the network (binder insulating, CB as dense
carbon), so CBD that bridges particles without sitting in a contact's neck conducts only in the voxel
image. Bonds ("bridges" of `cbd`) add no edge: most bonds join touching particles, where a cylinder
sigma pi r_b^2 / L would sit inside the neck and share its spreading (double counting), and a bond to a
binder bead ends on a particle that is not in the network. The CC and probe half-contacts get no fillet
(the classification has none there), so through-plane results of thin samples still follow the floor
through the terminals.

Boundary conditions
-------------------
* through-plane (``axis="z"``): two ideal conductor plates, the current collector (z = 0, 0 V) and the
  probe plate pressed on the top (1 V), are extra nodes; a particle touching a plate is joined to it
  through its own half-contact (the plate itself has no constriction resistance). The probe touches
  the exposed particles whose top lies within the probe contact depth of the gauge top, and the
  sample thickness h is the level the pressed plate rests at (`electrodem.analysis.contacts`,
  "Through-plane terminals"), so a rough free top does not lose its terminal. With Dirichlet values
  on the two plate nodes, sigma_eff = I * h / (V * Lx * Ly). For a simple-cubic stack of n touching
  spheres of radius R this gives exactly sigma_eff / sigma = a / R for any n (2 half-contacts with the
  plates + (n-1) full contacts = n / (2 a sigma) per column of cross-section 4 R^2 and height 2 n R).
* in-plane (``axis="x"`` or ``"y"``, periodic): the box is cut at x = 0 and a potential drop V is imposed
  across the cut: the potential of the image of particle j shifted by s periods is u_j - s V, so a
  contact (i, j, shift s) carries I = G (u_i - u_j + s V). The system is singular (a constant can be
  added per cluster), so one node of each cluster that wraps the axis is pinned to 0 and clusters that
  do not wrap carry no current and are dropped. The current density is the volume average
  J = sum_e I_e d_e / (Lx Ly h) with d_e the branch vector along the axis, and sigma_eff = J Lx / V.
  The CC foil is not part of this circuit (it would short the coating in-plane).
  Why this is the four-probe value: a four-probe measurement injects current through two outer probes
  and reads the potential difference between two inner probes, far enough from the injection that
  the field there is the bulk one (uniform on average); the contact resistance of the injecting
  probes drops out. A periodic sample with an imposed mean gradient is exactly that bulk field, with
  no injection faces at all, so it is what the inner probes see (a Dirichlet electrode cut through the
  sample would instead short every particle it cuts and read too high).

sigma_eff is never NaN or negative: a network that does not percolate gives 0 with a message.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import sparse
from scipy.sparse import csgraph
from scipy.sparse import linalg as spla

from electrodem.analysis.contacts import ContactGraph, build_contact_graph
from electrodem.analysis.neck import neck_conductance, sphere_spreading_factor
from electrodem.analysis.percolation import cluster_labels, network_mask, winding_axes
from electrodem.io.snapshot import Microstructure

if TYPE_CHECKING:
    from electrodem.analysis.cbd import CBDPhase

__all__ = ["ResistorResult", "half_contact_resistance", "resistor_conductivity", "solve_network"]

DIRECT_MAX_UNKNOWNS = 3_000
"""Systems up to this size go to a sparse direct solver, larger ones to AMG-preconditioned CG."""
MAX_CG_ITERATIONS = 200
DIRECT_FALLBACK_MAX_UNKNOWNS = 1_000_000
CURRENT_RTOL = 1e-6
"""Default physical stopping criterion: relative mismatch of two independent total-current measures."""
BULK_MODELS = ("none", "flux_tube", "sphere")


def _single_blas_thread():
    """Limit BLAS to one thread during the solve when threadpoolctl is installed: the solver's BLAS
    calls are vector dots far too small to gain from threads, and on a loaded machine OpenBLAS's
    spinning worker threads slowed the solve ~10x in our measurements."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional dependency
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


class _CurrentsBalanced(Exception):
    """Raised from the CG callback to stop once the physical criterion holds."""

    def __init__(self, x: np.ndarray) -> None:
        super().__init__()
        self.x = x


def _mismatch(pair: tuple[float, float]) -> float:
    a, b = pair
    scale = max(abs(a), abs(b))
    return abs(a - b) / scale if scale > 0 else 0.0


def _solve_spd(
    a: sparse.csr_matrix,
    b: np.ndarray,
    rtol: float,
    currents: Callable[[np.ndarray], tuple[float, float]] | None = None,
    current_rtol: float = 1e-6,
) -> tuple[np.ndarray, str]:
    """Solve the SPD system ``a x = b``.

    Direct (SuperLU) up to `DIRECT_MAX_UNKNOWNS`, else CG preconditioned by a classical (Ruge-Stuben)
    AMG V-cycle after symmetric Jacobi scaling. CG stops on the physical criterion when ``currents`` is
    given: the two independent measures of the total current it returns (into vs out of the network,
    or across two planes) agree to ``current_rtol`` (checked every 5 iterations); else on the relative
    residual ``rtol``. If CG has not met the criterion after `MAX_CG_ITERATIONS`, SuperLU takes over
    (up to `DIRECT_FALLBACK_MAX_UNKNOWNS`).

    Why: particle networks mix hub nodes (an AM particle touching a hundred CB) with conductance
    contrasts up to 10^6 (NMC 1e-3 S/m vs carbon black 1e3 S/m). On homogeneous packings AMG-CG meets
    the current criterion in 15-40 iterations (10^6 contacts in seconds), where a direct solve fills
    in badly (25k nodes: 6 s). At a contrast of 10^6 with non-percolating CB islands, no AMG variant we
    tried (smoothed/unsmoothed aggregation, Ruge-Stuben, several strength thresholds) converged in a
    few hundred iterations, while SuperLU solved those sparse, island-structured systems in seconds
    (90k nodes: 2-6 s). The residual of weak, current-free regions converges slowly whatever the
    preconditioner, which is why the criterion is the current balance rather than the residual.
    """
    with _single_blas_thread():
        return _solve_spd_impl(a, b, rtol, currents, current_rtol)


def _solve_spd_impl(a, b, rtol, currents, current_rtol):
    n = a.shape[0]
    if n == 0:
        return np.zeros(0), "none"
    d = 1.0 / np.sqrt(a.diagonal())
    s = sparse.diags(d)
    a_s = (s @ a @ s).tocsr()
    b_s = b * d
    if n <= DIRECT_MAX_UNKNOWNS:
        return spla.spsolve(a_s.tocsc(), b_s) * d, "direct (SuperLU)"
    import pyamg

    ml = pyamg.ruge_stuben_solver(a_s, strength=("classical", {"theta": 0.5}), max_coarse=500)
    count = [0]

    def callback(xk: np.ndarray) -> None:
        count[0] += 1
        if currents is not None and count[0] % 5 == 0 and _mismatch(currents(xk * d)) <= current_rtol:
            raise _CurrentsBalanced(xk.copy())

    try:
        x, info = spla.cg(a_s, b_s, rtol=rtol, atol=0.0, maxiter=MAX_CG_ITERATIONS,
                          M=ml.aspreconditioner(cycle="V"), callback=callback)
    except _CurrentsBalanced as done:
        x, info = done.x, 0
    name = f"AMG (Ruge-Stuben) preconditioned CG, {count[0]} iterations"
    if info == 0:
        return x * d, name
    if n <= DIRECT_FALLBACK_MAX_UNKNOWNS:
        return spla.splu(a_s.tocsc(), permc_spec="COLAMD").solve(b_s) * d, (
            f"direct (SuperLU) after AMG-CG missed the criterion in {count[0]} iterations")
    mm = _mismatch(currents(x * d)) if currents is not None else math.nan
    return x * d, name + f", NOT converged (current mismatch {mm:.1e})"


def solve_network(
    n_nodes: int,
    i: np.ndarray,
    j: np.ndarray,
    g: np.ndarray,
    source_nodes: np.ndarray,
    sink_nodes: np.ndarray,
    rtol: float = 1e-10,
    current_rtol: float = CURRENT_RTOL,
) -> tuple[np.ndarray, float]:
    """Potentials (V) and total current (A) of a resistor network, source at 1 V, sink at 0 V.

    Parameters
    ----------
    n_nodes : number of nodes.
    i, j : (E,) node indices of each resistor.
    g : (E,) conductances in S (>= 0; zero ones are dropped, parallel ones add).
    source_nodes, sink_nodes : node indices held at 1 V and 0 V (disjoint, non-empty).
    rtol : relative residual at which the iterative solver (large systems) stops at the latest.
    current_rtol : it stops earlier once the current leaving the source and the current reaching the
        sink agree to this relative tolerance (the physical criterion).

    Nodes not connected to both terminals are eliminated before the solve: a cluster touching only the
    source sits at 1 V, every other one at 0 V, and none carries current. Returns ``(potentials,
    current_total)`` with ``current_total >= 0`` the current leaving the source.
    """
    phi, current, _, _ = _solve_dirichlet(n_nodes, i, j, g, source_nodes, sink_nodes, rtol, current_rtol)
    return phi, current


def _solve_dirichlet(n_nodes, i, j, g, source_nodes, sink_nodes, rtol, current_rtol=CURRENT_RTOL):
    """`solve_network` that also returns the number of unknowns and the solver used."""
    i = np.asarray(i, np.int64)
    j = np.asarray(j, np.int64)
    g = np.asarray(g, np.float64)
    src = np.unique(np.asarray(source_nodes, np.int64))
    snk = np.unique(np.asarray(sink_nodes, np.int64))
    if not (len(i) == len(j) == len(g)):
        raise ValueError(f"i, j, g lengths {len(i)}, {len(j)}, {len(g)} differ: they must be equal")
    if len(i) and (min(i.min(), j.min()) < 0 or max(i.max(), j.max()) >= n_nodes):
        raise ValueError(f"edge node indices must be in [0, n_nodes={n_nodes})")
    if not np.all(np.isfinite(g)) or np.any(g < 0):
        raise ValueError("g must be finite and >= 0 (conductances in S)")
    if len(src) == 0 or len(snk) == 0:
        raise ValueError("source_nodes and sink_nodes must each hold at least one node")
    if np.intersect1d(src, snk).size:
        raise ValueError("source_nodes and sink_nodes must be disjoint")
    if min(src.min(), snk.min()) < 0 or max(src.max(), snk.max()) >= n_nodes:
        raise ValueError(f"terminal node indices must be in [0, n_nodes={n_nodes})")

    keep = (g > 0) & (i != j)
    i, j, g = i[keep], j[keep], g[keep]
    phi = np.zeros(n_nodes)
    adj = sparse.coo_matrix((g, (i, j)), shape=(n_nodes, n_nodes)).tocsr()
    adj = adj + adj.T
    _, lab = csgraph.connected_components(adj, directed=False)
    src_lab = np.zeros(lab.max() + 1, bool)
    snk_lab = np.zeros(lab.max() + 1, bool)
    src_lab[lab[src]] = True
    snk_lab[lab[snk]] = True
    phi[src_lab[lab] & ~snk_lab[lab]] = 1.0
    phi[src] = 1.0
    active = src_lab[lab] & snk_lab[lab]
    terminal = np.zeros(n_nodes, bool)
    terminal[src] = terminal[snk] = True
    unk = np.flatnonzero(active & ~terminal)
    if not np.any(active):
        return phi, 0.0, 0, "none"
    lap = sparse.diags(np.asarray(adj.sum(axis=1)).ravel()) - adj
    lap = lap.tocsr()
    solver = "none"
    if len(unk):
        a_uu = lap[unk][:, unk]
        b = -(lap[unk][:, src] @ np.ones(len(src)))
        c_sink = -(lap[unk][:, snk] @ np.ones(len(snk)))
        g_direct = -float(lap[src][:, snk].sum())

        def currents(u: np.ndarray) -> tuple[float, float]:
            return float(b @ (1.0 - u)) + g_direct, float(c_sink @ u) + g_direct

        phi[unk], solver = _solve_spd(a_uu.tocsr(), b, rtol, currents, current_rtol)
    # current out of the source: sum over source rows of (L phi)
    current = float(np.sum(lap[src] @ phi))
    return phi, max(current, 0.0), len(unk), solver


def half_contact_resistance(
    sigma: np.ndarray, a: np.ndarray, r: np.ndarray, l: np.ndarray, bulk: str = "none"
) -> np.ndarray:
    """Resistance (ohm) of one half-contact: disc radius ``a`` (m) on a particle of radius ``r`` (m) and
    conductivity ``sigma`` (S/m), centre at distance ``l`` (m) from the disc (see module docstring)."""
    if bulk == "none":
        return 1.0 / (4.0 * a * sigma)
    if bulk == "flux_tube":
        psi = np.clip(1.0 - a / r, 0.0, 1.0) ** 1.5
        return psi / (4.0 * a * sigma) + l / (sigma * np.pi * r * r)
    if bulk == "sphere":
        return sphere_spreading_factor(a / r) / (4.0 * a * sigma)
    raise ValueError(f"bulk={bulk!r} is invalid: use one of {BULK_MODELS}")


@dataclass(frozen=True)
class ResistorResult:
    """Effective conductivity of one network along one axis.

    Attributes
    ----------
    network, axis : what was solved.
    sigma_eff_S_per_m : effective conductivity of the electrode layer (S/m), >= 0.
    sigma_bulk_ref_S_per_m : reference bulk conductivity: volume-weighted mean over the network's particles.
    relative_to_bulk : sigma_eff / sigma_bulk_ref.
    percolating : the network connects the two terminals (z) or wraps the periodic axis (x, y).
    current_total_A : current for the applied voltage.
    applied_voltage_V : 1 V.
    length_m, area_m2 : sample length along the axis and cross-section used for sigma_eff.
    current_per_particle_A : (N,) throughput of each particle, half the sum of |I| over its contacts
        (plates included); 0 for particles off the current path or outside the network.
    potentials_V : (N,) particle potentials (in-plane: within the box, jump V across the cut).
    n_contacts : particle-particle contacts inside the network.
    n_nodes_solved : unknowns of the linear system.
    bulk_model : "none", "flux_tube" or "sphere".
    solver : solver used.
    contacts_source : "engine" or "geometry".
    message : human-readable status; says why sigma_eff is 0 when it is.
    terminals : how the current enters and leaves (probe rule and thickness for z).
    n_cbd_necks : contacts of the network whose conductance includes a CBD neck fillet.
    cbd_sigma_e_S_per_m : sigma_CBD used for them (0 = no CBD).
    """

    network: str
    axis: str
    sigma_eff_S_per_m: float
    sigma_bulk_ref_S_per_m: float
    relative_to_bulk: float
    percolating: bool
    current_total_A: float
    applied_voltage_V: float
    length_m: float
    area_m2: float
    current_per_particle_A: np.ndarray
    potentials_V: np.ndarray
    n_contacts: int
    n_nodes_solved: int
    bulk_model: str
    solver: str
    contacts_source: str
    message: str
    terminals: str = ""
    n_cbd_necks: int = 0
    cbd_sigma_e_S_per_m: float = 0.0

    def summary(self) -> dict:
        """JSON-able summary (no per-particle arrays)."""
        return {
            "sigma_eff_S_per_m": self.sigma_eff_S_per_m,
            "sigma_bulk_ref_S_per_m": self.sigma_bulk_ref_S_per_m,
            "relative_to_bulk": self.relative_to_bulk,
            "percolating": self.percolating,
            "n_contacts": self.n_contacts,
            "bulk_model": self.bulk_model,
            "solver": self.solver,
            "message": self.message,
            "terminals": self.terminals,
            "n_cbd_necks": self.n_cbd_necks,
            "cbd_sigma_e_S_per_m": self.cbd_sigma_e_S_per_m,
        }


def _edge_conductance(micro: Microstructure, graph: ContactGraph, sig: np.ndarray, bulk: str,
                      emask: np.ndarray, neck_rf: np.ndarray | None = None,
                      sigma_cbd: float = 0.0) -> np.ndarray:
    """Conductance (S) of the contacts selected by ``emask`` (both ends conducting). ``neck_rf`` (E,)
    holds the CBD fillet radius of each contact of the graph (0 = none), ``sigma_cbd`` its
    conductivity (module docstring, "CBD necks")."""
    r = micro.radii_m
    i, j = graph.i[emask], graph.j[emask]
    a = graph.contact_radius_m[emask]
    li, lj = graph.l_i_m[emask], graph.l_j_m[emask]

    def g_spread(c: np.ndarray) -> np.ndarray:
        rh = half_contact_resistance(sig[i], c, r[i], li, bulk)
        rh = rh + half_contact_resistance(sig[j], c, r[j], lj, bulk)
        return 1.0 / rh

    if neck_rf is None or not sigma_cbd > 0:
        return g_spread(a)
    rf = np.minimum(neck_rf[emask], np.minimum(r[i], r[j]))
    return neck_conductance(g_spread, a, rf, r[i] * r[j] / (r[i] + r[j]), sigma_cbd)


def _neck_radii(graph: ContactGraph, cbd: CBDPhase) -> np.ndarray:
    """(E,) fillet radius r_f of each contact of ``graph`` (0 where the CBD puts no neck fillet),
    matched by particle pair so that ``cbd`` may come from another graph of the same snapshot."""
    out = np.zeros(graph.n_contacts)
    if len(cbd.neck_radius_m) == 0 or graph.n_contacts == 0:
        return out
    n = graph.n_particles
    lo, hi = np.minimum(cbd.neck_i, cbd.neck_j), np.maximum(cbd.neck_i, cbd.neck_j)
    key_neck = lo * n + hi
    key_edge = graph.i * n + graph.j
    order = np.argsort(key_edge)
    pos = np.clip(np.searchsorted(key_edge[order], key_neck), 0, len(order) - 1)
    hit = key_edge[order][pos] == key_neck
    out[order[pos[hit]]] = cbd.neck_radius_m[hit]
    return out


def resistor_conductivity(
    micro: Microstructure,
    network: str = "electronic",
    axis: str = "z",
    graph: ContactGraph | None = None,
    bulk: str = "none",
    gap_tolerance_rel: float = 0.01,
    min_contact_radius_rel: float = 0.05,
    top_layer_m: float | None = None,
    rtol: float = 1e-10,
    current_rtol: float = CURRENT_RTOL,
    cbd: CBDPhase | None = None,
    cbd_sigma_e_S_per_m: float = 0.0,
) -> ResistorResult:
    """Effective electronic or ionic conductivity (S/m) of ``micro`` along ``axis`` ("x", "y" or "z").

    ``graph`` may be passed to reuse a contact graph; otherwise one is built with the given contact
    rules and probe contact depth ``top_layer_m`` (m; None = one mean AM diameter; see
    `electrodem.analysis.contacts`). ``cbd`` (from `electrodem.analysis.cbd.build_cbd` on this
    snapshot) and ``cbd_sigma_e_S_per_m`` (S/m) add the CBD neck fillets to the electronic contacts
    (module docstring, "CBD necks"; ignored for the ionic network). Model and boundary conditions:
    module docstring.
    """
    if axis not in ("x", "y", "z"):
        raise ValueError(f"axis={axis!r} is invalid: use 'x', 'y' or 'z'")
    if bulk not in BULK_MODELS:
        raise ValueError(f"bulk={bulk!r} is invalid: use one of {BULK_MODELS}")
    try:
        sigma_cbd_in = float(cbd_sigma_e_S_per_m)
    except (TypeError, ValueError):
        sigma_cbd_in = math.nan
    if isinstance(cbd_sigma_e_S_per_m, str | bool) or not (math.isfinite(sigma_cbd_in) and sigma_cbd_in >= 0):
        raise ValueError(f"cbd_sigma_e_S_per_m={cbd_sigma_e_S_per_m!r} is invalid: must be finite and >= 0")
    if cbd is not None and len(cbd.fibril) != micro.n:
        raise ValueError(f"cbd has {len(cbd.fibril)} particles but micro.n={micro.n}: build it from micro")
    if not (0 < rtol < 1):
        raise ValueError(f"rtol={rtol!r} is invalid: must be in (0, 1)")
    if not (0 < current_rtol < 1):
        raise ValueError(f"current_rtol={current_rtol!r} is invalid: must be in (0, 1)")
    mask = network_mask(micro, network)
    ax = "xyz".index(axis)
    if ax < 2 and not micro.periodic[ax]:
        raise ValueError(f"axis={axis!r} is invalid for this snapshot: in-plane needs a periodic axis")
    if graph is None:
        graph = build_contact_graph(micro, gap_tolerance_rel, min_contact_radius_rel, top_layer_m=top_layer_m)
    elif graph.n_particles != micro.n:
        raise ValueError(f"graph.n_particles={graph.n_particles} does not match micro.n={micro.n}")
    n = micro.n
    box = micro.box_m
    h = graph.top_m
    sig_all = np.array([s.sigma_e_S_per_m if network == "electronic" else s.sigma_i_S_per_m
                        for s in micro.species])
    sig = sig_all[micro.species_id] if n else np.zeros(0)
    vol = micro.volumes_m3
    sig_ref = float(np.sum(sig[mask] * vol[mask]) / np.sum(vol[mask])) if np.any(mask) else 0.0
    emask = graph.subgraph(mask) if n else np.zeros(0, bool)
    n_contacts = int(emask.sum())
    zeros = np.zeros(n)
    length = h if ax == 2 else float(box[ax])
    area = float(box[0] * box[1]) if ax == 2 else float(box[1 - ax] * h)
    if ax == 2:
        terminals = (
            f"CC plane z = 0 ({int(np.count_nonzero(graph.cc & mask))} particles); probe plate on the "
            f"{int(np.count_nonzero(graph.top & mask))} exposed particles whose top lies within "
            f"{graph.probe_depth_m * 1e6:.3g} um of the gauge top {graph.gauge_top_m * 1e6:.4g} um; "
            f"thickness under the probe {h * 1e6:.4g} um"
        )
    else:
        terminals = (f"periodic {axis} with an imposed mean potential gradient (what the inner probes of "
                     "a four-probe measurement see)")

    sigma_cbd = sigma_cbd_in if cbd is not None and network == "electronic" else 0.0
    neck_rf = _neck_radii(graph, cbd) if sigma_cbd > 0 else None  # type: ignore[arg-type]
    n_necks = 0 if neck_rf is None else int(np.count_nonzero(neck_rf[emask] > graph.contact_radius_m[emask]))

    def result(sigma, cur, phi, cpp, perc, nsol, solver, msg):
        return ResistorResult(
            network, axis, float(sigma), sig_ref, float(sigma / sig_ref) if sig_ref > 0 else 0.0, perc,
            float(cur), 1.0, float(length), area, cpp, phi, n_contacts, nsol, bulk, solver, graph.source, msg,
            terminals, n_necks, sigma_cbd,
        )

    if not np.any(mask):
        msg = f"no {network} conducting species: sigma_eff = 0"
        return result(0.0, 0.0, zeros, zeros, False, 0, "none", msg)
    gi, gj = graph.i[emask], graph.j[emask]
    ge = _edge_conductance(micro, graph, sig, bulk, emask, neck_rf, sigma_cbd)

    if ax == 2:
        cc_node, top_node = n, n + 1
        pc = np.flatnonzero(graph.cc & mask)
        pt = np.flatnonzero(graph.top & mask)
        r = micro.radii_m
        g_cc = 1.0 / half_contact_resistance(
            sig[pc], graph.cc_contact_radius_m[pc], r[pc], graph.cc_l_m[pc], bulk
        )
        g_top = 1.0 / half_contact_resistance(
            sig[pt], graph.top_contact_radius_m[pt], r[pt], graph.top_l_m[pt], bulk
        )
        ii = np.concatenate([gi, pc, pt])
        jj = np.concatenate([gj, np.full(len(pc), cc_node), np.full(len(pt), top_node)])
        gg = np.concatenate([ge, g_cc, g_top])
        phi, cur, nsol, solver = _solve_dirichlet(n + 2, ii, jj, gg, [top_node], [cc_node], rtol,
                                                  current_rtol)
        if cur <= 0.0:
            msg = (f"{network} network does not percolate from the CC to the top probe "
                   f"({len(pc)} of its particles touch the CC, {len(pt)} the probe; no connected path "
                   "joins them): sigma_eff = 0")
            return result(0.0, 0.0, phi[:n], zeros, False, 0, "none", msg)
        ie = np.abs(gg * (phi[ii] - phi[jj]))
        both = np.concatenate([ii, jj])
        cpp = 0.5 * np.bincount(both, weights=np.concatenate([ie, ie]), minlength=n + 2)[:n]
        sigma = cur * length / (1.0 * area)
        return result(sigma, cur, phi[:n], cpp, True, nsol, solver, f"{network} network percolates along z")

    # in-plane: periodic with a potential jump across the cut at x = 0 (or y = 0)
    nc, labels = cluster_labels(n, graph.i, graph.j, mask)
    wraps = winding_axes(n, graph.i, graph.j, graph.shift, labels, nc)[:, ax]
    if not wraps.any():
        msg = f"{network} network has no cluster that wraps the periodic {axis} axis: sigma_eff = 0"
        return result(0.0, 0.0, zeros, zeros, False, 0, "none", msg)
    act = mask & (labels >= 0) & wraps[np.maximum(labels, 0)]
    sel = act[gi]
    gi, gj, ge = gi[sel], gj[sel], ge[sel]
    s = graph.shift[emask][sel, ax].astype(float)
    adj = sparse.coo_matrix((ge, (gi, gj)), shape=(n, n)).tocsr()
    adj = adj + adj.T
    lap = (sparse.diags(np.asarray(adj.sum(axis=1)).ravel()) - adj).tocsr()
    # I_ij = G (u_i - u_j + s V): Kirchhoff at i gives (L u)_i = -sum G s V, at j +sum G s V
    b = -np.bincount(gi, weights=ge * s, minlength=n) + np.bincount(gj, weights=ge * s, minlength=n)
    act_idx = np.flatnonzero(act)
    pinned = np.zeros(n, bool)
    first = np.full(nc, -1)
    first[labels[act_idx][::-1]] = act_idx[::-1]
    pinned[first[first >= 0]] = True
    unk = np.flatnonzero(act & ~pinned)
    phi = np.zeros(n)
    dx = graph.branch_m[emask][sel, ax]

    def currents(u: np.ndarray) -> tuple[float, float]:
        """Current across the cut vs the volume average of the current along the axis."""
        full = np.zeros(n)
        full[unk] = u
        ce = ge * (full[gi] - full[gj] + s)
        return float(np.sum(ce * s)), float(np.sum(ce * dx) / box[ax])

    x, solver = _solve_spd(lap[unk][:, unk].tocsr(), b[unk], rtol, currents, current_rtol)
    phi[unk] = x
    cur_e = ge * (phi[gi] - phi[gj] + s)
    j_mean = np.sum(cur_e * dx) / (box[0] * box[1] * h)
    sigma = max(j_mean * box[ax] / 1.0, 0.0)
    cur_total = sigma * area / length
    ae = np.abs(cur_e)
    cpp = 0.5 * np.bincount(np.concatenate([gi, gj]), weights=np.concatenate([ae, ae]), minlength=n)
    return result(sigma, cur_total, phi, cpp, True, len(unk), solver,
                  f"{network} network wraps the periodic {axis} axis")
