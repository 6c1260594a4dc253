"""Calendering calibration study: a wet NMC811:CB:PVDF 96:2:2 cathode (formulation preset
``wet_nmc811_96_2_2``) placed, settled and calendered in the nip geometry from its settled porosity
toward 30 % (control ``target_porosity``).

Usage: ``python studies/calendering_nmc811.py OUT_DIR [--box-um 40] [--thickness-um 40]``

Coarsened to fit a few minutes on 2 CPU cores (printed with the table):
* a 40 x 40 um box, 40 um dense thickness at 30 % porosity (the preset's 4 mAh/cm2 would be ~70 um);
* CB and PVDF drawn as coarse-grained domains of d50 2.5 um (2-3.2 um) instead of 0.8 / 1.0 um
  (same wt%, fewer and larger fines; the CB network and binder bridges are therefore coarse);
* the settle and calender shortcuts of `electrodem.process.settle` / `calender` (moduli capped at
  1 GPa, fines mass-scaled x100, simulated line speed from the inertial-number rule).

Parameters set here (not fitted to a measured calendering curve; see the report):
* Thornton–Ning yield pressures in the softened model: NMC811 20 MPa, PVDF 50 MPa (softened with
  temperature), CB elastic (Hertz at 1 GPa): with plastic fines at 5-10 MPa the fines were squeezed
  through (overlap guard at 45 % of the radius) before the bed reached 30 % porosity;
* PVDF softening 333 K -> melt 450 K (177 C, material card), roll temperature 353 K (80 C).
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import yaml

from electrodem.engine import EngineOptions
from electrodem.materials.formulation import Formulation, RVESpec, make_population
from electrodem.materials.library import load_library
from electrodem.process.calender import CalenderParams, calender
from electrodem.process.place import PlaceParams, place
from electrodem.process.settle import SettleParams, settle

ROOT = Path(__file__).resolve().parents[1]
FINES_PSD = {
    "distribution": "lognormal",
    "basis": "volume",
    "d50_um": 2.5,
    "geometric_std": 1.15,
    "d_min_um": 2.0,
    "d_max_um": 3.2,
}


def build(box_um: float, thickness_um: float, seed: int = 1) -> tuple:
    form_cfg = yaml.safe_load((ROOT / "configs/formulation/wet_nmc811_96_2_2.yaml").read_text())
    mats = {}
    for c in form_cfg["components"].values():
        cfg = yaml.safe_load((ROOT / f"configs/material/{c['material']}.yaml").read_text())
        if cfg["role"] in ("CB", "binder"):
            cfg = copy.deepcopy(cfg)
            cfg["psd"] = dict(FINES_PSD)
        mats[c["material"]] = cfg
    library = load_library(mats)
    form = Formulation.from_config(form_cfg, library)
    rve = RVESpec.from_config(
        {"box_x_um": box_um, "box_y_um": box_um, "porosity": 0.30, "thickness_um": thickness_um}
    )
    pop = make_population(form, rve, seed)
    return place(pop, box_um * 1e-6, box_um * 1e-6, PlaceParams(), seed, progress=False), pop.report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--box-um", type=float, default=40.0)
    ap.add_argument("--thickness-um", type=float, default=40.0)
    ap.add_argument("--target-porosity", type=float, default=0.30)
    args = ap.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    opts = EngineOptions()
    placed, pop_rep = build(args.box_um, args.thickness_um)
    settled, srep = settle(placed, SettleParams(max_steps=150_000), opts, progress=False)
    t_settle = time.perf_counter() - t0
    params = CalenderParams(
        geometry="nip",
        roll_radius_m=0.1,
        control="target_porosity",
        target_porosity=args.target_porosity,
        roll_temperature_K=353.15,
        yield_pressure_Pa={"nmc811": 20e6, "pvdf": 50e6},
        softening_K={"pvdf": (333.15, 450.15)},
        design_pressure_Pa=5e6,
        search_passes=4,
        search_tolerance=0.1,
        max_overlap_ratio=0.45,
    )
    out, rep = calender(settled, params, opts, progress=False)
    t_all = time.perf_counter() - t0
    counts = {k: v["count"] for k, v in pop_rep["components"].items()}
    print(
        f"RVE {args.box_um:g} x {args.box_um:g} um, {settled.n} particles {counts}; settle: "
        f"{srep['steps']} steps, converged={srep['converged']}, porosity {1 - srep['packing_fraction']:.3f}; "
        f"wall time {t_settle:.0f} s settle, {t_all:.0f} s total (shared 2-core machine: timings indicative)"
    )
    print(
        "search evaluations (gap um -> porosity):",
        [
            (round(e["gap_um"], 2), round(e["value"], 4) if "value" in e else "guard tripped")
            for s in rep["searches"]
            for e in s["evaluations"]
        ],
    )
    cols = [
        ("pass", "{:d}"),
        ("gap_um", "{:.2f}"),
        ("thickness_before_um", "{:.2f}"),
        ("thickness_at_min_gap_um", "{:.2f}"),
        ("thickness_um", "{:.2f}"),
        ("porosity_before", "{:.4f}"),
        ("porosity_at_min_gap", "{:.4f}"),
        ("porosity", "{:.4f}"),
        ("density_g_per_cm3", "{:.3f}"),
        ("spring_back_pct", "{:.2f}"),
        ("line_load_N_per_mm", "{:.4g}"),
        ("line_load_floor_N_per_mm", "{:.4g}"),
        ("peak_pressure_Pa", "{:.4g}"),
        ("mean_coordination_number", "{:.2f}"),
        ("stress_at_min_gap_von_mises_max_Pa", "{:.4g}"),
        ("stress_at_min_gap_von_mises_p99_Pa", "{:.4g}"),
        ("inertial_number_max", "{:.3g}"),
        ("quasi_static", "{}"),
        ("line_speed_m_per_s", "{:.3g}"),
        ("steps", "{:d}"),
    ]
    for row in rep["passes"]:
        for k, f in cols:
            print(f"  {k:40s} {f.format(row[k])}")
    # Pressure–porosity: the loading curve of the chosen pass (porosity at the wall position) and the
    # (line load, final porosity) of every search evaluation.
    solid = float(settled.volumes_m3.sum())
    area = float(settled.box_m[0] * settled.box_m[1])
    curve = [c for c in rep["curve"] if c["phase"] == "nip" and c["pressure_Pa"] > 0]
    eps_wall = [1 - solid / (area * c["tool_z_m"]) for c in curve]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot([c["pressure_Pa"] / 1e6 for c in curve], eps_wall, ".-", ms=2, label="nip loading (at wall)")
    row = rep["passes"][0]
    ax.plot([row["peak_pressure_Pa"] / 1e6], [row["porosity"]], "o", label="after spring-back")
    ax.set_xlabel("pressure (MPa)")
    ax.set_ylabel("porosity")
    ax.set_title("NMC811 96:2:2, nip R = 0.1 m")
    ax.legend()
    fig.tight_layout()
    png = args.out_dir / "pressure_porosity.png"
    fig.savefig(png, dpi=120)
    out.save(args.out_dir / "calendered.npz", overwrite=True)
    print(f"wrote {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
