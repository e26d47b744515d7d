"""The spot pass's array helpers on synthetic images: the max-pool against a block-by-block maximum,
the stamps' ring medians against np.median, and a frame's stamps measured together
(spots.measure_spots) against the spots drawn into the image."""

from __future__ import annotations

import numpy as np
import pytest

from engine.tasks.spots import (
    FWHM_PER_SIGMA,
    STAMP_HALF_PX,
    _ring_medians,
    cut_stamps,
    max_pool,
    measure_spots,
)
from engine.tasks.stats import ADC_SATURATED


def _block_maxima(image: np.ndarray, size: int) -> np.ndarray:
    rows, cols = -(-image.shape[0] // size), -(-image.shape[1] // size)
    return np.array([[image[r * size:(r + 1) * size, c * size:(c + 1) * size].max() for c in range(cols)]
                     for r in range(rows)])


@pytest.mark.parametrize("shape", [(64, 64), (67, 61), (5, 3), (130, 17)])
@pytest.mark.parametrize("size", [1, 3, 8])
def test_max_pool_is_the_maximum_of_every_block_the_last_ones_narrower(shape, size):
    """On a strided view (an image area inside its quadrant, as the pass has it)."""
    quadrant = np.random.default_rng(size).integers(0, 65536, (shape[0] + 2, shape[1] + 9), dtype=np.uint16)
    image = quadrant[1:-1, 5:-4]
    pooled = max_pool(image, size)
    assert pooled.dtype == np.uint16 and np.array_equal(pooled, _block_maxima(image, size))


def test_ring_medians_are_numpys_median_of_each_ring_and_zero_below_eight_pixels():
    rng = np.random.default_rng(4)
    stamps = rng.normal(0.0, 10.0, (5, 9, 9))
    ring = rng.random((5, 9, 9)) < 0.4
    ring[3] = False
    ring[3, 0, :7] = True  # 7 pixels: too few, 0
    ring[4] = False
    ring[4, :, :2] = True  # 18 pixels: an even count, the mean of the middle two
    medians = _ring_medians(stamps, ring)
    for k in range(5):
        expected = np.median(stamps[k][ring[k]]) if ring[k].sum() >= 8 else 0.0
        assert medians[k] == expected, k


def _pixel_integrated_gaussian(shape, x, y, sigma_x, sigma_y, flux):
    """flux x the Gaussian's integral over each pixel, from the error function (spots.py uses ndtr)."""
    from scipy.special import erf

    def cdf(edges, centre, sigma):
        return 0.5 * (1 + erf((edges - centre) / (sigma * np.sqrt(2))))

    cols, rows = np.arange(shape[1]), np.arange(shape[0])
    px = cdf(cols + 0.5, x, sigma_x) - cdf(cols - 0.5, x, sigma_x)
    py = cdf(rows + 0.5, y, sigma_y) - cdf(rows - 0.5, y, sigma_y)
    return flux * np.outer(py, px)


def test_a_frames_stamps_measured_together_read_back_the_spots_drawn():
    """Noise-free spots on a 1000 ADU level plus 7 ADU of local background, rounded to whole ADU
    (+-0.3 ADU rms a pixel against peaks of 10^4-10^5 ADU: ~1e-4 on the widths): centres within
    0.002 px, FWHM within 0.2 %, aperture and fitted fluxes within 0.2 % (radius 8 px holds all but
    1e-6 of a sigma <= 1 px Gaussian, but for C's edge), the ring's background exactly. A spot
    3.4 px from the image's edge is measured on its narrower stamp; one with a saturated core
    (D) is fitted without it (widths within 0.5 %); a stamp with nothing above its background
    is None. Frame coordinates: the image area's origin added."""
    shape = (120, 150)
    spots = [("A", 30.3, 40.6, 1.7, 1.8, 2e5), ("B", 90.7, 60.2, 2.4, 2.2, 4e5), ("C", 146.6, 25.4, 2.0, 2.0, 1.5e5),
             ("D", 60.2, 95.9, 1.9, 1.9, 4e6)]
    image = np.full(shape, 1007.0)
    for _, x, y, fwhm_x, fwhm_y, flux in spots:
        image += _pixel_integrated_gaussian(shape, x, y, fwhm_x / FWHM_PER_SIGMA, fwhm_y / FWHM_PER_SIGMA, flux)
    counts = np.clip(np.round(image), 0, ADC_SATURATED).astype(np.uint16)
    assert (counts == ADC_SATURATED).sum() >= 4  # D's core is saturated
    cuts = cut_stamps(counts, 1000.0, [(name, round(x) + 0.2, round(y) - 0.3) for name, x, y, *_ in spots]
                      + [("empty", 120.0, 100.0)])
    assert [c.raw.shape for c in cuts][2] == (2 * STAMP_HALF_PX + 1, 150 - (147 - STAMP_HALF_PX))  # C: cut by the edge
    shapes = measure_spots(cuts, [(3, 50)] * len(cuts))  # the image area's origin in its frame
    assert shapes[-1] is None
    for (name, x, y, fwhm_x, fwhm_y, flux), spot in zip(spots, shapes):
        tolerance = 0.005 if name == "D" else 0.002
        assert spot.name == name and spot.fit_ok and spot.saturated == (name == "D")
        assert abs(spot.x - (x + 50)) < 0.002 and abs(spot.y - (y + 3)) < 0.002, spot
        assert abs(spot.fwhm_x_px / fwhm_x - 1) < tolerance and abs(spot.fwhm_y_px / fwhm_y - 1) < tolerance, spot
        assert spot.background_adu == 7.0 and spot.peak_adu > 0
        if name != "D":  # the saturated core is missing from the aperture, not from the fit
            assert abs(spot.flux_adu / flux - 1) < 0.002 and abs(spot.fit_flux_adu / flux - 1) < 0.002, spot


def test_a_frame_whose_stamps_hold_nothing_gives_none_for_each_without_fitting():
    """Spots matched on a flat image (a pattern lost in the frame): nothing in any aperture."""
    counts = np.full((50, 50), 1000, np.uint16)
    cuts = cut_stamps(counts, 1000.0, [("A", 10.0, 10.0), ("B", 48.7, 1.2), ("C", 56.0, 20.0)])
    assert [cut.raw.shape for cut in cuts] == [(21, 21), (12, 11)]  # C: 4 px of stamp, left out
    assert measure_spots(cuts, [(0, 0)] * len(cuts)) == [None, None]
