"""HK keys as sparklines, one line each, coloured by their limit status; keys out of limits first.

The rows are a fixed pool reused in display order (row i shows the i-th key), so a re-sort at each
snapshot only changes texts and data, never the widget tree. A cursor (up/down) picks a key; the
line under the list tells its latest value, range, limits and, when out, the reason.
"""

from __future__ import annotations

import math
from statistics import median
from typing import Iterable, Sequence

from rich.color import Color
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import Sparkline, Static

from engine.monitor import KeySummary

from ..keys import NAVIGATION

# what a row says about its key, worst first; "was out": went out of limits and came back
STATUSES = ("critical", "warning", "out", "was out", "ok", "unknown")
MARKS = {"critical": "✗", "warning": "!", "out": "!", "was out": "↺", "ok": "·", "unknown": " "}
STYLES = {"critical": "bold red", "warning": "bold yellow", "out": "yellow", "was out": "dark_orange",
          "ok": "green", "unknown": "dim"}
COMPACT_BELOW = 64  # list width under which the limits column is left out


def key_status(key: KeySummary, was_out: set[str]) -> str:
    if key.status in ("critical", "warning"):
        return key.status
    if key.alert_active:
        return "out"  # its latest samples are back in limits, but not a whole exposure yet
    if key.key in was_out:
        return "was out"
    return key.status if key.status in STATUSES else "unknown"


def out_in_view(keys: Iterable[KeySummary], fixed: set[str]) -> set[str]:
    """Keys with fixed limits whose recent samples went outside them (seen by an earlier monitor
    too: a restarted one is not told again). Limits relative to a commanded value move with the
    test, so only fixed ones can be judged on the series alone."""
    return {k.key for k in keys if k.key in fixed and k.limit and k.minimum is not None and k.maximum is not None
            and (k.minimum < k.limit[0] or k.maximum > k.limit[1])}


def ordered_keys(keys: Iterable[KeySummary], was_out: set[str], name_filter: str = "") -> list[KeySummary]:
    """Keys whose name contains `name_filter` (any case), worst status first, then in the snapshot's
    order (the limits table's: temperatures and voltages before flags)."""
    wanted = name_filter.strip().lower()
    shown = [k for k in keys if wanted in k.key.lower()]
    return sorted(shown, key=lambda k: STATUSES.index(key_status(k, was_out)))


