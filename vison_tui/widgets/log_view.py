"""The lines of a (possibly huge, growing) log, drawn with Textual's line API: only the lines on
screen are read (`LogIndex.line`, cached), so a 1 GB log scrolls like a 1 kB one.

Colours follow the pipeline log's meaning: errors and tracebacks red, warnings yellow, raised
flags magenta, "Running Task" lines cyan, summary rules dim; search matches are marked and the
current line (a search hit, a jump target) has a bar.

Follow mode keeps the end in view as lines arrive; scrolling up turns it off, the bottom (G)
turns it back on.

Two ways of showing fewer or more: `kept_lines` (the line numbers a level filter keeps, None: all)
and `wrap` (long lines folded to the width; the view then scrolls by lines, not rows).
Scroll positions count shown lines; `current`, `top_line` and `go_to_line` speak file lines.

The current line is marked with a background of the 16 ANSI colours (a 256-colour grey turned
the search match on it into colour 234 on 238): matches are drawn over it, black on yellow.
"""

from __future__ import annotations

import re
from bisect import bisect_left
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
MATCH_STYLE = Style(color="black", bgcolor="yellow", bold=True)  # 16-colour names: never downgraded to greys
CURRENT_STYLE = Style(bgcolor="blue")


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
    wrap = reactive(False)  # long lines folded to the width

    @dataclass
    class FollowChanged(Message):
        follow: bool

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.index = LogIndex()
        self.pattern: re.Pattern[str] | None = None
        self.max_width = 0
        self.empty_text = "no log"
        self.kept_lines: list[int] | None = None  # the lines a level filter keeps, in order; None: every line
        self._rows: tuple[tuple, list[tuple[int, int]]] | None = None  # wrap mode: (key, [(line, first cell)])

    # -- shown lines ----------------------------------------------------------------------------
    @property
    def shown_count(self) -> int:
        return self.index.line_count if self.kept_lines is None else len(self.kept_lines)

    def line_at(self, position: int) -> int:
        """The file line shown at a scroll position."""
        return position if self.kept_lines is None else self.kept_lines[position]

    def position_of(self, line: int) -> int:
        """The scroll position of a line (the next shown one if the filter hides it)."""
        if self.kept_lines is None:
            return line
        return min(bisect_left(self.kept_lines, line), max(len(self.kept_lines) - 1, 0))

    def set_visible(self, lines: list[int] | None) -> None:
        """Show only these lines (a level filter), or every line (None)."""
        keep = self.current if self.current >= 0 else (self.top_line if self.shown_count else -1)
        self.kept_lines = lines
        self.lines_changed()
        if keep >= 0 and not self.follow:
            self.scroll_to(y=max(0, self.position_of(keep) - self.scrollable_content_region.height // 3),
                           animate=False, immediate=True)

    def watch_wrap(self) -> None:
        self._rows = None
        self.lines_changed()
    # -- content --------------------------------------------------------------------------------
    def set_index(self, index: LogIndex, empty_text: str = "no log") -> None:
        self.index = index
        self.empty_text = empty_text
        self.max_width = 0
        self.kept_lines = None  # a level filter is applied again by the screen once lines are indexed
        self.current = -1
        self.lines_changed()

    def lines_changed(self, prepended: int = 0) -> None:
        """New lines were indexed (`prepended` of them before the ones already shown)."""
        self._rows = None
        if prepended and self.kept_lines is not None:
            self.kept_lines = [line + prepended for line in self.kept_lines]
        width = self.scrollable_content_region.width if self.wrap else self.max_width + 1
        self.virtual_size = Size(max(width, 1), max(self.shown_count, 1))
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
        self.scroll_to(y=max(0, self.position_of(line) - self.scrollable_content_region.height // 3),
                       animate=False, immediate=True)
        self.refresh()

    @property
    def top_line(self) -> int:
        """The file line at the top of the view."""
        if not self.shown_count:
            return 0
        if self.wrap:
            rows = self.wrapped_rows()
            return rows[0][0] if rows else 0
        return self.line_at(min(int(self.scroll_y), self.shown_count - 1))

    @property
    def bottom_line(self) -> int:
        """The file line at the bottom of the view."""
        if not self.shown_count:
            return 0
        if self.wrap:
            rows = self.wrapped_rows()
            return rows[-1][0] if rows else 0
        return self.line_at(min(int(self.scroll_y) + self.scrollable_content_region.height, self.shown_count) - 1)

    def in_view(self, line: int) -> bool:
        if line < 0 or not self.shown_count or not self.top_line <= line <= self.bottom_line:
            return False
        return self.kept_lines is None or self.kept_lines[self.position_of(line)] == line

    def watch_follow(self, follow: bool) -> None:
        if follow:
            self.lines_changed()
        self.post_message(self.FollowChanged(follow))

    def watch_current(self) -> None:
        self.refresh()

    def on_resize(self) -> None:
        if self.wrap:
            self.lines_changed()

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
        if self.shown_count == 0:
            if y == 0:
                empty = self.empty_text if index.line_count == 0 else "no line of these levels (l: the next level)"
                return Strip([*Text(empty, style="dim italic").render(self.app.console)]).crop_extend(
                    0, width, base)
            return Strip.blank(width, base)
        if self.wrap:
            rows = self.wrapped_rows()
            if y >= len(rows):
                return Strip.blank(width, base)
            number, scroll_x = rows[y]
            text = self.styled_line(number)
        else:
            position = int(self.scroll_y) + y
            if position >= self.shown_count:
                return Strip.blank(width, base)
            number = self.line_at(position)
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
        if number == self.current:
            text.stylize(CURRENT_STYLE)  # first: the matches are drawn over the bar, not under it
        if self.pattern is not None:
            for match in self.pattern.finditer(line):
                text.stylize(MATCH_STYLE, match.start(), match.end())
        return text

    def wrapped_rows(self) -> list[tuple[int, int]]:
        """Wrap mode: (file line, first cell) of each row in view. From the scroll position down,
        or, following (or scrolled to the end), from the last line up so the end is always shown."""
        width = max(self.scrollable_content_region.width, 1)
        height = self.scrollable_content_region.height
        count = self.shown_count
        top = int(self.scroll_y)
        at_end = self.follow or top >= count - height
        key = (id(self.index), count, width, height, top if not at_end else -1, id(self.kept_lines))
        if self._rows is not None and self._rows[0] == key:
            return self._rows[1]

        def pieces(position: int) -> list[tuple[int, int]]:
            line = self.line_at(position)
            cells = Text(self.index.line(line)).cell_len
            return [(line, start) for start in range(0, max(cells, 1), width)]

        rows: list[tuple[int, int]] = []
        if at_end:
            position = count - 1
            while position >= 0 and len(rows) < height:
                rows[:0] = pieces(position)
                position -= 1
            rows = rows[-height:] if height else []
        else:
            position = top
            while position < count and len(rows) < height:
                rows += pieces(position)
                position += 1
            rows = rows[:height]
        self._rows = (key, rows)
        return rows

    def _grow_width(self) -> None:
        if not self.wrap:
            self.virtual_size = Size(self.max_width + 1, max(self.shown_count, 1))
