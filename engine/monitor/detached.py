"""Detached monitors: `vison-engine monitor DAY --detach` and the app's Monitor screen start the
monitor (and its backup) in the background, leaving a record to list, follow, re-attach to and
stop, as pipeline runs do (the shared machinery is engine/pipeline/records.py).

`$VISON_STATE_DIR/monitors/<id>/` (default `~/.local/state/vison/monitors/`) holds:

    monitor.json    what was started: pid, its start time, command line, day folder, backup and
                    broadcast targets, state file, log (written at start)
    state.json      starting | running | stopped | finished | failed, what it does, how it ended
    snapshot.json   the monitor's snapshot (exposures, HK series, progress, backup), every second
    events.jsonl    every event, one JSON object a line (what the app shows as it comes)
    output.txt      console output
    monitor.log     the monitor log, when no --log was given

The monitor keeps its own state file (reading positions, backup ledger, alert history) as any
monitor does: a restarted one carries on, its alert history included.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..pipeline.records import (LIVE_STATES, OUTPUT_FILE, STATE_FILE, RecordFolder, engine_command, liveness, now_iso,
                                own_identity, read_json, spawn_detached, state_dir, stop_recorded, update_info,
                                update_state, user_name, write_json_atomic)
from .events import MonitorEvent, event_from_dict
from .state import default_state_path, state_in_use
from .summary import MonitorSnapshot

MONITORS_FOLDER = "monitors"
MONITOR_FILE = "monitor.json"
SNAPSHOT_FILE = "snapshot.json"
EVENTS_FILE = "events.jsonl"
LOG_FILE = "monitor.log"
SNAPSHOT_SECONDS = 1.0


class MonitorStartError(ValueError):
    """The detached monitor cannot be started; the message says why (the CLI exits with status 2)."""


def monitors_root() -> Path:
    return state_dir() / MONITORS_FOLDER


class MonitorRecord(RecordFolder):
    """A detached monitor's folder; `info` is monitor.json, `state` state.json as last read."""

    INFO_FILE = MONITOR_FILE

    @property
    def monitor_id(self) -> str:
        return str(self.info.get("id") or self.folder.name)

    @property
    def day_folder(self) -> Path | None:
        return Path(self.info["day_folder"]) if self.info.get("day_folder") else None

    @property
    def backup(self) -> list[str]:
        return [str(t) for t in self.info.get("backup") or []]

    @property
    def broadcast(self) -> list[str]:
        return [str(t) for t in self.info.get("broadcast") or []]

    @property
    def state_file(self) -> Path | None:
        return Path(self.info["state_file"]) if self.info.get("state_file") else None

    @property
    def events_path(self) -> Path:
        return self.folder / EVENTS_FILE

    @property
    def snapshot_path(self) -> Path:
        return self.folder / SNAPSHOT_FILE

    # -- what the app reads while the monitor runs ------------------------------------------------

    def read_events(self, offset: int = 0) -> tuple[list[MonitorEvent], int]:
        """The events written since byte `offset` (whole lines only) and the offset to read on from."""
        try:
            with open(self.events_path, "rb") as handle:
                handle.seek(offset)
                chunk = handle.read()
        except OSError:
            return [], offset
        end = chunk.rfind(b"\n") + 1  # a line being written waits for its end
        events = []
        for line in chunk[:end].splitlines():
            try:
                data = json.loads(line)
            except ValueError:
                continue
            event = event_from_dict(data) if isinstance(data, dict) else None
            if event is not None:
                events.append(event)
        return events, offset + end

    def read_snapshot(self) -> MonitorSnapshot | None:
        """The snapshot the monitor wrote last (None before its first, or if unreadable)."""
        data = read_json(self.snapshot_path)
        try:
            return MonitorSnapshot.from_dict(data) if data else None
        except (KeyError, TypeError, ValueError):
            return None

    def read_history(self) -> list[MonitorEvent]:
        """The alert history kept in the monitor's state file (warnings and critical alerts, oldest
        first, of this monitor and those before it on the day folder)."""
        if self.state_file is None:
            return []
        history = read_json(self.state_file).get("history") or []
        return [e for e in (event_from_dict(d) for d in history if isinstance(d, dict)) if e is not None]


