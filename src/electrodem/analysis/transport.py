"""Effective conductivity / diffusivity and tortuosity factor of a voxel image (TauFactor-2 conventions).

Problem solved
--------------
Steady conduction div(sigma grad V) = 0 in the conducting voxels of an image, discretised by
finite volumes on the 7-point stencil: one potential per voxel centre, the face between two voxels
has conductance ``sigma_f * A / h`` with ``sigma_f`` the harmonic mean of the two voxel
conductivities (series combination of the two half-voxels). Along the transport axis, V = 1 and
V = 0 are imposed on the two outer faces of the image, half a voxel from the first and last voxel
centres (the TauFactor 2 convention); the side faces are insulating (no flux) by default or
periodic on request. Voxels not connected (through faces) to both driven faces carry no current
and are removed first; their share is reported as ``1 - percolating_fraction``.

Outputs and definitions
-----------------------
With I the current through the image, L its length along the axis and A its cross-section,
``sigma_eff = I L / (A * 1 V)`` and, with sigma_0 the reference (bulk) conductivity of the phase:

* volume fraction ``eps``: conducting voxels / all voxels (the whole phase, percolating or not);
* relative effective conductivity ``sigma_eff / sigma_0``;
* tortuosity factor ``tau = eps * sigma_0 / sigma_eff`` (not squared; equivalently
  ``sigma_mean / sigma_eff`` with sigma_mean the volume-average conductivity, which is how a
  multi-phase map is handled, as in TauFactor's multi-phase solver);
* MacMullin number ``N_M = sigma_0 / sigma_eff = tau / eps``;
* Bruggeman exponent ``alpha`` such that ``tau = eps ** (-alpha)``: ``alpha = -ln(tau) / ln(eps)``
  (0.5 for a dilute suspension of spheres in the Bruggeman picture).

A phase that does not connect the two faces gives ``sigma_eff = 0``, ``tau = N_M = inf``; no
output is ever NaN or negative.

Multi-phase maps
----------------
`effective_conductivity_multiphase` takes a label image and a conductivity per label (0 =
insulating: pore for electrons, active material for ions, ...) and solves the whole map in the one
system above (TauFactor 2's multi-phase solver: harmonic-mean faces, the same Dirichlet faces and
sides). It reports sigma_eff (S/m) and TauFactor's multi-phase tau = sigma_mean / sigma_eff, with
sigma_mean the volume-average conductivity of the image, written tau = sigma_ref eps / sigma_eff
with eps the conducting volume fraction and sigma_ref the mean conductivity of the conducting
voxels; for one conducting phase this is the tau above (`MultiphaseResult`). A map with one
conductivity is solved exactly as `solve_transport` solves the phase; maps with several use the
high-contrast multigrid (``contrast_aware``) and, past a contrast of `FLOAT32_MAX_CONTRAST`,
float64 from the start. Series and parallel laminates with contrasts up to 1e6 give the harmonic
and arithmetic means to the flux tolerance (tests/analysis/test_transport_multiphase.py).

Resolution
----------
Voxel staircases converge slowly (first order in the voxel size) wherever the phase has narrow
throats. Measured on a Boolean (overlapping-sphere) medium of porosity 0.46, through-plane, with k
voxels per sphere diameter: the pore-phase tau is too high by about 180 %/k (24 % at k = 8, 11 % at
16, 5.6 % at 32; limit from Richardson extrapolation), the solid-phase tau too low by about 70 %/k.
For a matrix around a simple-cubic lattice of insulating spheres (test suite) the error of
sigma_eff is 2 % at 27 voxels per diameter. So: >= 20 voxels per diameter of the finest phase that
controls the throats for ~10 %, or two resolutions and a Richardson extrapolation
(tau_inf ~ 2 tau_2k - tau_k) for ~1-2 %. TauFactor 2 uses the same discretisation and has the
same resolution error (our tau equals its tau on the same image).

The linear system is solved by conjugate gradients preconditioned by an aggregation multigrid
W-cycle (`electrodem.analysis.voxel_multigrid`) and stopped on a physical criterion:
the currents through the inlet face, the outlet face and every slice interface in between agree to
``flux_rtol`` (relative). Exact discrete solutions conserve current slice by slice, so this
measures the error in the quantity we report.

Loose tolerances are solved in float32. Its attainable accuracy is a relative residual of a few
1e-7; when the current through the image is a small part of the boundary conductance (a poorly
conducting bottleneck: e.g. an electronic map where the carbon does not percolate and the current
crosses the active material), that floor can exceed ``flux_rtol``. The float32 solve then stops at
the precision limit (or on any breakdown or divergence) and the solve continues in float64 from the
float32 iterate; ``precision`` and ``precision_fallback`` in the result say so.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import scipy.ndimage as ndi
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from electrodem.analysis.voxel_multigrid import (
    COARSE_SCALE,
    CONTRAST_CLASS_RATIO,
    CONTRAST_COARSE_SCALE,
    Level,
    MultigridPreconditioner,
    block_ordered_cells,
    contrast_classes,
    coords_of,
    levels_for,
    neighbour_indices,
    pcg,
)
from electrodem.analysis.voxelize import VoxelImage
from electrodem.config.errors import ConfigError

log = logging.getLogger("electrodem")


class TransportSolveError(RuntimeError):
    """The solver failed on a phase that connects the two faces: no finite, positive current came out
    (a diverged or NaN solve). Never reported as sigma = 0 / tau = inf, which would read as a phase
    that does not percolate."""

AXES = ("x", "y", "z")
FLOAT32_FLUX_RTOL = 3e-5
"""Smallest flux tolerance solved in float32; below it the solver works in float64."""
PRECISIONS = ("auto", "float32", "float64")


def _plain_json(fields_: dict[str, Any]) -> dict[str, Any]:
    """A result's fields as plain JSON: infinities become ``"inf"`` (strict JSON has no Infinity),
    tuples lists, and mapping keys (e.g. labels) strings."""
    out: dict[str, Any] = {}
    for k, v in fields_.items():
        if isinstance(v, float) and math.isinf(v):
            v = "inf"
        elif isinstance(v, tuple):
            v = list(v)
        elif isinstance(v, dict):
            v = {str(key): x for key, x in v.items()}
        out[k] = v
    return out


@dataclass(frozen=True)
class TransportResult:
    """Effective transport of one phase (or conductivity map) along one axis (module docstring).

    Dimensionless unless the name carries a unit. ``sigma0_S_per_m`` is the reference
    conductivity: 1.0 for a binary phase unless given (then the ``*_S_per_m`` values are relative).
    ``precision`` is the floating-point type of the final solve (``"float32"``/``"float64"``);
    ``precision_fallback`` is empty, or says why a float32 solve was continued in float64.
    """

    axis: str
    shape: tuple[int, int, int]
    voxel_size_m: tuple[float, float, float] | None
    periodic_sides: tuple[bool, bool, bool]
    volume_fraction: float
    percolating_fraction: float
    percolates: bool
    sigma0_S_per_m: float
    sigma_mean_S_per_m: float
    sigma_eff_S_per_m: float
    relative_conductivity: float
    tortuosity_factor: float
    macmullin_number: float
    bruggeman_exponent: float | None
    iterations: int
    relative_residual: float
    flux_mismatch: float
    slice_flux_spread: float
    converged: bool
    precision: str
    precision_fallback: str
    n_unknowns: int
    setup_time_s: float
    solve_time_s: float

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dict; infinities become the string ``"inf"`` (strict JSON has no Infinity)."""
        return _plain_json(asdict(self))


