"""Materials library, PSD sampling and the wt% -> vol% -> particle-count conversion."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from electrodem.config.errors import ConfigError
from electrodem.materials.formulation import Formulation, RVESpec, make_population, solid_mass_g
from electrodem.materials.psd import PSD, d_values

REQUIRED_MATERIALS = {"nmc811", "nmc622", "lfp", "graphite", "hard_carbon", "carbon_black_c65", "pvdf",
                      "ptfe", "li6ps5cl", "llzo"}


def test_library_has_the_required_materials_with_sources(library):
    assert REQUIRED_MATERIALS <= set(library)
    for m in library.values():
        for key in ("density_g_cm3", "youngs_modulus_GPa", "psd"):
            assert key in m.sources, f"{m.name}: no source for {key}"
    assert library["carbon_black_c65"].coarse_graining, "CB must state its coarse-graining"


def test_config_composes_every_material_file(config_dir):
    listed = (config_dir / "config.yaml").read_text()
    for p in (config_dir / "material").glob("*.yaml"):
        assert f"material@material.{p.stem}: {p.stem}" in listed, f"{p.name} not in config.yaml defaults"


@pytest.mark.parametrize("name", ["wet_nmc811_96_2_2", "wet_nmc811_90_5_5", "commercial_like_nmc811",
                                  "dry_nmc811_96_2_2", "dry_assb_cathode", "se_film_lpscl_ptfe",
                                  "naion_hard_carbon_anode"])
def test_formulation_presets_validate(config_dir, library, name):
    f = Formulation.from_config(yaml.safe_load((config_dir / "formulation" / f"{name}.yaml").read_text()),
                                library)
    assert abs(sum(c.wt_pct for c in f.components) - 100.0) < 0.05
    assert np.isclose(f.volume_fractions().sum(), 1.0)


@pytest.mark.parametrize("basis", ["volume", "number"])
def test_psd_sampling_reproduces_d50(basis):
    """10^4 samples give the requested D50 (on its own basis) within 5 %."""
    psd = PSD(d50_um=10.0, geometric_std=1.4, basis=basis)
    d = psd.sample_um(10_000, np.random.default_rng(1))
    d50 = d_values(d, basis)[1]
    assert d50 == pytest.approx(10.0, rel=0.05)


def test_psd_d10_d90_fit_and_truncation():
    psd = PSD.from_config({"distribution": "d10_d50_d90", "basis": "number", "d10_um": 5.0, "d50_um": 10.0,
                           "d90_um": 20.0}, "x.psd")
    d = psd.sample_um(20_000, np.random.default_rng(2))
    d10, d50, d90 = d_values(d, "number")
    # The lognormal through D10 = 5 and D90 = 20 has its median at sqrt(5 * 20) = 10.
    assert d10 == pytest.approx(5.0, rel=0.05)
    assert d50 == pytest.approx(10.0, rel=0.03)
    assert d90 == pytest.approx(20.0, rel=0.05)
    t = PSD(d50_um=10.0, geometric_std=2.0, basis="number", d_min_um=6.0, d_max_um=12.0)
    s = t.sample_um(5000, np.random.default_rng(3))
    assert s.min() >= 6.0 and s.max() <= 12.0


def test_hatch_choate_volume_to_number_median():
    """A volume-basis D50 maps to the number median d_v exp(-3 s^2)."""
    psd = PSD(d50_um=10.0, geometric_std=1.5, basis="volume")
    assert psd.number_median_um == pytest.approx(10.0 * np.exp(-3 * np.log(1.5) ** 2))


def test_conversion_mass_balance(library, config_dir):
    """wt% are reproduced within one particle's granularity; counts, masses and loading add up."""
    f = Formulation.from_config(
        yaml.safe_load((config_dir / "formulation" / "wet_nmc811_96_2_2.yaml").read_text()), library)
    rve = RVESpec.from_config({"box_x_um": 60, "box_y_um": 60, "thickness_um": 50, "porosity": 0.3})
    pop = make_population(f, rve, seed=3)
    rep = pop.report
    m_req = solid_mass_g(f, rve)
    assert rep["solid_mass_g"] == pytest.approx(m_req, rel=0.03)
    # Each component's volume is within one particle of its target, so every wt% is within the sum
    # over components of one mean particle's mass fraction (the total moves with all of them).
    granularity = 0.0
    for k, c in enumerate(rep["components"].values()):
        sel = pop.species_id == k
        assert c["count"] == int(sel.sum())
        d = pop.diameters_m[sel]
        granularity += np.mean(np.pi / 6 * d**3) * library[c["material"]].density_kg_m3 * 1e3 \
            / rep["solid_mass_g"]
    for slot, c in rep["components"].items():
        assert abs(c["wt_pct_achieved"] - c["wt_pct_requested"]) <= 100 * granularity, slot
    assert granularity < 0.01  # the test box is big enough for the check to mean something
    assert sum(c["mass_g"] for c in rep["components"].values()) == pytest.approx(rep["solid_mass_g"])
    assert rep["n_particles"] == len(pop.diameters_m)


def test_conversion_by_areal_capacity(library, config_dir):
    f = Formulation.from_config(
        yaml.safe_load((config_dir / "formulation" / "wet_nmc811_96_2_2.yaml").read_text()), library)
    rve = RVESpec.from_config({"box_x_um": 80, "box_y_um": 80, "areal_capacity_mAh_cm2": 1.0,
                               "porosity": 0.3})
    rep = make_population(f, rve, seed=0).report
    assert rep["areal_capacity_mAh_cm2"] == pytest.approx(1.0, rel=0.05)
    assert rep["mass_loading_mg_cm2"] == pytest.approx(1.0 / f.specific_capacity_mAh_g() * 1e3, rel=0.05)


def test_impossible_requests_are_rejected(library, config_dir):
    f = Formulation.from_config(
        yaml.safe_load((config_dir / "formulation" / "wet_nmc811_96_2_2.yaml").read_text()), library)
    with pytest.raises(ConfigError, match="rve.max_particles=1000"):
        make_population(f, RVESpec.from_config({"box_x_um": 500, "box_y_um": 500, "thickness_um": 100,
                                                "porosity": 0.3, "max_particles": 1000}), seed=0)
