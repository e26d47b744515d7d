"""A log of what the engine did or refused on this screen: written inventories, errors as messages."""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.widgets import RichLog


class MessagePanel(RichLog):
    HELP_GROUP = "Messages"
    BINDINGS = [Binding("c", "clear_messages", "Clear messages")]
    DEFAULT_CSS = """
    MessagePanel { height: 20%; min-height: 4; max-height: 10; border-top: hkey $panel-lighten-2; background: $surface; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(wrap=True, markup=False, highlight=False, **kwargs)

    def on_mount(self) -> None:
        self.write(Text("Messages: what writing scripts and building sessions did, or why not.", style="dim"))

    def info(self, title: str, body: str = "") -> None:
        self.write(Text(title, style="bold green"))
        if body:
            self.write(Text(body.rstrip("\n")))

    def error(self, title: str, lines: list[str]) -> None:
        self.write(Text(f"✗ {title}", style="bold red"))
        for line in lines:
            self.write(Text(f"  {line}", style="red"))

    def action_clear_messages(self) -> None:
        self.clear()
