"""A pipeline log as the Log screen reads it, without Textual (toolong's way, see peers.md B1):
the file is never held as lines, only the byte offsets where lines start; lines are read on
demand with `os.pread` and kept in a small cache.

Scanning runs in a worker: the last `TAIL_BYTES` first (the view fills from the end at once),
then the rest of the file, then only the bytes appended since the last look, read by the engine's
follower of growing text files (engine.formats.textfollow), which also notices a file that
shrinks or is replaced (another inode): it is then scanned again from the start.

Tests and errors come from the run's typed events (engine/pipeline/events.py, the events file
beside the log: each event says where in the log its record starts); a log without an events
file (written by an older engine) falls back to matching its text.

Classification of lines for highlighting uses the format of `engine/pipeline/log.py`: records
start with "YYYY-mm-dd HH:MM:SS,mmm - LEVEL - "; lines without that prefix (tracebacks, summary
blocks, inputs) belong to the record above them.
"""

from __future__ import annotations

import mmap
import os
import re
from array import array
from bisect import bisect_right
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

TAIL_BYTES = 1 << 20  # scanned first, so a long log shows its end at once
CHUNK_BYTES = 8 << 20  # newline search in pieces: bounded memory whatever the file size
LINE_CACHE = 4000
MAX_LINE_BYTES = 64 << 10  # a line longer than this is shown cut (a log line that long is a bug)

RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} - ([A-Z]+) - ")
TASK = re.compile(rb"Running Task: (\S+)")
ERROR_LINE = re.compile(rb"^[-0-9: ,]+ - (?:ERROR|CRITICAL) - |exited with Errors: True|Executed with Error\(s\)",
                        re.MULTILINE)
TASK_ERRORS = re.compile(r"Task (\S+) exited with Errors: True|Executed with Error\(s\)")
FLAGS = re.compile(r"Raised Flags = \[(.*)\]")
TRACEBACK = re.compile(r"^(Traceback \(most recent call last\)|  File \"|During handling of the above|"
                       r"The above exception was)|^\w+(\.\w+)*(Error|Exception|Interrupt|Exit): ")
RULE = re.compile(r"^#{20,}\s*$")


@dataclass
class Scan:
    """Line starts (absolute byte offsets) of the complete lines in [start, end), and its tasks."""

    start: int
    end: int  # just after the last newline found: the next scan starts here
    starts: array
    tasks: list[tuple[int, str]] = field(default_factory=list)  # (byte offset of the line, test)
    errors: list[int] = field(default_factory=list)  # byte offsets of error lines (ERROR records, failed tasks)


def index_lines(start: int, data: bytes) -> Scan:
    """Index `data`, whole lines read from byte `start` (a line start) of the file; its last line
    may lack a newline only if the follower cut it (longer than a read)."""
    newlines = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
    line_starts = np.concatenate(([0], newlines + 1))
    if line_starts[-1] == len(data):
        line_starts = line_starts[:-1]  # the position after the last newline starts no line yet
    tasks = [(start + data.rfind(b"\n", 0, m.start()) + 1, m.group(1).decode("utf-8", "replace"))
             for m in TASK.finditer(data)]
    errors = [start + data.rfind(b"\n", 0, m.start()) + 1 for m in ERROR_LINE.finditer(data)]
    return Scan(start, start + len(data), array("q", (line_starts + start).tolist()), tasks, errors)


def scan_lines(fd: int, start: int, stop: int) -> Scan:
    """Index the complete lines between byte `start` (a line start) and `stop`: the part of a
    log before its tail, which does not grow (the follower reads what is appended).

    A last line without its newline yet is left for the next scan (the writer is mid-line)."""
    scan = Scan(start, start, array("q"))
    size = CHUNK_BYTES
    while scan.end < stop:
        chunk = os.pread(fd, min(size, stop - scan.end), scan.end)
        whole = chunk[:chunk.rfind(b"\n") + 1]
        if not whole:
            if len(chunk) == size:
                size *= 2  # one line longer than a chunk: read more at once
                continue
            break  # a line still being written
        part = index_lines(scan.end, whole)
        scan.starts.extend(part.starts)
        scan.tasks += part.tasks
        scan.errors += part.errors
        scan.end = part.end
        size = CHUNK_BYTES
    return scan


