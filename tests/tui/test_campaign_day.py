"""Issue 15's acceptance: a whole campaign day in the app, by keys only, at 120x40 and at 80x24.

Edit the campaign TOML and save it, write the scripts, build the sessions, start a wait run on a
day folder the ELVIS simulator is streaming, follow its log, read its results, watch the monitor,
stop the run, clean up. Each step asserts what the user sees or what is on disk; no step calls a
screen's method (the only non-key inputs are the simulator standing for the chamber and a
monitor.toml with quick settling, written beside the campaign as a user would).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from engine.campaign.config import load_campaign
from engine.pipeline.runs import list_runs, run_status
from engine.sim.demo import demo_request
from engine.sim.elvis import StreamPacing, plan_for, simulate
from vison_tui.app import VisonApp
from vison_tui.dialogs.confirm import ConfirmDialog
from vison_tui.screens.campaign import CampaignScreen
from vison_tui.screens.cleanup import CleanupScreen
from vison_tui.screens.log import LogScreen
from vison_tui.screens.monitor import MonitorScreen
from vison_tui.screens.results import ResultsScreen
from vison_tui.screens.runs import RunsScreen
from vison_tui.screens.scripts import ScriptsScreen
from vison_tui.widgets.explog_table import ExpLogTable
from vison_tui.widgets.kind_checklist import KindChecklist
from vison_tui.widgets.log_view import LogView
from vison_tui.widgets.message_panel import MessagePanel
from vison_tui.widgets.run_tables import RunTestsTable

from .conftest import settle, to_scripts_screen
from .runs_fixtures import start_dialog_in_wait_mode, stop_leftover_runs, wait_for

DAY = "12_Mar_19"  # the simulated day
SESSION_LINE = 26  # `tests = ["BIAS01", "DARK01", "BIAS02"]` under [sessions.D11] in the demo campaign
CUT = ', "DARK01", "BIAS02"'  # what the edit takes out: the day's session is BIAS01 alone
MONITOR_TOML = '[monitor]\nsettle_seconds = 0.2\npolling = "polling"\npoll_seconds = 0.2\n'
TIMEOUT_S = 60.0  # per step; a loaded 2-core machine runs the app, the run and the simulator at once


@pytest.fixture
def day_setup(demo_campaign: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (demo_campaign.parent / "monitor.toml").write_text(MONITOR_TOML)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    # the monitor as a thread of the app: nothing outlives the test (detached monitors: test_monitor_detached.py)
    monkeypatch.setattr(MonitorScreen, "DETACH", False)
    yield demo_campaign
    stop_leftover_runs(demo_campaign.parent / "results")


def text_of(widget) -> str:
    return str(widget.render())


def messages(screen) -> str:
    return "\n".join(line.text for line in screen.query_one(MessagePanel).lines)


def shown_lines(view: LogView) -> str:
    """The log lines on screen, as the terminal shows them."""
    return "\n".join("".join(segment.text for segment in view.render_line(y)) for y in range(view.size.height))


def rows_by_test(screen: RunsScreen) -> dict[str, dict[str, str]]:
    """The run's tests table: test -> {column heading: cell} (narrow terminals show fewer columns)."""
    table = screen.query_one(RunTestsTable)
    headings = [str(column.label).strip() for column in table.ordered_columns]
    rows = [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]
    return {row[0]: dict(zip(headings, row)) for row in rows}


def shows(cell: str, value: float) -> bool:
    """The cell is the value to the precision it is shown with."""
    decimals = len(cell.partition(".")[2])
    return abs(float(cell) - value) <= 0.5 * 10.0 ** -decimals * (1 + 1e-9)


