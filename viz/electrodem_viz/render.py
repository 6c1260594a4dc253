"""Off-screen 3D renders of a particle microstructure with PyVista.

Coordinates are converted to micrometres before rendering so that the axes read in µm. PyVista is
imported inside the functions: importing this package stays cheap and needs no display.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from electrodem.io.snapshot import Microstructure

from .colors import species_colors

UM = 1e6
CC_COLOR = "#8c8c8c"
OUTLINE_COLOR = "#505050"
BOND_COLOR = "#2ca02c"
"""Intact bonds (PTFE fibrils, binder bridges) are drawn as tubes of this colour."""

GAUSSIAN_THRESHOLD = 25_000
"""Above this many particles, spheres are drawn as radius-scaled, shaded point sprites (VTK's point
Gaussian mapper, sphere impostors of exactly the particle radius) instead of triangle meshes: the
software rasteriser of a headless machine needs ~3 s per million mesh vertices, sprites ~1 s per 10^5."""


def _sphere_resolution(n: int) -> tuple[int, int]:
    """(theta, phi) sphere resolution keeping the glyph mesh to about 1.5 million vertices at most."""
    if n <= 2_000:
        return 24, 16
    if n <= 10_000:
        return 14, 10
    return 8, 6


def nice_axis_top(top: float, min_ticks: int = 3, max_ticks: int = 6) -> tuple[float, int]:
    """A round axis end >= ``top`` and the label count that puts labels at round values from 0.

    E.g. 65 -> (75, 4): labels 0, 25, 50, 75 (the smallest round end with 3-6 labels). VTK's cube
    axes space labels evenly between the bounds, so round bounds are what makes round labels.
    """
    if not np.isfinite(top) or top <= 0:
        raise ValueError(f"top must be a positive finite number; got {top!r}")
    exp = 10.0 ** np.floor(np.log10(top))
    best: tuple[float, int] = (float(top), 2)
    for mult in (0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 2.5, 5.0, 10.0):
        step = mult * exp
        n_steps = int(np.ceil(top / step - 1e-9))
        if min_ticks <= n_steps + 1 <= max_ticks and (best[1] == 2 or n_steps * step < best[0]):
            best = (float(n_steps * step), n_steps + 1)
    return best


def check_window_size(window_size: Sequence[int]) -> tuple[int, int]:
    """Validate an image size (width, height) in pixels."""
    msg = f"window_size must be two pixel counts (width, height) in [64, 8192]; got {window_size!r}"
    try:
        ws = tuple(int(v) for v in window_size)
    except (TypeError, ValueError) as err:
        raise ValueError(msg) from err
    if len(ws) != 2 or min(ws) < 64 or max(ws) > 8192:
        raise ValueError(msg)
    return ws[0], ws[1]


def bond_tubes(micro: Microstructure) -> Any:
    """The intact bonds of ``micro`` as one PyVista tube mesh (µm), or None without any: each from
    particle i to the minimum image of j (a bond through a periodic face sticks out of the box, as it
    is), of the median bond radius (at least a tenth of the smallest particle radius, so it shows)."""
    import pyvista as pv

    b = micro.bonds or {}
    if not len(b.get("i", ())):
        return None
    ok = ~np.asarray(b.get("broken", np.zeros(len(b["i"]), bool)), bool)
    i, j = np.asarray(b["i"], np.int64)[ok], np.asarray(b["j"], np.int64)[ok]
    if not len(i):
        return None
    x = micro.positions_m
    d = x[j] - x[i]
    for a in range(3):
        if micro.periodic[a]:
            d[:, a] -= micro.box_m[a] * np.round(d[:, a] / micro.box_m[a])
    pts = np.concatenate([x[i], x[i] + d]) * UM
    k = len(i)
    lines = np.column_stack([np.full(k, 2), np.arange(k), np.arange(k, 2 * k)]).ravel()
    radius = np.median(np.asarray(b.get("radius_m", np.zeros(0)), float)[ok]) if "radius_m" in b else 0.0
    radius = max(float(radius), 0.1 * float(micro.radii_m.min())) * UM
    return pv.PolyData(pts, lines=lines).tube(radius=radius, n_sides=8)


def render_particles(
    micro: Microstructure,
    path: str | Path,
    window_size: Sequence[int] = (1400, 1000),
    show_legend: bool = True,
    show_axes: bool = True,
    title: str | None = None,
    gaussian_threshold: int = GAUSSIAN_THRESHOLD,
) -> Path:
    """Render the particles as spheres coloured by species, and their intact bonds as tubes
    (`bond_tubes`), to a PNG, off-screen.

    Parameters
    ----------
    micro : microstructure (SI units; drawn in µm).
    path : PNG file to write.
    window_size : image size in pixels (width, height).
    show_legend : species names (and role) with their colours, plus the current collector.
    show_axes : box bounds with tick labels in µm.
    title : text in the upper-left corner.
    gaussian_threshold : particle count above which radius-scaled point sprites replace sphere meshes
        (keeps 10^5-10^6 particles to seconds); see `GAUSSIAN_THRESHOLD`.

    The box is outlined from the CC (z = 0) up to the electrode top (`Microstructure.top_m`); the CC is
    a thin grey slab below z = 0. A box periodic in z (a shear cell) is outlined to its full height and
    drawn without a CC. Camera: three-quarter view from the front right and above, z up.
    """
    import pyvista as pv

    ws = check_window_size(window_size)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    colors = species_colors(micro.species)
    pts = micro.positions_m * UM
    rad = micro.radii_m * UM
    lx, ly = micro.box_m[0] * UM, micro.box_m[1] * UM
    z_periodic = bool(micro.periodic[2])  # a fully periodic cell (shear): no current collector
    top = micro.box_m[2] * UM if z_periodic else max(micro.top_m() * UM, 1e-3 * max(lx, ly))
    cc = 0.015 * max(lx, ly, top)

    pl = pv.Plotter(off_screen=True, window_size=list(ws), lighting="three lights")
    pl.set_background("white")
    theta, phi = _sphere_resolution(micro.n)
    legend: list[list[str]] = []
    for k, sp in enumerate(micro.species):
        sel = micro.species_id == k
        if not np.any(sel):
            continue
        cloud = pv.PolyData(pts[sel])
        cloud["radius_um"] = rad[sel]
        if micro.n <= gaussian_threshold:
            unit = pv.Sphere(radius=1.0, theta_resolution=theta, phi_resolution=phi)
            mesh = cloud.glyph(scale="radius_um", geom=unit, orient=False, factor=1.0)
            pl.add_mesh(mesh, color=colors[k], smooth_shading=True, ambient=0.25, diffuse=0.8,
                        specular=0.15, specular_power=25)
        else:
            actor = pl.add_mesh(cloud, style="points_gaussian", color=colors[k], emissive=False,
                                render_points_as_spheres=True)
            actor.mapper.scale_array = "radius_um"
            actor.mapper.scale_factor = 1.0
        legend.append([f"{sp.name} ({sp.role})", colors[k]])

    tubes = bond_tubes(micro)
    if tubes is not None:
        pl.add_mesh(tubes, color=BOND_COLOR, smooth_shading=True, ambient=0.3, diffuse=0.8)
        legend.append(["bonds (fibrils, bridges)", BOND_COLOR])
    pl.add_mesh(pv.Box(bounds=(0.0, lx, 0.0, ly, 0.0, top)).outline(), color=OUTLINE_COLOR, line_width=1.5)
    if not z_periodic:
        pl.add_mesh(pv.Box(bounds=(0.0, lx, 0.0, ly, -cc, 0.0)), color=CC_COLOR, ambient=0.4)
        legend.append(["current collector", CC_COLOR])

    if show_axes:
        z_axis, n_z = nice_axis_top(top)
        # use_3d_text: the 2D-text path of VTK's cube axes drops the "µ" glyph.
        axes = pl.show_bounds(bounds=(0.0, lx, 0.0, ly, 0.0, z_axis), xtitle="x (µm)", ytitle="y (µm)",
                              ztitle="z (µm)", location="outer", ticks="outside", color="black",
                              fmt="%.3g", n_xlabels=3, n_ylabels=3, n_zlabels=n_z, bold=False,
                              use_3d_text=True)
        for i in range(3):
            # With 3D text, VTK sizes titles and labels relative to each other; its default makes the
            # titles unreadably small.
            axes.GetTitleTextProperty(i).SetFontSize(100)
            axes.GetLabelTextProperty(i).SetFontSize(75)
        axes.SetTitleOffset((20.0, 60.0))
    if show_legend:
        pl.add_legend(labels=legend, bcolor="white", border=True, face="circle", loc="upper right",
                      size=(0.22, 0.045 * len(legend)))
    if title:
        pl.add_text(title, position="upper_left", font_size=14, color="black")
    # Front-right, slightly from above: x runs left to right along the front edge, z up, the CC
    # visible as the floor.
    centre = np.array([0.5 * lx, 0.5 * ly, 0.5 * top])
    direction = np.array([0.55, -1.0, 0.6])
    pl.camera_position = [tuple(centre + direction), tuple(centre), (0.0, 0.0, 1.0)]
    pl.reset_camera()
    try:
        pl.screenshot(str(path))
    finally:
        pl.close()
    return path
