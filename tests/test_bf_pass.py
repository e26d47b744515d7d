"""BF pair covariances: the compiled ptc_lib.pair_covariance against the numpy statement
(ptc_lib.quadrant_covariance_numpy), a known correlation recovered, and BF01 taking the pairs
from the check's read (ptc_lib.PairCovariances fed by quadrant_pass) or reading them again.

Error budget:
- compiled vs numpy: float rounding only. The fluences and the kept pixel counts must be equal
  (exact float64 sums of the offset-subtracted counts, the same float32 operations, the same clip
  samples); the covariances differ by the order of their float64 sums (and the surface fit, solved
  by its normal equations instead of lstsq, by 1e-14 relative): 1e-10 of the variance is allowed,
  1e-15 is seen. A flipped quadrant, a lag off by one, a wrong pair count or a mask applied to one
  end only changes them by 1e-3 or more.
- the kernels' pair counts and the second clip's sample against numpy on a stored mask: none (exact
  integers; the same float32 values in the same order).
- the known correlation: a correlation coefficient from N pixel pairs has the error 1/sqrt(N)
  (0.0025 for 400 x 400 pixels); held to 4 of them. The variance to 4 x sqrt(2/N) (1.4 %) on top
  of the uint16 rounding (1/12 ADU^2 a frame: 3e-5 of it). Without the smooth surface removed,
  the frames' different illumination slopes would add ~30 % to the variance and bias the
  coefficients by ~0.2.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from engine.formats.fits import write_frame
from engine.formats.geometry import QUADRANTS, SMALL_OBLONG, CCDGeometry
from engine.tasks.bf import MAX_LAG, BFTask, plan_covariances
from engine.tasks.compiled import bf_kernels
from engine.tasks.compiled.bf_kernels import SPARSE_LIMIT
from engine.tasks.ptc import FlatPair, PairedFrames
from engine.tasks.ptc_lib import (
    CovariancePlan,
    PairCovariances,
    pair_covariance,
    pair_covariance_unit,
    quadrant_covariance_numpy,
)
from engine.tasks.quadrant_pass import quadrant_readout_unit

OFFSETS = {"E": 1012.3, "F": 987.6, "G": 1503.1, "H": 1200.8}
FEW_BLOCKS = CCDGeometry(prescan=8, image_cols=40, overscan=4, image_rows=36, parallel_overscan=4, name="few-blocks")
FLAT_STRIP = CCDGeometry(prescan=8, image_cols=160, overscan=4, image_rows=32, parallel_overscan=4, name="flat-strip")
MEDIUM = CCDGeometry(prescan=10, image_cols=400, overscan=6, image_rows=400, parallel_overscan=5, name="medium-bf")
SERIAL, PARALLEL = 0.12, 0.06  # the known correlation: noise w + SERIAL w[c - 1] + PARALLEL w[r - 1]


def correlated_noise(rng, shape, sigma: float) -> np.ndarray:
    """Gaussian noise of std sigma with the lag (0, 1) and (1, 0) correlations of SERIAL, PARALLEL."""
    w = rng.normal(0, 1, (shape[0] + 1, shape[1] + 1))
    noise = w[1:, 1:] + SERIAL * w[1:, :-1] + PARALLEL * w[:-1, 1:]
    return noise * sigma / np.sqrt(1 + SERIAL ** 2 + PARALLEL ** 2)


def canonical_quadrant(geometry: CCDGeometry, q: str, level: float, rng, tilt: float = 0.0, noise: float = 40.0,
                       cosmics: bool = True, saturate: int = 0) -> np.ndarray:
    """A quadrant in canonical orientation (float): offset and read noise, on the image a flat of
    `level` ADU with a pixel response, a slope (1 + tilt) across the rows, correlated noise, and
    a block of pixels at `saturate` ADU (0: none)."""
    counts = OFFSETS[q] + rng.normal(0, 4.5, (geometry.quad_height, geometry.quad_width))
    image = counts[: geometry.image_rows, geometry.prescan: geometry.prescan + geometry.image_cols]
    response = np.random.default_rng(99).normal(1, 0.01, image.shape)
    slope = 1 + tilt * np.linspace(-0.5, 0.5, geometry.image_rows)[:, None]
    image += level * response * slope + correlated_noise(rng, image.shape, noise)
    if cosmics:
        image[np.unravel_index(rng.integers(0, image.size, max(2, image.size // 2000)), image.shape)] += 20_000
    if saturate:
        image[geometry.image_rows // 3: geometry.image_rows // 2, : geometry.image_cols // 5] = saturate
    return np.clip(np.rint(counts), 0, 65535).astype(np.uint16)


def as_read(geometry: CCDGeometry, q: str, canonical: np.ndarray) -> np.ndarray:
    """The quadrant as a frame holds it (flips are their own inverse)."""
    return np.ascontiguousarray(geometry.to_canonical(canonical, q))


def image_area(geometry: CCDGeometry, canonical: np.ndarray) -> np.ndarray:
    return canonical[: geometry.image_rows, geometry.prescan: geometry.prescan + geometry.image_cols]


def assert_same(mine, numpy_statement) -> None:
    assert (mine.fluence1_adu, mine.fluence2_adu, mine.mean_adu) == (
        numpy_statement.fluence1_adu, numpy_statement.fluence2_adu, numpy_statement.mean_adu)
    assert mine.pixels == numpy_statement.pixels
    assert np.array_equal(np.isnan(mine.covariance), np.isnan(numpy_statement.covariance))
    scale = abs(numpy_statement.covariance[0, 0]) if np.isfinite(numpy_statement.covariance[0, 0]) else 1.0
    np.testing.assert_allclose(mine.covariance, numpy_statement.covariance, rtol=0, atol=1e-10 * scale)


def compare(geometry: CCDGeometry, q: str, first: np.ndarray, second: np.ndarray, offsets=(1012.3, 1013.1)):
    mine = pair_covariance(as_read(geometry, q, first), as_read(geometry, q, second), *offsets, geometry, q, MAX_LAG)
    numpy_statement = quadrant_covariance_numpy(image_area(geometry, first), image_area(geometry, second), *offsets,
                                                MAX_LAG)
    assert_same(mine, numpy_statement)
    return mine


@pytest.mark.parametrize("q", QUADRANTS)
def test_compiled_covariances_are_the_numpy_statement_in_every_orientation(q):
    rng = np.random.default_rng(QUADRANTS.index(q))
    # a block at the ADC ceiling in one frame and one count below it in the other: not clipped
    # (the difference is small), so only the saturation mask keeps it out
    ceiling = (65535, 65534) if QUADRANTS.index(q) % 2 else (65534, 65535)
    for level, ratio, saturate in ((2000.0, 1.03, (0, 0)), (30000.0, 1.0, ceiling)):
        first = canonical_quadrant(SMALL_OBLONG, q, level, rng, tilt=0.02, saturate=saturate[0])
        second = canonical_quadrant(SMALL_OBLONG, q, level * ratio, rng, tilt=-0.02, saturate=saturate[1])
        mine = compare(SMALL_OBLONG, q, first, second, (OFFSETS[q], OFFSETS[q] + 0.4))
        assert np.isfinite(mine.covariance).all() and mine.pixels < SMALL_OBLONG.image_pixels


def test_the_surface_s_edge_cases_and_a_saturated_quadrant_are_the_numpy_statement():
    rng = np.random.default_rng(7)
    # 2 x 2 blocks of 16 pixels: fewer than the surface's 6 terms, the kept mean is removed instead
    first, second = (canonical_quadrant(FEW_BLOCKS, "F", 5000.0, rng) for _ in range(2))
    assert np.isfinite(compare(FEW_BLOCKS, "F", first, second).covariance).all()
    # one row of 10 blocks left by a saturated half: the row terms are degenerate (lstsq's
    # minimum-norm solution, which the normal equations cannot give)
    first, second = (canonical_quadrant(FLAT_STRIP, "G", 5000.0, rng) for _ in range(2))
    for counts in (first, second):
        counts[16:32, FLAT_STRIP.prescan: FLAT_STRIP.prescan + FLAT_STRIP.image_cols] = 65535
    assert compare(FLAT_STRIP, "G", first, second).pixels < 16 * 160
    full = np.full((SMALL_OBLONG.quad_height, SMALL_OBLONG.quad_width), 65535, np.uint16)
    mine = compare(SMALL_OBLONG, "G", full, full)
    assert mine.pixels == 0 and np.isnan(mine.covariance).all()


WIDE = CCDGeometry(prescan=10, image_cols=200, overscan=6, image_rows=72, parallel_overscan=5, name="wide-bf")


@pytest.mark.parametrize("q", QUADRANTS)
def test_rows_mostly_masked_and_rows_barely_masked_are_the_numpy_statement(q):
    # the compiled pair counts take a row's masked pixels one by one when it has a few (cosmic
    # rays) and count its kept pairs directly when it has many (more than bf_kernels.SPARSE_LIMIT:
    # here 150 saturated columns over 20 rows, ending at different columns in the two frames);
    # the second clip's sample walks rows of 200 columns a chunk at a time. Every orientation
    rng = np.random.default_rng(20 + QUADRANTS.index(q))
    first = canonical_quadrant(WIDE, q, 9000.0, rng, tilt=0.03)
    second = canonical_quadrant(WIDE, q, 9100.0, rng, tilt=-0.01)
    image = slice(WIDE.prescan, WIDE.prescan + WIDE.image_cols)
    first[30:50, image][:, 20:170] = 65535
    second[30:50, image][:, 25:175] = 65535
    mine = compare(WIDE, q, first, second, (OFFSETS[q], OFFSETS[q] - 0.7))
    assert mine.pixels < WIDE.image_pixels - 20 * 150 and np.isfinite(mine.covariance).all()


def stored_mask(rng, rows: int, cols: int) -> np.ndarray:
    """A mask (1: kept) with rows fully kept, rows with a few masked pixels, rows with exactly
    SPARSE_LIMIT and SPARSE_LIMIT + 1, rows mostly masked and a row fully masked."""
    mask = np.ones((rows, cols), np.uint8)
    for r in range(0, rows, 3):
        mask[r, rng.integers(0, cols, rng.integers(1, 5))] = 0
    for r, masked in ((5, SPARSE_LIMIT), (6, SPARSE_LIMIT + 1), (7, cols - 3), (8, cols), (20, 2 * SPARSE_LIMIT)):
        mask[r] = 1
        mask[r, rng.choice(cols, masked, replace=False)] = 0
    return mask


@pytest.mark.parametrize("flip_rows, flip_cols", [(False, False), (False, True), (True, False), (True, True)])
def test_pair_counts_and_the_second_clip_sample_against_numpy(flip_rows, flip_cols):
    # the kernels work on the image area as stored; canonical = the stored arrays flipped back
    rng = np.random.default_rng(3 + 2 * flip_rows + flip_cols)
    rows, cols = 30, 300
    mask = stored_mask(rng, rows, cols)
    canonical = mask[:: -1 if flip_rows else 1, :: -1 if flip_cols else 1].astype(np.int64)
    lags = range(MAX_LAG + 1)
    expected = np.array([[np.sum(canonical[: rows - dr, : cols - dc] * canonical[dr:, dc:]) for dc in lags]
                         for dr in lags])
    counts = np.zeros((MAX_LAG + 1, MAX_LAG + 1), np.int64)
    bf_kernels.pair_counts(mask, mask.sum(axis=1, dtype=np.int64), MAX_LAG, flip_rows != flip_cols, counts)
    np.testing.assert_array_equal(counts, expected)
    # the sample of the kept pixels in canonical order, every step-th (a surface of zero here)
    diff = rng.normal(0, 1, (rows, cols)).astype(np.float32)
    values = diff[:: -1 if flip_rows else 1, :: -1 if flip_cols else 1][canonical.astype(bool)]
    surface = (np.zeros(cols, np.float32), np.zeros((0, rows)), np.zeros((0, cols)), np.zeros(0, np.bool_),
               np.zeros(0, np.float32))
    for step in (1, 7, 150):
        sample = np.full(-(-values.size // step), np.nan, np.float32)
        taken = bf_kernels.surface_sample(diff, mask, mask.sum(axis=1, dtype=np.int64), flip_rows, flip_cols, *surface,
                                          step, sample)
        assert taken == sample.size
        np.testing.assert_array_equal(sample, values[::step])


def test_a_known_correlation_is_recovered_through_different_illumination_slopes():
    rng = np.random.default_rng(11)
    q = "H"  # both axes flipped as read
    first = canonical_quadrant(MEDIUM, q, 20000.0, rng, tilt=0.0, noise=50.0)
    second = canonical_quadrant(MEDIUM, q, 20400.0, rng, tilt=0.01, noise=50.0)
    mine = compare(MEDIUM, q, first, second, (OFFSETS[q], OFFSETS[q]))
    pixels = MEDIUM.image_pixels
    correlation = mine.covariance / mine.covariance[0, 0]
    expected = np.zeros((MAX_LAG + 1, MAX_LAG + 1))
    expected[0, 0] = 1.0
    expected[0, 1] = SERIAL / (1 + SERIAL ** 2 + PARALLEL ** 2)
    expected[1, 0] = PARALLEL / (1 + SERIAL ** 2 + PARALLEL ** 2)
    assert np.abs(correlation - expected).max() < 4 / np.sqrt(pixels)
    # one frame's variance: the correlated noise, the read noise and the rounding (the pixel
    # response scaled by each frame's own fluence leaves 0.02**2 x (0.01 x 20000)**2 / 2: 8e-3)
    one_frame = 50.0 ** 2 + 4.5 ** 2 + 1 / 12
    assert abs(mine.covariance[0, 0] / one_frame - 1) < 4 * np.sqrt(2 / pixels)


# -- BF01 on the check's read -------------------------------------------------------------------

def write_frames(folder: Path, geometry: CCDGeometry, levels: list[float]) -> list[Path]:
    paths = []
    for i, level in enumerate(levels):
        rng = np.random.default_rng(100 + i)
        frame = np.zeros(geometry.shape, np.uint16)
        for q in QUADRANTS:
            geometry.put_quadrant(frame, q, canonical_quadrant(geometry, q, level, rng, saturate=65535 * (q == "G" and i > 1)))
        paths.append(write_frame(folder / f"EUC_{1000 + i}_CCD1.fits", frame))
    return paths


@pytest.fixture(scope="module")
def small_frames(tmp_path_factory) -> list[Path]:
    # two pairs and an odd frame
    return write_frames(tmp_path_factory.mktemp("bf"), SMALL_OBLONG, [2000, 2100, 60000, 61000, 500])


def test_the_consumer_fed_by_the_check_read_gives_the_unit_covariances(small_frames):
    plan = CovariancePlan(((0, 1), (2, 3)), MAX_LAG)
    readouts = {q: quadrant_readout_unit((1, q), [(p, 0, None) for p in small_frames], PairCovariances, plan)
                for q in QUADRANTS}
    for first, second in plan.pairs:
        offsets = [{q: readouts[q].offsets[i] for q in QUADRANTS} for i in (first, second)]
        unit = pair_covariance_unit(small_frames[first], small_frames[second], *offsets, SMALL_OBLONG, MAX_LAG)
        for q in QUADRANTS:
            assert not readouts[q].error and set(readouts[q].result) == set(plan.pairs)
            assert_same(readouts[q].result[(first, second)], unit[q])
    assert readouts["G"].result[(2, 3)].pixels < readouts["E"].result[(2, 3)].pixels  # the saturated block


def test_extract_takes_the_pairs_the_check_made_and_reads_the_others_again(small_frames):
    # the check's read paired (0, 1) and (2, 3); frame 0 left out afterwards re-paired (1, 2)
    ctx = SimpleNamespace(dataset=SimpleNamespace(exposures=[SimpleNamespace(obsid=1000 + i, column=c)
                                                             for i, c in enumerate([0, 0, 1, 1, 2])]))
    frames = [SimpleNamespace(obsid=1000 + i) for i in range(5)]
    plan = plan_covariances(ctx, 1, frames)
    assert plan == CovariancePlan(((0, 1), (2, 3)), MAX_LAG) and plan_covariances(ctx, 1, frames[4:]) is None
    calls = [(p, 0, None) for p in small_frames]
    readouts = {(1, q): quadrant_readout_unit((1, q), calls, PairCovariances, plan) for q in QUADRANTS}
    offsets = [{q: readouts[(1, q)].offsets[i] for q in QUADRANTS} for i in range(5)]
    pairs = [FlatPair(1, column, 1000 + i, 1001 + i, small_frames[i], small_frames[i + 1], offsets[i],
                      offsets[i + 1], 0.0, 0.0, 1.0) for column, i in ((0, 1), (1, 2))]
    units, notes = [], []
    ctx = SimpleNamespace(need=lambda kind: SimpleNamespace(readouts=readouts), log=SimpleNamespace(info=notes.append),
                          map_units=lambda function, arguments: [units.append(a) or function(*a) for a in arguments])
    covariances = BFTask().extract_COV(ctx, PairedFrames(SimpleNamespace(geometry=SMALL_OBLONG), pairs))
    assert [call[:2] for call in units] == [(small_frames[1], small_frames[2])]  # only the new pair read again
    assert "1 pairs' covariances from the check's read; 1 read again" in notes[0]
    for q in QUADRANTS:
        column0, column1 = covariances.columns[(1, q)]
        assert (column0.column, column1.column) == (0, 1) and column0.pairs == column1.pairs == 1
        from_read = readouts[(1, q)].result[(2, 3)]
        assert np.array_equal(column1.covariance, from_read.covariance) and column1.mean_adu == from_read.mean_adu
        again = pair_covariance_unit(small_frames[1], small_frames[2], offsets[1], offsets[2], SMALL_OBLONG, MAX_LAG)
        assert np.array_equal(column0.covariance, again[q].covariance)
