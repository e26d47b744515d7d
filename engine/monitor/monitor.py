"""The acquisition monitor: follows one day folder, checks HK, reports, keeps the backup.

    monitor = Monitor(day_folder, settings, targets=["/data/backup"], state_path=..., log_path=...)
    monitor.subscribe(callback)          # every event, from the monitor's threads
    monitor.run(stop_event)              # until stop_event is set, stop() is called, or idle
    monitor.run_once()                   # what is there now, backup included, then return
    monitor.snapshot()                   # plain data for the app (MonitorSnapshot)

Each scan looks at the whole folder; file events (watcher.py) only say when to look. Per scan:
new EXP_LOG rows, new HK rows (checked at once), frames now complete, then the complete files
are offered to the backup, which copies on its own thread so a backlog of copies never delays
an HK alert. State is saved after every scan and copy, so a kill loses nothing but the scan in
progress.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Iterable

from ..campaign.chamber import ChamberProfile, load_chamber
from ..formats.explog import ExpLogFollower, read_explog
from ..formats.fits import UNREADABLE
from ..formats.geometry import GEOMETRIES, geometry_for_shape
from ..formats.hk import HKFollower, read_hk
from ..formats.hklimits import HKLimits
from ..formats.names import parse_frame_name, parse_hk_filename
from .alerts import AlertDispatcher, AlertSink, CallbackSink, LogSink
from .backup import Backup, SourceFile, make_target
from .completeness import FrameCompleteness, file_kind, settled
from .events import (ExpLogLineProblem, ExposureLogged, FrameArrived, FrameShapeMismatch, HKReadProblem,
                     MonitorEvent, MonitorNotice, MonitorStarted, MonitorStopped, severity_rank)
from .hkwatch import HKWatch
from .settings import MonitorSettings
from .state import HISTORY_LIMIT, StateStore, default_state_path
from .summary import MonitorSnapshot, MonitorSummary
from .watcher import FolderWatcher

EVENTS_RESCAN_SECONDS = 30.0  # with inotify, a full look this often anyway (an event may be missed)
ORPHAN_HK_SECONDS = 600.0  # an HK file the EXP_LOG never names (aborted exposure) is closed after this


class Monitor:
    def __init__(self, day_folder: str | os.PathLike[str], settings: MonitorSettings | None = None, *,
                 targets: Iterable[str] = (), state_path: str | os.PathLike[str] | None = None,
                 log_path: str | os.PathLike[str] | None = None, limits: HKLimits | None = None,
                 chamber: ChamberProfile | None = None, clock: Callable[[], float] = time.time):
        self.day_folder = Path(os.path.abspath(day_folder))
        self.settings = settings or MonitorSettings()
        self.polling = self.settings.polling or "auto"
        self.poll_seconds = self.settings.poll_seconds or 5.0
        self.limits = limits or self.settings.load_limits()
        self.chamber = chamber or load_chamber(self.settings.chamber)
        self.store = StateStore(state_path or default_state_path(self.day_folder), self.day_folder)
        self.targets = [make_target(spec, self.day_folder.name, source=self.day_folder)
                        for spec in dict.fromkeys(targets)]
        self.dispatcher = AlertDispatcher(on_failure=self._emit_one)
        if log_path is not None:
            self.dispatcher.add(LogSink(log_path))
        self.summary = MonitorSummary(self.day_folder, self.limits, self.chamber, self.settings.series_length)
        self.backup: Backup | None = None
        self.hkwatch: HKWatch | None = None
        self.watcher: FolderWatcher | None = None
        self._explogs: dict[str, tuple[ExpLogFollower, int]] = {}  # name -> (follower, problems reported)
        self._hk: dict[str, tuple[HKFollower, int]] = {}
        self._stop = threading.Event()
        self._scan_lock = threading.Lock()
        self._opened = False
        self._waiting: list[str] = []  # files seen but not complete yet
        self.clock = clock  # wall-clock seconds (the scale of mtimes): settle times; tests pass a fake
        self.frames = FrameCompleteness(self.settings.settle_seconds, clock)
        self._broken_said: dict[str, str] = {}  # frame name -> why it is not a valid frame (said once)
        self._hk_complete: dict[str, int] = {}  # HK files whole so far but not finished (no EXP_LOG row yet)
        self._last_activity = time.monotonic()
        self._counts: dict[str, int] = {}  # events by severity since open
        self._last_trouble = ""

    # -- subscribing ---------------------------------------------------------------------------

    def subscribe(self, callback: Callable[[MonitorEvent], None], level: str = "info") -> None:
        """Call `callback(event)` for every event of `level` or worse. It runs on the monitor's
        threads (scanner, backup, alert worker): a UI must hand it over (Textual: call_from_thread)."""
        self.dispatcher.add(CallbackSink(callback, level))

    def add_sink(self, sink: AlertSink) -> None:
        self.dispatcher.add(sink)

    def _emit(self, events: list[MonitorEvent]) -> None:
        kept = []
        for event in events:
            self._counts[event.severity] = self._counts.get(event.severity, 0) + 1
            if event.severity != "info":
                kept.append(event.to_dict())
        if kept:
            with self.store.lock:  # saved with the state: kept across restarts
                history = self.store.state.history
                history.extend(kept)
                del history[:-HISTORY_LIMIT]
            self.store.mark_dirty()
        if events:
            self.dispatcher.dispatch(events)

    def _emit_one(self, event: MonitorEvent) -> None:
        self._emit([event])

    # -- opening and closing ---------------------------------------------------------------------

    def open(self) -> None:
        """Lock and load the state, rebuild the summary, prepare the backup. Called by run*()."""
        if self._opened:
            return
        if not self.day_folder.is_dir():
            raise FileNotFoundError(f"day folder {self.day_folder} does not exist")
        state = self.store.open()
        self._opened = True
        # A folder re-made since the last monitor (e.g. re-simulated) must be looked at afresh.
        gone = [n for n in (*state.frames_done, *state.hk_done) if not (self.day_folder / n).exists()]
        for name in gone:
            state.frames_done.pop(name, None)
            state.hk_done.pop(name, None)
        if gone:
            self.store.notes.append(f"{len(gone)} files the last monitor had seen are no longer in "
                                    f"{self.day_folder}: they will be looked at again when they reappear")
        self.hkwatch = HKWatch(self.limits, state.alerts, self.settings.repeat_minutes)
        self.backup = Backup(self.day_folder, self.targets, state.backup, self.store.lock, self._emit_one,
                             save=lambda: self._save_state(at_most_every=1.0), clock=self.clock,
                             scrub_hours=self.settings.scrub_hours, scrub_mb_per_s=self.settings.scrub_mb_per_s,
                             scrub_state=state.scrub)
        self.watcher = FolderWatcher(self.day_folder, self.polling, self.poll_seconds)
        notes = [MonitorNotice(text=note, level="warning") for note in self.store.notes]
        self._emit(notes)
        self._rebuild_summary()

    def close(self, reason: str) -> MonitorStopped:
        if self.watcher is not None:
            self.watcher.stop()
        if self.backup is not None:
            self.backup.stop()
        report = {label: r.to_dict() for label, r in self.backup_report().items()}
        stopped = MonitorStopped(reason=reason, backup=report)
        self._emit([stopped])
        self.dispatcher.close()
        if self._opened:
            try:
                self.store.save()
            except OSError:
                pass  # already reported by _save_state; the lock must still be released
            self.store.close()
            self._opened = False
        return stopped

    def _started(self) -> MonitorStarted:
        assert self.watcher is not None
        return MonitorStarted(day_folder=self.day_folder, observer=self.watcher.kind,
                              observer_reason=self.watcher.reason, resumed=self.store.resumed,
                              backup_targets=tuple(t.label for t in self.backup.targets) if self.backup else ())

    # -- running -------------------------------------------------------------------------------

    def run_once(self, *, verify_all: bool = False) -> MonitorStopped:
        """Handle what is in the folder now (reads, checks, backup) and stop (for cron). The copies
        due are hashed again within the scrub's budget; `verify_all`: every copy, now."""
        self.open()
        try:
            self._emit([self._started()])
            self.scan()
            if self.backup is not None and self.backup.targets:
                self.backup.run_pass(self._stop)  # new data first
                counts = {"changed": 0}
                if verify_all:
                    counts = self.backup.scrub(everything=True, stop=self._stop)
                    changed = counts["changed"]
                    self._emit([MonitorNotice(
                        text=f"verified {counts['checked']} backup copies ({counts['bytes'] / 1e6:.0f} MB) against "
                             f"their sha256: {f'{changed} changed' if changed else 'all unchanged'}",
                        level="warning" if changed else "info")])
                elif self.settings.scrub_hours > 0:
                    counts = self.backup.scrub(self.backup.scrub_budget(), stop=self._stop)
                if counts["changed"]:
                    self.backup.run_pass(self._stop)  # the changed copies become conflicts now
        finally:
            stopped = self.close("once")
        return stopped

    def run(self, stop: threading.Event | None = None, *, idle_stop_minutes: float | None = None) -> MonitorStopped:
        """Follow the folder until `stop` is set (or stop() is called), or idle for too long."""
        if stop is not None:
            self._stop = stop
        idle_minutes = self.settings.idle_stop_minutes if idle_stop_minutes is None else idle_stop_minutes
        if not self._wait_for_folder():
            return MonitorStopped(reason="interrupted")
        self.open()
        reason = "interrupted"
        try:
            assert self.watcher is not None and self.backup is not None
            self.watcher.start()
            self._emit([self._started()])
            self.backup.start()
            self._last_activity = time.monotonic()
            while not self._stop.is_set():
                try:
                    self.scan()
                except Exception as exc:  # an overnight monitor must outlive a bad file or a bug
                    self._trouble(f"scan failed: {type(exc).__name__}: {exc}", "critical")
                look = self._next_look()
                if idle_minutes:
                    quiet = time.monotonic() - self._last_activity
                    if quiet > idle_minutes * 60 and not self._waiting and self.backup.wait_idle(0):
                        reason = "idle"
                        break
                    look = min(look, max(0.05, idle_minutes * 60 - quiet))
                self.watcher.wait(look)
        finally:
            stopped = self.close(reason)
        return stopped

    def stop(self) -> None:
        """Ask a running monitor to stop (from any thread or a signal handler)."""
        self._stop.set()
        if self.watcher is not None:
            self.watcher.wake()

    def _wait_for_folder(self) -> bool:
        told = False
        while not self.day_folder.is_dir():
            if not told:
                self._emit([MonitorNotice(text=f"waiting for the day folder {self.day_folder} to appear")])
                told = True
            if self._stop.wait(self.poll_seconds):
                return False
        return True

    def _next_look(self) -> float:
        assert self.watcher is not None
        rescan = self.poll_seconds if self.watcher.kind == "polling" else EVENTS_RESCAN_SECONDS
        if self._waiting:
            # something is settling: look again once it may have settled
            rescan = min(rescan, max(0.05, self.settings.settle_seconds / 2))
        return rescan

    # -- one look at the folder ---------------------------------------------------------------

    def scan(self) -> list[MonitorEvent]:
        """Read what is new, check it, offer complete files to the backup; returns the events."""
        self.open()
        with self._scan_lock:
            events: list[MonitorEvent] = []
            try:
                names = sorted(os.listdir(self.day_folder))
            except OSError as exc:
                names = []
                self._trouble(f"cannot list {self.day_folder}: {exc.strerror or exc}", "warning", events)
            kinds: dict[str, list[str]] = {"explog": [], "hk": [], "frame": []}
            for name in names:
                kind = file_kind(name)
                if kind is not None:
                    kinds[kind].append(name)
            waiting: list[str] = []
            # the state lock is taken per file (see _per_file), so snapshot() never waits for a long scan
            events += self._read_explogs(kinds["explog"])
            events += self._read_hk(kinds["hk"], waiting)
            events += self._check_frames(kinds["frame"], waiting)
            self._waiting = waiting
            with self.store.lock:
                offer = self._complete_files(kinds["explog"])
            if self.backup is not None:
                self.backup.offer(offer, waiting)
            self._save_state()
            self._emit(events)
            return events

    def _save_state(self, *, at_most_every: float = 0.0) -> None:
        """Save the state; a disk that refuses (full, read-only) is reported once, and the monitor
        goes on watching and alerting (a restart then re-reads what was not saved)."""
        try:
            self.store.save(at_most_every=at_most_every)
        except OSError as exc:
            self.store.mark_dirty()
            self._trouble(f"cannot save the monitor state {self.store.path}: {exc.strerror or exc}; "
                          "monitoring goes on, a restart will read again what was not saved", "critical")

    def _trouble(self, text: str, level: str, events: list[MonitorEvent] | None = None) -> None:
        """Report a problem once (until a different one comes), not at every scan."""
        if text == self._last_trouble:
            return
        self._last_trouble = text
        notice = MonitorNotice(text=text, level=level)
        if events is not None:
            events.append(notice)
        else:
            self._emit([notice])

    def _activity(self) -> None:
        self._last_activity = time.monotonic()

    def _read_explogs(self, names: list[str]) -> list[MonitorEvent]:
        events: list[MonitorEvent] = []
        for name in names:
            self._per_file(name, events, self._read_explog, name, events)
        return events

    def _per_file(self, name: str, events: list[MonitorEvent], step, *arguments) -> bool:
        """Run one file's step; a file that cannot be read now is reported once and retried later,
        without holding up the others."""
        try:
            with self.store.lock:  # the backup thread may be saving the state
                step(*arguments)
            return True
        except OSError as exc:
            self._trouble(f"cannot read {name}: {exc.strerror or exc}", "warning", events)
            return False

    def _read_explog(self, name: str, events: list[MonitorEvent]) -> None:
        if name not in self._explogs:
            self._explogs[name] = (ExpLogFollower(self.day_folder / name), 0)
        follower, reported = self._explogs[name]
        rows = follower.read_new()
        for problem in follower.problems[reported:]:
            events.append(ExpLogLineProblem(path=problem.path, line=problem.line, text=problem.message))
        self._explogs[name] = (follower, len(follower.problems))
        if rows:
            self._activity()
            self.summary.add_rows(rows)
            events += self._logged(rows, name)
        self.store.state.explogs[name] = follower.state()

    def _logged(self, rows: list[dict], name: str) -> list[MonitorEvent]:
        by_obsid: OrderedDict[int, list[dict]] = OrderedDict()
        for row in rows:
            by_obsid.setdefault(int(row["ObsID"]), []).append(row)
        events: list[MonitorEvent] = []
        for obsid, group in by_obsid.items():
            test = str(group[0].get("test") or "")
            found = self.summary.progress(test, up_to_obsid=obsid, on_disk=False)
            events.append(ExposureLogged(obsid=obsid, test=test, ccds=tuple(str(r.get("CCD")) for r in group),
                                         explog=name, progress=found[0].describe() if found else ""))
        return events

    def _read_hk(self, names: list[str], waiting: list[str]) -> list[MonitorEvent]:
        events: list[MonitorEvent] = []
        names = sorted(names, key=lambda n: (parse_hk_filename(n)[0], n))
        newest_logged = max(self.summary.logged_obsids(), default=0)
        newest_file = max((parse_hk_filename(n)[0] for n in names), default=0)
        self._hk_complete = {}
        for name in names:
            if name in self.store.state.hk_done:
                continue
            if not self._per_file(name, events, self._read_one_hk, name, events, waiting, newest_logged, newest_file):
                waiting.append(name)
        return events

    def _read_one_hk(self, name: str, events: list[MonitorEvent], waiting: list[str], newest_logged: int,
                     newest_file: int) -> None:
        state = self.store.state
        path = self.day_folder / name
        obsid = parse_hk_filename(name)[0]
        record = state.hk_open.get(name) or {"bad": [], "seen": [], "rows": 0, "status": "ok",
                                             "unchecked_relative": False}
        if name not in self._hk:
            saved = record.get("follower")
            self._hk[name] = (HKFollower.from_state(saved, path) if saved else HKFollower(path), 0)
        follower, reported = self._hk[name]
        rows = follower.read_new()
        commanded = self.summary.commanded(obsid)
        if rows:
            self._activity()
            events += self._check_hk_rows(rows, record, path, obsid, commanded)
        finished, complete_size = self._hk_finished(path, follower, obsid, newest_logged, newest_file)
        if finished:
            events += self._finish_hk(name, path, record, follower, obsid, commanded)
        for problem in follower.problems[reported:]:
            events.append(HKReadProblem(path=problem.path, line=problem.line, key=problem.key, text=problem.message))
        if finished:
            return
        self._hk[name] = (follower, len(follower.problems))
        if complete_size:
            self._hk_complete[name] = complete_size  # may be backed up (again if it grows)
        else:
            waiting.append(name)
        record["follower"] = follower.state()
        state.hk_open[name] = record

    def _check_hk_rows(self, rows: list[dict], record: dict, path: Path, obsid: int,
                       commanded: dict | None) -> list[MonitorEvent]:
        assert self.hkwatch is not None
        check = self.hkwatch.check_rows(rows, path=path, obsid=obsid, commanded=commanded)
        if commanded is None and self.hkwatch.relative_keys & set(rows[0]):
            record["unchecked_relative"] = True
        self._merge_check(record, check)
        self.summary.add_hk(rows, check.verdicts)
        record["rows"] = record.get("rows", 0) + len(rows)
        return list(check.events)

    @staticmethod
    def _merge_check(record: dict, check) -> None:
        record["bad"] = sorted(set(record["bad"]) | check.bad)
        record["seen"] = sorted(set(record["seen"]) | check.seen)
        for verdict in check.verdicts.values():
            if not verdict.ok and severity_rank(verdict.status) > severity_rank(_severity(record["status"])):
                record["status"] = verdict.status

    def _hk_finished(self, path: Path, follower: HKFollower, obsid: int, newest_logged: int,
                     newest_file: int) -> tuple[bool, int]:
        """(finished, size complete so far or 0). Finished: unchanged for the settle time and the
        EXP_LOG has its rows or has moved past it (its commanded values are known, or never will
        be); an HK file the log never names is closed once ELVIS has long moved on."""
        try:
            info = path.stat()
        except OSError:
            return False, 0
        if not settled(info.st_mtime, self.settings.settle_seconds, self.clock()):
            return False, 0
        complete = info.st_size if follower.offset == info.st_size else 0
        if obsid in self.summary.logged_obsids() or newest_logged > obsid:
            return True, complete
        orphan = newest_file > obsid and settled(info.st_mtime, ORPHAN_HK_SECONDS, self.clock())
        return orphan, complete

    def _finish_hk(self, name: str, path: Path, record: dict, follower: HKFollower, obsid: int,
                   commanded: dict | None) -> list[MonitorEvent]:
        assert self.hkwatch is not None
        events: list[MonitorEvent] = []
        size = path.stat().st_size
        # settled, so it is all there is: a last line never terminated is read as it stands, and
        # a file with no sample (empty, binary) goes to the follower's problems
        rows = follower.read_new(final=True)
        if rows:
            events += self._check_hk_rows(rows, record, path, obsid, commanded)
        if record.get("unchecked_relative") and commanded is not None:
            check = self.hkwatch.check_relative(read_hk(path, complete=True), obsid=obsid, commanded=commanded)
            self._merge_check(record, check)
            self.summary.add_hk([], check.verdicts)
            events += check.events
        events += self.hkwatch.file_finished(obsid=obsid, seen=set(record["seen"]), bad=set(record["bad"]))
        state = self.store.state
        state.hk_done[name] = [size, record["status"]]
        state.hk_open.pop(name, None)
        self._hk.pop(name, None)
        self.summary.set_hk_status(obsid, record["status"])
        return events

    def _check_frames(self, names: list[str], waiting: list[str]) -> list[MonitorEvent]:
        state = self.store.state
        events: list[MonitorEvent] = []
        for name in names:
            if name in state.frames_done:
                continue
            look = self.frames.look(self.day_folder / name)
            if look.state == "missing":
                continue
            if look.state == "broken":
                # never whole by being written further: named once and skipped until it changes
                if self._broken_said.get(name) != look.detail:
                    self._broken_said[name] = look.detail
                    events.append(MonitorNotice(text=f"{name} is not a valid frame ({look.detail}): skipped",
                                                level="warning"))
                continue
            if not look.complete:
                if look.detail.startswith(UNREADABLE) and self._broken_said.get(name) != look.detail:
                    # permission denied does not pass by waiting: said once, looked at again every scan
                    self._broken_said[name] = look.detail
                    events.append(MonitorNotice(text=f"{name} cannot be read ({look.detail.partition(': ')[2]}): "
                                                "not checked nor backed up until it can be", level="warning"))
                waiting.append(name)
                continue
            self._broken_said.pop(name, None)
            self.frames.forget(self.day_folder / name)  # frames_done remembers it (and is saved)
            with self.store.lock:
                state.frames_done[name] = look.size
                mismatch = self._shape_mismatch(name, look.shape)
            if mismatch is not None:
                events.append(mismatch)
            self._activity()
            frame = parse_frame_name(name)
            events.append(FrameArrived(obsid=frame.obsid, ccd=frame.ccd, name=name, size=look.size))
        return events

    def _shape_mismatch(self, name: str, shape: tuple[int, ...] | None) -> FrameShapeMismatch | None:
        """A warning when a complete frame's image is not the shape of the day's frames (the shape most
        of them have so far) or matches no CCD273 geometry: a truncated readout, a foreign file. It is
        backed up all the same (a backup never drops data); the pipeline leaves it out."""
        if shape is None:
            return None
        counts = self.store.state.frame_shapes
        usual = max(counts, key=counts.get) if counts else None  # the first one seen wins a tie
        key = "x".join(map(str, shape))
        try:
            geometry = geometry_for_shape(shape) if len(shape) == 2 else None
        except ValueError:
            geometry = None
        if geometry is not None:
            counts[key] = counts.get(key, 0) + 1
        if geometry is not None and (usual is None or usual == key):
            return None
        found = f"({', '.join(map(str, shape))})"
        if usual is not None:
            expected = f"({usual.replace('x', ', ')}) as the day's other frames"
        else:
            expected = ("a CCD273 frame: " + ", ".join(f"{g.name} {g.shape}" for g in GEOMETRIES.values()))
        what = f"{geometry.name} geometry" if geometry is not None else "no CCD273 geometry"
        return FrameShapeMismatch(
            name=name, found=tuple(shape), expected=expected,
            text=f"{name}: image shape {found} ({what}), expected {expected}: a truncated or foreign frame? "
                 "It is backed up as it is; the pipeline will leave it out")

    def _complete_files(self, explogs: list[str]) -> list[SourceFile]:
        state = self.store.state
        files = [SourceFile(name, "frame", size) for name, size in state.frames_done.items()]
        files += [SourceFile(name, "hk", done[0]) for name, done in state.hk_done.items()]
        files += [SourceFile(name, "hk", size) for name, size in self._hk_complete.items()]
        for name in explogs:
            follower = self._explogs.get(name)
            if follower is not None and follower[0].offset > 0:
                files.append(SourceFile(name, "explog", follower[0].offset))
        return files

    # -- after a restart -----------------------------------------------------------------------

    def _rebuild_summary(self) -> None:
        """Fill the summary from what earlier runs read, without alerting again."""
        state = self.store.state
        for name, saved in sorted(state.explogs.items()):
            path = self.day_folder / name
            if not path.exists():
                continue
            logged = read_explog(path, complete=False, errors="collect").rows
            old_rows = [r for r in logged if r["line"] <= int(saved.get("line", 0))]
            # re-read from the start for the summary; carry on from where the last run stopped
            resumed = ExpLogFollower.from_state(saved, path)
            self._explogs[name] = (resumed, 0)
            self.summary.add_rows(old_rows)
        for name, done in state.hk_done.items():
            self.summary.set_hk_status(parse_hk_filename(name)[0], done[1])
        wanted = self.settings.series_length
        recent = sorted(state.hk_done, key=lambda n: (parse_hk_filename(n)[0], n))
        chosen: list[str] = []
        for name in reversed(recent):
            if wanted <= 0:
                break
            chosen.insert(0, name)
            wanted -= 71  # about one sample a second through a readout
        for name in chosen:
            path = self.day_folder / name
            try:
                hkfile = read_hk(path)
            except OSError:
                continue
            commanded = self.summary.commanded(parse_hk_filename(name)[0])
            verdicts = {v.key: v for v in self.limits.check_file(hkfile, commanded)}
            rows = [{"time": hkfile.times[i], **{k: hkfile.values[k][i] for k in hkfile.keys}}
                    for i in range(len(hkfile.times))]
            self.summary.add_hk(rows, verdicts)

    # -- for the app ---------------------------------------------------------------------------

    def snapshot(self, max_exposures: int | None = None) -> MonitorSnapshot:
        backup = {label: r.to_dict() for label, r in self.backup_report().items()}
        with self.store.lock:
            active = {k: dict(v) for k, v in self.store.state.alerts.items()}
            present = set(self.store.state.frames_done)  # known complete: no disk look per frame
        return self.summary.snapshot(backup=backup, active=active, max_exposures=max_exposures, present=present)

    def history(self, limit: int | None = None) -> list[dict]:
        """Warnings and critical alerts, oldest first, of this monitor and those before it on this
        day folder (as event dicts, `kind`, `severity`, `at` and the event's fields)."""
        with self.store.lock:
            kept = list(self.store.state.history)
        return kept[-limit:] if limit else kept

    def backup_report(self) -> dict:
        return self.backup.report() if self.backup is not None else {}

    @property
    def counts(self) -> dict[str, int]:
        """Events by severity since the monitor opened."""
        return dict(self._counts)


def _severity(status: str) -> str:
    return "info" if status == "ok" else status
