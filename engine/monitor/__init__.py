"""Acquisition monitor: follow a day folder as ELVIS writes it, check HK against limits, alert,
and keep a verified backup. See docs/monitor.md; the app drives `Monitor` and reads snapshots.

The public names, one line per module (add yours as a new line). They are imported on first use
(PEP 562): importing a light module of this package (detached: the records of detached monitors)
must not load numpy, astropy and watchdog through the monitor itself, or the `vison` app, which
looks for a running monitor before its first paint, would start 0.7 s later.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy_exports import lazy_exports

_EXPORTS = {
    ".alerts": ("AlertDispatcher", "AlertSink", "BellSink", "CallbackSink", "CommandSink", "EmailSink", "LogSink",
                "StreamSink"),
    ".backup": ("Backup", "BackupReport", "SourceFile", "make_target", "rsync_available"),
    ".completeness": ("check_fits", "file_kind"),
    ".events": ("EVENT_TYPES", "AlertDeliveryFailed", "BackupConflict", "BackupCopied", "BackupFailed",
                "ExpLogLineProblem", "ExposureLogged", "FrameArrived", "FrameShapeMismatch", "HKBackInLimits",
                "HKOutOfLimits", "HKReadProblem", "MonitorEvent", "MonitorNotice", "MonitorStarted", "MonitorStopped"),
    ".monitor": ("Monitor",),
    ".settings": ("CommandSettings", "EmailSettings", "MonitorSettings", "load_monitor_settings", "settings_for"),
    ".state": ("MonitorState", "StateLocked", "StateStore", "default_state_path"),
    ".summary": ("ExposureSummary", "KeySummary", "MonitorSnapshot", "MonitorSummary"),
    ".watcher": ("FolderWatcher", "choose_observer", "filesystem_type"),
}
__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)


if TYPE_CHECKING:  # what type checkers and editors see
    from .alerts import (AlertDispatcher, AlertSink, BellSink, CallbackSink, CommandSink, EmailSink,  # noqa: F401
                         LogSink, StreamSink)
    from .backup import Backup, BackupReport, SourceFile, make_target, rsync_available  # noqa: F401
    from .completeness import check_fits, file_kind  # noqa: F401
    from .events import (EVENT_TYPES, AlertDeliveryFailed, BackupConflict, BackupCopied, BackupFailed,  # noqa: F401
                         ExpLogLineProblem, ExposureLogged, FrameArrived, FrameShapeMismatch, HKBackInLimits,
                         HKOutOfLimits, HKReadProblem, MonitorEvent, MonitorNotice, MonitorStarted, MonitorStopped)
    from .monitor import Monitor  # noqa: F401
    from .settings import (CommandSettings, EmailSettings, MonitorSettings, load_monitor_settings,  # noqa: F401
                           settings_for)
    from .state import MonitorState, StateLocked, StateStore, default_state_path  # noqa: F401
    from .summary import ExposureSummary, KeySummary, MonitorSnapshot, MonitorSummary  # noqa: F401
    from .watcher import FolderWatcher, choose_observer, filesystem_type  # noqa: F401
