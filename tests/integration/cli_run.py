"""``electrodem(...)``: the CLI run as a user runs it (a subprocess), shared by the integration tests."""

from __future__ import annotations

import os
import subprocess
import sys


def electrodem(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``python -m electrodem.cli *args`` off-screen; with ``check``, a non-zero exit fails the test
    with the run's output."""
    env = {**os.environ, "PYVISTA_OFF_SCREEN": "true", "HYDRA_FULL_ERROR": "0"}
    p = subprocess.run([sys.executable, "-m", "electrodem.cli", *args], capture_output=True, text=True,
                       env=env, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"electrodem {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p