def _axis_index(axis: str | int) -> int:
    if isinstance(axis, str) and axis.lower() in AXES:
        return AXES.index(axis.lower())
    if isinstance(axis, (int, np.integer)) and not isinstance(axis, bool) and 0 <= int(axis) <= 2:
        return int(axis)
    raise ConfigError("axis", axis, "one of 'x', 'y', 'z' (or 0, 1, 2: the array axis of the transport)")


def _periodic_tuple(periodic_sides: bool | Sequence[bool], t: int) -> tuple[bool, bool, bool]:
    if isinstance(periodic_sides, (bool, np.bool_)):
        per = [bool(periodic_sides)] * 3
        per[t] = False
        return tuple(per)  # type: ignore[return-value]
    per = [bool(p) for p in periodic_sides]
    if len(per) != 3:
        raise ConfigError("periodic_sides", periodic_sides, "a bool or three bools (x, y, z)")
    if per[t]:
        raise ConfigError(
            "periodic_sides",
            periodic_sides,
            f"the transport axis {AXES[t]!r} carries the fixed potentials and cannot be periodic",
        )
    return tuple(per)  # type: ignore[return-value]


@dataclass(frozen=True)
class _Conductors:
    """The conducting voxels of an input, and how to get their conductivity."""

    mask: np.ndarray  # bool grid of conducting voxels
    values: np.ndarray  # the (3D) input array
    table: np.ndarray | None  # label -> conductivity (S/m) for a multi-phase label image
    is_map: bool  # conductivities come from the data (float map or table), not a binary phase
    scale_S_per_m: float  # largest conductivity of a map (the system is solved divided by it)
    single_valued: bool  # one conductivity value among the conducting voxels


def _conductors(
    image: VoxelImage | np.ndarray,
    phase: int | Sequence[int] | None,
    conductivity: Mapping[int, float] | None,
) -> _Conductors:
    """Validate the image / phase / conductivity arguments and find the conducting voxels."""
    labels = image.labels if isinstance(image, VoxelImage) else image
    if not isinstance(labels, np.ndarray):
        raise ConfigError("image", type(labels).__name__, "a NumPy array or a VoxelImage")
    if labels.ndim == 2:
        labels = labels[:, :, None]
    if labels.ndim != 3 or labels.size == 0:
        raise ConfigError("image", f"array of shape {labels.shape}", "a non-empty 2D or 3D array")
    kind = labels.dtype.kind
    if conductivity is not None and phase is not None:
        raise ConfigError(
            "phase", phase, "give either phase (binary) or conductivity (multi-phase map), not both"
        )
    if kind == "b":
        if phase is not None or conductivity is not None:
            raise ConfigError(
                "phase", phase, "a boolean image is its own phase mask; leave phase and conductivity unset"
            )
        return _Conductors(labels, labels, None, False, 1.0, True)
    if kind == "f":
        if phase is not None or conductivity is not None:
            raise ConfigError(
                "phase",
                phase,
                "a float image is a conductivity map (S/m); leave phase and conductivity unset",
            )
        if not np.all(np.isfinite(labels)) or labels.min() < 0:
            raise ConfigError("image", "conductivity map", "finite values >= 0 (S/m)")
        mask = labels > 0
        vmax = float(labels.max())
        single = vmax == 0 or float(labels[mask].min()) == vmax
        return _Conductors(mask, labels, None, True, vmax if vmax > 0 else 1.0, single)
    if kind not in "iu":
        raise ConfigError(
            "image", f"dtype {labels.dtype}", "integer labels, booleans or float conductivities"
        )
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi > 65535:
        raise ConfigError("image", f"labels {lo}..{hi}", "integer labels in 0..65535")
    table = np.zeros(hi + 1, dtype=np.float64)
    if conductivity is not None:
        if not isinstance(conductivity, Mapping) or not conductivity:
            raise ConfigError("conductivity", conductivity, "a non-empty mapping label -> conductivity (S/m)")
        for lab, sig in conductivity.items():
            if not isinstance(lab, (int, np.integer)) or isinstance(lab, bool) or lab < 0:
                raise ConfigError(f"conductivity[{lab!r}]", sig, "keys must be integer labels >= 0")
            if (
                isinstance(sig, bool)
                or not isinstance(sig, (int, float, np.number))
                or not np.isfinite(sig)
                or sig < 0
            ):
                raise ConfigError(f"conductivity[{lab!r}]", sig, "a finite conductivity >= 0 (S/m)")
            if lab <= hi:
                table[int(lab)] = float(sig)
        counts = np.bincount(labels.ravel(), minlength=hi + 1)
        present = table[(counts > 0) & (table > 0)]
        vmax = float(table.max())
        return _Conductors(
            (table > 0)[labels], labels, table, True, vmax if vmax > 0 else 1.0, len(np.unique(present)) <= 1
        )
    if phase is None:
        raise ConfigError(
            "phase", None, "the label (or labels) of the conducting phase, e.g. phase=0 for pores"
        )
    phases = [phase] if isinstance(phase, (int, np.integer)) else list(phase)
    for p in phases:
        if not isinstance(p, (int, np.integer)) or isinstance(p, bool) or p < 0:
            raise ConfigError("phase", phase, "an integer label >= 0 or a sequence of them")
        if p <= hi:
            table[int(p)] = 1.0
    return _Conductors((table > 0)[labels], labels, table, False, 1.0, True)


