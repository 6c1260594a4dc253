"""Homogeneous simple shear of a fully periodic box (Lees–Edwards) and its rheology read-out.

Convention: flow along x, gradient along z, streaming profile u_x = gamma_dot (z - Lz/2) (zero
mean flow at mid-height); the Lees–Edwards image above the box is offset by s = gamma_dot Lz t
(mod Lx) and moves at +gamma_dot Lz (see `electrodem.engine.integrate`).

Read-out (from `Simulation.stress_tensor`, compressive positive): pressure p = tr(sigma)/3 (Pa),
shear stress tau = -sigma_xz sign(gamma_dot) (Pa, positive when it resists the imposed shear),
friction coefficient mu = tau / p, inertial number I = |gamma_dot| d_mean / sqrt(p / rho) (d_mean the
number-mean diameter, rho the particle material density: total mass / total particle volume) and
coordination number Z = 2 N_contacts / N.
"""

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np
import taichi as ti

from electrodem.config import ConfigError
from electrodem.engine import arch

BAROSTAT_STEP = 2.0e-4
"""Smallest relative length change the barostat applies (it accumulates smaller ones)."""
SERIES = (
    "strain",
    "time_s",
    "shear_stress_Pa",
    "pressure_Pa",
    "friction_coefficient",
    "inertial_number",
    "coordination_number",
    "kinetic_energy_J",
)


@ti.kernel
def _affine(s: ti.template(), n: ti.i32, rate: float, keep: ti.i32):
    lz = s.dom[2]
    ti.loop_config(serialize=arch.SERIAL_LOOPS)
    for i in range(n):
        if s.invm[i] > 0.0:
            v = s.v[i]
            u = rate * (s.x[i][2] - 0.5 * lz)
            if keep:
                v[0] += u
            else:
                v = v * 0.0
                v[0] = u
            s.v[i] = v


def impose_affine_velocity(sim: Any, keep_fluctuations: bool = True) -> None:
    """Give every mobile particle the streaming velocity u_x = gamma_dot (z - Lz/2) of the current
    shear rate (m/s): added to its velocity (``keep_fluctuations``) or replacing it (spins kept)."""
    sim._check_alive()
    if sim.n:
        _affine(sim._store, sim.n, float(sim.shear_rate_per_s), int(bool(keep_fluctuations)))
    sim._forces_valid = False
    sim._energy_ref = None


def shear_state(sim: Any) -> dict[str, Any]:
    """Rheology of the current state (see module docstring): stress_Pa (3, 3), pressure_Pa,
    shear_stress_Pa, friction_coefficient, inertial_number, coordination_number."""
    sigma = sim.stress_tensor()
    p = float(np.trace(sigma) / 3.0)
    rate = float(sim.shear_rate_per_s)
    tau = float(-sigma[0, 2] * (1.0 if rate >= 0 else -1.0))
    st = sim.state()
    mobile = np.isfinite(st["masses_kg"])
    r = st["radii_m"][mobile]
    rho = float(st["masses_kg"][mobile].sum() / (4.0 / 3.0 * np.pi * (r**3).sum())) if r.size else math.nan
    d_mean = float(2.0 * r.mean()) if r.size else math.nan
    n_contacts = len(sim.contact_arrays()["i"])
    return {
        "stress_Pa": sigma,
        "pressure_Pa": p,
        "shear_stress_Pa": tau,
        "friction_coefficient": tau / p if p > 0 else math.nan,
        "inertial_number": abs(rate) * d_mean / math.sqrt(p / rho) if p > 0 else math.nan,
        "coordination_number": 2.0 * n_contacts / max(sim.n, 1),
    }


class Barostat:
    """Holds a Lees–Edwards cell's pressure by scaling every particle length (radii x g, masses x g^3:
    density kept) instead of the box, which such a cell cannot change. A uniform scaling of all lengths
    leaves stresses and strains of a packing unchanged (Hertz forces go as L^2, areas as L^2), so the
    sheared assembly is the one of real sizes in a box of side L / g, its time scale stretched by g.
    Over a shear strain increment d(gamma), ln g changes by ``gain`` x d(gamma) x clip((p_target - p) /
    p_target, -1, 1): a compression no faster than ``gain`` per unit strain, so that the packing follows
    it (a box barostat limits its strain rate likewise). The change is applied once it reaches
    `BAROSTAT_STEP` (each resize rebuilds the neighbour list). ``scale`` is the current g (1 = as built).
    """

    def __init__(self, target_Pa: float, gain: float = 0.1) -> None:
        if not (math.isfinite(target_Pa) and target_Pa > 0):
            raise ConfigError("target_Pa", target_Pa, "a pressure > 0 (Pa)")
        if not (math.isfinite(gain) and gain >= 0):
            raise ConfigError("gain", gain, ">= 0 (relative length change per unit strain)")
        self.target, self.gain, self.scale, self.pending = float(target_Pa), float(gain), 1.0, 0.0

    def update(self, sim: Any, pressure_Pa: float, d_strain: float) -> None:
        """Account for ``d_strain`` of shearing at ``pressure_Pa`` (Pa); resize when due."""
        error = float(np.clip((self.target - pressure_Pa) / self.target, -1.0, 1.0))
        self.pending += self.gain * d_strain * error
        if abs(self.pending) < BAROSTAT_STEP:
            return
        f = math.exp(self.pending)
        self.pending = 0.0
        sim.set_radii(sim.ids, sim.state()["radii_m"] * f, rescale_mass=True)
        self.scale *= f


