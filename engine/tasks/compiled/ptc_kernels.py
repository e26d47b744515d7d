"""The compiled loops of a PTC pair's tile statistics (numba): ptc_lib.pair_quadrant calls them.

Per tile of a quadrant's image area, the numbers ptc_lib's numpy tile loop (pair_tiles_unit)
computes, from the two frames' uint16 counts as read (frame orientation: the tiles are canonical
rectangles, mapped onto the frame's rows and columns here, so nothing is flipped or copied):

- `tile_sums`: one sweep of each tile: the sums of the two offset-subtracted frames (float64:
  each float32 value `count - offset` is a multiple of the offset's ulp, at most 2^16, so a sum
  of up to 2^17 of them is exact in any order when the offset exceeds 16 ADU (real ones are
  1000-2000): the means are numpy's bit for bit),
  the pixels at the ADC ceiling in either frame, and the sample of the scaled difference
  ptc_lib.clip_mask takes (every `step`-th value in the tile's canonical order, the same values);
- the caller sorts the samples (numpy's sort: vectorised, 25x faster than a compiled one) and
  takes the clip window from their percentiles as clip_mask does;
- `clipped_sums`: a second sweep: the pixels within the window, with the sum and the sum of
  squares of their offset from the window's centre (float64), for the clipped variance.

The float32 arithmetic of the difference is numpy's operation for operation (no fast-math), so the
clip keeps the same pixels. Only the float64 row sums (`_sums`, `_moments`, in functions of their
own) may be reassociated, which vectorises them: exact for the tile sums, and the variance's sums
differ from numpy's pairwise ones by rounding only (1e-15 relative).

Compiled on first use and cached beside this file (numba `cache=True`), as kernels.py.
"""

from __future__ import annotations

import numpy as np
from numba import njit

ADC_CEILING = 65535  # stats.ADC_SATURATED (not imported: this module loads nothing of the engine)


@njit(cache=True, nogil=True, fastmath={"reassoc"})
def _sums(first, second):  # pragma: no cover - compiled
    """(sum of `first`, sum of `second`) in float64, in any order (vectorised): exact for the
    offset-subtracted counts (module doc)."""
    total1 = 0.0
    total2 = 0.0
    for k in range(first.size):
        total1 += first[k]
        total2 += second[k]
    return total1, total2


@njit(cache=True, nogil=True, fastmath={"reassoc"})
def _moments(values):  # pragma: no cover - compiled
    """(sum, sum of squares) in float64, in any order (vectorised): they differ from a sequential
    sum by rounding only."""
    total = 0.0
    squares = 0.0
    for v in values:
        total += v
        squares += v * v
    return total, squares


@njit(cache=True, nogil=True)
def tile_sums(one, two, offset1, offset2, flip_rows, flip_cols, first_col, row_edges, col_edges,
              sum1, sum2, saturated, sample_step, samples, sample_sizes):  # pragma: no cover - compiled
    """Per tile t (row band i, column band j: t = i * columns + j): sum1/sum2[t] of the frames'
    offset-subtracted counts, saturated[t], and samples[t, :sample_sizes[t]] of the scaled
    difference, every sample_step[t]-th pixel in canonical order.

    one, two: a quadrant's counts (uint16, frame orientation). Canonical image rows r and columns
    c (c from 0 at the image's first column, `first_col` in canonical quadrant columns) lie at
    frame row (height - 1 - r if flip_rows else r), column first_col + c mirrored likewise."""
    height, width = one.shape
    bands, columns = row_edges.size - 1, col_edges.size - 1
    widest = np.max(col_edges[1:] - col_edges[:-1])
    lane1 = np.empty(widest, np.float64)
    lane2 = np.empty(widest, np.float64)
    sampled2 = np.empty(samples.shape[1], np.float32)  # frame 2's sampled values (frame 1's in samples)
    for i in range(bands):
        r0, r1 = row_edges[i], row_edges[i + 1]
        for j in range(columns):
            t = i * columns + j
            c0, c1 = first_col + col_edges[j], first_col + col_edges[j + 1]
            fc0 = width - c1 if flip_cols else c0
            tile_width = c1 - c0
            step = sample_step[t]
            total1 = 0.0
            total2 = 0.0
            ceiling = 0
            for r in range(r0, r1):  # canonical rows, each swept in frame order
                fr = height - 1 - r if flip_rows else r
                row1 = one[fr, fc0: fc0 + tile_width]
                row2 = two[fr, fc0: fc0 + tile_width]
                for c in range(tile_width):
                    lane1[c] = np.float32(row1[c]) - offset1  # float32, as numpy subtracts; exact in float64
                    lane2[c] = np.float32(row2[c]) - offset2
                    ceiling += (row1[c] == ADC_CEILING) | (row2[c] == ADC_CEILING)
                row_sum1, row_sum2 = _sums(lane1[:tile_width], lane2[:tile_width])
                total1 += row_sum1
                total2 += row_sum2
                # the samples in this row: tile indices s * step in [(r - r0) * w, (r - r0 + 1) * w)
                start = (r - r0) * tile_width
                s = (start + step - 1) // step
                index = s * step - start
                while index < tile_width:
                    k = tile_width - 1 - index if flip_cols else index
                    samples[t, s] = lane1[k]
                    sampled2[s] = lane2[k]
                    s += 1
                    index += step
            sum1[t] = total1
            sum2[t] = total2
            saturated[t] = ceiling
            # the sample of the scaled difference, as ptc_lib.scaled_difference makes it
            pixels = (r1 - r0) * tile_width
            m1 = total1 / pixels
            m2 = total2 / pixels
            mean = 0.5 * (m1 + m2)
            plain = mean == 0
            scale1 = np.float32(m2 / mean) if not plain else np.float32(1)  # frame 1's factor: m2 / mean
            scale2 = np.float32(m1 / mean) if not plain else np.float32(1)
            for s in range(sample_sizes[t]):
                samples[t, s] = samples[t, s] * scale1 - sampled2[s] * scale2


