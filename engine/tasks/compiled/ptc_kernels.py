"""The compiled loops of a PTC pair's tile statistics (numba): ptc_lib.pair_quadrant calls them.

Per tile of a quadrant's image area, the numbers ptc_lib's numpy tile loop (pair_tiles_unit)
computes, from the two frames' uint16 counts as read (frame orientation: the tiles are canonical
rectangles, mapped onto the frame's rows and columns here, so nothing is flipped or copied):

- `tile_sums`: a first sweep: per tile the sums of the two offset-subtracted frames (float64:
  each float32 value `count - offset` is a multiple of the offset's ulp, at most 2^16, so a sum
  of up to 2^17 of them is exact in any order when the offset exceeds 16 ADU (real ones are
  1000-2000): the means are numpy's bit for bit),
  the pixels at the ADC ceiling in either frame, and the sample of the scaled difference
  ptc_lib.clip_mask takes (every `step`-th value in the tile's canonical order, the same values);
- the caller takes the clip window from the samples' percentiles as clip_mask does;
- `clipped_sums`: a second sweep: the pixels within the window, with the sum and the sum of
  squares of their offset from the window's centre (float64), for the clipped variance.

Both sweep the quadrant in memory order: each frame row across the tiles of its band, so the
reads stream (swept a tile at a time, 295 row pieces of 0.6 kB, 4 kB apart, they took 2-3 times
longer). The sample is taken in that order too: its values, not their order, make the percentiles.

The float32 arithmetic is numpy's operation for operation (no fast-math), so the clip keeps the
same pixels; it fills a row's float32 lanes, and only the float64 sums of those lanes (`_sums`,
`_moments`, in functions of their own) may be reassociated, which vectorises them: exact for the
tile sums, and the variance's sums differ from numpy's pairwise ones by rounding only (1e-15
relative). The other helpers are inlined (numba's `inline="always"`: 5-15 % less time), so they
take their caller's flags: the two kernels must stay without fast-math.

Compiled on first use and cached beside this file (numba `cache=True`), as kernels.py.
"""

from __future__ import annotations

import numpy as np
from numba import njit

ADC_CEILING = 65535  # stats.ADC_SATURATED (not imported: this module loads nothing of the engine)


@njit(cache=True, nogil=True, inline="always")
def _offset_lanes(row1, row2, offset1, offset2, lane1, lane2):  # pragma: no cover - compiled
    """lane1/lane2[k] = row1/row2[k] - offset (float32, as numpy subtracts); the row's highest count."""
    peak = np.uint16(0)
    for k in range(row1.size):
        lane1[k] = np.float32(row1[k]) - offset1
        lane2[k] = np.float32(row2[k]) - offset2
        peak = max(peak, max(row1[k], row2[k]))
    return peak


@njit(cache=True, nogil=True, fastmath={"reassoc"})
def _sums(lane1, lane2, n):  # pragma: no cover - compiled
    """(sum of lane1[:n], sum of lane2[:n]) in float64, in any order (vectorised): exact for the
    offset-subtracted counts (module doc)."""
    total1 = 0.0
    total2 = 0.0
    for k in range(n):
        total1 += np.float64(lane1[k])
        total2 += np.float64(lane2[k])
    return total1, total2


@njit(cache=True, nogil=True, inline="always")
def _ceiling_count(row1, row2):  # pragma: no cover - compiled
    """Pixels at the ADC ceiling in either row (called only for rows that reach it)."""
    count = 0
    for k in range(row1.size):
        count += (row1[k] == ADC_CEILING) | (row2[k] == ADC_CEILING)
    return count


@njit(cache=True, nogil=True, inline="always")
def _sample_row(lane1, lane2, k, last, step, pairs, s):  # pragma: no cover - compiled
    """Append the pairs (lane1[i], lane2[i]), i = k, k + step, ... up to `last`, to `pairs` after
    its first s pairs; the new count of pairs."""
    while k <= last:
        pairs[2 * s] = lane1[k]  # side by side: a third faster than two arrays
        pairs[2 * s + 1] = lane2[k]
        s += 1
        k += step
    return s


