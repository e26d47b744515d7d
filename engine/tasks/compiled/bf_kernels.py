"""The compiled loops of a BF pair's covariances (numba): ptc_lib.pair_covariance calls them.

For one quadrant of a flat pair, the numbers ptc_lib's numpy statement (quadrant_covariance_numpy)
computes, in six sweeps of the image area and a scan of the mask instead of ~90 whole-array numpy
passes and a Python loop over 16 000 blocks (full size: 36-45 ms of CPU a quadrant against
600-700 ms):

- `quadrant_sums`: the sums of the two offset-subtracted frames, from the counts as read (frame
  orientation: canonical rows and columns are mapped onto the frame's here). Exact in any order
  (see ptc_kernels: multiples of the offset's ulp), so the means are numpy's bit for bit;
- `scaled_difference`: the fluence-scaled difference in canonical orientation (float32, numpy's
  operations) and the mask of pixels below the ADC ceiling in both frames;
- (the caller takes the clip window from a strided sample, as ptc_lib.clip_mask does)
- `clip_blocks`: the clip applied to the mask, and each block's sum and count of kept pixels
  for the smooth surface (the caller fits the polynomial to the block means);
- `subtract_surface`: the surface evaluated as numpy does it (float64 monomials, rounded to
  float32, times the float32 coefficient, summed in float32 term by term) and subtracted, with
  the sample of the kept pixels the second clip takes its window from;
- `clip_sum`: the second clip applied, and the sum of the kept pixels (their mean is removed);
- `lag_sums`: one sweep over the rows, the last max_lag + 1 rows of mean-removed values held in
  a ring (in the CPU cache): for each row and each lag (drow, dcol) in 0..max_lag the float64 sum
  of the float32 products, as numpy's `np.sum(a * b, dtype=float64)`; five column lags share one
  loop over the row (`_lag_block`: 12 ms a full-size quadrant, one loop per lag took 38);
- `pair_counts`: the pixel pairs both kept, per lag, counted from the masked pixels only (every
  pair of the lag's window minus those with a masked end), exact integers.

The float32 arithmetic is numpy's operation for operation (no fast-math), so the clips keep the
same pixels unless a block mean or the mean differs in its last bit (float64 sums in another
order, and the surface's fit solved by its normal equations), which can move the float32 surface
by one ulp: none did in 16 full-size quadrants nor in the tests. Only the float64 sums
(`_lag_block`, `_kept_sum`, `_sums`) are reassociated, which vectorises them: the covariances
differ from numpy's pairwise sums by rounding (at most 2.3e-15 of the variance in those 16
quadrants; tests/test_bf_pass.py).

Compiled on first use and cached beside this file (numba `cache=True`), as kernels.py.
"""

from __future__ import annotations

import numpy as np
from numba import njit

ADC_CEILING = 65535  # stats.ADC_SATURATED (not imported: this module loads nothing of the engine)


@njit(cache=True, nogil=True)
def _frame_row(height, flip_rows, r):  # pragma: no cover - compiled
    return height - 1 - r if flip_rows else r


@njit(cache=True, nogil=True, fastmath={"reassoc"})
def _sums(first, second, offset1, offset2):  # pragma: no cover - compiled
    """Float64 sums of a row of each frame's offset-subtracted counts, in any order (exact)."""
    total1 = 0.0
    total2 = 0.0
    for k in range(first.size):
        total1 += np.float64(np.float32(first[k]) - offset1)
        total2 += np.float64(np.float32(second[k]) - offset2)
    return total1, total2


@njit(cache=True, nogil=True)
def quadrant_sums(one, two, offset1, offset2, flip_rows, flip_cols, first_col, rows, cols):  # pragma: no cover
    """(sum1, sum2): the offset-subtracted counts of the image area (rows x cols pixels from
    canonical column first_col) of each frame, float64 (orientation as in scaled_difference)."""
    height, width = one.shape
    c0 = width - first_col - cols if flip_cols else first_col
    total1 = 0.0
    total2 = 0.0
    for r in range(rows):
        fr = _frame_row(height, flip_rows, r)
        row_sum1, row_sum2 = _sums(one[fr, c0: c0 + cols], two[fr, c0: c0 + cols], offset1, offset2)
        total1 += row_sum1
        total2 += row_sum2
    return total1, total2


