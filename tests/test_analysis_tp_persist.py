"""TP01 / TP02 (trap pumping) and PERSIST01 (persistence) end to end: simulated small-geometry day
folder -> pipeline (aim mode) -> results that recover the simulator's truths.

Error budgets:
- Traps. The simulator draws only 4 vertical and ~2 serial traps per small quadrant; the truths
  are replaced by 12 vertical traps (on a grid 5 rows x 5 columns apart, so dipoles never touch)
  and 6 serial traps (5 columns apart) per quadrant, drawn from the simulator's own distributions
  (tau log-uniform, vertical 30-30000 us, serial 1-60 us; pc log-uniform 0.2-2). "The noise" is
  the per-pixel injection noise measured on the unpumped frame (`injection_noise_adu` x the true
  gain): ~62 ADU, ~205 e- of shot noise on ~42 ke- injected. A dipole's amplitude (half the pair
  difference) has noise sigma/sqrt(2); detection needs 4 sigma, so a trap whose best phase time
  gives 5 sigma is found with >= Phi(1/0.707) = 92 %, brighter ones (most) with ~100 %: >= 90 %
  of (trap, mode) pairs above 5 sigma is the issue's target with margin. Its position is exact
  (the same pixel; the target allows 1 px). tau: six phase times (50-8000 us) fitted with the
  pumping law; traps with tau inside the phase-time span are constrained to a few %, those at the
  ends of 30-30000 us (a third in log) to tens of %: the median stays near 10 % (target 20 %).
  Serial: four phase times 4.75-33.35 us; the row-averaged profile (64 rows) is ~8x quieter than
  a pixel, so every serial trap above 5x the pixel noise is far above the detection threshold.
- Persistence. Every small quadrant saturates (the defocused spot is wider than 64 pixels), so
  the footprint is the whole image (4096 pixels): a mean over 4096 pixels of a 565-s dark (RON
  ~1.2 ADU plus dark shot noise) is known to ~0.03 ADU, against 10-40 ADU of persistence; the
  error budget is the reference (REFER mean, ~0.03 ADU) and the non-linearity (< 0.1 % here). The
  measured first-LATENT persistence in ADU must match the truth (electrons released between the
  start and the end of that frame's exposure and readout, / true gain) within 20 % (the issue's
  target; we reach ~1 %).
"""

from __future__ import annotations

import csv
import json
import math
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

import engine.sim.elvis as elvis
from engine.campaign.chamber import load_chamber
from engine.campaign.config import campaign_from_dict
from engine.campaign.timing import frame_seconds
from engine.formats.geometry import QUADRANTS, SMALL
from engine.pipeline.runner import PipelineRun, RunOptions
from engine.sim.truths import (
    READOUT_TIME_S,
    SerialTrap,
    Truths,
    VerticalTrap,
    dipole_polarity,
    pumped_electrons,
)
from engine.tasks import tp_lib
from engine.tasks.persist import saturated_footprint
from sim_days import EQUIPMENT, SERIALS

TESTS = ("TP01", "TP02", "PERSIST01")
CCDS = (1, 2, 3)
VERTICAL_PER_QUADRANT = 12
SERIAL_PER_QUADRANT = 6


def _log_uniform(rng, low, high, n):
    return np.exp(rng.uniform(math.log(low), math.log(high), n))