@njit(cache=True, nogil=True, inline="always")
def _difference(pairs, n, scale1, scale2, out):  # pragma: no cover - compiled
    """out[m] = a * scale1 - b * scale2 (float32) of the first n pairs (a, b), as
    ptc_lib.scaled_difference."""
    for m in range(n):
        out[m] = pairs[2 * m] * scale1 - pairs[2 * m + 1] * scale2


@njit(cache=True, nogil=True)
def tile_sums(one, two, offset1, offset2, flip_rows, flip_cols, first_col, row_edges, col_edges,
              sum1, sum2, saturated, sample_step, samples, sample_sizes, sampled):  # pragma: no cover - compiled
    """Per tile t (row band i, column band j: t = i * columns + j): sum1/sum2[t] of the frames'
    offset-subtracted counts, saturated[t], and samples[t, :sample_sizes[t]] of the scaled
    difference, every sample_step[t]-th pixel in canonical order (held in another order).
    sampled: room for a band's sampled values of both frames (columns x 2 * samples.shape[1]).

    one, two: a quadrant's counts (uint16, frame orientation). Canonical image rows r and columns
    c (c from 0 at the image's first column, `first_col` in canonical quadrant columns) lie at
    frame row (height - 1 - r if flip_rows else r), column first_col + c mirrored likewise."""
    height, width = one.shape
    bands, columns = row_edges.size - 1, col_edges.size - 1
    widest = np.max(col_edges[1:] - col_edges[:-1])
    lane1 = np.empty(widest, np.float32)
    lane2 = np.empty(widest, np.float32)
    taken = np.zeros(columns, np.int64)
    sum1[:] = 0.0
    sum2[:] = 0.0
    saturated[:] = 0
    for i in range(bands):
        r0, r1 = row_edges[i], row_edges[i + 1]
        fr0 = height - r1 if flip_rows else r0
        taken[:] = 0
        for fr in range(fr0, fr0 + r1 - r0):  # frame rows in memory order, each across the band's tiles
            r = height - 1 - fr if flip_rows else fr
            for jj in range(columns):
                j = columns - 1 - jj if flip_cols else jj
                t = i * columns + j
                c0, c1 = first_col + col_edges[j], first_col + col_edges[j + 1]
                tile_width = c1 - c0
                fc0 = width - c1 if flip_cols else c0
                row1 = one[fr, fc0: fc0 + tile_width]
                row2 = two[fr, fc0: fc0 + tile_width]
                peak = _offset_lanes(row1, row2, offset1, offset2, lane1, lane2)
                row_sum1, row_sum2 = _sums(lane1, lane2, tile_width)
                sum1[t] += row_sum1
                sum2[t] += row_sum2
                if peak == ADC_CEILING:
                    saturated[t] += _ceiling_count(row1, row2)
                # the samples in this row: tile indices s * step in [(r - r0) * w, (r - r0 + 1) * w),
                # canonical columns first, first + step, ...: frame columns w - 1 - those when flipped
                step = sample_step[t]
                first = (-(r - r0) * tile_width) % step
                if flip_cols:
                    last = tile_width - 1 - first
                    k = last % step
                else:
                    last = tile_width - 1
                    k = first
                taken[j] = _sample_row(lane1, lane2, k, last, step, sampled[j], taken[j])
        for j in range(columns):  # the band's tiles are summed: their samples' scaled difference
            t = i * columns + j
            pixels = (r1 - r0) * (col_edges[j + 1] - col_edges[j])
            m1 = sum1[t] / pixels
            m2 = sum2[t] / pixels
            mean = 0.5 * (m1 + m2)
            plain = mean == 0
            scale1 = np.float32(m2 / mean) if not plain else np.float32(1)  # frame 1's factor: m2 / mean
            scale2 = np.float32(m1 / mean) if not plain else np.float32(1)
            if taken[j] != sample_sizes[t]:
                raise ValueError("ptc_kernels.tile_sums: a tile's sample is not clip_mask's size")
            _difference(sampled[j], sample_sizes[t], scale1, scale2, samples[t])


