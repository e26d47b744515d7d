"""Screen 6, Monitor: follow a day folder while ELVIS writes it (engine.monitor.Monitor).

The monitor runs in a thread worker until stopped. Its events arrive on its own threads: alerts
are posted to the app at once (a notification on whatever screen is shown, the bell when
critical), the rest wait in a queue. The screen redraws from `Monitor.snapshot()` twice a second,
taken in a thread worker and only while the screen is shown, never on every event.

Started from the app, the monitor runs detached by default (engine.monitor.detached): its own
process, which outlives the app. The screen then follows what it writes (detached_monitor.py);
reopened, the app re-attaches to a running detached monitor, takes its day and backup folders,
and lists the alert history kept in its state. Quitting leaves it running; s stops it, after
asking.
"""

from __future__ import annotations

import os
import time
from collections import deque
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, Static

from engine.campaign.config import Campaign
from engine.formats.names import newest_day_folder, parse_day_folder
from engine.formats.tomlfile import ConfigError
from engine.monitor.detached import MonitorStartError, start_detached_monitor, stop_monitor
from engine.monitor import (BackupConflict, BackupFailed, HKOutOfLimits, Monitor, MonitorEvent,
                            MonitorNotice, MonitorSettings, MonitorSnapshot, MonitorStarted, StateLocked,
                            settings_for)

from ..detached_monitor import DetachedMonitor, alert_for, monitor_to_attach  # noqa: F401 (alert_for: tests)
from ..dialogs.confirm import ConfirmDialog
from ..dialogs.text_prompt import TextPrompt
from ..messages import DetachedMonitorPolled, EngineFailed, MonitorEnded, MonitorSnapshotTaken
from ..widgets.acquisition_progress import AcquisitionProgress
from ..widgets.alert_list import AlertList
from ..widgets.app_bar import AppBar, display_path
from ..widgets.status_line import bottom_bars
from ..widgets.backup_status import BackupStatus
from ..widgets.explog_table import ExpLogTable
from ..widgets.list_filter import ListFilter
from ..widgets.list_table import ListTable
from ..widgets.hk_sparklines import HKSparklines, key_detail, key_status, ordered_keys, out_in_view
from ..widgets.panel import Panel, toggle_zoom
from .base import VisonScreen

REFRESH_S = 0.5  # snapshots while the screen is shown: often enough to watch, cheap enough overnight
EVENTS_KEPT = 2000  # events waiting for the next redraw (the screen may be hidden for hours)


class Throttle:
    """At most one notification per subject a minute: a full backup disk fails every file, and one
    toast saying so (then how many more) is enough; the alerts list keeps the count."""

    def __init__(self, seconds: float = 60.0) -> None:
        self.seconds = seconds
        self.last: dict[str, float] = {}
        self.held: dict[str, int] = {}

    def allow(self, subject: str) -> tuple[bool, int]:
        """(notify now?, notifications held back since the last one)."""
        now = time.monotonic()
        if now - self.last.get(subject, -self.seconds) >= self.seconds:
            self.last[subject] = now
            return True, self.held.pop(subject, 0)
        self.held[subject] = self.held.get(subject, 0) + 1
        return False, 0


