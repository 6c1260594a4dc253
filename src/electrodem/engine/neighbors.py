"""Neighbour search for wide size distributions: a multi-level cell grid and a half Verlet list.

Particles are put in levels by radius (level k holds radii in [r_min 2^k, r_min 2^(k+1)); empty levels
are dropped); each level has its own cell grid of cell size >= 2 r_max(level) + skin, filled by a
counting sort (count per cell, prefix sum, scatter, then a sort inside each cell by index so the
result is deterministic). The particles are then re-ordered in that cell order (`permute_particles`):
the particles of one cell are a contiguous index range, and the particles a force loop visits
together sit together in memory, as LIGGGHTS' atom sorting does. A particle searches the 27 cells
around it in its own level and in every coarser level, never in finer ones, so a 10 um sphere never
scans the 0.2 um grid: every pair is found exactly once, by its smaller member (by index inside one
level). That gives a half list (CSR by owner) that the force kernel walks once per pair, plus a
reverse list so that each particle gathers the forces of the pairs it does not own without float
atomics.

Cells are numbered with z fastest, then x, then y: electrode beds are thin in z and wide in x and y,
so the cells around a particle span the fewest indices.

The list holds every pair closer than r_i + r_j + skin and is rebuilt when some particle has moved
more than skin/2 since the last build. Per-pair tangential and rolling history is carried over from
the previous list at each rebuild (the old pairs with non-zero history are found in the new list, in
either ownership order, negated when the owner changed), so it survives rebuilds, re-ordering and
particle additions. With the Thornton–Ning law (``plastic``) each pair also carries its largest
overlap so far ``dm`` (m, a scalar, symmetric so never negated) along the same paths, and with JKR
cohesion (``cohesion``) its contact flag ``hc`` (a bonded pair at negative overlap has zero tangential
history but must keep its flag). Every index the host sees is external (order of addition): the
``ext`` field of the particle store maps internal indices to it.
"""

import math

import numpy as np
import taichi as ti

from electrodem.engine import arch
from electrodem.engine.scan import exclusive_scan, scratch_size
from electrodem.engine.state import D_LE_SHIFT, MIN_CAPACITY, acquire, field_holder, release, round_capacity
from electrodem.engine.walls import MAX_WALLS

LEVEL_RATIO = 2.0
MIN_CELLS = 64 * MIN_CAPACITY
"""Smallest cell-grid capacity (see `electrodem.engine.state.MIN_CAPACITY`; ~0.5 MB)."""
DENSE_PAIRS_PER_PARTICLE = 3
"""First pair capacity per particle. Packed beds hold ~3 (the smoke settle) to 4.5 (the bidisperse
benchmark bed) neighbour pairs per particle, skin included; sizing for them up front spares most
recompilations of a growing store (a loose bed starts far below)."""
MAX_LEVELS = 16


def pair_capacity(m: int) -> int:
    """Pair capacities are 2^e or 1.5 x 2^e (>= 16 `MIN_CAPACITY`): at most 1/2 above the request,
    and few distinct sizes so that stores can be reused (see `electrodem.engine.state.MIN_CAPACITY`)."""
    m = max(int(m), 16 * MIN_CAPACITY)
    p = 1 << (m - 1).bit_length()
    return 3 * p // 4 if 3 * p // 4 >= m else p


@ti.func
def min_image(d, dom):
    """Minimum-image vector on periodic axes; ``dom`` = [Lx, Ly, Lz, px, py, pz, ...] (layout in
    `electrodem.engine.integrate`), Lees–Edwards aware: crossing the z faces also shifts x by the
    image offset s (|s| <= Lx/2), so z is folded first.

    Positions on a periodic axis lie in [0, L], so one shift by L is enough (and, unlike
    ``L * round(d / L)``, needs neither a division nor a libm call)."""
    if dom[5] > 0.5:
        if d[2] > 0.5 * dom[2]:
            d[2] -= dom[2]
            d[0] -= dom[D_LE_SHIFT]
        elif d[2] < -0.5 * dom[2]:
            d[2] += dom[2]
            d[0] += dom[D_LE_SHIFT]
    for a in ti.static(range(2)):
        if dom[3 + a] > 0.5:
            if d[a] > 0.5 * dom[a]:
                d[a] -= dom[a]
            elif d[a] < -0.5 * dom[a]:
                d[a] += dom[a]
    return d


