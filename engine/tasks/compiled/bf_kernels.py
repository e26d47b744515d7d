"""The compiled loops of a BF pair's covariances (numba): ptc_lib.pair_covariance calls them.

For one quadrant of a flat pair, the numbers ptc_lib's numpy statement (quadrant_covariance_numpy)
computes, in four sweeps of the image area and a scan of its masked pixels instead of ~90
whole-array numpy passes and a Python loop over 16 000 blocks (full size, in the check's read:
~30 ms of CPU a quadrant against numpy's 600-700 ms). Every array is held as the frame holds the
image area (`stored`: its rows and columns in the frame's memory order), so each sweep reads and
writes in memory order whatever the quadrant's flips (held in canonical orientation, two quadrants
had their columns mirrored, and mirrored loads do not vectorise: 6 ms instead of 1.4 for the
difference alone). The canonical order is kept where it matters, in which pixels the clips sample.

- `quadrant_sums`: the sums of the two offset-subtracted frames. Exact in any order (see
  ptc_kernels: multiples of the offset's ulp), so the means are numpy's bit for bit; and, as the
  rows go by, the counts of the pixels of the first clip's sample (every step-th pixel in
  canonical order), which `sample_difference` scales once the means are known;
- `difference_blocks`: the fluence-scaled difference (float32, numpy's operations), its mask
  (below the ADC ceiling in both frames, and inside the first clip's window), each block's sum
  and count of kept pixels for the smooth surface (the caller fits the polynomial to the block
  means), and the pixels kept per row (the first two sweeps of six, fused);
- `surface_sample`: the second clip's sample (every step-th kept pixel in canonical order) of the
  difference less the surface, computed at those pixels only, as the next sweep computes them;
- `subtract_surface_clip`: the surface subtracted (numpy's float32 terms: float64 monomials
  rounded to float32, times the float32 coefficient, added in term order), the second clip
  applied, the sum of the kept pixels (their mean is removed next) and the pixels kept per row
  (two sweeps of six, fused);
- `lag_sums`: one sweep over the rows, the last max_lag + 1 rows of mean-removed values held in
  a ring (in the CPU cache): for each row and each lag (drow, dcol) in 0..max_lag the float64 sum
  of the float32 products, as numpy's `np.sum(a * b, dtype=float64)`; five column lags share one
  loop over the row (`_lag_block`: 10-12 ms a full-size quadrant, one loop per lag took 38; the
  float32 products' conversions to float64 bound it);
- `pair_counts`: the pixel pairs both kept, per lag, row pair by row pair: rows fully kept by
  their count, rows with a few masked pixels from those pixels, rows with many pixel by pixel;
  exact integers.

Canonical lag (drow, dcol) pairs the stored pixels (i, j) and (i + drow, j + dcol) when the
quadrant's rows and columns are both flipped or neither (a pair read backwards is the same pair),
and (i + drow, j - dcol) when only one is (`mirrored`).

The float32 arithmetic is numpy's operation for operation (no fast-math), so the clips keep the
same pixels unless a block mean or the mean differs in its last bit (float64 sums in another
order, and the surface's fit solved by its normal equations), which can move the float32 surface
by one ulp: none did in 184 full-size pair-quadrants nor in the tests. Only the float64 sums
(`_lag_block`, `_row_dots`, `_kept_sum`, `_sums`) are reassociated, which vectorises them: the
covariances differ from numpy's pairwise sums by rounding (at most 2.3e-15 of the variance in
16 full-size quadrants; tests/test_bf_pass.py). Helpers without reassociation are inlined (numba's
`inline="always"`): they take their caller's flags, so those kernels stay without fast-math.

Compiled on first use and cached beside this file (numba `cache=True`), as kernels.py.
"""

from __future__ import annotations

import numpy as np
from numba import njit

ADC_CEILING = 65535  # stats.ADC_SATURATED (not imported: this module loads nothing of the engine)


@njit(cache=True, nogil=True, fastmath={"reassoc"})
def _sums(first, second, offset1, offset2):  # pragma: no cover - compiled
    """Float64 sums of a row of each frame's offset-subtracted counts, in any order (exact)."""
    total1 = 0.0
    total2 = 0.0
    for k in range(first.size):
        total1 += np.float64(np.float32(first[k]) - offset1)
        total2 += np.float64(np.float32(second[k]) - offset2)
    return total1, total2


