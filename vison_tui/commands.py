"""The command palette's entries (ctrl+p): every screen, and every action of the current screen,
its widgets and the app, named as in the help screen and run in the right place."""

from __future__ import annotations

from typing import Iterable

from textual.app import App, SystemCommand
from textual.screen import Screen

from .keys import key_actions


def vison_commands(app: App, screen: Screen, entries: Iterable) -> Iterable[SystemCommand]:
    for entry in entries:
        yield SystemCommand(f"Go to {entry.title}", f"key {entry.key}: {entry.purpose}",
                            lambda mode=entry.mode: app.switch_mode(mode))
    seen = set()
    for action in key_actions(app, screen):
        if action.navigation or action.action.startswith("switch_mode") or (action.group, action.action) in seen:
            continue
        seen.add((action.group, action.action))
        help_text = f"key {' / '.join(action.keys)}" + (f": {action.help}" if action.help else "")
        yield SystemCommand(f"{action.group}: {action.description}", help_text,
                            lambda a=action: app.run_action(a.action, a.node))