@dataclass(frozen=True)
class MonitorStatus:
    monitor_id: str
    state: str  # starting | running | stopped | finished | failed | died | unknown
    alive: bool | None  # None: cannot be told (another host, or a live pid not confirmed ours)
    pid: int | None
    host: str
    day_folder: str
    backup: list[str]
    broadcast: list[str]
    state_file: str | None
    log: str | None
    output: str | None
    started: str
    updated: str
    activity: str
    end_reason: str | None
    exit_code: int | None
    folder: str
    process_note: str = ""  # why a live pid is not taken for this monitor's process

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def monitor_status(record: MonitorRecord) -> MonitorStatus:
    record.reload()
    info, state = record.info, record.state
    life = liveness(info, str(state.get("state") or ("starting" if info else "unknown")))
    return MonitorStatus(
        monitor_id=record.monitor_id, state=life.state, alive=life.alive, pid=info.get("pid"),
        host=str(info.get("host") or ""), day_folder=str(info.get("day_folder") or ""), backup=record.backup,
        broadcast=record.broadcast, state_file=info.get("state_file"), log=info.get("log"),
        output=info.get("output"), started=record.started, updated=str(state.get("updated") or ""),
        activity=str(state.get("activity") or ""), end_reason=state.get("end_reason"),
        exit_code=state.get("exit_code"), folder=str(record.folder),
        process_note=life.note.replace("this record's process", "this monitor's process"))


def list_monitors() -> list[MonitorRecord]:
    """The detached monitors recorded for this user, newest first."""
    root = monitors_root()
    if not root.is_dir():
        return []
    records = [MonitorRecord.load(p) for p in root.iterdir() if (p / MONITOR_FILE).is_file()]
    return sorted(records, key=lambda r: (r.started, r.monitor_id), reverse=True)


def running_monitors() -> list[MonitorRecord]:
    """The recorded monitors whose process is confirmed to be running, newest first."""
    return [r for r in list_monitors() if monitor_status(r).alive]


def live_monitor_records() -> list[MonitorRecord]:
    """The recorded monitors whose record says they run and whose process is confirmed running,
    newest first. Cheap enough for the app's start-up: a record that says it ended costs one small
    file read and no process check (a long campaign keeps many)."""
    try:
        folders = [Path(entry.path) for entry in os.scandir(monitors_root()) if entry.is_dir()]
    except OSError:
        return []
    found = []
    for folder in folders:
        state = read_json(folder / STATE_FILE)
        recorded = str(state.get("state") or "starting")
        if recorded not in LIVE_STATES:
            continue
        info = read_json(folder / MONITOR_FILE)
        if info and liveness(info, recorded).alive:
            found.append(MonitorRecord(folder, info, state))
    return sorted(found, key=lambda r: (r.started, r.monitor_id), reverse=True)


def is_monitor_ref(ref: str) -> bool:
    """Whether RUN names a monitor: a monitor id (MON...) or a monitor record folder."""
    return ref.startswith("MON") or (Path(ref) / MONITOR_FILE).is_file()


