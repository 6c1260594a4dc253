"""Process tools: analytic roll (`RollerCylinder`) and triangle-mesh walls (`MeshWall`).

Analytic references: Hertz F = 4/3 E* sqrt(R*) d^1.5 with R* = r R / (r + R) for a sphere on a cylinder
(convex–convex, Johnson §4.2) and R* = r on a plane; Coulomb limit |F_t| = mu F_n once sliding; the
torque of a tangential force F_t at radius R about the roll axis is R F_t. A flat mesh must act exactly
as the planar wall (same law, R* = r, same lever), and forces must balance (sum of particle forces =
gravity + wall reactions).
"""

import math

import numpy as np
import pytest

from electrodem.config import ConfigError
from electrodem.engine import ContactModel, EngineOptions, Material, Simulation, Wall, init
from electrodem.engine.mesh_wall import MeshGeometry, MeshWall, plate_mesh
from electrodem.engine.tools import RollerCylinder

R_P = 2.0e-4  # particle radius (m)


@pytest.fixture(scope="module", autouse=True)
def _engine() -> None:
    init(EngineOptions(arch="cpu", precision="f64"))


def _mats(friction: float = 0.4) -> list[Material]:
    return [
        Material("p", 2500.0, 1.0e8, 0.3, restitution=0.5, friction=friction),
        Material("steel", 7800.0, 2.0e9, 0.3, restitution=0.5, friction=friction),
    ]


def _e_star(sim: Simulation) -> float:
    return float(sim.materials.pair_table(sim.contact)[0, 1, 0])


def test_roller_normal_force_is_hertz_with_convex_r_star() -> None:
    radius, d = 3e-3, 2e-6
    # A wall below holds the sphere; both contacts are primed at the same sphere position.
    floor = Wall((0, 0, 0), (0, 0, 1), "steel", name="floor")
    sim = Simulation(_mats(), box_m=(1e-2, 2e-3, 1e-2), walls=[floor], gravity_m_per_s2=(0, 0, 0))
    sim.add_particles([[5e-3, 1e-3, R_P - d]], R_P, "p")
    roll = sim.add_extension(RollerCylinder(radius, (5e-3, R_P - d + R_P + radius - d), "steel"))
    sim.run(steps=0, progress=False)
    rep = roll.report()
    e_star = _e_star(sim)
    r_star = R_P * radius / (R_P + radius)
    f_hertz = 4.0 / 3.0 * e_star * math.sqrt(r_star) * d**1.5
    assert rep["contacts"] == 1
    assert rep["load_N"] == pytest.approx(f_hertz, rel=1e-9)
    assert rep["line_load_N_per_m"] == pytest.approx(f_hertz / 2e-3, rel=1e-9)
    assert rep["line_load_N_per_mm"] == pytest.approx(f_hertz / 2.0, rel=1e-9)
    assert rep["gap_m"] == pytest.approx(2 * R_P - 2 * d, rel=1e-9)
    # Its stored Hertz energy, 8/15 E* sqrt(R*) d^2.5, counts in the energy guard.
    assert roll.elastic_energy_J(sim) == pytest.approx(8 / 15 * e_star * math.sqrt(r_star) * d**2.5, rel=1e-9)
    # The planar wall at the same overlap uses R* = r: a different force, so R* really differs.
    f_wall = sim.wall_state()[0]["load_N"]
    assert f_wall == pytest.approx(4.0 / 3.0 * e_star * math.sqrt(R_P) * d**1.5, rel=1e-9)
    assert abs(rep["load_N"] / f_wall - 1) > 0.03
    np.testing.assert_allclose(sim.state()["forces_N"][0], [0, 0, f_wall - f_hertz], atol=1e-15)


