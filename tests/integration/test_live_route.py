"""One live engine state across process steps (`electrodem.process.live`), on small analytic beds.

Checked, each exactly (the carried quantities are copied, not recomputed), and on three random
elastic–plastic beds the same two-pass property contact by contact, with the thickness compared
against the seed scatter:
* two calender passes at the same gap on a Thornton–Ning monolayer: the collector contacts' largest
  overlap dm after pass 2 is not below that after pass 1 for any sphere (dm is a running maximum and is
  carried), and the layer after pass 2 is not thicker than after pass 1; between the passes the
  collector carries exactly the weight (1 %), where a fresh engine state at the same positions pushes
  with the plastic load (> 100 x the weight: the flattening read as a new contact);
* bonds made on the live state before a press are in the engine and in the snapshot after it, with the
  same ends, and survive the snapshot's save/load;
* JKR contact flags survive the reconfiguration into a press that keeps ``cohesion: jkr`` and are
  dropped by one with ``cohesion: none``.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from electrodem.engine import ContactModel, EngineOptions, Wall
from electrodem.engine.bonds import Bonds
from electrodem.engine.extensions import Extension
from electrodem.io.snapshot import Microstructure, Species
from electrodem.process.calender import CalenderParams, _build_sim, calender
from electrodem.process.compact import CompactParams, compact
from electrodem.process.engine_map import ContactParams, ShortcutParams, engine_materials
from electrodem.process.live import EngineSetup, engine_for, with_engine_extras
from electrodem.process.place import sequential_bed
from electrodem.process.settle import SettleParams, settle

R_P = 10e-6
E = 1e9
NU = 0.3
OPTS = EngineOptions(arch="cpu", precision="f64")


def _layer(n_side: int, spacing: float, layers: int = 1) -> Microstructure:
    g = (np.arange(n_side) + 0.5) * spacing
    x, y, z = np.meshgrid(g, g, R_P + 2 * R_P * np.arange(layers), indexing="ij")
    pos = np.column_stack([x.ravel(), y.ravel(), z.ravel()])
    box = np.array([n_side * spacing, n_side * spacing, (2 * layers + 2) * R_P])
    sp = Species("am", "AM", 2500.0, E, NU, surface_energy_J_per_m2=0.05)
    return Microstructure(pos, np.full(len(pos), R_P), np.zeros(len(pos), int), (sp,), box)


def _plastic_pass() -> CalenderParams:
    e_star = 1.0 / (2 * (1 - NU**2) / E)
    # Gravity holds each relaxed sphere on the collector (without it a sphere unloaded to zero force
    # drifts with its residual velocity); 1000 m/s^2 adds an elastic Hertz overlap of only 0.3 nm. The
    # relaxation runs to kinetic < 1e-12 x the elastic energy at the minimum gap: at rest (the default
    # 1e-4 leaves a sphere bouncing on the collector with an amplitude of ~10 nm).
    contact = ContactParams(normal="thornton_ning", yield_pressure_MPa={"am": 0.01 * e_star * 1e-6},
                            friction=0.3, rolling_friction=0.0, cohesion="none")
    return CalenderParams(geometry="nip", roll_radius_m=0.05, control="gap", gap_um=2 * R_P * 1e6 * 0.98,
                          contact=contact, line_speed_m_per_s=10.0, samples_per_nip=50,
                          gravity_m_per_s2=1000.0, relax_ke_ratio=1e-12)


def test_a_second_calender_pass_keeps_the_plastic_history_of_the_first():
    live = SimpleNamespace(sim=None)
    p = _plastic_pass()
    m1, _ = calender(_layer(8, 2.5 * R_P), p, OPTS, progress=False, live=live)
    dm1 = live.sim.wall_history("current_collector")["max_overlap_m"].copy()
    assert dm1.min() > 0  # every sphere was pressed into the collector beyond yield
    # At rest between the passes the collector carries the layer's weight (momentum balance; the
    # relaxed state is on the unloading branch of dm1). A fresh engine state at the same positions
    # reads the kept flattening as a new plastic contact: it pushes with the plastic load instead.
    weight = float(m1.masses_kg.sum()) * p.gravity_m_per_s2
    assert live.sim.wall_state()[0]["load_N"] == pytest.approx(weight, rel=0.01)
    fresh = SimpleNamespace(sim=None)
    floor = Wall((0.0, 0.0, 0.0), (0.0, 0.0, 1.0), "current_collector", name="current_collector")
    sim_f = _build_sim(m1, p, OPTS, [floor], 1.0, fresh)
    sim_f.run(steps=0, progress=False)
    assert sim_f.wall_state()[0]["load_N"] > 100 * weight
    sim_f.free()
    m2, _ = calender(m1, p, OPTS, progress=False, live=live)
    dm2 = live.sim.wall_history("current_collector")["max_overlap_m"]
    assert np.all(dm2 >= dm1)
    # The layer after pass 2 is not thicker than after pass 1. Both rest on the unloading branch of
    # their largest overlap under the same weight, and dm2 >= dm1: equal or lower centres. Tolerance:
    # the relaxation stops at kinetic < 1e-12 x elastic energy at the minimum gap, a residual
    # oscillation of at most 1e-6 of the elastic deflection there (< 0.1 um); 1 nm is far above it.
    assert m2.positions_m[:, 2].mean() <= m1.positions_m[:, 2].mean() + 1e-9
    live.sim.free()


def _random_bed(seed: int, n: int = 80) -> Microstructure:
    """``n`` spheres (r 8-12 um) placed without overlap at solid fraction 0.3 in an 80 um periodic box
    (random sequential addition)."""
    rng = np.random.default_rng(seed)
    r = rng.uniform(8e-6, 12e-6, n)
    side = 80e-6
    pos, h = sequential_bed(r, side, 0.3, rng)
    sp = (Species("am", "AM", 2500.0, E, NU),)
    return Microstructure(pos, r, np.zeros(n, int), sp, np.array([side, side, 2 * h]))


class _ContactWatch(Extension):
    """Keeps, of the pairs it starts with (keys ``min id * K + max id``), those in contact at the end
    of every step since."""

    name = "contact_watch"
    stage = "end_of_step"
    K = 1 << 20
    EVERY = 10

    def __init__(self, keys: np.ndarray) -> None:
        self.alive = np.asarray(keys, np.int64)

    def on_stage(self, sim, stage, time_s, dt_s) -> None:
        # Every EVERY-th step (a per-step check through the public state costs ~3 ms a step). A contact
        # that opened and closed again between two checks counts as persisting: if its fresh dm ended
        # below the old one the test fails, never passes wrongly. In contact: overlap r_a + r_b -
        # |x_a - x_b| > 0 (minimum image in x and y), the engine's definition, for the watched pairs.
        if sim.step % self.EVERY:
            return
        st = sim.state()
        index = np.empty(int(sim.ids.max()) + 1, np.int64)
        index[sim.ids] = np.arange(sim.n)
        a, b = index[self.alive // self.K], index[self.alive % self.K]
        d = st["positions_m"][a] - st["positions_m"][b]
        box = np.asarray(sim.box_m, float)[:2]
        d[:, :2] -= box * np.round(d[:, :2] / box)
        touching = st["radii_m"][a] + st["radii_m"][b] - np.linalg.norm(d, axis=1) > 0
        self.alive = self.alive[touching]


def _plastic_history(sim) -> dict[int, float]:
    """Largest overlap (m) of every pair with a plastic history, keyed as `_ContactWatch` keys them."""
    h = sim.contact_history()
    a, b = sim.ids[h["i"]], sim.ids[h["j"]]
    keys = np.minimum(a, b) * _ContactWatch.K + np.maximum(a, b)
    return {int(k): float(d) for k, d in zip(keys, h["max_overlap_m"], strict=True) if d > 0}


def test_two_passes_over_random_plastic_beds_keep_the_history_and_do_not_thicken():
    """Three random beds (seeds 0-2: the test runs its own seed scatter, as the acceptance asks; its
    assertions hold on any trajectory): settled (Hertz), then two Thornton–Ning nip passes at the same
    gap (92 % of the settled gauge) on the live state. Exact: every sphere–sphere contact that stays
    in contact through pass 2 (checked every 10 steps, see `_ContactWatch`) ends it with a largest
    overlap dm not below its value after pass 1 (a running maximum, carried across the step
    boundary). Statistical: the
    gauge after pass 2 is not above that after pass 1 by more than the scatter of the pass-1 gauge
    over the three seeds (measured: 0.2-0.3 um thinner on each seed, scatter 4.6 um). The relaxation
    after each pass is capped at 5,000 steps: the bed, sprung back off some contacts, then still sinks
    at the terminal speed g / c of the relaxation damping (a full relaxation here takes > 200k steps);
    both passes are measured the same way."""
    e_star = 1.0 / (2 * (1 - NU**2) / E)
    contact = ContactParams(normal="thornton_ning", yield_pressure_MPa={"am": 0.03 * e_star * 1e-6},
                            friction=0.3, rolling_friction=0.0, cohesion="none")
    sh = ShortcutParams(fines_radius_um=0.0, modulus_cap_Pa=None)
    h1, h2, counts = [], [], []
    for seed in range(3):
        live = SimpleNamespace(sim=None)
        bed, _ = settle(_random_bed(seed), SettleParams(contact=ContactParams(cohesion="none"), shortcuts=sh,
                                                        fall_overlap_target=None, overlap_target=0.002),
                        OPTS, progress=False, live=live)
        p = CalenderParams(geometry="nip", roll_radius_m=0.05, control="gap", gap_um=0.92 * bed.top_m() * 1e6,
                           contact=contact, shortcuts=sh, line_speed_m_per_s=10.0, samples_per_nip=50,
                           gravity_m_per_s2=1000.0, max_relax_steps=5000)
        m1, _ = calender(bed, p, OPTS, progress=False, live=live)
        dm1 = _plastic_history(live.sim)
        assert len(dm1) > 50  # the pass flattened many contacts
        watch = live.sim.add_extension(_ContactWatch(np.fromiter(dm1, np.int64)))
        m2, _ = calender(m1, p, OPTS, progress=False, live=live)
        dm2 = _plastic_history(live.sim)
        persisted = live.sim.extension(watch.name).alive
        counts.append(len(persisted))
        assert all(dm2[int(k)] >= dm1[int(k)] for k in persisted)
        h1.append(m1.top_m())
        h2.append(m2.top_m())
        live.sim.free()
    # Not vacuous: how many contacts persist through a pass is chaotic (51 / 69 / 7 on the three beds on
    # one 2-core EPYC; a seed once kept more than 10 on another), so the count is asserted over the beds.
    assert sum(counts) > 30
    assert np.max(np.subtract(h2, h1)) <= np.std(h1, ddof=1)


def _jkr_bed() -> tuple[SimpleNamespace, Microstructure]:
    """Two touching layers (simple cubic, spacing 2r) with JKR contacts formed on the live state."""
    micro = _layer(4, 2.0 * R_P, layers=2)
    contact = ContactParams(friction=0.3, rolling_friction=0.0)
    cc = Wall((0.0, 0.0, 0.0), (0.0, 0.0, 1.0), "current_collector", name="current_collector")
    mats = engine_materials(micro, contact, ShortcutParams(modulus_cap_Pa=None))
    setup = EngineSetup(mats, ContactModel(cohesion="jkr"), [cc], (0.0, 0.0, 0.0),
                        micro.masses_kg, background_damping_per_s=1e5)
    live = SimpleNamespace(sim=None)
    sim = engine_for(live, micro, setup, OPTS)
    sim.run(steps=200, progress=False)
    return live, micro.with_(positions_m=sim.state()["positions_m"])


@pytest.mark.parametrize("cohesion", ["jkr", "none"])
def test_jkr_contacts_and_bonds_carry_through_a_press(cohesion):
    live, micro = _jkr_bed()
    sim = live.sim
    flags0 = sim.contact_history()
    assert flags0["jkr_contact"].sum() >= 4 * 4  # at least the vertical pairs of the two layers
    bonds = sim.add_extension(Bonds(youngs_modulus_Pa=E, poisson_ratio=NU))
    assert len(bonds.create_within(sim, 0.01 * R_P)) >= 4 * 4
    ends0 = {tuple(sorted(e)) for e in zip(bonds.state()["i"], bonds.state()["j"], strict=True)}
    params = CompactParams(target_porosity=0.45, relax_max_steps=2000, plate_speed_m_per_s=0.5,
                           contact=ContactParams(normal="hertz", friction=0.3, rolling_friction=0.0,
                                                 cohesion=cohesion))
    out, _ = compact(with_engine_extras(micro, sim), params, OPTS, progress=False, live=live)
    assert live.sim is sim  # the same simulation went on
    ends1 = {tuple(sorted(e)) for e in zip(out.bonds["i"], out.bonds["j"], strict=True)}
    assert ends1 == ends0
    assert {tuple(sorted(e)) for e in zip(sim.extension(bonds.name).state()["i"],
                                          sim.extension(bonds.name).state()["j"], strict=True)} == ends0
    h1 = sim.contact_history()
    flagged0 = {(a, b) for a, b, f in zip(flags0["i"], flags0["j"], flags0["jkr_contact"], strict=True) if f}
    flagged1 = {(a, b) for a, b, f in zip(h1["i"], h1["j"], h1["jkr_contact"], strict=True) if f}
    if cohesion == "jkr":
        # Compression and release do not pull an adhesive contact apart in this stack: every one stays.
        assert flagged0 <= flagged1
    else:
        assert not flagged1  # the press without cohesion drops the flags (and never sets new ones)
    sim.free()


def test_bonds_and_fields_survive_the_snapshot_round_trip(tmp_path):
    live, micro = _jkr_bed()
    sim = live.sim
    bonds = sim.add_extension(Bonds(youngs_modulus_Pa=E, poisson_ratio=NU))
    bonds.create_within(sim, 0.01 * R_P)
    sim.add_field("binder_kg", np.float64, fill=1.5e-15)
    m = with_engine_extras(micro, sim)
    m.save(tmp_path / "m.npz")
    back = Microstructure.load(tmp_path / "m.npz")
    assert np.array_equal(back.bonds["i"], bonds.state()["i"]) and len(back.bonds["i"]) > 0
    assert np.array_equal(back.fields["binder_kg"], np.full(micro.n, 1.5e-15))
    sim.free()


def test_resume_refuses_an_unreadable_engine_state_and_goes_on_without_a_missing_one(tmp_path):
    from electrodem.config import ConfigError
    from electrodem.process.live import engine_state_path, resume_engine

    snap = tmp_path / "01_settle.npz"
    holder = SimpleNamespace(sim=None)
    assert resume_engine(holder, engine_state_path(snap), "settle", OPTS) is False and holder.sim is None
    engine_state_path(snap).write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError) as e:
        resume_engine(holder, engine_state_path(snap), "settle", OPTS)
    assert str(e.value).startswith("resume_from=") and "01_settle.engine.npz" in str(e.value)