@field_holder
class CellStore:
    """Cell counts/starts of every level's grid plus the grid geometry (origin, cell size, counts)."""

    def __init__(self, n_cells: int, scan_n: int, real: object) -> None:
        self.n_cells_cap = n_cells
        self.scan_cap = scan_n
        self.pool_key = (n_cells, scan_n, real)
        fb = ti.FieldsBuilder()
        self.cell_count = ti.field(ti.i32)
        fb.dense(ti.i, n_cells).place(self.cell_count)
        self.cell_start = ti.field(ti.i32)
        fb.dense(ti.i, n_cells + 1).place(self.cell_start)
        self.ginfo = ti.field(real)
        fb.dense(ti.ij, (MAX_LEVELS, 6)).place(self.ginfo)
        self.gint = ti.field(ti.i32)
        fb.dense(ti.ij, (MAX_LEVELS, 4)).place(self.gint)
        self.bbox = ti.field(real)
        fb.dense(ti.i, 6).place(self.bbox)
        self.bsum = ti.field(ti.i32)
        fb.dense(ti.i, scratch_size(scan_n)).place(self.bsum)
        self._tree = fb.finalize()

    def destroy(self) -> None:
        self._tree.destroy()


@field_holder
class PairStore:
    """Current half list (start/j/history), the previous one (old_*), the reverse index, the pair's
    effective radius and mass ``rm`` = (R* (m), m* (kg)) and the per-pair force on the owner (N) and
    torque on the partner (N m).

    R* and m* are constant while the pair is listed; computing them once per build spares the force
    loop two divisions per contact and step.

    Each array has its own contiguous storage except pair_f/pair_tj, which are written and read
    together. Rolling history (hr, old_hr) takes memory only when ``rolling`` is set, the largest
    overlap (dm, old_dm, m) only when ``plastic`` is, the JKR contact flag (hc, old_hc: 1 while the
    pair's adhesive contact exists) only when ``cohesion`` is."""

    def __init__(
        self,
        n_cap: int,
        p_cap: int,
        real: object,
        rolling: bool,
        plastic: bool = False,
        cohesion: bool = False,
    ) -> None:
        self.n_cap, self.p_cap = n_cap, p_cap
        self.rolling = rolling
        self.plastic = plastic
        self.cohesion = cohesion
        self.pool_key = (n_cap, p_cap, real, rolling, plastic, cohesion)
        vec = ti.types.vector(3, real)
        fb = ti.FieldsBuilder()
        for name in ("start", "old_start", "rev_start"):
            setattr(self, name, ti.field(ti.i32))
            fb.dense(ti.i, n_cap + 1).place(getattr(self, name))
        for name in ("j", "old_j", "rev_k"):
            setattr(self, name, ti.field(ti.i32))
            fb.dense(ti.i, p_cap).place(getattr(self, name))
        for name in ("ht", "old_ht", "hr", "old_hr"):
            setattr(self, name, ti.field(vec))
            fb.dense(ti.i, p_cap if rolling or name.endswith("ht") else 1).place(getattr(self, name))
        for name in ("dm", "old_dm"):
            setattr(self, name, ti.field(real))
            fb.dense(ti.i, p_cap if plastic else 1).place(getattr(self, name))
        for name in ("hc", "old_hc"):
            setattr(self, name, ti.field(ti.i32))
            fb.dense(ti.i, p_cap if cohesion else 1).place(getattr(self, name))
        self.rm = ti.field(ti.types.vector(2, real))
        fb.dense(ti.i, p_cap).place(self.rm)
        self.pair_f = ti.field(vec)
        self.pair_tj = ti.field(vec)
        fb.dense(ti.i, p_cap).place(self.pair_f, self.pair_tj)
        self._tree = fb.finalize()

    def destroy(self) -> None:
        self._tree.destroy()


@ti.func
def _cell_coord(x, lvl, c):
    q = ti.Vector([0, 0, 0])
    for a in ti.static(range(3)):
        k = ti.floor((x[a] - c.ginfo[lvl, a]) / c.ginfo[lvl, 3 + a], ti.i32)
        q[a] = ti.min(ti.max(k, 0), c.gint[lvl, a] - 1)
    return q


@ti.func
def _cell_id(q, lvl, c):
    return c.gint[lvl, 3] + (q[1] * c.gint[lvl, 0] + q[0]) * c.gint[lvl, 2] + q[2]


