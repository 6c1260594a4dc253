"""The LIGGGHTS reference input of the dense-bed benchmark encodes the standard case of issue 3.

The input-script tests need no LIGGGHTS; the run tests execute a tiny case when LIGGGHTS is on PATH and
are skipped otherwise.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

_MODULE_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "liggghts_ref.py"


def _load_module():
    spec = importlib.util.spec_from_file_location("liggghts_ref", _MODULE_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("liggghts_ref", module)
    spec.loader.exec_module(module)
    return module


lr = _load_module()


def _commands(script: str) -> list[list[str]]:
    return [line.split() for line in script.splitlines() if line.strip() and not line.startswith("#")]


def _find(cmds: list[list[str]], *prefix: str) -> list[list[str]]:
    return [c for c in cmds if c[: len(prefix)] == list(prefix)]


def _one(cmds: list[list[str]], *prefix: str) -> list[str]:
    found = _find(cmds, *prefix)
    assert len(found) == 1, f"expected exactly one command starting {prefix}, found {found}"
    return found[0]


def _fix(cmds: list[list[str]], style: str) -> list[list[str]]:
    return [c for c in cmds if c[0] == "fix" and len(c) > 3 and c[3] == style]


def _rayleigh_speed_ratio(nu: float) -> float:
    """c_R / c_S from the exact Rayleigh-wave secular equation (cubic in xi^2)."""
    k2 = (1.0 - 2.0 * nu) / (2.0 * (1.0 - nu))  # (c_S / c_P)^2
    roots = np.roots([1.0, -8.0, 24.0 - 16.0 * k2, 16.0 * (k2 - 1.0)])
    real = [r.real for r in roots if abs(r.imag) < 1e-12 and 0.0 < r.real < 1.0]
    assert len(real) == 1
    return math.sqrt(real[0])


@pytest.mark.parametrize("nu", [0.0, 0.15, 0.3, 0.45])
def test_rayleigh_dt_matches_rayleigh_wave_transit_time(nu):
    # dt_R is the time a Rayleigh wave needs to cross half the sphere's circumference: pi R / c_R.
    radius_m, rho, e_pa = 1.5e-3, 2500.0, 5e6
    c_shear = math.sqrt(e_pa / (2.0 * (1.0 + nu)) / rho)
    exact = math.pi * radius_m / (_rayleigh_speed_ratio(nu) * c_shear)
    assert lr.rayleigh_dt(radius_m, rho, e_pa, nu) == pytest.approx(exact, rel=5e-3)


def test_rayleigh_dt_scales_and_rejects_bad_input():
    props = (2500.0, 5e6, 0.3)
    assert lr.rayleigh_dt(3e-3, *props) == pytest.approx(2 * lr.rayleigh_dt(1.5e-3, *props))
    with pytest.raises(ValueError, match="radius_m"):
        lr.rayleigh_dt(-1e-3, 2500.0, 5e6, 0.3)
    with pytest.raises(ValueError, match="nu"):
        lr.rayleigh_dt(1e-3, 2500.0, 5e6, 0.5)


def test_standard_bidisperse_script_has_issue3_parameters():
    cmds = _commands(lr.input_script(20_000, 10_000, 50_000, "bidisperse", 0))
    assert _one(cmds, "units") == ["units", "si"]
    assert _one(cmds, "boundary")[1:] == ["p", "p", "f"]
    region = _one(cmds, "region", "box")
    assert [float(v) for v in region[3:9]] == pytest.approx([0, 0.1, 0, 0.1, 0, 0.4], abs=1e-12)
    # Hertz + tangential history, and neither rolling resistance nor cohesion anywhere.
    assert _one(cmds, "pair_style")[1:] == ["gran", "model", "hertz", "tangential", "history"]
    flat = " ".join(" ".join(c) for c in cmds)
    assert "rolling_friction" not in flat and "cohesion" not in flat
    props = {c[4]: [float(v) for v in c[6:]] for c in _fix(cmds, "property/global")}
    assert props["youngsModulus"] == [5e6, 5e6]
    assert props["poissonsRatio"] == [0.3, 0.3]
    assert props["coefficientRestitution"] == [2, 0.5, 0.5, 0.5, 0.5]
    assert props["coefficientFriction"] == [2, 0.5, 0.5, 0.5, 0.5]
    assert float(_one(cmds, "timestep")[1]) == 1e-5
    gravity = _fix(cmds, "gravity")[0]
    assert [float(v) for v in gravity[4:5] + gravity[6:9]] == [9.81, 0.0, 0.0, -1.0]
    walls = _fix(cmds, "wall/gran")
    assert sorted(float(w[-1]) for w in walls) == pytest.approx([0.0, 0.4])
    assert all(w[4:9] == ["model", "hertz", "tangential", "history", "primitive"] for w in walls)
    templates = {int(t[6]): (float(t[9]), float(t[12])) for t in _fix(cmds, "particletemplate/sphere")}
    assert templates == {1: (2500.0, 2.5e-3), 2: (2500.0, 1.5e-3)}
    dist = _fix(cmds, "particledistribution/discrete/numberbased")[0]
    assert dict(zip(dist[6::2], map(float, dist[7::2]), strict=True)) == {"pts1": 0.5, "pts2": 0.5}
    insert = _fix(cmds, "insert/pack")[0]
    assert insert[insert.index("particles_in_region") + 1] == "20000"
    assert insert[insert.index("overlapcheck") + 1] == "yes"
    assert [int(c[1]) for c in _find(cmds, "run")] == [1, 50_000, 10_000, 0]
    skin = float(_one(cmds, "neighbor")[1])
    assert 0.5 * 1.5e-3 <= skin <= 1.5e-3
    assert _one(cmds, "neigh_modify")[1:] == ["delay", "0"]


def test_timed_run_is_the_one_after_the_timed_marker():
    cmds = _commands(lr.input_script(1000, 321, 654, "bidisperse", 3))
    marker = cmds.index(["print", f'"{lr.PHASE_MARK}', 'timed"'])
    assert cmds[marker + 1] == ["run", "321"]


def test_box_grows_laterally_with_n_at_constant_height():
    assert lr.box_m(20_000, "bidisperse") == pytest.approx((0.1, 0.1, 0.4))
    lx, ly, lz = lr.box_m(80_000, "bidisperse")
    assert (lx, ly, lz) == pytest.approx((0.2, 0.2, 0.4))


def _solid_fraction_of_box(n: int, mix: str) -> float:
    volume = sum(c * 4.0 / 3.0 * math.pi * r**3 for r, c in lr.species_counts(n, mix))
    return volume / math.prod(lr.box_m(n, mix))


def test_electrode_mix_has_size_ratio_20_and_85_percent_large_volume():
    mix = lr.ELECTRODE_MIX
    assert mix["large_radius_m"] / mix["small_radius_m"] == pytest.approx(20.0)
    for n, tol in ((20_000, 5e-3), (100_000, 2e-3)):
        (r_s, n_s), (r_l, n_l) = lr.species_counts(n, "electrode")
        assert n_s + n_l == n
        share = n_l * r_l**3 / (n_l * r_l**3 + n_s * r_s**3)
        assert share == pytest.approx(0.85, abs=tol)
    # Same solid fraction of the box as the standard case, so settling starts from the same state.
    assert _solid_fraction_of_box(20_000, "electrode") == pytest.approx(
        _solid_fraction_of_box(20_000, "bidisperse"), rel=0.02)


def test_electrode_time_step_keeps_standard_rayleigh_fraction():
    props = (2500.0, 5e6, 0.3)
    standard_fraction = 1e-5 / lr.rayleigh_dt(1.5e-3, *props)
    electrode_fraction = lr.ELECTRODE_MIX["dt_s"] / lr.rayleigh_dt(lr.ELECTRODE_MIX["small_radius_m"], *props)
    assert electrode_fraction == pytest.approx(standard_fraction, rel=1e-12)
    assert 0.01 < standard_fraction < 0.2
    cmds = _commands(lr.input_script(20_000, 10, 10, "electrode", 0))
    assert float(_one(cmds, "timestep")[1]) == pytest.approx(8.333e-7, rel=1e-3)
    neighbor = _one(cmds, "neighbor")
    assert 0.5 * 0.125e-3 <= float(neighbor[1]) <= 0.125e-3
    assert neighbor[2] == "bin"  # "multi" gives empty granular lists in LIGGGHTS-PUBLIC 3.8.0
    templates = {int(t[6]): float(t[12]) for t in _fix(cmds, "particletemplate/sphere")}
    assert templates == {1: 2.5e-3, 2: 0.125e-3}


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(n=0), "n"),
        (dict(steps=0), "steps"),
        (dict(settle_steps=-1), "settle_steps"),
        (dict(mix="tricycle"), "mix"),
        (dict(seed=-2), "seed"),
        (dict(n=1000, mix="electrode"), "n"),
    ],
)
def test_bad_input_is_rejected_with_parameter_name(kwargs, name):
    args = dict(n=200, steps=10, settle_steps=10, mix="bidisperse", seed=0) | kwargs
    with pytest.raises(ValueError, match=name):
        lr.input_script(**args)


def test_seeds_are_distinct_primes_above_10000():
    primes = lr._primes_from_seed(5, 4)
    assert len(set(primes)) == 4
    assert all(p > 10_000 and all(p % d for d in range(2, math.isqrt(p) + 1)) for p in primes)


def test_no_liggghts_on_path_gives_none(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert lr.find_liggghts() is None
    assert lr.run_liggghts(200, 10, 10, "bidisperse", 0, tmp_path / "w") is None


def test_process_cpu_reading_follows_busy_work():
    import os
    import time

    before = lr._process_cpu_s(os.getpid())
    if before is None:
        pytest.skip("no /proc on this system")
    t0 = time.process_time()
    while time.process_time() - t0 < 0.3:
        pass
    spent = time.process_time() - t0
    assert lr._process_cpu_s(os.getpid()) - before == pytest.approx(spent, abs=0.05)


def test_parse_log_takes_only_the_timed_phase():
    mark = lr.PHASE_MARK
    loop = ("Loop time of {t} on 1 procs for {s} steps with 300 atoms, finish time x\n\n"
            "Pair  time (%) = {p} (50)\n")
    log = (
        "LIGGGHTS (Version LIGGGHTS-PUBLIC 3.8.0, compiled x)\n"
        f"{mark} insert\n" + loop.format(t=0.5, s=1, p=0.1)
        + f"{mark} inserted 300 large 150 small 150\n"
        f"{mark} settle\n" + loop.format(t=90.0, s=5000, p=40.0)
        + f"{mark} timed\n" + loop.format(t=2.0, s=400, p=1.5)
        + f"{mark} after\n" + loop.format(t=0.0, s=0, p=0.0)
    )
    out = lr.parse_log(log, n=300, steps=400)
    assert out["wall_s"] == 2.0
    assert out["particle_steps_per_s"] == pytest.approx(300 * 400 / 2.0)
    assert out["breakdown_s"]["Pair"] == 1.5
    assert out["n_inserted"] == 300 and out["liggghts_version"] == "LIGGGHTS-PUBLIC 3.8.0"
    with pytest.raises(RuntimeError, match="expected"):
        lr.parse_log(log, n=300, steps=401)
    # A run cut short by a signal still prints the planned step count; the thermo steps tell the truth.
    cut = log.replace(f"{mark} timed\n", f"{mark} timed\n    5001 300 1e-3 0\n    5300 300 1e-3 0\n")
    with pytest.raises(RuntimeError, match="advanced 299 steps"):
        lr.parse_log(cut, n=300, steps=400)
    # An empty neighbour list means no pair contact was computed (LIGGGHTS 3.8.0 "neighbor multi").
    empty = log.replace(f"{mark} after", "Total # of neighbors = 0\n" + f"{mark} after")
    with pytest.raises(RuntimeError, match="neighbour list"):
        lr.parse_log(empty, n=300, steps=400)


needs_liggghts = pytest.mark.skipif(lr.find_liggghts() is None, reason="no LIGGGHTS executable on PATH")


@needs_liggghts
def test_tiny_bidisperse_run_reports_positive_throughput(tmp_path):
    out = lr.run_liggghts(200, 200, 200, "bidisperse", 1, tmp_path)
    assert out["n_inserted"] == 200 and out["counts"] == [100, 100]
    assert out["total_neighbors"] > 0
    assert out["wall_s"] > 0 and out["particle_steps_per_s"] > 0
    assert out["particle_steps_per_s"] == pytest.approx(200 * 200 / out["wall_s"])
    # LIGGGHTS' own Rayleigh check sees the same time-step fraction as rayleigh_dt.
    expected = 1e-5 / lr.rayleigh_dt(1.5e-3, 2500.0, 5e6, 0.3)
    assert out["rayleigh_fraction_liggghts"] == pytest.approx(expected, rel=1e-6)
    assert Path(out["input_file"]).is_file()


@needs_liggghts
def test_tiny_electrode_run_inserts_exact_mix(tmp_path):
    out = lr.run_liggghts(5000, 20, 20, "electrode", 2, tmp_path)
    (_, n_small), (_, n_large) = lr.species_counts(5000, "electrode")
    assert (out["n_small"], out["n_large"]) == (n_small, n_large) == (4996, 4)
    expected = lr.ELECTRODE_MIX["dt_s"] / lr.rayleigh_dt(0.125e-3, 2500.0, 5e6, 0.3)
    assert out["rayleigh_fraction_liggghts"] == pytest.approx(expected, rel=1e-6)
