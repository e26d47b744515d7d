"""The detached monitor running now, found at start-up before the first paint: the status line
says so from the first frame, and the app follows it (its alerts notified) before the Monitor
screen is ever shown (app.py). Cheap on purpose: the monitor records' JSON files and the engine's
process check (engine.pipeline.records) only; importing engine.monitor would load numpy, astropy
and watchdog (0.7 s) before the first paint.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from engine.pipeline.records import LIVE_STATES, STATE_FILE, liveness, read_json, state_dir

# as engine.monitor.detached names them (tests/tui/test_app_start_monitor.py checks they agree)
MONITORS_FOLDER = "monitors"
MONITOR_FILE = "monitor.json"


@dataclass(frozen=True)
class LiveMonitor:
    monitor_id: str
    folder: Path  # its record folder (engine.monitor.detached.MonitorRecord.load takes it)
    day_folder: Path | None
    started: str


def live_monitors() -> list[LiveMonitor]:
    """The recorded detached monitors whose process runs, newest first (only records saying they
    run are checked, so a long campaign's ended monitors cost a file read each)."""
    root = state_dir() / MONITORS_FOLDER
    try:
        folders = [entry.path for entry in os.scandir(root) if entry.is_dir()]
    except OSError:
        return []
    found = []
    for folder in map(Path, folders):
        state = read_json(folder / STATE_FILE)
        recorded = str(state.get("state") or "starting")
        if recorded not in LIVE_STATES:
            continue
        info = read_json(folder / MONITOR_FILE)
        if not info or not liveness(info, recorded).alive:
            continue
        day = info.get("day_folder")
        found.append(LiveMonitor(str(info.get("id") or folder.name), folder, Path(day) if day else None,
                                 str(info.get("started") or "")))
    return sorted(found, key=lambda m: (m.started, m.monitor_id), reverse=True)


def monitor_to_show(monitors: list[LiveMonitor], data_folder: Path | None) -> LiveMonitor | None:
    """The newest following a day folder of the campaign's data folder, else the newest."""
    if data_folder is not None:
        for monitor in monitors:
            if monitor.day_folder is not None and monitor.day_folder.parent == data_folder:
                return monitor
    return monitors[0] if monitors else None
