"""The kinds of files clean-up can remove (engine.pipeline.cleanup.KINDS), as a checklist with what
each one would free if chosen on its own. `logs` and `results` are never part of the routine set:
they destroy the record of the campaign, so they are marked and only go when ticked one by one."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable

from engine.pipeline.cleanup import KINDS, ROUTINE_KINDS, KindTotal, human_size

from ..keys import NAVIGATION
from .cleanup_plan import plural


def amount(measured: tuple[KindTotal, int] | None, measuring: bool) -> Text:
    if measured is None:
        return Text("…" if measuring else "–", style="dim")
    total, kept = measured
    if not total.items:
        return Text(f"nothing ({kept} kept)" if kept else "nothing", style="yellow" if kept else "dim")
    return Text(f"{plural(total.files, 'file')} · {human_size(total.bytes)}", justify="right")


class KindChecklist(DataTable):
    HELP_GROUP = "Kinds"
    BINDINGS = [
        Binding("space", "toggle", "Toggle", tooltip="choose or drop the kind under the cursor"),
        Binding("a", "routine", "Routine", show=False,
                tooltip=f"choose the routine kinds: {', '.join(ROUTINE_KINDS)} (never logs or results)"),
        Binding("n", "none", "None", show=False, tooltip="choose no kind"),
        Binding("g", "scroll_top", "First kind", show=False, group=NAVIGATION),
        Binding("G", "scroll_bottom", "Last kind", show=False, group=NAVIGATION),
    ]

    @dataclass
    class Changed(Message):
        kinds: tuple[str, ...]  # in KINDS order

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self.chosen: set[str] = set()

    def on_mount(self) -> None:
        self.add_column(" ", key="mark", width=3)
        self.add_column("Kind", key="kind", width=13)
        self.add_column(Text("On its own", justify="right"), key="alone", width=18)
        self.add_column("What it is", key="what")
        for kind, what in KINDS.items():
            routine = kind in ROUTINE_KINDS
            label = Text(kind, style="" if routine else "bold red")
            description = Text(what if routine else f"{what} (only when ticked)", style="" if routine else "red")
            self.add_row(self._mark(kind), label, amount(None, True), description, key=kind)

    def _mark(self, kind: str) -> Text:
        return Text("[x]", style="bold green") if kind in self.chosen else Text("[ ]", style="dim")

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(kind for kind in KINDS if kind in self.chosen)

    def set_chosen(self, kinds, announce: bool = True) -> None:
        self.chosen = set(kinds) & set(KINDS)
        for kind in KINDS:
            self.update_cell(kind, "mark", self._mark(kind))
        if announce:
            self.post_message(self.Changed(self.kinds))

    def set_alone(self, measured: dict[str, tuple[KindTotal, int]] | None) -> None:
        """What each kind frees on its own and how many of its paths are kept (None: being
        measured; empty: cannot be told)."""
        for kind in KINDS:
            self.update_cell(kind, "alone", amount((measured or {}).get(kind), measured is None))

    def current_kind(self) -> str | None:
        if not self.row_count:
            return None
        return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value

    def action_toggle(self) -> None:
        kind = self.current_kind()
        if kind is not None:
            self.set_chosen(self.chosen ^ {kind})

    def action_routine(self) -> None:
        self.set_chosen(ROUTINE_KINDS)

    def action_none(self) -> None:
        self.set_chosen(())

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()  # enter toggles, like space
        self.action_toggle()