class MonitorScreen(VisonScreen):
    AUTO_FOCUS = "#hk"  # focused as the screen is made (before the first frame)
    HELP_GROUP = "Monitor screen"
    BINDINGS = [
        Binding("s", "start_stop", "Start/stop",
                tooltip="start following the day folder (and backing it up), or stop"),
        Binding("d", "choose_day", "Day folder",
                tooltip="the day folder to follow (default: the newest in the data folder)"),
        Binding("b", "choose_backup", "Backup",
                tooltip="the backup data folder, where the day folder is copied; empty: none"),
        Binding("f", "toggle_follow", "Follow",
                tooltip="EXP-LOG: keep the newest exposure in view, or stay where you are"),
        Binding("slash", "filter", "Filter HK",
                tooltip="type part of an HK key name; enter, tab or escape go back to the list"),
        Binding("z", "zoom", "Zoom", tooltip="show the focused panel alone, z again to come back"),
        Binding("escape", "leave_filter", "Back to the HK list", show=False,
                tooltip="leave the filter field (tab does too)"),
    ]
    DEFAULT_CSS = """
    MonitorScreen #monitor-status { height: 1; padding: 0 1; background: $boost; }
    MonitorScreen #monitor-status.-running { color: $success; }
    MonitorScreen #monitor-top { height: 1fr; min-height: 8; }
    MonitorScreen #hk-panel { width: 1fr; min-width: 40; }
    MonitorScreen #hk-filter { height: 1; border: none; padding: 0 1; background: $surface; display: none; }
    MonitorScreen #hk-filter.-shown { display: block; }
    MonitorScreen #hk-filter:focus { background: $accent 25%; }
    MonitorScreen #hk-detail { height: auto; max-height: 2; padding: 0 1; color: $text-muted; }
    MonitorScreen #monitor-side { width: 1fr; }
    MonitorScreen #alerts-panel { height: 1fr; min-height: 5; }
    MonitorScreen #progress-panel { height: auto; max-height: 9; }
    MonitorScreen #backup-panel { height: auto; max-height: 8; }
    MonitorScreen #explog-panel { height: 14; }
    MonitorScreen.-short #explog-panel { height: 8; }
    MonitorScreen.-short #progress-panel { max-height: 5; }
    MonitorScreen.-short #backup-panel { max-height: 5; }
    MonitorScreen.-narrow #hk-panel { min-width: 36; }
    MonitorScreen.-narrow #alerts-panel { min-height: 4; }
    """
    DETACH = True  # s starts the monitor in its own process, which outlives the app (False: a thread of the app)

    def __init__(self) -> None:
        super().__init__()
        self.day_choice: Path | None = None  # chosen with d; else the campaign's newest day folder
        self.backup_choice: Path | None = None
        self.monitor: Monitor | None = None
        self.following: Path | None = None  # the day folder of the running (or last) monitor
        self.running = False
        self.restart_pending = False  # folders changed while running: start again once stopped
        self.events: deque[MonitorEvent] = deque(maxlen=EVENTS_KEPT)
        self.alerted: set[str] = set()  # HK keys that went out of limits during this run
        self.fixed_limits: set[str] = set()  # HK keys whose limits do not depend on commanded values
        self.was_out: set[str] = set()  # alerted, or seen outside fixed limits in the recent series
        self.snapshot: MonitorSnapshot | None = None
        self.snapshot_due = False  # a last snapshot is wanted even though the monitor stopped
        self.snapshot_in_flight = False
        self.observer = ""
        self.last_notice = ""
        self.detached: DetachedMonitor | None = None  # the detached monitor followed (started here or re-attached)
        self.poll_in_flight = False
        self.bell_level = "warning"

    def compose(self) -> ComposeResult:
        yield AppBar()
        yield Static("", id="monitor-status", markup=False)
        with Horizontal(id="monitor-top"):
            with Panel(title="HK", id="hk-panel"):
                yield Input(placeholder="part of a key name (enter: back to the list)", id="hk-filter", compact=True)
                yield HKSparklines(id="hk")
                yield Static("", id="hk-detail", markup=False)
            with Vertical(id="monitor-side"):
                with Panel(title="Alerts & problems", id="alerts-panel"):
                    yield AlertList(id="alerts")
                with Panel(title="Acquisition", id="progress-panel"):
                    yield AcquisitionProgress(id="progress")
                with Panel(title="Backup", id="backup-panel"):
                    yield BackupStatus(id="backup")
        with Panel(title="EXP-LOG", id="explog-panel"):
            yield ListFilter("explog", id="explog-filter",
                             placeholder="filter exposures: words to find, e.g. BIAS01 critical (enter, tab or escape: back)")
            yield ExpLogTable(id="explog")
        yield from bottom_bars()  # the status line, then the keys (the app bar shows ^p)

    def on_mount(self) -> None:
        self.query_one(HKSparklines).focus()
        self.watch(self.app, "campaign", self.campaign_changed)
        self.set_interval(REFRESH_S, self.refresh_view)
        self.update_status()
        self.update_explog_title()
        self.reattach()

    def on_resize(self) -> None:
        self.set_class(self.size.height < 34, "-short")
        self.set_class(self.size.width < 100, "-narrow")

    def on_screen_resume(self) -> None:
        self.query_one(AppBar).update_bar()
        self.update_status()
        self.refresh_view()

    def on_unmount(self) -> None:
        # the app is closing: a monitor thread left running would keep the process alive
        if self.monitor is not None:
            self.monitor.stop()

    def campaign_changed(self, campaign: Campaign | None) -> None:
        self.update_status()

    # -- which folders --------------------------------------------------------------------------
    @property
    def campaign(self) -> Campaign | None:
        return getattr(self.app, "campaign", None)

    def data_folder(self) -> Path | None:
        return self.campaign.paths.data if self.campaign is not None else None

    def day_folder(self) -> Path | None:
        return self.day_choice or newest_day_folder(self.data_folder())

    def resolve_day(self, text: str) -> Path:
        """A bare DD_Mmm_YY name is taken in the campaign's data folder, other relative paths from here."""
        path = Path(text).expanduser()
        data = self.data_folder()
        if not path.is_absolute() and len(path.parts) == 1 and data is not None and not path.exists():
            path = data / path
        return Path(os.path.abspath(path))

    def check_day(self, text: str) -> str | None:
        if not text:
            return "give a day folder (e.g. 12_Mar_19 in the data folder, or a path)"
        path = self.resolve_day(text)
        if path.is_dir():
            return None
        if path.exists():
            return f"{path} is not a folder"
        try:
            parse_day_folder(path.name)
        except ValueError:
            return f"no folder {path} (and {path.name} is not a DD_Mmm_YY day folder that ELVIS may still make)"
        return None  # ELVIS has not made it yet: the monitor waits for it

    @staticmethod
    def check_backup(text: str) -> str | None:
        if not text or ":" in text:  # empty: no backup; host:path goes through rsync
            return None
        path = Path(text).expanduser()
        return None if path.is_dir() else f"{path} is not an existing folder (the backup data folder must exist)"

    def action_choose_day(self) -> None:
        current = self.day_folder()

        def chosen(text: str | None) -> None:
            if text is None:
                return
            self.day_choice = self.resolve_day(text)
            self.folders_changed()

        self.app.push_screen(TextPrompt(
            "Day folder to follow", display_path(current) if current else "",
            hint="a DD_Mmm_YY name in the campaign's data folder, or a path; the monitor waits for it to appear",
            ok="Use", check=self.check_day), chosen)

    def action_choose_backup(self) -> None:
        def chosen(text: str | None) -> None:
            if text is None:
                return
            self.backup_choice = None if not text else (Path(text) if ":" in text else
                                                        Path(os.path.abspath(Path(text).expanduser())))
            self.folders_changed()

        self.app.push_screen(TextPrompt(
            "Backup data folder", display_path(self.backup_choice) if self.backup_choice else "",
            hint="the day folder is copied (verified, never overwriting) into it; empty: no backup",
            ok="Use", check=self.check_backup), chosen)

    def folders_changed(self) -> None:
        if self.running and self.detached is not None:
            self.notify(f"the monitor {self.detached.record.monitor_id} goes on with its folders: s stops it, "
                        "s again starts it on the new ones", title="Monitor", markup=False)
        elif self.running and self.monitor is not None:
            self.restart_pending = True
            self.monitor.stop()
            self.notify("the monitor restarts on the new folders", title="Monitor", markup=False)
        self.update_status()

    # -- running the monitor --------------------------------------------------------------------
    def action_start_stop(self) -> None:
        if self.running and self.detached is not None:
            self.ask_stop_detached()
            return
        if self.running:
            self.restart_pending = False
            if self.monitor is not None:
                self.monitor.stop()
            self.update_status("stopping…")
            return
        self.start_monitor()

    def start_monitor(self) -> None:
        day = self.day_folder()
        if day is None:
            data = self.data_folder()
            where = f"under {display_path(data)}" if data else "(no campaign open)"
            self.report_failure("Monitor not started", [f"no day folder {where}: choose one with d"])
            return
        try:
            settings = settings_for(self.campaign)
        except ConfigError as exc:
            self.report_failure("Monitor not started: monitor.toml has problems", [str(p) for p in exc.problems])
            return
        targets = [str(self.backup_choice)] if self.backup_choice else []
        try:
            monitor = Monitor(day, settings, targets=targets)
        except (ConfigError, ValueError, OSError) as exc:
            self.report_failure("Monitor not started", [str(exc)])
            return
        if self.DETACH:
            self.start_detached(day, targets, settings, monitor)
            return
        if day != self.following:  # another day: forget what the last one showed
            self.clear_view()
            self.alerted.clear()
        self.following = day
        self.monitor = monitor
        self.running = True
        self.fixed_limits = {key for key in monitor.limits.limits if monitor.limits.limit(key, "P").kind in ("A", "I")}
        self.observer = self.last_notice = ""
        monitor.subscribe(self.event_callback(settings))
        self.run_monitor(monitor)
        self.update_status()

    def event_callback(self, settings: MonitorSettings):
        """Called on the monitor's threads: hand everything over, touch no widget."""
        app, events, bell_level, throttle = self.app, self.events, settings.bell_level, Throttle()

        def received(event: MonitorEvent) -> None:
            if event.detail:
                return  # a frame complete, a file copied: the snapshot counts them
            events.append(event)
            alert = alert_for(event, bell_level)
            if alert is None:
                return
            if isinstance(event, (BackupConflict, BackupFailed)):  # HK alerts: the engine sends each once
                allowed, held = throttle.allow(f"{event.kind} {event.target}")
                if not allowed:
                    return
                if held:
                    alert.text += f"\n(and {held} more like it since; see the alerts list)"
            app.post_message(alert)

        return received

    @work(thread=True, exclusive=True, group="monitor")
    def run_monitor(self, monitor: Monitor) -> None:
        try:
            stopped = monitor.run()
        except StateLocked as exc:
            self.post_message(MonitorEnded("error", [str(exc), "another monitor (vison-engine monitor?) follows "
                                                                 "this day folder: stop it first"]))
        except (ConfigError, OSError, ValueError) as exc:
            self.post_message(MonitorEnded("error", [str(exc)]))
        except Exception as exc:  # an engine bug: say so, keep the app alive
            self.post_message(MonitorEnded("error", [f"internal error: {type(exc).__name__}: {exc}"]))
        else:
            self.post_message(MonitorEnded(stopped.reason, []))

    def on_monitor_ended(self, message: MonitorEnded) -> None:
        self.running = False
        self.snapshot_due = True
        if message.lines:
            self.report_failure("Monitor stopped", message.lines)
            self.events.append(MonitorNotice(text="monitor stopped: " + "; ".join(message.lines), level="critical"))
        self.refresh_view()
        if self.restart_pending:
            self.restart_pending = False
            self.start_monitor()

    # -- a detached monitor -----------------------------------------------------------------------
    def start_detached(self, day: Path, targets: list[str], settings: MonitorSettings, checked: Monitor) -> None:
        """Start the monitor checked by `checked` (not run) in its own process, and follow it."""
        config = getattr(self.app, "campaign_path", None)  # its monitor.toml is found beside it
        try:
            record = start_detached_monitor(day, backup=targets, config=config if config else None,
                                            state_file=checked.store.path)
        except (MonitorStartError, OSError) as exc:
            self.report_failure("Monitor not started", [str(exc)])
            return
        self.attach(record, settings, fresh=True)
        self.notify(f"{record.monitor_id} follows {display_path(day)} in the background; it goes on when you quit "
                    "(s stops it)", title="Monitor started", markup=False)

    def reattach(self) -> None:
        """A detached monitor still running (the app was closed meanwhile): follow it again."""
        if not self.DETACH or self.running:
            return
        taken = self.app.take_monitor_follower(self) if hasattr(self.app, "take_monitor_follower") else None
        follower, past = taken if taken else (None, [])
        record = follower.record if follower is not None else monitor_to_attach(self.data_folder())
        if record is None:
            return
        try:
            settings = settings_for(self.campaign)
        except ConfigError:
            settings = MonitorSettings()
        self.attach(record, settings, fresh=False, follower=follower)
        self.take_past_events(past)
        self.notify(f"{record.monitor_id} has been following {display_path(record.day_folder)} since "
                    f"{record.started.replace('T', ' ')}", title="Monitor re-attached", markup=False)

    def take_past_events(self, events: list[MonitorEvent]) -> None:
        """Events the app read before handing the monitor over: listed, already notified."""
        if events:
            self.events.extend(events)
            self.drain_events()

    def attach(self, record, settings: MonitorSettings, *, fresh: bool, follower: DetachedMonitor | None = None) -> None:
        day = record.day_folder
        if day != self.following:
            self.clear_view()
            self.alerted.clear()
        self.following = self.day_choice = day
        backup = record.backup
        self.backup_choice = (Path(backup[0]) if backup else None)
        self.detached = follower or DetachedMonitor(record, catch_up_events=not fresh)
        self.app.monitor_day = day
        self.monitor = None
        self.running = True
        self.bell_level = settings.bell_level
        try:
            limits = settings.load_limits()
            self.fixed_limits = {key for key in limits.limits if limits.limit(key, "P").kind in ("A", "I")}
        except Exception:  # the limits table is the monitor's to report; the view does without
            self.fixed_limits = set()
        self.observer = self.last_notice = ""
        self.update_status()
        self.refresh_view()

    @work(thread=True, group="monitor-poll")
    def poll_detached(self, detached: DetachedMonitor, snapshot: bool) -> None:
        try:
            polled = detached.poll(snapshot)
        except Exception as exc:  # a half-written file, a record removed: the next look may work
            self.post_message(EngineFailed("Monitor record unreadable", [f"{type(exc).__name__}: {exc}"]))
            polled = DetachedMonitorPolled([], [], None, None)
        self.post_message(polled)

    def on_detached_monitor_polled(self, message: DetachedMonitorPolled) -> None:
        self.poll_in_flight = self.snapshot_in_flight = False
        for event in [*message.past, *message.new]:
            if not event.detail:
                self.events.append(event)
        for event in message.new:
            alert = None if event.detail else alert_for(event, self.bell_level)
            if alert is not None:
                self.app.post_message(alert)
        self.drain_events()
        if message.snapshot is not None:
            self.on_monitor_snapshot_taken(MonitorSnapshotTaken(message.snapshot))
        status = message.status
        if status is not None and self.running and self.detached is not None and not status.alive \
                and status.monitor_id == self.detached.record.monitor_id and status.state != "starting":
            self.running = False
            self.snapshot_due = True  # its last snapshot
            ended = status.end_reason or status.state
            self.last_notice = ""
            if status.state in ("failed", "died"):
                self.report_failure("Monitor stopped", [f"{status.monitor_id}: {ended}"])
            self.events.append(MonitorNotice(text=f"monitor {status.monitor_id} ended: {ended}",
                                             level="warning" if status.state in ("failed", "died") else "info"))
            self.drain_events()
        self.update_status()

    def ask_stop_detached(self) -> None:
        detached = self.detached
        assert detached is not None
        record = detached.record

        def answered(yes: bool | None) -> None:
            if yes and self.detached is detached and self.running:
                self.update_status("stopping…")
                self.stop_detached(record)

        self.app.push_screen(ConfirmDialog(
            f"Stop the monitor {record.monitor_id}?",
            f"It follows {display_path(record.day_folder)}"
            + (f" and backs it up to {', '.join(record.backup)}" if record.backup else "")
            + (". Stopped, it saves its state: started again, it carries on where it stopped. Alerts are no "
               "longer sent meanwhile."), yes="Stop", no="Keep running"), answered)

    @work(thread=True, group="monitor-stop")
    def stop_detached(self, record) -> None:
        status = stop_monitor(record, timeout=30.0)
        if status.process_note:
            self.post_message(EngineFailed("Monitor not stopped", [status.process_note]))
        elif status.alive:
            self.post_message(EngineFailed("Monitor still running", [
                f"{record.monitor_id} has not ended within 30 s; try vison-engine stop {record.monitor_id}"]))

    # -- redrawing ------------------------------------------------------------------------------
    def refresh_view(self) -> None:
        if self.detached is not None:
            self.drain_events()
            if not self.poll_in_flight and (self.running or self.snapshot_due):
                self.snapshot_due = False
                self.poll_in_flight = True
                self.poll_detached(self.detached, self.is_current)
            return
        self.drain_events()
        if self.monitor is None or self.snapshot_in_flight or not self.is_current:
            return
        if self.running or self.snapshot_due:
            self.snapshot_due = False
            self.snapshot_in_flight = True
            self.take_snapshot(self.monitor)

    @work(thread=True, group="monitor-snapshot")
    def take_snapshot(self, monitor: Monitor) -> None:
        try:
            snapshot = monitor.snapshot()
        except Exception as exc:  # a snapshot must never take the screen down; the next one may work
            self.post_message(EngineFailed("Monitor snapshot failed", [f"{type(exc).__name__}: {exc}"]))
            snapshot = None
        self.post_message(MonitorSnapshotTaken(snapshot))

    def on_monitor_snapshot_taken(self, message: MonitorSnapshotTaken) -> None:
        self.snapshot_in_flight = False
        if message.snapshot is None:
            return
        self.snapshot = snapshot = message.snapshot
        self.show_hk()
        reasons = {k.key: k.reason for k in snapshot.hk if k.reason}
        self.query_one(AlertList).set_earlier(snapshot.active_alerts, reasons)
        self.query_one(ExpLogTable).update_exposures(snapshot.exposures)
        self.update_explog_title()
        self.query_one(AcquisitionProgress).show_progress(snapshot.progress)
        self.query_one(BackupStatus).show_backup(snapshot.backup, bool(self.backup_choice))
        self.update_status()

    def drain_events(self) -> None:
        batch = []
        while self.events:
            batch.append(self.events.popleft())
        if not batch:
            return
        for event in batch:
            if isinstance(event, HKOutOfLimits):
                self.alerted.add(event.key)
            elif isinstance(event, MonitorStarted):
                self.observer = "polling" if event.observer == "polling" else "file events"
                self.last_notice = ""  # "waiting for the day folder" is over
            elif isinstance(event, MonitorNotice):
                self.last_notice = event.text
        alerts = self.query_one(AlertList)
        if alerts.add_events(batch):
            self.query_one("#alerts-panel").border_title = f"Alerts & problems ({len(alerts.entries)})"
        self.update_status()

    def show_hk(self) -> None:
        if self.snapshot is None:
            return
        name_filter = self.query_one("#hk-filter", Input).value
        self.was_out = self.alerted | out_in_view(self.snapshot.hk, self.fixed_limits)
        keys = ordered_keys(self.snapshot.hk, self.was_out, name_filter)
        hk = self.query_one(HKSparklines)
        hk.set_empty_text("no HK key matches the filter" if name_filter and self.snapshot.hk
                          else "No HK read yet.")
        hk.show_keys(keys, self.was_out)
        out = sum(key_status(k, self.was_out) in ("critical", "warning", "out") for k in self.snapshot.hk)
        shown = f"{len(keys)} of {len(self.snapshot.hk)}" if name_filter else f"{len(keys)}"
        self.query_one("#hk-panel").border_title = f"HK · {shown} keys · {out} out of limits"

    @on(HKSparklines.CursorMoved)
    def show_key_detail(self) -> None:
        hk = self.query_one(HKSparklines)
        key = hk.current()
        self.query_one("#hk-detail", Static).update(key_detail(key, key_status(key, self.was_out)) if key else "")

    def clear_view(self) -> None:
        self.snapshot = None
        self.query_one(AlertList).clear_entries()
        self.query_one("#alerts-panel").border_title = "Alerts & problems"
        self.query_one(ExpLogTable).reset()
        self.query_one(AcquisitionProgress).show_progress([])
        self.query_one(HKSparklines).show_keys([], set())
        self.query_one("#hk-panel").border_title = "HK"

    def update_explog_title(self) -> None:
        table = self.query_one(ExpLogTable)
        follow = "follow on" if table.follow else "follow off"
        shown = f"{table.shown_count()} exposures" + (f" (/ {table.filter_text})" if table.filtered else "")
        self.query_one("#explog-panel").border_title = f"EXP-LOG · {shown} · {follow} (f)"

    def update_status(self, doing: str = "") -> None:
        """One line, most important first (a narrow terminal cuts the end): state and folder, what
        the monitor says, active alerts, exposures, backup, how the folder is watched."""
        day = self.following if self.running else self.day_folder()
        if day is None:
            data = self.data_folder()
            parts = [f"○ no day folder under {display_path(data)}: d chooses one" if data
                     else "○ no campaign open: d chooses a day folder"]
        elif self.running:
            parts = [f"● {doing or 'following'} {display_path(day)}"]
            if self.detached is not None:
                parts.append(f"in the background ({self.detached.record.monitor_id}; goes on when you quit)")
            if self.last_notice:
                parts.append(self.last_notice)
        else:
            parts = [f"○ stopped · {display_path(day)} · s starts"]
        if self.snapshot is not None:
            active = len(self.snapshot.active_alerts)
            if active:
                parts.append(f"{active} HK alert{'s' if active > 1 else ''} active")
            parts.append(f"{len(self.snapshot.exposures)} exposures")
        parts.append(f"backup → {display_path(self.backup_choice)}" if self.backup_choice else "no backup (b)")
        if self.running and self.observer:
            parts.append(self.observer)
        status = self.query_one("#monitor-status", Static)
        status.update(" · ".join(parts))
        status.set_class(self.running, "-running")

    # -- other keys -----------------------------------------------------------------------------
    @on(ListTable.ViewChanged, "#explog")
    def explog_filtered(self) -> None:
        self.update_explog_title()

    def action_toggle_follow(self) -> None:
        table = self.query_one(ExpLogTable)
        table.set_follow(not table.follow)
        self.update_explog_title()

    def action_filter(self) -> None:
        # shown only while used: on a 24-line terminal every row counts
        field = self.query_one("#hk-filter", Input)
        field.add_class("-shown")
        field.focus()

    @on(Input.Blurred, "#hk-filter")
    def filter_left(self, event: Input.Blurred) -> None:
        event.input.set_class(bool(event.value), "-shown")

    def action_leave_filter(self) -> None:
        self.query_one(HKSparklines).focus()

    @on(Input.Changed, "#hk-filter")
    def filter_changed(self) -> None:
        self.show_hk()

    @on(Input.Submitted, "#hk-filter")
    def filter_submitted(self) -> None:
        self.query_one(HKSparklines).focus()

    def action_zoom(self) -> None:
        toggle_zoom(self)

    # -- failures -------------------------------------------------------------------------------
    def on_engine_failed(self, message: EngineFailed) -> None:
        self.report_failure(message.what, message.lines)

    def report_failure(self, what: str, lines: list[str]) -> None:
        shown = "\n".join(lines[:4]) + (f"\n… {len(lines) - 4} more" if len(lines) > 4 else "")
        self.notify(shown, title=what, severity="error", timeout=10, markup=False)
