"""`?` or F1: the keys of the current screen, its widgets and the whole app, read from the bindings."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

from ..keys import key_actions

GENERAL_NOTES = (
    "Tab / shift+tab move between panels; the footer shows the keys of the focused panel.\n"
    "Letter and number keys are typed into text fields (the campaign editor too): leave a field with tab\n"
    "or escape first, or press ctrl+g then a screen's key (1-8) or ?: that works from everywhere.\n"
    "ctrl+p opens the command palette: every action of every screen, searchable by name."
)


class HelpScreen(ModalScreen[None]):
    HELP_GROUP = "Help"
    BINDINGS = [Binding("escape,q,question_mark,f1,enter", "dismiss", "Close help")]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > Vertical {
        width: 90; max-width: 98%; height: 90%;
        border: thick $primary; background: $surface; padding: 0 1;
    }
    HelpScreen VerticalScroll { height: 1fr; }
    HelpScreen .notes { color: $text-muted; margin-bottom: 1; }
    HelpScreen .close { dock: bottom; height: 1; color: $text-muted; text-align: center; }
    """

    def __init__(self, for_screen: Screen) -> None:
        super().__init__()
        self.for_screen = for_screen

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("q, escape, ? or enter: close", classes="close")
            with VerticalScroll(id="help-body"):
                yield Static(GENERAL_NOTES, classes="notes", markup=False)
                yield Static(self.keys_tables())

    def on_mount(self) -> None:
        self.query_one("#help-body").focus()

    def keys_tables(self) -> Group:
        """One titled table per group: the screen, each kind of panel, then the whole app."""
        parts: list = []
        table = None
        group = None
        for entry in key_actions(self.app, self.for_screen):
            if entry.group != group:
                group = entry.group
                parts.append(Text(group, style="bold underline"))
                table = Table(box=None, expand=True, show_header=False, padding=(0, 1, 0, 2))
                table.add_column("key", style="bold", width=16, no_wrap=True)
                table.add_column("action", ratio=1)
                parts.append(table)
            description = entry.description + (f" — {entry.help}" if entry.help else "")
            table.add_row(" / ".join(entry.keys), description)
        return Group(*parts)

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(None)
