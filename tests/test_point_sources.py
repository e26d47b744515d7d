"""FOCUS00, PSFLUX00 and PSF01 end to end: simulated day folders -> pipeline -> the simulator's
truths recovered: best focus and best FWHM, spot FWHM per quadrant, fluxes, the 12 x 12 cross-talk
matrix, and the source lock (a shifted pattern measured, a missing one flagged with the reason).

Two days, each simulated once for the module:
- small geometry (64 x 64 image px per quadrant): FOCUS00_800 and PSFLUX00_800, CCD2 H not lit,
  CCD3 F's pattern shifted by (4, -3) px;
- medium geometry (160 x 160, registered for point sources: a 20 px shift keeps the pattern on the
  image): PSF01_800 with the simulator's cross-talk, each channel's pattern shifted on a 4 x 3
  grid (dx in -16, -5, 5, 16; dy in -12, 0, 12 px) so no channel's ghosts land on another's spots;
  CCD1 H moves by (16, -12): 20 px.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from engine.campaign.chamber import load_chamber
from engine.campaign.config import campaign_from_dict
from engine.formats.geometry import MEDIUM, QUADRANTS, SMALL
from engine.pipeline.runner import PipelineRun, RunOptions
from engine.sim import elvis
from engine.sim.records import Equipment
from engine.sim.truths import SimOptions, Truths
from engine.tasks import registry
from engine.tasks.focus_lib import fit_focus_curve
from engine.tasks.spots import (
    DETECT_MIN_PIXELS,
    FWHM_PER_SIGMA,
    STAMP_HALF_PX,
    detect_sources,
    fit_gaussians,
    match_pattern,
)

SERIALS = {"roe": "FM14", "rpsu": "FM14", "ccd1": "14888-88-81", "ccd2": "14888-88-82", "ccd3": "14888-88-83"}
EQUIPMENT = Equipment(sn_roe="FM14", sn_rpsu="FM14", sn_ccd1=SERIALS["ccd1"], sn_ccd2=SERIALS["ccd2"],
                      sn_ccd3=SERIALS["ccd3"])
CHANNELS = [(ccd, q) for ccd in (1, 2, 3) for q in QUADRANTS]
GRID_SHIFTS = {ch: (float((-16, -5, 5, 16)[i % 4]), float((-12, 0, 12)[i // 4])) for i, ch in enumerate(CHANNELS)}
SMALL_SHIFT = (4.0, -3.0)


def _campaign(data: Path, results: Path, tests, limits=None):
    return campaign_from_dict({
        "campaign": {"block": "NOSTROMO", "chamber": "B_NOSTROMO"}, "hardware": SERIALS,
        "paths": {"data": str(data), "results": str(results)},
        "sessions": {"D11": {"tests": list(tests)}}, **({"limits": limits} if limits else {}),
    }, base_dir=results.parent, families=registry.campaign_schema())


def _run(data: Path, results: Path, tests, check_only=False, limits=None) -> dict[str, dict]:
    PipelineRun(_campaign(data, results, tests, limits), RunOptions(session="D11", jobs=2, check_only=check_only)).run_aim()
    return {t: json.loads((results / "D11" / t / "result.json").read_text()) for t in tests}


@pytest.fixture(scope="module")
def small_day(tmp_path_factory):
    root = tmp_path_factory.mktemp("focus")
    request = elvis.SimulationRequest(tests=("FOCUS00_800", "PSFLUX00_800"), out=root / "data",
                                      chamber=load_chamber("B_NOSTROMO"), geometry=SMALL, equipment=EQUIPMENT, jobs=2,
                                      unlit_quadrants=frozenset({(2, "H")}), pattern_shifts={(3, "F"): SMALL_SHIFT})
    result = elvis.simulate(request)
    records = _run(root / "data", root / "results", ("FOCUS00_800", "PSFLUX00_800"))
    return root, Truths.load(result.truths_path), records


@pytest.fixture(scope="module")
def psf_day(tmp_path_factory):
    root = tmp_path_factory.mktemp("psf")
    request = elvis.SimulationRequest(tests=("PSF01_800",), out=root / "data", chamber=load_chamber("B_NOSTROMO"),
                                      geometry=MEDIUM, equipment=EQUIPMENT, jobs=2, options=SimOptions(crosstalk=True),
                                      pattern_shifts=GRID_SHIFTS)
    result = elvis.simulate(request)
    records = _run(root / "data", root / "results", ("PSF01_800",))
    return root, Truths.load(result.truths_path), records["PSF01_800"]


# -- FOCUS00 -------------------------------------------------------------------------------------

def test_focus00_finds_the_injected_best_focus_and_fwhm_per_ccd_and_for_the_block(small_day):
    """Error budget: 15-20 spots per CCD, 9 mirror positions each; a spot's FWHM is fitted to
    ~0.3 % (peak ~30000 ADU, RON 1.2 ADU), so each spot's focus to ~0.005 mm and the clipped mean
    of 15 to ~0.002 mm: 0.02 mm is a 10-sigma bound. The best FWHM carries the fit's ~0.3 % and
    the brighter-fatter broadening at 60 % of full well (~1 %): within 5 %."""
    root, truths, records = small_day
    record = records["FOCUS00_800"]
    focus, fwhm = truths.psf.best_focus_mm[800], truths.psf.fwhm_best_px[800]
    assert record["subtasks"]["meta"] == "done" and "FOCUS_OOL" not in record["flags"]
    for ccd in ("CCD1", "CCD2", "CCD3"):
        values = record["ccds"][ccd]["CCD"]
        assert abs(values["best_focus_mm"] - focus) < 0.02, (ccd, values, focus)
        assert abs(values["fwhm_best_px"] / fwhm - 1) < 0.05, (ccd, values, fwhm)
    assert record["ccds"]["CCD2"]["CCD"]["focus_spots"] == 15  # the unlit quadrant's spots are not invented
    block = record["values"]
    assert abs(block["best_focus_mm"] - focus) < 0.02 and abs(block["fwhm_best_px"] / fwhm - 1) < 0.05
    assert block["suggested_focus_mm"] == round(block["best_focus_mm"], 2)
    assert block["mirror_scan_mm"] == [round(47.2 - 0.8, 4), round(47.2 + 0.8, 4)]
    folder = root / "results" / "D11" / "FOCUS00_800"
    assert "figs/FOCUS00_800_focus.png" in record["figures"] and (folder / "figs" / "FOCUS00_800_focus.png").is_file()
    report = (folder / "report.md").read_text()
    assert "## Values per CCD" in report and f"`800 = {block['suggested_focus_mm']:.2f}`" in report


def test_a_focus_curve_that_does_not_reach_its_minimum_in_the_scan_says_why():
    """FWHM still falling at the scan's end: no focus, and the reason names the scan."""
    mirror = np.linspace(46.4, 48.0, 9)
    fwhm = np.sqrt(2.0 ** 2 + 2 * 2.0 * 2.5 * (mirror - 48.5) ** 2)
    curve = fit_focus_curve(mirror, fwhm)
    assert not curve.ok and "outside the scan [46.4, 48] mm" in curve.reason
    good = fit_focus_curve(mirror, np.sqrt(2.0 ** 2 + 2 * 2.0 * 2.5 * (mirror - 47.3) ** 2))
    assert good.ok and abs(good.focus_mm - 47.3) < 1e-9 and abs(good.fwhm_best_px - 2.0) < 1e-9


