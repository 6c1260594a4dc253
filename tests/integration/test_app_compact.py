"""The place -> settle -> compact -> analyse route end to end (subprocess, as a user runs it): the
compaction CSV, plot and metrics block exist and agree; a bad compact value fails before compute."""

from __future__ import annotations

import csv
import json

import pytest
from cli_run import electrodem


def test_bad_compact_value_fails_before_compute(tmp_path):
    run = tmp_path / "bad"
    p = electrodem("+experiment=smoke_compact", "compact.mode=roll", f"hydra.run.dir={run}", check=False)
    assert p.returncode == 2 and "compact.mode" in p.stderr and "displacement" in p.stderr
    assert not (run / "snapshots").exists()


@pytest.mark.slow
@pytest.mark.chaotic
def test_place_settle_compact_route_writes_the_compaction_outputs(chaos, smoke_bed):
    # The whole +experiment=smoke_compact route, run once for this chaos case (the shared smoke bed).
    run = smoke_bed(chaos)
    outputs = ("compaction.csv", "compaction_pressure_porosity.png", "metrics.json",
               "snapshots/02_compact.npz")
    for f in outputs:
        assert (run / f).is_file(), f
    m = json.loads((run / "metrics.json").read_text())
    block = m["compaction"]
    # Pressed and released: the layer ends thinner than it started and springs back from the loaded
    # state (a plate that never touched, or a bed that fully recovered, fails one of these).
    assert block["loaded_thickness_um"] < block["final_thickness_um"] < block["initial_thickness_um"]
    assert block["final_porosity"] < block["initial_porosity"] and block["spring_back_pct"] > 0
    # The load-bearing part of the curve densifies as the pressure rises (positive Heckel slope) and
    # the largest particle stress at the largest load is not below the plate pressure (a particle in a
    # force chain carries more than the mean).
    assert block["heckel"]["k_per_MPa"] > 0
    assert block["max_particle_stress_MPa"] >= block["max_pressure_MPa"]
    assert m["run"]["calendering_state"] == "plate-compacted"
    assert "compact" in m["shortcuts"]
    with (run / "compaction.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert {r["stage"] for r in rows} == {"load", "unload", "relax"}
    assert max(float(r["pressure_MPa"]) for r in rows) == pytest.approx(block["max_pressure_MPa"])
    # Displacement mode: the plate stopped at the gap of the smoke target porosity (0.45) to within
    # one step of plate travel (mass-based porosity at the plate).
    assert m["steps"]["compact"]["loaded"]["porosity"] == pytest.approx(0.45, abs=2e-3)
    assert float(rows[-1]["porosity"]) == pytest.approx(block["final_porosity"])


@pytest.mark.slow
@pytest.mark.chaotic
def test_a_route_resumed_at_a_step_boundary_ends_as_the_uninterrupted_one(tmp_path, chaos, smoke_bed):
    """Resume after settle (snapshot + its engine state: contact history, walls, time) and run the
    compaction again: metrics.json equals the uninterrupted run's but for timings and paths, because
    the uninterrupted run also goes on from the engine checkpoint it writes at each step boundary
    (`electrodem.process.live.checkpoint_boundary`). Same process, so same thread count and f64."""
    if chaos.perturbation_rel or chaos.seed:
        pytest.skip("the identity of two code paths is not a property of a trajectory: default case only")
    full = smoke_bed(chaos)
    run = tmp_path / "resumed"
    bed = full / "snapshots" / "01_settle.npz"
    assert bed.with_name("01_settle.engine.npz").is_file()
    electrodem("+experiment=smoke_compact", *chaos.overrides(), f"resume_from={bed}", f"hydra.run.dir={run}",
               in_process=True)
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (full, run))
    for m in (a, b):
        m.pop("timings_s")
        m["analysis"].pop("timings_s")
        m["run"].pop("run_dir")
    assert a == b