def percolating_mask(mask: np.ndarray, t: int, periodic: tuple[bool, bool, bool]) -> np.ndarray:
    """The voxels of ``mask`` face-connected to both faces of the image normal to axis ``t``.

    Clusters are found with 6-connectivity (the stencil couples faces only) and merged across the
    periodic sides.
    """
    lab, n = ndi.label(mask)
    if n == 0:
        return np.zeros(mask.shape, dtype=bool)
    # Clusters touching across a periodic side are one cluster: connected components of a graph
    # on cluster ids.
    pairs_a, pairs_b = [], []
    for d in range(3):
        if periodic[d] and mask.shape[d] > 1:
            lo = np.take(lab, 0, axis=d).ravel()
            hi = np.take(lab, mask.shape[d] - 1, axis=d).ravel()
            both = (lo > 0) & (hi > 0)
            pairs_a.append(lo[both])
            pairs_b.append(hi[both])
    comp = np.arange(n + 1)
    if pairs_a:
        a = np.concatenate(pairs_a)
        b = np.concatenate(pairs_b)
        graph = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(n + 1, n + 1))
        _, comp = connected_components(graph, directed=False)
    ends = []
    for face in (0, mask.shape[t] - 1):
        ids = np.unique(np.take(lab, face, axis=t))
        ends.append(np.unique(comp[ids[ids > 0]]))
    spanning = np.intersect1d(ends[0], ends[1])
    keep = np.zeros(n + 1, dtype=bool)
    keep[1:] = np.isin(comp[1:], spanning)
    return keep[lab]


