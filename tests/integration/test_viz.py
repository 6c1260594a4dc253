"""electrodem_viz: exact profile volumes, exact sections, colours, and off-screen renders via the CLI.

Self-contained: every test builds its own small synthetic microstructure.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from matplotlib.colors import to_rgb
from matplotlib.image import imread

os.environ.setdefault("PYVISTA_OFF_SCREEN", "true")

from electrodem.analysis.profiles import sphere_volume_below_m3  # noqa: E402
from electrodem.io.snapshot import Microstructure, Species  # noqa: E402
from electrodem_viz import (  # noqa: E402
    FALLBACK_PALETTE,
    composition_profile,
    plot_profiles,
    render_particles,
    render_section,
    section_discs,
    slab_volume_fractions,
    species_colors,
)
from electrodem_viz.cli import main  # noqa: E402
from electrodem_viz.render import BOND_COLOR  # noqa: E402

UM = 1e-6
AM, CB, BINDER = "#3b5ba5", "#222222", "#d62728"


def _species(colors=(AM, CB, BINDER)) -> tuple[Species, ...]:
    return (
        Species("NMC811", "AM", 4750.0, 1.9e11, 0.3, sigma_e_S_per_m=1e-2, color=colors[0]),
        Species("C65", "CB", 1900.0, 1.0e10, 0.3, sigma_e_S_per_m=1e3, color=colors[1]),
        Species("PVDF", "binder", 1780.0, 2.0e9, 0.35, color=colors[2]),
    )


def _cap_m3(r: float, h: float) -> float:
    """Volume of a spherical cap of height h (textbook formula, independent of the code's V_below)."""
    return np.pi * h**2 * (3.0 * r - h) / 3.0


def _synthetic(seed: int = 0, height_um: float = 40.0, n=(50, 260, 160), present=(0, 1, 2)) -> Microstructure:
    """A few hundred random spheres: 4 µm AM, 0.8 µm CB, 1 µm binder in a 40 x 40 µm periodic box."""
    rng = np.random.default_rng(seed)
    radius_um = (4.0, 0.8, 1.0)
    sid = np.concatenate([np.full(n[k], k) for k in present])
    r = np.array([radius_um[k] for k in sid]) * rng.uniform(0.85, 1.15, sid.size) * UM
    xy = rng.uniform(0.0, 40.0, (sid.size, 2)) * UM
    z = r + rng.uniform(0.0, 1.0, sid.size) * (height_um * UM - 2.0 * r)
    return Microstructure(np.column_stack([xy, z]), r, sid, _species(), [40 * UM, 40 * UM, 60 * UM])


def _pixels(path) -> np.ndarray:
    img = imread(path)
    if img.dtype == np.uint8:
        img = img / 255.0
    return np.asarray(img[..., :3], dtype=np.float64).reshape(-1, 3)


def _colour_share(px: np.ndarray, hex_color: str, shaded: bool) -> float:
    """Share of pixels showing ``hex_color``.

    Flat (matplotlib) images: within 0.06 RGB distance. Shaded (3D) images: white lights scale a
    diffuse colour, so a pixel of that species is s * colour with brightness s in [0.35, 1.3]; the
    residual off that ray must be small (same hue and saturation). Specular highlights fall outside.
    """
    c = np.array(to_rgb(hex_color))
    if not shaded:
        return float(np.mean(np.linalg.norm(px - c, axis=1) < 0.06))
    s = px @ c / (c @ c)
    resid = np.linalg.norm(px - s[:, None] * c, axis=1)
    return float(np.mean((s > 0.35) & (s < 1.3) & (resid < 0.04)))


def _assert_not_blank(px: np.ndarray) -> None:
    assert len(np.unique(np.round(px * 255).astype(np.int32) @ [65536, 256, 1])) > 100
    assert px.std() > 0.05


# ----------------------------------------------------------------------------- slab volumes
def test_sphere_volume_below_matches_cap_formula():
    r, zc = 3.0, 10.0
    for h in (0.0, 0.4, 1.7, 3.0, 4.9, 6.0):
        assert sphere_volume_below_m3(zc - r + h, zc, r) == pytest.approx(_cap_m3(r, h), rel=1e-12, abs=1e-15)
    assert sphere_volume_below_m3(zc - 5 * r, zc, r) == 0.0
    assert sphere_volume_below_m3(zc + 5 * r, zc, r) == pytest.approx(4 / 3 * np.pi * r**3, rel=1e-14)


@pytest.mark.parametrize("x_um", [20.0, 0.5])  # the second sphere crosses the periodic x boundary
def test_one_sphere_gives_exact_cap_volumes(x_um):
    r, zc, lx, ly = 5 * UM, 12 * UM, 40 * UM, 30 * UM
    micro = Microstructure([[x_um * UM, 15 * UM, zc]], [r], [0], _species()[:1], [lx, ly, 50 * UM])
    h1, h2 = 1.3 * UM, 3.1 * UM
    edges = np.array([0.0, zc - r + h1, zc, zc + r - h2, 50 * UM])
    phi = slab_volume_fractions(micro, edges)
    assert phi.shape == (4, 1)
    half = 2 / 3 * np.pi * r**3
    expected_m3 = [_cap_m3(r, h1), half - _cap_m3(r, h1), half - _cap_m3(r, h2), _cap_m3(r, h2)]
    np.testing.assert_allclose(phi[:, 0] * lx * ly * np.diff(edges), expected_m3, rtol=1e-12)


def test_periodic_z_wraps_the_cap_to_the_top():
    r, lz = 2 * UM, 20 * UM
    micro = Microstructure([[5 * UM, 5 * UM, 0.5 * UM]], [r], [0], _species()[:1], [10 * UM] * 2 + [lz],
                           periodic=(True, True, True))
    edges = np.array([0.0, 2.5 * UM, lz - 1.5 * UM, lz])
    vol = slab_volume_fractions(micro, edges)[:, 0] * (10 * UM) ** 2 * np.diff(edges)
    # The sphere spans z in [-1.5, 2.5] µm: a 1.5 µm cap pokes through z = 0 into the top of the box.
    np.testing.assert_allclose(vol, [4 / 3 * np.pi * r**3 - _cap_m3(r, 1.5 * UM), 0.0, _cap_m3(r, 1.5 * UM)],
                               rtol=1e-12, atol=1e-30)


def _layered_lattice(a: float, n_xy: int, n_layers: int) -> Microstructure:
    """Simple-cubic lattice: even layers AM spheres r = a/2 (touching), odd layers CB spheres r = a/4."""
    g = (np.arange(n_xy) + 0.5) * a
    x, y, k = np.meshgrid(g, g, np.arange(n_layers), indexing="ij")
    sid = (k.ravel() % 2).astype(int)
    r = np.where(sid == 0, a / 2, a / 4)
    pos = np.column_stack([x.ravel(), y.ravel(), (k.ravel() + 0.5) * a])
    return Microstructure(pos, r, sid, _species(), [n_xy * a, n_xy * a, n_layers * a])


def test_lattice_gives_known_fractions():
    a = 2 * UM
    micro = _layered_lattice(a, n_xy=5, n_layers=8)
    # Slabs aligned with the layers: one sphere per a^3 cell.
    phi = slab_volume_fractions(micro, np.arange(9) * a)
    np.testing.assert_allclose(phi[0::2, 0], np.pi / 6, rtol=1e-12)
    np.testing.assert_allclose(phi[1::2, 1], np.pi / 48, rtol=1e-12)
    assert np.all(phi[0::2, 1] == 0) and np.all(phi[1::2, 0] == 0) and np.all(phi[:, 2] == 0)
    # Any slab one period (2a) tall holds one AM and one CB sphere per lateral cell, wherever it starts.
    edges = 0.37 * a + np.arange(4) * 2 * a
    phi = slab_volume_fractions(micro, edges)
    np.testing.assert_allclose(phi[:, 0], np.pi / 12, rtol=1e-12)
    np.testing.assert_allclose(phi[:, 1], np.pi / 96, rtol=1e-12)
    prof = composition_profile(micro, z_edges_m=edges)
    np.testing.assert_allclose(prof.porosity, 1 - np.pi / 12 - np.pi / 96, rtol=1e-12)
    np.testing.assert_allclose(prof.porosity + prof.volume_fraction.sum(axis=1), 1.0, rtol=1e-14)


def test_profile_conserves_volume_and_matches_monte_carlo():
    micro = _synthetic(seed=3)
    edges = np.linspace(0.0, micro.top_m(), 13)
    phi = slab_volume_fractions(micro, edges)
    lx, ly = micro.box_m[:2]
    # Conservation: integrating each profile over the full height returns the species' total volume.
    per_species = (phi * np.diff(edges)[:, None]).sum(axis=0) * lx * ly
    total = np.bincount(micro.species_id, weights=micro.volumes_m3, minlength=3)
    np.testing.assert_allclose(per_species, total, rtol=1e-12)
    # Independent estimate: multiplicity of random points in slab 4 covered by each species
    # (counting multiplicity, as the sum of sphere volumes does), with periodic x/y images.
    rng = np.random.default_rng(7)
    m = 20000
    pts = np.column_stack([rng.uniform(0, lx, m), rng.uniform(0, ly, m), rng.uniform(edges[4], edges[5], m)])
    d = pts[:, None, :] - micro.positions_m[None, :, :]
    d[..., :2] -= micro.box_m[:2] * np.round(d[..., :2] / micro.box_m[:2])
    inside = np.einsum("ijk,ijk->ij", d, d) < micro.radii_m[None, :] ** 2
    for k in range(3):
        hits = inside[:, micro.species_id == k].sum(axis=1)
        est, sem = hits.mean(), hits.std() / np.sqrt(m)
        assert abs(phi[4, k] - est) < 4 * sem + 1e-4, (k, phi[4, k], est, sem)


def test_slab_edges_rejected():
    micro = _synthetic()
    for bad in ([1e-6], [[0.0, 1e-6]], [0.0, 2e-6, 1e-6], [0.0, np.nan]):
        with pytest.raises(ValueError, match="z_edges_m"):
            slab_volume_fractions(micro, np.array(bad))
    with pytest.raises(ValueError, match="n_bins"):
        composition_profile(micro, n_bins=0)


# ----------------------------------------------------------------------------- sections and colours
def test_section_discs_are_exact_and_periodic():
    lx, ly = 30 * UM, 20 * UM
    pos = [[10 * UM, 10.8 * UM, 5 * UM],  # cut at d = 0.8 µm
           [15 * UM, 14.0 * UM, 5 * UM],  # d = 4 µm > r: not cut
           [0.5 * UM, 19.5 * UM, 9 * UM]]  # far from y = 10; 0.5 µm from y = 0 via the periodic image
    micro = Microstructure(pos, [2 * UM, 2 * UM, 1.5 * UM], [0, 1, 2], _species(), [lx, ly, 20 * UM])
    sec = section_discs(micro, axis="y", position_m=10 * UM)
    assert sorted(sec.species_id.tolist()) == [0]
    assert sec.radius_m[0] == pytest.approx(np.sqrt(2.0**2 - 0.8**2) * UM, rel=1e-12)
    assert sec.u_m[0] == pytest.approx(10 * UM) and sec.z_m[0] == pytest.approx(5 * UM)
    sec0 = section_discs(micro, axis="y", position_m=0.0)
    assert sorted(sec0.species_id.tolist()) == [2, 2]  # the disc and its image across x = 0
    np.testing.assert_allclose(sorted(sec0.u_m), [0.5 * UM, lx + 0.5 * UM])
    np.testing.assert_allclose(sec0.radius_m, np.sqrt(1.5**2 - 0.5**2) * UM, rtol=1e-12)
    with pytest.raises(ValueError, match="position_m"):
        section_discs(micro, axis="y", position_m=25 * UM)
    with pytest.raises(ValueError, match="axis"):
        section_discs(micro, axis="z")


def test_species_colours_fall_back_on_missing_or_duplicate():
    sp = _species(("#3b5ba5", "#3B5BA5", "not-a-colour"))
    sp = (*sp, Species("PTFE", "binder", 2200.0, 5e8, 0.46, color=""), Species("LPSCl", "SE", 1860.0,
                                                                              2.5e10, 0.3, color="white"))
    cols = species_colors(sp)
    assert cols[0] == "#3b5ba5"
    assert cols[1:] == list(FALLBACK_PALETTE[:4])  # duplicate, invalid, empty and white all replaced
    assert len(set(cols)) == len(cols)
    assert species_colors(_species()) == [AM, CB, BINDER]


# ----------------------------------------------------------------------------- renders
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    placed = _synthetic(seed=1, height_um=55.0).with_(metadata={"stage": "place"})
    settled = _synthetic(seed=1, height_um=40.0)
    (run / "snapshots").mkdir()
    placed.save(run / "snapshots" / "00_place.npz")
    settled.save(run / "snapshots" / "01_settle.npz")
    settled.save(run / "microstructure.npz")
    (run / "metrics.json").write_text("{}")
    return run


def test_cli_writes_non_blank_pngs_with_species_colours(run_dir, tmp_path, capsys):
    out = tmp_path / "renders"
    assert main([str(run_dir), "--out", str(out), "--window-size", "800", "600", "--n-bins", "20"]) == 0
    printed = capsys.readouterr().out
    for name in ("particles", "section", "profile", "stages"):
        png = out / f"{name}.png"
        assert png.is_file() and str(png) in printed
        px = _pixels(png)
        _assert_not_blank(px)
        shares = {c: _colour_share(px, c, shaded=(name == "particles")) for c in (AM, CB, BINDER)}
        assert min(shares.values()) > 3e-3, (name, shares)
        if name != "profile":
            # AM holds ~85 % of the solid volume, so its colour must cover the most area: catches
            # colours painted on the wrong species.
            assert shares[AM] > 2 * max(shares[CB], shares[BINDER]), (name, shares)
    rows = (out / "profile.csv").read_text().splitlines()
    assert rows[0].split(",") == ["z_low_um", "z_high_um", "phi_NMC811", "phi_C65", "phi_PVDF", "porosity"]
    assert len(rows) == 21


def test_absent_species_colour_is_absent_from_renders(tmp_path):
    """Negative control for the colour check: without CB particles the CB colour (nearly) vanishes.

    Anti-aliased black text (axis labels, legend) leaves a trace of dark grey in 3D renders, so the
    criterion is relative: at least 10x less CB-coloured area than in the same render with CB.
    """
    with_cb = _synthetic(seed=2)
    without_cb = _synthetic(seed=2, present=(0, 2))
    for shaded, draw in ((True, lambda m, p: render_particles(m, p, window_size=(640, 480))),
                         (False, render_section)):
        px_with = _pixels(draw(with_cb, tmp_path / "with.png"))
        px_without = _pixels(draw(without_cb, tmp_path / "without.png"))
        cb_with, cb_without = _colour_share(px_with, CB, shaded), _colour_share(px_without, CB, shaded)
        assert cb_with > 3e-3 and cb_without < 0.1 * cb_with, (shaded, cb_with, cb_without)
        for color in (AM, BINDER):
            assert _colour_share(px_without, color, shaded) > 3e-3, (shaded, color)


def test_intact_bonds_are_drawn_as_tubes_and_broken_ones_are_not(tmp_path):
    """Bonds between each AM particle (alone in the box, 50 of them) and its two nearest show in the
    bond colour where they cross the gaps; the same bonds marked broken leave (nearly) none of it
    (negative control, as for the species colours)."""
    from scipy.spatial import cKDTree

    micro = _synthetic(seed=3, present=(0,))
    _, nn = cKDTree(micro.positions_m).query(micro.positions_m, k=3)  # the two nearest others
    am = np.repeat(np.arange(micro.n), 2)
    bonds = {"i": am, "j": nn[:, 1:].ravel(), "radius_m": np.full(am.size, 1.0 * UM),
             "length_m": np.zeros(am.size)}
    shares = []
    for broken in (False, True):
        m = micro.with_(bonds={**bonds, "broken": np.full(am.size, broken)})
        px = _pixels(render_particles(m, tmp_path / f"bonds_{broken}.png", window_size=(640, 480)))
        _assert_not_blank(px)
        shares.append(_colour_share(px, BOND_COLOR, shaded=True))
    assert shares[0] > 1e-3 and shares[1] < 0.1 * shares[0], shares


def test_point_sprite_fallback_renders_species_colours(tmp_path):
    micro = _synthetic(seed=4)
    path = render_particles(micro, tmp_path / "sprites.png", window_size=(640, 480), gaussian_threshold=0,
                            show_legend=False)
    px = _pixels(path)
    _assert_not_blank(px)
    for color in (AM, CB, BINDER):
        assert _colour_share(px, color, shaded=True) > 1e-3, color


def test_plot_profiles_returns_the_plotted_arrays(tmp_path):
    micro = _synthetic(seed=5)
    prof = plot_profiles(micro, tmp_path / "prof.png", n_bins=16)
    edges = np.linspace(0.0, micro.top_m(), 17)
    np.testing.assert_allclose(prof.z_edges_m, edges)
    np.testing.assert_allclose(prof.volume_fraction, slab_volume_fractions(micro, edges), rtol=1e-12)
    assert prof.species_names == ("NMC811", "C65", "PVDF")
    assert (tmp_path / "prof.png").stat().st_size > 10_000


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--what", "particles,movie"], "allowed: particles, section, profile, stages"),
        (["--what", "stages"], "at least 2 are needed"),
        (["--position-um", "55"], "outside the box along y"),
        (["--window-size", "10", "600"], "window_size"),
        (["--n-bins", "0"], "n_bins"),
        (["--axis", "z"], "invalid choice"),
    ],
)
def test_cli_rejects_bad_input(tmp_path, capsys, args, message):
    run = tmp_path / "run"
    _synthetic().save(run / "microstructure.npz")
    with pytest.raises(SystemExit) as exc:
        main([str(run), *args])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not (run / "renders").exists()


def test_cli_rejects_missing_run(tmp_path, capsys):
    for run, message in ((tmp_path / "nope", "is not a directory"), (tmp_path, "has no microstructure.npz")):
        with pytest.raises(SystemExit):
            main([str(run)])
        assert message in capsys.readouterr().err
