"""Step ``calender``: roll calendering, pass(es) through the nip and spring-back
(`electrodem.process.calender`).

Writes ``calendering_passes.csv`` (one row per pass), ``calendering_curve.csv`` (the load curve of every
pass) and ``calendering_pressure_porosity.png``; fills the ``calendering`` block of metrics.json.
``porosity_under_roll`` = 1 - V_solid / (A z_roll) is the porosity of the slab between the collector and
the planar nip wall (``nip`` geometry only: under an exact cylinder no slab is bounded; empty).
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping
from typing import Any

from electrodem.analysis.composition import THICKNESS_DEFINITION
from electrodem.process.calender import CONTACT, SHORTCUTS, CalenderParams, calender
from electrodem.process.engine_map import check_contact_species, step_params_builder
from electrodem.process.recipe import ProcessState, ProcessStep, RunInputs, StepContext

log = logging.getLogger("electrodem")

CURVE_KEYS = ("pass", "phase", "time_s", "x_m", "tool_z_m", "load_N", "load_check_N", "pressure_Pa",
              "floor_load_N", "line_load_N_per_mm", "strain_rate_per_s", "inertial_number",
              "porosity_under_roll")
"""Columns of ``calendering_curve.csv``: the calender report's curve plus ``porosity_under_roll``."""


def run(state: ProcessState, params: CalenderParams, ctx: StepContext) -> dict[str, Any]:
    from electrodem.engine import init

    init(ctx.engine)
    assert state.micro is not None
    solid_m3 = float(state.micro.volumes_m3.sum())
    area_m2 = float(state.micro.box_m[0] * state.micro.box_m[1])
    state.micro, report = calender(state.micro, params, ctx.engine, progress=ctx.progress, live=state)
    nip = report["geometry"] == "nip"
    curve = [{**r, "porosity_under_roll": 1.0 - solid_m3 / (area_m2 * r["tool_z_m"]) if nip else ""}
             for r in report["curve"]]
    with ctx.out("calendering_curve.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, CURVE_KEYS, extrasaction="ignore")
        w.writeheader()
        w.writerows(curve)
    rows = report["passes"]
    cols = list(dict.fromkeys(k for r in rows for k in r))
    with ctx.out("calendering_passes.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, cols)
        w.writeheader()
        w.writerows(rows)
    try:
        from electrodem_viz.plots import plot_calendering

        plot_calendering({k: [r[k] for r in curve] for k in CURVE_KEYS},
                         ctx.out("calendering_pressure_porosity.png"))
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


def check(params: CalenderParams, inputs: RunInputs, prefix: str, groups: Mapping[str, Any]) -> None:
    check_contact_species(params.contact, inputs)


OVERRIDES = {"contact": CONTACT, "shortcuts": SHORTCUTS}
"""The step's built-in overrides of the shared groups (its config file repeats them)."""

STEP = ProcessStep(name="calender", params_type=CalenderParams, run=run, uses_engine=True, check=check,
                   build_params=step_params_builder(CalenderParams, OVERRIDES),
                   metrics_block="calendering", metrics=calendering_block)
