"""The catalogue as a checklist: generic handles heading their instances, with columns, frames and
minutes for the chosen chamber. Toggling a handle toggles all its instances. `/` filters it, a
header click (or > and <) sorts it (list_table.ListTable)."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable

from ..keys import NAVIGATION
from ..script_plan import ChecklistRow, TestFigures, checklist_rows, row_figures
from .list_table import Column, ListTable

_MARKS = {"all": "[x]", "some": "[-]", "none": "[ ]", "never": " - "}


class TestChecklist(ListTable):
    __test__ = False  # not a pytest class
    HELP_GROUP = "Test checklist"
    BINDINGS = [
        Binding("space", "toggle", "Toggle", tooltip="select or drop the test (a handle: all its instances)"),
        # a/n are in the help and the palette; the footer keeps room for write/build/quit/help at 80 columns
        Binding("a", "select_all", "All", show=False, tooltip="select every test that has a script"),
        Binding("n", "select_none", "None", show=False, tooltip="clear the selection"),
        Binding("g", "scroll_top", "First test", show=False, group=NAVIGATION),
        Binding("G", "scroll_bottom", "Last test", show=False, group=NAVIGATION),
    ]

    COLUMNS = (Column("mark", " ", 3), Column("test", "Test", 16), Column("columns", Text("Cols", justify="right"), 4),
               Column("frames", Text("Frames", justify="right"), 6), Column("minutes", Text("Min", justify="right"), 6),
               Column("purpose", "Purpose"))

    @dataclass
    class SelectionChanged(Message):
        selected: list[str]  # instance names, in catalogue order

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self.rows_by_key: dict[str, ChecklistRow] = {row.key: row for row in checklist_rows()}
        self.order = [name for row in self.rows_by_key.values() if not row.group for name in row.instances]
        self.selected: set[str] = set()
        self.figures: dict[str, TestFigures] = {}
        self.cells: dict[str, list] = {}  # row key -> its cells, hidden (filtered) rows included
        for row in self.rows_by_key.values():
            label = Text(row.label, style="bold") if row.group else Text(("  " if row.in_group else "") + row.label)
            if not row.writable:
                label.stylize("dim")
            purpose = row.purpose if row.writable else f"no script: analyses {row.surrogate}'s frames"
            self.cells[row.key] = [self._mark(row), label, "", "", "",
                                   Text(purpose, style="dim" if not row.writable else "")]
        self.all_rows = list(self.cells.items())

    # -- state ----------------------------------------------------------------------------------
    def _state(self, row: ChecklistRow) -> str:
        if not row.writable:
            return "never"
        chosen = sum(name in self.selected for name in row.instances)
        return "all" if chosen == len(row.instances) else "some" if chosen else "none"

    def _mark(self, row: ChecklistRow) -> Text:
        state = self._state(row)
        return Text(_MARKS[state], style="bold green" if state == "all" else "yellow" if state == "some" else "dim")

    def set_selected(self, names: list[str] | set[str], announce: bool = True) -> None:
        writable = {n for row in self.rows_by_key.values() if not row.group and row.writable for n in row.instances}
        self.selected = {n for n in names if n in writable}
        self._refresh_marks()
        if announce:
            self.post_message(self.SelectionChanged(self.selected_in_order()))

    def selected_in_order(self) -> list[str]:
        return [name for name in self.order if name in self.selected]

    def set_figures(self, figures: dict[str, TestFigures]) -> None:
        self.figures = figures
        for row in self.rows_by_key.values():
            if not row.writable:
                continue
            numbers = row_figures(row, figures)
            self.cells[row.key][2:5] = [Text(str(numbers.columns), justify="right"),
                                        Text(str(numbers.frames), justify="right"),
                                        Text(f"{numbers.minutes:.1f}", justify="right")]
        self.redraw()

    def _refresh_marks(self) -> None:
        for row in self.rows_by_key.values():
            self.cells[row.key][0] = self._mark(row)
        self.redraw()

    def current_row(self) -> ChecklistRow | None:
        key = self.current_key
        return self.rows_by_key.get(key) if key else None

    # -- actions --------------------------------------------------------------------------------
    def action_toggle(self) -> None:
        row = self.current_row()
        if row is None:
            return
        if not row.writable:
            self.notify(f"{row.label} has no script of its own: it analyses the frames of {row.surrogate}; "
                        f"select {row.surrogate} instead", severity="warning")
            return
        chosen = set(self.selected)
        if self._state(row) == "all":
            chosen -= set(row.instances)
        else:
            chosen |= set(row.instances)
        self.set_selected(chosen)

    def action_select_all(self) -> None:
        self.set_selected([n for row in self.rows_by_key.values() if row.writable for n in row.instances])

    def action_select_none(self) -> None:
        self.set_selected([])

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()  # enter toggles, like space
        self.action_toggle()
