"""The detached monitor running now, found at start-up before the first paint: the status line
says so from the first frame, and the app follows it (its alerts notified) before the Monitor
screen is ever shown (app.py). Cheap on purpose: engine.monitor.detached reads the monitor records'
JSON files (its package exports lazily, so numpy, astropy and watchdog are not loaded: 0.7 s).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.monitor.detached import live_monitor_records


@dataclass(frozen=True)
class LiveMonitor:
    monitor_id: str
    folder: Path  # its record folder (engine.monitor.detached.MonitorRecord.load takes it)
    day_folder: Path | None
    started: str


def live_monitors() -> list[LiveMonitor]:
    """The recorded detached monitors whose process runs, newest first."""
    return [LiveMonitor(record.monitor_id, record.folder, record.day_folder, record.started)
            for record in live_monitor_records()]


def monitor_to_show(monitors: list[LiveMonitor], data_folder: Path | None) -> LiveMonitor | None:
    """The newest following a day folder of the campaign's data folder, else the newest."""
    if data_folder is not None:
        for monitor in monitors:
            if monitor.day_folder is not None and monitor.day_folder.parent == data_folder:
                return monitor
    return monitors[0] if monitors else None
