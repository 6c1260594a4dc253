"""Step ``calender``: roll calendering, pass(es) through the nip and spring-back
(`electrodem.process.calender`).

Writes ``calendering_passes.csv`` (one row per pass), ``calendering_curve.csv`` (the load curve of every
pass) and ``calendering_pressure_porosity.png``; fills the ``calendering`` block of metrics.json.
``porosity_under_roll`` = 1 - V_solid / (A z_roll) is the porosity of the slab between the collector and
the planar nip wall (``nip`` geometry only: under an exact cylinder no slab is bounded; empty).
"""

from __future__ import annotations

import csv
import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

from electrodem.analysis.composition import THICKNESS_DEFINITION
from electrodem.config.errors import require, require_known_keys
from electrodem.config.params import build
from electrodem.process.calender import CalenderParams, calender
from electrodem.process.recipe import ProcessState, ProcessStep, RunInputs, StepContext, check_species_names

log = logging.getLogger("electrodem")

APP_KEYS = ("yield_pressure_from_library",)
"""Keys of the ``calender`` config group read here, not fields of `CalenderParams`."""

CURVE_KEYS = ("pass", "phase", "time_s", "x_m", "tool_z_m", "load_N", "load_check_N", "pressure_Pa",
              "floor_load_N", "line_load_N_per_mm", "strain_rate_per_s", "inertial_number",
              "porosity_under_roll")
"""Columns of ``calendering_curve.csv``: the calender report's curve plus ``porosity_under_roll``."""


def params(cfg: Mapping[str, Any], inputs: RunInputs, prefix: str) -> CalenderParams:
    """`CalenderParams` from the ``calender`` config group (its own checks run on construction).

    ``yield_pressure_from_library: true`` (with ``normal_model: thornton_ning``) fills the yield
    pressure (``contact_yield_pressure_MPa`` > 0) and softening range (``softening_onset_K``,
    ``melting_K``) of every formulation species the config does not name from the materials library;
    explicit ``yield_pressure_Pa`` / ``softening_K`` entries win. Species keys must be materials of the
    formulation.
    """
    cfg = dict(cfg)
    from_lib = cfg.pop("yield_pressure_from_library", False)
    # CalenderParams' own fields plus this app key; checked here so the message lists both.
    require_known_keys(cfg, [*(f.name for f in dataclasses.fields(CalenderParams)), *APP_KEYS], prefix)
    require(isinstance(from_lib, bool), f"{prefix}.yield_pressure_from_library", from_lib, "true or false")
    for key in ("yield_pressure_Pa", "softening_K"):
        table = cfg.get(key) or {}
        require(isinstance(table, dict), f"{prefix}.{key}", table, "a mapping species -> value")
        check_species_names(table, f"{prefix}.{key}", inputs)
    if from_lib and cfg.get("normal_model", "thornton_ning") == "thornton_ning":
        yields = dict(cfg.get("yield_pressure_Pa") or {})
        soft = dict(cfg.get("softening_K") or {})
        for n in inputs.species:
            mat = inputs.library[n]
            if n not in yields and mat.contact_yield_pressure_MPa > 0:
                yields[n] = mat.contact_yield_pressure_MPa * 1e6
            if n not in soft and mat.softening_onset_K is not None and mat.melting_K is not None:
                soft[n] = (float(mat.softening_onset_K), float(mat.melting_K))
        cfg["yield_pressure_Pa"], cfg["softening_K"] = yields, soft
    return build(CalenderParams, cfg, prefix)


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


STEP = ProcessStep(name="calender", params_type=CalenderParams, run=run, uses_engine=True,
                   build_params=params, metrics_block="calendering", metrics=calendering_block)
