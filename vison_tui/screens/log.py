"""Screen 4, Log: follow a run's pipeline log live, search it, jump to a task or an error.

A thread worker indexes the file toolong's way (vison_tui.log_file): the last megabyte first so the
end shows at once, then the rest, then only the bytes appended since its last look (every
`POLL_S`); a truncated or replaced file is indexed again. Search runs over the whole file in a
worker (mmap); matches found later in appended lines are added as they come.

The run shown is the one chosen on the Runs screen (l), else the newest running run of the
campaign, else the newest run; r chooses another, o switches to the run's console output (what a
run that died before opening its log said).

w wraps long lines; l filters by level (all, warnings and errors, errors only: the records of those
levels with their continuation lines, and the lines of the run's error events), computed in a
worker over the file (mmap), then over appended lines as they come.
"""

from __future__ import annotations

import os
import time
from bisect import bisect_left, bisect_right
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option
from textual.worker import get_current_worker

from engine.campaign.config import Campaign
from engine.formats.textfollow import TextFollower
from engine.pipeline.events import events_path, parse_event_lines
from engine.pipeline.runs import RunRecord, list_runs, run_status

from ..dialogs.choose import ChooseDialog
from ..log_file import (CHUNK_BYTES, LEVEL_FILTERS, LogIndex, index_lines, lines_of_levels, scan_lines,
                        search_file, tail_start)
from ..messages import LogEvents, LogScanned, LogSearched
from ..run_view import STATE_STYLES, RunView
from ..widgets.app_bar import AppBar, display_path
from ..widgets.status_line import bottom_bars
from ..widgets.log_view import LogView
from .base import VisonScreen

POLL_S = 0.3
STATUS_EVERY_S = 2.0


WRAP_BELOW_COLUMNS = 100  # terminals narrower than this open the log wrapped (80x24: a 56-column view)

class TaskList(OptionList):
    HELP_GROUP = "Tasks in the log"
    BINDINGS = [Binding("enter", "select", "Go to task")]