@njit(cache=True, nogil=True)
def scaled_difference(one, two, offset1, offset2, flip_rows, flip_cols, first_col, scale1, scale2,
                      diff, mask):  # pragma: no cover - compiled
    """diff[r, c] = (one - offset1) * scale1 - (two - offset2) * scale2 in float32, canonical image
    row r and column c; mask[r, c] = 1 where neither frame is at the ADC ceiling, else 0.

    one, two: a quadrant's counts (uint16, frame orientation); canonical row r lies at frame row
    height - 1 - r when flip_rows, canonical column first_col + c at width - 1 - (first_col + c)
    when flip_cols."""
    height, width = one.shape
    rows, cols = diff.shape
    for r in range(rows):
        fr = _frame_row(height, flip_rows, r)
        if flip_cols:  # mirrored reads do not vectorise (nor do mirrored writes or copies: tried)
            fc_last = width - 1 - first_col
            for c in range(cols):
                x1 = one[fr, fc_last - c]
                x2 = two[fr, fc_last - c]
                diff[r, c] = (np.float32(x1) - offset1) * scale1 - (np.float32(x2) - offset2) * scale2
                mask[r, c] = (x1 < ADC_CEILING) & (x2 < ADC_CEILING)
        else:  # two loops over the row slices: both vectorise (4x faster than one loop as above)
            row1 = one[fr, first_col: first_col + cols]
            row2 = two[fr, first_col: first_col + cols]
            out = diff[r]
            keep = mask[r]
            for c in range(cols):
                out[c] = (np.float32(row1[c]) - offset1) * scale1 - (np.float32(row2[c]) - offset2) * scale2
            for c in range(cols):
                keep[c] = np.uint8(row1[c] < ADC_CEILING) & np.uint8(row2[c] < ADC_CEILING)


@njit(cache=True, nogil=True, fastmath={"reassoc"})
def _kept_sum(values, keep):  # pragma: no cover - compiled
    """(float64 sum of the values where keep, their count), in any order (vectorised)."""
    total = 0.0
    count = 0
    for k in range(values.size):
        total += np.float64(values[k]) if keep[k] else 0.0
        count += np.int64(keep[k])
    return total, count


@njit(cache=True, nogil=True)
def _clip_row(values, keep, centre, half_width):  # pragma: no cover - compiled
    """keep &= |values - centre| <= half_width, float32 as numpy compares."""
    for k in range(values.size):
        keep[k] = keep[k] & (abs(values[k] - centre) <= half_width)


@njit(cache=True, nogil=True)
def clip_blocks(diff, mask, centre, half_width, row_block, col_edges, block_sums, block_kept):  # pragma: no cover
    """mask &= |diff - centre| <= half_width; per block (row_block[r], columns col_edges[j] to
    col_edges[j + 1]) the float64 sum and the count of the kept pixels. Returns the pixels kept."""
    rows = diff.shape[0]
    kept = 0
    for r in range(rows):
        i = row_block[r]
        _clip_row(diff[r], mask[r], centre, half_width)
        for j in range(col_edges.size - 1):
            c0, c1 = col_edges[j], col_edges[j + 1]
            total, count = _kept_sum(diff[r, c0:c1], mask[r, c0:c1])
            block_sums[i, j] += total
            block_kept[i, j] += count
            kept += count
    return kept


@njit(cache=True, nogil=True)
def subtract_surface(diff, mask, row_terms, col_terms, coefficients, step, sample):  # pragma: no cover - compiled
    """diff -= the surface sum_t coefficients[t] * float32(row_terms[t, r] * col_terms[t, c]),
    summed in float32 in term order from 0 (numpy's `surface += c * outer(...)`); sample[s] =
    the (s * step)-th kept pixel of the result in row order (clip_mask's sample of diff[mask])."""
    rows, cols = diff.shape
    terms = coefficients.size
    surface = np.empty(cols, np.float32)
    until_next = 0  # kept pixels to pass before the next sample
    s = 0
    for r in range(rows):
        surface[:] = 0
        for t in range(terms):
            y = row_terms[t, r]
            coefficient = coefficients[t]
            monomial = col_terms[t]
            for c in range(cols):
                surface[c] += coefficient * np.float32(y * monomial[c])
        out = diff[r]
        keep = mask[r]
        for c in range(cols):
            out[c] = out[c] - surface[c]
        row_kept = 0
        for c in range(cols):
            row_kept += np.int64(keep[c])
        if until_next >= row_kept:  # no sample in this row
            until_next -= row_kept
        elif row_kept == cols:  # every pixel kept: the samples are every step-th column
            c = until_next
            while c < cols and s < sample.size:
                sample[s] = diff[r, c]
                s += 1
                c += step
            until_next = c - cols
        else:
            for c in range(cols):
                if mask[r, c]:
                    if until_next == 0 and s < sample.size:
                        sample[s] = diff[r, c]
                        s += 1
                        until_next = step
                    until_next -= 1
    return s


@njit(cache=True, nogil=True)
def clip_sum(diff, mask, centre, half_width):  # pragma: no cover - compiled
    """mask &= |diff - centre| <= half_width; (the float64 sum of the kept pixels, their count)."""
    kept = 0
    total = 0.0
    for r in range(diff.shape[0]):
        _clip_row(diff[r], mask[r], centre, half_width)
        row_total, row_kept = _kept_sum(diff[r], mask[r])
        total += row_total
        kept += row_kept
    return total, kept


LAG_BLOCK = 5  # column lags summed together in one loop (5 float64 accumulators: 4.5x one at a time)


