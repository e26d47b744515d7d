"""The statistics module: histogram-based statistics against direct numpy computations."""

from __future__ import annotations

import math
from dataclasses import astuple, is_dataclass

import numpy as np
import pytest

from engine.tasks.stats import (
    ADC_SATURATED,
    ADU_BINS,
    LOST_PIXEL,
    NAN_STATS,
    ClippedStats,
    RegionStats,
    adu_histogram,
    histogram_region_stats,
    histogram_stats,
    occupied_bins,
    region_stats,
    robust_stats,
)


def percentile_robust_stats(values: np.ndarray) -> tuple[float, float, float]:
    """What the generic check computed before: np.percentile on a float64 copy."""
    valid = values[(values != ADC_SATURATED) & (values != LOST_PIXEL)].astype(np.float64)
    q25, median, q75 = np.percentile(valid, [25, 50, 75])
    window = 5 * max((q75 - q25) / 1.349, 1.0)
    kept = valid[np.abs(valid - median) <= window]
    return float(median), float(kept.std()), float(kept.mean())


@pytest.mark.parametrize("seed, size, sigma", [(0, 1, 1.2), (1, 2, 1.2), (2, 1001, 0.3), (3, 50_000, 1.3),
                                               (4, 20_000, 40.0), (5, 7, 3.0)])
