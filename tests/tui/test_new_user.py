"""What a new user tripped on (issue 15, items 1-4, 8, 10), driven by keys as that user would.

Each test failed before its fix: start-run after the Log screen, screen keys typed into the campaign
TOML, heavy imports at start-up, a wait run on a day folder that does not exist, R restarting
without a question, session edits lost at restart, all-or-nothing session builds (in
test_scripts_screen.py), a palette holding only the current screen's actions, the Runs status text
lagging its table, no new campaign from the template, no results folder in the start-run dialog.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from engine.formats.names import day_folder_name
from engine.pipeline.runs import list_runs, process_start_ticks, register_run
from vison_tui.app import VisonApp
from vison_tui.dialogs.confirm import ConfirmDialog
from vison_tui.dialogs.start_run import StartRunDialog
from vison_tui.dialogs.text_prompt import TextPrompt
from vison_tui.screens.campaign import CampaignScreen
from vison_tui.screens.help import HelpScreen
from vison_tui.widgets.problem_list import ProblemList
from vison_tui.widgets.run_tables import RunList

from .conftest import SIZE, settle
from .runs_fixtures import _test, fixture_runs, stop_leftover_runs, wait_for, write_run

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def no_leftover_runs(demo_campaign: Path):
    yield
    stop_leftover_runs(demo_campaign.parent / "results")


def new_app(config: Path) -> VisonApp:
    app = VisonApp(config, demo=True, simulate=False)
    app.animation_level = "none"
    return app


def text_of(widget) -> str:
    return str(widget.render())


def make_day_folder(campaign: Path, name: str = "12_Mar_19") -> Path:
    day = campaign.parent / "data" / name
    day.mkdir(parents=True, exist_ok=True)
    (day / f"EXP_LOG_{name.replace('_', '')}.txt").write_text("")
    return day


@pytest.fixture
def sleeper():
    """A live process standing for a running run's (its pid goes in run.json)."""
    process = subprocess.Popen(["sleep", "120"])
    yield process
    process.kill()
    process.wait()


def make_live(folder: Path, process: subprocess.Popen, **info) -> None:
    record = json.loads((folder / "run.json").read_text())
    record.update(pid=process.pid, pid_start=process_start_ticks(process.pid), pgid=process.pid, **info)
    (folder / "run.json").write_text(json.dumps(record))


# -- item 1 ---------------------------------------------------------------------------------------
async def test_start_run_works_after_the_log_screen_was_opened(demo_campaign: Path) -> None:
    """The log's tail worker never ends: the dialog used to think a start was under way, for ever."""
    app = new_app(demo_campaign)  # no data: the engine refuses, and the dialog must say so
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("4")  # the Log screen: its workers keep running
        await pilot.pause()
        await pilot.press("3", "n")
        dialog = await wait_for(pilot, lambda: isinstance(app.screen, StartRunDialog) and app.screen, "the dialog")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: "no day folder" in text_of(dialog.query_one("#error")),
                       "the engine's answer in the dialog")
        assert not dialog.starting  # refused: ctrl+s starts again


# -- item 2 ---------------------------------------------------------------------------------------
async def test_screen_keys_are_never_typed_into_the_campaign(app, demo_campaign: Path) -> None:
    original = demo_campaign.read_text()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        campaign = app.screen
        assert isinstance(campaign, CampaignScreen) and not campaign.editor.has_focus
        await pilot.press("2")  # at once: the screen key
        assert app.current_mode == "scripts"
        await pilot.press("1", "question_mark")  # help
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert app.screen is campaign

        # in the editor digits are text; ctrl+g then a screen's key goes there, typing nothing
        await pilot.press("e")
        assert campaign.editor.has_focus
        await pilot.press("ctrl+g", "3")
        await pilot.pause()
        assert app.current_mode == "runs"
        await pilot.press("1")
        assert campaign.editor.has_focus  # the focus comes back where it was
        await pilot.press("ctrl+g", "question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape", "f1")  # F1 too, from inside the editor
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")

        # escape leaves the editor; escape again stays out of it: "esc, then 2" switches screens
        await pilot.press("escape")
        assert campaign.query_one(ProblemList).has_focus
        await pilot.press("escape")
        assert not campaign.editor.has_focus
        await pilot.press("2")
        assert app.current_mode == "scripts"
        assert campaign.editor.text == original and not app.unsaved


