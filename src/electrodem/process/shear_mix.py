"""Shear mixing of a placed AM/CB(/binder) population in a Lees–Edwards shear cell.

The placed microstructure (x/y periodic, z from the current collector up to the loose bed height)
becomes a box periodic on x, y **and** z of the same size: placement keeps every centre within
[r, H - r] in z, so no particle overlaps a z image; that is checked here (minimum-image distances
across all faces) before any engine work. The box is then sheared homogeneously (flow x, gradient z)
at ``shear_rate_per_s`` up to ``strain`` with `electrodem.engine.shear.run_shear_cell`, after the
streaming profile u_x = gamma_dot (z - Lz/2) is imposed (`impose_affine_velocity`) so that the flow
does not have to develop from the faces.

Packing: by default the box keeps the as-placed solid fraction (``place.packing_fraction``, ~0.3: a
granular gas, not a dense paste); the volume is fixed, so the pressure is the collisional + kinetic
stress of that state and the inertial number is large: a mixing demo. With ``pressure_MPa`` the cell
is held at that pressure by `electrodem.engine.shear.Barostat` (the particle lengths are scaled, the
output scaled back): a mu(I) rheometer at imposed pressure (tested against Jop et al. 2006 in the
engine's shear-cell tests).

Read-out every strain increment (`SERIES`): shear stress tau (Pa), pressure p (Pa), μ = tau / p,
inertial number I, coordination number Z (contacts per particle) and kinetic energy (J); the
steady-state means are taken over the second half of the strain. Mixing is summarised by the mean
number of AM neighbours in contact with each CB particle at the start and at the end.

Shortcuts (DOMAIN.md §6), all in ``metadata['shortcuts']['shear']``: the shear rate against
``industrial_shear_rate_per_s`` (speed-up), capped moduli, mass-scaled fines, gravity off.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from electrodem.config import ConfigError
from electrodem.engine.arch import EngineOptions
from electrodem.io.snapshot import Microstructure
from electrodem.process.engine_map import ContactParams, ShortcutParams, engine_materials, shortcuts_log
from electrodem.process.engine_map import masses as engine_masses

CONTACT: dict[str, Any] = {"rolling_friction": 0.0, "cohesion": "none"}
"""The shear cell's built-in overrides of the shared ``contact`` group: dry frictional spheres (the
mu(I) rheology of the wave-1 validation), no rolling resistance, no adhesion."""
SHORTCUTS: dict[str, Any] = {"rayleigh_fraction": 0.2}
"""The shear cell's built-in overrides of the shared ``shortcuts`` group."""


@dataclass
class ShearParams:
    """Parameters of the shear cell (SI unless the key says otherwise).

    shear_rate_per_s : imposed shear rate gamma_dot (1/s), flow along x, gradient along z; sign = sense.
    strain : total shear strain gamma_dot t (dimensionless, > 0).
    samples : number of equally spaced read-outs of the rheology over the strain.
    industrial_shear_rate_per_s : reference shear rate of a real mixer (1/s), only to report the speed-up.
    affine_start : impose the streaming velocity profile before shearing (else the flow develops).
    max_image_overlap_ratio : largest overlap / smaller radius allowed between particles that meet
        across the new z-periodic face (0: none, as placement guarantees).
    pressure_MPa : null (the volume stays that of the placed box) or the pressure (MPa) the cell is held
        at by `electrodem.engine.shear.Barostat` (particle lengths scaled; the output scaled back): a
        mu(I) rheometer at imposed pressure, I = gamma_dot d / sqrt(p / rho).
    barostat_gain : largest relative change of the particle lengths per unit strain (with pressure_MPa).
    contact : the shared ``contact`` group with the step's overrides (`CONTACT`).
    shortcuts : the shared ``shortcuts`` group with the step's overrides (`SHORTCUTS`).
    """

    shear_rate_per_s: float = 1.0e4
    strain: float = 0.5
    samples: int = 20
    industrial_shear_rate_per_s: float = 1.0e2
    affine_start: bool = True
    max_image_overlap_ratio: float = 0.0
    pressure_MPa: float | None = None
    barostat_gain: float = 0.3
    contact: ContactParams = field(default_factory=lambda: ContactParams(**CONTACT, where="shear.contact"))
    shortcuts: ShortcutParams = field(
        default_factory=lambda: ShortcutParams(**SHORTCUTS, where="shear.shortcuts"))

    def __post_init__(self) -> None:
        def req(cond: bool, key: str, allowed: str) -> None:
            if not cond:
                raise ConfigError(f"shear.{key}", getattr(self, key), allowed)

        def num(key: str) -> float:
            v = getattr(self, key)
            req(
                isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v),
                key,
                "a finite number",
            )
            return float(v)

        req(num("shear_rate_per_s") != 0.0, "shear_rate_per_s", "a non-zero shear rate (1/s)")
        req(num("strain") > 0.0, "strain", "a strain > 0")
        req(
            isinstance(self.samples, int) and not isinstance(self.samples, bool) and self.samples >= 1,
            "samples",
            "an integer >= 1",
        )
        req(num("industrial_shear_rate_per_s") > 0.0, "industrial_shear_rate_per_s", "> 0 (1/s)")
        req(isinstance(self.affine_start, bool), "affine_start", "true or false")
        req(num("max_image_overlap_ratio") >= 0.0, "max_image_overlap_ratio", ">= 0")
        req(self.pressure_MPa is None or num("pressure_MPa") > 0.0, "pressure_MPa", "null or > 0 (MPa)")
        req(0.0 <= num("barostat_gain") <= 1.0, "barostat_gain", "in [0, 1] (per unit strain)")
        req(isinstance(self.contact, ContactParams), "contact", "a ContactParams")
        req(isinstance(self.shortcuts, ShortcutParams), "shortcuts", "a ShortcutParams")


