"""BIAS01, BIAS02 and DARK01 end to end: simulated day folder -> pipeline (aim mode) -> results
that recover the simulator's truths.

Statistics on the small geometry (64 x 64 image pixels per quadrant, 12 prescan and 6 overscan
columns, of which the raw-check trimming keeps 6 and 4):
- offsets: clipped means over >= 2500 pixels x 10 frames: errors of a few 0.01 ADU (bound 0.5 ADU);
- RON: the relative error of a std from d degrees of freedom is 1/sqrt(2d). The image area
  (54 x 64 pixels x 9) gives 0.4 %, so 3 % holds with a wide margin; the trimmed prescan
  (6 x 64 x 9) gives 1.2 % and the overscan (4 x 64 x 9) 1.5 %: 3 % is only 2.5 and 2 sigma there,
  so those two are held to 4 sigma of their own statistics (about 5 % and 6 %);
- dark current: the simulator's truths (0.2-0.8 e-/pix/h) give 0.01-0.04 ADU in 565 s, below
  the offset's own uncertainty on this geometry (~0.03 ADU from 6 x 64 prescan pixels x 4 frames),
  so 10 % cannot be reached. The dark truths are raised to 40-80 e-/pix/h (1.8-4 ADU, inside the
  check's [-2, 5] ADU window) for the test that recovers them.
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
from engine.formats.geometry import QUADRANTS, SMALL
from engine.sim.truths import Truths
from engine.tasks import bias as bias_module
from engine.tasks.bias import FAMILY as BIAS_FAMILY
from engine.tasks.bias import check_image_noise
from engine.tasks.check import RawStats, check_offset_gradients
from engine.tasks.context import NOMINAL_GAIN_E_PER_ADU
from engine.tasks.dark import HOT_PIXEL_THRESHOLD_ADU
from engine.tasks.flags import FlagBook
from engine.tasks.measures import QuadrantStats
from engine.tasks.stacking import allocate_fits, sort_frames
from engine.tasks.stats import CLIP_SIGMA, RegionStats, histogram_stats
from sim_days import EQUIPMENT, SERIALS, run_session

TESTS = ("BIAS01", "BIAS02", "DARK01")
CCDS = (1, 2, 3)


def simulate_day(out: Path, tests=TESTS, dark_range=(40.0, 80.0)) -> Truths:
    """A small-geometry day folder; dark current truths mapped from 0.2-0.8 onto `dark_range`."""
    draw = elvis.draw_truths
    low, high = dark_range

    def stronger_dark(*args, **kwargs):
        truths = draw(*args, **kwargs)
        for ccd in truths.ccds.values():
            for quadrant in ccd.quadrants.values():
                quadrant.dark_e_per_pix_per_hour = low + (high - low) * (quadrant.dark_e_per_pix_per_hour - 0.2) / 0.6
        return truths

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(elvis, "draw_truths", stronger_dark)
        result = elvis.simulate(elvis.SimulationRequest(tests=tests, out=out, chamber=load_chamber("B_NOSTROMO"),
                                                        geometry=SMALL, equipment=EQUIPMENT, jobs=1))
    return Truths.load(result.truths_path)


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    out = tmp_path_factory.mktemp("day")
    return out / "data", simulate_day(out / "data")


@pytest.fixture(scope="module")
def results(day, tmp_path_factory):
    data, _ = day
    folder = tmp_path_factory.mktemp("results") / "results"
    return folder, run_session(data, folder, TESTS)


def quadrant_values(record: dict, ccd: int, quadrant: str) -> dict:
    return record["ccds"][f"CCD{ccd}"][quadrant]


def std_tolerance(columns: int, rows: int = SMALL.image_rows, frames: int = 10) -> float:
    """3 %, or 4 sigma of a std measured with this many degrees of freedom if that is larger."""
    return max(0.03, 4.0 / math.sqrt(2 * columns * rows * (frames - 1)))


# -- BIAS01 / BIAS02 ------------------------------------------------------------------------------

@pytest.mark.parametrize("test", ["BIAS01", "BIAS02"])
def test_bias_offsets_and_ron_recover_the_truths(results, day, test):
    _, truths = day
    record = results[1][test]
    assert record["errors"] is False and record["flags"] == [], record["flag_reasons"]
    for ccd in CCDS:
        for q in QUADRANTS:
            truth = truths.ccds[ccd].quadrants[q]
            values = quadrant_values(record, ccd, q)
            for region in ("prescan", "image", "overscan"):
                assert values[f"offset_{region}_adu"] == pytest.approx(truth.offset_adu, abs=0.5), (ccd, q, region)
            assert values["ron_image_adu"] == pytest.approx(truth.ron_adu, rel=0.03), (ccd, q)
            assert values["ron_prescan_adu"] == pytest.approx(truth.ron_adu, rel=std_tolerance(6)), (ccd, q)
            assert values["ron_overscan_adu"] == pytest.approx(truth.ron_adu, rel=std_tolerance(4)), (ccd, q)
            assert values["gain_e_per_adu_used"] == NOMINAL_GAIN_E_PER_ADU
            expected_e = values["ron_prescan_adu"] * NOMINAL_GAIN_E_PER_ADU
            assert values["ron_prescan_e"] == pytest.approx(expected_e, abs=2e-3)
    assert "nominal 3.3" in record["values"]["gain_source"]


def test_bias_offsets_are_precise(results, day):
    """Clipped means over 10 frames: far better than the 0.5 ADU the issue asks."""
    _, truths = day
    record = results[1]["BIAS01"]
    errors = [quadrant_values(record, ccd, q)[f"offset_{region}_adu"] - truths.ccds[ccd].quadrants[q].offset_adu
              for ccd in CCDS for q in QUADRANTS for region in ("prescan", "image")]
    assert max(abs(e) for e in errors) < 0.1


def test_master_bias_carries_provenance_and_the_offsets(results, day):
    folder, records = results
    _, truths = day
    record = records["BIAS01"]
    for ccd in CCDS:
        name = f"EUC_MASTERBIAS_CCD{ccd}_SN_{SERIALS[f'ccd{ccd}']}_NOSTROMO.fits"
        assert f"products/{name}" in record["products"]
        with fits.open(folder / "D11" / "BIAS01" / "products" / name) as hdul:
            hdul.verify("exception")
            header = hdul[0].header
            assert [h.name for h in hdul[1:]] == ["STACK", "STD"]
            assert header["VISON"] and header["TEST"] == "BIAS01" and header["SESSION"] == "D11"
            assert header["BLOCK"] == "NOSTROMO" and header["CCD"] == f"CCD{ccd}"
            assert header["SN"] == SERIALS[f"ccd{ccd}"]
            assert header["OBSIDS"] == f"{record['obsids'][0]}-{record['obsids'][1]}" and header["NCOMB"] == 10
            assert header["METHOD"].startswith("median") and header["DATE"]
            assert len(header["HISTORY"]) == 10
            stack, spread = hdul["STACK"].data.astype(float), hdul["STD"].data.astype(float)
            assert stack.shape == SMALL.shape
            for q in QUADRANTS:
                truth = truths.ccds[ccd].quadrants[q]
                image = SMALL.region(stack, q, "image")
                # offset-subtracted stack + the offset it subtracted = the quadrant's offset
                assert float(np.median(image)) + header[f"OFFS_{q}"] == pytest.approx(truth.offset_adu, abs=0.5)
                assert float(np.median(SMALL.region(spread, q, "prescan"))) == pytest.approx(truth.ron_adu, rel=0.15)


def test_profiles_cover_every_row_and_column(results):
    folder, _ = results
    with open(folder / "D11" / "BIAS01" / "products" / "BIAS01_profiles.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 * 4 * (SMALL.image_rows + SMALL.image_cols)
    assert {r["axis"] for r in rows} == {"row", "column"}
    assert max(abs(float(r["mean_adu"])) for r in rows) < 2.0  # offset-subtracted: near 0 (hot pixels aside)


def test_profiles_are_the_mean_offset_subtracted_image_in_canonical_order(results, day):
    """The one pass reads bands as they lie in the frame and flips labels and sums, not pixels:
    its profiles must be those computed directly from canonical quadrants, in every quadrant."""
    from engine.formats.fits import read_frame
    from engine.tasks.measures import frame_stats

    folder, records = results
    data, _ = day
    obsids = records["BIAS01"]["obsids"]
    ccd = 3
    paths = [p for p in sorted(data.rglob(f"EUC_*_CCD{ccd}.fits")) if obsids[0] <= int(p.name.split("_")[1]) <= obsids[1]]
    with open(folder / "D11" / "BIAS01" / "products" / "BIAS01_profiles.csv") as handle:
        table = [r for r in csv.DictReader(handle) if r["ccd"] == f"CCD{ccd}"]
    for q in QUADRANTS:
        images = []
        for path in paths:
            offset = frame_stats(path)[q].prescan.clipped_mean
            with read_frame(path) as frame:
                images.append(SMALL.region(frame.data.astype(float), q, "image") - offset)
        mean = np.mean(images, axis=0)  # canonical rows x image columns
        for axis, expected in (("row", mean.mean(axis=1)), ("column", mean.mean(axis=0))):
            got = [float(r["mean_adu"]) for r in table if r["quadrant"] == q and r["axis"] == axis]
            assert np.allclose(got, expected, atol=1e-4), (q, axis)


def test_master_bias_is_compressed_and_agrees_with_the_float32_stack(results, day, tmp_path):
    """The master bias is tile-compressed with a quantisation step stated in each extension's
    header (QSTEP, QMAXERR, QRON); read back it agrees with the float32 stack, recomputed here from
    the frames with the same offsets (stack_unit), within QMAXERR: <= 1 % of the read noise for the
    master (STACK), <= 2 % for its error plane (STD)."""
    from engine.tasks.measures import frame_stats
    from engine.tasks.stacking import StackTarget, stack_unit

    folder, records = results
    data, truths = day
    ccd = 2
    name = f"EUC_MASTERBIAS_CCD{ccd}_SN_{SERIALS[f'ccd{ccd}']}_NOSTROMO.fits"
    frames = sorted((data).rglob(f"EUC_*_CCD{ccd}.fits"))
    obsids = records["BIAS01"]["obsids"]
    paths = [p for p in frames if obsids[0] <= int(p.name.split("_")[1]) <= obsids[1]]
    assert len(paths) == 10
    stats = [frame_stats(p) for p in paths]
    raw = tmp_path / "float32.fits"
    offsets = allocate_fits(raw, fits.Header(), ("STACK", "STD"), SMALL.shape)
    target = StackTarget(raw, offsets, "STACK", "STD", "std")
    for q in QUADRANTS:
        stack_unit((ccd, q), paths, [s[q].prescan.clipped_mean for s in stats], SMALL, target)
    product = folder / "D11" / "BIAS01" / "products" / name
    assert not list(product.parent.glob(".*float32*")), "the float32 stack is not left behind"
    with fits.open(product) as hdul, fits.open(raw) as reference:
        hdul.verify("exception")  # planes compressed apart and put end to end: still one valid FITS
        assert [hdu.name for hdu in hdul] == ["PRIMARY", "STACK", "STD"] and hdul[0].header["NCOMB"] == 10
        assert isinstance(hdul["STACK"], fits.CompImageHDU) and isinstance(hdul["STD"], fits.CompImageHDU)
        for plane in ("STACK", "STD"):
            header = hdul[plane].header
            ron = header["QRON"]
            assert ron == pytest.approx(min(truths.ccds[ccd].quadrants[q].ron_adu for q in QUADRANTS), rel=0.15)
            assert header["QMAXERR"] == pytest.approx(header["QSTEP"] / 2)
            bound = 0.01 if plane == "STACK" else 0.02  # the error plane: 2 % of the noise it estimates
            assert header["QMAXERR"] <= bound * ron
            error = np.abs(hdul[plane].data.astype(np.float64) - reference[plane].data.astype(np.float64))
            assert error.max() <= header["QMAXERR"] * (1 + 1e-5) + 1e-5, plane
            assert error.max() <= bound * ron
    assert product.stat().st_size < raw.stat().st_size / 2


def test_each_band_of_each_frame_is_read_once(day, results, tmp_path, monkeypatch):
    """BIAS01 declares its per-band consumers (check measurements, noise, stack: Family.per_band):
    every quadrant band of every frame is read once in the whole analysis (the prescan columns,
    whose clipped mean the stack subtracts, once more before the bands), and the numbers are
    those of the frame-by-frame path."""
    from engine.formats.fits import Frame
    from engine.tasks import bandpass

    data, _ = day
    reads: dict[tuple, int] = {}
    section, read_band = Frame.section, bandpass.read_band

    def count(frame, rows, cols):
        key = (frame.path.name, rows.start, rows.stop, cols.start, cols.stop)
        reads[key] = reads.get(key, 0) + 1

    def counting(self, rows=slice(None), cols=slice(None), out=None):
        count(self, rows, cols)
        return section(self, rows, cols, out)

    def counting_band(frame, words, band, out):  # the pass's compiled read (frame.section when it cannot)
        if words is not None:
            count(frame, band.frame_rows, band.cols)
        return read_band(frame, words, band, out)

    monkeypatch.setattr(Frame, "section", counting)
    monkeypatch.setattr(bandpass, "read_band", counting_band)
    record = run_session(data, tmp_path / "results", ("BIAS01",))["BIAS01"]
    width = SMALL.quad_width
    bands = {key: count for key, count in reads.items() if key[4] - key[3] == width}
    assert len({key[0] for key in bands}) == 30  # every frame
    assert set(bands.values()) == {1}, "a band read twice"
    others = [key for key in reads if key not in bands]
    assert all(key[4] - key[3] == SMALL.prescan for key in others)  # the prescan columns, before the bands
    assert record["ccds"] == results[1]["BIAS01"]["ccds"]


def test_report_and_figures(results):
    folder, records = results
    report = (folder / "D11" / "BIAS01" / "report.md").read_text()
    assert "## Offsets and read noise" in report and "## Master bias" in report and "Gain used: nominal 3.3" in report
    assert sorted(records["BIAS01"]["figures"]) == ["figs/BIAS01_offsets.png", "figs/BIAS01_ron.png"]
    for test in ("BIAS01", "DARK01"):
        for figure in records[test]["figures"]:
            assert (folder / "D11" / test / figure).read_bytes()[:4] == b"\x89PNG"


# -- DARK01 --------------------------------------------------------------------------------------

def test_dark_current_and_hot_pixels_recover_the_truths(results, day):
    folder, records = results
    _, truths = day
    record = records["DARK01"]
    # no gain configured nor measured: the nominal is used, and said with the flag DARK01 requires
    assert record["errors"] is False and record["flags"] == ["MISSCALPROD"], record["flag_reasons"]
    assert record["values"]["calproducts"]["gain"]["origin"] == "nominal"
    with open(folder / "D11" / "DARK01" / "products" / "DARK01_hot_pixels.csv") as handle:
        listed = {(r["ccd"], r["quadrant"], int(r["row"]), int(r["col"])) for r in csv.DictReader(handle)}
    for ccd in CCDS:
        for q in QUADRANTS:
            truth = truths.ccds[ccd].quadrants[q]
            values = quadrant_values(record, ccd, q)
            # The analysis can only be as right as the gain it is given: compare at the true gain.
            measured = values["dark_e_per_pix_per_hour"] * truth.gain_e_per_adu / values["gain_e_per_adu_used"]
            assert measured == pytest.approx(truth.dark_e_per_pix_per_hour, rel=0.10), (ccd, q)
            hot = truths.ccds[ccd].hot_pixels[q]
            assert all(rate * 565.0 / truth.gain_e_per_adu > HOT_PIXEL_THRESHOLD_ADU for _, _, rate in hot)
            assert values["hot_pixels"] == len(hot), (ccd, q)
            assert {(f"CCD{ccd}", q, r, c) for r, c, _ in hot} <= listed
            assert -2.0 <= values["fluence_adu"] <= 5.0


def test_master_dark(results):
    folder, records = results
    for ccd in CCDS:
        name = f"EUC_MASTERDARK_CCD{ccd}_SN_{SERIALS[f'ccd{ccd}']}_NOSTROMO.fits"
        with fits.open(folder / "D11" / "DARK01" / "products" / name) as hdul:
            assert [h.name for h in hdul[1:]] == ["DARK", "EDARK"]
            assert hdul[0].header["NCOMB"] == 4 and hdul[0].header["EXPTIME"] == 565.0
            assert hdul[0].header["TEST"] == "DARK01"
    assert not (folder / "D11" / "DARK01" / ".work").exists()


def test_a_dark_too_bright_raises_fluence_ool_with_the_reason(tmp_path):
    simulate_day(tmp_path / "data", tests=("DARK01",), dark_range=(300.0, 400.0))  # ~14-20 ADU in 565 s
    record = run_session(tmp_path / "data", tmp_path / "results", tests=("DARK01",))["DARK01"]
    assert "FLUENCE_OOL" in record["flags"]
    reasons = [r for r in record["flag_reasons"] if r["flag"] == "FLUENCE_OOL"]
    assert len(reasons) == 12
    assert "outside [-2, 5] ADU" in reasons[0]["reason"] and reasons[0]["ccd"] == 1 and reasons[0]["quadrant"] == "E"
    assert record["errors"] is False  # the analysis still ran
    assert record["ccds"]["CCD1"]["E"]["dark_e_per_pix_per_hour"] > 250


# -- robustness ------------------------------------------------------------------------------------

def test_a_crashing_subtask_does_not_stop_the_next_test(day, tmp_path, monkeypatch):
    data, _ = day

    def broken(self, ctx):
        raise RuntimeError("injected failure")

    monkeypatch.setattr(bias_module.BiasTask, "basic", broken)
    records = run_session(data, tmp_path / "results", tests=("BIAS01", "DARK01"))
    bias = records["BIAS01"]
    assert bias["errors"] is True and "SUBTASKCRASH" in bias["flags"]
    assert bias["error_messages"] == ["basic: RuntimeError: injected failure"]
    assert any("injected failure" in r["reason"] for r in bias["flag_reasons"] if r["flag"] == "SUBTASKCRASH")
    assert "meta" in bias["subtasks_skipped"] and bias["report"] == "report.md"
    dark = records["DARK01"]
    assert dark["errors"] is False and dark["flags"] == ["MISSCALPROD"]  # the nominal gain; no crash
    assert dark["ccds"]["CCD1"]["E"]["dark_e_per_pix_per_hour"] > 0


def test_a_failing_figure_is_flagged_and_costs_no_number(day, results, tmp_path, monkeypatch):
    """Figures are drawn in the background while the next sub-task runs (TaskContext.draw_figure):
    one whose drawing fails is a flagged error naming it, the other figure, the master and every
    value are still there, and the report (which waits for the figures) lists what was drawn."""
    data, _ = day

    def broken(*args):
        raise ValueError("no data to draw")

    monkeypatch.setattr(bias_module, "ron_figure", broken)
    record = run_session(data, tmp_path / "results", ("BIAS01",))["BIAS01"]
    assert record["errors"] is True and "SUBTASKCRASH" in record["flags"]
    assert record["error_messages"] == ["figure BIAS01_ron.png: ValueError: no data to draw"]
    assert record["figures"] == ["figs/BIAS01_offsets.png"]
    assert record["ccds"] == results[1]["BIAS01"]["ccds"] and record["products"] == results[1]["BIAS01"]["products"]
    folder = tmp_path / "results" / "D11" / "BIAS01"
    assert sorted(p.name for p in (folder / "figs").iterdir()) == ["BIAS01_offsets.png"]  # no half-written file
    assert "BIAS01_offsets.png" in (folder / "report.md").read_text()


def test_two_jobs_give_the_same_numbers(day, results, tmp_path):
    data, _ = day
    folder, serial = results
    parallel = run_session(data, tmp_path / "results", TESTS, jobs=2)
    for test in TESTS:
        assert parallel[test]["ccds"] == serial[test]["ccds"], test
        assert parallel[test]["flags"] == serial[test]["flags"]
    name = f"EUC_MASTERBIAS_CCD2_SN_{SERIALS['ccd2']}_NOSTROMO.fits"
    with fits.open(folder / "D11" / "BIAS01" / "products" / name) as one, \
            fits.open(tmp_path / "results" / "D11" / "BIAS01" / "products" / name) as two:
        assert np.array_equal(one["STACK"].data, two["STACK"].data)
        assert np.array_equal(one["STD"].data, two["STD"].data)


# -- the pieces ------------------------------------------------------------------------------------

def test_histogram_stats_match_a_direct_clipped_computation():
    rng = np.random.default_rng(3)
    values = np.rint(rng.normal(2713.4, 1.3, 50_000)).astype(np.int64)
    values[:40] = 4000  # hot pixels / cosmic rays
    stats = histogram_stats(np.bincount(values))
    kept = values[np.abs(values - np.median(values)) <= CLIP_SIGMA * stats.std]
    assert stats.count == kept.size
    assert stats.mean == pytest.approx(kept.mean(), abs=1e-9)
    assert stats.std == pytest.approx(kept.std(ddof=1), rel=1e-9)
    assert stats.mean == pytest.approx(2713.4, abs=0.03)


@pytest.mark.parametrize("frames", [1, 2, 3, 4, 5, 7, 10, 16, 25, 40])
def test_sort_frames_sorts_along_the_frame_axis(frames):
    cube = np.random.default_rng(frames).normal(size=(frames, 7, 5000)).astype(np.float32)
    expected = np.sort(cube, axis=0)
    sort_frames(cube)
    assert np.array_equal(cube, expected)


def test_allocated_fits_is_valid_and_filled_in_place(tmp_path):
    path = tmp_path / "stack.fits"
    header = fits.Header([("TEST", "BIAS01")])
    offsets = allocate_fits(path, header, ("STACK", "STD"), (7, 5))
    for value, name in ((1.5, "STACK"), (-2.0, "STD")):
        target = np.memmap(path, dtype=">f4", mode="r+", offset=offsets[name], shape=(7, 5))
        target[2:4] = value
        target.flush()
        del target
    with fits.open(path) as hdul:
        hdul.verify("exception")
        assert hdul[0].header["TEST"] == "BIAS01"
        assert hdul["STACK"].data[2, 0] == 1.5 and hdul["STACK"].data[0, 0] == 0.0
        assert hdul["STD"].data[3, 4] == -2.0


class _FakeContext:
    """The few TaskContext members the family checks use."""

    ccds = (1,)
    limits = BIAS_FAMILY.limits()  # the defaults

    def __init__(self):
        self.flags = FlagBook()
        self.values: dict = {}

    def set_value(self, ccd, quadrant, name, value):
        self.values.setdefault((ccd, quadrant), {})[name] = value


def _stats(prescan, image, overscan, image_std=1.2):
    def region(median, std=1.2):
        return RegionStats(median, std, median)

    return QuadrantStats(region(prescan), region(image, image_std), region(overscan), 0, 0)


def test_bias_checks_say_which_quadrant_frame_and_value():
    good = {q: _stats(2700, 2701, 2700) for q in QUADRANTS}
    gradient = dict(good, F=_stats(2700, 2715, 2700))
    noisy = dict(good, H=_stats(2700, 2700, 2700, image_std=2.0))
    ctx = _FakeContext()
    stats = RawStats({(1000, 1): good, (1001, 1): gradient, (1002, 1): noisy})
    check_offset_gradients(ctx, stats, ("image", "overscan"))
    check_image_noise(ctx, stats)
    [poor] = ctx.flags.reasons("POORQUALDATA")
    assert (poor.ccd, poor.quadrant) == (1, "F")
    assert poor.reason == "image minus prescan offset +15.0 ADU outside [-10, 10] ADU (OBSID 1001; 1 of 3 frames out)"
    assert ctx.flags.reasons("RON_OOL") == []  # one noisy frame of three: the median over frames is fine
    noisy_everywhere = {q: _stats(2700, 2700, 2700, image_std=2.0) for q in QUADRANTS}
    ctx = _FakeContext()
    check_image_noise(ctx, RawStats({(1000 + i, 1): noisy_everywhere for i in range(3)}))
    assert len(ctx.flags.reasons("RON_OOL")) == 4
    reason = ctx.flags.reasons("RON_OOL")[0].reason
    assert reason == "image-area std 2.000 ADU (median over 3 frames) outside [0.86, 1.44] ADU"
