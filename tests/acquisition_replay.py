"""An acquisition replayed on a virtual clock, for wait-mode tests that must not depend on how
loaded the machine is.

A session is simulated once into a staging folder; `ReplayedAcquisition` then writes its files
into the watched day folder at virtual times, in ELVIS order (per exposure: HK file, frames,
EXP_LOG rows), optionally half-written first, with mtimes on the virtual clock. `VirtualClock`
is wait mode's clock: time passes only when wait mode sleeps, and a sleep ends early when the
replay writes something (as a file event would wake it).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from engine.formats.names import explog_filename, frame_filename, hk_filename
from engine.pipeline.wait import WaitClock
from engine.sim.elvis import SimulationRequest, simulate

CCDS = (1, 2, 3)


@dataclass(order=True)
class _Write:
    at: float
    order: int
    path: Path = field(compare=False)
    data: bytes = field(compare=False)  # what to write
    append: bool = field(compare=False, default=False)


class ReplayedAcquisition:
    """The staged session's files written into `day_folder` at virtual times.

    Exposure i starts at `first_at + i * interval_s`, or when the one before is all written. With `partial_pause_s` > 0 each frame and
    each exposure's EXP_LOG rows land in two halves `partial_pause_s` apart, one file after the
    other, as the simulator's stream does. `rows_first` logs an exposure before its frames land
    (a copy tool that sends the EXP_LOG first): wait mode then sees logged frames half-written.
    """

    def __init__(self, request: SimulationRequest, day_folder: Path, interval_s: float,
                 partial_pause_s: float = 0.0, rows_first: bool = False, first_at: float = 0.5):
        staged = simulate(request)
        self.day_folder = day_folder
        self.writes: list[_Write] = []
        self.last_write: dict[Path, float] = {}  # file -> virtual time its last byte lands
        self.exposure_done: dict[int, float] = {}  # OBSID -> virtual time its last file is whole
        self.last_frame: dict[str, float] = {}  # test -> virtual time its last exposure is whole
        self.staged = staged.day_folder
        explog = staged.explog_path.read_bytes()
        header, *rows = explog.splitlines(keepends=True)
        assert len(rows) == len(CCDS) * len(staged.exposures)
        log_path = day_folder / explog_filename(request.start)
        self._add(0.0, log_path, header)
        at = 0.0
        for i, exposure in enumerate(staged.exposures):
            at = max(first_at + i * interval_s, at)
            hk = hk_filename(exposure.obsid, exposure.when)
            self._add(at, day_folder / hk, (staged.day_folder / hk).read_bytes())
            log_rows = b"".join(rows[len(CCDS) * i: len(CCDS) * (i + 1)])
            files = [(day_folder / frame_filename(exposure.obsid, exposure.when, ccd),
                      staged.day_folder / frame_filename(exposure.obsid, exposure.when, ccd)) for ccd in CCDS]
            pieces = [(target, source.read_bytes(), False) for target, source in files if source.exists()]
            log_piece = (log_path, log_rows, True)
            pieces = [log_piece, *pieces] if rows_first else [*pieces, log_piece]
            for target, data, append in pieces:
                if partial_pause_s > 0:
                    half = len(data) // 2
                    self._add(at, target, data[:half], append)
                    at += partial_pause_s
                    self._add(at, target, data[half:], True)
                else:
                    self._add(at, target, data, append)
            self.exposure_done[exposure.obsid] = at
            self.last_frame[exposure.test] = at
        self.writes.sort()

    def _add(self, at: float, path: Path, data: bytes, append: bool = False) -> None:
        self.writes.append(_Write(at, len(self.writes), path, data, append))
        self.last_write[path] = at

    # -- driven by the clock --------------------------------------------------------------------

    def next_due(self) -> float | None:
        return self.writes[0].at if self.writes else None

    def write_due(self, now: float, wall: Callable[[float], float]) -> None:
        """Write everything due by `now`, each file's mtime set to when it was due."""
        while self.writes and self.writes[0].at <= now:
            write = self.writes.pop(0)
            write.path.parent.mkdir(parents=True, exist_ok=True)
            with open(write.path, "ab" if write.append else "wb") as handle:
                handle.write(write.data)
            stamp = int(wall(write.at) * 1e9)
            os.utime(write.path, ns=(stamp, stamp))

    def final_bytes(self, path: Path) -> bytes:
        return (self.staged / path.name).read_bytes()


class VirtualClock(WaitClock):
    """Time moves only when wait mode sleeps; a sleep ends at the replay's next write if sooner."""

    def __init__(self, replay: ReplayedAcquisition | None = None):
        self.t = 0.0
        self.wall0 = time.time()  # virtual wall time 0: files simulated before the test look old
        self.replay = replay
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    def wall(self) -> float:
        return self.wall0 + self.t

    def sleep(self, wake: Callable[[float], bool], seconds: float) -> bool:
        wake(0)  # drop real file events: the replay says when news come
        self.sleeps.append(seconds)
        due = self.replay.next_due() if self.replay else None
        if due is not None and due <= self.t + seconds:
            self.t = max(self.t, due)
            self.replay.write_due(self.t, lambda at: self.wall0 + at)
            return True
        self.t += seconds
        return False
