"""A DataTable of keyed rows that the user filters (`/`) and sorts (a click on a header, `>` the
next column, `<` the other way), kept through the owner's periodic refreshes: the owner gives every
row (`set_rows`), the table shows the matching ones in the chosen order (refreshed in place by
table_sync.sync_rows, the cursor staying on its row). Columns may give way in narrow terminals
(`Column.min_width`), so that what matters is seen without scrolling sideways.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence

from rich.text import Text
from textual.actions import SkipAction
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable

from .table_sync import Cells, cursor_key, sync_rows

SORT_MARKS = (" ▲", " ▼")
_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
_DURATION = re.compile(r"^(?:(\d+) h)? ?(?:(\d+) min)? ?(?:(\d+) s)?$")


@dataclass(frozen=True)
class Column:
    key: str
    label: str | Text
    width: int | None = None  # None: as wide as its cells (the fill column: the rest of the width)
    min_width: int = 0  # shown only when the table is at least this wide (0: always)


def plain(cell: Any) -> str:
    return cell.plain if isinstance(cell, Text) else str(cell)


def sort_value(cell: Any) -> tuple:
    """Numbers (also 12/30, 4 min 05 s, 1.5e3) by value before text; empty and "–" cells last."""
    text = plain(cell).strip()
    if text in ("", "–", "-", "…"):
        return (2, 0.0, "")
    duration = _DURATION.match(text)
    if duration and any(duration.groups()):
        hours, minutes, seconds = (int(part or 0) for part in duration.groups())
        return (0, float(hours * 3600 + minutes * 60 + seconds), text)
    number = _NUMBER.match(text)
    if number:
        return (0, float(number.group(0)), text.lower())
    return (1, 0.0, text.lower())


def matches(words: Sequence[str], cells: Cells) -> bool:
    """Whether every word (lower case) is in the row's text."""
    line = " ".join(plain(cell) for cell in cells).lower()
    return all(word in line for word in words)


