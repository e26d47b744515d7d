"""The compiled loop of charge injection (numba): one quadrant's image area folded over the on/off
cycle, in one sweep of its counts instead of numpy's five passes (float32 copy, offset
subtraction, row means, a finiteness check and the fold's sums).

`fold_rows` repeats chinj_lib.extract_lines' float arithmetic operation for operation: the
float32 difference count - offset, each fold line a float64 sum of its rows in canonical row
order (as chinj_lib.fold adds cycle after cycle). The row means are float64 sums in another
order than numpy's pairwise one, but exact: every float32(count) - float32(offset) with
|value| < 2^16 is a multiple of the offset's float32 ulp (2^-14 for offsets of 512-1023 ADU,
2^-13 up to 2047), so a row of a few thousand needs fewer than 53 bits and no sum rounds. That
is also why the row sums may be reassociated (fastmath "reassoc": the loop is vectorised) and
the columns swept in memory order. The statistics are bit for bit those of the numpy definition
(tests/test_chinj_nl_pass.py).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, fastmath={"reassoc"})
def fold_rows(quadrant, rows_reversed, col0, width, offset, first, stop, sums, counts, line_sums):  # pragma: no cover - compiled
    """Canonical rows [first, stop) of quadrant[:, col0: col0 + width] (uint16; canonical row r is
    quadrant[r], or quadrant[height - 1 - r] when `rows_reversed`: a flipped quadrant is swept in
    memory order), each as float32(count) - offset (float32): row r added into sums[r % period]
    (float64, period = sums.shape[0], columns in `quadrant`'s order) and counted in
    counts[r % period]; line_sums[r] its float64 sum. Rows below `first` (outside the readout
    window) are left out: line_sums NaN there."""
    period = sums.shape[0]
    height = quadrant.shape[0]
    for r in range(first):
        line_sums[r] = np.nan
    for r in range(first, stop):
        k = r % period
        row = quadrant[height - 1 - r if rows_reversed else r, col0: col0 + width]
        line = sums[k]
        total = 0.0
        for c in range(width):
            value = np.float64(np.float32(row[c]) - offset)
            line[c] += value
            total += value
        line_sums[r] = total
        counts[k] += 1


def warm() -> None:
    """Load (or compile, the first time) the kernel for the layouts a quadrant comes in: a
    contiguous array (the check's read, flips undone) and a view of a frame (any strides)."""
    counts = np.zeros((4, 6), np.uint16)
    for view in (counts, counts[::-1, ::-1]):
        for reversed_rows in (False, True):
            fold_rows(view, reversed_rows, 1, 4, np.float32(0), 1, 4, np.zeros((2, 4)), np.zeros(2, np.int64),
                      np.empty(4))
