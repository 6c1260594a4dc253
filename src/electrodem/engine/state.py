"""Time-varying particle state as structure-of-arrays Taichi fields, with growing capacity.

The fields live in one `ParticleStore` (its own SNode tree, freed when replaced). Kernels take the
store as a template argument: one compile per store, and launching costs one argument instead of
twenty. Growing the capacity builds a new store, copies the state and destroys the old tree.

Per particle (SI): position x (m), velocity v (m/s), angular velocity w (rad/s), force f (N), torque
tq (N m), radius r (m), inverse mass invm (1/kg, 0 = fixed), inverse moment of inertia invI
(1/(kg m^2)), gravitational mass gm (kg: the weight is gm g; equal to the inertial mass unless a mass
scaling changed only the inertia), material index mat, grid level, position at the last neighbour
build xref (m),
per-wall contact history wht (tangential, m) / whr (rolling, N m; stored only when ``rolling``) / wdm
(largest overlap of the contact so far, m; stored only when ``plastic``, the Thornton–Ning law) and
``wflag`` (bit k set while the history or the recorded force of wall k may be non-zero, so that
particles far from the walls never touch them). With ``record`` (`Simulation(record_wall_forces=True)`)
``wrec[e, k]`` holds the force (N) of wall k on the particle of EXTERNAL index e from the last force
evaluation: stored by external index, it needs no re-ordering at neighbour builds.

Wall forces are reduced deterministically: each force evaluation writes particle i's force on wall k
into ``wpf[i, k]`` (internal index, ``n_wall_slots`` = max(1, number of walls) columns), then
fixed chunks of `WALL_CHUNK` particles are summed in index order into ``wchunk`` and the chunks in
order into ``wforce``. A float atomic sum would depend on the thread schedule: a servo wall feeds
its force back into the motion, so the trajectory would change with the thread count (and from run
to run on several threads). ``wpf`` is scratch, rewritten at every evaluation (no re-ordering, not
checkpointed).

Internal order: the neighbour list re-orders the particles by grid cell at every build (neighbours
then sit close in memory, as LIGGGHTS' atom sorting does). ``ext[i]`` is the external index (order
of addition) of the particle stored at internal index i and ``intern[e]`` the internal index of
external index e (force extensions such as bonds address particles through it). Every host copy
(`particles_to_numpy`, `particles_from_numpy`) is in external order, so callers never see the
internal one.

Per simulation: ``dom`` (see `electrodem.engine.integrate`), the wall table, wall modes/materials,
the force on each wall (N), the exact work of each wall (``wwork``, see `WW_WORK`), the pair-property
table (columns of `electrodem.engine.model` followed
by the damping coefficients of `TABLE_COLS`) and a diagnostics buffer.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import taichi as ti

from electrodem.engine.model import N_PAIR_PROPS
from electrodem.engine.walls import MAX_WALLS, N_WALL_COLS

VEC_FIELDS = ("x", "v", "w", "f", "tq")
WALL_CHUNK = 256
"""Particles per chunk of the deterministic wall-force reduction (fixed: independent of the threads)."""
SCALAR_FIELDS = ("r", "invm", "invI", "gm")
DOM_SIZE = 13
D_LE_SHIFT, D_LE_DV = 11, 12
"""Lees–Edwards slots of ``dom`` (after the 11 of `electrodem.engine.integrate`): the x offset s (m) of
the periodic image above the box (z + Lz), kept in [-Lx/2, Lx/2), and that image's x velocity
gamma_dot Lz (m/s). Both are 0 for a plain box, so the kernels pay nothing extra then."""
N_DIAG = 11

T_CN, T_CT = N_PAIR_PROPS, N_PAIR_PROPS + 1
"""Extra pair-table columns: eta sqrt(2 E*) and eta sqrt(8 G*) (sqrt(Pa)), so that the contact law
gets both dashpot coefficients from one square root sqrt(m* a)."""
TABLE_COLS = N_PAIR_PROPS + 2

WW_WORK, WW_DX = 0, 1
"""Columns of ``wwork`` (per wall): the work (J) the wall has done on the particles, summed by the
trapezoidal rule over its displacements but without the last half step (0.5 F_n . dx_n, added when
read, see `electrodem.engine.integrate._move_wall`), then that last displacement dx (m, 3 columns)."""
N_WWORK = 4


MIN_CAPACITY = 1024
"""Smallest store capacity (particles, cells). Taichi compiles every kernel anew for each store object
it is handed, and its on-disk cache does not help there (the cache key holds the store's field ids,
which depend on everything the process allocated before), so each new store costs seconds of LLVM
compilation, far more than the kernels then run on a small system. Coarse capacities let every small
simulation of a process reuse one pooled store; the kernels loop over the particles present, not the
capacity."""
MATERIAL_SLOTS = 8
"""Pair tables are allocated for a multiple of this many materials (same reason; the table is tiny)."""


def round_capacity(n: int) -> int:
    """Capacities are powers of two (>= `MIN_CAPACITY`) so that stores of similar size can be reused."""
    return max(MIN_CAPACITY, 1 << (max(int(n), 1) - 1).bit_length())


def material_slots(n_materials: int) -> int:
    """Rows (and columns) of a store's pair table for ``n_materials``: a multiple of `MATERIAL_SLOTS`."""
    return MATERIAL_SLOTS * max(1, -(-int(n_materials) // MATERIAL_SLOTS))


def wall_slots(n_walls: int) -> int:
    """Columns of the per-particle wall-force scratch for ``n_walls``: a power of two, at most MAX_WALLS."""
    return min(MAX_WALLS, 1 << (max(int(n_walls), 1) - 1).bit_length())


def field_holder(cls: type) -> type:
    """``ti.data_oriented`` without its attribute hook, for classes that hold fields but no kernels.

    Taichi needs the mark to pass such an object into ``ti.func`` calls, but the decorator also routes
    every attribute read through a Python hook that exists only to bind kernel methods: millions of
    reads per run on the stores (about a tenth of a small simulation's wall time, all overhead)."""
    cls = ti.data_oriented(cls)
    cls.__getattribute__ = object.__getattribute__  # type: ignore[method-assign]
    return cls


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


def wall_flags(wht: np.ndarray, whr: np.ndarray, wdm: np.ndarray | None = None) -> np.ndarray:
    """``wflag`` bits (int32) of (n, MAX_WALLS, 3) wall histories (and the optional (n, MAX_WALLS)
    largest overlaps): bit k set where wall k's is non-zero."""
    nz = np.any(wht != 0, axis=2) | np.any(whr != 0, axis=2)
    if wdm is not None:
        nz |= wdm != 0
    return (nz.astype(np.int64) << np.arange(nz.shape[1])).sum(axis=1).astype(np.int32)


@field_holder
class ParticleStore:
    """All per-particle and per-simulation fields of capacity ``cap``."""

    def __init__(
        self,
        cap: int,
        n_materials: int,
        real: Any,
        rolling: bool = False,
        plastic: bool = False,
        record: bool = False,
        n_wall_slots: int = 1,
    ) -> None:
        self.cap = cap
        self.real = real
        self.rolling = bool(rolling)
        self.plastic = bool(plastic)
        self.record = bool(record)
        self.n_wall_slots = max(1, int(n_wall_slots))
        self.pool_key = (cap, n_materials, real, self.rolling, self.plastic, self.record, self.n_wall_slots)
        fb = ti.FieldsBuilder()
        vec = ti.types.vector(3, real)
        for name in (*VEC_FIELDS, "xref", "tmp_v"):
            setattr(self, name, ti.field(vec))
            fb.dense(ti.i, cap).place(getattr(self, name))
        for name in (*SCALAR_FIELDS, "tmp_s"):
            setattr(self, name, ti.field(real))
            fb.dense(ti.i, cap).place(getattr(self, name))
        for name in (
            "mat",
            "level",
            "ext",
            "intern",
            "wflag",
            "cell_of",
            "sorted_ids",
            "nb_count",
            "rev_count",
        ):
            setattr(self, name, ti.field(ti.i32))
            fb.dense(ti.i, cap).place(getattr(self, name))
        self.wht = ti.field(vec)
        self.whr = ti.field(vec)
        fb.dense(ti.ij, (cap, MAX_WALLS)).place(self.wht)
        # Rolling history exists only with a rolling model that has one (epsd).
        fb.dense(ti.ij, (cap if rolling else 1, MAX_WALLS)).place(self.whr)
        # Largest wall overlap exists only with the Thornton–Ning law.
        self.wdm = ti.field(real)
        fb.dense(ti.ij, (cap if plastic else 1, MAX_WALLS)).place(self.wdm)
        # Per-particle wall forces exist only when asked for (external index, see module docstring).
        self.wrec = ti.field(vec)
        fb.dense(ti.ij, (cap if record else 1, MAX_WALLS)).place(self.wrec)
        # Deterministic wall-force reduction (see module docstring): per particle, then per chunk.
        self.wpf = ti.field(vec)
        fb.dense(ti.ij, (cap, self.n_wall_slots)).place(self.wpf)
        self.wchunk = ti.field(vec)
        fb.dense(ti.ij, ((cap + WALL_CHUNK - 1) // WALL_CHUNK, self.n_wall_slots)).place(self.wchunk)
        self.dom = ti.field(real)
        fb.dense(ti.i, DOM_SIZE).place(self.dom)
        self.walls = ti.field(real)
        fb.dense(ti.ij, (MAX_WALLS, N_WALL_COLS)).place(self.walls)
        self.wmode = ti.field(ti.i32)
        self.wmat = ti.field(ti.i32)
        fb.dense(ti.i, MAX_WALLS).place(self.wmode, self.wmat)
        self.wforce = ti.field(vec)
        fb.dense(ti.i, MAX_WALLS).place(self.wforce)
        self.wwork = ti.field(real)
        fb.dense(ti.ij, (MAX_WALLS, N_WWORK)).place(self.wwork)
        self.table = ti.field(real)
        fb.dense(ti.ijk, (n_materials, n_materials, TABLE_COLS)).place(self.table)
        self.diag = ti.field(real)
        fb.dense(ti.i, N_DIAG).place(self.diag)
        self._tree = fb.finalize()

    def destroy(self) -> None:
        """Free the fields (the store must not be used afterwards)."""
        self._tree.destroy()

    # ------------------------------------------------------------------ order
    def external_index(self, n: int) -> np.ndarray:
        """int64 external index of the particles at internal indices 0..n-1."""
        return self.ext.to_numpy()[:n].astype(np.int64)

    def to_external(self, a: np.ndarray, n: int) -> np.ndarray:
        """Rows of ``a`` (first axis internal order, length >= n) put in external order."""
        out = np.empty_like(a[:n])
        out[self.external_index(n)] = a[:n]
        return out

    # ------------------------------------------------------------------ host copies
    def particles_to_numpy(self, n: int) -> dict[str, np.ndarray]:
        """float64/int32 copies of the first n particles' arrays in external order, keyed by field name."""
        ext = self.external_index(n)
        raw: dict[str, np.ndarray] = {}
        for name in (*VEC_FIELDS, *SCALAR_FIELDS):
            raw[name] = getattr(self, name).to_numpy()[:n].astype(np.float64)
        raw["mat"] = self.mat.to_numpy()[:n].astype(np.int32)
        raw["wht"] = self.wht.to_numpy()[:n].astype(np.float64)
        raw["whr"] = (
            self.whr.to_numpy()[:n].astype(np.float64) if self.rolling else np.zeros((n, MAX_WALLS, 3))
        )
        raw["wdm"] = self.wdm.to_numpy()[:n].astype(np.float64) if self.plastic else np.zeros((n, MAX_WALLS))
        out: dict[str, np.ndarray] = {}
        for name, a in raw.items():
            b = np.empty_like(a)
            b[ext] = a
            out[name] = b
        # Already in external order.
        out["wrec"] = (
            self.wrec.to_numpy()[:n].astype(np.float64) if self.record else np.zeros((n, MAX_WALLS, 3))
        )
        return out

    def particles_from_numpy(self, data: dict[str, np.ndarray]) -> int:
        """Load particle arrays (as from `particles_to_numpy`; wall histories optional); returns n.

        The internal order becomes the external one."""
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
        if "gm" not in data:  # older images: the weight was the inertial mass's
            invm = np.asarray(data["invm"], np.float64)
            data = {**data, "gm": np.where(invm > 0, 1.0 / np.where(invm > 0, invm, 1.0), 0.0)}
        for name in SCALAR_FIELDS:
            getattr(self, name).from_numpy(padded(data[name], np_real, ()))
        self.mat.from_numpy(padded(data["mat"], np.int32, ()))
        hist = {}
        for name in ("wht", "whr"):
            arr = data.get(name)
            shape = (n, MAX_WALLS, 3)
            hist[name] = np.zeros(shape) if arr is None else np.asarray(arr).reshape(shape)
        if not self.rolling:
            hist["whr"] = np.zeros_like(hist["whr"])
        wdm = data.get("wdm")
        wdm = np.zeros((n, MAX_WALLS)) if wdm is None or not self.plastic else np.asarray(wdm).reshape(n, -1)
        self.wht.from_numpy(padded(hist["wht"], np_real, (MAX_WALLS, 3)))
        if self.rolling:
            self.whr.from_numpy(padded(hist["whr"], np_real, (MAX_WALLS, 3)))
        if self.plastic:
            self.wdm.from_numpy(padded(wdm, np_real, (MAX_WALLS,)))
        flags = wall_flags(hist["wht"], hist["whr"], wdm)
        if self.record:
            wrec = data.get("wrec")
            wrec = np.zeros((n, MAX_WALLS, 3)) if wrec is None else np.asarray(wrec).reshape(n, MAX_WALLS, 3)
            self.wrec.from_numpy(padded(wrec, np_real, (MAX_WALLS, 3)))
            # A frictionless contact has no history but a recorded force, which must be cleared when
            # the particle leaves the wall.
            flags |= wall_flags(wrec, np.zeros_like(wrec))
        self.wflag.from_numpy(padded(flags, np.int32, ()))
        self.ext.from_numpy(padded(np.arange(n), np.int32, ()))
        self.intern.from_numpy(padded(np.arange(n), np.int32, ()))
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
