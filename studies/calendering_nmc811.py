"""Calendering study: a wet NMC811:CB:PVDF 96:2:2 cathode (formulation preset ``wet_nmc811_96_2_2``)
placed, settled with JKR cohesion, plate-compacted from its settled porosity to 30 % and (optionally)
passed once through a calender nip at the plate's loaded gap.

Usage: ``python studies/calendering_nmc811.py --out OUT_DIR [--box-um 60] [--thickness-um 40]
[--modulus-scale 0.005] [--plate-speed 0.003] [--no-calender] [--yield-MPa nmc811=590]``
(about 5 min for the plate, 10 more for the nip pass, on 2 cores; a re-run reuses OUT_DIR/settled.npz)

WHAT IS CALIBRATED, AND ON WHAT. DOMAIN.md gives porosity ranges (commercial cathodes 9-38 %,
calendered lab cathodes 25-35 %) and the Meyer law form, but no pressure or line load for a given
porosity. The one plate pressure for an NCM cathode in the seed papers is 20-25 MPa (004 §2.2: a
dry NCM523 cathode pressed 5 min at 20-25 MPa; its porosity is not reported). The study:
1. runs the material library's Thornton–Ning yield pressures (``contact_yield_pressure_MPa``:
   NMC811 200, C65 5, PVDF 100 MPa; order-of-magnitude values, see their sources) and reports the
   pressure they need for 45, 40, 35 and 30 % porosity: a prediction, not a validation;
2. with ``--yield-MPa nmc811=100`` / ``=400``, measures how that pressure scales with the NMC811
   yield pressure (the parameter that carries the load once the bed is jammed);
3. calibrates that one parameter so that 30 % (the middle of the lab range) takes 22.5 MPa (the
   middle of the seed's 20-25 MPa) and verifies it with a run: a magnitude anchor, stated as such
   (an assumed porosity for the seed's press), not a fit to a measured curve. Every other parameter
   keeps its library value. Results: ``studies/calendering_nmc811_results.md``.

Modulus similarity (the one speed shortcut of the compaction, exact in the quasi-static limit):
every modulus AND every yield pressure is multiplied by the same factor s (``--modulus-scale``).
Hertz and Thornton–Ning contact forces at a given overlap are then all multiplied by s, friction is
a force ratio and the restitution damping is rate-dependent only through inertia, so the quasi-static
pressure–porosity curve is the real-material one with every pressure multiplied by s. The study
simulates at s and reports pressures / line loads divided by s. It stays exact only while the
inertial number is small (checked, printed) and there is no cohesion or gravity (both are off in the
compaction; gravity is set to 0 in the calender pass; the JKR cohesion acts in the settle only,
since neither process step models adhesion).

Other shortcuts (all printed with the table):
* a 60 x 60 um box, 40 um dense thickness at 30 % porosity (the preset's 4 mAh/cm2 would be ~70 um):
  ~1500 particles of which ~260 NMC, so the curve carries RVE noise;
* CB and PVDF drawn as coarse-grained domains of d50 2.5 um (2-3.2 um) instead of 0.8 / 1.0 um
  (same wt%, fewer and larger fines; the CB network and the binder bridges are coarse);
* settle: the settle step's own shortcuts (moduli capped at 1 GPa, fines mass-scaled x100, auto
  gravity), with JKR cohesion from the library surface energies;
* compaction: no mass scaling of the fines (at uniform s the soft fines do not limit the time step);
  plate speed ``--plate-speed`` (the real press ~1 mm/s): quasi-static checked by the inertial number;
* calender: nip geometry (R = 0.1 m, planar wall following the roll profile), gap = the plate's loaded
  gap, room temperature (PVDF not softened), fines mass-scaled x100 (the calender step's default),
  simulated line speed from the calender step's inertial-number rule.
"""

from __future__ import annotations

import argparse
import copy
import csv
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from electrodem.analysis.compaction import fit_heckel, fit_meyer, load_at_porosity
from electrodem.engine import EngineOptions
from electrodem.io.snapshot import Microstructure
from electrodem.materials.formulation import Formulation, RVESpec, make_population
from electrodem.materials.library import load_library
from electrodem.process.calender import CalenderParams, calender
from electrodem.process.compact import CONTACT as COMPACT_CONTACT
from electrodem.process.compact import CompactParams, compact
from electrodem.process.engine_map import ContactParams, ShortcutParams
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


