"""The checks and products catch what they claim, shown on the real pipeline run on simulated
data with known faults: an HK excursion (HK_OOL), saturated and lost pixels written into frames
(SATURATION, LOSTPIXELS), the master dark's error plane recomputed from the frames (EDARK), and
the BIAS01 profiles on a geometry whose image is not square, with a gradient along rows.

One simulated BIAS01 + DARK01 day (small geometry) carries every fault; the OBSIDs, CCDs and
quadrants without one are the controls (the simulator's HK noise is 2 % of the performance
window and a bias has no saturated or zero pixel, so nothing else may be flagged).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.stats import sigma_clipped_stats

from engine.campaign.chamber import load_chamber
from engine.formats.fits import read_frame
from engine.formats.geometry import QUADRANTS, SMALL, SMALL_OBLONG, CCDGeometry
from engine.sim.elvis import SimulationRequest, simulate
from engine.sim.housekeeping import HKExcursion
from sim_days import EQUIPMENT, run_session

# CCD1_TEMP_T: performance limits [-121, -119] C, safe [-133, 35] C: -110 C is a performance warning
EXCURSION = HKExcursion("CCD1_TEMP_T", -110.0, obsid=1003)
SATURATION_FRACTION = 0.10  # the campaign default (engine/campaign/config.py)
# the check counts saturated pixels over a quadrant's image rows, every column
QUADRANT_PIXELS = SMALL.quad_width * SMALL.image_rows
ABOVE_LIMIT = math.floor(SATURATION_FRACTION * QUADRANT_PIXELS) + 1  # 525 of 5248: 10.004 %
BELOW_LIMIT = ABOVE_LIMIT - 1  # 524: 9.985 %
SATURATED = (1005, 2, "E", ABOVE_LIMIT)  # OBSID, CCD, quadrant, pixels at 65535
NEARLY_SATURATED = (1005, 2, "F", BELOW_LIMIT)
LOST = (1007, 3, "G", 7)  # pixels at 0


def rewrite_counts(path: Path, change) -> None:
    """Change a frame's counts in place: `change(counts)` edits an int32 copy in frame orientation."""
    with fits.open(path, mode="update", do_not_scale_image_data=True) as hdul:
        image = hdul[-1]
        counts = image.data.astype(np.int32) + 32768
        change(counts)
        image.data = (np.clip(counts, 0, 65535) - 32768).astype(">i2")


def set_image_pixels(geometry: CCDGeometry, quadrant: str, count: int, value: int):
    """A `change` setting the first `count` image pixels of a quadrant (canonical order) to `value`."""
    def change(counts: np.ndarray) -> None:
        view = geometry.quadrant(counts, quadrant, canonical=True)
        rows, cols = np.unravel_index(np.arange(count), (geometry.image_rows, geometry.image_cols))
        view[rows, cols + geometry.prescan] = value
    return change


def frame_path(day: Path, obsid: int, ccd: int) -> Path:
    [path] = day.glob(f"EUC_{obsid}_*_CCD{ccd}.fits")
    return path


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """(day folder, results folder, result records) of the faulty day, analysed once."""
    root = tmp_path_factory.mktemp("truths")
    result = simulate(SimulationRequest(tests=("BIAS01", "DARK01"), out=root / "data",
                                        chamber=load_chamber("B_NOSTROMO"), geometry=SMALL, equipment=EQUIPMENT,
                                        hk_excursions=(EXCURSION,), jobs=1))
    day = result.day_folder
    for obsid, ccd, quadrant, count in (SATURATED, NEARLY_SATURATED):
        rewrite_counts(frame_path(day, obsid, ccd), set_image_pixels(SMALL, quadrant, count, 65535))
    obsid, ccd, quadrant, count = LOST
    rewrite_counts(frame_path(day, obsid, ccd), set_image_pixels(SMALL, quadrant, count, 0))
    records = run_session(root / "data", root / "results", ("BIAS01", "DARK01"))
    return day, root / "results", records


def reasons(record: dict, flag: str) -> list[dict]:
    return [r for r in record["flag_reasons"] if r["flag"] == flag]


