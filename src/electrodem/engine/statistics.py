"""Contact-network statistics of a simulation state: coordination per material pair and the
distribution of contact forces.

Pure NumPy on the arrays of `Simulation.contact_arrays` (so it also works on saved contact sets).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def coordination_by_material(
    i: np.ndarray, j: np.ndarray, material_id: np.ndarray, n_materials: int
) -> dict[str, np.ndarray]:
    """Contacts per material pair.

    ``i``, ``j``: particle indices of each touching pair; ``material_id``: material index per particle.
    Returns ``contacts`` (n_mat, n_mat) symmetric count of pairs (a pair of two materials a != b is
    counted once in [a, b] and once in [b, a]; a like pair once on the diagonal), ``particles`` per
    material, and ``coordination`` (n_mat, n_mat): mean number of partners of material b that a
    particle of material a touches (row a sums to that material's mean coordination number), plus
    ``mean`` = 2 (pairs) / (particles), the mean coordination number of the whole assembly.
    """
    mat = np.asarray(material_id, np.int64)
    counts = np.bincount(mat, minlength=n_materials).astype(float)
    ma, mb = mat[np.asarray(i, np.int64)], mat[np.asarray(j, np.int64)]
    partners = np.zeros((n_materials, n_materials))
    np.add.at(partners, (ma, mb), 1.0)
    np.add.at(partners, (mb, ma), 1.0)
    pairs = partners.copy()
    pairs[np.diag_indices(n_materials)] *= 0.5
    with np.errstate(invalid="ignore", divide="ignore"):
        coord = np.where(counts[:, None] > 0, partners / counts[:, None], 0.0)
    return {  # type: ignore[return-value]
        "contacts": pairs,
        "particles": counts,
        "coordination": coord,
        "mean": 2.0 * len(ma) / max(len(mat), 1),
    }


def force_distribution(normal_force_N: np.ndarray, bins: int = 40, f_max_rel: float = 5.0) -> dict[str, Any]:
    """Probability density of the normalised normal contact force f / <f>.

    Returns ``mean_force_N``, ``edges`` and ``density`` (histogram of f / <f> on [0, f_max_rel],
    normalised so that density integrates to the fraction of contacts inside that range),
    ``fraction_above_mean`` and ``max_rel``. Strong force chains show as an exponential tail
    (Radjai et al. 1996; Mueth et al. 1998).
    """
    f = np.asarray(normal_force_N, float)
    f = f[f > 0]
    if f.size == 0:
        return {
            "mean_force_N": 0.0,
            "edges": np.zeros(0),
            "density": np.zeros(0),
            "fraction_above_mean": 0.0,
            "max_rel": 0.0,
            "n_contacts": 0,
        }
    mean = float(f.mean())
    rel = f / mean
    edges = np.linspace(0.0, f_max_rel, bins + 1)
    hist, _ = np.histogram(rel, edges)
    density = hist / (f.size * np.diff(edges))
    return {
        "mean_force_N": mean,
        "edges": edges,
        "density": density,
        "fraction_above_mean": float(np.mean(rel > 1.0)),
        "max_rel": float(rel.max()),
        "n_contacts": int(f.size),
    }