def test_a_quadrant_without_its_pattern_is_flagged_with_the_reason(small_day):
    _, _, records = small_day
    for record in records.values():
        reasons = [r for r in record["flag_reasons"] if r["flag"] == "STARS_MISSING"]
        assert [(r["ccd"], r["quadrant"]) for r in reasons] == [(2, "H")], reasons
        assert "spot pattern not found in any of" in reasons[0]["reason"]
        assert record["ccds"]["CCD2"]["H"]["spots_found"] == 0


def test_a_shift_beyond_the_limit_is_flagged_in_a_check_only_run_with_the_measured_shift(small_day, tmp_path):
    """Check-only runs lock too: CCD3 F's pattern moved by (4, -3) px = 5 px; with a 3 px limit it
    is flagged with the shift measured (the pattern's jitter, +-2 px per spot, averages to ~0.5 px)."""
    root, _, _ = small_day
    record = _run(root / "data", tmp_path / "results", ("FOCUS00_800",), check_only=True,
                  limits={"focus": {"lock_shift_px": 3.0}})["FOCUS00_800"]
    assert record["subtasks"]["lock"] == "done" and record["subtasks"]["basic"] == "off"
    shifted = [r for r in record["flag_reasons"] if r["flag"] == "STARS_MISSING" and "shifted" in r["reason"]]
    assert [(r["ccd"], r["quadrant"]) for r in shifted] == [(3, "F")]
    assert "beyond the 3 px limit" in shifted[0]["reason"]
    lock = record["ccds"]["CCD3"]["F"]
    assert abs(lock["lock_dx_px"] - SMALL_SHIFT[0]) < 1.5 and abs(lock["lock_dy_px"] - SMALL_SHIFT[1]) < 1.5