def test_the_simulated_frames_start_clean(session):
    """The controls hold only if the simulator itself writes no 0 or 65535 in a bias frame."""
    day, _, _ = session
    with read_frame(frame_path(day, 1004, 2)) as frame:
        counts = frame.data
    assert not np.any(counts == 0) and not np.any(counts == 65535)


def test_hk_excursion_raises_hk_ool_with_key_value_and_limit(session):
    """The excursion (10 samples at -110 C in OBSID 1003's HK file) is outside the performance
    limits [-121, -119] C; the simulator's other readings stay within 2 % of that window, so
    HK_OOL must name OBSID 1003 and nothing else, in BIAS01 and not in DARK01."""
    _, _, records = session
    raised = reasons(records["BIAS01"], "HK_OOL")
    assert raised, records["BIAS01"]["flags"]
    assert {r.get("obsid") for r in raised} == {1003}
    [reason] = [r["reason"] for r in raised]
    assert "CCD1_TEMP_T" in reason and "-110" in reason and "[-121, -119]" in reason, reason
    assert "HK_OOL" in records["BIAS01"]["flags"]
    assert not reasons(records["DARK01"], "HK_OOL")  # same HK keys, no excursion


def test_saturation_above_the_limit_only(session):
    """Limit: more than 10 % of a quadrant's 82 x 64 = 5248 pixels. 525 pixels (10.004 %) must
    raise SATURATION for that CCD, quadrant and OBSID; 524 (9.985 %) in the next quadrant must not.
    The counts are exact, so there is no tolerance: one pixel decides."""
    _, _, records = session
    raised = reasons(records["BIAS01"], "SATURATION")
    obsid, ccd, quadrant, _ = SATURATED
    assert [(r["obsid"], r["ccd"], r["quadrant"]) for r in raised] == [(obsid, ccd, quadrant)]
    assert "10.0 % of pixels saturated (limit 10 %)" in raised[0]["reason"]


def test_pixels_at_zero_raise_lostpixels(session):
    """Seven pixels set to 0 ADU in one quadrant of one frame: LOSTPIXELS there, with the count."""
    _, _, records = session
    raised = reasons(records["BIAS01"], "LOSTPIXELS")
    obsid, ccd, quadrant, count = LOST
    assert [(r["obsid"], r["ccd"], r["quadrant"]) for r in raised] == [(obsid, ccd, quadrant)]
    assert raised[0]["reason"] == f"{count} pixels read 0 ADU"
    assert not reasons(records["DARK01"], "LOSTPIXELS")


def test_master_dark_error_plane_is_the_std_over_frames_over_sqrt_ncomb(session):
    """EDARK, recomputed here from the raw frames: per quadrant and frame an offset (3-sigma
    clipped mean of the prescan, astropy's clipping, not the pipeline's), then per pixel the std
    over the frames (ddof 1) / sqrt(NCOMB).

    Error budget: the offsets are one number per frame and quadrant, so for every pixel the two
    planes differ by at most std(pipeline offset - ours) / sqrt(n) (triangle inequality for the
    std). Both offsets estimate the same level from >= 384 prescan pixels with a read noise s,
    each to about 0.05 s, so the difference is ~0.05 EDARK per pixel at worst: held to 0.15 of
    the median EDARK. The median ratio of the planes must be 1 within 1 %: a std with ddof 0
    (ratio 0.87 for 4 frames) or without the 1/sqrt(n) (ratio 2) fails by far, and a plane
    placed in the wrong quadrant or orientation fails pixel by pixel (the std of 4 values
    scatters by ~40 % from pixel to pixel).
    """
    day, results, records = session
    record = records["DARK01"]
    first, last = record["obsids"]
    for ccd in (1, 2, 3):
        [product] = (results / "D11" / "DARK01" / "products").glob(f"EUC_MASTERDARK_CCD{ccd}_*.fits")
        with fits.open(product) as hdul:
            ncomb = hdul[0].header["NCOMB"]
            edark = hdul["EDARK"].data.astype(np.float64)
        frames = []
        for obsid in range(first, last + 1):
            with read_frame(frame_path(day, obsid, ccd)) as frame:
                counts = frame.data.astype(np.float64)
            for q in QUADRANTS:
                quadrant = SMALL.quadrant(counts, q, canonical=True)
                offset = sigma_clipped_stats(SMALL.region(counts, q, "prescan"), sigma=3.0)[0]
                quadrant -= offset
            frames.append(counts)
        assert ncomb == len(frames) == 4
        ours = np.std(np.stack(frames), axis=0, ddof=1) / math.sqrt(ncomb)
        assert edark.shape == ours.shape == SMALL.shape
        assert np.median(edark / ours) == pytest.approx(1.0, abs=0.01), ccd
        worst = float(np.max(np.abs(edark - ours)))
        assert worst <= 0.15 * float(np.median(ours)), (ccd, worst, float(np.median(ours)))


