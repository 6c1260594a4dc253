"""Step ``dry_mix``: dry blending of AM / CB / PTFE with fibrillation agents (`electrodem.process.dry_mix`).

Writes ``dry_mix.csv`` (the fibril and rheology history against shear strain), ``dry_mix_fibrils.png``
(degree of fibrillation, network fraction and fibril count against strain) and, unless ``output.render``
is false, ``renders/dry_mix_particles.png``; fills the ``dry_mix`` and ``fibrils`` blocks of metrics.json.
The live engine state of earlier steps is not carried in: the dough is a new fully periodic box.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from electrodem.config.errors import is_number, require
from electrodem.config.params import build
from electrodem.process import ptfe
from electrodem.process.dry_mix import CONTACT, SHORTCUTS, DryMixParams, dry_mix
from electrodem.process.engine_map import check_contact_species, step_params_builder
from electrodem.process.recipe import ProcessState, ProcessStep, RunInputs, StepContext

log = logging.getLogger("electrodem")

_BUILD = step_params_builder(DryMixParams, {"contact": CONTACT, "shortcuts": SHORTCUTS})


def build_params(cfg: Mapping[str, Any], inputs: RunInputs, prefix: str) -> DryMixParams:
    """The step's parameters: the shared groups with its overrides, and ``fibrils`` as `FibrilParams`."""
    cfg = dict(cfg)
    fib = cfg.get("fibrils") or {}
    if isinstance(fib, Mapping):
        cfg["fibrils"] = build(ptfe.FibrilParams, {**fib, "where": f"{prefix}.fibrils"}, f"{prefix}.fibrils")
    return _BUILD(cfg, inputs, prefix)


def run(state: ProcessState, params: DryMixParams, ctx: StepContext) -> dict[str, Any]:
    from electrodem.engine import init

    init(ctx.engine)
    assert state.micro is not None
    if state.sim is not None:
        log.warning("dry_mix: the dough is a new fully periodic engine state built from the snapshot")
        state.sim.free()
        state.sim = None
    law = ctx.inputs.shared["bonds"]["ptfe_fibril"]
    state.micro, report = dry_mix(state.micro, params, ctx.engine, ctx.inputs.library, law,
                                  csv_path=ctx.out("dry_mix.csv"), progress=ctx.progress)
    try:
        from electrodem_viz.plots import plot_fibrils

        plot_fibrils(report["history"], ctx.out("dry_mix_fibrils.png"))
        if ctx.output.get("render", True):
            from electrodem_viz.render import render_particles

            name = "dry_mix_particles.png" if ctx.repeat == 1 else f"{ctx.label}_dry_mix_particles.png"
            render_particles(state.micro, ctx.run_dir / "renders" / name,
                             title=f"dry mix to strain {report['strain']:.2f}: {state.micro.n} particles")
    except ImportError:
        log.warning("electrodem_viz is not installed: no dry-mix plot or render")
    return report


def check(params: DryMixParams, inputs: RunInputs, prefix: str, groups: Mapping[str, Any]) -> None:
    """Species named in the step's contact tables exist; a material's ``transition_temperature_C`` (what
    makes it fibrillate, `ptfe.fibrillating`) is a temperature, not text a rule would skip silently."""
    check_contact_species(params.contact, inputs)
    for name, rec in inputs.library.items():
        t = rec.extra.get("transition_temperature_C")
        if t is not None:
            require(is_number(t) and t > -273.15, f"material.{name}.transition_temperature_C", t,
                    "a temperature (°C) above absolute zero: the crystal transition it fibrillates above")


def check_in_route(params: DryMixParams, inputs: RunInputs, prefix: str, groups: Mapping[str, Any]) -> None:
    """A dry mix needs a fibrillating binder whose record has a yield stress, and the fibril bond law."""
    names = inputs.species
    fib = [n for n in names if ptfe.fibrillating(inputs.library[n])]
    require(fib, "formulation.components", names,
            "a fibrillating binder (a material with transition_temperature_C, e.g. ptfe) for route dry_mix")
    for n in fib:
        p_y = params.contact.yield_pressure_MPa.get(n, (inputs.library[n].contact_yield_pressure_MPa or 0.0)
                                                    if params.contact.yield_pressure_from_library else 0.0)
        require(p_y > 0, f"{prefix}.contact.yield_pressure_MPa.{n}", p_y,
                "> 0 (MPa) for a fibrillating binder (its squeeze is measured by it)")
    require("ptfe_fibril" in inputs.shared.get("bonds", {}), "bonds.ptfe_fibril", None,
            "a bond law for the fibrils the dry mix draws")


def dry_mix_block(report: dict[str, Any]) -> dict[str, Any]:
    """The ``dry_mix`` block of metrics.json."""
    return {k: report[k] for k in ("strain", "shear_rate_per_s", "temperature_K", "solid_fraction", "box_um",
                                   "n_particles_start", "n_particles", "steps", "dt_s")} | {
        "fibrils": report["fibrils"], "history_csv": "dry_mix.csv", "plot": "dry_mix_fibrils.png"}


STEP = ProcessStep(name="dry_mix", params_type=DryMixParams, run=run, uses_engine=True, check=check,
                   build_params=build_params, check_in_route=check_in_route, metrics_block="dry_mix",
                   metrics=dry_mix_block)
