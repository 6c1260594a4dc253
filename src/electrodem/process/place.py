"""Initial placement: non-overlapping random sequential addition (RSA) of a polydisperse population.

The box is periodic in x and y and bounded below by the current collector (z = 0). Its height is
chosen so that the loose ("as-poured") packing fraction equals ``packing_fraction``.

Particles are placed largest first, in batches: every round proposes a random position for each
particle still pending and accepts those that overlap neither a placed particle nor an earlier
candidate of the same round. Placed particles are kept in one periodic k-d tree per radius band
(bands a factor 2 wide), and each candidate band is checked against each placed band with a search
distance of the two bands' largest radii, so a size ratio of 50 never searches at the scale of the
largest particle for every small one (the multi-level grid idea, with scipy's k-d trees).
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree
from tqdm.auto import tqdm

from electrodem.config.errors import is_integer, is_number, require
from electrodem.io.snapshot import Microstructure
from electrodem.materials.formulation import Formulation, Population, RVESpec, solid_mass_g

log = logging.getLogger(__name__)

CANDIDATES_PER_ROUND = 20_000
MAX_TRIES_PER_ROUND = 2_000


class PlacementError(RuntimeError):
    """RSA could not place every particle (the packing fraction is too high for RSA)."""


@dataclass(frozen=True)
class PlaceParams:
    """Parameters of the placement step.

    packing_fraction: solid volume / box volume of the loose state (RSA jams near 0.38 for
        monodisperse spheres; polydisperse mixtures go higher).
    max_rounds: rounds of batch proposals per radius band before giving up (each round gives every
        pending particle up to 2000 tries when few remain).
    position_perturbation_rel: every placed coordinate moves by u x this x the box length along it,
        u uniform in [-1, 1] (0 = none). For robustness checks of chaotic trajectories (the test
        suite's ``--chaos`` matrix uses 1e-12): a result that changes beyond its stated tolerance
        under such a perturbation depends on round-off, not on physics.
    """

    packing_fraction: float = 0.30
    max_rounds: int = 400
    position_perturbation_rel: float = 0.0

    def __post_init__(self) -> None:
        # Type first: a string would make the range comparison raise TypeError, which names no key.
        pf = self.packing_fraction
        require(is_number(pf) and 0.0 < pf <= 0.45, "place.packing_fraction", pf,
                "a loose packing fraction in (0, 0.45] (random sequential addition jams above that)")
        require(is_integer(self.max_rounds) and self.max_rounds > 0, "place.max_rounds",
                self.max_rounds, "a positive integer")
        v = self.position_perturbation_rel
        require(is_number(v) and 0.0 <= v <= 1e-9,
                "place.position_perturbation_rel", v,
                "a relative perturbation in [0, 1e-9] (far below any gap RSA leaves)")


def _min_image(d: np.ndarray, box: np.ndarray) -> np.ndarray:
    d[:, :2] -= box[:2] * np.round(d[:, :2] / box[:2])
    return d


class _BandedIndex:
    """Placed particles grouped into radius bands, each with a periodic k-d tree."""

    def __init__(self, edges: np.ndarray, boxsize: np.ndarray) -> None:
        self.edges = edges
        self.boxsize = boxsize
        nb = len(edges) - 1
        self.pos: list[np.ndarray] = [np.zeros((0, 3)) for _ in range(nb)]
        self.rad: list[np.ndarray] = [np.zeros(0) for _ in range(nb)]
        self.trees: list[cKDTree | None] = [None] * nb

    def add(self, band: int, pos: np.ndarray, rad: np.ndarray) -> None:
        self.pos[band] = np.vstack([self.pos[band], pos])
        self.rad[band] = np.concatenate([self.rad[band], rad])
        self.trees[band] = cKDTree(self.pos[band], boxsize=self.boxsize)

    def overlaps(self, pos: np.ndarray, rad: np.ndarray) -> np.ndarray:
        """Boolean mask: candidate overlaps a placed particle."""
        bad = np.zeros(len(pos), dtype=bool)
        ctree = cKDTree(pos, boxsize=self.boxsize)
        rc_max = float(rad.max())
        for b, tree in enumerate(self.trees):
            if tree is None:
                continue
            pairs = ctree.sparse_distance_matrix(tree, rc_max + float(self.rad[b].max()),
                                                 output_type="ndarray")
            if len(pairs):
                hit = pairs["v"] < rad[pairs["i"]] + self.rad[b][pairs["j"]]
                bad[pairs["i"][hit]] = True
        return bad


def _self_conflicts(pos: np.ndarray, rad: np.ndarray, box: np.ndarray, boxsize: np.ndarray) -> np.ndarray:
    """Mask of candidates that overlap an earlier candidate of the same batch."""
    bad = np.zeros(len(pos), dtype=bool)
    if len(pos) < 2:
        return bad
    pairs = cKDTree(pos, boxsize=boxsize).query_pairs(2.0 * float(rad.max()), output_type="ndarray")
    if len(pairs):
        d = np.linalg.norm(_min_image(pos[pairs[:, 0]] - pos[pairs[:, 1]], box), axis=1)
        hit = d < rad[pairs[:, 0]] + rad[pairs[:, 1]]
        bad[np.maximum(pairs[hit, 0], pairs[hit, 1])] = True
    return bad


def perturb_positions(pos: np.ndarray, radii: np.ndarray, box: np.ndarray, rel: float,
                      seed: int) -> np.ndarray:
    """``pos`` + u x ``rel`` x ``box`` per coordinate (m), u uniform in [-1, 1] from a generator of its
    own (seeded by ``seed``, so the placement draws stay untouched); no particle is pushed below the
    collector plane (z >= r)."""
    u = np.random.default_rng([seed, 0x5EED]).uniform(-1.0, 1.0, pos.shape)
    out = pos + u * rel * np.asarray(box, dtype=float)[None, :]
    out[:, 2] = np.maximum(out[:, 2], np.minimum(pos[:, 2], radii))
    return out


def sequential_bed(radii_m: np.ndarray, side_m: float, solid_fraction: float, rng: np.random.Generator,
                   max_tries: int | None = None) -> tuple[np.ndarray, float]:
    """(positions (n, 3) m, layer height m): spheres of ``radii_m`` added one at a time, in the given
    order, at uniform random positions in a square ``side_m`` box periodic in x and y, between the
    collector (z >= r) and the height at which their volume fills ``solid_fraction`` of it; a draw that
    overlaps a sphere already placed is redrawn (three ``rng.random()`` calls per draw). The brute-force
    reference placer of the tests and studies (O(n^2), small beds); `place` is the production one.
    RuntimeError when a sphere finds no room in ``max_tries`` draws (None: no limit)."""
    r = np.asarray(radii_m, dtype=float)
    h = float((4.0 / 3.0 * np.pi * r**3).sum() / (side_m * side_m * solid_fraction))
    if h < 2.0 * r.max():
        raise ValueError(f"a layer {h:.3g} m thick cannot hold a sphere of radius {r.max():.3g} m: "
                         "more spheres, a smaller box or a lower solid fraction")
    pos = np.zeros((len(r), 3))
    for k in range(len(r)):
        for _ in itertools.count() if max_tries is None else range(max_tries):
            p = np.array([rng.random() * side_m, rng.random() * side_m, r[k] + rng.random() * (h - 2 * r[k])])
            d = pos[:k] - p
            d[:, :2] -= side_m * np.round(d[:, :2] / side_m)
            if k == 0 or np.all(np.linalg.norm(d, axis=1) > r[:k] + r[k]):
                pos[k] = p
                break
        else:
            raise RuntimeError(f"sphere {k} (r = {r[k]:.3g} m) found no room in {max_tries} draws")
    return pos, h


def place(pop: Population, box_x_m: float, box_y_m: float, params: PlaceParams, seed: int,
          progress: bool = True) -> Microstructure:
    """Place ``pop`` without overlaps in a box periodic in x/y on the current collector.

    Returns a `Microstructure` whose ``box_m[2]`` is the loose bed height (m) and whose metadata
    records the step. Raises `PlacementError` if RSA jams.
    """
    rng = np.random.default_rng(seed)
    r = 0.5 * np.asarray(pop.diameters_m, dtype=float)
    n = len(r)
    require(n > 0, "population", n, "at least one particle")
    area = box_x_m * box_y_m
    height = float(np.sum(4.0 / 3.0 * np.pi * r**3)) / (area * params.packing_fraction)
    r_max = float(r.max())
    if height < 2.0 * r_max or min(box_x_m, box_y_m) < 2.0 * r_max:
        raise PlacementError(
            f"box {box_x_m * 1e6:.3g} x {box_y_m * 1e6:.3g} µm x loose height {height * 1e6:.3g} µm is "
            f"smaller than the largest particle ({2e6 * r_max:.3g} µm): enlarge rve.box_x_um/box_y_um "
            f"or the loading")
    box = np.array([box_x_m, box_y_m, height])
    # z is not periodic: a k-d tree period far beyond any search distance switches it off.
    boxsize = np.array([box_x_m, box_y_m, 4.0 * height + 8.0 * r_max])
    r_min = float(r.min())
    nb = max(1, int(np.floor(np.log2(r_max / r_min))) + 1)
    edges = r_min * 2.0 ** np.arange(nb + 1)
    edges[-1] = max(edges[-1], r_max * (1 + 1e-12))
    band_of = np.clip(np.searchsorted(edges, r, side="right") - 1, 0, nb - 1)
    index = _BandedIndex(edges, boxsize)
    pos = np.full((n, 3), np.nan)
    bar = tqdm(total=n, desc="place (RSA)", unit="particle", disable=not progress, mininterval=0.5)
    rounds_used = 0
    for band in range(nb - 1, -1, -1):
        pending = np.flatnonzero(band_of == band)
        pending = pending[np.argsort(-r[pending])]
        for _ in range(params.max_rounds):
            if len(pending) == 0:
                break
            rounds_used += 1
            # Near saturation a free spot is rare: give each pending particle several tries per
            # round, keeping the batch near CANDIDATES_PER_ROUND so the cost per round stays flat.
            m = int(np.clip(CANDIDATES_PER_ROUND // len(pending), 1, MAX_TRIES_PER_ROUND))
            owner = np.repeat(np.arange(len(pending)), m)
            rp = r[pending][owner]
            cand = np.column_stack([
                rng.uniform(0.0, box_x_m, len(owner)),
                rng.uniform(0.0, box_y_m, len(owner)),
                rng.uniform(rp, height - rp),
            ])
            free = ~index.overlaps(cand, rp)
            # First free try of each pending particle.
            first = np.full(len(pending), -1)
            hit = np.flatnonzero(free)
            first_hit = hit[np.unique(owner[hit], return_index=True)[1]]
            first[owner[first_hit]] = first_hit
            chosen = np.flatnonzero(first >= 0)
            sel = first[chosen]
            ok = ~_self_conflicts(cand[sel], rp[sel], box, boxsize)
            if ok.any():
                pos[pending[chosen[ok]]] = cand[sel[ok]]
                index.add(band, cand[sel[ok]], rp[sel[ok]])
                bar.update(int(ok.sum()))
            placed_now = np.zeros(len(pending), dtype=bool)
            placed_now[chosen[ok]] = True
            pending = pending[~placed_now]
        if len(pending):
            bar.close()
            raise PlacementError(
                f"random sequential addition jammed: {len(pending)} of {n} particles (radius band "
                f"{edges[band] * 1e6:.3g}-{edges[band + 1] * 1e6:.3g} µm) found no free spot after "
                f"{params.max_rounds} rounds at place.packing_fraction={params.packing_fraction}; "
                f"lower place.packing_fraction")
    bar.close()
    if params.position_perturbation_rel > 0.0:
        pos = perturb_positions(pos, r, box, params.position_perturbation_rel, seed)
    log.info("placed %d particles in %d rounds, loose height %.4g µm", n, rounds_used, height * 1e6)
    return Microstructure(
        positions_m=pos,
        radii_m=r,
        species_id=pop.species_id,
        species=pop.species,
        box_m=box,
        periodic=(True, True, False),
        metadata={
            "stage": "place",
            "place": {"method": "random sequential addition, largest first, banded k-d trees",
                      "packing_fraction": params.packing_fraction, "rounds": rounds_used,
                      "loose_height_um": height * 1e6, "seed": seed,
                      "position_perturbation_rel": params.position_perturbation_rel},
        },
    )


def loose_height_um(formulation: Formulation, rve: RVESpec, packing_fraction: float) -> float:
    """Height (µm) of the loose bed `place` builds: solid volume / (area x packing fraction), from the
    formulation's mass and densities (no particle drawn)."""
    m_g = solid_mass_g(formulation, rve)
    v_um3 = sum(c.wt_pct / 100.0 * m_g / c.material.density_g_cm3 * 1e12 for c in formulation.components)
    return v_um3 / (rve.box_x_um * rve.box_y_um * packing_fraction)