@njit(cache=True, nogil=True)
def clipped_sums(one, two, offset1, offset2, flip_rows, flip_cols, first_col, row_edges, col_edges,
                 scale1, scale2, centre, half_width, kept, total, squares):  # pragma: no cover - compiled
    """Per tile t: the pixels of the scaled difference a * scale1[t] - b * scale2[t] (float32)
    with |d - centre[t]| <= half_width[t] (float32, as numpy compares), their count kept[t], and
    total[t], squares[t]: the float64 sums of d - centre[t] and of its square."""
    height, width = one.shape
    bands, columns = row_edges.size - 1, col_edges.size - 1
    widest = np.max(col_edges[1:] - col_edges[:-1])
    lane = np.empty(widest, np.float64)
    for i in range(bands):
        r0, r1 = row_edges[i], row_edges[i + 1]
        fr0 = height - r1 if flip_rows else r0
        for j in range(columns):
            t = i * columns + j
            c0, c1 = first_col + col_edges[j], first_col + col_edges[j + 1]
            fc0 = width - c1 if flip_cols else c0
            tile_width = c1 - c0
            s1, s2, c, w = scale1[t], scale2[t], centre[t], half_width[t]
            c64 = np.float64(c)
            count = 0
            sx = 0.0
            sxx = 0.0
            for fr in range(fr0, fr0 + r1 - r0):
                row1 = one[fr, fc0: fc0 + tile_width]
                row2 = two[fr, fc0: fc0 + tile_width]
                for k in range(tile_width):
                    d = (np.float32(row1[k]) - offset1) * s1 - (np.float32(row2[k]) - offset2) * s2
                    inside = abs(d - c) <= w
                    lane[k] = np.float64(d) - c64 if inside else 0.0  # about the centre: no cancellation
                    count += np.int64(inside)
                row_sum, row_squares = _moments(lane[:tile_width])
                sx += row_sum
                sxx += row_squares
            kept[t] = count
            total[t] = sx
            squares[t] = sxx


def warm() -> None:
    """Load (or compile, the first time) both kernels with the argument types ptc_lib uses."""
    counts = np.zeros((4, 4), np.uint16)
    edges = np.array([0, 2], np.int64)
    f32, f64, i64 = np.zeros(1, np.float32), np.zeros(1), np.zeros(1, np.int64)
    offset = np.float32(0)
    tile_sums(counts, counts, offset, offset, False, False, 0, edges, edges, f64, f64.copy(), i64,
              np.ones(1, np.int64), np.zeros((1, 4), np.float32), np.ones(1, np.int64))
    clipped_sums(counts, counts, offset, offset, False, False, 0, edges, edges, f32, f32, f32, f32,
                 i64, f64, f64.copy())
