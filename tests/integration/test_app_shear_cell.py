"""`electrodem +experiment=shear_cell` end to end (subprocess, as a user runs it): the shear block of
metrics.json, the time-series CSV, the μ/I plot and the render; bad shear values fail before compute;
the z-image overlap check of the fully periodic cell."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from cli_run import electrodem

from electrodem.io.snapshot import Microstructure, Species
from electrodem.process.shear_mix import image_overlaps


def _pair(z_top_m: float) -> Microstructure:
    sp = Species("a", "AM", 4750.0, 2e11, 0.25, 1e-3, 0.0, 200.0)
    box = np.array([10e-6, 10e-6, 10e-6])
    pos = np.array([[5e-6, 5e-6, 1e-6], [5e-6, 5e-6, z_top_m]])
    return Microstructure(
        positions_m=pos, radii_m=np.array([1e-6, 1e-6]), species_id=np.array([0, 0]), species=(sp,), box_m=box
    )


def test_z_image_overlap_is_found_across_the_periodic_face():
    # Bottom sphere at z = 1 µm, top one at z = 9.5 µm: through the z face they are 1.5 µm apart,
    # 0.5 µm closer than touching (2 µm): overlap / radius = 0.5. Directly they are 8.5 µm apart.
    ov = image_overlaps(_pair(9.5e-6), _pair(9.5e-6).box_m)
    assert ov.shape == (1,) and ov[0] == pytest.approx(0.5, rel=1e-9)
    assert image_overlaps(_pair(9.0e-6), _pair(9.0e-6).box_m).size == 0  # exactly touching: no overlap


def test_bad_shear_values_fail_before_compute(tmp_path):
    run = tmp_path / "bad"
    p = electrodem("+experiment=shear_cell", "shear.strain=-1", f"hydra.run.dir={run}", check=False)
    assert p.returncode == 2 and "shear.strain" in p.stderr and "> 0" in p.stderr
    assert not (run / "snapshots").exists()
    # The loose bed must be tall enough to be the z period of the cell.
    p = electrodem("+experiment=shear_cell", "rve.thickness_um=3", f"hydra.run.dir={run}", check=False)
    assert p.returncode == 2 and "rve.thickness_um" in p.stderr and "z period" in p.stderr
    assert not (run / "snapshots").exists()


@pytest.mark.slow
@pytest.mark.chaotic
def test_shear_cell_experiment_writes_metrics_csv_plot_and_render(tmp_path, chaos):
    run = tmp_path / "run"
    samples, strain, rate = 10, 0.3, 2.0e4
    electrodem(
        "+experiment=shear_cell",
        f"shear.samples={samples}",
        f"shear.strain={strain}",
        f"shear.shear_rate_per_s={rate}",
        *chaos.overrides(),
        f"hydra.run.dir={run}",
        in_process=True,
    )
    for f in (
        "metrics.json",
        "shear.csv",
        "shear_rheology.png",
        "renders/sheared_particles.png",
        "snapshots/01_shear.npz",
        "particles/01_shear.vtu",
    ):
        assert (run / f).is_file() and (run / f).stat().st_size > 0, f
    m = json.loads((run / "metrics.json").read_text())
    block = m["shear"]
    for key in (
        "friction_coefficient",
        "inertial_number",
        "pressure_Pa",
        "shear_stress_Pa",
        "coordination_number",
        "solid_fraction",
        "cb_am_contacts_per_cb",
    ):
        assert key in block, key
    assert "shear" in m["shortcuts"] and m["shortcuts"]["shear"]["shear_rate_per_s"] == rate
    with (run / "shear.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == samples
    g = np.array([float(r["strain"]) for r in rows])
    t = np.array([float(r["time_s"]) for r in rows])
    dt = m["steps"]["shear"]["dt_s"]
    # Strain is gamma_dot t at each read-out and reaches the requested strain within one time step.
    assert np.allclose(g, rate * t, rtol=1e-9)
    assert g[-1] == pytest.approx(strain, abs=rate * dt)
    # The cell keeps the placed box and particles: its solid fraction is the placement's packing
    # fraction by construction of the loose height (sum of sphere volumes / box volume).
    assert block["solid_fraction"] == pytest.approx(0.30, rel=1e-9)
    micro = Microstructure.load(run / "microstructure.npz")
    assert micro.periodic == (True, True, True)
    assert np.all((micro.positions_m >= 0) & (micro.positions_m < micro.box_m))
    # Steady values are the second-half means of the series.
    half = g >= 0.5 * g[-1]
    mu = np.array([float(r["friction_coefficient"]) for r in rows])
    assert block["friction_coefficient"] == pytest.approx(float(np.nanmean(mu[half])), rel=1e-6)


def test_a_pressure_controlled_shear_cell_compacts_the_placed_gas_and_scales_back(tmp_path):
    """``shear.pressure_MPa``: the barostat grows the particles of the loose placed cell (solid fraction
    0.3) towards the imposed pressure; the output is scaled back (real radii, a smaller box) and says so."""
    run = tmp_path / "run"
    electrodem("+experiment=shear_cell", "shear.pressure_MPa=0.001", "shear.strain=0.3", "shear.samples=3",
               f"hydra.run.dir={run}", in_process=True)
    m = json.loads((run / "metrics.json").read_text())
    block = m["shear"]
    assert block["pressure_controlled"] is True and "barostat" in m["shortcuts"]["shear"]
    assert 0.3 < block["solid_fraction"] < 0.74
    micro = Microstructure.load(run / "microstructure.npz")
    assert np.all(micro.box_m < 20e-6)  # the placed box was 20 x 20 µm
    phi = float(micro.volumes_m3.sum() / np.prod(micro.box_m))
    assert phi == pytest.approx(block["solid_fraction"], rel=1e-9)
    with (run / "shear.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and "solid_fraction" in rows[0] and "length_scale" in rows[0]
    assert float(rows[-1]["length_scale"]) > 1.0
