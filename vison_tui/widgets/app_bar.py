"""The top line of every screen: the screens (current one highlighted) and the open campaign."""

from __future__ import annotations

import os
from pathlib import Path

from rich.text import Text
from textual.widgets import Input, Static, TextArea


def display_path(path: Path | None) -> str:
    """A path as users read it: relative to the working folder when inside it, ~ for home."""
    if path is None:
        return "no campaign open"
    path = Path(os.path.abspath(path))
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        pass
    home = Path.home()
    try:
        return "~/" + str(path.relative_to(home))
    except ValueError:
        return str(path)


class AppBar(Static):
    DEFAULT_CSS = """
    AppBar {
        dock: top;
        height: 1;
        background: $panel;
        color: $text;
    }
    """

    def on_mount(self) -> None:
        self.watch(self.app, "campaign_path", lambda _: self.refresh())
        self.watch(self.app, "unsaved", lambda _: self.refresh())
        self.watch(self.screen, "focused", lambda _: self.refresh())

    def update_bar(self) -> None:
        self.refresh()

    def render(self) -> Text:
        """Screens, campaign, help hint; shortened in narrow terminals rather than cut."""
        app = self.app
        width = self.size.width
        # in a text field (the campaign editor too) ? and the screen keys are typed: ctrl+g is the way out
        typing = isinstance(self.screen.focused, (Input, TextArea))
        hint = Text("^g go  ^p commands " if typing else "? help  ^p commands ", style="dim")
        status = Text("  ● modified", style="bold yellow") if app.unsaved else Text("")
        path = display_path(app.campaign_path)
        for short in (False, True):
            text = Text(" vison ", style="bold reverse")
            for entry in app.screen_entries:
                current = entry.shows(self.screen)
                text.append(f" {entry.key} {entry.short if short else entry.title} ",
                            style="bold reverse" if current else "dim")
            text.append("  ")
            room = width - text.cell_len - status.cell_len - hint.cell_len
            if len(path) <= room or short:
                break
        shown = path if len(path) <= room else "…" + path[-max(room - 1, 8):]
        text.append(shown, style="bold" if app.campaign_path else "dim italic")
        text.append_text(status)
        gap = width - text.cell_len - hint.cell_len
        if gap >= 1:
            text.append(" " * gap)
            text.append_text(hint)
        text.truncate(width, overflow="ellipsis")
        return text
