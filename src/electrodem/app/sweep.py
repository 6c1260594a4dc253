"""Hydra callback writing ``summary.csv`` of all jobs' headline metrics at the sweep root, and the
sweep plots an experiment asks for (``hydra.callbacks.sweep_summary.plots``).

Processing columns are generic: ``porosity_after_processing`` (and ``processing_step``) come from
the block of the route's last densifying step, ``calendering`` (roll calender) if the run has one,
else ``compaction`` (plate press), so that the same sweep plot serves either route.

Pressures are reported as simulated (``max_pressure_MPa``, as in the step's own CSV and metrics).
A step that softened every modulus by one factor s (``modulus_scale``, no ``modulus_cap_Pa``) and
its yield pressures by the same s (what ``+experiment=calendering_sweep`` does) follows the real
quasi-static pressure–porosity curve with pressures x s: ``pressure_scale`` is that s and
``max_pressure_real_equiv_MPa`` = ``max_pressure_MPa`` / s the pressure the real materials would take
(None under a modulus cap, where no single factor holds). Whether the yield pressures were scaled
too is the config's responsibility (the step reports the ones it used under
``steps.<step>.yield_pressure_MPa_by_species``).
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger("electrodem")

_RES = ("analysis", "conductivity", "electronic", "resistor")
_TAU = ("analysis", "tortuosity", "pore")
HEADLINE = {
    "thickness_um": ("composition", "thickness_um"),
    "porosity": ("composition", "porosity"),
    "thickness_bulk_um": ("composition", "thickness_bulk_um"),
    "porosity_bulk": ("composition", "porosity_bulk"),
    "density_g_cm3": ("composition", "density_g_cm3"),
    "mass_loading_mg_cm2": ("composition", "mass_loading_mg_cm2"),
    "areal_capacity_mAh_cm2": ("composition", "areal_capacity_mAh_cm2"),
    "n_particles": ("composition", "n_particles"),
    "packing_fraction": ("steps", "settle", "packing_fraction"),
    "mean_coordination_number": ("steps", "settle", "mean_coordination_number"),
    **{f"sigma_e_eff_{a}_S_per_m": (*_RES, a, "sigma_eff_S_per_m") for a in "xyz"},
    **{f"tau_pore_{a}": (*_TAU, a, "tortuosity_factor") for a in "xyz"},
    "tau_se_z": ("analysis", "tortuosity", "SE", "z", "tortuosity_factor"),
    "inactive_am_fraction_by_volume": ("analysis", "isolated_am", "inactive_fraction_by_volume"),
    "usable_capacity_ratio": ("analysis", "rate_capability", "usable_capacity_ratio"),
    "total_time_s": ("timings_s", "total"),
}
"""summary.csv column -> path in metrics.json (None where the run has no such value). Thickness and
porosity are the gauge ones (highest solid point); ``_bulk`` the half-bulk solid-fraction rule."""

PROCESSING_BLOCKS = ("calendering", "compaction")
"""metrics.json blocks of densifying steps, the one preferred first (a route calenders last)."""

STEP_OF_BLOCK = {"calendering": "calender", "compaction": "compact"}
"""Processing block -> its step name (key of ``metrics.json`` ``shortcuts``)."""

PROCESSING = {
    "porosity_after_processing": "final_porosity",
    "porosity_after_processing_bulk": "final_porosity_bulk",
    "loaded_porosity": "loaded_porosity",
    "thickness_after_processing_um": "final_thickness_um",
    "density_after_processing_g_cm3": "final_density_g_cm3",
    "spring_back_pct": "spring_back_pct",
    "max_pressure_MPa": "max_pressure_MPa",
    "max_line_load_N_per_mm": "max_line_load_N_per_mm",
    "quasi_static": "quasi_static",
    "max_particle_stress_MPa": "max_particle_stress_MPa",
}
"""summary.csv column -> key of the processing block (``compaction`` or ``calendering``)."""

TRADEOFF_COLUMNS = (
    "job", "porosity_after_processing", "processing_step",
    *(f"sigma_e_eff_{a}_S_per_m" for a in "xyz"), *(f"tau_pore_{a}" for a in "xyz"),
    "inactive_am_fraction_by_volume", "spring_back_pct", "max_pressure_MPa", "max_line_load_N_per_mm",
    "pressure_scale", "max_pressure_real_equiv_MPa", "quasi_static",
)  # fmt: skip
"""Columns of ``calendering_tradeoff.csv`` (rows sorted by decreasing porosity)."""


def _get(d: Any, path: tuple[str, ...]) -> Any:
    for k in path:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def headline_row(metrics: dict[str, Any]) -> dict[str, Any]:
    """The headline metrics of one run (None where a step did not run), with the processing columns
    taken from the last densifying step's block (`PROCESSING_BLOCKS`)."""
    row: dict[str, Any] = {k: _get(metrics, p) for k, p in HEADLINE.items()}
    step = next((b for b in PROCESSING_BLOCKS if isinstance(metrics.get(b), dict)), None)
    row["processing_step"] = step
    block = metrics.get(step, {}) if step else {}
    row.update({col: block.get(key) for col, key in PROCESSING.items()})
    row["overlap_volume_fraction_max_load"] = _get(block, ("overlap", "volume_fraction_max_load"))
    row.update(_pressure_scale(metrics, step, row["max_pressure_MPa"]))
    return row


