"""The process recipe end to end: a step added from one module and one config file, repeated in a route
with per-entry overrides, resumed between its two entries (no engine: seconds)."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from cli_run import electrodem

from electrodem.config.errors import ConfigError
from electrodem.io.snapshot import Microstructure
from electrodem.process import recipe
from electrodem.process.recipe import RouteEntry, parse_route, registry

STEP_MODULE = '''
"""A trivial step: lift every particle by ``dz_um``."""
from dataclasses import dataclass

import numpy as np

from electrodem.config.errors import is_number, require
from electrodem.process.recipe import ProcessStep


@dataclass(frozen=True)
class LiftParams:
    dz_um: float = 1.0

    def __post_init__(self) -> None:
        require(is_number(self.dz_um), "lift.dz_um", self.dz_um, "a finite number (um)")


def run(state, params, ctx):
    micro = state.micro
    state.micro = micro.with_(positions_m=micro.positions_m + np.array([0.0, 0.0, params.dz_um * 1e-6]))
    ctx.out("lift.csv").write_text(f"dz_um\\n{params.dz_um}\\n")
    return {"dz_um": params.dz_um, "label": ctx.label}


STEP = ProcessStep(name="lift", params_type=LiftParams, run=run, metrics_block="lift", metrics=dict)
'''


@pytest.fixture()
def plugin(tmp_path, monkeypatch):
    """The step module ``lift_step.py`` on sys.path and its config group ``conf/lift/default.yaml``;
    returns the CLI arguments that bring both in."""
    (tmp_path / "lift_step.py").write_text(textwrap.dedent(STEP_MODULE))
    (tmp_path / "conf" / "lift").mkdir(parents=True)
    (tmp_path / "conf" / "lift" / "default.yaml").write_text("dz_um: 1.0   # lift height (um)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield ["+experiment=smoke", "output.vtu=false", f"hydra.searchpath=[file://{tmp_path / 'conf'}]",
           "+lift=default", "plugins=[lift_step]"]
    sys.modules.pop("lift_step", None)
    recipe._REGISTRY.pop("lift", None)  # the registry is per process: leave it as the other tests expect


ROUTE = "route.steps=[place,lift,{lift:{dz_um:2.5}}]"


def test_a_step_from_one_module_and_one_config_file_runs_twice(tmp_path, plugin):
    run = tmp_path / "run"
    electrodem(*plugin, ROUTE, f"hydra.run.dir={run}", in_process=True)
    m = json.loads((run / "metrics.json").read_text())
    assert m["run"]["steps"] == ["place", "lift", "lift_2"]
    assert m["steps"]["lift"] == {"dz_um": 1.0, "label": "lift"}
    assert m["steps"]["lift_2"] == {"dz_um": 2.5, "label": "lift_2"}  # the entry's override
    assert m["lift"]["dz_um"] == 2.5  # the block comes from the route's last entry
    # Each entry's snapshot is the state after it: the particles rose by exactly dz each time.
    names = ("00_place", "01_lift", "02_lift_2")
    snaps = [Microstructure.load(run / "snapshots" / f"{k}.npz") for k in names]
    for before, after, dz in ((snaps[0], snaps[1], 1e-6), (snaps[1], snaps[2], 2.5e-6)):
        np.testing.assert_allclose(after.positions_m[:, 2] - before.positions_m[:, 2], dz, rtol=0, atol=1e-18)
        assert np.array_equal(after.positions_m[:, :2], before.positions_m[:, :2])
    # A repeated entry writes its own files, the first keeps its name.
    assert (run / "lift.csv").read_text().split() == ["dz_um", "1.0"]
    assert (run / "lift_2_lift.csv").read_text().split() == ["dz_um", "2.5"]


def test_a_route_resumes_between_two_entries_of_one_step(tmp_path, plugin):
    full = tmp_path / "full"
    electrodem(*plugin, ROUTE, f"hydra.run.dir={full}", in_process=True)
    resumed = tmp_path / "resumed"
    after_first = full / "snapshots" / "01_lift.npz"
    electrodem(*plugin, ROUTE, f"resume_from={after_first}", f"hydra.run.dir={resumed}", in_process=True)
    a = Microstructure.load(full / "microstructure.npz")
    b = Microstructure.load(resumed / "microstructure.npz")
    assert np.array_equal(a.positions_m, b.positions_m)
    mb = json.loads((resumed / "metrics.json").read_text())
    assert set(mb["timings_s"]) == {"lift_2", "total"}  # only the second entry ran again


def test_a_bad_override_is_refused_under_its_route_entry(tmp_path, plugin):
    p = electrodem(*plugin, "route.steps=[place,lift,{lift:{dz_um:.inf}}]", f"hydra.run.dir={tmp_path / 'r'}",
                   in_process=True, check=False)
    assert p.returncode == 2, p.stderr
    assert "route.steps.2.lift.dz_um" in p.stderr and not (tmp_path / "r" / "metrics.json").exists()


def test_route_entries_are_labelled_in_order_and_must_start_with_placement():
    steps = registry()
    entries = parse_route(["place", "settle", {"calender": {"gap_fraction": 0.9}}, "calender", "analyse"],
                          steps)
    assert entries == (RouteEntry("place", "place", 1, {}), RouteEntry("settle", "settle", 1, {}),
                       RouteEntry("calender", "calender", 1, {"gap_fraction": 0.9}),
                       RouteEntry("calender", "calender_2", 2, {}), RouteEntry("analyse", "analyse", 1, {}))
    for bad, key in ((["settle"], "route.steps.0"), (["place", "place"], "route.steps.1"),
                     (["place", {"settle": 3}], "route.steps.1.settle"),
                     (["place", {"settle": {}, "compact": {}}], "route.steps.1"), ([], "route.steps")):
        with pytest.raises(ConfigError) as e:
            parse_route(bad, steps)
        assert str(e.value).startswith(f"{key}="), (bad, str(e.value))


def test_every_builtin_step_is_registered_with_its_config_group():
    steps = registry()
    assert set(steps) >= {"place", "settle", "compact", "calender", "shear", "analyse"}
    configs = Path(__file__).parents[2] / "configs"
    for s in steps.values():
        assert (configs / s.config_group / "default.yaml").is_file(), s.name
