"""Linear algebra of the voxel transport solver: the finite-volume operator and its solver.

The unknowns are the potentials of the *conducting* voxels only (the caller trims everything else),
kept in a compressed vector. The finest level is stored "structured-compressed": for every cell
and every axis, the indices of its +axis and -axis neighbours (or -1) and the conductance of the
+axis face. From that we assemble a CSR matrix (SciPy) for the matrix-vector products and the
Gauss-Seidel smoother (PyAMG's compiled kernel), and we coarsen.

Coarsening is aggregation with piecewise-constant prolongation P. Level 0 -> 1: the 2x2x2 blocks
of the voxel grid, each split into its face-connected pieces (a lookup table over the 256
occupancy patterns of a block); later levels: 2x2x2 blocks of the coarse cells' grid positions,
split into the connected pieces of the coarse matrix graph. Splitting matters: an aggregate that
joins two pieces connected only far away short-circuits them in the coarse problem, each such
defect is an outlier eigenvalue for CG, and on 200^3 images of the solid phase of a sphere packing
the iteration count halves with splitting. The coarse matrix is ``COARSE_SCALE`` = 1/2 times the
Galerkin product P^T A P: in a homogeneous region that equals the re-discretised operator (a coarse
face holds 4 fine faces and its path is twice as long), where the plain Galerkin product would give
a coarse correction half as large as it should be.

The preconditioner is a W-cycle (each coarse level solved by two cycles of the next one; the
coarse levels shrink ~7x, so this costs ~1.3x a V-cycle and brings the iterations on 200^3 images
from ~25 to ~10). Forward Gauss-Seidel before and backward after the coarse correction make every
cycle symmetric, so it is a valid CG preconditioner. The coarsest level (<= 4000 unknowns) is
factorised once (SuperLU, float64).

Cells are numbered in *block order* (`block_ordered_cells`): the 2^L-voxel blocks in C order and,
inside each, the octants recursively (a Morton order within blocks). The children of a coarse cell
are then (almost always) a contiguous run, so restriction is one ``np.add.reduceat`` and
prolongation one ``np.repeat``, with no index arrays; neighbours are also closer in memory.

High contrast
-------------
Conductivity maps with contrasts of 1e3-1e6 (carbon-binder domain, active material, electrolyte)
defeat that aggregation. An aggregate that straddles an interface between a good and a poor
conductor is constant across a jump of the potential, and a good conductor floating in a poor one
(an island, or a layer between poor layers) is a near-null mode of the matrix that the coarse space
only reaches through such mixed aggregates. Measured on 40^3-96^3 series laminates, good islands in
a 1e6 poorer matrix and sphere packings with a conducting coating: CG needed 80-180 iterations or
stalled at 500 without converging.

With ``Level.cell_class`` (from `contrast_classes`: conductivities within ``CONTRAST_CLASS_RATIO``
= 10 of each other share a class) an aggregate never holds two classes: the first coarsening takes
the face-connected pieces of each class in a 2x2x2 block (up to 8 per block), later ones the
connected same-class pieces of each group. An island's constant mode is then a sum of coarse basis
functions, represented exactly, and there a coarse matrix scaled by ``COARSE_SCALE`` = 1/2 doubles
the exact correction: the preconditioned operator gets eigenvalues near 2, where the W-cycle's
second coarse iteration (``2M - MAM``: 2 lambda - lambda^2) vanishes, and CG broke down or stalled.
So with classes the coarse matrices are ``CONTRAST_COARSE_SCALE`` = 0.7 times the Galerkin product:
those eigenvalues stay below 1/0.7 ~ 1.4, and a homogeneous region gets 0.7 of the re-discretised
correction (scale 1/2: all of it; plain Galerkin: half). Measured on the same cases: 10-30
iterations (scale 1/2 with classes: up to 160, and one stall; 1.0: 10-60). Without classes nothing
changes.

Vectors and matrices are float32 by default (half the memory traffic; enough for current balances
of ~1e-5) or float64.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from pyamg import amg_core
from scipy.sparse.csgraph import connected_components

COARSE_SCALE = 0.5
CONTRAST_CLASS_RATIO = 10.0
"""High-contrast multigrid: conductivities within this factor of each other share a class."""
CONTRAST_COARSE_SCALE = 0.7
"""High-contrast multigrid: the coarse matrices are this times the Galerkin product (module docstring)."""
MAX_DIRECT_UNKNOWNS = 4000
_ROW_CHUNK = 1 << 18


@dataclass
class Level:
    """The finest level: the conducting voxels and their faces.

    ``cell_flat`` holds the C-order flat grid index of each cell (cells listed in block order);
    ``up[d][i]`` / ``down[d][i]`` the index of the
    +d / -d neighbour of cell i (-1 if none; wrapping on periodic axes); ``g[d][i]`` the
    conductance of the +d face of cell i, or a single float when every face along d has the same
    conductance (a binary phase: saves the arrays); ``g_dirichlet[i]`` the conductance to the
    fixed-potential planes (diagonal only). ``cell_class[i]``, when given, is the conductivity
    class of cell i (`contrast_classes`): aggregates then never join cells of different classes
    (module docstring, "High contrast"); None = one class, the binary-phase aggregation.
    """

    shape: tuple[int, int, int]
    cell_flat: np.ndarray
    up: list[np.ndarray]
    down: list[np.ndarray]
    g: list[np.ndarray | float]
    g_dirichlet: np.ndarray
    periodic: tuple[bool, bool, bool]
    matrix: sp.csr_matrix | None = None
    cell_class: np.ndarray | None = None

    @property
    def n(self) -> int:
        return len(self.cell_flat)

    def release_faces(self) -> None:
        """Drop the per-face arrays once the matrix and the coarse level exist."""
        self.up, self.down, self.g = [], [], []


def contrast_classes(sigma: np.ndarray, ratio: float) -> np.ndarray:
    """Conductivity class (int32, 0 = the lowest) of every cell from its conductivity ``sigma`` (> 0).

    The distinct values, in increasing order, open a new class wherever a value exceeds ``ratio``
    times the smallest value of the current class: values within a factor ``ratio`` of each other
    share a class, values further apart never do.
    """
    values, inverse = np.unique(sigma, return_inverse=True)
    cls = np.empty(len(values), dtype=np.int32)
    k, lo = 0, values[0] if len(values) else 0.0
    for m, v in enumerate(values):
        if v > ratio * lo:
            k, lo = k + 1, v
        cls[m] = k
    return cls[inverse.ravel()]


def levels_for(shape: tuple[int, int, int], n_cells: int) -> int:
    """Number of 2x coarsenings expected before a level is small enough for a direct solve."""
    ratio = max(n_cells / MAX_DIRECT_UNKNOWNS, 1.0)
    by_count = math.ceil(math.log2(ratio) / 3.0) + 1
    by_size = math.ceil(math.log2(max(shape))) if max(shape) > 1 else 0
    return max(0, min(by_count, by_size, 12))


def block_ordered_cells(keep: np.ndarray, levels: int) -> np.ndarray:
    """C-order flat indices of the True voxels of ``keep``, listed in block order (module docstring).

    ``levels`` = L: blocks of 2^L voxels per axis (the grid is padded to a multiple of 2^L for the
    reordering only).
    """
    shape = keep.shape
    size = int(np.prod(shape))
    dt = np.int32 if size < 2**31 - 1 else np.int64
    if levels == 0:
        return np.flatnonzero(keep).astype(dt)
    b = 1 << levels
    padded = [-(-s // b) * b for s in shape]
    pad = [(0, p - s) for p, s in zip(padded, shape, strict=True)]
    index = np.pad(np.arange(size, dtype=dt).reshape(shape), pad, constant_values=-1)
    mask = np.pad(keep, pad)
    split = []
    for p in padded:
        split += [p // b] + [2] * levels
    # Axes after the reshape: x_top, x_bits..., y_top, y_bits..., z_top, z_bits... (high bit first).
    perm = [0, levels + 1, 2 * (levels + 1)]
    for k in range(levels):
        perm += [1 + k, levels + 2 + k, 2 * (levels + 1) + 1 + k]
    return index.reshape(split).transpose(perm)[mask.reshape(split).transpose(perm)]


def coords_of(cell_flat: np.ndarray, shape: tuple[int, int, int]) -> list[np.ndarray]:
    """Grid coordinates (x, y, z) of C-order flat indices."""
    iz = cell_flat % shape[2]
    rest = cell_flat // shape[2]
    return [rest // shape[1], rest % shape[1], iz]


def neighbour_indices(
    cell_flat: np.ndarray,
    shape: tuple[int, int, int],
    periodic: tuple[bool, bool, bool],
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Indices of the +d and -d neighbours of every cell (-1 if not a cell, outside the grid, or
    the cell itself), as two lists over d = x, y, z. Works in chunks of cells to bound temporaries."""
    size = int(np.prod(shape))
    n = len(cell_flat)
    index_grid = np.full(size, -1, dtype=np.int32)
    index_grid[cell_flat] = np.arange(n, dtype=np.int32)
    strides = (shape[1] * shape[2], shape[2], 1)
    ups = [np.empty(n, dtype=np.int32) for _ in range(3)]
    downs = [np.empty(n, dtype=np.int32) for _ in range(3)]
    for r0 in range(0, n, _ROW_CHUNK):
        flat = cell_flat[r0 : r0 + _ROW_CHUNK]
        coords = coords_of(flat, shape)
        for d in range(3):
            wrap = periodic[d] and shape[d] > 1
            for sign, edge, out in ((1, shape[d] - 1, ups[d]), (-1, 0, downs[d])):
                at_edge = coords[d] == edge
                if wrap:
                    nb = index_grid[
                        np.where(at_edge, flat - sign * (shape[d] - 1) * strides[d], flat + sign * strides[d])
                    ]
                else:
                    nb = index_grid[np.where(at_edge, flat, flat + sign * strides[d])]
                    nb[at_edge] = -1
                out[r0 : r0 + len(flat)] = nb
    return ups, downs


