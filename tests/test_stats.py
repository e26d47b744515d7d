"""The statistics module: histogram-based statistics against direct numpy computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.tasks.stats import ADC_SATURATED, LOST_PIXEL, adu_histogram, histogram_stats, region_stats, robust_stats


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