def _pressure_scale(metrics: dict[str, Any], block: str | None, p_max_MPa: Any) -> dict[str, Any]:
    """``pressure_scale`` (the step's uniform modulus factor s, None under a modulus cap) and
    ``max_pressure_real_equiv_MPa`` = simulated max pressure / s (None where either is missing)."""
    sc = _get(metrics, ("shortcuts", STEP_OF_BLOCK[block])) if block else None
    s = sc.get("modulus_scale") if isinstance(sc, dict) and sc.get("modulus_cap_Pa") is None else None
    ok = isinstance(s, (int, float)) and s > 0 and isinstance(p_max_MPa, (int, float))
    p = p_max_MPa / s if ok else None
    return {"pressure_scale": s, "max_pressure_real_equiv_MPa": p}


def write_summary(sweep_dir: Path) -> Path | None:
    """Collect ``*/metrics.json`` under ``sweep_dir`` into ``sweep_dir/summary.csv``."""
    rows = summary_rows(sweep_dir)
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


def summary_rows(sweep_dir: Path) -> list[dict[str, Any]]:
    """One row per finished job (``*/metrics.json``) of ``sweep_dir``: job, overrides, headline."""
    rows = []
    for mfile in sorted(sweep_dir.glob("*/metrics.json"), key=lambda p: p.parent.name):
        job = mfile.parent
        overrides_file = job / ".hydra" / "overrides.yaml"
        overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.exists() else []
        row = {"job": job.name, "overrides": " ".join(overrides or [])}
        row.update(headline_row(json.loads(mfile.read_text())))
        rows.append(row)
    return rows


def _number(v: Any) -> float:
    """A summary value as float (JSON carries inf/nan as strings; missing is nan)."""
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def write_calendering_tradeoff(sweep_dir: Path, rows: Sequence[dict[str, Any]] | None = None) -> Path | None:
    """Write ``calendering_tradeoff.csv`` and ``calendering_tradeoff.png`` (sigma_e,eff, tau and
    isolated AM against the porosity after processing) at ``sweep_dir``; None if no job has a
    processing step."""
    rows = summary_rows(sweep_dir) if rows is None else list(rows)
    rows = [r for r in rows if math.isfinite(_number(r.get("porosity_after_processing")))]
    if not rows:
        log.warning("no job under %s has a compaction/calendering block: no calendering_tradeoff", sweep_dir)
        return None
    rows.sort(key=lambda r: -_number(r["porosity_after_processing"]))
    out = sweep_dir / "calendering_tradeoff.csv"
    with out.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(TRADEOFF_COLUMNS)
        w.writerows([[r.get(k) for k in TRADEOFF_COLUMNS] for r in rows])
    try:
        from electrodem_viz.plots import plot_calendering_tradeoff
    except ImportError:
        log.warning("electrodem_viz is not installed: no calendering_tradeoff.png")
        return out
    cols = {
        k: [_number(r.get(k)) for r in rows] for k in TRADEOFF_COLUMNS if k not in ("job", "processing_step")
    }
    plot_calendering_tradeoff(cols, sweep_dir / "calendering_tradeoff.png")
    return out


SWEEP_PLOTS = {"calendering_tradeoff": write_calendering_tradeoff}
"""Sweep products an experiment can ask for in ``hydra.callbacks.sweep_summary.plots``."""


class SweepSummary(Callback):
    """Write the sweep summary (and the requested `SWEEP_PLOTS`) after the last job of a multirun,
    whatever the launcher."""

    def __init__(self, plots: Sequence[str] = ()) -> None:
        unknown = [p for p in plots if p not in SWEEP_PLOTS]
        if unknown:
            from electrodem.config.errors import ConfigError

            raise ConfigError(
                "hydra.callbacks.sweep_summary.plots", unknown[0], f"one of {sorted(SWEEP_PLOTS)}"
            )
        self.plots = tuple(plots)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        out = write_summary(sweep_dir)
        if out is None:
            return
        print(f"sweep summary: {out}")
        for name in self.plots:
            try:
                made = SWEEP_PLOTS[name](sweep_dir)
            except Exception:  # noqa: BLE001 - a plot never loses the sweep's data (summary.csv is written)
                log.exception("sweep plot %s failed", name)
                continue
            if made is not None:
                print(f"sweep {name}: {made} (+ .png)")
