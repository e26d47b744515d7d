"""Is a recorded process still the one we started? The one answer for run status, stop, clean-up
and the pool workers that end with their run.

A pid alone proves nothing: once a run has ended, the system may give its pid to any other
process. A record therefore keeps the process's start time (clock ticks after boot, from
/proc/<pid>/stat) and its command line; a live process with the pid is ours only when one of them
matches. A zombie (exited, not yet reaped) has ended. What cannot be confirmed is never signalled.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

RUNNING = "running"  # alive and confirmed to be the recorded process
ENDED = "ended"  # gone, a zombie, or the pid now belongs to another process
UNCONFIRMED = "unconfirmed"  # a live process has the pid; nothing recorded can tell whether it is ours


@dataclass(frozen=True)
class ProcessCheck:
    state: str  # RUNNING, ENDED or UNCONFIRMED
    reason: str  # a sentence for the user
    other_process: bool = False  # a live process holds the pid and is not (or not known to be) ours

    @property
    def running(self) -> bool:
        return self.state == RUNNING


def _stat_fields(pid: int, proc: Path) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (field 3, the state, first)."""
    try:
        text = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[-1].split()  # the name may hold spaces and parentheses


def process_start_ticks(pid: int, proc: Path = Path("/proc")) -> int | None:
    """The process's start time in clock ticks after boot, or None (no such process, no /proc)."""
    fields = _stat_fields(pid, proc)
    return int(fields[19]) if fields is not None and len(fields) > 19 else None


def process_command(pid: int, proc: Path = Path("/proc")) -> list[str] | None:
    try:
        raw = (proc / str(pid) / "cmdline").read_bytes()
    except OSError:
        return None
    return raw.decode(errors="replace").split("\0")[:-1] if raw else None


def check_process(pid: int | None, start_ticks: int | None = None, command: Sequence[str] | None = None,
                  proc: Path = Path("/proc")) -> ProcessCheck:
    """Whether the process recorded as `pid` (started at `start_ticks`, running `command`) still runs."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return ProcessCheck(ENDED, "no process recorded")
    try:
        os.kill(pid, 0)  # signal 0: existence only
    except ProcessLookupError:
        return ProcessCheck(ENDED, f"process {pid} has ended")
    except PermissionError:
        pass  # another user's process: /proc still tells whose it is
    except OSError:
        return ProcessCheck(ENDED, f"process {pid} has ended")
    fields = _stat_fields(pid, proc)
    if fields is None:
        return ProcessCheck(UNCONFIRMED, f"a process has pid {pid}, but without {proc} it cannot be told "
                                         "whether it is the one recorded", other_process=True)
    if fields[0] == "Z":
        return ProcessCheck(ENDED, f"process {pid} has ended (a zombie, not yet reaped)")
    if start_ticks is not None:
        if len(fields) > 19 and int(fields[19]) == start_ticks:
            return ProcessCheck(RUNNING, f"process {pid} is running")
        return ProcessCheck(ENDED, f"process {pid} has ended; pid {pid} now belongs to a process started later",
                            other_process=True)
    if command:
        found = process_command(pid, proc)
        if found == list(command):
            return ProcessCheck(RUNNING, f"process {pid} is running")
        if found is not None:
            return ProcessCheck(ENDED, f"process {pid} has ended; pid {pid} now runs another command",
                                other_process=True)
    return ProcessCheck(UNCONFIRMED, f"a process has pid {pid}, but the record has no start time to confirm "
                                     "it is the one recorded", other_process=True)


def descendants(pid: int, proc: Path = Path("/proc")) -> list[int]:
    """The pids of a process's children, theirs, and so on (empty without /proc)."""
    found: list[int] = []
    for task in (proc / str(pid) / "task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            pass
    return found + [grandchild for child in found for grandchild in descendants(child, proc)]