def tail_start(fd: int, size: int, tail_bytes: int = TAIL_BYTES) -> int:
    """The first line start in the last `tail_bytes` of the file (0 for a short file)."""
    if size <= tail_bytes:
        return 0
    begin = size - tail_bytes
    chunk = os.pread(fd, min(tail_bytes, 1 << 16), begin - 1)
    newline = chunk.find(b"\n")
    return begin + newline if newline >= 0 else size


class LogIndex:
    """The indexed lines of one log file, owned by the UI thread; scans are merged into it."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.starts = array("q")
        self.end = 0  # bytes indexed from the start of the file (after the head scan)
        self.first = 0  # byte offset of the first indexed line (0 once the head is scanned)
        self.tasks: list[tuple[int, str]] = []  # from the text: logs without events only
        self.errors: list[int] = []
        self.has_events = False  # the run's events file was found: tasks and errors come from it
        self.event_tasks: list[tuple[int, str]] = []  # (log offset, test) of each test_started
        self.event_errors: list[int] = []  # log offsets of error events (a failed sub-task, test, run)
        self._fd: int | None = None
        self._lines: OrderedDict[int, str] = OrderedDict()
        self._levels: dict[int, str] = {}

    # -- file ----------------------------------------------------------------------------------
    def open(self) -> bool:
        self.close()
        if self.path is None:
            return False
        try:
            self._fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return False
        return True

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.starts = array("q")
        self.end = self.first = 0
        self.tasks = []
        self.errors = []
        self._lines.clear()
        self._levels.clear()

    # -- merging scans ---------------------------------------------------------------------------
    def add_tail(self, scan: Scan) -> int:
        """The first scan (the file's end): replaces whatever was indexed."""
        self.starts = array("q", scan.starts)
        self.first, self.end = scan.start, scan.end
        self.tasks = list(scan.tasks)
        self.errors = list(scan.errors)
        self._lines.clear()
        self._levels.clear()
        return len(scan.starts)

    def add_head(self, scan: Scan) -> int:
        """The lines before the tail: returns how many were put in front (line numbers shift)."""
        if scan.start != 0 or scan.end != self.first:
            return 0
        count = len(scan.starts)
        self.starts = array("q", scan.starts) + self.starts
        self.first = 0
        self.tasks = list(scan.tasks) + self.tasks
        self.errors = list(scan.errors) + self.errors
        self._lines = OrderedDict((i + count, text) for i, text in self._lines.items())
        self._levels = {i + count: level for i, level in self._levels.items()}
        return count

    def add_appended(self, scan: Scan) -> int:
        if scan.start < self.end:
            return 0  # already indexed (a later scan may start further on: the rest of a cut line was skipped)
        self.starts.extend(scan.starts)
        self.end = scan.end
        self.tasks.extend(scan.tasks)
        self.errors.extend(scan.errors)
        return len(scan.starts)

    # -- reading -------------------------------------------------------------------------------
    @property
    def line_count(self) -> int:
        return len(self.starts)

    @property
    def complete(self) -> bool:
        """The whole file is indexed (not only its tail)."""
        return self.first == 0

    def line(self, index: int) -> str:
        cached = self._lines.get(index)
        if cached is not None:
            self._lines.move_to_end(index)
            return cached
        if self._fd is None or not 0 <= index < len(self.starts):
            return ""
        start = self.starts[index]
        stop = self.starts[index + 1] if index + 1 < len(self.starts) else self.end
        try:
            raw = os.pread(self._fd, min(stop - start, MAX_LINE_BYTES), start)
        except OSError:
            return ""
        text = raw.decode("utf-8", "replace").rstrip("\r\n").expandtabs(4)
        self._lines[index] = text
        if len(self._lines) > LINE_CACHE:
            self._lines.popitem(last=False)
        return text

    def line_of_offset(self, offset: int) -> int:
        """The index of the line holding byte `offset`."""
        return max(0, bisect_right(self.starts, offset) - 1)

    # -- events ------------------------------------------------------------------------------------
    def add_events(self, events: list[dict], restarted: bool = False) -> bool:
        """Take tests and errors from the run's events; True if the task list changed."""
        if restarted:
            self.event_tasks, self.event_errors = [], []
        self.has_events = True
        changed = restarted
        for event in events:
            offset = event.get("log_offset")
            if not isinstance(offset, int):
                continue
            if event.get("kind") == "test_started":
                self.event_tasks.append((offset, str(event.get("test", "?"))))
                changed = True
            if event.get("severity") == "error":
                self.event_errors.append(offset)
                changed = True
        return changed

    def task_lines(self) -> list[tuple[int, str]]:
        """(line, test) where each test's analysis starts, among the lines indexed so far."""
        tasks = self.event_tasks if self.has_events else self.tasks
        return [(self.line_of_offset(offset), name) for offset, name in tasks if self.indexed(offset)]

    def error_lines(self) -> list[int]:
        """First lines of the error records, in order (a traceback counts once)."""
        errors = self.event_errors if self.has_events else self.errors
        return sorted({self.line_of_offset(offset) for offset in errors if self.indexed(offset)})

    def indexed(self, offset: int) -> bool:
        return self.first <= offset < self.end

    def events_between(self, start: int, stop: int) -> bool:
        """Whether a test or an error starts in the log bytes [start, stop) (newly indexed)."""
        return any(start <= offset < stop for offset, _ in self.event_tasks) or \
            any(start <= offset < stop for offset in self.event_errors)

    def level(self, index: int) -> str:
        """The level of the record a line belongs to (INFO, WARNING, ERROR...)."""
        walked = []
        level = "INFO"
        i = index
        while i >= 0:
            known = self._levels.get(i)
            if known is not None:
                level = known
                break
            match = RECORD.match(self.line(i))
            if match:
                level = match.group(1)
                break
            walked.append(i)
            i -= 1
            if len(walked) > 2000:  # a runaway record: stop looking
                break
        for j in walked + [index]:
            self._levels[j] = level
        if len(self._levels) > 4 * LINE_CACHE:
            self._levels.clear()
        return level

    def kind(self, index: int) -> str:
        return line_kind(self.line(index), self.level(index))


def line_kind(text: str, level: str = "INFO") -> str:
    """error | warning | flags | task | rule | plain: how the Log screen colours a line."""
    if level in ("ERROR", "CRITICAL") or TASK_ERRORS.search(text) or TRACEBACK.match(text):
        return "error"
    flags = FLAGS.search(text)
    if flags:
        return "flags" if flags.group(1).strip() else "plain"
    if "Running Task: " in text:
        return "task"
    if level == "WARNING":
        return "warning"
    if RULE.match(text) or (RECORD.match(text) and RULE.match(text[RECORD.match(text).end():])):
        return "rule"
    return "plain"


def search_file(path: Path, pattern: str, start: int = 0, stop: int | None = None,
                limit: int = 100_000) -> list[int]:
    """Byte offsets of the matches of `pattern` (plain text, case-insensitive) in [start, stop)."""
    if not pattern:
        return []
    regex = re.compile(re.escape(pattern.encode("utf-8")), re.IGNORECASE)
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        stop = size if stop is None else min(stop, size)
        if stop <= start:
            return []
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            found = []
            for match in regex.finditer(data, start, stop):
                found.append(match.start())
                if len(found) >= limit:
                    break
            return found


RECORD_BYTES = re.compile(rb"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} - ([A-Z]+) - ", re.MULTILINE)
LEVEL_FILTERS = {  # the Log screen's level filter (l): the records kept, most verbose first
    "all": None,
    "warnings": frozenset({"WARNING", "ERROR", "CRITICAL"}),
    "errors": frozenset({"ERROR", "CRITICAL"}),
}


def lines_of_levels(path: Path, starts, first_line: int, stop: int, levels: frozenset[str],
                    carry: str = "INFO") -> np.ndarray:
    """The line numbers, among lines `first_line`.. whose start offsets are `starts` (up to byte
    `stop`), that belong to a record of one of `levels`. Lines without a record prefix (tracebacks,
    summaries, inputs) belong to the record above; `carry` is the level of the record open before
    the first of these lines."""
    starts = np.asarray(starts, dtype=np.int64)
    if not len(starts):
        return np.zeros(0, dtype=np.int64)
    begin = int(starts[0])
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        stop = min(stop, size)
        if stop <= begin:
            return np.zeros(0, dtype=np.int64)
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            found = [(m.start(), m.group(1).decode("ascii", "replace")) for m in RECORD_BYTES.finditer(data, begin, stop)]
    record_lines = np.searchsorted(starts, np.array([o for o, _ in found], dtype=np.int64), side="right") - 1
    kept_record = np.array([level in levels for _, level in found], dtype=bool)
    lines = np.arange(len(starts))
    which = np.searchsorted(record_lines, lines, side="right") - 1  # the record each line belongs to
    keep = np.where(which >= 0, kept_record[np.clip(which, 0, None)] if len(found) else False, carry in levels)
    return lines[keep] + first_line
