"""Species colours: each species' own ``color``, with a fixed qualitative fallback palette."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.colors import to_hex, to_rgb

from electrodem.io.snapshot import Species

FALLBACK_PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#17becf",
)
"""Tableau-10-like qualitative palette (without its light grey, which vanishes on white)."""

_MIN_DISTANCE_TO_WHITE = 0.08
"""RGB distance (0..1 scale) below which a colour is indistinguishable from the white background."""


def _parse(color: object) -> str | None:
    if not isinstance(color, str) or not color.strip():
        return None
    try:
        rgb = np.array(to_rgb(color.strip()))
    except ValueError:
        return None
    if np.linalg.norm(rgb - 1.0) < _MIN_DISTANCE_TO_WHITE:
        return None
    return to_hex(rgb)


def species_colors(species: Sequence[Species]) -> list[str]:
    """One hex colour per species, in table order.

    A species keeps its own ``color`` when it is a valid matplotlib colour, not (nearly) white and not
    already taken by an earlier species; otherwise it gets the first colour of `FALLBACK_PALETTE` that
    no species uses yet (the palette cycles if there are more than 10 species).
    """
    parsed = [_parse(s.color) for s in species]
    out: list[str | None] = []
    taken: set[str] = set()
    for c in parsed:
        if c is not None and c not in taken:
            out.append(c)
            taken.add(c)
        else:
            out.append(None)
    free = [c for c in FALLBACK_PALETTE if c not in taken and c not in parsed]
    j = 0
    result: list[str] = []
    for c in out:
        if c is None:
            c = free[j] if j < len(free) else FALLBACK_PALETTE[j % len(FALLBACK_PALETTE)]
            j += 1
        result.append(c)
    return result