def test_rotating_roller_drags_at_the_coulomb_limit() -> None:
    mu, radius, d, speed = 0.4, 3e-3, 2e-6, 0.05
    sim = Simulation(
        _mats(mu),
        box_m=(1e-2, 2e-3, 1e-2),
        gravity_m_per_s2=(0, 0, 0),
        contact=ContactModel(damping="none"),
        dt_s=1e-7,
    )
    m = 2500.0 * 4 / 3 * math.pi * R_P**3
    # A very heavy sphere stays put (moves < 1e-9 m) while the roll surface slides over it.
    sim.add_particles([[5e-3, 1e-3, 1e-3]], R_P, "p", masses_kg=[m * 1e8])
    roll = sim.add_extension(
        RollerCylinder(radius, (5e-3, 1e-3 + R_P + radius - d), "steel", surface_speed_m_per_s=speed)
    )
    assert roll.omega == pytest.approx(-speed / radius)
    sim.run(steps=1000, progress=False)
    rep = roll.report()
    ft_on_sphere, fn = -rep["force_N"][0], rep["force_N"][2]
    assert rep["contacts"] == 1 and fn > 0
    # Sliding: the spring (k_t s t ~ 2e-3 N after 1e-4 s) has reached the Coulomb cap. (The sphere's
    # sub-nanometre drift tilts the normal by ~1e-9 rad, hence rel=1e-6 rather than round-off.)
    assert ft_on_sphere == pytest.approx(mu * fn, rel=1e-6)
    assert ft_on_sphere > 0  # dragged along the nip surface velocity (+x)
    lever = radius  # the contact point lies on the roll surface, at R from the axis
    assert rep["torque_N_m"] == pytest.approx(lever * ft_on_sphere, rel=1e-6)
    assert rep["torque_N_m"] * roll.omega < 0  # the particles brake the roll
    # Power the roll delivers: drag force times surface speed (the sphere is at rest).
    assert rep["power_W"] == pytest.approx(ft_on_sphere * speed, rel=1e-6)


def test_roller_servo_reaches_target_line_load() -> None:
    floor = Wall((0, 0, 0), (0, 0, 1), "steel", name="floor")
    sim = Simulation(_mats(), box_m=(1e-2, 2e-3, 1e-2), walls=[floor], gravity_m_per_s2=(0, 0, 0), dt_s=2e-7)
    sim.add_particles([[5e-3, 1e-3, R_P]], R_P, "p")
    target = 2.0  # N/m -> 4 mN over the 2 mm strip
    roll = sim.add_extension(
        RollerCylinder(
            3e-3,
            (5e-3, 2 * R_P + 3e-3 + 1e-6),
            "steel",
            mode="servo",
            target_line_load_N_per_m=target,
            servo_gain_m_per_s_per_N=5.0,
            max_speed_m_per_s=0.01,
        )
    )
    sim.set_background_damping(2e4)
    sim.run(steps=8000, progress=False)
    assert roll.report()["line_load_N_per_m"] == pytest.approx(target, rel=0.01)


PITCH = 2.05 * R_P


def _bed(n_side: int = 4, layers: int = 4, seed: int = 3) -> np.ndarray:
    """A jittered simple-cubic stack of spheres (radii 0.95-1 R_P) nearly touching the floor z = 0."""
    rng = np.random.default_rng(seed)
    pitch = PITCH
    g = np.arange(n_side) * pitch + 0.6 * pitch
    x, y, z = np.meshgrid(g, g, np.arange(layers) * pitch + 1.02 * R_P, indexing="ij")
    pts = np.column_stack([x.ravel(), y.ravel(), z.ravel()])
    return pts + rng.uniform(-0.02, 0.02, pts.shape) * R_P


def _press(top: str) -> tuple[Simulation, list[float], list[float], object]:
    """A bed of 64 spheres on a floor, pressed by a top plate moving down at constant speed."""
    lx = 4 * PITCH
    pts = _bed()
    z0 = float(pts[:, 2].max() + R_P)
    v = (0.0, 0.0, -0.3)
    walls = [Wall((0, 0, 0), (0, 0, 1), "steel", name="floor")]
    if top == "wall":
        walls.append(Wall((0, 0, z0), (0, 0, -1), "steel", mode="velocity", velocity_m_per_s=v, name="top"))
    sim = Simulation(
        _mats(), box_m=(lx, lx, 20 * R_P), walls=walls, gravity_m_per_s2=(0, 0, -9.81), dt_s=2e-7
    )
    sim.add_particles(pts, R_P * np.linspace(0.95, 1.0, len(pts)), "p")
    ext = None
    if top != "wall":
        ext = sim.add_extension(
            MeshWall(plate_mesh((0, lx), (0, lx), z0, (7, 5)), "steel", velocity_m_per_s=v)
        )
    pressures, sums = [], []

    def record(s: Simulation) -> None:
        if ext is None:
            pressures.append(s.wall_state()[1]["pressure_Pa"])
        else:
            pressures.append(ext.report()["pressure_Pa"])
            st = s.state()
            total = st["forces_N"].sum(axis=0)
            weight = st["masses_kg"].sum() * np.array([0, 0, -9.81])
            floor = s.wall_state()[0]["force_N"]
            # sum of particle forces = gravity - floor reaction - mesh reaction
            sums.append(
                np.linalg.norm(total - weight + floor + ext.report()["force_N"]) / np.linalg.norm(total)
            )
        del s

    sim.run(steps=2000, callbacks=[record], every=200, progress=False)
    return sim, pressures, sums, ext


