"""DARK01 over the FPA (engine/tasks/fpa_dark.py on fpa_family.py's units) and the FPA cosmetics
mask in the LE1 layout, on 4 simulated small LE1 dark frames of 565 s (DARK01's structure).

Error budget of the dark current of a quadrant (small LE1 geometry, n = 4 frames, read noise
sigma = 1.00-1.35 ADU, gain g = 3.5 e-/ADU, t = 565 s):
- the per-pixel median of n frames: std sqrt(pi/2) sigma / sqrt(n) (its large-n value; for n = 4,
  the mean of the middle two, a little less), averaged over the 64 x 64 image pixels by the
  clipped mean: 0.0098 sigma;
- the offsets subtracted: each frame's prescan clipped mean over 64 rows x 6 trimmed columns,
  std sigma / sqrt(384), shared by every pixel of the frame: sigma / sqrt(384 n) = 0.0255 sigma
  on the level (the dominant term on the small geometry);
- shot noise of the dark charge (< 1.6 e- a pixel): < 0.36 ADU a pixel, below sigma, inside the
  first term's sigma when added in quadrature (done below); its skew moves a median by about
  kappa3 / (6 sigma^2) < 0.005 ADU, added as a bias bound.
The total, ~0.03 ADU at sigma 1.2, is ~0.7 e-/pix/h (x g / t): each quadrant is held to 5 of its
own sigmas plus the skew bound, and the mean difference over the 144 quadrants to 5 sigma / 12.
Hot pixels (4 a quadrant, 1-50 e-/s: >= 161 ADU in 565 s) stand far above both the dark family's
50 ADU threshold and the mask's 20 ADU (10 robust sigma of a ~0.7 ADU noise is 7 ADU), so all of
them are expected in the mask; a false one needs a > 20 ADU excursion of that noise: none.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from astropy.io import fits

from engine.cli.main import main as cli
from engine.formats.fits import read_frame
from engine.formats.geometry import QUADRANTS
from engine.formats.le1 import LE1_SMALL, read_le1
from engine.sim.le1 import DARK_EXPTIME_S, LE1_GAIN_E_PER_ADU
from engine.tasks.dark import HOT_PIXEL_THRESHOLD_ADU
from fpa_frames import elvis_frames_of
from engine.tasks.measures import quadrant_stats, region_columns
from engine.tasks.stacking import StackTarget, allocate_fits, stack_unit

FRAMES = 4
PRODUCTS = ["products/EUC_MASTERDARK_FPA.fits", "products/EUC_MASTERDARK_FPA_ERR.fits", "products/EUC_MASK_FPA.fits"]


@pytest.fixture(scope="module")
def fpa_dark(tmp_path_factory):
    root = tmp_path_factory.mktemp("fpa_dark")
    code = cli(["fpa", "simulate", "--out", str(root / "data"), "--test", "DARK01", "--frames", str(FRAMES),
                "--seed", "7"])
    assert code == 0
    day = next((root / "data").iterdir())
    code = cli(["fpa", "run", "--data", str(day), "--test", "DARK01", "--results", str(root / "results"), "-m", "2"])
    assert code == 0
    folder = root / "results" / "FPA" / "DARK01"
    truths = json.loads((day / "LE1_TRUTHS.json").read_text())
    return day, truths, folder, json.loads((folder / "result.json").read_text())


def _prescan_pixels() -> int:
    cols = region_columns(LE1_SMALL, "prescan")
    return LE1_SMALL.image_rows * (cols.stop - cols.start)


def test_dark_current_of_all_144_quadrants_is_recovered(fpa_dark):
    _, truths, _, record = fpa_dark
    assert (record["family"], record["test"], record["exposures"], record["block"]) == ("dark", "DARK01", FRAMES, "FPA")
    assert record["values"]["exptime_s"] == [DARK_EXPTIME_S] and record["flags"] == []
    per_hour = LE1_GAIN_E_PER_ADU / (DARK_EXPTIME_S / 3600.0)  # ADU per exposure -> e-/pix/h
    image_pixels = LE1_SMALL.image_rows * LE1_SMALL.image_cols
    differences, sigmas, skews = [], [], []
    for ccdid, quadrants in record["ccds"].items():
        for q, values in quadrants.items():
            truth = truths["ccds"][ccdid][q]
            dark_adu = truth["dark_e_per_pix_per_hour"] * DARK_EXPTIME_S / 3600.0 / LE1_GAIN_E_PER_ADU
            sigma = math.hypot(truth["ron_adu"], math.sqrt(dark_adu / LE1_GAIN_E_PER_ADU))
            median_term = math.sqrt(math.pi / 2) * sigma / math.sqrt(FRAMES * image_pixels)
            offset_term = truth["ron_adu"] / math.sqrt(_prescan_pixels() * FRAMES)
            error = math.hypot(median_term, offset_term) * per_hour
            skew = dark_adu / LE1_GAIN_E_PER_ADU ** 2 / (6 * sigma ** 2) * per_hour
            difference = values["dark_e_per_pix_per_hour"] - truth["dark_e_per_pix_per_hour"]
            assert abs(difference) < 5 * error + skew, (ccdid, q, values["dark_e_per_pix_per_hour"], truth)
            assert values["hot_pixels"] == len(truth["hot_pixels"]), (ccdid, q)
            assert values["dark_signal_adu"] == pytest.approx(values["dark_e_per_pix_per_hour"] / per_hour, abs=1e-3)
            differences.append(difference)
            sigmas.append(error)
            skews.append(skew)
    assert len(differences) == 144
    assert abs(np.mean(differences)) < 5 * np.mean(sigmas) / math.sqrt(144) + max(skews)  # no bias over the FPA
    assert record["fpa_positions"]["C_41"]["block"] == "JULES2"


def test_the_fpa_dark_numbers_are_the_block_dark_numbers(fpa_dark, tmp_path):
    """C_41's quadrants put into ELVIS frames and stacked by the block DARK01's worker
    (stacking.stack_unit, the dark's threshold) give the FPA's dark signal and hot-pixel count."""
    day, _, _, record = fpa_dark
    geometry = LE1_SMALL
    paths = elvis_frames_of(sorted(day.glob("*.fits")), "C_41", tmp_path, geometry)
    raw = tmp_path / "stack.fits"
    offsets_in_file = allocate_fits(raw, fits.Header(), ("DARK", "EDARK"), geometry.shape)
    target = StackTarget(raw, offsets_in_file, "DARK", "EDARK", "error")
    for q in QUADRANTS:
        offsets = []
        for path in paths:
            with read_frame(path) as frame:
                offsets.append(quadrant_stats(frame, q, geometry, slice(0, geometry.image_rows)).prescan.clipped_mean)
        block = stack_unit((1, q), paths, offsets, geometry, target, HOT_PIXEL_THRESHOLD_ADU)
        values = record["ccds"]["C_41"][q]
        assert values["dark_signal_adu"] == pytest.approx(block.level.mean, abs=1e-4), q
        assert values["hot_pixels"] == block.hot_count, q


def test_the_mask_holds_the_injected_hot_pixels_in_the_le1_layout(fpa_dark):
    """>= 95 % of the injected hot pixels found, < 0.1 % of the image pixels flagged falsely,
    each at the pixel where the raw LE1 extension holds it."""
    day, truths, folder, record = fpa_dark
    assert record["products"] == PRODUCTS and record["subtasks"] == {"basic": "done", "meta": "done"}
    raw = next(day.glob("*.fits"))
    le1 = read_le1(raw)
    found = injected = false = 0
    with fits.open(folder / PRODUCTS[2]) as mask, fits.open(raw) as frame:
        mask.verify("exception")
        assert [h.name for h in mask] == [h.name for h in frame]
        assert (mask[0].header["PRODUCT"], mask[0].header["TEST"], mask[0].header["NCOMB"]) == ("MASK", "DARK01", 4)
        for place in le1.layout.quadrants:
            bits = mask[place.extname].data
            assert bits.dtype == np.uint8 and bits.shape == frame[place.extname].data.shape
            stored = {(int(r), int(c)) for r, c in zip(*np.nonzero(bits))}
            height, width = bits.shape
            expected = set()
            for row, col, _ in truths["ccds"][place.ccd.ccdid][place.quadrant]["hot_pixels"]:
                # canonical -> stored: flipped as the LE1 layout stores this position
                expected.add((height - 1 - row if place.flip_rows else row, width - 1 - col if place.flip_cols else col))
                # the raw frame holds the hot pixel at that very pixel: its brightest
            brightest = np.argsort(frame[place.extname].data, axis=None)[-len(expected):]
            assert {(int(k // width), int(k % width)) for k in brightest} == expected, place.extname
            found += len(stored & expected)
            injected += len(expected)
            false += len(stored - expected)
            assert record["ccds"][place.ccd.ccdid][place.quadrant]["mask_hot_pixels"] == len(stored)
    assert injected == 144 * 4
    assert found >= 0.95 * injected
    assert false < 0.001 * 144 * LE1_SMALL.image_rows * LE1_SMALL.image_cols


def test_the_master_dark_has_the_le1_layout_and_the_maps_exist(fpa_dark):
    _, _, folder, record = fpa_dark
    with fits.open(folder / PRODUCTS[0]) as master, fits.open(folder / PRODUCTS[1]) as error:
        assert len(master) == len(error) == 145 and master[1].name == "1-1.E"
        assert (master[0].header["PRODUCT"], error[0].header["PRODUCT"]) == ("MASTERDARK", "MASTERDARK_ERR")
        assert master[0].header["EXPTIME"] == DARK_EXPTIME_S and error[0].header["METHOD"].startswith("std (ddof 1) / sqrt")
    assert record["figures"] == ["figs/DARK01_fpa_dark_e_per_pix_per_hour.png", "figs/DARK01_fpa_hot_pixels.png"]
    for name in record["figures"]:
        assert (folder / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| C_41 | JULES2 CCD1 | G |" in (folder / "report.md").read_text()


def test_no_meta_keeps_the_dark_current_and_writes_no_product(fpa_dark, tmp_path):
    day, _, _, record = fpa_dark
    code = cli(["fpa", "run", "--data", str(day), "--test", "DARK01", "--results", str(tmp_path), "--no-meta",
                "-m", "1", "--map", "fluence_adu"])
    assert code == 0
    folder = tmp_path / "FPA" / "DARK01"
    again = json.loads((folder / "result.json").read_text())
    assert again["products"] == [] and again["subtasks"]["meta"] == "off" and not (folder / "products").exists()
    assert again["figures"] == ["figs/DARK01_fpa_fluence_adu.png"]
    for ccdid, quadrants in record["ccds"].items():  # the same numbers, the mask's count aside
        for q, values in quadrants.items():
            assert {k: v for k, v in values.items() if k != "mask_hot_pixels"} == again["ccds"][ccdid][q]
