"""PTC pairs from the check's read (ptc_lib.PairTiles fed by quadrant_pass, the compiled
ptc_lib.pair_quadrant) against the frame-by-frame numpy loop (ptc_lib.pair_tiles_unit).

Error budget: none beyond float rounding. The means, the fluences, the kept and the saturated
pixel counts must be equal (the offset-subtracted sums are exact in float64 whatever their order,
and the clip window comes from the same sample by the same percentile rule, so the same pixels are
kept); the variances differ by the order of their float64 sums only: 1e-12 relative is allowed,
1e-15 is seen. A wrong sample (a flipped or transposed tile, another stride), a wrong offset or
scale, or a pixel off the tile's edge changes kept counts or variances far more than that. The
samples' percentiles (sorted in place in reused buffers, rows of several sizes) are numpy's bit
for bit: a value left over from a previous pair would move them.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from engine.formats.fits import read_frame, write_frame
from engine.formats.geometry import QUADRANTS, SMALL_OBLONG, CCDGeometry
from engine.tasks.ptc import FlatPair, PairedFrames, PTCTask, plan_pairs, read_tiles
from engine.tasks.ptc_lib import (
    SIGMA_PERCENTILES,
    PairTiles,
    SampleBuffers,
    pair_quadrant,
    pair_tiles_unit,
    percentiles,
    row_percentiles,
)
from engine.tasks.quadrant_pass import quadrant_readout_unit

# tiles of 253 x 250 pixels: the clip window's sample takes every 3rd pixel (SAMPLE_SIZE 20 000)
WIDE = CCDGeometry(prescan=10, image_cols=1000, overscan=6, image_rows=1010, parallel_overscan=5, name="wide-tiles")
# tiles of 295-296 x 290-291 pixels, as full-size ones: every 4th pixel, samples of four sizes
FULL_STRIDE = CCDGeometry(prescan=10, image_cols=1162, overscan=6, image_rows=1183, parallel_overscan=5,
                          name="full-size-tiles")
OFFSETS = {"E": 1012.3, "F": 987.6, "G": 1503.1, "H": 1200.8}


def flat(geometry: CCDGeometry, level: float, seed: int, saturate: str | None = None) -> np.ndarray:
    """A flat frame: per quadrant an offset with read noise, and on the image a Poisson signal
    with a gradient and pixel response, cosmic rays, and (quadrant `saturate`) a saturated block."""
    rng = np.random.default_rng(seed)
    response = np.random.default_rng(99).normal(1, 0.01, (geometry.image_rows, geometry.image_cols))
    rows = np.linspace(0.7, 1.2, geometry.image_rows)[:, None]
    frame = np.zeros(geometry.shape, np.uint16)
    for q in QUADRANTS:
        counts = OFFSETS[q] + rng.normal(0, 4.5, (geometry.quad_height, geometry.quad_width))
        image = counts[: geometry.image_rows, geometry.prescan: geometry.prescan + geometry.image_cols]
        image += rng.poisson(level * rows * response) / 3.3
        hits = rng.integers(0, image.size, image.size // 2000)  # cosmic rays (image is a view: index it 2-D)
        image[np.unravel_index(hits, image.shape)] += 20_000
        if q == saturate:
            image[geometry.image_rows // 3: geometry.image_rows // 2, : geometry.image_cols // 5] = 65535
        geometry.put_quadrant(frame, q, np.clip(np.rint(counts), 0, 65535).astype(np.uint16))
    return frame


def write_pairs(folder: Path, geometry: CCDGeometry, levels: list[float]) -> list[Path]:
    paths = []
    for i, level in enumerate(levels):
        data = flat(geometry, level, seed=i, saturate="G" if i % 2 else None)
        paths.append(write_frame(folder / f"EUC_{1000 + i}_CCD1.fits", data))
    return paths


def assert_same_tiles(mine, numpy_loop) -> None:
    assert (mine.fluence1_adu, mine.fluence2_adu) == (numpy_loop.fluence1_adu, numpy_loop.fluence2_adu)
    for name in ("means", "pixels", "saturated", "tile_rows", "tile_cols"):
        assert np.array_equal(getattr(mine, name), getattr(numpy_loop, name)), name
    np.testing.assert_allclose(mine.variances, numpy_loop.variances, rtol=1e-12)


@pytest.fixture(scope="module")
def small_frames(tmp_path_factory) -> list[Path]:
    # two pairs and an odd frame, on a geometry with fewer image columns than rows
    return write_pairs(tmp_path_factory.mktemp("small"), SMALL_OBLONG, [2000, 2100, 60000, 61000, 500])


def test_the_consumer_fed_by_the_check_read_gives_the_numpy_loop_tiles(small_frames):
    pairs = ((0, 1), (2, 3))
    readouts = {q: quadrant_readout_unit((1, q), [(p, 0, None) for p in small_frames], PairTiles, pairs)
                for q in QUADRANTS}
    for first, second in pairs:
        offsets = [{q: readouts[q].offsets[i] for q in QUADRANTS} for i in (first, second)]
        numpy_loop = pair_tiles_unit(small_frames[first], small_frames[second], *offsets, SMALL_OBLONG)
        for q in QUADRANTS:
            assert not readouts[q].error and set(readouts[q].result) == set(pairs)
            assert_same_tiles(readouts[q].result[(first, second)], numpy_loop[q])
    saturated_pair = readouts["G"].result[(2, 3)]
    assert saturated_pair.saturated.sum() > 0 and np.isfinite(saturated_pair.variances).all()


@pytest.mark.parametrize("geometry, stride", [(WIDE, 3), (FULL_STRIDE, 4)])
def test_tiles_whose_clip_sample_is_strided_match_in_every_quadrant_orientation(tmp_path, geometry, stride):
    paths = write_pairs(tmp_path, geometry, [30000, 30500])
    offsets = [{q: OFFSETS[q] + 0.25 * k for q in QUADRANTS} for k in range(2)]
    numpy_loop = pair_tiles_unit(paths[0], paths[1], *offsets, geometry)
    buffers = SampleBuffers()  # reused by the four quadrants, as PairTiles reuses them from pair to pair
    with read_frame(paths[0]) as one, read_frame(paths[1]) as two:
        for q in QUADRANTS:
            counts = [frame.section(*geometry.quadrant_slices(q)) for frame in (one, two)]
            buffers.samples[...] = -np.inf  # what a previous pair left must not count
            mine = pair_quadrant(*counts, offsets[0][q], offsets[1][q], geometry, q, buffers)
            assert mine.means.size == 16 and mine.pixels.max() // 20_000 == stride  # clip_mask's sample stride
            assert_same_tiles(mine, numpy_loop[q])


def test_row_percentiles_are_numpys_for_rows_of_different_sizes_whatever_lies_past_them():
    rng = np.random.default_rng(5)
    sizes = np.array([1, 2, 3, 7, 400, 997, 1000, 1000])
    samples = rng.normal(0, 30, (sizes.size, 1000)).astype(np.float32)
    samples[4] = np.round(samples[4] / 10)  # many ties
    samples[6, :500] = -0.0  # signed zeros among the values
    samples[6, 500:] = 0.0
    values = [samples[i, :n].copy() for i, n in enumerate(sizes)]
    for i, n in enumerate(sizes):  # past each row's size: what pair_quadrant's buffers held before
        samples[i, n:] = [np.nan, -np.inf, np.inf][i % 3]
    got = row_percentiles(samples, sizes, SIGMA_PERCENTILES)
    for i, v in enumerate(values):
        expected = np.percentile(v, SIGMA_PERCENTILES)
        assert np.array_equal(got[i], expected), (i, got[i], expected)
        assert np.array_equal(percentiles(v, SIGMA_PERCENTILES), expected)


def test_pairs_are_planned_per_column_and_taken_only_when_frames_and_offsets_match(small_frames):
    # OBSIDs 1000-1004: column 0 holds 1000-1002 (an odd one out), column 1 holds 1003-1004
    ctx = SimpleNamespace(dataset=SimpleNamespace(exposures=[SimpleNamespace(obsid=1000 + i, column=c)
                                                             for i, c in enumerate([0, 0, 0, 1, 1])]))
    frames = [SimpleNamespace(obsid=1000 + i) for i in range(5)]
    pairs = plan_pairs(ctx, 1, frames)
    assert pairs == ((0, 1), (3, 4))
    assert plan_pairs(ctx, 1, frames[:1]) is None
    readouts = {(1, q): quadrant_readout_unit((1, q), [(p, 0, None) for p in small_frames], PairTiles, pairs)
                for q in QUADRANTS}
    offsets = [{q: readouts[(1, q)].offsets[i] for q in QUADRANTS} for i in range(5)]

    def pair(i, j, ccd=1, offsets1=None):
        return SimpleNamespace(ccd=ccd, path1=small_frames[i], path2=small_frames[j],
                               offsets1=offsets1 or offsets[i], offsets2=offsets[j])

    found = read_tiles(readouts, pair(3, 4))
    assert found is not None and all(found[q] is readouts[(1, q)].result[(3, 4)] for q in QUADRANTS)
    assert read_tiles(readouts, pair(1, 2)) is None  # frame 0 left out: the column re-paired
    assert read_tiles(readouts, pair(0, 1, offsets1={**offsets[0], "F": offsets[0]["F"] + 1})) is None
    assert read_tiles(readouts, pair(0, 1, ccd=2)) is None  # no readout of that CCD


def test_extract_takes_the_pairs_the_check_made_and_reads_the_others_again(small_frames):
    # the check's read paired (0, 1) and (2, 3); frame 0 left out afterwards re-paired (1, 2)
    calls = [(p, 0, None) for p in small_frames]
    readouts = {(1, q): quadrant_readout_unit((1, q), calls, PairTiles, ((0, 1), (2, 3))) for q in QUADRANTS}
    offsets = [{q: readouts[(1, q)].offsets[i] for q in QUADRANTS} for i in range(5)]
    pairs = [FlatPair(1, 0, 1001 + i, 1002 + i, small_frames[i], small_frames[i + 1], offsets[i], offsets[i + 1],
                      0.0, 0.0, 1.0) for i in (1, 2)]
    units, notes = [], []
    ctx = SimpleNamespace(need=lambda kind: SimpleNamespace(readouts=readouts), log=SimpleNamespace(info=notes.append),
                          map_units=lambda function, arguments: [units.append(a) or function(*a) for a in arguments])
    extraction = PTCTask().extract_PTC(ctx, PairedFrames(SimpleNamespace(geometry=SMALL_OBLONG), pairs))
    assert [call[:2] for call in units] == [(small_frames[1], small_frames[2])]  # only the new pair read again
    assert "1 pairs' tiles from the check's read; 1 read again" in notes[0]
    assert all(extraction.tiles[1][q] is readouts[(1, q)].result[(2, 3)] for q in QUADRANTS)
    for pair, tiles in zip(pairs, extraction.tiles):
        numpy_loop = pair_tiles_unit(pair.path1, pair.path2, pair.offsets1, pair.offsets2, SMALL_OBLONG)
        for q in QUADRANTS:
            assert_same_tiles(tiles[q], numpy_loop[q])