def test_flat_mesh_plate_matches_planar_wall_and_balances_forces() -> None:
    _, p_wall, _, _ = _press("wall")
    _, p_mesh, sums, ext = _press("mesh")
    assert max(p_wall) > 50.0  # the plate really compresses the bed
    # Same law, same geometry: the pressure histories agree far better than the 1 % asked.
    np.testing.assert_allclose(p_mesh, p_wall, rtol=1e-6, atol=1e-9 * max(p_wall))
    assert max(sums) < 1e-9
    assert ext.report()["contacts"] > 10


def test_mesh_contact_is_continuous_across_edges_and_vertices() -> None:
    """Spheres at one overlap, placed on a sweep across a diagonal edge, a grid edge and a vertex of a
    subdivided plate: every one gets exactly one contact with the plane Hertz force."""
    d = 3e-6
    n = 41
    ly = n * 1e-3
    sim = Simulation(_mats(), box_m=(4e-3, ly, 2e-3), gravity_m_per_s2=(0, 0, 0))
    # Plate cells are 1 mm x 1 mm, one sphere per cell row (y = k mm + 0.5 mm): the first 20 sweep x
    # across the cell diagonal at x = 1.5 mm, the next ones across the grid edge x = 2 mm, the last
    # three sit at the vertex (2 mm, k mm) and 0.1 um either side of the grid line y = k mm.
    xs = np.concatenate(
        [np.linspace(1.5e-3 - 1.5 * R_P, 1.5e-3 + 1.5 * R_P, 20), np.linspace(1.99e-3, 2.01e-3, 21)]
    )
    y_rel = np.full(n, 0.5e-3)
    y_rel[-3:] = [1e-7, 0.0, 1e-3 - 1e-7]
    xs[-3:] = 2e-3
    pts = np.column_stack([xs, np.arange(n) * 1e-3 + y_rel, np.full(n, 1e-3)])
    sim.add_particles(pts, R_P, "p")
    mesh = plate_mesh((0, 4e-3), (0, ly), 1e-3 + R_P - d, (4, n))
    ext = sim.add_extension(MeshWall(mesh, "steel"))
    sim.run(steps=0, progress=False)
    f = sim.state()["forces_N"]
    hertz = 4.0 / 3.0 * _e_star(sim) * math.sqrt(R_P) * d**1.5
    assert ext.report()["contacts"] == n
    np.testing.assert_allclose(f[:, 2], -hertz, rtol=1e-9)
    np.testing.assert_allclose(f[:, :2], 0.0, atol=1e-12 * hertz)


def test_mesh_concave_valley_gives_two_contacts_and_ridge_one() -> None:
    # Two planes meeting at a 90 degree edge along y through (0, *, 0).
    v = np.array([[-1, 0, 1], [-1, 1, 1], [0, 0, 0], [0, 1, 0], [1, 0, 1], [1, 1, 1]], float) * 1e-3
    f = np.array([[0, 2, 3], [0, 3, 1], [2, 4, 5], [2, 5, 3]])
    g = MeshGeometry(v, f)
    assert g.plate() is None and g.n_triangles == 4
    v[:, 1] *= 2.0
    sim = Simulation(
        _mats(), box_m=(4e-3, 2e-3, 4e-3), periodic=(False, True, False), gravity_m_per_s2=(0, 0, 0)
    )
    d = 2e-6
    # Valley: sphere centre on the bisector at distance r - d from both faces.
    z = (R_P - d) * math.sqrt(2.0)
    sim.add_particles([[1e-9, 0.5e-3, z]], R_P, "p")
    valley = sim.add_extension(MeshWall((v, f), "steel", name="valley"))
    # Ridge: the same mesh flipped and shifted far away, the sphere above its edge.
    sim.add_particles([[2.5e-3, 0.5e-3, 3e-3 + R_P - d]], R_P, "p")
    vr = v * np.array([1, 1, -1]) + np.array([2.5e-3, 0, 3e-3])
    ridge = sim.add_extension(MeshWall((vr, f), "steel", name="ridge"))
    sim.run(steps=0, progress=False)
    hertz = 4.0 / 3.0 * _e_star(sim) * math.sqrt(R_P) * d**1.5
    assert valley.report()["contacts"] == 2
    assert valley.report()["force_N"][2] == pytest.approx(-2 * hertz / math.sqrt(2), rel=1e-6)
    assert ridge.report()["contacts"] == 1
    assert ridge.report()["force_N"][2] == pytest.approx(-hertz, rel=1e-9)


