"""Exclusive prefix sum of an i32 field that runs in parallel on every backend.

Blocked scan: per-block sums in parallel, a short serial scan over the block sums, then each block
writes its running sums in parallel. (``ti.algorithms.PrefixSumExecutor`` is CUDA/Vulkan-only.)
``bsum`` is a scratch i32 field of at least ceil(n / BLOCK) entries; ``out`` needs n + 1 entries.
"""

import taichi as ti

from electrodem.engine import arch

BLOCK = 512


@ti.kernel
def exclusive_scan(counts: ti.template(), out: ti.template(), bsum: ti.template(), n: ti.i32) -> ti.i32:
    nb = (n + BLOCK - 1) // BLOCK
    ti.loop_config(serialize=arch.SERIAL_LOOPS)
    for b in range(nb):
        s = 0
        for k in range(b * BLOCK, ti.min((b + 1) * BLOCK, n)):
            s += counts[k]
        bsum[b] = s
    total = 0
    ti.loop_config(serialize=True)
    for b in range(nb):
        s = bsum[b]
        bsum[b] = total
        total += s
    ti.loop_config(serialize=arch.SERIAL_LOOPS)
    for b in range(nb):
        run = bsum[b]
        for k in range(b * BLOCK, ti.min((b + 1) * BLOCK, n)):
            out[k] = run
            run += counts[k]
    out[n] = total
    return total


def scratch_size(n: int) -> int:
    """Entries of ``bsum`` needed to scan n values."""
    return max(1, (n + BLOCK - 1) // BLOCK)
