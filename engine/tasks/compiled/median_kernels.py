"""The compiled per-pixel median of a few offset-subtracted frames (numba): COSMETICS00's median
bias and median flat from the image areas the check's read kept (cosmetics.DefectsConsumer).

`np.median(cube, axis=0)` partitions a float32 copy of the whole cube: 1 s of the 2 s a
full-size quadrant's defect map takes (two medians of 5 frames). Here each pixel's few values
are sorted by a sorting network row by row (stacking.network_pairs, as kernels.band_pass
stacks), from the uint16 counts directly. The
float32 arithmetic is numpy's: float32(count) - float32(offset), and for an even count the two
middle values' float32 sum halved (np.median's float32 mean of them): bit for bit
`np.median(counts.astype(float32) - offsets, axis=0)` (tests/test_cosmetics_persist_pass.py).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def offset_median(cube, count, offsets, pairs, out):  # pragma: no cover - compiled
    """out[r, c] = the median over k < count of float32(cube[k, r, c]) - offsets[k].

    cube: (frames, rows, cols) uint16; offsets: float32 per frame; pairs: the compare-exchanges
    of a sorting network for `count` values (stacking.network_pairs); out: (rows, cols) float32.
    Row by row: the row's values of every frame in lanes, sorted across the lanes by the
    network's min/max (no branch per pixel), the middle lane(s) taken."""
    rows, cols = out.shape
    lanes = np.empty((count, cols), np.float32)
    half = np.float32(0.5)
    middle = count // 2
    for r in range(rows):
        for k in range(count):
            for c in range(cols):
                lanes[k, c] = np.float32(cube[k, r, c]) - offsets[k]
        for p in range(pairs.shape[0]):
            low = lanes[pairs[p, 0]]
            high = lanes[pairs[p, 1]]
            for c in range(cols):
                a, b = low[c], high[c]
                low[c] = min(a, b)
                high[c] = max(a, b)
        for c in range(cols):
            if count % 2:
                out[r, c] = lanes[middle, c]
            else:
                out[r, c] = (lanes[middle - 1, c] + lanes[middle, c]) * half


def median_of_stack(cube: np.ndarray, count: int, offsets: np.ndarray) -> np.ndarray:
    """The median image of the first `count` frames of `cube` (uint16), offsets subtracted."""
    from ..stacking import network_pairs

    out = np.empty(cube.shape[1:], np.float32)
    offset_median(cube, count, np.ascontiguousarray(offsets, np.float32), network_pairs(count), out)
    return out


def warm() -> None:
    """Load (or compile, the first time) the kernel with the argument types the analyses use."""
    median_of_stack(np.zeros((2, 2, 3), np.uint16), 2, np.zeros(2, np.float32))
