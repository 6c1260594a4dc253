"""Plate compaction (electrodem.process.compact): an elastic simple-cubic stack against Hertz theory
(loading curve, full elastic recovery), a Thornton–Ning (plastic) stack against the closed-form
residual overlaps (permanent densification, spring-back), servo pressure control, the plate force
against the particle–plate contact forces, the Love–Weber stress identity (with friction), porosity
vs pressure on a random bed, and config validation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from electrodem.config import ConfigError
from electrodem.engine import EngineOptions
from electrodem.io.snapshot import Microstructure, Species
from electrodem.materials.collector import COLLECTORS
from electrodem.process.compact import CONTACT, CompactParams, bed_tangent_stiffness_N_per_m, compact
from electrodem.process.engine_map import TOOL_STEEL, ContactParams, ShortcutParams
from electrodem.process.place import sequential_bed

R = 5e-6
E, NU, RHO = 5e7, 0.3, 2000.0
OPTS = EngineOptions()
E_PP = 1.0 / (2 * (1 - NU**2) / E)
"""E* of two spheres (Pa)."""
E_FLOOR = 1.0 / ((1 - NU**2) / E + (1 - COLLECTORS["aluminium"].poisson_ratio ** 2)
                 / COLLECTORS["aluminium"].youngs_modulus_Pa)
E_PLATE = 1.0 / ((1 - NU**2) / E + (1 - TOOL_STEEL.poisson_ratio**2) / TOOL_STEEL.youngs_modulus_Pa)
"""E* of a sphere on the collector (aluminium foil) and on the plate (tool steel): the step's one
material mapping (`electrodem.process.engine_map`), real moduli (the compaction's default)."""


_NO_FINES = ShortcutParams(fines_radius_um=0.0, modulus_cap_Pa=None, rayleigh_fraction=0.2)


def _contact(**kw: object) -> ContactParams:
    """The compaction's contact (elastic Hertz, friction 0.3, no rolling, no adhesion) changed by ``kw``."""
    return ContactParams(**{**CONTACT, **kw})


def _species() -> tuple[Species, ...]:
    return (Species("am", "AM", RHO, E, NU),)


def _cubic_stack(n_xy: int = 4, n_z: int = 8) -> Microstructure:
    """n_xy x n_xy columns of n_z touching spheres (simple cubic, spacing 2R) on the collector."""
    g = (np.arange(n_xy) + 0.5) * 2 * R
    zz = R + 2 * R * np.arange(n_z)
    pos = np.array([(x, y, z) for x in g for y in g for z in zz])
    box = np.array([2 * R * n_xy, 2 * R * n_xy, 4 * R * n_z])
    return Microstructure(pos, np.full(len(pos), R), np.zeros(len(pos), int), _species(), box)


def _hertz_stack_pressure_Pa(compression_m: float, n_z: int) -> float:
    """Pressure on a simple-cubic stack of n_z Hertz spheres compressed by ``compression_m`` between
    the collector and the plate: each column carries F through n_z - 1 sphere–sphere contacts
    (R* = R/2) and 2 sphere–wall contacts (R* = R, E* of each wall), d(F) = (3F / (4 E* sqrt(R*)))^(2/3)."""
    c = lambda es, rs: (3.0 / (4.0 * es * math.sqrt(rs))) ** (2.0 / 3.0)  # noqa: E731
    s = (n_z - 1) * c(E_PP, R / 2) + c(E_FLOOR, R) + c(E_PLATE, R)
    return (compression_m / s) ** 1.5 / (2 * R) ** 2


def _random_bed(n: int = 300, seed: int = 1) -> Microstructure:
    """n equal spheres placed without overlap at solid fraction 0.33 (random sequential addition)."""
    L = 12 * R
    pos, h = sequential_bed(np.full(n, R), L, 0.33, np.random.default_rng(seed))
    return Microstructure(pos, np.full(n, R), np.zeros(n, int), _species(), np.array([L, L, 2 * h]))


def test_elastic_stack_follows_hertz_and_springs_back_fully():
    micro = _cubic_stack()
    h0 = 16 * R
    params = CompactParams(target_thickness_um=(h0 - 0.1 * R) * 1e6, target_porosity=None,
                           contact=_contact(restitution=0.5), shortcuts=_NO_FINES, plate_speed_m_per_s=2e-3,
                           record_every_steps=100)
    out, rep = compact(micro, params, OPTS, progress=False)
    curve = rep["curve"]
    load = [k for k, s in enumerate(curve["stage"]) if s == "load"]
    # Quasi-static loading along the analytic Hertz stack curve (dynamic error of a slow plate: 3 %).
    for k in load[len(load) // 2:]:
        p_th = _hertz_stack_pressure_Pa(h0 - curve["plate_z_m"][k], 8)
        assert curve["pressure_Pa"][k] == pytest.approx(p_th, rel=0.03)
    # No plasticity, no rearrangement (a column cannot buckle when every force is axial): the stack
    # returns to its initial thickness; the residual is the drift allowed by the relaxation damping
    # (< 0.1 % of a radius) against a 0.1 R compression, hence 2 %.
    assert rep["elastic_recovery_pct"] == pytest.approx(100.0, abs=2.0)
    assert rep["final"]["thickness_m"] == pytest.approx(h0, rel=2e-4)
    assert rep["relax_converged"] and rep["unload_converged"]
    assert out.metadata["shortcuts"]["compact"]["plate_speed_up_factor"] == pytest.approx(2.0)


def test_servo_reaches_the_target_pressure_and_the_hertz_gap():
    p_target = _hertz_stack_pressure_Pa(0.1 * R, 8)
    params = CompactParams(mode="pressure", target_pressure_MPa=p_target * 1e-6, plate_speed_m_per_s=2e-3,
                           contact=_contact(restitution=0.5), shortcuts=_NO_FINES, record_every_steps=100)
    _, rep = compact(_cubic_stack(), params, OPTS, progress=False)
    assert rep["load_converged"]
    assert rep["loaded"]["pressure_Pa"] == pytest.approx(p_target, rel=params.pressure_tolerance)
    # The gap where it holds is the Hertz stack's (0.1 R compression) within the pressure band:
    # d ~ F^(2/3), so 3 % in pressure is 2 % in compression.
    assert 16 * R - rep["loaded"]["thickness_m"] == pytest.approx(0.1 * R, rel=0.03)


def test_bed_tangent_stiffness_is_the_hertz_derivative_from_the_approach_records():
    # F = C delta^1.5 from first contact at z = 1 um (between the 2nd and 3rd record): dF/d(delta) at
    # the last record, exact up to the half-record uncertainty of the touch point (0.05 um of 0.6 um).
    z = 1e-6 - np.array([-0.1, -0.05, 0.05, 0.2, 0.4, 0.6]) * 1e-6
    f = 3.0e4 * np.clip(1e-6 - z, 0, None) ** 1.5
    delta = 0.6e-6
    k = bed_tangent_stiffness_N_per_m(z, f)
    assert k == pytest.approx(1.5 * 3.0e4 * delta**0.5, rel=0.05 / 0.6)
    assert bed_tangent_stiffness_N_per_m(z[:2], f[:2]) is None  # not loaded yet


def test_plate_force_is_the_sum_of_contact_forces_and_particle_stress_is_love_weber():
    """Frictionless, undamped contacts (restitution 1): the engine's plate load equals the sum of the
    particle–plate Hertz forces at every recorded step to round-off; the particle stress of a sphere
    pressed by a plate is F l / V (Love–Weber with one loaded contact, lever l = R - d)."""
    from electrodem.engine import ContactModel, Material, Simulation, Wall, init
    from electrodem.process.compact import particle_stress_Pa, wall_contact_forces_N

    micro = _random_bed(150)
    frictionless = _contact(friction=0.0, tool_friction=0.0, restitution=1.0)
    params = CompactParams(target_porosity=0.45, contact=frictionless, shortcuts=_NO_FINES,
                           plate_speed_m_per_s=0.2, record_every_steps=200)
    _, rep = compact(micro, params, OPTS, progress=False)
    c = rep["curve"]
    loaded = [k for k in range(len(c["step"])) if c["plate_force_N"][k] > 0]
    assert len(loaded) > 5
    for k in loaded:
        assert c["plate_contact_force_sum_N"][k] == pytest.approx(c["plate_force_N"][k], rel=1e-9)
    # Love–Weber on a single sphere pressed between two walls: sigma_zz = 3F / (2 pi R^2).
    init(OPTS)
    sim = Simulation([Material("m", RHO, E, NU, restitution=1.0)], box_m=(8 * R, 8 * R, 4 * R),
                     contact=ContactModel(tangential="none"), gravity_m_per_s2=(0, 0, 0),
                     record_wall_forces=True,
                     walls=[Wall((0, 0, 0), (0, 0, 1), "m"), Wall((0, 0, 1.98 * R), (0, 0, -1), "m")])
    sim.add_particles(np.array([[4 * R, 4 * R, R]]), R, "m")
    sim.run(steps=0, progress=False)
    f_top = wall_contact_forces_N(sim, 1)[0]
    s = particle_stress_Pa(sim)[0]
    assert sim.wall_state()[1]["load_N"] == pytest.approx(f_top, rel=1e-12)
    # Lever arms r - d (top, d = 0.02 R) and r (bottom, just touching: no force) -> F (R - d) / V.
    assert s[2, 2] == pytest.approx(f_top * 0.98 * R / (4 / 3 * np.pi * R**3), rel=1e-12)
    sim.free()


PY = 2e6  # Pa: p_y / E* = 0.073, yield at an overlap of 0.0065 R for R* = R/2


def _tn_overlaps_m(force_N: float, r_star_m: float, p_y: float, e_s: float = E_PP) -> tuple[float, float]:
    """Thornton–Ning (1998) loading overlap and elastic (recoverable) part of a contact of effective
    modulus ``e_s`` carrying ``force_N``: Hertz below F_y, then d = d_y + (F - F_y) / (pi p_y R*);
    unloading recovers w = 3 F / (4 E* a_p), a_p^2 = (2 F + F_y) / (2 pi p_y). A sphere on an elastic
    wall yields at the sphere's p_y."""
    a_y = math.pi * p_y * r_star_m / (2 * e_s)
    d_y = a_y**2 / r_star_m
    f_y = 4 / 3 * e_s * a_y * d_y
    if force_N <= f_y:
        d = (3 * force_N / (4 * e_s * math.sqrt(r_star_m))) ** (2 / 3)
        return d, d
    a_p = math.sqrt((2 * force_N + f_y) / (2 * math.pi * p_y))
    return d_y + (force_N - f_y) / (math.pi * p_y * r_star_m), 3 * force_N / (4 * e_s * a_p)


def _tn_stack(compression_m: float, n_z: int, p_y: float) -> tuple[float, float]:
    """(pressure (Pa), thickness after unloading (m)) of a simple-cubic Thornton–Ning stack of n_z
    spheres compressed by ``compression_m`` and released. Unloaded, every contact keeps its plastic
    overlap d - w except the plate's (a sphere's top is measured, the dent is not kept)."""
    from scipy.optimize import brentq

    def total(f: float) -> float:
        walls = _tn_overlaps_m(f, R, p_y, E_FLOOR)[0] + _tn_overlaps_m(f, R, p_y, E_PLATE)[0]
        return (n_z - 1) * _tn_overlaps_m(f, R / 2, p_y)[0] + walls - compression_m

    f = brentq(total, 1e-20, 1.0, xtol=1e-30, rtol=1e-14)
    d_pp, w_pp = _tn_overlaps_m(f, R / 2, p_y)
    d_pw, w_pw = _tn_overlaps_m(f, R, p_y, E_FLOOR)
    return f / (2 * R) ** 2, 2 * R * n_z - (n_z - 1) * (d_pp - w_pp) - (d_pw - w_pw)


def _plastic_run(p_y_MPa: float) -> dict:
    h0 = 8 * R
    params = CompactParams(target_thickness_um=(h0 - 0.25 * R) * 1e6, target_porosity=None,
                           contact=_contact(restitution=0.5, normal="thornton_ning",
                                            yield_pressure_MPa={"am": p_y_MPa}),
                           shortcuts=_NO_FINES, plate_speed_m_per_s=5e-3, record_every_steps=100)
    return compact(_cubic_stack(n_z=4), params, OPTS, progress=False)[1]


def test_plastic_stack_keeps_its_densification_and_springs_back_by_the_thornton_ning_amount():
    """4 x 4 columns of 4 spheres, Thornton–Ning with p_y = 2 MPa, compressed by 0.25 R (3.1 %) between
    the aluminium collector and the steel plate and released: closed form 1.725 % spring-back (53.5 %
    of the compression recovered, 46.5 % kept)."""
    rep = _plastic_run(PY * 1e-6)
    p_th, h_th = _tn_stack(0.25 * R, 4, PY)
    # Loaded at the plate gap: the plastic stack's pressure (dynamic error of the plate: 3 %).
    assert rep["loaded"]["pressure_Pa"] == pytest.approx(p_th, rel=0.03)
    # Final thickness: the plastic overlaps of the closed form (measured: within 1.5e-4 R). Tolerance
    # 1e-3 R on a 0.25 R compression: the relaxation damping's drift (< 0.1 % of a radius per sphere).
    assert rep["final"]["thickness_m"] == pytest.approx(h_th, abs=1e-3 * R)
    sb_th = 100 * (h_th - (8 * R - 0.25 * R)) / (8 * R - 0.25 * R)
    assert sb_th == pytest.approx(1.725, abs=0.001)
    assert rep["spring_back_pct"] == pytest.approx(sb_th, abs=0.03)
    # Permanent densification: 46.5 % of the compression kept (elastic: 0 %), porosity down by 0.007.
    assert rep["elastic_recovery_pct"] == pytest.approx(100 * (h_th - 7.75 * R) / (0.25 * R), abs=1.0)
    assert rep["final"]["porosity"] < rep["initial"]["porosity"] - 0.005
    # The plate force is the sum of the per-particle plate forces of the contact law (plastic, damped).
    c = rep["curve"]
    loaded = [k for k in range(len(c["step"])) if c["plate_force_N"][k] > 0]
    assert len(loaded) > 10
    for k in loaded:
        assert c["plate_contact_force_sum_N"][k] == pytest.approx(c["plate_force_N"][k], rel=1e-9)


def test_plastic_stack_with_a_huge_yield_pressure_recovers_as_the_elastic_one():
    rep = _plastic_run(1e6)  # 1 TPa: never reached, Hertz throughout
    assert rep["loaded"]["pressure_Pa"] == pytest.approx(_hertz_stack_pressure_Pa(0.25 * R, 4), rel=0.03)
    assert rep["elastic_recovery_pct"] == pytest.approx(100.0, abs=2.0)
    assert rep["final"]["thickness_m"] == pytest.approx(8 * R, rel=2e-4)


def test_particle_stress_with_friction_is_the_contact_virial():
    """A frictional pair sheared sideways: the exported vectors rebuild each particle's force (normal
    and tangential), and sum_i V_i sigma_i equals the engine's contact virial (stress_tensor x V)."""
    from electrodem.engine import ContactModel, Material, Simulation, init
    from electrodem.process.compact import particle_stress_Pa

    init(OPTS)
    sim = Simulation([Material("m", RHO, E, NU, restitution=0.5, friction=0.5)], box_m=(8 * R, 8 * R, 8 * R),
                     contact=ContactModel(), gravity_m_per_s2=(0, 0, 0), periodic=(True, True, True))
    x = np.array([[3 * R, 4 * R, 4 * R], [4.6 * R, 4 * R, 5.1 * R]])
    x[1] = x[0] + (x[1] - x[0]) / np.linalg.norm(x[1] - x[0]) * 1.998 * R
    sim.add_particles(x, R, "m", velocities_m_per_s=np.array([[0, 0.5, 0], [0, -0.5, 0]]))
    sim.run(steps=5, progress=False)
    c = sim.contact_arrays()
    assert len(c["i"]) == 1 and c["tangential_force_N"][0] > 0.05 * abs(c["normal_force_N"][0])
    st = sim.state()
    d = st["positions_m"][c["i"][0]] - st["positions_m"][c["j"][0]]
    assert np.allclose(c["branch_vector_m"][0], d, rtol=0, atol=1e-12 * R)
    assert np.allclose(c["normal"][0], d / np.linalg.norm(d), rtol=0, atol=1e-12)
    f_i = c["normal_force_N"][0] * c["normal"][0] + c["tangential_force_vector_N"][0]
    assert abs(c["tangential_force_vector_N"][0] @ c["normal"][0]) < 1e-12 * np.linalg.norm(f_i)
    assert np.allclose(f_i, st["forces_N"][c["i"][0]], rtol=1e-12, atol=1e-12 * np.linalg.norm(f_i))
    s = particle_stress_Pa(sim)
    v_sum = np.einsum("i,ijk->jk", 4 / 3 * np.pi * st["radii_m"] ** 3, s)
    virial = sim.stress_tensor(kinetic=False) * float(np.prod(sim.box_m))
    assert np.allclose(v_sum, virial, rtol=0, atol=1e-10 * np.abs(virial).max())
    assert abs(v_sum[1, 0]) > 0.05 * abs(v_sum[0, 0])  # the friction's part is there
    sim.free()


@pytest.mark.chaotic
def test_porosity_falls_as_pressure_rises_on_a_random_bed(chaos):
    micro = _random_bed(200, seed=2 + chaos.seed)
    micro = micro.with_(positions_m=chaos.perturb(micro.positions_m, micro.radii_m, micro.box_m))
    params = CompactParams(target_porosity=0.44, contact=_contact(), shortcuts=_NO_FINES,
                           plate_speed_m_per_s=0.2, record_every_steps=250)
    out, rep = compact(micro, params, OPTS, progress=False)
    c = rep["curve"]
    k = [i for i, s in enumerate(c["stage"]) if s == "load" and c["pressure_Pa"][i] > 0]
    p = np.array(c["pressure_Pa"])[k]
    eps = np.array(c["porosity"])[k]
    # The particles, not only the plate, densify: the bulk (half-bulk solid-fraction) porosity of the
    # loaded bed is below the loose bed's (the gauge porosity at the plate falls by construction).
    assert rep["loaded"]["porosity_bulk"] < rep["initial"]["porosity_bulk"] - 0.05
    assert eps[-1] < eps[0]
    # Pressure rises as porosity falls; fluctuations of a dynamic bed (force-chain buckling) allowed
    # up to 10 % of the largest pressure.
    assert np.all(np.diff(p) > -0.1 * p.max())
    assert p[-1] == pytest.approx(p.max(), rel=0.1) and p[-1] > 20 * p[0]
    # A frictional random bed rearranges: it keeps part of the densification (porosity below the
    # initial one) and springs back only partly.
    assert rep["final"]["porosity"] < rep["initial"]["porosity"]
    assert 0 < rep["spring_back_pct"] and rep["final"]["thickness_m"] > rep["loaded"]["thickness_m"]
    # Over the load-bearing part of the curve the porosity falls as the pressure rises: a positive
    # Heckel slope (ln(1/eps) rising with p), and a Meyer law whose limit porosity lies below the
    # porosity where the fit starts. Seeds 0-2 gave k = 6-27 /MPa; a bed that did not densify under
    # its growing load (a plate pushing particles aside, a curve read backwards) gives k <= 0.
    fits = rep["fits"]
    assert fits["heckel"]["k_per_MPa"] > 0
    assert fits["meyer"]["eps_min"] < fits["porosity_at_first_point"]
    assert out.n == micro.n and np.isclose(out.masses_kg.sum(), micro.masses_kg.sum(), rtol=1e-12)
    assert out.fields["particle_stress_max_load_Pa"].shape == (micro.n,)
    assert rep["max_particle_stress_Pa"] >= rep["max_pressure_Pa"]


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"mode": "roll"}, "compact.mode"),
        ({"target_porosity": 1.2}, "compact.target_porosity"),
        ({"target_porosity": 0.3, "target_thickness_um": 50.0}, "compact.target_porosity"),
        ({"mode": "pressure"}, "compact.target_pressure_MPa"),
        ({"plate_speed_m_per_s": -1.0}, "compact.plate_speed_m_per_s"),
        ({"contact": {"normal": "jkr"}}, "compact.contact"),
        ({"record_every_steps": 0}, "compact.record_every_steps"),
    ],
)
def test_bad_values_are_rejected_naming_the_key(kwargs, key):
    with pytest.raises(ConfigError) as e:
        CompactParams(**kwargs)
    assert key in str(e.value)


def test_targets_impossible_for_the_bed_are_rejected_before_compute():
    with pytest.raises(ConfigError, match="compact.target_porosity"):
        compact(_cubic_stack(), CompactParams(target_porosity=0.9), OPTS, progress=False)
    with pytest.raises(ConfigError, match="compact.target_thickness_um"):
        compact(_cubic_stack(), CompactParams(target_porosity=None, target_thickness_um=1.0), OPTS,
                progress=False)
