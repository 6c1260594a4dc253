"""Bad input is refused before any compute, by name (issue #18, "Bad input").

* Every key of the schema has a refusal case: `INVALID` holds one invalid value per key, and
  `test_every_key_has_a_refusal_case` fails when a key found in the shipped configs (or a field of a
  step's parameter dataclass) is in neither `INVALID` nor `ACCEPTS_ANYTHING`. The shared groups are
  covered as ``contact.*``, ``shortcuts.*`` and ``bonds.<kind>.*``, and every engine step's override
  mappings as ``<step>.contact.*`` / ``<step>.shortcuts.*`` (the shared cases repeated per step).
* Each case is refused by `validate` on a ``route=place`` run (no step reads ``settle``, ``engine``,
  ``compact``, ... there: every group is validated on every run) with a one-line `ConfigError` whose
  message starts with the dotted key.
* `test_random_invalid_numbers_are_refused_by_name` draws random invalid values (out of range, NaN,
  +-inf, text, bools, lists, non-integers for integer keys) for every numeric key (hypothesis).
* Unknown keys are refused with the nearest valid name (step keys that moved into the shared groups
  are unknown now); ``resume_from`` and interrupted run directories are checked before anything is
  computed; the backend probe reads its child correctly.

All in-process on one composed config (validate takes ~10 ms), so the module runs in seconds.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from electrodem.app import runner, schema
from electrodem.app.schema import validate
from electrodem.cli import config_dir
from electrodem.config.errors import ConfigError
from electrodem.engine import arch
from electrodem.engine.arch import EngineOptions
from electrodem.io.snapshot import Microstructure, Species
from electrodem.materials.formulation import COMPONENT_KEYS, FORMULATION_KEYS, RVE_KEYS, TARGET_KEYS
from electrodem.materials.library import Material
from electrodem.materials.psd import PSD_KEYS
from electrodem.process.engine_map import MOVED_KEYS, SHARED_GROUPS, BondLaw
from electrodem.process.recipe import registry

CONFIGS = config_dir()
MATERIAL = "nmc811"  # the material whose keys stand for ``material.*`` (in the default formulation)
SLOT = "am"  # the component slot that stands for ``formulation.components.*``
BOND = "ptfe_fibril"  # the bond kind that stands for ``bonds.*`` (configs/bonds/default.yaml)
INF, NAN = float("inf"), float("nan")

GROUP_CLASSES: dict[str, type] = {
    **{s.config_group: s.params_type for s in registry().values()}, "engine": EngineOptions,
}
"""Config group -> parameter dataclass: every registered process step's, and the engine's."""

SHARED: dict[str, type] = dict(SHARED_GROUPS)
"""The shared top-level groups an engine step may override under its own group (``contact``,
``shortcuts``) -> their dataclass. (``bonds`` is shared too, but steps do not override it.)"""

OVERRIDE_STEPS: tuple[str, ...] = tuple(sorted(
    g for g, cls in GROUP_CLASSES.items() if {f.name for f in dataclasses.fields(cls)} & SHARED.keys()))
"""Step groups with ``contact:`` / ``shortcuts:`` override mappings (settle, compact, calender, shear)."""

# One invalid value per key of the shared groups. A step's override mapping takes the same keys, checked
# by the same dataclass under the step's name: `OVERRIDE_INVALID` repeats each case under every step
# (e.g. compact.contact.friction, calender.shortcuts.rayleigh_fraction), so a step that stopped merging
# or checking its overrides fails here by name.
SHARED_INVALID: dict[str, Any] = {
    "contact.normal": "jkr", "contact.damping": "hysteretic", "contact.tangential": "coulomb",
    "contact.rolling": "spring", "contact.cohesion": "vdw", "contact.friction": -0.1,
    "contact.restitution": 0.0, "contact.rolling_friction": -1.0, "contact.tool_friction": -1.0,
    "contact.species_overrides": {MATERIAL: {"friction": -1.0}}, "contact.surface_energy_scale": -1.0,
    "contact.yield_pressure_from_library": "yes", "contact.yield_pressure_MPa": {MATERIAL: -1.0},
    "contact.softening_K": {"pvdf": [400.0, 300.0]}, "contact.current_collector": "gold",
    "shortcuts.modulus_scale": 2.0, "shortcuts.modulus_cap_Pa": 0.0, "shortcuts.fines_radius_um": -1.0,
    "shortcuts.fines_density_scale": 0.5, "shortcuts.fines_weight": "heavy", "shortcuts.gravity_scale": -2.0,
    "shortcuts.rayleigh_fraction": 0.9,
}
OVERRIDE_INVALID: dict[str, Any] = {
    **{f"{step}.{group}": "x" for step in OVERRIDE_STEPS for group in SHARED},  # not a mapping
    **{f"{step}.{key}": v for step in OVERRIDE_STEPS for key, v in SHARED_INVALID.items()},
}

# One invalid value per key ("*": any material / component slot / bond kind). Values a user could type.
INVALID: dict[str, Any] = {
    # --- top level and output
    "seed": -1, "progress": "yes", "resume_from": "/nonexistent/checkpoint.npz",
    "plugins": ["no_such_module"], "output.vtu": "maybe", "output.render": 1,
    # --- route
    "route.steps": ["settle"],
    # --- rve
    "rve.box_x_um": -42.0, "rve.box_y_um": INF, "rve.thickness_um": 0.0, "rve.mass_loading_mg_cm2": -3.0,
    "rve.areal_capacity_mAh_cm2": NAN, "rve.porosity": 1.0, "rve.max_particles": 0,
    # --- formulation
    "formulation.route": "spray", "formulation.components.*.material": "unobtainium",
    "formulation.components.*.wt_pct": -96.0, "formulation.targets.porosity": 1.5,
    "formulation.targets.areal_capacity_mAh_cm2": -4.0,
    # --- materials
    "material.*.role": "glue", "material.*.density_g_cm3": 0.0, "material.*.youngs_modulus_GPa": INF,
    "material.*.poisson_ratio": 0.5, "material.*.electronic_conductivity_S_m": -1e-3,
    "material.*.ionic_conductivity_S_m": NAN, "material.*.specific_capacity_mAh_g": -200.0,
    "material.*.friction_coefficient": -0.4, "material.*.restitution_coefficient": 0.0,
    "material.*.color": "#12", "material.*.surface_energy_J_m2": -0.005,
    "material.*.contact_yield_pressure_MPa": INF, "material.*.softening_onset_K": -5.0,
    "material.*.melting_K": 0.0, "material.*.sources": "see the paper",
    "material.*.transition_temperature_C": "room temperature",
    "material.*.psd.distribution": "gamma", "material.*.psd.basis": "mass", "material.*.psd.d50_um": 0.0,
    "material.*.psd.geometric_std": 0.5, "material.*.psd.d_min_um": 50.0, "material.*.psd.d_max_um": 1.0,
    "material.*.psd.d10_um": 20.0, "material.*.psd.d90_um": 5.0,
    # --- place
    "place.packing_fraction": 0.9, "place.max_rounds": 0, "place.position_perturbation_rel": 1e-3,
    # --- engine
    "engine.arch": "tpu", "engine.precision": "f16", "engine.seed": -1, "engine.cpu_threads": 0,
    "engine.offline_cache": "yes", "engine.debug": "no",
    # --- bonds (one entry stands for every bond kind: "bonds.*")
    "bonds.*.youngs_modulus_MPa": 0.0, "bonds.*.poisson_ratio": 0.5, "bonds.*.radius_multiplier": 0.0,
    "bonds.*.tensile_strength_MPa": -34.0, "bonds.*.shear_strength_MPa": 0.0, "bonds.*.failure": "ductile",
    "bonds.*.yield_stress_MPa": -1.0, "bonds.*.breaking_strain": 0.0, "bonds.*.damping_ratio": -0.1,
    "bonds.*.source": "",
    # --- contact and shortcuts (shared groups; every engine step's overrides too: OVERRIDE_INVALID)
    **SHARED_INVALID,
    **OVERRIDE_INVALID,
    # --- settle
    "settle.gravity_m_per_s2": 0.0, "settle.overlap_target": 0.5,
    "settle.fall_overlap_target": 0.5, "settle.load_safety_factor": 0.5,
    "settle.damping_ratio": 0.0, "settle.background_damping_per_s": -1.0, "settle.ke_threshold_ratio": 1.0,
    "settle.unbalanced_force_tolerance": 0.0, "settle.max_moving_fraction": 0.5,
    "settle.load_balance_tolerance": 1.0, "settle.max_steps": 0, "settle.check_every_steps": 0,
    "settle.steps_per_contact": 1.0, "settle.max_overlap_ratio": 0.5,
    # --- compact
    "compact.mode": "servo", "compact.target_porosity": 1.5, "compact.target_thickness_um": -1.0,
    "compact.target_pressure_MPa": -1.0, "compact.plate_speed_m_per_s": 0.0,
    "compact.industrial_plate_speed_m_per_s": 0.0, "compact.pressure_tolerance": 0.9,
    "compact.hold_checks": 0, "compact.record_every_steps": 0, "compact.max_steps": 0,
    "compact.inertial_number_max": 1.0, "compact.quasi_static_pressure_fraction": 1.0,
    "compact.relax_damping_per_s": -1.0, "compact.relax_ke_ratio": 0.0, "compact.relax_max_steps": 0,
    "compact.max_overlap_ratio": 0.9, "compact.max_total_overlap_ratio": 5.0,
    "compact.max_overlap_volume_fraction": 1.0, "compact.fit_pressure_fraction": 1.0,
    # --- calender
    "calender.geometry": "drum", "calender.roll_radius_m": 0.0, "calender.control": "speed",
    "calender.gap_um": -5.0, "calender.gap_fraction": 1.5, "calender.target_line_load_N_per_mm": -1.0,
    "calender.target_porosity": 1.0, "calender.passes": 0, "calender.roll_temperature_K": 0.0,
    "calender.surface_speed_ratio": -1.0, "calender.line_speed_m_per_s": 0.0,
    "calender.target_inertial_number": 0.5, "calender.design_pressure_Pa": 0.0,
    "calender.max_inertial_number": 1.0, "calender.gravity_m_per_s2": -1.0,
    "calender.samples_per_nip": 5, "calender.relax_ke_ratio": 1.0,
    "calender.relax_damping_ratio": 0.0, "calender.max_relax_steps": 0, "calender.max_arc_fraction": 0.5,
    "calender.search_passes": 1, "calender.search_tolerance": 1.0, "calender.max_overlap_ratio": 0.5,
    "calender.max_total_overlap_ratio": 3.0, "calender.max_steps_per_pass": 0,
    # --- shear
    "shear.shear_rate_per_s": 0.0, "shear.strain": 0.0, "shear.samples": 0,
    "shear.industrial_shear_rate_per_s": 0.0, "shear.affine_start": "yes",
    "shear.max_image_overlap_ratio": -1.0, "shear.pressure_MPa": -1.0, "shear.barostat_gain": 2.0,
    # --- dry_mix
    "dry_mix.start_solid_fraction": 0.7, "dry_mix.pressure_MPa": 0.0, "dry_mix.shear_rate_per_s": -2e4,
    "dry_mix.strain": 0.0, "dry_mix.temperature_K": -10.0, "dry_mix.samples": 0,
    "dry_mix.agent_interval_steps": 0, "dry_mix.agents": "yes", "dry_mix.barostat_gain": -0.1,
    "dry_mix.growth_per_stage": 1.0,
    "dry_mix.growth_stage_steps": 0, "dry_mix.industrial_shear_rate_per_s": 0.0,
    "dry_mix.max_overlap_ratio": 0.9, "dry_mix.max_total_overlap_ratio": 5.0, "dry_mix.fibrils": "x",
    "dry_mix.fibrils.threshold_strain": 0.0, "dry_mix.fibrils.min_bead_radius_ratio": 1.0,
    "dry_mix.fibrils.anchor_pressure_fraction": -1.0, "dry_mix.fibrils.smear_overlap_ratio": 0.0,
    "dry_mix.fibrils.source": "",
    # --- analysis
    "analysis.gap_tolerance_rel": 1.5, "analysis.min_contact_radius_rel": 0.0,
    "analysis.use_engine_contacts": "yes", "analysis.top_layer_thickness_um": -1.0,
    "analysis.run_cbd": "yes", "analysis.cbd_porosity": 1.0, "analysis.cbd_sigma_e_S_per_m": 0.0,
    "analysis.cbd_ionic_transport_factor": 1.5,
    "analysis.run_resistor": "no", "analysis.bulk_resistance": "full", "analysis.run_voxel": 1,
    "analysis.voxels_per_smallest_diameter": 0.0, "analysis.max_voxels": 10, "analysis.voxel_flux_rtol": 0.0,
    "analysis.directions": ["w"], "analysis.n_profile_bins": 0, "analysis.top_bottom_fraction": 0.7,
    "analysis.electrolyte": "gel", "analysis.c_rate_per_h": 0.0, "analysis.electrolyte_D0_m2_per_s": 1.0,
    "analysis.electrolyte_C0_mol_per_m3": -1.0, "analysis.transference_number": 1.0,
    "analysis.progress": "no",
}

ACCEPTS_ANYTHING: dict[str, str] = {
    # key: why any value is fine
    "route.name": "a label (metrics.json run.route, the run directory's name); str() of anything is one",
    "formulation.name": "a label (run directory name, metrics); str() of anything is one",
    "formulation.description": "free text",
    "formulation.source": "free text (provenance)",
    "material.*.name": "ignored: a material's name is its key under material. (a file may be composed "
                       "under another name, e.g. material@material.nmc811_fine: nmc811)",
    "material.*.description": "free text",
    "material.*.coarse_graining": "free text saying what one sphere stands for (null: one real particle); "
                                  "not read by the code",
    "material.*.melting_point_C": "documented extra key (Material.extra, docs/materials.md), not read",
    "material.*.yield_stress_MPa": "documented extra key (Material.extra), not read",
}

# Keys refused only in a context (another key patched first): the loading keys are exclusive with
# rve.thickness_um, which the default config sets.
CONTEXT: dict[str, dict[str, Any]] = {
    "rve.mass_loading_mg_cm2": {"rve.thickness_um": None},
    "rve.areal_capacity_mAh_cm2": {"rve.thickness_um": None},
}


class Range(NamedTuple):
    """Allowed values of a numeric key: [lo, hi] with open/closed ends; ``integer`` keys refuse
    floats; ``nonzero`` refuses 0; ``text`` are the words also allowed (e.g. gravity_scale auto)."""

    lo: float = -INF
    hi: float = INF
    lo_open: bool = False
    hi_open: bool = False
    integer: bool = False
    nonzero: bool = False
    text: tuple[str, ...] = ()
    lists: bool = False  # a list of valid numbers is valid too (calender.gap_um, one per pass)

    def contains(self, v: float) -> bool:
        """Whether the number ``v`` is allowed."""
        if self.integer and not float(v).is_integer():
            return False
        above = v > self.lo if self.lo_open else v >= self.lo
        below = v < self.hi if self.hi_open else v <= self.hi
        return above and below and not (self.nonzero and v == 0)


def _r(spec: str, *, integer: bool = False, nonzero: bool = False, text: tuple[str, ...] = (),
       lists: bool = False) -> Range:
    """A `Range` from interval notation: ``"(0, 1]"``, ``"[0, inf)"``."""
    m = re.fullmatch(r"([\[(])\s*([^,]+),\s*([^\])]+)([\])])", spec)
    assert m, spec
    return Range(float(m[2]), float(m[3]), m[1] == "(", m[4] == ")", integer, nonzero, text, lists)


POS, NONNEG, FRAC01 = "(0, inf)", "[0, inf)", "(0, 1)"
INT1 = _r("[1, inf)", integer=True)
SHARED_RANGES: dict[str, Range] = {  # also each engine step's override of them (OVERRIDE_STEPS)
    "contact.friction": _r(NONNEG), "contact.restitution": _r("(0, 1]"),
    "contact.rolling_friction": _r(NONNEG), "contact.tool_friction": _r(NONNEG),
    "contact.surface_energy_scale": _r(NONNEG),
    "shortcuts.modulus_scale": _r("(0, 1]"), "shortcuts.modulus_cap_Pa": _r(POS),
    "shortcuts.fines_radius_um": _r(NONNEG), "shortcuts.fines_density_scale": _r("[1, inf)"),
    "shortcuts.gravity_scale": _r(POS, text=("auto",)), "shortcuts.rayleigh_fraction": _r("(0, 0.5]"),
}
RANGES: dict[str, Range] = {
    "seed": _r(NONNEG, integer=True),
    "rve.box_x_um": _r(POS), "rve.box_y_um": _r(POS), "rve.thickness_um": _r(POS),
    "rve.mass_loading_mg_cm2": _r(POS), "rve.areal_capacity_mAh_cm2": _r(POS), "rve.porosity": _r("[0, 1)"),
    "rve.max_particles": INT1,
    "formulation.components.*.wt_pct": _r("(0, 100]"), "formulation.targets.porosity": _r("[0, 1)"),
    "formulation.targets.areal_capacity_mAh_cm2": _r(POS),
    "material.*.density_g_cm3": _r(POS), "material.*.youngs_modulus_GPa": _r(POS),
    "material.*.poisson_ratio": _r("(-1, 0.5)"), "material.*.electronic_conductivity_S_m": _r(NONNEG),
    "material.*.ionic_conductivity_S_m": _r(NONNEG), "material.*.specific_capacity_mAh_g": _r(NONNEG),
    "material.*.friction_coefficient": _r(NONNEG), "material.*.restitution_coefficient": _r("(0, 1]"),
    "material.*.surface_energy_J_m2": _r(NONNEG), "material.*.contact_yield_pressure_MPa": _r(NONNEG),
    "material.*.softening_onset_K": _r(POS), "material.*.melting_K": _r(POS),
    "material.*.transition_temperature_C": _r("(-273.15, inf)"),
    # nmc811: d50 10 µm
    "material.*.psd.d50_um": _r(POS), "material.*.psd.geometric_std": _r("[1, inf)"),
    "material.*.psd.d_min_um": _r("(0, 10]"), "material.*.psd.d_max_um": _r("[10, inf)"),
    "material.*.psd.d10_um": _r("(0, 10)"), "material.*.psd.d90_um": _r("(10, inf)"),
    "place.packing_fraction": _r("(0, 0.45]"), "place.max_rounds": INT1,
    "place.position_perturbation_rel": _r("[0, 1e-9]"),
    "engine.seed": _r(NONNEG, integer=True), "engine.cpu_threads": INT1,
    "bonds.*.youngs_modulus_MPa": _r(POS), "bonds.*.poisson_ratio": _r("(-1, 0.5)"),
    "bonds.*.radius_multiplier": _r(POS), "bonds.*.tensile_strength_MPa": _r(POS),
    "bonds.*.shear_strength_MPa": _r(POS), "bonds.*.yield_stress_MPa": _r(POS),
    "bonds.*.breaking_strain": _r(POS), "bonds.*.damping_ratio": _r(NONNEG),
    **SHARED_RANGES,
    **{f"{step}.{key}": r for step in OVERRIDE_STEPS for key, r in SHARED_RANGES.items()},
    "settle.gravity_m_per_s2": _r(POS),
    "settle.overlap_target": _r("(0, 0.01]"), "settle.fall_overlap_target": _r("(0, 0.1]"),
    "settle.load_safety_factor": _r("[1, inf)"), "settle.damping_ratio": _r(POS),
    "settle.background_damping_per_s": _r(NONNEG), "settle.ke_threshold_ratio": _r(FRAC01),
    "settle.unbalanced_force_tolerance": _r(POS), "settle.max_moving_fraction": _r("[0, 0.1)"),
    "settle.load_balance_tolerance": _r(FRAC01), "settle.max_steps": INT1, "settle.check_every_steps": INT1,
    "settle.steps_per_contact": _r("[5, inf)"), "settle.max_overlap_ratio": _r("(0, 0.2)"),
    "compact.target_porosity": _r(FRAC01), "compact.target_thickness_um": _r(POS),
    "compact.target_pressure_MPa": _r(POS), "compact.plate_speed_m_per_s": _r(POS),
    "compact.industrial_plate_speed_m_per_s": _r(POS), "compact.pressure_tolerance": _r("(0, 0.5)"),
    "compact.hold_checks": INT1, "compact.record_every_steps": INT1,
    "compact.max_steps": INT1, "compact.inertial_number_max": _r(FRAC01),
    "compact.quasi_static_pressure_fraction": _r("[0, 1)"), "compact.relax_damping_per_s": _r(NONNEG),
    "compact.relax_ke_ratio": _r(FRAC01), "compact.relax_max_steps": INT1,
    "compact.max_overlap_ratio": _r("(0, 0.5]"), "compact.max_total_overlap_ratio": _r("[0.1, 2]"),
    "compact.max_overlap_volume_fraction": _r(FRAC01), "compact.fit_pressure_fraction": _r("[0, 1)"),
    "calender.roll_radius_m": _r(POS), "calender.gap_um": _r(POS, lists=True),
    "calender.gap_fraction": _r("(0, 1]"), "calender.target_line_load_N_per_mm": _r(POS),
    "calender.target_porosity": _r(FRAC01), "calender.passes": INT1, "calender.roll_temperature_K": _r(POS),
    "calender.surface_speed_ratio": _r(NONNEG), "calender.line_speed_m_per_s": _r(POS),
    "calender.target_inertial_number": _r("(0, 1e-3]"), "calender.design_pressure_Pa": _r(POS),
    "calender.max_inertial_number": _r(FRAC01), "calender.gravity_m_per_s2": _r(NONNEG),
    "calender.samples_per_nip": _r("[10, inf)", integer=True),
    "calender.relax_ke_ratio": _r(FRAC01), "calender.relax_damping_ratio": _r(POS),
    "calender.max_relax_steps": INT1, "calender.max_arc_fraction": _r("(0, 0.5)"),
    "calender.search_passes": _r("[2, inf)", integer=True), "calender.search_tolerance": _r(FRAC01),
    "calender.max_overlap_ratio": _r("(0, 0.5)"), "calender.max_total_overlap_ratio": _r("[0.25, 2]"),
    "calender.max_steps_per_pass": INT1,
    "shear.shear_rate_per_s": _r("(-inf, inf)", nonzero=True), "shear.strain": _r(POS),
    "shear.samples": INT1, "shear.industrial_shear_rate_per_s": _r(POS),
    "shear.max_image_overlap_ratio": _r(NONNEG), "shear.pressure_MPa": _r(POS),
    "shear.barostat_gain": _r("[0, 1]"),
    "dry_mix.start_solid_fraction": _r("[0.3, 0.64]"), "dry_mix.pressure_MPa": _r(POS),
    "dry_mix.shear_rate_per_s": _r(POS), "dry_mix.strain": _r(POS), "dry_mix.temperature_K": _r(POS),
    "dry_mix.samples": INT1, "dry_mix.agent_interval_steps": INT1, "dry_mix.barostat_gain": _r("[0, 1]"),
    "dry_mix.growth_per_stage": _r("(1, 1.05]"), "dry_mix.growth_stage_steps": INT1,
    "dry_mix.industrial_shear_rate_per_s": _r(POS), "dry_mix.max_overlap_ratio": _r("(0, 0.5]"),
    "dry_mix.max_total_overlap_ratio": _r("[0.5, 3]"),
    "dry_mix.fibrils.threshold_strain": _r(POS), "dry_mix.fibrils.min_bead_radius_ratio": _r("(0, 1)"),
    "dry_mix.fibrils.anchor_pressure_fraction": _r(POS), "dry_mix.fibrils.smear_overlap_ratio": _r(POS),
    "analysis.gap_tolerance_rel": _r("[0, 1)"), "analysis.min_contact_radius_rel": _r("(0, 1]"),
    "analysis.top_layer_thickness_um": _r(NONNEG), "analysis.voxels_per_smallest_diameter": _r(POS),
    "analysis.cbd_porosity": _r("[0, 1)"), "analysis.cbd_sigma_e_S_per_m": _r("(0, 1e8)"),
    "analysis.cbd_ionic_transport_factor": _r("(0, 1]"),
    "analysis.max_voxels": _r("[1000, inf)", integer=True), "analysis.voxel_flux_rtol": _r("[1e-9, 1)"),
    "analysis.n_profile_bins": INT1, "analysis.top_bottom_fraction": _r("(0, 0.5]"),
    "analysis.c_rate_per_h": _r(POS), "analysis.electrolyte_D0_m2_per_s": _r("(0, 1e-6)"),
    "analysis.electrolyte_C0_mol_per_m3": _r(POS), "analysis.transference_number": _r("[0, 1)"),
}


# ------------------------------------------------------------------------------------ schema keys
TABLES = ("sources", "species_overrides", "yield_pressure_MPa", "softening_K")
"""Mappings that are one key each: the free-text ``sources`` table and the contact group's per-species
tables (their keys are species names, e.g. ``yield_pressure_MPa: {pvdf: 30}``, not schema keys)."""


def _leaves(d: dict[str, Any], prefix: str) -> Iterator[str]:
    """Dotted leaf keys of a YAML mapping (a non-empty mapping is descended into, except the `TABLES`;
    an empty one such as ``settle.contact: {}`` is a leaf)."""
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and v and k not in TABLES:
            yield from _leaves(v, key)
        else:
            yield key


def _numeric_annotation(ann: Any) -> bool:
    return any(t.strip() in ("float", "int") for t in str(ann).replace("|", ",").split(","))


def schema_keys() -> tuple[set[str], set[str]]:
    """(all keys, numeric keys) of the shipped configs and the parameter dataclasses, with ``*`` for
    the material name, the component slot and the bond kind.

    Shared groups: ``contact.<key>`` / ``shortcuts.<key>`` from their config files and dataclasses
    (`ContactParams`, `ShortcutParams`), ``bonds.*.<key>`` from configs/bonds and `BondLaw` (``where``,
    the error-naming field the code sets, is no config key). A step's override mapping (``settle.contact``,
    ``calender.shortcuts``, ...) is a key itself (it must be a mapping), and takes every key of its shared
    group: those are enumerated as ``<step>.contact.<key>`` from the shared dataclass's fields, whatever
    the step's config file happens to override (``compact.contact.friction`` is in compact/default.yaml,
    ``settle.contact.friction`` is not, both are keys); their refusal cases are `OVERRIDE_INVALID`."""
    keys: set[str] = set()
    numeric: set[str] = set()

    def add(key: str, value: Any = None) -> None:
        keys.add(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            numeric.add(key)

    def add_yaml(d: dict[str, Any], prefix: str) -> None:
        for key in _leaves(d, prefix):
            value: Any = d
            for part in key.split(".")[len(prefix.split(".")) if prefix else 0:]:
                value = value.get(part) if isinstance(value, dict) else None
            key = re.sub(r"^formulation\.components\.[^.]+\.", "formulation.components.*.", key)
            add(re.sub(r"^bonds\.[^.]+\.", "bonds.*.", key), value)

    def add_fields(cls: type, prefix: str) -> None:
        for fld in dataclasses.fields(cls):
            if fld.name == "where":  # set by the code (the dotted name in errors), not a config key
                continue
            keys.add(f"{prefix}.{fld.name}")
            if _numeric_annotation(fld.type):
                numeric.add(f"{prefix}.{fld.name}")

    for group, cls in [*GROUP_CLASSES.items(), *SHARED.items(), ("bonds", BondLaw)]:
        for f in sorted((CONFIGS / group).glob("*.yaml")):
            add_yaml(yaml.safe_load(f.read_text()) or {}, group)
        add_fields(cls, "bonds.*" if group == "bonds" else group)
        for fld in dataclasses.fields(cls):
            if group in GROUP_CLASSES and fld.name in SHARED:  # a step's overrides: the shared keys
                add_fields(SHARED[fld.name], f"{group}.{fld.name}")
    main = yaml.safe_load((CONFIGS / "config.yaml").read_text())
    for k, v in main.items():
        if k in ("defaults", "hydra"):
            continue
        if isinstance(v, dict):
            add_yaml(v, k)
        else:
            add(k, v)
    keys.update(f"rve.{k}" for k in RVE_KEYS)
    keys.update(f"output.{k}" for k in schema.OUTPUT_KEYS)
    for f in sorted((CONFIGS / "route").glob("*.yaml")):
        add_yaml(yaml.safe_load(f.read_text()), "route")
    for f in sorted((CONFIGS / "formulation").glob("*.yaml")):
        add_yaml(yaml.safe_load(f.read_text()), "formulation")
    keys.update(f"formulation.{k}" for k in FORMULATION_KEYS if k not in ("components", "targets"))
    keys.update(f"formulation.components.*.{k}" for k in COMPONENT_KEYS)
    keys.update(f"formulation.targets.{k}" for k in TARGET_KEYS)
    for f in sorted((CONFIGS / "material").glob("*.yaml")):
        add_yaml(yaml.safe_load(f.read_text()), "material.*")
    keys.update(f"material.*.{f.name}" for f in dataclasses.fields(Material)
                if f.name not in ("psd", "extra"))  # psd: its keys; extra: the unknown keys themselves
    keys.update(f"material.*.psd.{k}" for k in PSD_KEYS)
    numeric.update(f"material.*.psd.{k}" for k in ("d10_um", "d90_um", "d_min_um", "d_max_um"))
    numeric.update(f"rve.{k}" for k in ("mass_loading_mg_cm2", "areal_capacity_mAh_cm2", "porosity"))
    numeric.update(("formulation.targets.porosity", "formulation.targets.areal_capacity_mAh_cm2"))
    keys.add("resume_from")
    return keys, numeric


# ------------------------------------------------------------------------------------ helpers
@pytest.fixture(scope="module")
def hydra_compose() -> Iterator[Any]:
    """``compose(overrides)`` of the shipped configs, one Hydra initialisation for the module."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIGS), version_base=None):
        yield lambda overrides=(): compose(config_name="config", overrides=list(overrides))
    GlobalHydra.instance().clear()