@njit(cache=True, nogil=True, inline="always")
def _stored(index, size, flip):  # pragma: no cover - compiled
    """The stored row (column) of canonical row (column) `index` of `size`."""
    return size - 1 - index if flip else index


@njit(cache=True, nogil=True)
def quadrant_sums(one, two, first_row, first_col, rows, cols, flip_rows, flip_cols, offset1, offset2, step,
                  sampled1, sampled2):  # pragma: no cover - compiled
    """(sum1, sum2): the offset-subtracted counts of the image area (rows x cols pixels from frame
    row first_row and column first_col) of each frame, float64; and sampled1/2[s] = each frame's
    count at canonical pixel s * step of the image area in row order (the pixels of clip_mask's
    sample of the difference, `values[::step]`: sample_difference makes it once the scales are
    known), taken as the rows go by."""
    total1 = 0.0
    total2 = 0.0
    for i in range(rows):
        row1 = one[first_row + i, first_col: first_col + cols]
        row2 = two[first_row + i, first_col: first_col + cols]
        row_sum1, row_sum2 = _sums(row1, row2, offset1, offset2)
        total1 += row_sum1
        total2 += row_sum2
        start = _stored(i, rows, flip_rows) * cols  # the canonical row's first pixel
        s = -(-start // step)
        c = s * step - start
        while c < cols:
            j = _stored(c, cols, flip_cols)
            sampled1[s] = row1[j]
            sampled2[s] = row2[j]
            s += 1
            c += step
    return total1, total2


@njit(cache=True, nogil=True)
def sample_difference(sampled1, sampled2, offset1, offset2, scale1, scale2, sample):  # pragma: no cover
    """sample = the scaled difference (difference_blocks') of the sampled counts."""
    for s in range(sample.size):
        sample[s] = (np.float32(sampled1[s]) - offset1) * scale1 - (np.float32(sampled2[s]) - offset2) * scale2


@njit(cache=True, nogil=True, fastmath={"reassoc"})
def _kept_sum(values, keep):  # pragma: no cover - compiled
    """(float64 sum of the values where keep, their count), in any order (vectorised)."""
    total = 0.0
    count = 0
    for k in range(values.size):
        total += np.float64(values[k]) if keep[k] else 0.0
        count += np.int64(keep[k])
    return total, count


@njit(cache=True, nogil=True, inline="always")
def _kept_columns(values, keep, column_sums, column_kept):  # pragma: no cover - compiled
    """column_sums[c] += values[c] and column_kept[c] += 1 where keep[c]; the kept pixels."""
    count = 0
    for c in range(values.size):
        column_sums[c] += np.float64(values[c]) if keep[c] else 0.0
        column_kept[c] += np.int64(keep[c])
        count += np.int64(keep[c])
    return count


@njit(cache=True, nogil=True)
def difference_blocks(one, two, offset1, offset2, first_row, first_col, scale1, scale2, centre, half_width,
                      row_block, col_edges, diff, mask, block_sums, block_kept, row_kept):  # pragma: no cover
    """diff[i, j] = (one - offset1) * scale1 - (two - offset2) * scale2 in float32 at frame row
    first_row + i, column first_col + j (numpy's scaled_difference); mask[i, j] = 1 where neither
    frame is at the ADC ceiling and |diff - centre| <= half_width (float32), else 0; per block
    (rows where row_block is b, columns col_edges[k] to col_edges[k + 1]) the float64 sum and the
    count of the kept pixels in block_sums[b, k], block_kept[b, k] (summed per column down the
    block's rows, then across); row_kept[i] = the row's kept pixels. Returns the pixels kept."""
    rows, cols = diff.shape
    column_sums = np.zeros(cols)
    column_kept = np.zeros(cols, np.int64)
    kept = 0
    for i in range(rows):
        row1 = one[first_row + i, first_col: first_col + cols]
        row2 = two[first_row + i, first_col: first_col + cols]
        out = diff[i]
        keep = mask[i]
        for c in range(cols):  # the float32 lanes, then the mask from them: both loops vectorise
            out[c] = (np.float32(row1[c]) - offset1) * scale1 - (np.float32(row2[c]) - offset2) * scale2
        for c in range(cols):
            keep[c] = (np.uint8(row1[c] < ADC_CEILING) & np.uint8(row2[c] < ADC_CEILING)
                       & np.uint8(abs(out[c] - centre) <= half_width))
        row_kept[i] = _kept_columns(out, keep, column_sums, column_kept)
        kept += row_kept[i]
        b = row_block[i]
        if i + 1 == rows or row_block[i + 1] != b:  # the band of blocks is done
            for k in range(col_edges.size - 1):
                c0, c1 = col_edges[k], col_edges[k + 1]
                block_sums[b, k] += column_sums[c0:c1].sum()
                block_kept[b, k] += column_kept[c0:c1].sum()
            column_sums[:] = 0.0
            column_kept[:] = 0
    return kept


@njit(cache=True, nogil=True, inline="always")
def _surface_terms(i, c, surface, row_terms, col_terms, row_only, coefficients):  # pragma: no cover - compiled
    """surface (the leading column-only terms' sum at column c) plus the other terms at row i,
    column c, in term order, float32 as numpy adds them."""
    for t in range(coefficients.size):
        if row_only[t]:
            surface += coefficients[t] * np.float32(row_terms[t, i])
        else:
            surface += coefficients[t] * np.float32(row_terms[t, i] * col_terms[t, c])
    return surface


SAMPLE_CHUNK = 64  # columns of a row whose kept pixels surface_sample counts at once


@njit(cache=True, nogil=True)
def surface_sample(diff, mask, row_kept, flip_rows, flip_cols, col_surface, row_terms, col_terms, row_only,
                   coefficients, step, sample):  # pragma: no cover - compiled
    """sample[s] = diff - surface (as subtract_surface_clip makes it) at the (s * step)-th kept
    pixel in canonical row order: clip_mask's sample of `diff[mask]`. Returns the values taken."""
    rows, cols = diff.shape
    until_next = 0  # kept pixels to pass before the next sample
    s = 0
    for r in range(rows):
        i = _stored(r, rows, flip_rows)
        in_row = row_kept[i]
        if until_next >= in_row:  # no sample in this row
            until_next -= in_row
            continue
        c = until_next
        if in_row == cols:  # every pixel kept: the samples are every step-th column
            while c < cols and s < sample.size:
                j = _stored(c, cols, flip_cols)
                sample[s] = diff[i, j] - _surface_terms(i, j, col_surface[j], row_terms, col_terms, row_only,
                                                        coefficients)
                s += 1
                c += step
            until_next = c - cols
        else:  # masked pixels in the row: its kept ones counted a chunk of columns at a time, and
            # looked for one by one only in the chunks where a sample falls (a scan of every such
            # row took 1.4 ms a full-size quadrant)
            for c0 in range(0, cols, SAMPLE_CHUNK):
                c1 = min(c0 + SAMPLE_CHUNK, cols)
                j0 = cols - c1 if flip_cols else c0  # the chunk's stored columns
                in_chunk = 0
                for j in range(j0, j0 + c1 - c0):
                    in_chunk += np.int64(mask[i, j])
                if until_next >= in_chunk:
                    until_next -= in_chunk
                    continue
                for c in range(c0, c1):
                    j = _stored(c, cols, flip_cols)
                    if mask[i, j]:
                        if until_next == 0 and s < sample.size:
                            sample[s] = diff[i, j] - _surface_terms(i, j, col_surface[j], row_terms, col_terms,
                                                                    row_only, coefficients)
                            s += 1
                            until_next = step
                        until_next -= 1
    return s


@njit(cache=True, nogil=True)
def subtract_surface_clip(diff, mask, col_surface, row_terms, col_terms, row_only, coefficients, centre,
                          half_width, row_kept):  # pragma: no cover - compiled
    """diff -= the surface: col_surface[j] (the leading column-only terms, summed by the caller
    as numpy does) then, term t after term, coefficients[t] * float32(row_terms[t, i] *
    col_terms[t, j]) (float32(row_terms[t, i]) when row_only[t]) added in float32 (numpy's
    `surface += c * outer(...)`); then mask &= |diff - centre| <= half_width; row_kept[i] = the
    row's kept pixels. Returns (the float64 sum of the kept pixels, their count)."""
    rows, cols = diff.shape
    surface = np.empty(cols, np.float32)
    # the degree-2 surface's terms after its column ones: y, x * y, y ** 2, in one loop (a loop per
    # term through a row buffer took 1.6 times longer)
    degree_two = row_only.size == 3 and row_only[0] and not row_only[1] and row_only[2]
    total = 0.0
    kept = 0
    for i in range(rows):
        out = diff[i]
        keep = mask[i]
        if degree_two:
            along_y = coefficients[0] * np.float32(row_terms[0, i])
            cross, y, x = coefficients[1], row_terms[1, i], col_terms[1]
            along_y2 = coefficients[2] * np.float32(row_terms[2, i])
            for c in range(cols):
                out[c] = out[c] - (((col_surface[c] + along_y) + cross * np.float32(y * x[c])) + along_y2)
        else:
            surface[:] = col_surface
            for t in range(coefficients.size):
                coefficient = coefficients[t]
                if row_only[t]:  # x ** 0: one float32 value for the row
                    term = coefficient * np.float32(row_terms[t, i])
                    for c in range(cols):
                        surface[c] += term
                else:
                    y = row_terms[t, i]
                    monomial = col_terms[t]
                    for c in range(cols):
                        surface[c] += coefficient * np.float32(y * monomial[c])
            for c in range(cols):
                out[c] = out[c] - surface[c]
        for c in range(cols):
            keep[c] = keep[c] & np.uint8(abs(out[c] - centre) <= half_width)
        row_total, in_row = _kept_sum(out, keep)
        row_kept[i] = in_row
        total += row_total
        kept += in_row
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


@njit(cache=True, nogil=True, inline="always")
def _centred(values, keep, mean, out):  # pragma: no cover - compiled
    """out = values - mean where keep, else 0 (float32)."""
    for c in range(values.size):
        out[c] = values[c] - mean if keep[c] else np.float32(0)


@njit(cache=True, nogil=True)
def lag_sums(diff, mask, mean, max_lag, mirrored, sums):  # pragma: no cover - compiled
    """sums[dr, dc] += sum over the pixel pairs of canonical lag (dr, dc) of v * v', with v the kept
    pixels' diff - mean (float32) and 0 elsewhere: one sweep over the stored rows, each row's
    values made once into a ring of the last max_lag + 1 rows. mirrored: the stored columns run
    against the stored rows (module doc), so the lag's second end is dcol columns to the left."""
    rows, cols = diff.shape
    depth = max_lag + 1
    ring = np.zeros((depth, cols), np.float32)
    for i in range(min(depth - 1, rows)):
        _centred(diff[i], mask[i], mean, ring[i % depth])
    for i in range(rows):
        ahead = i + depth - 1
        if ahead < rows:
            _centred(diff[ahead], mask[ahead], mean, ring[ahead % depth])
        first = ring[i % depth]
        for dr in range(min(depth, rows - i)):
            if mirrored:  # sum of v[i, j] * v[i + dr, j - dc] = sum of v[i + dr, j] * v[i, j + dc]
                _row_dots(ring[(i + dr) % depth], first, min(depth, cols), sums[dr])
            else:
                _row_dots(first, ring[(i + dr) % depth], min(depth, cols), sums[dr])


SPARSE_LIMIT = 64  # masked pixels in a row beyond which pair_counts counts its pairs directly


@njit(cache=True, nogil=True)
def _masked_columns(row, in_row, positions):  # pragma: no cover - compiled
    """The masked pixels of a mask row holding in_row kept ones; their columns listed in
    positions when there are at most SPARSE_LIMIT of them (found a chunk of columns at a time)."""
    cols = row.size
    masked = cols - in_row
    if masked == 0 or masked > SPARSE_LIMIT:
        return masked
    n = 0
    for c0 in range(0, cols, SAMPLE_CHUNK):
        c1 = min(c0 + SAMPLE_CHUNK, cols)
        in_chunk = 0
        for c in range(c0, c1):
            in_chunk += np.int64(row[c])
        if in_chunk < c1 - c0:
            for c in range(c0, c1):
                if not row[c]:
                    positions[n] = c
                    n += 1
    return masked


@njit(cache=True, nogil=True)
def _kept_pairs(first, second):  # pragma: no cover - compiled
    """The columns where both mask rows keep their pixel (vectorised)."""
    count = 0
    for c in range(first.size):
        count += np.int64(first[c] & second[c])
    return count


@njit(cache=True, nogil=True)
def pair_counts(mask, row_kept, max_lag, mirrored, counts):  # pragma: no cover - compiled
    """counts[dr, dc] = the pixel pairs of canonical lag (dr, dc) inside the image with both ends
    kept, summed over pairs of stored rows (i, i + dr): all the pairs of the two rows (cols - dc)
    when both are fully kept (row_kept); else, with a few masked pixels, all of them minus those
    with a masked first end, minus those with a masked second end, plus those with both (counted
    twice), from the masked pixels' columns; else counted pixel by pixel. (Counted from the
    masked pixels alone, a quadrant saturated in part took up to ~100 ms.)"""
    rows, cols = mask.shape
    depth = max_lag + 1
    sign = -1 if mirrored else 1
    positions = np.empty((depth, SPARSE_LIMIT), np.int64)  # the masked columns of the last depth rows
    masked = np.zeros(depth, np.int64)  # ... how many (more than SPARSE_LIMIT: not listed)
    counts[:, :] = 0
    for i in range(min(depth - 1, rows)):
        masked[i % depth] = _masked_columns(mask[i], row_kept[i], positions[i % depth])
    for i in range(rows):
        ahead = i + depth - 1
        if ahead < rows:
            masked[ahead % depth] = _masked_columns(mask[ahead], row_kept[ahead], positions[ahead % depth])
        n1 = masked[i % depth]
        for dr in range(min(depth, rows - i)):
            second = i + dr
            n2 = masked[second % depth]
            for dc in range(min(depth, cols)):
                counts[dr, dc] += cols - dc
            if n1 == 0 and n2 == 0:
                continue
            if n1 > SPARSE_LIMIT or n2 > SPARSE_LIMIT:
                for dc in range(min(depth, cols)):
                    if mirrored:  # first end at column j, second at j - dc
                        kept = _kept_pairs(mask[i, dc:], mask[second, : cols - dc])
                    else:
                        kept = _kept_pairs(mask[i, : cols - dc], mask[second, dc:])
                    counts[dr, dc] += kept - (cols - dc)
                continue
            for k in range(n1):  # masked first ends
                j = positions[i % depth, k]
                for dc in range(min(depth, cols)):
                    partner = j + sign * dc
                    if 0 <= partner < cols:
                        counts[dr, dc] -= 1
                        if not mask[second, partner]:  # both masked: taken off twice
                            counts[dr, dc] += 1
            for k in range(n2):  # masked second ends
                j = positions[second % depth, k]
                for dc in range(min(depth, cols)):
                    if 0 <= j - sign * dc < cols:
                        counts[dr, dc] -= 1


def warm() -> None:
    """Load (or compile, the first time) every kernel with the argument types ptc_lib uses."""
    counts = np.zeros((4, 6), np.uint16)
    f32 = np.float32(0)
    diff = np.zeros((4, 4), np.float32)
    mask = np.ones((4, 4), np.uint8)
    index = np.zeros(4, np.int64)
    sampled = np.zeros(16, np.uint16)
    quadrant_sums(counts, counts, 0, 1, 4, 4, False, True, f32, f32, 1, sampled, sampled)
    sample_difference(sampled, sampled, f32, f32, f32, f32, np.zeros(16, np.float32))
    difference_blocks(counts, counts, f32, f32, 0, 1, f32, f32, f32, np.float32(1), np.zeros(4, np.int64),
                      np.array([0, 4]), diff, mask, np.zeros((1, 1)), np.zeros((1, 1), np.int64), index)
    surface_args = (np.zeros(4, np.float32), np.ones((1, 4)), np.ones((1, 4)), np.zeros(1, np.bool_),
                    np.zeros(1, np.float32))
    surface_sample(diff, mask, index, False, True, *surface_args, 1, np.zeros(16, np.float32))
    subtract_surface_clip(diff, mask, *surface_args, f32, np.float32(1), index)
    lag_sums(diff, mask, f32, 1, False, np.zeros((2, 2)))
    pair_counts(mask, index, 1, False, np.zeros((2, 2), np.int64))
