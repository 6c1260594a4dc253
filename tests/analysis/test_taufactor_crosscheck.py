"""Cross-check against TauFactor 2 (Kench, Squires & Cooper, SoftwareX 2023), where its optional
package is installed (``pip install -e ".[taufactor]"``: it needs PyTorch, which CI does not install,
so CI skips this module).

The image is anisotropic on purpose: a Boolean set of axis-aligned ellipsoids elongated along x
(semi-axes 6, 3, 3 voxels), so the pore tortuosity differs between the axes and a transposed axis
would show. Both solvers see the same binary mask and compute the tortuosity factor
tau = eps D / D_eff between Dirichlet faces with no-flux sides; ours converges its slice currents to
1e-6 (the default ``flux_rtol``) and TauFactor to its default 1e-2 convergence criterion, so 1 % is
TauFactor's own accuracy. Measured (TauFactor 1.2.1, PyTorch 2.13 CPU): the six values agree to
0.013 % or better (x 1.4454 / 1.1987, y 2.3720 / 1.5192, z 2.4022 / 1.5485 at eps 0.47 / 0.67).
"""

from __future__ import annotations

import numpy as np
import pytest

from electrodem.analysis.transport import solve_transport

taufactor = pytest.importorskip("taufactor")


def _ellipsoid_image(n: int, porosity: float, semi_axes: tuple[float, float, float], seed: int) -> np.ndarray:
    """n^3 uint8 image, 1 = solid: a Poisson (Boolean) set of ellipsoids whose expected pore fraction is
    ``porosity`` (exp(-lambda V) = porosity), centres also outside the box so the edges are not thinner."""
    rng = np.random.default_rng(seed)
    a = np.asarray(semi_axes, float)
    lo, hi = -a, n + a
    volume = 4.0 / 3.0 * np.pi * a.prod()
    count = rng.poisson(-np.log(porosity) / volume * np.prod(hi - lo))
    centres = lo + rng.random((count, 3)) * (hi - lo)
    solid = np.zeros((n, n, n), dtype=bool)
    grid = np.arange(n) + 0.5
    for c in centres:
        s = [slice(max(0, int(c[k] - a[k])), min(n, int(np.ceil(c[k] + a[k])))) for k in range(3)]
        gx, gy, gz = np.meshgrid(grid[s[0]], grid[s[1]], grid[s[2]], indexing="ij")
        inside = ((gx - c[0]) / a[0]) ** 2 + ((gy - c[1]) / a[1]) ** 2 + ((gz - c[2]) / a[2]) ** 2 <= 1.0
        solid[s[0], s[1], s[2]] |= inside
    return solid.astype(np.uint8)


def _taufactor_tau(mask: np.ndarray, axis: int) -> float:
    solver = taufactor.Solver(np.moveaxis(mask, axis, 0).astype(np.float32), device="cpu")
    solver.solve(verbose=False)
    return float(np.ravel(solver.tau)[0])  # one image: a batch of one


@pytest.mark.parametrize("porosity", [0.45, 0.65])
def test_pore_tortuosity_agrees_with_taufactor_within_1_percent_along_each_axis(porosity):
    image = _ellipsoid_image(64, porosity, (6.0, 3.0, 3.0), seed=3)
    taus = {}
    for axis in range(3):
        ours = solve_transport(image, 0, axis)
        assert ours.converged and np.isfinite(ours.tortuosity_factor)
        theirs = _taufactor_tau(image == 0, axis)
        assert ours.tortuosity_factor == pytest.approx(theirs, rel=0.01), ("xyz"[axis], ours, theirs)
        taus[axis] = ours.tortuosity_factor
    # The elongated grains leave straighter pores along x than across them: the image is anisotropic,
    # so an axis mixed up by either side would not agree.
    assert taus[0] < 0.97 * min(taus[1], taus[2])
