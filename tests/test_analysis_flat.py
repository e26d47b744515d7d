"""FLAT01 and FLATFLUX00 end to end: a simulated small-geometry day folder -> pipeline (aim mode) ->
master flats, PRNU and flux checks that recover the simulator's truths.

Error budget (small geometry: 64 x 64 image pixels per quadrant):
- PRNU: the std of 4096 pixels of a Gaussian map differs from the injected rms by 1/sqrt(2 x 4096)
  = 1.1 % (1 sigma); the master flat's own noise (0.05-0.06 %, from 30-80 frames at 25-75 % of
  full well) is removed in quadrature, leaving < 0.1 % bias; brighter-fatter smooths the flat by up
  to ~4 % at 75 % of full well; the illumination boxes (8 px) absorb ~1.5 % of the PRNU variance.
  Worst case about 6 %: the 10 % the issue asks holds with margin.
- Orientation: the master flat must be the injected response map, pixel for pixel: correlation
  > 0.95 (noise 0.06 % against a 1 % map gives 0.998; a flipped quadrant gives ~0).
- Flux: the simulator's lamp follows vison's convention (2^16 ADU at tFWC for the nominal 3.3
  e-/ADU, 62-70 kADU for gains 3.1-3.5), so with the default `full_well_adu` (2^16) clean columns
  are within 6.5 % of their expectation (gain spread), inside the 10 % tolerance. Logging exposure
  times 20 % long puts every column 11-22 % low (1/1.2 times the gain spread): FLUENCE_OOL
  everywhere, and the measured time to full well 20 % long (the ratio to a clean wavelength is 1.2
  up to the flux noise, < 0.5 %).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

import engine.sim.elvis as elvis
from engine.campaign.chamber import load_chamber
from engine.campaign.config import campaign_from_dict
from engine.formats.geometry import QUADRANTS, SMALL
from engine.pipeline.runner import PipelineRun, RunOptions
from engine.sim.records import Equipment
from engine.sim.truths import Truths
from engine.tasks.calproducts import CalibrationInputs
from engine.tasks.registry import campaign_schema

SERIALS = {"roe": "FM14", "rpsu": "FM14", "ccd1": "14888-88-81", "ccd2": "14888-88-82", "ccd3": "14888-88-83"}
EQUIPMENT = Equipment(sn_roe="FM14", sn_rpsu="FM14", sn_ccd1=SERIALS["ccd1"], sn_ccd2=SERIALS["ccd2"],
                      sn_ccd3=SERIALS["ccd3"])
TESTS = ("FLAT01", "FLAT_STB", "FLATFLUX00_800", "FLATFLUX00_730")
OFF_TEST = "FLATFLUX00_730"  # logged exposure times 1.2x what the shutter did
CCDS = (1, 2, 3)


def make_campaign(data: Path, results: Path):
    return campaign_from_dict({
        "campaign": {"block": "NOSTROMO", "chamber": "B_NOSTROMO"}, "hardware": SERIALS,
        "paths": {"data": str(data), "results": str(results)},
        "sessions": {"D11": {"tests": list(TESTS)}},
    }, base_dir=results.parent, families=campaign_schema())


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    out = tmp_path_factory.mktemp("flatday") / "data"
    result = elvis.simulate(elvis.SimulationRequest(tests=TESTS, out=out, chamber=load_chamber("B_NOSTROMO"),
                                                    geometry=SMALL, equipment=EQUIPMENT, jobs=2,
                                                    exptime_factors={OFF_TEST: 1.2}))
    return out, Truths.load(result.truths_path)


@pytest.fixture(scope="module")
def results(day, tmp_path_factory):
    data, _ = day
    folder = tmp_path_factory.mktemp("flatresults") / "results"
    campaign = make_campaign(data, folder)
    PipelineRun(campaign, RunOptions(session="D11", jobs=2)).run_aim()
    records = {t: json.loads((folder / "D11" / t / "result.json").read_text()) for t in TESTS}
    return folder, campaign, records


def test_flat01_prnu_recovers_the_injected_rms(results, day):
    _, truths = day
    record = results[2]["FLAT01"]
    assert record["errors"] is False, record["error_messages"]
    assert not {"FLUENCE_OOL", "FLUX_OOL"} & set(record["flags"]), record["flag_reasons"]
    assert record["values"]["flat_columns"] == ["FLAT_25", "FLAT_50", "FLAT_75"]
    worst = 0.0
    for ccd in CCDS:
        for q in QUADRANTS:
            values = record["ccds"][f"CCD{ccd}"][q]
            truth_pct = 100 * truths.ccds[ccd].quadrants[q].prnu_rms
            assert values["frames_combined"] == [80, 60, 30]
            for prnu in values["prnu_pct"]:
                worst = max(worst, abs(prnu / truth_pct - 1))
    assert worst < 0.10, worst


def test_flat_stb_one_fluence_column_gives_its_master_and_prnu(results, day):
    """FLAT_STB (vison's stability flats: 15 frames at 30 % of full well, 800 nm) runs the flat
    analysis on its one column: one master per CCD and the PRNU within 10 % of the injected rms
    (15 frames at 30 %: the master's noise ~0.1 %, negligible against a 1 % map; budget above)."""
    _, truths = day
    record = results[2]["FLAT_STB"]
    assert record["errors"] is False, record["error_messages"]
    assert not {"FLUENCE_OOL", "FLUX_OOL"} & set(record["flags"]), record["flag_reasons"]
    assert record["values"]["flat_columns"] == ["FLAT_30"]
    for ccd in CCDS:
        for q in QUADRANTS:
            values = record["ccds"][f"CCD{ccd}"][q]
            assert values["frames_combined"] == [15]
            truth_pct = 100 * truths.ccds[ccd].quadrants[q].prnu_rms
            assert values["prnu_pct"][0] == pytest.approx(truth_pct, rel=0.10), (ccd, q)


def test_master_flat_is_the_response_map_with_provenance(results, day):
    folder, campaign, record_by_test = results
    _, truths = day
    record = record_by_test["FLAT01"]
    for ccd in CCDS:
        name = f"EUC_FF_800nm_CCD{ccd}_SN_{SERIALS[f'ccd{ccd}']}_NOSTROMO.fits"
        assert f"products/{name}" in record["products"]
        for column in (1, 2, 3):
            assert f"products/EUC_FF_800nm_col{column:03d}_CCD{ccd}_SN_{SERIALS[f'ccd{ccd}']}_NOSTROMO.fits" \
                in record["products"]
        with fits.open(folder / "D11" / "FLAT01" / "products" / name) as hdus:
            header = hdus[0].header
            assert [h.name for h in hdus[1:]] == ["FLAT", "EFLAT", "NCOMB"]
            assert header["PRODUCT"] == "MASTERFLAT" and header["WAVELEN"] == 800 and header["NCOMB"] == 170
            assert header["TEST"] == "FLAT01" and header["SN"] == SERIALS[f"ccd{ccd}"] and header["BLOCK"] == "NOSTROMO"
            assert len(header["HISTORY"]) == 170
            flat, ncomb = hdus["FLAT"].data, hdus["NCOMB"].data
            for q in QUADRANTS:
                canonical = SMALL.quadrant(flat, q, canonical=True)[SMALL.canonical_region("image")]
                assert SMALL.quadrant(ncomb, q, canonical=True)[SMALL.canonical_region("image")].min() == 170
                truth = truths.ccds[ccd].quadrants[q]
                response = np.random.default_rng([truth.map_seed, 1]).standard_normal(canonical.shape, dtype=np.float32)
                good = np.abs(canonical - 1) < 0.1  # dead, cold pixels and bad columns out
                assert np.corrcoef(canonical[good], response[good])[0, 1] > 0.95, (ccd, q)
        # the product later tests take as master_flat: the per-CCD one, by wavelength
        inputs = CalibrationInputs(campaign, folder)
        assert inputs.path("master_flat", ccd, 800) == folder / "D11" / "FLAT01" / "products" / name
        assert inputs.path("master_flat", ccd, 590) is None


def test_fluence_ool_when_the_logged_exposure_times_are_20_percent_long(results):
    records = results[2]
    off, clean = records[OFF_TEST], records["FLATFLUX00_800"]
    assert not {"FLUENCE_OOL", "FLUX_OOL"} & set(clean["flags"]), clean["flag_reasons"]
    reasons = [r for r in off["flag_reasons"] if r["flag"] == "FLUENCE_OOL"]
    # every CCD, quadrant and column (4) is out, each saying its value, expectation and limit
    assert len(reasons) == 3 * 4 * 4
    for reason in reasons:
        text = reason["reason"]
        assert "fluence" in text and "expected" in text and "limit [" in text and "ADU" in text, text
        percent = float(text.split(" % from")[0].split()[-1])
        assert -23 < percent < -10, text  # 1/1.2 x 3.3/gain, gains 3.1-3.5
    assert any(r["flag"] == "FLUX_OOL" and "tFWC_flat 3.6 s" in r["reason"] for r in off["flag_reasons"])
    # the suggested chamber-profile value: 1.2x the clean wavelength's, relative to the profiles
    measured_off = off["values"]["tfwc_flat_measured_s"] / off["values"]["tfwc_flat_profile_s"]
    measured_clean = clean["values"]["tfwc_flat_measured_s"] / clean["values"]["tfwc_flat_profile_s"]
    assert measured_off / measured_clean == pytest.approx(1.2, rel=0.01)
    assert off["values"]["tfwc_flat_suggested_s"] == pytest.approx(off["values"]["tfwc_flat_measured_s"], rel=2e-3)
    assert "B_NOSTROMO.toml [tfwc_flat] 730" in off["values"]["chamber_profile"]
    report = (results[0] / "D11" / OFF_TEST / "report.md").read_text()
    assert "Correct the chamber profile" in report and "`730 = " in report