def number(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "?"
    return f"{value:.5g}"


def limit_text(limit: tuple[float, float] | None) -> str:
    if limit is None:
        return ""
    lo, hi = limit
    return f"= {number(lo)}" if lo == hi else f"[{number(lo)}, {number(hi)}]"


def finite(values: Sequence[float]) -> list[float]:
    return [v for v in values if not math.isnan(v)]


def farthest_from(centre: float):
    """A sparkline bucket's value: the one farthest from `centre`, so a one-sample dip to -246 C
    shows however many samples share its column (max would hide a drop)."""
    return lambda bucket: max(bucket, key=lambda v: abs(v - centre))


def blend(low: Color, high: Color, ratio: float) -> Color:
    a, b = low.get_truecolor(), high.get_truecolor()
    return Color.from_rgb(*(x + (y - x) * ratio for x, y in zip(a, b)))


class BandBars:
    """One line of bars on a scale that spans the limits (widened to the data when it goes out), so
    noise well inside the limits draws a calm line and a reading near a limit sits near the edge;
    Textual's own bars stretch any noise to the full height."""

    BARS = "▁▂▃▄▅▆▇█"

    def __init__(self, data: Sequence[float], band: tuple[float, float] | None, width: int, summary, low_color,
                 high_color) -> None:
        self.data, self.band, self.width, self.summary = data, band, width, summary
        self.low_color, self.high_color = low_color, high_color

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = self.width or options.max_width
        if not self.data:
            yield Segment("▁" * width, Style(color=self.low_color))
            return
        low, high = min(self.data), max(self.data)
        if self.band is not None:
            low, high = min(low, self.band[0]), max(high, self.band[1])
        extent = (high - low) or 1.0
        count = len(self.data)
        for column in range(width):
            # the samples under this column (fewer samples than columns: each spans several)
            start = column * count // width
            bucket = self.data[start:max(start + 1, (column + 1) * count // width)]
            ratio = (self.summary(bucket) - low) / extent
            bar = self.BARS[max(0, min(len(self.BARS) - 1, int(ratio * len(self.BARS))))]
            yield Segment(bar, Style(color=blend(self.low_color, self.high_color, ratio)))

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement(self.width or options.max_width, 1)


class BandSparkline(Sparkline):
    """Textual's Sparkline (its colours come from the same CSS component classes), drawn on the
    key's limits: `band` is (lo, hi), or None to scale on the data alone."""

    def __init__(self) -> None:
        super().__init__([])
        self.band: tuple[float, float] | None = None

    def render(self):
        _, base = self.background_colors
        low = base + self.get_component_styles("sparkline--min-color").color
        high = base + self.get_component_styles("sparkline--max-color").color
        return BandBars(self.data or [], self.band, self.size.width, self.summary_function, low.rich_color,
                        high.rich_color)


class HKRow(Horizontal):
    DEFAULT_CSS = """
    HKRow { height: 1; }
    HKRow > .hk-label { width: 46; height: 1; }
    HKRow.-compact > .hk-label { width: 30; }
    HKRow > BandSparkline { width: 1fr; min-width: 6; margin-right: 1; }
    HKRow.-cursor { background: $boost; }
    HKSparklines:focus HKRow.-cursor { background: $accent 35%; }
    HKRow.-critical > BandSparkline > .sparkline--max-color { color: $error; }
    HKRow.-critical > BandSparkline > .sparkline--min-color { color: $error 60%; }
    HKRow.-warning > BandSparkline > .sparkline--max-color { color: $warning; }
    HKRow.-warning > BandSparkline > .sparkline--min-color { color: $warning 60%; }
    HKRow.-out > BandSparkline > .sparkline--max-color { color: $warning; }
    HKRow.-out > BandSparkline > .sparkline--min-color { color: $warning 60%; }
    HKRow.-was-out > BandSparkline > .sparkline--max-color { color: $warning 80%; }
    HKRow.-was-out > BandSparkline > .sparkline--min-color { color: $success 60%; }
    HKRow.-ok > BandSparkline > .sparkline--max-color { color: $success; }
    HKRow.-ok > BandSparkline > .sparkline--min-color { color: $success 50%; }
    HKRow.-unknown > BandSparkline > .sparkline--max-color { color: $text-muted; }
    HKRow.-unknown > BandSparkline > .sparkline--min-color { color: $text-muted; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.key: KeySummary | None = None
        self.status = "unknown"
        self.label = Static("", classes="hk-label", markup=False)
        self.sparkline = BandSparkline()
        self._shown: tuple | None = None  # what the row last drew: identical updates are skipped

    def compose(self) -> ComposeResult:
        yield self.label
        yield self.sparkline

    def show(self, key: KeySummary, status: str, compact: bool) -> None:
        values = finite(key.values)
        drawn = (key.key, status, compact, key.last, key.limit, tuple(values))
        self.key, self.status = key, status
        if drawn == self._shown:
            return
        self._shown = drawn
        for name in STATUSES:
            self.set_class(name == status, "-" + name.replace(" ", "-"))
        self.set_class(compact, "-compact")
        style = STYLES[status]
        label = Text(f"{MARKS[status]} ", style=style)
        label.append(f"{key.key:<16.16}", style="bold" if status not in ("ok", "unknown") else "")
        label.append(f"{number(key.last):>9} {key.unit:<2}", style=style if status != "ok" else "")
        if not compact:
            label.append(f" {limit_text(key.limit):<15.15}", style="dim")
        self.label.update(label)
        sparkline = self.sparkline
        if values:
            sparkline.summary_function = farthest_from(sum(key.limit) / 2 if key.limit else median(values))
        sparkline.band = key.limit
        sparkline.data = values
        sparkline.refresh()  # the band may change alone


class HKSparklines(VerticalScroll, can_focus=True):
    """The HK keys of the latest snapshot; up/down move the cursor, the detail line follows it."""

    HELP_GROUP = "HK list"
    BINDINGS = [
        Binding("up,k", "cursor(-1)", "Previous key", show=False, group=NAVIGATION),
        Binding("down,j", "cursor(1)", "Next key", show=False, group=NAVIGATION),
        Binding("pageup", "cursor(-10)", "Page up", show=False, group=NAVIGATION),
        Binding("pagedown", "cursor(10)", "Page down", show=False, group=NAVIGATION),
        Binding("g", "cursor_to(0)", "First key", show=False, group=NAVIGATION),
        Binding("G", "cursor_to(-1)", "Last key", show=False, group=NAVIGATION),
    ]
    DEFAULT_CSS = """
    HKSparklines { height: 1fr; scrollbar-size-vertical: 1; }
    HKSparklines > .hk-empty { color: $text-muted; padding: 0 1; }
    """

    class CursorMoved(Message):
        """The key under the cursor, or what it shows, changed."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.rows: list[HKRow] = []
        self.shown: list[KeySummary] = []
        self.cursor = 0
        self.cursor_key: str | None = None  # chosen with the keys: followed when the order changes
        self.was_out: set[str] = set()

    def compose(self) -> ComposeResult:
        yield Static("No HK read yet: start the monitor (s).", classes="hk-empty", markup=False)

    def set_empty_text(self, text: str) -> None:
        self.query_one(".hk-empty", Static).update(text)

    def show_keys(self, keys: list[KeySummary], was_out: set[str]) -> None:
        self.shown, self.was_out = keys, was_out
        self.query_one(".hk-empty").display = not keys
        if len(self.rows) < len(keys):
            new_rows = [HKRow() for _ in range(len(keys) - len(self.rows))]
            self.rows += new_rows
            self.mount_all(new_rows)
        compact = self.size.width < COMPACT_BELOW
        for row, key in zip(self.rows, keys):
            row.display = True
            row.show(key, key_status(key, was_out), compact)
        for row in self.rows[len(keys):]:
            row.display = False
        names = [k.key for k in keys]
        # until a key is chosen the cursor stays on top, on the worst key
        self.cursor = names.index(self.cursor_key) if self.cursor_key in names else 0
        self._mark_cursor(scroll=False)
        self.post_message(self.CursorMoved())

    def on_resize(self) -> None:
        if self.shown:
            self.show_keys(self.shown, self.was_out)  # the limits column comes or goes

    def current(self) -> KeySummary | None:
        return self.shown[self.cursor] if 0 <= self.cursor < len(self.shown) else None

    def _mark_cursor(self, scroll: bool) -> None:
        for index, row in enumerate(self.rows):
            row.set_class(index == self.cursor and index < len(self.shown), "-cursor")
        key = self.current()
        if scroll and key is not None:
            self.scroll_to_widget(self.rows[self.cursor], animate=False)

    def action_cursor(self, step: int) -> None:
        if self.shown:
            self.cursor = max(0, min(len(self.shown) - 1, self.cursor + step))
            self.cursor_key = self.shown[self.cursor].key
            self._mark_cursor(scroll=True)
            self.post_message(self.CursorMoved())

    def action_cursor_to(self, index: int) -> None:
        if self.shown:
            self.action_cursor((index % len(self.shown)) - self.cursor)


def key_detail(key: KeySummary | None, status: str) -> Text:
    """One line on the key under the cursor."""
    if key is None:
        return Text("")
    text = Text(f"{key.key} ", style="bold")
    text.append(status, style=STYLES.get(status, ""))
    text.append(f" · last {number(key.last)} {key.unit} · min {number(key.minimum)} · max {number(key.maximum)}")
    if key.limit:
        text.append(f" · limits {limit_text(key.limit)}")
    if key.reason and key.status not in ("ok", "unknown"):
        text.append(f" · {key.reason}", style=STYLES.get(status, ""))
    return text
