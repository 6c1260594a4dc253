"""The one mapping from materials to the engine and the shared config groups
(`electrodem.process.engine_map`): how the shared ``contact`` / ``shortcuts`` groups and a step's
overrides combine, that the config files repeat the steps' built-in overrides, what the fines' mass
scaling leaves invariant, and a bond law reaching the engine in SI units."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from electrodem.app.schema import validate
from electrodem.config import ConfigError
from electrodem.io.snapshot import Microstructure, Species
from electrodem.process.engine_map import BondLaw, ContactParams, ShortcutParams, bond_laws, masses
from electrodem.process.recipe import registry

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _cfg(*overrides: str):
    with initialize_config_dir(config_dir=os.fspath(CONFIGS), version_base=None):
        return compose("config", overrides=list(overrides))


def _params(run, label: str):
    return next(p.params for p in run.plan if p.label == label)


def test_the_shared_group_reaches_every_step_that_does_not_override_the_key():
    run = validate(_cfg("route=place_settle_compact", "contact.friction=0.4", "contact.restitution=0.6",
                        "shortcuts.fines_density_scale=10"))  # fmt: skip
    settle, compact = _params(run, "settle"), _params(run, "compact")
    # Not overridden by either step: both take the shared value.
    assert settle.contact.restitution == compact.contact.restitution == 0.6
    assert settle.shortcuts.fines_density_scale == compact.shortcuts.fines_density_scale == 10
    # The compaction's own friction (configs/compact: contact.friction 0.3) wins over the shared one.
    assert settle.contact.friction == 0.4 and compact.contact.friction == 0.3
    # A route entry's override goes on top of the step's, for that entry only.
    run = validate(_cfg("route=place_settle_calender",
                        "+route.steps=[place,settle,calender,{calender: {contact: {friction: 0.2}}}]"))
    first, second = _params(run, "calender"), _params(run, "calender_2")
    assert (first.contact.friction, second.contact.friction) == (0.5, 0.2)
    assert first.contact.normal == second.contact.normal == "thornton_ning"


def test_the_config_files_repeat_the_steps_built_in_overrides():
    """A step's Python defaults (used by the API) and its config file (used by runs) are one set: each
    step's ``contact`` / ``shortcuts`` mapping in configs/<step>/default.yaml equals its OVERRIDES."""
    cfg = OmegaConf.to_container(_cfg(), resolve=True)
    steps = registry()
    checked = 0
    for name in ("settle", "compact", "calender", "shear"):
        module = __import__(f"electrodem.process.steps.{name}", fromlist=["OVERRIDES"])
        for group in ("contact", "shortcuts"):
            assert cfg[steps[name].config_group][group] == module.OVERRIDES[group], (name, group)
            checked += 1
        # And the dataclass defaults (the Python API) are the shared defaults with those overrides.
        default = {f.name: f.default_factory() for f in dataclasses.fields(steps[name].params_type)
                   if f.name in ("contact", "shortcuts")}  # fmt: skip
        for group, cls in (("contact", ContactParams), ("shortcuts", ShortcutParams)):
            assert default[group] == cls(**module.OVERRIDES[group]), (name, group)
    assert checked == 8
    # The shared groups' files are the dataclasses' defaults (the Python API runs what a run runs).
    assert ContactParams(**cfg["contact"]) == ContactParams()
    assert ShortcutParams(**cfg["shortcuts"]) == ShortcutParams()


def test_fines_mass_scaling_scales_the_inertia_and_keeps_the_weight_when_asked():
    sp = (Species("am", "AM", 4000.0, 1e9, 0.3), Species("cb", "CB", 2000.0, 1e9, 0.3))
    micro = Microstructure(np.array([[5e-6, 5e-6, 5e-6], [1e-5, 5e-6, 1e-6]]), [5e-6, 0.5e-6], [0, 1], sp,
                           np.array([2e-5, 2e-5, 2e-5]))  # fmt: skip
    real = micro.masses_kg
    inertial, weight, fines = masses(micro, ShortcutParams(fines_density_scale=100.0, fines_weight="real"))
    assert fines.tolist() == [False, True]
    assert inertial.tolist() == [real[0], 100.0 * real[1]]
    assert np.array_equal(weight, real)  # the real weight: inertia-only scaling
    _, weight_scaled, _ = masses(micro, ShortcutParams(fines_density_scale=100.0))
    assert np.array_equal(weight_scaled, inertial)  # the default: weight scaled with the inertia


