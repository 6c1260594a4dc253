"""Integration fixtures: one settled smoke bed per chaos case, shared by the routes that start from it.

``+experiment=smoke_compact``, ``smoke_calender`` and ``calendering_sweep`` place and settle the same bed
(same materials, RVE and settle keys: coarse fines, no cohesion). Settling it once per chaos case
through the CLI (``route=place_settle``) and resuming each route from its ``checkpoint.npz`` (the CLI's
own ``resume_from``) tests the same place -> settle -> process chain at a quarter of the settling cost.
Under pytest-xdist the tests that share a bed run on one worker (``xdist_group`` per chaos case, set
in the root conftest), so each bed is settled once per run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def smoke_bed(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``smoke_bed(chaos) -> checkpoint.npz`` of the settled bed of that chaos case (made on first use)."""
    beds: dict[object, Path] = {}

    def get(chaos) -> Path:  # chaos: the root conftest's Chaos
        if chaos not in beds:
            run = tmp_path_factory.mktemp(f"smoke_bed_{chaos.id}") / "run"
            env = {**os.environ, "PYVISTA_OFF_SCREEN": "true", "HYDRA_FULL_ERROR": "0"}
            args = ["+experiment=smoke_compact", "route=place_settle", *chaos.overrides(),
                    f"hydra.run.dir={run}"]
            p = subprocess.run([sys.executable, "-m", "electrodem.cli", *args], capture_output=True,
                               text=True, env=env, timeout=600)
            assert p.returncode == 0, f"settling the shared smoke bed failed:\n{p.stdout}\n{p.stderr}"
            beds[chaos] = run / "checkpoint.npz"
        return beds[chaos]

    return get
