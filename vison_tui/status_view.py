"""The status line every screen shows above its keys (issue 15, item 9; htop's and k9s's header):
the runs still going, the monitor's state, the last HK alert and the backup lag. Without Textual:
read from the engine's records in a thread worker (widgets/status_line.py).

- runs: the campaign's run records (engine.pipeline.runs.list_runs, run_status), the live ones;
- monitor: the state file of the newest day folder (engine.monitor.state.default_state_path):
  following while the pid in its lock file is alive (a detached monitor or this app's), else when
  it last saved; the last warning or critical HK alert from its history;
- backup: per target in the state's ledger, the frames and HK files the monitor has seen that the
  target does not hold yet.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from engine.campaign.config import Campaign


@dataclass
class StatusInfo:
    running: list[tuple[str, str]] = field(default_factory=list)  # (run id, doing)
    monitor: str = "monitor: no day folder"
    monitor_live: bool = False
    last_alert: str = ""  # "02:10 CCD2_TEMP_T out of limits", "" if none
    alert_severity: str = ""
    backup: str = ""  # "backup 3 behind", "backup up to date", "" without a backup
    runs_read: bool = True  # False before the first read (the runs are not known yet)


def status_at_start(monitor_id: str, day: Path | None) -> StatusInfo:
    """What the first frame says, before anything is read: the live detached monitor found at start."""
    where = day.name if day is not None else "its day folder"
    return StatusInfo(monitor=f"monitor: following {where} ({monitor_id})", monitor_live=True, runs_read=False)


def gather_status(campaign: Campaign | None, day: Path | None = None) -> StatusInfo:
    """What the status line says, read from disk (call in a worker). `day`: the followed monitor's
    day folder if known (read even before the campaign is), else the campaign's newest."""
    from engine.monitor.state import default_state_path
    from engine.pipeline.runs import list_runs, run_status

    info = StatusInfo()
    if campaign is None and day is None:
        info.monitor = "monitor: no campaign"
        return info
    try:
        for record in list_runs(campaign.paths.results) if campaign is not None else []:
            status = run_status(record)
            if status.alive or status.state in ("starting", "running"):
                doing = (status.current or {}).get("test") or status.activity or status.state
                info.running.append((status.run_id, str(doing or "")))
    except OSError:
        pass
    info.runs_read = campaign is not None
    from engine.formats.names import newest_day_folder
    from engine.monitor.state import state_in_use

    day = day or newest_day_folder(campaign.paths.data)
    if day is None:
        return info
    path = default_state_path(day)
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        info.monitor = f"monitor: not started on {day.name}"
        return info
    info.monitor_live = state_in_use(path) is not None  # a live monitor holds the state's lock
    saved = str(state.get("saved_at") or "")
    if info.monitor_live:
        info.monitor = f"monitor: following {day.name}"
    else:
        info.monitor = f"monitor: stopped on {day.name}" + (f" (saved {saved[11:16]})" if len(saved) >= 16 else "")
    for event in reversed(state.get("history") or []):
        if isinstance(event, dict) and event.get("severity") in ("warning", "critical") and event.get("key"):
            at = str(event.get("at") or "")
            info.last_alert = f"{at[11:16]} {event['key']}".strip()
            info.alert_severity = str(event.get("severity"))
            break
    seen = set(state.get("frames_done") or {}) | set(state.get("hk_done") or {})
    lags = []
    for target, ledger in (state.get("backup") or {}).items():
        held = {name for name, entry in (ledger or {}).items()
                if isinstance(entry, dict) and entry.get("status") in ("copied", "conflict")}
        lags.append(len(seen - held))
    if lags:
        behind = max(lags)
        info.backup = f"backup {behind} file{'s' if behind != 1 else ''} behind" if behind else "backup up to date"
    return info

