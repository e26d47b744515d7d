"""Statistics of pixel values, for the raw-data checks and the analyses alike.

Counts are 16-bit integers: one bincount of a region holds every order statistic and clipped
moment exactly, and histograms add up band after band or frame after frame. Sorting float64
copies of millions of pixels (np.percentile) gives the same numbers several times slower.
Lost (0 ADU) and saturated (65535 ADU) pixels are left out of every statistic.
"""

from __future__ import annotations

import math
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
    counts = counts.copy()
    counts[LOST_PIXEL] = counts[ADC_SATURATED] = 0
    median, std, mean = robust_stats(counts)
    return RegionStats(median, std, mean, histogram_stats(counts).mean)


def robust_stats(counts: np.ndarray) -> tuple[float, float, float]:
    """(median, std, mean) of values given as counts per value (from 0).

    The median and quartiles interpolate as np.percentile does. Counts are integers: the
    interquartile range only seeds the clip window, at least 1 ADU wide, and the std (ddof 0)
    and mean are those of the values inside it.
    """
    n = int(counts.sum())
    if n == 0:
        return math.nan, math.nan, math.nan
    cumulative = np.cumsum(counts)

    def ordered(k: int) -> float:  # the k-th smallest value (0-based)
        return float(np.searchsorted(cumulative, k, side="right"))

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
    """Sigma-clipped mean and std of integer values given as counts per value.

    The window starts at nsigma x the interquartile sigma (at least one bin: the values are
    quantised) around the median, then follows the std of the kept values until it settles.
    """
    nonzero = np.flatnonzero(counts)
    if nonzero.size == 0:
        return NAN_STATS
    lo, hi = int(nonzero[0]), int(nonzero[-1]) + 1
    c = counts[lo:hi].astype(np.float64)
    v = first_value + np.arange(lo, hi, dtype=np.float64)
    cumulative = np.cumsum(c)
    total = cumulative[-1]

    def quantile(p: float) -> float:
        return float(v[min(int(np.searchsorted(cumulative, p * total)), v.size - 1)])

    median = quantile(0.5)
    sigma = max((quantile(0.75) - quantile(0.25)) / 1.349, 1.0)
    kept_before = None
    mean = std = math.nan
    kept = 0
    for _ in range(20):
        keep = np.abs(v - median) <= nsigma * sigma
        signature = (int(np.argmax(keep)), int(keep.sum()))
        if signature == kept_before:
            break
        kept_before = signature
        ck, vk = c[keep], v[keep]
        kept = int(ck.sum())
        if kept == 0:
            return NAN_STATS
        mean = float(ck @ vk / kept)
        variance = float(ck @ (vk - mean) ** 2) / max(kept - 1, 1)
        std = math.sqrt(variance)
        sigma = max(std, 0.5)
    return ClippedStats(mean, std, median, kept)


def clipped_stats(values: np.ndarray, nsigma: float = CLIP_SIGMA) -> ClippedStats:
    """Sigma-clipped mean and std of float values (a stacked image), in a window around the median.

    The median and the first window width come from a regular subsample (1 pixel in 16 of a
    large image: ample for a window); mean and std use every pixel inside the window (one
    compiled sweep per iteration, kernels.window_moments: no copies of the kept pixels).
    """
    from .compiled.kernels import window_moments  # compiled: loaded by the processes that need it

    values = np.ravel(values)
    values = values[np.isfinite(values)]
    if values.dtype not in (np.float32, np.float64):
        values = values.astype(np.float64)
    values = np.ascontiguousarray(values)
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
        count, window_mean, window_std = window_moments(values, as_values(median), as_values(nsigma * sigma))
        if count == kept_before or count < 2:
            break
        kept_before = count
        mean, std = float(window_mean), float(window_std)
        sigma = max(std, 1e-6)
    return ClippedStats(mean, std, float(median), count)