def image_overlaps(micro: Microstructure, box_m: np.ndarray) -> np.ndarray:
    """Overlap / smaller radius of every overlapping pair of ``micro`` in a box ``box_m`` periodic on
    all three axes (minimum image), as an array (empty if none overlaps)."""
    pos = np.mod(micro.positions_m, box_m)
    r = micro.radii_m
    tree = cKDTree(pos, boxsize=box_m)
    pairs = tree.query_pairs(2.0 * float(r.max()), output_type="ndarray")
    if len(pairs) == 0:
        return np.zeros(0)
    d = pos[pairs[:, 0]] - pos[pairs[:, 1]]
    d -= box_m * np.round(d / box_m)
    gap = np.linalg.norm(d, axis=1) - r[pairs[:, 0]] - r[pairs[:, 1]]
    hit = gap < 0
    return -gap[hit] / np.minimum(r[pairs[hit, 0]], r[pairs[hit, 1]])


def cb_am_contacts(micro: Microstructure, i: np.ndarray, j: np.ndarray) -> float:
    """Mean number of AM particles touching each CB particle (nan without CB), from contact pairs."""
    roles = np.array([s.role for s in micro.species])[micro.species_id]
    cb = roles == "CB"
    if not cb.any():
        return math.nan
    am = roles == "AM"
    n = np.count_nonzero(cb[i] & am[j]) + np.count_nonzero(am[i] & cb[j])
    return float(n / cb.sum())


def steady_means(series: dict[str, np.ndarray], window: np.ndarray) -> tuple[dict[str, Any], dict[str, str]]:
    """Means over the samples in ``window`` (bool) of every series but strain and time, and why a mean
    is undefined or partial. The friction coefficient mu = tau / p and the inertial number
    I = gamma_dot d / sqrt(p / rho) are undefined (NaN in the series) where the pressure p <= 0: a gas
    without load-bearing contacts, or a cell in tension. A mean over none of its samples is None with
    the reason; one over some of them says how many were left out. Never NaN."""
    steady: dict[str, Any] = {}
    undefined: dict[str, str] = {}
    for k in series:
        if k in ("strain", "time_s"):
            continue
        v = np.asarray(series[k], float)[window]
        ok = np.isfinite(v)
        if not ok.any():
            steady[k] = None
            undefined[k] = (f"undefined in all {v.size} samples of the window: the pressure is zero or "
                            "negative there (no load-bearing contacts, or tension)")
            continue
        steady[k] = float(v[ok].mean())
        if not ok.all():
            undefined[k] = (f"mean of {int(ok.sum())} of {v.size} samples: the others had zero or negative "
                            "pressure")
    return steady, undefined


