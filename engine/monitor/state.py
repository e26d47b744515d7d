"""The monitor's memory: what it has read, checked, alerted and copied, kept in one JSON file.

A restarted monitor loads it and carries on where it stopped: EXP_LOG and HK followers resume at
their byte offsets, finished HK files and complete frames are not read again, alerts still
active are not sent again, and the backup ledger says what each target already holds.
The file is written atomically (temporary name, fsync, rename), so a kill never leaves it
half-written; a lock file keeps two monitors off the same state.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

STATE_VERSION = 1
HISTORY_LIMIT = 2000  # alerts kept in the state (a bad night: a few hundred)
STATE_KIND = "vison monitor state"  # in every state file: what tells ours from anyone's file


def default_state_path(day_folder: str | os.PathLike[str]) -> Path:
    """`$XDG_STATE_HOME/vison/monitor/<day>-<hash of its path>.json`: never inside the data."""
    folder = os.path.abspath(day_folder)
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    tag = hashlib.sha256(folder.encode()).hexdigest()[:8]
    return base / "vison" / "monitor" / f"{Path(folder).name}-{tag}.json"


@dataclass
class MonitorState:
    day_folder: str
    explogs: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> ExpLogFollower.state()
    hk_open: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {follower, problems, ...}
    hk_done: dict[str, int] = field(default_factory=dict)  # name -> size when finished
    frames_done: dict[str, int] = field(default_factory=dict)  # name -> size when found complete
    frame_shapes: dict[str, int] = field(default_factory=dict)  # "NAXIS2xNAXIS1" -> complete frames of it
    alerts: dict[str, dict[str, Any]] = field(default_factory=dict)  # HK key -> active alert
    backup: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # target -> name -> entry
    scrub: dict[str, Any] = field(default_factory=dict)  # the periodic re-hash of copies: {"at": its last run}
    # the warnings and critical alerts so far (event.to_dict(), oldest first, the last HISTORY_LIMIT):
    # a restarted monitor, or the app attaching to it, still shows what happened in the night
    history: list[dict[str, Any]] = field(default_factory=list)
    saved_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": STATE_KIND, "version": STATE_VERSION, "day_folder": self.day_folder, "saved_at": self.saved_at,
            "explogs": self.explogs, "hk_open": self.hk_open, "hk_done": self.hk_done,
            "frames_done": self.frames_done, "frame_shapes": self.frame_shapes, "alerts": self.alerts,
            "backup": self.backup, "scrub": self.scrub, "history": self.history,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MonitorState:
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"state version {data.get('version')!r}, expected {STATE_VERSION}")
        return cls(
            day_folder=str(data["day_folder"]), explogs=dict(data.get("explogs", {})),
            hk_open=dict(data.get("hk_open", {})), hk_done=dict(data.get("hk_done", {})),
            frames_done=dict(data.get("frames_done", {})), frame_shapes=dict(data.get("frame_shapes", {})),
            alerts=dict(data.get("alerts", {})),
            backup={t: dict(v) for t, v in data.get("backup", {}).items()}, saved_at=data.get("saved_at"),
            scrub=dict(data.get("scrub") or {}),
            history=[e for e in data.get("history", []) if isinstance(e, dict)][-HISTORY_LIMIT:],
        )


class StateLocked(RuntimeError):
    """Another monitor holds this state file."""


class StateNotOurs(StateLocked):
    """The state path names a file that is not a monitor state (a campaign TOML, a FITS frame...):
    it is never renamed nor overwritten. A StateLocked, so that callers refusing one refuse both."""


def is_monitor_state(data: Any) -> bool:
    """A monitor state as this version writes it, or as version 1 wrote it before STATE_KIND."""
    if not isinstance(data, dict):
        return False
    return data.get("kind") == STATE_KIND or {"version", "day_folder", "backup", "explogs"} <= data.keys()


def state_file_refusal(path: Path) -> str | None:
    """Why `path` may not be used (and rewritten) as a state file, or None. An empty or missing
    file is fine; anything else must be one of our states."""
    lock = path.with_name(path.name + ".lock")
    if lock.is_file() and lock.stat().st_size and not lock.read_text(errors="replace").strip().isdigit():
        return f"{lock} exists and is not a monitor's lock file (it holds no pid): choose another --state file"
    if not path.exists() and not path.is_symlink():
        return None
    if not path.is_file():
        return f"state file {path} exists and is not a file: choose another --state file"
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        return f"state file {path} is not a monitor state ({exc}): it is left alone; choose another --state file"
    if not text.strip():
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None
    if not is_monitor_state(data):
        return (f"state file {path} is not a monitor state (no \"kind\": \"{STATE_KIND}\"): it is left alone; "
                "choose another --state file, or leave --state out for the default")
    return None


def state_in_use(path: str | os.PathLike[str]) -> str | None:
    """Why the state file cannot be taken now (another monitor holds its lock), or None. Takes the
    lock for an instant only, never creating the state or its folder."""
    lock = Path(path).with_name(Path(path).name + ".lock")
    try:
        handle = open(lock, "r+")
    except OSError:
        return None  # no lock file: nobody holds it
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = handle.read().strip()
            return f"{path} is in use by another monitor{f' (pid {holder})' if holder else ''}"
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


class StateStore:
    """Loads, locks and saves a MonitorState. Mutate the state only while holding `lock`."""

    def __init__(self, path: str | os.PathLike[str], day_folder: str | os.PathLike[str]):
        self.path = Path(path)
        self.day_folder = os.path.abspath(day_folder)
        self.lock = threading.RLock()
        self.state = MonitorState(self.day_folder)
        self.resumed = False
        self.notes: list[str] = []  # things worth telling the operator (a state set aside...)
        self._lock_handle = None
        self._last_save = 0.0
        self._dirty = False
        self._last_text = ""

    def open(self) -> MonitorState:
        """Take the lock and load the state (a fresh one if there is none).

        Raises StateNotOurs, before creating anything, when the path holds someone else's file."""
        refusal = state_file_refusal(self.path)
        if refusal:
            raise StateNotOurs(refusal)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path.with_name(self.path.name + ".lock"), "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip()
            handle.close()
            raise StateLocked(f"{self.path} is in use by another monitor{f' (pid {holder})' if holder else ''}")
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock_handle = handle
        refusal = state_file_refusal(self.path)  # again, now that no other monitor can write it
        if refusal:
            self.close()
            raise StateNotOurs(refusal)
        if self.path.exists() and self.path.stat().st_size:
            try:
                state = MonitorState.from_dict(json.loads(self.path.read_text()))
                if state.day_folder != self.day_folder:
                    raise ValueError(f"it belongs to {state.day_folder}")
                self.state, self.resumed = state, True
            except (ValueError, KeyError, TypeError, json.JSONDecodeError) as exc:
                aside = self.path.with_name(f"{self.path.name}.unusable-{int(time.time())}")
                os.replace(self.path, aside)
                self.notes.append(f"state {self.path} not usable ({exc}); set aside as {aside.name}, starting afresh")
        return self.state

    def mark_dirty(self) -> None:
        self._dirty = True

    def save(self, *, at_most_every: float = 0.0) -> None:
        """Write the state atomically; with `at_most_every`, skip if saved that recently."""
        now = time.monotonic()
        if at_most_every and now - self._last_save < at_most_every:
            self._dirty = True
            return
        with self.lock:  # the scanner and the backup thread both save
            data = self.state.to_dict()
            data["saved_at"] = None
            text = json.dumps(data, separators=(",", ":"))
            if text == self._last_text:
                return  # nothing changed: spare the disk an fsync every scan
            unsaved = text
            self.state.saved_at = datetime.now().isoformat(timespec="seconds")
            text = json.dumps(self.state.to_dict(), separators=(",", ":"))
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            try:
                with open(tmp, "w") as handle:
                    handle.write(text)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, self.path)
            except OSError:
                self._dirty = True  # a full or read-only disk: the old state stays whole, tried again later
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                raise
            self._last_text = unsaved
            self._last_save, self._dirty = now, False

    def save_if_dirty(self) -> None:
        if self._dirty:
            self.save()

    def close(self) -> None:
        if self._lock_handle is not None:
            fcntl.flock(self._lock_handle, fcntl.LOCK_UN)
            self._lock_handle.close()
            self._lock_handle = None
