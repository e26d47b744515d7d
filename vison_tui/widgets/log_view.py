"""The lines of a (possibly huge, growing) log, drawn with Textual's line API: only the lines on
screen are read (`LogIndex.line`, cached), so a 1 GB log scrolls like a 1 kB one.

Colours follow the pipeline log's meaning: errors and tracebacks red, warnings yellow, raised
flags magenta, "Running Task" lines cyan, summary rules dim; search matches are marked and the
current line (a search hit, a jump target) has a bar.

Follow mode keeps the end in view as lines arrive; scrolling up turns it off, the bottom (G)
turns it back on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from ..keys import NAVIGATION
from ..log_file import LogIndex

KIND_STYLES = {
    "error": Style(color="red", bold=True),
    "warning": Style(color="yellow"),
    "flags": Style(color="magenta", bold=True),
    "task": Style(color="cyan", bold=True),
    "rule": Style(dim=True),
    "plain": Style(),
}
MATCH_STYLE = Style(color="black", bgcolor="yellow")
CURRENT_STYLE = Style(bgcolor="grey27")


class LogView(ScrollView, can_focus=True):
    HELP_GROUP = "Log lines"
    BINDINGS = [
        Binding("g", "scroll_home", "Top", show=False, group=NAVIGATION),
        Binding("G", "scroll_end", "Bottom (follow)", show=False, group=NAVIGATION),
        Binding("k", "scroll_up", "Line up", show=False, group=NAVIGATION),
        Binding("j", "scroll_down", "Line down", show=False, group=NAVIGATION),
        Binding("b", "page_up", "Page up", show=False, group=NAVIGATION),
        Binding("space", "page_down", "Page down", show=False, group=NAVIGATION),
    ]
    DEFAULT_CSS = """
    LogView { background: $surface; }
    LogView:focus { background-tint: $foreground 3%; }
    """

    follow = reactive(True)
    current = reactive(-1)  # the highlighted line; -1: none

    @dataclass
    class FollowChanged(Message):
        follow: bool

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.index = LogIndex()
        self.pattern: re.Pattern[str] | None = None
        self.max_width = 0
        self.empty_text = "no log"

    # -- content --------------------------------------------------------------------------------
    def set_index(self, index: LogIndex, empty_text: str = "no log") -> None:
        self.index = index
        self.empty_text = empty_text
        self.max_width = 0
        self.current = -1
        self.lines_changed()

    def lines_changed(self, prepended: int = 0) -> None:
        """New lines were indexed (`prepended` of them before the ones already shown)."""
        self.virtual_size = Size(max(self.max_width + 1, 1), max(self.index.line_count, 1))
        if prepended:
            if self.current >= 0:
                self.current += prepended
            if not self.follow:
                self.scroll_to(y=self.scroll_y + prepended, animate=False, immediate=True)
        if self.follow:
            # after the new virtual size is laid out: before it, the end is not reachable
            self.call_after_refresh(self.scroll_end, animate=False, immediate=True, x_axis=False)
        self.refresh()

    def set_pattern(self, pattern: str) -> None:
        self.pattern = re.compile(re.escape(pattern), re.IGNORECASE) if pattern else None
        self.refresh()

    # -- moving ---------------------------------------------------------------------------------
    def go_to_line(self, line: int) -> None:
        """Show a line a third down the view, highlighted; follow mode ends."""
        if not 0 <= line < self.index.line_count:
            return
        self.follow = False
        self.current = line
        self.scroll_to(y=max(0, line - self.scrollable_content_region.height // 3), animate=False, immediate=True)
        self.refresh()

    @property
    def top_line(self) -> int:
        return int(self.scroll_y)

    def watch_follow(self, follow: bool) -> None:
        if follow:
            self.lines_changed()
        self.post_message(self.FollowChanged(follow))

    def watch_current(self) -> None:
        self.refresh()

    def action_scroll_up(self) -> None:
        self.follow = False
        super().action_scroll_up()

    def action_page_up(self) -> None:
        self.follow = False
        super().action_page_up()

    def action_scroll_home(self) -> None:
        self.follow = False
        super().action_scroll_home()

    def action_scroll_end(self) -> None:
        self.follow = True

    def on_mouse_scroll_up(self) -> None:
        self.follow = False

    # -- drawing --------------------------------------------------------------------------------
    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        base = self.rich_style
        index = self.index
        if index.line_count == 0:
            if y == 0:
                return Strip([*Text(self.empty_text, style="dim italic").render(self.app.console)]).crop_extend(
                    0, width, base)
            return Strip.blank(width, base)
        number = int(self.scroll_y) + y
        if number >= index.line_count:
            return Strip.blank(width, base)
        text = self.styled_line(number)
        if text.cell_len > self.max_width:
            self.max_width = text.cell_len
            self.call_later(self._grow_width)
        scroll_x = int(self.scroll_x)
        strip = Strip(list(text.render(self.app.console)), text.cell_len)
        line_style = base + CURRENT_STYLE if number == self.current else base
        return strip.crop_extend(scroll_x, scroll_x + width, line_style).apply_style(line_style)

    def styled_line(self, number: int) -> Text:
        line = self.index.line(number)
        text = Text(line, style=KIND_STYLES[self.index.kind(number)], no_wrap=True, end="")
        if self.pattern is not None:
            for match in self.pattern.finditer(line):
                text.stylize(MATCH_STYLE, match.start(), match.end())
        if number == self.current:
            text.stylize(CURRENT_STYLE)
        return text

    def _grow_width(self) -> None:
        self.virtual_size = Size(self.max_width + 1, max(self.index.line_count, 1))
