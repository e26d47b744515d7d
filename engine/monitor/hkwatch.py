"""HK readings against the limits table, turned into out-of-limit events without repeats.

Rows are checked as they arrive (a batch of new HK lines at a time): per key, the batch's lowest
and highest readings are judged, so one excursion sample is enough and the event names the
reading that went furthest out, with its time stamp and line. Relative (R) limits need the
commanded value from the exposure's EXP_LOG row, which ELVIS writes after the HK file: a file
read before its row is re-checked for those keys once the row is there.

An alert for a key is sent once; it is sent again only when the key escalates from warning to
critical, or when it is still out after `repeat_minutes` (of HK time; 0 = never), and the key
is declared back within limits once a whole HK file (one exposure) has it within limits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..formats.hk import HKFile
from ..formats.hklimits import HKLimits, LimitVerdict
from .events import HKBackInLimits, HKOutOfLimits, severity_rank


@dataclass
class BatchCheck:
    events: list[HKOutOfLimits] = field(default_factory=list)
    bad: set[str] = field(default_factory=set)  # keys out of limits in these readings
    seen: set[str] = field(default_factory=set)  # keys with at least one valid reading
    verdicts: dict[str, LimitVerdict] = field(default_factory=dict)  # the worst verdict per key
    when: dict[str, datetime | None] = field(default_factory=dict)  # time of that reading


class HKWatch:
    """Judges HK readings; `active` (key -> alert record, JSON-able) persists in the monitor state."""

    def __init__(self, limits: HKLimits, active: dict[str, dict[str, Any]], repeat_minutes: float = 60.0):
        self.limits = limits
        self.active = active
        self.repeat = timedelta(minutes=repeat_minutes) if repeat_minutes > 0 else None
        self.relative_keys = frozenset(
            key for key, tiers in limits.limits.items() if any(t.kind == "R" for t in tiers.values()))

    # -- checking ----------------------------------------------------------------------------

    def check_rows(self, rows: Sequence[Mapping[str, Any]], *, path: Path, obsid: int | None,
                   commanded: Mapping[str, Any] | None) -> BatchCheck:
        """Check rows from HKFollower.read_new() (each has `line`, `time` and every key)."""
        result = BatchCheck()
        if not rows:
            return result
        times = [row.get("time") for row in rows]
        lines = [row.get("line") for row in rows]
        for key in self.limits.keys():
            if key not in rows[0]:
                continue
            values = np.fromiter((row[key] for row in rows), dtype=float, count=len(rows))
            self._judge(result, key, values, times, lines, path, obsid, commanded)
        return result

    def check_relative(self, hkfile: HKFile, *, obsid: int | None, commanded: Mapping[str, Any]) -> BatchCheck:
        """The relative-limit keys of a whole file, now that the commanded values are known."""
        result = BatchCheck()
        lines: list[int | None] = [None] * len(hkfile.times)  # HKFile keeps no line numbers
        for key in sorted(self.relative_keys & set(hkfile.keys)):
            self._judge(result, key, hkfile.values[key], list(hkfile.times), lines, hkfile.path, obsid, commanded)
        return result

    def _judge(self, result: BatchCheck, key: str, values: np.ndarray, times: Sequence[datetime | None],
               lines: Sequence[int | None], path: Path, obsid: int | None,
               commanded: Mapping[str, Any] | None) -> None:
        if values.size == 0 or np.isnan(values).all():
            return  # unreadable cells are reported as HK problems, not as limit violations
        result.seen.add(key)
        worst, at = None, 0
        for index in dict.fromkeys((int(np.nanargmin(values)), int(np.nanargmax(values)))):
            verdict = self.limits.check(key, float(values[index]), commanded)
            if worst is None or severity_rank(_severity(verdict)) > severity_rank(_severity(worst)):
                worst, at = verdict, index
        result.verdicts[key], result.when[key] = worst, times[at]
        if worst.ok:
            return
        result.bad.add(key)
        event = self._observe(worst, when=times[at], obsid=obsid, path=path, line=lines[at])
        if event is not None:
            result.events.append(event)

    # -- de-duplication ----------------------------------------------------------------------

    def _observe(self, verdict: LimitVerdict, *, when: datetime | None, obsid: int | None, path: Path,
                 line: int | None) -> HKOutOfLimits | None:
        stamp = when or datetime.now()
        record = self.active.get(verdict.key)
        escalated = repeat = False
        if record is not None:
            record.update(last_obsid=obsid, value=_json_number(verdict.value))
            escalated = severity_rank(verdict.status) > severity_rank(record["status"])
            last = datetime.fromisoformat(record["last_alert"])
            repeat = not escalated and self.repeat is not None and stamp - last >= self.repeat
            if not (escalated or repeat):
                return None
        self.active[verdict.key] = {
            "status": verdict.status if record is None or escalated else record["status"],
            "since_obsid": obsid if record is None else record["since_obsid"],
            "last_obsid": obsid, "last_alert": stamp.isoformat(), "value": _json_number(verdict.value),
        }
        return HKOutOfLimits(
            key=verdict.key, value=verdict.value, status=verdict.status, limit=verdict.limit, tier=verdict.tier,
            limit_kind=verdict.kind, time=when, obsid=obsid, path=path, line=line, reason=verdict.reason,
            repeat=repeat, escalated=escalated)

    def file_finished(self, *, obsid: int | None, seen: set[str], bad: set[str]) -> list[HKBackInLimits]:
        """A whole HK file is read: keys it had within limits throughout are cleared."""
        cleared = []
        for key in sorted(self.active):
            # an earlier exposure's file landing late says nothing about the reading now
            later = obsid is None or self.active[key].get("last_obsid") is None or obsid > self.active[key]["last_obsid"]
            if key in seen and key not in bad and later:
                record = self.active.pop(key)
                cleared.append(HKBackInLimits(key=key, obsid=obsid, since_obsid=record.get("since_obsid")))
        return cleared


def _severity(verdict: LimitVerdict) -> str:
    return "info" if verdict.ok else verdict.status


def _json_number(value: float) -> float | None:
    return None if math.isnan(value) else value
