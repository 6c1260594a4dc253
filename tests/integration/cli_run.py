"""``electrodem(...)``: the CLI run as a user runs it, shared by the integration tests.

By default a run is a subprocess (``python -m electrodem.cli``): exit codes, stderr and a fresh process
are what a user sees. ``in_process=True`` runs the same entry point (`electrodem.cli.main`, Hydra and
all) inside the test process instead. The long chaotic routes use it: Taichi compiles each kernel once
per process and engine store, and a subprocess pays that compilation (and the imports) on every run,
while in the test worker the kernels compiled by earlier runs on the same pooled stores are reused. A
run that refuses its input or fails still ends in ``SystemExit``; the result carries its code.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout


def electrodem(*args: str, check: bool = True, timeout: float = 600,
               in_process: bool = False) -> subprocess.CompletedProcess:
    """Run ``electrodem *args`` off-screen; with ``check``, a non-zero exit fails the test with the
    run's output. ``timeout`` (s) bounds a subprocess only."""
    if in_process:
        p = _in_process(args)
    else:
        env = {**os.environ, "PYVISTA_OFF_SCREEN": "true", "HYDRA_FULL_ERROR": "0"}
        p = subprocess.run([sys.executable, "-m", "electrodem.cli", *args], capture_output=True, text=True,
                           env=env, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"electrodem {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


def _in_process(args: tuple[str, ...]) -> subprocess.CompletedProcess:
    from hydra.core.global_hydra import GlobalHydra

    from electrodem import cli

    out, err = io.StringIO(), io.StringIO()
    argv, code = sys.argv, 0
    sys.argv = ["electrodem", *args]
    os.environ.setdefault("PYVISTA_OFF_SCREEN", "true")
    try:
        with redirect_stdout(out), redirect_stderr(err):
            cli.main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = argv
        GlobalHydra.instance().clear()  # the next run composes its own configuration
    return subprocess.CompletedProcess(["electrodem", *args], code, out.getvalue(), err.getvalue())
