"""Ask for one line of text (a path, a session name) in a modal dialog; returns it, or None."""

from __future__ import annotations

from typing import Callable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static


class TextPrompt(ModalScreen["str | None"]):
    """Enter accepts; escape, or tab to Cancel then enter, gives up. `check` returns a reason to refuse."""

    HELP_GROUP = "Question"
    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = """
    TextPrompt { align: center middle; }
    TextPrompt > Vertical {
        width: 80; max-width: 95%; height: auto;
        border: thick $primary; background: $surface; padding: 1 2;
    }
    TextPrompt .title { text-style: bold; }
    TextPrompt .hint { color: $text-muted; }
    TextPrompt .error { color: $error; height: auto; }
    TextPrompt Horizontal { height: auto; align-horizontal: right; }
    TextPrompt Button { margin-left: 2; }
    """

    def __init__(self, title: str, value: str = "", hint: str = "", ok: str = "OK",
                 check: Callable[[str], str | None] | None = None) -> None:
        super().__init__()
        self.title_text, self.value, self.hint, self.ok, self.check = title, value, hint, ok, check

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.title_text, classes="title", markup=False)
            if self.hint:
                yield Static(self.hint, classes="hint", markup=False)
            yield Input(self.value, id="answer")
            yield Static("", classes="error", id="error", markup=False)
            with Horizontal():
                yield Button(f"{self.ok} (enter)", id="ok", variant="primary")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        answer = self.query_one("#answer", Input)
        answer.cursor_blink = not self.app.is_headless
        answer.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.accept(event.value)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "ok":
            self.accept(self.query_one("#answer", Input).value)
        else:
            self.dismiss(None)

    def accept(self, value: str) -> None:
        value = value.strip()
        reason = self.check(value) if self.check else (None if value else "give a value")
        if reason:
            self.query_one("#error", Static).update(reason)
            return
        self.dismiss(value)

    def action_cancel(self) -> None:
        self.dismiss(None)
