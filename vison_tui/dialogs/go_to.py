"""ctrl+g from anywhere, text fields and the campaign editor included: the screens with their keys
(a screen's key or enter goes there, ? or F1 the help). Nothing typed here ever reaches a file being edited.
Returns a screen's mode, "help", or None."""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding

from .choose import ChooseDialog


class GoToDialog(ChooseDialog):
    HELP_GROUP = "Go to"
    BINDINGS = [
        Binding("question_mark,f1", "choose('help')", "Help"),
    ]

    def __init__(self, entries, current: str | None = None) -> None:
        options: list[tuple[Text | str, str]] = [
            (Text.assemble((f" {entry.key} ", "bold reverse"), f"  {entry.title}", (f" — {entry.purpose}", "dim")),
             entry.mode) for entry in entries]
        options.append((Text.assemble((" ? ", "bold reverse"), "  Help", (" — every key of this screen", "dim")),
                        "help"))
        super().__init__("Go to (ctrl+g works everywhere, also while editing)", options, current)
        self.entries = tuple(entries)

    async def on_key(self, event) -> None:
        for entry in self.entries:
            if event.key == entry.key:
                event.stop()
                self.dismiss(entry.mode)
                return

    def action_choose(self, value: str) -> None:
        self.dismiss(value)