def run_shear_cell(
    sim: Any,
    strain: float,
    shear_rate_per_s: float | None = None,
    samples: int = 50,
    csv_path: str | Path | None = None,
    progress: bool = False,
    barostat: Barostat | None = None,
    barostat_every_steps: int = 200,
) -> dict[str, np.ndarray]:
    """Shear ``sim`` (fully periodic) by ``strain`` (gamma_dot t, dimensionless) at
    ``shear_rate_per_s`` (1/s; None keeps the simulation's rate, which must then be non-zero),
    recording ``samples`` equally spaced read-outs (the `SERIES` columns, see `shear_state`).
    Returns the series as arrays (plus ``stress_Pa`` (samples, 3, 3)); with ``csv_path`` also
    writes them (without the tensor) as CSV.

    With a `Barostat` the cell is pressure-controlled (a mu(I) rheometer at imposed pressure): every
    ``barostat_every_steps`` it resizes the particles towards its target pressure; the time step follows
    the sizes, so strain is gamma_dot x elapsed time, and the series gain ``solid_fraction`` (particle
    volume / box volume: that of the real sizes in the box shrunk by the scale) and ``length_scale``."""
    if not (math.isfinite(strain) and strain > 0):
        raise ConfigError("strain", strain, "a finite strain > 0")
    if not (isinstance(samples, int) and samples >= 1):
        raise ConfigError("samples", samples, "an integer >= 1")
    if shear_rate_per_s is not None:
        sim.set_shear_rate(shear_rate_per_s)
    rate = float(sim.shear_rate_per_s)
    if rate == 0.0:
        raise ConfigError("shear_rate_per_s", rate, "a non-zero shear rate (1/s)")
    if barostat is not None:
        out = _run_pressure_controlled(sim, strain, samples, progress, barostat, barostat_every_steps)
        if csv_path is not None:
            write_series_csv(csv_path, (*SERIES, "solid_fraction", "length_scale"), out)
        return out
    sim.run(steps=0, progress=False)  # chooses the time step and primes the forces
    total = max(1, int(round(strain / (abs(rate) * sim.dt_s))))
    marks = np.unique(np.linspace(0, total, samples + 1).round().astype(int))[1:]
    rows: dict[str, list[Any]] = {k: [] for k in (*SERIES, "stress_Pa")}
    done = 0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, unit="step", desc="shear", leave=False, dynamic_ncols=True)
    try:
        for m in marks:
            sim.run(steps=int(m - done), progress=False)
            if bar is not None:
                bar.update(int(m - done))
            done = int(m)
            st = shear_state(sim)
            rows["strain"].append(abs(rate) * done * sim.dt_s)
            rows["time_s"].append(sim.time_s)
            rows["kinetic_energy_J"].append(sim.diagnostics()["kinetic_energy_J"])
            for k in ("shear_stress_Pa", "pressure_Pa", "friction_coefficient", "inertial_number"):
                rows[k].append(st[k])
            rows["coordination_number"].append(st["coordination_number"])
            rows["stress_Pa"].append(st["stress_Pa"])
    finally:
        if bar is not None:
            bar.close()
    out = {k: np.asarray(v, dtype=float) for k, v in rows.items()}
    if csv_path is not None:
        write_series_csv(csv_path, SERIES, out)
    return out


def write_series_csv(path: str | Path, columns: tuple[str, ...], series: dict[str, Any]) -> Path:
    """Write the ``columns`` of ``series`` (equal-length sequences) as CSV with a header row."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(columns)
        for row in zip(*(series[k] for k in columns), strict=True):
            w.writerow([f"{x:.9g}" for x in row])
    return path


def _run_pressure_controlled(sim: Any, strain: float, samples: int, progress: bool, barostat: Barostat,
                             every: int) -> dict[str, np.ndarray]:
    """`run_shear_cell` with a barostat (arguments checked there)."""
    if not (isinstance(every, int) and every >= 1):
        raise ConfigError("barostat_every_steps", every, "an integer >= 1")
    rate = abs(float(sim.shear_rate_per_s))
    rows: dict[str, list[Any]] = {k: [] for k in (*SERIES, "solid_fraction", "length_scale", "stress_Pa")}
    marks = list(np.linspace(0.0, strain, samples + 1)[1:])
    box_volume = float(np.prod(sim.box_m))
    sim.run(steps=0, progress=False)
    t0, done = sim.time_s, 0.0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=strain, unit="strain", desc="shear", leave=False, dynamic_ncols=True,
                   bar_format="{l_bar}{bar}| {n:.2f}/{total:.2f} [{elapsed}<{remaining}]")
    try:
        while marks:
            left = math.ceil((marks[0] - done) / (rate * sim.dt_s) - 1e-9)
            t = sim.time_s
            sim.run(steps=max(1, min(every, left)), progress=False)
            step = rate * (sim.time_s - t)
            done = rate * (sim.time_s - t0)
            barostat.update(sim, float(np.trace(sim.stress_tensor()) / 3.0), step)
            if bar is not None:
                bar.update(step)
            if done >= marks[0] * (1.0 - 1e-9):
                marks.pop(0)
                st = shear_state(sim)
                r = sim.state()["radii_m"]
                rows["strain"].append(done)
                rows["time_s"].append(sim.time_s)
                rows["kinetic_energy_J"].append(sim.diagnostics()["kinetic_energy_J"])
                for k in ("shear_stress_Pa", "pressure_Pa", "friction_coefficient", "inertial_number",
                          "coordination_number", "stress_Pa"):
                    rows[k].append(st[k])
                rows["solid_fraction"].append(float(4.0 / 3.0 * np.pi * np.sum(r**3) / box_volume))
                rows["length_scale"].append(barostat.scale)
    finally:
        if bar is not None:
            bar.close()
    return {k: np.asarray(v, dtype=float) for k, v in rows.items()}
