"""`electrodem +experiment=dry_smoke` end to end, cut to a few hundred steps (a few seconds): the files a
dry mix writes, its metrics blocks and shortcuts, the kneaded snapshot (fully periodic, agent fields,
fibril bonds); and a route that cannot fibrillate is refused before compute."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from cli_run import electrodem

from electrodem.io.snapshot import Microstructure

SMALL = ("material.nmc811.psd.d50_um=5.0", "material.nmc811.psd.d_max_um=6.0", "rve.box_x_um=20",
         "rve.box_y_um=20", "rve.thickness_um=10")


def test_dry_smoke_writes_metrics_history_plot_and_a_kneaded_snapshot(tmp_path):
    run = tmp_path / "run"
    electrodem("+experiment=dry_smoke", *SMALL, "dry_mix.strain=0.03", "dry_mix.samples=3",
               f"hydra.run.dir={run}", in_process=True)
    for f in ("metrics.json", "dry_mix.csv", "dry_mix_fibrils.png", "snapshots/01_dry_mix.npz",
              "particles/01_dry_mix.vtu"):
        assert (run / f).is_file() and (run / f).stat().st_size > 0, f
    m = json.loads((run / "metrics.json").read_text())
    block = m["dry_mix"]
    assert block["strain"] == pytest.approx(0.03, abs=block["shear_rate_per_s"] * block["dt_s"])
    assert 0.55 < block["solid_fraction"] < 0.74  # the packed dough, not the loose powder (0.3)
    keys = ("degree_of_fibrillation", "fibril_count", "length_per_ptfe_mass_m_per_kg", "orientation_tensor",
            "am_in_network_fraction", "smeared_other_fraction", "am_coated_fraction")
    for key in keys:
        assert key in block["fibrils"], key
    sc = m["shortcuts"]["dry_mix"]
    assert sc["shear_rate_speed_up_factor"] == pytest.approx(block["shear_rate_per_s"] / 100.0)
    assert "barostat" in sc and "drawn_bead_density_factor_per_generation" in sc
    with (run / "dry_mix.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and float(rows[-1]["strain"]) == pytest.approx(block["strain"])
    micro = Microstructure.load(run / "microstructure.npz")
    assert micro.periodic == (True, True, True)
    assert np.all(micro.box_m < 20e-6)  # scaled back: real radii in the packed (smaller) box
    ptfe = [k for k, s in enumerate(micro.species) if s.name == "ptfe"]
    beads = np.isin(micro.species_id, ptfe)
    pm = micro.fields["ptfe_mass_kg"]
    assert np.all(pm[beads] > 0) and not np.any(pm[~beads])


def test_a_dry_mix_without_a_fibrillating_binder_is_refused_before_compute(tmp_path):
    run = tmp_path / "bad"
    p = electrodem("+experiment=dry_smoke", "formulation=wet_nmc811_96_2_2", f"hydra.run.dir={run}",
                   check=False)
    assert p.returncode == 2 and "formulation.components" in p.stderr and "fibrillating" in p.stderr
    assert not (run / "snapshots").exists()
