"""What the monitor flagged, newest first: HK out of limits (time of the sample, OBSID, the limits
table's reason), back within limits, unreadable lines, backup conflicts and failures.

Alerts still active from before this monitor started (the state file keeps them) are listed too,
so a restarted monitor does not hide a disconnected sensor.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Mapping

from rich.text import Text
from textual.widgets import OptionList

from engine.monitor import (AlertDeliveryFailed, BackupConflict, BackupFailed, ExpLogLineProblem, HKBackInLimits,
                            HKOutOfLimits, HKReadProblem, MonitorEvent, MonitorNotice)

TARGET_FAILURE = "(target)"  # BackupFailed.name when the backup target itself fails (engine/monitor/backup.py)
SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "cleared": "green", "info": ""}
SEVERITY_MARK = {"critical": "✗ crit", "warning": "! warn", "cleared": "✓ back", "info": "· info"}


@dataclass
class AlertEntry:
    severity: str  # "critical", "warning", "cleared" (back within limits) or "info"
    when: str  # HH:MM:SS: the HK sample's time for HK alerts, else when the monitor noticed
    obsid: str
    subject: str  # HK key or file name
    text: str  # names the subject
    settled: bool = False  # an HK alert whose key has come back within limits since
    group: str = ""  # failed copies to one target for one reason share a line (a full disk fails them all);
    count: int = 1  # a target that cannot be written to has a line of its own, said again in place

    def line(self) -> Text:
        """One entry, wrapped to the list's width: narrow terminals still read all of it."""
        style = "dim" if self.settled else SEVERITY_STYLE[self.severity]
        text = Text(SEVERITY_MARK[self.severity], style=style)
        if self.when:
            text.append(f" {self.when}", style="dim" if self.settled else "")
        if self.obsid:
            text.append(f" OBSID {self.obsid}", style="dim" if self.settled else "bold")
        text.append(f" {self.text}", style=style)
        return text


def _clock(moment: datetime | None) -> str:
    return moment.strftime("%H:%M:%S") if moment else ""


def entry_for(event: MonitorEvent) -> AlertEntry | None:
    """The list's line for an event, or None for routine news (exposures, copies...)."""
    if isinstance(event, HKOutOfLimits):
        note = " (still out)" if event.repeat else " (now critical)" if event.escalated else ""
        return AlertEntry(event.status, _clock(event.time or event.at), str(event.obsid or ""), event.key,
                          event.reason + note)
    if isinstance(event, HKBackInLimits):
        since = f" (out since OBSID {event.since_obsid})" if event.since_obsid is not None else ""
        return AlertEntry("cleared", "", str(event.obsid or ""), event.key, f"{event.key} back within limits{since}")
    if isinstance(event, (HKReadProblem, ExpLogLineProblem)):
        return AlertEntry("warning", _clock(event.at), "", event.path.name, event.message())
    if isinstance(event, BackupFailed):
        if event.name == TARGET_FAILURE:  # the target (read-only, full, gone), not a file: its own line
            return AlertEntry("warning", _clock(event.at), "", event.target, event.message(),
                              group=f"{event.target}\n{TARGET_FAILURE}")
        return AlertEntry("warning", _clock(event.at), "", event.name, event.message(),
                          group=f"{event.target}\n{event.reason}")
    if isinstance(event, BackupConflict):
        return AlertEntry("warning", _clock(event.at), "", event.name, event.message())
    if isinstance(event, AlertDeliveryFailed):
        return AlertEntry("warning", _clock(event.at), "", event.sink, event.message())
    if isinstance(event, MonitorNotice) and event.severity != "info":
        return AlertEntry(event.severity, _clock(event.at), "", "monitor", event.message())
    return None


class AlertList(OptionList):
    """Newest first; up/down move through them."""

    HELP_GROUP = "Alerts"
    DEFAULT_CSS = """
    AlertList { height: 1fr; border: none; padding: 0; background: $surface; }
    AlertList:focus { border: none; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.entries: list[AlertEntry] = []  # this monitor's, oldest first
        self.earlier: list[AlertEntry] = []  # active alerts from a previous run, not seen again yet

    def on_mount(self) -> None:
        self.rebuild()

    def add_events(self, events: Iterable[MonitorEvent]) -> bool:
        """Add the events worth a line; True when anything was added."""
        added = False
        for event in events:
            entry = entry_for(event)
            if entry is None:
                continue
            same = next((e for e in reversed(self.entries) if entry.group and e.group == entry.group), None)
            if same is not None and isinstance(event, BackupFailed):
                same.count += 1
                same.when, same.subject = entry.when, entry.subject
                if event.name == TARGET_FAILURE:  # the target failing again (each pass looks): the latest says it
                    same.text = entry.text
                else:
                    same.text = (f"could not copy {same.count} files to {event.target}: {event.reason} "
                                 f"(will retry; latest {event.name})")
                added = True
                continue
            if entry.severity == "cleared":
                for older in self.entries:
                    if older.subject == entry.subject and older.severity in ("critical", "warning"):
                        older.settled = True
                self.earlier = [e for e in self.earlier if e.subject != entry.subject]
            self.entries.append(entry)
            added = True
        if added:
            self.rebuild()
        return added

    def set_earlier(self, active: Mapping[str, Mapping[str, Any]], reasons: Mapping[str, str]) -> None:
        """Active alerts (key -> state record) that this run has not reported itself."""
        reported = {e.subject for e in self.entries if e.severity in ("critical", "warning") and not e.settled}
        earlier = []
        for key, record in sorted(active.items()):
            if key in reported:
                continue
            when = str(record.get("last_alert") or "")
            earlier.append(AlertEntry(
                str(record.get("status", "warning")), when[11:19], str(record.get("since_obsid") or ""), key,
                (reasons.get(key) or f"{key} out of limits since OBSID {record.get('since_obsid')}")
                + " (alert raised before this monitor started)"))
        if earlier != self.earlier:
            self.earlier = earlier
            self.rebuild()

    def clear_entries(self) -> None:
        self.entries, self.earlier = [], []
        self.rebuild()

    def rebuild(self) -> None:
        shown = list(reversed(self.earlier + self.entries))
        if shown:
            self.set_options(entry.line() for entry in shown)
        else:
            self.set_options([Text("no alert since the monitor started", style="dim")])
        self.highlighted = 0
