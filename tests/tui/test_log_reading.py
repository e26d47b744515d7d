"""Screen 4 as a reader (issue 15, item 6): the search match on the current line stays visible in
16 colours, t starts from the task in view (enter then goes where the user looked), long lines
wrap on w, and l keeps only warnings and errors, then errors, then every line again."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.color import ColorSystem

from vison_tui.screens.log import TaskList
from vison_tui.widgets.log_view import LogView

from .conftest import SIZE
from .runs_fixtures import fixture_runs, wait_for
from .test_log_screen import new_app, open_log


@pytest.fixture(autouse=True)
def own_run_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("VISON_STATE_DIR", str(tmp_path / "state"))


def ansi16(color) -> int | None:
    """The colour's number among the 16 a TERM=screen terminal has."""
    return None if color is None else color.downgrade(ColorSystem.STANDARD).number


async def loaded_log(pilot, lines: int = 50):
    screen = await open_log(pilot)
    await wait_for(pilot, lambda: screen.index.line_count > lines and screen.status_text == "finished", "the log")
    return screen, screen.query_one(LogView)


async def test_the_current_match_is_visible_in_16_colours(demo_campaign: Path) -> None:
    fixture_runs(demo_campaign.parent / "results")
    async with new_app(demo_campaign).run_test(size=SIZE) as pilot:
        screen, view = await loaded_log(pilot)
        await pilot.press("slash", *"raised flags", "enter")
        await wait_for(pilot, lambda: view.current >= 0, "the first match")
        await pilot.pause()
        row = view.position_of(view.current) - int(view.scroll_y)
        strip = view.render_line(row)
        text = "".join(segment.text for segment in strip)
        start = text.lower().index("raised flags")
        cell = 0
        match_styles, other_styles = [], []
        for segment in strip:
            (match_styles if start <= cell < start + len("raised flags") else other_styles).append(segment.style)
            cell += len(segment.text)
        bar = ansi16(other_styles[-1].bgcolor)  # the current line's bar
        for style in match_styles:
            foreground, background = ansi16(style.color), ansi16(style.bgcolor)
            assert foreground is not None and background is not None
            assert foreground != background and background != bar, (style, bar)


async def test_tasks_start_from_the_task_in_view(demo_campaign: Path) -> None:
    fixture_runs(demo_campaign.parent / "results")
    async with new_app(demo_campaign).run_test(size=SIZE) as pilot:
        screen, view = await loaded_log(pilot)
        tasks = screen.query_one(TaskList)
        await pilot.press("g", "t", "enter")  # BIAS01, the first task, highlighted and in view
        assert screen.index.line(view.current).endswith("Running Task: BIAS01")
        await pilot.press("G")  # the end in view: BIAS02's block; BIAS01's line is far above
        assert not view.in_view(view.current)
        await pilot.press("t")
        assert tasks.highlighted == 2  # the task being looked at, not the line jumped to before
        await pilot.press("up", "enter")
        assert screen.index.line(view.current).endswith("Running Task: DARK01")


async def test_wrap_and_level_filter(demo_campaign: Path) -> None:
    runs = fixture_runs(demo_campaign.parent / "results")
    long_line = "2019-03-12 10:16:00,000 - WARNING - " + " ".join(f"word{i:03d}" for i in range(60)) + " END"
    with open(runs["log"], "a") as handle:
        handle.write(long_line + "\n")
    async with new_app(demo_campaign).run_test(size=SIZE) as pilot:
        screen, view = await loaded_log(pilot)
        last = screen.index.line_count - 1
        assert screen.index.line(last) == long_line
        width = view.scrollable_content_region.width
        bottom = view.scrollable_content_region.height - 1

        def row_text(y: int) -> str:
            return "".join(segment.text for segment in view.render_line(y)).rstrip()

        assert not row_text(bottom).endswith("END")  # cut at the width
        await pilot.press("w")
        await pilot.pause()
        assert view.wrap and "wrap (w)" in str(screen.query_one("#log-status").render())
        assert view.scrollable_content_region.width == width  # no horizontal scrolling any more
        bottom = view.scrollable_content_region.height - 1  # the horizontal scrollbar's row is the log's
        rows = -(-len(long_line) // width)
        assert rows > 1 and row_text(bottom).endswith("END")  # the end of the long line on the last row
        assert "".join(row_text(y) for y in range(bottom - rows + 1, bottom + 1)).replace(" ", "") == \
            long_line.replace(" ", "")
        await pilot.press("w")
        assert not view.wrap

        await pilot.press("l")  # warnings and errors: their records with the lines under them
        await wait_for(pilot, lambda: view.kept_lines is not None and last in view.kept_lines, "the warnings")
        shown = [screen.index.line(line) for line in view.kept_lines]
        assert "no HK file for OBSIDs 1004" in shown[0] and "Traceback (most recent call last):" in shown
        assert not any(" - INFO - Running Task" in text for text in shown)
        assert any("exited with Errors: True" in text for text in shown)  # an error event, at INFO level
        assert "shown: warnings only" in str(screen.query_one("#log-status").render())
        await pilot.press("l")  # errors only
        await wait_for(pilot, lambda: view.kept_lines is not None and last not in view.kept_lines, "the errors")
        shown = [screen.index.line(line) for line in view.kept_lines]
        assert not any("WARNING" in text for text in shown) and any("ValueError: no valid pixel" in t for t in shown)
        await pilot.press("g", "e")  # the error keys work in the filtered view
        assert screen.index.line(view.current).endswith("ERROR - Sub-task basic of DARK01 failed:")
        assert view.in_view(view.current)
        await pilot.press("l")
        assert view.kept_lines is None and view.shown_count == screen.index.line_count


async def test_a_narrow_terminal_opens_the_log_wrapped(demo_campaign: Path) -> None:
    """At 80x24 the log view is 56 columns: a pipeline line would be cut to its time stamp and
    level, so the log opens wrapped there (w still unwraps); at 120 columns it does not."""
    fixture_runs(demo_campaign.parent / "results")
    for size, wrapped in (((80, 24), True), (SIZE, False)):
        async with new_app(demo_campaign).run_test(size=size) as pilot:
            _, view = await loaded_log(pilot)
            assert view.wrap is wrapped, size
            await pilot.press("w")
            assert view.wrap is not wrapped