@njit(cache=True, nogil=True, fastmath={"reassoc"})
def _lag_block(first, second, length):  # pragma: no cover - compiled
    """The float64 sums over c < length of float64(first[c] * second[c + k]) (float32 products,
    numpy's) for k = 0..LAG_BLOCK - 1, in any order: one loop, five accumulators (vectorised)."""
    s0 = s1 = s2 = s3 = s4 = 0.0
    for c in range(length):
        x = first[c]
        s0 += np.float64(x * second[c])
        s1 += np.float64(x * second[c + 1])
        s2 += np.float64(x * second[c + 2])
        s3 += np.float64(x * second[c + 3])
        s4 += np.float64(x * second[c + 4])
    return s0, s1, s2, s3, s4


@njit(cache=True, nogil=True, fastmath={"reassoc"})
def _row_dots(first, second, lags, out):  # pragma: no cover - compiled
    """out[dc] += sum over c of float64(first[c] * second[c + dc]) for dc < lags (LAG_BLOCK lags
    per loop over the row, then the few columns where the block's larger lags leave the row)."""
    cols = first.size
    for base in range(0, lags, LAG_BLOCK):
        common = max(cols - base - (LAG_BLOCK - 1), 0)  # columns where all LAG_BLOCK lags stay inside
        block = _lag_block(first, second[base:], common)
        for k in range(min(LAG_BLOCK, lags - base)):
            dc = base + k
            tail = 0.0
            for c in range(common, cols - dc):
                tail += np.float64(first[c] * second[c + dc])
            out[dc] += block[k] + tail


@njit(cache=True, nogil=True)
def lag_sums(diff, mask, mean, max_lag, sums):  # pragma: no cover - compiled
    """sums[dr, dc] += sum over pixel pairs (r, c), (r + dr, c + dc) of v * v', with v the kept
    pixels' diff - mean (float32) and 0 elsewhere: one sweep over the rows, each row's values made
    once into a ring of the last max_lag + 1 rows."""
    rows, cols = diff.shape
    depth = max_lag + 1
    ring = np.zeros((depth, cols), np.float32)
    for r in range(min(depth - 1, rows)):
        for c in range(cols):
            ring[r % depth, c] = diff[r, c] - mean if mask[r, c] else np.float32(0)
    for r in range(rows):
        ahead = r + depth - 1
        if ahead < rows:
            slot = ahead % depth
            for c in range(cols):
                ring[slot, c] = diff[ahead, c] - mean if mask[ahead, c] else np.float32(0)
        first = ring[r % depth]
        for dr in range(min(depth, rows - r)):
            _row_dots(first, ring[(r + dr) % depth], min(depth, cols), sums[dr])


@njit(cache=True, nogil=True)
def pair_counts(mask, max_lag, counts):  # pragma: no cover - compiled
    """counts[dr, dc] = the pixel pairs (r, c), (r + dr, c + dc) inside the image with both ends
    kept: all the lag's pairs, minus those whose first end is masked, minus those whose second
    end is, plus those with both (counted twice). Work in the masked pixels only."""
    rows, cols = mask.shape
    depth = max_lag + 1
    first_masked = np.zeros((depth, depth), np.int64)
    second_masked = np.zeros((depth, depth), np.int64)
    both = np.zeros((depth, depth), np.int64)
    for r in range(rows):
        for c in range(cols):
            if mask[r, c]:
                continue
            for dr in range(depth):
                for dc in range(depth):
                    if r + dr < rows and c + dc < cols:
                        first_masked[dr, dc] += 1
                        if not mask[r + dr, c + dc]:
                            both[dr, dc] += 1
                    if r >= dr and c >= dc:
                        second_masked[dr, dc] += 1
    for dr in range(depth):
        for dc in range(depth):
            whole = max(rows - dr, 0) * max(cols - dc, 0)
            counts[dr, dc] = whole - first_masked[dr, dc] - second_masked[dr, dc] + both[dr, dc]


def warm() -> None:
    """Load (or compile, the first time) every kernel with the argument types ptc_lib uses."""
    counts = np.zeros((4, 6), np.uint16)
    f32 = np.float32(0)
    diff = np.zeros((4, 4), np.float32)
    mask = np.ones((4, 4), np.uint8)
    quadrant_sums(counts, counts, f32, f32, False, True, 1, 4, 4)
    scaled_difference(counts, counts, f32, f32, False, True, 1, f32, f32, diff, mask)
    index = np.zeros(4, np.int64)
    clip_blocks(diff, mask, f32, np.float32(1), index, np.array([0, 4]), np.zeros((1, 1)), np.zeros((1, 1), np.int64))
    subtract_surface(diff, mask, np.ones((1, 4)), np.ones((1, 4)), np.zeros(1, np.float32), 1,
                     np.zeros(16, np.float32))
    clip_sum(diff, mask, f32, np.float32(1))
    lag_sums(diff, mask, f32, 1, np.zeros((2, 2)))
    pair_counts(mask, 1, np.zeros((2, 2), np.int64))