@ti.kernel
def _bbox(s: ti.template(), c: ti.template(), n: ti.i32):
    # Reductions into kernel-scope scalars become per-thread partial results (no shared atomics).
    x0, y0, z0 = 3e38, 3e38, 3e38
    x1, y1, z1 = -3e38, -3e38, -3e38
    ti.loop_config(serialize=arch.SERIAL_LOOPS)
    for i in range(n):
        xi = s.x[i]
        ti.atomic_min(x0, xi[0])
        ti.atomic_min(y0, xi[1])
        ti.atomic_min(z0, xi[2])
        ti.atomic_max(x1, xi[0])
        ti.atomic_max(y1, xi[1])
        ti.atomic_max(z1, xi[2])
    c.bbox[0], c.bbox[1], c.bbox[2] = x0, y0, z0
    c.bbox[3], c.bbox[4], c.bbox[5] = x1, y1, z1


@ti.kernel
def _bin(s: ti.template(), c: ti.template(), n: ti.i32, n_cells: ti.i32):
    ti.loop_config(serialize=arch.SERIAL_LOOPS)
    for k in range(n_cells):
        c.cell_count[k] = 0
    ti.loop_config(serialize=arch.SERIAL_LOOPS)
    for i in range(n):
        lvl = s.level[i]
        cid = _cell_id(_cell_coord(s.x[i], lvl, c), lvl, c)
        s.cell_of[i] = cid
        ti.atomic_add(c.cell_count[cid], 1)


@ti.func
def _insertion_sort(a: ti.template(), lo, hi):
    for k in range(lo + 1, hi):
        v = a[k]
        m = k - 1
        while m >= lo and a[m] > v:
            a[m + 1] = a[m]
            m -= 1
        a[m + 1] = v


@ti.kernel
def _scatter(s: ti.template(), c: ti.template(), n: ti.i32, n_cells: ti.i32):
    ti.loop_config(serialize=arch.SERIAL_LOOPS)
    for k in range(n_cells):
        c.cell_count[k] = 0
    ti.loop_config(serialize=arch.SERIAL_LOOPS)
    for i in range(n):
        cid = s.cell_of[i]
        slot = ti.atomic_add(c.cell_count[cid], 1)
        s.sorted_ids[c.cell_start[cid] + slot] = i
    ti.loop_config(serialize=arch.SERIAL_LOOPS)
    for k in range(n_cells):
        _insertion_sort(s.sorted_ids, c.cell_start[k], c.cell_start[k + 1])


@ti.func
def _axis_range(q, ncell, periodic):
    """(first cell, count) of the 3-cell window around q on one axis, never visiting a cell twice."""
    lo = q - 1
    cnt = 3
    if periodic:
        if ncell < 3:
            lo = 0
            cnt = ncell
    else:
        lo = ti.max(q - 1, 0)
        cnt = ti.min(q + 1, ncell - 1) - lo + 1
    return lo, cnt


@ti.func
def _visit(i, xi, ri, li, lvl, lo, hi, s, p, skin, cnt, slot, fill: ti.template()):
    """Count (or store, with zero history) the partners of i among the particles lo..hi-1.

    In its own level i owns only pairs with higher indices: the particles of a cell are an index
    range, so the range simply starts after i."""
    first = lo
    if lvl == li:
        first = ti.max(lo, i + 1)
    for j in range(first, hi):
        d = min_image(xi - s.x[j], s.dom)
        cut = ri + s.r[j] + skin
        if d.dot(d) < cut * cut:
            if ti.static(fill):
                p.j[slot] = j
                rj = s.r[j]
                im_sum = s.invm[i] + s.invm[j]
                m_star = 0.0
                if im_sum > 0.0:
                    m_star = 1.0 / im_sum
                p.rm[slot] = ti.Vector([ri * rj / (ri + rj), m_star])
                p.ht[slot] = xi * 0.0
                if ti.static(p.rolling):
                    p.hr[slot] = xi * 0.0
                if ti.static(p.plastic):
                    p.dm[slot] = 0.0
                if ti.static(p.cohesion):
                    p.hc[slot] = 0
                slot += 1
            else:
                cnt += 1
    return cnt, slot