class TransportSolver:
    """Effective conductivity of one phase (or a conductivity map) of a voxel image along one axis.

    Construct with the data, call `solve` (returns the tortuosity factor, the headline number);
    the full `TransportResult` is then in ``self.result`` and the potential in `potential_field`.

    Parameters
    ----------
    image : `VoxelImage` or array indexed ``[x, y, z]`` (a 2D array is one voxel thick in z):
        integer labels (give ``phase`` or ``conductivity``), booleans (True = conducting) or floats
        (a conductivity map in S/m, 0 = insulating).
    phase : label(s) of the conducting phase for a label image (binary problem).
    axis : 'x', 'y' or 'z' (array axes 0, 1, 2).
    conductivity : mapping label -> conductivity (S/m) for a multi-phase label image.
    periodic_sides : wrap the side faces (bool for both, or one bool per axis; never the transport
        axis). Default False: insulating sides, as TauFactor 2.
    voxel_size_m : voxel edge(s) (m): a float or (hx, hy, hz); taken from a `VoxelImage`, else cubic.
        Only the ratios matter for the dimensionless outputs.
    sigma0_S_per_m : reference conductivity sigma_0; default 1.0 for a binary phase (relative
        results), the largest conductivity for a map.
    flux_rtol : stop when inlet, outlet and all slice currents agree within this relative spread.
    max_iterations : CG iteration cap (the result says ``converged=False`` if reached).
    progress : show a tqdm bar over the CG iterations.
    precision : ``"auto"`` (float32 when ``flux_rtol >= FLOAT32_FLUX_RTOL``, else float64),
        ``"float32"`` or ``"float64"`` (the working precision; a float32 solve that cannot reach
        ``flux_rtol`` still continues in float64).
    contrast_aware : for a map with several conductivities, the high-contrast multigrid
        (`electrodem.analysis.voxel_multigrid`, "High contrast"): needed from contrasts of ~1e3,
        where the default aggregation can stall. A map with one conductivity (the largest in the
        mapping) is then solved as the binary phase, bit for bit. Off by default so that existing
        results do not move; `effective_conductivity_multiphase` switches it on.
    """

    def __init__(
        self,
        image: VoxelImage | np.ndarray,
        phase: int | Sequence[int] | None = None,
        axis: str | int = "z",
        *,
        conductivity: Mapping[int, float] | None = None,
        periodic_sides: bool | Sequence[bool] = False,
        voxel_size_m: float | Sequence[float] | None = None,
        sigma0_S_per_m: float | None = None,
        flux_rtol: float = 1e-4,
        max_iterations: int = 500,
        progress: bool = False,
        precision: str = "auto",
        contrast_aware: bool = False,
    ) -> None:
        self.t = _axis_index(axis)
        self.periodic = _periodic_tuple(periodic_sides, self.t)
        if not (isinstance(flux_rtol, (int, float)) and 1e-9 <= flux_rtol < 1):
            raise ConfigError("flux_rtol", flux_rtol, "a relative tolerance in [1e-9, 1)")
        if not isinstance(max_iterations, (int, np.integer)) or max_iterations < 1:
            raise ConfigError("max_iterations", max_iterations, "an integer >= 1")
        if voxel_size_m is None and isinstance(image, VoxelImage):
            voxel_size_m = image.voxel_size_m
        if voxel_size_m is None:
            spacing = np.ones(3)
        else:
            spacing = (
                np.broadcast_to(np.asarray(voxel_size_m, dtype=np.float64), (3,)).copy()
                if np.ndim(voxel_size_m) in (0, 1) and np.size(voxel_size_m) in (1, 3)
                else None
            )
            if spacing is None or not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
                raise ConfigError("voxel_size_m", voxel_size_m, "a length > 0 (m) or three of them")
        self.voxel_size_m = None if voxel_size_m is None else tuple(float(h) for h in spacing)
        self.spacing = spacing / spacing.min()
        self._c = _conductors(image, phase, conductivity)
        if sigma0_S_per_m is None:
            sigma0_S_per_m = self._c.scale_S_per_m if self._c.is_map else 1.0
        if (
            isinstance(sigma0_S_per_m, bool)
            or not isinstance(sigma0_S_per_m, (int, float, np.number))
            or not np.isfinite(sigma0_S_per_m)
            or sigma0_S_per_m <= 0
        ):
            raise ConfigError("sigma0_S_per_m", sigma0_S_per_m, "a finite conductivity > 0 (S/m)")
        self.sigma0_S_per_m = float(sigma0_S_per_m)
        # Multiplier from the solved (scaled) system to S/m: a binary phase is solved with sigma = 1.
        self._unit_S_per_m = self._c.scale_S_per_m if self._c.is_map else self.sigma0_S_per_m
        self.flux_rtol = float(flux_rtol)
        if precision not in PRECISIONS:
            raise ConfigError("precision", precision, f"one of {PRECISIONS}")
        if not isinstance(contrast_aware, (bool, np.bool_)):
            raise ConfigError("contrast_aware", contrast_aware, "true or false")
        self.contrast_aware = bool(contrast_aware)
        # float32 reaches current balances of ~1e-5; tighter requests need float64.
        self.dtype: type = (
            np.float64
            if precision == "float64" or (precision == "auto" and flux_rtol < FLOAT32_FLUX_RTOL)
            else np.float32
        )
        self.max_iterations = int(max_iterations)
        self.progress = progress
        self.shape: tuple[int, int, int] = tuple(int(s) for s in self._c.mask.shape)  # type: ignore[assignment]
        self.result: TransportResult | None = None
        self._cells: np.ndarray | None = None
        self._potential: np.ndarray | None = None

    # ------------------------------------------------------------------ per-cell conductivity
    def _sigma_of_cells(self, cells: np.ndarray) -> np.ndarray:
        """Conductivity of the listed voxels in system units (binary: 1; map: sigma / max sigma)."""
        c = self._c
        if not c.is_map:
            return np.ones(len(cells))
        values = c.values.ravel()[cells]
        if c.table is None:
            return values / c.scale_S_per_m
        return c.table[values] / c.scale_S_per_m

    def _sigma_mean(self, eps: float) -> float:
        """Volume-average conductivity of the whole image (S/m)."""
        c = self._c
        if not c.is_map:
            return eps * self.sigma0_S_per_m
        if c.table is None:
            return float(c.values.mean(dtype=np.float64))
        counts = np.bincount(c.values.ravel(), minlength=len(c.table))
        return float(np.dot(counts, c.table)) / c.values.size

    # ------------------------------------------------------------------ solve
    def solve(self) -> float:
        """Solve and return the tortuosity factor; the full result is stored in ``self.result``."""
        t0 = time.perf_counter()
        shape, t = self.shape, self.t
        mask = self._c.mask
        n_phase = int(np.count_nonzero(mask))
        eps = n_phase / mask.size
        sigma_mean = self._sigma_mean(eps)
        keep = percolating_mask(mask, t, self.periodic)
        n_cells = int(np.count_nonzero(keep))
        perc_frac = n_cells / n_phase if n_phase else 0.0
        if n_cells == 0:
            self._cells = np.zeros(0, dtype=np.int64)
            self._potential = np.zeros(0, dtype=self.dtype)
            self.result = self._result(
                eps, 0.0, sigma_mean, 0.0, 0, 0.0, 0.0, 0.0, True, 0, time.perf_counter() - t0, 0.0
            )
            return self.result.tortuosity_factor
        cells = block_ordered_cells(keep, levels_for(shape, n_cells))
        del keep
        dtype = self.dtype
        coord_t = coords_of(cells, shape)[t]
        inlet = np.flatnonzero(coord_t == 0)
        outlet = np.flatnonzero(coord_t == shape[t] - 1)
        a, b, mg, g_in, g_out = self._system(cells, inlet, outlet, dtype)
        n_t = shape[t]

        def currents(x: np.ndarray) -> np.ndarray:
            # Summing the residual r = b - A x over the cells of slices 0..s cancels every internal
            # face and leaves I_in - F_s, so the slice currents F_s follow from per-slice residual
            # sums without storing the faces.
            r = b - a @ x
            per_slice = np.bincount(coord_t, weights=r, minlength=n_t)
            i_in = float(np.dot(g_in, 1.0 - x[inlet].astype(np.float64)))
            i_out = float(np.dot(g_out, x[outlet].astype(np.float64)))
            return np.concatenate([[i_in], i_in - np.cumsum(per_slice[: n_t - 1]), [i_out]])

        last: dict[str, float] = {}

        def spread_of(x: np.ndarray, r: np.ndarray | None = None) -> float:
            cur = currents(x)
            mean = float(np.mean(cur))
            if not mean > 0.0:
                last.update(mismatch=math.inf, spread=math.inf, current=0.0)
                return math.inf
            last.update(
                mismatch=abs(float(cur[0] - cur[-1])) / mean,
                spread=float(cur.max() - cur.min()) / mean,
                current=mean,
            )
            return last["spread"]

        t_setup = time.perf_counter() - t0
        t1 = time.perf_counter()
        out = pcg(
            a,
            b,
            mg,
            spread_of,
            tol=self.flux_rtol,
            max_iterations=self.max_iterations,
            progress=self.progress,
        )
        ok = spread_of(out.x) <= self.flux_rtol
        iterations, fallback = out.iterations, ""
        if not ok and dtype != np.float64 and out.stop_reason != "max_iterations":
            # float32 cannot reach flux_rtol here (module docstring): continue in float64, on the
            # system re-assembled in float64, from the float32 iterate when it is finite.
            fallback = (
                f"float32 stopped ({out.stop_reason}) at flux spread {last['spread']:.2e} > "
                f"flux_rtol {self.flux_rtol:.1e} after {out.iterations} iterations"
            )
            x0 = out.x.astype(np.float64) if np.all(np.isfinite(out.x)) else None
            del mg, out
            a, b, mg, g_in, g_out = self._system(cells, inlet, outlet, np.float64)
            out = pcg(
                a,
                b,
                mg,
                spread_of,
                tol=self.flux_rtol,
                max_iterations=max(self.max_iterations - iterations, 1),
                progress=self.progress,
                x0=x0,
            )
            iterations += out.iterations
            ok = spread_of(out.x) <= self.flux_rtol
        t_solve = time.perf_counter() - t1
        where = f"voxel transport along {AXES[t]} ({n_cells} connected cells, {iterations} iterations)"
        if not (math.isfinite(last["current"]) and last["current"] > 0.0):
            raise TransportSolveError(
                f"{where}: the solve failed ({out.stop_reason}; no finite positive current through a "
                "phase that connects both faces), which is a solver failure, not a percolation result")
        if not ok:
            log.warning("%s did NOT converge (%s): slice-current spread %.2e > flux_rtol %.1e; reported "
                        "with converged=false", where, out.stop_reason, last["spread"], self.flux_rtol)
        self._cells = cells
        self._potential = out.x
        # sigma_eff = I L / A for a unit potential drop, in the (scaled) units of the system.
        extent = np.array(shape) * self.spacing
        area = float(np.prod(np.delete(extent, t)))
        sigma_eff = last["current"] * float(extent[t]) / area * self._unit_S_per_m
        self.result = self._result(
            eps,
            perc_frac,
            sigma_mean,
            sigma_eff,
            iterations,
            out.relative_residual,
            last["mismatch"],
            last["spread"],
            ok,
            len(cells),
            t_setup,
            t_solve,
            np.dtype(out.x.dtype).name,
            fallback,
        )
        return self.result.tortuosity_factor

    def _system(
        self, cells: np.ndarray, inlet: np.ndarray, outlet: np.ndarray, dtype: type
    ) -> tuple[Any, np.ndarray, MultigridPreconditioner, np.ndarray, np.ndarray]:
        """Matrix, right-hand side, preconditioner and inlet/outlet conductances (float64) in ``dtype``.

        Assembled from the conductivities in ``dtype`` itself: a float32 matrix cast to float64
        keeps diagonals that miss the sum of their faces by float32 rounding (a spurious leak to
        ground of ~1e-7 per voxel), which is what limits float32 in the first place.
        """
        shape, t = self.shape, self.t
        up, down = neighbour_indices(cells, shape, self.periodic)
        h = self.spacing
        geom = np.array([h[0] * h[1] * h[2] / h[d] ** 2 for d in range(3)])
        sig = self._sigma_of_cells(cells).astype(dtype) if self._c.is_map else None
        if self.contrast_aware and sig is not None and self._c.single_valued and sig[0] == 1:
            # One conductivity, the scale of the system: the binary-phase system, built as such
            # (scalar face conductances), so that it reproduces that solve bit for bit.
            sig = None
        g: list[np.ndarray | float] = []
        for d in range(3):
            if sig is None:
                g.append(float(geom[d]))
                continue
            has = up[d] >= 0
            s_nb = sig[np.where(has, up[d], 0)]
            # Harmonic mean of the two voxels = series resistance of the two half-voxels.
            gd = 2 * sig * s_nb
            gd /= sig + s_nb
            gd[~has] = 0
            gd *= dtype(geom[d])
            g.append(gd)
            del s_nb, has
        sig_in = np.ones(len(inlet)) if sig is None else sig[inlet].astype(np.float64)
        sig_out = np.ones(len(outlet)) if sig is None else sig[outlet].astype(np.float64)
        g_in = 2.0 * sig_in * geom[t]
        g_out = 2.0 * sig_out * geom[t]
        gdir = np.zeros(len(cells), dtype=dtype)
        gdir[inlet] += g_in.astype(dtype)
        gdir[outlet] += g_out.astype(dtype)
        # High-contrast multigrid (voxel_multigrid, "High contrast"): only for a map with several
        # conductivities, so that a single-valued map is solved exactly as a binary phase.
        classes = None
        if self.contrast_aware and sig is not None and not self._c.single_valued:
            if self._c.table is not None:
                # Classes of the labels, then of the cells: no sort over the cells.
                table = self._c.table
                by_label = np.zeros(len(table), dtype=np.int32)
                by_label[table > 0] = contrast_classes(table[table > 0], CONTRAST_CLASS_RATIO)
                classes = by_label[self._c.values.ravel()[cells]]
            else:
                classes = contrast_classes(sig, CONTRAST_CLASS_RATIO)
        del sig
        finest = Level(
            shape=shape,
            cell_flat=cells,
            up=up,
            down=down,
            g=g,
            g_dirichlet=gdir,
            periodic=self.periodic,
            cell_class=classes,
        )
        del up, down, g
        mg = MultigridPreconditioner(
            finest, coarse_scale=COARSE_SCALE if classes is None else CONTRAST_COARSE_SCALE
        )
        b = np.zeros(len(cells), dtype=dtype)
        b[inlet] = g_in.astype(dtype)
        return finest.matrix, b, mg, g_in, g_out

    def _result(
        self,
        eps: float,
        perc: float,
        sigma_mean: float,
        sigma_eff: float,
        iterations: int,
        relres: float,
        mismatch: float,
        spread: float,
        converged: bool,
        n: int,
        t_setup: float,
        t_solve: float,
        precision: str | None = None,
        fallback: str = "",
    ) -> TransportResult:
        s0 = self.sigma0_S_per_m
        if sigma_eff > 0:
            tau = sigma_mean / sigma_eff
            rel = sigma_eff / s0
            nm = s0 / sigma_eff
        else:
            sigma_eff, tau, rel, nm = 0.0, math.inf, 0.0, math.inf
        alpha: float | None
        if not self._c.single_valued or eps <= 0.0 or eps >= 1.0:
            alpha = None
        elif math.isinf(tau):
            alpha = math.inf
        else:
            alpha = -math.log(tau) / math.log(eps)
        return TransportResult(
            axis=AXES[self.t],
            shape=self.shape,
            voxel_size_m=self.voxel_size_m,
            periodic_sides=self.periodic,
            volume_fraction=eps,
            percolating_fraction=perc,
            percolates=sigma_eff > 0,
            sigma0_S_per_m=s0,
            sigma_mean_S_per_m=sigma_mean,
            sigma_eff_S_per_m=sigma_eff,
            relative_conductivity=rel,
            tortuosity_factor=tau,
            macmullin_number=nm,
            bruggeman_exponent=alpha,
            iterations=iterations,
            relative_residual=relres,
            flux_mismatch=mismatch if sigma_eff > 0 else 0.0,
            slice_flux_spread=spread if sigma_eff > 0 else 0.0,
            converged=converged,
            precision=precision or np.dtype(self.dtype).name,
            precision_fallback=fallback,
            n_unknowns=n,
            setup_time_s=t_setup,
            solve_time_s=t_solve,
        )

    def potential_field(self, fill_value: float = np.nan) -> np.ndarray:
        """Potential (V, inlet face at 1, outlet at 0) on the full grid; ``fill_value`` elsewhere."""
        if self._cells is None or self._potential is None:
            raise RuntimeError("call solve() first")
        field = np.full(int(np.prod(self.shape)), fill_value, dtype=np.float32)
        field[self._cells] = self._potential
        return field.reshape(self.shape)


