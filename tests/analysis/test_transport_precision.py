"""float32 limits of the voxel transport solver: the float64 fallback, and independence from the
process's flush-to-zero / denormals-are-zero mode (which `taichi.init`, hence `electrodem.engine.init`,
switches on for the main thread: an engine run followed by an analysis in one process used to change
the analysis result, or overflow in the CG)."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import platform
import sys

import numpy as np
import pytest

from electrodem.analysis.transport import TransportSolver

_X86_GLIBC = sys.platform.startswith("linux") and platform.machine() in ("x86_64", "AMD64")
_MXCSR_FTZ_DAZ = 0x8000 | 0x0040


@contextlib.contextmanager
def _flush_denormals():
    """Set FTZ and DAZ in the SSE control register (what Taichi's init does), restore on exit.

    glibc's x86-64 ``fenv_t`` is the 28-byte x87 environment followed by the 4-byte MXCSR.
    """
    libm = ctypes.CDLL(ctypes.util.find_library("m"))
    saved = (ctypes.c_uint8 * 32)()
    assert libm.fegetenv(saved) == 0
    env = (ctypes.c_uint8 * 32)(*saved)
    mxcsr = int.from_bytes(bytes(env[28:32]), "little") | _MXCSR_FTZ_DAZ
    env[28:32] = (ctypes.c_uint8 * 4)(*mxcsr.to_bytes(4, "little"))
    assert libm.fesetenv(env) == 0
    try:
        tiny = np.array([1e-40], dtype=np.float32)  # a float32 subnormal
        assert (tiny * np.float32(1.0))[0] == 0.0, "FTZ/DAZ did not take effect"
        yield
    finally:
        libm.fesetenv(saved)


def _bottleneck_map(n: int = 24, seed: int = 0) -> np.ndarray:
    """Labels 0 (insulating pore), 1 (poor conductor), 2 (good conductor): good-conductor slabs on
    both driven faces, a poorly conducting interior with isolated good inclusions. The current is a
    small part of the boundary conductance, so float32 rounding of the assembled diagonals (a leak
    to ground of ~1e-7 per voxel) alone spreads the slice currents by more than 1e-3."""
    rng = np.random.default_rng(seed)
    lab = np.where(rng.random((n, n, n)) < 0.1, 2, 1).astype(np.uint8)
    lab[rng.random((n, n, n)) < 0.25] = 0
    lab[:, :, :2] = 2
    lab[:, :, -2:] = 2
    return lab


SIGMA = {1: 1.0, 2: 1000.0}


def _solve(lab: np.ndarray, flux_rtol: float):
    s = TransportSolver(lab, axis="z", conductivity=SIGMA, flux_rtol=flux_rtol)
    s.solve()
    return s.result


def test_float32_precision_limit_falls_back_to_float64_and_meets_the_tolerance():
    lab = _bottleneck_map()
    ref = _solve(lab, 1e-7)  # float64 from the start, tight criterion
    assert ref.precision == "float64" and ref.precision_fallback == "" and ref.converged
    res = _solve(lab, 1e-3)  # float32 requested; it cannot reach 1e-3 here
    assert res.converged
    assert res.slice_flux_spread <= 1e-3
    assert res.precision == "float64"
    assert "precision_limit" in res.precision_fallback
    # Slice currents agreeing to 1e-3 bound the current, hence sigma_eff, to 1e-3 of the exact value.
    assert res.sigma_eff_S_per_m == pytest.approx(ref.sigma_eff_S_per_m, rel=1e-3)
    # The fallback restarts from the float32 iterate: a few float64 iterations, not a new solve.
    assert res.iterations < 60


def test_float32_solve_without_fallback_records_float32():
    lab = _bottleneck_map()
    lab[lab == 2] = 1  # uniform conductor: float32 is ample
    res = _solve(lab, 1e-3)
    assert res.converged and res.precision == "float32" and res.precision_fallback == ""


@pytest.mark.skipif(not _X86_GLIBC, reason="sets the x86-64 MXCSR through glibc's fenv_t")
def test_result_does_not_depend_on_flush_to_zero_mode():
    lab = _bottleneck_map()
    plain = _solve(lab, 1e-3)
    with _flush_denormals():
        flushed = _solve(lab, 1e-3)
    assert flushed.converged
    # The solver never works with subnormal numbers, so the mode cannot change a single bit.
    assert flushed.sigma_eff_S_per_m == plain.sigma_eff_S_per_m
    assert flushed.iterations == plain.iterations
    assert flushed.precision_fallback == plain.precision_fallback
