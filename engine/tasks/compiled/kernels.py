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

import math

import numpy as np
from numba import njit

# Histogram increments of one frame wait on each other (neighbouring pixels often fall in the same
# bin: the load of the next increment waits for the store of the last). Four frames counted in the
# same sweep over the columns are four independent chains: 0.6 ns a pixel where one took 1.0.

@njit(cache=True, nogil=True, inline="always")
def _count_frames(cube, r, frames, m, shift, counts):  # pragma: no cover - compiled
    """Row r of each frame k = frames[i], i < m, into counts[k] at shift[column] + count, four
    frames at a time."""
    width = cube.shape[2]
    i = 0
    while i + 4 <= m:
        r0, r1, r2, r3 = cube[frames[i], r], cube[frames[i + 1], r], cube[frames[i + 2], r], cube[frames[i + 3], r]
        h0, h1, h2, h3 = counts[frames[i]], counts[frames[i + 1]], counts[frames[i + 2]], counts[frames[i + 3]]
        for c in range(width):
            s = shift[c]
            h0[s + r0[c]] += 1
            h1[s + r1[c]] += 1
            h2[s + r2[c]] += 1
            h3[s + r3[c]] += 1
        i += 4
    while i < m:
        row, hist = cube[frames[i], r], counts[frames[i]]
        for c in range(width):
            hist[shift[c] + row[c]] += 1
        i += 1


@njit(cache=True, nogil=True, inline="always")
def _count_residuals(cube, r, used, n, sums, reach, shift, counts):  # pragma: no cover - compiled
    """Each used frame u's residuals n x - sum (clipped to +-reach) of row r into counts[u] at
    shift[column] + residual, four frames at a time."""
    width = cube.shape[2]
    u = 0
    while u + 4 <= n:
        r0, r1, r2, r3 = cube[used[u], r], cube[used[u + 1], r], cube[used[u + 2], r], cube[used[u + 3], r]
        h0, h1, h2, h3 = counts[u], counts[u + 1], counts[u + 2], counts[u + 3]
        for c in range(width):
            s, t = shift[c], sums[c]
            h0[s + min(max(n * np.int64(r0[c]) - t, -reach), reach)] += 1
            h1[s + min(max(n * np.int64(r1[c]) - t, -reach), reach)] += 1
            h2[s + min(max(n * np.int64(r2[c]) - t, -reach), reach)] += 1
            h3[s + min(max(n * np.int64(r3[c]) - t, -reach), reach)] += 1
        u += 4
    while u < n:
        row, hist = cube[used[u], r], counts[u]
        for c in range(width):
            hist[shift[c] + min(max(n * np.int64(row[c]) - sums[c], -reach), reach)] += 1
        u += 1


STACK_COLUMNS = 256  # the stack works on a row in pieces this wide: its n lanes stay in the L1 cache


