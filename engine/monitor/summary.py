"""What the app shows: exposures as logged, HK series with their limit status, test progress.

The monitor feeds a MonitorSummary as it reads; `snapshot()` returns plain frozen data (safe to
hand to another thread, `to_dict()` for JSON). The HK series is bounded (sparklines need the
recent past only); after a restart the summary is rebuilt from the files without alerting.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Collection, Any, Iterable, Mapping

from ..campaign.chamber import ChamberProfile
from ..campaign.progress import TestProgress, acquisition_progress
from ..formats.hklimits import HKLimits, LimitVerdict
from .events import plain_data, severity_rank


@dataclass(frozen=True)
class ExposureSummary:
    obsid: int
    test: str
    ccds: tuple[str, ...]  # CCDs logged so far
    rows: Mapping[str, Mapping[str, Any]]  # CCD -> its EXP_LOG row (internal 7.5.X names)
    hk_status: str | None  # worst limit status of its HK file ("ok", "warning", "critical"), None: not read


@dataclass(frozen=True)
class KeySummary:
    key: str
    unit: str
    values: tuple[float, ...]  # recent samples, oldest first (NaN for an unreadable cell)
    times: tuple[datetime | None, ...]
    minimum: float | None  # over `values`
    maximum: float | None
    last: float | None
    status: str  # latest verdict: "ok", "warning", "critical" (or "unknown" before any check)
    limit: tuple[float, float] | None  # performance (P) limits applied most recently
    reason: str
    alert_active: bool  # an alert was sent and the key has not cleared yet


@dataclass(frozen=True)
class MonitorSnapshot:
    day_folder: Path
    taken_at: datetime
    exposures: tuple[ExposureSummary, ...]
    hk: tuple[KeySummary, ...]
    progress: tuple[TestProgress, ...]
    backup: Mapping[str, Mapping[str, Any]]  # target -> BackupReport.to_dict()
    active_alerts: Mapping[str, Mapping[str, Any]]  # HK key -> alert record

    def key(self, name: str) -> KeySummary:
        return next(k for k in self.hk if k.key == name)

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["exposures"] = [dataclasses.asdict(e) for e in self.exposures]
        data["hk"] = [dataclasses.asdict(k) for k in self.hk]
        data["progress"] = [dict(dataclasses.asdict(p), state=p.state, text=p.describe()) for p in self.progress]
        return plain_data(data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MonitorSnapshot:
        """The snapshot `to_dict()` wrote (a detached monitor's snapshot file, read by the app)."""
        def when(text: Any) -> datetime | None:
            return datetime.fromisoformat(text) if isinstance(text, str) else None

        def number(value: Any) -> float:
            return math.nan if value is None else float(value)

        exposures = tuple(ExposureSummary(int(e["obsid"]), str(e["test"]), tuple(e.get("ccds") or ()),
                                          dict(e.get("rows") or {}), e.get("hk_status"))
                          for e in data.get("exposures", []))
        hk = tuple(KeySummary(
            key=k["key"], unit=k.get("unit", ""), values=tuple(number(v) for v in k.get("values") or ()),
            times=tuple(when(t) for t in k.get("times") or ()), minimum=k.get("minimum"), maximum=k.get("maximum"),
            last=k.get("last"), status=k.get("status", "unknown"),
            limit=tuple(k["limit"]) if k.get("limit") else None, reason=k.get("reason", ""),
            alert_active=bool(k.get("alert_active"))) for k in data.get("hk", []))
        progress = tuple(TestProgress(p["test"], p.get("expected"), int(p.get("logged", 0)), int(p.get("on_disk", 0)),
                                      tuple(p.get("obsids") or ())) for p in data.get("progress", []))
        return cls(day_folder=Path(data["day_folder"]), taken_at=when(data.get("taken_at")) or datetime.now(),
                   exposures=exposures, hk=hk, progress=progress, backup=dict(data.get("backup") or {}),
                   active_alerts=dict(data.get("active_alerts") or {}))


class _Series:
    def __init__(self, length: int):
        self.values: deque[float] = deque(maxlen=length)
        self.times: deque[datetime | None] = deque(maxlen=length)
        self.verdict: LimitVerdict | None = None


class MonitorSummary:
    def __init__(self, day_folder: Path, limits: HKLimits, chamber: ChamberProfile, series_length: int = 600):
        self.day_folder = Path(day_folder)
        self.limits = limits
        self.chamber = chamber
        self.series_length = series_length
        self._lock = threading.Lock()
        self._rows: list[dict[str, Any]] = []
        self._by_obsid: dict[int, dict[str, dict[str, Any]]] = {}
        self._hk_status: dict[int, str] = {}
        self._series: dict[str, _Series] = {}

    # -- feeding -----------------------------------------------------------------------------

    def add_rows(self, rows: Iterable[dict[str, Any]]) -> None:
        with self._lock:
            for row in rows:
                self._rows.append(row)
                self._by_obsid.setdefault(int(row["ObsID"]), {})[str(row.get("CCD"))] = row

    def commanded(self, obsid: int | None) -> dict[str, Any] | None:
        """The EXP_LOG row holding the commanded values of an exposure (None: not logged yet)."""
        with self._lock:
            rows = self._by_obsid.get(obsid) if obsid is not None else None
            return next(iter(rows.values())) if rows else None

    def logged_obsids(self) -> set[int]:
        with self._lock:
            return set(self._by_obsid)

    def add_hk(self, rows: list[dict[str, Any]], verdicts: Mapping[str, LimitVerdict]) -> None:
        with self._lock:
            for row in rows:
                for key, value in row.items():
                    if key in ("line", "time"):
                        continue
                    series = self._series.get(key)
                    if series is None:
                        series = self._series[key] = _Series(self.series_length)
                    series.values.append(value)
                    series.times.append(row.get("time"))
            for key, verdict in verdicts.items():
                self._series.setdefault(key, _Series(self.series_length)).verdict = verdict

    def set_hk_status(self, obsid: int | None, status: str) -> None:
        if obsid is None:
            return
        with self._lock:
            old = self._hk_status.get(obsid)
            if old is None or severity_rank(_as_severity(status)) > severity_rank(_as_severity(old)):
                self._hk_status[obsid] = status

    # -- reading -----------------------------------------------------------------------------

    def progress(self, test: str | None = None, up_to_obsid: int | None = None, *,
                 on_disk: bool = True, present: Collection[str] | None = None) -> list[TestProgress]:
        """Frames in per test; one test only if named, as it stood when `up_to_obsid` was logged.
        Without `on_disk` the frame files are not looked for (cheap enough for every exposure);
        `present` (the frames the monitor found complete) spares looking at the disk at all."""
        with self._lock:
            rows = [r for r in self._rows if (test is None or r.get("test") == test)
                    and (up_to_obsid is None or int(r["ObsID"]) <= up_to_obsid)]
        return acquisition_progress(rows, self.chamber, self.day_folder if on_disk else None, present=present)

    def snapshot(self, *, backup: Mapping[str, Any] | None = None, active: Mapping[str, Any] | None = None,
                 max_exposures: int | None = None, present: Collection[str] | None = None) -> MonitorSnapshot:
        progress = tuple(self.progress(present=present))
        active = dict(active or {})
        with self._lock:
            obsids = sorted(self._by_obsid)
            if max_exposures is not None:
                obsids = obsids[-max_exposures:] if max_exposures > 0 else []
            exposures = []
            for obsid in obsids:
                rows = self._by_obsid[obsid]
                first = next(iter(rows.values()))
                exposures.append(ExposureSummary(obsid, str(first.get("test") or ""), tuple(sorted(rows)),
                                                 dict(rows), self._hk_status.get(obsid)))
            keys = []
            for key in sorted(self._series, key=self._key_order):
                keys.append(self._key_summary(key, self._series[key], key in active))
        return MonitorSnapshot(self.day_folder, datetime.now().replace(microsecond=0), tuple(exposures),
                               tuple(keys), progress, dict(backup or {}), active)

    def _key_order(self, key: str) -> tuple[int, int, str]:
        # limited keys first, in the limits table's order (temperatures, voltages, currents, flags)
        order = list(self.limits.limits)
        return (0, order.index(key), key) if key in self.limits else (1, 0, key)

    def _key_summary(self, key: str, series: _Series, alert_active: bool) -> KeySummary:
        values = tuple(series.values)
        finite = [v for v in values if not math.isnan(v)]
        verdict = series.verdict
        limit = None
        if key in self.limits:
            p = self.limits.limit(key, "P")
            if p.kind == "A":
                limit = (p.lo, p.hi)
            elif p.kind == "I":
                limit = (p.value, p.value)
            elif verdict is not None and verdict.tier == "P":
                limit = verdict.limit
        return KeySummary(
            key=key, unit=self.limits.units.get(key, ""), values=values, times=tuple(series.times),
            minimum=min(finite) if finite else None, maximum=max(finite) if finite else None,
            last=finite[-1] if finite else None,
            status=verdict.status if verdict is not None else "unknown",
            limit=limit, reason=verdict.reason if verdict is not None else "",
            alert_active=alert_active)


def _as_severity(status: str) -> str:
    return "info" if status == "ok" else status
