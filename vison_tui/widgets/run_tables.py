"""The Runs screen's two tables: the runs of the campaign's results folder, and the tests of the
chosen run. Both are refreshed in place every second from `RunView`s (vison_tui.run_view), keep
the user's filter (/) and sort (header click, > and <) through the refreshes, and drop their
less needed columns in a narrow terminal: at 80 columns the run id, its state, its tests and what
it is doing are seen without scrolling sideways (the rest is in the line under the table)."""

from __future__ import annotations

from datetime import datetime

from rich.text import Text
from textual.binding import Binding

from ..keys import NAVIGATION
from ..run_view import STATE_STYLES, RunView, run_row, test_row
from .list_table import Column, ListTable

RUN_ID_WIDTHS = (22, 30)  # the run id column: as wide as the longest id within these


def _state_cell(state: str) -> Text:
    return Text(state, style=STATE_STYLES.get(state.split(":")[0].split(" ")[0], ""))


def _cut(text: str, style: str = "") -> Text:
    return Text(text, style=style, overflow="ellipsis", no_wrap=True)


class RunList(ListTable):
    HELP_GROUP = "Run list"
    BINDINGS = [
        Binding("g", "scroll_top", "First run", show=False, group=NAVIGATION),
        Binding("G", "scroll_bottom", "Last run", show=False, group=NAVIGATION),
    ]
    # min_width: what a narrow terminal drops first (the chosen run's line under the table says it)
    COLUMNS = (Column("Run", "Run", RUN_ID_WIDTHS[0]), Column("Session", "Session", 7, min_width=90),
               Column("Mode", "Mode", 10, min_width=100), Column("State", "State", 8), Column("Tests", "Tests", 5),
               Column("Started", "Started", 16, min_width=115), Column("Took", "Took", 12, min_width=100),
               Column("Doing / ended", "Doing / ended"))
    FILL_LAST = True

    def fit_last_column(self) -> None:
        """The run ids as wide as the longest (30 at most), "Doing" the rest of the width."""
        columns = list(self.columns.values())
        if columns:
            ids = [len(str(self.get_cell_at((row, 0)))) for row in range(self.row_count)]
            width = min(max(ids + [RUN_ID_WIDTHS[0]]), RUN_ID_WIDTHS[1])
            if columns[0].width != width:
                columns[0].width = width
                columns[-1].auto_width = True  # fitted again below
        super().fit_last_column()

    def show(self, views: list[RunView], now: datetime) -> None:
        rows = []
        for view in views:
            cells = list(run_row(view, now))
            cells[0] = _cut(str(cells[0]))
            cells[3] = _state_cell(cells[3])
            style = "bold yellow" if view.live and view.note else ("dim" if not view.live else "")
            cells[7] = _cut(cells[7], style)
            rows.append((view.key, cells))
        self.set_rows(rows)
        self.fit_last_column()


class RunTestsTable(ListTable):
    HELP_GROUP = "Tests of the run"
    COLUMNS = (Column("Test", "Test", 12), Column("State", "State", 16), Column("Frames", "Frames", 7),
               Column("OBSIDs", "OBSIDs", 11, min_width=100), Column("Took", "Took", 11, min_width=90),
               Column("Flags", "Flags", 24), Column("Note", "Note", min_width=100))

    def show(self, view: RunView | None, now: datetime) -> None:
        if view is None:
            self.set_rows([])
            return
        rows = []
        for test in view.status.tests:
            cells = list(test_row(test, now, view.live))
            cells[1] = _state_cell(cells[1])
            flags = cells[5]
            cells[5] = _cut(flags, "bold yellow" if flags and flags != "none" else "dim")
            cells[6] = Text(cells[6], style="dim")
            rows.append((str(test.get("test")), cells))
        self.set_rows(rows)