# -- PSFLUX00 --------------------------------------------------------------------------------------

def test_psflux00_measures_the_spot_flux_rate_the_simulator_injected(small_day):
    """The simulator puts 200000 e- x 2 pi sigma^2 (chamber FWHM 2 px) / tFWC_point in a spot each
    second; in ADU / gain. The aperture (8 px) holds all of it; 5 spots x 4 columns of ~26000-210000
    ADU have ~0.3 % shot noise: 2 % holds for every quadrant."""
    _, truths, records = small_day
    record = records["PSFLUX00_800"]
    chamber = load_chamber("B_NOSTROMO")
    sigma = chamber.fwhm_px / (2 * math.sqrt(2 * math.log(2)))
    rate_e = 200_000.0 * 2 * math.pi * sigma ** 2 / chamber.tfwc_point[800]
    for ccd, q in CHANNELS:
        if (ccd, q) == (2, "H"):
            assert "flux_adu_per_s" not in record["ccds"]["CCD2"]["H"]
            continue
        gain = truths.ccds[ccd].quadrants[q].gain_e_per_adu
        measured = record["ccds"][f"CCD{ccd}"][q]["flux_adu_per_s"]
        assert abs(measured / (rate_e / gain) - 1) < 0.02, (ccd, q, measured, rate_e / gain)
    assert "products/PSFLUX00_800_fluxes.csv" in record["products"]


# -- PSF01 -----------------------------------------------------------------------------------------

def test_psf01_fwhm_per_quadrant_matches_the_injected_psf(psf_day):
    """The faintest column (5 % of full well, peak ~2500 ADU, 20 frames x 5 spots) is free of
    brighter-fatter; each spot's FWHM is fitted to ~1 %, the median of 100 to ~0.1 %; the PSF at
    the nominal mirror position is the truth's focus law: 3 % holds with a wide margin."""
    _, truths, record = psf_day
    psf = truths.psf
    expected = psf.fwhm_px(load_chamber("B_NOSTROMO").focus(800), psf.best_focus_mm[800], 800)
    for ccd, q in CHANNELS:
        values = record["ccds"][f"CCD{ccd}"][q]
        assert abs(values["fwhm_x_px"] / expected - 1) < 0.03, (ccd, q, values["fwhm_x_px"], expected)
        assert abs(values["fwhm_y_px"] / expected - 1) < 0.03, (ccd, q, values["fwhm_y_px"], expected)
        assert values["ellipticity"] < 0.05  # round spots
        assert len(values["fwhm_x_px_by_column"]) == 5 and values["peak_adu_by_column"] == sorted(values["peak_adu_by_column"])
    assert "products/PSF01_800_psf_spots.csv" in record["products"]


