"""Time-varying particle state as structure-of-arrays Taichi fields, with growing capacity.

The fields live in one `ParticleStore` (its own SNode tree, freed when replaced). Kernels take the
store as a template argument: one compile per store, and launching costs one argument instead of
twenty. Growing the capacity builds a new store, copies the state and destroys the old tree.

Per particle (SI): position x (m), velocity v (m/s), angular velocity w (rad/s), force f (N), torque
tq (N m), radius r (m), inverse mass invm (1/kg, 0 = fixed), inverse moment of inertia invI
(1/(kg m^2)), material index mat, grid level, position at the last neighbour build xref (m), and
per-wall contact history wht (tangential, m) / whr (rolling, N m). Per simulation: ``dom`` (see
`electrodem.engine.integrate`), the wall table, wall modes/materials, the force on each wall (N), the
pair-property table and a diagnostics buffer.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import taichi as ti

from electrodem.engine.walls import MAX_WALLS, N_WALL_COLS

VEC_FIELDS = ("x", "v", "w", "f", "tq")
SCALAR_FIELDS = ("r", "invm", "invI")
DOM_SIZE = 11
N_DIAG = 9


def round_capacity(n: int) -> int:
    """Capacities are powers of two (>= 64) so that stores of similar size can be reused."""
    return max(64, 1 << (max(int(n), 1) - 1).bit_length())


_POOL: dict[tuple[Any, ...], list[Any]] = {}


def acquire(cls: Any, *key: Any) -> Any:
    """A store of class ``cls`` built with arguments ``key``, reused from the pool when one is free.

    Kernels are compiled per store object; reusing stores makes a new `Simulation` of a size seen
    before start without compiling anything.
    """
    free = _POOL.get((cls, *key))
    if free:
        return free.pop()
    return cls(*key)


def release(store: Any) -> None:
    """Give a store back to the pool (its contents are garbage; every user overwrites what it reads)."""
    if store is not None:
        _POOL.setdefault((type(store), *store.pool_key), []).append(store)


@ti.data_oriented
class ParticleStore:
    """All per-particle and per-simulation fields of capacity ``cap``."""

    def __init__(self, cap: int, n_materials: int, real: Any) -> None:
        self.cap = cap
        self.real = real
        self.pool_key = (cap, n_materials, real)
        fb = ti.FieldsBuilder()
        vec = ti.types.vector(3, real)
        for name in (*VEC_FIELDS, "xref"):
            setattr(self, name, ti.field(vec))
            fb.dense(ti.i, cap).place(getattr(self, name))
        for name in SCALAR_FIELDS:
            setattr(self, name, ti.field(real))
            fb.dense(ti.i, cap).place(getattr(self, name))
        for name in ("mat", "level", "cell_of", "sorted_ids", "nb_count", "rev_count"):
            setattr(self, name, ti.field(ti.i32))
            fb.dense(ti.i, cap).place(getattr(self, name))
        self.wht = ti.field(vec)
        self.whr = ti.field(vec)
        fb.dense(ti.ij, (cap, MAX_WALLS)).place(self.wht, self.whr)
        self.dom = ti.field(real)
        fb.dense(ti.i, DOM_SIZE).place(self.dom)
        self.walls = ti.field(real)
        fb.dense(ti.ij, (MAX_WALLS, N_WALL_COLS)).place(self.walls)
        self.wmode = ti.field(ti.i32)
        self.wmat = ti.field(ti.i32)
        fb.dense(ti.i, MAX_WALLS).place(self.wmode, self.wmat)
        self.wforce = ti.field(vec)
        fb.dense(ti.i, MAX_WALLS).place(self.wforce)
        self.table = ti.field(real)
        fb.dense(ti.ijk, (n_materials, n_materials, 5)).place(self.table)
        self.diag = ti.field(real)
        fb.dense(ti.i, N_DIAG).place(self.diag)
        self._tree = fb.finalize()

    def destroy(self) -> None:
        """Free the fields (the store must not be used afterwards)."""
        self._tree.destroy()

    # ------------------------------------------------------------------ host copies
    def particles_to_numpy(self, n: int) -> dict[str, np.ndarray]:
        """float64/int32 copies of the first n particles' arrays, keyed by field name."""
        out: dict[str, np.ndarray] = {}
        for name in (*VEC_FIELDS, *SCALAR_FIELDS):
            out[name] = getattr(self, name).to_numpy()[:n].astype(np.float64)
        out["mat"] = self.mat.to_numpy()[:n].astype(np.int32)
        out["wht"] = self.wht.to_numpy()[:n].astype(np.float64)
        out["whr"] = self.whr.to_numpy()[:n].astype(np.float64)
        return out

    def particles_from_numpy(self, data: dict[str, np.ndarray]) -> int:
        """Load particle arrays (as from `particles_to_numpy`; wall histories optional); returns n."""
        n = len(data["r"])
        if n > self.cap:
            raise ValueError(f"{n} particles exceed the store capacity {self.cap}")
        np_real = np.float64 if self.real == ti.f64 else np.float32

        def padded(a: np.ndarray, dtype: Any, shape_tail: tuple[int, ...]) -> np.ndarray:
            out = np.zeros((self.cap, *shape_tail), dtype=dtype)
            out[:n] = np.asarray(a).reshape((n, *shape_tail))
            return out

        for name in VEC_FIELDS:
            getattr(self, name).from_numpy(padded(data[name], np_real, (3,)))
        for name in SCALAR_FIELDS:
            getattr(self, name).from_numpy(padded(data[name], np_real, ()))
        self.mat.from_numpy(padded(data["mat"], np.int32, ()))
        for name in ("wht", "whr"):
            arr = data.get(name)
            arr = np.zeros((n, MAX_WALLS, 3)) if arr is None else arr
            getattr(self, name).from_numpy(padded(arr, np_real, (MAX_WALLS, 3)))
        return n

    def globals_to_numpy(self) -> dict[str, np.ndarray]:
        """Copies of the per-simulation fields (dom, walls, wmode, wmat, wforce, table)."""
        return {k: getattr(self, k).to_numpy() for k in ("dom", "walls", "wmode", "wmat", "wforce", "table")}

    def globals_from_numpy(self, data: dict[str, np.ndarray]) -> None:
        """Load the per-simulation fields."""
        np_real = np.float64 if self.real == ti.f64 else np.float32
        for k in ("dom", "walls", "wforce", "table"):
            getattr(self, k).from_numpy(np.asarray(data[k]).astype(np_real))
        for k in ("wmode", "wmat"):
            getattr(self, k).from_numpy(np.asarray(data[k]).astype(np.int32))
