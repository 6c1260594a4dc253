"""Command line: ``electrodem [hydra overrides]`` runs a route; ``electrodem analyse RUN_DIR``
recomputes the analysis of a saved run.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

log = logging.getLogger("electrodem")


def config_dir() -> Path:
    """The configs shipped with the package (wheel) or the repository's ``configs/`` (checkout)."""
    here = Path(__file__).resolve().parent
    for cand in (here / "configs", here.parents[1] / "configs"):
        if (cand / "config.yaml").is_file():
            return cand
    raise FileNotFoundError(f"electrodem configs not found next to {here} nor in the repository")


def _task(cfg) -> None:  # noqa: ANN001 - Hydra passes a DictConfig
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    if HydraConfig.get().mode != RunMode.MULTIRUN:
        _run_job(cfg, run_dir)
        return
    # One job of a sweep: a failure is recorded in the job's directory (failures.json) and the sweep goes
    # on with the other jobs; the summary lists it, and the same command run again redoes only the jobs
    # that did not finish (electrodem.app.sweep.prepare_job).
    from electrodem.app.sweep import prepare_job, record_failure

    try:
        if prepare_job(cfg, run_dir):
            _run_job(cfg, run_dir)
    except SystemExit as e:
        record_failure(run_dir, e.code if isinstance(e.code, int) else 1, e.__context__)
    except Exception as e:  # noqa: BLE001 - any failure of one job must not stop the sweep
        log.exception("job %s failed", run_dir.name)
        print(f"electrodem: job {run_dir.name} failed: {type(e).__name__}: {e}", file=sys.stderr)
        record_failure(run_dir, 1, e)


def _run_job(cfg, run_dir: Path) -> None:  # noqa: ANN001 - Hydra passes a DictConfig
    """Run one configuration into ``run_dir``; a refused input exits with code 2, an unstable
    simulation with code 3, an unwritable output with 4, a failed transport solve with 5 (the
    exception stays the SystemExit's ``__context__``)."""
    from electrodem.app.runner import run, summary_table
    from electrodem.config.errors import ConfigError

    try:
        metrics = run(cfg, run_dir)
    except ConfigError as e:
        log.error("configuration error: %s", e)
        print(f"electrodem: configuration error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as e:
        # Disk full, an output directory that vanished or turned read-only: the snapshots are written
        # atomically, so checkpoint.npz still holds the last completed stage.
        where = e.filename or run_dir
        log.error("cannot write %s: %s", where, e)
        print(f"electrodem: cannot write {where}: {e.strerror or e}; the run directory {run_dir} keeps "
              "its last checkpoint (checkpoint.npz: the last completed stage)", file=sys.stderr)
        raise SystemExit(4) from None
    except Exception as e:
        # An unstable simulation (engine guard) stops with its diagnosis; the run directory keeps
        # checkpoint.npz (last completed stage) and the engine's last good state.
        engine = sys.modules.get("electrodem.engine.simulation")  # loaded only if the engine ran
        if engine is not None and isinstance(e, engine.SimulationError):
            log.error("simulation unstable: %s", e)
            print(f"electrodem: simulation unstable: {e}\nrun directory (checkpoints kept): {run_dir}",
                  file=sys.stderr)
            raise SystemExit(3) from None
        # A failed transport solve is not a result: one line; checkpoint.npz keeps the last stage.
        transport = sys.modules.get("electrodem.analysis.transport")
        if transport is not None and isinstance(e, transport.TransportSolveError):
            log.error("analysis failed: %s", e)
            print(f"electrodem: analysis failed: {e}\nrun directory (checkpoints kept): {run_dir}",
                  file=sys.stderr)
            raise SystemExit(5) from None
        raise
    print(summary_table(metrics))
    print(f"outputs: {run_dir}")


def analyse_main(argv: list[str]) -> int:
    """``electrodem analyse RUN_DIR``: recompute the analysis of a saved run."""
    p = argparse.ArgumentParser(prog="electrodem analyse", description=analyse_main.__doc__)
    p.add_argument("run_dir", type=Path)
    p.add_argument("--params", type=Path, default=None,
                   help="YAML with analysis parameters (default: configs/analysis/default.yaml)")
    p.add_argument("--out", type=Path, default=None, help="output JSON (default RUN_DIR/analysis.json)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    a = p.parse_args(argv)
    import yaml

    from electrodem.analysis.report import AnalysisParams, analyse, format_table
    from electrodem.app.runner import _json_safe
    from electrodem.config.errors import ConfigError
    from electrodem.config.params import build
    from electrodem.io.snapshot import Microstructure, SnapshotError

    snap = a.run_dir / "microstructure.npz"
    if not snap.is_file():
        p.error(f"{snap} not found: RUN_DIR must be an electrodem run directory")
    out = a.out or a.run_dir / "analysis.json"
    if out.exists() and not a.overwrite:
        p.error(f"{out} exists; pass --overwrite or --out")
    pfile = a.params or config_dir() / "analysis" / "default.yaml"
    if not pfile.is_file():
        p.error(f"--params {pfile}: no such file")
    try:
        params = build(AnalysisParams, yaml.safe_load(pfile.read_text()) or {}, "analysis")
    except (ConfigError, yaml.YAMLError) as e:
        p.error(f"--params {pfile}: {str(e).splitlines()[0]}")
    try:
        micro = Microstructure.load(snap)
    except SnapshotError as e:  # one line naming the file and what is wrong, exit code 2
        p.error(str(e))
    analysis = analyse(micro, params)
    metrics = _json_safe({"composition": analysis.pop("composition"), "analysis": analysis})
    out.write_text(json.dumps(metrics, indent=2))
    print(format_table(metrics["analysis"]))
    print(f"written: {out}")
    return 0


def output_dir_problem(argv: list[str]) -> str | None:
    """Why the run (or sweep) directory named in ``argv`` (``hydra.run.dir=`` / ``hydra.sweep.dir=``,
    else the default under ``outputs/``) cannot be created and written, as one refusal line; None
    when it can. Hydra creates that directory before the run starts, with a traceback when it cannot."""
    import os

    multirun = any(a in ("-m", "--multirun") for a in argv)
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    value = next((a.split("=", 1)[1] for a in argv if a.startswith(key + "=")), None)
    target = Path(value if value is not None else "outputs").expanduser().absolute()
    anc = target
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if anc.is_dir() and os.access(anc, os.W_OK | os.X_OK):
        return None
    why = f"{anc} is not a directory" if not anc.is_dir() else f"{anc} is not writable"
    shown = value if value is not None else target
    return f"{key}={shown} is invalid: a directory electrodem can create and write ({why})"


def main() -> None:
    """Entry point of the ``electrodem`` console script."""
    if len(sys.argv) > 1 and sys.argv[1] == "analyse":
        raise SystemExit(analyse_main(sys.argv[2:]))
    problem = output_dir_problem(sys.argv[1:])
    if problem is not None:
        print(f"electrodem: configuration error: {problem}", file=sys.stderr)
        raise SystemExit(2)
    import hydra

    from electrodem.app import sweep

    sweep.FAILED_JOBS.clear()  # a process may run several commands (the tests run them in-process)
    hydra.main(version_base=None, config_path=str(config_dir()), config_name="config")(_task)()
    if sweep.FAILED_JOBS:
        # The sweep finished its other jobs; its exit status still says that some did not.
        print(f"electrodem: {len(sweep.FAILED_JOBS)} sweep job(s) failed: {', '.join(sweep.FAILED_JOBS)} "
              "(summary.csv: status and error; run the same command again to redo only those)",
              file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
