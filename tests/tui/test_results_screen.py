"""Screen 5 on the demo session analysed by the pipeline: values per CCD and quadrant, flags with
their reasons, the Markdown report, a plot of any value, the quick look at products and raw frames;
the quick-look reader against numpy; snapshots of the values, the plot and the quick look on fixed
result records (not the engine's numbers of the day)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from engine.campaign.config import load_campaign
from engine.cli.main import main as engine_cli
from engine.formats.fits import read_frame
from engine.sim.demo import demo_request, prepare_demo_folder, simulate_demo
from vison_tui.app import VisonApp
from vison_tui.dialogs.quicklook import ImageView, QuickLookScreen
from vison_tui.quicklook import block_means, read_downsampled, render_cells, scale_limits
from engine.tasks.family import ValueSpec
from vison_tui.result_view import fit_markdown_tables, format_value, value_table
from vison_tui.screens.results import ResultsScreen, SourceList, TestList

from .conftest import SIZE
from .runs_fixtures import fixture_results, wait_for

FIXED_TIME = "2019-03-12T10:30:00"


@pytest.fixture(scope="module")
def analysed(tmp_path_factory) -> Path:
    """The demo session simulated and analysed once (aim run in this process); analysis times fixed."""
    root = tmp_path_factory.mktemp("analysed")
    config = prepare_demo_folder(root / "demo")
    simulate_demo(demo_request(load_campaign(config)))
    before = os.environ.get("VISON_STATE_DIR")
    os.environ["VISON_STATE_DIR"] = str(root / "state")
    try:
        assert engine_cli(["run", str(config), "--session", "D11"]) == 0
    finally:
        if before is None:
            os.environ.pop("VISON_STATE_DIR")
        else:
            os.environ["VISON_STATE_DIR"] = before
    for path in (root / "demo" / "results" / "D11").glob("*/result.json"):
        result = json.loads(path.read_text())
        result["started"] = result["finished"] = FIXED_TIME  # the snapshots show when a test was analysed
        path.write_text(json.dumps(result, indent=2))
    return config


@pytest.fixture
def app(analysed: Path, monkeypatch: pytest.MonkeyPatch) -> VisonApp:
    monkeypatch.chdir(analysed.parent.parent)  # paths shown relative: demo/results/D11
    monkeypatch.setenv("VISON_STATE_DIR", str(analysed.parent.parent / "state"))
    app = VisonApp(analysed, demo=True, simulate=False)
    app.animation_level = "none"
    return app


async def open_results(pilot) -> ResultsScreen:
    await pilot.pause()
    await pilot.press("escape", "5")
    screen = await wait_for(pilot, lambda: isinstance(pilot.app.screen, ResultsScreen) and pilot.app.screen, "Results")
    await wait_for(pilot, lambda: len(screen.entries) == 3 and screen.query_one("#values").row_count, "the results")
    return screen


def text_of(widget) -> str:
    return str(widget.render())


def flags_text(screen: ResultsScreen) -> str:
    """The flags list, a line per flag."""
    flags = screen.query_one("#flags")
    return "\n".join(str(flags.get_option_at_index(i).prompt) for i in range(flags.option_count))


def shows(cell: str, value) -> bool:
    """The cell is the value to the precision it is shown with (half its last digit)."""
    if isinstance(value, float) and math.isnan(value):
        return cell == "NaN"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return cell == str(value)
    mantissa, _, exponent = cell.partition("e")
    decimals = len(mantissa.partition(".")[2])
    return abs(float(cell) - value) <= 0.5 * 10.0 ** (int(exponent or 0) - decimals) * (1 + 1e-9)


async def test_values_flags_report_plot_and_quick_look(app: VisonApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_results(pilot)
        tests = screen.query_one(TestList)
        assert [e.name for e in screen.entries] == ["BIAS01", "DARK01", "BIAS02"] and tests.has_focus
        assert [e.state for e in screen.entries] == ["flags", "flags", "ok"]  # DARK01: nominal gain (MISSCALPROD)

        # values: one row per value and CCD, a column per quadrant; the flag with its reason
        values = screen.query_one("#values")
        assert str(values.get_row("ron_image_adu/CCD1")[0]) == "ron_image_adu (ADU)" and len(values.columns) == 6
        ron = screen.entry.result["ccds"]["CCD2"]["G"]["ron_image_adu"]
        assert str(values.get_cell("ron_image_adu/CCD2", "G")) == f"{ron:.4f}"  # to its declared 4 decimals
        flags = flags_text(screen)
        assert "HK_OOL" in flags and "OBSID 1003" in flags and "CCD2_TEMP_T" in flags

        # the report, rendered
        await pilot.press("m")
        await pilot.pause()
        report = screen.query_one("#report")
        assert report.source.startswith("# BIAS01") and screen.query_one("#report-scroll").has_focus

        # the plot: the family's key value, then any other with ] and [
        await pilot.press("p")
        await wait_for(pilot, lambda: "ron_image_adu per quadrant" in text_of(screen.query_one("#plot")), "the plot")
        assert "● CCD3" in text_of(screen.query_one("#plot-title"))  # the colours named
        await pilot.press("right_square_bracket")  # the next value: the family's other key value
        assert screen.plot_name == "ron_prescan_adu"
        await wait_for(pilot, lambda: "ron_prescan_adu per quadrant" in text_of(screen.query_one("#plot")), "the next")
        await pilot.press("left_square_bracket")  # and back
        assert screen.plot_name == "ron_image_adu"

        # DARK01: its own key value
        await pilot.press("escape", "down")
        await pilot.press("p")
        await wait_for(pilot, lambda: "dark_e_per_pix_per_hour" in text_of(screen.query_one("#plot")), "DARK01's plot")
        assert flags_text(screen).startswith("⚑ MISSCALPROD  gain: nominal 3.3")  # no gain configured

        # images: products first, then the raw frames of the test's OBSIDs; quick look on a product
        await pilot.press("i")
        sources = screen.query_one(SourceList)
        await wait_for(pilot, lambda: sources.option_count == 3 + 4 * 3, "DARK01's 3 products and 12 frames")
        assert sources.has_focus
        await pilot.press("enter")
        viewer = await wait_for(pilot, lambda: isinstance(app.screen, QuickLookScreen) and app.screen, "the viewer")
        await wait_for(pilot, lambda: viewer.image is not None, "the image read")
        assert viewer.image.extension == "DARK" and viewer.image.area == "frame"
        assert viewer.query_one(ImageView).lines
        await pilot.press("x")  # the other extension
        await wait_for(pilot, lambda: viewer.image is not None and viewer.image.extension == "EDARK", "EDARK")
        await pilot.press("a")  # quadrant E
        await wait_for(pilot, lambda: viewer.image is not None and viewer.image.area == "E", "quadrant E")
        assert viewer.image.source_shape == (70, 82)
        await pilot.press("s")
        assert "min-max" in text_of(viewer.query_one("#ql-scale"))
        await pilot.press("p")  # previous file: wraps to the last raw frame
        await wait_for(pilot, lambda: viewer.image is not None and viewer.image.path.name.endswith("_CCD3.fits"),
                       "the last raw frame")
        assert viewer.image.extensions == ["ROE1_CCD3"]
        await pilot.press("q")
        assert app.screen is screen


async def test_the_screen_shows_what_the_run_wrote(app: VisonApp, analysed: Path) -> None:
    """Every test of the real run: each value cell is the result.json value as formatted, every
    flag reason is listed with its flag, CCD, quadrant and OBSID, and the report is report.md."""
    folder = analysed.parent / "results" / "D11"
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_results(pilot)
        for i, name in enumerate([e.name for e in screen.entries]):
            if i:
                await pilot.press("escape", "down")
                await wait_for(pilot, lambda: screen.entry.name == name and screen.query_one("#values").row_count,
                               f"{name}'s values")
            entry = screen.entry
            result = json.loads((folder / entry.name / "result.json").read_text())
            values = screen.query_one("#values")
            shown = list(dict.fromkeys(str(row.key.value).rpartition("/")[0] for row in values.rows.values()))
            assert len(shown) > 5, entry.name
            for value_name in shown:
                for ccd in (1, 2, 3):
                    for q in "EFGH":
                        value = result["ccds"][f"CCD{ccd}"][q][value_name]
                        cell = str(values.get_cell(f"{value_name}/CCD{ccd}", q))
                        assert shows(cell, value), (entry.name, value_name, ccd, q, cell, value)
            flags = flags_text(screen)
            assert (flags == "no flag raised") == (not result["flags"]), entry.name
            for reason in result["flag_reasons"]:
                line = next(ln for ln in flags.splitlines() if ln.endswith(reason["reason"]))
                assert line.startswith(f"⚑ {reason['flag']}"), line
                if reason.get("ccd"):
                    assert f"CCD{reason['ccd']}" in line
                if reason.get("quadrant"):
                    assert f" {reason['quadrant']} " in line
                if reason.get("obsid"):
                    assert f"OBSID {reason['obsid']}" in line
            await pilot.press("m")
            await wait_for(pilot, lambda: screen.query_one("#report").source
                           == fit_markdown_tables((folder / entry.name / "report.md").read_text(),
                                                  screen.report_width - 6), f"{entry.name}'s report")


def test_quick_look_reads_block_means_of_the_area_asked(analysed: Path) -> None:
    frame = next((analysed.parent / "data" / "12_Mar_19").glob("EUC_1000_*_CCD1.fits"))
    with read_frame(frame) as opened:
        pixels = opened.data.astype(np.float64)
        rows, cols = opened.geometry.quadrant_slices("F")
    image = read_downsampled(frame, None, "F", width=41, height=35)  # the quadrant is 82 x 70: blocks of 2
    assert image.block == 2 and image.data.shape == (35, 41)
    expected = pixels[rows, cols].reshape(35, 2, 41, 2).mean(axis=(1, 3))
    assert np.allclose(image.data, expected, atol=1e-3)

    raw = np.arange(7 * 9, dtype=np.float32).reshape(7, 9)  # partial last blocks are left out
    assert np.array_equal(block_means(raw, slice(0, 7), slice(0, 9), 3), raw[:6, :9].reshape(2, 3, 3, 3).mean((1, 3)))
    low, high = scale_limits(expected.astype(np.float32), "5-95 %")
    assert np.percentile(expected, 5) == pytest.approx(low) and high > low
    lines = render_cells(image.data, low, high, zoom=1)
    assert len(lines) == 18 and sum(len(s.text) for s in lines[0]) == 41  # two pixel rows a line; 35 rows -> 18


def test_value_table_shape(analysed: Path) -> None:
    result = json.loads((analysed.parent / "results" / "D11" / "BIAS01" / "result.json").read_text())
    columns, rows = value_table(result)
    assert columns[:5] == ["1E", "1F", "1G", "1H", "2E"] and len(columns) == 12
    assert dict(rows)["gain_e_per_adu_used"] == ["3.3"] * 12
    assert [format_value(v) for v in (float("nan"), 0.0, 1234567.0, 0.00012, 2772.5492, None)] == \
        ["NaN", "0", "1234567", "0.00012", "2772.549", "–"]  # undeclared: 7 significant figures
    assert format_value(2772.5, ValueSpec("offset_image_adu", "ADU", 4, "")) == "2772.5000"
    assert [name for name, _ in rows][:2] == ["ron_image_adu", "ron_prescan_adu"]  # the family's key values first


# -- snapshots: fixed results, so they do not change when the engine's numbers do -----------------
@pytest.fixture
def fixed_app(demo_campaign: Path) -> VisonApp:
    fixture_results(demo_campaign.parent / "results")
    app = VisonApp(demo_campaign, demo=True, simulate=False)
    app.animation_level = "none"
    return app


async def open_fixed_results(pilot) -> ResultsScreen:
    await pilot.pause()
    await pilot.press("escape", "5")
    screen = await wait_for(pilot, lambda: isinstance(pilot.app.screen, ResultsScreen) and pilot.app.screen, "Results")
    await wait_for(pilot, lambda: len(screen.entries) == 3 and screen.query_one("#values").row_count, "the results")
    return screen


def test_results_values_snapshot(fixed_app: VisonApp, snap_compare) -> None:
    assert snap_compare(fixed_app, terminal_size=SIZE, run_before=open_fixed_results)


def test_results_plot_snapshot(fixed_app: VisonApp, snap_compare) -> None:
    async def plot(pilot) -> None:
        screen = await open_fixed_results(pilot)
        await pilot.press("p")
        await wait_for(pilot, lambda: "per quadrant" in text_of(screen.query_one("#plot")), "the plot")
        await pilot.pause()

    assert snap_compare(fixed_app, terminal_size=SIZE, run_before=plot)


def test_quick_look_snapshot(fixed_app: VisonApp, snap_compare) -> None:
    async def quick_look(pilot) -> None:
        await open_fixed_results(pilot)
        await pilot.press("o")  # the test's images are listed, then the first opens
        viewer = await wait_for(pilot, lambda: isinstance(pilot.app.screen, QuickLookScreen) and pilot.app.screen,
                                "the viewer")
        await wait_for(pilot, lambda: viewer.image is not None, "the master bias read")
        await pilot.press("c")  # heat colours
        await pilot.pause()

    assert snap_compare(fixed_app, terminal_size=SIZE, run_before=quick_look)
