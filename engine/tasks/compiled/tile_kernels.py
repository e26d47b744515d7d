"""The compiled loop of FITS tile compression (numba): one tile of a float32 plane quantised with
subtractive dithering and Rice coded in two sweeps, where astropy's writer takes five per tile
(a native copy, bytes for its quantiser, the quantiser's min/max and its loop, bytes again for
its Rice coder) and about 25 ns a pixel in all.

Both steps follow the FITS tiled image convention (Pence et al. 2010, FITS standard 4.0 section
10) as cfitsio implements them, operation for operation, so that the bytes are those astropy and
fpack write for the same plane (tests/test_tile_compression.py compares them):
- SUBTRACTIVE_DITHER_1: q = NINT((x - zero) / step + r - 0.5), r from the standard's table of
  10 000 uniform numbers (`dither_table`), the walk through it seeded by the tile's row number;
  zero is the tile's minimum rounded to a multiple of the step (double precision throughout, the
  step a float32 as cfitsio takes it).
- RICE_1, 32 pixels a block, 4 bytes a pixel: the first value as is, then each block's mapped
  differences with the split its mean calls for (5 bits say which), all-zero blocks in 5 bits,
  noisy blocks verbatim.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from numba import njit

DITHER_VALUES = 10_000  # the standard's N_RANDOM
RICE_BLOCK = 32  # pixels per Rice block (ZVAL1 of BLOCKSIZE)
_FS_BITS, _FS_MAX, _VALUE_BITS = 5, 25, 32
_RESERVED = 10  # cfitsio's N_RESERVED_VALUES: quantised levels kept free at each end of the int range

# a tile compresses (0), or is left to astropy's writer, which handles it another way:
TILE_DONE, TILE_NOT_FINITE, TILE_RANGE = 0, 1, 2


@cache  # 3 ms of Python loop: once per process, not once per plane (read-only: never write to it)
def dither_table() -> np.ndarray:
    """The standard's 10 000 dither values: Park & Miller's minimal generator (a = 16807,
    m = 2^31 - 1) from seed 1, each seed / m as a float32. Its 10 000th seed must be 1043618065."""
    a, m = 16807.0, 2147483647.0
    seed, values = 1.0, np.empty(DITHER_VALUES, np.float32)
    for i in range(DITHER_VALUES):
        product = a * seed
        seed = product - m * int(product / m)
        values[i] = seed / m
    if int(seed) != 1043618065:
        raise ArithmeticError("the dither table does not follow the FITS standard's generator")
    values.flags.writeable = False
    return values


@njit(cache=True, nogil=True)
def rice_encode(values, n, out):  # pragma: no cover - compiled
    """RICE_1 of the first n int32 `values` into `out` (at least 4 n + n / 8 + 16 bytes); the
    bytes written. The bit stream, most significant bit first, gathers in `pending` (`count`
    bits, fewer than 32 between codes) and leaves a 32-bit word at a time: a value's code (its
    `top` zeros, a one, its low `fs` bits) is appended at once, not bit by bit."""
    diff = np.empty(RICE_BLOCK, np.int64)
    pending, count, at = np.int64(values[0]) & 0xFFFFFFFF, _VALUE_BITS, 0  # the first value as is
    last = np.int64(values[0])
    for start in range(0, n, RICE_BLOCK):
        block = min(RICE_BLOCK, n - start)
        total = np.int64(0)
        for j in range(block):
            value = np.int64(values[start + j])
            step = np.int64(np.int32(value - last))  # int32 arithmetic, wrapping as C's does
            diff[j] = ((step << 1) ^ (step >> 63)) & 0xFFFFFFFF  # 0, -1, 1, -2, ... -> 0, 1, 2, 3, ...
            total += diff[j]
            last = value
        mean = (np.float64(total) - (block // 2) - 1) / block
        level = np.int64(np.uint32(max(mean, 0.0))) >> 1
        fs = 0
        while level > 0:
            level >>= 1
            fs += 1
        if fs >= _FS_MAX:
            code = _FS_MAX + 1  # noisy block: the differences as they are
        elif fs == 0 and total == 0:
            code = 0  # flat block: nothing more
        else:
            code = fs + 1
        pending = (pending << _FS_BITS) | code
        count += _FS_BITS
        while count >= 8:
            count -= 8
            out[at] = (pending >> count) & 0xFF
            at += 1
        if code == 0:
            continue
        if fs >= _FS_MAX:
            for j in range(block):
                pending = (pending << _VALUE_BITS) | diff[j]
                count += _VALUE_BITS
                while count >= 8:
                    count -= 8
                    out[at] = (pending >> count) & 0xFF
                    at += 1
            continue
        low, one = (np.int64(1) << fs) - 1, np.int64(1) << fs
        for j in range(block):
            v = diff[j]
            top = v >> fs
            while top + 1 + fs > 32:  # a far outlier: its leading zeros first
                zeros = min(top, 32)
                pending <<= zeros
                count += zeros
                while count >= 8:
                    count -= 8
                    out[at] = (pending >> count) & 0xFF
                    at += 1
                top -= zeros
            length = top + 1 + fs
            pending = (pending << length) | one | (v & low)
            count += length
            if count >= 32:
                count -= 32
                word = pending >> count
                out[at] = (word >> 24) & 0xFF
                out[at + 1] = (word >> 16) & 0xFF
                out[at + 2] = (word >> 8) & 0xFF
                out[at + 3] = word & 0xFF
                at += 4
        pending &= (np.int64(1) << count) - 1  # what was written is dropped: 63 bits never overflow
    while count >= 8:
        count -= 8
        out[at] = (pending >> count) & 0xFF
        at += 1
    if count > 0:  # the last byte, padded with zeros
        out[at] = (pending << (8 - count)) & 0xFF
        at += 1
    return at


@njit(cache=True, nogil=True)
def quantise_tile(tile, step, row, table, quantised):  # pragma: no cover - compiled
    """SUBTRACTIVE_DITHER_1 of `tile` (float32, any shape, C order) with `step` (a float32, as
    ZVAL of NOISEBIT is taken) for tile row number `row` (1 + tile index + ZDITHER0 - 1) into
    `quantised` (int32): (status, zero). Status TILE_NOT_FINITE if a pixel is NaN or infinite,
    TILE_RANGE if the levels would not fit an int32 (astropy then writes the tile otherwise)."""
    flat = tile.ravel()
    n = flat.size
    low, high = flat[0], flat[0]
    for i in range(n):
        x = flat[i]
        if not np.isfinite(x):
            return TILE_NOT_FINITE, 0.0
        low = min(low, x)
        high = max(high, x)
    delta = np.float64(step)
    spread = np.float64(high - low)  # a float32 difference, as cfitsio's
    if spread / delta > 2.0 * 2147483647.0 - _RESERVED:
        return TILE_RANGE, 0.0
    if spread / delta < 2147483647.0 - _RESERVED:
        zero = np.int64(np.float64(low) / delta + 0.5) * delta  # a multiple of the step (truncated, as C's cast)
    else:
        zero = (np.float64(low) + np.float64(high)) / 2.0
    seed = (row - 1) % DITHER_VALUES
    next_value = np.int64(np.float64(table[seed]) * 500.0)
    for i in range(n):
        level = (np.float64(flat[i]) - zero) / delta + np.float64(table[next_value]) - 0.5
        quantised[i] = np.int32(level + 0.5) if level >= 0.0 else np.int32(level - 0.5)
        next_value += 1
        if next_value == DITHER_VALUES:
            seed += 1
            if seed == DITHER_VALUES:
                seed = 0
            next_value = np.int64(np.float64(table[seed]) * 500.0)
    return TILE_DONE, zero


def warm() -> None:
    """Load (or compile, the first time) the kernels for the arrays compression gives them."""
    table = dither_table()
    quantised = np.empty(8, np.int32)
    quantise_tile(np.zeros((2, 4), np.float32), np.float32(1.0), 1, table, quantised)
    rice_encode(quantised, 8, np.empty(64, np.uint8))
