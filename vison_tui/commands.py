"""The command palette's entries (ctrl+p): every screen, every action of the current screen, its
widgets and the app, then the actions of the other screens (choosing one goes to its screen first),
named as in the help screen and run in the right place."""

from __future__ import annotations

from typing import Iterable

from textual.app import App, SystemCommand
from textual.screen import Screen

from .keys import key_actions, screen_class_actions


def _help_text(action, where: str = "") -> str:
    return f"{where}key {' / '.join(action.keys)}" + (f": {action.help}" if action.help else "")


def vison_commands(app: App, screen: Screen, entries: Iterable) -> Iterable[SystemCommand]:
    entries = tuple(entries)
    for entry in entries:
        yield SystemCommand(f"Go to {entry.title}", f"key {entry.key}: {entry.purpose}",
                            lambda mode=entry.mode: app.switch_mode(mode))
    seen = set()
    for action in key_actions(app, screen):
        if action.navigation or action.action.startswith("switch_mode") or (action.group, action.action) in seen:
            continue
        seen.add((action.group, action.action))
        yield SystemCommand(f"{action.group}: {action.description}", _help_text(action),
                            lambda a=action: app.run_action(a.action, a.node))
    # the other screens: as made (with their widgets' keys), else their own keys from the class
    for entry in entries:
        if entry.shows(screen):
            continue
        stack = app._screen_stacks.get(entry.mode) or []
        made = stack[0] if stack else None
        actions = key_actions(app, made) if made is not None else screen_class_actions(app, entry.load())
        for action in actions:
            if action.navigation or action.group == "Everywhere" or (action.group, action.action) in seen:
                continue
            seen.add((action.group, action.action))
            yield SystemCommand(f"{action.group}: {action.description}",
                                _help_text(action, f"{entry.title} screen, "),
                                lambda a=action, mode=entry.mode: _run_on(app, mode, a))


def _run_on(app: App, mode: str, action) -> None:
    """Go to the action's screen, then run it there (on the widget it belongs to, once shown)."""
    app.switch_mode(mode)

    def run():
        node = app.screen if isinstance(action.node, type) else action.node
        return app.run_action(action.action, node)  # a coroutine: call_after_refresh awaits it

    app.call_after_refresh(run)
