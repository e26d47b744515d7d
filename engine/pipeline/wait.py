"""Wait mode: analyse each test of a session as soon as its frames are complete on disk.

The day folder is watched with watchdog (engine.monitor.watcher): a file event only wakes a
rescan, and a rescan also happens every `poll_seconds`, so a missed event (or a network mount
that sends none) delays the news, never loses it. Each rescan reads what ELVIS appended to the
EXP_LOG(s) and, for every test not analysed yet, compares what is logged and on disk with the
frames its catalogue structure expects.

A test starts when all its exposures are logged for every CCD and every frame file is
complete by the policy the monitor shares (engine.formats.fits.FrameCompleteness): its FITS
structure accounts for the whole file and it has not changed for `stable_s`. The look that
confirms the last frames is scheduled `stable_s` after their last change (their mtime), not left
to the next rescan; and the worker processes, the analysis modules and matplotlib are started
while the data come (`_warm_up`), so a small test's result lands about a second after that look
(docs/performance.md, "Wait-mode latency"). All timing goes through a WaitClock, which tests
replace. Ready tests run in session order; a test that never comes does not hold back those
after it.

Aborted attempts: with more exposures than its structure, a test is analysed on its newest
complete set (select_dataset says so in the log). An attempt aborted after n frames and
resubmitted looks complete after the first `expected` exposures, before the resubmission is
over; it is analysed then, and analysed again on the newest set once its acquisition has moved
on (another test logged, or a quiet spell). `--start-obsid` avoids the first, wasted analysis.

A restarted wait run does not redo a test whose result.json covers the same OBSID range.
After `idle_stop_s` without new data, the run ends with a message (never a prompt).
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from ..campaign.catalogue import resolve_test
from ..campaign.config import SessionTest, WatchSettings
from ..formats.explog import ExpLogError, ExpLogFollower
from ..formats.names import day_folder_name
from ..monitor.watcher import FolderWatcher
from ..formats.fits import FrameCompleteness
from ..tasks.dataset import CCDS, DataSet
from . import log as pipelog
from .events import TestProgress, TestSkipped, Waiting, Watching
from .results import inputs_fingerprint, read_result, result_folder
from .runner import PipelineRun

CONFIRM_MARGIN_S = 0.002  # the confirming look comes this long after stable_s has passed (float rounding)


class WaitClock:
    """Wait mode's time. now(): its schedule (stability, settle, idle stop); wall(): file ages,
    on the scale of mtimes; sleep(wake, seconds): wait for news, where `wake(timeout)` is the real
    wait (file events or a stop). Tests pass one whose sleep advances a virtual time and writes
    what is due by then, so their outcome does not depend on how loaded the machine is."""

    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    def sleep(self, wake: Callable[[float], bool], seconds: float) -> bool:
        """True if woken by news before `seconds` passed."""
        return wake(seconds)


# -- settings and per-test state ---------------------------------------------------------------

@dataclass(frozen=True)
class WaitSettings:
    idle_stop_s: float | None = 240 * 60.0  # None: wait for ever
    polling: str = "auto"  # auto | events | polling (see engine.monitor.watcher)
    poll_seconds: float = 5.0  # a rescan at least this often, whatever the events say
    stable_s: float = 1.0  # a frame's size and mtime must hold this long
    settle_s: float = 60.0  # least quiet time before trusting an acquisition is over

    @classmethod
    def from_watch(cls, watch: WatchSettings, idle_stop_minutes: float | None = None,
                   polling: str | None = None, **changes: Any) -> "WaitSettings":
        minutes = watch.idle_stop_minutes if idle_stop_minutes is None else idle_stop_minutes
        return cls(idle_stop_s=minutes * 60.0 if minutes > 0 else None, polling=polling or watch.polling,
                   poll_seconds=watch.poll_seconds, **changes)


@dataclass
class TestWatch:
    __test__ = False  # not a pytest test class

    test: SessionTest
    logged_as: str  # the name its frames carry in the EXP_LOG (a surrogate's for BF01 & co.)
    expected: int
    state: str = "waiting"  # waiting | acquiring | writing | settling | complete | analysed
    logged: int = 0  # exposures of the chosen set logged for every CCD
    total: int = 0  # distinct OBSIDs of the test logged (more than expected: an aborted attempt)
    obsids: tuple[int, int] | None = None
    problems: tuple[str, ...] = ()  # frames missing or incomplete
    problems_since: float = 0.0
    last_growth: float = 0.0  # when its last new OBSID was seen
    analysed_total: int | None = None  # `total` when it was analysed
    regrown_said: bool = False
    said_progress: tuple = ()  # last progress told to the listener

    @property
    def analysed(self) -> bool:
        return self.analysed_total is not None

    @property
    def regrown(self) -> bool:
        """More exposures arrived after it was analysed: a resubmission after an abort."""
        return self.analysed_total is not None and self.total > self.analysed_total

    def describe(self) -> str:
        if self.state == "waiting":
            return f"{self.test.name} (nothing logged yet)"
        if self.state == "settling":
            return f"{self.test.name} (all {self.expected} exposures logged, checking the last files)"
        return f"{self.test.name} ({self.state}, {self.logged}/{self.expected} exposures)"


# -- the wait loop -----------------------------------------------------------------------------

@dataclass
class WaitMode:
    run: PipelineRun
    settings: WaitSettings = field(default_factory=WaitSettings)
    clock: WaitClock = field(default_factory=WaitClock)

    def __post_init__(self) -> None:
        self.watches = [self._watch_for(t) for t in self.run.session.tests]
        self.rows_by_name: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.followers: dict[Path, ExpLogFollower] = {}
        self._problems_said: dict[Path, int] = {}
        self._errors_said: dict[Path, str] = {}
        self.frame_files = FrameCompleteness(self.settings.stable_s, self.clock.wall)
        self.last_obsid = 0
        self.last_news = self.clock.now()
        self._arrivals: deque[tuple[float, int]] = deque(maxlen=20)  # (when, new OBSIDs) per look
        self._said_sleeping: tuple | None = None
        self._stale = threading.Event()  # set by a stop request: wakes the day-folder wait
        self._confirm_at: float | None = None  # now() when the first settling frame counts as stable
        self._warming: threading.Thread | None = None  # imports for the analyses, started by _warm_up

    def _watch_for(self, test: SessionTest) -> TestWatch:
        definition = resolve_test(test.name)
        return TestWatch(test, (definition.surrogate or definition.name).upper(),
                         sum(definition.frames_per_column(self.run.chamber)))

    @property
    def log(self):
        return self.run._log()

    # -- entry point ----------------------------------------------------------------------------

    def execute(self) -> list[pipelog.TaskSummary]:
        """Open the run, wait and analyse until done, idle, or stopped; write the summary."""
        run = self.run
        with run.opened() as end:
            run.on_stop(self._stale.set)
            self._warm_up()
            watcher = None
            try:
                folder = self._await_day_folder()
                if folder is None:
                    end.reason = self._idle_reason()
                else:
                    watcher = FolderWatcher(folder, self.settings.polling, self.settings.poll_seconds)
                    watcher.start()
                    run.on_stop(watcher.wake)
                    idle = (f"stop after {self.settings.idle_stop_s / 60:g} min without new data"
                            if self.settings.idle_stop_s else "no idle stop")
                    self.log.info(f"Waiting for data in {folder}: {watcher.kind} ({watcher.reason}); {idle}"
                                  + (f"; only OBSIDs from {run.options.start_obsid} on" if run.options.start_obsid
                                     else ""))
                    run.emit(Watching(str(folder), watcher.kind, watcher.reason, self.settings.idle_stop_s))
                    end.reason = self._loop(folder, watcher)
            finally:
                if watcher is not None:
                    watcher.stop()
                self._summarise_unanalysed()
        return run.summaries

    def _warm_up(self) -> None:
        """Start, while the data come, what the first analysis would otherwise wait for
        (PipelineRun.warm_up): the local pool's workers (a cold pool cost about a second on 2
        cores) and, in this process, the analysis modules and matplotlib (the figures are drawn
        here). A Dask cluster's workers are its own."""
        self._warming = self.run.warm_up()

    def _loop(self, folder: Path, watcher: FolderWatcher) -> str:
        while True:
            self.run.check_stop()
            now = self.clock.now()
            if self._scan(folder, now):
                self.last_news = now
            self._update(now)
            ready = self._ready(now)
            if ready:
                self._analyse(ready[0])  # then look again: data came in meanwhile
                self.last_news = self.clock.now()  # idle time counts from the last analysis too
                self._said_sleeping = None
                continue
            if all(w.analysed and not w.regrown for w in self.watches):
                quiet = now - self._last_arrival()
                if quiet >= self._settle_s():
                    return f"finished: all {len(self.watches)} tests analysed"
            idle_left = self._idle_left(now)
            if idle_left is not None and idle_left <= 0:
                self.log.info(f"No new data for {self.settings.idle_stop_s / 60:g} minutes: stopping. "
                              + self._waiting_for())
                return self._idle_reason()
            self._say_sleeping(idle_left)
            self.clock.sleep(watcher.wait, self._next_look(now, idle_left))

    # -- looking at the folder ------------------------------------------------------------------

    def _scan(self, folder: Path, now: float) -> bool:
        """Read what the EXP_LOG(s) gained; True if new exposures were logged."""
        new_obsids = 0
        for path in sorted(folder.glob("EXP_LOG_*.txt")):
            follower = self.followers.setdefault(path, ExpLogFollower(path))
            try:
                rows = follower.read_new()
            except ExpLogError as exc:
                if self._errors_said.get(path) != str(exc):  # once, not at every look
                    self._errors_said[path] = str(exc)
                    self.log.warning(f"{path.name}: {exc}")
                rows = []
            said = self._problems_said.get(path, 0)
            for problem in follower.problems[said:]:
                self.log.warning(str(problem))
            self._problems_said[path] = len(follower.problems)
            for row in rows:
                row["_folder"] = str(folder)
                self.rows_by_name[str(row.get("test", "")).strip().upper()].append(row)
                obsid = int(row["ObsID"])
                if obsid > self.last_obsid:
                    self.last_obsid = obsid
                    new_obsids += 1
        if new_obsids:
            self._arrivals.append((now, new_obsids))
        return new_obsids > 0

    def _dataset(self, watch: TestWatch) -> DataSet:
        return self.run.dataset_for(watch.test, self.rows_by_name.get(watch.logged_as, []))

    def _update(self, now: float) -> None:
        self._confirm_at = None
        for watch in self.watches:
            if watch.analysed and not watch.regrown and not self._grew(watch):
                continue
            self._update_watch(watch, now)

    def _grew(self, watch: TestWatch) -> bool:
        return len(self._obsids_of(watch)) != watch.total

    def _obsids_of(self, watch: TestWatch) -> set[int]:
        start, limits = self.run.options.start_obsid, watch.test.obsids
        obsids = {int(r["ObsID"]) for r in self.rows_by_name.get(watch.logged_as, [])}
        return {o for o in obsids if (start is None or o >= start) and (not limits or limits[0] <= o <= limits[1])}

    def _update_watch(self, watch: TestWatch, now: float) -> None:
        total = len(self._obsids_of(watch))
        if total != watch.total:
            watch.total, watch.last_growth = total, now
        ds = self._dataset(watch)
        watch.obsids = ds.obsid_range
        full = [e for e in ds.exposures if set(e.frames) >= set(CCDS)]
        watch.logged = len(full)
        problems, settling = [], False
        if len(ds.exposures) >= watch.expected:
            for exposure in ds.exposures:
                for ccd in CCDS:
                    frame = exposure.frames.get(ccd)
                    if frame is None:
                        problems.append(f"OBSID {exposure.obsid} CCD{ccd}: no EXP_LOG row")
                        continue
                    look = self.frame_files.look(frame.path)
                    if look.state == "settling":
                        settling = True
                        self._note_settling(frame.path)
                    elif look.state == "broken":
                        problems.append(f"OBSID {exposure.obsid} CCD{ccd}: {frame.path.name} is not a valid frame "
                                        f"({look.detail})")
                    elif not look.complete:
                        problems.append(f"OBSID {exposure.obsid} CCD{ccd}: {frame.path.name} {look.detail}")
        if tuple(problems) != watch.problems:
            watch.problems, watch.problems_since = tuple(problems), now
        if total == 0:
            state = "waiting"
        elif len(ds.exposures) < watch.expected:
            state = "acquiring"
        elif problems:
            state = "writing"
        elif settling:
            state = "settling"
        else:
            state = "complete"
        self._set_state(watch, state)
        if watch.regrown and not watch.regrown_said:
            watch.regrown_said = True
            self.log.warning(
                f"{watch.test.name}: {watch.total - watch.analysed_total} more exposure(s) logged after it was "
                f"analysed: an aborted attempt followed by a resubmission? It will be analysed again on its "
                f"newest complete set once its acquisition is over (a start OBSID avoids this)")

    def _set_state(self, watch: TestWatch, state: str) -> None:
        changed = state != watch.state
        progress = (state, watch.logged, watch.total)
        if changed and state == "acquiring" and watch.state == "waiting":
            self.log.info(f"{watch.test.name}: acquisition started (OBSID {watch.obsids[0] if watch.obsids else '?'})")
        elif changed and state == "writing":
            self.log.info(f"{watch.test.name}: {watch.expected} exposures in the EXP_LOG; waiting for "
                          f"{len(watch.problems)} frame(s) to be complete on disk ({watch.problems[0]}"
                          f"{', ...' if len(watch.problems) > 1 else ''})")
        if progress != watch.said_progress:
            watch.said_progress = progress
            self.run.emit(TestProgress(watch.test.name, state, watch.logged, watch.expected, watch.total,
                                       list(watch.obsids) if watch.obsids else None))
        watch.state = state

    # -- deciding -------------------------------------------------------------------------------

    def _ready(self, now: float) -> list[TestWatch]:
        """Tests to analyse now, in session order."""
        settle = self._settle_s()
        ready = []
        for watch in self.watches:
            if watch.analysed and not watch.regrown:
                continue
            if watch.regrown and not self._acquisition_over(watch, now, settle):
                continue
            if watch.state == "complete":
                ready.append(watch)
            elif watch.state == "writing" and now - watch.problems_since >= settle \
                    and self._acquisition_over(watch, now, settle):
                # files that stayed missing or broken while the acquisition moved on: analyse
                # without them, the check says which (MISSDATA)
                self.log.warning(f"{watch.test.name}: {len(watch.problems)} frame(s) still missing or incomplete "
                                 f"after {settle:.0f} s; analysing without them: " + "; ".join(watch.problems[:5])
                                 + (" ..." if len(watch.problems) > 5 else ""))
                ready.append(watch)
        return ready

    def _acquisition_over(self, watch: TestWatch, now: float, settle: float) -> bool:
        """Another test was logged after it, or it has had no new exposure for a while."""
        mine = self._obsids_of(watch)
        return (bool(mine) and self.last_obsid > max(mine)) or now - watch.last_growth >= settle

    def _analyse(self, watch: TestWatch) -> None:
        rows = self.rows_by_name.get(watch.logged_as, [])
        ds = self._dataset(watch)
        if self._already_done(watch, ds):
            return
        span = f"OBSIDs {ds.obsid_range[0]}-{ds.obsid_range[1]}" if ds.obsid_range else "no OBSIDs"
        again = " again, on its newest complete set" if watch.analysed else ""
        self.log.info(f"{watch.test.name}: {len(ds.exposures)} exposures ready ({span}); analysing{again}")
        watch.analysed_total, watch.regrown_said = watch.total, False
        self._set_state(watch, "analysed")
        if self._warming is not None:  # never import alongside it (a test ready at once)
            self._warming.join()
            self._warming = None
        self.run.run_test(watch.test, rows)

    def _already_done(self, watch: TestWatch, ds: DataSet) -> bool:
        """A restarted run: the same OBSID range analysed before (result.json) is not redone."""
        folder = result_folder(self.run.campaign.paths.results, self.run.session.name, watch.test.name)
        record = read_result(folder)
        if not record or not ds.obsid_range or record.get("obsids") != list(ds.obsid_range):
            return False
        earlier, wanted = str(record.get("mode", "")).split("/")[0], self.run.mode_name.split("/")[0]
        if earlier not in ("full", wanted):
            return False  # a check-only result does not stand for a full analysis
        why = self._not_the_same(record, ds)
        if why:
            self.log.info(f"{watch.test.name}: the result in {folder} for OBSIDs {ds.obsid_range[0]}-"
                          f"{ds.obsid_range[1]} is not reused: {why}; analysed again")
            return False
        watch.analysed_total = watch.total
        self._set_state(watch, "analysed")
        errors = " (with errors)" if record.get("errors") else ""
        self.log.info(f"{watch.test.name}: already analysed for OBSIDs {ds.obsid_range[0]}-{ds.obsid_range[1]} "
                      f"({earlier} analysis finished {record.get('finished', '?')}{errors}, {folder}); not redone")
        minutes = _minutes_between(record.get("started"), record.get("finished"))
        flags = list(record.get("flags") or [])
        self.run.add_summary(pipelog.TaskSummary(watch.test.name, minutes, ds.obsid_range, flags,
                                                 bool(record.get("errors")),
                                                 "errors" if record.get("errors") else "done"))
        self.run.emit(TestSkipped(watch.test.name, "already analysed", "errors" if record.get("errors") else "done",
                                  flags=flags, obsids=list(ds.obsid_range), result=str(folder)))
        return True

    @staticmethod
    def _not_the_same(record: dict, ds: DataSet) -> str | None:
        """Why an earlier result does not stand for this data set, or None: it had errors (a
        restart is the chance to redo it), or its day folder or files differ (same OBSIDs in
        another day folder, a frame rewritten since)."""
        if record.get("errors"):
            return "it has errors (" + "; ".join(str(m) for m in record.get("error_messages") or [])[:200] + ")"
        earlier = record.get("day_folder")
        if not earlier or os.path.realpath(str(earlier)) != os.path.realpath(ds.day_folder):
            return f"it was made from the day folder {earlier or '(unknown)'}, not {ds.day_folder}"
        if record.get("inputs") != inputs_fingerprint(ds):
            return "its input files differ from those on disk now (rewritten, added or removed since)"
        return None

    # -- timing ---------------------------------------------------------------------------------

    def _last_arrival(self) -> float:
        return self._arrivals[-1][0] if self._arrivals else self.last_news

    def _settle_s(self) -> float:
        """Quiet time that tells an acquisition is over: two exposures' worth, at least settle_s."""
        times = list(self._arrivals)
        gaps = [(b[0] - a[0]) / b[1] for a, b in zip(times, times[1:]) if b[0] > a[0]]
        cadence = statistics.median(gaps) if gaps else 0.0
        settle = max(self.settings.settle_s, 2 * cadence)
        return min(settle, self.settings.idle_stop_s) if self.settings.idle_stop_s else settle

    def _idle_left(self, now: float) -> float | None:
        if not self.settings.idle_stop_s:
            return None
        return self.settings.idle_stop_s - (now - self.last_news)

    def _note_settling(self, path: Path) -> None:
        """Keep when the first settling frame counts as stable if it stays as it is: stable_s after
        its mtime (after now for an mtime in the future: the policy then counts from when it first
        saw the file, which is no later)."""
        wall = self.clock.wall()
        try:
            changed = min(path.stat().st_mtime_ns / 1e9, wall)
        except OSError:  # gone meanwhile: the next look says so
            changed = wall
        due = self.clock.now() + (changed + self.settings.stable_s - wall)
        self._confirm_at = due if self._confirm_at is None else min(self._confirm_at, due)

    def _next_look(self, now: float, idle_left: float | None) -> float:
        timeout = self.settings.poll_seconds
        waiting_to_settle = [w for w in self.watches if w.state == "writing" or w.regrown]
        if waiting_to_settle or all(w.analysed for w in self.watches):
            timeout = min(timeout, max(0.1, self._settle_s() / 4))
        if idle_left is not None:
            timeout = min(timeout, max(0.0, idle_left))
        timeout = max(0.05, timeout)
        if self._confirm_at is not None:
            # the look that confirms the settling frames: when stable_s has passed, not at the next rescan
            timeout = min(timeout, max(0.0, self._confirm_at - self.clock.now()) + CONFIRM_MARGIN_S)
        return timeout

    # -- talking --------------------------------------------------------------------------------

    def _waiting_for(self) -> str:
        pending = [w.describe() for w in self.watches if not w.analysed]
        pending += [f"{w.test.name} (resubmitted? {w.total} exposures logged, to analyse again)"
                    for w in self.watches if w.regrown]
        return "Waiting for: " + ", ".join(pending) if pending else "Every test analysed."

    def _say_sleeping(self, idle_left: float | None) -> None:
        """One line when what we wait for changes, not at every look."""
        # frames settling for a second is routine, not news
        state = tuple((w.test.name, "regrown" if w.regrown else "analysed") if w.analysed else
                      (w.test.name, "acquiring" if w.state == "settling" else w.state) for w in self.watches)
        if state == self._said_sleeping:
            return
        self._said_sleeping = state
        if all(w.analysed and not w.regrown for w in self.watches):
            message = (f"All {len(self.watches)} tests analysed; watching {self._settle_s():.0f} seconds more "
                       f"in case one is resubmitted")
        else:
            span = f"for up to {idle_left:.0f} seconds" if idle_left is not None else "until data arrive"
            message = f"Pipeline sleeping {span} (idle stop), waking on new data. {self._waiting_for()}"
        self.log.info(message)
        self.run.emit(Waiting(message, None if idle_left is None else round(idle_left)))

    def _idle_reason(self) -> str:
        return f"stopped: no new data for {self.settings.idle_stop_s / 60:g} minutes"

    def _summarise_unanalysed(self) -> None:
        for watch in self.watches:
            if watch.regrown:
                self.log.warning(f"{watch.test.name}: analysed, but {watch.total - watch.analysed_total} more "
                                 f"exposure(s) came after and were not analysed; run it in aim mode with "
                                 f"OBSID limits (or a start OBSID) to analyse the newest attempt")
            if watch.analysed:
                continue
            self.log.info(f"{watch.test.name} not analysed: {watch.logged}/{watch.expected} exposures logged"
                          + (f", {len(watch.problems)} frame(s) missing or incomplete" if watch.problems else ""))
            self.run.add_summary(pipelog.TaskSummary(watch.test.name, 0.0, watch.obsids, [], False, "skipped"),
                                 block=False)
            self.run.emit(TestSkipped(watch.test.name, "data incomplete", logged=watch.logged, expected=watch.expected))

    # -- the day folder -------------------------------------------------------------------------

    def day_folder(self) -> Path:
        """The option's, else the session's, else today's day folder (ELVIS names it by date)."""
        chosen = self.run.options.day_folder or self.run.session.day_folder
        if not chosen:
            name = day_folder_name(datetime.now())
            self.log.info(f"No day folder given: watching today's, {name}")
            return self.run.campaign.paths.data / name
        path = Path(chosen)
        return path if path.is_absolute() or path.exists() else self.run.campaign.paths.data / path

    def _await_day_folder(self) -> Path | None:
        folder = self.day_folder()
        if folder.is_dir():
            return folder
        self.log.info(f"Day folder {folder} does not exist yet: waiting for it to appear")
        while not folder.is_dir():
            self.run.check_stop()
            idle_left = self._idle_left(self.clock.now())
            if idle_left is not None and idle_left <= 0:
                self.log.info(f"Day folder {folder} never appeared: stopping.")
                return None
            self.clock.sleep(self._stale.wait, min(self.settings.poll_seconds,
                                                   idle_left if idle_left is not None else 1e9))
        self.last_news = self.clock.now()
        return folder


def _minutes_between(start: str | None, end: str | None) -> float:
    try:
        return (datetime.fromisoformat(str(end)) - datetime.fromisoformat(str(start))).total_seconds() / 60
    except ValueError:
        return 0.0
