"""The compiled inner loops of the analyses (numba): what numpy would do in many whole-array passes.

`band_pass`: the per-pixel work of the one pass over a quadrant band, fused in one loop; `sweep`
calls it for the consumers a caller has. `read_region_histograms`: a quadrant of one frame read
from the file's memory map and histogrammed per region in the same sweep (the check's read of
the per-quadrant families, measures.read_quadrant_stats); `region_histograms` for counts read.

For each row of a band of n frames (uint16, as read), in one sweep over the row's pixels while
they sit in the CPU cache:
- the check's exact histograms: each frame's counts, shifted into its column's region block;
- the read noise's exact histograms: each used frame's residual to the per-pixel sum,
  n x_i - sum_j x_j (clipped to +-reach), shifted into its column's region block, and the sum;
- the stack: the per-pixel mean, spread and median of the used frames' offset-subtracted counts.

numpy did the same in a dozen whole-band passes (bincount casts its input to int64 and scans it
twice; the sorting network runs min/max over whole planes): 15 ns a frame-pixel where this takes
3. The float32 arithmetic is numpy's, operation for operation (a frame-ordered float32 sum, the
same compare-exchange network, no fast-math): the medians and spreads are bit for bit those of
`np.median`-by-network and `cube.std(axis=0, ddof=1)` (tests/test_kernels.py).

Compiled on first use and cached beside this file (numba `cache=True`; a read-only install
falls back to numba's user cache): a fresh process loads it in about 0.3 s.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def band_pass(cube, measure_first, measure_stop, measure_shift, measure_counts,
              used, noise_first, noise_stop, noise_shift, reach, noise_counts, total,
              offsets, pairs, stack, spread_error, median, spread):  # pragma: no cover - compiled
    """One band of a quadrant: see the module doc.

    cube: (frames, rows, width) uint16. measure_first/stop[k]: band rows of frame k counted in its
    histogram measure_counts[k] at measure_shift[column] + count. used: the frames of the noise and
    the stack (offsets[u] per used frame, float32). Rows [noise_first, noise_stop) feed the noise:
    noise_counts[u] at noise_shift[column] + residual, total[row, column] the sum of the used
    frames. stack: median and spread (std ddof 1, or its error of the mean) of used frames into
    median/spread[row, column]; pairs: the sorting network's compare-exchanges."""
    frames, rows, width = cube.shape
    n = used.shape[0]
    lanes = np.empty((max(n, 1), width), np.float32)
    sums = np.empty(width, np.int64)
    mean = np.empty(width, np.float32)
    squares = np.empty(width, np.float32)
    n32 = np.float32(n)
    n_minus_1 = np.float32(max(n - 1, 1))
    half = np.float32(0.5)
    sqrt_n = np.float32(np.sqrt(n))
    for r in range(rows):
        for k in range(frames):
            if measure_first[k] <= r < measure_stop[k]:
                row = cube[k, r]
                hist = measure_counts[k]
                for c in range(width):
                    hist[measure_shift[c] + row[c]] += 1
        if n == 0:
            continue
        if noise_first <= r < noise_stop:
            sums[:] = 0
            for u in range(n):
                row = cube[used[u], r]
                for c in range(width):
                    sums[c] += row[c]
            for c in range(width):
                total[r, c] = sums[c]
            for u in range(n):
                row = cube[used[u], r]
                hist = noise_counts[u]
                for c in range(width):
                    d = n * np.int64(row[c]) - sums[c]
                    d = min(max(d, -reach), reach)
                    hist[noise_shift[c] + d] += 1
        if not stack:
            continue
        for u in range(n):
            row = cube[used[u], r]
            offset = offsets[u]
            lane = lanes[u]
            for c in range(width):
                lane[c] = np.float32(row[c]) - offset
        if n == 1:
            for c in range(width):
                median[r, c] = lanes[0, c]
                spread[r, c] = 0
            continue
        # mean and std as numpy takes them along the frame axis: frame-ordered float32 sums
        for c in range(width):
            mean[c] = lanes[0, c]
        for u in range(1, n):
            for c in range(width):
                mean[c] += lanes[u, c]
        for c in range(width):
            mean[c] = mean[c] / n32
            squares[c] = 0
        for u in range(n):
            for c in range(width):
                d2 = lanes[u, c] - mean[c]
                squares[c] += d2 * d2
        for c in range(width):
            sd = np.sqrt(squares[c] / n_minus_1)
            spread[r, c] = sd / sqrt_n if spread_error else sd
        for p in range(pairs.shape[0]):
            low = lanes[pairs[p, 0]]
            high = lanes[pairs[p, 1]]
            for c in range(width):
                a = low[c]
                b = high[c]
                low[c] = min(a, b)
                high[c] = max(a, b)
        if n % 2:
            for c in range(width):
                median[r, c] = lanes[n // 2, c]
        else:
            for c in range(width):
                median[r, c] = (lanes[n // 2 - 1, c] + lanes[n // 2, c]) * half


@njit(cache=True, nogil=True, inline="always")
def _count_row(row, starts, stops, blocks, histograms):  # pragma: no cover - compiled
    """Each run of columns [starts[k], stops[k]) of a row of counts into histograms[blocks[k]]."""
    for k in range(starts.shape[0]):
        histogram = histograms[blocks[k]]
        for c in range(starts[k], stops[k]):
            histogram[row[c]] += 1


@njit(cache=True, nogil=True)
def region_histograms(counts, first, stop, starts, stops, blocks, histograms):  # pragma: no cover - compiled
    """Rows [first, stop) of a quadrant's counts (uint16, as read) into one histogram per region:
    the columns of run k, [starts[k], stops[k]), into histograms[blocks[k]] (int64, 65536 bins).
    The same counting as read_region_histograms, for counts read already."""
    for r in range(first, stop):
        _count_row(counts[r], starts, stops, blocks, histograms)


@njit(cache=True, nogil=True)
def read_region_histograms(stored, row0, col0, swap, flip, counts, first, stop, starts, stops, blocks,
                           histograms):  # pragma: no cover - compiled
    """region_histograms of a section read from a frame's stored 16-bit words in the same sweep.

    stored: the whole frame's words (uint16 view of the file's memory map, C order); the section
    starts at (row0, col0) and fills `counts` (uint16, a fresh array the caller keeps): each word
    byte-swapped if `swap` (FITS is big-endian), then XOR `flip` (0x8000: BZERO 32768, the sign bit
    of int16 + 32768), as fits.Frame.section converts it. Each row is histogrammed while it is in
    the CPU cache: the counts are not read back from memory for it."""
    rows, width = counts.shape
    eight = np.uint16(8)
    for r in range(rows):
        words = stored[row0 + r, col0: col0 + width]
        row = counts[r]
        if swap:
            for c in range(width):
                word = words[c]
                row[c] = ((word >> eight) | (word << eight)) ^ flip
        else:
            for c in range(width):
                row[c] = words[c] ^ flip
        if first <= r < stop:
            _count_row(row, starts, stops, blocks, histograms)


@njit(cache=True, nogil=True, fastmath={"reassoc", "nsz", "contract"})
def window_moments(values, centre, half_width):  # pragma: no cover - compiled
    """(count, mean, std ddof 1) of the float values within half_width of centre (|v - c| <= w, in
    the values' precision as numpy compares them), in two float64 sweeps and no copy of the kept
    values. The sums may be reordered (vectorised): they differ from numpy's pairwise sums by
    float64 rounding, 1e-15 of the value."""
    count = 0
    total = 0.0
    for v in values:
        inside = abs(v - centre) <= half_width
        count += inside
        total += v if inside else 0.0
    if count == 0:
        return 0, np.nan, np.nan
    mean = total / count
    squares = 0.0
    for v in values:
        d = v - mean
        squares += d * d if abs(v - centre) <= half_width else 0.0
    return count, mean, np.sqrt(squares / (count - 1)) if count > 1 else np.nan


def sweep(cube, *, used=None, measure_rows=(), measure_shift=None, measure_counts=None,
          noise_rows=(0, 0), noise_shift=None, reach=0, noise_counts=None, total=None,
          offsets=None, pairs=None, spread_error=False, median=None, spread=None) -> None:
    """`band_pass` over one band of frames (uint16 cube, as read) for the consumers given by
    keyword; the others get empty stand-ins, so every caller compiles the same one signature.

    measure_rows[k]: (first, stop) band rows of frame k counted into measure_counts[k] at
    measure_shift[column] + count. `used` frames: the noise over rows noise_rows into
    noise_counts (at noise_shift[column] + residual, clipped to +-reach) with their sums into
    `total`; the stack (offsets, pairs of the sorting network) into `median` and `spread`."""
    frames, _, width = cube.shape
    used = np.zeros(0, np.int64) if used is None else np.ascontiguousarray(used, np.int64)
    first, stop = np.zeros(frames, np.int64), np.zeros(frames, np.int64)
    for k, (row_first, row_stop) in enumerate(measure_rows):
        first[k], stop[k] = row_first, row_stop
    no_shift = np.zeros(width, np.int64)
    stack = median is not None
    no_plane = np.zeros((1, 1), np.float32)
    band_pass(np.ascontiguousarray(cube), first, stop, no_shift if measure_shift is None else measure_shift,
              np.zeros((frames, 1), np.int64) if measure_counts is None else measure_counts, used,
              noise_rows[0], noise_rows[1], no_shift if noise_shift is None else noise_shift, reach,
              np.zeros((len(used), 1), np.int64) if noise_counts is None else noise_counts,
              np.zeros((1, 1), np.int64) if total is None else total,
              np.zeros(len(used), np.float32) if offsets is None else offsets,
              np.zeros((0, 2), np.int64) if pairs is None else pairs, stack, spread_error,
              median if stack else no_plane, spread if stack else no_plane)


def warm() -> None:
    """Load (or compile, the first time) every kernel with the argument types the analyses use,
    so that a process forked afterwards runs them at once."""
    from ..stacking import network_pairs

    cube = np.zeros((2, 2, 4), np.uint16)
    planes = np.zeros((2, 2, 4), np.float32)
    sweep(cube, used=np.arange(2), measure_rows=[(0, 2), (0, 2)], measure_shift=np.zeros(4, np.int64),
          measure_counts=np.zeros((2, 65536), np.int64), noise_rows=(0, 2), noise_shift=np.zeros(4, np.int64),
          reach=1, noise_counts=np.zeros((2, 4), np.int64), total=np.zeros((2, 4), np.int64),
          offsets=np.zeros(2, np.float32), pairs=network_pairs(2), median=planes[0], spread=planes[1])
    for dtype in (np.float32, np.float64):
        window_moments(np.zeros(4, dtype), dtype(0), dtype(1))
    runs = np.zeros(1, np.int64), np.full(1, 4, np.int64), np.zeros(1, np.int64)
    region_histograms(cube[0], 0, 2, *runs, np.zeros((1, 65536), np.int64))
    stored = cube[0].copy()
    for writeable in (True, False):  # astropy's memory map is writeable, a read-only np.memmap is not
        stored.flags.writeable = writeable
        read_region_histograms(stored, 0, 0, True, np.uint16(0x8000), np.empty((2, 4), np.uint16), 0, 2, *runs,
                               np.zeros((1, 65536), np.int64))