class LogScreen(VisonScreen):
    AUTO_FOCUS = "#log"  # focused as the screen is made (before the first frame)
    HELP_GROUP = "Log screen"
    BINDINGS = [
        Binding("f", "toggle_follow", "Follow", tooltip="keep the end of the log in view as lines arrive (on/off)"),
        Binding("slash", "search", "Search", tooltip="find text in the whole log (case-insensitive)"),
        Binding("n", "next_match", "Next", tooltip="next search match below"),
        Binding("N", "previous_match", "Prev", tooltip="previous search match above"),
        Binding("e", "next_error", "Next error", tooltip="next ERROR record or task that exited with errors"),
        Binding("E", "previous_error", "Prev error", show=False, tooltip="previous error"),
        Binding("t", "tasks", "Tasks", tooltip="the list of 'Running Task' lines: enter jumps there"),
        Binding("right_square_bracket", "next_task", "Next task", show=False, tooltip="jump to the next task's start"),
        Binding("left_square_bracket", "previous_task", "Prev task", show=False, tooltip="jump to the previous task's start"),
        Binding("r", "choose_run", "Run", tooltip="choose the run whose log is shown"),
        Binding("w", "toggle_wrap", "Wrap", tooltip="fold long lines to the width (on/off)"),
        Binding("l", "cycle_level", "Level", tooltip="show all lines, warnings and errors, or errors only"),
        Binding("o", "toggle_source", "Log/output", show=False,
                tooltip="switch between the pipeline log and the run's console output"),
        Binding("escape", "focus_log", "Back to the log", show=False, tooltip="leave the search field or the task list"),
    ]
    DEFAULT_CSS = """
    LogScreen #log-title { height: 1; padding: 0 1; background: $boost; }
    LogScreen #log-main { height: 1fr; }
    LogScreen LogView { width: 1fr; height: 1fr; }
    LogScreen #side { width: 24; max-width: 30%; border-left: vkey $panel-lighten-2; }
    LogScreen #side-title { height: 1; padding: 0 1; text-style: bold; }
    LogScreen TaskList { height: 1fr; border: none; padding: 0; }
    LogScreen #search { dock: bottom; display: none; }
    LogScreen #search.-shown { display: block; }
    LogScreen #log-status { height: 1; padding: 0 1; color: $text-muted; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.results: Path | None = None
        self.record: RunRecord | None = None
        self.status_text = ""
        self.source = "log"  # or "output"
        self.generation = 0  # bumped whenever the file followed changes: older messages are dropped
        self.index = LogIndex()
        self.pattern = ""
        self.match_offsets: list[int] = []
        self.match_lines: list[int] = []
        self.match_lines_for = -1  # line count the match lines were computed for
        self.wanted: Path | None = None  # a run asked for by the Runs screen before this screen mounted
        self.ready = False
        self.level = "all"  # LEVEL_FILTERS key
        self.level_lines: list[int] = []  # the lines the level filter keeps (without the error events)
        self.level_end = 0  # bytes of the log the filter has looked at
        self.level_epoch = 0  # bumped when the filter starts over: older workers' lines are dropped

    def compose(self) -> ComposeResult:
        yield AppBar()
        yield Static("", id="log-title", markup=False)
        with Horizontal(id="log-main"):
            yield LogView(id="log")
            with Vertical(id="side"):
                yield Static("Tasks (t)", id="side-title", markup=False)
                yield TaskList(id="tasks")
        yield Static("", id="log-status", markup=False)
        yield Input(placeholder="search the log: enter finds, escape or tab closes", id="search")
        yield from bottom_bars()  # the status line, then the keys (the app bar shows ^p)

    @property
    def view(self) -> LogView:
        return self.query_one(LogView)

    def on_mount(self) -> None:
        self.ready = True
        self.query_one("#search", Input).cursor_blink = not self.app.is_headless
        if self.app.size.width < WRAP_BELOW_COLUMNS:
            self.view.wrap = True  # a pipeline line is cut to nothing in a narrow view; w unwraps
        self.view.focus()
        self.watch(self.app, "campaign", self.campaign_changed)
        self.set_interval(STATUS_EVERY_S, self.refresh_status)

    def on_screen_resume(self) -> None:
        self.query_one(AppBar).update_bar()

    def on_unmount(self) -> None:
        self.index.close()

    # -- which run -------------------------------------------------------------------------------
    def campaign_changed(self, campaign: Campaign | None) -> None:
        results = campaign.paths.results if campaign is not None else None
        if results == self.results:
            return
        self.results = results
        if self.wanted is not None:
            self.follow_run(self.wanted)
        elif self.record is None or results is None or results not in self.record.folder.parents:
            if self.record is not None:  # a run of another campaign: stop following it
                self.record = None
                self.generation += 1
                self.workers.cancel_group(self, "log-tail")
            self.pick_default_run(results)

    @work(thread=True, exclusive=True, group="log-pick")
    def pick_default_run(self, results: Path | None) -> None:
        """The newest running run of the campaign, else its newest run."""
        runs = list_runs(results) if results else []
        views = [RunView(record, run_status(record)) for record in runs]
        with_log = [v for v in views if v.log_path is not None]
        chosen = next((v for v in views if v.live), with_log[0] if with_log else (views[0] if views else None))
        if chosen is not None:
            self.app.call_from_thread(self.follow_run, chosen.record.folder, False)
        else:
            self.app.call_from_thread(self.show_nothing)

    def show_nothing(self) -> None:
        if self.record is None:
            where = display_path(self.results) if self.results else "no campaign open"
            self.query_one("#log-title", Static).update(f"No run recorded in {where}: start one on the Runs screen (3)")
            self.view.set_index(LogIndex(), "no log to show")

    def follow_run(self, folder: Path, explicit: bool = True) -> None:
        """Show this run's log (from the Runs screen, the run dialog, or the default choice)."""
        if not self.ready:
            self.wanted = Path(folder)
            return
        if not explicit and (self.wanted is not None or self.record is not None):
            return  # the user's choice arrived while the default was being picked
        self.wanted = None
        self.record = RunRecord.load(folder)
        self.source = "log"
        self.start_following()

    def start_following(self) -> None:
        self.generation += 1
        self.level_epoch += 1
        self.index.close()
        self.index = LogIndex(None)
        self.match_offsets, self.match_lines, self.match_lines_for = [], [], -1
        self.view.follow = True
        self.view.set_index(self.index, "waiting for the run to open its log…")
        self.query_one(TaskList).clear_options()
        self.status_text = ""
        self.show_title()
        if self.record is not None:
            self.tail(self.record, self.source, self.generation)
            self.read_status(self.record, self.generation)

    def path_of(self, record: RunRecord) -> Path | None:
        return record.log_path if self.source == "log" else record.output_path

    # -- following the file (worker) ------------------------------------------------------------
    @work(thread=True, exclusive=True, group="log-tail")
    def tail(self, record: RunRecord, source: str, generation: int) -> None:
        worker = get_current_worker()
        path = None
        while not worker.is_cancelled:
            record.reload()
            path = record.log_path if source == "log" else record.output_path
            if path is not None and path.exists():
                break
            if run_status(record).alive is False:
                self.app.call_from_thread(self.no_file, generation)
                return
            time.sleep(POLL_S)  # a starting run names its log once it has opened it
        if worker.is_cancelled or path is None:
            return
        self.app.call_from_thread(self.file_found, path, generation)
        follower = TextFollower(path, max_bytes=CHUNK_BYTES)
        events = TextFollower(events_path(path))  # the run's typed events: its tests and errors
        fd = None  # for the head, indexed once from the tail backwards
        try:
            while not worker.is_cancelled:
                if events.path.exists():
                    chunk = events.read_chunk()
                    if chunk.data or chunk.restarted:
                        lines = [line.text + "\n" for line in chunk.lines()]
                        self.post_message(LogEvents(generation, parse_event_lines(lines), chunk.restarted))
                if fd is None or follower.replaced():
                    if fd is not None:
                        os.close(fd)
                        self.post_message(LogScanned(generation, "reset", None))
                    fd = os.open(path, os.O_RDONLY)
                    first = tail_start(fd, os.fstat(fd).st_size)
                    follower.restart(first)
                    tail = follower.read_chunk()
                    self.post_message(LogScanned(generation, "tail", index_lines(tail.start, tail.data)))
                    if first:
                        self.post_message(LogScanned(generation, "head", scan_lines(fd, 0, first)))
                else:
                    chunk = follower.read_chunk()
                    if chunk.restarted:  # replaced since the look above: start over, tail first
                        os.close(fd)
                        fd = None
                        self.post_message(LogScanned(generation, "reset", None))
                        continue
                    if chunk.data:
                        self.post_message(LogScanned(generation, "append", index_lines(chunk.start, chunk.data)))
                time.sleep(POLL_S)
        except OSError:
            pass  # the file went away: the next follow_run starts again
        finally:
            if fd is not None:
                os.close(fd)

    def no_file(self, generation: int) -> None:
        if generation != self.generation:
            return
        what = ("this run ended without opening a pipeline log (bad input?): o shows its console output"
                if self.source == "log" else "this run has no console output file")
        self.view.set_index(self.index, what)
        self.show_title()

    def file_found(self, path: Path, generation: int) -> None:
        if generation != self.generation:
            return
        self.index = LogIndex(path)
        self.index.open()
        self.view.set_index(self.index, "the log is empty so far")
        self.show_title()

    def on_log_scanned(self, message: LogScanned) -> None:
        if message.generation != self.generation or self.index.path is None:
            return
        scan = message.scan
        if message.kind == "reset":
            self.index.open()
            self.view.set_index(self.index, "the log was replaced: reading it again")
            self.restart_level_filter()
            return
        old_end = self.index.end
        if message.kind == "tail":
            self.index.add_tail(scan)
            self.view.lines_changed()
            self.restart_level_filter()
        elif message.kind == "head":
            prepended = self.index.add_head(scan)
            self.view.lines_changed(prepended=prepended)
            if prepended:
                self.restart_level_filter()  # the head's lines: filtered from the start again
        else:
            if not self.index.add_appended(scan):
                return
            self.view.lines_changed()
            if self.pattern:
                self.search_range(self.pattern, old_end, self.index.end, self.generation)
            self.filter_appended()
        if message.kind != "append" or (self.index.events_between(old_end, self.index.end) if self.index.has_events
                                        else scan.tasks):
            self.show_tasks()
        self.show_title()

    def on_log_events(self, message: LogEvents) -> None:
        if message.generation != self.generation or self.index.path is None:
            return
        if self.index.add_events(message.events, message.restarted):
            self.show_tasks()
            self.show_title()
            self.show_level_lines()

    # -- level filter ---------------------------------------------------------------------------
    def action_cycle_level(self) -> None:
        levels = list(LEVEL_FILTERS)
        self.level = levels[(levels.index(self.level) + 1) % len(levels)]
        self.restart_level_filter()
        self.notify({"all": "every line shown", "warnings": "warnings and errors only",
                     "errors": "errors only"}[self.level] + " (l: next level)", title="Log", timeout=2)
        self.show_status()

    def restart_level_filter(self) -> None:
        """Filter the whole indexed log again (a new level, a new file, the head indexed)."""
        self.level_lines, self.level_end = [], self.index.first
        self.level_epoch += 1
        self.workers.cancel_group(self, "log-level")
        if self.level == "all" or self.index.path is None:
            self.view.set_visible(None)
            return
        self.view.set_visible(sorted(set(self.index.error_lines())))
        self.filter_appended()

    def filter_appended(self) -> None:
        """Filter the lines indexed since the filter last looked."""
        if self.level == "all" or self.index.path is None or self.index.end <= self.level_end:
            return
        first = self.index.line_of_offset(self.level_end) if self.level_end > self.index.first else 0
        if self.level_end > self.index.first and self.index.starts[first] != self.level_end:
            first += 1
        starts = self.index.starts[first:]
        carry = self.index.level(first - 1) if first > 0 else "INFO"
        self.level_end = self.index.end
        self.filter_levels(self.index.path, starts, first, self.index.end, LEVEL_FILTERS[self.level], carry,
                           self.level_epoch)

    @work(thread=True, group="log-level")
    def filter_levels(self, path: Path, starts, first: int, stop: int, levels: frozenset[str], carry: str,
                      epoch: int) -> None:
        try:
            lines = lines_of_levels(path, starts, first, stop, levels, carry).tolist()
        except (OSError, ValueError):
            lines = []
        self.app.call_from_thread(self.levels_filtered, lines, epoch)

    def levels_filtered(self, lines: list[int], epoch: int) -> None:
        if epoch != self.level_epoch or self.level == "all":
            return
        self.level_lines = sorted(set(self.level_lines) | set(lines))
        self.show_level_lines()

    def show_level_lines(self) -> None:
        if self.level == "all":
            return
        self.view.set_visible(sorted(set(self.level_lines) | set(self.index.error_lines())))
        self.show_status()

    def action_toggle_wrap(self) -> None:
        self.view.wrap = not self.view.wrap
        self.show_status()

    def show_tasks(self) -> None:
        tasks = self.query_one(TaskList)
        highlighted = tasks.highlighted
        error_lines = self.index.error_lines()
        options = []
        task_lines = self.index.task_lines()
        for i, (line, name) in enumerate(task_lines):
            end = task_lines[i + 1][0] if i + 1 < len(task_lines) else self.index.line_count
            failed = bisect_left(error_lines, line) < bisect_left(error_lines, end)
            label = Text.assemble((f"{name}", "bold red" if failed else "bold"), (f"  l.{line + 1}", "dim"),
                                  (" ✗" if failed else "", "red"))
            options.append(Option(label, id=str(line)))
        tasks.set_options(options)
        if options:
            tasks.highlighted = min(highlighted if highlighted is not None else 0, len(options) - 1)

    # -- title and status -------------------------------------------------------------------------
    def refresh_status(self) -> None:
        if self.record is not None and self.is_current:
            self.read_status(self.record, self.generation)

    @work(thread=True, exclusive=True, group="log-status")
    def read_status(self, record: RunRecord, generation: int) -> None:
        try:
            status = run_status(RunRecord(record.folder))
        except Exception:  # a half-removed run folder: nothing to say
            return
        self.app.call_from_thread(self.status_read, status.state, generation)

    def status_read(self, state: str, generation: int) -> None:
        if generation == self.generation and state != self.status_text:
            self.status_text = state
            self.show_title()

    def show_title(self) -> None:
        title = Text(no_wrap=True, overflow="ellipsis")
        if self.record is None:
            return
        title.append(self.record.run_id, style="bold")
        if self.status_text:
            title.append(f" {self.status_text}", style=STATE_STYLES.get(self.status_text, ""))
        path = self.index.path or self.path_of(self.record)
        title.append(f" · {'console output' if self.source == 'output' else 'log'} ")
        shown = display_path(path) if path else "not opened yet"
        room = max(self.size.width - title.cell_len - 2, 12)
        title.append(shown if len(shown) <= room else "…" + shown[-(room - 1):], style="dim")
        self.query_one("#log-title", Static).update(title)
        self.show_status()

    def show_status(self) -> None:
        view = self.view
        parts = [f"{self.index.line_count:,} lines" + ("" if self.index.complete else " (indexing the start…)"),
                 "FOLLOWING (f: stop)" if view.follow else "follow off (f, G: on)"]
        if self.level != "all":
            parts.insert(1, f"{view.shown_count:,} shown: {self.level} only (l)")
        if view.wrap:
            parts.append("wrap (w)")
        if self.pattern:
            lines = self.current_match_lines()
            position = bisect_right(lines, view.current) if view.current in lines else 0
            parts.append(f"“{self.pattern}”: {len(lines)} lines" + (f", at {position}" if position else "")
                         + " (n/N)")
        errors = len(self.index.error_lines())
        if errors:
            parts.append(f"{errors} error record{'s' if errors != 1 else ''} (e)")
        self.query_one("#log-status", Static).update(" · ".join(parts))

    @on(LogView.FollowChanged)
    def follow_changed(self) -> None:
        self.show_status()

    # -- search ---------------------------------------------------------------------------------
    def action_search(self) -> None:
        field = self.query_one("#search", Input)
        field.add_class("-shown")
        field.value = self.pattern
        field.focus()

    @on(Input.Submitted, "#search")
    def search_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.pattern = event.value.strip()
        self.view.set_pattern(self.pattern)
        self.close_search()
        self.match_offsets, self.match_lines, self.match_lines_for = [], [], -1
        if self.pattern and self.index.path is not None:
            self.search_range(self.pattern, 0, self.index.end, self.generation, jump=True)
        self.show_status()

    @work(thread=True, group="log-search")
    def search_range(self, pattern: str, start: int, stop: int, generation: int, jump: bool = False) -> None:
        path = self.index.path
        if path is None:
            return
        try:
            offsets = search_file(path, pattern, start, stop)
        except (OSError, ValueError):
            offsets = []
        self.post_message(LogSearched(generation, pattern, offsets, jump))

    def on_log_searched(self, message: LogSearched) -> None:
        if message.generation != self.generation or message.pattern != self.pattern:
            return
        self.match_offsets = sorted(set(self.match_offsets) | set(message.offsets))
        self.match_lines_for = -1
        self.show_status()
        if message.jump:
            if self.match_offsets:
                self.action_next_match()
            else:
                self.notify(f"“{message.pattern}” is not in the log", title="Search", severity="warning")

    def current_match_lines(self) -> list[int]:
        if self.match_lines_for != self.index.line_count:
            self.match_lines = sorted({self.index.line_of_offset(o) for o in self.match_offsets})
            self.match_lines_for = self.index.line_count
        return self.match_lines

    def action_next_match(self, from_line: int | None = None) -> None:
        self.step_through(self.current_match_lines(), +1, "search matches", from_line)

    def action_previous_match(self) -> None:
        self.step_through(self.current_match_lines(), -1, "search matches")

    def action_next_error(self) -> None:
        self.step_through(self.index.error_lines(), +1, "errors")

    def action_previous_error(self) -> None:
        self.step_through(self.index.error_lines(), -1, "errors")

    def step_through(self, lines: list[int], step: int, what: str, from_line: int | None = None) -> None:
        if not lines:
            hint = " (/ searches)" if what == "search matches" and not self.pattern else ""
            self.notify(f"no {what} in the log{hint}", title="Log", severity="information")
            return
        view = self.view
        if from_line is not None:
            here = from_line
        elif view.in_view(view.current):
            here = view.current  # from the highlighted line while it is in view
        else:
            here = view.top_line - 1 if step > 0 else view.bottom_line + 1  # else from what is shown
        if step > 0:
            position = bisect_right(lines, here)
            target = lines[position] if position < len(lines) else lines[0]
            wrapped = position >= len(lines)
        else:
            position = bisect_left(lines, here) - 1
            target = lines[position] if position >= 0 else lines[-1]
            wrapped = position < 0
        if wrapped:
            self.notify(f"wrapped around: {'first' if step > 0 else 'last'} of the {what}", title="Log", timeout=2)
        view.go_to_line(target)
        self.show_status()

    def close_search(self) -> None:
        self.query_one("#search", Input).remove_class("-shown")
        self.view.focus()

    @on(Input.Blurred, "#search")
    def search_left(self) -> None:
        self.query_one("#search", Input).remove_class("-shown")

    # -- tasks ------------------------------------------------------------------------------------
    def action_tasks(self) -> None:
        tasks = self.query_one(TaskList)
        if not tasks.option_count:
            self.notify("no 'Running Task' line in the log yet", title="Tasks")
            return
        # start from the task being looked at: the highlighted line while in view (not one jumped to
        # earlier and scrolled away from), else the end when following, else the top of the view
        view = self.view
        # (following, the end is what is shown, or is about to be once the view has scrolled)
        end = self.index.line_count - 1
        here = view.current if view.in_view(view.current) else (end if view.follow else view.top_line)
        lines = [line for line, _ in self.index.task_lines()]
        tasks.highlighted = max(0, bisect_right(lines, here) - 1)
        tasks.focus()

    @on(OptionList.OptionSelected, "#tasks")
    def task_chosen(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.view.go_to_line(int(event.option.id))
        self.view.focus()
        self.show_status()

    def action_next_task(self) -> None:
        self.step_through([line for line, _ in self.index.task_lines()], +1, "tasks")

    def action_previous_task(self) -> None:
        self.step_through([line for line, _ in self.index.task_lines()], -1, "tasks")

    # -- other keys -----------------------------------------------------------------------------
    def action_toggle_follow(self) -> None:
        self.view.follow = not self.view.follow

    def action_focus_log(self) -> None:
        self.close_search()

    def action_toggle_source(self) -> None:
        if self.record is None:
            return
        self.source = "output" if self.source == "log" else "log"
        if self.path_of(self.record.reload()) is None:
            self.notify("a run started in a terminal has no output file: its output went to that terminal"
                        if self.source == "output" else "the run has not opened its log", title="Log")
            self.source = "log"
            return
        self.start_following()

    def action_choose_run(self) -> None:
        if self.results is None:
            self.notify("no valid campaign open", severity="warning", title="Log")
            return
        self.list_runs_for_choice(self.results)

    @work(thread=True, exclusive=True, group="log-pick")
    def list_runs_for_choice(self, results: Path) -> None:
        views = [RunView(record, run_status(record)) for record in list_runs(results)]
        self.app.call_from_thread(self.offer_runs, views)

    def offer_runs(self, views: list[RunView]) -> None:
        if not views:
            self.notify("no run recorded yet: start one on the Runs screen (3)", title="Log")
            return
        options = []
        for view in views:
            status = view.status
            options.append((Text.assemble((f"{status.run_id:<24}", "bold"), f" {status.session or '–':<6} {view.mode:<10} ",
                                          (f"{status.state:<9}", STATE_STYLES.get(status.state, "")),
                                          (f" {status.started}", "dim")), view.key))
        current = str(self.record.folder) if self.record else None

        def chosen(key: str | None) -> None:
            if key:
                self.follow_run(Path(key))

        self.app.push_screen(ChooseDialog("Show the log of which run?", options, current), chosen)
