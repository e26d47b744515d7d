"""The compiled loops of trap pumping (numba): a vertically pumped frame's relative dipole map and its
dipoles, from the quadrant's counts as read, in three sweeps instead of numpy's dozen.

- `column_sums`: per image column the float64 sum of the offset-subtracted counts (the column's
  injection level is this over the rows);
- `relative_residual`: the relative map (image / level - 1), clipped at +-bound, its running mean
  over LOCAL_WINDOW rows and the residual (relative - running mean), row after row with the rows
  of the window held in a ring; for every column or only some (a trap's amplitude in a frame
  that did not detect it: the residual of its column replayed);
- `count_histogram`: the counts' histogram (the unpumped frame's median without sorting);
- `dipole_candidates`: the adjacent pairs of a residual map whose difference passes the
  threshold and whose members deviate with their signs.

The float arithmetic is numpy's, operation for operation (tp_lib.vertical_map, running_mean and
find_dipoles: float32 division and clip, a row-ordered float32 running sum scaled by
float32(1 / count), a row-ordered float64 column sum, no fast-math): the maps and the dipoles are
bit for bit those of the numpy functions (tests/test_tp_pass.py).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def column_sums(counts, row0, row_step, rows, col0, width, offset, flip_cols, sample_step,
                sample):  # pragma: no cover - compiled
    """Per column of counts[:, col0: col0 + width] the float64 sum of float32(count) - offset over
    the rows row0, row0 + row_step, ... (`rows` of them, in that order): numpy's
    `image.mean(axis=0, dtype=float64)` of the canonical image before its division. Into `sample`:
    the counts of the canonical image's every sample_step-th pixel (flat order)."""
    sums = np.zeros(width, np.float64)
    for i in range(rows):
        row = counts[row0 + row_step * i, col0: col0 + width]
        for c in range(width):
            sums[c] += np.float64(np.float32(row[c]) - offset)
        _take_sample(row, i, width, flip_cols, sample_step, sample)
    return sums


@njit(cache=True, nogil=True)
def count_histogram(counts, row0, row_step, rows, col0, width):  # pragma: no cover - compiled
    """How many pixels of the window (rows as in column_sums) hold each count 0-65535."""
    histogram = np.zeros(65536, np.int64)
    for i in range(rows):
        row = counts[row0 + row_step * i, col0: col0 + width]
        for c in range(width):
            histogram[row[c]] += 1
    return histogram