def test_bad_shared_values_are_refused_under_the_group_or_the_step():
    with pytest.raises(ConfigError) as e:
        validate(_cfg("contact.friction=-1"))
    assert e.value.key == "contact.friction"
    with pytest.raises(ConfigError) as e:
        validate(_cfg("compact.contact.friction=-1"))
    assert e.value.key == "compact.contact.friction"
    with pytest.raises(ConfigError) as e:
        validate(_cfg("+calender.shortcuts.modulus_cap=1"))
    assert e.value.key == "calender.shortcuts.modulus_cap" and "modulus_cap_Pa" in str(e.value)
    with pytest.raises(ConfigError) as e:
        validate(_cfg("+contact.species_overrides.graphite.friction=0.1"))
    assert e.value.key == "contact.species_overrides.graphite"
    with pytest.raises(ConfigError) as e:
        bond_laws({"fibril": {"youngs_modulus_MPa": 500.0, "poisson_ratio": 0.4, "failure": "plastic",
                              "source": "test"}})  # fmt: skip
    assert e.value.key == "bonds.fibril.yield_stress_MPa"


def test_a_bond_law_reaches_the_engine_in_si_units():
    """Two spheres bonded by the ``ptfe_fibril`` law of the config, pulled apart at a constant speed:
    the axial force is E_b A (L - L_0) / L_0 with E_b in Pa (the MPa of the config x 1e6) and
    A = pi (lambda r)^2 (lambda the radius multiplier), to round-off; the bond breaks when the axial
    stress reaches the tensile strength (within one step's stress increment)."""
    from electrodem.engine import EngineOptions, Material, Simulation, init

    law = bond_laws(OmegaConf.to_container(_cfg().bonds, resolve=True))["ptfe_fibril"]
    assert isinstance(law, BondLaw)
    init(EngineOptions())
    r, gap, v = 1e-6, 0.1e-6, 0.05
    sim = Simulation([Material("m", 2000.0, 1e9, 0.3, friction=0.0)], box_m=(1e-4, 1e-4, 1e-4),
                     gravity_m_per_s2=(0, 0, 0), dt_s=1e-10)  # fmt: skip
    sim.add_particles(np.array([[4e-5, 5e-5, 5e-5], [4e-5 + 2 * r + gap, 5e-5, 5e-5]]), r, "m",
                      fixed=[True, True], velocities_m_per_s=np.array([[0, 0, 0], [v, 0, 0]]))  # fmt: skip
    # Without the bond dashpots: the axial force is then the spring's alone.
    bonds = sim.add_extension(dataclasses.replace(law, damping_ratio=0.0).extension("fibrils"))
    bonds.add([0], [1])
    sim.run(steps=200, progress=False)
    st = bonds.state()
    area = np.pi * (law.radius_multiplier * r) ** 2
    strain = (st["length_m"][0] - st["equilibrium_length_m"][0]) / st["initial_length_m"][0]
    assert strain > 0
    assert st["normal_force_N"][0] == pytest.approx(law.youngs_modulus_MPa * 1e6 * area * strain, rel=1e-6)
    # Pull on until it breaks: sigma = F / A reaches the strength; one step adds E_b v dt / L_0.
    sim.run(steps=200_000, until=lambda s: bonds.broken_count > 0, every=10, progress=False)
    st = bonds.state()
    assert st["broken"][0]
    step_stress = law.youngs_modulus_MPa * 1e6 * v * 1e-10 / st["initial_length_m"][0]
    assert st["normal_force_N"][0] / area == pytest.approx(law.tensile_strength_MPa * 1e6,
                                                           abs=12 * step_stress)  # fmt: skip
    sim.free()
