"""Following a detached monitor (engine.monitor.detached) from the Monitor screen.

The monitor runs in its own process, started by the app or by `vison-engine monitor --detach`,
and outlives the app. The screen reads what it writes: its events file (new alerts, notified as
they come), its snapshot (redrawn while the screen is shown), its record (still running?) and,
when attaching, the alert history kept in its state file, so a reopened app shows what happened
while it was closed. Reading happens in a thread worker (`poll`); the result comes back as a
`DetachedMonitorPolled` message.

Started before the Monitor screen is first shown, the app follows a running detached monitor itself
(app.py: its alerts are notified on any screen) and hands its `DetachedMonitor` over to the screen
when the screen is made: nothing is read or notified twice.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field

from engine.monitor import (BackupConflict, BackupFailed, HKBackInLimits, HKOutOfLimits, MonitorEvent,
                            MonitorNotice)
from engine.monitor.detached import MonitorRecord, monitor_status, running_monitors

from .messages import DetachedMonitorPolled, MonitorAlert


def alert_for(event: MonitorEvent, bell_level: str) -> MonitorAlert | None:
    """The app-wide notification an event deserves, if any."""
    if isinstance(event, HKOutOfLimits):
        critical = event.status == "critical"
        obsid = f" at OBSID {event.obsid}" if event.obsid is not None else ""
        return MonitorAlert(f"HK {event.status}: {event.key}{obsid}", event.message(),
                            "error" if critical else "warning", bell=critical and bell_level != "off")
    if isinstance(event, HKBackInLimits):
        return MonitorAlert(f"HK back within limits: {event.key}", event.message(), "information")
    if isinstance(event, (BackupConflict, BackupFailed)):
        return MonitorAlert("Backup", event.message(), "warning")
    if isinstance(event, MonitorNotice) and event.severity == "critical":
        return MonitorAlert("Monitor", event.message(), "error", bell=bell_level != "off")
    return None


@dataclass
class DetachedMonitor:
    record: MonitorRecord
    catch_up_events: bool = True  # re-attached: the events already written are the past
    offset: int = 0
    polls: int = 0
    seen: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)  # one reader at a time (handed over)

    def poll(self, snapshot: bool) -> DetachedMonitorPolled:
        """New events, the snapshot (if wanted) and the status; runs in a thread worker."""
        with self.lock:
            return self._poll(snapshot)

    def _poll(self, snapshot: bool) -> DetachedMonitorPolled:
        first = self.polls == 0
        self.polls += 1
        past = self._unseen(self.record.read_history()) if first else []  # earlier monitors' alerts too
        events, self.offset = self.record.read_events(self.offset)
        if first and self.catch_up_events:
            past += self._unseen(events)
            events = []
        status = monitor_status(self.record)
        return DetachedMonitorPolled(past, self._unseen(events), self.record.read_snapshot() if snapshot else None,
                                     status)

    def _unseen(self, events: list[MonitorEvent]) -> list[MonitorEvent]:
        kept = []
        for event in events:
            key = json.dumps(event.to_dict(), sort_keys=True)
            if key not in self.seen:
                self.seen.add(key)
                kept.append(event)
        return kept


def monitor_to_attach(data_folder) -> MonitorRecord | None:
    """The running detached monitor to show: the newest following a day folder in the campaign's
    data folder, else the newest."""
    running = running_monitors()
    if not running:
        return None
    if data_folder is not None:
        for record in running:
            if record.day_folder is not None and record.day_folder.parent == data_folder:
                return record
    return running[0]
