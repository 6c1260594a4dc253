"""``electrodem-viz RUN_DIR``: write PNG renders of a run directory, off-screen."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .run import WHAT, render_run


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser of ``electrodem-viz``."""
    p = argparse.ArgumentParser(
        prog="electrodem-viz",
        description="Render an electrodem run directory to PNGs (off-screen): 3D particles coloured by "
        "species, a cross-section, the through-thickness composition profile and, when snapshots/ holds "
        "several stages, a stage-by-stage section comparison.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory holding microstructure.npz")
    p.add_argument("--out", metavar="DIR", default=None, help="output directory (default RUN_DIR/renders)")
    p.add_argument("--what", default=None,
                   help=f"comma-separated products from {','.join(WHAT)} (default: all that the run has)")
    p.add_argument("--window-size", nargs=2, type=int, metavar=("W", "H"), default=(1400, 1000),
                   help="3D render size in pixels (default 1400 1000)")
    p.add_argument("--axis", choices=("x", "y"), default="y", help="normal of the section plane (default y)")
    p.add_argument("--position-um", type=float, default=None,
                   help="section plane position along --axis in µm (default: box middle)")
    p.add_argument("--n-bins", type=int, default=50, help="slabs of the composition profile (default 50)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns 0 on success, exits with status 2 and a message on bad input."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # No display on CI or clusters: VTK must render off-screen (its X-server warning is harmless).
    os.environ.setdefault("PYVISTA_OFF_SCREEN", "true")
    position_m = None if args.position_um is None else args.position_um * 1e-6
    try:
        written = render_run(args.run_dir, out_dir=args.out, what=args.what, window_size=args.window_size,
                             axis=args.axis, position_m=position_m, n_bins=args.n_bins)
    except (ValueError, FileNotFoundError) as err:
        parser.error(str(err))
    for product, path in written.items():
        print(f"{product:12s} {path}")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
