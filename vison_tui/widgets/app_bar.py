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
        hints = (["^g go  ^p commands ", "^g go "] if typing else ["? help  ^p commands ", "? help "]) + [""]
        status = Text("  ● modified", style="bold yellow") if app.unsaved else Text("")
        path = display_path(app.campaign_path)
        name = os.path.basename(path) if app.campaign_path else path

        def bar(style: str) -> Text:
            text = Text(" vison ", style="bold reverse")
            for entry in app.screen_entries:
                current = entry.shows(self.screen)
                label = {"full": entry.title, "short": entry.short}.get(style, entry.short if current else "")
                text.append(f" {entry.key}{' ' + label if label else ''} ", style="bold reverse" if current else "dim")
            text.append("  ")
            return text

        # the widest layout where the whole path (else the file name) and a help hint fit, in this order:
        # full titles, short titles, only the current screen's title; the hint shortened last
        choice = None
        for wanted in (path, name):
            for style in ("full", "short", "keys"):
                for hint_text in hints[:2]:
                    text = bar(style)
                    if text.cell_len + len(wanted) + status.cell_len + len(hint_text) <= width:
                        choice = (text, hint_text)
                        break
                if choice:
                    break
            if choice:
                break
        if choice is None:
            choice = (bar("keys"), "")
        text, hint_text = choice
        hint = Text(hint_text, style="dim")
        room = width - text.cell_len - status.cell_len - hint.cell_len
        shown = path if len(path) <= room else ("…" + path[-max(room - 1, 8):] if room > len(name) else name)
        text.append(shown, style="bold" if app.campaign_path else "dim italic")
        text.append_text(status)
        gap = width - text.cell_len - hint.cell_len
        if gap >= 1:
            text.append(" " * gap)
            text.append_text(hint)
        text.truncate(width, overflow="ellipsis")
        return text