def more_traps(truths: Truths, seed: int = 7) -> Truths:
    geometry = truths.ccd_geometry
    rng = np.random.default_rng(seed)
    rows = np.arange(3, geometry.image_rows - 3, 5)
    cols = np.arange(geometry.prescan + 3, geometry.prescan + geometry.image_cols - 3, 5)
    for ccd in truths.ccds.values():
        for quadrant in ccd.quadrants.values():
            sites = rng.choice(rows.size * cols.size, VERTICAL_PER_QUADRANT, replace=False)
            taus, pcs = _log_uniform(rng, 30, 30000, VERTICAL_PER_QUADRANT), _log_uniform(rng, 0.2, 2.0, VERTICAL_PER_QUADRANT)
            quadrant.vertical_traps = [
                VerticalTrap(int(rows[s // cols.size]), int(cols[s % cols.size]), round(float(t), 3), round(float(p), 5),
                             int(rng.integers(1, 5))) for s, t, p in zip(sites, taus, pcs)]
            chosen = np.sort(rng.choice(cols, SERIAL_PER_QUADRANT, replace=False))
            taus, pcs = _log_uniform(rng, 1, 60, SERIAL_PER_QUADRANT), _log_uniform(rng, 0.2, 2.0, SERIAL_PER_QUADRANT)
            quadrant.serial_traps = [SerialTrap(int(c), round(float(t), 4), round(float(p), 5), int(rng.integers(1, 4)))
                                     for c, t, p in zip(chosen, taus, pcs)]
    return truths


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    out = tmp_path_factory.mktemp("day") / "data"
    draw = elvis.draw_truths
    request = elvis.SimulationRequest(tests=TESTS, out=out, chamber=load_chamber("B_NOSTROMO"), geometry=SMALL,
                                      equipment=EQUIPMENT, jobs=2)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(elvis, "draw_truths", lambda *a, **k: more_traps(draw(*a, **k)))
        elvis.simulate(request)
    return out, Truths.load(request.truths_path), elvis.plan_for(request)


@pytest.fixture(scope="module")
def results(day, tmp_path_factory):
    data, _, _ = day
    folder = tmp_path_factory.mktemp("results") / "results"
    campaign = campaign_from_dict({
        "campaign": {"block": "NOSTROMO", "chamber": "B_NOSTROMO"}, "hardware": SERIALS,
        "paths": {"data": str(data), "results": str(folder)},
        "sessions": {"D12": {"tests": list(TESTS)}},
        # the small geometry's spot saturates whole quadrants: widen vison's [0.2 %, 20 %] window
        "limits": {"persist": {"saturated_fraction": [0.002, 1.0]}},
    }, base_dir=folder.parent)
    PipelineRun(campaign, RunOptions(session="D12", jobs=2)).run_aim()
    return folder / "D12", {t: json.loads((folder / "D12" / t / "result.json").read_text()) for t in TESTS}


def catalogue(folder: Path, test: str) -> list[dict]:
    rows = []
    for ccd in CCDS:
        with open(folder / test / "products" / f"{test}_trap_catalogue_CCD{ccd}.csv") as handle:
            rows += list(csv.DictReader(handle))
    return rows


def trap_recovery(results, truths, test: str, modes: tuple[str, ...]):
    """(found, expected, |tau/tau_true - 1| of the found) over (trap, mode) pairs above 5x the noise."""
    folder, records = results
    record = records[test]
    found_rows = catalogue(folder, test)
    times = record["values"]["phase_times_us"]
    cycles = record["values"]["pumping_cycles"][0]
    expected = found = 0
    errors = []
    for ccd in CCDS:
        for q in QUADRANTS:
            truth = truths.ccds[ccd].quadrants[q]
            noise_e = record["ccds"][f"CCD{ccd}"][q]["injection_noise_adu"] * truth.gain_e_per_adu
            traps = truth.vertical_traps if test == "TP01" else truth.serial_traps
            for trap in traps:
                for mode in modes:
                    polarity = dipole_polarity(mode, trap.phase)
                    peak = max(pumped_electrons(cycles, t, trap.tau_us, trap.pc) for t in times)
                    if not polarity or peak < 5 * noise_e:
                        continue
                    expected += 1
                    match = [r for r in found_rows if r["ccd"] == f"CCD{ccd}" and r["quadrant"] == q
                             and r["mode"] == mode and int(r["polarity"]) == polarity
                             and abs(int(r["x"]) - trap.col) <= 1
                             and (test == "TP02" or abs(int(r["y"]) - trap.row) <= 1)]
                    if match:
                        found += 1
                        errors.append(abs(float(match[0]["tau_us"]) / trap.tau_us - 1))
    return found, expected, errors


def test_tp01_finds_vertical_traps_and_their_release_times(results, day):
    _, truths, _ = day
    record = results[1]["TP01"]
    assert record["errors"] is False, record["error_messages"]
    assert all(status == "done" for status in record["subtasks"].values()), record["subtasks"]
    found, expected, errors = trap_recovery(results, truths, "TP01", tp_lib_modes("vertical"))
    assert expected >= 40  # enough pairs for a 90 % rate to mean something
    assert found / expected >= 0.90, (found, expected)
    assert float(np.median(errors)) <= 0.20, sorted(errors)


def test_tp02_finds_serial_traps_and_their_release_times(results, day):
    _, truths, _ = day
    record = results[1]["TP02"]
    assert record["errors"] is False, record["error_messages"]
    found, expected, errors = trap_recovery(results, truths, "TP02", tp_lib_modes("serial"))
    assert expected >= 20
    assert found / expected >= 0.90, (found, expected)
    assert float(np.median(errors)) <= 0.20, sorted(errors)


def tp_lib_modes(direction: str) -> tuple[str, ...]:
    from engine.tasks.tp import SERIAL_MODES, VERTICAL_MODES

    return VERTICAL_MODES if direction == "vertical" else SERIAL_MODES


def test_tp_catalogue_has_few_false_traps_and_the_documented_products(results, day):
    """Almost every catalogued trap is a true one (a dipole at 4 sigma on 4096 pixel pairs of 24
    maps per quadrant is ~1e-3 false per quadrant); values and products are where the docs say."""
    folder, records = results
    _, truths, _ = day
    rows = catalogue(folder, "TP01")
    true_sites = {(f"CCD{c}", q, t.col, t.row) for c in CCDS for q in QUADRANTS
                  for t in truths.ccds[c].quadrants[q].vertical_traps}
    false = [r for r in rows if not any((r["ccd"], r["quadrant"], int(r["x"]) + dx, int(r["y"]) + dy) in true_sites
                                        for dx in (-1, 0, 1) for dy in (-1, 0, 1))]
    assert len(false) <= max(2, 0.05 * len(rows)), false
    record = records["TP01"]
    values = record["ccds"]["CCD1"]["E"]
    for name in ("injection_level_adu", "injection_noise_adu", "trap_count", "tau_weighted_us", "trap_count_v123",
                 "tau_weighted_v123_us"):
        assert name in values
    assert values["trap_count"] == sum(values[f"trap_count_v{m}"] for m in ("123", "234", "341", "412"))
    assert "figs/TP01_tau_pc.png" in record["figures"]
    table = fits.getdata(folder / "TP01" / "products" / f"EUC_TRAPCAT_CCD1_SN_{SERIALS['ccd1']}_NOSTROMO.fits", "TRAPS")
    header = fits.getheader(folder / "TP01" / "products" / f"EUC_TRAPCAT_CCD1_SN_{SERIALS['ccd1']}_NOSTROMO.fits")
    assert header["TEST"] == "TP01" and header["CCD"] == "CCD1" and header["NCOMB"] == 50
    assert set(tp_lib_columns()) <= {c.lower() for c in table.columns.names}


def tp_lib_columns() -> tuple[str, ...]:
    return ("ccd", "quadrant", "x", "y", "polarity", "mode", "tau_us", "pc", "amplitude")


def test_fit_release_recovers_tau_and_pc_without_noise():
    t = np.array([50, 200, 1000, 2000, 4000, 8000.0])
    tau, pc = np.array([80.0, 700.0, 5000.0]), np.array([0.3, 1.0, 1.7])
    amplitudes = 5000 * pc[:, None] * tp_lib.pumping_law(t[None, :], tau[:, None])
    fit = tp_lib.fit_release(t, amplitudes, 5000)
    assert fit.tau_us == pytest.approx(tau, rel=1e-3)
    assert fit.pc == pytest.approx(pc, rel=1e-3)


# -- PERSIST01 ------------------------------------------------------------------------------------

def test_persist01_recovers_the_injected_persistence(results, day):
    folder, records = results
    _, truths, plan = day
    record = records["PERSIST01"]
    assert record["errors"] is False, record["error_messages"]
    assert "NONSATURATION" not in record["flags"], record["flag_reasons"]
    exposures = [e for e in plan if e.test == "PERSIST01"]
    expose = next(e for e in exposures if e.params["comments"] == "EXPOSE")
    latent = next(e for e in exposures if e.params["comments"] == "LATENT")
    end_of_expose = expose.when - timedelta(seconds=frame_seconds(expose.params)) + timedelta(
        seconds=float(expose.params["exptime"]))
    start = latent.when - timedelta(seconds=frame_seconds(latent.params))
    dt0 = (start - end_of_expose).total_seconds()
    dt1 = dt0 + float(latent.params["exptime"]) + READOUT_TIME_S
    for ccd in CCDS:
        for q in QUADRANTS:
            truth = truths.ccds[ccd].quadrants[q]
            expected_adu = truth.persistence_between(dt0, dt1) / truth.gain_e_per_adu
            values = record["ccds"][f"CCD{ccd}"][q]
            assert values["saturated_fraction"] == pytest.approx(1.0)
            assert values["persistence_adu"] == pytest.approx(expected_adu, rel=0.20), (ccd, q)
            assert values["persistence_e"] == pytest.approx(values["persistence_adu"] * values["gain_e_per_adu_used"],
                                                            rel=1e-3)
            decay = values["persistence_decay_e"]
            assert len(decay) == 3 and decay[0] > decay[1] > decay[2]
    mask_name = f"EUC_PERSIST01_SATMASK_CCD1_SN_{SERIALS['ccd1']}_NOSTROMO.fits"
    assert f"products/{mask_name}" in record["products"]
    assert fits.getheader(folder / "PERSIST01" / "products" / mask_name)["TEST"] == "PERSIST01"


def test_saturation_is_the_full_well_plateau_not_only_the_adc_ceiling():
    """A quadrant clipped at full well below 65535 is saturated; an unsaturated spot is not."""
    rng = np.random.default_rng(3)
    offset = 2700.0
    counts = offset + rng.normal(0, 1.2, (200, 200))
    yy, xx = np.mgrid[:200, :200]
    spot = 400000.0 * np.exp(-((yy - 100) ** 2 + (xx - 100) ** 2) / (2 * 15.0 ** 2))
    clipped = np.minimum(spot, 58000.0)  # full well 58 kADU: never 65535
    mask, plateau = saturated_footprint(np.rint(counts + clipped).astype(np.uint16), offset, floor_adu=45000.0)
    assert plateau == pytest.approx(58000.0, abs=5)
    assert mask.sum() == pytest.approx((spot >= 58000.0).sum(), rel=0.05)
    faint = np.rint(counts + 0.5 * spot / spot.max() * 58000.0).astype(np.uint16)  # peak 29 kADU
    mask, plateau = saturated_footprint(faint, offset, floor_adu=45000.0)
    assert not mask.any() and math.isnan(plateau)
