"""Hydra callback writing ``summary.csv`` of all jobs' headline metrics at the sweep root, and the
sweep plots an experiment asks for (``hydra.callbacks.sweep_summary.plots``).

A sweep survives its failing jobs: a job that fails (refused input, unstable simulation, any error)
appends what went wrong to ``failures.json`` in its directory and the launcher goes on with the others
(`electrodem.cli`); ``summary.csv`` has one row per job with its ``status`` (finished, failed, or
interrupted: no metrics.json and no recorded failure, e.g. a killed worker) and ``error``; the command
exits with status 1 when a job did not finish. Running the same command again (same
``hydra.sweep.dir``) redoes only those jobs (`prepare_job`): a finished job of the same configuration
is kept as it is, an interrupted or failed one resumes from its last completed stage
(``checkpoint.npz``) or starts again where it had written nothing.

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

FAILURES = "failures.json"
"""A job directory's record of its failed attempts (a JSON list, one entry per attempt)."""
FAILED_JOBS: list[str] = []
"""Jobs of the last sweep of this process that did not finish (set by `SweepSummary`; the CLI's exit
status)."""

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


def prepare_job(cfg: DictConfig, job_dir: Path) -> bool:
    """Whether a sweep job must run into ``job_dir``, made ready for it. False when the directory
    already holds a finished run of the same resolved configuration (a sweep run again keeps it);
    `ConfigError` when it holds one of another configuration. A job that did not finish (leftovers,
    no metrics.json) resumes in place from its ``checkpoint.npz`` when it has one (``resume_from`` is
    set in ``cfg``); without one the run directory check refuses its leftovers as for any run."""
    from omegaconf import OmegaConf, open_dict

    from electrodem.config.errors import ConfigError

    if (job_dir / "metrics.json").is_file():
        previous = job_dir / "resolved_config.yaml"

        def settings(text: str) -> dict[str, Any]:
            # Both sides through the same YAML round trip; where a job resumed from does not matter.
            d = OmegaConf.to_container(OmegaConf.create(text))
            d.pop("resume_from", None)
            return d

        same = previous.is_file() and settings(previous.read_text()) == settings(
            OmegaConf.to_yaml(cfg, resolve=True))
        if not same:
            raise ConfigError("hydra.sweep.dir", str(job_dir.parent),
                              f"a new sweep directory, or this sweep's own configuration: job {job_dir.name} "
                              "there finished another configuration")
        log.info("job %s already finished with this configuration: kept", job_dir.name)
        print(f"electrodem: job {job_dir.name} already finished: kept ({job_dir})")
        return False
    ck = job_dir / "checkpoint.npz"
    if ck.is_file() and cfg.get("resume_from") is None:
        log.info("job %s did not finish: resuming it from %s", job_dir.name, ck)
        with open_dict(cfg):
            cfg.resume_from = str(ck)
    return True


def record_failure(job_dir: Path, exit_code: int, error: BaseException | None) -> None:
    """Append a failed attempt (exit code, error type and its first line, time) to the job's
    `FAILURES` file."""
    import datetime

    path = job_dir / FAILURES
    attempts = json.loads(path.read_text()) if path.is_file() else []
    message = str(error).strip().splitlines()[0] if error is not None and str(error).strip() else ""
    attempts.append({
        "exit_code": int(exit_code),
        "error": type(error).__name__ if error is not None else "SystemExit",
        "message": message,
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    })
    job_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(attempts, indent=2))


def job_status(job_dir: Path) -> tuple[str, str]:
    """(status, error) of a sweep job directory: ``finished`` (metrics.json), ``failed`` (its last
    recorded failure, one line) or ``interrupted`` (neither: killed, or still running)."""
    if (job_dir / "metrics.json").is_file():
        return "finished", ""
    path = job_dir / FAILURES
    if path.is_file():
        last = json.loads(path.read_text())[-1]
        return "failed", f"{last['error']}: {last['message']} (exit code {last['exit_code']})"
    return "interrupted", "no metrics.json and no recorded failure (killed, or still running)"


def job_dirs(sweep_dir: Path) -> list[Path]:
    """The job directories of a sweep (those Hydra made: they hold ``.hydra/overrides.yaml``, or a
    result), in job order."""
    dirs = {p.parents[1] for p in sweep_dir.glob("*/.hydra/overrides.yaml")}
    dirs |= {p.parent for p in sweep_dir.glob("*/metrics.json")}
    return sorted(dirs, key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name))


def write_summary(sweep_dir: Path) -> Path | None:
    """Collect the jobs under ``sweep_dir`` into ``sweep_dir/summary.csv``: one row per job, its status
    and error, and for a finished job its headline metrics."""
    rows = summary_rows(sweep_dir, finished_only=False)
    if not rows:
        log.warning("no job under %s: no summary.csv", sweep_dir)
        return None
    keys = list(dict.fromkeys(k for r in rows for k in r))
    out = sweep_dir / "summary.csv"
    with out.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    return out


def summary_rows(sweep_dir: Path, finished_only: bool = True) -> list[dict[str, Any]]:
    """One row per job of ``sweep_dir`` (per finished job with ``finished_only``): job, overrides,
    status, error (`job_status`) and, when finished, the headline metrics."""
    rows = []
    for job in job_dirs(sweep_dir):
        status, error = job_status(job)
        if finished_only and status != "finished":
            continue
        overrides_file = job / ".hydra" / "overrides.yaml"
        overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.exists() else []
        row = {"job": job.name, "overrides": " ".join(overrides or []), "status": status, "error": error}
        if status == "finished":
            row.update(headline_row(json.loads((job / "metrics.json").read_text())))
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
        FAILED_JOBS[:] = [job.name for job in job_dirs(sweep_dir) if job_status(job)[0] != "finished"]
        for name in self.plots:
            try:
                made = SWEEP_PLOTS[name](sweep_dir)
            except Exception:  # noqa: BLE001 - a plot never loses the sweep's data (summary.csv is written)
                log.exception("sweep plot %s failed", name)
                continue
            if made is not None:
                print(f"sweep {name}: {made} (+ .png)")
