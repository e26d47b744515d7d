"""CHINJ01, CHINJ02, COSMETICS00 and MOT_WARM end to end: one simulated small-geometry day ->
pipeline (aim mode) -> results that recover the simulator's truths.

Error budgets (small geometry: 64 x 64 image pixels per quadrant):
- injection curves: each point is the median of >= 30 x 64 injected pixels: its error is
  ~1.25 x sqrt(shot + RON^2 + (1-3 % non-uniformity x level)^2) / sqrt(1920), under 10 ADU at
  15 000 ADU and ~1 ADU near the notch, against curves that move by ~6 000 ADU per volt (slope)
  and by the whole level over the threshold's ~0.2 V width (steepness 10-20/V). Simulated fits
  with 3 ADU noise recover threshold and notch to < 0.01 V, so the issue's 0.1 V holds ten times
  over; non-linearity (< 1e-4 relative) and CTI (0.05-0.3 % of the level) are far below it.
- cosmetics: the flat median of 5 frames at ~30 000 ADU has ~0.3 % noise plus 1 % PRNU, so the
  [0.75, 1.25] response limits sit 20+ sigma from a good pixel; the median bias has ~0.7 ADU noise
  against the 20 ADU hot threshold (28 sigma): no good pixel should be flagged (budget 0.1 %).
  Hot pixels only show in a bias through the charge collected while their row waits to be read
  (rate x row x 34.4 ms), a few e- on this geometry for the simulator's 1-50 e-/s: their rates are
  raised to 1 000-50 000 e-/s here, and the few that still stay under the threshold (+5 sigma of
  the stack) in a bias, near row 0, are left out of the count as invisible to any bias.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

import engine.sim.elvis as elvis
from engine.campaign.chamber import load_chamber
from engine.campaign.config import campaign_from_dict
from engine.formats.explog import read_explog
from engine.formats.fits import read_frame
from engine.formats.geometry import QUADRANTS, SMALL
from engine.pipeline.runner import PipelineRun, RunOptions
from engine.sim.records import Equipment
from engine.sim.truths import ROW_READ_TIME_S, Truths
from engine.tasks import registry
from engine.tasks.calproducts import CalibrationInputs
from engine.tasks.chinj_lib import extract_lines, fit_ig1_curve, predicted_injection_adu

SERIALS = {"roe": "FM14", "rpsu": "FM14", "ccd1": "14888-88-81", "ccd2": "14888-88-82", "ccd3": "14888-88-83"}
EQUIPMENT = Equipment(sn_roe="FM14", sn_rpsu="FM14", sn_ccd1=SERIALS["ccd1"], sn_ccd2=SERIALS["ccd2"],
                      sn_ccd3=SERIALS["ccd3"])
TESTS = ("COSMETICS00", "CHINJ01", "CHINJ02", "MOT_WARM")
CCDS = (1, 2, 3)
HOT_RATE_FACTOR = 1000.0
BIAS_STACK_NOISE_ADU = 0.8  # 1.25 x 1.4 ADU / sqrt(5): the median of 5 biases at the largest RON


def campaign(data: Path, results: Path, tests):
    return campaign_from_dict({
        "campaign": {"block": "NOSTROMO", "chamber": "B_NOSTROMO"}, "hardware": SERIALS,
        "paths": {"data": str(data), "results": str(results)},
        "sessions": {"D11": {"tests": list(tests)}},
    }, base_dir=results.parent, families=registry.campaign_schema())


def run(data: Path, results: Path, tests, check_only: bool = False) -> dict[str, dict]:
    PipelineRun(campaign(data, results, tests), RunOptions(session="D11", jobs=2, check_only=check_only)).run_aim()
    return {t: json.loads((results / "D11" / t / "result.json").read_text()) for t in tests}


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    out = tmp_path_factory.mktemp("day") / "data"
    draw = elvis.draw_truths

    def brighter_hot_pixels(*args, **kwargs):
        truths = draw(*args, **kwargs)
        for ccd in truths.ccds.values():
            ccd.hot_pixels = {q: [(r, c, rate * HOT_RATE_FACTOR) for r, c, rate in pixels]
                              for q, pixels in ccd.hot_pixels.items()}
        return truths

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(elvis, "draw_truths", brighter_hot_pixels)
        result = elvis.simulate(elvis.SimulationRequest(tests=TESTS, out=out, chamber=load_chamber("B_NOSTROMO"),
                                                        geometry=SMALL, equipment=EQUIPMENT, jobs=2))
    return result.day_folder.parent, Truths.load(result.truths_path)


@pytest.fixture(scope="module")
def results(day, tmp_path_factory):
    data, _ = day
    folder = tmp_path_factory.mktemp("results") / "results"
    return folder, run(data, folder, TESTS)


def values(record: dict, ccd: int, q: str) -> dict:
    return record["ccds"][f"CCD{ccd}"][q]


# -- CHINJ01 / CHINJ02 ------------------------------------------------------------------------------

def test_chinj01_threshold_and_notch_within_a_tenth_of_a_volt(results, day):
    _, truths = day
    record = results[1]["CHINJ01"]
    assert record["errors"] is False and record["flags"] == [], record["flag_reasons"]
    assert all(status == "done" for status in record["subtasks"].values()), record["subtasks"]
    errors = []
    for ccd in CCDS:
        for q in QUADRANTS:
            truth = truths.ccds[ccd].quadrants[q]
            inj = truth.injection
            found = values(record, ccd, q)
            threshold, notch = 11.0 - inj.threshold_dv, 6.0 + inj.notch_offset_v  # IDL 11 V, IG2 6 V
            errors += [found["ig1_threshold_v"] - threshold, found["ig1_notch_v"] - notch]
            assert abs(found["ig1_threshold_v"] - threshold) < 0.1, (ccd, q)
            assert abs(found["ig1_notch_v"] - notch) < 0.1, (ccd, q)
            # levels in ADU: notch plateau and slope are the electrons over the gain
            assert found["injection_notch_adu"] == pytest.approx(inj.notch_level_e / truth.gain_e_per_adu, rel=0.03)
            assert found["slope_adu_per_v"] == pytest.approx(inj.slope_e_per_v / truth.gain_e_per_adu, rel=0.03)
            assert found["injected_frames"] == 18 and found["fit_points"] == 18
            # (p95 - p5) / p50 of a Gaussian column profile of rms u is 3.29 u (plus shot noise)
            assert found["injection_nonuniformity"] == pytest.approx(3.29 * inj.nonuniformity, rel=0.35), (ccd, q)
    assert max(abs(e) for e in errors) < 0.02  # what the statistics allow, far inside the 0.1 V


def test_chinj02_idl_threshold_within_a_tenth_of_a_volt(results, day):
    _, truths = day
    record = results[1]["CHINJ02"]
    assert record["errors"] is False and record["flags"] == [], record["flag_reasons"]
    for ccd in CCDS:
        for q in QUADRANTS:
            truth = truths.ccds[ccd].quadrants[q]
            found = values(record, ccd, q)
            assert abs(found["idl_threshold_v"] - (4.0 + truth.injection.threshold_dv)) < 0.1, (ccd, q)  # IG1 4 V
            plateau = truth.injection.level_e(4.0, 0.0, 6.0) / truth.gain_e_per_adu
            assert found["injection_max_adu"] == pytest.approx(plateau, rel=0.03), (ccd, q)
            assert "ig1_threshold_v" not in found


def test_chinj_products_tables_and_figures(results):
    folder, records = results
    record = records["CHINJ01"]
    assert sorted(record["products"]) == ["products/CHINJ01_extraction.csv", "products/CHINJ01_fits.csv",
                                          "products/CHINJ01_profiles.csv"]
    assert sorted(record["figures"]) == ["figs/CHINJ01_curves.png", "figs/CHINJ01_profiles.png"]
    lines = (folder / "D11" / "CHINJ01" / "products" / "CHINJ01_extraction.csv").read_text().splitlines()
    header = lines[0].split(",")
    rows = [dict(zip(header, line.split(","))) for line in lines[1:]]
    assert len(rows) == 36 * 3 * 4
    injected = [r for r in rows if r["injected"] == "1"]
    assert len(injected) == 36 * 3 * 2  # each frame injects one half
    assert {r["quadrant"] for r in injected if float(r["id_dly_us"]) == 1250.0} == {"E", "F"}
    for r in injected:
        assert float(r["low_adu"]) <= float(r["p50_adu"]) <= float(r["high_adu"])


def test_fluence_check_flags_a_wrong_injection_with_value_and_limit(results, day, tmp_path):
    """A quadrant whose injection is 3x too low at every IG1 fails the fluence check by name."""
    data, _ = day
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    for path in frames_of(copy / "12_Mar_19", "CHINJ01", 3):
        with fits.open(path, mode="update") as hdul:
            frame = hdul[-1].data
            rows, cols = SMALL.quadrant_slices("E")
            quadrant = frame[rows, cols].astype(np.float64)
            level = np.median(quadrant[:, :SMALL.prescan])
            frame[rows, cols] = np.rint(level + (quadrant - level) / 3.0).astype(np.uint16)
    record = run(copy, tmp_path / "results", ["CHINJ01"], check_only=True)["CHINJ01"]  # the check alone judges it
    reasons = [r for r in record["flag_reasons"] if r["flag"] == "FLUENCE_OOL"]
    assert reasons and {(r["ccd"], r["quadrant"]) for r in reasons} == {(3, "E")}
    assert "outside [" in reasons[0]["reason"] and "predicted" in reasons[0]["reason"]


def test_extraction_and_fit_functions_on_known_inputs():
    """The pure functions: a synthetic on/off pattern and an exact curve."""
    rng = np.random.default_rng(3)
    image = rng.normal(0, 1.0, (100, 40)).astype(np.float32)
    rows = (np.arange(100) % 13) < 4
    image[rows] += 1000.0
    image[np.flatnonzero(rows) + 1][:, :] += 0  # no trail: spill-over ~ 0
    found = extract_lines(image, 4, 9)
    assert found.phase == 0 and found.p50 == pytest.approx(1000.0, abs=1.0)
    assert abs(found.spillover) < 1e-3 and found.column_profile.size == 13
    shifted = np.roll(image, 2, axis=0)  # the data start two rows later: the phase says so
    assert extract_lines(shifted, 4, 9).phase == 2
    volts = np.arange(2.5, 6.76, 0.25)
    levels = 0.5 * (1 + np.tanh(0.5 * 15 * (volts - 3.6))) * (6000 * np.maximum(5.9 - volts, 0) + 600)
    fit = fit_ig1_curve(volts, levels)
    assert fit.ok and fit.get("threshold") == pytest.approx(3.6, abs=0.01) and fit.get("notch") == pytest.approx(5.9, abs=0.01)
    assert not fit_ig1_curve(volts[:3], levels[:3]).ok
    assert predicted_injection_adu(4.0, 6.0, 11.0) == 12600.0 and predicted_injection_adu(3.0, 6.0, 11.0) == 0.0


# -- COSMETICS00 ----------------------------------------------------------------------------------

def test_cosmetics_flags_the_injected_defects_and_spares_good_pixels(results, day):
    folder, records = results
    _, truths = day
    record = records["COSMETICS00"]
    assert record["errors"] is False, record["error_messages"]
    defects = found = good = false = invisible = 0
    g = SMALL
    for ccd in CCDS:
        name = f"EUC_MASK_NOSTROMO_CCD{ccd}_SN_{SERIALS[f'ccd{ccd}']}.fits"
        assert f"products/{name}" in record["products"]
        with fits.open(folder / "D11" / "COSMETICS00" / "products" / name) as hdul:
            hdul.verify("exception")
            assert [h.name for h in hdul[1:]] == ["MASK", "DEFECTS"]
            assert hdul[0].header["TEST"] == "COSMETICS00" and hdul[0].header["SN"] == SERIALS[f"ccd{ccd}"]
            assert hdul[0].header["NCOMB"] == 10
            mask = hdul["MASK"].data
            assert np.array_equal(mask != 0, hdul["DEFECTS"].data != 0)
        truth = truths.ccds[ccd]
        for q in QUADRANTS:
            quad = g.quadrant(mask, q)
            assert not quad[:, : g.prescan].any() and not quad[:, g.prescan + g.image_cols:].any()
            image = quad[: g.image_rows, g.prescan: g.prescan + g.image_cols] != 0
            expected = np.zeros_like(image)
            gain = truth.quadrants[q].gain_e_per_adu
            threshold = values(record, ccd, q)["hot_threshold_adu"]
            for row, col, rate in truth.hot_pixels[q]:
                if rate * row * ROW_READ_TIME_S / gain < threshold + 5 * BIAS_STACK_NOISE_ADU:
                    invisible += 1
                    continue
                expected[row, col - g.prescan] = True
            for row, col in truth.dead_pixels[q]:
                expected[row, col - g.prescan] = True
            for row, col, _ in truth.cold_pixels[q]:
                expected[row, col - g.prescan] = True
            for bad in truth.bad_columns[q]:
                expected[bad.row_start:, bad.col - g.prescan] = True
            hot_anywhere = np.zeros_like(image)
            for row, col, _ in truth.hot_pixels[q]:
                hot_anywhere[row, col - g.prescan] = True
            defects += int(expected.sum())
            found += int((expected & image).sum())
            good += int((~expected & ~hot_anywhere).sum())
            false += int((image & ~expected & ~hot_anywhere).sum())
            assert values(record, ccd, q)["pixels_lost_pct"] == pytest.approx(100 * image.sum() / image.size, abs=1e-3)
            assert values(record, ccd, q)["bad_columns"] == len({b.col for b in truth.bad_columns[q]})
    assert defects > 100 and invisible <= 0.2 * defects
    assert found / defects >= 0.95, (found, defects)
    assert false / good < 0.001, (false, good)


def test_the_mask_is_the_calibration_product_later_tests_find(results, day):
    folder, records = results
    inputs = CalibrationInputs(campaign(day[0], folder, ["BIAS01"]), folder)
    source = inputs.source("cosmetics_mask")
    assert source.origin == "result" and source.test == "COSMETICS00"
    for ccd in CCDS:
        path = inputs.path("cosmetics_mask", ccd)
        assert path is not None and path.is_file()
        assert path.name == f"EUC_MASK_NOSTROMO_CCD{ccd}_SN_{SERIALS[f'ccd{ccd}']}.fits"


# -- MOT_WARM -------------------------------------------------------------------------------------

def test_mot_warm_passes_on_nominal_data(results):
    record = results[1]["MOT_WARM"]
    assert record["errors"] is False and record["values"]["warm_ready"] == "pass", record["values"]["warm_failures"]
    assert not {"POORQUALDATA", "RON_OOL", "FLUENCE_OOL", "DEADQUAD"} & set(record["flags"]), record["flag_reasons"]
    for ccd in CCDS:
        for q in QUADRANTS:
            found = values(record, ccd, q)
            assert found["injection_status"] == ("pass" if q in "EF" else "n/a")  # the delay injects E, F
            assert all(found[f"{c}_status"] == "pass" for c in ("offset", "ron", "flat", "bits"))
            assert found["bits_tested"] >= 8  # the flat's spread (~300 ADU) toggles bits 0-8


def frames_of(folder: Path, test: str, ccd: int) -> list[Path]:
    """A test's frames of one CCD in OBSID order, as the EXP_LOG lists them."""
    log = read_explog(next(folder.glob("EXP_LOG_*.txt")))
    return [folder / f"{row['File_name']}.fits" for row in log.rows
            if row["test"] == test and str(row["CCD"]) == f"CCD{ccd}"]