@ti.func
def _visit_sheared(i, xi, ri, li, lvl, q, lz, cz, ly, cy, s, c, p, skin, cnt, slot, fill: ti.template()):
    """The cells of i's window that lie across a z face under Lees–Edwards shear: the image there is
    offset by s in x, so the 3-cell x window is centred on the cell of x_i -/+ s (crossing up/down).
    The shift moves on between builds by less than the skin (`Simulation` rebuilds before), and the
    cells are >= 2 r_max + skin wide, so the window still holds every partner within the cut-off."""
    nx, ny, nz = c.gint[lvl, 0], c.gint[lvl, 1], c.gint[lvl, 2]
    for oz in range(cz):
        raw = lz + oz
        if nz >= 3 and (raw < 0 or raw >= nz):
            kz = (raw + nz) % nz
            xs = xi[0] + s.dom[D_LE_SHIFT]
            if raw >= nz:
                xs = xi[0] - s.dom[D_LE_SHIFT]
            if xs >= s.dom[0]:
                xs -= s.dom[0]
            elif xs < 0.0:
                xs += s.dom[0]
            qx = ti.min(ti.max(ti.floor(xs / c.ginfo[lvl, 3], ti.i32), 0), nx - 1)
            lx, cx = _axis_range(qx, nx, True)
            for oy in range(cy):
                ky = (ly + oy + ny) % ny
                for ox in range(cx):
                    kx = (lx + ox + nx) % nx
                    cell = c.gint[lvl, 3] + (ky * nx + kx) * nz + kz
                    cnt, slot = _visit(
                        i,
                        xi,
                        ri,
                        li,
                        lvl,
                        c.cell_start[cell],
                        c.cell_start[cell + 1],
                        s,
                        p,
                        skin,
                        cnt,
                        slot,
                        fill,
                    )
    return cnt, slot


@ti.kernel
def _pairs(
    s: ti.template(),
    c: ti.template(),
    p: ti.template(),
    n: ti.i32,
    n_levels: ti.i32,
    skin: float,
    fill: ti.template(),
    lees: ti.template(),
):
    ti.loop_config(serialize=arch.SERIAL_LOOPS)
    for i in range(n):
        xi = s.x[i]
        ri = s.r[i]
        li = s.level[i]
        cnt = 0
        slot = 0
        if ti.static(fill):
            slot = p.start[i]
        for lvl in range(li, n_levels):
            q = _cell_coord(xi, lvl, c)
            nx, ny, nz = c.gint[lvl, 0], c.gint[lvl, 1], c.gint[lvl, 2]
            lx, cx = _axis_range(q[0], nx, s.dom[3] > 0.5)
            ly, cy = _axis_range(q[1], ny, s.dom[4] > 0.5)
            lz, cz = _axis_range(q[2], nz, s.dom[5] > 0.5)
            if ti.static(lees):
                if nz < 3:
                    # The z window does not wrap: partners across the z faces may sit anywhere in x.
                    lx, cx = 0, nx
            for oy in range(cy):
                ky = (ly + oy + ny) % ny
                for ox in range(cx):
                    kx = (lx + ox + nx) % nx
                    base = c.gint[lvl, 3] + (ky * nx + kx) * nz
                    if lz >= 0 and lz + cz <= nz:
                        # z is the fastest cell axis: the window's cells along z are one index range.
                        cnt, slot = _visit(
                            i,
                            xi,
                            ri,
                            li,
                            lvl,
                            c.cell_start[base + lz],
                            c.cell_start[base + lz + cz],
                            s,
                            p,
                            skin,
                            cnt,
                            slot,
                            fill,
                        )
                    else:
                        for oz in range(cz):
                            kz = (lz + oz + nz) % nz
                            if ti.static(lees):
                                if lz + oz < 0 or lz + oz >= nz:
                                    continue  # across a z face: the shifted window below
                            cnt, slot = _visit(
                                i,
                                xi,
                                ri,
                                li,
                                lvl,
                                c.cell_start[base + kz],
                                c.cell_start[base + kz + 1],
                                s,
                                p,
                                skin,
                                cnt,
                                slot,
                                fill,
                            )
            if ti.static(lees):
                cnt, slot = _visit_sheared(
                    i, xi, ri, li, lvl, q, lz, cz, ly, cy, s, c, p, skin, cnt, slot, fill
                )
        if ti.static(not fill):
            s.nb_count[i] = cnt


@ti.func
def _permute_field(a: ti.template(), tmp: ti.template(), ids: ti.template(), n):
    for t in range(n):
        tmp[t] = a[ids[t]]
    for t in range(n):
        a[t] = tmp[t]


@ti.func
def _permute_column(a: ti.template(), col, tmp: ti.template(), ids: ti.template(), n):
    for t in range(n):
        tmp[t] = a[ids[t], col]
    for t in range(n):
        a[t, col] = tmp[t]


