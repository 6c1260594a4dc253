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

    from electrodem.app.runner import run, summary_table
    from electrodem.config.errors import ConfigError

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        metrics = run(cfg, run_dir)
    except ConfigError as e:
        log.error("configuration error: %s", e)
        print(f"electrodem: configuration error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except Exception as e:
        # An unstable simulation (engine guard) stops with its diagnosis; the run directory keeps
        # checkpoint.npz (last completed stage) and the engine's last good state.
        engine = sys.modules.get("electrodem.engine.simulation")  # loaded only if the engine ran
        if engine is None or not isinstance(e, engine.SimulationError):
            raise
        log.error("simulation unstable: %s", e)
        print(f"electrodem: simulation unstable: {e}\nrun directory (checkpoints kept): {run_dir}",
              file=sys.stderr)
        raise SystemExit(3) from None
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


def main() -> None:
    """Entry point of the ``electrodem`` console script."""
    if len(sys.argv) > 1 and sys.argv[1] == "analyse":
        raise SystemExit(analyse_main(sys.argv[2:]))
    import hydra

    hydra.main(version_base=None, config_path=str(config_dir()), config_name="config")(_task)()


if __name__ == "__main__":
    main()