def test_psf01_recovers_the_crosstalk_matrix_with_signs(psf_day):
    """18 exposures of the 50-90 % columns, 5 spots each: sum S^2 over a channel's source pixels
    is ~(1.3e6 ADU)^2, so with 1.2 ADU of victim noise a coefficient is known to ~3e-6 (the
    product's errors say so): 10 % of 1e-4 is a 3-sigma bound, tighter for larger couplings."""
    root, truths, record = psf_day
    injected = np.array(truths.crosstalk)
    folder = root / "results" / "D11" / "PSF01_800"
    with fits.open(folder / "products" / "PSF01_800_crosstalk.fits") as hdul:
        measured, errors = hdul["XTALK"].data, hdul["EXTALK"].data
        assert measured.shape == (12, 12) and hdul[0].header["CHAN01"] == "CCD1E" and hdul[0].header["NCOMB"] == 18
    checked = 0
    for s in range(12):
        for v in range(12):
            if s == v:
                assert math.isnan(measured[s, v])
            elif abs(injected[s, v]) > 1e-4:
                checked += 1
                assert np.sign(measured[s, v]) == np.sign(injected[s, v]), (s, v)
                assert abs(measured[s, v] / injected[s, v] - 1) < 0.10, (s, v, measured[s, v], injected[s, v])
                assert errors[s, v] < 1e-5
    assert checked >= 10
    with open(folder / "products" / "PSF01_800_crosstalk.csv") as handle:
        assert len(list(csv.DictReader(handle))) == 132
    assert "figs/PSF01_800_crosstalk.png" in record["figures"]


def test_psf01_locks_a_pattern_shifted_by_20_px_and_reports_the_shift(psf_day):
    """Each channel's pattern moved on the grid; the lock (median over 53 frames of a 5-spot rigid
    fit) carries the pattern's own jitter (+-2 px per spot, ~0.5 px on the mean): within 1.5 px."""
    _, _, record = psf_day
    for (ccd, q), (dx, dy) in GRID_SHIFTS.items():
        values = record["ccds"][f"CCD{ccd}"][q]
        assert abs(values["lock_dx_px"] - dx) < 1.5 and abs(values["lock_dy_px"] - dy) < 1.5, (ccd, q, values)
        assert values["spots_found"] == 5
    assert abs(record["ccds"]["CCD1"]["H"]["lock_shift_px"] - 20.0) < 1.5
    assert "STARS_MISSING" not in record["flags"]  # within the default 100 px limit


def test_pattern_matching_recovers_shift_and_rotation_and_ignores_stray_sources():
    nominal = np.array([(32.0, 128.0), (128.0, 128.0), (80.0, 80.0), (32.0, 32.0), (128.0, 32.0)])
    angle = math.radians(1.5)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    centre = np.array([79.5, 79.5])
    detected = (nominal - centre) @ rotation.T + centre + (12.0, -16.0)
    detected = np.vstack([detected[[0, 2, 3, 4]], [(5.0, 6.0), (150.0, 20.0)]])  # BRAVO lost, two strays
    match = match_pattern(detected, nominal, centre, 4.0)
    assert abs(match.dx - 12.0) < 1e-6 and abs(match.dy + 16.0) < 1e-6 and abs(match.rotation_deg - 1.5) < 1e-6
    assert match.matches == ((0, 0), (1, 2), (2, 3), (3, 4))


# -- Detection and fits, on synthetic images -------------------------------------------------------

