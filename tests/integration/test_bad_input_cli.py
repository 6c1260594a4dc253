"""Bad input through the CLI, as a user meets it: exit code 2, one line naming the key or file, and
nothing computed. Each run is refused before placement (seconds); the in-process refusals of every
key are in tests/unit/test_bad_input.py."""

from __future__ import annotations

import pytest
from cli_run import electrodem

from electrodem.engine.arch import probe_backend


def _error_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("electrodem: configuration error:")]


def test_gpu_engine_without_a_gpu_is_refused_before_placement(tmp_path):
    """Without a GPU, Taichi segfaults inside ti.init (after placing the particles, before the fix):
    the backend is probed in a child process first and the run is refused by name."""
    if probe_backend("gpu") is None:
        pytest.skip("this machine has a GPU: engine=gpu is a valid choice here")
    run = tmp_path / "gpu"
    p = electrodem("+experiment=smoke", "engine=gpu", f"hydra.run.dir={run}", check=False)
    assert p.returncode == 2, p.stderr
    (line,) = _error_lines(p.stderr)
    assert "engine.arch='gpu' is invalid" in line and "no usable GPU" in line, line
    assert "Traceback" not in p.stderr
    assert not (run / "snapshots").exists() and not (run / "checkpoint.npz").exists()
    assert not (run / "resolved_config.yaml").exists()  # refused before the run wrote anything


def test_missing_checkpoint_is_refused_naming_the_file(tmp_path):
    run = tmp_path / "resume"
    missing = tmp_path / "nonexistent" / "checkpoint.npz"
    p = electrodem("+experiment=smoke", "route=place", f"resume_from={missing}", f"hydra.run.dir={run}",
                   check=False)
    assert p.returncode == 2, p.stderr
    (line,) = _error_lines(p.stderr)
    assert f"resume_from='{missing}' is invalid" in line and "no such file" in line, line
    assert "Traceback" not in p.stderr and not (run / "snapshots").exists()


def test_analyse_refuses_a_corrupt_microstructure_naming_the_file(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "microstructure.npz").write_text("not a snapshot\n")
    p = electrodem("analyse", str(run), check=False)
    assert p.returncode == 2, p.stderr
    assert f"{run / 'microstructure.npz'}: not a NumPy .npz archive" in p.stderr, p.stderr
    assert "Traceback" not in p.stderr and not (run / "analysis.json").exists()
