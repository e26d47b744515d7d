"""`/` filters and column sorting in the app's lists (issue 15, item 9), and the Runs table at 80
columns (item 7): what htop, k9s and lazygit users expect. The filter field opens on `/`, filters
as you type, and enter, tab or escape go back to the list (escape arrives late in tmux); a sort
(header click, `>` next column, `<` the other way) holds through the table's periodic refresh."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text

from engine.monitor import ExposureSummary
from vison_tui.app import VisonApp
from vison_tui.screens.runs import RunsScreen
from vison_tui.screens.scripts import ScriptsScreen
from vison_tui.widgets.explog_table import ExpLogTable
from vison_tui.widgets.list_filter import ListFilter
from vison_tui.widgets.list_table import sort_value
from vison_tui.widgets.run_tables import RunList, RunTestsTable
from vison_tui.widgets.test_checklist import TestChecklist

from .conftest import settle, to_monitor_screen, to_scripts_screen
from .runs_fixtures import fixture_runs, wait_for


def shown_keys(table) -> list[str]:
    return [row.key.value for row in table.ordered_rows]


def column_texts(table, column: str) -> list[str]:
    return [str(table.get_cell(key, column)) for key in shown_keys(table)]


def new_app(config: Path) -> VisonApp:
    app = VisonApp(config, demo=True, simulate=False)
    app.animation_level = "none"
    return app


async def open_runs(pilot) -> RunsScreen:
    await settle(pilot)
    await pilot.press("escape", "3")
    screen = await wait_for(pilot, lambda: isinstance(pilot.app.screen, RunsScreen) and pilot.app.screen, "Runs")
    await wait_for(pilot, lambda: screen.query_one(RunList).row_count == 3, "the recorded runs")
    return screen


def test_sort_values_are_natural() -> None:
    cells = ["10 s", "2 min 05 s", "1 h 00 min", "3/4", "12/12", "–", "", Text("9.5e-01"), "abc"]
    ordered = sorted(cells, key=sort_value)
    assert ordered[:6] == [Text("9.5e-01"), "3/4", "10 s", "12/12", "2 min 05 s", "1 h 00 min"]
    assert ordered[6] == "abc" and set(map(str, ordered[7:])) == {"–", ""}


async def test_runs_filter_opens_on_slash_and_every_way_back_keeps_it(demo_campaign: Path) -> None:
    fixture_runs(demo_campaign.parent / "results")
    app = new_app(demo_campaign)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_runs(pilot)
        runs = screen.query_one(RunList)
        field = screen.query_one("#runs-filter", ListFilter)
        assert not field.display  # no row lost to an empty field
        await pilot.press("slash")
        await pilot.pause()
        assert field.display and app.focused is field
        await pilot.press(*"d12", "enter")
        await wait_for(pilot, lambda: shown_keys(runs) and len(shown_keys(runs)) == 1, "the filtered runs")
        assert "FM20190312_090000_D12" in str(runs.get_cell_at((0, 0)))
        assert "1 of 3 shown (/ d12)" in str(screen.query_one("#runs-title").render())
        # the chosen run follows the filter: its tests are the D12 run's
        assert screen.chosen is not None and screen.chosen.status.session == "D12"
        for key in ("enter", "tab", "escape"):  # each goes back to the list; the filter stays
            await pilot.press("slash")
            await pilot.pause()
            assert app.focused is field
            await pilot.press(key)
            await pilot.pause()
            assert app.focused is runs, key
            assert field.display and len(shown_keys(runs)) == 1
        # the periodic refresh (every second) keeps the filter
        screen.refresh_runs()
        await pilot.pause(1.5)
        assert len(shown_keys(runs)) == 1
        # emptied, everything is back and the field hides when left
        await pilot.press("slash", "ctrl+u", "enter")
        await wait_for(pilot, lambda: len(shown_keys(runs)) == 3, "every run again")
        assert not field.display

        # the tests table of the chosen run has its own filter
        await pilot.press("tab")
        await pilot.pause()
        tests = screen.query_one(RunTestsTable)
        if app.focused is not tests:
            tests.focus()
            await pilot.pause()
        before = shown_keys(tests)
        assert len(before) > 1
        await pilot.press("slash")
        await pilot.pause()
        assert app.focused is screen.query_one("#run-tests-filter", ListFilter)
        await pilot.press(*before[-1].lower(), "enter")
        await wait_for(pilot, lambda: tests.row_count == 1, f"the {before[-1]} row alone")
        assert shown_keys(tests) == [before[-1]] and app.focused is tests


async def test_runs_sort_by_header_and_keys_survives_the_refresh(demo_campaign: Path) -> None:
    fixture_runs(demo_campaign.parent / "results")
    app = new_app(demo_campaign)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_runs(pilot)
        runs = screen.query_one(RunList)
        newest_first = shown_keys(runs)
        # a click on the Started header: oldest first; again: newest first
        await pilot.click(RunList, offset=(runs.columns["Started"].get_render_width(runs) // 2
                                           + sum(c.get_render_width(runs) for c in list(runs.columns.values())[:5]), 0))
        await pilot.pause()
        assert runs.sort_column == "Started" and not runs.sort_reverse
        assert shown_keys(runs) == sorted(newest_first, key=lambda k: str(runs.get_cell(k, "Started")))
        assert str(runs.columns["Started"].label).endswith("▲")
        oldest_first = shown_keys(runs)
        assert oldest_first != newest_first
        screen.refresh_runs()
        await pilot.pause(1.5)  # the refresh redraws the rows: the order holds
        assert shown_keys(runs) == oldest_first
        await pilot.press("less_than_sign")
        await pilot.pause()
        assert runs.sort_reverse and shown_keys(runs) == oldest_first[::-1]
        # > steps to the next column (State), then past the last back to the records' own order
        await pilot.press("greater_than_sign")
        await pilot.pause()
        assert runs.sort_column == "Took"
        assert column_texts(runs, "State") != [] and runs.sort_reverse is False
        for _ in range(2):
            await pilot.press("greater_than_sign")
        await pilot.pause()
        assert runs.sort_column is None and shown_keys(runs) == newest_first
        # the cursor stays on its run when the order changes
        await pilot.press("down")
        chosen = screen.chosen.key
        await pilot.press("greater_than_sign", "greater_than_sign", "greater_than_sign", "greater_than_sign")
        await pilot.pause()
        assert runs.sort_column == "State" and screen.chosen.key == chosen


async def test_runs_table_fits_80_columns(demo_campaign: Path) -> None:
    fixture_runs(demo_campaign.parent / "results")
    app = new_app(demo_campaign)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_runs(pilot)
        for table in (screen.query_one(RunList), screen.query_one(RunTestsTable)):
            await pilot.pause()
            used = sum(c.get_render_width(table) for c in table.columns.values())
            assert used <= table.scrollable_content_region.width, (type(table).__name__, used)
            assert table.max_scroll_x == 0
        runs = screen.query_one(RunList)
        assert {"Run", "State", "Tests", "Doing / ended"} <= {str(k.value) for k in runs.columns}
        assert "Started" not in [str(k.value) for k in runs.columns]  # given way, in the line under the table
        # what a run does is readable, not a column cut to nothing
        assert runs.columns["Doing / ended"].width >= 30
        # wider again, every column is back
        await pilot.resize_terminal(120, 40)
        await pilot.pause(0.3)
        assert "Started" in [str(k.value) for k in runs.columns]


async def test_scripts_checklist_filter_and_sort(app) -> None:
    async with app.run_test(size=(120, 40)) as pilot:
        await to_scripts_screen(pilot)
        screen = app.screen
        assert isinstance(screen, ScriptsScreen)
        checklist = screen.query_one(TestChecklist)
        everything = checklist.row_count
        await pilot.press("slash")
        await pilot.pause()
        field = screen.query_one("#checklist-filter", ListFilter)
        assert app.focused is field
        await pilot.press(*"dark")
        await pilot.pause()
        assert 0 < checklist.row_count < everything
        assert all("dark" in " ".join(str(c) for c in checklist.get_row(key)).lower() for key in shown_keys(checklist))
        await pilot.press("tab")
        await pilot.pause()
        assert app.focused is checklist
        # space still toggles the highlighted test, and the selection marks stay right while filtered
        row = checklist.current_row()
        await pilot.press("space")
        await pilot.pause()
        assert str(checklist.get_cell(row.key, "mark")) in ("[x]", "[ ]", "[-]")
        selected = set(checklist.selected)
        await pilot.press("slash", "ctrl+u", "escape")
        await pilot.pause()
        assert checklist.row_count == everything and checklist.selected == selected
        # sorted by frames (highest first with <), the marks column still follows the rows
        await pilot.press("greater_than_sign", "greater_than_sign", "greater_than_sign", "greater_than_sign",
                          "less_than_sign")
        await pilot.pause()
        assert checklist.sort_column == "frames" and checklist.sort_reverse
        frames = [sort_value(checklist.get_cell(key, "frames")) for key in shown_keys(checklist)]
        assert frames == sorted(frames, reverse=True)


def exposure(obsid: int, test: str, hk: str = "ok") -> ExposureSummary:
    rows = {ccd: {"date": "120319D090134T", "exptime": 0.0, "File_name": f"EUC_{obsid}_{ccd}.fits"}
            for ccd in ("CCD1", "CCD2", "CCD3")}
    return ExposureSummary(obsid, test, ("CCD1", "CCD2", "CCD3"), rows, hk)


async def test_explog_filter_and_sort_hold_as_exposures_arrive(app) -> None:
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await to_monitor_screen(pilot)
        table = screen.query_one(ExpLogTable)
        day = [exposure(1000 + i, "BIAS01" if i < 4 else "DARK01", "critical" if i == 2 else "ok") for i in range(8)]
        table.update_exposures(day[:6])
        table.focus()
        await pilot.pause()
        await pilot.press("slash")
        await pilot.pause()
        assert app.focused is screen.query_one("#explog-filter", ListFilter)  # not the HK filter
        assert not screen.query_one("#hk-filter").has_class("-shown")
        await pilot.press(*"dark01", "enter")
        await pilot.pause()
        assert app.focused is table and shown_keys(table) == ["1004", "1005"]
        assert "2 of 6 exposures (/ dark01)" in str(screen.query_one("#explog-panel").border_title)
        table.update_exposures(day)  # the next snapshots: two more exposures
        await pilot.pause()
        assert shown_keys(table) == ["1004", "1005", "1006", "1007"]
        assert table.get_row_index("1007") == table.cursor_row  # follow: the newest
        # sorted by the HK verdict (critical, ok, warning); a later exposure joins in its place
        await pilot.press("slash", "ctrl+u", "enter")
        for _ in range(4):
            await pilot.press("greater_than_sign")
        await pilot.pause()
        assert table.sort_column == "HK" and not table.sort_reverse
        assert shown_keys(table)[0] == "1002"
        table.update_exposures([*day, exposure(1008, "DARK01", "warning")])
        await pilot.pause()
        assert shown_keys(table)[0] == "1002" and shown_keys(table)[-1] == "1008" and table.row_count == 9
        assert table.get_row_index("1008") == table.cursor_row  # follow: the newest, wherever it sorts
