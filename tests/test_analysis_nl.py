"""NL01 and NL02 end to end (simulated small-geometry day -> pipeline -> non-linearity curves that
recover the injected law), and the fit's drift correction and two-lamp stitching on synthetic data.

Error budget (small geometry: 2 x 2 tiles of 32 x 32 pixels per quadrant):
- a tile's 10 % trimmed mean at fluence F (ADU) has a shot-noise error sqrt(1.2 F / (3.3 x 1024)):
  0.1 % at 300 ADU, 0.01 % at 50 kADU; the fit's residual rms is ~0.03 %, and with ~270 (NL01) to
  ~350 (NL02) points the curve's statistical error is ~0.005 percentage points (pp);
- systematics seen on this geometry: persistence after the saturating 100-110 % frames, the
  brighter-fatter exchange and the stitching leave the curve within ~0.05 pp of the truth;
- `max_nl_pct` is the largest |NL| over the fitted range, which moves no more than the curve:
  the issue's 0.2 pp holds with a 4x margin; the curve itself is held to 0.1 pp.
The truth: F = S (1 + nl(S)) / gain, nl(S) = a2 (S/FW)^2 + a3 (S/FW)^3; NL(F) = nl(S(F)).
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

import engine.sim.elvis as elvis
from engine.campaign.chamber import load_chamber
from engine.campaign.config import campaign_from_dict
from engine.formats.geometry import QUADRANTS, SMALL
from engine.pipeline.runner import PipelineRun, RunOptions
from engine.sim.records import Equipment
from engine.sim.truths import Truths
from engine.tasks.nl import fit_nonlinearity, lamp_drift
from engine.tasks.registry import campaign_schema

SERIALS = {"roe": "FM14", "rpsu": "FM14", "ccd1": "14888-88-81", "ccd2": "14888-88-82", "ccd3": "14888-88-83"}
EQUIPMENT = Equipment(sn_roe="FM14", sn_rpsu="FM14", sn_ccd1=SERIALS["ccd1"], sn_ccd2=SERIALS["ccd2"],
                      sn_ccd3=SERIALS["ccd3"])
TESTS = ("NL01", "NL02")
CCDS = (1, 2, 3)


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    out = tmp_path_factory.mktemp("nlday") / "data"
    result = elvis.simulate(elvis.SimulationRequest(tests=TESTS, out=out, chamber=load_chamber("B_NOSTROMO"),
                                                    geometry=SMALL, equipment=EQUIPMENT, jobs=2))
    return out, Truths.load(result.truths_path)


@pytest.fixture(scope="module")
def results(day, tmp_path_factory):
    data, _ = day
    folder = tmp_path_factory.mktemp("nlresults") / "results"
    campaign = campaign_from_dict({
        "campaign": {"block": "NOSTROMO", "chamber": "B_NOSTROMO"}, "hardware": SERIALS,
        "paths": {"data": str(data), "results": str(folder)}, "sessions": {"D11": {"tests": list(TESTS)}},
    }, base_dir=folder.parent, families=campaign_schema())
    PipelineRun(campaign, RunOptions(session="D11", jobs=2)).run_aim()
    return folder, {t: json.loads((folder / "D11" / t / "result.json").read_text()) for t in TESTS}


def truth_nl_pct(truth, fluence_adu: np.ndarray) -> np.ndarray:
    signal = fluence_adu * truth.gain_e_per_adu
    for _ in range(30):  # F g = S (1 + nl(S)), solved by iteration (nl < 1 %)
        signal = fluence_adu * truth.gain_e_per_adu / (1 + truth.nl(signal))
    return 100 * truth.nl(signal)


@pytest.mark.parametrize("test", TESTS)
def test_max_nl_recovers_the_injected_non_linearity(results, day, test):
    folder, records = results
    _, truths = day
    record = records[test]
    assert record["errors"] is False, record["error_messages"]
    assert "SATURATION" not in record["flags"] and "FLUENCE_OOL" not in record["flags"], record["flag_reasons"]
    with open(folder / "D11" / test / "products" / f"{test}_NL_curves.csv") as handle:
        curves = list(csv.DictReader(handle))
    for ccd in CCDS:
        for q in QUADRANTS:
            values = record["ccds"][f"CCD{ccd}"][q]
            truth = truths.ccds[ccd].quadrants[q]
            grid = np.linspace(values["nl_fit_min_adu"], values["nl_fit_max_adu"], 2000)
            expected = truth_nl_pct(truth, grid)
            assert values["max_nl_pct"] == pytest.approx(np.abs(expected).max(), abs=0.2), (ccd, q)
            assert values["max_nl_pct"] == pytest.approx(abs(values["nl_extreme_pct"]))
            assert values["nl_fit_max_adu"] < 65536 - 1e4 and values["nl_fit_min_adu"] < 400  # 0.5 % level used
            rows = [r for r in curves if r["ccd"] == f"CCD{ccd}" and r["quadrant"] == q]
            fluence = np.array([float(r["fluence_adu"]) for r in rows])
            measured = np.array([float(r["nl_pct"]) for r in rows])
            assert np.abs(measured - truth_nl_pct(truth, fluence)).max() < 0.1, (ccd, q)
    assert (folder / "D11" / test / "figs" / f"{test}_nl_curves.png").is_file()
    assert f"products/{test}_NL_table.csv" in record["products"]


def test_nl02_stitches_two_lamps(results):
    lamps = results[1]["NL02"]["values"]["lamps"]
    assert len(lamps) == 2 and any(item.startswith("0 nm") for item in lamps) and \
        any(item.startswith("880 nm") for item in lamps)


# -- the fit on synthetic data: drift, shutter delay, two lamps of different brightness ------------

def synthetic(nl_law, lamps, drift=None):
    """Per frame: (exptime, lamp, seconds) and per tile fluence = nl_law(k_tile,lamp (t + delay))."""
    rng = np.random.default_rng(3)
    rows = []
    for lamp, (scale, delay, fractions) in lamps.items():
        for f in fractions:
            for _ in range(4):
                rows.append((f * 100.0, lamp, scale, delay))
    seconds = np.arange(len(rows)) * 100.0
    tiles = np.array([1.0, 1.02, 0.97, 1.01])
    exptime = np.array([r[0] for r in rows])
    lamp = np.array([r[1] for r in rows])
    linear = np.array([r[2] * (r[0] + r[3]) for r in rows])[:, None] * tiles[None, :]
    fluence = nl_law(linear) * (1 + 2e-5 * rng.standard_normal(linear.shape))
    if drift is not None:
        fluence *= drift(seconds)[:, None]
    return fluence, exptime, lamp, seconds


def test_two_lamps_with_a_shutter_delay_are_stitched_onto_one_curve():
    """Lamp 5 is 3x brighter and its shutter opens 20 ms late: the shared curve comes out exact."""
    a2, a3 = 0.004, -0.006

    def law(y):
        x = y / 65536
        return y * (1 + a2 * x ** 2 + a3 * x ** 3)

    lamps = {6: (50.0, 0.0, [0.005, 0.01, 0.03, 0.1, 0.15, 0.2, 0.25]),
             5: (150.0, 0.02, [0.05, 0.07, 0.08, 0.2, 0.3, 0.5, 0.7, 0.8])}
    fluence, exptime, lamp, _ = synthetic(law, lamps)
    fit = fit_nonlinearity(fluence, exptime, lamp, np.ones(fluence.shape, bool), tile_pixels=10 ** 6)
    grid = np.linspace(fit.fit_min_adu, fit.fit_max_adu, 50)
    y = grid.copy()
    for _ in range(30):
        y = grid / (1 + a2 * (y / 65536) ** 2 + a3 * (y / 65536) ** 3)
    assert np.abs(fit.nl_pct(grid) - 100 * (grid / y - 1)).max() < 0.005


def test_lamp_drift_is_removed_from_the_lamp_of_the_stability_frames_only():
    seconds = np.linspace(0, 9000, 40)
    drift = 1 + 0.01 * (seconds / 9000) - 0.004 * (seconds / 9000) ** 2
    waves = np.where(np.arange(40) % 2 == 0, 5, 6)
    stab = list(range(0, 40, 4))
    levels = 30000 * drift
    result = lamp_drift(levels, seconds, stab, waves)
    corrected = levels / result.factors
    assert np.ptp(corrected[waves == 5]) / corrected.mean() < 1e-6
    assert np.all(result.factors[waves == 6] == 1.0)
    assert result.lamp == 5 and result.drift_pct == pytest.approx(100 * (drift.max() - drift.min()) / np.mean(
        drift[stab]), rel=0.05)