@ti.kernel
def permute_particles(s: ti.template(), n: ti.i32, nw: ti.i32):
    """Re-order the first n particles so that new index t holds old index ``s.sorted_ids[t]``.

    Each field goes through one scratch buffer (gather into it, copy back), so the store needs no
    second copy of the state. ``cell_of`` is free once the particles are binned and serves as the
    integer scratch buffer."""
    ti.loop_config(serialize=arch.SERIAL_LOOPS)
    for a in ti.static((s.x, s.v, s.w, s.f, s.tq)):
        _permute_field(a, s.tmp_v, s.sorted_ids, n)
    ti.loop_config(serialize=arch.SERIAL_LOOPS)
    for a in ti.static((s.r, s.invm, s.invI, s.gm)):
        _permute_field(a, s.tmp_s, s.sorted_ids, n)
    ti.loop_config(serialize=arch.SERIAL_LOOPS)
    for a in ti.static((s.mat, s.level, s.ext, s.wflag)):
        _permute_field(a, s.cell_of, s.sorted_ids, n)
    ti.loop_config(serialize=arch.SERIAL_LOOPS)
    for wk in ti.static(range(MAX_WALLS)):
        m = 0
        if wk < nw:
            m = n
        _permute_column(s.wht, wk, s.tmp_v, s.sorted_ids, m)
        if ti.static(s.rolling):
            _permute_column(s.whr, wk, s.tmp_v, s.sorted_ids, m)
        if ti.static(s.plastic):
            _permute_column(s.wdm, wk, s.tmp_s, s.sorted_ids, m)
    ti.loop_config(serialize=arch.SERIAL_LOOPS)
    for t in range(n):
        s.intern[s.ext[t]] = t


@ti.func
def _set_history(owner, partner, h_t, h_r, h_d, h_c, p):
    """Give pair (owner, partner) of the new list the history (h_t, h_r, largest overlap h_d, JKR flag
    h_c); if the new list has the pair the other way round, the owner's view of h_t, h_r is the
    negated one. Returns whether the pair was found."""
    found = False
    for k in range(p.start[owner], p.start[owner + 1]):
        if p.j[k] == partner:
            p.ht[k] = h_t
            if ti.static(p.rolling):
                p.hr[k] = h_r
            if ti.static(p.plastic):
                p.dm[k] = h_d
            if ti.static(p.cohesion):
                p.hc[k] = h_c
            found = True
            break
    if not found:
        for k in range(p.start[partner], p.start[partner + 1]):
            if p.j[k] == owner:
                p.ht[k] = -h_t
                if ti.static(p.rolling):
                    p.hr[k] = -h_r
                if ti.static(p.plastic):
                    p.dm[k] = h_d
                if ti.static(p.cohesion):
                    p.hc[k] = h_c
                found = True
                break
    return found


@ti.kernel
def _carry_history(s: ti.template(), p: ti.template(), n: ti.i32, n_old: ti.i32):
    """Copy the non-zero history of the previous list (old indices) onto the same pairs of the new one.

    Runs over the old pairs that have history (the ones in contact, about half of the list) instead
    of looking every new pair up; pairs absent from the new list lose theirs, as they have separated.
    ``cell_of`` (free after the re-ordering) holds the new index of each old one."""
    ti.loop_config(serialize=arch.SERIAL_LOOPS)
    for t in range(n):
        s.cell_of[s.sorted_ids[t]] = t
    ti.loop_config(serialize=arch.SERIAL_LOOPS)
    for oi in range(n_old):
        for k in range(p.old_start[oi], p.old_start[oi + 1]):
            h_t = p.old_ht[k]
            h_r = h_t * 0.0
            if ti.static(p.rolling):
                h_r = p.old_hr[k]
            h_d = h_t[0] * 0.0
            if ti.static(p.plastic):
                h_d = p.old_dm[k]
            h_c = 0
            if ti.static(p.cohesion):
                h_c = p.old_hc[k]
            if h_t.any() or h_r.any() or h_d != 0.0 or h_c != 0:
                _set_history(s.cell_of[oi], s.cell_of[p.old_j[k]], h_t, h_r, h_d, h_c, p)


@ti.kernel
def _save_old(p: ti.template(), n_old: ti.i32, n_pairs: ti.i32):
    ti.loop_config(serialize=arch.SERIAL_LOOPS)
    for i in range(n_old + 1):
        p.old_start[i] = p.start[i]
    ti.loop_config(serialize=arch.SERIAL_LOOPS)
    for k in range(n_pairs):
        p.old_j[k] = p.j[k]
        p.old_ht[k] = p.ht[k]
        if ti.static(p.rolling):
            p.old_hr[k] = p.hr[k]
        if ti.static(p.plastic):
            p.old_dm[k] = p.dm[k]
        if ti.static(p.cohesion):
            p.old_hc[k] = p.hc[k]


