"""The compiled loops of trap pumping (numba): a vertically pumped frame's relative dipole map and its
dipoles, from the quadrant's counts as read, in two sweeps instead of numpy's dozen.

- `column_sums`: per image column the float64 sum of the offset-subtracted counts (the column's
  injection level is this over the rows), and if asked a copy of the image's counts (what a
  frame keeps to replay columns later, made while the counts are read anyway);
- `relative_residual`: the relative map (image / level - 1), clipped at +-bound, its running mean
  over LOCAL_WINDOW rows and the residual (relative - running mean), row after row with the rows
  of the window held in a ring; for every column or only some (a trap's amplitude in a frame
  that did not detect it: the residual of its column replayed);
- `residual_pairs`: the same sweep of every column keeping only the vertical pairs of residuals
  that differ by more than a floor (a dipole's threshold is known only once the map's noise is:
  the floor is set below it), instead of writing the map and reading it again, and the running
  sum every few rows, from which `replayed_pixels` makes any residual again (a trap's amplitude
  in a frame that did not detect it) from a few dozen rows of its column;
- `count_histogram`: the counts' histogram (the unpumped frame's median without sorting);
- `dipole_candidates` (a map), `pair_candidates` (residual_pairs' pairs): the adjacent pairs
  whose difference passes the threshold and whose members deviate with their signs.

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
                sample, kept):  # pragma: no cover - compiled
    """Per column of counts[:, col0: col0 + width] the float64 sum of float32(count) - offset over
    the rows row0, row0 + row_step, ... (`rows` of them, in that order): numpy's
    `image.mean(axis=0, dtype=float64)` of the canonical image before its division. Into `sample`:
    the counts of the canonical image's every sample_step-th pixel (flat order). Into `kept` (None:
    not wanted): those rows of the counts, in that order (row i of kept is the sum's row i)."""
    sums = np.zeros(width, np.float64)
    for i in range(rows):
        row = counts[row0 + row_step * i, col0: col0 + width]
        if kept is None:
            for c in range(width):
                sums[c] += np.float64(np.float32(row[c]) - offset)
        else:
            kept_row = kept[i]
            for c in range(width):  # in the same loop: the row is read once
                value = row[c]
                kept_row[c] = value
                sums[c] += np.float64(np.float32(value) - offset)
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
    relative, clipped, running, picked, chosen, count = _start_running(counts, row0, row_step, rows, col0, offset,
                                                                       level, bound, window, columns, width)
    nonfinite = 0
    for i in range(rows):
        row_out = out[i]
        count = _residual_row(i, counts, row0, row_step, rows, col0, offset, level, bound, window, columns, relative,
                              clipped, running, picked, chosen, count, row_out)
        _take_sample(row_out, i, width, flip_cols, sample_step, sample)
        nonfinite += _nonfinite(row_out)
    return nonfinite


@njit(cache=True, nogil=True, error_model="numpy")
def residual_pairs(counts, row0, row_step, rows, col0, offset, level, bound, window, flip_cols, sample_step,
                   sample, floor, every, running_at, count_at):  # pragma: no cover - compiled
    """relative_residual of every column without keeping the map: the sample, the count of
    non-finite residuals, and the vertical pairs (r, r + 1) of residuals whose difference exceeds
    `floor` in absolute value: (rows r, columns, residual at r, at r + 1), row-major. These are
    all the pairs dipole_candidates would take with a limit >= floor, with the same values. Into
    running_at[j] and count_at[j]: the running sum and its count before row j x `every` (what
    replayed_pixels starts from)."""
    width = level.shape[0]
    relative, clipped, running, picked, chosen, count = _start_running(counts, row0, row_step, rows, col0, offset,
                                                                       level, bound, window, None, width)
    ring = np.empty((2, width), np.float32)  # map rows i - 1 and i
    capacity = 256
    found_rows = np.empty(capacity, np.intp)
    found_cols = np.empty(capacity, np.intp)
    found_lower = np.empty(capacity, np.float32)
    found_upper = np.empty(capacity, np.float32)
    found = 0
    nonfinite = 0
    for i in range(rows):
        if i % every == 0:
            running_at[i // every] = running
            count_at[i // every] = count
        upper_row = ring[i % 2]
        count = _residual_row(i, counts, row0, row_step, rows, col0, offset, level, bound, window, None, relative,
                              clipped, running, picked, chosen, count, upper_row)
        _take_sample(upper_row, i, width, flip_cols, sample_step, sample)
        nonfinite += _nonfinite(upper_row)
        if i == 0:
            continue
        lower_row = ring[(i - 1) % 2]
        hits = 0
        for c in range(width):  # branch-free first: most rows have no pair above the floor
            hits += abs(upper_row[c] - lower_row[c]) > floor
        if hits == 0:
            continue
        if found + hits > capacity:
            capacity = 2 * (found + hits)
            found_rows = _grown(found_rows, capacity)
            found_cols = _grown(found_cols, capacity)
            found_lower = _grown(found_lower, capacity)
            found_upper = _grown(found_upper, capacity)
        for c in range(width):
            if abs(upper_row[c] - lower_row[c]) > floor:
                found_rows[found] = i - 1
                found_cols[found] = c
                found_lower[found] = lower_row[c]
                found_upper[found] = upper_row[c]
                found += 1
    return nonfinite, found_rows[:found], found_cols[:found], found_lower[:found], found_upper[:found]


@njit(cache=True, nogil=True, error_model="numpy")
def replayed_pixels(counts, row0, row_step, rows, col0, offset, level, bound, window, every, running_at, count_at,
                    columns, first_rows, second_rows):  # pragma: no cover - compiled
    """The residuals at (first_rows[k], columns[k]) and (second_rows[k], columns[k]) of the map
    residual_pairs swept (columns in read order), each made again from the running sum it kept
    before the row, not from row 0: a few dozen rows of one column instead of the whole column.
    The same float32 operations on each value, in the same order: the same residuals."""
    half = window // 2
    first_out = np.empty(columns.shape[0], np.float32)
    second_out = np.empty(columns.shape[0], np.float32)
    one = np.float32(1.0)
    low = -bound
    for k in range(columns.shape[0]):
        column = columns[k]
        column_level = level[column]
        first, second = first_rows[k], second_rows[k]
        start = min(first, second) // every
        running = running_at[start, column]
        count = count_at[start]
        for i in range(start * every, max(first, second) + 1):
            ahead = i + half
            if ahead < rows:
                value = (np.float32(counts[row0 + row_step * ahead, col0 + column]) - offset) / column_level - one
                running += bound if value > bound else low if value < low else value  # noqa: FURB136 - as _relative_row
                count += 1
            behind = i - half - 1
            if behind >= 0:
                value = (np.float32(counts[row0 + row_step * behind, col0 + column]) - offset) / column_level - one
                running -= bound if value > bound else low if value < low else value  # noqa: FURB136 - as _relative_row
                count -= 1
            if i == first or i == second:
                own = (np.float32(counts[row0 + row_step * i, col0 + column]) - offset) / column_level - one
                residual = own - running * np.float32(1.0 / count)
                if i == first:
                    first_out[k] = residual
                if i == second:
                    second_out[k] = residual
    return first_out, second_out


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _start_running(counts, row0, row_step, rows, col0, offset, level, bound, window, columns,
                   width):  # pragma: no cover - compiled
    """The running mean's state before row 0: rings of the relative and clipped rows i - half - 1
    .. i + half, the sum of the first half rows (as values[:half].sum(axis=0)) and its count."""
    half = window // 2
    ring_rows = window + 1
    relative = np.empty((ring_rows, width), np.float32)
    clipped = np.empty((ring_rows, width), np.float32)
    running = np.zeros(width, np.float32)
    picked = np.empty(width, np.float32)
    chosen = np.empty(width, np.float32)
    if columns is not None:
        for k in range(width):
            chosen[k] = level[columns[k]]
    one = np.float32(1.0)
    for r in range(min(half, rows)):
        slot = r % ring_rows
        _relative_row(counts[row0 + row_step * r, col0:], columns, picked, offset, level, chosen, one, bound,
                      relative[slot], clipped[slot])
        if r == 0:
            running[:] = clipped[slot]
        else:
            for c in range(width):
                running[c] += clipped[slot, c]
    return relative, clipped, running, picked, chosen, min(half, rows)


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _residual_row(i, counts, row0, row_step, rows, col0, offset, level, bound, window, columns, relative, clipped,
                  running, picked, chosen, count, row_out):  # pragma: no cover - compiled
    """Row i of the residual map into row_out (the running sum moved on: row i + half in, row
    i - half - 1 out); returns the rows now summed."""
    half = window // 2
    ring_rows = window + 1
    width = row_out.shape[0]
    ahead = i + half
    if ahead < rows:
        slot = ahead % ring_rows
        _relative_row(counts[row0 + row_step * ahead, col0:], columns, picked, offset, level, chosen,
                      np.float32(1.0), bound, relative[slot], clipped[slot])
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
    for c in range(width):
        row_out[c] = own[c] - running[c] * scale
    return count


@njit(cache=True, nogil=True, inline="always")
def _nonfinite(row):  # pragma: no cover - compiled
    nonfinite = 0
    for c in range(row.shape[0]):
        nonfinite += not np.isfinite(row[c])
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
    for r in range(rows - 1):
        lower_row = residual[r]
        upper_row = residual[r + 1]
        hits = 0
        for c in range(width):  # a branch-free sweep first: most rows have no candidate
            hits += abs(upper_row[c] - lower_row[c]) > limit
        if hits == 0:
            continue
        for c in range(width):
            kind = _dipole_kind(lower_row[c], upper_row[c], limit, member_floor, member_share)
            if kind == 0:
                continue
            if found == capacity:
                capacity *= 2
                found_rows = _grown(found_rows, capacity)
                found_cols = _grown(found_cols, capacity)
                found_rising = _grown(found_rising, capacity)
            found_rows[found] = r
            found_cols[found] = c
            found_rising[found] = kind > 0
            found += 1
    return found_rows[:found], found_cols[:found], found_rising[:found]


@njit(cache=True, nogil=True)
def pair_candidates(lower, upper, limit, member_floor, member_share):  # pragma: no cover - compiled
    """dipole_candidates of the pairs residual_pairs kept (residuals at r, at r + 1), the limit at
    least residual_pairs' floor: per pair 1 a rising dipole, -1 a falling one, 0 none."""
    kind = np.zeros(lower.shape[0], np.int8)
    for k in range(lower.shape[0]):
        kind[k] = _dipole_kind(lower[k], upper[k], limit, member_floor, member_share)
    return kind


@njit(cache=True, nogil=True, inline="always")
def _dipole_kind(lower, upper, limit, member_floor, member_share):  # pragma: no cover - compiled
    """1: the pair (lower at r, upper at r + 1) is a rising dipole, -1 a falling one, 0 none:
    |difference| > limit and each member beyond +-max(member_floor, member_share x half the
    difference), with its sign."""
    difference = upper - lower
    if not abs(difference) > limit:
        return 0
    value = difference * np.float32(0.5)
    member = max(member_floor, member_share * abs(value))
    if value > 0 and lower < -member and upper > member:
        return 1
    if value < 0 and lower > member and upper < -member:
        return -1
    return 0


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
        for kept in (None, np.empty((4, 4), np.uint16)):
            column_sums(counts, 0 if row_step > 0 else 3, row_step, 4, 1, 4, np.float32(0), True, 3,
                        np.zeros(6, np.uint16), kept)
        out = np.empty((4, 4), np.float32)
        for columns in (None, np.arange(4)):
            relative_residual(counts, 0, row_step, 4, 1, np.float32(0), level, np.float32(1), 21, columns, out,
                              False, 3, np.zeros(6 if columns is None else 0, np.float32))
        running_at, count_at = np.empty((2, 4), np.float32), np.empty(2, np.int64)
        _, _rows, _cols, lower, upper = residual_pairs(counts, 0, row_step, 4, 1, np.float32(0), level, np.float32(1),
                                                       21, False, 3, np.zeros(6, np.float32), np.float32(1), 2,
                                                       running_at, count_at)
        replayed_pixels(counts, 0, row_step, 4, 1, np.float32(0), level, np.float32(1), 21, 2, running_at, count_at,
                        np.arange(2), np.arange(2), np.arange(2))
        count_histogram(counts, 0 if row_step > 0 else 3, row_step, 4, 1, 4)
    dipole_candidates(np.zeros((4, 4), np.float32), np.float32(1), np.float32(1), np.float32(0.5))
    pair_candidates(lower, upper, np.float32(1), np.float32(1), np.float32(0.5))