@njit(cache=True, nogil=True, inline="always")
def _take_sample(row, i, width, flip_cols, step, sample):  # pragma: no cover - compiled
    """Row i's pixels of the canonical map's regular subsample (flat index a multiple of step),
    each at its place in the subsample; the row is in read order (reversed if flip_cols)."""
    if sample.shape[0] == 0:
        return
    first = i * width
    column = (step - first % step) % step
    while column < width:
        sample[(first + column) // step] = row[width - 1 - column if flip_cols else column]
        column += step


# error_model "numpy": a division by zero gives inf as numpy's, instead of a check that keeps the
# loop from being vectorised (the map's divisions are most of its time)
@njit(cache=True, nogil=True, error_model="numpy")
def relative_residual(counts, row0, row_step, rows, col0, offset, level, bound, window, columns, out,
                      flip_cols, sample_step, sample):  # pragma: no cover - compiled
    """Residual map of columns col0 + columns[k] of counts (rows taken as in column_sums) into
    out[:, k] (float32): relative = (float32(count) - offset) / level[columns[k]] - 1, minus the
    running mean along the rows of the relative map clipped at +-bound (a NaN level gives NaN:
    vertical_map zeroes it after). `columns` None: every column of level, in order; then `sample`
    gets the residuals of the canonical map's regular subsample, as column_sums the counts.
    Returns how many residuals are not finite."""
    width = out.shape[1]
    half = window // 2
    ring_rows = window + 1  # rows i - half - 1 .. i + half
    relative = np.empty((ring_rows, width), np.float32)
    clipped = np.empty((ring_rows, width), np.float32)
    running = np.zeros(width, np.float32)
    picked = np.empty(width, np.float32)
    chosen = np.empty(width, np.float32)
    if columns is not None:
        for k in range(width):
            chosen[k] = level[columns[k]]
    one = np.float32(1.0)
    for r in range(min(half, rows)):  # the first rows' sum, as values[:half].sum(axis=0)
        slot = r % ring_rows
        _relative_row(counts[row0 + row_step * r, col0:], columns, picked, offset, level, chosen, one, bound,
                      relative[slot], clipped[slot])
        if r == 0:
            running[:] = clipped[slot]
        else:
            for c in range(width):
                running[c] += clipped[slot, c]
    count = min(half, rows)
    nonfinite = 0
    for i in range(rows):
        ahead = i + half
        if ahead < rows:
            slot = ahead % ring_rows
            _relative_row(counts[row0 + row_step * ahead, col0:], columns, picked, offset, level, chosen, one, bound,
                          relative[slot], clipped[slot])
            added = clipped[slot]
            for c in range(width):
                running[c] += added[c]
            count += 1
        behind = i - half - 1
        if behind >= 0:
            removed = clipped[behind % ring_rows]
            for c in range(width):
                running[c] -= removed[c]
            count -= 1
        scale = np.float32(1.0 / count)
        own = relative[i % ring_rows]
        row_out = out[i]
        for c in range(width):
            row_out[c] = own[c] - running[c] * scale
        _take_sample(row_out, i, width, flip_cols, sample_step, sample)
        for c in range(width):
            nonfinite += not np.isfinite(row_out[c])
    return nonfinite


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _relative_row(row, columns, picked, offset, level, chosen, one, bound, relative, clipped):  # pragma: no cover
    width = relative.shape[0]
    if columns is None:
        for c in range(width):
            relative[c] = (np.float32(row[c]) - offset) / level[c] - one
    else:
        for c in range(width):
            picked[c] = row[columns[c]]
        for c in range(width):
            relative[c] = (picked[c] - offset) / chosen[c] - one
    low = -bound
    for c in range(width):
        value = relative[c]
        clipped[c] = bound if value > bound else low if value < low else value  # noqa: FURB136 - np.clip: NaN stays NaN


@njit(cache=True, nogil=True)
def dipole_candidates(residual, limit, member_floor, member_share):  # pragma: no cover - compiled
    """The dipoles of tp_lib.find_dipoles in one sweep, in its order: (rows, cols, rising) of the
    pairs (r, r + 1) with |residual[r + 1] - residual[r]| > limit whose lower member is below
    -member and upper above +member (rising; falling the other way round), member =
    max(member_floor, member_share x half the difference); row-major order, rising then falling."""
    rows, width = residual.shape
    capacity = 1024
    found_rows = np.empty(capacity, np.intp)
    found_cols = np.empty(capacity, np.intp)
    found_rising = np.empty(capacity, np.bool_)
    found = 0
    half = np.float32(0.5)
    for r in range(rows - 1):
        lower_row = residual[r]
        upper_row = residual[r + 1]
        hits = 0
        for c in range(width):  # a branch-free sweep first: most rows have no candidate
            hits += abs(upper_row[c] - lower_row[c]) > limit
        if hits == 0:
            continue
        for c in range(width):
            lower = lower_row[c]
            upper = upper_row[c]
            difference = upper - lower
            if not abs(difference) > limit:
                continue
            value = difference * half
            member = max(member_floor, member_share * abs(value))
            rising = value > 0 and lower < -member and upper > member
            falling = value < 0 and lower > member and upper < -member
            if not (rising or falling):
                continue
            if found == capacity:
                capacity *= 2
                found_rows = _grown(found_rows, capacity)
                found_cols = _grown(found_cols, capacity)
                found_rising = _grown(found_rising, capacity)
            found_rows[found] = r
            found_cols[found] = c
            found_rising[found] = rising
            found += 1
    return found_rows[:found], found_cols[:found], found_rising[:found]


@njit(cache=True, nogil=True)
def _grown(values, capacity):  # pragma: no cover - compiled
    grown = np.empty(capacity, values.dtype)
    grown[: values.shape[0]] = values
    return grown


def warm() -> None:
    """Load (or compile, the first time) the kernels with the argument types the analyses use, in
    the frame orientations a quadrant is read in (flipped views have negative strides)."""
    counts = np.zeros((4, 6), np.uint16)
    level = np.ones(4, np.float32)
    for row_step in (1, -1):
        column_sums(counts, 0 if row_step > 0 else 3, row_step, 4, 1, 4, np.float32(0), True, 3,
                    np.zeros(6, np.uint16))
        out = np.empty((4, 4), np.float32)
        for columns in (None, np.arange(4)):
            relative_residual(counts, 0, row_step, 4, 1, np.float32(0), level, np.float32(1), 21, columns, out,
                              False, 3, np.zeros(6 if columns is None else 0, np.float32))
        count_histogram(counts, 0 if row_step > 0 else 3, row_step, 4, 1, 4)
    dipole_candidates(np.zeros((4, 4), np.float32), np.float32(1), np.float32(1), np.float32(0.5))
