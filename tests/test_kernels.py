"""The compiled one-pass kernel against plain numpy, on bands with the shapes a run meets.

Each consumer is compared with the obvious numpy statement of what it computes: a mutation of
the kernel (a frame skipped, a row window off by one, a residual unclipped, the mean divided by
n - 1, the sort network cut short, the wrong frames used) breaks one of these equalities. The
float planes must be bit for bit numpy's: the pipeline promises the same numbers whatever path
measured them.
"""

from __future__ import annotations

import numpy as np
import pytest

from engine.tasks.compiled.kernels import band_pass
from engine.tasks.stacking import network_pairs
from engine.tasks.stats import ADU_BINS


def _band(frames: int, rows: int = 23, width: int = 37, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    cube = rng.normal(1500, 4, (frames, rows, width)).round().astype(np.uint16)
    cube[0, 3, 5] = 65535  # a saturated pixel and a cosmic ray: outliers the residuals clip
    cube[-1, 7, 9] = 9000
    return cube


def _run(cube, used, *, measure_rows, noise_rows, reach, spread_error=False):
    frames, rows, width = cube.shape
    labels = np.arange(width) % 3  # three column regions, as the quadrant's prescan/image/overscan
    measure_shift = (labels * ADU_BINS).astype(np.int64)
    measure_counts = np.zeros((frames, 3 * ADU_BINS), np.int64)
    bins = 2 * reach + 1
    noise_shift = (labels * bins + reach).astype(np.int64)
    noise_counts = np.zeros((len(used), 3 * bins), np.int64)
    total = np.zeros((rows, width), np.int64)
    median = np.zeros((rows, width), np.float32)
    spread = np.zeros((rows, width), np.float32)
    offsets = np.linspace(1499.25, 1500.75, len(used)).astype(np.float32)
    first = np.array([r[0] for r in measure_rows], np.int64)
    stop = np.array([r[1] for r in measure_rows], np.int64)
    band_pass(cube, first, stop, measure_shift, measure_counts, np.asarray(used, np.int64), noise_rows[0],
              noise_rows[1], noise_shift, reach, noise_counts, total, offsets, network_pairs(len(used)), True,
              spread_error, median, spread)
    return labels, measure_counts, noise_counts, total, median, spread, offsets


@pytest.mark.parametrize("frames", [2, 3, 10, 11])
def test_the_stack_is_numpy_median_and_std_bit_for_bit(frames):
    cube = _band(frames)
    used = list(range(frames))
    *_, median, spread, offsets = _run(cube, used, measure_rows=[(0, 0)] * frames, noise_rows=(0, 0), reach=64)
    floats = cube.astype(np.float32) - offsets[:, None, None]
    assert np.array_equal(median, np.median(floats, axis=0))
    assert np.array_equal(spread, floats.std(axis=0, ddof=1))


def test_the_error_of_the_mean_is_the_std_over_root_n():
    cube = _band(10)
    *_, spread, offsets = _run(cube, range(10), measure_rows=[(0, 0)] * 10, noise_rows=(0, 0), reach=64,
                               spread_error=True)
    floats = cube.astype(np.float32) - offsets[:, None, None]
    assert np.array_equal(spread, floats.std(axis=0, ddof=1) / np.float32(np.sqrt(10)))


def test_only_the_used_frames_are_stacked_and_in_the_noise():
    cube = _band(6)
    cube[2] = 40000  # a frame left out of the consumers (no offset): its counts must not leak in
    used = [0, 1, 3, 4, 5]
    _, _, noise, total, median, _, offsets = _run(cube, used, measure_rows=[(0, 0)] * 6, noise_rows=(0, 23),
                                                  reach=64)
    floats = cube[used].astype(np.float32) - offsets[:, None, None]
    assert np.array_equal(median, np.median(floats, axis=0))
    assert np.array_equal(total, cube[used].astype(np.int64).sum(axis=0))


def test_measurement_histograms_count_each_frame_rows_in_its_window_by_region():
    cube = _band(4)
    windows = [(0, 23), (5, 17), (0, 0), (22, 23)]
    labels, counts, *_ = _run(cube, range(4), measure_rows=windows, noise_rows=(0, 0), reach=64)
    for k, (first, stop) in enumerate(windows):
        for region in range(3):
            expected = np.bincount(cube[k, first:stop][:, labels == region].ravel(), minlength=ADU_BINS)
            assert np.array_equal(counts[k, region * ADU_BINS: (region + 1) * ADU_BINS], expected), (k, region)


def test_noise_histograms_hold_each_frames_clipped_residual_to_the_sum_over_its_rows():
    cube = _band(5)
    reach, n = 64 * 5, 5
    labels, _, noise, total, *_ = _run(cube, range(5), measure_rows=[(0, 0)] * 5, noise_rows=(4, 19), reach=reach)
    bins = 2 * reach + 1
    rows = cube[:, 4:19].astype(np.int64)
    residual = np.clip(n * rows - rows.sum(axis=0), -reach, reach)
    for k in range(n):
        for region in range(3):
            expected = np.bincount(residual[k][:, labels == region].ravel() + reach, minlength=bins)
            assert np.array_equal(noise[k, region * bins: (region + 1) * bins], expected), (k, region)
    assert noise[:, :].sum() == n * rows[0].size  # rows outside the window not counted
    assert np.array_equal(total[4:19], rows.sum(axis=0))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_clipped_statistics_keep_what_numpy_keeps(dtype):
    """stats.clipped_stats sweeps with kernels.window_moments: the same pixels as numpy's mask,
    the same mean and std to float64 rounding (a window off by one comparison, or ddof 0, shows)."""
    from engine.tasks.compiled.kernels import window_moments
    from engine.tasks.stats import clipped_stats

    rng = np.random.default_rng(3)
    values = rng.normal(0.5, 2.0, 200_000).astype(dtype)
    values[:50] = 500  # hot pixels the clipping leaves out
    centre, width = dtype(0.25), dtype(7.5)
    inside = np.abs(values - centre) <= width
    count, mean, std = window_moments(values, centre, width)
    assert count == np.count_nonzero(inside)
    assert mean == pytest.approx(values[inside].mean(dtype=np.float64), rel=1e-12)
    assert std == pytest.approx(values[inside].std(dtype=np.float64, ddof=1), rel=1e-12)
    stats = clipped_stats(values.reshape(400, 500))
    assert stats.mean == pytest.approx(0.5, abs=0.02) and stats.std == pytest.approx(2.0, rel=0.02)
    assert stats.count < values.size - 49


def test_every_kernel_module_is_known_and_warmed_in_the_fork_server(tmp_path):
    """The fork server warms the generic kernels, and compiles every kernel module not cached yet
    (worker_preload): one missing from KERNEL_MODULES would compile in each worker at once at its
    first unit, and not be counted when the first run says it compiles."""
    import importlib
    from pathlib import Path

    import engine.tasks.compiled as compiled

    folder = Path(compiled.__file__).parent
    modules = sorted(p.stem for p in folder.glob("*.py") if p.stem != "__init__")
    assert sorted(compiled.KERNEL_MODULES) == modules
    assert set(compiled.GENERIC_KERNEL_MODULES) <= set(modules)
    for name in modules:  # the fork server warms them, each through its warm()
        assert callable(importlib.import_module(f"engine.tasks.compiled.{name}").warm)
    # a fresh install (no numba index files) is said; once cached, nothing is
    (tmp_path / "__pycache__").mkdir()
    assert compiled.uncompiled_modules(tmp_path) == list(compiled.KERNEL_MODULES)
    for name in compiled.KERNEL_MODULES:
        (tmp_path / "__pycache__" / f"{name}.warm-12.py311.nbi").write_bytes(b"")
    assert compiled.uncompiled_modules(tmp_path) == []


def test_the_normal_cdf_is_scipys_ndtr():
    """The point-source fits integrate Gaussians over pixels with it (no scipy.special in the
    workers): a wrong sign or scale of the argument would move every FWHM."""
    from scipy.special import ndtr

    from engine.tasks.compiled.kernels import normal_cdf

    z = np.linspace(-40.0, 40.0, 200_001).reshape(1, -1)
    assert np.max(np.abs(normal_cdf(z) - ndtr(z))) <= 2.3e-16
    assert normal_cdf(np.array([[0.0, 1.0]]))[0].tolist() == pytest.approx([0.5, 0.8413447460685429], abs=1e-16)


def _column_runs(width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of columns as a quadrant's regions lie, with a run of another block between two of one
    block and runs one column wide: (starts, stops, blocks)."""
    edges = [0, 3, 4, 11, 12, 30, width]
    blocks = [3, 0, 3, 1, 3, 2]
    return np.array(edges[:-1], np.int64), np.array(edges[1:], np.int64), np.array(blocks, np.int64)


def _runs_bincount(counts: np.ndarray, rows: slice, runs) -> np.ndarray:
    expected = np.zeros((4, ADU_BINS), np.int64)
    for start, stop, block in zip(*runs):
        expected[block] += np.bincount(counts[rows, start:stop].ravel(), minlength=ADU_BINS)
    return expected


def test_region_histograms_count_each_run_of_columns_into_its_block_over_the_rows_asked():
    from engine.tasks.compiled.kernels import region_histograms

    counts = _band(1, rows=23, width=37)[0]
    counts[0, 0], counts[5, 36], counts[9, 11] = 0, 65535, 65535  # the ends of the range in edge columns
    runs = _column_runs(37)
    for first, stop in ((0, 23), (4, 19), (22, 23), (7, 7)):
        histograms = np.zeros((4, ADU_BINS), np.int64)
        region_histograms(counts, first, stop, *runs, histograms)
        assert np.array_equal(histograms, _runs_bincount(counts, slice(first, stop), runs)), (first, stop)


@pytest.mark.parametrize("bzero", [32768, 0])
def test_read_region_histograms_give_the_counts_section_gives_and_their_histograms(bzero):
    """The stored words of a FITS frame (big-endian int16, BZERO 32768 or 0) converted as
    fits.Frame.section converts them, for a section off the frame's corner, histogrammed by run."""
    from engine.tasks.compiled.kernels import read_region_histograms

    rng = np.random.default_rng(5)
    counts = rng.integers(0, 65536, (30, 50)).astype(np.uint16)  # every bit pattern, both bytes
    counts[0, :4] = [0, 1, 32767, 65535]
    stored = ((counts ^ np.uint16(0x8000)) if bzero else counts).view(np.int16).astype(">i2")
    rows, cols = slice(3, 26), slice(9, 46)
    runs = _column_runs(37)
    for words, swap in ((stored, True), (stored.astype(np.int16), False)):  # as a file stores them, and native
        section = np.empty((23, 37), np.uint16)
        histograms = np.zeros((4, ADU_BINS), np.int64)
        read_region_histograms(words.view(np.uint16), rows.start, cols.start, swap, np.uint16(0x8000 if bzero else 0),
                               section, 2, 21, *runs, histograms)
        assert np.array_equal(section, counts[rows, cols])
        assert np.array_equal(histograms, _runs_bincount(section, slice(2, 21), runs))


# -- the pass's bands: wide rows, four frames at a time, the compiled read -----------------------

@pytest.mark.parametrize(("frames", "width", "spread_error"), [(10, 600, False), (4, 513, True), (7, 256, False)])
def test_the_stack_is_numpy_median_and_std_bit_for_bit_across_row_pieces(frames, width, spread_error):
    """The stack works on each row in pieces of STACK_COLUMNS columns (its lanes in the L1 cache):
    rows wider than one piece, with a last partial piece or none, give numpy's planes bit for bit."""
    from engine.tasks.compiled.kernels import STACK_COLUMNS

    assert width > STACK_COLUMNS or width % STACK_COLUMNS == 0
    cube = _band(frames, rows=9, width=width, seed=frames)
    *_, median, spread, offsets = _run(cube, range(frames), measure_rows=[(0, 0)] * frames, noise_rows=(0, 0),
                                       reach=64, spread_error=spread_error)
    floats = cube.astype(np.float32) - offsets[:, None, None]
    std = floats.std(axis=0, ddof=1)
    assert np.array_equal(median, np.median(floats, axis=0))
    assert np.array_equal(spread, std / np.float32(np.sqrt(frames)) if spread_error else std)


def test_measurement_histograms_of_frames_counted_four_at_a_time_go_to_their_own_frame():
    """Rows are counted four frames at a time among the frames whose window holds the row: with
    nine frames and windows that leave different frames out row by row, each histogram is still
    its own frame's (a group mapped to the wrong frames, or a remainder skipped, shows)."""
    cube = _band(9, rows=12, width=41, seed=4)
    windows = [(0, 12), (0, 12), (3, 9), (0, 12), (1, 12), (0, 6), (0, 12), (6, 12), (0, 11)]
    labels, counts, *_ = _run(cube, range(9), measure_rows=windows, noise_rows=(0, 0), reach=64)
    for k, (first, stop) in enumerate(windows):
        for region in range(3):
            expected = np.bincount(cube[k, first:stop][:, labels == region].ravel(), minlength=ADU_BINS)
            assert np.array_equal(counts[k, region * ADU_BINS: (region + 1) * ADU_BINS], expected), (k, region)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_window_count_leaves_out_nan_and_inf_and_clipping_ignores_them(dtype):
    """kernels.window_count counts what numpy's |v - c| <= w keeps (NaN and inf never); clipped_stats
    of values with NaN and inf is that of their finite values exactly (its sample is taken from
    the finite values: a NaN moved the sample's pixels before the window was found)."""
    from engine.tasks.compiled.kernels import window_count
    from engine.tasks.stats import clipped_stats

    rng = np.random.default_rng(8)
    values = rng.normal(3.0, 1.5, 300_001).astype(dtype)
    values[::997] = np.nan
    values[5::1999] = np.inf
    values[7::2003] = -np.inf
    centre, width = dtype(3.25), dtype(4.0)
    with np.errstate(invalid="ignore"):
        assert window_count(values, centre, width) == np.count_nonzero(np.abs(values - centre) <= width)
    finite = values[np.isfinite(values)]
    assert clipped_stats(values.reshape(1, -1)) == clipped_stats(finite)
    assert clipped_stats(np.full(10, np.nan, dtype)).count == 0


@pytest.mark.parametrize("bzero", [32768, 0])
def test_the_pass_reads_a_band_as_frame_section_does(tmp_path, bzero):
    """bandpass.read_band converts the frame's stored words in one compiled sweep: the counts are
    frame.section's, for a frame mapped from its index or opened by astropy, BZERO 32768 or 0, and
    through frame.section itself when the map is not a plain array."""
    from engine.formats.fits import frame_hdulist, index_frame, read_frame
    from engine.tasks.bandpass import read_band, stored_words
    from engine.tasks.stacking import Band

    rng = np.random.default_rng(6)
    counts = rng.integers(0, 65536, (40, 70)).astype(np.uint16)
    path = tmp_path / "frame.fits"
    hdul = frame_hdulist(counts)
    if not bzero:  # the same counts stored as int16 bits with no BZERO
        hdul[1].header["BZERO"] = 0
        hdul[1].data = counts.view(np.int16)
    hdul.writeto(path)
    band = Band(slice(7, 31), slice(35, 70), slice(0, 24), 24)
    for index in (index_frame(path), None):
        with read_frame(path, index) as frame:
            expected = frame.section(band.frame_rows, band.cols)
            assert np.array_equal(expected, counts[7:31, 35:70])
            out = np.empty((24, 35), np.uint16)
            words = stored_words(frame)
            assert words is not None
            read_band(frame, words, band, out)
            assert np.array_equal(out, expected)
            out[:] = 0
            read_band(frame, None, band, out)  # no plain map: frame.section
            assert np.array_equal(out, expected)