def _pixel_integrated_gaussian(shape, x, y, sigma_x, sigma_y, flux):
    """flux x the Gaussian's integral over each pixel (pixel (r, c) covers [c - 0.5, c + 0.5]), from
    scipy.stats' normal CDF: independent of the code under test."""
    from scipy.stats import norm

    cols, rows = np.arange(shape[1]), np.arange(shape[0])
    px = norm.cdf(cols + 0.5, x, sigma_x) - norm.cdf(cols - 0.5, x, sigma_x)
    py = norm.cdf(rows + 0.5, y, sigma_y) - norm.cdf(rows - 0.5, y, sigma_y)
    return flux * np.outer(py, px)


def _synthetic_quadrant(rng, faint_offset_px=30.0):
    """A 300 x 280 image at 1000 ADU with 1.5 ADU of noise: 20 spots of 2-6 px FWHM and 300-40000
    ADU peaks on a jittered grid (some across the 16 x 16 pooling blocks' edges and at the image's
    edges), faint sources (peaks 25-60 ADU), a one-pixel and a two-pixel cosmic ray."""
    shape = (300, 280)
    image = 1000.0 + rng.normal(0.0, 1.5, shape)
    for k in range(20):
        x, y = 14 + 60 * (k % 5) + rng.uniform(-6, 6), 12 + 70 * (k // 5) + rng.uniform(-6, 6)
        sigma = rng.uniform(2.0, 6.0) / FWHM_PER_SIGMA
        peak = rng.uniform(300.0, 40000.0)
        image += _pixel_integrated_gaussian(shape, x, y, sigma, sigma * rng.uniform(0.9, 1.1), peak * 2 * np.pi * sigma ** 2)
        # a faint source, by default far from the spot: sep's cleaning then sees the same in a window
        offset = faint_offset_px
        image += _pixel_integrated_gaussian(shape, x + offset, y + 0.3 * offset, 1.0, 1.0, rng.uniform(25, 60) * 2 * np.pi)
    image[150, 77] += 3000.0
    image[40, 200:202] += 2500.0
    return np.clip(np.round(image), 0, 65535).astype(np.uint16), 1000.0, 15.0


@pytest.mark.parametrize("floor", [0.0, 200.0])
def test_detection_on_the_pooled_image_finds_what_sep_finds_over_the_whole_image(floor):
    """detect_sources (sep on the image max-pooled 16 x 16, DETECT_BIN, then on full-resolution
    windows) against sep.extract over the whole image with the same settings: the same sources,
    positions (1e-9 px: the same pixels summed), peaks and fluxes."""
    import sep

    counts, level, threshold = _synthetic_quadrant(np.random.default_rng(5))
    found, brightest = detect_sources(counts, level, threshold, floor)
    image = np.subtract(counts, np.float32(level), dtype=np.float32)
    whole = sep.extract(image, threshold, minarea=DETECT_MIN_PIXELS, deblend_cont=1.0)
    whole = whole[whole["peak"] >= floor]
    assert len(found) == len(whole) and len(whole) >= (30 if floor == 0 else 20)
    mine, theirs = np.sort(found, order=["x"]), np.sort(whole, order=["x"])
    for name in ("x", "y", "peak", "flux"):
        assert np.allclose(mine[name], theirs[name], rtol=1e-9, atol=1e-9), name
    assert brightest == float(image.max())
    assert sep.get_extract_pixstack() == 300_000  # sep's own setting given back


@pytest.mark.parametrize("offset", [10.0, 14.0, 20.0])  # 14 and 20: one faint source more
def test_detection_differs_from_sep_over_the_whole_image_only_by_faint_sources_near_bright_ones(offset):
    """The one difference said in detect_sources: sep's cleaning sees only a window, so a faint
    source near a bright spot may be kept where sep over the whole image merges it; every source
    sep over the whole image finds is found, at the same position, and anything more is faint
    (below 1 % of a spot within 30 px)."""
    import sep

    counts, level, threshold = _synthetic_quadrant(np.random.default_rng(6), faint_offset_px=offset)
    found, _ = detect_sources(counts, level, threshold, 0.0)
    image = np.subtract(counts, np.float32(level), dtype=np.float32)
    whole = sep.extract(image, threshold, minarea=DETECT_MIN_PIXELS, deblend_cont=1.0)
    matched = np.zeros(len(found), bool)
    for source in whole:
        distance = np.hypot(found["x"] - source["x"], found["y"] - source["y"])
        assert distance.min() < 1e-9, source
        matched[np.argmin(distance)] = True
    for extra in found[~matched]:
        near = np.hypot(found["x"] - extra["x"], found["y"] - extra["y"]) < 30
        assert extra["peak"] < 0.01 * found["peak"][near].max(), extra


def test_spot_fits_together_equal_each_fit_alone_and_read_the_injected_fwhm():
    """fit_gaussians on 6 stamps at once (one cut by the image edge, one with saturated pixels left
    out) against each stamp fitted alone: the same parameters (to 1e-8: float64 sums in another
    order may stop one iteration apart); noise-free pixel-integrated Gaussians of 1.6-4 px FWHM
    read back to 1e-5."""
    rng = np.random.default_rng(3)
    size = 2 * STAMP_HALF_PX + 1
    stamps, valid, start, shapes, truths = [], [], [], [], []
    for k, fwhm in enumerate((1.6, 2.0, 2.4, 3.0, 3.5, 4.0)):
        sigma = fwhm / FWHM_PER_SIGMA
        x, y = 10 + rng.uniform(-0.5, 0.5), 10 + rng.uniform(-0.5, 0.5)
        stamp = _pixel_integrated_gaussian((size, size), x, y, sigma, sigma * 1.05, 1e5) + 3.0
        mask = np.ones((size, size), bool)
        if k == 1:
            mask[9:12, 9:12] = False  # saturated core
        height, width = (size, size) if k != 4 else (size, 14)  # cut by the image's edge
        cut, cut_mask = np.zeros((size, size)), np.zeros((size, size), bool)
        cut[:height, :width], cut_mask[:height, :width] = stamp[:height, :width], mask[:height, :width]
        stamps.append(cut)
        valid.append(cut_mask)
        start.append((x + 0.3, y - 0.2, sigma * 1.3, 8e4))
        shapes.append((height, width))
        truths.append((1e5, x, y, sigma, sigma * 1.05, 3.0))
    together, ok = fit_gaussians(np.array(stamps), np.array(valid), np.array(start), np.array(shapes))
    assert ok.all()
    for k in range(6):
        alone, ok_alone = fit_gaussians(np.array(stamps[k:k + 1]), np.array(valid[k:k + 1]), np.array(start[k:k + 1]),
                                        np.array(shapes[k:k + 1]))
        assert ok_alone[0] and np.allclose(alone[0], together[k], rtol=1e-8, atol=1e-8)
        assert np.allclose(together[k], truths[k], rtol=1e-5, atol=1e-5), (k, together[k], truths[k])


def test_the_focus_clipping_is_the_clipped_stats_of_the_stacks():
    """focus_lib.clipped_foci (numpy, for a few dozen foci) gives stats.clipped_stats's numbers."""
    from engine.tasks.focus_lib import FOCUS_CLIP_SIGMA, clipped_foci
    from engine.tasks.stats import clipped_stats

    rng = np.random.default_rng(2)
    for n in (3, 5, 15, 60):
        foci = 47.3 + 0.005 * rng.standard_normal(n)
        foci[0] += 0.5  # an outlier
        mine, theirs = clipped_foci(foci, FOCUS_CLIP_SIGMA), clipped_stats(foci, FOCUS_CLIP_SIGMA)
        assert mine.count == theirs.count and mine.median == theirs.median
        assert np.allclose([mine.mean, mine.std], [theirs.mean, theirs.std], rtol=1e-12, equal_nan=True)
