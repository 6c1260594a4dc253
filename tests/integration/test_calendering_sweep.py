"""`+experiment=calendering_sweep`: the sweep summary's processing and analysis columns (from either a
plate-compaction or a roll-calendering block), the trade-off CSV and plot, and a real 2-point
multirun (basic launcher) on the experiment's small RVE (Thornton–Ning contacts, settled bed)."""

from __future__ import annotations

import csv
import json

import pytest
from cli_run import electrodem

from electrodem.app.sweep import TRADEOFF_COLUMNS, headline_row, write_calendering_tradeoff, write_summary


def _metrics(block: str, eps: float, sigma: float, tau: float, iso: float) -> dict:
    return {
        "composition": {"porosity": eps + 0.01},
        block: {"final_porosity": eps, "spring_back_pct": 3.0, "max_pressure_MPa": 50.0 * (0.5 - eps)},
        "analysis": {
            "conductivity": {"electronic": {"resistor": {a: {"sigma_eff_S_per_m": sigma} for a in "xyz"}}},
            "tortuosity": {"pore": {a: {"tortuosity_factor": tau} for a in "xyz"}},
            "isolated_am": {"inactive_fraction_by_volume": iso},
        },
    }


def test_headline_row_takes_processing_columns_from_compaction_or_calendering():
    row = headline_row(_metrics("compaction", 0.35, 2.0, 1.8, 0.01))
    assert row["processing_step"] == "compaction" and row["porosity_after_processing"] == 0.35
    assert row["sigma_e_eff_y_S_per_m"] == 2.0 and row["tau_pore_x"] == 1.8 and row["spring_back_pct"] == 3.0
    both = {**_metrics("compaction", 0.35, 2.0, 1.8, 0.01), "calendering": {"final_porosity": 0.28}}
    assert headline_row(both)["porosity_after_processing"] == 0.28  # the calender comes last in a route
    assert headline_row({"composition": {}})["porosity_after_processing"] is None


def test_tradeoff_csv_and_plot_from_job_metrics(tmp_path):
    points = [(0.30, 8.0, 2.6, 0.00), (0.45, 1.0, 1.5, 0.05), (0.38, 4.0, 1.9, 0.01)]
    for k, (eps, s, t, iso) in enumerate(points):
        (tmp_path / str(k)).mkdir()
        (tmp_path / str(k) / "metrics.json").write_text(json.dumps(_metrics("calendering", eps, s, t, iso)))
    assert write_summary(tmp_path) is not None
    out = write_calendering_tradeoff(tmp_path)
    assert out == tmp_path / "calendering_tradeoff.csv"
    assert (tmp_path / "calendering_tradeoff.png").stat().st_size > 0
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == TRADEOFF_COLUMNS
    assert [float(r["porosity_after_processing"]) for r in rows] == [0.45, 0.38, 0.30]  # calendering order
    assert [float(r["tau_pore_z"]) for r in rows] == [1.5, 1.9, 2.6]
    assert {r["processing_step"] for r in rows} == {"calendering"}


@pytest.mark.slow
@pytest.mark.chaotic
def test_two_point_calendering_sweep_writes_summary_and_tradeoff(tmp_path, chaos, smoke_bed):
    sweep = tmp_path / "sweep"
    # Where the gauge porosity at the plate still meets the target to 2e-3 (below ~0.35 flattened
    # fines stick out above the plate's plane: see the experiment file).
    targets = (0.45, 0.40)
    args = [
        "+experiment=calendering_sweep",
        "compact.target_porosity=" + ",".join(map(str, targets)),
        *chaos.overrides(),
        f"resume_from={smoke_bed(chaos) / 'snapshots' / '01_settle.npz'}",  # the shared settled bed
        f"hydra.sweep.dir={sweep}",
    ]
    electrodem(*args, in_process=True)
    with (sweep / "summary.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    for col in (
        "porosity_after_processing",
        "loaded_porosity",
        "spring_back_pct",
        "max_pressure_MPa",
        *(f"sigma_e_eff_{a}_S_per_m" for a in "xyz"),
        *(f"tau_pore_{a}" for a in "xyz"),
        "inactive_am_fraction_by_volume",
    ):
        assert col in rows[0], col
    # Displacement mode stops the plate at the gap of each target porosity (to one step of travel).
    for row, target in zip(sorted(rows, key=lambda r: r["job"]), targets, strict=True):
        assert float(row["loaded_porosity"]) == pytest.approx(target, abs=2e-3)
        assert 0.0 < float(row["porosity_after_processing"]) < 1.0
    # The trade-off direction (DOMAIN.md §4): the denser layer has longer pore paths through the
    # thickness and a better-connected in-plane electronic network. (Through-plane sigma_e,eff is not
    # asserted: on ~27 NMC particles it stays flat within a few % over the whole sweep.)
    loose, dense = sorted(rows, key=lambda r: -float(r["loaded_porosity"]))
    assert float(dense["tau_pore_z"]) > float(loose["tau_pore_z"])
    for a in "xy":
        assert float(dense[f"sigma_e_eff_{a}_S_per_m"]) > float(loose[f"sigma_e_eff_{a}_S_per_m"])
    assert float(dense["max_pressure_MPa"]) > float(loose["max_pressure_MPa"]) > 0.0
    # Modulus similarity (s = 0.005 on moduli and yield pressures): the real-material pressure is / s.
    assert float(dense["pressure_scale"]) == pytest.approx(0.005)
    assert float(dense["max_pressure_real_equiv_MPa"]) == pytest.approx(
        float(dense["max_pressure_MPa"]) / 0.005
    )
    assert (sweep / "calendering_tradeoff.csv").is_file()
    assert (sweep / "calendering_tradeoff.png").stat().st_size > 0
