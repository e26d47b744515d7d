"""Refresh a DataTable's rows in place from a new list, keeping the cursor on the same row key:
a table that is rebuilt every second must not jump under the user's cursor."""

from __future__ import annotations

from typing import Sequence

from rich.text import Text
from textual.widgets import DataTable

Cells = Sequence["str | Text"]


def sync_rows(table: DataTable, rows: list[tuple[str, Cells]]) -> bool:
    """Show `rows` ((key, cells), in order); returns True when rows were added or removed."""
    keys = [key for key, _ in rows]
    current = [row_key.value for row_key in table.rows]
    if keys == current:
        columns = list(table.columns)
        # a fixed-width column needs no measuring (measuring a narrower cell measures the whole column)
        auto = {column: table.columns[column].auto_width for column in columns}
        for key, cells in rows:
            for column, cell in zip(columns, cells):
                if table.get_cell(key, column) != cell:
                    table.update_cell(key, column, cell, update_width=auto[column])
        return False
    cursor_key = current[table.cursor_row] if current and 0 <= table.cursor_row < len(current) else None
    table.clear()
    for key, cells in rows:
        table.add_row(*cells, key=key)
    if cursor_key in keys:
        table.move_cursor(row=keys.index(cursor_key), animate=False)
    return True


def cursor_key(table: DataTable) -> str | None:
    """The key of the row under the cursor (None for an empty table)."""
    if not table.row_count:
        return None
    try:
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
    except Exception:  # cursor outside the rows during a rebuild
        return None