def assemble_csr(level: Level) -> sp.csr_matrix:
    """CSR matrix of the finest level (dtype of ``g_dirichlet``), 7-point stencil, SPD.

    Row entries are in the column order -x, -y, -z, self, +z, +y, +x (sorted except across a
    periodic wrap). A 2-cell periodic axis gives a row two entries for the same column (two
    distinct faces); the kernels sum them, which is what we want. Built in row chunks so that the
    temporaries stay small next to the matrix itself.
    """
    n = level.n
    dtype = level.g_dirichlet.dtype.type
    diag = level.g_dirichlet.copy()
    counts = np.ones(n, dtype=np.int32)
    for d in range(3):
        for nb in (level.up[d], level.down[d]):
            # g[d] is indexed by the cell owning the +d face: itself for up, the neighbour for down.
            owner = None if nb is level.up[d] else nb
            if isinstance(level.g[d], np.ndarray):
                vals = level.g[d][np.maximum(owner, 0)] if owner is not None else level.g[d]
                diag += np.where(nb >= 0, vals, 0)
            else:
                diag += (nb >= 0).astype(dtype) * dtype(level.g[d])
            counts += nb >= 0
    # An isolated cell cannot occur after trimming; a unit diagonal keeps the matrix regular anyway.
    diag[diag <= 0] = 1
    nnz = int(counts.sum(dtype=np.int64))
    idx_dtype = np.int32 if nnz < 2**31 - 1 else np.int64
    indptr = np.zeros(n + 1, dtype=idx_dtype)
    np.cumsum(counts, out=indptr[1:])
    del counts
    indices = np.empty(nnz, dtype=idx_dtype)
    data = np.empty(nnz, dtype=dtype)
    # (neighbour array, face owner is the neighbour?, axis) in column order.
    slots = [
        (level.down[0], True, 0),
        (level.down[1], True, 1),
        (level.down[2], True, 2),
        None,
        (level.up[2], False, 2),
        (level.up[1], False, 1),
        (level.up[0], False, 0),
    ]
    for r0 in range(0, n, _ROW_CHUNK):
        r1 = min(n, r0 + _ROW_CHUNK)
        cols = np.empty((7, r1 - r0), dtype=idx_dtype)
        vals = np.empty((7, r1 - r0), dtype=dtype)
        for k, sl in enumerate(slots):
            if sl is None:
                cols[k] = np.arange(r0, r1, dtype=idx_dtype)
                vals[k] = diag[r0:r1]
                continue
            nb, owner_is_nb, d = sl
            cols[k] = nb[r0:r1]
            gd = level.g[d]
            if isinstance(gd, np.ndarray):
                vals[k] = -(gd[np.maximum(nb[r0:r1], 0)] if owner_is_nb else gd[r0:r1])
            else:
                vals[k] = -dtype(gd)
        # Row-major reading of the transposed (row, slot) view keeps each row's entries together.
        valid = (cols >= 0).T
        indices[indptr[r0] : indptr[r1]] = cols.T[valid]
        data[indptr[r0] : indptr[r1]] = vals.T[valid]
    return sp.csr_matrix((data, indices, indptr), shape=(n, n))


