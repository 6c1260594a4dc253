"""The place -> settle -> calender -> analyse route end to end (subprocess, as a user runs it): the
calendering CSVs, plot and metrics block exist and agree with each other and with the porosity
definition; bad calender values fail with exit 2, the key named, before any compute."""

from __future__ import annotations

import csv
import json

import pytest
from cli_run import electrodem


@pytest.mark.parametrize(("override", "key", "allowed"), [
    ("calender.control=speed", "calender.control", "target_porosity"),
    ("calender.control=gap calender.gap_um=-5", "calender.gap_um", "a gap > 0"),
    ("calender.gap_fraction=1.5", "calender.gap_fraction", "(0, 1]"),
    ("+calender.contact.yield_pressure_MPa.graphite=100", "calender.contact.yield_pressure_MPa.graphite",
     "nmc811"),
])
def test_bad_calender_value_fails_before_compute(tmp_path, override, key, allowed):
    run = tmp_path / "bad"
    p = electrodem("+experiment=smoke_calender", *override.split(), f"hydra.run.dir={run}", check=False)
    assert p.returncode == 2, p.stderr
    assert key in p.stderr and allowed in p.stderr, p.stderr
    assert not (run / "snapshots").exists()


@pytest.mark.slow
@pytest.mark.chaotic
def test_place_settle_calender_route_writes_the_calendering_outputs(tmp_path, chaos, smoke_bed):
    run = tmp_path / "run"
    # place -> settle ran once for this chaos case (the shared smoke bed); the route resumes after them.
    bed = smoke_bed(chaos) / "snapshots" / "01_settle.npz"
    electrodem("+experiment=smoke_calender", *chaos.overrides(), f"resume_from={bed}", f"hydra.run.dir={run}",
               in_process=True)
    outputs = ("calendering_passes.csv", "calendering_curve.csv", "calendering_pressure_porosity.png",
               "metrics.json", "snapshots/02_calender.npz")
    for f in outputs:
        assert (run / f).is_file(), f
    m = json.loads((run / "metrics.json").read_text())
    block = m["calendering"]
    # The nip carried a load and left the layer thinner than it came in. (Not "final above loaded":
    # on this fast strip the gauge at the minimum gap is the tool height over one spot, while the
    # tallest particles elsewhere were flattened below it: seeds 0 and 0-perturbed end 0.1 um lower.)
    assert block["max_line_load_N_per_mm"] > 0 and block["max_pressure_MPa"] > 0
    assert block["final_thickness_um"] < block["initial_thickness_um"]
    assert block["passes"] == 1 and block["geometry"] == "nip"
    assert m["run"]["calendering_state"] == "roll-calendered"
    assert "calender" in m["shortcuts"]
    with (run / "calendering_passes.csv").open() as f:
        passes = list(csv.DictReader(f))
    assert len(passes) == 1
    assert float(passes[0]["porosity"]) == pytest.approx(block["final_porosity"])
    # control gap_fraction: the gap is 95 % of the incoming gauge thickness.
    row0 = m["steps"]["calender"]["passes"][0]
    gap_um = float(passes[0]["gap_um"])
    assert gap_um == pytest.approx(0.95 * row0["thickness_before_um"], rel=1e-9)
    # The smoke run keeps a margin to both overlap guards it could trip: the largest overlaps sampled
    # over the pass stay below 3/4 of each guard. Over seeds 0-5 the largest seen were 0.48 of the 1.0
    # whole-overlap guard and 0.17 of the 0.45 elastic one; with a fixed 15-16 um gap the tallest
    # particle's push-in varied with the seed and the whole overlap reached the guard on some seeds.
    prm = m["steps"]["calender"]["params"]
    assert row0["max_overlap_ratio_in_pass"] < 0.75 * prm["max_total_overlap_ratio"]
    assert row0["max_elastic_overlap_ratio_in_pass"] < 0.75 * prm["max_overlap_ratio"]
    assert row0["max_overlap_ratio_in_pass"] >= row0["max_overlap_ratio_at_min_gap"]
    with (run / "calendering_curve.csv").open() as f:
        curve = list(csv.DictReader(f))
    assert len(curve) > 10 and {r["pass"] for r in curve} == {"1"}
    p_max = max(float(r["pressure_Pa"]) for r in curve)
    assert p_max > 0 and p_max * 1e-6 == pytest.approx(block["max_pressure_MPa"])
    # The nip wall came down to the gap: its lowest point in the curve is the gap.
    assert min(float(r["tool_z_m"]) for r in curve) == pytest.approx(gap_um * 1e-6, rel=1e-3)
    # The roll pressed the layer's tallest particles down: denser at the minimum gap and after the pass.
    row = m["steps"]["calender"]["passes"][0]
    assert row["porosity_at_min_gap"] < row["porosity_before"]
    assert block["final_porosity"] < row["porosity_before"]
    # Under the roll the slab between collector and nip holds all the solid: its porosity stays
    # positive even at the minimum gap (else the gap was below the dense thickness and the spheres
    # overlap by more than the solid volume: a broken guard, not calendering).
    assert min(float(r["porosity_under_roll"]) for r in curve) > 0
    # Final porosity and density follow from the same thickness and the snapshot's solid mass/volume.
    comp = m["composition"]
    area_cm2 = (30e-4) ** 2
    h_cm = block["final_thickness_um"] * 1e-4
    mass_g = comp["mass_loading_mg_cm2"] * 1e-3 * area_cm2
    assert block["final_density_g_cm3"] == pytest.approx(mass_g / (area_cm2 * h_cm), rel=1e-6)
