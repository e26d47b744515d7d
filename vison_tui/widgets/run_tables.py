"""The Runs screen's two tables: the runs of the campaign's results folder, and the tests of the
chosen run. Both are refreshed in place every second from `RunView`s (vison_tui.run_view)."""

from __future__ import annotations

from datetime import datetime

from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable

from ..keys import NAVIGATION
from ..run_view import STATE_STYLES, RunView, run_row, test_row
from .table_sync import cursor_key, sync_rows


def _state_cell(state: str) -> Text:
    return Text(state, style=STATE_STYLES.get(state.split(":")[0].split(" ")[0], ""))


class RunList(DataTable):
    HELP_GROUP = "Run list"
    BINDINGS = [
        Binding("g", "scroll_top", "Newest run", show=False, group=NAVIGATION),
        Binding("G", "scroll_bottom", "Oldest run", show=False, group=NAVIGATION),
    ]
    COLUMNS = (("Run", 22), ("Session", 7), ("Mode", 10), ("State", 8), ("Tests", 5), ("Started", 16),
               ("Took", 12), ("Doing / ended", None))

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", **kwargs)

    def on_mount(self) -> None:
        for label, width in self.COLUMNS:
            self.add_column(label, width=width, key=label)

    def on_resize(self) -> None:
        self.fit_last_column()

    def fit_last_column(self) -> None:
        """The run ids as wide as the longest (30 at most), "Doing" the rest of the width: cut text
        ends with an ellipsis instead of running off the screen."""
        columns = list(self.columns.values())
        if not columns or not self.size.width:
            return
        ids = [len(str(self.get_cell_at((row, 0)))) for row in range(self.row_count)]
        run_width = min(max(ids + [self.COLUMNS[0][1]]), 30)
        changed = columns[0].width != run_width
        columns[0].width = run_width
        others = sum(c.get_render_width(self) for c in columns[:-1])
        last = max(self.scrollable_content_region.width - others - 2 * self.cell_padding, 12)
        if columns[-1].auto_width or columns[-1].width != last or changed:
            columns[-1].auto_width = False
            columns[-1].width = last
            self._require_update_dimensions = True
            self.refresh()

    def show(self, views: list[RunView], now: datetime) -> None:
        rows = []
        for view in views:
            cells = list(run_row(view, now))
            cells[0] = Text(str(cells[0]), overflow="ellipsis", no_wrap=True)
            cells[3] = _state_cell(cells[3])
            style = "bold yellow" if view.live and view.note else ("dim" if not view.live else "")
            cells[7] = Text(cells[7], style=style, overflow="ellipsis", no_wrap=True)
            rows.append((view.key, cells))
        sync_rows(self, rows)
        self.fit_last_column()

    @property
    def current_key(self) -> str | None:
        return cursor_key(self)


class RunTestsTable(DataTable):
    HELP_GROUP = "Tests of the run"
    COLUMNS = (("Test", 12), ("State", 16), ("Frames", 7), ("OBSIDs", 11), ("Took", 11), ("Flags", 24),
               ("Note", None))

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", **kwargs)

    def on_mount(self) -> None:
        for label, width in self.COLUMNS:
            self.add_column(label, width=width, key=label)

    def show(self, view: RunView | None, now: datetime) -> None:
        if view is None:
            sync_rows(self, [])
            return
        rows = []
        for test in view.status.tests:
            cells = list(test_row(test, now, view.live))
            cells[1] = _state_cell(cells[1])
            flags = cells[5]
            cells[5] = Text(flags, style="bold yellow" if flags and flags != "none" else "dim")
            cells[6] = Text(cells[6], style="dim")
            rows.append((str(test.get("test")), cells))
        sync_rows(self, rows)
