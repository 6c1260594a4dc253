"""Dry blending with PTFE fibrillation agents (`electrodem.process.dry_mix`, issue #13).

One small dough per robustness case (the dry 96:2:2 NMC811 formulation with a finer NMC grade: ~1,000
particles, packed to a solid fraction of 0.6 once), kneaded at 25 and 60 °C to the same cell strain:

* the hotter dough fibrillates more (degree of fibrillation: PTFE mass fraction in drawn beads) — not a
  curve read back: the rules only see the yield pressure the material record softens with temperature,
  through the contacts (studies/dry_mix_trends.py: 0.08 ± 0.05 at 25 °C, 0.12 ± 0.08 at 60 °C at strain
  0.5 over three seeds, the hotter one ahead on every seed at every read-out);
* fibrillation rises with strain, bonds join the drawn beads, PTFE mass (in beads, plus what was
  smeared onto particles) is conserved to round-off;
* below the 19 °C crystal transition the beads take strain but none draws.

The two shortcuts of the step are checked for what they leave invariant: the barostat's uniform length
scaling (stresses of a packing) and the drawn beads' mass at half the radius (the time step).
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from electrodem.app import schema
from electrodem.cli import config_dir
from electrodem.engine import ContactModel, Material, Simulation
from electrodem.materials.formulation import make_population
from electrodem.process import dry_mix as dm
from electrodem.process.place import place
from electrodem.process.steps.dry_mix import build_params

OVERRIDES = ["+experiment=dry_smoke", "route=place", "material.nmc811.psd.d50_um=5.0",
             "material.nmc811.psd.d_max_um=6.0", "rve.box_x_um=20", "rve.box_y_um=20", "rve.thickness_um=10"]
STRAIN = 0.5


@pytest.fixture(scope="module")
def dough_for() -> Any:
    """``dough_for(chaos) -> (dough, params, run config)``: the placed powder of that case packed to the
    starting solid fraction (made once per case and worker)."""
    made: dict[Any, Any] = {}

    def get(chaos: Any) -> Any:
        key = (chaos.seed, getattr(chaos, "perturbation_rel", 0.0))
        if key not in made:
            with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
                cfg = compose("config", overrides=[*OVERRIDES, f"seed={chaos.seed}"])
            rc = schema.validate(cfg)
            inp = rc.inputs
            place_params = next(p.params for p in rc.plan if p.entry.name == "place")
            pop = make_population(inp.formulation, inp.rve, inp.seed)
            side = (inp.rve.box_x_um * 1e-6, inp.rve.box_y_um * 1e-6)
            micro = place(pop, *side, place_params, inp.seed, False)
            micro = micro.with_(positions_m=chaos.perturb(micro.positions_m, micro.radii_m, micro.box_m))
            params = build_params(OmegaConf.to_container(cfg.dry_mix, resolve=True), inp, "dry_mix")
            dough, _ = dm.densify(micro, params.start_solid_fraction, params, rc.engine)
            made[key] = (dough, params, rc)
        return made[key]

    return get


def _knead(case: Any, temperature_K: float, strain: float) -> tuple[Any, dict[str, Any]]:
    dough, params, rc = case
    p = dataclasses.replace(params, strain=strain, temperature_K=temperature_K, samples=5)
    return dm.dry_mix(dough, p, rc.engine, rc.inputs.library, rc.inputs.shared["bonds"]["ptfe_fibril"])


def _ptfe_kg(micro: Any) -> float:
    """PTFE in beads plus PTFE smeared onto other particles (kg)."""
    return float(micro.fields["ptfe_mass_kg"].sum() + micro.fields["smeared_ptfe_kg"].sum())


def _initial_ptfe_kg(dough: Any) -> float:
    ptfe = [k for k, s in enumerate(dough.species) if s.name == "ptfe"]  # the test's own bookkeeping
    return float(dough.masses_kg[np.isin(dough.species_id, ptfe)].sum())


@pytest.mark.chaotic
def test_hotter_kneading_fibrillates_more_at_equal_strain_and_conserves_ptfe(chaos, dough_for) -> None:
    case = dough_for(chaos)
    total = _initial_ptfe_kg(case[0])
    dof = {}
    for t in (298.15, 333.15):
        out, rep = _knead(case, t, STRAIN)
        f, hist = rep["fibrils"], rep["history"]["degree_of_fibrillation"]
        dof[t] = f["degree_of_fibrillation"]
        # Round-off bound: one relative epsilon per bead and per smearing event, summed.
        assert _ptfe_kg(out) == pytest.approx(total, rel=1e-12, abs=0.0)
        # Read-outs aim at the strain marks with the last time step; the barostat and drawing change it
        # slightly, so the cell ends within a step's strain (rate x dt ~ 1.5e-5) of the target.
        assert rep["strain"] == pytest.approx(STRAIN, abs=rep["shear_rate_per_s"] * rep["dt_s"])
        assert hist[-1] > hist[0] and dof[t] > 0.0  # rises with strain
        assert f["fibril_count"] >= 1 and f["bonds_intact"] > 0
        assert out.bonds is not None and out.bonds["i"].size == f["bonds_intact"] + f["bonds_broken"]
        assert int(out.fields["ptfe_generation"].max()) == f["max_generation"] >= 1
    assert dof[333.15] > dof[298.15]


def test_below_the_crystal_transition_no_bead_draws(dough_for) -> None:
    case = dough_for(SimpleNamespace(seed=0, perturb=lambda x, r, b: x))  # the default case, unperturbed
    out, rep = _knead(case, 285.0, 0.15)
    f = rep["fibrils"]
    bead = out.fields["ptfe_mass_kg"] > 0
    assert f["drawn_beads"] == 0 and f["degree_of_fibrillation"] == 0.0 and f["drawing_events"] == 0
    assert not np.any(out.fields["ptfe_generation"])
    assert out.fields["ptfe_strain"][bead].mean() > 0.01  # they were squeezed and sheared all the same
    assert _ptfe_kg(out) == pytest.approx(_initial_ptfe_kg(case[0]), rel=1e-12, abs=0.0)


def _material(e: float = 1e9) -> Material:
    return Material("m", 2000.0, e, 0.3, friction=0.3)


def test_scaling_every_length_leaves_the_stress_of_a_packing_unchanged() -> None:
    """The barostat holds the pressure by scaling all particle lengths instead of the box: a packing
    with every length x g (radii, positions, box) carries the same stress tensor (Hertz forces ~ L^2,
    branch vectors ~ L, volume ~ L^3), to round-off."""
    rng = np.random.default_rng(4)
    n, box = 40, 2e-5
    x = rng.uniform(0, box, (n, 3))
    r = rng.uniform(1.6e-6, 2.4e-6, n)
    stresses = []
    for g in (1.0, 1.37):
        sim = Simulation([_material()], box_m=(g * box,) * 3, periodic=(True, True, True),
                         contact=ContactModel(tangential="none", rolling="none"), gravity_m_per_s2=(0, 0, 0))
        sim.add_particles(g * x, g * r, "m")
        stresses.append(sim.stress_tensor(kinetic=False))
        sim.free()
    assert np.abs(stresses[0]).max() > 0  # the random packing overlaps: a real stress
    np.testing.assert_allclose(stresses[1], stresses[0], rtol=1e-9, atol=1e-12 * np.abs(stresses[0]).max())


def test_a_drawn_bead_keeps_the_time_step_of_its_parent() -> None:
    """A drawn bead carries half its parent's mass at half its radius (density x 4): the Rayleigh time
    r sqrt(rho / G), which sets the time step of a dense mix, is the parent's."""
    dts = []
    for r, m in ((0.5e-6, 1.0e-15), (0.25e-6, 0.5e-15)):
        sim = Simulation([_material(5e8)], box_m=(1e-4,) * 3, gravity_m_per_s2=(0, 0, 0))
        sim.add_particles([[5e-5] * 3], r, "m", masses_kg=[m])
        sim.run(steps=0, progress=False)
        dts.append(sim.time_step_report.rayleigh_time_s)
        sim.free()
    assert dts[1] == pytest.approx(dts[0], rel=1e-12)
