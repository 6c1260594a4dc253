"""Step ``place``: the formulation's particles drawn (wt% -> counts) and placed loosely in the box."""

from __future__ import annotations

from typing import Any

from electrodem.materials.formulation import make_population
from electrodem.process.place import PlaceParams, place
from electrodem.process.recipe import ProcessState, ProcessStep, StepContext


def run(state: ProcessState, params: PlaceParams, ctx: StepContext) -> dict[str, Any]:
    """Draw the population (its wt% -> count conversion goes into the snapshot metadata as
    ``conversion``) and place it; the report is the placement's own."""
    inp = ctx.inputs
    pop = make_population(inp.formulation, inp.rve, inp.seed)
    micro = place(pop, inp.rve.box_x_um * 1e-6, inp.rve.box_y_um * 1e-6, params, inp.seed, ctx.progress)
    state.micro = micro.with_(metadata={"conversion": pop.report})
    return dict(micro.metadata["place"])


STEP = ProcessStep(name="place", params_type=PlaceParams, run=run, creates_state=True)
