"""Run a route (place -> settle -> compact | calender | shear -> analyse) into a run directory.

The run directory receives: ``resolved_config.yaml``, ``metrics.json`` (DOMAIN.md §3 reporting set as
far as the steps provide it), ``microstructure.npz`` (final snapshot, readable without the engine),
``snapshots/NN_step.npz`` per stage, ``particles.vtu`` (final) and ``particles.pvd`` with one VTU per
stage under ``particles/``, ``checkpoint.npz`` (the state after the last completed stage; pass it as
``resume_from`` to continue), and renders under ``renders/``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from electrodem.analysis.composition import composition_metrics
from electrodem.app.schema import RunConfig, validate
from electrodem.config.errors import ConfigError
from electrodem.io.snapshot import Microstructure
from electrodem.io.vtk import PVDSeries, read_pvd, write_vtu
from electrodem.materials.formulation import make_population
from electrodem.process.place import place

log = logging.getLogger("electrodem")


@dataclass
class RunContext:
    """Mutable state carried from step to step."""

    rc: RunConfig
    run_dir: Path
    micro: Microstructure | None = None
    reports: dict[str, Any] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)
    completed: list[str] = field(default_factory=list)


def _step_place(ctx: RunContext) -> dict[str, Any]:
    rc = ctx.rc
    pop = make_population(rc.formulation, rc.rve, rc.seed)
    ctx.reports["conversion"] = pop.report
    ctx.micro = place(pop, rc.rve.box_x_um * 1e-6, rc.rve.box_y_um * 1e-6, rc.place, rc.seed, rc.progress)
    ctx.micro = ctx.micro.with_(metadata={"conversion": pop.report})
    return dict(ctx.micro.metadata["place"])


def _step_settle(ctx: RunContext) -> dict[str, Any]:
    from electrodem.engine import init
    from electrodem.process.settle import settle

    rc = ctx.rc
    init(rc.engine)
    assert ctx.micro is not None
    ctx.micro, report = settle(ctx.micro, rc.settle, rc.engine,
                               checkpoint_path=ctx.run_dir / "engine_checkpoint.npz", progress=rc.progress)
    return report


def _step_compact(ctx: RunContext) -> dict[str, Any]:
    """Plate compaction; writes ``compaction.csv`` (the load/unload/relax curve) and
    ``compaction_pressure_porosity.png`` into the run directory."""
    import csv

    from electrodem.engine import init
    from electrodem.process.compact import CURVE_KEYS, compact

    rc = ctx.rc
    init(rc.engine)
    assert ctx.micro is not None
    ctx.micro, report = compact(ctx.micro, rc.compact, rc.engine,
                                checkpoint_path=ctx.run_dir / "engine_checkpoint.npz", progress=rc.progress)
    curve = report["curve"]
    with (ctx.run_dir / "compaction.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CURVE_KEYS)
        w.writerows(zip(*(curve[k] for k in CURVE_KEYS), strict=True))
    try:
        from electrodem_viz.plots import plot_compaction

        plot_compaction(curve, ctx.run_dir / "compaction_pressure_porosity.png")
    except ImportError:
        log.warning("electrodem_viz is not installed: no compaction plot")
    return {k: v for k, v in report.items() if k != "curve"}


THICKNESS_DEFINITION = (
    "thickness/porosity: gauge, max(z + r) or the tool position while it presses, porosity mass-based "
    "(1 - solid volume / (area x thickness)); *_bulk: height where the smoothed solid fraction falls "
    "below half its bulk value, solid below it (electrodem.analysis.composition)"
)
"""The ``thickness_definition`` entry of the processing blocks of metrics.json."""


def compaction_block(report: dict[str, Any]) -> dict[str, Any]:
    """The ``compaction`` block of metrics.json from the compact step's report (thickness and porosity
    on the gauge definition, ``_bulk`` ones on the half-bulk rule: `THICKNESS_DEFINITION`)."""
    fits = report.get("fits", {})
    fin, ld, ini = report["final"], report["loaded"], report["initial"]
    return {
        "thickness_definition": THICKNESS_DEFINITION,
        "initial_porosity": ini["porosity"],
        "initial_thickness_um": ini["thickness_um"],
        "initial_porosity_bulk": ini.get("porosity_bulk"),
        "initial_thickness_bulk_um": ini.get("thickness_bulk_um"),
        "final_porosity": fin["porosity"],
        "final_thickness_um": fin["thickness_um"],
        "final_porosity_bulk": fin.get("porosity_bulk"),
        "final_thickness_bulk_um": fin.get("thickness_bulk_um"),
        "final_density_g_cm3": fin["density_g_cm3"],
        "loaded_porosity": ld["porosity"],
        "loaded_thickness_um": ld["thickness_um"],
        "loaded_porosity_bulk": ld.get("porosity_bulk"),
        "loaded_thickness_bulk_um": ld.get("thickness_bulk_um"),
        "spring_back_pct": report["spring_back_pct"],
        "elastic_recovery_pct": report["elastic_recovery_pct"],
        "max_pressure_MPa": report["max_pressure_MPa"],
        "meyer": fits.get("meyer"),
        "heckel": fits.get("heckel"),
        "quasi_static": report["quasi_static"]["quasi_static"],
        "inertial_number_max": report["quasi_static"]["inertial_number_max"],
        "max_particle_stress_MPa": report["max_particle_stress_MPa"],
        "p99_particle_stress_MPa": report["p99_particle_stress_MPa"],
        "overlap": report["overlap"],
        "curve_csv": "compaction.csv",
        "plot": "compaction_pressure_porosity.png",
    }


CALENDER_CURVE_KEYS = ("pass", "phase", "time_s", "x_m", "tool_z_m", "load_N", "load_check_N", "pressure_Pa",
                       "floor_load_N", "line_load_N_per_mm", "strain_rate_per_s", "inertial_number",
                       "porosity_under_roll")
"""Columns of ``calendering_curve.csv``: the calender report's curve plus ``porosity_under_roll``."""


