"""One electrode-thickness definition across the process steps (`electrodem.analysis.composition`).

Gauge thickness (headline): the highest solid point max(z + r), or the tool position while it presses;
porosity = 1 - all the solid / (area x it) (mass-based). Bulk (``_bulk``): the half-bulk
solid-fraction rule, <= the gauge thickness. Checked on a simple-cubic lattice against closed forms
(the settled-bed check, settle vs compaction, is in tests/engine/test_settle.py).
"""

import math

import numpy as np
import pytest

from electrodem.analysis.composition import bulk_top_m, gauge_top_m, layer_thickness
from electrodem.process.settle import bed_packing

R = 1.0
N_XY, N_Z = 6, 8


def _lattice() -> tuple[np.ndarray, np.ndarray, float]:
    """Simple cubic lattice of touching spheres of radius R: (z, r, area)."""
    g = np.stack(np.meshgrid(np.arange(N_XY), np.arange(N_XY), np.arange(N_Z), indexing="ij"), -1)
    x = (g.reshape(-1, 3) + 0.5) * 2.0 * R
    return x[:, 2], np.full(len(x), R), (2.0 * R * N_XY) ** 2


def test_gauge_thickness_and_porosity_of_a_lattice_are_the_closed_forms():
    z, r, area = _lattice()
    lay = layer_thickness(z, r, area)
    # Gauge: the top of the top layer, all solid below it: phi = pi / 6 exactly.
    assert lay["thickness_m"] == 2.0 * R * N_Z == gauge_top_m(z, r)
    assert lay["porosity"] == pytest.approx(1.0 - math.pi / 6.0, abs=1e-12)
    # A plate at half a radius below the top: gauge = plate; the porosity is mass-based, every sphere
    # counts whole (its cap above the plate is material flattened by it, not material lost).
    h = 2.0 * R * N_Z - 0.5 * R
    pressed = layer_thickness(z, r, area, tool_z_m=h)
    v = N_XY**2 * N_Z * 4.0 / 3.0 * math.pi * R**3
    assert pressed["thickness_m"] == h
    assert pressed["porosity"] == pytest.approx(1.0 - v / (area * h), abs=1e-12)
    # A tool above the layer does not press it.
    assert layer_thickness(z, r, area, tool_z_m=3.0 * R * N_Z)["thickness_m"] == 2.0 * R * N_Z
    # Bulk: below the gauge top, within one radius of it (half the solid fraction is reached inside the
    # top layer), and the tool does not enter it.
    assert 2.0 * R * (N_Z - 1) < lay["thickness_bulk_m"] <= lay["thickness_m"]
    assert pressed["thickness_bulk_m"] == lay["thickness_bulk_m"] == bulk_top_m(z, r, area)
    # The settle step's packing fraction is the bulk solid fraction.
    phi, top = bed_packing(z, r, area)
    assert top == lay["thickness_bulk_m"] and phi == pytest.approx(1.0 - lay["porosity_bulk"], abs=1e-15)
