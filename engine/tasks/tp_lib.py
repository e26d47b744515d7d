"""Trap-pumping science as pure functions: relative dipole maps, dipole detection, the pumping law
and its fit. Arrays in, numbers out; no context, no files. `vertical_map` and `find_dipoles` define
the vertical map and its dipoles in numpy; `CountsMap` makes the same, bit for bit, from a
quadrant's uint16 counts as read, in compiled sweeps (compiled/tp_kernels.py): what the analysis runs.

Conventions (canonical quadrant orientation, engine/formats/geometry.py): axis 0 of a map is the
direction charge was pumped along (rows for vertical pumping, columns for serial pumping);
index 0 is next to the output, so a higher index is read later. A trap at index y with polarity
+1 moved charge into y + 1 (its own pixel shows a deficit, y + 1 an excess); polarity -1 moved
it into y - 1.

The pumping law: a trap of release time tau pumped n times with phase time t moves
A = n * pc * (exp(-t/tau) - exp(-2t/tau)) electrons (at most n * pc / 4, at t = tau ln 2). For
each trap the amplitudes measured at every phase time (also where the dipole stays below the
detection threshold) are fitted: for a given tau the best pc is linear, so tau is scanned on a
fine log grid for all traps at once and refined by a parabola through the best three points.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from .ptc_lib import percentiles

F32 = np.float32
LOCAL_WINDOW = 21  # pixels along the pumping axis for the local background (vison's 21-px filter)
CLIP_FOR_BACKGROUND = 4.0  # sigma: dipoles and hot pixels are clipped before the local mean
DIPOLE_THRESHOLD_SIGMA = 4.0  # dipole amplitude (half the pair difference) in pixel-noise sigmas
MEMBER_THRESHOLD_SIGMA = 1.5  # each pixel of the pair must deviate by this much, with its sign,
MEMBER_SHARE = 0.5  # and by half the dipole amplitude: a bright dipole's pixel beside a noise dip is no dipole
SERIAL_PHASE_TIME_US = 4.75  # serial transfer phase time added to the serial dwell (vison's TP02)
TAU_GRID_POINTS = 800
# a map-less sweep keeps the residual pairs differing by more than the dipole limit of this share of the
# relative map's noise: the residual map's noise, whose limit counts, is ~0.97 of it (a 21-row mean taken
# out); a lower one (strong structure along the columns) has the map made again
PAIR_FLOOR_SHARE = 0.8
REPLAY_EVERY = 64  # rows between the running sums a map-less sweep keeps (to make any residual again)
ONE_SIGMA_PERCENTILES = np.array([15.865, 84.135])


# ---------------------------------------------------------------------------------------------
# Relative maps
# ---------------------------------------------------------------------------------------------

def robust_sigma(values: np.ndarray, max_samples: int = 100_000) -> float:
    """Half the 15.9-84.1 percentile range of a regular subsample: the std of the Gaussian core."""
    flat = np.ravel(values)
    return sample_sigma(flat[:: sample_step(flat.size, max_samples)])


def sample_step(size: int, max_samples: int = 100_000) -> int:
    """The stride of robust_sigma's regular subsample of `size` values."""
    return max(1, size // max_samples)


def sample_sigma(sample: np.ndarray) -> float:
    """robust_sigma of an already drawn subsample (non-finite values left out)."""
    sample = sample[np.isfinite(sample)]
    if sample.size < 8:
        return math.nan
    low, high = percentiles(sample, ONE_SIGMA_PERCENTILES)
    return float(high - low) / 2.0


def running_mean(values: np.ndarray, window: int = LOCAL_WINDOW) -> np.ndarray:
    """Centred running mean along axis 0, the window shrinking at the ends.

    A running sum updated row by row: each step is a whole-row vector operation, several times
    faster than a cumulative sum or a filter along the strided axis of a C-ordered map.
    """
    n = values.shape[0]
    half = window // 2
    out = np.empty_like(values)
    running = values[:half].sum(axis=0, dtype=values.dtype)
    count = min(half, n)
    for i in range(n):
        if i + half < n:
            running += values[i + half]
            count += 1
        if i - half - 1 >= 0:
            running -= values[i - half - 1]
            count -= 1
        np.multiply(running, values.dtype.type(1.0 / count), out=out[i])
    return out


def residual_map(relative: np.ndarray) -> tuple[np.ndarray, float]:
    """(relative map minus its local background along axis 0, robust std of the result).

    The background is the running mean of the map clipped at CLIP_FOR_BACKGROUND sigma: dipoles
    sum to zero and hot pixels are clipped, so neither pulls it; slow structure along the axis
    (the first rows' transfer losses, injection gradients) goes away.
    """
    sigma = robust_sigma(relative)
    if not math.isfinite(sigma) or sigma <= 0:
        return np.zeros_like(relative), math.nan
    bound = relative.dtype.type(CLIP_FOR_BACKGROUND * sigma)
    clipped = np.clip(relative, -bound, bound)
    residual = running_mean(clipped)
    np.subtract(relative, residual, out=residual)
    return residual, robust_sigma(residual)


def vertical_map(image_adu: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Relative dipole map of a vertically pumped frame: (residual map, column level ADU, sigma).

    `image_adu`: offset-subtracted canonical image rows x columns (float32). Each column is
    divided by its mean over rows (the injection level of that column: dipoles conserve charge,
    so they do not bias it), then the local background along the column is removed.
    """
    level = image_adu.mean(axis=0, dtype=np.float64).astype(F32)
    safe = np.where(level > 0, level, np.nan).astype(F32)
    relative = image_adu / safe
    relative -= F32(1.0)
    residual, sigma = residual_map(relative)
    if not np.isfinite(residual).all():  # columns without level (checked first: a whole-map pass)
        np.nan_to_num(residual, copy=False)
    return residual, level, sigma


@dataclass(frozen=True)
class ImageWindow:
    """Where the canonical image rows [first, last) and columns of a quadrant lie in its counts as
    read (frame orientation): canonical row i of the window is read row row0 + row_step * i, the
    window's columns are read columns [col0, col0 + width), in reverse order if flip_cols."""

    row0: int
    row_step: int
    rows: int
    col0: int
    width: int
    flip_cols: bool

    @classmethod
    def of(cls, quadrant_shape: tuple[int, int], flips: tuple[bool, bool], rows: tuple[int, int],
           cols: tuple[int, int]) -> ImageWindow:
        height, quadrant_width = quadrant_shape
        (first, last), (start, stop) = rows, cols
        row0, row_step = (height - 1 - first, -1) if flips[0] else (first, 1)
        col0 = quadrant_width - stop if flips[1] else start
        return cls(row0, row_step, last - first, col0, stop - start, flips[1])

    def canonical(self, read_order: np.ndarray) -> np.ndarray:
        """A per-column array (last axis in read order) in canonical column order (a view)."""
        return read_order[..., ::-1] if self.flip_cols else read_order

    def read_columns(self, canonical: np.ndarray) -> np.ndarray:
        """Read-order column indices of canonical ones (and back)."""
        return self.width - 1 - canonical if self.flip_cols else canonical

    def image(self, counts: np.ndarray) -> np.ndarray:
        """The window's counts in canonical orientation (a view)."""
        rows = slice(self.row0, self.row0 - self.rows if self.row0 - self.rows >= 0 else None, -1) \
            if self.row_step < 0 else slice(self.row0, self.row0 + self.rows)
        return self.canonical(counts[rows, self.col0: self.col0 + self.width])


def window_median(counts: np.ndarray, window: ImageWindow, offset: float) -> float:
    """np.median of the window's offset-subtracted counts (float32), bit for bit, from the counts'
    histogram: subtracting the offset keeps their order, so the middle pixels are the middle counts."""
    from .compiled import tp_kernels

    w = window
    histogram = tp_kernels.count_histogram(counts, w.row0, w.row_step, w.rows, w.col0, w.width)
    size = w.rows * w.width
    middle = [size // 2 - 1, size // 2] if size % 2 == 0 else [size // 2]
    values = np.searchsorted(np.cumsum(histogram), np.array(middle), side="right").astype(np.uint16)
    return float(np.mean(np.subtract(values, F32(offset), dtype=F32)))  # np.median's mean of the middle ones


@dataclass
class CountsMap:
    """A vertically pumped frame's relative dipole map made from its counts as read: vertical_map
    of the offset-subtracted canonical image, bit for bit, in compiled sweeps
    (compiled/tp_kernels.py) instead of numpy's dozen passes. The map itself need not be kept
    (`with_map=False`, or `drop_map`): its dipoles come from the pairs of residuals the sweep kept
    (tp_kernels.residual_pairs), and what made it replays any of its columns (a trap's amplitude in
    a frame that did not detect it) or the whole map from the counts."""

    counts: np.ndarray  # the quadrant as read (uint16, C-ordered)
    window: ImageWindow
    offset: np.float32
    level: np.ndarray  # per canonical column (float32): mean over the rows of the offset-subtracted counts
    sigma: float  # robust std of the residual map (NaN: no map, vertical_map's all-zero one)
    bound: np.float32  # clip of the relative map before its running mean
    residual: np.ndarray | None  # rows x columns, columns in read order (window.canonical views it)
    pairs: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None  # residual_pairs' (without the map)
    pair_floor: float = math.inf  # ... the difference they exceed (a float32)
    running_at: tuple[np.ndarray, np.ndarray] | None = None  # ... and its running sums and counts every REPLAY_EVERY rows

    @classmethod
    def of(cls, counts: np.ndarray, window: ImageWindow, offset: float, buffer: np.ndarray | None = None,
           keep: np.ndarray | None = None, with_map: bool = True) -> CountsMap:
        """The map of `counts` (`buffer`: a float32 array of at least the map's size to hold it, the
        previous frame's if its map was dropped: no fresh pages to fault in per frame). `keep`: a
        uint16 array of the window's shape (rows, width) to copy the window's counts into, in the
        same sweep; the map then holds it, not `counts` (a reused array instead of the frame's).
        `with_map` False: no map (its dipoles from the pairs of residuals that may be dipoles),
        unless some residuals are not finite (vertical_map zeroes them: the map is made)."""
        from .compiled import tp_kernels

        w = window
        offset32 = F32(offset)
        size = w.rows * w.width
        step = sample_step(size)
        counts_sample = np.empty(len(range(0, size, step)), np.uint16)  # robust_sigma's subsample
        sums = tp_kernels.column_sums(counts, w.row0, w.row_step, w.rows, w.col0, w.width, offset32, w.flip_cols,
                                      step, counts_sample, keep)
        if keep is not None:
            counts, w = keep, ImageWindow(0, 1, w.rows, 0, w.width, w.flip_cols)
        level_read = (sums / w.rows).astype(F32)
        safe = np.where(level_read > 0, level_read, np.nan).astype(F32)
        # robust_sigma(relative) from its subsample only: no relative map
        level = np.ascontiguousarray(w.canonical(level_read))
        safe_canonical = np.where(level > 0, level, np.nan).astype(F32)
        sample = np.subtract(counts_sample, offset32, dtype=F32) / safe_canonical[_sample_columns(size, step, w.width)]
        sample -= F32(1.0)
        sigma = sample_sigma(sample)
        if not math.isfinite(sigma) or sigma <= 0:
            return cls(counts, w, offset32, level, math.nan, F32(0), None)
        bound = F32(CLIP_FOR_BACKGROUND * sigma)
        residual_sample = np.empty(counts_sample.size, F32)
        if not with_map:
            floor = dipole_limit(PAIR_FLOOR_SHARE * sigma)
            checkpoints = -(-w.rows // REPLAY_EVERY)
            running_at = (np.empty((checkpoints, w.width), F32), np.empty(checkpoints, np.int64))
            nonfinite, *pairs = tp_kernels.residual_pairs(counts, w.row0, w.row_step, w.rows, w.col0, offset32, safe,
                                                          bound, LOCAL_WINDOW, w.flip_cols, step, residual_sample,
                                                          floor, REPLAY_EVERY, *running_at)
            if not nonfinite:
                return cls(counts, w, offset32, level, sample_sigma(residual_sample), bound, None, tuple(pairs), floor,
                           running_at)
        if buffer is not None and buffer.size >= w.rows * w.width:
            residual = buffer.reshape(-1)[: w.rows * w.width].reshape(w.rows, w.width)
        else:
            residual = np.empty((w.rows, w.width), F32)
        nonfinite = tp_kernels.relative_residual(counts, w.row0, w.row_step, w.rows, w.col0, offset32, safe, bound,
                                                 LOCAL_WINDOW, None, residual, w.flip_cols, step, residual_sample)
        sigma = sample_sigma(residual_sample)  # before NaN columns are zeroed, as vertical_map
        if nonfinite:
            np.nan_to_num(residual, copy=False)
        return cls(counts, w, offset32, level, sigma, bound, residual)

    @property
    def canonical_residual(self) -> np.ndarray:
        """vertical_map's residual map (a view if kept, else made again; zeros where it has none)."""
        if not math.isfinite(self.sigma) and self.residual is None:
            return np.zeros((self.window.rows, self.window.width), F32)
        return self.window.canonical(self._map())

    def _map(self) -> np.ndarray:
        """The residual map (columns in read order): the one kept, or made again from the counts."""
        if self.residual is not None:
            return self.residual
        from .compiled import tp_kernels

        w = self.window
        residual = np.empty((w.rows, w.width), F32)
        if tp_kernels.relative_residual(self.counts, w.row0, w.row_step, w.rows, w.col0, self.offset,
                                        self._safe_level_read(), self.bound, LOCAL_WINDOW, None, residual, w.flip_cols,
                                        1, np.zeros(0, F32)):
            np.nan_to_num(residual, copy=False)
        return residual

    def _safe_level_read(self) -> np.ndarray:
        """The level by column in read order, NaN where not positive (what the sweeps divide by)."""
        level_read = self.window.canonical(self.level)
        return np.where(level_read > 0, level_read, np.nan).astype(F32)

    def dipoles(self, threshold_sigma: float = DIPOLE_THRESHOLD_SIGMA,
                member_sigma: float = MEMBER_THRESHOLD_SIGMA) -> Dipoles:
        """find_dipoles of the map (the same dipoles in the same order), in one compiled sweep of the
        map or of the pairs of residuals kept without it."""
        from .compiled import tp_kernels

        empty = np.zeros(0, np.intp)
        if self.window.rows < 2 or not self.sigma > 0:  # find_dipoles' NaN or zero sigma; no map
            return Dipoles(empty, empty, empty, np.zeros(0))
        limit = dipole_limit(self.sigma, threshold_sigma)
        member_floor, share = F32(member_sigma * self.sigma), F32(MEMBER_SHARE)
        if self.residual is None and self.pairs is not None and limit >= self.pair_floor:
            pair_rows, pair_cols, lower, upper = self.pairs  # every pair beyond the limit
            kind = tp_kernels.pair_candidates(lower, upper, limit, member_floor, share)
            chosen = kind != 0
            rows, cols, rising = pair_rows[chosen], pair_cols[chosen], kind[chosen] > 0
            value = np.subtract(upper[chosen], lower[chosen]) * F32(0.5)
        else:
            residual = self._map()
            rows, cols, rising = tp_kernels.dipole_candidates(residual, limit, member_floor, share)
            value = np.subtract(residual[rows + 1, cols], residual[rows, cols]) * F32(0.5)
        cols = self.window.read_columns(cols)
        order = np.lexsort((cols, rows))  # find_dipoles' order: canonical row-major
        rows, cols, rising, value = rows[order], cols[order], rising[order], value[order]
        falling = ~rising
        along = np.concatenate([rows[rising], rows[falling] + 1])
        across = np.concatenate([cols[rising], cols[falling]])
        polarity = np.concatenate([np.ones(int(rising.sum()), np.intp), -np.ones(int(falling.sum()), np.intp)])
        amplitude = np.concatenate([value[rising], -value[falling]])
        return Dipoles(along.astype(np.intp), across.astype(np.intp), polarity, amplitude.astype(np.float64))

    def drop_map(self) -> np.ndarray | None:
        """Keep only what replays the map's columns; the map's array is handed back (to reuse)."""
        dropped, self.residual = self.residual, None
        return dropped

    def amplitudes(self, traps: list[tuple[int, int, int]]) -> np.ndarray:
        """dipole_amplitudes of the map, from the map or, without it, its traps' pixels made again (from
        the running sums a map-less sweep kept, else their whole columns)."""
        if not traps:
            return np.zeros(0)
        if not math.isfinite(self.sigma):
            return dipole_amplitudes(self.canonical_residual, traps)
        if self.residual is not None:
            return dipole_amplitudes(self.window.canonical(self.residual), traps)
        from .compiled import tp_kernels

        w = self.window
        across = np.array([t[1] for t in traps], np.intp)
        if self.running_at is not None:  # each trap's two residuals from the running sum kept before them
            along = np.array([t[0] for t in traps], np.intp)
            neighbour = np.clip(along + np.array([t[2] for t in traps], np.intp), 0, w.rows - 1)
            own, pumped_into = tp_kernels.replayed_pixels(
                self.counts, w.row0, w.row_step, w.rows, w.col0, self.offset, self._safe_level_read(), self.bound,
                LOCAL_WINDOW, REPLAY_EVERY, *self.running_at, w.read_columns(across), along, neighbour)
            return (pumped_into.astype(np.float64) - own) / 2.0  # dipole_amplitudes'
        columns, slot = np.unique(across, return_inverse=True)
        replayed = np.empty((w.rows, columns.size), F32)
        if tp_kernels.relative_residual(self.counts, w.row0, w.row_step, w.rows, w.col0, self.offset,
                                        self._safe_level_read(), self.bound, LOCAL_WINDOW, w.read_columns(columns),
                                        replayed, w.flip_cols, 1, np.zeros(0, F32)):
            np.nan_to_num(replayed, copy=False)
        return dipole_amplitudes(replayed, [(t[0], int(k), t[2]) for t, k in zip(traps, slot)])


def dipole_limit(sigma: float, threshold_sigma: float = DIPOLE_THRESHOLD_SIGMA) -> np.float32:
    """The bound on a pair's |difference| (float32) of a dipole at threshold_sigma x sigma: find_dipoles'
    (|half difference| > t is |difference| > 2 t exactly: halving a float is exact)."""
    return np.asarray(threshold_sigma * sigma, F32) * F32(2)


@functools.lru_cache(maxsize=4)
def _sample_columns(size: int, step: int, width: int) -> np.ndarray:
    """The canonical column of each pixel of robust_sigma's subsample of a map of `width` columns
    (the same for every frame of a quadrant: made once)."""
    columns = np.arange(0, size, step) % width
    columns.flags.writeable = False
    return columns


def column_profile(image_adu: np.ndarray, clip_sigma: float = 5.0) -> np.ndarray:
    """Per column (axis 1) the mean over rows of pixels within clip_sigma of the column median:
    the serial profile of an injected frame, cosmic rays and hot pixels left out."""
    median = np.median(image_adu, axis=0)
    spread = np.percentile(image_adu, [15.865, 84.135], axis=0)
    sigma = np.maximum((spread[1] - spread[0]) / 2.0, 1e-3)
    keep = np.abs(image_adu - median) <= clip_sigma * sigma
    counts = keep.sum(axis=0)
    sums = np.where(keep, image_adu, 0).sum(axis=0, dtype=np.float64)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def serial_map(profile_adu: np.ndarray, reference_adu: np.ndarray) -> tuple[np.ndarray, float]:
    """Relative serial dipole profile: (residual along columns, sigma), from the pumped frame's
    column profile over the unpumped reference's (which carries the injection's column pattern)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = np.where(reference_adu > 0, profile_adu / reference_adu - 1.0, np.nan)
    relative = np.nan_to_num(relative - np.nanmedian(relative))
    residual, sigma = residual_map(relative[:, None])
    return residual[:, 0], sigma


# ---------------------------------------------------------------------------------------------
# Dipoles
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Dipoles:
    """Dipoles found in one map: index along the pumping axis, across it, polarity, amplitude
    (relative to the local level: half the pair's difference)."""

    along: np.ndarray
    across: np.ndarray
    polarity: np.ndarray
    amplitude: np.ndarray


def find_dipoles(residual: np.ndarray, sigma: float, threshold_sigma: float = DIPOLE_THRESHOLD_SIGMA,
                 member_sigma: float = MEMBER_THRESHOLD_SIGMA) -> Dipoles:
    """Adjacent pairs along axis 0 with a deficit on one side and an excess on the other.

    A pair (i, i + 1) with residual low at i and high at i + 1 is a trap at i of polarity +1;
    high at i and low at i + 1 a trap at i + 1 of polarity -1. The dipole amplitude, half the
    pair's difference, has noise sigma / sqrt(2): thresholding it (not each pixel at the full
    threshold, as vison did) finds faint dipoles with fewer false ones; each pixel must still
    deviate with its sign by a good share of the amplitude, so a bright dipole's pixel paired with
    a noise dip beside it is not taken for a second dipole.
    """
    if residual.ndim == 1:
        residual = residual[:, None]
    empty = np.zeros(0, np.intp)
    if residual.shape[0] < 2 or not math.isfinite(sigma) or sigma <= 0:
        return Dipoles(empty, empty, empty, np.zeros(0))
    # candidates first (rare), then the members' signs on those only; |half difference| > t
    # is |difference| > 2 t exactly (halving a float is exact): no half-difference map
    difference = np.subtract(residual[1:], residual[:-1])
    np.abs(difference, out=difference)
    limit = np.asarray(threshold_sigma * sigma, residual.dtype) * residual.dtype.type(2)
    rows, cols = np.nonzero(difference > limit)
    del difference
    lower, upper = residual[rows, cols], residual[rows + 1, cols]
    value = np.subtract(upper, lower) * residual.dtype.type(0.5)
    # each member carries its share: at least member_sigma and half the dipole amplitude
    member = np.maximum(member_sigma * sigma, MEMBER_SHARE * np.abs(value))
    rising = (value > 0) & (lower < -member) & (upper > member)
    falling = (value < 0) & (lower > member) & (upper < -member)
    rows_up, cols_up = rows[rising], cols[rising]
    rows_down, cols_down = rows[falling], cols[falling]
    along = np.concatenate([rows_up, rows_down + 1])
    across = np.concatenate([cols_up, cols_down])
    polarity = np.concatenate([np.ones(rows_up.size, np.intp), -np.ones(rows_down.size, np.intp)])
    amplitude = np.concatenate([value[rising], -value[falling]])
    return Dipoles(along.astype(np.intp), across.astype(np.intp), polarity, amplitude.astype(np.float64))


def merge_dipoles(found: list[Dipoles], tolerance: int = 1) -> list[tuple[int, int, int]]:
    """One (along, across, polarity) per trap from the dipoles of several maps of one pumping mode:
    brightest first, a fainter one of the same polarity within `tolerance` pixels along the axis
    (same position across it) is the same trap."""
    if not found:
        return []
    along = np.concatenate([d.along for d in found])
    across = np.concatenate([d.across for d in found])
    polarity = np.concatenate([d.polarity for d in found])
    amplitude = np.concatenate([d.amplitude for d in found])
    kept: list[tuple[int, int, int]] = []
    taken: dict[tuple[int, int], list[int]] = {}
    for i in np.argsort(-amplitude, kind="stable"):
        key = (int(across[i]), int(polarity[i]))
        position = int(along[i])
        if any(abs(position - p) <= tolerance for p in taken.get(key, [])):
            continue
        taken.setdefault(key, []).append(position)
        kept.append((position, key[0], key[1]))
    return kept


def dipole_amplitudes(residual: np.ndarray, traps: list[tuple[int, int, int]]) -> np.ndarray:
    """Amplitude (relative) of each trap's dipole in one map, detected there or not:
    (residual at the neighbour it pumps into - residual at its own pixel) / 2."""
    if residual.ndim == 1:
        residual = residual[:, None]
    if not traps:
        return np.zeros(0)
    along = np.array([t[0] for t in traps], np.intp)
    across = np.array([t[1] for t in traps], np.intp)
    polarity = np.array([t[2] for t in traps], np.intp)
    neighbour = np.clip(along + polarity, 0, residual.shape[0] - 1)
    return (residual[neighbour, across].astype(np.float64) - residual[along, across]) / 2.0


# ---------------------------------------------------------------------------------------------
# The pumping law and its fit
# ---------------------------------------------------------------------------------------------

def pumping_law(t_us: np.ndarray | float, tau_us: np.ndarray | float) -> np.ndarray:
    """Fraction of n * pc a trap moves at phase time t: exp(-t/tau) - exp(-2t/tau)."""
    x = np.asarray(t_us, np.float64) / np.asarray(tau_us, np.float64)
    return np.exp(-x) - np.exp(-2.0 * x)


@dataclass(frozen=True)
class ReleaseFit:
    tau_us: np.ndarray
    pc: np.ndarray
    rms_e: np.ndarray  # rms of the fit residuals (e-)


def fit_release(t_us: np.ndarray, amplitudes_e: np.ndarray, cycles: float,
                tau_range_us: tuple[float, float] | None = None) -> ReleaseFit:
    """Least-squares fit of A(t) = cycles * pc * law(t, tau) to each row of `amplitudes_e`
    (traps x phase times, electrons). tau within `tau_range_us` (default: a tenth of the shortest
    to ten times the longest phase time, as vison bounded it), pc >= 0."""
    t_us = np.asarray(t_us, np.float64)
    amplitudes = np.atleast_2d(np.asarray(amplitudes_e, np.float64))
    m = amplitudes.shape[0]
    if m == 0 or t_us.size == 0:
        return ReleaseFit(np.zeros(0), np.zeros(0), np.zeros(0))
    low, high = tau_range_us or (t_us.min() / 10.0, t_us.max() * 10.0)
    log_tau = np.linspace(math.log(low), math.log(high), TAU_GRID_POINTS)
    law = pumping_law(t_us[None, :], np.exp(log_tau)[:, None])  # grid x times
    norm = (law * law).sum(axis=1)  # grid
    projection = amplitudes @ law.T  # traps x grid
    total = (amplitudes * amplitudes).sum(axis=1)[:, None]
    gain = np.where(projection > 0, projection * projection / norm[None, :], 0.0)
    chi2 = total - gain
    best = np.argmin(chi2, axis=1)
    # parabola through the best grid point and its neighbours, in log tau
    inner = np.clip(best, 1, TAU_GRID_POINTS - 2)
    rows = np.arange(m)
    c0, c1, c2 = chi2[rows, inner - 1], chi2[rows, inner], chi2[rows, inner + 1]
    curvature = c0 - 2 * c1 + c2
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = np.where(curvature > 0, 0.5 * (c0 - c2) / curvature, 0.0)
    shift = np.clip(shift, -1.0, 1.0)
    step = log_tau[1] - log_tau[0]
    at_edge = (best == 0) | (best == TAU_GRID_POINTS - 1)
    fitted_log_tau = np.where(at_edge, log_tau[best], log_tau[inner] + shift * step)
    tau = np.exp(fitted_log_tau)
    shape = pumping_law(t_us[None, :], tau[:, None])
    scale = np.maximum((amplitudes * shape).sum(axis=1) / np.maximum((shape * shape).sum(axis=1), 1e-300), 0.0)
    pc = scale / cycles
    rms = np.sqrt(((amplitudes - scale[:, None] * shape) ** 2).mean(axis=1))
    return ReleaseFit(tau, pc, rms)


def pc_weighted_tau(tau_us: np.ndarray, pc: np.ndarray) -> float:
    """Pc-weighted mean release time (vison's <tau> per quadrant and mode); NaN without traps."""
    tau_us, pc = np.asarray(tau_us, float), np.asarray(pc, float)
    good = np.isfinite(tau_us) & np.isfinite(pc) & (pc > 0)
    if not good.any():
        return math.nan
    return float((tau_us[good] * pc[good]).sum() / pc[good].sum())
