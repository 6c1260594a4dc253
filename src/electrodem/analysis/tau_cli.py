"""``electrodem-tau``: tortuosity factor and effective conductivity of a voxel image.

Examples::

    electrodem-tau electrode.npy --phase 0 --axis z --json
    electrodem-tau stack.tif --phase 1 --axis all
    electrodem-tau labels.npy --conductivity 1=0.1 --conductivity 2=10 --axis x

Axes x, y, z name the array axes 0, 1, 2 of the stored image (for a TIFF stack read by tifffile,
axis 0 is the page/slice index). Definitions are those of `electrodem.analysis.transport`:
tau = eps * sigma_0 / sigma_eff (not squared), TauFactor 2 boundary conditions.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from electrodem.analysis.transport import AXES, TransportResult, solve_transport
from electrodem.config.errors import ConfigError

PROG = "electrodem-tau"
_ROWS = (
    ("volume_fraction", "volume fraction eps"),
    ("percolating_fraction", "percolating fraction"),
    ("relative_conductivity", "sigma_eff / sigma_0"),
    ("tortuosity_factor", "tortuosity factor tau"),
    ("macmullin_number", "MacMullin number"),
    ("bruggeman_exponent", "Bruggeman exponent alpha"),
    ("sigma_eff_S_per_m", "sigma_eff (S/m)"),
    ("iterations", "CG iterations"),
    ("slice_flux_spread", "slice current spread"),
    ("flux_mismatch", "inlet/outlet mismatch"),
    ("solve_time_s", "solve time (s)"),
)


class _UsageError(Exception):
    """Bad command-line input (reported with exit status 2)."""


def load_image(path: Path) -> np.ndarray:
    """Read a 2D/3D image from ``.npy`` or ``.tif``/``.tiff``."""
    if not path.is_file():
        raise _UsageError(f"IMAGE={str(path)!r}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            image = np.load(path, allow_pickle=False)
        elif suffix in (".tif", ".tiff"):
            import tifffile

            image = tifffile.imread(path)
        else:
            raise _UsageError(f"IMAGE={str(path)!r}: unknown extension {suffix!r}; use .npy, .tif or .tiff")
    except _UsageError:
        raise
    except Exception as exc:  # unreadable or corrupt file: report it, not a traceback
        raise _UsageError(f"IMAGE={str(path)!r} could not be read: {exc}") from exc
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3):
        shape = getattr(image, "shape", None)
        raise _UsageError(f"IMAGE={str(path)!r} has shape {shape}; a 2D or 3D array is needed")
    return image


def _parse_phase(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        labels = [int(p) for p in text.split(",") if p.strip() != ""]
    except ValueError:
        raise _UsageError(f"--phase={text!r} is invalid: integer label(s), e.g. 1 or 1,2") from None
    if not labels or min(labels) < 0:
        raise _UsageError(f"--phase={text!r} is invalid: integer label(s) >= 0")
    return labels


def _parse_conductivity(items: Sequence[str] | None) -> dict[int, float] | None:
    if not items:
        return None
    out: dict[int, float] = {}
    for item in items:
        try:
            lab, val = item.split("=", 1)
            out[int(lab)] = float(val)
        except ValueError:
            raise _UsageError(f"--conductivity={item!r} is invalid: LABEL=S_PER_M, e.g. 1=0.5") from None
    return out


def _check_labels(image: np.ndarray, phase: list[int] | None, conductivity: dict[int, float] | None) -> None:
    """Refuse labels that do not occur in a label image (almost always a typo)."""
    if image.dtype.kind not in "iu":
        return
    lo, hi = int(image.min()), int(image.max())
    if lo < 0 or hi > 65535:
        raise _UsageError(f"labels {lo}..{hi} are outside 0..65535")
    present = np.flatnonzero(np.bincount(image.ravel(), minlength=hi + 1))
    wanted = phase if phase is not None else list(conductivity or {})
    if phase is None and conductivity is None:
        raise _UsageError(
            f"this is a label image (labels {present.tolist()[:20]}); give --phase LABEL "
            "(e.g. --phase 0 for the pores) or --conductivity LABEL=S_PER_M"
        )
    missing = sorted(set(wanted) - set(present.tolist()))
    if missing:
        raise _UsageError(f"label(s) {missing} do not occur in the image; it holds {present.tolist()[:20]}")


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "inf" if value == float("inf") else f"{value:.6g}"
    return str(value)


def _table(results: dict[str, TransportResult]) -> str:
    axes = list(results)
    width = max(len(label) for _, label in _ROWS) + 2
    lines = [" " * width + "".join(f"{a:>14}" for a in axes)]
    for key, label in _ROWS:
        lines.append(f"{label:<{width}}" + "".join(f"{_fmt(getattr(results[a], key)):>14}" for a in axes))
    first = results[axes[0]]
    lines.append(f"grid {first.shape}, periodic sides {first.periodic_sides}; tau = eps sigma_0 / sigma_eff")
    if not all(r.converged for r in results.values()):
        lines.append("WARNING: not converged to the current-balance tolerance (raise --max-iterations)")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``electrodem-tau``."""
    p = argparse.ArgumentParser(
        prog=PROG, description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("image", metavar="IMAGE", type=Path, help="2D/3D image: .npy, .tif or .tiff")
    p.add_argument("--phase", help="label(s) of the conducting phase, e.g. 0 (pores) or 1,2")
    p.add_argument(
        "--conductivity",
        action="append",
        metavar="LABEL=S_PER_M",
        help="conductivity of a label for a multi-phase map (repeat for each label)",
    )
    p.add_argument("--axis", default="z", choices=[*AXES, "all"], help="transport axis (default z)")
    p.add_argument("--periodic", action="store_true", help="periodic side faces (default: insulating)")
    p.add_argument("--voxel-size-m", type=float, help="voxel edge in metres (only ratios matter; cubic)")
    p.add_argument("--sigma0-S-per-m", type=float, dest="sigma0", help="reference conductivity sigma_0")
    p.add_argument("--flux-rtol", type=float, default=1e-4, help="current-balance tolerance (default 1e-4)")
    p.add_argument("--max-iterations", type=int, default=500, help="CG iteration cap (default 500)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--progress", action="store_true", help="show a progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (0 ok, 2 bad input)."""
    args = build_parser().parse_args(argv)
    try:
        image = load_image(args.image)
        phase = _parse_phase(args.phase)
        conductivity = _parse_conductivity(args.conductivity)
        if image.dtype.kind == "b":
            # A mask is labels 0/1 whose conducting phase is True unless told otherwise.
            image = image.astype(np.uint8)
            if phase is None and conductivity is None:
                phase = [1]
        _check_labels(image, phase, conductivity)
        axes = list(AXES) if args.axis == "all" else [args.axis]
        kwargs: dict[str, Any] = {
            "conductivity": conductivity,
            "periodic_sides": args.periodic,
            "voxel_size_m": args.voxel_size_m,
            "sigma0_S_per_m": args.sigma0,
            "flux_rtol": args.flux_rtol,
            "max_iterations": args.max_iterations,
            "progress": args.progress,
        }
        results = {a: solve_transport(image, phase, a, **kwargs) for a in axes}
    except (_UsageError, ConfigError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        payload: dict[str, Any] = {
            "image": str(args.image),
            "phase": phase,
            "conductivity_S_per_m": conductivity,
            "results": {a: r.to_dict() for a, r in results.items()},
        }
        print(json.dumps(payload, indent=2, allow_nan=False))
    else:
        print(_table(results))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
