"""The catalogue as a checklist: generic handles heading their instances, with columns, frames and
minutes for the chosen chamber. Toggling a handle toggles all its instances."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable

from ..keys import NAVIGATION
from ..script_plan import ChecklistRow, TestFigures, checklist_rows, row_figures

_MARKS = {"all": "[x]", "some": "[-]", "none": "[ ]", "never": " - "}


class TestChecklist(DataTable):
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

    @dataclass
    class SelectionChanged(Message):
        selected: list[str]  # instance names, in catalogue order

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self.rows_by_key: dict[str, ChecklistRow] = {row.key: row for row in checklist_rows()}
        self.order = [name for row in self.rows_by_key.values() if not row.group for name in row.instances]
        self.selected: set[str] = set()
        self.figures: dict[str, TestFigures] = {}

    def on_mount(self) -> None:
        self.add_column(" ", key="mark", width=3)
        self.add_column("Test", key="test", width=16)
        self.add_column(Text("Cols", justify="right"), key="columns", width=4)
        self.add_column(Text("Frames", justify="right"), key="frames", width=6)
        self.add_column(Text("Min", justify="right"), key="minutes", width=6)
        self.add_column("Purpose", key="purpose")
        for row in self.rows_by_key.values():
            label = Text(row.label, style="bold") if row.group else Text(("  " if row.in_group else "") + row.label)
            if not row.writable:
                label.stylize("dim")
            purpose = row.purpose if row.writable else f"no script: analyses {row.surrogate}'s frames"
            self.add_row(self._mark(row), label, "", "", "", Text(purpose, style="dim" if not row.writable else ""),
                         key=row.key)

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
            self.update_cell(row.key, "columns", Text(str(numbers.columns), justify="right"))
            self.update_cell(row.key, "frames", Text(str(numbers.frames), justify="right"))
            self.update_cell(row.key, "minutes", Text(f"{numbers.minutes:.1f}", justify="right"))

    def _refresh_marks(self) -> None:
        for row in self.rows_by_key.values():
            self.update_cell(row.key, "mark", self._mark(row))

    def current_row(self) -> ChecklistRow | None:
        if not self.row_count:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        return self.rows_by_key.get(key)

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
