"""The compiled loop of the non-linearity tiles (numba): each tile's 10 % trimmed mean from a
histogram of its counts, in one sweep of a band of tiles, instead of numpy's copy and partition
of every tile (nl.trimmed_mean, the definition).

The counts are 16-bit integers: the trimmed mean is the sum of the counts ranked k .. n - k - 1
over n - 2k, which the histogram gives by walking its bins; the sum is an integer below 2^53, so
numpy's float64 sum of the same counts, in whatever order, is exactly it: bit for bit
nl.trimmed_mean (tests/test_chinj_nl_pass.py).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def band_trimmed_means(band, col_edges, fraction, means, saturated):  # pragma: no cover - compiled
    """Tiles band[:, col_edges[b]: col_edges[b + 1]] (uint16, any strides): into means[b] the mean
    of the counts ranked k .. n - k - 1 (k = int(fraction n); all of them if k is 0), into
    saturated[b] whether one is 65535 (stats.ADC_SATURATED)."""
    histogram = np.zeros(65536, np.int64)
    rows = band.shape[0]
    for b in range(col_edges.shape[0] - 1):
        low, high = 65535, 0
        for r in range(rows):
            row = band[r, col_edges[b]: col_edges[b + 1]]
            for c in range(row.shape[0]):
                value = row[c]
                histogram[value] += 1
                low = min(low, value)
                high = max(high, value)
        n = rows * (col_edges[b + 1] - col_edges[b])
        k = int(fraction * n)
        first, stop = k, n - k  # ranks kept
        rank, total = 0, 0
        for value in range(low, high + 1):
            count = histogram[value]
            if count:
                kept = min(rank + count, stop) - max(rank, first)
                if kept > 0:
                    total += kept * value
                rank += count
                histogram[value] = 0
        saturated[b] = high == 65535 and n > 0
        means[b] = np.float64(total) / np.float64(stop - first) if stop > first else np.nan


def warm() -> None:
    """Load (or compile, the first time) the kernel for a contiguous band and a flipped view."""
    counts = np.zeros((4, 6), np.uint16)
    edges = np.array([0, 3, 6])
    for view in (counts, counts[::-1, ::-1]):
        band_trimmed_means(view, edges, 0.1, np.empty(2), np.zeros(2, np.bool_))
