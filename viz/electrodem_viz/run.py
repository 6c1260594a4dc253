"""Render everything for one run directory.

A run directory holds ``microstructure.npz`` (the final `Microstructure`) and optionally
``snapshots/*.npz``, one per process stage, sorted by file name (``00_place.npz``, ``01_settle.npz``...).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from electrodem.analysis.profiles import CompositionProfile
from electrodem.io.snapshot import Microstructure

from .render import check_window_size

WHAT = ("particles", "section", "profile", "stages")
"""Products `render_run` can make: 3D render, cross-section, composition profile, stage comparison."""


def stage_snapshots(run_dir: str | Path) -> list[Path]:
    """The stage snapshots of a run, in file-name order (empty if there is no ``snapshots/``)."""
    snap_dir = Path(run_dir) / "snapshots"
    return sorted(snap_dir.glob("*.npz")) if snap_dir.is_dir() else []


def stage_label(path: Path, micro: Microstructure) -> str:
    """The snapshot's ``metadata['stage']`` if set, else its file name without the order prefix."""
    stage = micro.metadata.get("stage")
    if isinstance(stage, str) and stage:
        return stage
    return re.sub(r"^\d+[_-]?", "", path.stem) or path.stem


def write_profile_csv(prof: CompositionProfile, path: str | Path) -> Path:
    """Write a profile as CSV: slab bounds in µm, one volume-fraction column per species, porosity."""
    path = Path(path)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["z_low_um", "z_high_um", *[f"phi_{n}" for n in prof.species_names], "porosity"])
        e = prof.z_edges_m * 1e6
        for i in range(len(prof.porosity)):
            w.writerow([f"{e[i]:.6g}", f"{e[i + 1]:.6g}",
                        *[f"{v:.6g}" for v in prof.volume_fraction[i]], f"{prof.porosity[i]:.6g}"])
    return path


def parse_what(what: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """Normalise a ``what`` selection ("particles,section" or a list); None means the default set."""
    if what is None:
        return None
    items = [w.strip() for w in (what.split(",") if isinstance(what, str) else what) if w.strip()]
    bad = [w for w in items if w not in WHAT]
    if bad or not items:
        raise ValueError(f"what={what!r}: unknown or empty product(s) {bad}; allowed: {', '.join(WHAT)}")
    return tuple(dict.fromkeys(items))


def render_run(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    what: str | Sequence[str] | None = None,
    window_size: Sequence[int] = (1400, 1000),
    axis: str = "y",
    position_m: float | None = None,
    n_bins: int = 50,
) -> dict[str, Path]:
    """Write the PNGs of a run directory and return ``{product: path}``.

    Default products: particles, section and profile, plus stages when ``snapshots/`` holds two or
    more stages. Output goes to ``out_dir`` (default ``RUN_DIR/renders``); the profile is also
    written as ``profile.csv``.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run_dir={str(run_dir)!r} is not a directory")
    micro_path = run_dir / "microstructure.npz"
    if not micro_path.is_file():
        raise FileNotFoundError(f"run_dir={str(run_dir)!r} has no microstructure.npz "
                                f"(looked for {micro_path})")
    selected = parse_what(what)
    snaps = stage_snapshots(run_dir)
    if selected is None:
        selected = ("particles", "section", "profile") + (("stages",) if len(snaps) >= 2 else ())
    elif "stages" in selected and len(snaps) < 2:
        raise ValueError(f"what includes 'stages' but {run_dir / 'snapshots'} holds {len(snaps)} stage "
                         "snapshot(s); at least 2 are needed")
    if not isinstance(n_bins, int | np.integer) or isinstance(n_bins, bool) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer; got {n_bins!r}")
    if axis not in ("x", "y"):
        raise ValueError(f"axis must be 'x' or 'y'; got {axis!r}")
    check_window_size(window_size)
    micro = Microstructure.load(micro_path)
    if position_m is not None:
        # Checked against the box before any rendering starts.
        length = float(micro.box_m[0 if axis == "x" else 1])
        if not (np.isfinite(position_m) and 0.0 <= position_m <= length):
            raise ValueError(f"section position {position_m * 1e6:g} µm is outside the box along {axis} "
                             f"[0, {length * 1e6:g}] µm")

    out = run_dir / "renders" if out_dir is None else Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    name = run_dir.resolve().name
    if "particles" in selected:
        from .render import render_particles

        written["particles"] = render_particles(micro, out / "particles.png", window_size=window_size,
                                                title=f"{name}: {micro.n} particles")
    if "section" in selected:
        from .plots import render_section

        written["section"] = render_section(micro, out / "section.png", axis=axis, position=position_m)
    if "profile" in selected:
        from .plots import plot_profiles

        prof = plot_profiles(micro, out / "profile.png", n_bins=n_bins)
        written["profile_csv"] = write_profile_csv(prof, out / "profile.csv")
        written["profile"] = out / "profile.png"
    if "stages" in selected:
        from .plots import render_stages

        micros = [Microstructure.load(p) for p in snaps]
        labels = [stage_label(p, m) for p, m in zip(snaps, micros, strict=True)]
        written["stages"] = render_stages(micros, labels, out / "stages.png", axis=axis, position=position_m)
    return written
