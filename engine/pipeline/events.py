"""What a pipeline run reports: one frozen dataclass per kind of event (as the monitor's events).

Each event has a `kind` (stable snake_case name), a `severity` (info, warning, error), `at`, and
`log_offset`: the size of the run's log when it happened, so a reader jumps to the log record
that tells it (a test's "Running Task" line, a sub-task's traceback). The run appends every
event as one JSON line to `<log>.events.jsonl` beside its log (`events_path`); the app reads
tasks and errors from there instead of matching log text. Listeners given to PipelineRun get
(kind, payload) as before (`payload()` is the event's fields).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

EVENTS_SUFFIX = ".events.jsonl"


def events_path(log_path: Path) -> Path:
    return log_path.with_name(log_path.name + EVENTS_SUFFIX)


def _now() -> datetime:
    return datetime.now().replace(microsecond=0)


@dataclass(frozen=True)
class PipelineEvent:
    kind: ClassVar[str] = "event"
    at: datetime = field(default_factory=_now, kw_only=True)
    log_offset: int | None = field(default=None, kw_only=True)

    @property
    def severity(self) -> str:
        return "info"

    def payload(self) -> dict[str, Any]:
        """The event's own fields (what listeners have always been given)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("at", "log_offset")}

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "severity": self.severity, "at": self.at.isoformat(),
                "log_offset": self.log_offset, **_plain(self.payload())}


@dataclass(frozen=True)
class RunStarted(PipelineEvent):
    kind: ClassVar[str] = "run_started"
    tests: list[str]
    log: str
    mode: str


@dataclass(frozen=True)
class RunFinished(PipelineEvent):
    kind: ClassVar[str] = "run_finished"
    reason: str
    state: str  # finished | stopped | failed
    errors: bool

    @property
    def severity(self) -> str:
        return "error" if self.state == "failed" else ("warning" if self.errors else "info")


@dataclass(frozen=True)
class TestStarted(PipelineEvent):
    __test__ = False  # not a pytest class
    kind: ClassVar[str] = "test_started"
    test: str


@dataclass(frozen=True)
class SubtaskStarted(PipelineEvent):
    kind: ClassVar[str] = "subtask_started"
    test: str
    subtask: str


@dataclass(frozen=True)
class SubtaskEnded(PipelineEvent):
    kind: ClassVar[str] = "subtask_ended"
    test: str
    subtask: str
    status: str  # done | failed | skipped (base.py)
    seconds: float | None = None
    error: str | None = None

    @property
    def severity(self) -> str:
        return "error" if self.status == "failed" else ("warning" if self.status == "skipped" else "info")


@dataclass(frozen=True)
class TestFinished(PipelineEvent):
    __test__ = False
    kind: ClassVar[str] = "test_finished"
    test: str
    state: str  # done | errors
    flags: list[str]
    minutes: float
    obsids: list[int] | None = None
    error: str | None = None  # the task itself failed (outside its sub-tasks)

    @property
    def severity(self) -> str:
        return "error" if self.state == "errors" else "info"


@dataclass(frozen=True)
class TestAbandoned(PipelineEvent):
    __test__ = False
    kind: ClassVar[str] = "test_abandoned"
    test: str
    reason: str

    @property
    def severity(self) -> str:
        return "warning"


@dataclass(frozen=True)
class TestPrepared(PipelineEvent):
    __test__ = False
    kind: ClassVar[str] = "test_prepared"
    test: str
    exposures: int
    expected: int
    folder: str
    subtasks: dict[str, str]
    obsids: list[int] | None = None


@dataclass(frozen=True)
class TestSkipped(PipelineEvent):
    __test__ = False
    kind: ClassVar[str] = "test_skipped"
    test: str
    reason: str  # "already analysed" | "data incomplete"
    state: str = "skipped"
    flags: list[str] | None = None
    obsids: list[int] | None = None
    result: str | None = None  # the earlier result's folder
    logged: int | None = None
    expected: int | None = None

    @property
    def severity(self) -> str:
        return "warning" if self.reason != "already analysed" else "info"


@dataclass(frozen=True)
class Watching(PipelineEvent):
    kind: ClassVar[str] = "watching"
    folder: str
    observer: str  # events | polling
    why: str
    idle_stop_s: float | None = None


@dataclass(frozen=True)
class Waiting(PipelineEvent):
    kind: ClassVar[str] = "waiting"
    message: str
    idle_stop_in_s: int | None = None


@dataclass(frozen=True)
class TestProgress(PipelineEvent):
    __test__ = False
    kind: ClassVar[str] = "test_progress"
    test: str
    state: str
    logged: int
    expected: int
    total: int
    obsids: list[int] | None = None


EVENT_KINDS: dict[str, type[PipelineEvent]] = {
    cls.kind: cls for cls in (RunStarted, RunFinished, TestStarted, SubtaskStarted, SubtaskEnded, TestFinished,
                              TestAbandoned, TestPrepared, TestSkipped, Watching, Waiting, TestProgress)
}


class EventLog:
    """Appends a run's events to its events file, one JSON line each, flushed at once (the app
    follows the file while the run goes on). A failing write is said once and never stops the run."""

    def __init__(self, path: Path):
        self.path = path
        self.problem: str | None = None

    def write(self, event: PipelineEvent) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as out:
                out.write(json.dumps(event.to_dict()) + "\n")
        except OSError as exc:
            self.problem = self.problem or f"cannot write {self.path}: {exc.strerror or exc}"


def read_events(path: Path) -> list[dict[str, Any]]:
    """Every whole event line of an events file (a line being written, or broken, is left out)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return parse_event_lines(text.splitlines(keepends=True))


def parse_event_lines(lines: list[str]) -> list[dict[str, Any]]:
    events = []
    for line in lines:
        if not line.endswith("\n"):
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and isinstance(event.get("kind"), str):
            events.append(event)
    return events


def log_size(path: Path) -> int | None:
    try:
        return os.stat(path).st_size
    except OSError:
        return None


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, float) and value != value:
        return None
    return value
