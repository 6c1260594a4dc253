"""Bad input through the CLI, as a user meets it: exit code 2, one line naming the key or file, and
nothing computed. Each run is refused before placement (seconds); the in-process refusals of every
key are in tests/unit/test_bad_input.py. Also the output faults a user meets: an output directory that
cannot be made, a full disk (exit code 4, last checkpoint intact)."""

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


def test_an_output_directory_that_cannot_be_created_is_refused_in_one_line(tmp_path):
    """Hydra creates the run directory before the run starts and died there with a traceback
    (NotADirectoryError) when a path component is a file: refused by name first."""
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    for args in (("hydra.run.dir=" + str(blocker / "run"),), ("-m", f"hydra.sweep.dir={blocker / 'sweep'}")):
        p = electrodem("+experiment=smoke", "route=place", *args, check=False)
        assert p.returncode == 2, p.stderr
        (line,) = _error_lines(p.stderr)
        assert "dir=" in line and "is invalid" in line and f"{blocker} is not a directory" in line, line
        assert "Traceback" not in p.stderr


def test_a_full_disk_stops_the_run_in_one_line_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    """The final snapshot's write fails half-way as on a full disk (ENOSPC): exit code 4, one line
    naming the file, no half-written file left, and checkpoint.npz still holds the completed stage
    (snapshots are written aside and renamed, so a write cut short never replaces a good file)."""
    import errno

    import numpy as np

    from electrodem.io.snapshot import Microstructure

    real = np.savez_compressed

    def full_disk(file, *args, **kwargs):
        if "microstructure" in str(file):
            with open(file, "wb") as f:
                f.write(b"PK\x03\x04 half a zip")
            raise OSError(errno.ENOSPC, "No space left on device", str(file))
        return real(file, *args, **kwargs)

    monkeypatch.setattr(np, "savez_compressed", full_disk)
    run = tmp_path / "run"
    p = electrodem("+experiment=smoke", "route=place", f"hydra.run.dir={run}", check=False, in_process=True)
    assert p.returncode == 4, p.stderr
    (line,) = [ln for ln in p.stderr.splitlines() if ln.startswith("electrodem: cannot write")]
    assert "microstructure" in line and "No space left on device" in line and str(run) in line, line
    assert not list(run.glob("*.tmp.npz")) and not (run / "microstructure.npz").exists()
    assert Microstructure.load(run / "checkpoint.npz").metadata["completed_stages"] == ["place"]



def test_a_failed_transport_solve_ends_the_run_in_one_line(tmp_path, monkeypatch):
    """A voxel solve that fails on a spanning phase (`TransportSolveError`, e.g. NaN) is neither a
    sigma = 0 result nor a traceback: exit code 5, one line, checkpoint.npz holding the last stage."""
    from electrodem.analysis import transport
    from electrodem.io.snapshot import Microstructure

    def fail(self):
        raise transport.TransportSolveError("voxel transport along z: the solve failed (test)")

    monkeypatch.setattr(transport.TransportSolver, "solve", fail)
    run = tmp_path / "run"
    p = electrodem("+experiment=smoke", "route=place", f"hydra.run.dir={run}", check=False, in_process=True)
    assert p.returncode == 5, p.stderr
    (line,) = [ln for ln in p.stderr.splitlines() if ln.startswith("electrodem: analysis failed")]
    assert "the solve failed (test)" in line and "Traceback" not in p.stderr
    assert not (run / "metrics.json").exists()
    assert Microstructure.load(run / "checkpoint.npz").metadata["completed_stages"] == ["place"]
