"""Step ``compact``: uniaxial plate compaction, load -> unload -> relax (`electrodem.process.compact`).

Writes ``compaction.csv`` (the load/unload/relax curve) and ``compaction_pressure_porosity.png``; fills
the ``compaction`` block of metrics.json.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping
from typing import Any

from electrodem.analysis.composition import THICKNESS_DEFINITION
from electrodem.process.compact import CONTACT, CURVE_KEYS, SHORTCUTS, CompactParams, compact
from electrodem.process.engine_map import check_contact_species, step_params_builder
from electrodem.process.recipe import ProcessState, ProcessStep, RunInputs, StepContext

log = logging.getLogger("electrodem")


def run(state: ProcessState, params: CompactParams, ctx: StepContext) -> dict[str, Any]:
    from electrodem.engine import init

    init(ctx.engine)
    assert state.micro is not None
    state.micro, report = compact(state.micro, params, ctx.engine, progress=ctx.progress, live=state,
                                  checkpoint_path=ctx.run_dir / "engine_checkpoint.npz")
    curve = report["curve"]
    with ctx.out("compaction.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CURVE_KEYS)
        w.writerows(zip(*(curve[k] for k in CURVE_KEYS), strict=True))
    try:
        from electrodem_viz.plots import plot_compaction

        plot_compaction(curve, ctx.out("compaction_pressure_porosity.png"))
    except ImportError:
        log.warning("electrodem_viz is not installed: no compaction plot")
    return {k: v for k, v in report.items() if k != "curve"}


def check(params: CompactParams, inputs: RunInputs, prefix: str, groups: Mapping[str, Any]) -> None:
    check_contact_species(params.contact, inputs)


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


OVERRIDES = {"contact": CONTACT, "shortcuts": SHORTCUTS}
"""The step's built-in overrides of the shared groups (its config file repeats them)."""

STEP = ProcessStep(name="compact", params_type=CompactParams, run=run, uses_engine=True, check=check,
                   metrics_block="compaction", metrics=compaction_block,
                   build_params=step_params_builder(CompactParams, OVERRIDES))
