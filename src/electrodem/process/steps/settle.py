"""Step ``settle``: DEM settling under gravity onto the current collector (`electrodem.process.settle`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from electrodem.process.engine_map import check_contact_species, step_params_builder
from electrodem.process.recipe import ProcessState, ProcessStep, RunInputs, StepContext
from electrodem.process.settle import CONTACT, SHORTCUTS, SettleParams, settle


def run(state: ProcessState, params: SettleParams, ctx: StepContext) -> dict[str, Any]:
    from electrodem.engine import init

    init(ctx.engine)
    assert state.micro is not None
    state.micro, report = settle(state.micro, params, ctx.engine,
                                 checkpoint_path=ctx.run_dir / "engine_checkpoint.npz", progress=ctx.progress,
                                 live=state)
    return report


def check(params: SettleParams, inputs: RunInputs, prefix: str, groups: Mapping[str, Any]) -> None:
    check_contact_species(params.contact, inputs)


OVERRIDES = {"contact": CONTACT, "shortcuts": SHORTCUTS}
"""The step's built-in overrides of the shared groups (its config file repeats them)."""

STEP = ProcessStep(name="settle", params_type=SettleParams, run=run, uses_engine=True, check=check,
                   build_params=step_params_builder(SettleParams, OVERRIDES))
