"""Stress tensor of the particle assembly: contact virial plus the kinetic part, per z slab.

sigma = (1/V) [ sum_contacts f_ij (x) d_ij + sum_i m_i v'_i (x) v'_i ]  (Pa, compressive positive)

with f_ij the contact force on i from j, d_ij = x_i - x_j the minimum-image branch vector (Lees–Edwards
aware) and v' = v - gamma_dot (z - Lz/2) e_x the velocity relative to the imposed shear flow (the
plain velocity when the rate is 0). A repulsive contact then gives a positive pressure, and a box
sheared at gamma_dot > 0 has sigma_xz < 0: the shear stress reported as resisting the flow is
tau = -sigma_xz (see `Simulation.stress_tensor` and `electrodem.engine.shear`).

Slabs: k slabs of height Lz / k; a contact counts in the slab of the mid-point of its branch vector,
a particle in the slab of its centre, and each slab divides by its own volume, so the slab tensors
average to the box tensor.
"""

from typing import Any

import numpy as np
import taichi as ti

from electrodem.engine import arch
from electrodem.engine.neighbors import min_image
from electrodem.engine.state import D_LE_DV


@ti.func
def _slab(z, lz, k):
    b = ti.floor(z / lz * k, ti.i32)
    return ti.min(ti.max(b, 0), k - 1)


@ti.kernel
def _virial(
    s: ti.template(),
    p: ti.template(),
    n: ti.i32,
    k: ti.i32,
    kinetic: ti.i32,
    out: ti.types.ndarray(),
):
    """Accumulate sum f (x) d and sum m v' (x) v' (N m) per slab into ``out`` (k, 3, 3)."""
    lz = s.dom[2]
    rate = s.dom[D_LE_DV] / lz
    ti.loop_config(serialize=arch.SERIAL_LOOPS)
    for i in range(n):
        xi = s.x[i]
        for t in range(p.start[i], p.start[i + 1]):
            f = p.pair_f[t]
            if f.any():
                d = min_image(xi - s.x[p.j[t]], s.dom)
                zm = xi[2] - 0.5 * d[2]
                if s.dom[5] > 0.5:
                    if zm >= lz:
                        zm -= lz
                    elif zm < 0.0:
                        zm += lz
                b = _slab(zm, lz, k)
                for a in ti.static(range(3)):
                    for c in ti.static(range(3)):
                        out[b, a, c] += f[a] * d[c]
        if kinetic and s.invm[i] > 0.0:
            v = s.v[i]
            v[0] -= rate * (xi[2] - 0.5 * lz)
            m = 1.0 / s.invm[i]
            b = _slab(xi[2], lz, k)
            for a in ti.static(range(3)):
                for c in ti.static(range(3)):
                    out[b, a, c] += m * v[a] * v[c]


def stress_tensor(sim: Any, slabs: int, kinetic: bool, squeeze: bool) -> np.ndarray:
    """Stress (Pa) of `Simulation` ``sim`` from its last force evaluation: (3, 3) when ``squeeze``
    (``slabs`` must be 1), else (slabs, 3, 3). Volume: the box, or Lx Ly Lz / slabs per slab."""
    out = np.zeros((slabs, 3, 3), dtype=np.float64)
    if sim.n:
        _virial(sim._store, sim._nl.pairs, sim.n, slabs, int(kinetic), out)
    out /= float(np.prod(sim.box_m)) / slabs
    return out[0] if squeeze else out
