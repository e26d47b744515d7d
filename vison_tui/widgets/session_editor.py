"""Sessions as ordered test lists: names on the left, the chosen session's tests in the middle, the
scripts available in the scripts folder on the right. Everything by keys; the screen builds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Input, Label, OptionList
from textual.widgets.option_list import Option

from ..dialogs.confirm import ConfirmDialog
from ..keys import NAVIGATION
from ..dialogs.text_prompt import TextPrompt
from ..script_plan import SessionPlan


class _EditorList(OptionList):
    @property
    def sessions(self) -> "SessionEditor":
        return self.query_ancestor(SessionEditor)


class SessionNames(_EditorList):
    HELP_GROUP = "Session names"
    BINDINGS = [
        Binding("n,plus", "new", "New", tooltip="add a session (asks its name)"),
        Binding("r", "rename", "Rename", tooltip="rename the session"),
        Binding("x,delete", "remove", "Remove", tooltip="remove the session (asks first if it lists tests)"),
        Binding("enter,right", "open", "Its tests", show=False, group=NAVIGATION),
    ]

    def action_new(self) -> None:
        self.sessions.ask_new_session()

    def action_rename(self) -> None:
        self.sessions.ask_rename_session()

    def action_remove(self) -> None:
        self.sessions.ask_remove_session()

    def action_open(self) -> None:
        self.sessions.query_one(SessionTests).focus()


class SessionTests(_EditorList):
    HELP_GROUP = "Tests of the session"
    BINDINGS = [
        Binding("K,shift+up", "move(-1)", "Move up"),
        Binding("J,shift+down", "move(1)", "Move down"),
        Binding("x,delete", "remove", "Take out"),
        Binding("left", "back", "Sessions", show=False, group=NAVIGATION),
        Binding("right", "available", "Scripts", show=False, group=NAVIGATION),
    ]

    def action_move(self, delta: int) -> None:
        self.sessions.move_test(self.highlighted, delta)

    def action_remove(self) -> None:
        self.sessions.remove_test(self.highlighted)

    def action_back(self) -> None:
        self.sessions.query_one(SessionNames).focus()

    def action_available(self) -> None:
        self.sessions.query_one(AvailableScripts).focus()


class AvailableScripts(_EditorList):
    HELP_GROUP = "Available scripts"
    BINDINGS = [
        Binding("enter,space", "add", "Add to session"),
        Binding("left", "back", "Session tests", show=False, group=NAVIGATION),
    ]

    def action_add(self) -> None:
        option = self.highlighted_option
        if option is not None and option.id:
            self.sessions.add_test(option.id)

    def action_back(self) -> None:
        self.sessions.query_one(SessionTests).focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()  # enter is bound to add; a mouse click adds too
        if event.option.id:
            self.sessions.add_test(event.option.id)


class SessionEditor(Vertical):
    DEFAULT_CSS = """
    SessionEditor { height: 1fr; }
    SessionEditor #sessions-output-row { height: 1; margin: 0 1 1 1; }
    SessionEditor #sessions-output-row Label { width: 17; }
    SessionEditor #sessions-output { width: 1fr; }
    SessionEditor .column { height: 1fr; }
    SessionEditor .column Label { text-style: bold; padding: 0 1; width: 1fr; }
    SessionEditor #names-column { width: 18; }
    SessionEditor OptionList { height: 1fr; border: none; }
    SessionEditor OptionList:focus { background: $boost; }
    """

    @dataclass
    class Edited(Message):
        """The user changed the sessions (so the campaign's sessions no longer replace them)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.plan = SessionPlan()
        self.current: str | None = None
        self.available: dict[str, list[str]] = {}
        self.scripts_folder: Path | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(id="sessions-output-row"):
            yield Label("Sessions folder")
            yield Input("sessions", id="sessions-output", compact=True,
                        placeholder="relative to the campaign's folder")
        with Horizontal():
            with Vertical(classes="column", id="names-column"):
                yield Label("Sessions")
                yield SessionNames(id="session-names")
            with Vertical(classes="column"):
                yield Label("Tests, in order", id="session-title")
                yield SessionTests(id="session-tests")
            with Vertical(classes="column"):
                yield Label("Scripts", id="available-title")
                yield AvailableScripts(id="available-scripts")

    def on_mount(self) -> None:
        self.query_one("#sessions-output", Input).cursor_blink = not self.app.is_headless

    # -- showing --------------------------------------------------------------------------------
    def set_plan(self, plan: SessionPlan) -> None:
        self.plan = plan
        names = plan.names()
        self.current = self.current if self.current in names else (names[0] if names else None)
        self.refresh_lists()

    def set_available(self, folder: Path, scripts: dict[str, list[str]]) -> None:
        self.scripts_folder, self.available = folder, scripts
        self.refresh_lists()

    def refresh_lists(self, test_index: int | None = None) -> None:
        names = self.query_one(SessionNames)
        names.set_options([Option(Text.assemble(name, (f"  {len(tests)}", "dim")), id=name)
                           for name, tests in self.plan.sessions.items()])
        if self.current is not None:
            names.highlighted = self.plan.names().index(self.current)
        tests = self.query_one(SessionTests)
        in_session = self.plan.sessions.get(self.current or "", [])
        tests.set_options([Option(self._test_prompt(i, t), id=f"{i}") for i, t in enumerate(in_session)])
        if in_session:
            tests.highlighted = min(test_index if test_index is not None else 0, len(in_session) - 1)
        self.query_one("#session-title", Label).update(
            f"Tests of {self.current}, in order" if self.current else "Tests (add a session with n)")
        available = self.query_one(AvailableScripts)
        highlighted = available.highlighted
        available.set_options([Option(self._available_prompt(test, files, test in in_session), id=test)
                               for test, files in self.available.items()])
        if self.available:
            available.highlighted = min(highlighted or 0, len(self.available) - 1)
        folder = self.scripts_folder.name if self.scripts_folder else "?"
        title = f"Scripts in {folder}/" if self.available else f"No scripts in {folder}/ yet: write them (w)"
        self.query_one("#available-title", Label).update(title)

    def _test_prompt(self, index: int, test: str) -> Text:
        text = Text.assemble((f"{index + 1:>2}. ", "dim"), test)
        if self.available and test not in self.available:
            text.append("  no script", style="bold red")
        return text

    @staticmethod
    def _available_prompt(test: str, files: list[str], used: bool) -> Text:
        text = Text(test, style="dim" if used else "")
        if used:
            text.append("  in session", style="dim italic")
        if len(files) > 1:
            text.append(f"  {len(files)} scripts!", style="bold red")
        return text

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if not isinstance(event.option_list, SessionNames):
            return
        # the list's state now, not the event's: refreshing the list queues stale highlight events
        option = event.option_list.highlighted_option
        if option is not None and option.id != self.current:
            self.current = option.id
            self.refresh_lists()

    # -- editing --------------------------------------------------------------------------------
    def _edited(self, test_index: int | None = None) -> None:
        self.refresh_lists(test_index)
        self.post_message(self.Edited())

    def ask_new_session(self) -> None:
        def named(name: str | None) -> None:
            if name:
                self.plan.add(name)
                self.current = name
                self._edited()
                self.query_one(AvailableScripts).focus()

        suggestion = _next_name(self.plan.names())
        self.app.push_screen(TextPrompt("New session", suggestion, ok="Add",
                                        hint="a folder name, e.g. D00, D11, D12, D21",
                                        check=self.plan.name_problem), named)

    def ask_rename_session(self) -> None:
        old = self.current
        if old is None:
            self.notify("no session to rename: n adds one", severity="warning")
            return

        def named(name: str | None) -> None:
            if name and name != old:
                self.plan.rename(old, name)
                self.current = name
                self._edited()

        self.app.push_screen(TextPrompt(f"Rename session {old}", old, ok="Rename",
                                        check=lambda n: self.plan.name_problem(n, renaming=old)), named)

    def ask_remove_session(self) -> None:
        name = self.current
        if name is None:
            return

        def remove(yes: bool | None = True) -> None:
            if yes:
                self.plan.remove(name)
                self.current = None
                self.set_plan(self.plan)
                self.post_message(self.Edited())

        tests = self.plan.sessions[name]
        if tests:
            self.app.push_screen(ConfirmDialog(f"Remove session {name}?",
                                               f"It lists {len(tests)} test(s): {', '.join(tests)}.",
                                               yes="Remove"), remove)
        else:
            remove()

    def add_test(self, test: str) -> None:
        if self.current is None:
            self.notify("no session yet: n (in the sessions list) adds one", severity="warning")
            return
        tests_list = self.query_one(SessionTests)
        after = tests_list.highlighted if tests_list.option_count else None
        try:
            position = self.plan.add_test(self.current, test, after)
        except ValueError as exc:
            self.notify(str(exc), severity="warning")
            return
        self._edited(position)

    def remove_test(self, index: int | None) -> None:
        if self.current is None or index is None or not self.plan.sessions[self.current]:
            return
        self.plan.remove_test(self.current, index)
        self._edited(max(0, index - 1) if index >= len(self.plan.sessions[self.current]) else index)

    def move_test(self, index: int | None, delta: int) -> None:
        if self.current is None or index is None or not self.plan.sessions[self.current]:
            return
        self._edited(self.plan.move_test(self.current, index, delta))

    @property
    def output_text(self) -> str:
        return self.query_one("#sessions-output", Input).value


def _next_name(existing: list[str]) -> str:
    for candidate in ("D00", "D11", "D12", "D21", "D22", "D31", "D32"):
        if candidate not in existing:
            return candidate
    return f"D{len(existing) + 1:02d}"