def solve_transport(
    image: VoxelImage | np.ndarray,
    phase: int | Sequence[int] | None = None,
    axis: str | int = "z",
    **kwargs: Any,
) -> TransportResult:
    """Effective transport of ``phase`` of ``image`` along ``axis``; see `TransportSolver` for options."""
    solver = TransportSolver(image, phase, axis, **kwargs)
    solver.solve()
    assert solver.result is not None
    return solver.result


def solve_transport_axes(
    image: VoxelImage | np.ndarray,
    phase: int | Sequence[int] | None = None,
    axes: Sequence[str] = AXES,
    **kwargs: Any,
) -> dict[str, TransportResult]:
    """`solve_transport` along each of ``axes`` (default x, y, z), keyed by axis name."""
    return {AXES[_axis_index(a)]: solve_transport(image, phase, a, **kwargs) for a in axes}


# ---------------------------------------------------------------------------------------------- multi-phase
BOUNDARIES = ("periodic", "no_flux")
FLOAT32_MAX_CONTRAST = 100.0
"""Largest conductivity contrast of a multi-phase map solved in float32 (when the flux tolerance
allows it). Beyond it the current through the poor phases is a small part of the boundary
conductance, float32 hits its precision floor (module docstring), and a float32 attempt only wastes
iterations before the float64 continuation: measured on laminates, islands and coated-sphere
packings with contrasts of 1e3-1e6, all float32 solves but one (the good conductor as the matrix)
fell back."""


