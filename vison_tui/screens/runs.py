"""Screen 3, Runs: start pipeline runs in the background, follow them test by test, stop them.

Runs are detached engine processes (engine.pipeline.runs): quitting the app leaves them running,
and opening the app again finds them in the campaign's results folder (`runs/`) with their live
state — nothing is kept in the app. A thread worker re-reads the run records every second while
the screen is shown (every few seconds otherwise, to announce runs that end); the tables are
updated in place.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, ProgressBar, Static

from engine.campaign.config import Campaign
from engine.pipeline.runs import RunRecord, indexed_runs, list_runs, restart_run, run_status, stop_run

from ..dialogs.confirm import ConfirmDialog
from ..dialogs.start_run import StartRunDialog
from ..messages import RunsRefreshed, RunStopped
from ..run_launch import missing_day_note, watched_day_folder
from ..run_view import RunView, activity_line, day_option, parse_time, progress, run_results_root, run_summary
from ..widgets.app_bar import AppBar, display_path
from ..widgets.list_filter import ListFilter
from ..widgets.list_table import ListTable
from ..widgets.status_line import bottom_bars
from ..widgets.run_tables import RunList, RunTestsTable
from .base import VisonScreen

REFRESH_S = 1.0
HIDDEN_REFRESH_EVERY = 5  # ticks between looks while another screen is shown
STOP_TIMEOUT_S = 30.0


class RunsScreen(VisonScreen):
    AUTO_FOCUS = "#run-list"  # focused as the screen is made (before the first frame)
    HELP_GROUP = "Runs screen"
    BINDINGS = [
        Binding("n", "new_run", "New run", tooltip="start an aim, wait or check-only run of a session, in the background"),
        Binding("s", "stop_run", "Stop", tooltip="stop the chosen run (asks first); its finished tests keep their results"),
        Binding("l", "show_log", "Log", tooltip="follow the chosen run's pipeline log (Log screen)"),
        Binding("v", "show_results", "Results", tooltip="the results of the chosen run's session (Results screen)"),
        Binding("R", "restart_run", "Restart", show=False,
                tooltip="start an ended run again with the same options, after a question (a wait run skips "
                "tests already analysed)"),
        Binding("r", "refresh", "Refresh", show=False, tooltip="read the run records again now"),
    ]
    DEFAULT_CSS = """
    RunsScreen #runs-title { height: 1; padding: 0 1; background: $boost; text-style: bold; }
    RunsScreen RunList { height: 2fr; min-height: 4; }
    RunsScreen #run-summary { height: 1; padding: 0 1; background: $boost; text-style: bold; }
    RunsScreen #run-activity { height: auto; max-height: 2; padding: 0 1; color: $text-muted; }
    RunsScreen #progress-row { height: 1; padding: 0 1; }
    RunsScreen ProgressBar { width: auto; }
    RunsScreen RunTestsTable { height: 3fr; min-height: 4; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.views: dict[str, RunView] = {}  # by run folder
        self.order: list[str] = []
        self.results: Path | None = None
        self.ticks = 0
        self.refreshing = False
        self.known_states: dict[str, str] = {}  # run folder -> state last seen, to announce endings
        self.other_roots = 0  # results folders other than the campaign's holding its runs (start-run dialog)
        self.run_configs: dict[str, str] = {}  # indexed run folder -> its campaign file (never changes)

    def compose(self) -> ComposeResult:
        yield AppBar()
        yield Static("", id="runs-title", markup=False)
        yield ListFilter("run-list", id="runs-filter", placeholder="filter runs: words to find (enter, tab or escape: back)")
        yield RunList(id="run-list")
        yield Static("", id="run-summary", markup=False)
        yield Static("", id="run-activity", markup=False)
        yield ProgressBar(id="progress", show_eta=False)
        yield ListFilter("run-tests", id="run-tests-filter",
                         placeholder="filter the run's tests: words to find (enter, tab or escape: back)")
        yield RunTestsTable(id="run-tests")
        yield from bottom_bars()  # the status line, then the keys (the app bar shows ^p)

    def on_mount(self) -> None:
        self.query_one(RunList).focus()
        self.watch(self.app, "campaign", self.campaign_changed)
        self.set_interval(REFRESH_S, self.tick)

    def on_screen_resume(self) -> None:
        self.query_one(AppBar).update_bar()
        self.refresh_runs()

    # -- reading the records --------------------------------------------------------------------
    def campaign_changed(self, campaign: Campaign | None) -> None:
        results = campaign.paths.results if campaign is not None else None
        if results != self.results:
            self.results = results
            self.views, self.order = {}, []
            self.known_states = {}
            self.show_runs()
        self.refresh_runs()

    def tick(self) -> None:
        self.ticks += 1
        if self.is_current or self.ticks % HIDDEN_REFRESH_EVERY == 0:
            self.refresh_runs()  # also makes the durations of live runs grow

    def refresh_runs(self) -> None:
        if not self.refreshing:
            self.refreshing = True
            self.read_runs(self.results, self.app.campaign, self.app.campaign_path)

    @work(thread=True, group="runs-refresh")
    def read_runs(self, results: Path | None, campaign: Campaign | None, config: Path | None) -> None:
        try:
            records = (list_runs(results) + self.runs_elsewhere(results, config)) if results else []
            records.sort(key=lambda r: (r.started, r.run_id), reverse=True)
            views = [self.with_note(RunView(record, run_status(record)), campaign) for record in records]
            self.post_message(RunsRefreshed(results, views))
        except Exception as exc:  # unreadable folder, engine bug: say it, keep polling
            self.post_message(RunsRefreshed(results, [], f"cannot read the runs: {type(exc).__name__}: {exc}"))

    def runs_elsewhere(self, results: Path, config: Path | None) -> list[RunRecord]:
        """Runs of this campaign file started with another results folder (the per-user run index)."""
        if config is None:
            return []
        found = []
        for record in indexed_runs():
            key = str(record.folder)
            if key not in self.run_configs:
                self.run_configs[key] = str(record.info.get("config") or "")
            if self.run_configs[key] == str(config) and Path(record.folder).parent.parent != Path(results):
                found.append(record)
        return found

    @staticmethod
    def with_note(view: RunView, campaign: Campaign | None) -> RunView:
        """A live wait run watching a day folder that does not exist waits for ever: say so."""
        if campaign is None or not view.live or view.status.mode != "wait":
            return view
        if any(test.get("state") not in (None, "waiting") for test in view.status.tests):
            return view  # data arrived: the folder is there
        argv = list(view.record.info.get("argv") or [])
        started = parse_time(view.status.started)
        path, how = watched_day_folder(campaign, view.status.session, day_option(argv), when=started)
        how = "the day it started" if how == "today's" else how
        note = missing_day_note(campaign, path, how)
        return dataclasses.replace(view, note=note) if note else view

    def on_runs_refreshed(self, message: RunsRefreshed) -> None:
        self.refreshing = False
        if message.results != self.results:
            return  # an answer about the previous campaign
        if message.problem:
            self.query_one("#runs-title", Static).update(message.problem)
            return
        self.views = {view.key: view for view in message.runs}
        self.order = [view.key for view in message.runs]
        self.announce_endings()
        self.show_runs()

    def announce_endings(self) -> None:
        """A notification when a run seen running has ended, whichever screen is shown."""
        for key, view in self.views.items():
            before = self.known_states.get(key)
            state = view.status.state
            if before in ("starting", "running") and state not in ("starting", "running"):
                done, total = progress(view)
                flags = sorted({flag for test in view.status.tests for flag in test.get("flags") or []})
                severity = "information" if state == "finished" and not view.status.progress.get("errors") else "warning"
                self.notify(f"{done}/{total} tests · flags {', '.join(flags) or 'none'}\n{view.status.end_reason or ''}",
                            title=f"Run {view.status.run_id} {state}", severity=severity, timeout=8)
            self.known_states[key] = state

    # -- showing --------------------------------------------------------------------------------
    def show_runs(self) -> None:
        now = datetime.now()
        views = [self.views[key] for key in self.order]
        live = sum(view.live for view in views)
        self.query_one(RunList).show(views, now)
        if self.results is None:
            title = "No valid campaign open: open one on the Campaign screen (1)"
        else:
            elsewhere = {run_results_root(view) for view in views} - {self.results}
            title = (f"Runs in {display_path(self.results)}"
                     + (f" (and {len(elsewhere)} other results folder{'s' if len(elsewhere) > 1 else ''})"
                        if elsewhere else "")
                     + f": {len(views)} recorded, {live} running" + ("" if views else " — n starts one"))
            table = self.query_one(RunList)
            if table.filtered:
                title += f" · {table.shown_count()} shown (/ {table.filter_text})"
        self.query_one("#runs-title", Static).update(title)
        self.show_chosen(now)

    @property
    def chosen(self) -> RunView | None:
        key = self.query_one(RunList).current_key
        return self.views.get(key) if key else None

    def show_chosen(self, now: datetime | None = None) -> None:
        view = self.chosen
        now = now or datetime.now()
        summary = self.query_one("#run-summary", Static)
        activity = self.query_one("#run-activity", Static)
        bar = self.query_one(ProgressBar)
        if view is None:
            summary.update("no run chosen")
            activity.update("")
            bar.display = False  # an empty bar would animate as "unknown total"
            self.query_one(RunTestsTable).show(None, now)
            return
        summary.update(run_summary(view))
        activity.update(activity_line(view))
        done, total = progress(view)
        bar.display = True
        bar.update(total=max(total, 1), progress=done)
        self.query_one(RunTestsTable).show(view, now)

    @on(DataTable.RowHighlighted, "#run-list")
    def run_highlighted(self) -> None:
        self.show_chosen()

    @on(ListTable.ViewChanged, "#run-list")
    def runs_filtered(self) -> None:
        self.show_runs()

    @on(DataTable.RowSelected, "#run-list")
    def run_selected(self) -> None:
        self.query_one(RunTestsTable).focus()

    # -- actions --------------------------------------------------------------------------------
    def action_refresh(self) -> None:
        self.refresh_runs()

    def action_new_run(self) -> None:
        campaign = self.app.campaign
        config = self.app.campaign_path
        if campaign is None or config is None:
            self.notify("no valid campaign open: open or fix it on the Campaign screen (1)", severity="warning",
                        title="New run")
            return
        chosen = self.chosen
        session = chosen.status.session if chosen else None

        def started(record: RunRecord | None) -> None:
            if record is None:
                return
            self.notify(f"pid {record.pid}; it keeps running if vison quits", title=f"Started run {record.run_id}")
            self.select_after_refresh(str(record.folder))

        self.app.push_screen(StartRunDialog(campaign, config, session, unsaved=bool(self.app.unsaved)), started)

    def select_after_refresh(self, key: str) -> None:
        """Put the cursor on a run once the next refresh lists it."""
        def select() -> None:
            table = self.query_one(RunList)
            if key in table.rows:  # (a filter may hide it)
                table.move_cursor(row=table.get_row_index(key), animate=False)
                self.show_chosen()
            elif key in self.order:
                return
            else:
                self.set_timer(0.3, select)

        self.refresh_runs()
        self.set_timer(0.2, select)

    def action_stop_run(self) -> None:
        view = self.chosen
        if view is None:
            self.notify("no run chosen", severity="warning", title="Stop")
            return
        if view.status.process_note:  # a live pid not confirmed to be the run's: never signalled
            self.notify(f"run {view.status.run_id} not stopped: {view.status.process_note}", severity="warning",
                        title="Stop")
            return
        if not view.live or view.status.alive is False:
            self.notify(f"run {view.status.run_id} is not running ({view.status.state})", title="Stop")
            return
        if view.status.alive is None:
            self.notify(f"run {view.status.run_id} runs on {view.status.host}: stop it there", severity="warning",
                        title="Stop")
            return
        current = view.status.current or {}
        doing = (f"The analysis of {current['test']} in progress is abandoned (its partial results discarded); "
                 "tests") if current.get("test") else "Tests"

        def answered(yes: bool | None) -> None:
            if yes:
                self.stop_in_background(view.record, force=False)

        self.app.push_screen(ConfirmDialog(
            f"Stop run {view.status.run_id}?",
            f"Session {view.status.session}, {view.mode}: {view.status.activity}.\n"
            f"{doing} already analysed keep their results; the log gets its summary. "
            f"The run gets up to {STOP_TIMEOUT_S:.0f} s to end.",
            yes="Stop run", no="Keep running"), answered)

    @work(thread=True, group="stop-run")
    def stop_in_background(self, record: RunRecord, force: bool) -> None:
        try:
            status = stop_run(record, timeout=2.0 if force else STOP_TIMEOUT_S, force=force)
        except (OSError, ValueError) as exc:
            self.app.call_from_thread(self.notify, f"{type(exc).__name__}: {exc}", title="Stop failed",
                                      severity="error")
            return
        self.post_message(RunStopped(record.run_id, status, force))

    def on_run_stopped(self, message: RunStopped) -> None:
        status = message.status
        self.refresh_runs()
        if status.alive:
            record = next((v.record for v in self.views.values() if v.status.run_id == message.run_id), None)
            if record is None:
                return

            def answered(yes: bool | None) -> None:
                if yes:
                    self.stop_in_background(record, force=True)

            self.app.push_screen(ConfirmDialog(
                f"Run {message.run_id} did not stop in {STOP_TIMEOUT_S:.0f} s",
                f"Kill it (SIGKILL, with its worker processes)? The test being analysed leaves a staging "
                f"folder that the next run of session {status.session} removes.",
                yes="Kill it", no="Let it finish"), answered)
            return
        self.notify(status.end_reason or status.state, title=f"Run {message.run_id} {status.state}")

    def action_restart_run(self) -> None:
        view = self.chosen
        if view is None:
            return
        if view.live:
            self.notify(f"run {view.status.run_id} is still running", severity="warning", title="Restart")
            return
        argv = " ".join(str(arg) for arg in view.record.info.get("argv") or []) or "(not recorded)"
        done, total = progress(view)

        def answered(yes: bool | None) -> None:
            if yes:
                self.restart_in_background(view.record)

        self.app.push_screen(ConfirmDialog(
            f"Restart run {view.status.run_id}?",
            f"Starts a new run of session {view.status.session or '–'} ({view.mode}) in the background, with the "
            f"same options:\n  vison-engine run {argv}\n"
            f"It ended {view.status.state} with {done}/{total} tests analysed. A wait run skips the tests "
            f"already analysed; an aim run analyses them all again.",
            yes="Restart", no="Cancel", danger=False), answered)

    @work(thread=True, group="start-run")
    def restart_in_background(self, record: RunRecord) -> None:
        try:
            new = restart_run(record)
        except (LookupError, OSError, ValueError) as exc:
            self.app.call_from_thread(self.notify, str(exc), title="Restart refused", severity="warning")
            return
        self.app.call_from_thread(self.notify, f"pid {new.pid}", title=f"Restarted as {new.run_id}")
        self.app.call_from_thread(self.select_after_refresh, str(new.folder))

    def action_show_log(self) -> None:
        view = self.chosen
        if view is None:
            self.notify("no run chosen", severity="warning", title="Log")
            return
        self.app.switch_mode("log")
        follow = getattr(self.app.screen, "follow_run", None)
        if follow is not None:
            follow(view.record.folder)

    def action_show_results(self) -> None:
        view = self.chosen
        self.app.switch_mode("results")
        show = getattr(self.app.screen, "show_session", None)
        if view is not None and show is not None:
            show(view.status.session)
