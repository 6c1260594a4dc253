"""Benchmarks that cannot rot: every script under ``benchmarks/`` runs end to end at a tiny size and
prints its table, so a change that breaks one fails CI (``dense_bed.py`` once crashed at HEAD before
timing anything, on a guard default that had moved). The figures themselves are not asserted: speed
lives in the scripts, never in timed tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"

TINY = {
    "bonded_chain": (["--bonds", "200", "--steps", "20"], "bonds"),
    "dry_mix": (["--box-um", "20", "--strain", "0.002", "--threads", "1"], "overhead"),
    "dense_bed": (["--n", "300", "--steps", "50", "--settle-steps", "200", "--no-liggghts", "--threads", "1"],
                  "particle_steps_per_s"),
    "live_state": (["--sizes", "200", "--steps", "20", "--threads", "1"], "200"),
    "place": (["--n", "1000"], "particles/s"),
    "roller": (["--particles", "200", "--steps", "20"], "steps"),
    "startup": (["--steps", "20"], "steps"),
    "transport": (["--sizes", "24", "--contacts", "1000"], "contacts"),
}
"""script -> (tiny arguments, text its output holds). ``dense_bed.py --mix electrode`` is left out: its
periodic box must exceed two of the largest diameters, which takes ~20,000 particles (about a minute
to build and settle on 2 cores); the bidisperse case runs the same script end to end."""


def test_every_benchmark_script_has_a_tiny_run():
    scripts = {p.stem for p in BENCH.glob("*.py")}
    covered = set(TINY) | {"liggghts_ref"}
    assert scripts == covered, f"benchmarks without a tiny run here: {sorted(scripts - covered)}"


@pytest.mark.parametrize("name", sorted(TINY))
def test_benchmark_runs_end_to_end_at_a_tiny_size(name):
    args, expect = TINY[name]
    script = BENCH / f"{name}.py"
    env = {**os.environ, "PYVISTA_OFF_SCREEN": "true"}
    p = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, env=env,
                       timeout=300)
    assert p.returncode == 0, f"{script.name} {' '.join(args)} failed:\n{p.stdout}\n{p.stderr}"
    assert expect in p.stdout, p.stdout


def test_liggghts_reference_runs_at_a_tiny_size(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("liggghts_ref", BENCH / "liggghts_ref.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    if mod.find_liggghts() is None:
        pytest.skip("LIGGGHTS is not installed (apt-get install liggghts)")
    p = subprocess.run([sys.executable, str(BENCH / "liggghts_ref.py"), "--n", "300", "--steps", "50",
                        "--settle-steps", "200", "--workdir", str(tmp_path)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, f"{p.stdout}\n{p.stderr}"