@njit(cache=True, nogil=True, inline="always")
def _window_lane(row1, row2, offset1, offset2, scale1, scale2, centre, half_width, lane):  # pragma: no cover
    """lane[k] = the scaled difference d (float32) where |d - centre| <= half_width, else NaN
    (counted apart, by _moments: an int64 count here would halve the float32 vectors' width)."""
    for k in range(row1.size):
        d = (np.float32(row1[k]) - offset1) * scale1 - (np.float32(row2[k]) - offset2) * scale2
        lane[k] = d if abs(d - centre) <= half_width else np.float32(np.nan)


@njit(cache=True, nogil=True, fastmath={"reassoc"})
def _moments(lane, n, centre):  # pragma: no cover - compiled
    """(count, sum, sum of squares) of the values of lane[:n] that are not NaN, less `centre`, in
    float64, in any order (vectorised): they differ from a sequential sum by rounding only."""
    count = 0
    total = 0.0
    squares = 0.0
    for k in range(n):
        v = np.float64(lane[k]) - centre
        inside = not np.isnan(v)  # reassoc only: NaNs are still NaNs
        count += np.int64(inside)
        total += v if inside else 0.0
        squares += v * v if inside else 0.0
    return count, total, squares


@njit(cache=True, nogil=True)
def clipped_sums(one, two, offset1, offset2, flip_rows, flip_cols, first_col, row_edges, col_edges,
                 scale1, scale2, centre, half_width, kept, total, squares):  # pragma: no cover - compiled
    """Per tile t: the pixels of the scaled difference a * scale1[t] - b * scale2[t] (float32)
    with |d - centre[t]| <= half_width[t] (float32, as numpy compares), their count kept[t], and
    total[t], squares[t]: the float64 sums of d - centre[t] and of its square."""
    height, width = one.shape
    bands, columns = row_edges.size - 1, col_edges.size - 1
    widest = np.max(col_edges[1:] - col_edges[:-1])
    lane = np.empty(widest, np.float32)
    kept[:] = 0
    total[:] = 0.0
    squares[:] = 0.0
    for i in range(bands):
        r0, r1 = row_edges[i], row_edges[i + 1]
        fr0 = height - r1 if flip_rows else r0
        for fr in range(fr0, fr0 + r1 - r0):  # frame rows in memory order, each across the band's tiles
            for jj in range(columns):
                j = columns - 1 - jj if flip_cols else jj
                t = i * columns + j
                c0, c1 = first_col + col_edges[j], first_col + col_edges[j + 1]
                fc0 = width - c1 if flip_cols else c0
                tile_width = c1 - c0
                c = centre[t]
                _window_lane(one[fr, fc0: fc0 + tile_width], two[fr, fc0: fc0 + tile_width],
                             offset1, offset2, scale1[t], scale2[t], c, half_width[t], lane)
                row_kept, row_sum, row_squares = _moments(lane, tile_width, np.float64(c))
                kept[t] += row_kept
                total[t] += row_sum
                squares[t] += row_squares


def warm() -> None:
    """Load (or compile, the first time) both kernels with the argument types ptc_lib uses."""
    counts = np.zeros((4, 4), np.uint16)
    edges = np.array([0, 2], np.int64)
    f32, f64, i64 = np.zeros(1, np.float32), np.zeros(1), np.zeros(1, np.int64)
    offset = np.float32(0)
    tile_sums(counts, counts, offset, offset, False, False, 0, edges, edges, f64, f64.copy(), i64,
              np.ones(1, np.int64), np.zeros((1, 4), np.float32), np.full(1, 4, np.int64), np.zeros((1, 8), np.float32))
    clipped_sums(counts, counts, offset, offset, False, False, 0, edges, edges, f32, f32, f32, f32,
                 i64, f64, f64.copy())