def build(box_um: float, thickness_um: float, seed: int = 1) -> tuple[Any, dict[str, Any]]:
    """Placed (unsettled) microstructure of the preset with coarse-grained fines, and the population
    report."""
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


def fit_curve(load: np.ndarray, eps: np.ndarray) -> dict[str, float]:
    """Meyer (load in the unit given) and Heckel (load in MPa) fits with R^2 of each."""
    out: dict[str, float] = {}
    m = fit_meyer(load, eps)
    ss = float(np.sum((eps - eps.mean()) ** 2))
    out.update(meyer_eps_min=m.eps_min, meyer_eps_0=m.eps_0, meyer_gamma_c=m.gamma_c)
    out["meyer_r2"] = 1.0 - float(np.sum((eps - m.porosity(load)) ** 2)) / ss if ss > 0 else float("nan")
    h = fit_heckel(load, eps)  # slope per unit of ``load``
    out.update(heckel_k=h.k_per_Pa, heckel_A=h.A, heckel_r2=h.r2)
    return out


def cpu_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="output directory (CSV, PNG, npz)")
    ap.add_argument("--box-um", type=float, default=60.0)
    ap.add_argument("--thickness-um", type=float, default=40.0)
    ap.add_argument("--target-porosity", type=float, default=0.30)
    ap.add_argument("--modulus-scale", type=float, default=0.005, help="similarity factor s on E and p_y")
    ap.add_argument("--plate-speed", type=float, default=0.003, help="simulated plate speed (m/s)")
    ap.add_argument("--no-calender", action="store_true", help="skip the nip pass")
    ap.add_argument(
        "--yield-MPa",
        action="append",
        default=[],
        metavar="SPECIES=MPa",
        help="override a library yield pressure (real scale; reported as an override)",
    )
    ap.add_argument("--fresh", action="store_true", help="re-settle even if OUT/settled.npz exists")
    # PVDF at yield carries an elastic overlap ~ (3 pi / 4) (p_y / E*) a ~ 0.1 of its radius once its
    # contact radius a reaches the radius: the elastic guard sits above that physical value.
    ap.add_argument("--max-overlap-ratio", type=float, default=0.3,
                    help="engine guard on the elastic overlap / smaller radius")  # fmt: skip
    # A 5 MPa C65 lump pressed between NMC flattens to a pancake (overlap ~ its radius on each side);
    # what the geometry loses is the lens volume, checked and reported.
    ap.add_argument("--max-total-overlap-ratio", type=float, default=1.5,
                    help="engine guard on the whole overlap (plastic flattening included)")  # fmt: skip
    ap.add_argument("--nip-max-steps", type=int, default=4_000_000, help="step budget of the nip pass")
    ap.add_argument("--porosities", type=float, nargs="+", default=[0.45, 0.40, 0.35, 0.30],
                    help="porosities at which the loading curve's pressure is tabulated")  # fmt: skip
    args = ap.parse_args(argv)
    s = float(args.modulus_scale)
    if not 0 < s <= 1:
        raise SystemExit(f"--modulus-scale must be in (0, 1]; got {s}")
    args.out.mkdir(parents=True, exist_ok=True)
    t0, c0 = time.perf_counter(), cpu_s()
    opts = EngineOptions()
    placed, pop_rep = build(args.box_um, args.thickness_um)
    cache = args.out / "settled.npz"
    rve_key = {"box_um": args.box_um, "thickness_um": args.thickness_um, "seed": 1}
    if cache.exists() and not args.fresh:  # a re-run reuses the settled bed (same seed and settings)
        settled = Microstructure.load(cache)
        srep = settled.metadata["settle_study"]
        if srep.get("rve") != rve_key:
            raise SystemExit(f"{cache} was settled for {srep.get('rve')}, not {rve_key}: pass --fresh")
    else:
        settled, srep = settle(placed, SettleParams(max_steps=150_000), opts, progress=False)
        srep = {"steps": int(srep["steps"]), "converged": bool(srep["converged"]),
                "packing_fraction": float(srep["packing_fraction"]), "rve": rve_key}  # fmt: skip
        settled = settled.with_(metadata={**settled.metadata, "settle_study": srep})
        settled.save(cache, overwrite=True)
    t_settle, c_settle = time.perf_counter() - t0, cpu_s() - c0
    eps_settled_bulk = 1.0 - srep["packing_fraction"]  # the settle step's bulk (half-bulk rule) measure
    py_lib_Pa = {sp.name: float(sp.yield_pressure_Pa) for sp in settled.species}
    for item in args.yield_MPa:
        name, _, val = item.partition("=")
        if name not in py_lib_Pa or not val:
            raise SystemExit(
                f"--yield-MPa {item!r}: expected SPECIES=MPa with SPECIES in {sorted(py_lib_Pa)}"
            )
        py_lib_Pa[name] = float(val) * 1e6
    counts = {k: v["count"] for k, v in pop_rep["components"].items()}

    rows: list[dict[str, Any]] = []
    # ---- plate compaction, displacement control to the target porosity
    t1, c1 = time.perf_counter(), cpu_s()
    cp = CompactParams(
        mode="displacement",
        target_porosity=args.target_porosity,
        plate_speed_m_per_s=args.plate_speed,
        contact=ContactParams(**{**COMPACT_CONTACT, "normal": "thornton_ning",
                                 "yield_pressure_MPa": {k: v * s * 1e-6 for k, v in py_lib_Pa.items()}}),
        shortcuts=ShortcutParams(modulus_scale=s, modulus_cap_Pa=None, fines_density_scale=1.0,
                                 rayleigh_fraction=0.2),
        record_every_steps=500,
        max_overlap_ratio=args.max_overlap_ratio,
        max_total_overlap_ratio=args.max_total_overlap_ratio,
    )
    compacted, crep = compact(settled, cp, opts, progress=False)
    t_c, c_c = time.perf_counter() - t1, cpu_s() - c1
    cv = crep["curve"]
    load = [
        (p / s * 1e-6, e, h)
        for st, p, e, h in zip(cv["stage"], cv["pressure_Pa"], cv["porosity"], cv["thickness_m"], strict=True)
        if st == "load" and p > 0
    ]
    p_MPa, eps_l, _ = (np.array(x) for x in zip(*load, strict=True))
    bearing = p_MPa >= cp.fit_pressure_fraction * p_MPa.max()  # the compaction step's fit domain
    fits_c = fit_curve(p_MPa[bearing], eps_l[bearing])
    at_eps = {f"p_at_{e:.2f}_MPa": load_at_porosity(p_MPa, eps_l, e) for e in args.porosities}
    ov = crep["overlap"]
    rows.append(
        {
            "step": "plate",
            "settled_porosity": crep["initial"]["porosity"],
            "settled_porosity_bulk": eps_settled_bulk,
            "loaded_porosity": crep["loaded"]["porosity"],
            "final_porosity": crep["final"]["porosity"],
            "max_load": crep["max_pressure_MPa"] / s,
            "load_unit": "MPa",
            "spring_back_pct": crep["spring_back_pct"],
            **fits_c,
            "max_particle_stress_MPa": crep["max_particle_stress_MPa"] / s,
            "inertial_number_max": crep["quasi_static"]["inertial_number_max"],
            **at_eps,
            "max_overlap_ratio": ov["max_ratio_max_load"],
            "max_elastic_overlap_ratio": ov["max_elastic_ratio_max_load"],
            "lens_volume_pct_max_load": 100.0 * ov["volume_fraction_max_load"],
            "lens_volume_pct_final": 100.0 * ov["volume_fraction_final"],
            "steps": crep["steps"],
            "wall_s": t_c,
            "cpu_s": c_c,
        }
    )
    with open(args.out / "plate_curve.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["stage", "pressure_MPa_real", "porosity", "thickness_um", "inertial_number"])
        for k in range(len(cv["stage"])):
            w.writerow([cv["stage"][k], cv["pressure_Pa"][k] / s * 1e-6, cv["porosity"][k],
                        cv["thickness_m"][k] * 1e6, cv["inertial_number"][k]])  # fmt: skip

    compacted.save(args.out / "compacted.npz", overwrite=True)  # kept even if the nip pass fails
    print(f"plate: {rows[0]['loaded_porosity']:.4f} porosity loaded at {rows[0]['max_load']:.4g} MPa "
          f"(real scale), {rows[0]['final_porosity']:.4f} after release", flush=True)  # fmt: skip

    # ---- one nip pass at the plate's loaded gap
    crow = None
    if not args.no_calender:
        t2, c2 = time.perf_counter(), cpu_s()
        gap_um = crep["loaded"]["thickness_um"]
        kp = CalenderParams(
            geometry="nip",
            roll_radius_m=0.1,
            control="gap",
            gap_um=gap_um,
            contact=ContactParams(normal="thornton_ning", cohesion="none", friction=cp.contact.friction,
                                  restitution=cp.contact.restitution, rolling_friction=0.0,
                                  yield_pressure_MPa={k: v * s * 1e-6 for k, v in py_lib_Pa.items()}),
            shortcuts=ShortcutParams(modulus_scale=s, modulus_cap_Pa=None),
            design_pressure_Pa=max(crep["max_pressure_Pa"], 1.0),
            gravity_m_per_s2=0.0,
            max_steps_per_pass=args.nip_max_steps,
            max_overlap_ratio=args.max_overlap_ratio,
            max_total_overlap_ratio=args.max_total_overlap_ratio,
        )
        cal, krep = calender(settled, kp, opts, progress=False)
        t_k, c_k = time.perf_counter() - t2, cpu_s() - c2
        pr = krep["passes"][0]
        curve = [c for c in krep["curve"] if c["phase"] == "nip" and c["pressure_Pa"] > 0]
        solid = float(settled.volumes_m3.sum())
        area = float(settled.box_m[0] * settled.box_m[1])
        pk = np.array([c["pressure_Pa"] for c in curve]) / s * 1e-6
        ek = np.array([1.0 - solid / (area * c["tool_z_m"]) for c in curve])
        # Loading branch only: the nip pressure rises to its peak at the minimum gap, then falls.
        i_pk = int(np.argmax(pk)) + 1
        fits_k = {}
        try:
            fits_k = fit_curve(pk[:i_pk], ek[:i_pk])
        except (ValueError, RuntimeError) as e:
            print("nip fits failed:", e)
        crow = {
            "step": "nip",
            "settled_porosity": pr["porosity_before"],
            "loaded_porosity": pr["porosity_at_min_gap"],
            "final_porosity": pr["porosity"],
            "max_load": pr["line_load_N_per_mm"] / s,
            "load_unit": "N/mm",
            "peak_pressure_MPa": pr["peak_pressure_Pa"] / s * 1e-6,
            "spring_back_pct": pr["spring_back_pct"],
            **fits_k,
            "max_particle_stress_MPa": pr["stress_at_min_gap_von_mises_max_Pa"] / s * 1e-6,
            "inertial_number_max": pr["inertial_number_max"],
            "steps": pr["steps"],
            "wall_s": t_k,
            "cpu_s": c_k,
            "gap_um": gap_um,
            "contact_arc_um": math.sqrt(2 * 0.1 * max(pr["thickness_before_um"] - gap_um, 0) * 1e-6) * 1e6,
        }
        rows.append(crow)
        with open(args.out / "nip_curve.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["time_s", "x_m", "pressure_MPa_real", "porosity_at_wall"])
            for c, p, e in zip(curve, pk, ek, strict=True):
                w.writerow([c["time_s"], c.get("x_m", ""), p, e])
        cal.save(args.out / "calendered.npz", overwrite=True)

    keys = sorted({k for r in rows for k in r}, key=lambda k: list(rows[0]).index(k) if k in rows[0] else 99)
    with open(args.out / "summary.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)

    # ---- plot
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.plot(p_MPa, eps_l, ".", ms=3, label="plate loading (real-scale MPa)")
    pp = np.linspace(0, p_MPa.max(), 200)
    g = fits_c
    e_fit = g["meyer_eps_min"] + (g["meyer_eps_0"] - g["meyer_eps_min"]) * np.exp(-pp / g["meyer_gamma_c"])
    lbl = f"Meyer fit (p >= {cp.fit_pressure_fraction:g} p_max), R2={g['meyer_r2']:.3f}"
    ax.plot(pp, e_fit, "-", label=lbl)
    ax.plot([rows[0]["max_load"]], [rows[0]["final_porosity"]], "s", label="plate, after spring-back")
    if crow is not None:
        ax.plot(pk[:i_pk], ek[:i_pk], ".", ms=3, label="nip loading (pressure at wall)")
        ax.plot([crow["peak_pressure_MPa"]], [crow["final_porosity"]], "^", label="nip, after spring-back")
    ax.axhspan(0.25, 0.35, color="0.9", zorder=0, label="lab cathodes 25-35 %")
    ax.set_xlabel("pressure (MPa, real-material scale)")
    ax.set_ylabel("porosity")
    over = ", ".join(args.yield_MPa) if args.yield_MPa else "library yield pressures"
    ax.set_title(f"NMC811 96:2:2, {over}", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    png = args.out / "pressure_porosity.png"
    fig.savefig(png, dpi=120)

    try:  # before/after cross-sections on one height scale
        from electrodem_viz.plots import render_stages

        stages = [settled, compacted] + ([cal] if crow is not None else [])
        names = ["settled", "plate-compacted, released"] + (["one nip pass"] if crow is not None else [])
        render_stages(stages, names, args.out / "cross_sections.png")
    except ImportError:
        print("electrodem_viz not importable (add viz/ to PYTHONPATH): no cross-sections")

    # ---- table
    t_all, c_all = time.perf_counter() - t0, cpu_s() - c0
    print(f"RVE {args.box_um:g} x {args.box_um:g} um, {settled.n} particles {counts}")
    print(f"settle (JKR): {srep['steps']} steps, converged={srep['converged']}, "
          f"porosity {rows[0]['settled_porosity']:.4f} (gauge; bulk {eps_settled_bulk:.4f}), "
          f"{t_settle:.0f} s wall, {c_settle:.0f} s CPU")  # fmt: skip
    print(f"yield pressures used (MPa, real; overrides: {args.yield_MPa or 'none'}): "
          f"{ {k: v * 1e-6 for k, v in py_lib_Pa.items()} }")  # fmt: skip
    print(f"similarity factor s = {s:g} on all moduli and yield pressures; loads below are /s")
    qs = crep["quasi_static"]["quasi_static"]
    z_max = crep["mean_coordination_number_max_load"]
    print(f"plate: speed {args.plate_speed:g} m/s, dt {crep['dt_s']:.3g} s, quasi-static {qs}, "
          f"mean coordination at max load {z_max:.2f}")  # fmt: skip
    cols = [
        ("step", "{}"), ("settled_porosity", "{:.4f}"), ("loaded_porosity", "{:.4f}"),
        ("final_porosity", "{:.4f}"), ("max_load", "{:.4g}"), ("load_unit", "{}"),
        ("spring_back_pct", "{:.2f}"), ("meyer_gamma_c", "{:.4g}"), ("meyer_eps_min", "{:.4f}"),
        ("meyer_r2", "{:.4f}"), ("heckel_k", "{:.4g}"), ("heckel_A", "{:.4f}"), ("heckel_r2", "{:.4f}"),
        ("max_particle_stress_MPa", "{:.4g}"), ("inertial_number_max", "{:.3g}"), ("steps", "{}"),
        ("wall_s", "{:.0f}"), ("cpu_s", "{:.0f}"),
    ]  # fmt: skip
    print("pressure on the plate's loading curve (real-scale MPa) at porosity: "
          + ", ".join(f"{k[5:9]}: {v:.4g}" for k, v in at_eps.items()))  # fmt: skip
    print(f"overlap at max load: max/r {ov['max_ratio_max_load']:.3f}, elastic/r "
          f"{ov['max_elastic_ratio_max_load']:.3f}, lens volume {100 * ov['volume_fraction_max_load']:.2f} % "
          f"of the solid ({100 * ov['volume_fraction_final']:.2f} % after release; limit "
          f"{100 * ov['volume_fraction_limit']:.0f} %, ok={ov['ok']})")  # fmt: skip
    print("| " + " | ".join(k for k, _ in cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(f.format(r[k]) if k in r else "—" for k, f in cols) + " |")
    if crow is not None:
        ratio = crow["max_load"] / max(rows[0]["max_load"] * crow["contact_arc_um"] * 1e-3, 1e-30)
        print(f"nip: gap {crow['gap_um']:.2f} um, peak pressure {crow['peak_pressure_MPa']:.4g} MPa, "
              f"contact arc sqrt(2 R dh) = {crow['contact_arc_um']:.0f} um; "
              f"line load / (plate pressure x arc) = {ratio:.3f}")  # fmt: skip
    print(f"total {t_all:.0f} s wall, {c_all:.0f} s CPU (shared 2-core machine: timings indicative); "
          f"wrote {args.out}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