def _step_calender(ctx: RunContext) -> dict[str, Any]:
    """Roll calendering; writes ``calendering_passes.csv`` (one row per pass), ``calendering_curve.csv``
    (the load curve of every pass) and ``calendering_pressure_porosity.png`` into the run directory.

    ``porosity_under_roll`` = 1 - V_solid / (A z_roll) is the porosity of the slab between the collector
    and the planar nip wall (``nip`` geometry only: under an exact cylinder no slab is bounded; empty)."""
    import csv

    from electrodem.engine import init
    from electrodem.process.calender import calender

    rc = ctx.rc
    init(rc.engine)
    assert ctx.micro is not None
    solid_m3 = float(ctx.micro.volumes_m3.sum())
    area_m2 = float(ctx.micro.box_m[0] * ctx.micro.box_m[1])
    ctx.micro, report = calender(ctx.micro, rc.calender, rc.engine, progress=rc.progress)
    nip = report["geometry"] == "nip"
    curve = [{**r, "porosity_under_roll": 1.0 - solid_m3 / (area_m2 * r["tool_z_m"]) if nip else ""}
             for r in report["curve"]]
    with (ctx.run_dir / "calendering_curve.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, CALENDER_CURVE_KEYS, extrasaction="ignore")
        w.writeheader()
        w.writerows(curve)
    rows = report["passes"]
    cols = list(dict.fromkeys(k for r in rows for k in r))
    with (ctx.run_dir / "calendering_passes.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, cols)
        w.writeheader()
        w.writerows(rows)
    try:
        from electrodem_viz.plots import plot_calendering

        plot_calendering({k: [r[k] for r in curve] for k in CALENDER_CURVE_KEYS},
                         ctx.run_dir / "calendering_pressure_porosity.png")
    except ImportError:
        log.warning("electrodem_viz is not installed: no calendering plot")
    return {k: v for k, v in report.items() if k != "curve"}


def calendering_block(report: dict[str, Any]) -> dict[str, Any]:
    """The ``calendering`` block of metrics.json from the calender step's report: the state after the
    last pass (after spring-back), extremes over all passes. Key names follow the ``compaction`` block
    (`electrodem.app.sweep` reads both); thickness and porosity on the gauge definition, ``_bulk`` ones
    on the half-bulk rule (`THICKNESS_DEFINITION`)."""
    rows = report["passes"]
    first, last = rows[0], rows[-1]
    return {
        "geometry": report["geometry"],
        "control": report["params"]["control"],
        "passes": len(rows),
        "thickness_definition": THICKNESS_DEFINITION,
        "initial_porosity": first["porosity_before"],
        "initial_thickness_um": first["thickness_before_um"],
        "initial_porosity_bulk": first.get("porosity_before_bulk"),
        "initial_thickness_bulk_um": first.get("thickness_before_bulk_um"),
        "final_porosity": last["porosity"],
        "final_thickness_um": last["thickness_um"],
        "final_porosity_bulk": last.get("porosity_bulk"),
        "final_thickness_bulk_um": last.get("thickness_bulk_um"),
        "final_density_g_cm3": last["density_g_per_cm3"],
        "loaded_porosity": last["porosity_at_min_gap"],
        "loaded_thickness_um": last["thickness_at_min_gap_um"],
        "loaded_porosity_bulk": last.get("porosity_at_min_gap_bulk"),
        "loaded_thickness_bulk_um": last.get("thickness_at_min_gap_bulk_um"),
        "spring_back_pct": last["spring_back_pct"],
        "spring_back_bulk_pct": last.get("spring_back_bulk_pct"),
        "elastic_recovery_pct": last["elastic_recovery_pct"],
        "gap_um": [r["gap_um"] for r in rows],
        "line_load_N_per_mm": [r["line_load_N_per_mm"] for r in rows],
        "max_line_load_N_per_mm": max(r["line_load_N_per_mm"] for r in rows),
        "max_pressure_MPa": max(r["peak_pressure_Pa"] for r in rows) * 1e-6,
        "quasi_static": all(r["quasi_static"] for r in rows),
        "inertial_number_max": max(r["inertial_number_max"] for r in rows),
        # At the minimum gap (the loaded state, as compaction's), and what remains after relaxation.
        "max_particle_stress_MPa": max(r["stress_at_min_gap_von_mises_max_Pa"] for r in rows) * 1e-6,
        "p99_particle_stress_MPa": max(r["stress_at_min_gap_von_mises_p99_Pa"] for r in rows) * 1e-6,
        "residual_max_particle_stress_MPa": last["stress_relaxed_von_mises_max_Pa"] * 1e-6,
        "passes_csv": "calendering_passes.csv",
        "curve_csv": "calendering_curve.csv",
        "plot": "calendering_pressure_porosity.png",
    }


def _step_shear(ctx: RunContext) -> dict[str, Any]:
    """Lees–Edwards shear cell of the placed population; writes ``shear.csv`` (the rheology time
    series), ``shear_rheology.png`` (μ and I against strain) and, unless ``output.render`` is false,
    ``renders/sheared_particles.png`` (3D, coloured by species) into the run directory."""
    from electrodem.engine import init
    from electrodem.process.shear_mix import shear_mix

    rc = ctx.rc
    init(rc.engine)
    assert ctx.micro is not None
    ctx.micro, report = shear_mix(ctx.micro, rc.shear, rc.engine, csv_path=ctx.run_dir / "shear.csv",
                                  progress=rc.progress)
    try:
        from electrodem_viz.plots import plot_shear

        plot_shear(report["series"], ctx.run_dir / "shear_rheology.png")
        if rc.output.get("render", True):
            from electrodem_viz.render import render_particles

            render_particles(ctx.micro, ctx.run_dir / "renders" / "sheared_particles.png",
                             title=f"sheared to strain {report['strain']:.2f}: {ctx.micro.n} particles")
    except ImportError:
        log.warning("electrodem_viz is not installed: no shear plot or render")
    return {k: v for k, v in report.items() if k != "series"}


def shear_block(report: dict[str, Any]) -> dict[str, Any]:
    """The ``shear`` block of metrics.json from the shear step's report (steady = second-half means)."""
    steady = report["steady"]
    return {
        "shear_rate_per_s": report["shear_rate_per_s"],
        "strain": report["strain"],
        "solid_fraction": report["solid_fraction"],
        "friction_coefficient": steady["friction_coefficient"],
        "inertial_number": steady["inertial_number"],
        "pressure_Pa": steady["pressure_Pa"],
        "shear_stress_Pa": steady["shear_stress_Pa"],
        "coordination_number": steady["coordination_number"],
        "steady_window": report["steady_window"],
        "cb_am_contacts_per_cb": report["cb_am_contacts_per_cb"],
        "series_csv": "shear.csv",
        "plot": "shear_rheology.png",
        "render": "renders/sheared_particles.png",
    }


def _step_analyse(ctx: RunContext) -> dict[str, Any]:
    assert ctx.micro is not None
    if ctx.rc.analysis is None:
        return {}
    from electrodem.analysis.report import analyse

    return analyse(ctx.micro, ctx.rc.analysis)


STEP_FUNCTIONS = {"place": _step_place, "settle": _step_settle, "compact": _step_compact,
                  "calender": _step_calender, "shear": _step_shear, "analyse": _step_analyse}


def _json_safe(o: Any) -> Any:
    """Make metrics JSON-safe: numpy scalars to Python, inf/nan to strings JSON can carry."""
    if isinstance(o, dict):
        return {str(k): _json_safe(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_json_safe(v) for v in o]
    if isinstance(o, np.ndarray):
        return _json_safe(o.tolist())
    if isinstance(o, np.generic):
        o = o.item()
    if isinstance(o, float) and not math.isfinite(o):
        return "inf" if o > 0 else ("-inf" if o < 0 else "nan")
    return o


RUN_OUTPUTS = ("checkpoint.npz", "engine_checkpoint.npz", "microstructure.npz", "particles.vtu",
               "particles.pvd", "snapshots", "particles")
"""What a run writes once it computes (resolved_config.yaml aside, written just before). A directory
holding any of them but no metrics.json is an interrupted run; Hydra's own ``.hydra/`` and log file
do not count (Hydra creates them before the task starts)."""


def check_run_dir(run_dir: Path, resume_from: str | None) -> bool:
    """Refuse to write into a directory that holds a finished or an interrupted run.

    Returns True when the run resumes an interrupted run in place (``resume_from`` is a file inside
    ``run_dir``): its outputs are then replaced stage by stage. `ConfigError` (key ``hydra.run.dir``)
    for a finished run (``metrics.json``) and for leftovers of an interrupted one otherwise.
    """
    run_dir = Path(run_dir)
    if (run_dir / "metrics.json").exists():
        raise ConfigError("hydra.run.dir", str(run_dir),
                          "a new directory: this one already holds a finished run (metrics.json); choose "
                          "another hydra.run.dir instead of overwriting it")
    left = [n for n in RUN_OUTPUTS if (run_dir / n).is_file()
            or ((run_dir / n).is_dir() and any((run_dir / n).iterdir()))]
    if not left:
        return False
    if resume_from is not None and run_dir.resolve() in Path(resume_from).resolve().parents:
        return True
    raise ConfigError("hydra.run.dir", str(run_dir),
                      f"a new directory or one to resume: this one holds an interrupted run "
                      f"({', '.join(left)}, no metrics.json), which is not overwritten; pass resume_from="
                      f"{run_dir / 'checkpoint.npz'} to resume it there, or choose another hydra.run.dir")


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Validate ``cfg``, run its route into ``run_dir`` and return the metrics.

    Before anything is written or computed: the config is validated (``resume_from`` included), the
    run directory is checked (`check_run_dir`) and a non-CPU engine backend is probed
    (`electrodem.engine.arch.probe_backend`); each refusal is a one-line `ConfigError`.
    """
    rc = validate(cfg)  # before any compute
    run_dir = Path(run_dir)
    resume = cfg.get("resume_from")
    in_place = check_run_dir(run_dir, resume)
    if rc.engine is not None and rc.engine.arch != "cpu":
        from electrodem.engine.arch import probe_backend

        # Taichi may crash (segfault) rather than fail without the device, and only after placement
        # has run; ask a child process first.
        reason = probe_backend(rc.engine.arch)
        if reason is not None:
            raise ConfigError("engine.arch", rc.engine.arch,
                              f"a backend this machine provides (engine=cpu runs anywhere): {reason}")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "resolved_config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    ctx = RunContext(rc, run_dir)
    if rc.resume is not None:
        ctx.micro = rc.resume
        ctx.completed = list(ctx.micro.metadata.get("completed_stages", []))
        ctx.reports.update(ctx.micro.metadata.get("step_reports", {}))
        log.info("resuming after stages %s%s", ctx.completed, " in place" if in_place else "")
    pvd = PVDSeries(run_dir / "particles.pvd")
    if in_place and pvd.path.is_file():
        # Keep the series of the stages the interrupted run completed (its VTUs stay where they are).
        try:
            # Only the stages the resumed snapshot completed: later ones (resuming from an earlier
            # snapshot) are recomputed and added again.
            pvd.entries = [(t, p.relative_to(run_dir).as_posix()) for t, p in read_pvd(pvd.path)
                           if p.stem.partition("_")[2] in ctx.completed]
        except (OSError, ValueError, SyntaxError):  # cut short while written: the series restarts
            log.warning("%s unreadable; the series lists the resumed stages only", pvd.path)
    t_run = time.perf_counter()
    for k, step in enumerate(rc.steps):
        if step in ctx.completed:
            continue
        t0 = time.perf_counter()
        log.info("stage %d/%d: %s", k + 1, len(rc.steps), step)
        report = STEP_FUNCTIONS[step](ctx)
        ctx.timings_s[step] = time.perf_counter() - t0
        ctx.reports[step] = report
        ctx.completed.append(step)
        log.info("stage %s done in %.2f s", step, ctx.timings_s[step])
        assert ctx.micro is not None
        if step == "analyse":
            continue  # analysis does not change the microstructure
        ctx.micro = ctx.micro.with_(metadata={
            "stage": step, "completed_stages": list(ctx.completed),
            "step_reports": _json_safe({s: r for s, r in ctx.reports.items() if s != "conversion"}),
        })
        # Resuming in place, the interrupted run may have written this stage's snapshot (or the final
        # files below) before it stopped: replace them; a fresh directory never holds them.
        ctx.micro.save(run_dir / "snapshots" / f"{k:02d}_{step}.npz", overwrite=in_place)
        ctx.micro.save(run_dir / "checkpoint.npz", overwrite=True)
        if rc.output.get("vtu", True):
            vtu = write_vtu(ctx.micro, run_dir / "particles" / f"{k:02d}_{step}.vtu", overwrite=in_place)
            pvd.add(ctx.micro.time_s, vtu)
    assert ctx.micro is not None
    ctx.micro.save(run_dir / "microstructure.npz", overwrite=in_place)
    if rc.output.get("vtu", True):
        write_vtu(ctx.micro, run_dir / "particles.vtu", overwrite=in_place)
    analysis = dict(ctx.reports.get("analyse", {}))
    # The report carries the composition of the snapshot it analysed; keep one copy, at top level.
    composition = analysis.pop("composition", None) or composition_metrics(ctx.micro)
    metrics = {
        "run": {"route": rc.route_name, "steps": list(rc.steps), "formulation": rc.formulation.name,
                "seed": rc.seed, "run_dir": str(run_dir.resolve()),
                "calendering_state": _calendering_state(ctx.reports), "engine": _engine_in_force()},
        "conversion": ctx.reports.get("conversion"),
        "composition": composition,
        "steps": {s: ctx.reports[s] for s in rc.steps if s in ctx.reports and s != "analyse"},
        "analysis": analysis,
        **({"compaction": compaction_block(ctx.reports["compact"])} if "compact" in ctx.reports else {}),
        **({"calendering": calendering_block(ctx.reports["calender"])} if "calender" in ctx.reports else {}),
        **({"shear": shear_block(ctx.reports["shear"])} if "shear" in ctx.reports else {}),
        "shortcuts": ctx.micro.metadata.get("shortcuts", {}),
        "timings_s": {**ctx.timings_s, "total": time.perf_counter() - t_run},
    }
    metrics = _json_safe(metrics)
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    if rc.output.get("render", True):
        t0 = time.perf_counter()
        _render(run_dir)
        log.info("renders done in %.2f s", time.perf_counter() - t0)
    return metrics


def _engine_in_force() -> dict[str, Any] | None:
    """The engine options a run's steps used, with the CPU thread count Taichi ran with (None for a
    route without an engine step, e.g. ``route=place``)."""
    from electrodem.engine import arch

    return arch.options_dict() if arch.current_options() is not None else None


def _calendering_state(reports: dict[str, Any]) -> str:
    if "calender" in reports:
        return "roll-calendered"
    return "plate-compacted" if "compact" in reports else "uncalendered"


def _render(run_dir: Path) -> None:
    """Write the standard renders; a failure to render never loses the run's data."""
    try:
        from electrodem_viz.cli import main as viz_main
    except ImportError:
        log.warning("electrodem_viz is not installed: no renders")
        return
    try:
        viz_main([str(run_dir)])
    except Exception:  # noqa: BLE001 - rendering is a by-product; the metrics are already written
        log.exception("rendering failed; the run's data are complete")


def _num(v: Any) -> float:
    """A metrics value as float (None, e.g. from a run saved before the key existed: NaN)."""
    return float("nan") if v is None else float(v)


def summary_table(metrics: dict[str, Any]) -> str:
    """A short human-readable table of headline metrics."""
    comp = metrics.get("composition", {})
    rows = [
        ("particles", f"{comp.get('n_particles')}"),
        ("thickness (gauge)", f"{comp.get('thickness_um', float('nan')):.2f} µm"),
        ("porosity (gauge)", f"{comp.get('porosity', float('nan')):.3f}"),
        ("thickness (bulk)", f"{_num(comp.get('thickness_bulk_um')):.2f} µm"),
        ("porosity (bulk)", f"{_num(comp.get('porosity_bulk')):.3f}"),
        ("density", f"{comp.get('density_g_cm3', float('nan')):.3f} g/cm³"),
        ("mass loading", f"{comp.get('mass_loading_mg_cm2', float('nan')):.3f} mg/cm²"),
        ("areal capacity", f"{comp.get('areal_capacity_mAh_cm2', float('nan')):.3f} mAh/cm²"),
    ]
    settle = metrics.get("steps", {}).get("settle")
    if settle:
        for k in ("packing_fraction", "mean_coordination_number"):
            if k in settle:
                rows.append((k.replace("_", " "), f"{settle[k]:.3f}"))
    for name, ph in comp.get("phases", {}).items():
        rows.append((f"  {name} ({ph['role']})", f"{ph['count']} particles, {ph['wt_pct']:.2f} wt%, "
                     f"{ph['vol_pct_of_solid']:.2f} vol% of solid"))
    w = max(len(r[0]) for r in rows)
    return "\n".join(f"{a:<{w}}  {b}" for a, b in rows)
