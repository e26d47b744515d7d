"""PTC01 and BF01 end to end on one simulated small-geometry PTC01 day (PTC01, then BF01 on its frames,
then DARK01 taking the measured gain), plus the PTC fit at full-frame statistics.

Error budget (small geometry: 64 x 64 image pixels a quadrant, PTC01's fixed structure):
- gain: a tile variance from n pixels has the relative error sqrt(2/n). The fit range (1e3-4e4
  ADU) holds PTC01's 5 %-50 % columns, 5 pairs each: ~1 % per fluence over the quadrant; the free
  quadratic term (brighter-fatter) makes the gain's error ~2 % per quadrant (measured 1.7-2.1 %),
  so 1 % per quadrant cannot be reached on this geometry: each quadrant is held to 4 of its own
  sigmas (about 8 %), the errors are checked to be what the pixel count predicts, and the mean of
  the 12 quadrants (sigma ~0.6 %) to 3 sigma. The same fit at full-frame statistics (1000 x the
  pixels: sigma ~0.07 %) meets 1 % per quadrant (test_ptc_fit_meets_one_percent_at_full_frame_statistics);
  the model terms the fit does not describe (non-linearity, brighter-fatter beyond second order)
  bias it by < 0.3 % at the truths' extremes.
- brighter-fatter: a correlation coefficient from N pixel pairs has the error 1/sqrt(N) (0.007
  per column of 5 pairs here). The simulator's strengths (0.02-0.04) give correlations of
  0.01-0.02 at the 32768 ADU reference, ~20 % errors per coefficient; as the dark test does for
  dark current, the strengths are doubled (0.04-0.08): ~9 % per coefficient, ~7 % for the mean
  of the serial and parallel neighbours, which is held to the issue's 30 % (4 sigma). Doubling
  moves the PTC gain by < 0.15 % (its cubic term), negligible against the 2 % above.
  The expected coefficient is the simulator's law for a flat: neighbours exchange a fraction
  a = strength x level / (2 full well) of their difference, so rho = 2a(1-4a)/(1-8a+20a^2)
  (about strength x level / full well).
- one pair of CCD1 (column 2) is made unequal: the second frame's image signal x 1.3; it must be
  left out with both fluences and the limit, and cost nothing else.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

import engine.sim.elvis as elvis
from engine.campaign.chamber import load_chamber
from engine.formats.explog import read_explog
from engine.formats.fits import read_frame, write_frame
from engine.formats.geometry import QUADRANTS, SMALL
from engine.sim.truths import Truths
from engine.tasks.ptc_lib import PTCPoints, fit_ptc, truncation_factor
from sim_days import EQUIPMENT, SERIALS, run_session

TESTS = ("PTC01", "BF01", "DARK01")
CCDS = (1, 2, 3)
BF_BOOST = 2.0
UNEQUAL_FACTOR = 1.3


def simulate_day(out: Path) -> tuple[Truths, tuple[int, int]]:
    draw = elvis.draw_truths

    def stronger_bf(*args, **kwargs):
        truths = draw(*args, **kwargs)
        for ccd in truths.ccds.values():
            for quadrant in ccd.quadrants.values():
                quadrant.bf_strength *= BF_BOOST
        return truths

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(elvis, "draw_truths", stronger_bf)
        result = elvis.simulate(elvis.SimulationRequest(tests=("PTC01", "DARK01"), out=out,
                                                        chamber=load_chamber("B_NOSTROMO"), geometry=SMALL,
                                                        equipment=EQUIPMENT, jobs=2))
    pair = make_one_pair_unequal(result.explog_path)
    return Truths.load(result.truths_path), pair


def make_one_pair_unequal(explog: Path) -> tuple[int, int]:
    """Scale the image signal of the second frame of CCD1's first pair in PTC01's column 2."""
    rows = [r for r in read_explog(explog).rows if r["test"] == "PTC01" and r["CCD"] == "CCD1"]
    times = sorted({float(r["exptime"]) for r in rows})
    column2 = [r for r in rows if float(r["exptime"]) == times[1]]
    first, second = int(column2[0]["ObsID"]), int(column2[1]["ObsID"])
    path = explog.parent / f"{column2[1]['File_name']}.fits"
    with read_frame(path) as frame:
        data = frame.data.astype(np.float64)
        header = dict(frame.primary_header)
    for q in QUADRANTS:
        offset = float(np.median(SMALL.region(data, q, "prescan")))
        rows_, cols = SMALL.frame_region_slices(q, "image")
        data[rows_, cols] = offset + UNEQUAL_FACTOR * (data[rows_, cols] - offset)
    header = {k: v for k, v in header.items() if k not in ("SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "EXTEND",
                                                          "BZERO", "BSCALE", "COMMENT", "HISTORY", "")}
    write_frame(path, np.clip(np.rint(data), 0, 65535).astype(np.uint16), header, extname="ROE1_CCD1",
                overwrite=True)
    return first, second


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    out = tmp_path_factory.mktemp("ptcday") / "data"
    truths, pair = simulate_day(out)
    return out, truths, pair


@pytest.fixture(scope="module")
def results(day, tmp_path_factory):
    data, _, _ = day
    folder = tmp_path_factory.mktemp("ptcresults") / "results"
    return folder, run_session(data, folder, TESTS, jobs=2)


def values(record: dict, ccd: int, q: str) -> dict:
    return record["ccds"][f"CCD{ccd}"][q]


# -- PTC01 -----------------------------------------------------------------------------------------

def test_ptc01_gain_recovers_the_injected_gain_within_its_statistics(results, day):
    _, truths, _ = day
    record = results[1]["PTC01"]
    assert record["errors"] is False, record["error_messages"]
    relative, pulls = [], []
    for ccd in CCDS:
        for q in QUADRANTS:
            truth = truths.ccds[ccd].quadrants[q].gain_e_per_adu
            v = values(record, ccd, q)
            gain, error = v["gain_e_per_adu"], v["gain_err_e_per_adu"]
            # the error is what 5 pairs x 4096 pixels per fluence predict (~2 %), not a fudge
            assert 0.01 < error / gain < 0.035, (ccd, q, error)
            assert abs(gain - truth) < 4 * error, (ccd, q, gain, truth, error)
            relative.append(gain / truth - 1)
            pulls.append((gain - truth) / error)
            assert v["ptc_points_fitted"] >= 300  # 16 tiles x ~25 pairs in range, few clipped
            assert v["quad_term_per_adu"] < 0  # brighter-fatter: the variance bends down
    assert abs(np.mean(relative)) < 3 * 0.021 / math.sqrt(12)
    assert np.sqrt(np.mean(np.square(pulls))) < 2.0  # errors honest: pulls of order 1


def test_ptc01_finds_blooming_near_the_full_well(results, day):
    """PTC01 samples the full well in 10 % steps (0.9, 1.0, 1.1, 1.2 x 200 ke-) and the truths'
    wells are 195-225 ke-: the blooming level is located to the column spacing, ~15 %."""
    _, truths, _ = day
    record = results[1]["PTC01"]
    for ccd in CCDS:
        for q in QUADRANTS:
            v = values(record, ccd, q)
            full_well = truths.ccds[ccd].quadrants[q].full_well_e
            assert v["bloom_lower_limit"] is False
            assert 0.8 * full_well < v["bloom_e"] < 1.1 * full_well, (ccd, q, v["bloom_e"], full_well)
            assert v["bloom_e"] == pytest.approx(v["bloom_adu"] * v["gain_e_per_adu"], rel=1e-3)


def test_ptc01_rejects_the_unequal_pair_and_says_why(results, day):
    _, _, (first, second) = day
    record = results[1]["PTC01"]
    [reason] = record["values"]["pairs_rejected"]
    assert reason.startswith(f"CCD1: pair OBSIDs {first}/{second} (column 2): fluences ")
    assert "differ by 2" in reason and "(limit 5 %): pair left out" in reason  # x1.3: 26 % apart
    flagged = [r for r in record["flag_reasons"] if r["flag"] == "POORQUALDATA" and r.get("obsid") == first]
    assert flagged and flagged[0]["ccd"] == 1 and "limit 5 %" in flagged[0]["reason"]
    assert record["values"]["pairs_used"] == 3 * (8 * 5 + 3 * 2) - 1
    # the CCD1 quadrants still measure their gain from the remaining pairs
    assert all(math.isfinite(values(record, 1, q)["gain_e_per_adu"]) for q in QUADRANTS)


def test_ptc01_products_curves_and_report(results):
    folder, records = results
    record = records["PTC01"]
    test_dir = folder / "D11" / "PTC01"
    with open(test_dir / "products" / "PTC01_GAIN_TB.csv") as handle:
        table = list(csv.DictReader(handle))
    assert [(r["ccd"], r["quadrant"]) for r in table] == [(f"CCD{c}", q) for c in CCDS for q in QUADRANTS]
    assert float(table[0]["gain_e_per_adu"]) == pytest.approx(values(record, 1, "E")["gain_e_per_adu"], abs=1e-4)
    with open(test_dir / "products" / "PTC01_PTC_curves.csv") as handle:
        points = list(csv.DictReader(handle))
    fitted = sum(int(p["fitted"]) for p in points if p["ccd"] == "CCD2" and p["quadrant"] == "G")
    assert fitted == values(record, 2, "G")["ptc_points_fitted"]
    assert sorted(record["figures"]) == [f"figs/PTC01_PTC_CCD{c}.png" for c in CCDS]
    for figure in record["figures"]:
        assert (test_dir / figure).read_bytes()[:4] == b"\x89PNG"
    report = (test_dir / "report.md").read_text()
    assert "## Photon transfer curve and gain" in report and "left out for unequal fluences" in report
    assert record["subtasks"] == {"init": "done", "check": "done", "prep": "done", "extract_PTC": "done",
                                  "meta": "done", "report": "done"}
    assert "SATURATION" not in record["flags"]  # PTC01's top columns saturate on purpose


# -- the gain as a calibration product ---------------------------------------------------------

def test_dark01_after_ptc01_takes_the_measured_gain_and_says_so(results):
    _, records = results
    ptc, dark = records["PTC01"], records["DARK01"]
    assert "MISSCALPROD" not in dark["flags"]
    assert dark["values"]["calproducts"]["gain"]["origin"] == "result"
    assert dark["values"]["calproducts"]["gain"]["test"] == "PTC01"
    assert "PTC01 result" in dark["values"]["gain_source"]
    for ccd in CCDS:
        for q in QUADRANTS:
            assert values(dark, ccd, q)["gain_e_per_adu_used"] == values(ptc, ccd, q)["gain_e_per_adu"]


# -- BF01 ------------------------------------------------------------------------------------------

def expected_correlation(strength: float, level_e: float, full_well_e: float) -> float:
    a = 0.5 * strength * level_e / full_well_e
    return 2 * a * (1 - 4 * a) / (1 - 8 * a + 20 * a * a)


def test_bf01_nearest_neighbour_correlations_have_the_injected_sign_and_size(results, day):
    _, truths, _ = day
    record = results[1]["BF01"]
    assert record["errors"] is False, record["error_messages"]
    assert "PTC01 result" in record["values"]["gain_source"] and "MISSCALPROD" not in record["flags"]
    reference = record["values"]["bf_reference_fluence_adu"]
    ratios = []
    for ccd in CCDS:
        for q in QUADRANTS:
            truth = truths.ccds[ccd].quadrants[q]
            v = values(record, ccd, q)
            expected = expected_correlation(truth.bf_strength, reference * truth.gain_e_per_adu, truth.full_well_e)
            serial, parallel = v["nn_corr_serial_ref"], v["nn_corr_parallel_ref"]
            assert serial > 3 * v["nn_corr_serial_ref_err"] and parallel > 3 * v["nn_corr_parallel_ref_err"]
            mean = 0.5 * (serial + parallel)
            assert mean == pytest.approx(expected, rel=0.30), (ccd, q, serial, parallel, expected)
            ratios.append(mean / expected)
            # the a matrix: neighbours gain what the centre loses (strength / full well per electron)
            per_e = truth.bf_strength / truth.full_well_e
            assert 0 < v["kernel_a01_per_e"] < 2 * per_e and 0 < v["kernel_a10_per_e"] < 2 * per_e
            assert -6 * per_e < v["kernel_a00_per_e"] < -2 * per_e
    assert np.mean(ratios) == pytest.approx(1.0, abs=0.06)  # 24 coefficients: ~2 % on the mean


def test_bf01_products_carry_provenance_and_the_kernels(results):
    folder, records = results
    record = records["BF01"]
    name = f"EUC_BF_CCD2_SN_{SERIALS['ccd2']}_NOSTROMO.fits"
    assert f"products/{name}" in record["products"] and "products/BF01_COVTABLE.csv" in record["products"]
    with fits.open(folder / "D11" / "BF01" / "products" / name) as hdul:
        hdul.verify("exception")
        header = hdul[0].header
        assert header["TEST"] == "BF01" and header["CCD"] == "CCD2" and header["SN"] == SERIALS["ccd2"]
        assert header["NCOMB"] == 92 and header["VISON"] and header["MAXLAG"] == 4
        assert header["GAIN_G"] == values(records["PTC01"], 2, "G")["gain_e_per_adu"]
        kernel = hdul["KERNEL_G"].data
        assert kernel.shape == (9, 9) and np.allclose(kernel, kernel[::-1, ::-1])
        assert kernel[4, 5] == pytest.approx(values(record, 2, "G")["kernel_a01_per_e"], rel=1e-6)
        assert hdul["CORR_G"].data.shape == (11, 5, 5)
        assert np.allclose(hdul["CORR_G"].data[:, 0, 0], 1.0)
        assert len(hdul["FLUENCES_G"].data) == 11


# -- the pieces ------------------------------------------------------------------------------------

def test_ptc_fit_meets_one_percent_at_full_frame_statistics():
    """PTC01 on full frames: 49 tiles of ~86000 pixels per pair, 5 pairs per column (2 above 100 %):
    variances drawn with their Gaussian error around the simulator's law (brighter-fatter and
    non-linearity included). sigma(gain) ~0.07 %: 1 % is 14 sigma."""
    rng = np.random.default_rng(11)
    fractions = [0.05, 0.10, 0.20, 0.30, 0.50, 0.70, 0.80, 0.90]
    for trial in range(4):
        gain, full_well = rng.uniform(3.1, 3.5), rng.uniform(195e3, 225e3)
        strength, a2, a3 = rng.uniform(0.02, 0.04), rng.uniform(1e-3, 3e-3), rng.uniform(-5e-3, -3e-3)
        means, variances, pixels, columns = [], [], [], []
        for column, fraction in enumerate(fractions):
            level = fraction * 2e5 * (1 + 0.01 * rng.standard_normal(49 * 5))
            x, a = level / full_well, 0.5 * strength * level / full_well
            slope = (1 + 3 * a2 * x ** 2 + 4 * a3 * x ** 3) / gain
            truth_var = level * ((1 - 4 * a) ** 2 + 4 * a * a) * slope ** 2 + 1.4
            n = np.full(level.size, 86_000)
            means.append(level * (1 + a2 * x ** 2 + a3 * x ** 3) / gain)
            variances.append(truth_var * (1 + np.sqrt(2 / n) * rng.standard_normal(level.size)))
            pixels.append(n)
            columns.append(np.full(level.size, column))
        points = PTCPoints(np.concatenate(means), np.concatenate(variances), np.concatenate(pixels),
                           np.zeros(sum(len(m) for m in means), int), np.concatenate(columns))
        fit = fit_ptc(points)
        assert fit.quality == []
        assert fit.gain == pytest.approx(gain, rel=0.01)
        assert fit.gain_err / fit.gain < 0.002


def test_the_fit_drops_saturation_smeared_columns():
    rng = np.random.default_rng(5)
    means, variances, columns = [], [], []
    for column, mu in enumerate([2e3, 5e3, 1e4, 2e4, 3e4, 3.9e4, 5.5e4]):
        m = np.full(16, mu)
        v = mu / 3.3 * (1 + 0.01 * rng.standard_normal(16))
        if mu > 5e4:  # half the tiles saturate: their variance collapses
            v[:8] *= 0.05
        means.append(m), variances.append(v), columns.append(np.full(16, column))
    points = PTCPoints(np.concatenate(means), np.concatenate(variances), np.full(112, 90_000), np.zeros(112, int),
                       np.concatenate(columns))
    fit = fit_ptc(points, fit_range=(1e3, 6e4))
    assert fit.smeared_columns == [6] and fit.dropped["saturation-smeared columns"] == 16
    assert fit.gain == pytest.approx(3.3, rel=0.01)


def test_clipping_keeps_the_gaussian_truncated_variance():
    assert truncation_factor(4.0) == pytest.approx(0.998929, abs=1e-6)
    assert truncation_factor(10.0) == pytest.approx(1.0, abs=1e-12)