def _octant_components() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each occupancy pattern of a 2x2x2 block (bit o set = octant o active), the face-connected
    component (0..3) of every octant, the number of components, and the smallest octant of the
    component of every octant (its representative). Octant o = 4 bx + 2 by + bz; two octants share
    a face when their indices differ in exactly one bit. Components are numbered in the order of
    their smallest octant."""
    comp = np.zeros((256, 8), dtype=np.uint8)
    ncomp = np.zeros(256, dtype=np.int32)
    rep = np.zeros((256, 8), dtype=np.uint8)
    for pattern in range(256):
        label = [-1] * 8
        k = 0
        for o in range(8):
            if not pattern >> o & 1 or label[o] >= 0:
                continue
            stack = [o]
            label[o] = k
            while stack:
                u = stack.pop()
                for bit in (1, 2, 4):
                    v = u ^ bit
                    if pattern >> v & 1 and label[v] < 0:
                        label[v] = k
                        stack.append(v)
            k += 1
        comp[pattern] = [max(c, 0) for c in label]
        ncomp[pattern] = k
        first: dict[int, int] = {}
        for o in range(8):
            first.setdefault(label[o], o)
        rep[pattern] = [first[c] if c >= 0 else 0 for c in label]
    return comp, ncomp, rep


_BLOCK_COMPONENT, _BLOCK_N_COMPONENTS, _BLOCK_REPRESENTATIVE = _octant_components()
_POPCOUNT = np.array([bin(v).count("1") for v in range(256)], dtype=np.uint8)


@dataclass
class Transfer:
    """Piecewise-constant transfer between a level and the next coarser one.

    The fine cells form runs of equal aggregate: run k covers ``starts[k]:starts[k] + counts[k]``
    and belongs to coarse cell ``run_parent[k]`` (None when runs and coarse cells coincide, the
    usual case in block order).
    """

    starts: np.ndarray
    counts: np.ndarray
    run_parent: np.ndarray | None
    n_coarse: int

    @classmethod
    def from_parent(cls, parent: np.ndarray, n_coarse: int) -> Transfer:
        new_run = np.empty(len(parent), dtype=bool)
        new_run[0] = True
        np.not_equal(parent[1:], parent[:-1], out=new_run[1:])
        starts = np.flatnonzero(new_run)
        counts = np.diff(np.r_[starts, len(parent)])
        run_parent = parent[starts]
        contiguous = len(starts) == n_coarse and bool(np.all(run_parent == np.arange(n_coarse)))
        return cls(starts, counts, None if contiguous else run_parent, n_coarse)

    def restrict(self, r: np.ndarray) -> np.ndarray:
        """Sum of the fine values over the children of each coarse cell."""
        runs = np.add.reduceat(r, self.starts)
        if self.run_parent is None:
            return runs
        return np.bincount(self.run_parent, weights=runs, minlength=self.n_coarse).astype(r.dtype)

    def prolong(self, e: np.ndarray) -> np.ndarray:
        """Copy each coarse value to its children."""
        return np.repeat(e if self.run_parent is None else e[self.run_parent], self.counts)


def _csr_from_edges(
    n: int, i: np.ndarray, j: np.ndarray, w: np.ndarray, diag: np.ndarray, dtype: type
) -> sp.csr_matrix:
    """Symmetric matrix with -w on (i, j) and (j, i) and ``diag`` on the diagonal (duplicates summed)."""
    idx = np.int32 if n < 2**31 - 1 else np.int64
    diagonal = np.arange(n, dtype=idx)
    rows = np.concatenate([i.astype(idx), j.astype(idx), diagonal])
    cols = np.concatenate([j.astype(idx), i.astype(idx), diagonal])
    del diagonal
    wv = (-w).astype(dtype)
    vals = np.concatenate([wv, wv, np.where(diag > 0, diag, 1.0).astype(dtype)])
    del wv
    return sp.coo_matrix((vals, (rows, cols)), shape=(n, n)).tocsr()


def coarsen_grid(
    level: Level, scale: float = COARSE_SCALE
) -> tuple[sp.csr_matrix, Transfer, list[np.ndarray], tuple[int, int, int], np.ndarray | None]:
    """First coarsening, from the voxel grid: 2x2x2 blocks split into face-connected pieces.

    With ``level.cell_class`` the pieces are the face-connected pieces of each class present in
    the block (a block holds up to 8 of them). Returns the coarse matrix (``scale`` times the
    Galerkin product), the transfer, the block coordinates of the coarse cells, the coarse grid
    shape and the class of each coarse cell (None without classes). ``level`` must be in block
    order (children of a block contiguous). Per-cell work is done in chunks so that only two small
    per-cell arrays (piece index, local piece) live beside the fine matrix.
    """
    shape, n = level.shape, level.n
    classes = level.cell_class
    cshape: tuple[int, int, int] = tuple((s + 1) // 2 for s in shape)  # type: ignore[assignment]
    bdt = np.int32 if int(np.prod(cshape)) < 2**31 - 1 else np.int64
    octant = np.empty(n, dtype=np.uint8)
    new_block = np.empty(n, dtype=bool)
    seen = np.zeros(int(np.prod(cshape)), dtype=bool)
    prev = None
    for r0 in range(0, n, _ROW_CHUNK):
        c = coords_of(level.cell_flat[r0 : r0 + _ROW_CHUNK], shape)
        m = len(c[0])
        octant[r0 : r0 + m] = (c[0] & 1) << 2 | (c[1] & 1) << 1 | (c[2] & 1)
        bflat = ((c[0] >> 1).astype(bdt) * cshape[1] + (c[1] >> 1)) * cshape[2] + (c[2] >> 1)
        seen[bflat] = True
        # In block order a new block starts wherever the block index changes.
        new_block[r0] = prev is None or bflat[0] != prev
        np.not_equal(bflat[1:], bflat[:-1], out=new_block[r0 + 1 : r0 + m])
        prev = bflat[-1]
    bstarts = np.flatnonzero(new_block)
    n_blocks = len(bstarts)
    if n_blocks != int(np.count_nonzero(seen)):
        raise RuntimeError("coarsen_grid needs the cells in block order (see block_ordered_cells)")
    del seen

    def block_chunks(starts: np.ndarray):  # (r0, r1, block index of each cell of the chunk)
        base = -1
        for r0 in range(0, n, _ROW_CHUNK):
            r1 = min(n, r0 + _ROW_CHUNK)
            blk = np.cumsum(starts[r0:r1], dtype=np.int32)
            blk += base
            base = int(blk[-1])
            yield r0, r1, blk

    if classes is None:
        pattern = np.bitwise_or.reduceat(np.left_shift(np.uint8(1), octant), bstarts)
        ncomp = _BLOCK_N_COMPONENTS[pattern]
        slots = 4  # a block holds at most 4 face-connected pieces
    else:
        # A piece is a face-connected set of same-class octants, named by its smallest octant (its
        # representative); the local piece index is the rank of the representative in the block.
        # With one class this is the numbering of _BLOCK_COMPONENT.
        block_class = np.full(n_blocks * 8, -1, dtype=np.int32)
        for r0, r1, blk in block_chunks(new_block):
            block_class[blk * 8 + octant[r0:r1]] = classes[r0:r1]
        rep = np.empty(n, dtype=np.uint8)
        for r0, r1, blk in block_chunks(new_block):
            cls = classes[r0:r1]
            same = np.zeros(r1 - r0, dtype=np.int32)  # octants of the cell's class in its block
            for o in range(8):
                same |= (block_class[blk * 8 + o] == cls).astype(np.int32) << o
            rep[r0:r1] = _BLOCK_REPRESENTATIVE.ravel()[same * 8 + octant[r0:r1]]
        del block_class
        rep_mask = np.bitwise_or.reduceat(np.left_shift(np.uint8(1), rep), bstarts)
        ncomp = _POPCOUNT[rep_mask].astype(np.int32)
        slots = 8  # up to 8 pieces (one per octant)
    offset = np.zeros(n_blocks, dtype=np.int32)
    np.cumsum(ncomp[:-1], out=offset[1:])
    nc = int(offset[-1] + ncomp[-1])
    local = np.empty(n, dtype=np.uint8)
    agg = np.empty(n, dtype=np.int32)
    table = _BLOCK_COMPONENT.ravel()
    for r0, r1, blk in block_chunks(new_block):
        if classes is None:
            local[r0:r1] = table[pattern[blk].astype(np.int32) * 8 + octant[r0:r1]]
        else:
            below = (np.left_shift(np.uint8(1), rep[r0:r1]) - np.uint8(1)).astype(np.uint8)
            local[r0:r1] = _POPCOUNT[rep_mask[blk] & below]
        agg[r0:r1] = offset[blk] + local[r0:r1]
    del octant, new_block
    coarse_class = None
    if classes is not None:
        del rep
        coarse_class = np.empty(nc, dtype=classes.dtype)
        coarse_class[agg] = classes
    # All pieces of a block share its coordinates (pieces of block b are offset[b] + 0..ncomp-1).
    bcoords = [c >> 1 for c in coords_of(level.cell_flat[bstarts], shape)]
    ccoords = [np.repeat(c, ncomp) for c in bcoords] if nc != n_blocks else bcoords
    dtype = level.g_dirichlet.dtype
    gdir = scale * np.bincount(agg, weights=level.g_dirichlet, minlength=nc)
    # Key slots per piece: the local index of the piece reached, plus (with classes, where faces
    # inside a block count too) `slots` when the face crosses into the next block, so that a piece
    # of the own block and one of the next block with the same local index get different keys.
    kslots = slots if classes is None else 2 * slots
    kdt = np.int32 if kslots * nc < 2**31 - 1 else np.int64
    ei, ej, ew = [], [], []
    for d in range(3):
        up, gd = level.up[d], level.g[d]
        w = np.zeros(kslots * nc, dtype=np.float64)
        target = np.full(kslots * nc, -1, dtype=np.int32)
        for r0 in range(0, n, _ROW_CHUNK):
            cd = coords_of(level.cell_flat[r0 : r0 + _ROW_CHUNK], shape)[d]
            # A +d face leaves the block iff the cell is the upper half of its block along d, or
            # it wraps around an odd periodic axis; faces inside a block join two pieces only when
            # their classes differ (never without classes).
            leaves = (cd & 1).astype(bool)
            if level.periodic[d] and shape[d] % 2 == 1:
                leaves |= cd == shape[d] - 1
            nb = up[r0 : r0 + len(cd)]
            leaves &= nb >= 0
            crossing = leaves
            if classes is not None:
                inside = ~leaves & (nb >= 0)
                inside[inside] = agg[np.flatnonzero(inside) + r0] != agg[nb[inside]]
                leaves = leaves | inside
            src = np.flatnonzero(leaves) + r0
            if len(src) == 0:
                continue
            dst = up[src]
            # The faces from piece pa towards +d reach at most 4 pieces of one neighbouring block
            # (at most 8, and pieces of its own block, with classes); the key (pa, local piece of
            # pb) names the coarse face, so a bincount sums the fine faces of each coarse face
            # without sorting.
            key = agg[src].astype(kdt)
            key *= kslots
            key += local[dst]
            if classes is not None:
                key += slots * crossing[src - r0].astype(kdt)
            k0 = int(key.min())
            key -= k0
            weights = gd[src] if isinstance(gd, np.ndarray) else None
            part = np.bincount(key, weights=weights)
            w[k0 : k0 + len(part)] += part
            key += k0
            target[key] = agg[dst]
        if not isinstance(gd, np.ndarray):
            w *= float(gd)
        sel = np.flatnonzero(target >= 0)
        ei.append((sel // kslots).astype(np.int32))
        ej.append(target[sel])
        ew.append(scale * w[sel])
        del w, target, sel
    del local
    i, j, w = np.concatenate(ei), np.concatenate(ej), np.concatenate(ew)
    diag = gdir + np.bincount(i, weights=w, minlength=nc) + np.bincount(j, weights=w, minlength=nc)
    matrix = _csr_from_edges(nc, i, j, w, diag, dtype)
    return matrix, Transfer.from_parent(agg, nc), ccoords, cshape, coarse_class


def coarsen_graph(
    a: sp.csr_matrix,
    coords: list[np.ndarray],
    shape: tuple[int, int, int],
    classes: np.ndarray | None = None,
    scale: float = COARSE_SCALE,
) -> tuple[sp.csr_matrix, Transfer, list[np.ndarray], tuple[int, int, int], np.ndarray | None]:
    """Later coarsenings: group the cells by 2x2x2 blocks of their grid coordinates and split every
    group into its connected pieces (of one class each, with ``classes``); the coarse matrix is
    ``scale * P^T A P``. Returns the same as `coarsen_grid`."""
    n = a.shape[0]
    cshape: tuple[int, int, int] = tuple((s + 1) // 2 for s in shape)  # type: ignore[assignment]
    bcoords = [c // 2 for c in coords]
    gflat = (bcoords[0].astype(np.int64) * cshape[1] + bcoords[1]) * cshape[2] + bcoords[2]
    _, group = np.unique(gflat, return_inverse=True)
    coo = a.tocoo()
    intra = (coo.row != coo.col) & (group[coo.row] == group[coo.col])
    if classes is not None:
        intra &= classes[coo.row] == classes[coo.col]
    graph = sp.coo_matrix(
        (np.ones(int(intra.sum()), dtype=np.int8), (coo.row[intra], coo.col[intra])), shape=(n, n)
    ).tocsr()
    del coo, intra
    nc, comp = connected_components(graph, directed=False)
    # Number the pieces in order of first appearance so that children stay in runs.
    _, first = np.unique(comp, return_index=True)
    rank = np.empty(nc, dtype=np.int32)
    rank[np.argsort(first, kind="stable")] = np.arange(nc, dtype=np.int32)
    agg = rank[comp]
    p = sp.csr_matrix((np.ones(n, dtype=a.dtype), agg, np.arange(n + 1)), shape=(n, nc))
    coarse = (p.T @ a @ p).tocsr()
    coarse.data *= a.dtype.type(scale)
    ccoords = []
    for c in bcoords:
        cc = np.empty(nc, dtype=c.dtype)
        cc[agg] = c
        ccoords.append(cc)
    coarse_class = None
    if classes is not None:
        coarse_class = np.empty(nc, dtype=classes.dtype)
        coarse_class[agg] = classes
    return coarse, Transfer.from_parent(agg, nc), ccoords, cshape, coarse_class


class MultigridPreconditioner:
    """Symmetric V-cycle over the aggregation hierarchy (module docstring).

    Building it assembles the finest matrix (``finest.matrix``) and frees the face arrays of the
    finest level (``up``/``g``). Call it on a residual to get an approximate solution of A x = r.
    """

    def __init__(
        self,
        finest: Level,
        smoothing_steps: int = 1,
        cycle_index: int = 2,
        coarse_scale: float = COARSE_SCALE,
    ) -> None:
        self.cycle_index = cycle_index
        finest.matrix = assemble_csr(finest)
        finest.down = []
        self.matrices: list[sp.csr_matrix] = [finest.matrix]
        self.transfers: list[Transfer] = []
        if finest.n > MAX_DIRECT_UNKNOWNS and max(finest.shape) > 1:
            a, tr, coords, shape, classes = coarsen_grid(finest, coarse_scale)
            finest.release_faces()
            finest.cell_class = None
            self.matrices.append(a)
            self.transfers.append(tr)
            while a.shape[0] > MAX_DIRECT_UNKNOWNS and max(shape) > 1:
                a_next, tr, coords, shape, classes = coarsen_graph(a, coords, shape, classes, coarse_scale)
                if a_next.shape[0] > 0.9 * a.shape[0]:
                    break
                a = a_next
                self.matrices.append(a)
                self.transfers.append(tr)
        finest.release_faces()
        self._direct = spla.factorized(self.matrices[-1].astype(np.float64).tocsc())
        self.smoothing_steps = smoothing_steps

    @property
    def operator_complexity(self) -> float:
        """Total nonzeros of all levels over those of the finest."""
        return sum(m.nnz for m in self.matrices) / self.matrices[0].nnz

    @property
    def sizes(self) -> list[int]:
        """Unknowns per level, finest first."""
        return [m.shape[0] for m in self.matrices]

    def __call__(self, r: np.ndarray) -> np.ndarray:
        return self._cycle(0, r)

    def _cycle(self, k: int, b: np.ndarray) -> np.ndarray:
        if k == len(self.matrices) - 1:
            return self._direct(b.astype(np.float64)).astype(b.dtype)
        a = self.matrices[k]
        n = a.shape[0]
        x = np.zeros(n, dtype=b.dtype)
        for _ in range(self.smoothing_steps):
            amg_core.gauss_seidel(a.indptr, a.indices, a.data, x, b, 0, n, 1)
        r = b - a @ x
        rc = self.transfers[k].restrict(r)
        del r
        e = self._cycle(k + 1, rc)
        if self.cycle_index > 1 and k + 1 < len(self.matrices) - 1:
            # W-cycle: a second coarse iteration on the coarse residual (symmetric: 2M - M A M).
            e += self._cycle(k + 1, rc - self.matrices[k + 1] @ e)
        x += self.transfers[k].prolong(e)
        for _ in range(self.smoothing_steps):
            amg_core.gauss_seidel(a.indptr, a.indices, a.data, x, b, n - 1, -1, -1)
        return x


@dataclass
class CGOutcome:
    """What the preconditioned conjugate gradient loop returns.

    ``stop_reason``: ``"converged"``; ``"max_iterations"``; ``"precision_limit"`` (the recursive
    relative residual fell to the machine epsilon of the working precision while the caller's
    measure was still above its tolerance: further iterations cannot improve the iterate);
    ``"breakdown"`` (p.Ap <= 0 or r.z = 0: exhausted or indefinite); ``"diverged"`` (a non-finite
    dot product, or the residual grew ``DIVERGENCE_FACTOR`` above its best value).
    """

    x: np.ndarray
    iterations: int
    relative_residual: float
    converged: bool
    stop_reason: str = "converged"


DIVERGENCE_FACTOR = 1e4
"""Residual growth over its best value taken as divergence: CG's residual is not monotone, but on an
SPD system with an SPD preconditioner it does not grow by orders of magnitude."""


def pcg(
    a: sp.csr_matrix,
    b: np.ndarray,
    precondition: Callable[[np.ndarray], np.ndarray],
    converged: Callable[[np.ndarray, np.ndarray], float],
    tol: float,
    max_iterations: int,
    progress: bool = False,
    x0: np.ndarray | None = None,
) -> CGOutcome:
    """Preconditioned CG on ``a x = b`` from ``x0`` (default 0), stopped on a caller's physical error
    measure.

    ``converged(x, r)`` returns the error measure for the iterate ``x`` and its residual ``r``;
    the loop stops once it is <= ``tol``. The measure costs about a matrix-vector product and a
    bincount, so it is evaluated sparingly: first when the relative residual drops below
    ``tol / 10`` (on voxel problems the current spread is 20-300 times the relative residual),
    then when the residual has fallen by the factor the last measurement missed by (the measure is
    about proportional to the residual), and at least every 4 iterations below ``10 tol``.

    The loop also stops (``stop_reason`` in `CGOutcome`) once the recursive relative residual
    reaches the working precision's epsilon: the true residual of a float32 iterate stalls at a few
    epsilon, so iterating on only shrinks the recursive residual, towards the subnormal range where
    the result would depend on the process's flush-to-zero mode (which Taichi, among others, sets).
    """
    x = np.zeros_like(b) if x0 is None else np.array(x0, dtype=b.dtype)
    r = b.copy() if x0 is None else b - a @ x
    norm_b = math.sqrt(float(np.dot(b, b)))
    if norm_b == 0.0:
        return CGOutcome(np.zeros_like(b), 0, 0.0, True)
    floor = float(np.finfo(b.dtype).eps)
    relres = math.sqrt(float(np.dot(r, r))) / norm_b
    best = relres
    z = precondition(r)
    p = z.copy()
    rz = float(np.dot(r, z))
    next_check, since_check = tol / 10, -(max_iterations + 1)  # no periodic checks before the first
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=max_iterations, desc="voxel CG", unit="it")
    it = 0
    ok = False
    reason = "max_iterations"
    try:
        for it in range(1, max_iterations + 1):  # noqa: B007 (it is returned)
            ap = a @ p
            # float32 BLAS dots use blocked partial sums: ~1e-6 relative here, ample for CG steps.
            pap = float(np.dot(p, ap))
            if not math.isfinite(pap) or not math.isfinite(rz):
                reason = "diverged"
                break
            if not pap > 0.0:
                reason = "breakdown"
                break
            alpha = rz / pap
            x += b.dtype.type(alpha) * p
            ap *= b.dtype.type(alpha)
            r -= ap
            del ap
            relres = math.sqrt(max(float(np.dot(r, r)), 0.0)) / norm_b
            since_check += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(relres=f"{relres:.2e}")
            if not math.isfinite(relres) or relres > DIVERGENCE_FACTOR * best:
                reason = "diverged"
                break
            best = min(best, relres)
            at_floor = relres <= floor
            if at_floor or relres <= next_check or (since_check >= 4 and relres <= tol * 10):
                err = converged(x, r)
                since_check = 0
                if err <= tol:
                    ok = True
                    reason = "converged"
                    break
                if at_floor:
                    reason = "precision_limit"
                    break
                next_check = relres * tol / err
            z = precondition(r)
            rz_new = float(np.dot(r, z))
            if not math.isfinite(rz_new):
                reason = "diverged"
                break
            if rz == 0.0:
                reason = "breakdown"  # never divide by 0: the caller reports converged=False
                break
            beta = rz_new / rz
            rz = rz_new
            p *= b.dtype.type(beta)
            p += z
            del z
    finally:
        if bar is not None:
            bar.close()
    return CGOutcome(x, it, relres, ok, reason)
