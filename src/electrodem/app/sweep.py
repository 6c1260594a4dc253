"""Hydra callback writing ``summary.csv`` of all jobs' headline metrics at the sweep root."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger("electrodem")

HEADLINE = {
    "thickness_um": ("composition", "thickness_um"),
    "porosity": ("composition", "porosity"),
    "density_g_cm3": ("composition", "density_g_cm3"),
    "mass_loading_mg_cm2": ("composition", "mass_loading_mg_cm2"),
    "areal_capacity_mAh_cm2": ("composition", "areal_capacity_mAh_cm2"),
    "n_particles": ("composition", "n_particles"),
    "packing_fraction": ("steps", "settle", "packing_fraction"),
    "mean_coordination_number": ("steps", "settle", "mean_coordination_number"),
    "sigma_e_eff_z_S_per_m": ("analysis", "conductivity", "electronic", "resistor", "z", "sigma_eff_S_per_m"),
    "tau_pore_z": ("analysis", "tortuosity", "pore", "z", "tortuosity_factor"),
    "tau_se_z": ("analysis", "tortuosity", "SE", "z", "tortuosity_factor"),
    "inactive_am_fraction_by_volume": ("analysis", "isolated_am", "inactive_fraction_by_volume"),
    "usable_capacity_ratio": ("analysis", "rate_capability", "usable_capacity_ratio"),
    "total_time_s": ("timings_s", "total"),
}


def _get(d: Any, path: tuple[str, ...]) -> Any:
    for k in path:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def headline_row(metrics: dict[str, Any]) -> dict[str, Any]:
    """The headline metrics of one run (None where a step did not run)."""
    return {k: _get(metrics, p) for k, p in HEADLINE.items()}


def write_summary(sweep_dir: Path) -> Path | None:
    """Collect ``*/metrics.json`` under ``sweep_dir`` into ``sweep_dir/summary.csv``."""
    rows = []
    for mfile in sorted(sweep_dir.glob("*/metrics.json"), key=lambda p: p.parent.name):
        job = mfile.parent
        overrides_file = job / ".hydra" / "overrides.yaml"
        overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.exists() else []
        row = {"job": job.name, "overrides": " ".join(overrides or [])}
        row.update(headline_row(json.loads(mfile.read_text())))
        rows.append(row)
    if not rows:
        log.warning("no finished job under %s: no summary.csv", sweep_dir)
        return None
    keys = list(dict.fromkeys(k for r in rows for k in r))
    out = sweep_dir / "summary.csv"
    with out.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    return out


class SweepSummary(Callback):
    """Write the sweep summary after the last job of a multirun, whatever the launcher."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        out = write_summary(Path(config.hydra.sweep.dir))
        if out is not None:
            print(f"sweep summary: {out}")
