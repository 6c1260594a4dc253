"""The analysis report: configs, validation, every key present and finite, and checks with known answers."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from electrodem.analysis.report import FARADAY_C_PER_MOL, AnalysisParams, analyse, format_table, write_metrics
from electrodem.analysis.resistor import resistor_conductivity
from electrodem.config.errors import ConfigError
from electrodem.io.snapshot import Microstructure, Species

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "analysis"
AM = Species("nmc811", "AM", 4750.0, 2e11, 0.25, sigma_e_S_per_m=1.0, specific_capacity_mAh_per_g=200.0)
CB = Species("c65", "CB", 1900.0, 1e10, 0.3, sigma_e_S_per_m=100.0)
PVDF = Species("pvdf", "binder", 1780.0, 2e9, 0.3)
SE = Species("lpscl", "SE", 1860.0, 2.5e10, 0.3, sigma_i_S_per_m=0.3)


def _fast() -> AnalysisParams:
    return AnalysisParams.from_dict(yaml.safe_load((CONFIGS / "fast.yaml").read_text()))


def _packing(species, counts, radii_um, side_um=24.0, h_um=20.0, seed=0) -> Microstructure:
    """Non-overlapping random packing (overlap removal, x/y periodic, z confined to [0, h])."""
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(seed)
    r = np.concatenate([np.full(c, rad) for c, rad in zip(counts, radii_um, strict=True)])
    sid = np.concatenate([np.full(c, k) for k, c in enumerate(counts)])
    pos = rng.random((len(r), 3)) * [side_um, side_um, h_um]
    for _ in range(300):
        pos[:, 2] = np.clip(pos[:, 2], r, h_um - r)
        pos[:, :2] %= side_um
        p = cKDTree(pos, boxsize=[side_um, side_um, 0.0]).query_pairs(2 * r.max(), output_type="ndarray")
        d = pos[p[:, 1]] - pos[p[:, 0]]
        d[:, :2] -= np.round(d[:, :2] / side_um) * side_um
        dist = np.linalg.norm(d, axis=1)
        ov = r[p[:, 0]] + r[p[:, 1]] - dist
        hit = ov > 1e-4
        if not hit.any():
            break
        u = d[hit] / dist[hit, None] * ov[hit, None] * 0.55
        np.add.at(pos, p[hit, 0], -u)
        np.add.at(pos, p[hit, 1], u)
    pos[:, 2] = np.clip(pos[:, 2], r, h_um - r)
    um = 1e-6
    return Microstructure(pos * um, r * um, sid, species, box_m=np.array([side_um, side_um, h_um + 1]) * um,
                          metadata={"top_z_m": h_um * um})


TOP_KEYS = {"snapshot", "composition", "contacts", "porosity", "profiles", "surface", "percolation",
            "isolated_am", "bonds", "conductivity", "tortuosity", "tortuosity_definition", "rate_capability",
            "timings_s", "warnings", "params"}
POROSITY_KEYS = {"geometric_total", "voxel_total", "voxel_open", "voxel_through_connected", "voxel_dead_end",
                 "voxel_closed", "voxels_per_smallest_diameter_used"}
SURFACE_KEYS = {"specific_surface_m2_per_m3", "exposed_am_surface_m2_per_m2_footprint",
                "exposed_am_surface_fraction", "cb_am_contact_area_m2_per_m2_footprint",
                "cbd_am_contact_area_m2_per_m2_footprint", "cbd_cc_contact_area_m2_per_m2_footprint",
                "am_se_contact_area_m2_per_m2_footprint"}
PROFILE_KEYS = {"z_center_um", "porosity", "vol_fraction_by_role", "vol_fraction_by_species",
                "top_bottom_ratio"}
RATE_KEYS = {"areal_capacity_mAh_cm2", "current_density_A_per_m2", "penetration_depth_um",
             "usable_capacity_ratio"}
TRANSPORT_KEYS = {"volume_fraction", "relative_conductivity", "tortuosity_factor", "macmullin_number",
                  "bruggeman_exponent"}


def _leaves(d, path=""):
    if isinstance(d, dict):
        for k, v in d.items():
            yield from _leaves(v, f"{path}.{k}")
    elif isinstance(d, list):
        for k, v in enumerate(d):
            yield from _leaves(v, f"{path}[{k}]")
    else:
        yield path, d


def test_yaml_configs_mirror_params():
    names = {f.name for f in dataclasses.fields(AnalysisParams)}
    default = yaml.safe_load((CONFIGS / "default.yaml").read_text())
    assert set(default) == names
    assert AnalysisParams.from_dict(default) == AnalysisParams()  # the yaml holds the defaults
    assert set(yaml.safe_load((CONFIGS / "fast.yaml").read_text())) == names
    assert _fast().directions == ("x", "y", "z")  # fast is coarse, but still reports in-plane tau


@pytest.mark.parametrize(
    ("key", "value"),
    [("gap_tolerance_rel", -0.1), ("min_contact_radius_rel", 0.0), ("c_rate_per_h", 0.0),
     ("transference_number", 1.0), ("electrolyte_D0_m2_per_s", float("nan")), ("directions", ["x", "q"]),
     ("directions", "z"), ("bulk_resistance", "cylinder"), ("electrolyte", "gel"), ("max_voxels", 10),
     ("n_profile_bins", 0), ("run_voxel", "yes"), ("top_bottom_fraction", 0.7)],
)
def test_bad_params_name_the_key(key, value):
    with pytest.raises(ConfigError, match=rf"analysis\.{key}"):
        AnalysisParams(**{key: value})


def test_unknown_key_is_refused():
    with pytest.raises(ConfigError, match="analysis.voxel_resolution"):
        AnalysisParams.from_dict({"voxel_resolution": 3})


def test_report_liquid_electrolyte_has_every_key_and_no_nan(tmp_path):
    m = _packing((AM, CB, PVDF), (25, 150, 40), (3.0, 0.8, 0.6))
    p = _fast()
    rep = analyse(m, p)
    assert TOP_KEYS <= set(rep)
    assert POROSITY_KEYS <= set(rep["porosity"])
    assert SURFACE_KEYS <= set(rep["surface"])
    assert PROFILE_KEYS <= set(rep["profiles"])
    assert RATE_KEYS <= set(rep["rate_capability"])
    assert TRANSPORT_KEYS <= set(rep["tortuosity"]["pore"]["z"])
    assert set(rep["conductivity"]["electronic"]) == {"resistor", "voxel"}
    assert "not applicable" in rep["isolated_am"]["ionically_isolated"]
    assert rep["composition"]["areal_capacity_mAh_cm2"] > 0
    for path, v in _leaves(rep):
        assert v is not None, path
        assert not (isinstance(v, float) and math.isnan(v)), path
    json.dumps(rep, allow_nan=False)

    # cross-checks with known answers
    h = m.top_m()
    assert rep["porosity"]["geometric_total"] == pytest.approx(rep["composition"]["porosity"], abs=1e-12)
    assert rep["porosity"]["voxel_total"] == pytest.approx(rep["porosity"]["geometric_total"], abs=0.04)
    prof = rep["profiles"]
    dz = h / p.n_profile_bins
    for role, mask in (("AM", m.role_mask("AM")), ("CB", m.role_mask("CB"))):
        area = m.box_m[0] * m.box_m[1]
        assert sum(prof["vol_fraction_by_role"][role]) * dz * area == pytest.approx(m.volumes_m3[mask].sum())
    rc = rep["rate_capability"]
    assert rc["current_density_A_per_m2"] == pytest.approx(rc["areal_capacity_mAh_cm2"] * 10.0)
    d0c0f = p.electrolyte_D0_m2_per_s * p.electrolyte_C0_mol_per_m3 * FARADAY_C_PER_MOL
    ld = (rc["porosity"] / rc["tortuosity_factor"]) * d0c0f / (
        (1 - p.transference_number) * rc["current_density_A_per_m2"])
    assert rc["penetration_depth_um"] == pytest.approx(ld * 1e6)
    assert rc["usable_capacity_ratio"] == pytest.approx(min(1.0, ld / h))
    assert rc["tortuosity_factor"] == rep["tortuosity"]["pore"]["z"]["tortuosity_factor"]
    depth = None if p.top_layer_thickness_um is None else p.top_layer_thickness_um * 1e-6
    direct = resistor_conductivity(m, "electronic", "z", min_contact_radius_rel=p.min_contact_radius_rel,
                                   top_layer_m=depth)
    assert rep["conductivity"]["electronic"]["resistor"]["z"]["sigma_eff_S_per_m"] == pytest.approx(
        direct.sigma_eff_S_per_m)

    text = format_table(rep)
    assert "through-thickness profile" in text and "penetration depth" in text
    assert len(text.splitlines()) > 50
    out = write_metrics(rep, tmp_path / "metrics.json")
    assert json.loads(out.read_text())["snapshot"]["n_particles"] == m.n


def test_report_solid_state_composite():
    m = _packing((AM, SE, CB), (20, 120, 100), (2.5, 1.2, 0.6), seed=3)
    rep = analyse(m, _fast())
    assert rep["snapshot"]["electrolyte"] == "solid"
    assert isinstance(rep["percolation"]["ionic"], dict)
    iso = rep["isolated_am"]
    for key in ("electronically_isolated", "ionically_isolated", "isolated_both", "inactive"):
        assert 0.0 <= iso[f"{key}_fraction_by_volume"] <= 1.0
    assert iso["inactive_fraction_by_count"] >= max(iso["electronically_isolated_fraction_by_count"],
                                                    iso["ionically_isolated_fraction_by_count"])
    assert rep["surface"]["am_se_contact_area_m2_per_m2_footprint"] > 0
    assert set(rep["tortuosity"]) == {"SE"}
    assert set(rep["conductivity"]["ionic"]) == {"resistor", "voxel"}
    assert rep["rate_capability"]["penetration_depth_um"] == "not applicable"


def test_top_bottom_ratio_and_profile_of_a_stratified_film():
    """CB spheres (r = 0.5 um) fully inside the bottom 2 um (4 of them) and the top 2 um (8) of a
    10 um film: the CB top/bottom ratio is exactly 2; the binder sits only at the top (ratio "inf")."""
    cb_bottom = [[2.0 + 3 * k, 5.0, 1.0] for k in range(4)]
    cb_top = [[1.5 + 2.5 * k, 10.0, 9.0] for k in range(8)]
    binder = [[5.0, 15.0, 9.2]]
    am = [[12.0, 12.0, 5.0]]
    pos = np.array(cb_bottom + cb_top + binder + am) * 1e-6
    rad = np.array([0.5] * 12 + [0.4, 4.0]) * 1e-6
    sid = [1] * 12 + [2, 0]
    m = Microstructure(pos, rad, sid, (AM, CB, PVDF), box_m=[24e-6, 24e-6, 12e-6],
                       metadata={"top_z_m": 10e-6})
    rep = analyse(m, dataclasses.replace(_fast(), run_voxel=False, n_profile_bins=5))
    tb = rep["profiles"]["top_bottom_ratio"]
    assert tb["CB"] == pytest.approx(2.0)
    assert tb["binder"] == "inf"
    assert tb["AM"] == pytest.approx(1.0)  # the AM sphere is symmetric about mid-thickness
    v_cb = 4 / 3 * np.pi * (0.5e-6) ** 3
    slab = 24e-6 * 24e-6 * 2e-6
    np.testing.assert_allclose(rep["profiles"]["vol_fraction_by_role"]["CB"], [4 * v_cb / slab, 0, 0, 0,
                                                                                8 * v_cb / slab])
    # without a voxel solve the rate figure falls back on Bruggeman and says so
    assert "Bruggeman" in rep["rate_capability"]["tortuosity_source"]
    assert "pore" not in rep["tortuosity"]


def test_exposed_am_surface_of_a_known_contact_arrangement():
    """An AM sphere (r = 3) pressed into the CC (centre at z = 2.4) with one CB sphere (r = 1) overlapping
    it on the side: exposed AM area = 4 pi r^2 - CC cap 2 pi r (r - z) - lens cap 2 pi r (r - x1)."""
    r, rc, z = 3.0, 1.0, 2.4
    d = 3.8
    pos = np.array([[10.0, 10.0, z], [10.0 + d, 10.0, z]]) * 1e-6
    m = Microstructure(pos, np.array([r, rc]) * 1e-6, [0, 1], (AM, CB), box_m=[20e-6, 20e-6, 8e-6],
                       metadata={"top_z_m": 6e-6})
    rep = analyse(m, dataclasses.replace(_fast(), run_voxel=False, gap_tolerance_rel=0.0))
    x1 = (d**2 + r**2 - rc**2) / (2 * d)
    exposed = 4 * np.pi * r**2 - 2 * np.pi * r * (r - z) - 2 * np.pi * r * (r - x1)
    area = 20.0 * 20.0
    assert rep["surface"]["exposed_am_surface_m2_per_m2_footprint"] == pytest.approx(exposed / area)
    a_lens2 = r**2 - x1**2
    assert rep["surface"]["cb_am_contact_area_m2_per_m2_footprint"] == pytest.approx(np.pi * a_lens2 / area)
    assert rep["surface"]["cbd_cc_contact_area_m2_per_m2_footprint"] == 0.0


def test_bond_network_section():
    """Two intact fibrils (3 and 5 um) and one broken, PTFE mass known: length per gram is exact."""
    ptfe = Species("ptfe", "binder", 2200.0, 5e8, 0.46)
    pos = np.array([[5, 5, 3], [12, 5, 3], [5, 14, 3], [14, 14, 3]]) * 1e-6
    rad = np.array([2.0, 2.0, 0.5, 2.0]) * 1e-6
    bonds = {"i": np.array([0, 2, 1]), "j": np.array([2, 3, 3]), "length_m": np.array([3e-6, 5e-6, 4e-6]),
             "broken": np.array([False, False, True])}
    m = Microstructure(pos, rad, [0, 0, 1, 0], (AM, ptfe), box_m=[20e-6, 20e-6, 8e-6], bonds=bonds,
                       metadata={"top_z_m": 5e-6})
    rep = analyse(m, dataclasses.replace(_fast(), run_voxel=False))
    b = rep["bonds"]
    assert b["n_intact"] == 2 and b["n_broken"] == 1
    ptfe_g = 2200.0 * 4 / 3 * np.pi * (0.5e-6) ** 3 * 1e3
    assert b["intact_length_m_per_g_binder"] == pytest.approx(8e-6 / ptfe_g)
    assert b["particles_bridged_by_role"] == {"AM": 2, "binder": 1}
    assert b["fraction_am_bridged"] == pytest.approx(2 / 3)
    no_bonds = analyse(m.with_(bonds=None), dataclasses.replace(_fast(), run_voxel=False))
    assert no_bonds["bonds"].startswith("no")