@ti.kernel
def _reverse_count(s: ti.template(), p: ti.template(), n: ti.i32):
    ti.loop_config(serialize=arch.SERIAL_LOOPS)
    for i in range(n):
        s.rev_count[i] = 0
    ti.loop_config(serialize=arch.SERIAL_LOOPS)
    for i in range(n):
        for k in range(p.start[i], p.start[i + 1]):
            ti.atomic_add(s.rev_count[p.j[k]], 1)


@ti.kernel
def _reverse_fill(s: ti.template(), p: ti.template(), n: ti.i32):
    ti.loop_config(serialize=arch.SERIAL_LOOPS)
    for i in range(n):
        s.rev_count[i] = 0
    ti.loop_config(serialize=arch.SERIAL_LOOPS)
    for i in range(n):
        for k in range(p.start[i], p.start[i + 1]):
            j = p.j[k]
            slot = ti.atomic_add(s.rev_count[j], 1)
            p.rev_k[p.rev_start[j] + slot] = k
    ti.loop_config(serialize=arch.SERIAL_LOOPS)
    for j in range(n):
        _insertion_sort(p.rev_k, p.rev_start[j], p.rev_start[j + 1])


@ti.kernel
def _copy_positions(s: ti.template(), n: ti.i32):
    ti.loop_config(serialize=arch.SERIAL_LOOPS)
    for i in range(n):
        s.xref[i] = s.x[i]


