"""Screen 3 driven by keys: an aim run on the demo data started detached and followed to its flags;
a wait run against a streamed session completing its tests one by one, surviving the app's exit
and found again by a new app; stopping with confirmation and with cancel; refusals in the dialog.
Plus a snapshot of the run list from records with fixed times."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from engine.campaign.config import load_campaign
from engine.pipeline.runs import list_runs, run_status
from engine.sim.demo import demo_request, simulate_demo
from engine.sim.elvis import StreamPacing, plan_for, simulate
from vison_tui.app import VisonApp
from vison_tui.dialogs.confirm import ConfirmDialog
from vison_tui.dialogs.start_run import StartRunDialog
from vison_tui.run_launch import RunRequest
from vison_tui.run_view import duration_text
from vison_tui.screens.log import LogScreen
from vison_tui.screens.results import ResultsScreen
from vison_tui.screens.runs import RunsScreen
from vison_tui.widgets.run_tables import RunTestsTable

from .conftest import SIZE
from .runs_fixtures import fixture_runs, start_dialog_in_wait_mode, stop_leftover_runs, wait_for


@pytest.fixture(autouse=True)
def own_run_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("VISON_STATE_DIR", str(tmp_path / "state"))  # inherited by the background runs
    yield
    stop_leftover_runs(tmp_path / "demo" / "results")  # a failed test must not leave a run waiting


def new_app(config: Path) -> VisonApp:
    app = VisonApp(config, demo=True, simulate=False)
    app.animation_level = "none"
    return app


def cell_texts(table) -> list[list[str]]:
    return [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]


def rows_by_test(screen: RunsScreen) -> dict[str, list[str]]:
    return {row[0]: row for row in cell_texts(screen.query_one(RunTestsTable))}


def chosen_state(screen: RunsScreen) -> str | None:
    view = screen.chosen
    return view.status.state if view else None


async def open_runs(pilot) -> RunsScreen:
    await pilot.pause()
    await pilot.press("escape", "3")  # the campaign editor has the focus first
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, RunsScreen), "the Runs screen")
    return pilot.app.screen


async def test_aim_run_on_the_demo_data_finishes_with_its_flags(demo_campaign: Path) -> None:
    simulate_demo(demo_request(load_campaign(demo_campaign)))
    app = new_app(demo_campaign)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_runs(pilot)
        assert "0 recorded" in str(screen.query_one("#runs-title").render())
        await pilot.press("n")
        dialog = await wait_for(pilot, lambda: isinstance(app.screen, StartRunDialog) and app.screen, "the dialog")
        assert "--session D11" in str(dialog.query_one("#command").render())
        await pilot.press("ctrl+s")  # defaults: session D11, aim, the data there
        await wait_for(pilot, lambda: app.screen is screen, "the dialog to close on start")
        await wait_for(pilot, lambda: chosen_state(screen) in ("starting", "running", "finished"), "the run listed")
        await wait_for(pilot, lambda: chosen_state(screen) == "finished", "the run to finish")
        tests = rows_by_test(screen)
        assert [tests[t][1] for t in ("BIAS01", "DARK01", "BIAS02")] == ["done", "done", "done"]
        assert tests["BIAS01"][5] == "HK_OOL" and tests["DARK01"][5] == "MISSCALPROD"  # the nominal gain
        assert tests["BIAS01"][3] == "1000-1009"
        assert screen.query_one("#progress").percentage == 1.0
        run = list_runs(demo_campaign.parent / "results")[0]
        assert run.info["detached"] and run.info["mode"] == "aim"

        await pilot.press("l")  # its log
        log = await wait_for(pilot, lambda: isinstance(app.screen, LogScreen) and app.screen, "the Log screen")
        await wait_for(pilot, lambda: [name for _, name in log.index.task_lines()] == ["BIAS01", "DARK01", "BIAS02"],
                       "the log's tasks")
        assert log.record.run_id == run.run_id
        await pilot.press("3", "v")  # its session's results
        results = await wait_for(pilot, lambda: isinstance(app.screen, ResultsScreen) and app.screen, "Results")
        await wait_for(pilot, lambda: [e.state for e in results.entries] == ["flags", "flags", "ok"], "the results")


async def test_the_dialog_refuses_what_the_engine_would_refuse(demo_campaign: Path) -> None:
    app = new_app(demo_campaign)  # no data simulated: an aim run has nothing to analyse
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_runs(pilot)
        await pilot.press("n")
        dialog = await wait_for(pilot, lambda: isinstance(app.screen, StartRunDialog) and app.screen, "the dialog")
        dialog.query_one("#jobs").focus()
        await pilot.press("ctrl+u", "9", "9", "9")  # more worker processes than cores: said at once
        assert "jobs: between 1 and" in str(dialog.query_one("#error").render())
        await pilot.press("ctrl+u", "1", "enter")
        await wait_for(pilot, lambda: "no day folder" in str(dialog.query_one("#error").render()),
                       "the engine's refusal (no data) in the dialog")
        assert app.screen is dialog and not list_runs(demo_campaign.parent / "results")
        await pilot.press("escape")  # gives up
        assert app.screen is screen


async def test_wait_run_on_a_streamed_session_reattach_and_stop(demo_campaign: Path) -> None:
    campaign = load_campaign(demo_campaign)
    request = demo_request(campaign)
    results = campaign.paths.results
    # ELVIS streams the session in a thread; after each test's last exposure it waits until the app
    # shows that test analysed, so the tests are seen completing one by one however slow the machine
    last_of_test = {exposure.test: exposure.obsid for exposure in plan_for(request)}
    shown_done = {test: threading.Event() for test in last_of_test}

    def hold_after_each_test(exposure) -> None:
        if last_of_test[exposure.test] == exposure.obsid:
            shown_done[exposure.test].wait(timeout=120)

    streaming = threading.Thread(target=simulate, args=(request, StreamPacing(frame_interval_s=0.1),
                                                        hold_after_each_test), daemon=True)

    app = new_app(demo_campaign)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_runs(pilot)
        await start_dialog_in_wait_mode(pilot)
        await pilot.press("tab", *"12_Mar_19", "ctrl+s")  # the day folder ELVIS is about to write
        await wait_for(pilot, lambda: app.screen is screen, "the run to start")
        await wait_for(pilot, lambda: screen.chosen and screen.chosen.live, "the wait run listed")
        streaming.start()

        for position, test in enumerate(last_of_test):
            await wait_for(pilot, lambda: rows_by_test(screen).get(test, ["", ""])[1] == "done", f"{test} analysed")
            states = [row[1] for row in rows_by_test(screen).values()]
            assert states[:position + 1] == ["done"] * (position + 1)
            assert "done" not in states[position + 1:]  # the later tests' frames are not there yet
            shown_done[test].set()
        assert rows_by_test(screen)["BIAS01"][5] == "HK_OOL"
        assert chosen_state(screen) == "running"  # a wait run watches a little longer for resubmissions

        # stop, then cancel: nothing happens
        await pilot.press("s")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the stop question")
        assert "Stop run" in str(app.screen.query_one(".title").render())
        await pilot.press("n")
        await pilot.pause(0.5)
        assert run_status(list_runs(results)[0]).alive

        await pilot.press("q")  # nothing unsaved: quits at once; the run goes on
        await wait_for(pilot, lambda: not app.is_running, "the app to quit")
    streaming.join(timeout=60)
    run = list_runs(results)[0]
    assert run_status(run).alive, "quitting the app must leave the run running"

    app = new_app(demo_campaign)  # reopened: the run is found again, live
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_runs(pilot)
        await wait_for(pilot, lambda: chosen_state(screen) == "running", "the running run re-attached")
        assert screen.chosen.status.run_id == run.run_id
        assert "1 running" in str(screen.query_one("#runs-title").render())
        await pilot.press("s")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the stop question")
        await pilot.press("y")
        await wait_for(pilot, lambda: chosen_state(screen) == "stopped", "the run to stop", timeout=60)
        # the state says "stopped" a moment before the process has written its exit status and ended
        await wait_for(pilot, lambda: not run_status(run).alive and run_status(run).exit_code == 130,
                       "the run's process to end with 130")
        assert all(row[1] == "done" for row in rows_by_test(screen).values())  # finished tests keep their results


async def test_stop_is_refused_for_a_run_that_is_not_running(demo_campaign: Path) -> None:
    fixture_runs(demo_campaign.parent / "results")
    app = new_app(demo_campaign)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_runs(pilot)
        await wait_for(pilot, lambda: len(screen.order) == 3, "the recorded runs")
        states = {view.status.run_id: view.status.state for view in screen.views.values()}
        assert states == {"FM20190312_111000_D11": "died", "FM20190312_101500_D11": "finished",
                          "FM20190312_090000_D12": "stopped"}
        assert screen.chosen.status.state == "died"  # newest first
        await pilot.press("s")
        await pilot.pause()
        assert app.screen is screen  # no question: there is nothing to stop


async def test_start_up_tells_of_runs_still_going(demo_campaign: Path) -> None:
    import json
    import subprocess

    from engine.pipeline.runs import process_start_ticks
    from .runs_fixtures import write_run

    results = demo_campaign.parent / "results"
    fixture_runs(results)  # ended runs: not announced
    sleeper = subprocess.Popen(["sleep", "60"])  # stands for a live run's process
    try:
        for run_id in ("FM20190312_120000_D11", "FM20190312_130000_D11"):
            folder = write_run(results, run_id, state="running", mode="wait", session="D11",
                               started="2019-03-12T12:00:00", updated="2019-03-12T12:00:05", tests=[])
            info = json.loads((folder / "run.json").read_text())
            info.update(pid=sleeper.pid, pid_start=process_start_ticks(sleeper.pid))
            (folder / "run.json").write_text(json.dumps(info))
        app = new_app(demo_campaign)
        async with app.run_test(size=SIZE) as pilot:
            told = await wait_for(pilot, lambda: [n for n in app._notifications if "still going" in n.message],
                                  "the notice of live runs")
            assert [n.message for n in told] == ["2 runs still going: press 3"]
    finally:
        sleeper.kill()
        sleeper.wait()


def test_run_request_is_the_cli_command(tmp_path: Path) -> None:
    request = RunRequest(tmp_path / "c.toml", "D11", "check only, waiting", "12_Mar_19", 1004, 2, "_x", 5)
    assert request.cli_args() == [str(tmp_path / "c.toml"), "--session", "D11", "--wait", "--check", "--day",
                                  "12_Mar_19", "--start-obsid", "1004", "--jobs", "2", "--tag=_x", "--idle-stop", "5"]
    assert request.command_line().endswith("--detach")
    assert RunRequest(tmp_path / "c.toml", "D11", idle_stop=5).cli_args() == [str(tmp_path / "c.toml"), "--session",
                                                                              "D11"]  # idle stop: wait mode only
    assert [duration_text(s) for s in (None, 4.4, 65, 7325)] == ["–", "4 s", "1 min 05 s", "2 h 02 min"]


def test_runs_screen_snapshot(demo_campaign: Path, snap_compare) -> None:
    fixture_runs(demo_campaign.parent / "results")

    async def runs(pilot) -> None:
        screen = await open_runs(pilot)
        await wait_for(pilot, lambda: len(screen.order) == 3, "the recorded runs")
        await pilot.press("down")  # the finished run: its tests, flags and durations
        await pilot.pause()

    assert snap_compare(new_app(demo_campaign), terminal_size=SIZE, run_before=runs)