def shear_mix(
    micro: Microstructure,
    params: ShearParams,
    options: EngineOptions,
    *,
    csv_path: Path | None = None,
    progress: bool = True,
) -> tuple[Microstructure, dict[str, Any]]:
    """Shear ``micro`` in a fully periodic Lees–Edwards cell of its box; returns (sheared copy, report).

    The report holds the time series (lists under ``series``: the `electrodem.engine.shear.SERIES`
    columns), the steady-state means over the second half of the strain (``steady``), the solid
    fraction, the CB–AM contact numbers before and after, the time step and the shortcuts. The copy is
    periodic on x, y and z, carries the contacts at the end, ``metadata['shear']`` (report and
    parameters) and ``metadata['shortcuts']['shear']``. With ``csv_path`` the series is written as CSV.
    """
    from electrodem.engine import Guards, Simulation, init
    from electrodem.engine.shear import SERIES, Barostat, impose_affine_velocity, run_shear_cell

    if not isinstance(params, ShearParams):
        raise ConfigError("shear", type(params).__name__, "a ShearParams")
    if micro.n < 2:
        raise ConfigError("shear.microstructure", micro.n, "at least two particles")
    box = np.asarray(micro.box_m, float).copy()
    need = 2.0 * 2.0 * float(micro.radii_m.max()) + 0.5 * float(micro.radii_m.min())
    for a, name in enumerate("xyz"):
        if not box[a] > need:
            allowed = f"> {need:.4g} m: twice the largest diameter plus the neighbour skin"
            raise ConfigError(f"shear.microstructure.box_m[{name}]", box[a], allowed)
    ov = image_overlaps(micro, box)
    if ov.size and float(ov.max()) > params.max_image_overlap_ratio:
        raise ConfigError("shear.max_image_overlap_ratio", params.max_image_overlap_ratio,
                          f">= {float(ov.max()):.3g}: {ov.size} pairs overlap in the fully periodic box "
                          f"(the placed bed does not fit its z-periodic image)")  # fmt: skip

    init(options)
    c, sh = params.contact, params.shortcuts
    mats = engine_materials(micro, c, sh)[:-1]  # no current collector in a fully periodic box
    masses, weights, fines = engine_masses(micro, sh)
    rate = float(params.shear_rate_per_s)
    sim = Simulation(
        mats,
        box_m=box,
        periodic=(True, True, True),
        contact=c.model(),
        gravity_m_per_s2=(0.0, 0.0, 0.0),
        rayleigh_fraction=sh.rayleigh_fraction,
        impact_speed_m_per_s=abs(rate) * float(box[2]),
        guards=Guards(),
        options=options,
        shear_rate_per_s=rate,
    )
    try:
        sim.add_particles(np.mod(micro.positions_m, box), micro.radii_m, micro.species_id.astype(int),
                          masses_kg=masses, gravitational_masses_kg=weights)  # fmt: skip
        if params.affine_start:
            impose_affine_velocity(sim, keep_fluctuations=False)
        shortcuts: dict[str, Any] = {
            "shear_rate_per_s": rate,
            "industrial_shear_rate_per_s": params.industrial_shear_rate_per_s,
            "shear_rate_speed_up_factor": abs(rate) / params.industrial_shear_rate_per_s,
            **shortcuts_log(sh, c, fines),
            "gravity": "off",
            "z_periodic": "the placed bed's height is the z period; the current collector is dropped",
        }
        sim.scalings.update(shortcuts)
        c0 = sim.contact_arrays()
        cb_am_0 = cb_am_contacts(micro, c0["i"], c0["j"])
        baro = None if params.pressure_MPa is None else Barostat(params.pressure_MPa * 1e6,
                                                                 params.barostat_gain)
        if baro is not None:
            shortcuts["barostat"] = "pressure held by scaling the particles, not the box; undone at the end"
        series = run_shear_cell(sim, params.strain, samples=params.samples, csv_path=csv_path,
                                progress=progress, barostat=baro)  # fmt: skip
        g = 1.0 if baro is None else baro.scale
        shortcuts["dt_s"] = float(sim.dt_s)
        st = sim.state()
        c1 = sim.contact_arrays()
        contacts = sim.contacts()
        describe = sim.describe()
        shift = float(sim.lees_edwards_shift_m)
        steps = int(sim.step)
        sim_time = float(sim.time_s)
    finally:
        sim.free()
    cb_am_1 = cb_am_contacts(micro, c1["i"], c1["j"])
    half = series["strain"] >= 0.5 * float(series["strain"][-1])
    steady, undefined = steady_means(series, half)
    # With a barostat the sheared assembly is the real one in the box shrunk by its final length scale.
    solid = float(micro.volumes_m3.sum() / np.prod(box / g))
    keys = SERIES if baro is None else (*SERIES, "solid_fraction", "length_scale")
    report: dict[str, Any] = {
        "shear_rate_per_s": rate,
        "strain": float(series["strain"][-1]),
        "solid_fraction": solid,
        "pressure_controlled": baro is not None,
        "box_um": (box / g * 1e6).tolist(),
        "n_particles": int(micro.n),
        "steady": steady,
        "steady_undefined": undefined,
        "steady_window": "second half of the strain",
        "cb_am_contacts_per_cb": {"start": cb_am_0, "end": cb_am_1},
        "lees_edwards_shift_m": shift,
        "steps": steps,
        "dt_s": shortcuts["dt_s"],
        "simulated_time_s": sim_time,
        "shortcuts": shortcuts,
        # Undefined samples (mu and I at zero or tensile pressure) are null, never NaN, in metrics.json.
        "series": {k: [float(v) if math.isfinite(v) else None for v in series[k]] for k in keys},
    }
    out = micro.with_(
        positions_m=st["positions_m"] / g,
        velocities_m_per_s=st["velocities_m_per_s"] / g,
        box_m=box / g,
        periodic=(True, True, True),
        contacts=contacts if baro is None else None,  # measured at the scaled sizes
        time_s=micro.time_s + sim_time,
        metadata={
            "stage": "sheared",
            "shortcuts": {**micro.metadata.get("shortcuts", {}), "shear": shortcuts},
            "shear": {**report, "params": asdict(params), "engine": describe},
        },
    )
    return out, report