def test_mesh_broad_phase_bins_are_local() -> None:
    v, f = plate_mesh((0, 1e-2), (0, 1e-2), 0.0, (70, 70))
    g = MeshGeometry(v, f)
    lo, h, dims, start, tris = g.grid(R_P)
    per_cell = np.diff(start)
    assert g.n_triangles == 9800
    # Four times the triangles of the same size: the work per particle (triangles in its cell) is the same.
    big = MeshGeometry(*plate_mesh((0, 2e-2), (0, 2e-2), 0.0, (140, 140))).grid(R_P)
    assert np.diff(big[3]).max() == per_cell.max()
    # About the triangles a sphere's neighbourhood (cell + 2 r) can hold: 2 (0.4 + 0.54)^2 / 0.143^2 ~ 90.
    assert per_cell.max() <= 100
    # Every triangle is listed in each cell its inflated box touches, and only there (spot check).
    cell = (
        (np.floor((np.array([5e-3, 5e-3, 0]) - lo) / h)).astype(int) * [dims[1] * dims[2], dims[2], 1]
    ).sum()
    listed = tris[start[cell] : start[cell + 1]]
    centroids = v[f[listed]].mean(axis=1)
    assert np.all(np.abs(centroids[:, :2] - 5e-3) < 2 * h)


def test_bad_input_names_the_parameter() -> None:
    with pytest.raises(ConfigError, match="radius_m"):
        RollerCylinder(-1.0, (0, 0), "steel")
    with pytest.raises(ConfigError, match="mode"):
        RollerCylinder(1.0, (0, 0), "steel", mode="hover")
    with pytest.raises(ConfigError, match="servo_gain"):
        RollerCylinder(1.0, (0, 0), "steel", mode="servo", max_speed_m_per_s=1.0)
    with pytest.raises(ConfigError, match="surface_speed"):
        RollerCylinder(1.0, (0, 0), "steel", angular_velocity_rad_per_s=1.0, surface_speed_m_per_s=1.0)
    with pytest.raises(ConfigError, match="mesh.faces"):
        MeshWall((np.zeros((3, 3)), np.array([[0, 1, 5]])), "steel")
    with pytest.raises(ConfigError, match="mesh.mesh"):
        MeshWall("/nonexistent.stl", "steel")


def test_tools_checkpoint_round_trip(tmp_path) -> None:
    lx = 4 * PITCH
    sim = Simulation(
        _mats(),
        box_m=(lx, lx, 20 * R_P),
        walls=[Wall((0, 0, 0), (0, 0, 1), "steel", name="floor")],
        dt_s=2e-7,
    )
    pts = _bed(layers=3)
    sim.add_particles(pts, R_P, "p")
    top = float(pts[:, 2].max() + R_P)
    sim.add_extension(
        RollerCylinder(
            2e-3,
            (0.3 * lx, top + 2e-3 - 0.02 * R_P),
            "steel",
            velocity_m_per_s=(0.3, -0.05),
            surface_speed_m_per_s=0.3,
            temperature_K=353.0,
        )
    )
    sim.add_extension(
        MeshWall(
            plate_mesh((0, lx), (0, lx), top + 0.2 * R_P, (3, 3)), "steel", velocity_m_per_s=(0.02, 0, -0.2)
        )
    )
    sim.run(steps=600, progress=False)
    assert sim.extension("roller").report()["contacts"] > 0
    ck = sim.save_checkpoint(tmp_path / "ck.npz")
    sim.run(steps=400, progress=False)
    ref = sim.state()["positions_m"]
    reps = [e.report() for e in sim.extensions]
    back = Simulation.load_checkpoint(ck)
    assert [e.name for e in back.extensions] == ["roller", "mesh"]
    assert back.extension("roller").temperature_K == 353.0
    back.run(steps=400, progress=False)
    np.testing.assert_allclose(back.state()["positions_m"], ref, rtol=0, atol=1e-15)
    for a, e in zip(reps, back.extensions, strict=True):
        b = e.report()
        np.testing.assert_allclose(b["force_N"], a["force_N"], rtol=1e-12, atol=1e-18)
        assert b["work_J"] == pytest.approx(a["work_J"], rel=1e-12)
