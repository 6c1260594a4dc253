"""Matplotlib figures (Agg, no pyplot state): through-thickness profiles and cross-sections.

All axes are in micrometres with the current collector (CC, z = 0) at the bottom.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import EllipseCollection
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from electrodem.analysis.profiles import CompositionProfile, composition_profile
from electrodem.io.snapshot import Microstructure

from .colors import species_colors
from .section import section_discs

UM = 1e6
CC_COLOR = "#9a9a9a"
PORE_COLOR = "#4d4d4d"
_DPI = 200


def _cc_thickness_um(width_um: float, height_um: float) -> float:
    """Drawn CC band thickness: a fixed share of the picture (the real foil thickness is not modelled)."""
    return 0.03 * max(width_um, height_um)


def _species_label(micro: Microstructure, k: int) -> str:
    s = micro.species[k]
    return f"{s.name} ({s.role})"


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # "tight" guards labels against the equal-aspect axes being shifted by the outside legend.
    fig.savefig(path, dpi=_DPI, bbox_inches="tight", pad_inches=0.08)
    return path


# --------------------------------------------------------------------------- profiles
def plot_profiles(
    micro: Microstructure,
    path: str | Path,
    n_bins: int = 50,
    z_edges_m: np.ndarray | None = None,
    title: str | None = None,
) -> CompositionProfile:
    """Plot the through-thickness composition profile and return it.

    Left: volume fraction of each species and porosity against height z (µm). Right: each species'
    local fraction divided by its layer mean, the usual way to show binder/CB migration (a ratio > 1
    near the top means enrichment at the surface). Fractions use exact sphere–slab volumes
    (`electrodem.analysis.profiles.slab_volume_fractions`), on ``n_bins`` equal slabs from the CC to the top
    unless ``z_edges_m`` (m) is given.
    """
    prof = composition_profile(micro, n_bins=n_bins, z_edges_m=z_edges_m)
    colors = species_colors(micro.species)
    edges_um = prof.z_edges_m * UM
    top_um = edges_um[-1]
    cc_um = _cc_thickness_um(0.5 * top_um, top_um)

    fig = Figure(figsize=(9.0, 6.0), layout="constrained")
    ax_phi, ax_rel = fig.subplots(1, 2, sharey=True, width_ratios=[1.25, 1.0])
    present = [k for k in range(len(micro.species)) if np.any(micro.species_id == k)]
    mean = prof.mean_volume_fraction()
    rel_max = 1.0
    for k in present:
        style = dict(orientation="horizontal", color=colors[k], linewidth=2.0, baseline=None)
        ax_phi.stairs(prof.volume_fraction[:, k], edges_um, label=f"{_species_label(micro, k)}, mean "
                      f"{mean[k]:.3f}", **style)
        if mean[k] > 0:
            rel = prof.volume_fraction[:, k] / mean[k]
            rel_max = max(rel_max, float(np.max(rel)))
            ax_rel.stairs(rel, edges_um, **style)
    ax_phi.stairs(prof.porosity, edges_um, orientation="horizontal", color=PORE_COLOR, linewidth=1.6,
                  linestyle="--", baseline=None, label=f"porosity, mean {1.0 - float(mean.sum()):.3f}")
    ax_phi.set_xlim(0.0, 1.0)
    ax_phi.set_xlabel("volume fraction (–)")
    ax_phi.set_ylabel("height above current collector z (µm)")
    ax_rel.axvline(1.0, color="0.5", linewidth=1.0, linestyle=":")
    ax_rel.set_xlim(0.0, min(1.1 * rel_max, 4.0))
    ax_rel.set_xlabel("local / layer-mean volume fraction (–)")
    fig.legend(*ax_phi.get_legend_handles_labels(), loc="outside lower center", ncols=2, fontsize=9,
               frameon=False)

    for ax in (ax_phi, ax_rel):
        ax.axhspan(-cc_um, 0.0, color=CC_COLOR, zorder=0)
        ax.set_ylim(-cc_um, top_um * 1.02)
        ax.grid(True, color="0.9", linewidth=0.8)
        ax.set_axisbelow(True)
    ax_phi.text(0.02, -0.5 * cc_um, "current collector", va="center", ha="left", fontsize=8, color="white")
    fig.suptitle(title or f"Through-thickness composition ({len(prof.porosity)} slabs of "
                 f"{(edges_um[1] - edges_um[0]):.2g} µm)", fontsize=12)
    _save(fig, path)
    return prof


# --------------------------------------------------------------------------- sections
def _draw_section(ax: Axes, micro: Microstructure, axis: str, position_m: float | None,
                  colors: list[str], z_top_um: float, cc_um: float) -> None:
    sec = section_discs(micro, axis=axis, position_m=position_m)
    width_um = sec.width_m * UM
    ax.add_patch(Rectangle((0.0, 0.0), width_um, z_top_um, facecolor="#fbfbfb", edgecolor="none", zorder=0))
    if sec.u_m.size:
        d_um = 2.0 * sec.radius_m * UM
        coll = EllipseCollection(d_um, d_um, np.zeros_like(d_um), units="xy",
                                 offsets=np.column_stack([sec.u_m * UM, sec.z_m * UM]),
                                 offset_transform=ax.transData,
                                 facecolors=[colors[k] for k in sec.species_id],
                                 edgecolors="#00000055", linewidths=0.3, zorder=2)
        ax.add_collection(coll)
    ax.add_patch(Rectangle((0.0, -cc_um), width_um, cc_um, facecolor=CC_COLOR, edgecolor="none", zorder=3))
    ax.set_xlim(0.0, width_um)
    ax.set_ylim(-cc_um, z_top_um)
    ax.set_aspect("equal")
    ax.set_xlabel(f"{'x' if axis == 'y' else 'y'} (µm)")


def _legend_handles(micro: Microstructure, colors: list[str]) -> list[Patch]:
    handles = [Patch(facecolor=colors[k], edgecolor="#00000055", label=_species_label(micro, k))
               for k in range(len(micro.species)) if np.any(micro.species_id == k)]
    handles.append(Patch(facecolor=CC_COLOR, label="current collector"))
    return handles


def _section_figsize(width_um: float, height_um: float, n_panels: int = 1) -> tuple[float, float]:
    panel_w = min(5.5, 10.0 / n_panels)
    panel_h = float(np.clip(panel_w * height_um / width_um, 2.0, 7.0))
    return panel_w * n_panels + 2.3, panel_h + 1.2


def render_section(
    micro: Microstructure,
    path: str | Path,
    axis: str = "y",
    position: float | None = None,
    title: str | None = None,
) -> Path:
    """Exact cross-section of the packing by the vertical plane ``axis = position`` (m).

    Every sphere cut by the plane is drawn as its intersection disc in its species colour, seen
    side-on with the CC at the bottom; axes in µm. ``position`` defaults to the middle of the box.
    """
    colors = species_colors(micro.species)
    width_um = float(micro.box_m[0 if axis == "y" else 1]) * UM
    top_um = micro.top_m() * UM * 1.03
    cc_um = _cc_thickness_um(width_um, top_um)
    fig = Figure(figsize=_section_figsize(width_um, top_um + cc_um), layout="constrained")
    ax = fig.subplots()
    _draw_section(ax, micro, axis, position, colors, top_um, cc_um)
    pos = section_discs(micro, axis=axis, position_m=position).position_m
    ax.set_ylabel("height z (µm)")
    ax.set_title(title or f"Cross-section at {axis} = {pos * UM:.1f} µm", fontsize=12)
    fig.legend(handles=_legend_handles(micro, colors), loc="outside right center", fontsize=9)
    return _save(fig, path)


def render_stages(
    micros: Sequence[Microstructure],
    labels: Sequence[str],
    path: str | Path,
    axis: str = "y",
    position: float | None = None,
    max_panels: int = 6,
) -> Path:
    """Side-by-side cross-sections of successive process stages on a common height scale.

    With more than ``max_panels`` stages, the first, the last and evenly spaced ones between are shown.
    """
    if len(micros) < 2 or len(micros) != len(labels):
        raise ValueError(f"render_stages needs >= 2 microstructures and one label each; got "
                         f"{len(micros)} and {len(labels)}")
    idx = np.unique(np.linspace(0, len(micros) - 1, min(max_panels, len(micros))).round().astype(int))
    micros = [micros[i] for i in idx]
    labels = [labels[i] for i in idx]
    colors = species_colors(micros[-1].species)
    width_um = float(micros[-1].box_m[0 if axis == "y" else 1]) * UM
    top_um = max(m.top_m() for m in micros) * UM * 1.03
    cc_um = _cc_thickness_um(width_um, top_um)
    fig = Figure(figsize=_section_figsize(width_um, top_um + cc_um, len(micros)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(micros), sharey=True))
    for ax, m, lab in zip(axes, micros, labels, strict=True):
        _draw_section(ax, m, axis, position, colors, top_um, cc_um)
        ax.set_title(f"{lab}\nthickness {m.top_m() * UM:.1f} µm", fontsize=11)
    axes[0].set_ylabel("height z (µm)")
    fig.legend(handles=_legend_handles(micros[-1], colors), loc="outside right center", fontsize=9)
    return _save(fig, path)


# --------------------------------------------------------------------------- compaction
def plot_compaction(curve: dict[str, Sequence], path: str | Path) -> Path:
    """Pressure (MPa) against porosity and against thickness (um) of a plate compaction, one line per
    stage (load, unload, relax); ``curve`` holds the columns ``stage``, ``pressure_MPa``,
    ``porosity`` and ``thickness_m`` (e.g. ``metadata['compact']['curve']`` or the run's CSV)."""
    stage = np.asarray(curve["stage"])
    p = np.asarray(curve["pressure_MPa"], float)
    eps = np.asarray(curve["porosity"], float)
    h = np.asarray(curve["thickness_m"], float) * UM
    fig = Figure(figsize=(8.0, 3.4))
    ax1, ax2 = fig.subplots(1, 2)
    for name, color in (("load", "#1f77b4"), ("unload", "#d62728"), ("relax", "#2ca02c")):
        m = stage == name
        if np.any(m):
            ax1.plot(eps[m], p[m], ".-", color=color, label=name, ms=3)
            ax2.plot(h[m], p[m], ".-", color=color, label=name, ms=3)
    ax1.set_xlabel("porosity")
    ax1.set_ylabel("plate pressure (MPa)")
    ax2.set_xlabel("thickness (µm)")
    ax1.legend(frameon=False)
    for ax in (ax1, ax2):
        ax.invert_xaxis()
        ax.grid(alpha=0.3)
    fig.suptitle("plate compaction")
    return _save(fig, path)


# --------------------------------------------------------------------------- roll calendering
def plot_calendering(curve: dict[str, Sequence], path: str | Path) -> Path:
    """Roll pressure (MPa) against the porosity under the roll and against the strip position (mm),
    one line per pass; ``curve`` holds the columns ``pass``, ``x_m``, ``pressure_Pa`` and
    ``porosity_under_roll`` (empty strings / NaN where not defined: ``roll`` geometry), e.g. the run's
    ``calendering_curve.csv``. The porosity under the roll is that of the slab between collector and
    roll (1 - V_solid / (A z_roll)); where the roll rides above the tallest particle it exceeds the
    layer porosity of the report (gauge thickness: the highest solid point)."""
    k = np.asarray(curve["pass"], int)
    p = np.asarray(curve["pressure_Pa"], float) * 1e-6
    x = np.asarray(curve["x_m"], float) * 1e3
    eps = np.array([float(v) if v not in ("", None) else np.nan for v in curve["porosity_under_roll"]])
    fig = Figure(figsize=(8.0, 3.4))
    ax1, ax2 = fig.subplots(1, 2)
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    for n in np.unique(k):
        m = k == n
        color = colors[(int(n) - 1) % len(colors)]
        if np.any(np.isfinite(eps[m])):
            ax1.plot(eps[m], p[m], ".-", color=color, label=f"pass {n}", ms=3)
        ax2.plot(x[m], p[m], ".-", color=color, label=f"pass {n}", ms=3)
    ax1.set_xlabel("porosity under the roll")
    ax1.set_ylabel("roll pressure (MPa)")
    ax1.invert_xaxis()
    ax2.set_xlabel("strip position under the roll x (mm)")
    ax2.legend(frameon=False)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    fig.suptitle("roll calendering")
    return _save(fig, path)


# --------------------------------------------------------------------------- calendering sweep
def plot_calendering_tradeoff(cols: dict[str, Sequence[float]], path: str | Path) -> Path:
    """The calendering trade-off of a porosity sweep (DOMAIN.md §4): effective electronic conductivity
    sigma_e,eff (S/m, log axis), pore tortuosity factor tau and isolated (inactive) AM volume fraction
    against the porosity after processing, one panel each, porosity decreasing to the right (the
    calendering direction). ``cols`` holds ``porosity_after_processing`` and any of
    ``sigma_e_eff_{x,y,z}_S_per_m``, ``tau_pore_{x,y,z}``, ``inactive_am_fraction_by_volume``
    (NaN or inf where a run has no finite value, and σ ≤ 0 on the log axis (no percolating
    electronic path): not drawn)."""
    eps = np.asarray(cols["porosity_after_processing"], float)
    order = np.argsort(-eps)
    eps = eps[order]
    fig = Figure(figsize=(11.0, 3.4), layout="constrained")
    axs = fig.subplots(1, 3)
    colors = {"x": "#1f77b4", "y": "#ff7f0e", "z": "#2ca02c"}

    def series(key: str) -> np.ndarray | None:
        if key not in cols:
            return None
        v = np.asarray(cols[key], float)[order]
        return v if np.any(np.isfinite(v)) else None

    for a, c in colors.items():
        s = series(f"sigma_e_eff_{a}_S_per_m")
        if s is not None:
            m = np.isfinite(s) & (s > 0)
            label = f"{a} (through-plane)" if a == "z" else a
            axs[0].semilogy(eps[m], s[m], "o-", color=c, label=label)
        t = series(f"tau_pore_{a}")
        if t is not None:
            m = np.isfinite(t)
            axs[1].plot(eps[m], t[m], "o-", color=c, label=a)
    iso = series("inactive_am_fraction_by_volume")
    if iso is not None:
        m = np.isfinite(iso)
        axs[2].plot(eps[m], 100.0 * iso[m], "o-", color="#d62728")
    axs[0].set_ylabel("σ_e,eff (S/m)")
    axs[1].set_ylabel("pore tortuosity factor τ")
    axs[2].set_ylabel("isolated AM (vol %)")
    for ax, title in zip(axs, ("electronic conduction", "ionic path", "AM disconnected"), strict=True):
        ax.set_xlabel("porosity after processing")
        ax.set_title(title, fontsize=10)
        ax.invert_xaxis()
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(frameon=False, fontsize=8)
    fig.suptitle("calendering trade-off (porosity sweep)")
    return _save(fig, path)


# --------------------------------------------------------------------------- shear cell
def plot_shear(series: dict[str, Sequence[float]], path: str | Path) -> Path:
    """Friction coefficient μ = τ/p and inertial number I (log axis) against shear strain of a
    Lees–Edwards shear cell; ``series`` holds ``strain``, ``friction_coefficient`` and
    ``inertial_number`` (the `electrodem.engine.shear.SERIES` columns, e.g. the run's shear.csv)."""
    g = np.asarray(series["strain"], float)
    mu = np.asarray(series["friction_coefficient"], float)
    inum = np.asarray(series["inertial_number"], float)
    fig = Figure(figsize=(8.0, 3.4))
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(g, mu, ".-", color="#1f77b4", ms=4)
    ax1.set_ylabel("friction coefficient μ = τ / p")
    ok = np.isfinite(inum) & (inum > 0)
    ax2.semilogy(g[ok], inum[ok], ".-", color="#d62728", ms=4)
    ax2.set_ylabel("inertial number I")
    for ax in (ax1, ax2):
        ax.set_xlabel("shear strain γ")
        ax.grid(alpha=0.3)
    fig.suptitle("Lees–Edwards shear cell")
    return _save(fig, path)


def plot_fibrils(history: dict[str, Sequence[float]], path: str | Path) -> Path:
    """PTFE fibrillation against shear strain of a dry mix: degree of fibrillation and the fraction of
    PTFE in fibril networks (left), fibril count and broken bonds (right); ``history`` holds the
    `electrodem.process.dry_mix.HISTORY` columns (e.g. the run's dry_mix.csv)."""
    g = np.asarray(history["strain"], float)
    fig = Figure(figsize=(8.0, 3.4))
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(g, history["degree_of_fibrillation"], ".-", color="#ff7f0e", ms=4,
             label="degree of fibrillation")
    ax1.plot(g, history["network_fraction"], ".--", color="#8c564b", ms=4, label="PTFE in fibril networks")
    ax1.set_ylabel("PTFE mass fraction")
    ax1.set_ylim(-0.02, 1.02)
    ax1.legend(fontsize=8)
    ax2.plot(g, history["fibril_count"], ".-", color="#1f77b4", ms=4, label="fibrils")
    ax2.plot(g, history["bonds_broken"], ".--", color="#d62728", ms=4, label="bonds broken")
    ax2.set_ylabel("count")
    ax2.legend(fontsize=8)
    for ax in (ax1, ax2):
        ax.set_xlabel("shear strain γ")
        ax.grid(alpha=0.3)
    fig.suptitle("dry mix: PTFE fibrillation")
    return _save(fig, path)