@dataclass(frozen=True)
class MultiphaseResult:
    """Effective conductivity of a multi-phase label image along one axis
    (`effective_conductivity_multiphase`).

    Conductivities in S/m, fractions of the whole image, times in s.

    * ``sigma_eff_S_per_m``: sigma_eff = I L / (A * 1 V), 0 when no current can flow (``reason``).
    * ``conducting_fraction``: eps, volume fraction of the voxels with sigma > 0;
      ``volume_fraction_by_label``: every label present, insulating ones included.
    * ``sigma_ref_S_per_m``: the reference sigma_ref = sum_i eps_i sigma_i / eps, the volume-mean
      conductivity of the conducting voxels (for one conducting phase, its conductivity);
      ``sigma_mean_S_per_m`` = eps sigma_ref, the volume mean over the whole image (TauFactor 2's
      ``D_mean``).
    * ``tortuosity_factor``: tau = sigma_ref eps / sigma_eff = sigma_mean / sigma_eff (TauFactor 2's
      multi-phase tau; for one conducting phase the usual tau = eps sigma_0 / sigma_eff); ``inf``
      when sigma_eff = 0. Never NaN or negative.
    * ``boundary``: per axis x, y, z: ``"dirichlet"`` (the transport axis, phi = 1 / 0 on its two
      faces), ``"periodic"`` or ``"no_flux"``.
    * Solver: ``converged`` (slice currents agree to ``flux_rtol``), ``relative_residual``
      (||b - A x|| / ||b|| of the final iterate, from the CG recursion), ``slice_flux_spread`` and
      ``flux_mismatch`` (relative spread of the slice currents and inlet-outlet mismatch),
      ``iterations``, ``precision`` and ``precision_fallback`` (as `TransportResult`),
      ``contrast`` (largest over smallest nonzero conductivity present).
    * ``reason``: empty when current flows, else why sigma_eff = 0.
    """

    axis: str
    shape: tuple[int, int, int]
    voxel_size_m: tuple[float, float, float] | None
    boundary: tuple[str, str, str]
    sigma_by_label_S_per_m: dict[int, float]
    volume_fraction_by_label: dict[int, float]
    conducting_fraction: float
    percolating_fraction: float
    percolates: bool
    sigma_eff_S_per_m: float
    sigma_ref_S_per_m: float
    sigma_mean_S_per_m: float
    tortuosity_factor: float
    contrast: float
    converged: bool
    relative_residual: float
    slice_flux_spread: float
    flux_mismatch: float
    iterations: int
    precision: str
    precision_fallback: str
    n_unknowns: int
    setup_time_s: float
    solve_time_s: float
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dict: infinities become ``"inf"``, tuples lists, label keys strings."""
        return _plain_json(asdict(self))


def _is_conductivity(v: Any) -> bool:
    return isinstance(v, (int, float, np.number)) and not isinstance(v, bool) and bool(np.isfinite(v))


def _boundary_sides(boundary: str | Sequence[str | bool], t: int) -> tuple[bool, bool, bool]:
    """Periodic flags (x, y, z) of the sides from ``boundary``; the transport axis is never periodic."""
    if isinstance(boundary, str):
        kinds: list[str | bool] = [boundary] * 3
    elif isinstance(boundary, Sequence) and len(boundary) == 3:
        kinds = list(boundary)
    else:
        raise ConfigError("boundary", boundary, f"one of {BOUNDARIES}, or three of them (x, y, z)")
    per = []
    for k in kinds:
        if isinstance(k, (bool, np.bool_)):
            per.append(bool(k))
        elif k in BOUNDARIES:
            per.append(k == "periodic")
        else:
            raise ConfigError(
                "boundary", boundary, f"one of {BOUNDARIES} (or True = periodic), or three of them (x, y, z)"
            )
    # The transport axis carries the two Dirichlet faces; its entry describes no side.
    per[t] = False
    return tuple(per)  # type: ignore[return-value]


def effective_conductivity_multiphase(
    labels: np.ndarray | VoxelImage,
    sigma_by_label: Mapping[int, float],
    axis: str | int = "z",
    voxel_size_m: float | Sequence[float] | None = None,
    boundary: str | Sequence[str | bool] = "no_flux",
    *,
    flux_rtol: float = 1e-4,
    max_iterations: int = 500,
    progress: bool = False,
) -> MultiphaseResult:
    """Effective conductivity (S/m) of a label image in which every label has its own conductivity.

    Solves div(sigma grad phi) = 0 over the whole image in one finite-volume system (module
    docstring): one potential per voxel, face conductance = harmonic mean of the two voxels' sigma
    (0 when either is 0) times face area / voxel pitch, phi = 1 and phi = 0 half a voxel outside the
    two faces normal to ``axis``; TauFactor 2's multi-phase convention. Voxels that cannot carry
    current (insulating, or not connected to both driven faces) are dropped first.

    Parameters
    ----------
    labels : integer label image indexed ``[x, y, z]`` (a 2D image is one voxel thick in z), or a
        `VoxelImage` (its labels and voxel size).
    sigma_by_label : conductivity (S/m, >= 0; 0 = insulating) of every label present in the image;
        labels not present are ignored. A missing label is an error rather than silently insulating.
    axis : 'x', 'y' or 'z' (array axes 0, 1, 2): the direction of the current.
    voxel_size_m : voxel edge(s) in m, a float or (hx, hy, hz); default: the `VoxelImage`'s, else
        cubic. Only ratios enter sigma_eff (a property of the material, not of the sample size).
    boundary : the sides parallel to ``axis``: ``"no_flux"`` (insulating, TauFactor 2's default),
        ``"periodic"``, or one entry per axis x, y, z (``"periodic"``/``"no_flux"``, or a bool,
        True = periodic; the transport axis' entry is ignored), e.g. a `VoxelImage`'s ``periodic``
        (x/y periodic, z insulating) as the analysis report uses it.
    flux_rtol : stop when inlet, outlet and every slice current agree within this relative spread;
        the error of sigma_eff is of the same order (1e-4: well inside 0.1 %).
    max_iterations : CG iteration cap (``converged=False`` if reached).
    progress : tqdm bar over the CG iterations.

    A map with a single nonzero conductivity is solved exactly as `solve_transport` solves that
    phase (same system, same solver settings: the same tau to round-off). Several conductivities use
    the high-contrast multigrid (``contrast_aware``) and, beyond a contrast of
    `FLOAT32_MAX_CONTRAST`, float64 from the start.
    """
    if isinstance(labels, VoxelImage):
        if voxel_size_m is None:
            voxel_size_m = labels.voxel_size_m
        labels = labels.labels
    if not isinstance(labels, np.ndarray):
        raise ConfigError("labels", type(labels).__name__, "an integer NumPy array or a VoxelImage")
    if labels.dtype.kind == "b":
        labels = labels.astype(np.uint8)
    if labels.dtype.kind not in "iu":
        raise ConfigError("labels", f"dtype {labels.dtype}", "integer labels (one conductivity per label)")
    if not isinstance(sigma_by_label, Mapping) or not sigma_by_label:
        raise ConfigError("sigma_by_label", sigma_by_label, "a non-empty mapping label -> conductivity (S/m)")
    if labels.size == 0 or labels.ndim not in (2, 3):
        raise ConfigError("labels", f"array of shape {labels.shape}", "a non-empty 2D or 3D array")
    t = _axis_index(axis)
    periodic = _boundary_sides(boundary, t)
    if labels.min() < 0:
        raise ConfigError("labels", f"minimum {labels.min()}", "integer labels >= 0")
    counts = np.bincount(labels.ravel())
    present = [int(v) for v in np.flatnonzero(counts)]
    missing = [v for v in present if v not in sigma_by_label]
    if missing:
        raise ConfigError(
            "sigma_by_label",
            dict(sigma_by_label),
            f"a conductivity for every label in the image (0 for an insulating phase); missing: {missing}",
        )
    # Only the labels present: the system is scaled by the largest conductivity present, so that a
    # single conducting phase is solved with sigma = 1 exactly, as a binary phase.
    sigma = {v: sigma_by_label[v] for v in present}
    positive = [float(s) for s in sigma.values() if _is_conductivity(s) and s > 0]
    contrast = max(positive) / min(positive) if positive else 1.0
    solver = TransportSolver(
        labels,
        axis=t,
        conductivity=sigma,  # validated there (finite, >= 0)
        periodic_sides=periodic,
        voxel_size_m=voxel_size_m,
        flux_rtol=flux_rtol,
        max_iterations=max_iterations,
        progress=progress,
        precision="float64" if contrast > FLOAT32_MAX_CONTRAST else "auto",
        # No effect with a single conductivity: that map is solved exactly as a binary phase.
        contrast_aware=True,
    )
    solver.solve()
    res = solver.result
    assert res is not None
    eps = res.volume_fraction
    sides: tuple[str, str, str] = tuple(  # type: ignore[assignment]
        "dirichlet" if d == t else ("periodic" if periodic[d] else "no_flux") for d in range(3)
    )
    reason = ""
    if res.sigma_eff_S_per_m <= 0:
        conducting = sorted(v for v in present if sigma[v] > 0)
        if not conducting:
            reason = f"no conducting voxels: every label present ({present}) has sigma = 0"
        else:
            # A failed solve of a connected phase raised `TransportSolveError` in the solver: here the
            # conducting voxels do not connect the faces.
            side_text = ", ".join(f"{AXES[d]} {sides[d]}" for d in range(3) if d != t)
            reason = (
                f"the conducting voxels (labels {conducting}) do not connect the two faces normal to "
                f"{AXES[t]} through shared faces (sides: {side_text})"
            )
    return MultiphaseResult(
        axis=res.axis,
        shape=res.shape,
        voxel_size_m=res.voxel_size_m,
        boundary=sides,
        sigma_by_label_S_per_m={v: float(sigma[v]) for v in present},
        volume_fraction_by_label={v: float(counts[v]) / labels.size for v in present},
        conducting_fraction=eps,
        percolating_fraction=res.percolating_fraction,
        percolates=res.percolates,
        sigma_eff_S_per_m=res.sigma_eff_S_per_m,
        sigma_ref_S_per_m=res.sigma_mean_S_per_m / eps if eps > 0 else 0.0,
        sigma_mean_S_per_m=res.sigma_mean_S_per_m,
        tortuosity_factor=res.tortuosity_factor,
        contrast=contrast,
        converged=res.converged,
        relative_residual=res.relative_residual,
        slice_flux_spread=res.slice_flux_spread,
        flux_mismatch=res.flux_mismatch,
        iterations=res.iterations,
        precision=res.precision,
        precision_fallback=res.precision_fallback,
        n_unknowns=res.n_unknowns,
        setup_time_s=res.setup_time_s,
        solve_time_s=res.solve_time_s,
        reason=reason,
    )


def effective_conductivity_multiphase_axes(
    labels: np.ndarray | VoxelImage,
    sigma_by_label: Mapping[int, float],
    axes: Sequence[str] = AXES,
    **kwargs: Any,
) -> dict[str, MultiphaseResult]:
    """`effective_conductivity_multiphase` along each of ``axes`` (default x, y, z), keyed by axis."""
    return {
        AXES[_axis_index(a)]: effective_conductivity_multiphase(labels, sigma_by_label, a, **kwargs)
        for a in axes
    }