@njit(cache=True, nogil=True, inline="always")
def _stack_columns(cube, r, c0, c1, used, offsets, pairs, spread_error, lanes, mean, squares, median,
                   spread):  # pragma: no cover - compiled
    """Columns [c0, c1) of row r of the stack: the used frames' offset-subtracted counts sorted by
    the network into the lanes; their median and spread into median/spread[r]."""
    n = used.shape[0]
    m = c1 - c0
    median_row = median[r, c0:c1]
    spread_row = spread[r, c0:c1]
    for u in range(n):
        row = cube[used[u], r, c0:c1]
        offset = offsets[u]
        lane = lanes[u, :m]
        for c in range(m):
            lane[c] = np.float32(row[c]) - offset
    if n == 1:
        for c in range(m):
            median_row[c] = lanes[0, c]
            spread_row[c] = 0
        return
    # mean and std as numpy takes them along the frame axis: frame-ordered float32 sums
    n32 = np.float32(n)
    n_minus_1 = np.float32(n - 1)
    sqrt_n = np.float32(np.sqrt(n))
    means = mean[:m]
    sums = squares[:m]
    first = lanes[0, :m]
    for c in range(m):
        means[c] = first[c]
    for u in range(1, n):
        lane = lanes[u, :m]
        for c in range(m):
            means[c] += lane[c]
    for c in range(m):
        means[c] = means[c] / n32
        sums[c] = 0
    for u in range(n):
        lane = lanes[u, :m]
        for c in range(m):
            d2 = lane[c] - means[c]
            sums[c] += d2 * d2
    for c in range(m):
        sd = np.sqrt(sums[c] / n_minus_1)
        spread_row[c] = sd / sqrt_n if spread_error else sd
    for p in range(pairs.shape[0]):
        low = lanes[pairs[p, 0], :m]
        high = lanes[pairs[p, 1], :m]
        for c in range(m):
            a = low[c]
            b = high[c]
            low[c] = min(a, b)
            high[c] = max(a, b)
    if n % 2:
        middle = lanes[n // 2, :m]
        for c in range(m):
            median_row[c] = middle[c]
    else:
        below, above = lanes[n // 2 - 1, :m], lanes[n // 2, :m]
        half = np.float32(0.5)
        for c in range(m):
            median_row[c] = (below[c] + above[c]) * half


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
    piece = min(width, STACK_COLUMNS)
    lanes = np.empty((max(n, 1), piece), np.float32)
    sums = np.empty(width, np.int64)
    mean = np.empty(piece, np.float32)
    squares = np.empty(piece, np.float32)
    counting = np.empty(frames, np.int64)
    for r in range(rows):
        active = 0
        for k in range(frames):
            if measure_first[k] <= r < measure_stop[k]:
                counting[active] = k
                active += 1
        _count_frames(cube, r, counting, active, measure_shift, measure_counts)
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
            _count_residuals(cube, r, used, n, sums, reach, noise_shift, noise_counts)
        if not stack:
            continue
        for c0 in range(0, width, STACK_COLUMNS):
            _stack_columns(cube, r, c0, min(c0 + STACK_COLUMNS, width), used, offsets, pairs, spread_error, lanes,
                           mean, squares, median, spread)


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
def window_count(values, centre, half_width):  # pragma: no cover - compiled
    """How many of the float values lie within half_width of centre (|v - c| <= w, in the values'
    precision as numpy compares them; NaN and inf never do): one vectorised sweep."""
    count = 0
    for i in range(values.size):
        count += abs(values[i] - centre) <= half_width
    return count


@njit(cache=True, nogil=True, fastmath={"reassoc", "nsz", "contract"})
def window_moments(values, centre, half_width):  # pragma: no cover - compiled
    """(count, mean, std ddof 1) of the float values within half_width of centre (as window_count
    keeps them), in two float64 sweeps and no copy of the kept values. The sums are reordered
    (vectorised: the loops index the array, which numba's iterator form kept from vectorising, a
    tenth of the speed): they differ from exact sums by float64 rounding, 1e-13 of the value
    for a 4-million-pixel quadrant (the former in-order sums: up to 5e-12)."""
    count = 0
    total = 0.0
    for i in range(values.size):
        v = values[i]
        inside = abs(v - centre) <= half_width
        count += inside
        total += v if inside else 0.0
    if count == 0:
        return 0, np.nan, np.nan
    mean = total / count
    squares = 0.0
    for i in range(values.size):
        v = values[i]
        d = v - mean
        squares += d * d if abs(v - centre) <= half_width else 0.0
    return count, mean, np.sqrt(squares / (count - 1)) if count > 1 else np.nan


SQRT_HALF = 1.0 / math.sqrt(2.0)


@njit(cache=True, nogil=True)
def normal_cdf(z):  # pragma: no cover - compiled
    """The standard normal CDF of each value of a 2-D float64 array: 0.5 erfc(-z / sqrt(2)), what
    scipy.special.ndtr gives within 2.2e-16 (absolute; both are libm-class accurate). For the
    point-source fits' pixel integrals, where importing scipy.special cost each worker 0.25 s."""
    out = np.empty(z.shape)
    for i in range(z.shape[0]):
        for j in range(z.shape[1]):
            out[i, j] = 0.5 * math.erfc(-z[i, j] * SQRT_HALF)
    return out


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
    cube = np.zeros((2, 2, 4), np.uint16)
    planes = np.zeros((2, 2, 4), np.float32)
    sweep(cube, used=np.arange(2), measure_rows=[(0, 2), (0, 2)], measure_shift=np.zeros(4, np.int64),
          measure_counts=np.zeros((2, 65536), np.int64), noise_rows=(0, 2), noise_shift=np.zeros(4, np.int64),
          reach=1, noise_counts=np.zeros((2, 4), np.int64), total=np.zeros((2, 4), np.int64),
          offsets=np.zeros(2, np.float32), pairs=np.array([[0, 1]], np.int64), median=planes[0], spread=planes[1])
    for dtype in (np.float32, np.float64):
        window_count(np.zeros(4, dtype), dtype(0), dtype(1))
        window_moments(np.zeros(4, dtype), dtype(0), dtype(1))
    runs = np.zeros(1, np.int64), np.full(1, 4, np.int64), np.zeros(1, np.int64)
    region_histograms(cube[0], 0, 2, *runs, np.zeros((1, 65536), np.int64))
    normal_cdf(np.zeros((1, 2)))
    stored = cube[0].copy()
    for writeable in (True, False):  # astropy's memory map is writeable, a read-only np.memmap is not
        stored.flags.writeable = writeable
        read_region_histograms(stored, 0, 0, True, np.uint16(0x8000), np.empty((2, 4), np.uint16), 0, 2, *runs,
                               np.zeros((1, 65536), np.int64))
