"""Statistics of pixel values, for the raw-data checks and the analyses alike.

Counts are 16-bit integers: one bincount of a region holds every order statistic and clipped
moment exactly, and histograms add up band after band or frame after frame. Sorting float64
copies of millions of pixels (np.percentile) gives the same numbers several times slower.
Lost (0 ADU) and saturated (65535 ADU) pixels are left out of every statistic.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

ADC_SATURATED = 65535
LOST_PIXEL = 0
ADU_BINS = 65536
CLIP_SIGMA = 5.0


@dataclass(frozen=True)
class ClippedStats:
    mean: float
    std: float
    median: float
    count: int  # values kept by the clipping


NAN_STATS = ClippedStats(math.nan, math.nan, math.nan, 0)


@dataclass(frozen=True)
class RegionStats:
    """What the raw-data checks keep of a region of a frame (ADU)."""

    median: float
    std: float  # of the pixels within 5 sigma of the median: cosmic rays and hot pixels left out
    mean: float  # of the same pixels
    clipped_mean: float = math.nan  # iteratively CLIP_SIGMA-clipped mean (histogram_stats): the offset


def adu_histogram(values: np.ndarray) -> np.ndarray:
    """Counts per ADU value (0..65535), lost (0) and saturated (65535) pixels left out."""
    counts = np.bincount(values.ravel(), minlength=ADU_BINS)
    counts[LOST_PIXEL] = counts[ADC_SATURATED] = 0
    return counts


def region_stats(values: np.ndarray) -> RegionStats:
    """Median, windowed std and mean, and clipped mean of a region's counts (uint16)."""
    return histogram_region_stats(adu_histogram(values))


def histogram_region_stats(counts: np.ndarray) -> RegionStats:
    """region_stats of a region given as its counts per ADU value (lost and saturated left out)."""
    if counts[LOST_PIXEL] or counts[ADC_SATURATED]:  # left out of a copy (no copy when already 0)
        counts = counts.copy()
        counts[LOST_PIXEL] = counts[ADC_SATURATED] = 0
    occupied = OccupiedCounts.of(counts)
    median, std, mean = _robust_stats(occupied)
    return RegionStats(median, std, mean, _histogram_stats(occupied, 0.0, CLIP_SIGMA).mean)


@dataclass(frozen=True)
class OccupiedCounts:
    """Integer counts per value and their running sum over the occupied bins only, [first, stop)
    (from the first to the last non-zero bin): the order statistics need no pass over the empty
    bins of a 65536-bin histogram (a region's pixels fill ten to a few thousand bins, and a few
    cosmic rays stretch the span up to the ADC ceiling at most)."""

    counts: np.ndarray  # every bin
    first: int
    cumulative: np.ndarray  # int64 running sum of counts[first:stop]; empty when every bin is 0

    @classmethod
    def of(cls, counts: np.ndarray) -> OccupiedCounts:
        first, stop = occupied_bins(counts)
        return cls(counts, first, np.cumsum(counts[first:stop], dtype=np.int64))

    @property
    def total(self) -> int:
        return int(self.cumulative[-1]) if self.cumulative.size else 0


def occupied_bins(counts: np.ndarray) -> tuple[int, int]:
    """(first, stop): from the first to past the last non-zero bin; (0, 0) when every bin is 0."""
    nonzero = counts != 0
    # the blocks of 1024 bins holding any count first (a 65536-bin histogram's are 64), then the
    # bins in the first and last of them: no strided scan back from the end of the histogram
    block = 1024 if nonzero.size % 1024 == 0 else 1
    blocks = np.flatnonzero(nonzero.reshape(-1, block).any(axis=1))
    if blocks.size == 0:
        return 0, 0
    head, tail = int(blocks[0]) * block, int(blocks[-1]) * block
    return (head + int(nonzero[head: head + block].argmax()),
            tail + block - int(nonzero[tail: tail + block][::-1].argmax()))


def robust_stats(counts: np.ndarray) -> tuple[float, float, float]:
    """(median, std, mean) of values given as integer counts per value (from 0).

    The median and quartiles interpolate as np.percentile does. Counts are integers: the
    interquartile range only seeds the clip window, at least 1 ADU wide, and the std (ddof 0)
    and mean are those of the values inside it.
    """
    return _robust_stats(OccupiedCounts.of(counts))


def _robust_stats(occupied: OccupiedCounts) -> tuple[float, float, float]:
    n = occupied.total
    if n == 0:
        return math.nan, math.nan, math.nan
    counts, cumulative = occupied.counts, occupied.cumulative

    def ordered(k: int) -> float:  # the k-th smallest value (0-based): no bin before `first` counts
        return float(occupied.first + np.searchsorted(cumulative, k, side="right"))

    def percentile(p: float) -> float:  # numpy's default (linear) interpolation
        h = (n - 1) * p / 100.0
        low = int(math.floor(h))
        a = ordered(low)
        return a + (h - low) * (ordered(min(low + 1, n - 1)) - a)

    q25, median, q75 = percentile(25), percentile(50), percentile(75)
    window = 5 * max((q75 - q25) / 1.349, 1.0)
    lo, hi = max(int(math.ceil(median - window)), 0), int(math.floor(median + window))
    kept = counts[lo: hi + 1].astype(np.float64)
    v = np.arange(lo, lo + kept.size, dtype=np.float64)
    total = kept.sum()
    mean = float(kept @ v / total)
    return median, float(math.sqrt(kept @ (v - mean) ** 2 / total)), mean


