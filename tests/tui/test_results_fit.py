"""Screen 5 at 120x40 (issue 15, item 5): every value of the 12 quadrants readable without hidden
columns, the report's wide table split per CCD instead of cut to "27…", every flag reachable,
the plot a marker per CCD and quadrant (never lines across quadrants), and / filtering values
and flags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vison_tui.app import VisonApp
from vison_tui.result_view import plot_value
from vison_tui.screens.results import FlagList

from .conftest import SIZE
from .runs_fixtures import wait_for
from .test_results_screen import analysed, flags_text, open_results, text_of  # noqa: F401 (fixture)


@pytest.fixture
def app(analysed: Path, monkeypatch: pytest.MonkeyPatch) -> VisonApp:  # noqa: F811
    monkeypatch.chdir(analysed.parent.parent)
    monkeypatch.setenv("VISON_STATE_DIR", str(analysed.parent.parent / "state"))
    app = VisonApp(analysed, demo=True, simulate=False)
    app.animation_level = "none"
    return app


async def test_all_quadrants_fit_and_the_report_tables_are_split(app: VisonApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_results(pilot)
        values = screen.query_one("#values")
        await pilot.pause()
        # no column beyond the right edge: CCD3 H is on screen without moving the focus
        assert values.virtual_size.width <= values.scrollable_content_region.width, values.virtual_size
        assert [str(c.label) for c in values.columns.values()] == ["value", "CCD", "E", "F", "G", "H"]
        for ccd in ("CCD1", "CCD2", "CCD3"):
            assert str(values.get_cell(f"ron_image_adu/{ccd}", "ccd")) == ccd

        await pilot.press("m")
        await wait_for(pilot, lambda: screen.query_one("#report").source.startswith("# BIAS01"), "the report")
        source = screen.query_one("#report").source
        width = screen.query_one("#report-scroll").size.width
        table_lines = [line for line in source.splitlines() if line.startswith("|")]
        assert table_lines and all(len(line) < width - 4 for line in table_lines
                                   if line.startswith("| offset_prescan_adu")), width
        headers = [line for line in table_lines if line.startswith("| value |")]
        assert headers[:3] == ["| value | CCD1 E | CCD1 F | CCD1 G | CCD1 H |",
                               "| value | CCD2 E | CCD2 F | CCD2 G | CCD2 H |",
                               "| value | CCD3 E | CCD3 F | CCD3 G | CCD3 H |"]
        offset = screen.entry.result["ccds"]["CCD3"]["H"]["offset_prescan_adu"]
        assert f"{offset:.4f}" in source  # whole, to its declared precision


async def test_every_flag_is_reachable(app: VisonApp, analysed: Path) -> None:  # noqa: F811
    path = analysed.parent / "results" / "D11" / "BIAS02" / "result.json"
    result = json.loads(path.read_text())
    reasons = [{"flag": "HK_OOL", "ccd": 1 + i % 3, "quadrant": "EFGH"[i % 4], "obsid": 1014 + i,
                "reason": f"[warning] CCD{1 + i % 3}_TEMP_T outside its limits, excursion number {i}"} for i in range(12)]
    result["flags"], result["flag_reasons"] = ["HK_OOL"], reasons
    path.write_text(json.dumps(result))
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_results(pilot)
        await pilot.press("down", "down")
        await wait_for(pilot, lambda: screen.entry.name == "BIAS02" and "number 11" in flags_text(screen), "BIAS02")
        flags = screen.query_one(FlagList)
        assert flags.option_count == 12
        flags.focus()
        await pilot.press(*["down"] * 12)
        await pilot.pause()
        assert flags.highlighted == 11
        last = flags.get_option_at_index(11)
        assert "excursion number 11" in str(last.prompt)
        # the highlighted flag is inside the list's visible rows (the list scrolled to it)
        assert flags.scroll_offset.y + flags.scrollable_content_region.height >= flags.virtual_size.height - 1


async def test_filter_values_and_flags(app: VisonApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_results(pilot)
        values = screen.query_one("#values")
        await pilot.press("slash", *"ron_image")
        await pilot.pause()
        names = {str(row.key.value) for row in values.rows.values()}
        assert names == {f"{name}/CCD{n}" for name in ("ron_image_adu", "ron_image_e") for n in (1, 2, 3)}
        assert "no flag matches" in flags_text(screen)
        await pilot.press("enter")
        assert values.has_focus
        await pilot.press("slash", *["backspace"] * 9, *"hk_ool", "enter")
        await pilot.pause()
        assert "HK_OOL" in flags_text(screen) and values.row_count == 0


def test_the_plot_marks_quadrants_without_lines(analysed: Path) -> None:  # noqa: F811
    result = json.loads((analysed.parent / "results" / "D11" / "BIAS01" / "result.json").read_text())
    text = plot_value(result, "ron_image_adu", 90, 25)
    assert text.count("●") == 12  # a marker per CCD and quadrant
    assert "•" not in text and not any(0x2800 <= ord(c) <= 0x28FF for c in text)  # no line drawn between them