def test_robust_stats_match_numpy_percentiles(seed, size, sigma):
    rng = np.random.default_rng(seed)
    values = np.clip(np.rint(rng.normal(2713.4, sigma, size)), 0, 65535).astype(np.uint16)
    values[: size // 100] = 4000  # hot pixels / cosmic rays
    values[size // 100: size // 50] = ADC_SATURATED
    values[size // 50: size // 40] = LOST_PIXEL
    expected = percentile_robust_stats(values)
    got = robust_stats(adu_histogram(values))
    assert got[0] == expected[0]
    assert got[1] == pytest.approx(expected[1], rel=1e-12, abs=1e-12)
    assert got[2] == pytest.approx(expected[2], rel=1e-12)


def test_region_stats_leave_out_lost_and_saturated_pixels():
    values = np.array([[LOST_PIXEL, ADC_SATURATED, 100, 101], [102, 100, 101, 100]], np.uint16)
    stats = region_stats(values)
    assert stats.median == 100.5
    assert stats.mean == pytest.approx(np.mean([100, 101, 102, 100, 101, 100]))
    assert stats.clipped_mean == histogram_stats(np.bincount([100, 101, 102, 100, 101, 100])).mean


def test_no_valid_pixel_gives_nan():
    stats = region_stats(np.array([[LOST_PIXEL, ADC_SATURATED]], np.uint16))
    assert all(math.isnan(v) for v in (stats.median, stats.std, stats.mean, stats.clipped_mean))


# -- the occupied-bins statistics against the whole-histogram statement they replaced -------------
# stats.py works on the occupied bins only (a running sum from the first to the last non-zero bin,
# the clip window found as a run of bins). These references are the former implementation, over all
# the bins of the histogram: the numbers must be the same to the last bit (==), as the pipeline
# promises the same results whatever the speed-up.

def whole_histogram_robust_stats(counts: np.ndarray) -> tuple[float, float, float]:
    n = int(counts.sum())
    if n == 0:
        return math.nan, math.nan, math.nan
    cumulative = np.cumsum(counts)

    def percentile(p):
        h = (n - 1) * p / 100.0
        low = math.floor(h)
        a = float(np.searchsorted(cumulative, low, side="right"))
        return a + (h - low) * (float(np.searchsorted(cumulative, min(low + 1, n - 1), side="right")) - a)

    q25, median, q75 = percentile(25), percentile(50), percentile(75)
    window = 5 * max((q75 - q25) / 1.349, 1.0)
    lo, hi = max(math.ceil(median - window), 0), math.floor(median + window)
    kept = counts[lo: hi + 1].astype(np.float64)
    v = np.arange(lo, lo + kept.size, dtype=np.float64)
    mean = float(kept @ v / kept.sum())
    return median, float(math.sqrt(kept @ (v - mean) ** 2 / kept.sum())), mean


def whole_histogram_clipped_stats(counts: np.ndarray, first_value: float = 0.0, nsigma: float = 5.0) -> ClippedStats:
    nonzero = np.flatnonzero(counts)
    if nonzero.size == 0:
        return NAN_STATS
    lo, hi = int(nonzero[0]), int(nonzero[-1]) + 1
    c = counts[lo:hi].astype(np.float64)
    v = first_value + np.arange(lo, hi, dtype=np.float64)
    cumulative = np.cumsum(c)
    median = float(v[min(int(np.searchsorted(cumulative, 0.5 * cumulative[-1])), v.size - 1)])
    q25 = float(v[min(int(np.searchsorted(cumulative, 0.25 * cumulative[-1])), v.size - 1)])
    q75 = float(v[min(int(np.searchsorted(cumulative, 0.75 * cumulative[-1])), v.size - 1)])
    sigma = max((q75 - q25) / 1.349, 1.0)
    before, mean, std, kept = None, math.nan, math.nan, 0
    for _ in range(20):
        keep = np.abs(v - median) <= nsigma * sigma
        if (int(np.argmax(keep)), int(keep.sum())) == before:
            break
        before = (int(np.argmax(keep)), int(keep.sum()))
        ck, vk = c[keep], v[keep]
        kept = int(ck.sum())
        if kept == 0:
            return NAN_STATS
        mean = float(ck @ vk / kept)
        std = math.sqrt(float(ck @ (vk - mean) ** 2) / max(kept - 1, 1))
        sigma = max(std, 0.5)
    return ClippedStats(mean, std, median, kept)


def identical(a, b) -> bool:
    """== for floats, NaN equal to NaN (an empty region's statistics)."""
    a, b = (astuple(a), astuple(b)) if is_dataclass(a) else (a, b)
    return all(x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y)) for x, y in zip(a, b, strict=True))


def detector_like_values(rng: np.random.Generator, kind: str, size: int) -> np.ndarray:
    """Counts as regions hold them: a narrow offset, a wide flat, with cosmic rays, saturated and lost
    pixels, a second population, a single value."""
    centre, sigma = {"offset": (2768.4, 1.4), "flat": (35000.0, 180.0), "low": (3.0, 2.0), "high": (65531.0, 3.0),
                     "random": (float(rng.uniform(0, 65535)), float(rng.choice([0.3, 5.0, 900.0])))}.get(kind, (2000.0, 9.0))
    values = np.rint(rng.normal(centre, sigma, size))
    if kind in ("offset", "flat", "random"):  # cosmic rays and hot pixels anywhere
        hits = max(1, size // 150)
        values[rng.integers(0, size, hits)] = rng.uniform(0, 65535, hits)
    if kind == "saturating":
        values[: size // 3] = ADC_SATURATED
    if kind == "lossy":
        values[: size // 4] = LOST_PIXEL
    if kind == "bimodal":
        values[: size // 2] += 400
    if kind == "single":
        values[:] = values[0]
    return np.clip(values, 0, 65535).astype(np.uint16)


KINDS = ("offset", "flat", "low", "high", "random", "saturating", "lossy", "bimodal", "single")


@pytest.mark.parametrize("kind", KINDS)
def test_region_statistics_are_the_whole_histogram_ones_bit_for_bit(kind):
    rng = np.random.default_rng(KINDS.index(kind))
    for size in (1, 2, 3, 10, 333, 40_000):
        counts = np.bincount(detector_like_values(rng, kind, size).ravel(), minlength=ADU_BINS)
        cleaned = counts.copy()
        cleaned[LOST_PIXEL] = cleaned[ADC_SATURATED] = 0
        expected = whole_histogram_robust_stats(cleaned)
        assert identical(robust_stats(cleaned), expected)
        assert identical(histogram_stats(cleaned), whole_histogram_clipped_stats(cleaned))
        assert identical(histogram_region_stats(counts),
                         RegionStats(*expected, whole_histogram_clipped_stats(cleaned).mean))
        assert counts.sum() == size  # the caller's histogram left alone (its lost and saturated bins)


def test_noise_histograms_with_an_offset_first_value_and_other_windows_match_too():
    rng = np.random.default_rng(7)
    for reach, sigma in ((16, 0.8), (64, 9.0), (512, 40.0)):
        residuals = np.clip(np.rint(rng.normal(0, sigma, 20_000)), -reach, reach).astype(np.int64)
        residuals[:30] = reach  # clipped outliers pile up in the last bin
        counts = np.bincount(residuals + reach, minlength=2 * reach + 1)
        # values so large that float64 rounds them (2**53 and beyond): the window's run of bins is
        # no longer its width in ADU, and must still be the bins numpy's |v - median| test keeps
        for first_value, nsigma in ((-reach, 5.0), (-reach + 0.5, 3.0), (1e4 + 0.25, 2.5), (0.0, 0.1), (0.0, 1e9),
                                    (2.0 ** 53, 5.0), (3.0e16 + 2.0, 2.0), (-(2.0 ** 54), 4.0)):
            assert identical(histogram_stats(counts, first_value, nsigma),
                             whole_histogram_clipped_stats(counts, first_value, nsigma))
        for nsigma in (-1.0, math.nan):  # a window keeping nothing
            assert identical(histogram_stats(counts, 0.0, nsigma), NAN_STATS)


def test_empty_and_edge_histograms():
    empty = np.zeros(ADU_BINS, np.int64)
    assert identical(histogram_region_stats(empty), RegionStats(math.nan, math.nan, math.nan, math.nan))
    assert occupied_bins(empty) == (0, 0) and occupied_bins(np.zeros(0, np.int64)) == (0, 0)
    for value in (1, 2, 1023, 1024, 65534):  # one value, at block edges and the ends of the range
        counts = empty.copy()
        counts[value] = 3
        assert occupied_bins(counts) == (value, value + 1)
        assert identical(histogram_region_stats(counts), RegionStats(float(value), 0.0, float(value), float(value)))


def test_occupied_bins_are_those_of_flatnonzero():
    rng = np.random.default_rng(11)
    for size in (1, 5, 129, 1024, 3072, ADU_BINS):
        for _ in range(200):
            counts = np.zeros(size, np.int64)
            hits = int(rng.integers(0, 4))
            counts[rng.integers(0, size, hits)] = rng.integers(1, 9, hits)
            nonzero = np.flatnonzero(counts)
            expected = (int(nonzero[0]), int(nonzero[-1]) + 1) if nonzero.size else (0, 0)
            assert occupied_bins(counts) == expected
