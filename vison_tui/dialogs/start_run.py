"""Start a pipeline run: the options of `vison-engine run` in a dialog, the equivalent command shown
as they change. The engine validates in a worker; a refusal is shown here and the dialog stays, so
nothing typed is lost. Returns the started run's record, or None.

Keys: enter (in a field) or ctrl+s starts; escape, or tab to Cancel then enter, gives up; ctrl+l
puts the newest day folder in the Day folder field (offered when a wait run's folder does not exist).
"""

from __future__ import annotations

import os
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from typing import TYPE_CHECKING

from engine.campaign.executor_spec import parse_executor

from ..messages import RunStarted
from ..run_launch import (MODE_HELP, MODES, LaunchRefused, RunRequest, day_folders, missing_day_note,
                          newest_day_folder, start_run, watched_day_folder)
from ..widgets.app_bar import display_path

if TYPE_CHECKING:
    from engine.campaign.config import Campaign
    from engine.pipeline.runs import RunRecord


class StartRunDialog(ModalScreen["RunRecord | None"]):
    HELP_GROUP = "Start a run"
    BINDINGS = [
        Binding("ctrl+s", "start", "Start run", tooltip="start the run in the background"),
        Binding("ctrl+l", "newest_day", "Newest day folder", tooltip="put the newest day folder in the Day folder field"),
        Binding("escape", "cancel", "Cancel"),
    ]
    DEFAULT_CSS = """
    StartRunDialog { align: center middle; }
    StartRunDialog > Vertical {
        width: 92; max-width: 100%; height: auto; max-height: 100%;
        border: thick $primary; background: $surface; padding: 0 1;
    }
    StartRunDialog .title { text-style: bold; }
    StartRunDialog .row { height: 1; }
    StartRunDialog .title { margin-bottom: 1; }
    StartRunDialog .row Label { width: 14; }
    StartRunDialog .row Input, StartRunDialog .row Select { width: 1fr; }
    StartRunDialog .hint { color: $text-muted; height: auto; padding-left: 14; }
    StartRunDialog #command { color: $text-muted; height: auto; }
    StartRunDialog #error { color: $error; height: auto; }
    StartRunDialog #day-warning { color: $warning; height: auto; padding-left: 14; text-style: bold; }
    StartRunDialog #day-warning.-empty { display: none; }
    StartRunDialog #buttons { height: 1; align-horizontal: right; }
    StartRunDialog Button { margin-left: 2; }
    """

    def __init__(self, campaign: Campaign, config: Path, session: str | None = None, unsaved: bool = False) -> None:
        super().__init__()
        self.campaign = campaign
        self.config = Path(config)
        self.sessions = list(campaign.sessions)
        self.initial_session = session if session in campaign.sessions else (self.sessions[0] if self.sessions else None)
        self.unsaved = unsaved
        self.days = day_folders(campaign)
        self.starting = False  # a start is under way in this dialog's worker

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(f"Start a pipeline run — {self.campaign.info.block}, results in "
                         f"{self.campaign.paths.results}", classes="title", markup=False)
            if self.unsaved:
                yield Static("The campaign has unsaved edits: the run reads the file as saved.", classes="hint",
                             markup=False)
            with Horizontal(classes="row"):
                yield Label("Session")
                yield Select([(name, name) for name in self.sessions], value=self.initial_session or Select.NULL,
                             allow_blank=False, id="session", compact=True)
            with Horizontal(classes="row"):
                yield Label("Mode")
                yield Select([(f"{label} — {MODE_HELP[label]}", label) for label in MODES], value="aim",
                             allow_blank=False, id="mode", compact=True)
            with Horizontal(classes="row"):
                yield Label("Day folder")
                yield Input("", placeholder="default: the session's, else every day folder (aim) / today's (wait)",
                            id="day", compact=True)
            yield Static(self.days_hint(), classes="hint", markup=False, id="days")
            yield Static("", markup=False, id="day-warning", classes="-empty")
            with Horizontal(classes="row"):
                yield Label("Start OBSID")
                yield Input("", placeholder="optional: only OBSIDs from this one on", type="integer", id="start-obsid",
                            compact=True)
            with Horizontal(classes="row"):
                yield Label("Executor")
                yield Input("", placeholder=f"default: the campaign's, {self.campaign.run.executor}; or local, "
                            "or dask://HOST:PORT (docs/scaling.md)", id="executor", compact=True)
            with Horizontal(classes="row"):
                yield Label("Jobs")
                yield Input("", placeholder=f"local executor's worker processes, 1-{os.cpu_count() or 1} "
                            f"(default {os.cpu_count() or 1})", type="integer", id="jobs", compact=True)
            with Horizontal(classes="row"):
                yield Label("Tag")
                yield Input("", placeholder="optional: added to the run id and log name, e.g. _D11", id="tag",
                            compact=True)
            with Horizontal(classes="row"):
                yield Label("Idle stop")
                yield Input("", placeholder=f"wait mode: minutes without data before stopping "
                            f"(campaign: {self.campaign.watch.idle_stop_minutes}; 0 = never)",
                            type="number", id="idle-stop", compact=True)
            with Horizontal(classes="row"):
                yield Label("Results")
                yield Input("", placeholder=f"default: the campaign's, {display_path(self.campaign.paths.results)}",
                            id="results", compact=True)
            yield Static("", id="command", markup=False)
            yield Static("", id="error", markup=False)
            with Horizontal(id="buttons"):
                yield Button("Start (ctrl+s)", id="start", variant="primary", compact=True)
                yield Button("Cancel (esc)", id="cancel", compact=True)

    def days_hint(self) -> str:
        if not self.days:
            return f"no day folder with an EXP_LOG under {self.campaign.paths.data} yet"
        shown = ", ".join(self.days[-4:])
        return f"day folders there: {shown}" + (f" (+{len(self.days) - 4} older)" if len(self.days) > 4 else "")

    def on_mount(self) -> None:
        for field in self.query(Input):
            field.cursor_blink = not self.app.is_headless
        self.query_one("#session", Select).focus()
        self.show_command()

    # -- the request ----------------------------------------------------------------------------
    def request(self) -> tuple[RunRequest | None, str]:
        """The run the fields describe, or why they do not describe one."""
        session = self.query_one("#session", Select).value
        if session is Select.NULL:
            return None, "the campaign has no session: add one on the Campaign screen"
        values = {name: self.query_one(f"#{name}", Input).value.strip()
                  for name in ("day", "start-obsid", "jobs", "tag", "idle-stop", "results", "executor")}
        try:
            start_obsid = int(values["start-obsid"]) if values["start-obsid"] else None
            jobs = int(values["jobs"]) if values["jobs"] else None
            idle_stop = float(values["idle-stop"]) if values["idle-stop"] else None
        except ValueError:
            return None, "start OBSID and jobs are whole numbers, idle stop a number of minutes"
        if start_obsid is not None and start_obsid < 1:
            return None, "start OBSID: a number >= 1"
        if jobs is not None and not 1 <= jobs <= (os.cpu_count() or 1):
            return None, f"jobs: between 1 and {os.cpu_count() or 1} (the cores of this machine)"
        try:
            executor = parse_executor(values["executor"]) if values["executor"] else self.campaign.run.executor
        except ValueError as exc:
            return None, f"executor: {exc}"
        if jobs is not None and not executor.is_local:
            return None, "jobs: for the local executor only (a Dask cluster has the workers started on it)"
        if idle_stop is not None and idle_stop < 0:
            return None, "idle stop: minutes >= 0 (0 = never)"
        results = ""
        if values["results"]:  # relative: from the campaign's folder, like the paths in the campaign
            path = Path(os.path.expanduser(values["results"]))
            results = os.path.abspath(path if path.is_absolute() else self.campaign.paths.config_dir / path)
        return RunRequest(self.config, str(session), str(self.query_one("#mode", Select).value), values["day"],
                          start_obsid, jobs, values["tag"], idle_stop, results, values["executor"]), ""

    @on(Input.Changed)
    @on(Select.Changed)
    def show_command(self) -> None:
        request, problem = self.request()
        self.query_one("#command", Static).update(f"$ {request.command_line()}" if request else "")
        self.query_one("#error", Static).update(problem)
        self.show_day_warning(request)

    def show_day_warning(self, request: RunRequest | None) -> None:
        """A wait run on a day folder that does not exist would wait for ever: say so, offer the newest."""
        note = ""
        if request is not None and MODES[request.mode][0]:
            path, how = watched_day_folder(self.campaign, request.session, request.day)
            note = missing_day_note(self.campaign, path, how)
            if note and newest_day_folder(self.campaign):
                note = f"⚠ {note} (ctrl+l puts it in the field)"
            elif note:
                note = f"⚠ {note}"
        warning = self.query_one("#day-warning", Static)
        warning.update(note)
        warning.set_class(not note, "-empty")

    def action_newest_day(self) -> None:
        newest = newest_day_folder(self.campaign)
        if newest is None:
            self.query_one("#error", Static).update(f"no day folder with an EXP_LOG under "
                                                    f"{display_path(self.campaign.paths.data)} yet")
            return
        self.query_one("#day", Input).value = newest

    # -- starting -------------------------------------------------------------------------------
    @on(Input.Submitted)
    def submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_start()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "start":
            self.action_start()
        else:
            self.dismiss(None)

    def action_start(self) -> None:
        request, problem = self.request()
        if request is None:
            self.query_one("#error", Static).update(problem)
            return
        # this dialog's own start only: `self.workers` is the app's whole list (the log tail never ends)
        if self.starting:
            return  # already starting it
        self.starting = True
        self.query_one("#error", Static).update("starting…")
        self.start_in_background(request)

    @work(thread=True, exclusive=True, group="start-run")
    def start_in_background(self, request: RunRequest) -> None:
        try:
            record = start_run(request)
        except LaunchRefused as refusal:
            self.app.call_from_thread(self.refused, str(refusal))
            return
        except Exception as exc:  # an engine bug: say it, keep the dialog and the app
            self.app.call_from_thread(self.refused, f"internal error: {type(exc).__name__}: {exc}")
            return
        self.post_message(RunStarted(record))

    def refused(self, reason: str) -> None:
        self.starting = False
        self.query_one("#error", Static).update(f"✗ {reason}")

    def on_run_started(self, message: RunStarted) -> None:
        message.stop()
        record: RunRecord = message.record
        self.dismiss(record)

    def action_cancel(self) -> None:
        self.dismiss(None)
