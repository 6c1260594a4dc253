"""Integration fixtures: one smoke compaction run per chaos case, shared by the routes that start from
its settled bed.

``+experiment=smoke_compact``, ``smoke_calender`` and ``calendering_sweep`` place and settle the same bed
(same materials, RVE and settle keys: coarse fines, no cohesion). ``smoke_bed(chaos)`` runs the whole
``+experiment=smoke_compact`` route (place -> settle -> compact -> analyse) once per chaos case through
the CLI; the compaction test checks that run, and the calender and sweep tests resume from its settled
snapshot (``snapshots/01_settle.npz``, the CLI's own ``resume_from``): the same place -> settle ->
process chains at a fraction of the settling and start-up cost. Under pytest-xdist the tests that share
a bed run on one worker (``xdist_group`` per chaos case, set in the root conftest), so each bed is
settled once per run.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from cli_run import electrodem


@pytest.fixture(scope="session")
def smoke_bed(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``smoke_bed(chaos) -> run directory`` of that chaos case's ``+experiment=smoke_compact`` run (made
    on first use); its settled bed is ``snapshots/01_settle.npz``."""
    beds: dict[object, Path] = {}

    def get(chaos) -> Path:  # chaos: the root conftest's Chaos
        if chaos not in beds:
            run = tmp_path_factory.mktemp(f"smoke_bed_{chaos.id}") / "run"
            electrodem("+experiment=smoke_compact", *chaos.overrides(), f"hydra.run.dir={run}",
                       in_process=True)
            beds[chaos] = run
        return beds[chaos]

    return get