# -- a geometry whose image is not square -------------------------------------------------------

def rows_gradient(geometry: CCDGeometry):
    """A `change` adding row // 2 ADU to every image pixel of each quadrant, canonical rows."""
    step = (np.arange(geometry.image_rows) // 2)[:, None]

    def change(counts: np.ndarray) -> None:
        for q in QUADRANTS:
            view = geometry.quadrant(counts, q, canonical=True)
            view[: geometry.image_rows, geometry.prescan: geometry.prescan + geometry.image_cols] += step
    return change


@pytest.fixture(scope="module")
def oblong(tmp_path_factory):
    """BIAS01 on SMALL_OBLONG (64 image rows x 48 image columns a quadrant), a gradient along
    canonical rows added to every frame, analysed."""
    root = tmp_path_factory.mktemp("oblong")
    result = simulate(SimulationRequest(tests=("BIAS01",), out=root / "data", chamber=load_chamber("B_NOSTROMO"),
                                        geometry=SMALL_OBLONG, equipment=EQUIPMENT, jobs=1))
    for path in result.day_folder.glob("EUC_*.fits"):
        rewrite_counts(path, rows_gradient(SMALL_OBLONG))
    records = run_session(root / "data", root / "results", ("BIAS01",))
    return root / "results", records["BIAS01"]


def test_simulator_and_pipeline_take_a_non_square_geometry(oblong):
    _, record = oblong
    assert record["errors"] is False, record.get("error_messages")
    assert set(record["ccds"]) == {"CCD1", "CCD2", "CCD3"}
    assert all(set(record["ccds"][ccd]) >= set(QUADRANTS) for ccd in record["ccds"])


def test_bias_profiles_have_the_right_lengths_and_orientation(oblong):
    """The row profile (one value per canonical image row, 64) must carry the injected row // 2
    ADU, a slope of 0.5 ADU per row; the column profile (48 values) must be flat. Each profile
    value averages 48 (rows) or 64 (columns) pixels x 10 frames of ~1 ADU read noise, ~0.05 ADU;
    a least-squares slope over 48-64 points of that noise is ~0.001 ADU per index, and a hot
    pixel of the bias moves it by ~0.002: 0.02 holds with a wide margin. Swapped profiles have
    the other lengths and slopes; a quadrant left in frame orientation has a slope of -0.5."""
    results, _ = oblong
    with open(results / "D11" / "BIAS01" / "products" / "BIAS01_profiles.csv") as handle:
        rows = list(csv.DictReader(handle))
    profiles: dict[tuple[str, str, str], list[float]] = {}
    for row in rows:
        profile = profiles.setdefault((row["ccd"], row["quadrant"], row["axis"]), [])
        assert int(row["index"]) == len(profile)
        profile.append(float(row["mean_adu"]))
    assert len(profiles) == 3 * 4 * 2
    for (ccd, quadrant, axis), values in profiles.items():
        length = SMALL_OBLONG.image_rows if axis == "row" else SMALL_OBLONG.image_cols
        assert len(values) == length, (ccd, quadrant, axis)
        slope = np.polyfit(np.arange(length), values, 1)[0]
        expected = 0.5 if axis == "row" else 0.0
        assert slope == pytest.approx(expected, abs=0.02), (ccd, quadrant, axis, slope)
