"""Step ``shear``: Lees–Edwards shear cell of the placed population (`electrodem.process.shear_mix`).

Writes ``shear.csv`` (the rheology time series), ``shear_rheology.png`` (μ and I against strain) and,
unless ``output.render`` is false, ``renders/sheared_particles.png`` (3D, coloured by species); fills
the ``shear`` block of metrics.json.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from electrodem.config.errors import require
from electrodem.process.engine_map import check_contact_species, step_params_builder
from electrodem.process.place import loose_height_um
from electrodem.process.recipe import (
    ProcessState,
    ProcessStep,
    RunInputs,
    StepContext,
    min_periodic_length_um,
)
from electrodem.process.shear_mix import CONTACT, SHORTCUTS, ShearParams, shear_mix

log = logging.getLogger("electrodem")


def run(state: ProcessState, params: ShearParams, ctx: StepContext) -> dict[str, Any]:
    from electrodem.engine import init

    init(ctx.engine)
    assert state.micro is not None
    if state.sim is not None:
        # The shear cell's Lees–Edwards box is fixed for a simulation's life: it starts from the snapshot.
        log.warning("shear: a new engine state (Lees-Edwards cell) is built from the snapshot; contact "
                    "history and bonds of the earlier steps are not carried into the shear cell")
        state.sim.free()
        state.sim = None
    state.micro, report = shear_mix(state.micro, params, ctx.engine, csv_path=ctx.out("shear.csv"),
                                    progress=ctx.progress)
    try:
        from electrodem_viz.plots import plot_shear

        # Undefined samples are None in the report: NaN gaps in the plot.
        series = {k: np.array(v, dtype=float) for k, v in report["series"].items()}
        plot_shear(series, ctx.out("shear_rheology.png"))
        if ctx.output.get("render", True):
            from electrodem_viz.render import render_particles

            name = "sheared_particles.png" if ctx.repeat == 1 else f"{ctx.label}_sheared_particles.png"
            render_particles(state.micro, ctx.run_dir / "renders" / name,
                             title=f"sheared to strain {report['strain']:.2f}: {state.micro.n} particles")
    except ImportError:
        log.warning("electrodem_viz is not installed: no shear plot or render")
    return {k: v for k, v in report.items() if k != "series"}


def check(params: ShearParams, inputs: RunInputs, prefix: str, groups: Mapping[str, Any]) -> None:
    check_contact_species(params.contact, inputs)


def check_z_period(params: ShearParams, inputs: RunInputs, prefix: str, groups: Mapping[str, Any]) -> None:
    """The loose placed height (the cell's z period) is long enough for minimum-image contacts."""
    need = min_periodic_length_um(inputs.formulation)
    packing = groups["place"].packing_fraction
    h_um = loose_height_um(inputs.formulation, inputs.rve, packing)
    require(h_um > need, "rve.thickness_um", inputs.rve.thickness_um,
            f"a loading whose loose placed height (now {h_um:.3g} µm at place.packing_fraction="
            f"{packing}) exceeds {need:.3g} µm, the z period the shear cell needs")


def shear_block(report: dict[str, Any]) -> dict[str, Any]:
    """The ``shear`` block of metrics.json from the shear step's report (steady = second-half means)."""
    steady = report["steady"]
    return {
        "shear_rate_per_s": report["shear_rate_per_s"],
        "strain": report["strain"],
        "solid_fraction": report["solid_fraction"],
        "pressure_controlled": report["pressure_controlled"],
        "friction_coefficient": steady["friction_coefficient"],
        "inertial_number": steady["inertial_number"],
        "pressure_Pa": steady["pressure_Pa"],
        "shear_stress_Pa": steady["shear_stress_Pa"],
        "coordination_number": steady["coordination_number"],
        "steady_window": report["steady_window"],
        "steady_undefined": report.get("steady_undefined", {}),
        "cb_am_contacts_per_cb": report["cb_am_contacts_per_cb"],
        "series_csv": "shear.csv",
        "plot": "shear_rheology.png",
        "render": "renders/sheared_particles.png",
    }


OVERRIDES = {"contact": CONTACT, "shortcuts": SHORTCUTS}
"""The step's built-in overrides of the shared groups (its config file repeats them)."""

STEP = ProcessStep(name="shear", params_type=ShearParams, run=run, uses_engine=True, check=check,
                   build_params=step_params_builder(ShearParams, OVERRIDES),
                   check_in_route=check_z_period, metrics_block="shear", metrics=shear_block)
