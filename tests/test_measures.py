"""The check's per-quadrant measurement (measures.read_quadrant_stats, counts_stats) against numpy
statements of it, on ELVIS frames of the small geometry: each region's statistics over the readout
window's rows, lost and saturated pixels counted, whatever the quadrant's orientation."""

from __future__ import annotations

import numpy as np
import pytest

from engine.formats.fits import index_frame, read_frame, write_frame
from engine.formats.geometry import QUADRANTS, SMALL
from engine.tasks.measures import (
    REGIONS,
    counts_stats,
    quadrant_stats,
    read_quadrant_stats,
    region_columns,
)
from engine.tasks.stats import ADC_SATURATED, LOST_PIXEL, region_stats


def same(a, b) -> bool:
    """== to the last bit, an empty window's NaN equal to NaN."""
    return repr(a) == repr(b)


@pytest.fixture(scope="module")
def frame_path(tmp_path_factory):
    rng = np.random.default_rng(2)
    data = np.rint(rng.normal(1500, 3, SMALL.shape)).astype(np.uint16)
    data[40:60, 30:90] = np.rint(rng.normal(30000, 150, (20, 60))).astype(np.uint16)  # a bright patch
    data[rng.integers(0, SMALL.shape[0], 60), rng.integers(0, SMALL.shape[1], 60)] = ADC_SATURATED
    data[rng.integers(0, SMALL.shape[0], 25), rng.integers(0, SMALL.shape[1], 25)] = LOST_PIXEL
    data[rng.integers(0, SMALL.shape[0], 25), rng.integers(0, SMALL.shape[1], 25)] = 9000  # cosmic rays
    return write_frame(tmp_path_factory.mktemp("frame") / "EUC_1_CCD1.fits", data)


@pytest.mark.parametrize("rows", [slice(0, SMALL.image_rows), slice(5, 41), slice(0, 0)])
def test_quadrant_statistics_are_those_of_each_canonical_region_over_the_window_rows(frame_path, rows):
    with read_frame(frame_path) as frame:
        for quadrant in QUADRANTS:
            canonical = frame.quadrant(quadrant, canonical=True)[rows]
            _, stats = read_quadrant_stats(frame, quadrant, SMALL, rows)
            for name in REGIONS:
                assert same(getattr(stats, name), region_stats(canonical[:, region_columns(SMALL, name)])), name
            assert stats.saturated == np.count_nonzero(canonical == ADC_SATURATED)
            assert stats.lost == np.count_nonzero(canonical == LOST_PIXEL)
            assert same(stats, counts_stats(frame.section(*SMALL.quadrant_slices(quadrant)), quadrant, SMALL, rows))
            assert same(stats, quadrant_stats(frame, quadrant, SMALL, rows))


@pytest.mark.parametrize("indexed", [False, True])
def test_the_counts_read_are_a_fresh_array_equal_to_the_section(frame_path, indexed):
    """Consumers keep the counts of several frames (QuadrantConsumer.add): no buffer reused. The
    frame opened by astropy (a writeable map) or from its index (a read-only np.memmap)."""
    with read_frame(frame_path, index_frame(frame_path) if indexed else None) as frame:
        rows = slice(0, SMALL.image_rows)
        for quadrant in QUADRANTS:
            first, _ = read_quadrant_stats(frame, quadrant, SMALL, rows)
            second, _ = read_quadrant_stats(frame, quadrant, SMALL, rows)
            assert first.dtype == np.uint16 and first.flags.c_contiguous and first.flags.owndata
            assert np.array_equal(first, frame.section(*SMALL.quadrant_slices(quadrant)))
            assert not np.shares_memory(first, second)
