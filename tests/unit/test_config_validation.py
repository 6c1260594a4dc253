"""Bad configuration values are rejected before any compute, naming the key, the value and the rule."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from electrodem.app.schema import validate
from electrodem.config.errors import ConfigError


def _compose(config_dir, overrides):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir), version_base=None):
        return compose(config_name="config", overrides=overrides)


def test_default_config_validates(config_dir):
    rc = validate(_compose(config_dir, []))
    assert rc.steps[0] == "place"
    assert rc.formulation.name == "wet_nmc811_96_2_2"


@pytest.mark.parametrize("name", ["wet_nmc811_96_2_2", "wet_nmc811_90_5_5", "commercial_like_nmc811",
                                  "dry_nmc811_96_2_2", "dry_assb_cathode", "se_film_lpscl_ptfe",
                                  "naion_hard_carbon_anode"])
def test_every_formulation_composes(config_dir, name):
    assert validate(_compose(config_dir, [f"formulation={name}"])).formulation.name == name


BAD = [
    # (overrides, key named in the message, fragment of the rule)
    (["material.nmc811.psd.d50_um=-5"], "material.nmc811.psd.d50_um", "> 0"),
    (["material.pvdf.density_g_cm3=-1.78"], "material.pvdf.density_g_cm3", "> 0"),
    (["material.nmc811.poisson_ratio=0.7"], "material.nmc811.poisson_ratio", "(-1, 0.5)"),
    (["formulation.components.am.wt_pct=90"], "formulation.components.*.wt_pct", "sum to 100"),
    (["formulation.components.am.material=unobtainium"], "formulation.components.am.material",
     "a known material"),
    (["rve.thickness_um=-40"], "rve.thickness_um", "> 0"),
    (["rve.mass_loading_mg_cm2=20"], "rve.{thickness_um|mass_loading_mg_cm2|areal_capacity_mAh_cm2}",
     "exactly one"),
    (["rve.porosity=1.2"], "rve.porosity", "[0, 1)"),
    (["rve.box_x_um=0"], "rve.box_x_um", "> 0"),
    (["formulation=se_film_lpscl_ptfe", "rve.thickness_um=null", "rve.areal_capacity_mAh_cm2=3"],
     "rve.areal_capacity_mAh_cm2", "stores charge"),
    (["route.steps=[settle]"], "route.steps.0", "makes the microstructure first"),
    (["route.steps=[place,mix]"], "route.steps.1", "one of the registered steps"),
    (["place.packing_fraction=0.9"], "place.packing_fraction", "(0, 0.45]"),
    (["+place.speed_m_s=1"], "place.speed_m_s", "a known key of place"),
    (["seed=-1"], "seed", "non-negative"),
    (["output.vtu=maybe"], "output.vtu", "true or false"),
    (["rve.box_x_um=2000", "rve.box_y_um=2000"], "rve.max_particles", "raise rve.max_particles"),
    (["rve.box_x_um=30", "route=place_settle"], "rve.box_x_um", "twice the largest particle diameter"),
    # the shared contact / shortcuts / bonds groups, and a step's overrides of them
    (["contact.friction=-1"], "contact.friction", ">= 0"),
    (["compact.contact.friction=-1"], "compact.contact.friction", ">= 0"),
    (["contact.normal=plastic"], "contact.normal", "thornton_ning"),
    (["shortcuts.rayleigh_fraction=0.9"], "shortcuts.rayleigh_fraction", "(0, 0.5]"),
    (["calender.shortcuts.rayleigh_fraction=0.9"], "calender.shortcuts.rayleigh_fraction", "(0, 0.5]"),
    (["+settle.contact.frction=1"], "settle.contact.frction", "did you mean settle.contact.friction?"),
    (["+calender.contact.yield_pressure_MPa.graphite=100"], "calender.contact.yield_pressure_MPa.graphite",
     "a material of the formulation"),
    (["bonds.ptfe_fibril.youngs_modulus_MPa=0"], "bonds.ptfe_fibril.youngs_modulus_MPa", "> 0"),
    (["bonds.ptfe_fibril.failure=plastic"], "bonds.ptfe_fibril.yield_stress_MPa", "failure 'plastic'"),
    (["+settle.friction=0.5"], "settle.friction", "moved to the shared group: contact.friction"),
]


@pytest.mark.parametrize(("overrides", "key", "rule"), BAD, ids=[b[1] for b in BAD])
def test_bad_values_are_rejected_with_a_clear_message(config_dir, overrides, key, rule):
    with pytest.raises(ConfigError) as e:
        validate(_compose(config_dir, overrides))
    msg = str(e.value)
    assert msg.startswith(f"{key}="), msg
    assert rule in msg, msg


@pytest.mark.parametrize("launcher", ["slurm_gpu", "local_parallel", "joblib", "submitit_local"])
def test_launcher_configs_compose(config_dir, launcher):
    """The cluster launcher cannot run here, but its config must compose with GPU resources."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir), version_base=None):
        cfg = compose(config_name="config", overrides=[f"hydra/launcher={launcher}", "engine=gpu"],
                      return_hydra_config=True)
    la = cfg.hydra.launcher
    if launcher == "slurm_gpu":
        assert la.gpus_per_node == 1 and "SlurmLauncher" in la._target_
    if launcher == "submitit_local":
        assert "LocalLauncher" in la._target_
    assert cfg.engine.arch == "gpu"


def _options(group: str) -> list[str]:
    from electrodem.cli import config_dir

    return sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))


CHOICE_GROUPS = ("analysis", "bonds", "calender", "compact", "contact", "dry_mix", "engine", "place", "route",
                 "settle", "shear", "shortcuts")
ROUTE_FORMULATION = {"dry_mix": "dry_nmc811_96_2_2"}
"""Routes that need another formulation than the default wet one (a fibrillating binder)."""


@pytest.mark.parametrize(("group", "option"), [(g, o) for g in CHOICE_GROUPS for o in _options(g)])
def test_every_config_group_option_composes_and_validates(config_dir, group, option):
    """Enumerated from configs/: a new option file is covered without editing this test."""
    form = [f"formulation={ROUTE_FORMULATION[option]}"] if (group, option) in (
        ("route", r) for r in ROUTE_FORMULATION) else []
    rc = validate(_compose(config_dir, [f"{group}={option}", *form]))
    if group == "route":
        assert rc.steps[0] == "place" and len(rc.plan) == len(rc.steps)


@pytest.mark.parametrize("experiment", _options("experiment"))
def test_every_experiment_composes_and_validates(config_dir, experiment):
    rc = validate(_compose(config_dir, [f"+experiment={experiment}"]))
    assert rc.steps and rc.plan[0].step.creates_state
