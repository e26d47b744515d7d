"""A titled, bordered part of a screen. Its border lights up while something in it has the focus,
and a screen's zoom key (z) can show it alone: small terminals see one panel at full size."""

from __future__ import annotations

from textual.containers import Vertical
from textual.screen import Screen


class Panel(Vertical):
    ALLOW_MAXIMIZE = True  # Screen.maximize(focused widget) zooms the whole panel, title included
    DEFAULT_CSS = """
    Panel { height: 1fr; border: round $panel-lighten-2; border-title-color: $text-muted; padding: 0; }
    Panel:focus-within { border: round $accent; border-title-color: $text; border-title-style: bold; }
    """

    def __init__(self, *children, title: str = "", **kwargs) -> None:
        super().__init__(*children, **kwargs)
        self.border_title = title


def toggle_zoom(screen: Screen) -> None:
    """Show the panel holding the focus alone, or come back from it. (Screen.maximize would refuse
    a scrolling widget and never look for its panel.)"""
    if screen.maximized is not None:
        screen.minimize()
        return
    focused = screen.focused
    panel = next((node for node in focused.ancestors_with_self if isinstance(node, Panel)), None) if focused else None
    if panel is not None:
        screen.maximize(panel, container=False)
