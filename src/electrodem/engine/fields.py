"""Per-particle agent fields: named host-side arrays that travel with the particles.

A process rule run between kernel chunks (binder state, a damage counter, a label) often needs a value
per particle that the contact law never reads. `ParticleFields` holds such arrays in numpy, one row per
particle in external order (row k belongs to ``sim.ids[k]``), each float64 or int64 of shape (n,) or
(n, k). The engine keeps them aligned: rows for added particles get the field's fill value, rows of
removed particles go, and checkpoints and in-memory snapshots carry them. They never enter a kernel,
so they cost nothing per step.

An array handed out by `ParticleFields.__getitem__` is the stored one (write into it freely), but
adding or removing particles replaces it: read it again after such a change.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from electrodem.config import ConfigError

FIELD_DTYPES = {"float64": np.float64, "int64": np.int64}


class ParticleFields(Mapping[str, np.ndarray]):
    """Named per-particle arrays (see the module docstring); a read-only mapping name -> array whose
    arrays may be written in place."""

    def __init__(self) -> None:
        self._data: dict[str, np.ndarray] = {}
        self._fill: dict[str, float | int] = {}

    # ------------------------------------------------------------------ mapping
    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._data:
            raise ConfigError("field", name, f"one of {sorted(self._data)} (add it with sim.add_field)")
        return self._data[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    # ------------------------------------------------------------------ changes
    def add(
        self, name: str, dtype: Any, shape: tuple[int, ...] | int, fill: float | int, n: int
    ) -> np.ndarray:
        """Add field ``name`` of ``n`` rows (dtype float64 or int64, per-particle ``shape`` () or (k,)),
        every row ``fill``; returns it."""
        if not (isinstance(name, str) and name):
            raise ConfigError("field.name", name, "a non-empty string")
        if name in self._data:
            raise ConfigError("field.name", name, f"a name not in {sorted(self._data)}")
        key = np.dtype(dtype).name
        if key not in FIELD_DTYPES:
            raise ConfigError(f"field[{name}].dtype", dtype, f"one of {sorted(FIELD_DTYPES)}")
        tail = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(k) for k in shape)
        if len(tail) > 1 or any(k < 1 for k in tail):
            raise ConfigError(f"field[{name}].shape", shape, "() or (k,) with k >= 1")
        value = FIELD_DTYPES[key](fill)
        if key == "int64" and value != fill:
            raise ConfigError(f"field[{name}].fill", fill, "an integer for an int64 field")
        self._data[name] = np.full((n, *tail), value, dtype=FIELD_DTYPES[key])
        self._fill[name] = value.item()
        return self._data[name]

    def append(self, k: int) -> None:
        """``k`` rows more (new particles), each the field's fill value."""
        for name, a in self._data.items():
            self._data[name] = np.concatenate([a, np.full((k, *a.shape[1:]), self._fill[name], a.dtype)])

    def keep(self, mask: np.ndarray) -> None:
        """Keep the rows where ``mask`` (one boolean per particle) is True (removed particles)."""
        for name, a in self._data.items():
            self._data[name] = a[mask].copy()

    def check_rows(self, n: int) -> None:
        """Every field must still have ``n`` rows (a caller may have replaced an array)."""
        for name, a in self._data.items():
            if a.shape[0] != n:
                raise ConfigError(f"field[{name}]", f"{a.shape[0]} rows", f"{n} rows (one per particle)")

    # ------------------------------------------------------------------ copies
    def describe(self) -> list[dict[str, Any]]:
        """JSON-able list of (name, dtype, shape, fill) of every field."""
        return [
            {"name": k, "dtype": a.dtype.name, "shape": list(a.shape[1:]), "fill": self._fill[k]}
            for k, a in self._data.items()
        ]

    def copy_arrays(self) -> dict[str, np.ndarray]:
        """Deep copies of the arrays, by name."""
        return {k: a.copy() for k, a in self._data.items()}

    def load(self, description: list[dict[str, Any]], arrays: dict[str, np.ndarray]) -> None:
        """Replace every field by those of `describe` / `copy_arrays` output (copies are taken)."""
        self._data.clear()
        self._fill.clear()
        for d in description:
            a = np.asarray(arrays[d["name"]])
            self.add(d["name"], d["dtype"], tuple(d["shape"]), d["fill"], a.shape[0])
            self._data[d["name"]][...] = a