@pytest.fixture(scope="module")
def base(hydra_compose) -> dict[str, Any]:
    """The default configuration on the placement-only route, as a plain dict: a route that reads
    none of settle, compact, calender, shear or engine, so their refusals show every group is
    validated on every run."""
    c = OmegaConf.to_container(hydra_compose(["route=place"]), resolve=True)
    assert isinstance(c, dict) and c["route"]["steps"] == ["place", "analyse"]
    return c


def concrete(key: str) -> str:
    """A pattern key with ``*`` replaced by the material / slot the tests use."""
    return key.replace("material.*.", f"material.{MATERIAL}.").replace(
        "formulation.components.*.", f"formulation.components.{SLOT}.").replace("bonds.*.", f"bonds.{BOND}.")


def patched(base: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """A deep copy of ``base`` with ``key`` (and its `CONTEXT`) set to ``value``."""
    c = copy.deepcopy(base)
    for k, v in [*CONTEXT.get(key, {}).items(), (key, value)]:
        *parents, last = concrete(k).split(".")
        node = c
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = v
    return c


def assert_refused(c: dict[str, Any], key: str, value: Any = None) -> ConfigError:
    """`validate(c)` raises a one-line `ConfigError` whose message starts with ``key``."""
    with pytest.raises(ConfigError) as e:
        validate(c)
    msg = str(e.value)
    k = concrete(key)
    assert msg.startswith((f"{k}=", f"{k}.")), f"{key}={value!r}: refused under another key: {msg}"
    assert "\n" not in msg and "is invalid: " in msg, msg
    return e.value


# ------------------------------------------------------------------------------------ tests
def test_every_key_has_a_refusal_case():
    """A key of the shipped configs or of a parameter dataclass without a refusal case (or a stated
    reason to accept anything) fails here; so does a table entry for a key that no longer exists."""
    keys, numeric = schema_keys()
    assert len(keys) > 150  # the enumeration found the groups
    missing = sorted(keys - INVALID.keys() - ACCEPTS_ANYTHING.keys())
    assert not missing, f"keys without a refusal case in INVALID (or a reason in ACCEPTS_ANYTHING): {missing}"
    stale = sorted((INVALID.keys() | ACCEPTS_ANYTHING.keys()) - keys)
    assert not stale, f"table entries for keys that do not exist: {stale}"
    assert not INVALID.keys() & ACCEPTS_ANYTHING.keys()
    no_range = sorted(numeric - RANGES.keys() - ACCEPTS_ANYTHING.keys())
    assert not no_range, f"numeric keys without an allowed range in RANGES (hypothesis test): {no_range}"
    assert not RANGES.keys() - numeric, sorted(RANGES.keys() - numeric)


def test_the_base_config_and_every_accept_anything_key_validate(base):
    validate(base)
    for key in ACCEPTS_ANYTHING:
        validate(patched(base, key, 12345))  # a number where text is usual: still fine


@pytest.mark.parametrize("key", sorted(INVALID))
def test_each_key_refuses_its_invalid_value_by_name(base, key):
    assert_refused(patched(base, key, INVALID[key]), key, INVALID[key])


@pytest.mark.parametrize("override", ["engine.arch=tpu", "engine.precision=f16",
                                      "material.nmc811.youngs_modulus_GPa=inf"])
def test_issue_cases_are_refused_on_a_route_that_does_not_use_them(hydra_compose, override):
    """The reported cases, through Hydra as a user types them, with ``route=place`` (no engine)."""
    with pytest.raises(ConfigError) as e:
        validate(hydra_compose(["route=place", override]))
    key, value = override.split("=")
    assert str(e.value).startswith(f"{key}=") and value in str(e.value), str(e.value)


@pytest.mark.parametrize(("key", "typo", "suggestion"), [
    ("", "sed", "did you mean seed?"),
    ("", "formulaton", "did you mean formulation?"),
    ("settle.contact", "frction", "did you mean settle.contact.friction?"),
    ("contact", "fricton", "did you mean contact.friction?"),
    ("shortcuts", "rayleigh_fracton", "did you mean shortcuts.rayleigh_fraction?"),
    ("calender.shortcuts", "rayleigh_fracton", "did you mean calender.shortcuts.rayleigh_fraction?"),
    (f"bonds.{BOND}", "youngs_modulus", f"did you mean bonds.{BOND}.youngs_modulus_MPa?"),
    ("engine", "arhc", "did you mean engine.arch?"),
    ("compact", "target_porosty", "did you mean compact.target_porosity?"),
    ("calender.contact", "yield_pressure_from_libary",
     "did you mean calender.contact.yield_pressure_from_library?"),
    ("analysis", "directons", "did you mean analysis.directions?"),
    ("place", "packing_fration", "did you mean place.packing_fraction?"),
    ("shear", "stain", "did you mean shear.strain?"),
    ("rve", "thickness", "did you mean rve.thickness_um?"),
    ("output", "vtk", "did you mean output.vtu?"),
    ("route", "step", "did you mean route.steps?"),
    (f"material.{MATERIAL}.psd", "d50", "did you mean material.nmc811.psd.d50_um?"),
    ("formulation.targets", "porosty", "did you mean formulation.targets.porosity?"),
    (f"formulation.components.{SLOT}", "wt_pc", "did you mean formulation.components.am.wt_pct?"),
    (f"contact.species_overrides.{MATERIAL}", "frction", "did you mean "
                                                        "contact.species_overrides.nmc811.friction?"),
    (f"shear.contact.species_overrides.{MATERIAL}", "restitusion", "did you mean "
                                                                 "shear.contact.species_overrides.nmc811.restitution?"),
])
def test_unknown_keys_are_refused_with_the_nearest_name(base, key, typo, suggestion):
    c = copy.deepcopy(base)
    node = c
    for p in key.split(".") if key else ():
        node = node.setdefault(p, {})
    node[typo] = 1
    e = assert_refused(c, f"{key}.{typo}" if key else typo)
    assert suggestion in str(e) and "known: [" in str(e), str(e)


MOVED = {
    "settle": "friction restitution rolling_friction rolling_model species_overrides gravity_scale "
              "modulus_scale modulus_cap_Pa fines_radius_um fines_density_scale rayleigh_fraction cohesion "
              "surface_energy_scale current_collector",
    "compact": "contact_normal yield_pressure_MPa yield_pressure_MPa_by_species friction restitution "
               "rolling_friction rolling_model species_overrides modulus_scale modulus_cap_Pa "
               "fines_radius_um fines_density_scale rayleigh_fraction cohesion surface_energy_scale",
    "calender": "normal_model yield_pressure_from_library yield_pressure_Pa softening_K friction "
                "restitution rolling_friction roll_friction modulus_scale modulus_cap_Pa fines_radius_um "
                "fines_density_scale rayleigh_fraction cohesion surface_energy_scale",
    "shear": "friction restitution rolling_friction rolling_model species_overrides modulus_scale "
             "modulus_cap_Pa fines_radius_um fines_density_scale rayleigh_fraction",
}
"""Step keys that moved into the shared ``contact`` / ``shortcuts`` groups: an old config that still sets
one is refused by name, not silently ignored."""


@pytest.mark.parametrize("key", [f"{g}.{k}" for g, ks in MOVED.items() for k in ks.split()])
def test_a_step_key_that_moved_to_a_shared_group_is_refused(base, key):
    e = assert_refused(patched(base, key, 0.5), key)
    # The message says where the key lives now (engine_map.MOVED_KEYS), for every step and for this one.
    step, name = key.split(".")
    where = f"{MOVED_KEYS[name]} (every step), or {step}.{MOVED_KEYS[name]}"
    assert f"moved to the shared group: {where}" in str(e), str(e)


@pytest.mark.parametrize(("key", "value", "named"), [
    # a species that is not a material of the formulation (nmc811, carbon_black_c65, pvdf)
    ("calender.contact.yield_pressure_MPa", {"graphite": 100.0},
     "calender.contact.yield_pressure_MPa.graphite"),
    ("compact.contact.species_overrides", {"graphite": {"friction": 0.1}},
     "compact.contact.species_overrides.graphite"),
    ("settle.contact.softening_K", {"graphite": [300.0, 400.0]}, "settle.contact.softening_K.graphite"),
    ("shear.contact.species_overrides", {"graphite": {"friction": 0.1}},
     "shear.contact.species_overrides.graphite"),
    # a plastic bond needs a yield stress (and a breaking strain, below)
    (f"bonds.{BOND}.failure", "plastic", f"bonds.{BOND}.yield_stress_MPa"),
])
def test_cross_key_rules_of_the_shared_groups(base, key, value, named):
    assert_refused(patched(base, key, value), named, value)


def test_a_plastic_bond_needs_a_breaking_strain(base):
    c = patched(patched(base, f"bonds.{BOND}.failure", "plastic"), f"bonds.{BOND}.yield_stress_MPa", 10.0)
    assert_refused(c, f"bonds.{BOND}.breaking_strain")
    validate(patched(c, f"bonds.{BOND}.breaking_strain", 0.5))


@pytest.mark.parametrize(("table", "value"), [("species_overrides", {"graphite": {"friction": 0.1}}),
                                              ("yield_pressure_MPa", {"graphite": 100.0})])
def test_an_unknown_species_in_the_shared_contact_group_is_refused_under_its_own_name(base, table, value):
    assert_refused(patched(base, f"contact.{table}", value), f"contact.{table}.graphite", value)


def test_an_unknown_top_level_key_without_a_near_name_lists_the_known_ones(hydra_compose):
    with pytest.raises(ConfigError) as e:
        validate(hydra_compose(["+foo=1"]))
    msg = str(e.value)
    assert msg.startswith("foo=1 is invalid: a known top-level key: known: [") and "'seed'" in msg, msg


# --------------------------------------------------------------------- random invalid values
def _invalid(r: Range) -> st.SearchStrategy[Any]:
    """Values a key with range ``r`` must refuse."""
    outside = st.one_of(
        st.floats(allow_nan=False, allow_infinity=False),
        st.integers(min_value=-10**6, max_value=10**6),
    ).filter(lambda v: not r.contains(v))
    bad = [
        outside,
        st.sampled_from([NAN, INF, -INF]),
        st.booleans(),  # YAML true is 1 to Python
        st.text(max_size=6).filter(lambda s: s not in r.text),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    ]
    # A list of numbers is a list (refused), unless a key takes one per pass: then an invalid member.
    bad.append(st.lists(outside, min_size=1, max_size=2) if r.lists
               else st.lists(st.floats(allow_nan=False), max_size=2))
    if r.integer:
        bad.append(st.floats(allow_nan=False, allow_infinity=False).filter(lambda v: not v.is_integer()))
        bad.append(st.floats(min_value=1.0, max_value=1e6).map(math.floor).map(float))  # 3.0 is no int
    return st.one_of(bad)


@pytest.mark.parametrize("key", sorted(RANGES))
@settings(max_examples=3, deadline=None, database=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(data=st.data())
def test_random_invalid_numbers_are_refused_by_name(base, key, data):
    value = data.draw(_invalid(RANGES[key]), label=key)
    assert_refused(patched(base, key, value), key, value)


# --------------------------------------------------------------------- resume_from and run dirs
def _snapshot(path: Path, completed: list[str] | None) -> Path:
    sp = (Species(MATERIAL, "AM", 4750.0, 2e11, 0.25),)
    micro = Microstructure(np.array([[1e-5, 1e-5, 5e-6]]), np.array([5e-6]), np.zeros(1), sp, [3e-5] * 3,
                           metadata={} if completed is None else {"completed_stages": completed})
    return micro.save(path)


@pytest.mark.parametrize(("make", "reason"), [
    (lambda p: None, "no such file"),
    (lambda p: p.write_text("not a snapshot\n"), "not a NumPy .npz archive"),
    (lambda p: p.write_bytes(_snapshot(p.with_name("ok.npz"), ["place"]).read_bytes()[:300]),
     "truncated or corrupt .npz archive"),
    (lambda p: p.write_bytes(b""), "empty file"),
    (lambda p: np.savez(p, positions_m=np.zeros((1, 3))), "not an electrodem snapshot"),
    (lambda p: _snapshot(p, None), "records no completed stages"),
    (lambda p: _snapshot(p, ["place", "settle"]), "completed stages begin route.steps"),
])
def test_a_bad_checkpoint_is_refused_naming_the_file(base, tmp_path, make, reason):
    ck = tmp_path / "checkpoint.npz"
    make(ck)
    e = assert_refused(patched(base, "resume_from", str(ck)), "resume_from")
    assert str(ck) in str(e) and reason in str(e), str(e)


def test_a_good_checkpoint_is_read_by_validate(base, tmp_path):
    ck = _snapshot(tmp_path / "checkpoint.npz", ["place"])
    rc = validate(patched(base, "resume_from", str(ck)))
    assert rc.resume is not None and rc.resume.metadata["completed_stages"] == ["place"]


def test_hydra_files_alone_do_not_make_an_interrupted_run(tmp_path):
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text("seed: 0\n")
    (run / "electrodem.log").write_text("")
    (run / "resolved_config.yaml").write_text("seed: 0\n")  # written just before a run computes
    (run / "snapshots").mkdir()  # empty: nothing computed
    assert runner.check_run_dir(run, None) is False
    assert runner.check_run_dir(tmp_path / "new", None) is False


@pytest.mark.parametrize("leftover", ["checkpoint.npz", "snapshots/00_place.npz", "engine_checkpoint.npz",
                                      "microstructure.npz"])
def test_an_interrupted_run_is_not_overwritten(tmp_path, leftover):
    run = tmp_path / "run"
    (run / leftover).parent.mkdir(parents=True, exist_ok=True)
    (run / leftover).write_bytes(b"x")
    with pytest.raises(ConfigError) as e:
        runner.check_run_dir(run, None)
    msg = str(e.value)
    assert msg.startswith(f"hydra.run.dir={str(run)!r}") and "\n" not in msg
    assert f"resume_from={run / 'checkpoint.npz'}" in msg and "another hydra.run.dir" in msg, msg
    with pytest.raises(ConfigError):  # a resume from elsewhere still does not overwrite it
        runner.check_run_dir(run, str(tmp_path / "other" / "checkpoint.npz"))
    assert runner.check_run_dir(run, str(run / "checkpoint.npz")) is True  # resumed in place
    (run / "metrics.json").write_text("{}")
    with pytest.raises(ConfigError, match="already holds a finished run"):
        runner.check_run_dir(run, str(run / "checkpoint.npz"))


def test_an_interrupted_run_resumes_in_place(hydra_compose, tmp_path):
    """route=place (a second, no engine): the run, interrupted before metrics.json, is refused without
    resume_from and completes in place with it; the stages it had are kept, not redone."""
    run = tmp_path / "run"
    smoke = ["+experiment=smoke", "route=place"]
    first = runner.run(hydra_compose(smoke), run)
    (run / "metrics.json").unlink()  # as if killed while writing the metrics
    with pytest.raises(ConfigError, match="interrupted run"):
        runner.run(hydra_compose(smoke), run)
    again = runner.run(hydra_compose([*smoke, f"resume_from={run / 'checkpoint.npz'}"]), run)
    assert "place" not in again["timings_s"]  # placement was not redone
    assert again["composition"]["n_particles"] == first["composition"]["n_particles"]
    from electrodem.io.vtk import read_pvd

    assert [p.name for _, p in read_pvd(run / "particles.pvd")] == ["00_place.vtu"]


def test_a_missing_backend_is_refused_before_anything_is_written(hydra_compose, tmp_path, monkeypatch):
    monkeypatch.setattr(arch, "probe_backend", lambda a: "no CUDA device found (taichi fell back to x64)")
    run = tmp_path / "run"
    with pytest.raises(ConfigError) as e:
        runner.run(hydra_compose(["+experiment=smoke", "engine=gpu"]), run)
    assert str(e.value).startswith("engine.arch='gpu' is invalid: ") and "no CUDA device" in str(e.value)
    assert not run.exists()


# --------------------------------------------------------------------- backend probe
@pytest.mark.parametrize(("returncode", "stdout", "stderr", "expect"), [
    (0, "[Taichi] version\nELECTRODEM_PROBE_ARCH=cuda\n", "", None),
    (0, "ELECTRODEM_PROBE_ARCH=x64\n", "", "no GPU (CUDA, Vulkan, Metal or OpenGL) device found (taichi fell "
                                              "back to the CPU, x64)"),
    (-11, "", "[W] libcuda.so lib not found.\n", "taichi's init crashed (probe child exited with -11, "
                                                 "SIGSEGV); last message: [W] libcuda.so lib not found."),
    (1, "", "Traceback\nRuntimeError: no device\n", "the probe child exited with 1; last message: "
                                                    "RuntimeError: no device"),
    ("timeout", "", "", "did not finish within"),
])
def test_the_probe_reads_its_child(monkeypatch, returncode, stdout, stderr, expect):
    def fake_run(cmd, **kw):
        assert cmd[-1] == "gpu" and kw["timeout"] > 0
        if returncode == "timeout":
            raise subprocess.TimeoutExpired(cmd, kw["timeout"])
        return subprocess.CompletedProcess(cmd, returncode, stdout, stderr)

    arch.probe_backend.cache_clear()
    monkeypatch.setattr(arch.subprocess, "run", fake_run)
    try:
        got = arch.probe_backend("gpu")
    finally:
        arch.probe_backend.cache_clear()
    if expect is None:
        assert got is None
    else:
        assert got is not None and expect in got and "\n" not in got, got


def test_the_cpu_needs_no_probe(monkeypatch):
    monkeypatch.setattr(arch.subprocess, "run", lambda *a, **k: pytest.fail("probed the CPU"))
    assert arch.probe_backend("cpu") is None
