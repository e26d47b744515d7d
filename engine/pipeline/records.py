"""Records of background processes: what pipeline runs (runs.py) and detached monitors
(engine/monitor/detached.py) both need, written once.

A record is a folder holding an info file (what was started: pid, start time, command line...;
`run.json` or `monitor.json`), `state.json` (where the process is: `state`, `activity`,
`end_reason`, `exit_code`, `updated`, rewritten atomically) and, for a detached process,
`output.txt` (its console output). This module writes and reads those files, starts a command
detached (own session and process group, stdin from /dev/null), tells whether the recorded
process still runs and stops it, always through process.py's identity check: a process whose
identity is not confirmed is never signalled.

Only the standard library and process.py are used here, so the monitor (beside the pipeline)
may use it as it uses process.py.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Iterator, Mapping, Sequence

from .. import __version__
from ..process import UNCONFIRMED, ProcessCheck, check_process, process_command, process_start_ticks

STATE_FILE = "state.json"
OUTPUT_FILE = "output.txt"
LIVE_STATES = ("starting", "running")
END_STATES = ("finished", "stopped", "failed")


# -- files -------------------------------------------------------------------------------------

def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """Readers never see half a file: write beside it, then rename over it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@contextmanager
def locked(folder: Path) -> Iterator[None]:
    """The info file is written by the starting process and by the process itself: one at a time."""
    with open(folder / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def update_info(folder: Path, info_file: str, changes: Mapping[str, Any]) -> dict[str, Any]:
    with locked(folder):
        info = read_json(folder / info_file)
        info.update(changes)
        write_json_atomic(folder / info_file, info)
    return info


def update_state(folder: Path, changes: Mapping[str, Any]) -> dict[str, Any]:
    """Merge `changes` into state.json (and its `updated` time)."""
    with locked(folder):
        state = read_json(folder / STATE_FILE)
        state.update(changes)
        state["updated"] = now_iso()
        write_json_atomic(folder / STATE_FILE, state)
    return state


def state_dir() -> Path:
    """The per-user folder of vison's own records: `$VISON_STATE_DIR`, else `$XDG_STATE_HOME/vison`."""
    explicit = os.environ.get("VISON_STATE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "vison"


def now_iso() -> str:
    return datetime.now().isoformat(timespec="seconds")


def user_name() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return os.environ.get("USER", "")


# -- the process ---------------------------------------------------------------------------------

def own_identity() -> dict[str, Any]:
    """This process as a record keeps it: pid, start time and command line (which tell it from a
    later process given the same pid), process group, host, user."""
    pid = os.getpid()
    own = {"pid_start": process_start_ticks(pid), "command": process_command(pid)}
    return {"pid": pid, **{k: v for k, v in own.items() if v is not None}, "pgid": os.getpgid(pid),
            "host": socket.gethostname(), "user": user_name(), "vison_version": __version__}


@dataclass
class RecordFolder:
    """A record's folder; `info` is its info file (INFO_FILE of the kind), `state` state.json, as last read."""

    INFO_FILE: ClassVar[str]
    folder: Path
    info: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> Any:
        folder = Path(folder)
        return cls(folder, read_json(folder / cls.INFO_FILE), read_json(folder / STATE_FILE))

    def reload(self) -> Any:
        self.info, self.state = read_json(self.folder / self.INFO_FILE), read_json(self.folder / STATE_FILE)
        return self

    @property
    def pid(self) -> int | None:
        return self.info.get("pid")

    @property
    def started(self) -> str:
        return str(self.info.get("started") or "")

    def process(self) -> ProcessCheck:
        """Whether the recorded process still runs (pid, start time and command as recorded)."""
        return recorded_process(self.info)


def recorded_process(info: Mapping[str, Any]) -> ProcessCheck:
    """Whether the process an info file records still runs (pid, start time and command as recorded)."""
    return check_process(info.get("pid"), info.get("pid_start"), info.get("command"))


@dataclass(frozen=True)
class Liveness:
    state: str  # the recorded state, or "died" / "unknown" (below)
    alive: bool | None  # None: cannot be told (another host, or a live pid not confirmed ours)
    note: str  # why a live pid is not taken for the recorded process ("" otherwise)


def liveness(info: Mapping[str, Any], recorded: str) -> Liveness:
    """The effective state of a record: `died` when it says running but its process is gone (or
    the pid is now another process's), `unknown` when a live pid cannot be confirmed to be it."""
    host = str(info.get("host") or "")
    note = ""
    if host and host != socket.gethostname():
        return Liveness(recorded, None, "")
    process = recorded_process(info)
    alive: bool | None = process.running
    if process.other_process and recorded in LIVE_STATES:  # of an ended process, the pid's new owner is no news
        alive = None if process.state == UNCONFIRMED else False
        note = f"{process.reason}: not taken for this record's process, never signalled"
    effective = recorded
    if recorded in LIVE_STATES and alive is False:
        effective = "died"  # killed (SIGKILL, machine reboot) before it could say so
    elif recorded in LIVE_STATES and alive is None and note:
        effective = "unknown"
    return Liveness(effective, alive, note)


def spawn_detached(command: Sequence[str], folder: Path, info_file: str, *, cwd: Path) -> int:
    """Start `command` (a `python -m engine.cli ...`) in its own session, output to the record's
    output.txt; record its pid, start time and process group; return the pid."""
    env = dict(os.environ)
    # the child runs the same engine as this process, whatever is installed elsewhere
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    with open(folder / OUTPUT_FILE, "ab") as out:
        process = subprocess.Popen(list(command), cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
    with locked(folder):  # the child may already have written its own fields
        current = read_json(folder / info_file)
        current.setdefault("pid", process.pid)
        current.setdefault("pid_start", process_start_ticks(process.pid))
        current.setdefault("pgid", process.pid)  # its own session: group leader
        write_json_atomic(folder / info_file, current)
    return process.pid


def engine_command(*arguments: str, python: str | None = None) -> list[str]:
    """The command line of `vison-engine <arguments>` run by this Python."""
    return [python or sys.executable, "-m", "engine.cli", *arguments]


def stop_recorded(folder: Path, info_file: str, timeout: float = 30.0, force: bool = False) -> bool:
    """SIGTERM the recorded process if it is confirmed to be the one recorded, wait up to `timeout`
    s for it to end; `force`: SIGKILL it (its process group when detached) after that, and say so
    in state.json. Returns whether a signal was sent."""
    info = read_json(folder / info_file)
    state = str(read_json(folder / STATE_FILE).get("state") or "starting")
    if not liveness(info, state).alive:
        return False
    pid = int(info["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and recorded_process(info).running:
        time.sleep(0.1)
    if force and recorded_process(info).running:
        if info.get("detached") and info.get("pgid") == pid:
            os.killpg(pid, signal.SIGKILL)  # its worker processes too
        else:
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
        update_state(folder, {"state": "stopped", "activity": "killed", "exit_code": -9,
                              "end_reason": f"killed: did not stop within {timeout:g} s of SIGTERM"})
    return True