# -- item 3 ---------------------------------------------------------------------------------------
def test_start_up_imports_no_heavy_module() -> None:
    """astropy, scipy, openpyxl, matplotlib and the analysis modules load after the first paint."""
    heavy = ("astropy", "scipy", "openpyxl", "matplotlib", "engine.tasks.registry", "numpy")
    code = ("import sys, vison_tui.app, vison_tui.screens.campaign, vison_tui.screens.help; "
            f"print([m for m in {heavy!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -- item 4 ---------------------------------------------------------------------------------------
async def test_wait_run_on_a_missing_day_folder_is_said(demo_campaign: Path, sleeper) -> None:
    make_day_folder(demo_campaign, "12_Mar_19")
    results = demo_campaign.parent / "results"
    # a wait run already going on a day folder that does not exist
    folder = write_run(results, "FM20190312_120000_D11", state="running", mode="wait", session="D11",
                       started="2019-03-12T12:00:00", updated="2019-03-12T12:00:05", activity="started",
                       tests=[_test("BIAS01", "waiting")])
    make_live(folder, sleeper, argv=[str(demo_campaign), "--session", "D11", "--wait", "--day", "13_Mar_19"])
    app = new_app(demo_campaign)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("3")
        screen = app.screen
        await wait_for(pilot, lambda: screen.order, "the run listed")
        doing = str(screen.query_one(RunList).get_row_at(0)[7])
        assert "13_Mar_19" in doing and "does not exist" in doing
        assert "newest day folder there: 12_Mar_19" in text_of(screen.query_one("#run-activity"))

        # the dialog: wait mode on today's folder (absent) is said, and the newest is offered
        await pilot.press("n")
        dialog = await wait_for(pilot, lambda: isinstance(app.screen, StartRunDialog) and app.screen, "the dialog")
        warning = dialog.query_one("#day-warning")
        assert warning.has_class("-empty")  # aim mode: nothing waits
        dialog.query_one("#mode").value = "wait"
        await pilot.pause()
        today = day_folder_name(datetime.now())
        assert f"day folder {today} (today's) does not exist" in text_of(warning)
        assert "12_Mar_19" in text_of(warning) and "ctrl+l" in text_of(warning)
        await pilot.press("ctrl+l")
        await pilot.pause()
        assert dialog.query_one("#day").value == "12_Mar_19"
        assert warning.has_class("-empty")
        assert "--day 12_Mar_19" in text_of(dialog.query_one("#command"))


# -- item 8 ---------------------------------------------------------------------------------------
async def test_restart_asks_first(demo_campaign: Path) -> None:
    results = demo_campaign.parent / "results"
    fixture_runs(results)
    app = new_app(demo_campaign)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("3")
        screen = app.screen
        await wait_for(pilot, lambda: len(screen.order) == 3, "the recorded runs")
        await pilot.press("R")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDialog)
        body = text_of(app.screen.query_one(".body"))
        assert "same options" in body and "--session D11" in body
        await pilot.press("n")
        await pilot.pause(0.5)
        assert len(list_runs(results)) == 3  # nothing started


async def test_session_edits_survive_a_restart(demo_campaign: Path) -> None:
    app = new_app(demo_campaign)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("2", "ctrl+t")
        await settle(pilot)
        await pilot.press("n")  # a new session
        await pilot.pause()
        assert isinstance(app.screen, TextPrompt)
        await pilot.press("enter")  # D00
        await pilot.pause()
        from vison_tui.widgets.session_editor import SessionEditor
        assert "D00" in app.screen.query_one(SessionEditor).plan.sessions
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: not app.is_running, "the app to quit")

    app = new_app(demo_campaign)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot)
        from vison_tui.widgets.session_editor import SessionEditor
        plan = app.screen.query_one(SessionEditor).plan.sessions
        assert list(plan) == ["D11", "D12", "D00"]


