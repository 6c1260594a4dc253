"""Step ``settle``: DEM settling under gravity onto the current collector (`electrodem.process.settle`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from electrodem.process.recipe import ProcessState, ProcessStep, RunInputs, StepContext, check_species_names
from electrodem.process.settle import SettleParams, settle


def run(state: ProcessState, params: SettleParams, ctx: StepContext) -> dict[str, Any]:
    from electrodem.engine import init

    init(ctx.engine)
    assert state.micro is not None
    state.micro, report = settle(state.micro, params, ctx.engine,
                                 checkpoint_path=ctx.run_dir / "engine_checkpoint.npz", progress=ctx.progress,
                                 live=state)
    return report


def check(params: SettleParams, inputs: RunInputs, prefix: str, groups: Mapping[str, Any]) -> None:
    check_species_names(params.species_overrides, f"{prefix}.species_overrides", inputs)


STEP = ProcessStep(name="settle", params_type=SettleParams, run=run, uses_engine=True, check=check)
