"""The EXP_LOG as the monitor reads it: one line per exposure (its CCD rows merged), newest last.

Rows are added as exposures appear and updated while their last CCD rows or their HK verdict come
in; nothing is redrawn from scratch at each snapshot. In follow mode the cursor stays on the newest.
Filtered (/) or sorted (header click, > and <), the table is drawn again from every exposure when
one is added or changes, so the filter and the order hold as the day goes on.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

from rich.text import Text

from engine.monitor import ExposureSummary

from .list_table import Column, ListTable

RECHECK_LAST = 30  # rows still changing are among the newest: older ones are not compared again
HK_STYLE = {"ok": "green", "warning": "bold yellow", "critical": "bold red"}
_DATE = re.compile(r"^(\d\d)(\d\d)(\d\d)D(\d\d)(\d\d)(\d\d)T$")


def taken_at(token: Any) -> str:
    """ELVIS's `120319D090134T` as 2019-03-12 09:01:34 (the token as it is when it does not parse)."""
    match = _DATE.match(str(token or ""))
    if not match:
        return str(token or "")
    day, month, year, hours, minutes, seconds = match.groups()
    return f"20{year}-{month}-{day} {hours}:{minutes}:{seconds}"


def _value(row: Mapping[str, Any], name: str) -> str:
    value = row.get(name)
    if value is None or value == "":
        return ""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def exposure_cells(exposure: ExposureSummary) -> tuple:
    first = next(iter(exposure.rows.values()), {})
    ccds = " ".join(c.replace("CCD", "") for c in exposure.ccds)
    ccd_text = Text(ccds, style="" if len(exposure.ccds) == 3 else "yellow")
    hk = exposure.hk_status
    hk_text = Text(hk or "…", style=HK_STYLE.get(hk or "", "dim"))
    return (Text(str(exposure.obsid), justify="right"), exposure.test, ccd_text, hk_text,
            taken_at(first.get("date")), Text(_value(first, "exptime"), justify="right"), _value(first, "source"),
            Text(_value(first, "wave"), justify="right"), Text(_value(first, "chinj"), justify="right"),
            _value(first, "File_name"))


class ExpLogTable(ListTable):
    HELP_GROUP = "EXP-LOG"
    # what matters first: a narrow terminal sees OBSID, test, CCDs and the HK verdict
    COLUMNS = tuple(Column(label, label, width) for label, width in (
        ("OBSID", 6), ("Test", 12), ("CCDs", 5), ("HK", 8), ("Taken", 19), ("Exp s", 6), ("Source", 6), ("Wave", 4),
        ("ChInj", 5), ("File (CCD1)", None)))

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.follow = True
        self.shown: dict[int, tuple] = {}  # OBSID -> cells as last drawn, in OBSID order

    def source_rows(self) -> list[tuple[str, tuple]]:
        return [(str(obsid), cells) for obsid, cells in self.shown.items()]

    @property
    def in_place(self) -> bool:
        """Rows added and updated one by one (the table's own order, nothing hidden)."""
        return not self.filter_words and self.sort_column is None

    def update_exposures(self, exposures: Sequence[ExposureSummary]) -> None:
        new = [e for e in exposures if e.obsid not in self.shown]
        changed = False
        if len(exposures) < len(self.shown) or (new and self.shown and new[0].obsid < max(self.shown)):
            # another day folder, or an exposure logged out of order: draw again in OBSID order
            self.reset()
            new = list(exposures)
        for exposure in exposures[-RECHECK_LAST:]:
            old = self.shown.get(exposure.obsid)
            cells = exposure_cells(exposure)
            if old is not None and old != cells:
                changed = True
                if self.in_place:
                    for spec, value, was in zip(self.COLUMNS, cells, old):
                        if value != was:
                            self.update_cell(str(exposure.obsid), spec.key, value)
                self.shown[exposure.obsid] = cells
        for exposure in new:
            cells = exposure_cells(exposure)
            if self.in_place:
                self.add_row(*cells, key=str(exposure.obsid))
            self.shown[exposure.obsid] = cells
        if not self.in_place and (new or changed):
            self.redraw(self.current_key)
        if new and self.follow:
            self.go_to_newest()

    def reset(self) -> None:
        self.clear()
        self.shown = {}

    def go_to_newest(self) -> None:
        """The cursor on the newest exposure shown (the last row unless sorted)."""
        newest = next((str(obsid) for obsid in reversed(self.shown) if str(obsid) in self.rows), None)
        if newest is not None:
            self.move_cursor(row=self.get_row_index(newest), animate=False)

    def set_follow(self, follow: bool) -> None:
        self.follow = follow
        if follow:
            self.go_to_newest()
