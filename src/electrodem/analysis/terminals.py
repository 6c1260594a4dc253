"""Measurement terminals for the voxel solver: the probe plate through-plane, inner probes in-plane.

The voxel solver (`electrodem.analysis.transport`) drives current between two Dirichlet faces of the
image. Used as is, that is a plate lying on the highest asperity (through-plane) and an electrode cut
through the sample (in-plane). This module makes both what a measurement sees, with the same rules
as the resistor network (`electrodem.analysis.contacts`, "Through-plane terminals"):

Through-plane (z): CC at z = 0 and a probe plate pressed on the top
    The image spans [0, h_g] with h_g the gauge top. The probe touches the same particles as in the
    contact graph (``ContactGraph.top``: exposed, top within the probe contact depth of h_g). In the
    image, every (x, y) column whose surface (the highest sphere surface above it,
    `electrodem.analysis.contacts.surface_owner_map`) belongs to such a particle has its pore voxels
    above its highest solid voxel set to the *probe* label, a conductor `PROBE_CONTRAST` times better
    than the best phase of the map, joined to the Dirichlet face at h_g. The probe thus wets the
    exposed top of each touching particle and nothing else: gaps between particles and buried solid
    are never reached. The conductivity is reported for the thickness under the probe (the plate
    level of the contact graph): sigma_z = I * plate_level / (V * A), i.e. the image value times
    plate_level / h_g. The probe's own resistance is below 1/PROBE_CONTRAST of the sample's (its
    columns lead straight to the face).

    Difference from the resistor network: the voxel probe wets the exposed top of a touching particle,
    the network joins it through one Holm disc (its half-contact). Both see the same particles.

In-plane (x, y): inner probes of a four-probe measurement
    The faces normal to the axis carry the current (they cut through the periodic sample, so they
    short every particle they cut: a two-probe reading). The reported value uses the inner planes at
    a quarter and three quarters of the length, away from both faces: with I the current, A the
    cross-section and phi_1, phi_2 the mean potential of the conducting voxels on the two planes,
    sigma = (I / A) * (x_2 - x_1) / (phi_1 - phi_2). In a statistically uniform sample the mean field
    there is the bulk field, so this is what the inner probes of a four-probe instrument read, without
    the injection-face artefact. (The resistor network reaches the same quantity differently: periodic
    in-plane with an imposed mean gradient, `electrodem.analysis.resistor`.) The face-to-face value is
    reported alongside.

Nothing is NaN or negative: a map with no connected path gives sigma = 0, tau = inf and a reason.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from electrodem.analysis.contacts import surface_owner_map
from electrodem.analysis.transport import AXES, FLOAT32_MAX_CONTRAST, TransportSolver
from electrodem.config.errors import ConfigError
from electrodem.io.snapshot import Microstructure

__all__ = ["PROBE_CONTRAST", "probe_columns", "probe_fill", "voxel_conductivity"]

PROBE_CONTRAST = 1.0e3
"""Conductivity of the probe label over the largest conductivity of the map: large enough that the
probe adds < 0.1 % of the sample's resistance, small enough to keep the map's contrast solvable."""


def probe_columns(micro: Microstructure, touching: np.ndarray, shape_xy: tuple[int, int]) -> np.ndarray:
    """(nx, ny) bool: the voxel columns whose top surface belongs to a particle in ``touching`` ((N,)
    bool, e.g. ``ContactGraph.top``) on the lateral grid of an image of ``shape_xy`` columns."""
    if not touching.any():
        return np.zeros(shape_xy, bool)
    tops = micro.positions_m[:, 2] + micro.radii_m
    candidates = tops >= tops[touching].min()
    owner = surface_owner_map(micro, candidates, shape_xy)
    return (owner >= 0) & touching[np.maximum(owner, 0)]


def probe_fill(labels: np.ndarray, columns: np.ndarray, probe_label: int) -> np.ndarray:
    """Copy of ``labels`` ([x, y, z], top face = gauge top) with the pore voxels above the highest solid
    voxel of every column in ``columns`` ((nx, ny) bool) set to ``probe_label`` (module docstring)."""
    if labels.ndim != 3 or columns.shape != labels.shape[:2]:
        raise ConfigError("labels", f"array of shape {labels.shape}",
                          f"a 3D label image [x, y, z] with {columns.shape} columns")
    nz = labels.shape[2]
    solid = labels != 0
    top_solid = np.where(solid.any(axis=2), nz - 1 - np.argmax(solid[:, :, ::-1], axis=2), -1)
    above = np.arange(nz)[None, None, :] > top_solid[:, :, None]
    out = labels.copy()
    out[above & columns[:, :, None]] = probe_label
    return out


def _plane_mean(phi: np.ndarray, t: int, index: int) -> float:
    plane = np.take(phi, index, axis=t)
    vals = plane[np.isfinite(plane)]
    return float(vals.mean()) if vals.size else math.nan


def voxel_conductivity(
    labels: np.ndarray,
    sigma_by_label: Mapping[int, float],
    axis: str,
    voxel_size_m: tuple[float, float, float],
    periodic: tuple[bool, bool, bool],
    *,
    probe: np.ndarray | None = None,
    plate_level_m: float | None = None,
    flux_rtol: float = 1e-4,
    progress: bool = False,
) -> dict[str, Any]:
    """Effective conductivity (S/m) of a label image as a measurement sees it (module docstring).

    ``labels`` [x, y, z] spans the electrode from the CC (z = 0) to the gauge top; ``sigma_by_label``
    gives S/m per label (0 = insulating). z: the probe wets the columns ``probe`` ((nx, ny) bool,
    `probe_columns`), the result is scaled to the thickness ``plate_level_m`` (m). x/y: inner-probe
    (four-probe) value.
    Returns a JSON-able dict: ``sigma_eff_S_per_m`` (the measured-like value), ``percolates``,
    ``converged``, ``terminals`` (what was imposed) and ``reason`` (why sigma is 0, else "").
    """
    t = AXES.index(axis)
    sig = {int(k): float(v) for k, v in sigma_by_label.items()}
    present = np.flatnonzero(np.bincount(labels.ravel()))
    missing = [int(v) for v in present if int(v) not in sig]
    if missing:
        raise ConfigError("sigma_by_label", sig, f"a conductivity for every label present; missing {missing}")
    positive = [sig[int(v)] for v in present if sig[int(v)] > 0]
    if not positive:
        return {"sigma_eff_S_per_m": 0.0, "percolates": False, "converged": True,
                "terminals": "", "reason": "no conducting voxels: every label present has sigma = 0"}
    img = labels
    extent_t = labels.shape[t] * voxel_size_m[t]
    if t == 2:
        if probe is None or plate_level_m is None:
            raise ConfigError("probe", probe, "probe columns and a plate level (m) for the z axis")
        lab = int(max(max(sig), int(labels.max())) + 1)
        img = probe_fill(labels.astype(np.uint16) if lab > 255 else labels, probe, lab)
        sig = {**sig, lab: PROBE_CONTRAST * max(positive)}
        terminals = (f"CC face z = 0; probe plate wetting the exposed tops of the particles it touches "
                     f"({int(probe.sum())} voxel columns); gauge top {extent_t * 1e6:.4g} um, thickness "
                     f"under the probe {plate_level_m * 1e6:.4g} um")
    else:
        terminals = (f"current through the {axis} faces (periodic sides); sigma from the mean potentials of "
                     f"the inner planes at 1/4 and 3/4 of the length (four-probe)")
    used = {int(v): sig[int(v)] for v in np.flatnonzero(np.bincount(img.ravel()))}
    pos_used = [v for v in used.values() if v > 0]
    contrast = max(pos_used) / min(pos_used)
    solver = TransportSolver(
        img, axis=t, conductivity=used, periodic_sides=periodic, voxel_size_m=voxel_size_m,
        flux_rtol=flux_rtol, progress=progress, contrast_aware=True,
        precision="float64" if contrast > FLOAT32_MAX_CONTRAST else "auto",
    )
    solver.solve()
    res = solver.result
    assert res is not None
    out: dict[str, Any] = {"percolates": bool(res.sigma_eff_S_per_m > 0), "converged": bool(res.converged),
                           "terminals": terminals, "reason": ""}
    s_faces = float(res.sigma_eff_S_per_m)
    if s_faces <= 0:
        where = "the CC to the probe" if t == 2 else f"face to face along {axis}"
        out.update(sigma_eff_S_per_m=0.0, reason=f"no connected conducting path from {where}: sigma = 0")
        return out
    if t == 2:
        out["sigma_eff_S_per_m"] = s_faces * float(plate_level_m) / extent_t  # type: ignore[arg-type]
        return out
    n = labels.shape[t]
    i1, i2 = n // 4, (3 * n) // 4
    phi = solver.potential_field()
    d_phi = _plane_mean(phi, t, i1) - _plane_mean(phi, t, i2)
    out["sigma_faces_S_per_m"] = s_faces
    if i2 > i1 and math.isfinite(d_phi) and d_phi > 0:
        # I / A = s_faces / L for a 1 V drop; the inner planes are (i2 - i1) pitches apart.
        out["sigma_eff_S_per_m"] = s_faces * (i2 - i1) / (n * d_phi)
    else:
        out["sigma_eff_S_per_m"] = s_faces
        out["terminals"] += "; inner planes unusable (too few voxels): face-to-face value"
    return out
