"""The Hydra app end to end, run as a user runs it (subprocess): outputs, errors, resume, sweeps."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from cli_run import electrodem

from electrodem.io.snapshot import Microstructure
from electrodem.io.vtk import read_pvd, read_vtu

SMOKE = ["+experiment=smoke", "route=place"]


def test_run_writes_the_documented_outputs(tmp_path):
    run = tmp_path / "run"
    p = electrodem(*SMOKE, f"hydra.run.dir={run}")
    assert f"outputs: {run}" in p.stdout and "porosity" in p.stdout
    for f in ("resolved_config.yaml", "metrics.json", "microstructure.npz", "checkpoint.npz",
              "particles.vtu", "particles.pvd", "snapshots/00_place.npz", ".hydra/config.yaml"):
        assert (run / f).is_file(), f
    m = json.loads((run / "metrics.json").read_text())
    comp = m["composition"]
    for key in ("thickness_um", "porosity", "density_g_cm3", "mass_loading_mg_cm2", "areal_capacity_mAh_cm2",
                "phases", "n_particles"):
        assert key in comp
    for ph in comp["phases"].values():
        for key in ("wt_pct", "vol_pct_of_solid", "count", "psd_volume_basis_um"):
            assert key in ph
    assert sum(ph["wt_pct"] for ph in comp["phases"].values()) == pytest.approx(100.0)
    # The saved snapshot is what the metrics describe and VTU holds the same particles.
    micro = Microstructure.load(run / "microstructure.npz")
    assert micro.n == comp["n_particles"] == read_vtu(run / "particles.vtu").points.shape[0]
    assert [t for t, _ in read_pvd(run / "particles.pvd")] == [0.0]
    assert m["timings_s"]["place"] > 0


def test_bad_value_fails_before_compute(tmp_path):
    run = tmp_path / "bad"
    p = electrodem(*SMOKE, "formulation.components.am.wt_pct=50", f"hydra.run.dir={run}", check=False)
    assert p.returncode == 2
    assert "formulation.components.*.wt_pct=" in p.stderr and "sum to 100" in p.stderr
    assert not (run / "microstructure.npz").exists()


def test_finished_run_is_not_overwritten_and_resume_works(tmp_path):
    run = tmp_path / "run"
    electrodem(*SMOKE, f"hydra.run.dir={run}")
    p = electrodem(*SMOKE, f"hydra.run.dir={run}", check=False)
    assert p.returncode != 0 and "already holds a finished run" in p.stderr
    run2 = tmp_path / "resumed"
    electrodem(*SMOKE, f"resume_from={run / 'checkpoint.npz'}", f"hydra.run.dir={run2}")
    a = Microstructure.load(run / "microstructure.npz")
    b = Microstructure.load(run2 / "microstructure.npz")
    assert (a.positions_m == b.positions_m).all()  # place was not redone


@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_sweep_writes_one_folder_per_job_and_a_summary(tmp_path, launcher):
    sweep = tmp_path / "sweep"
    electrodem("-m", *SMOKE, "seed=0,1", f"hydra/launcher={launcher}", f"hydra.sweep.dir={sweep}",
               *(["hydra.launcher.n_jobs=2"] if launcher == "joblib" else ["hydra.launcher.timeout_min=5"]))
    for job in ("0", "1"):
        assert (sweep / job / "metrics.json").is_file()
    with (sweep / "summary.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["job"] for r in rows] == ["0", "1"]
    assert ["seed=0" in rows[0]["overrides"], "seed=1" in rows[1]["overrides"]] == [True, True]
    assert all(0.0 < float(r["porosity"]) < 1.0 for r in rows)
    assert rows[0]["n_particles"] != "" and rows[0]["porosity"] != rows[1]["porosity"]


def test_a_sweep_survives_a_failing_job_and_the_same_command_redoes_only_the_unfinished(tmp_path):
    """Job 1 of three is refused (a negative box length): the other two finish, summary.csv lists job 1
    as failed with the refusal, and the sweep exits with status 1. Job 2 is then made to look killed
    after its first stage (its metrics.json removed, its checkpoint.npz kept): the same command keeps
    job 0 untouched, resumes job 2 from its checkpoint to the same result, and records job 1's second
    failure."""
    sweep = tmp_path / "sweep"
    args = ("-m", *SMOKE, "rve.box_x_um=30.0,-5.0,31.0", f"hydra.sweep.dir={sweep}")

    def summary() -> list[dict[str, str]]:
        with (sweep / "summary.csv").open() as f:
            return list(csv.DictReader(f))

    first = electrodem(*args, check=False)
    assert first.returncode == 1 and "1 sweep job(s) failed: 1" in first.stderr
    rows = summary()
    assert [(r["job"], r["status"]) for r in rows] == [("0", "finished"), ("1", "failed"), ("2", "finished")]
    error = rows[1]["error"]
    assert "rve.box_x_um" in error and "-5" in error and "exit code 2" in error
    assert rows[1]["porosity"] == "" and 0.0 < float(rows[2]["porosity"]) < 1.0
    kept = (sweep / "0" / "metrics.json").stat().st_mtime_ns
    porosity_2 = json.loads((sweep / "2" / "metrics.json").read_text())["composition"]["porosity"]
    (sweep / "2" / "metrics.json").unlink()
    assert (sweep / "2" / "checkpoint.npz").is_file()

    again = electrodem(*args, check=False)
    assert again.returncode == 1 and "job 0 already finished: kept" in again.stdout
    assert (sweep / "0" / "metrics.json").stat().st_mtime_ns == kept
    assert json.loads((sweep / "2" / "metrics.json").read_text())["composition"]["porosity"] == porosity_2
    assert [r["status"] for r in summary()] == ["finished", "failed", "finished"]
    assert len(json.loads((sweep / "1" / "failures.json").read_text())) == 2


def test_analyse_recomputes_a_saved_run(tmp_path, config_dir):
    run = tmp_path / "run"
    electrodem(*SMOKE, f"hydra.run.dir={run}")
    fast = str(config_dir / "analysis" / "fast.yaml")
    p = electrodem("analyse", str(run), "--params", fast)
    out = json.loads((run / "analysis.json").read_text())
    saved = json.loads((run / "metrics.json").read_text())
    assert out["composition"]["porosity"] == pytest.approx(saved["composition"]["porosity"])
    assert "tortuosity" in out["analysis"] and "percolation" in out["analysis"]
    assert "written:" in p.stdout
    again = electrodem("analyse", str(run), "--params", fast, check=False)
    assert again.returncode == 2 and "exists" in again.stderr  # nothing silently overwritten
    bad = electrodem("analyse", str(tmp_path), check=False)
    assert bad.returncode == 2 and "microstructure.npz" in bad.stderr


@pytest.mark.chaotic
def test_settle_route_settles_the_bed(tmp_path, chaos):
    """The settling route (place -> settle -> analyse) on the smoke RVE: a settled, denser bed whose
    shortcuts are named in metrics.json, and a two-stage ParaView series.

    The C65 bound: with the default JKR adhesion the median C65 height was 0.284, 0.285 and 0.271 of the
    bed top for seeds 0, 1, 2 (mean 0.280, standard deviation 0.008); without cohesion it is 0.01-0.02
    (the fines sift through the NMC skeleton to the collector). 0.2 lies 10 standard deviations below
    the adhesive mean and 10x above the non-cohesive value: it tells the two regimes apart without
    resting on one trajectory (it was 0.25, 2-4 standard deviations from the measured values)."""
    run = tmp_path / "run"
    electrodem("+experiment=smoke", "route=place_settle", *chaos.overrides(), f"hydra.run.dir={run}",
               in_process=True)
    m = json.loads((run / "metrics.json").read_text())
    settle = m["steps"]["settle"]
    assert settle["converged"] is True
    # The (default) JKR adhesion adds its zero-load overlap on top of the gravity-driven 1 % bound.
    adhesive = m["shortcuts"]["settle"].get("adhesive_overlap_ratio_estimate", 0.0)
    assert settle["max_overlap_ratio"] < 0.01 + adhesive
    loose = m["steps"]["place"]["packing_fraction"]
    assert settle["packing_fraction"] > loose + 0.1  # the loose RSA bed (0.30) has compacted
    assert m["shortcuts"], "the settle shortcuts must be named in metrics.json"
    assert [t for t, _ in read_pvd(run / "particles.pvd")][0] == 0.0
    assert len(read_pvd(run / "particles.pvd")) == 2
    assert (run / "snapshots" / "01_settle.npz").is_file()
    # With the default JKR adhesion the fines stick where they land instead of sifting through the NMC
    # skeleton to the collector (without cohesion the median C65 height was ~1-2 % of the bed).
    micro = Microstructure.load(run / "snapshots" / "01_settle.npz")
    cb = [k for k, sp in enumerate(micro.species) if sp.role == "CB"]
    z_cb = micro.positions_m[np.isin(micro.species_id, cb), 2]
    assert np.median(z_cb) > 0.2 * micro.top_m()