class ListTable(DataTable):
    """Rows given whole by the owner; filtered, sorted and cut to the columns that fit when shown."""

    BINDINGS = [
        Binding("slash", "filter", "Filter", tooltip="show only the rows holding every word you type; "
                "enter, tab or escape go back to the list"),
        Binding("greater_than_sign", "sort_next", "Sort", show=False,
                tooltip="sort by the next column (a click on a header too); past the last: the table's own order"),
        Binding("less_than_sign", "sort_reverse", "Reverse sort", show=False,
                tooltip="sort the other way (a second click on the same header too)"),
    ]
    COLUMNS: tuple[Column, ...] = ()
    FILL_LAST = False  # the last column takes the rest of the width, its text cut with an ellipsis

    class ViewChanged(Message):
        """The filter or the sort changed what the table shows."""

        def __init__(self, table: ListTable) -> None:
            super().__init__()
            self.table = table

        @property
        def control(self) -> ListTable:
            return self.table

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("cursor_type", "row")
        super().__init__(**kwargs)
        self.all_rows: list[tuple[str, Cells]] = []
        self.filter_words: list[str] = []
        self.filter_text = ""
        self.sort_column: str | None = None
        self.sort_reverse = False
        self.column_specs: tuple[Column, ...] = self.COLUMNS
        self.shown_keys: tuple[str, ...] = ()  # the column keys drawn now

    def on_mount(self) -> None:
        self.lay_out_columns()

    def on_resize(self) -> None:
        if self.fitting_columns() != self.shown_keys:
            self.lay_out_columns()
        elif self.FILL_LAST:
            self.fit_last_column()

    # -- columns ----------------------------------------------------------------------------------
    def set_columns(self, columns: Sequence[Column]) -> None:
        """Other columns (e.g. a result's quadrants); the rows must be given again for them."""
        self.column_specs = tuple(columns)
        if self.sort_column not in {c.key for c in self.column_specs}:
            self.sort_column, self.sort_reverse = None, False
        self.all_rows = []
        self.lay_out_columns()

    def fitting_columns(self) -> tuple[str, ...]:
        width = self.size.width or (self.app.size.width if self.is_attached else 0)
        return tuple(c.key for c in self.column_specs if not c.min_width or width >= c.min_width)

    def lay_out_columns(self) -> None:
        cursor = self.current_key
        self.shown_keys = self.fitting_columns()
        self.clear(columns=True)
        for spec in self.column_specs:
            if spec.key in self.shown_keys:
                self.add_column(self.header_label(spec), width=spec.width, key=spec.key)
        self.redraw(cursor)
        if self.FILL_LAST:
            self.fit_last_column()

    def header_label(self, spec: Column) -> str | Text:
        if spec.key != self.sort_column:
            return spec.label
        label = spec.label.copy() if isinstance(spec.label, Text) else Text(spec.label)
        label.append(SORT_MARKS[self.sort_reverse], style="bold")
        return label

    def fit_last_column(self) -> None:
        """The last column as wide as what is left (at least 12): cut text ends with an ellipsis
        instead of running off the screen."""
        columns = list(self.columns.values())
        if not columns or not self.size.width:
            return
        others = sum(c.get_render_width(self) for c in columns[:-1])
        last = max(self.scrollable_content_region.width - others - 2 * self.cell_padding, 12)
        if columns[-1].auto_width or columns[-1].width != last:
            columns[-1].auto_width = False
            columns[-1].width = last
            self._require_update_dimensions = True
            self.refresh()

    # -- rows -------------------------------------------------------------------------------------
    def set_rows(self, rows: list[tuple[str, Cells]]) -> None:
        """Every row (key, a cell per column of COLUMNS, hidden ones included), in the owner's order."""
        self.all_rows = rows
        self.redraw()

    def source_rows(self) -> list[tuple[str, Cells]]:
        return self.all_rows

    def visible_rows(self) -> list[tuple[str, Cells]]:
        rows = self.source_rows()
        if self.filter_words:
            rows = [row for row in rows if matches(self.filter_words, row[1])]
        if self.sort_column is not None:
            index = [c.key for c in self.column_specs].index(self.sort_column)
            rows = sorted(rows, key=lambda row: sort_value(row[1][index]) if index < len(row[1]) else (3,),
                          reverse=self.sort_reverse)
        return rows

    def redraw(self, cursor: str | None = None) -> None:
        indexes = [i for i, spec in enumerate(self.column_specs) if spec.key in self.shown_keys]
        rows = [(key, [cells[i] for i in indexes if i < len(cells)]) for key, cells in self.visible_rows()]
        sync_rows(self, rows)
        if cursor is not None and cursor in self.rows:
            self.move_cursor(row=self.get_row_index(cursor), animate=False)

    @property
    def current_key(self) -> str | None:
        return cursor_key(self)

    @property
    def filtered(self) -> bool:
        return bool(self.filter_words)

    def shown_count(self) -> str:
        """"12" or "3 of 12" when a filter hides some."""
        total = len(self.source_rows())
        return f"{self.row_count} of {total}" if self.filter_words else f"{total}"

    # -- filter and sort --------------------------------------------------------------------------
    def set_filter(self, text: str) -> None:
        self.filter_text = text.strip()
        self.filter_words = self.filter_text.lower().split()
        self.redraw(self.current_key)
        self.post_message(self.ViewChanged(self))

    def sort_by(self, column: str | None, reverse: bool = False) -> None:
        self.sort_column, self.sort_reverse = column, reverse
        for spec in self.column_specs:
            if spec.key in self.columns:
                self.columns[spec.key].label = self._label_text(spec)
        self._require_update_dimensions = True
        self.redraw(self.current_key)
        self.refresh()
        self.post_message(self.ViewChanged(self))

    def _label_text(self, spec: Column) -> Text:
        label = self.header_label(spec)
        return label if isinstance(label, Text) else Text(label)

    def action_filter(self) -> None:
        from .list_filter import ListFilter

        field = next((f for f in self.screen.query(ListFilter) if f.target_id == self.id), None)
        if field is None:
            raise SkipAction()  # the screen's own `/` (e.g. the Results screen's values and flags)
        field.open()

    def action_sort_next(self) -> None:
        keys = [spec.key for spec in self.column_specs]
        if self.sort_column is None:
            self.sort_by(keys[0] if keys else None)
        else:
            position = keys.index(self.sort_column) + 1
            self.sort_by(keys[position] if position < len(keys) else None)

    def action_sort_reverse(self) -> None:
        if self.sort_column is None:
            self.sort_by(self.column_specs[0].key if self.column_specs else None, reverse=True)
        else:
            self.sort_by(self.sort_column, not self.sort_reverse)

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        column = str(event.column_key.value)
        self.sort_by(column, not self.sort_reverse if column == self.sort_column else False)
