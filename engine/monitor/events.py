"""What the monitor reports: one frozen dataclass per kind of event.

Every event has a `kind` (stable snake_case name used in JSON), a `severity` ("info", "warning"
or "critical"), `at` (wall-clock time the monitor noticed it), `to_dict()` (plain JSON-able data,
one line of `--json` output) and `message()` (one human line for the log and the terminal).
Events marked `detail` (a frame arrived, a file was copied) are left out of the terse console.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

SEVERITIES = ("info", "warning", "critical")


def severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity)


def _now() -> datetime:
    return datetime.now().replace(microsecond=0)


def plain_data(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [plain_data(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain_data(v) for k, v in value.items()}
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    return value


def _number(value: float | None) -> str:
    return "?" if value is None else f"{value:g}"


@dataclass(frozen=True)
class MonitorEvent:
    kind: ClassVar[str] = "event"
    detail: ClassVar[bool] = False  # routine: hidden from the terse console, kept in log and JSON
    at: datetime = field(default_factory=_now, kw_only=True)

    @property
    def severity(self) -> str:
        return "info"

    def to_dict(self) -> dict[str, Any]:
        data = {"kind": self.kind, "severity": self.severity}
        for item in dataclasses.fields(self):
            data[item.name] = plain_data(getattr(self, item.name))
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=False)

    def message(self) -> str:
        return self.kind


# -- monitor life --------------------------------------------------------------------------------

@dataclass(frozen=True)
class MonitorStarted(MonitorEvent):
    kind: ClassVar[str] = "monitor_started"
    day_folder: Path
    observer: str  # "events" (inotify) or "polling"
    observer_reason: str
    resumed: bool  # state from an earlier run was found
    backup_targets: tuple[str, ...] = ()

    def message(self) -> str:
        resumed = ", resuming" if self.resumed else ""
        targets = f"; backup to {', '.join(self.backup_targets)}" if self.backup_targets else ""
        return f"monitoring {self.day_folder} ({self.observer}: {self.observer_reason}{resumed}){targets}"


@dataclass(frozen=True)
class MonitorStopped(MonitorEvent):
    kind: ClassVar[str] = "monitor_stopped"
    reason: str  # "once", "interrupted", "idle", "error"
    backup: dict[str, Any] = field(default_factory=dict)  # BackupReport.to_dict() per target

    def message(self) -> str:
        parts = [f"monitor stopped ({self.reason})"]
        for target, report in self.backup.items():
            parts.append(f"{target}: {report.get('copied', 0)} copied, {report.get('pending', 0)} pending, "
                         f"{report.get('failed', 0)} failed, {report.get('conflicts', 0)} conflicts")
        return "; ".join(parts)


@dataclass(frozen=True)
class MonitorNotice(MonitorEvent):
    """Something the operator should know about the monitor itself (fallbacks, waiting, bad state)."""

    kind: ClassVar[str] = "notice"
    text: str
    level: str = "info"

    @property
    def severity(self) -> str:
        return self.level

    def message(self) -> str:
        return self.text


# -- the exposure log and frames -----------------------------------------------------------------

@dataclass(frozen=True)
class ExposureLogged(MonitorEvent):
    kind: ClassVar[str] = "exposure_logged"
    obsid: int
    test: str
    ccds: tuple[str, ...]  # CCDs whose rows arrived in this batch
    explog: str  # file name
    progress: str = ""  # the test's progress, e.g. "CHINJ01 21/36 frames (acquiring)"

    def message(self) -> str:
        progress = f"; {self.progress}" if self.progress else ""
        return f"OBSID {self.obsid} {self.test} logged ({', '.join(self.ccds)}){progress}"


@dataclass(frozen=True)
class ExpLogLineProblem(MonitorEvent):
    kind: ClassVar[str] = "explog_problem"
    path: Path
    line: int
    text: str

    @property
    def severity(self) -> str:
        return "warning"

    def message(self) -> str:
        return self.text


@dataclass(frozen=True)
class FrameArrived(MonitorEvent):
    kind: ClassVar[str] = "frame_arrived"
    detail: ClassVar[bool] = True
    obsid: int
    ccd: int
    name: str
    size: int

    def message(self) -> str:
        return f"OBSID {self.obsid} CCD{self.ccd} frame complete ({self.name})"


@dataclass(frozen=True)
class FrameShapeMismatch(MonitorEvent):
    """A whole, valid FITS frame whose image is not the shape expected (a truncated readout, a frame
    of another geometry or instrument): backed up as it is, never dropped, but said."""

    kind: ClassVar[str] = "frame_shape"
    name: str
    found: tuple[int, ...]  # numpy shape (NAXIS2, NAXIS1)
    expected: str  # the day's frames' shape, or the CCD273 geometries when it matches none
    text: str

    @property
    def severity(self) -> str:
        return "warning"

    def message(self) -> str:
        return self.text


# -- housekeeping ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class HKOutOfLimits(MonitorEvent):
    kind: ClassVar[str] = "hk_out_of_limits"
    key: str
    value: float
    status: str  # "warning" (outside performance limits) or "critical" (outside safe limits)
    limit: tuple[float, float] | None  # the (lo, hi) applied, commanded value included
    tier: str | None  # "P" or "S"
    limit_kind: str | None  # "A", "R" or "I"
    time: datetime | None  # time stamp of the HK sample
    obsid: int | None
    path: Path
    line: int | None  # line of the sample in the HK file, when known
    reason: str  # the limits table's sentence
    repeat: bool = False  # still out of limits after the repeat interval
    escalated: bool = False  # was a warning, now critical

    @property
    def severity(self) -> str:
        return self.status

    def message(self) -> str:
        obsid = f"OBSID {self.obsid} " if self.obsid is not None else ""
        note = " (still)" if self.repeat else " (now critical)" if self.escalated else ""
        return f"{obsid}{self.reason}{note}"


@dataclass(frozen=True)
class HKBackInLimits(MonitorEvent):
    kind: ClassVar[str] = "hk_back_in_limits"
    key: str
    obsid: int | None  # the first exposure whose HK was all within limits again
    since_obsid: int | None  # the exposure that went out

    def message(self) -> str:
        return f"{self.key} back within limits at OBSID {self.obsid} (out since OBSID {self.since_obsid})"


@dataclass(frozen=True)
class HKReadProblem(MonitorEvent):
    kind: ClassVar[str] = "hk_problem"
    path: Path
    line: int | None  # None: the whole file is lost (empty, binary)
    key: str | None
    text: str  # names file and line

    @property
    def severity(self) -> str:
        return "warning"

    def message(self) -> str:
        return self.text if self.line is None else f"{self.text} (rest of the file used)"


# -- backup -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BackupCopied(MonitorEvent):
    kind: ClassVar[str] = "backup_copied"
    detail: ClassVar[bool] = True
    target: str
    name: str
    size: int
    sha256: str
    updated: bool = False  # a grown file (EXP_LOG) replaced its earlier copy

    def message(self) -> str:
        verb = "updated" if self.updated else "copied"
        return f"{verb} {self.name} to {self.target} ({self.size} bytes, sha256 {self.sha256[:8]})"


@dataclass(frozen=True)
class BackupConflict(MonitorEvent):
    kind: ClassVar[str] = "backup_conflict"
    target: str
    name: str
    kept_as: str  # the name the new file was written under; the existing one is untouched
    existing_sha256: str
    new_sha256: str
    why: str = ""  # how it came about: "the source changed after it was copied", "the copy changed"...

    @property
    def severity(self) -> str:
        return "warning"

    def message(self) -> str:
        if self.why:
            return (f"{self.target}: {self.name}: {self.why} (backup sha256 {self.existing_sha256[:8]}, "
                    f"source {self.new_sha256[:8]}): kept the backup, wrote the source's as {self.kept_as}; "
                    "a conflict until solved")
        return (f"{self.target} already holds a different {self.name} (sha256 {self.existing_sha256[:8]}): "
                f"kept it, wrote ours as {self.kept_as}")


@dataclass(frozen=True)
class BackupFailed(MonitorEvent):
    kind: ClassVar[str] = "backup_failed"
    target: str
    name: str
    reason: str

    @property
    def severity(self) -> str:
        return "warning"

    def message(self) -> str:
        if self.name == "(target)":
            return f"cannot back up to {self.target}: {self.reason}; nothing is copied there until it can be (will retry)"
        return f"could not copy {self.name} to {self.target}: {self.reason} (will retry)"


# -- alert delivery --------------------------------------------------------------------------------

@dataclass(frozen=True)
class AlertDeliveryFailed(MonitorEvent):
    kind: ClassVar[str] = "alert_failed"
    sink: str
    reason: str

    @property
    def severity(self) -> str:
        return "warning"

    def message(self) -> str:
        return f"alert by {self.sink} failed: {self.reason}"


EVENT_TYPES: tuple[type[MonitorEvent], ...] = (
    MonitorStarted, MonitorStopped, MonitorNotice, ExposureLogged, ExpLogLineProblem, FrameArrived,
    FrameShapeMismatch, HKOutOfLimits, HKBackInLimits, HKReadProblem, BackupCopied, BackupConflict,
    BackupFailed, AlertDeliveryFailed,
)


EVENT_KINDS: dict[str, type[MonitorEvent]] = {cls.kind: cls for cls in EVENT_TYPES}


def event_from_dict(data: dict[str, Any]) -> MonitorEvent | None:
    """The event `to_dict()` wrote (a detached monitor's events file, the state's alert history),
    or None when its kind or fields are not this version's."""
    cls = EVENT_KINDS.get(str(data.get("kind")))
    if cls is None:
        return None
    values: dict[str, Any] = {}
    for item in dataclasses.fields(cls):
        if item.name not in data:
            continue
        value, annotation = data[item.name], str(item.type)
        if value is not None:
            if "datetime" in annotation and isinstance(value, str):
                value = datetime.fromisoformat(value)
            elif annotation.startswith("Path") and isinstance(value, str):
                value = Path(value)
            elif annotation.startswith("tuple") and isinstance(value, list):
                value = tuple(value)
        values[item.name] = value
    try:
        return cls(**values)
    except (TypeError, ValueError):
        return None
