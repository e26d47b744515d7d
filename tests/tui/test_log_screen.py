"""Screen 4: the pipeline log indexed toolong's way (tail first, then the head, then appended bytes),
searched, jumped through by task and error, followed live, re-read when replaced; the line
classification that colours it; a snapshot."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vison_tui.app import VisonApp
from vison_tui.log_file import LogIndex, line_kind, scan_lines, search_file, tail_start
from vison_tui.screens.log import LogScreen, TaskList
from vison_tui.widgets.log_view import LogView

from .conftest import SIZE
from .real_run import analyse_demo_day, result_of
from .runs_fixtures import fixture_runs, pipeline_log_text, wait_for


@pytest.fixture(autouse=True)
def own_run_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("VISON_STATE_DIR", str(tmp_path / "state"))


def new_app(config: Path) -> VisonApp:
    app = VisonApp(config, demo=True, simulate=False)
    app.animation_level = "none"
    return app


async def open_log(pilot) -> LogScreen:
    await pilot.pause()
    await pilot.press("escape", "4")
    return await wait_for(pilot, lambda: isinstance(pilot.app.screen, LogScreen) and pilot.app.screen, "the Log screen")


# -- the index, without the app ---------------------------------------------------------------------

def test_index_tail_then_head_then_appended_lines(tmp_path: Path) -> None:
    path = tmp_path / "big.log"
    text = pipeline_log_text(blocks=300)
    path.write_text(text)
    lines = text.split("\n")[:-1]
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        first = tail_start(fd, size, tail_bytes=50_000)
        assert 0 < first < size and text.encode()[first - 1:first] == b"\n"
        index = LogIndex(path)
        index.open()
        shown = index.add_tail(scan_lines(fd, first, size))
        assert index.line(shown - 1) == lines[-1] and not index.complete
        assert index.add_head(scan_lines(fd, 0, first)) == len(lines) - shown
        assert index.complete and index.line_count == len(lines)
        assert [index.line(i) for i in (0, 1234, len(lines) - 1)] == [lines[0], lines[1234], lines[-1]]
        assert [name for _, name in index.task_lines()][:4] == ["BIAS01", "DARK01", "BIAS02", "BIAS01"]
        assert len(index.task_lines()) == 900
        errors = index.error_lines()
        # per block: DARK01's ERROR record, "exited with Errors: True", the summary's "Executed with Error(s)"
        assert len(errors) == 900
        assert index.line(errors[0]).endswith("ERROR - Sub-task basic of DARK01 failed:")

        # appended: a half-written line waits for its newline
        with open(path, "a") as handle:
            handle.write("2019-03-12 10:20:00,000 - INFO - Running Task: CHINJ01\npartial")
        scan = scan_lines(fd, index.end, os.fstat(fd).st_size)
        assert index.add_appended(scan) == 1 and index.task_lines()[-1][1] == "CHINJ01"
        assert index.end == os.fstat(fd).st_size - len("partial")
    finally:
        os.close(fd)
        index.close()
    offsets = search_file(path, "RAISED FLAGS = ['hk_ool']")
    assert len(offsets) == 300 and all(text.encode()[o:o + 12] == b"Raised Flags" for o in offsets)


def test_line_kinds() -> None:
    assert line_kind("2019-03-12 10:15:00,500 - ERROR - Sub-task basic failed:", "ERROR") == "error"
    assert line_kind('  File "engine/tasks/dark.py", line 120, in basic', "ERROR") == "error"
    assert line_kind("ValueError: no valid pixel") == "error"
    assert line_kind("2019-03-12 10:15:01,900 - INFO - Task DARK01 exited with Errors: True") == "error"
    assert line_kind("2019-03-12 10:15:01,900 - INFO - Task DARK01 exited with Errors: False") == "plain"
    assert line_kind("Raised Flags = ['HK_OOL']") == "flags"
    assert line_kind("Raised Flags = []") == "plain"
    assert line_kind("2019-03-12 10:15:00,000 - INFO - Running Task: BIAS01") == "task"
    assert line_kind("no HK file for OBSIDs 1004", "WARNING") == "warning"
    assert line_kind("#" * 70) == "rule"


# -- the screen -----------------------------------------------------------------------------------

async def test_tail_search_jump_follow_and_replace(demo_campaign: Path) -> None:
    runs = fixture_runs(demo_campaign.parent / "results")
    log = runs["log"]
    log.write_text(pipeline_log_text(blocks=400))  # 1.7 MB: the tail shows before the head is indexed
    app = new_app(demo_campaign)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_log(pilot)  # no run chosen on the Runs screen: the newest with a log
        view = screen.query_one(LogView)
        await wait_for(pilot, lambda: screen.index.complete and screen.index.line_count > 25_000, "the whole log")
        total = screen.index.line_count
        assert screen.record.run_id == "FM20190312_101500_D11"
        await wait_for(pilot, lambda: view.scroll_y >= total - view.scrollable_content_region.height - 1,
                       "the end in view (follow)")
        assert view.follow

        # search: enter finds the first match from what is shown down; n/N step, wrapping at the ends
        await pilot.press("g", "slash", *"exited with errors: true", "enter")
        await wait_for(pilot, lambda: view.current >= 0, "the first match")
        first = view.current
        assert "Task DARK01 exited with Errors: True" in screen.index.line(first) and not view.follow
        await pilot.press("n")
        second = view.current
        assert second > first and "exited with Errors: True" in screen.index.line(second)
        await pilot.press("N")
        assert view.current == first
        await pilot.press("N")  # wraps to the last match
        assert view.current > second and "exited with Errors: True" in screen.index.line(view.current)
        assert "400 lines" in str(screen.query_one("#log-status").render())

        # errors and tasks
        await pilot.press("g", "e")
        assert screen.index.line(view.current).endswith("ERROR - Sub-task basic of DARK01 failed:")
        await pilot.press("t")
        tasks = screen.query_one(TaskList)
        assert tasks.has_focus and tasks.option_count == 1200
        assert tasks.highlighted == 1  # the task being looked at: the first DARK01
        await pilot.press("down", "enter")  # the first BIAS02
        assert screen.index.line(view.current).endswith("Running Task: BIAS02") and view.has_focus
        await pilot.press("right_square_bracket")
        assert screen.index.line(view.current).endswith("Running Task: BIAS01")

        # follow: back on at the bottom; appended lines come into view
        await pilot.press("G")
        assert view.follow
        with open(log, "a") as handle:
            handle.write("2019-03-12 11:00:00,000 - INFO - Running Task: CHINJ01\n")
        await wait_for(pilot, lambda: screen.index.line_count == total + 1, "the appended line")
        await wait_for(pilot, lambda: view.scroll_y >= total + 1 - view.scrollable_content_region.height - 1,
                       "the new end in view")
        await pilot.press("f")  # follow off: new lines do not move the view
        assert not view.follow
        top = view.scroll_y
        with open(log, "a") as handle:
            handle.write("2019-03-12 11:00:01,000 - INFO - Executing init: engine.tasks.chinj\n")
        await wait_for(pilot, lambda: screen.index.line_count == total + 2, "the second appended line")
        assert view.scroll_y == top

        # the log replaced by a shorter file (rotated, rewritten): read again from the start
        log.write_text(pipeline_log_text())
        await wait_for(pilot, lambda: 0 < screen.index.line_count < 200, "the replaced log read again")
        await pilot.press("t")
        assert screen.query_one(TaskList).option_count == 3

        # the run that died before opening its log: said so; o shows its console output instead
        await pilot.press("escape", "r")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ChooseDialog", "the list of runs")
        await pilot.press("up", "enter")  # the newest run
        await wait_for(pilot, lambda: "without opening a pipeline log" in view.empty_text, "the missing log said")
        await pilot.press("o")
        await wait_for(pilot, lambda: screen.index.line_count == 1, "the console output")
        assert screen.index.line(0) == "[10:15:00] Pipeline started (aim)"


# -- a real run's log ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real_run(tmp_path_factory) -> Path:
    """BIAS01 and DARK01 of the demo simulated and analysed once by the pipeline (campaign file)."""
    return analyse_demo_day(tmp_path_factory.mktemp("real_run"), ("BIAS01", "DARK01"))


async def test_a_real_runs_log_its_tasks_and_flags(real_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the pipeline wrote, as the user sees it: every line of the log, one task per test in
    run order (none failed), the flags each test raised found by a search inside that test's block."""
    monkeypatch.chdir(real_run.parent.parent)
    results = real_run.parent / "results"
    [log] = (results / "logs").glob("Calib_*.log")
    [run_folder] = (results / "runs").iterdir()
    lines = log.read_text().splitlines()
    async with new_app(real_run).run_test(size=SIZE) as pilot:
        screen = await open_log(pilot)
        view = screen.query_one(LogView)
        await wait_for(pilot, lambda: screen.index.complete and screen.index.line_count == len(lines), "the log")
        assert screen.record.run_id == run_folder.name
        assert [screen.index.line(i) for i in range(len(lines))] == lines
        await wait_for(pilot, lambda: screen.status_text == "finished", "the run's state")
        assert "error record" not in str(screen.query_one("#log-status").render())

        await pilot.press("t")
        tasks = screen.query_one(TaskList)
        labels = [str(tasks.get_option_at_index(i).prompt) for i in range(tasks.option_count)]
        assert [label.split()[0] for label in labels] == ["BIAS01", "DARK01"]
        assert not any("✗" in label for label in labels)  # neither exited with errors
        starts = {name: line for line, name in screen.index.task_lines()}
        assert tasks.highlighted == 1  # the task in view: the log's end is DARK01's
        await pilot.press("up", "enter")
        assert view.current == starts["BIAS01"] and lines[view.current].endswith("Running Task: BIAS01")

        for test, block in (("BIAS01", (starts["BIAS01"], starts["DARK01"])), ("DARK01", (starts["DARK01"], len(lines)))):
            flags = result_of(real_run, test)["flags"]
            wanted = f"Raised Flags = {flags!r}"
            await pilot.press("g", "slash", *wanted.lower(), "enter")
            await wait_for(pilot, lambda: block[0] <= view.current < block[1], f"{test}'s flags in its block")
            assert lines[view.current] == wanted
            await pilot.press("escape")


def test_log_screen_snapshot(demo_campaign: Path, snap_compare) -> None:
    fixture_runs(demo_campaign.parent / "results")

    async def log_at_the_error(pilot) -> None:
        screen = await open_log(pilot)
        await wait_for(pilot, lambda: screen.index.line_count > 50 and screen.status_text == "finished", "the log")
        await pilot.press("slash", *"raised flags", "enter", "g", "e")  # matches marked; at the error
        await wait_for(pilot, lambda: screen.query_one(LogView).current > 0, "the error line")
        await pilot.pause()

    assert snap_compare(new_app(demo_campaign), terminal_size=SIZE, run_before=log_at_the_error)
