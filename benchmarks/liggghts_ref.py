"""LIGGGHTS reference run of electrodem's dense-bed DEM benchmark (issue 3, "Performance").

``run_liggghts`` writes a LIGGGHTS-PUBLIC input script for the standard case, runs it in a single
process and returns the throughput of the timed phase only (insertion and settling excluded).
``benchmarks/dense_bed.py`` imports this file; everything is a plain top-level function.

Standard case (``mix="bidisperse"``, all SI)
-------------------------------------------
* Box 0.1 m x 0.1 m (x, y periodic) x 0.4 m: floor wall at z = 0, ceiling wall at z = 0.4 m,
  gravity 9.81 m/s^2 along -z.
* N = 20,000 spheres, 50/50 by number of radius 1.5 mm and 2.5 mm (the odd one goes to the small
  radius), density 2500 kg/m^3, E = 5 MPa, nu = 0.3, restitution 0.5, friction 0.5 (particle-particle
  and particle-wall), Hertz normal + Mindlin tangential with history and Coulomb limit
  (``pair_style gran model hertz tangential history``), no rolling resistance, no cohesion.
* Time step 1e-5 s, i.e. 5.4 % of the Rayleigh time of the 1.5 mm spheres (1.84e-4 s).
* All N spheres are inserted at once at random, without overlap, at rest, anywhere in the box
  (``fix insert/pack`` with ``particles_in_region N``, ``all_in yes``, which gives a solid fraction of
  about 0.2 in the box), settle for ``settle_steps`` (default 50,000 = 0.5 s), then ``steps`` (default
  10,000) steps of the settled bed are timed.
* Neighbour settings: ``neighbor 0.75e-3 bin`` (skin = 0.5 x the small radius) and
  ``neigh_modify delay 0`` (LIGGGHTS then rebuilds only when a sphere has moved half a skin).
  LIGGGHTS' default bin size (half the largest neighbour cutoff) and default atom sorting are kept.

Box for other N (``box_m``): the box keeps its height and grows laterally, side
``L = L_20k * sqrt(N / 20000)``, so the settled bed is equally deep (about 0.13 m) for every N and the
cost per particle-step is comparable across N. At N = 20,000 this is exactly 0.1 x 0.1 x 0.4 m.

Electrode-like mix (``mix="electrode"``, constants in ``ELECTRODE_MIX``)
------------------------------------------------------------------------
* Size ratio 20: large radius 2.5 mm (the "active material"), small radius 0.125 mm (the "carbon
  black"); the large spheres hold 85 % of the solid volume, which for this size ratio means a large
  number fraction of 1 / (1 + 20^3 * 0.15 / 0.85) = 7.08e-4 (14 large spheres out of 20,000; the count
  is rounded to the nearest integer, which at N = 20,000 gives 84.9 % large volume).
* Same material, contact law, gravity and walls as the standard case.
* Box: the standard box scaled down isotropically so that 20,000 spheres of this mix fill it to the
  same solid fraction as the standard case (mean sphere volume is 1.37e-3 of the bidisperse one):
  11.1 mm x 11.1 mm x 44.4 mm at N = 20,000 (``ELECTRODE_MIX["box_xy_m_at_20k"]``,
  ``ELECTRODE_MIX["box_z_m"]``), growing laterally with sqrt(N / 20000) as above. N must be at least
  about 4,200 so that the periodic side exceeds the largest neighbour cutoff. In the settled bed (LIGGGHTS,
  N = 20,000) the small spheres have percolated through the large ones: 99 % of small centres lie below
  8.5 mm, large centres between 2.7 and 13.6 mm, a few small spheres still rattle above.
* Time step: the standard case runs at 5.4 % of the Rayleigh time of its smallest sphere; keeping that
  same fraction for the 0.125 mm spheres (Rayleigh time 1.53e-5 s, ``rayleigh_dt``) gives
  dt = 1e-5 s * 0.125 / 1.5 = 8.33e-7 s (``ELECTRODE_MIX["dt_s"]``).
  Falling from 44 mm takes about 0.1 s = 120,000 steps at this dt; the default 50,000 settle steps leave
  the particles in the air. Use ``ELECTRODE_MIX["settle_steps"]`` = 200,000 (kinetic energy then 75x
  below its peak and still slowly falling).
* Neighbour settings: skin 62.5 um (0.5 x small radius), ``neighbor 6.25e-5 bin``,
  ``neigh_modify delay 0``; large and small spheres are atom types 1 and 2 of the same material.
  ``neighbor ... multi`` (per-type bins, meant for wide size ratios) is NOT used: in LIGGGHTS-PUBLIC
  3.8.0 it yields empty granular neighbour lists (0 neighbours, spheres fall through each other), which
  ``run_liggghts`` now detects and refuses. With ``bin`` the bins are sized by the largest cutoff
  (about 2.5 mm), so every small sphere scans a stencil full of small spheres at each rebuild: that is
  LIGGGHTS' real cost for this mix and what electrodem's multi-level grid is meant to beat.

Besides the wall time of the timed phase (LIGGGHTS' "Loop time"), the result holds the CPU time LIGGGHTS
got during that phase (``timed_cpu_s``, read from /proc) and ``particle_steps_per_cpu_s``: on a shared,
oversubscribed machine the wall figure understates LIGGGHTS and the CPU figure is the fairer one.

Run it: ``python benchmarks/liggghts_ref.py --n 20000 --steps 10000 --settle-steps 50000``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

# Standard case (issue 3). Names carry their units.
STANDARD = dict(
    n=20_000,
    steps=10_000,
    settle_steps=50_000,
    box_xy_m_at_20k=0.1,
    box_z_m=0.4,
    gravity_m_s2=9.81,
    density_kg_m3=2500.0,
    youngs_modulus_Pa=5.0e6,
    poisson_ratio=0.3,
    restitution=0.5,
    friction=0.5,
    dt_s=1.0e-5,
)

BIDISPERSE_MIX = dict(
    radii_m=(1.5e-3, 2.5e-3),
    number_fractions=(0.5, 0.5),
    skin_m=0.75e-3,
    neighbor_style="bin",
    box_xy_m_at_20k=STANDARD["box_xy_m_at_20k"],
    box_z_m=STANDARD["box_z_m"],
    dt_s=STANDARD["dt_s"],
    settle_steps=STANDARD["settle_steps"],
)

_REFERENCE_N = 20_000


def rayleigh_dt(radius_m: float, density: float, E: float, nu: float) -> float:
    """Rayleigh critical time step [s] of a sphere: pi R sqrt(rho/G) / (0.1631 nu + 0.8766).

    radius_m [m], density [kg/m^3], E Young's modulus [Pa], nu Poisson's ratio [-]; G = E / (2 (1 + nu)).
    The denominator is the usual fit of the Rayleigh-wave speed over the shear-wave speed.
    """
    for name, value in (("radius_m", radius_m), ("density", density), ("E", E)):
        if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
            raise ValueError(f"rayleigh_dt: {name}={value!r} must be a finite number > 0")
    if not (isinstance(nu, int | float) and -1.0 < nu < 0.5):
        raise ValueError(f"rayleigh_dt: nu={nu!r} must lie in (-1, 0.5)")
    shear_modulus_Pa = E / (2.0 * (1.0 + nu))
    return math.pi * radius_m * math.sqrt(density / shear_modulus_Pa) / (0.1631 * nu + 0.8766)


def _electrode_mix() -> dict:
    large_radius_m, small_radius_m = 2.5e-3, 0.125e-3
    large_volume_share = 0.85
    ratio = large_radius_m / small_radius_m
    large_number_fraction = 1.0 / (1.0 + ratio**3 * (1.0 - large_volume_share) / large_volume_share)
    sphere_volume = (4.0 / 3.0) * math.pi
    mean_volume_el = sphere_volume * (
        large_number_fraction * large_radius_m**3 + (1 - large_number_fraction) * small_radius_m**3
    )
    mean_volume_bi = sphere_volume * sum(
        f * r**3 for r, f in zip(BIDISPERSE_MIX["radii_m"], BIDISPERSE_MIX["number_fractions"], strict=True)
    )
    # Same solid fraction of the box as the standard case at N = 20,000: scale all box lengths.
    scale = (mean_volume_el / mean_volume_bi) ** (1.0 / 3.0)
    props = (STANDARD["density_kg_m3"], STANDARD["youngs_modulus_Pa"], STANDARD["poisson_ratio"])
    rayleigh_fraction = STANDARD["dt_s"] / rayleigh_dt(min(BIDISPERSE_MIX["radii_m"]), *props)
    return dict(
        large_radius_m=large_radius_m,
        small_radius_m=small_radius_m,
        size_ratio=ratio,
        large_solid_volume_share=large_volume_share,
        large_number_fraction=large_number_fraction,
        radii_m=(small_radius_m, large_radius_m),
        skin_m=0.5 * small_radius_m,
        # "multi" would be the LIGGGHTS option meant for wide size ratios, but in LIGGGHTS-PUBLIC 3.8.0
        # it builds empty granular neighbour lists (spheres pass through each other), so "bin" it is.
        neighbor_style="bin",
        box_xy_m_at_20k=STANDARD["box_xy_m_at_20k"] * scale,
        box_z_m=STANDARD["box_z_m"] * scale,
        rayleigh_fraction=rayleigh_fraction,
        settle_steps=200_000,
        dt_s=rayleigh_fraction * rayleigh_dt(small_radius_m, *props),
    )


ELECTRODE_MIX = _electrode_mix()
MIXES = {"bidisperse": BIDISPERSE_MIX, "electrode": ELECTRODE_MIX}


def _check_mix(mix: str) -> dict:
    if mix not in MIXES:
        raise ValueError(f"mix={mix!r} is not allowed; choose one of {sorted(MIXES)}")
    return MIXES[mix]


def species_counts(n: int, mix: str) -> list[tuple[float, int]]:
    """Exact (radius [m], number of spheres) per species for ``n`` spheres of ``mix``, small first."""
    params = _check_mix(mix)
    if mix == "bidisperse":
        n_large = n // 2
    else:
        n_large = round(n * params["large_number_fraction"])
        if n_large < 1:
            raise ValueError(f"n={n} is too small for mix='electrode': it gives no large sphere")
    small_r, large_r = min(params["radii_m"]), max(params["radii_m"])
    return [(small_r, n - n_large), (large_r, n_large)]


def box_m(n: int, mix: str) -> tuple[float, float, float]:
    """Box (Lx, Ly, Lz) [m]: height fixed, side L_20k * sqrt(n / 20000); (0.1, 0.1, 0.4) at the standard."""
    params = _check_mix(mix)
    side_m = params["box_xy_m_at_20k"] * math.sqrt(n / _REFERENCE_N)
    return side_m, side_m, params["box_z_m"]


def _validate(n: int, steps: int, settle_steps: int, mix: str, seed: int) -> None:
    for name, value, low in (("n", n, 2), ("steps", steps, 1), ("settle_steps", settle_steps, 0),
                             ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name}={value!r} must be an integer >= {low}")
    params = _check_mix(mix)
    species_counts(n, mix)
    side_m = box_m(n, mix)[0]
    cutoff_m = 2.0 * max(params["radii_m"]) + params["skin_m"]
    if side_m <= cutoff_m:
        raise ValueError(
            f"n={n} gives a periodic side of {side_m:.4g} m for mix={mix!r}, not larger than the largest "
            f"neighbour cutoff {cutoff_m:.4g} m; use a larger n"
        )


def _next_prime(k: int) -> int:
    def is_prime(m: int) -> bool:
        return m > 1 and all(m % d for d in range(2, math.isqrt(m) + 1))

    while not is_prime(k):
        k += 1
    return k


def _primes_from_seed(seed: int, count: int) -> list[int]:
    # LIGGGHTS wants distinct primes > 10000 as seeds of its random streams.
    primes, k = [], 10_007 + 7_919 * seed
    for _ in range(count):
        p = _next_prime(k)
        primes.append(p)
        k = p + 1
    return primes


PHASE_MARK = "ELECTRODEM_PHASE"


def input_script(n: int, steps: int, settle_steps: int, mix: str, seed: int) -> str:
    """Text of the LIGGGHTS input script of the benchmark case (see the module docstring)."""
    _validate(n, steps, settle_steps, mix, seed)
    params = MIXES[mix]
    lx, ly, lz = box_m(n, mix)
    (r_small, n_small), (r_large, n_large) = species_counts(n, mix)
    e_pa, nu = STANDARD["youngs_modulus_Pa"], STANDARD["poisson_ratio"]
    rest, fric, rho = STANDARD["restitution"], STANDARD["friction"], STANDARD["density_kg_m3"]
    p_large, p_small, p_dist, p_ins = _primes_from_seed(seed, 4)
    thermo_settle = max(settle_steps // 20, 1)
    thermo_timed = max(steps // 10, 1)
    contact = "model hertz tangential history"
    # A new thermo_style resets thermo_modify, so it is repeated after each one.
    thermo_modify = "thermo_modify lost error norm no"
    # Atom type 1 = large, 2 = small, same material; type 1 is also the walls' material.
    lines = [
        f"# electrodem dense-bed benchmark, mix={mix}, n={n}, seed={seed} (written by liggghts_ref.py)",
        "atom_style granular",
        "atom_modify map array",
        "boundary p p f",
        "newton off",
        "communicate single vel yes",
        "units si",
        f"region box block 0 {lx!r} 0 {ly!r} 0 {lz!r} units box",
        "create_box 2 box",
        f"neighbor {params['skin_m']!r} {params['neighbor_style']}",
        "neigh_modify delay 0",
        f"fix m1 all property/global youngsModulus peratomtype {e_pa!r} {e_pa!r}",
        f"fix m2 all property/global poissonsRatio peratomtype {nu!r} {nu!r}",
        f"fix m3 all property/global coefficientRestitution peratomtypepair 2 {' '.join([repr(rest)] * 4)}",
        f"fix m4 all property/global coefficientFriction peratomtypepair 2 {' '.join([repr(fric)] * 4)}",
        f"pair_style gran {contact}",
        "pair_coeff * *",
        f"timestep {params['dt_s']!r}",
        f"fix gravi all gravity {STANDARD['gravity_m_s2']!r} vector 0.0 0.0 -1.0",
        f"fix floor all wall/gran {contact} primitive type 1 zplane 0.0",
        f"fix ceiling all wall/gran {contact} primitive type 1 zplane {lz!r}",
        f"fix pts1 all particletemplate/sphere {p_large} atom_type 1 density constant {rho!r} "
        f"radius constant {r_large!r}",
        f"fix pts2 all particletemplate/sphere {p_small} atom_type 2 density constant {rho!r} "
        f"radius constant {r_small!r}",
        f"fix pdd all particledistribution/discrete/numberbased {p_dist} 2 pts1 {n_large / n!r} "
        f"pts2 {n_small / n!r}",
        f"fix ins all insert/pack seed {p_ins} distributiontemplate pdd maxattempt 1000 insert_every once "
        f"overlapcheck yes all_in yes random_distribute exact vel constant 0.0 0.0 0.0 "
        f"region box particles_in_region {n}",
        "fix integr all nve/sphere",
        # Reports the time step as a fraction of LIGGGHTS' own Rayleigh time (checked in the tests).
        "fix tscheck all check/timestep/gran 1 1.0 1.0 warn no",
        "compute rke all erotate/sphere",
        "thermo_style custom step atoms ke c_rke f_tscheck[1]",
        thermo_modify,
        "thermo 1",
        f'print "{PHASE_MARK} insert"',
        "run 1",
        "unfix ins",
        "unfix tscheck",
        "group large type 1",
        "group small type 2",
        "variable natoms equal atoms",
        "variable nlarge equal count(large)",
        "variable nsmall equal count(small)",
        f'print "{PHASE_MARK} inserted ${{natoms}} large ${{nlarge}} small ${{nsmall}}"',
        "thermo_style custom step atoms ke c_rke",
        thermo_modify,
        f"thermo {thermo_settle}",
        f'print "{PHASE_MARK} settle"',
        f"run {settle_steps}",
        f"thermo {thermo_timed}",
        f'print "{PHASE_MARK} timed"',
        f"run {steps}",
        f'print "{PHASE_MARK} after"',
        # Bed state after the timed phase, evaluated outside it so that it costs the timing nothing.
        "compute zc all property/atom z",
        "compute zmax all reduce max c_zc",
        "compute ncon all contact/atom",
        "compute ncon_mean all reduce ave c_ncon",
        "thermo_style custom step atoms ke c_rke c_ncon_mean c_zmax",
        thermo_modify,
        "run 0",
        f'print "{PHASE_MARK} done"',
    ]
    return "\n".join(lines) + "\n"


def write_input(n: int, steps: int, settle_steps: int, mix: str, seed: int, workdir: Path) -> Path:
    """Write ``in.dense_bed_<mix>`` into ``workdir`` (created if missing) and return its path."""
    text = input_script(n, steps, settle_steps, mix, seed)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"in.dense_bed_{mix}"
    path.write_text(text)
    return path


def find_liggghts() -> str | None:
    """Path of a LIGGGHTS executable on PATH (``liggghts``, else ``lmp_*`` that reports LIGGGHTS), or None."""
    found = shutil.which("liggghts")
    if found:
        return found
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if not directory or not os.path.isdir(directory):
            continue
        for name in sorted(os.listdir(directory)):
            path = os.path.join(directory, name)
            if name.startswith("lmp_") and os.access(path, os.X_OK) and _is_liggghts(path):
                return path
    return None


def _is_liggghts(executable: str) -> bool:
    # A plain LAMMPS lmp_* binary would not understand the granular commands used here.
    try:
        out = subprocess.run([executable, "-h"], capture_output=True, text=True, timeout=30,
                             stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return False
    return "LIGGGHTS" in out.stdout + out.stderr


_LOOP_RE = re.compile(r"Loop time of ([0-9.eE+-]+) on (\d+) procs(?: \(\d+ OpenMP threads\))? "
                      r"for (\d+) steps with (\d+) atoms")
_VERSION_RE = re.compile(r"LIGGGHTS \(Version ([^,)]+)")
_INSERTED_RE = re.compile(rf"{PHASE_MARK} inserted (\d+) large (\d+) small (\d+)")
_BREAKDOWN_RE = re.compile(r"^(Pair|Neigh|Comm|Outpt|Other|Modify)\s*\|?\s*(?:time \(%\) =)?\s*([0-9.eE+-]+)",
                           re.M)
_MEMORY_RE = re.compile(r"Memory usage per processor = ([0-9.eE+-]+) Mbytes")
_NEIGH_BUILDS_RE = re.compile(r"Neighbor list builds = (\d+)")
_TOTAL_NEIGH_RE = re.compile(r"Total # of neighbors = (\d+)")


def _phase(log: str, name: str) -> str:
    start = log.find(f"{PHASE_MARK} {name}")
    if start < 0:
        raise RuntimeError(f"LIGGGHTS log has no '{PHASE_MARK} {name}' marker: the run did not reach it")
    end = log.find(PHASE_MARK, start + len(PHASE_MARK) + len(name) + 1)
    return log[start:end if end >= 0 else len(log)]


def _thermo_rows(section: str, n_cols: int) -> list[list[float]]:
    rows = []
    for line in section.splitlines():
        parts = line.split()
        if len(parts) != n_cols or not parts[0].isdigit():
            continue
        try:
            rows.append([float(p) for p in parts])
        except ValueError:
            continue
    return rows


def parse_log(log: str, n: int, steps: int) -> dict:
    """Figures of the timed phase from a LIGGGHTS log of ``input_script``; raises if anything is missing."""
    version = _VERSION_RE.search(log)
    inserted = _INSERTED_RE.search(log)
    if inserted is None:
        raise RuntimeError("LIGGGHTS log lacks the inserted-count line: insertion did not complete")
    n_inserted, n_large, n_small = (int(g) for g in inserted.groups())
    timed = _phase(log, "timed")
    loop = _LOOP_RE.search(timed)
    if loop is None:
        raise RuntimeError("LIGGGHTS log has no 'Loop time' line for the timed phase")
    wall_s, procs, loop_steps, atoms = float(loop.group(1)), int(loop.group(2)), int(loop.group(3)), int(
        loop.group(4))
    if loop_steps != steps or atoms != n:
        raise RuntimeError(f"timed phase ran {loop_steps} steps with {atoms} atoms, "
                           f"expected {steps} with {n}")
    result = dict(
        particle_steps_per_s=n * steps / wall_s if wall_s > 0 else float("inf"),
        wall_s=wall_s,
        procs=procs,
        n_inserted=n_inserted,
        n_large=n_large,
        n_small=n_small,
        liggghts_version=version.group(1).strip() if version else "unknown",
        breakdown_s={k: float(v) for k, v in _BREAKDOWN_RE.findall(timed)},
    )
    memory = _MEMORY_RE.search(timed)
    if memory:
        result["memory_mb_per_proc"] = float(memory.group(1))
    neighbors = _TOTAL_NEIGH_RE.search(timed)
    if neighbors:
        result["total_neighbors"] = int(neighbors.group(1))
        if result["total_neighbors"] == 0:
            raise RuntimeError("LIGGGHTS' neighbour list of the timed phase is empty: no pair contact was "
                               "computed (a broken neighbour style?), so its timing is meaningless")
    builds = _NEIGH_BUILDS_RE.search(timed)
    if builds:
        result["neighbor_builds"] = int(builds.group(1))
    ins_rows = _thermo_rows(_phase(log, "insert"), 5)
    if ins_rows:
        result["rayleigh_fraction_liggghts"] = ins_rows[-1][4]
    if "Forced restart written" in timed:
        # LIGGGHTS' signal handler (SIGINT/SIGUSR1 from outside) ends the run early but still prints the
        # planned step count in its 'Loop time' line.
        raise RuntimeError("the timed phase was interrupted by a signal (LIGGGHTS wrote a forced restart)")
    timed_rows = _thermo_rows(timed, 4)
    if timed_rows:
        done_steps = int(timed_rows[-1][0] - timed_rows[0][0])
        if done_steps != steps:
            raise RuntimeError(f"the timed phase advanced {done_steps} steps, expected steps={steps}")
        result["ke_start_J"], result["ke_end_J"] = timed_rows[0][2], timed_rows[-1][2]
    after_rows = _thermo_rows(_phase(log, "after"), 6)
    if after_rows:
        result["mean_contacts_per_sphere"], result["bed_top_z_m"] = after_rows[-1][4], after_rows[-1][5]
    return result


def _process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a running process from /proc (Linux), None where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # Fields 14 and 15 of /proc/PID/stat (utime, stime), counted after the ")" that ends field 2.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _run_streaming(cmd: list[str], workdir: Path, env: dict, screen_file: Path, total_steps: int | None,
                   desc: str) -> tuple[int, dict[str, tuple[float, float | None]]]:
    """Run ``cmd``, copy its output to ``screen_file``; a tqdm bar over thermo steps if ``total_steps``.

    Returns the exit code and, per phase marker seen, (wall clock [s], process CPU time [s]) when the
    marker line arrived.
    """
    bar = None
    if total_steps is not None:
        from tqdm import tqdm

        bar = tqdm(total=total_steps, desc=desc, unit="step")
    done = 0
    marks: dict[str, tuple[float, float | None]] = {}
    with open(screen_file, "w", buffering=1) as screen, subprocess.Popen(
        cmd, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(PHASE_MARK):
                marks[line.split()[1]] = (time.perf_counter(), _process_cpu_s(proc.pid))
            screen.write(line)
            parts = line.split()
            if bar is not None and len(parts) >= 4 and parts[0].isdigit():
                # LIGGGHTS' step counter runs on across the insert, settle and timed runs.
                step = min(int(parts[0]), total_steps)
                if step > done:
                    bar.update(step - done)
                    done = step
        returncode = proc.wait()
    if bar is not None:
        bar.close()
    return returncode, marks


def _timed_cpu(marks: dict[str, tuple[float, float | None]], particle_steps: int) -> dict:
    """CPU time LIGGGHTS spent between the 'timed' and 'after' markers, and its share of that wall time."""
    if "timed" not in marks or "after" not in marks:
        return {}
    (wall0, cpu0), (wall1, cpu1) = marks["timed"], marks["after"]
    if cpu0 is None or cpu1 is None or cpu1 <= cpu0:
        return {}
    cpu_s = cpu1 - cpu0
    return dict(timed_cpu_s=cpu_s, timed_cpu_share=cpu_s / (wall1 - wall0),
                particle_steps_per_cpu_s=particle_steps / cpu_s)


def run_liggghts(n: int, steps: int, settle_steps: int, mix: str, seed: int, workdir: Path,
                 progress: bool = False) -> dict | None:
    """Run the benchmark case in LIGGGHTS (one process) and return the timed-phase figures.

    Returns None when no LIGGGHTS executable is on PATH. Otherwise the dict holds at least
    ``particle_steps_per_s`` [1/s] (n * steps / wall time of the timed phase), ``wall_s`` [s] (timed
    phase only), ``n_inserted``, ``liggghts_version``, ``input_file``, ``log_file``, plus the other mix
    parameters used and ``peak_rss_mb`` of the LIGGGHTS process. Raises RuntimeError if LIGGGHTS fails
    or does not insert all n spheres.
    """
    _validate(n, steps, settle_steps, mix, seed)
    executable = find_liggghts()
    if executable is None:
        return None
    workdir = Path(workdir)
    in_file = write_input(n, steps, settle_steps, mix, seed, workdir)
    log_file = workdir / f"log.dense_bed_{mix}"
    screen_file = workdir / f"screen.dense_bed_{mix}"
    # One process, one thread: issue 3 compares against single-process LIGGGHTS.
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [executable, "-in", in_file.name, "-log", log_file.name]
    if shutil.which("stdbuf"):
        # LIGGGHTS block-buffers a piped stdout; line buffering lets the phase markers arrive on time
        # (for the CPU-time reading of the timed phase) and the progress bar follow the run.
        cmd = [shutil.which("stdbuf"), "-oL", *cmd]
    total_steps = 1 + settle_steps + steps
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    returncode, marks = _run_streaming(cmd, workdir, env, screen_file, total_steps if progress else None,
                                f"LIGGGHTS {mix} n={n}")
    total_wall_s = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (usage.ru_utime + usage.ru_stime) - (before.ru_utime + before.ru_stime)
    screen_text = screen_file.read_text()
    if returncode != 0:
        tail = "\n".join(screen_text.splitlines()[-15:])
        raise RuntimeError(f"LIGGGHTS exited with code {returncode} (input {in_file}); last output:\n{tail}")
    result = parse_log(screen_text, n, steps)
    if result["n_inserted"] != n:
        raise RuntimeError(
            f"LIGGGHTS inserted {result['n_inserted']} of n={n} spheres (mix={mix}); the insertion region is "
            f"too full for random insertion; see {screen_file}"
        )
    (r_small, n_small), (r_large, n_large) = species_counts(n, mix)
    if (result["n_small"], result["n_large"]) != (n_small, n_large):
        raise RuntimeError(f"LIGGGHTS inserted {result['n_large']} large + {result['n_small']} small "
                           f"spheres, expected {n_large} + {n_small}")
    result.update(
        engine="liggghts",
        executable=executable,
        mix=mix,
        n=n,
        steps=steps,
        settle_steps=settle_steps,
        seed=seed,
        dt_s=MIXES[mix]["dt_s"],
        skin_m=MIXES[mix]["skin_m"],
        box_m=list(box_m(n, mix)),
        radii_m=[r_small, r_large],
        counts=[n_small, n_large],
        # ru_maxrss is in KiB on Linux: the largest child of this process so far, i.e. LIGGGHTS unless
        # the caller ran a bigger child process before.
        peak_rss_mb=usage.ru_maxrss / 1024.0,
        total_wall_s=total_wall_s,
        **_timed_cpu(marks, n * steps),
        # Share of one core LIGGGHTS got over the whole run (insert + settle + timed): below ~0.95 the
        # machine was oversubscribed and wall_s overstates LIGGGHTS' cost.
        cpu_share=cpu_s / total_wall_s if total_wall_s > 0 else float("nan"),
        input_file=str(in_file),
        log_file=str(log_file),
    )
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=STANDARD["n"])
    parser.add_argument("--steps", type=int, default=STANDARD["steps"])
    parser.add_argument("--settle-steps", type=int, default=STANDARD["settle_steps"])
    parser.add_argument("--mix", choices=sorted(MIXES), default="bidisperse")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the input and log go (default: a fresh temporary directory)")
    parser.add_argument("--progress", action="store_true", help="show a progress bar")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="liggghts_dense_bed_"))
    result = run_liggghts(args.n, args.steps, args.settle_steps, args.mix, args.seed, workdir,
                          progress=args.progress)
    if result is None:
        print(json.dumps({"liggghts": None, "reason": "no liggghts or lmp_* LIGGGHTS executable on PATH"}))
    else:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
