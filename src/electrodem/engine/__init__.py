"""electrodem.engine: a Taichi DEM engine for polydisperse spheres. It knows nothing about batteries.

Quick use::

    from electrodem.engine import EngineOptions, init, Simulation, Material, Wall
    init(EngineOptions(arch="cpu", precision="f64"))
    sim = Simulation([Material("glass", 2500, 5e6, 0.3)], box_m=(0.1, 0.1, 0.4),
                     walls=[Wall((0, 0, 0), (0, 0, 1), "glass", name="floor")])
    sim.add_particles(xyz, radii, "glass")
    sim.run(steps=10_000)

Importing this package does not import Taichi; `init` (or the first `Simulation`) does.
"""

from typing import Any

from electrodem.engine.arch import EngineInitError, EngineOptions, current_options, init
from electrodem.engine.model import ContactModel, Material, PairOverride
from electrodem.engine.walls import MAX_WALLS, Wall

_LAZY = {
    "Simulation": "electrodem.engine.simulation",
    "SimulationError": "electrodem.engine.simulation",
    "Guards": "electrodem.engine.simulation",
    "RunResult": "electrodem.engine.simulation",
    "TimeStep": "electrodem.engine.simulation",
}

__all__ = [
    "MAX_WALLS",
    "ContactModel",
    "EngineInitError",
    "EngineOptions",
    "Guards",
    "Material",
    "PairOverride",
    "RunResult",
    "Simulation",
    "SimulationError",
    "TimeStep",
    "Wall",
    "current_options",
    "init",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'electrodem.engine' has no attribute {name!r}")
