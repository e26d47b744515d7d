"""Ground data put into LE1 frames: a block read on ground has 20 serial overscan columns, which
LE1's 2128-column quadrants hold padded with the fill value 0 (notes: vison-datamodel section 8),
the header's OVRSCANX saying 20. Such a frame must be read (not refused as "no LE1 geometry"),
its fill columns left out of every statistic (they are not lost pixels: no LOSTPIXELS flag) and
the overscan measured on its real columns only.

Here on the small LE1 geometry (9 overscan columns): OVRSCANX 6 and the last 3 canonical columns
of every quadrant zeroed in every frame. Error budget as tests/test_fpa.py's (each offset within 5
of its sigmas sigma / sqrt(n R C), each RON within 5 sigma / sqrt(2 (n - 1) R C), R C the region's
pixels as the padded geometry counts them)."""

from __future__ import annotations

import math

from astropy.io import fits

from fpa_frames import run_fpa
from engine.formats.fpa import fpa_layout
from engine.formats.le1 import LE1_SMALL, le1_geometry, read_le1
from engine.sim.le1 import simulate_le1
from engine.tasks.measures import REGIONS, counts_stats, region_columns

FRAMES = 6
GROUND_OVERSCAN = 6  # of LE1_SMALL's 9: 3 columns of fill


def _pad_as_ground(path, overscan: int) -> None:
    """Zero the columns after `overscan` overscan columns (canonical end: where each extension's
    position puts them as stored) and say OVRSCANX = overscan, as a ground frame put into LE1."""
    fill = LE1_SMALL.overscan - overscan
    layout = fpa_layout()
    with fits.open(path, mode="update", do_not_scale_image_data=True) as hdus:
        for place in layout.quadrants:
            hdu = hdus[place.hdu]
            columns = slice(0, fill) if place.flip_cols else slice(hdu.data.shape[1] - fill, None)
            hdu.data[:, columns] = -32768  # 0 ADU through BZERO 32768
            hdu.header["OVRSCANX"] = overscan


def test_ground_frames_padded_into_le1_are_read_and_their_fill_left_out(tmp_path):
    sim = simulate_le1(tmp_path / "data", frames=FRAMES, seed=5)
    for path in sim.frames:
        _pad_as_ground(path, GROUND_OVERSCAN)
    geometry = read_le1(sim.frames[0]).geometry
    assert geometry == le1_geometry((LE1_SMALL.quad_height, LE1_SMALL.quad_width), LE1_SMALL.prescan, GROUND_OVERSCAN)
    assert (geometry.overscan, geometry.fill_cols, geometry.quad_width) == (GROUND_OVERSCAN, 3, LE1_SMALL.quad_width)
    le1 = read_le1(sim.frames[0])
    for place in fpa_layout().quadrants[:8]:  # both column halves (their positions flip columns)
        with le1.open(place.extname) as view:
            assert (view.canonical()[:, -3:] == 0).all()
            counts = view.section(*geometry.quadrant_slices(place.quadrant))
            stats = counts_stats(counts, place.quadrant, geometry, slice(0, geometry.image_rows))
        assert stats.lost == 0, place.extname  # the fill is not lost pixels

    _, record = run_fpa(sim.day_folder, "BIAS01", tmp_path / "out", "--no-meta")
    assert record["flag_reasons"] == []  # no LOSTPIXELS for the fill, no RON_OOL from zeros
    for ccdid, quadrants in record["ccds"].items():
        for q, values in quadrants.items():
            truth = sim.truths[ccdid][q]
            sigma = truth["ron_adu"]
            for region in REGIONS:
                columns = region_columns(geometry, region)
                pixels = geometry.image_rows * (columns.stop - columns.start)
                assert abs(values[f"offset_{region}_adu"] - truth["offset_adu"]) < 5 * sigma / math.sqrt(FRAMES * pixels)
                assert abs(values[f"ron_{region}_adu"] - sigma) < 5 * sigma / math.sqrt(2 * (FRAMES - 1) * pixels)