def find_monitor(ref: str) -> MonitorRecord:
    """A monitor by record folder, id, unique id prefix, or "last"; raises LookupError saying why."""
    if (Path(ref) / MONITOR_FILE).is_file():
        return MonitorRecord.load(ref)
    records = list_monitors()
    if not records:
        raise LookupError(f"no detached monitors recorded under {monitors_root()}")
    if ref in ("last", "latest"):
        return records[0]
    matches = [r for r in records if r.monitor_id == ref] or [r for r in records if r.monitor_id.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        known = ", ".join(r.monitor_id for r in records[:5])
        raise LookupError(f"no monitor {ref!r} under {monitors_root()} (latest: {known})")
    raise LookupError(f"{ref!r} matches several monitors: {', '.join(r.monitor_id for r in matches[:5])}")


def _new_record_folder(day_folder: Path) -> Path:
    """`MON<date>_<time>_<day>` (`-2`, `-3`... if taken), created at once: two starts never share one."""
    root = monitors_root()
    root.mkdir(parents=True, exist_ok=True)
    base = f"MON{datetime.now():%Y%m%d_%H%M%S}_{day_folder.name}"
    for n in range(1, 1000):
        folder = root / (base if n == 1 else f"{base}-{n}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return folder
    raise MonitorStartError(f"cannot make a record folder under {root}")


def _absolute_target(spec: str) -> str:
    return spec if ":" in spec and not Path(spec).exists() else os.path.abspath(os.path.expanduser(spec))


def start_detached_monitor(day_folder: str | os.PathLike[str], *, backup: Iterable[str] = (),
                           broadcast: Iterable[str] = (), config: str | os.PathLike[str] | None = None,
                           monitor_config: str | os.PathLike[str] | None = None,
                           state_file: str | os.PathLike[str] | None = None, log: str | os.PathLike[str] | None = None,
                           options: Sequence[str] = (), cwd: str | os.PathLike[str] | None = None,
                           python: str | None = None) -> MonitorRecord:
    """Start `vison-engine monitor DAY ...` in the background, in its own session; return its
    record at once. The inputs are the caller's to check (the CLI and the app build a Monitor
    first); refused here: a state file another monitor holds. `options`: further monitor flags
    (--polling, --settle S, --idle-stop MIN, --chamber NAME, -v)."""
    day = Path(os.path.abspath(day_folder))
    state_path = Path(os.path.abspath(state_file)) if state_file else default_state_path(day)
    holder = state_in_use(state_path)
    if holder:
        raise MonitorStartError(f"{holder}: stop it first (vison-engine monitors lists the detached ones)")
    for record in running_monitors():
        if record.state_file == state_path:
            raise MonitorStartError(f"monitor {record.monitor_id} (pid {record.info.get('pid')}) already follows "
                                    f"{record.day_folder} with this state file: stop it first")
    folder = _new_record_folder(day)
    backup = [_absolute_target(t) for t in backup]
    broadcast = [_absolute_target(t) for t in broadcast]
    log_path = Path(os.path.abspath(log)) if log else folder / LOG_FILE
    argv = [str(day), *(a for t in backup for a in ("--backup", t)), *(a for t in broadcast for a in ("--broadcast", t)),
            "--state", str(state_path), "--log", str(log_path)]
    if config:
        argv += ["--config", os.path.abspath(config)]
    if monitor_config:
        argv += ["--monitor-config", os.path.abspath(monitor_config)]
    argv += list(options)
    command = engine_command("monitor", *argv, "--record", str(folder), python=python)
    started = now_iso()
    info = {"id": folder.name, "folder": str(folder), "day_folder": str(day), "backup": backup,
            "broadcast": broadcast, "state_file": str(state_path), "log": str(log_path),
            "output": str(folder / OUTPUT_FILE), "config": os.path.abspath(config) if config else None,
            "argv": argv, "cwd": str(Path(cwd or os.getcwd()).resolve()), "detached": True, "started": started,
            "user": user_name(), "command": command}
    update_info(folder, MONITOR_FILE, info)
    write_json_atomic(folder / STATE_FILE, {"monitor_id": folder.name, "state": "starting", "activity": "starting",
                                            "updated": started})
    spawn_detached(command, folder, MONITOR_FILE, cwd=Path(info["cwd"]))
    return MonitorRecord.load(folder)


def stop_monitor(record: MonitorRecord, timeout: float = 30.0, force: bool = False) -> MonitorStatus:
    """SIGTERM, then wait up to `timeout` s: the monitor abandons the copy in progress, saves its
    state and ends `stopped`. Only a process confirmed to be the monitor's is signalled."""
    stop_recorded(record.folder, MONITOR_FILE, timeout=timeout, force=force)
    return monitor_status(record)


class MonitorRecorder:
    """Inside the detached monitor's process: its identity in monitor.json, its state in
    state.json, its events in events.jsonl and its snapshot every second in snapshot.json."""

    def __init__(self, folder: str | os.PathLike[str], monitor) -> None:
        from .alerts import StreamSink

        self.folder = Path(folder)
        self.monitor = monitor
        update_info(self.folder, MONITOR_FILE, own_identity())
        update_state(self.folder, {"state": "running", "activity": f"following {monitor.day_folder}",
                                   "end_reason": None, "exit_code": None})
        self._events = open(self.folder / EVENTS_FILE, "a", encoding="utf-8")
        monitor.add_sink(StreamSink(self._events, json_lines=True))
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._keep_snapshot, name="monitor-record", daemon=True)
        self._thread.start()

    def _keep_snapshot(self) -> None:
        while True:
            self.write_snapshot()
            if self._done.wait(SNAPSHOT_SECONDS):
                return

    def write_snapshot(self) -> None:
        try:
            write_json_atomic(self.folder / SNAPSHOT_FILE, self.monitor.snapshot().to_dict())
        except Exception:  # noqa: BLE001 - a snapshot for the app must never take the monitor down
            pass

    def finish(self, state: str, reason: str, exit_code: int) -> None:
        self._done.set()
        self._thread.join(10)
        self.write_snapshot()
        try:
            update_state(self.folder, {"state": state, "activity": state, "end_reason": reason,
                                       "exit_code": exit_code})
        except OSError:
            pass
        try:
            self._events.close()
        except OSError:
            pass
