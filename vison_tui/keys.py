"""Every key of a screen, gathered from the BINDINGS of the app, the screen and its widgets.

The help screen and the command palette both read this, so neither can drift from the real keys.
Only bindings declared in vison_tui classes are gathered (Textual's own cursor keys are not ours).
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.app import App
from textual.binding import Binding
from textual.dom import DOMNode
from textual.screen import Screen


# Marks bindings that only move the focus or the cursor: listed in the help, left out of the palette.
NAVIGATION = Binding.Group("Move")


@dataclass(frozen=True)
class KeyAction:
    group: str
    keys: tuple[str, ...]  # as displayed: "^s", "y", "?"
    description: str
    action: str
    node: DOMNode
    help: str = ""
    navigation: bool = False


def own_bindings(node: DOMNode | type) -> list[Binding]:
    """Bindings declared by the node's (or class's) vison_tui classes, most derived first."""
    found: list[Binding] = []
    for cls in (node if isinstance(node, type) else type(node)).__mro__:
        if cls.__module__.startswith("vison_tui") and "BINDINGS" in cls.__dict__:
            found += list(Binding.make_bindings(cls.__dict__["BINDINGS"]))
    return found


def group_name(node: DOMNode, default: str) -> str:
    return getattr(node, "HELP_GROUP", None) or default


def _actions_of(app: App, node: DOMNode | type, group: str) -> list[KeyAction]:
    by_action: dict[str, list[Binding]] = {}
    for binding in own_bindings(node):
        by_action.setdefault(binding.action, []).append(binding)
    actions = []
    for action, bindings in by_action.items():
        keys = tuple(dict.fromkeys(app.get_key_display(b) for b in bindings))
        first = bindings[0]
        description = next((b.description for b in bindings if b.description), action)
        actions.append(KeyAction(group, keys, description, action, node, first.tooltip,
                                 navigation=first.group is NAVIGATION))
    return actions


def key_actions(app: App, screen: Screen) -> list[KeyAction]:
    """The screen's own keys and its widgets' (in layout order), then the app's."""
    actions = _actions_of(app, screen, group_name(screen, "This screen"))
    seen_classes: set[type] = {type(screen)}
    for widget in screen.walk_children(with_self=False):
        # one entry per widget class: two lists of the same kind have the same keys
        if type(widget) in seen_classes or not own_bindings(widget):
            continue
        seen_classes.add(type(widget))
        actions += _actions_of(app, widget, group_name(widget, type(widget).__name__))
    actions += _actions_of(app, app, "Everywhere")
    return actions


def screen_class_actions(app: App, screen_class: type[Screen]) -> list[KeyAction]:
    """The keys of a screen not made yet (its own BINDINGS; its widgets' once it exists).
    `node` is the class: run the action on the screen once it is shown."""
    return _actions_of(app, screen_class, group_name(screen_class, "This screen"))
