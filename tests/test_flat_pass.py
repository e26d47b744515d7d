"""The master flats made from the check's read (flat.py FlatReadConsumer, compiled/flat_kernels.py):
the compiled sums are numpy's, the clip drops a cosmic ray and nothing else, and the check's read
and a unit reading the frames itself write the same products bit for bit.

Error budget of the cosmic-ray test (FLAT_STB, small geometry: 15 frames at ~30 % of full well):
a pixel's normalised value scatters by ~0.5 % a frame; a hit of +30 % is 60 sigma, dropped. The
master at that pixel is then the mean of the other 14 frames: it differs from the mean of all 15
clean frames by |x_k - mean| / 14, ~0.04 % (at most 0.15 % at 4 sigma), against the +2 % the hit
leaves in a plain mean: a 0.3 % tolerance tells the two apart by 7x.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from sim_days import EQUIPMENT, run_session

from engine.campaign.chamber import load_chamber
from engine.formats.fits import read_frame
from engine.formats.geometry import QUADRANTS, SMALL
from engine.sim.elvis import SimulationRequest, simulate
from engine.tasks.compiled.flat_kernels import accumulate_flat, clipped_mean
from engine.tasks.flat import (
    FLAT_EXTENSIONS,
    ColumnInput,
    FlatPlan,
    FlatTarget,
    StagedFlats,
    flat_unit,
    image_area,
    staged_unit,
    start_flat_read,
    trimmed_spread_factor,
)
from engine.tasks.measures import frame_stats
from engine.tasks.quadrant_pass import quadrant_readout_unit
from engine.tasks.stacking import allocate_fits
from engine.tasks.stats import CLIP_SIGMA

SIGMA = 0.005  # a flat's per-frame scatter about its mean, relative


def numpy_clipped_mean(cube: np.ndarray, nsigma: float) -> tuple[np.ndarray, np.ndarray, int]:
    """The clip rule written plainly: per pixel the two highest and the lowest values are dropped
    when more than nsigma x the std of the others (ddof 1, scaled to a Gaussian's sigma) from the
    others' mean."""
    n = cube.shape[0]
    ordered = np.sort(cube.astype(np.float64), axis=0)
    others = ordered[1:-2]
    centre = others.mean(axis=0)
    reach = nsigma * trimmed_spread_factor(n) * others.std(axis=0, ddof=1)
    keep = np.ones_like(ordered, bool)
    drop_top = ordered[-1] > centre + reach
    keep[-1] = ~drop_top
    keep[-2] = ~(drop_top & (ordered[-2] > centre + reach))
    keep[0] = ~(ordered[0] < centre - reach)
    kept = keep.sum(axis=0)
    mean = np.where(keep, ordered, 0).sum(axis=0) / kept
    std = np.sqrt(np.where(keep, (ordered - mean) ** 2, 0).sum(axis=0) / (kept - 1))
    return mean, std / np.sqrt(kept), int(n * cube[0].size - kept.sum())


def test_the_compiled_sums_and_clip_are_numpys():
    """Frames fed in batches of up to 3: sums, extremes and box sums those of numpy; the clipped
    mean and its error those of the rule written in numpy (the mean to a float32 rounding), the
    two cosmic rays of a pixel, another and a low flash dropped, nothing else."""
    rng = np.random.default_rng(5)
    n, rows, cols = 20, 12, 10
    offsets = np.float32(1000 + rng.uniform(-3, 3, n))
    levels = np.float32(20000 + rng.uniform(-100, 100, n))
    truth = 1 + 0.01 * rng.standard_normal((rows, cols))
    counts = (truth * levels[:, None, None] * (1 + SIGMA * rng.standard_normal((n, rows, cols)))
              + offsets[:, None, None]).round().astype(np.uint16)
    counts[2, 3, 4] += 6000  # cosmic rays: two in one pixel, one elsewhere, a low flash
    counts[6, 3, 4] += 3000
    counts[5, 7, 1] += 9000
    counts[1, 0, 0] -= 5000
    scales = np.float32(1) / levels
    x = (counts.astype(np.float32) - offsets[:, None, None]) * scales[:, None, None]  # numpy's float32 steps
    row_edges, col_edges = np.array([0, 5, 12]), np.array([0, 4, 10], np.int64)
    row_box = (np.searchsorted(row_edges, np.arange(rows), side="right") - 1).astype(np.int64)
    sums, squares = np.zeros((rows, cols)), np.zeros((rows, cols))
    high1, high2 = np.full((rows, cols), -np.inf, np.float32), np.full((rows, cols), -np.inf, np.float32)
    low = np.full((rows, cols), np.inf, np.float32)
    boxes = np.zeros((n, 2, 2), np.int64)
    for first, stop in ((0, 3), (3, 5), (5, 8), (8, 9), (9, 12), (12, 15), (15, 18), (18, 20)):
        batch = np.zeros((3, rows, cols), np.uint16)
        batch[: stop - first] = counts[first:stop]
        accumulate_flat(batch, stop - first, offsets[first:stop], scales[first:stop], row_box, col_edges,
                        boxes[first:stop], sums, squares, high1, high2, low)
    ordered = np.sort(x, axis=0)
    assert np.allclose(sums, x.astype(np.float64).sum(axis=0), rtol=1e-12)
    assert np.allclose(squares, (x.astype(np.float64) ** 2).sum(axis=0), rtol=1e-12)
    assert np.array_equal(high1, ordered[-1]) and np.array_equal(high2, ordered[-2]) and np.array_equal(low, ordered[0])
    expected_boxes = [[counts[:, r0:r1, c0:c1].sum(axis=(1, 2), dtype=np.int64) for c0, c1 in ((0, 4), (4, 10))]
                      for r0, r1 in ((0, 5), (5, 12))]
    assert np.array_equal(boxes, np.transpose(expected_boxes, (2, 0, 1)))

    mean, error = np.empty((rows, cols), np.float32), np.empty((rows, cols), np.float32)
    dropped = clipped_mean(sums, squares, high1, high2, low, n, CLIP_SIGMA * trimmed_spread_factor(n), 10,
                           mean, error)
    want_mean, want_error, want_dropped = numpy_clipped_mean(x, CLIP_SIGMA)
    assert dropped == want_dropped == 4
    assert np.allclose(mean, want_mean, rtol=0, atol=1.2e-7)  # float32 planes: one rounding
    assert np.allclose(error, want_error, rtol=1e-5)
    assert abs(mean[3, 4] / truth[3, 4] - 1) < 4 * SIGMA  # both hits gone
    few = clipped_mean(sums, squares, high1, high2, low, n, CLIP_SIGMA, n + 1, mean, error)
    assert few == 0 and np.allclose(mean, x.astype(np.float64).mean(axis=0), rtol=0, atol=1.2e-7)  # too few: a mean


@pytest.fixture(scope="module")
def stb_frames(tmp_path_factory) -> list[Path]:
    """FLAT_STB's 15 flats of CCD1 (small geometry, seed 0)."""
    day = simulate(SimulationRequest(tests=("FLAT_STB",), out=tmp_path_factory.mktemp("stb"),
                                     chamber=load_chamber("B_NOSTROMO"), geometry=SMALL, equipment=EQUIPMENT,
                                     jobs=1)).day_folder
    return sorted(day.glob("EUC_*_CCD1.fits"))


def columns_of(paths: list[Path], quadrant: str, target: FlatTarget) -> list[ColumnInput]:
    stats = [frame_stats(p)[quadrant] for p in paths]
    offsets = [s.prescan.clipped_mean for s in stats]
    return [ColumnInput("FLAT_30", list(paths), offsets, [s.image.clipped_mean - o for s, o in zip(stats, offsets)],
                        target)]


def allocate(folder: Path, name: str) -> FlatTarget:
    path = folder / name
    return FlatTarget(path, allocate_fits(path, fits.Header(), FLAT_EXTENSIONS, SMALL.shape))


def read_planes(target: FlatTarget) -> list[np.ndarray]:
    with fits.open(target.path) as hdus:
        return [hdus[name].data.copy() for name in FLAT_EXTENSIONS]


def test_the_checks_read_and_a_unit_reading_the_frames_write_the_same_products(stb_frames, tmp_path):
    """Per quadrant: the check's read (quadrant_readout_unit feeding the family's consumer, the
    planes staged, then copied) and flat_unit (the frames read again) give the same FLAT, EFLAT
    and NCOMB planes, bit for bit, and the same figures; the staged file is removed once copied."""
    plan = FlatPlan(tuple("FLAT_30" for _ in stb_frames), tmp_path / "staging", 1)
    for q in QUADRANTS:
        readout = quadrant_readout_unit((1, q), [(p, 0, None) for p in stb_frames], start_flat_read, plan)
        assert not readout.error and isinstance(readout.result, StagedFlats)
        staged = readout.result
        assert staged.members == {"FLAT_30": tuple(range(len(stb_frames)))}
        via_read = allocate(tmp_path, f"read_{q}.fits"), allocate(tmp_path, f"read_all_{q}.fits")
        via_unit = allocate(tmp_path, f"unit_{q}.fits"), allocate(tmp_path, f"unit_all_{q}.fits")
        figures = staged_unit((1, q), staged, {"FLAT_30": via_read[0]}, via_read[1], SMALL)
        assert not staged.path.exists()
        again = flat_unit((1, q), columns_of(stb_frames, q, via_unit[0]), SMALL, via_unit[1])
        assert figures == again and figures[0].frames == 15
        for a, b in zip(via_read, via_unit):
            for plane_a, plane_b in zip(read_planes(a), read_planes(b)):
                assert np.array_equal(plane_a, plane_b)
        flat, _, ncomb = read_planes(via_read[0])
        image = SMALL.quadrant(flat, q)[SMALL.canonical_region("image")]
        assert 0.9 < np.median(image) < 1.1 and SMALL.quadrant(ncomb, q)[SMALL.canonical_region("image")].min() == 15
        outside = SMALL.quadrant(flat, q)[:, : SMALL.prescan]
        assert np.all(outside == 1.0)  # 1 outside the image area, as before


def test_a_cosmic_ray_is_dropped_from_the_master(stb_frames, tmp_path):
    """A +30 % hit on one pixel of one frame: the master at that pixel moves by < 0.3 % (budget in
    the module doc), where a plain mean would move by 2 %; the clip says it dropped it."""
    q = "G"
    hit = tmp_path / stb_frames[4].name
    hit.write_bytes(stb_frames[4].read_bytes())
    rows, cols = image_area(SMALL, q)
    q_rows, q_cols = SMALL.quadrant_slices(q)
    r, c = q_rows.start + rows.start + 20, q_cols.start + cols.start + 33  # a pixel of the image area, as read
    with read_frame(hit) as frame:
        value = int(frame.section()[r, c])
    stats = frame_stats(stb_frames[4])[q]
    level = stats.image.clipped_mean - stats.prescan.clipped_mean
    with fits.open(hit, mode="update") as hdus:  # physical values: the FITS scaling applies
        image = next(hdu for hdu in hdus if hdu.data is not None)
        image.data[r, c] = min(value + int(0.3 * level), 65535)
    frames = [*stb_frames[:4], hit, *stb_frames[5:]]
    clean, hit_target = allocate(tmp_path, "clean.fits"), allocate(tmp_path, "hit.fits")
    flat_unit((1, q), columns_of(stb_frames, q, clean), SMALL, None)
    (figures,) = flat_unit((1, q), columns_of(frames, q, hit_target), SMALL, None)
    before, after = read_planes(clean)[0][r, c], read_planes(hit_target)[0][r, c]
    assert figures.dropped >= 1
    assert math.isclose(after, before, rel_tol=3e-3), (before, after)


def test_the_pipeline_takes_the_masters_from_the_checks_read(stb_frames, tmp_path):
    """FLAT_STB end to end (aim mode): the log says how many values the clip dropped and that no
    quadrant read its frames again; the master's NCOMB and PRNU as the unit-level tests make them."""
    results = tmp_path / "results"
    record = run_session(stb_frames[0].parent.parent, results, ("FLAT_STB",), jobs=2)["FLAT_STB"]
    assert record["errors"] is False, record["error_messages"]
    assert record["ccds"]["CCD1"]["E"]["frames_combined"] == [15]
    log = "\n".join(p.read_text() for p in (results / "logs").glob("*.log"))
    assert "dropped by the clip" in log
    assert "read the frames again" not in log