async def test_palette_holds_every_screens_actions(app) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        commands = {command.title: command for command in app.get_system_commands(app.screen)}
        for title in ("Campaign screen: Save", "Runs screen: New run", "Scripts & sessions screen: Write scripts",
                      "Monitor screen: Start/stop", "Clean-up screen: Remove…", "Everywhere: Go to"):
            assert title in commands, title
        commands["Runs screen: New run"].callback()  # runs on the Runs screen, which it shows first
        await wait_for(pilot, lambda: isinstance(app.screen, StartRunDialog), "the new-run dialog")
        assert app.current_mode == "runs"


async def test_runs_status_line_follows_the_tests_table(demo_campaign: Path, sleeper) -> None:
    make_day_folder(demo_campaign, "12_Mar_19")
    folder = write_run(demo_campaign.parent / "results", "FM20190312_120000_D11", state="running", mode="wait",
                       session="D11", started="2019-03-12T12:00:00", updated="2019-03-12T12:10:00",
                       activity="waiting for data",
                       tests=[_test("BIAS01", "done", 0.5, [], [1000, 1009]),
                              _test("DARK01", "acquiring", frames=[2, 4])])
    state = json.loads((folder / "state.json").read_text())
    state["message"] = "Pipeline sleeping. Waiting for: BIAS01 (3/10 frames)"  # the wait loop's last word, old
    (folder / "state.json").write_text(json.dumps(state))
    make_live(folder, sleeper, argv=[str(demo_campaign), "--session", "D11", "--wait", "--day", "12_Mar_19"])
    app = new_app(demo_campaign)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("3")
        screen = app.screen
        await wait_for(pilot, lambda: screen.order, "the run listed")
        line = text_of(screen.query_one("#run-activity"))
        assert "DARK01" in line and "acquiring 2/4" in line and "BIAS01" not in line


async def test_new_campaign_from_the_template(app, demo_campaign: Path) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("n")
        await pilot.pause()
        assert isinstance(app.screen, TextPrompt)
        answer = app.screen.query_one("#answer")
        answer.value = str(demo_campaign)  # exists: refused
        await pilot.press("enter")
        assert isinstance(app.screen, TextPrompt)
        answer.value = str(demo_campaign.parent / "mine.toml")
        await pilot.press("enter")
        await settle(pilot)
        made = demo_campaign.parent / "mine.toml"
        assert made.read_text() == (REPO / "configs" / "campaign_template.toml").read_text()
        assert app.campaign_path == made and app.screen.editor.text == made.read_text()
        assert not app.screen.editor.has_focus


# -- item 10 --------------------------------------------------------------------------------------
async def test_the_dialog_chooses_the_results_folder(demo_campaign: Path) -> None:
    app = new_app(demo_campaign)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("3", "n")
        dialog = await wait_for(pilot, lambda: isinstance(app.screen, StartRunDialog) and app.screen, "the dialog")
        dialog.query_one("#results").focus()
        await pilot.press(*"other")
        other = demo_campaign.parent / "other"
        assert f"--results {other}" in text_of(dialog.query_one("#command"))
        request, _ = dialog.request()
        assert request.results == str(other)


async def test_runs_in_another_results_folder_are_listed(demo_campaign: Path) -> None:
    other = demo_campaign.parent / "other"
    folder = write_run(other, "FM20190312_130000_D11", state="finished", mode="aim", session="D11",
                       started="2019-03-12T13:00:00", updated="2019-03-12T13:01:00", end_reason="finished",
                       exit_code=0, tests=[_test("BIAS01", "done", 0.5, [], [1000, 1009])])
    register_run(folder)  # as every started run is, in the per-user index
    app = new_app(demo_campaign)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("3")
        screen = app.screen
        await wait_for(pilot, lambda: screen.order, "the run of the other results folder")
        assert screen.chosen.status.run_id == "FM20190312_130000_D11"
        assert "1 other results folder" in text_of(screen.query_one("#runs-title"))