@pytest.mark.parametrize("size", [(120, 40), (80, 24)], ids=["120x40", "80x24"])
async def test_a_whole_campaign_day_by_keys(day_setup: Path, size: tuple[int, int]) -> None:
    config = day_setup
    folder = config.parent
    results = folder / "results"
    app = VisonApp(config, demo=True, simulate=False)
    app.animation_level = "none"
    streaming: threading.Thread | None = None
    async with app.run_test(size=size) as pilot:
        try:
            # 1. the campaign: session D11 cut to BIAS01 in the TOML editor, saved
            await settle(pilot)
            campaign = app.screen
            assert isinstance(campaign, CampaignScreen)
            editor = campaign.editor
            await pilot.press("e")
            assert editor.has_focus
            await pilot.press("pageup", "pageup")
            for _ in range(3 * SESSION_LINE):  # long comment lines wrap: down as often as the eye needs
                if editor.cursor_location[0] == SESSION_LINE - 1:
                    break
                await pilot.press("down")
            await pilot.press("end", "left", *["backspace"] * len(CUT))
            assert editor.document.get_line(SESSION_LINE - 1) == 'tests = ["BIAS01"]', editor.cursor_location
            await pilot.press("ctrl+s")
            await settle(pilot)
            assert isinstance(app.screen, CampaignScreen), "saving a valid campaign must not ask"
            assert not app.unsaved
            assert 'tests = ["BIAS01"]\n' in config.read_text()
            assert [t.name for t in load_campaign(config).session("D11").tests] == ["BIAS01"]

            # 2. the scripts of the campaign's tests (the checklist is filled from its sessions)
            await to_scripts_screen(pilot)
            scripts_screen = app.screen
            assert isinstance(scripts_screen, ScriptsScreen)
            await pilot.press("w")
            await settle(pilot)
            written = {p.name.split("_")[2] for p in (folder / "scripts").glob("vis_CalCamp_*.xlsx")}
            assert written == {"BIAS01", "CHINJ01", "FOCUS00"}, messages(scripts_screen)
            assert "Wrote 3 scripts" in messages(scripts_screen)

            # 3. the sessions
            await pilot.press("b")
            await settle(pilot)
            assert "Built 2 session(s)" in messages(scripts_screen)
            sessions = folder / "sessions"
            assert (sessions / "D11" / "TEST_SEQUENCE_D11.txt").read_text().splitlines() == [
                p.name for p in (folder / "scripts").glob("vis_CalCamp_BIAS01_*.xlsx")]
            assert (sessions / "D12").is_dir()

            # 4. a wait run on the day folder the chamber is about to write, from the dialog
            await pilot.press("3")
            runs = await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen, "the Runs screen")
            dialog = await start_dialog_in_wait_mode(pilot)
            await pilot.press("tab", "ctrl+u", *DAY)
            await pilot.pause()
            command = text_of(dialog.query_one("#command"))
            assert "--session D11" in command and "--wait" in command and f"--day {DAY}" in command
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: app.screen is runs, "the dialog to close on start", TIMEOUT_S)
            await wait_for(pilot, lambda: runs.chosen and runs.chosen.live, "the wait run listed, live", TIMEOUT_S)
            assert runs.chosen.status.state in ("starting", "running")

            request = demo_request(load_campaign(config))  # BIAS01 only, small frames
            assert request.tests == ("BIAS01",) and request.day_folder.name == DAY
            streaming = threading.Thread(target=simulate, args=(request, StreamPacing(frame_interval_s=0.05)),
                                         daemon=True)
            streaming.start()
            await wait_for(pilot, lambda: rows_by_test(runs).get("BIAS01", {}).get("State") == "done",
                           "BIAS01 analysed, in the run's tests table", 2 * TIMEOUT_S)
            shown = rows_by_test(runs)["BIAS01"]
            assert "HK_OOL" in shown["Flags"], shown  # the demo's HK excursion
            if size[0] >= 120:
                assert shown["OBSIDs"] == "1000-1009", shown
            assert runs.chosen.status.state == "running"  # a wait run goes on watching

            # 5. its log: the test's lines, found with the search as a user would
            await pilot.press("l")
            log = await wait_for(pilot, lambda: isinstance(app.screen, LogScreen) and app.screen, "the Log screen")
            await wait_for(pilot, lambda: [name for _, name in log.index.task_lines()] == ["BIAS01"],
                           "the run's log with its task", TIMEOUT_S)
            view = log.query_one(LogView)
            await pilot.press("slash", *"Task BIAS01 exited", "enter")
            await pilot.pause()
            await pilot.press("escape")  # back to the log
            if not view.wrap:  # narrow terminals open the log wrapped already
                await pilot.press("w")
            await wait_for(pilot, lambda: view.wrap, "wrapping on")
            unwrapped = lambda: "".join(shown_lines(view).split())
            await wait_for(pilot, lambda: "TaskBIAS01exitedwithErrors:False" in unwrapped(),
                           "the test's end in the log view")

            # 6. its results: CCD1's offset in quadrant E, as written in result.json
            await pilot.press("3", "v")
            screen = await wait_for(pilot, lambda: isinstance(app.screen, ResultsScreen) and app.screen, "Results")
            await wait_for(pilot, lambda: [e.name for e in screen.entries] == ["BIAS01"]
                           and screen.query_one("#values").row_count, "BIAS01's values", TIMEOUT_S)
            result = json.loads((results / "D11" / "BIAS01" / "result.json").read_text())
            offset = result["ccds"]["CCD1"]["E"]["offset_prescan_adu"]
            values = screen.query_one("#values")
            cell = str(values.get_cell("offset_prescan_adu/CCD1", "E"))
            assert shows(cell, offset), (cell, offset)
            assert result["flags"] == ["HK_OOL"] and [e.state for e in screen.entries] == ["flags"]

            # 7. the monitor on the day folder: every exposure in the EXP-LOG
            streaming.join(TIMEOUT_S)
            assert not streaming.is_alive(), "the simulator did not finish the day"
            await pilot.press("6")
            monitor = await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen) and app.screen, "Monitor")
            await pilot.press("s")  # the newest day folder of the campaign's data: today's
            table = monitor.query_one(ExpLogTable)
            exposures = len(plan_for(request))
            await wait_for(pilot, lambda: table.row_count == exposures, f"the {exposures} exposures in the EXP-LOG",
                           TIMEOUT_S)
            assert DAY in text_of(monitor.query_one("#monitor-status"))
            await pilot.press("s")
            await wait_for(pilot, lambda: not monitor.running, "the monitor to stop")

            # 8. end of the day: the run stopped (after the question); its results stay
            await pilot.press("3")
            await wait_for(pilot, lambda: app.screen is runs, "the Runs screen")
            await pilot.press("s")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the stop question")
            await pilot.press("y")
            run = list_runs(results)[0]
            await wait_for(pilot, lambda: not run_status(run).alive, "the run's process to end", TIMEOUT_S)

            # 9. clean-up: figures and FITS products planned, then gone after the question
            await pilot.press("7")
            cleanup = await wait_for(pilot, lambda: isinstance(app.screen, CleanupScreen) and app.screen, "Clean-up")
            checklist = cleanup.query_one(KindChecklist)
            bulky = [p for p in (results / "D11" / "BIAS01").rglob("*") if p.is_file()
                     and p.parent.name in ("figs", "products")]
            assert bulky, "the run left no products or figures to clean"
            for kind in ("figures", "products"):
                await wait_for(pilot, lambda: checklist.row_count, "the kinds measured")
                while checklist.current_kind() != kind:
                    await pilot.press("down")
                await pilot.press("space")
            await wait_for(pilot, lambda: cleanup.plan is not None and cleanup.plan.kinds == ("figures", "products")
                           and cleanup.plan.files == len(bulky), "the plan of the bulky files", TIMEOUT_S)
            await pilot.press("x")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the removal question")
            body = text_of(app.screen.query_one(".body"))
            assert "figures" in body and "products" in body
            await pilot.press("y")
            await wait_for(pilot, lambda: not any(p.exists() for p in bulky), "the bulky files removed", TIMEOUT_S)
            assert (results / "D11" / "BIAS01" / "result.json").is_file()
            assert (results / "D11" / "BIAS01" / "report.md").is_file()
        finally:
            stop_leftover_runs(results)
            if streaming is not None:
                streaming.join(TIMEOUT_S)
