"""Screen 2, Scripts & sessions: choose tests, write the ELVIS scripts, build session folders.

The engine writes (engine.campaign.scripts.write_scripts, engine.campaign.sessions.build_sessions),
in thread workers; an existing output folder is replaced only after a question. Failures arrive as
messages (a notification and the message panel), never as tracebacks. Sessions whose scripts are
all there are built even when another session lacks one (that one is named, with its missing
scripts). The session lists edited here are kept per campaign file across restarts (app_state.py).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Static, TabbedContent, TabPane

from engine.campaign.catalogue import CATALOGUE
from engine.campaign.chamber import ChamberError
from engine.campaign.config import Campaign
from engine.campaign.scripts import OutputFolderError, ScriptInputs, write_scripts
from engine.campaign.sessions import SessionInputs, build_sessions, scripts_by_test
from engine.formats.tomlfile import ConfigError

from ..app_state import save_campaign_state, saved_sessions
from ..dialogs.confirm import ConfirmDialog
from ..messages import EngineFailed, ScriptsDone, SessionsDone
from ..script_plan import (SessionPlan, campaign_tests, fields_from_campaign, folder_in_use, resolve_folder,
                           script_inputs, selection_totals, chamber_figures)
from ..widgets.app_bar import AppBar, display_path
from ..widgets.status_line import bottom_bars
from ..widgets.list_filter import ListFilter
from ..widgets.message_panel import MessagePanel
from ..widgets.script_fields import ScriptFieldsForm
from ..widgets.session_editor import SessionEditor, SessionTests
from ..widgets.test_checklist import TestChecklist
from .base import VisonScreen

ENGINE_ERRORS = (ConfigError, OutputFolderError, ChamberError, ValueError, OSError)


def failure_lines(exc: Exception) -> list[str]:
    """An engine exception as lines for the user: each problem of a ConfigError, else its message."""
    problems = getattr(exc, "problems", None)
    if problems:
        return [f"{p.key}: {p.message}" if p.key else p.message for p in problems]
    return [str(exc) or type(exc).__name__]


def sessions_lacking_scripts(sessions: dict[str, tuple[str, ...]], available: dict[str, list[str]],
                             folder: str) -> dict[str, str]:
    """Session -> why it cannot be built (a test with no script, or several, in the scripts folder)."""
    blocked = {}
    for name, tests in sessions.items():
        missing = [test for test in tests if not available.get(test)]
        several = [test for test in tests if len(available.get(test, [])) > 1]
        reasons = []
        if missing:
            reasons.append(f"no script for {', '.join(missing)} in {folder} (select {'it' if len(missing) == 1 else 'them'}"
                           f" in the checklist and write: w)")
        if several:
            reasons.append(f"several scripts for {', '.join(several)} in {folder}: keep one of each")
        if reasons:
            blocked[name] = "; ".join(reasons)
    return blocked


class ScriptsScreen(VisonScreen):
    AUTO_FOCUS = "#checklist"  # focused as the screen is made (before the first frame)
    HELP_GROUP = "Scripts & sessions screen"
    BINDINGS = [
        Binding("w", "write_scripts", "Write scripts", tooltip="write the selected tests' scripts into the scripts folder"),
        Binding("b", "build_sessions", "Build sessions", tooltip="write a folder per session with its sequence file"),
        Binding("ctrl+t", "toggle_view", "View", tooltip="switch between the test checklist and the sessions"),
        Binding("escape", "focus_list", "Back to the list", show=False, tooltip="leave a text field (tab does too)"),
    ]
    DEFAULT_CSS = """
    ScriptsScreen TabbedContent { height: 1fr; }
    ScriptsScreen TabPane { padding: 0; height: 1fr; }
    ScriptsScreen #tests-column { width: 1fr; }
    ScriptsScreen TestChecklist { height: 1fr; overflow-x: hidden; }
    ScriptsScreen #test-detail { height: 1; color: $text-muted; padding: 0 1; }
    ScriptsScreen #totals { height: 1; background: $boost; text-style: bold; padding: 0 1; }
    ScriptsScreen ScriptFieldsForm { width: 44; max-width: 38%; border-left: vkey $panel-lighten-2; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.base = Path.cwd()  # relative folders are taken from the campaign's folder, else from here
        self.selection_touched = False
        self.sessions_touched = False
        self.chamber: str | None = None

    def compose(self) -> ComposeResult:
        yield AppBar()
        with TabbedContent(id="views", initial="scripts-pane"):
            with TabPane("Scripts", id="scripts-pane"):
                with Horizontal():
                    with Vertical(id="tests-column"):
                        yield ListFilter("checklist", id="checklist-filter",
                                         placeholder="filter tests: words to find (enter, tab or escape: back)")
                        yield TestChecklist(id="checklist")
                        yield Static("", id="test-detail", markup=False)
                        yield Static("", id="totals", markup=False)
                    yield ScriptFieldsForm(id="script-fields")
            with TabPane("Sessions", id="sessions-pane"):
                yield SessionEditor(id="session-editor")
        yield MessagePanel(id="messages")
        yield from bottom_bars()  # the status line, then the keys (the app bar shows ^p)

    def on_mount(self) -> None:
        self.query_one(TestChecklist).focus()
        self.watch(self.app, "campaign_path", self.campaign_file_changed, init=False)
        self.watch(self.app, "campaign", self.campaign_changed)

    def on_screen_resume(self) -> None:
        self.query_one(AppBar).update_bar()
        self.refresh_available()

    # -- following the campaign -----------------------------------------------------------------
    def campaign_file_changed(self) -> None:
        """Another campaign file: everything is prefilled from it again, edits here included."""
        self.selection_touched = self.sessions_touched = False
        self.query_one(ScriptFieldsForm).prefilled.clear()

    def campaign_changed(self, campaign: Campaign | None) -> None:
        if campaign is not None:
            self.base = campaign.paths.config_dir
        self.query_one(ScriptFieldsForm).prefill(fields_from_campaign(campaign))
        if not self.selection_touched:
            self.query_one(TestChecklist).set_selected(campaign_tests(campaign), announce=False)
        if not self.sessions_touched:
            self.restore_or_prefill_sessions(campaign)
        self.chamber_changed(self.query_one(ScriptFieldsForm).values().chamber)
        self.refresh_available()

    def chamber_changed(self, chamber: str) -> None:
        if chamber == self.chamber:
            self.update_totals()
            return
        try:
            figures = chamber_figures(chamber)
        except ChamberError as exc:
            self.report_failure("Chamber profile", [str(exc)])
            return
        self.chamber = chamber
        self.query_one(TestChecklist).set_figures(figures)
        self.update_totals()

    def update_totals(self) -> None:
        checklist = self.query_one(TestChecklist)
        totals = selection_totals(checklist.selected, checklist.figures)
        self.query_one("#totals", Static).update(f"Σ {totals.describe()}")

    @on(TestChecklist.RowHighlighted, "#checklist")
    def show_test_detail(self) -> None:
        row = self.query_one(TestChecklist).current_row()
        if row is None:
            return
        if not row.writable:
            detail = f"{row.label}: no script of its own, it analyses the frames of {row.surrogate}"
        elif row.group:
            detail = f"{row.label}: {len(row.instances)} instances ({', '.join(row.instances)})"
        else:
            test = CATALOGUE[row.label]
            detail = f"{row.label}: {test.purpose} · family {test.family}"
        self.query_one("#test-detail", Static).update(detail)

    @on(TestChecklist.SelectionChanged)
    def selection_changed(self) -> None:
        self.selection_touched = True
        self.update_totals()

    @on(ScriptFieldsForm.FieldChanged)
    def field_changed(self, message: ScriptFieldsForm.FieldChanged) -> None:
        if message.name == "chamber":
            # the form's value now: a queued message may be older than a prefill
            self.chamber_changed(self.query_one(ScriptFieldsForm).values().chamber)
        elif message.name == "output":
            self.refresh_available()

    def restore_or_prefill_sessions(self, campaign: Campaign | None) -> None:
        """The session lists as last edited for this campaign file (kept across restarts), else its own."""
        editor = self.query_one(SessionEditor)
        sessions, output = saved_sessions(self.app.campaign_path)
        if sessions is None:
            editor.set_plan(SessionPlan.from_campaign(campaign))
            return
        self.sessions_touched = True
        editor.set_plan(SessionPlan(sessions))
        if output:
            editor.query_one("#sessions-output").value = output
        own = SessionPlan.from_campaign(campaign).sessions
        if own != sessions:
            self.query_one(MessagePanel).info(
                "Session lists as you left them (kept since your last edit; the campaign's own lists differ)",
                "\n".join(f"{name}: {', '.join(tests) or '(empty)'}" for name, tests in sessions.items()))

    @on(SessionEditor.Edited)
    def sessions_edited(self) -> None:
        self.sessions_touched = True
        self.save_sessions()

    def save_sessions(self) -> None:
        editor = self.query_one(SessionEditor)
        save_campaign_state(self.app.campaign_path, sessions=editor.plan.copy().sessions,
                            sessions_output=editor.output_text)

    def scripts_folder(self) -> Path:
        return resolve_folder(self.query_one(ScriptFieldsForm).values().output or ".", self.base)

    def refresh_available(self) -> None:
        folder = self.scripts_folder()
        self.query_one(SessionEditor).set_available(folder, scripts_by_test(folder))

    # -- views ----------------------------------------------------------------------------------
    def action_toggle_view(self) -> None:
        views = self.query_one(TabbedContent)
        views.active = "sessions-pane" if views.active == "scripts-pane" else "scripts-pane"

    @on(TabbedContent.TabActivated, "#views")
    def view_changed(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id == "sessions-pane":
            self.refresh_available()
            self.query_one("#session-names").focus()
        else:
            self.query_one(TestChecklist).focus()

    def action_focus_list(self) -> None:
        if self.query_one(TabbedContent).active == "sessions-pane":
            self.query_one(SessionTests).focus()
        else:
            self.query_one(TestChecklist).focus()

    # -- writing scripts ------------------------------------------------------------------------
    def action_write_scripts(self) -> None:
        form = self.query_one(ScriptFieldsForm)
        inputs, problems = script_inputs(form.values(), self.query_one(TestChecklist).selected_in_order(), self.base)
        form.mark_invalid({p.field for p in problems})
        if inputs is None:
            self.report_failure("Scripts not written", [str(p) for p in problems])
            return
        in_use = folder_in_use(inputs.output)
        if not in_use:
            self.run_write_scripts(inputs, force=False)
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.run_write_scripts(inputs, force=True)

        self.app.push_screen(ConfirmDialog(
            "Write over the scripts folder?",
            f"{display_path(inputs.output)} exists and holds {in_use} file(s) or folder(s).\n"
            f"Writing {len(inputs.tests)} script(s) replaces what vison wrote there before (the files listed in "
            f"its .vison-output.json). A file that is not yours to lose stops it: one vison did not write, or a "
            f"script changed since; then nothing is written and the message names it.",
            yes="Write", no="Cancel"), answered)

    @work(thread=True, exclusive=True, group="write-scripts")
    def run_write_scripts(self, inputs: ScriptInputs, force: bool) -> None:
        try:
            self.post_message(ScriptsDone(write_scripts(inputs, force=force)))
        except ENGINE_ERRORS as exc:
            self.post_message(EngineFailed("Scripts not written", failure_lines(exc)))
        except Exception as exc:  # an engine bug: say so, keep the app alive
            self.post_message(EngineFailed("Scripts not written (internal error)", [f"{type(exc).__name__}: {exc}"]))

    def on_scripts_done(self, message: ScriptsDone) -> None:
        result = message.result
        title = (f"Wrote {len(result.scripts)} scripts to {display_path(result.folder)} "
                 f"({result.total_frames} frames, {result.total_minutes:.1f} min)")
        self.query_one(MessagePanel).info(title, result.inventory_text)
        self.notify(title, title="Scripts")
        self.refresh_available()

    # -- building sessions ----------------------------------------------------------------------
    def action_build_sessions(self) -> None:
        editor = self.query_one(SessionEditor)
        scripts = self.scripts_folder()
        problems = []
        if not editor.output_text.strip():
            problems.append("Sessions folder: give the folder to build the sessions in")
        if not any(editor.plan.sessions.values()):
            problems.append("no session lists a test: add tests to a session first (ctrl+t shows the sessions)")
        if not scripts.is_dir():
            problems.append(f"scripts folder {display_path(scripts)} does not exist: write the scripts first (w)")
        if problems:
            self.report_failure("Sessions not built", problems)
            return
        self.save_sessions()
        inputs = editor.plan.inputs(scripts, resolve_folder(editor.output_text, self.base))
        # build what can be built: a session lacking a script is left out and named, not a blocker
        blocked = sessions_lacking_scripts(inputs.sessions, scripts_by_test(scripts), display_path(scripts))
        if blocked:
            buildable = {name: tests for name, tests in inputs.sessions.items() if name not in blocked}
            lines = [f"{name}: {reason}" for name, reason in blocked.items()]
            if not buildable:
                self.report_failure("Sessions not built", lines)
                return
            self.query_one(MessagePanel).error(f"Not built: {', '.join(blocked)} (the others are)", lines)
            inputs = dataclasses.replace(inputs, sessions=buildable)
        in_use = folder_in_use(inputs.output)
        if not in_use:
            self.run_build_sessions(inputs, force=False)
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.run_build_sessions(inputs, force=True)

        self.app.push_screen(ConfirmDialog(
            "Write over the sessions folder?",
            f"{display_path(inputs.output)} exists and holds {in_use} file(s) or folder(s).\n"
            f"Building {', '.join(inputs.sessions)} replaces what vison built there before (the files listed in "
            f"its .vison-output.json), session folders not built now included. A file vison did not write, or "
            f"one changed since, stops it: then nothing is written and the message names it.",
            yes="Build", no="Cancel"), answered)

    @work(thread=True, exclusive=True, group="build-sessions")
    def run_build_sessions(self, inputs: SessionInputs, force: bool) -> None:
        try:
            self.post_message(SessionsDone(build_sessions(inputs, force=force)))
        except ENGINE_ERRORS as exc:
            self.post_message(EngineFailed("Sessions not built", failure_lines(exc)))
        except Exception as exc:
            self.post_message(EngineFailed("Sessions not built (internal error)", [f"{type(exc).__name__}: {exc}"]))

    def on_sessions_done(self, message: SessionsDone) -> None:
        result = message.result
        title = f"Built {len(result.sessions)} session(s) in {display_path(result.folder)}"
        body = "\n".join(f"{s.name}/{s.sequence}: {len(s.scripts)} script(s)\n" +
                         "\n".join(f"    {name}" for name in s.scripts) for s in result.sessions)
        self.query_one(MessagePanel).info(title, body)
        self.notify(title, title="Sessions")

    # -- failures -------------------------------------------------------------------------------
    def on_engine_failed(self, message: EngineFailed) -> None:
        self.report_failure(message.what, message.lines)

    def report_failure(self, what: str, lines: list[str]) -> None:
        self.query_one(MessagePanel).error(what, lines)
        shown = "\n".join(lines[:4]) + (f"\n… {len(lines) - 4} more in the message panel" if len(lines) > 4 else "")
        self.notify(shown, title=what, severity="error", timeout=8)
