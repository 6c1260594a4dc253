"""Run a route (an ordered list of registered process steps, `electrodem.process.recipe`) into a run
directory.

The run directory receives: ``resolved_config.yaml``, ``metrics.json`` (DOMAIN.md §3 reporting set as
far as the steps provide it), ``microstructure.npz`` (final snapshot, readable without the engine),
``snapshots/NN_label.npz`` per stage that changes the state, ``particles.vtu`` (final) and
``particles.pvd`` with one VTU per such stage under ``particles/``, each step's own CSVs and plots,
``checkpoint.npz`` (the state after the last completed stage; pass it as ``resume_from`` to continue),
and beside each snapshot of a stage run on the engine its live engine state ``*.engine.npz`` (contact
history, bonds, agent fields: `electrodem.process.live`), which a resume from that snapshot loads,
and renders under ``renders/``.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from electrodem.analysis.composition import composition_metrics
from electrodem.app.schema import validate
from electrodem.config.errors import ConfigError
from electrodem.io.vtk import PVDSeries, read_pvd, write_vtu
from electrodem.process.live import checkpoint_boundary, engine_state_path, resume_engine
from electrodem.process.recipe import ProcessState, StepContext

log = logging.getLogger("electrodem")


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


RUN_OUTPUTS = ("checkpoint.npz", "checkpoint.engine.npz", "engine_checkpoint.npz", "microstructure.npz",
               "particles.vtu",
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
    state = ProcessState()
    reports: dict[str, Any] = {}
    timings_s: dict[str, float] = {}
    completed: list[str] = []
    if rc.resume is not None:
        state.micro = rc.resume
        completed = list(state.micro.metadata.get("completed_stages", []))
        reports.update(state.micro.metadata.get("step_reports", {}))
        log.info("resuming after stages %s%s", completed, " in place" if in_place else "")
        if state.micro.metadata.get("engine_state") and completed:
            resume_engine(state, engine_state_path(Path(resume)), completed[-1], rc.engine)
    pvd = PVDSeries(run_dir / "particles.pvd")
    if in_place and pvd.path.is_file():
        # Keep the series of the stages the interrupted run completed (its VTUs stay where they are).
        try:
            # Only the stages the resumed snapshot completed: later ones (resuming from an earlier
            # snapshot) are recomputed and added again.
            pvd.entries = [(t, p.relative_to(run_dir).as_posix()) for t, p in read_pvd(pvd.path)
                           if p.stem.partition("_")[2] in completed]
        except (OSError, ValueError, SyntaxError):  # cut short while written: the series restarts
            log.warning("%s unreadable; the series lists the resumed stages only", pvd.path)
    t_run = time.perf_counter()
    for k, planned in enumerate(rc.plan):
        label, step = planned.label, planned.step
        if label in completed:
            continue
        t0 = time.perf_counter()
        log.info("stage %d/%d: %s", k + 1, len(rc.plan), label)
        ctx = StepContext(label, k, planned.entry.repeat, rc.inputs, run_dir, rc.engine, rc.progress,
                          rc.output, dict(reports))
        reports[label] = step.run(state, planned.params, ctx)
        timings_s[label] = time.perf_counter() - t0
        completed.append(label)
        log.info("stage %s done in %.2f s", label, timings_s[label])
        assert state.micro is not None
        if not step.changes_state:
            continue
        if state.sim is not None and not step.uses_engine:
            log.warning("step %s changed the snapshot without the engine: the live engine state (contact "
                        "history, bonds) is dropped and the next engine step starts from the snapshot", label)
            state.sim.free()
            state.sim = None
        snap = run_dir / "snapshots" / f"{k:02d}_{label}.npz"
        if state.sim is not None:
            # The step boundary is an engine checkpoint: the run goes on from what a resume would load.
            checkpoint_boundary(state, engine_state_path(snap), label, rc.engine)
            ck = engine_state_path(run_dir / "checkpoint.npz")
            # Copied aside, then renamed: a copy cut short never replaces the last good engine state.
            shutil.copyfile(engine_state_path(snap), ck.with_name(ck.name + ".tmp"))
            ck.with_name(ck.name + ".tmp").replace(ck)
        state.micro = state.micro.with_(metadata={
            "stage": label, "completed_stages": list(completed), "step_reports": _json_safe(reports),
            "engine_state": state.sim is not None,
        })
        # Resuming in place, the interrupted run may have written this stage's snapshot (or the final
        # files below) before it stopped: replace them; a fresh directory never holds them.
        state.micro.save(snap, overwrite=in_place)
        state.micro.save(run_dir / "checkpoint.npz", overwrite=True)
        if rc.output.get("vtu", True):
            vtu = write_vtu(state.micro, run_dir / "particles" / f"{k:02d}_{label}.vtu", overwrite=in_place)
            pvd.add(state.micro.time_s, vtu)
    micro = state.micro
    assert micro is not None
    if state.sim is not None:
        state.sim.free()
        state.sim = None
    micro.save(run_dir / "microstructure.npz", overwrite=in_place)
    if rc.output.get("vtu", True):
        write_vtu(micro, run_dir / "particles.vtu", overwrite=in_place)
    # Reports of steps that only read the state (the analysis) describe the final microstructure.
    analysis: dict[str, Any] = {}
    for planned in rc.plan:
        if not planned.step.changes_state:
            analysis.update(reports.get(planned.label, {}))
    # The report carries the composition of the snapshot it analysed; keep one copy, at top level.
    composition = analysis.pop("composition", None) or composition_metrics(micro)
    # Each processing block from the route's last entry of its step (the state the electrode ends in).
    blocks = {p.step.metrics_block: p.step.metrics(reports[p.label]) for p in rc.plan
              if p.step.metrics_block and p.step.metrics is not None and p.label in reports}
    metrics = {
        "run": {"route": rc.route_name, "steps": list(rc.steps), "formulation": rc.formulation.name,
                "seed": rc.seed, "run_dir": str(run_dir.resolve()),
                "calendering_state": _calendering_state(blocks), "engine": _engine_in_force()},
        "conversion": micro.metadata.get("conversion"),
        "composition": composition,
        "steps": {p.label: reports[p.label] for p in rc.plan if p.step.changes_state and p.label in reports},
        "analysis": analysis,
        **blocks,
        "shortcuts": micro.metadata.get("shortcuts", {}),
        "timings_s": {**timings_s, "total": time.perf_counter() - t_run},
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


def _calendering_state(blocks: dict[str, Any]) -> str:
    if "calendering" in blocks:
        return "roll-calendered"
    return "plate-compacted" if "compaction" in blocks else "uncalendered"


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
