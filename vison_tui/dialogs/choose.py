"""Choose one item from a list in a modal dialog (a run, a file); returns its value, or None."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option


class ChooseDialog(ModalScreen["str | None"]):
    """Enter chooses; escape or q gives up. Up/down (or j/k) move."""

    HELP_GROUP = "Choose"
    BINDINGS = [
        Binding("escape,q", "cancel", "Cancel"),
        Binding("j", "move(1)", "Down", show=False),
        Binding("k", "move(-1)", "Up", show=False),
    ]
    DEFAULT_CSS = """
    ChooseDialog { align: center middle; }
    ChooseDialog > Vertical {
        width: 100; max-width: 98%; height: auto; max-height: 90%;
        border: thick $primary; background: $surface; padding: 0 1;
    }
    ChooseDialog .title { text-style: bold; }
    ChooseDialog .hint { color: $text-muted; }
    ChooseDialog OptionList { height: auto; max-height: 30; border: none; }
    """

    def __init__(self, title: str, options: list[tuple["str | Text", str]], current: str | None = None) -> None:
        super().__init__()
        self.title_text = title
        self.options = options
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.title_text, classes="title", markup=False)
            yield Static("enter: choose · escape or q: cancel", classes="hint", markup=False)
            yield OptionList(*[Option(label, id=value) for label, value in self.options], id="choices")

    def on_mount(self) -> None:
        choices = self.query_one(OptionList)
        choices.focus()
        values = [value for _, value in self.options]
        if self.current in values:
            choices.highlighted = values.index(self.current)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(event.option.id)

    def action_move(self, step: int) -> None:
        choices = self.query_one(OptionList)
        choices.action_cursor_down() if step > 0 else choices.action_cursor_up()

    def action_cancel(self) -> None:
        self.dismiss(None)
