"""The detached monitor running now, found at start-up before the first paint: the status line
says so from the first frame, and the app follows it (its alerts notified) before the Monitor
screen is ever shown (app.py). Cheap on purpose: engine.monitor.detached reads the monitor records'
JSON files (its package exports lazily, so numpy, astropy and watchdog are not loaded: 0.7 s).
"""

from __future__ import annotations

import tomllib
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


def monitor_to_show(monitors: list[LiveMonitor], campaign: Path | None) -> LiveMonitor | None:
    """The newest monitor following a day folder of the campaign's data folder (two chambers, two
    monitors: the app shows the one of its campaign), else the newest."""
    data_folder = campaign_data_folder(campaign) if campaign is not None else None
    if data_folder is not None:
        for monitor in monitors:
            if monitor.day_folder is not None and monitor.day_folder.resolve().parent == data_folder:
                return monitor
    return monitors[0] if monitors else None


def campaign_data_folder(campaign: Path) -> Path | None:
    """[paths] data of a campaign file, relative to its folder as the engine reads it; None if the
    file cannot say (the Campaign screen reports why): read as plain TOML, before the first paint."""
    try:
        with open(campaign, "rb") as file:
            data = tomllib.load(file)["paths"]["data"]
        folder = Path(data).expanduser()
        return (folder if folder.is_absolute() else campaign.resolve().parent / folder).resolve()
    except (OSError, ValueError, KeyError, TypeError):  # tomllib's errors are ValueErrors
        return None
