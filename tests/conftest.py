"""Shared test fixtures: repository paths, a loaded materials library, the engine thread count and the
robustness matrix of the chaotic tests.

Options (``pytest --help``, group *electrodem*):

* ``--cpu-threads N``: the engine's CPU thread count for the whole run, the CLI subprocesses included
  (through ``$ELECTRODEM_CPU_THREADS``: Taichi ignores ``OMP_NUM_THREADS``). The header states what
  was asked, the closing summary what Taichi ran with.
* ``--chaos``: every test marked ``chaotic`` (its outcome rests on a chaotic DEM trajectory: settling,
  compaction, calendering, shear) runs over the robustness matrix `CHAOS_MATRIX` (three seeds, and
  the first seed with the initial positions perturbed by a relative 1e-12) instead of its one
  default case. Such a test takes the ``chaos`` fixture and applies it to its initial state; a
  chaotic test without it is a collection error, so the matrix cannot silently skip one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml

os.environ.setdefault("PYVISTA_OFF_SCREEN", "true")

REPO = Path(__file__).resolve().parents[1]
PERTURBATION_REL = 1e-12
"""Relative perturbation of the initial positions in the robustness matrix (issue: a result that moves
beyond its tolerance under it depends on round-off, i.e. on the CPU, not on physics)."""


@dataclass(frozen=True)
class Chaos:
    """One case of the robustness matrix: the seed of the initial state and a relative perturbation of
    its positions (0 = none)."""

    seed: int = 0
    perturbation_rel: float = 0.0

    @property
    def id(self) -> str:
        return f"seed{self.seed}" + (f"-perturbed{self.perturbation_rel:g}" if self.perturbation_rel else "")

    def perturb(self, positions_m: np.ndarray, radii_m: np.ndarray, box_m: np.ndarray) -> np.ndarray:
        """The positions moved by up to ``perturbation_rel`` x the box length per coordinate (a copy;
        unchanged when the perturbation is 0). Same rule as ``place.position_perturbation_rel``."""
        if not self.perturbation_rel:
            return np.array(positions_m, copy=True)
        from electrodem.process.place import perturb_positions

        box = np.where(np.asarray(box_m) > 0, box_m, np.ptp(positions_m, axis=0) + 2 * radii_m.max())
        return perturb_positions(positions_m, radii_m, box, self.perturbation_rel, self.seed)

    def offset(self, k: int) -> Chaos:
        """The same case with the seed moved by ``k`` (for a test whose default bed is another seed)."""
        return Chaos(self.seed + k, self.perturbation_rel)

    def overrides(self) -> list[str]:
        """The same case as Hydra overrides of an ``electrodem`` run."""
        return [f"seed={self.seed}", f"place.position_perturbation_rel={self.perturbation_rel!r}"]


CHAOS_DEFAULT = (Chaos(),)
CHAOS_MATRIX = (Chaos(0), Chaos(1), Chaos(2), Chaos(0, PERTURBATION_REL))


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("electrodem")
    group.addoption("--cpu-threads", type=int, default=None, metavar="N",
                    help="engine CPU threads for the whole run, CLI subprocesses included "
                         "(sets $ELECTRODEM_CPU_THREADS; default: the environment's, else every core)")
    group.addoption("--chaos", action="store_true", default=False,
                    help="run the tests marked 'chaotic' over three seeds and a 1e-12 perturbation")


def pytest_configure(config: pytest.Config) -> None:
    from electrodem.engine.arch import CPU_THREADS_ENV

    n = config.getoption("--cpu-threads")
    if n is not None:
        if n < 1:
            raise pytest.UsageError(f"--cpu-threads={n} is invalid: an integer >= 1")
        os.environ[CPU_THREADS_ENV] = str(n)


def pytest_report_header(config: pytest.Config) -> list[str]:
    from electrodem.engine.arch import CPU_THREADS_ENV

    asked = os.environ.get(CPU_THREADS_ENV) or f"every core ({os.cpu_count()})"
    matrix = ", ".join(c.id for c in CHAOS_MATRIX) if config.getoption("--chaos") else "default case only"
    return [f"electrodem: engine CPU threads asked: {asked}; chaotic tests: {matrix}"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "chaos" in metafunc.fixturenames:
        cases = CHAOS_MATRIX if metafunc.config.getoption("--chaos") else CHAOS_DEFAULT
        metafunc.parametrize("chaos", cases, ids=[c.id for c in cases])


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # tryfirst: pytest-xdist's worker reads the xdist_group marks in its own hook of this name, which
    # otherwise runs first and never sees the marks added here (each worker then settled its own bed).
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        marked = item.get_closest_marker("chaotic") is not None
        uses = "chaos" in fixtures
        if "smoke_bed" in fixtures:
            # One worker per shared bed under pytest-xdist (--dist loadgroup): settled once per run.
            item.add_marker(pytest.mark.xdist_group(f"smoke_bed-{item.callspec.params['chaos'].id}"))
        if marked != uses:
            raise pytest.UsageError(
                f"{item.nodeid}: a test marked 'chaotic' must take the 'chaos' fixture and one that takes "
                "it must be marked 'chaotic' (the robustness matrix runs exactly those)"
            )


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    from electrodem.engine import arch

    opts = arch.current_options()
    if opts is not None:
        terminalreporter.write_line(
            f"electrodem: engine in this process ran arch={opts.arch} precision={opts.precision} "
            f"with {arch.effective_cpu_threads()} CPU thread(s)"
        )


def _config_dir() -> Path:
    from electrodem.cli import config_dir

    return config_dir()


@pytest.fixture(scope="session")
def config_dir() -> Path:
    return _config_dir()


@pytest.fixture(scope="session")
def library(config_dir):
    from electrodem.materials.library import load_library

    raw = {p.stem: yaml.safe_load(p.read_text()) for p in (config_dir / "material").glob("*.yaml")}
    return load_library(raw)


@pytest.fixture(autouse=True)
def _return_engine_storage_to_the_pool():
    """After each test, collect the simulations it left behind. A `Simulation` held in a reference
    cycle (an extension keeps its simulation) is freed only by the cycle collector; until then its
    Taichi store stays taken, and the next test's simulation of the same shape gets a new store, for
    which Taichi compiles every kernel anew (seconds per store, `electrodem.engine.state.MIN_CAPACITY`).
    Collected here, the store goes back to the engine's pool and the next simulation reuses it with its
    compiled kernels. A full collection costs ~0.1-0.5 s in a worker's heap, so it runs only after a
    test that built a simulation."""
    import sys

    sim_mod = sys.modules.get("electrodem.engine.simulation")
    before = sim_mod.Simulation.created if sim_mod else 0
    yield
    sim_mod = sys.modules.get("electrodem.engine.simulation")
    if sim_mod is not None and sim_mod.Simulation.created != before:
        import gc

        gc.collect()
