"""Step ``analyse``: the analysis report of the current microstructure (`electrodem.analysis.report`):
composition, contact networks, percolation, effective conductivities and tortuosity. It reads the
state and changes nothing (no snapshot after it). Its config group is ``analysis``."""

from __future__ import annotations

from typing import Any

from electrodem.analysis.report import AnalysisParams, analyse
from electrodem.process.recipe import ProcessState, ProcessStep, StepContext


def run(state: ProcessState, params: AnalysisParams, ctx: StepContext) -> dict[str, Any]:
    assert state.micro is not None
    return analyse(state.micro, params)


STEP = ProcessStep(name="analyse", params_type=AnalysisParams, run=run, group="analysis", changes_state=False)