class NeighborList:
    """Owns the cell and pair stores and rebuilds the half list (see module docstring).

    ``rolling``: whether pairs carry rolling history (memory for it is allocated only then);
    ``plastic``: whether they carry their largest overlap (Thornton–Ning law); ``cohesion``: whether
    they carry the JKR contact flag."""

    def __init__(
        self, real: object, rolling: bool = False, plastic: bool = False, cohesion: bool = False
    ) -> None:
        self.real = real
        self.rolling = bool(rolling)
        self.plastic = bool(plastic)
        self.cohesion = bool(cohesion)
        self.cells: CellStore | None = None
        self.pairs: PairStore | None = None
        self.n = 0
        self.n_pairs = 0
        self.skin_m = 0.0
        self.n_levels = 0
        self.level_rmax = np.zeros(0)
        self.builds = 0
        self._order_store: object | None = None
        """Store whose ``ext`` maps the list's indices to external ones (None: they are external)."""

    def destroy(self) -> None:
        release(self.cells)
        release(self.pairs)
        self.cells = self.pairs = None
        self._order_store = None

    def _new_pairs(self, n_cap: int, p_cap: int) -> PairStore:
        return acquire(
            PairStore,
            round_capacity(n_cap),
            pair_capacity(p_cap),
            self.real,
            self.rolling,
            self.plastic,
            self.cohesion,
        )

    # ------------------------------------------------------------------ levels and grids
    def assign_levels(self, s: object, radii: np.ndarray, skin_m: float) -> None:
        """Put the particles of store ``s`` (radii in its current order) in levels by radius."""
        n = len(radii)
        self.skin_m = float(skin_m)
        r_min = float(radii.min())
        raw = np.floor(np.log(radii / r_min) / math.log(LEVEL_RATIO) + 1e-9).astype(np.int64)
        used = np.unique(raw)
        if len(used) > MAX_LEVELS:
            raise ValueError(f"size ratio {radii.max() / r_min:.3g} needs more than {MAX_LEVELS} grid levels")
        lvl = np.searchsorted(used, raw).astype(np.int32)
        self.n_levels = len(used)
        self.level_rmax = np.array([radii[lvl == k].max() for k in range(self.n_levels)])
        full = np.zeros(s.cap, np.int32)  # type: ignore[attr-defined]
        full[:n] = lvl
        s.level.from_numpy(full)  # type: ignore[attr-defined]

    def _grids(
        self, s: object, n: int, box: np.ndarray, periodic: tuple[bool, ...]
    ) -> tuple[np.ndarray, np.ndarray, int]:
        if self.cells is None:
            self.cells = acquire(CellStore, MIN_CELLS, round_capacity(max(n, MIN_CELLS)), self.real)
        _bbox(s, self.cells, n)
        bb = self.cells.bbox.to_numpy().astype(np.float64)
        ginfo = np.zeros((MAX_LEVELS, 6))
        gint = np.zeros((MAX_LEVELS, 4), np.int32)
        gint[:, :3] = 1
        ginfo[:, 3:] = 1.0
        offset = 0
        # A non-periodic axis gets at most this many cells, so that a stray particle far away makes the
        # cells coarser instead of exhausting memory.
        max_cells_axis = max(64, int(4 * n ** (1 / 3)) + 64)
        for k in range(self.n_levels):
            size = 2.0 * self.level_rmax[k] + self.skin_m
            for a in range(3):
                if periodic[a]:
                    nc = max(1, int(box[a] // size))
                    ginfo[k, a], ginfo[k, 3 + a] = 0.0, box[a] / nc
                else:
                    lo, hi = bb[a] - 1e-6 * size, bb[3 + a] + 1e-6 * size
                    nc = min(int((hi - lo) // size) + 1, max_cells_axis)
                    ginfo[k, a], ginfo[k, 3 + a] = lo, max(size, (hi - lo) / nc * (1 + 1e-9))
                gint[k, a] = nc
            gint[k, 3] = offset
            offset += int(gint[k, 0]) * int(gint[k, 1]) * int(gint[k, 2])
        return ginfo, gint, offset

    # ------------------------------------------------------------------ build
    def build(
        self,
        s: object,
        n: int,
        box: np.ndarray,
        periodic: tuple[bool, ...],
        n_walls: int,
        lees_edwards: bool = False,
    ) -> None:
        """Re-order the first ``n`` particles of store ``s`` by cell and rebuild the list for them,
        carrying history over. ``lees_edwards``: the z images are offset in x by the shift held in
        ``dom`` (sheared box); the search then also looks at the shifted cells across the z faces."""
        lees = bool(lees_edwards and periodic[2])
        ginfo, gint, n_cells = self._grids(s, n, box, periodic)
        assert self.cells is not None
        if n_cells > self.cells.n_cells_cap or max(n, n_cells) > self.cells.scan_cap:
            release(self.cells)
            self.cells = acquire(
                CellStore,
                round_capacity(max(n_cells, MIN_CELLS)),
                round_capacity(max(n, n_cells, MIN_CELLS)),
                self.real,
            )
        c = self.cells
        np_real = np.float64 if self.real == ti.f64 else np.float32
        c.ginfo.from_numpy(ginfo.astype(np_real))
        c.gint.from_numpy(gint)
        _bin(s, c, n, n_cells)
        exclusive_scan(c.cell_count, c.cell_start, c.bsum, n_cells)
        _scatter(s, c, n, n_cells)
        # From here on sorted_ids[t] is the old index of the particle now at t (the history lookup
        # below needs it), and the particles of cell k are the index range cell_start[k]..[k+1].
        permute_particles(s, n, n_walls)

        n_old, p_old = self.n, self.n_pairs
        if self.pairs is None:
            # Sized for a packed bed from the start (most runs pack what they start with: settling,
            # pressing); the count below grows it if needed.
            self.pairs = self._new_pairs(n, DENSE_PAIRS_PER_PARTICLE * n)
            n_old = p_old = 0
        elif n > self.pairs.n_cap:
            self._grow_pairs(n, self.pairs.p_cap, keep_current=True)
        p = self.pairs
        _save_old(p, n_old, p_old)
        _pairs(s, c, p, n, self.n_levels, self.skin_m, False, lees)
        total = exclusive_scan(s.nb_count, p.start, c.bsum, n)  # type: ignore[attr-defined]
        if total > p.p_cap:
            # At least double: every new capacity recompiles each kernel that touches the pairs
            # (~3 s a set on a CPU).
            self._grow_pairs(n, max(total + total // 4, 2 * p.p_cap), keep_current=False)
            p = self.pairs
            exclusive_scan(s.nb_count, p.start, c.bsum, n)  # type: ignore[attr-defined]
        _pairs(s, c, p, n, self.n_levels, self.skin_m, True, lees)
        if n_old > 0:
            _carry_history(s, p, n, min(n_old, n))
        _reverse_count(s, p, n)
        exclusive_scan(s.rev_count, p.rev_start, c.bsum, n)  # type: ignore[attr-defined]
        _reverse_fill(s, p, n)
        _copy_positions(s, n)
        self.n, self.n_pairs = n, total
        self._order_store = s
        self.builds += 1

    def _grow_pairs(self, n: int, p_cap: int, keep_current: bool) -> None:
        """Replace the pair store by a larger one, keeping either the current list (before a build) or
        the saved previous list (during a build) so that history can still be carried over."""
        old = self.pairs
        assert old is not None
        new = self._new_pairs(max(n, old.n_cap), max(p_cap, old.p_cap))
        names = ["start", "j", "ht"] if keep_current else ["old_start", "old_j", "old_ht"]
        if self.rolling:
            names.append("hr" if keep_current else "old_hr")
        if self.plastic:
            names.append("dm" if keep_current else "old_dm")
        if self.cohesion:
            names.append("hc" if keep_current else "old_hc")
        for name in names:
            src = getattr(old, name).to_numpy()
            dst = getattr(new, name).to_numpy()
            m = min(len(src), len(dst))
            dst[:m] = src[:m]
            if name.endswith("start") and len(dst) > m:
                dst[m:] = src[m - 1]
            getattr(new, name).from_numpy(dst)
        release(old)
        self.pairs = new

    # ------------------------------------------------------------------ host views
    def _external(self, idx: np.ndarray) -> np.ndarray:
        if self._order_store is None or len(idx) == 0:
            return idx
        ext = self._order_store.external_index(self.n)  # type: ignore[attr-defined]
        return ext[idx]

    def _internal_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        if self.pairs is None or self.n == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        start = self.pairs.start.to_numpy()[: self.n + 1]
        i = np.repeat(np.arange(self.n, dtype=np.int64), np.diff(start))
        j = self.pairs.j.to_numpy()[: self.n_pairs].astype(np.int64)
        return i, j

    def pairs_numpy(self) -> tuple[np.ndarray, np.ndarray]:
        """(i, j) external indices of the current list (each pair once, i the owner)."""
        i, j = self._internal_pairs()
        return self._external(i), self._external(j)

    def history_numpy(self) -> dict[str, np.ndarray]:
        """Pairs of the current list (external indices) with their tangential (m) and rolling (N m)
        history, largest overlap ``dm`` (m; zeros unless ``plastic``) and JKR contact flag ``hc`` (int32)."""
        i, j = self.pairs_numpy()
        p = self.n_pairs
        if self.pairs is None:
            return {
                "i": i,
                "j": j,
                "ht": np.zeros((0, 3)),
                "hr": np.zeros((0, 3)),
                "dm": np.zeros(0),
                "hc": np.zeros(0, np.int32),
            }
        ht = self.pairs.ht.to_numpy()[:p].astype(np.float64)
        hr = self.pairs.hr.to_numpy()[:p].astype(np.float64) if self.rolling else np.zeros((p, 3))
        dm = self.pairs.dm.to_numpy()[:p].astype(np.float64) if self.plastic else np.zeros(p)
        hc = self.pairs.hc.to_numpy()[:p].astype(np.int32) if self.cohesion else np.zeros(p, np.int32)
        return {"i": i, "j": j, "ht": ht, "hr": hr, "dm": dm, "hc": hc}

    def load_history(self, hist: dict[str, np.ndarray], n: int) -> None:
        """Install (i, j, ht, hr, optional dm), with i, j the particles' current indices (external order,
        which is the internal one right after `ParticleStore.particles_from_numpy`), as the current list so
        that the next `build` carries it over (checkpoint restart, particle additions). Only history
        is meaningful; the next build must follow."""
        i, j = np.asarray(hist["i"], np.int64), np.asarray(hist["j"], np.int64)
        order = np.lexsort((j, i))
        m = len(i)
        self.destroy()
        self.pairs = self._new_pairs(n, m + m // 5 + 1024)
        np_real = np.float64 if self.real == ti.f64 else np.float32
        start = np.zeros(self.pairs.n_cap + 1, np.int64)
        np.add.at(start, i + 1, 1)
        start = np.cumsum(start)
        self.pairs.start.from_numpy(start.astype(np.int32))
        names = [("j", j[order]), ("ht", np.asarray(hist["ht"])[order])]
        if self.rolling:
            names.append(("hr", np.asarray(hist["hr"])[order]))
        if self.plastic:
            names.append(("dm", np.asarray(hist.get("dm", np.zeros(m)))[order]))
        if self.cohesion:
            # Checkpoints written before the flag existed have none: every pair starts detached.
            names.append(("hc", np.asarray(hist.get("hc", np.zeros(m)))[order]))
        for name, arr in names:
            dst = getattr(self.pairs, name).to_numpy()
            dst[:m] = arr
            getattr(self.pairs, name).from_numpy(dst.astype(np.int32 if name in ("j", "hc") else np_real))
        self.n, self.n_pairs = n, m