def histogram_stats(counts: np.ndarray, first_value: float = 0.0, nsigma: float = CLIP_SIGMA) -> ClippedStats:
    """Sigma-clipped mean and std of integer values given as integer counts per value.

    The window starts at nsigma x the interquartile sigma (at least one bin: the values are
    quantised) around the median, then follows the std of the kept values until it settles.
    """
    return _histogram_stats(OccupiedCounts.of(counts), first_value, nsigma)


def _histogram_stats(occupied: OccupiedCounts, first_value: float, nsigma: float) -> ClippedStats:
    total = occupied.total
    if total == 0:
        return NAN_STATS
    counts, first, cumulative = occupied.counts, occupied.first, occupied.cumulative
    size = cumulative.size

    def value(i: int) -> float:  # the value of occupied bin i, as first_value + np.arange(...) makes it
        return first_value + float(first + i)

    def quantile_index(p: float) -> int:  # the first bin whose running sum reaches p x total
        reach = math.ceil(p * float(total))  # running sums are integers: >= x is >= ceil(x)
        return min(int(np.searchsorted(cumulative, reach)), size - 1)

    middle = quantile_index(0.5)
    median = value(middle)
    sigma = max((value(quantile_index(0.75)) - value(quantile_index(0.25))) / 1.349, 1.0)
    kept_before = None
    mean = std = math.nan
    kept = 0
    for _ in range(20):
        run = _bins_within(value, median, nsigma * sigma, middle, size)
        if run is None:  # a negative (or NaN) window keeps nothing
            return NAN_STATS
        a, b = run
        signature = (a, b - a)
        if signature == kept_before:
            break
        kept_before = signature
        ck = counts[first + a: first + b].astype(np.float64)
        vk = first_value + np.arange(first + a, first + b, dtype=np.float64)
        kept = int(ck.sum())
        if kept == 0:
            return NAN_STATS
        mean = float(ck @ vk / kept)
        variance = float(ck @ (vk - mean) ** 2) / max(kept - 1, 1)
        std = math.sqrt(variance)
        sigma = max(std, 0.5)
    return ClippedStats(mean, std, median, kept)


def _bins_within(value: Callable[[int], float], median: float, limit: float, middle: int,
                 size: int) -> tuple[int, int] | None:
    """The run of bins [a, b) whose values v satisfy |v - median| <= limit, the median's bin
    `middle` among them (None if not even that one). The values increase with the bin, so the
    bins within are one run: its ends are found by testing bins next to a first guess with the
    very float operations numpy's |v - median| <= limit applies to every bin."""

    def within(i: int) -> bool:
        return abs(value(i) - median) <= limit

    if not within(middle):
        return None
    half = int(limit) if limit < size else size  # the half-width in bins, if the values step by 1
    a, b = max(middle - half, 0), min(middle + half + 1, size)
    while a > 0 and within(a - 1):
        a -= 1
    while not within(a):
        a += 1
    while b < size and within(b):
        b += 1
    while not within(b - 1):
        b -= 1
    return a, b


def clipped_stats(values: np.ndarray, nsigma: float = CLIP_SIGMA) -> ClippedStats:
    """Sigma-clipped mean and std of float values (a stacked image), in a window around the median.

    The median and the first window width come from a regular subsample (1 pixel in 16 of a
    large image: ample for a window) of the finite values; mean and std use every pixel inside
    the window (compiled sweeps, kernels.window_count then window_moments: no copies of the kept
    pixels; NaN and inf fail the window's comparison). The window's count is taken first: the
    last iteration, which finds the window settled, needs no moments.
    """
    # compiled: loaded by the processes that need it
    from .compiled.kernels import window_count, window_moments

    values = np.ravel(values)
    if values.dtype not in (np.float32, np.float64):
        values = values.astype(np.float64)
    values = np.ascontiguousarray(values)
    finite = np.isfinite(values)
    if not finite.all():  # the sample is of the finite values (copied only when some are not)
        values = values[finite]
    as_values = values.dtype.type  # window compared in the values' own precision, as numpy would
    if values.size == 0:
        return NAN_STATS
    sample = values[:: max(1, values.size // 250_000)]
    p1, p16, q25, median, q75, p84, p99 = np.percentile(sample, [1, 16, 25, 50, 75, 84, 99])
    # Stacks of integer counts are quantised (medians of few frames take few values): the
    # interquartile range may be 0, so the first window takes the widest robust width.
    sigma = max((q75 - q25) / 1.349, (p84 - p16) / 2.0, (p99 - p1) / 4.65, 1e-6)
    kept_before = -1
    mean = std = math.nan
    count = 0
    for _ in range(20):
        centre, half_width = as_values(median), as_values(nsigma * sigma)
        count = int(window_count(values, centre, half_width))
        if count == kept_before or count < 2:
            break
        kept_before = count
        _, window_mean, window_std = window_moments(values, centre, half_width)
        mean, std = float(window_mean), float(window_std)
        sigma = max(std, 1e-6)
    return ClippedStats(mean, std, float(median), count)
