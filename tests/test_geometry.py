"""Every region of every quadrant, in both geometries, lies where formats.md puts it."""

import numpy as np
import pytest

from engine.formats.geometry import FULL, QUADRANTS, REGIONS, SMALL, geometry_for_shape


def test_full_frame_numbers_match_the_ccd273():
    assert (FULL.naxis1, FULL.naxis2) == (4238, 4172)
    assert (FULL.quad_width, FULL.quad_height) == (2119, 2086)
    assert FULL.shape == (4172, 4238)


@pytest.mark.parametrize(
    "quadrant, region, rows, cols",
    [
        # formats.md / datamodel: E,H prescan x 0-50, image 51-2098, overscan 2099-2118;
        # F,G overscan x 2119-2138, image 2139-4186, prescan 4187-4237.
        ("H", "prescan", (0, 2066), (0, 51)),
        ("H", "image", (0, 2066), (51, 2099)),
        ("H", "overscan", (0, 2066), (2099, 2119)),
        ("H", "parallel_overscan", (2066, 2086), (51, 2099)),
        ("G", "prescan", (0, 2066), (4187, 4238)),
        ("G", "image", (0, 2066), (2139, 4187)),
        ("G", "overscan", (0, 2066), (2119, 2139)),
        ("G", "parallel_overscan", (2066, 2086), (2139, 4187)),
        ("E", "prescan", (2106, 4172), (0, 51)),
        ("E", "image", (2106, 4172), (51, 2099)),
        ("E", "overscan", (2106, 4172), (2099, 2119)),
        ("E", "parallel_overscan", (2086, 2106), (51, 2099)),
        ("F", "prescan", (2106, 4172), (4187, 4238)),
        ("F", "image", (2106, 4172), (2139, 4187)),
        ("F", "overscan", (2106, 4172), (2119, 2139)),
        ("F", "parallel_overscan", (2086, 2106), (2139, 4187)),
    ],
)
def test_full_geometry_regions_in_frame_coordinates(quadrant, region, rows, cols):
    r, c = FULL.frame_region_slices(quadrant, region)
    assert (r.start, r.stop) == rows
    assert (c.start, c.stop) == cols


@pytest.mark.parametrize("geometry", [FULL, SMALL], ids=["full", "small"])
def test_regions_tile_each_quadrant_and_views_agree_with_slices(geometry):
    # Label every pixel with its (quadrant, region) by writing through canonical views,
    # then check the frame-coordinate slices find exactly those labels.
    frame = np.zeros(geometry.shape, dtype=np.int32)
    for qi, quadrant in enumerate(QUADRANTS):
        for ri, region in enumerate(REGIONS):
            geometry.region(frame, quadrant, region)[...] = 10 * (qi + 1) + ri + 1
    for qi, quadrant in enumerate(QUADRANTS):
        for ri, region in enumerate(REGIONS):
            rows, cols = geometry.frame_region_slices(quadrant, region)
            assert np.all(frame[rows, cols] == 10 * (qi + 1) + ri + 1), (quadrant, region)
    # only the prescan/overscan corners beside the parallel overscan stay unlabelled
    unlabelled = (frame == 0).sum()
    assert unlabelled == 4 * geometry.parallel_overscan * (geometry.prescan + geometry.overscan)


@pytest.mark.parametrize("geometry", [FULL, SMALL], ids=["full", "small"])
def test_canonical_orientation_puts_the_output_node_first(geometry):
    frame = np.zeros(geometry.shape, dtype=np.int32)
    # the output node of each quadrant is its outer frame corner
    corners = {"H": (0, 0), "G": (0, -1), "E": (-1, 0), "F": (-1, -1)}
    for i, (quadrant, (r, c)) in enumerate(corners.items()):
        frame[r, c] = i + 1
    for i, quadrant in enumerate(corners):
        canonical = geometry.quadrant(frame, quadrant)
        assert canonical[0, 0] == i + 1
        assert canonical.shape == (geometry.quad_height, geometry.quad_width)


def test_put_quadrant_round_trips_through_canonical():
    frame = np.zeros(SMALL.shape, dtype=np.int32)
    data = np.arange(SMALL.quad_height * SMALL.quad_width).reshape(SMALL.quad_height, SMALL.quad_width)
    for q in QUADRANTS:
        SMALL.put_quadrant(frame, q, data)
        assert np.array_equal(SMALL.quadrant(frame, q), data)


def test_geometry_for_shape_and_wrong_shapes():
    assert geometry_for_shape((4172, 4238)) is FULL
    assert geometry_for_shape(SMALL.shape) is SMALL
    assert geometry_for_shape((4172, 4256)).overscan == 29
    with pytest.raises(ValueError, match="matches no known"):
        geometry_for_shape((100, 100))
    with pytest.raises(ValueError, match="unknown quadrant"):
        FULL.quadrant_slices("X")