def _kill_quadrant(data: Path, copy: Path, ccd: int, quadrant: str, how: str) -> None:
    """A copy of the day where one quadrant of a CCD's MOT_WARM frames is dead: it only shows its
    bias (`bias`: offset and read noise, no response to light or injection) or one flat value."""
    shutil.copytree(data, copy)
    warm = frames_of(copy / "12_Mar_19", "MOT_WARM", ccd)
    with read_frame(warm[1]) as bias:  # the BIAS_RV frame
        bias_quadrant = bias.quadrant(quadrant, canonical=False).copy()
    rows, cols = SMALL.quadrant_slices(quadrant)
    for path in warm:
        with fits.open(path, mode="update") as hdul:
            hdul[-1].data[rows, cols] = bias_quadrant if how == "bias" else np.uint16(2800)


@pytest.mark.parametrize("how", ["bias", "flat-lined"])
def test_mot_warm_fails_on_a_dead_quadrant_with_its_reason(day, tmp_path, how):
    data, _ = day
    _kill_quadrant(data, tmp_path / "data", 2, "E", how)
    record = run(tmp_path / "data", tmp_path / "results", ["MOT_WARM"])["MOT_WARM"]
    assert record["values"]["warm_ready"] == "fail"
    dead = values(record, 2, "E")
    assert dead["flat_status"] == "fail" and "flat level" in dead["flat_reason"]
    assert dead["injection_status"] == "fail" and "median injection" in dead["injection_reason"]
    if how == "flat-lined":
        assert dead["ron_status"] == "fail" and "noise outside" in dead["ron_reason"]
        assert dead["bits_status"] == "fail" and "no bit toggles" in dead["bits_reason"]
    assert "DEADQUAD" in record["flags"]
    assert any(r["flag"] == "DEADQUAD" and r["ccd"] == 2 and r["quadrant"] == "E" for r in record["flag_reasons"])
    assert all(f.startswith("CCD2 E ") for f in record["values"]["warm_failures"]), record["values"]["warm_failures"]
    healthy = values(record, 2, "F")
    assert healthy["flat_status"] == "pass" and healthy["injection_status"] == "pass"
    assert math.isfinite(healthy["warm_flat_adu"])
