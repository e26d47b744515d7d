"""The compiled loops of the master flats (numba): each frame's quadrant normalised and added to its
column's running sums in one sweep, the clipped mean taken from those sums, the box medians of
the illumination model.

`accumulate_flat`, per frame (uint16 image area, as read), one sweep over its pixels: the count
minus the frame's offset times 1 / its level, in float32 (x); per pixel the float64 sum and sum
of squares of x, the two highest and the lowest x seen (the candidates a clip would drop); per
illumination box the sum of the counts (the frame's binned illumination). numpy took a dozen
whole-plane passes for the same, each a fresh float32 plane.

`clipped_mean`: per pixel the mean of the frames with at most the two highest and the lowest
dropped, each only if it lies more than `nsigma` x the spread of the others away from their mean
(a cosmic ray, a hot flash); the mean's error (std of the kept / sqrt(kept)) and how many values
were dropped. The sums are float64: a flat's variance (~1e-5 of its squared mean) is the small
difference of a sum of squares ~n and n x mean^2, lost in float32's rounding (1e-7 x n), kept
in float64's.

`box_medians`: the median of each box of a plane (the illumination model's knots).

Compiled on first use and cached beside this file (`cache=True`); engine/worker_preload.py warms
them in the fork server (`warm`).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, fastmath={"reassoc", "nsz", "contract"})
def accumulate_flat(cube, frames, offsets, scales, row_box, col_edges, boxes, sums, squares,
                    high1, high2, low):  # pragma: no cover - compiled
    """Add the first `frames` image areas of `cube` (uint16 (K, rows, cols)) to the running sums
    (see module doc); x = (count - offsets[k]) x scales[k] in float32, numpy's operations.

    Row by row: a row of the sums (2048 pixels x 28 bytes) stays in the CPU cache while each
    frame's row passes through it, so the sums cross the memory bus once per batch of frames,
    not once per frame (0.9 ns a frame-pixel against 7 frame by frame).

    row_box[r]: the box row of image row r; col_edges: the box column edges; boxes[k, box row,
    box column] += the counts summed over the box (int64; the caller takes off the offsets).
    high1 >= high2 and low start at -inf, -inf, +inf."""
    rows, cols = cube.shape[1], cube.shape[2]
    boxes_across = col_edges.shape[0] - 1
    column_sums = np.zeros((frames, cols), np.int64)  # each frame's counts down the current box row
    for r in range(rows):
        s = sums[r]
        q = squares[r]
        h1 = high1[r]
        h2 = high2[r]
        lo = low[r]
        for k in range(frames):
            line = cube[k, r]
            off = offsets[k]
            scale = scales[k]
            counted = column_sums[k]
            for c in range(cols):
                count = line[c]
                counted[c] += count
                x = (np.float32(count) - off) * scale
                xd = np.float64(x)
                s[c] += xd
                q[c] += xd * xd
                top = h1[c]
                h2[c] = max(min(top, x), h2[c])
                h1[c] = max(x, top)
                lo[c] = min(x, lo[c])
        if r == rows - 1 or row_box[r + 1] != row_box[r]:  # a box row done: its boxes' sums
            for k in range(frames):
                box_row = boxes[k, row_box[r]]
                counted = column_sums[k]
                for b in range(boxes_across):
                    total = 0
                    for c in range(col_edges[b], col_edges[b + 1]):
                        total += counted[c]
                    box_row[b] += total
                counted[:] = 0


@njit(cache=True, nogil=True)
def clipped_mean(sums, squares, high1, high2, low, n, nsigma, min_clip_frames, mean, error):  # pragma: no cover
    """Per pixel the clipped mean of n frames into `mean`, its error into `error` (float32
    planes); returns the number of values dropped. With fewer than `min_clip_frames` frames
    nothing is dropped (too few others to judge an outlier by)."""
    rows, cols = sums.shape
    dropped = 0
    clip = n >= min_clip_frames
    others = n - 3
    for r in range(rows):
        for c in range(cols):
            total = sums[r, c]
            square = squares[r, c]
            kept = n
            if clip:
                h1 = np.float64(high1[r, c])
                h2 = np.float64(high2[r, c])
                lo = np.float64(low[r, c])
                # the others: every frame but the three candidates
                centre = (total - h1 - h2 - lo) / others
                spread2 = (square - h1 * h1 - h2 * h2 - lo * lo - others * centre * centre) / (others - 1)
                reach = nsigma * np.sqrt(max(spread2, 0.0))
                if h1 > centre + reach:
                    total -= h1
                    square -= h1 * h1
                    kept -= 1
                    if h2 > centre + reach:
                        total -= h2
                        square -= h2 * h2
                        kept -= 1
                if lo < centre - reach:
                    total -= lo
                    square -= lo * lo
                    kept -= 1
            m = total / kept
            mean[r, c] = m
            if kept > 1:
                variance = max((square - kept * m * m) / (kept - 1), 0.0)
                error[r, c] = np.sqrt(variance / kept)
            else:
                error[r, c] = 0.0
            dropped += n - kept
    return dropped


@njit(cache=True, nogil=True)
def box_medians(plane, row_edges, col_edges, out):  # pragma: no cover - compiled
    """out[i, j]: median of plane[row_edges[i]:row_edges[i + 1], col_edges[j]:col_edges[j + 1]]."""
    most = 0
    for i in range(row_edges.shape[0] - 1):
        for j in range(col_edges.shape[0] - 1):
            most = max(most, (row_edges[i + 1] - row_edges[i]) * (col_edges[j + 1] - col_edges[j]))
    buffer = np.empty(most, np.float64)
    for i in range(row_edges.shape[0] - 1):
        for j in range(col_edges.shape[0] - 1):
            k = 0
            for r in range(row_edges[i], row_edges[i + 1]):
                for c in range(col_edges[j], col_edges[j + 1]):
                    buffer[k] = plane[r, c]
                    k += 1
            out[i, j] = np.median(buffer[:k])


def warm() -> None:
    """Load (or compile, the first time) the kernels with the argument types the analyses use:
    every array C-contiguous (the frames copied into a batch cube, the planes allocated whole)."""
    cube = np.zeros((2, 4, 4), np.uint16)
    planes64 = np.zeros((2, 4, 4))
    planes32 = np.full((5, 4, 4), -np.inf, np.float32)
    edges = np.array([0, 2, 4], np.int64)
    accumulate_flat(cube, 2, np.zeros(2, np.float32), np.ones(2, np.float32), np.array([0, 0, 1, 1], np.int64),
                    edges, np.zeros((2, 2, 2), np.int64),
                    planes64[0], planes64[1], planes32[0], planes32[1], planes32[2])
    clipped_mean(planes64[0], planes64[1], planes32[0], planes32[1], planes32[2], 2, 5.0, 6, planes32[3], planes32[4])
    box_medians(planes32[3], edges, edges, np.zeros((2, 2)))
