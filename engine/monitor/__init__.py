"""Acquisition monitor: follow a day folder as ELVIS writes it, check HK against limits, alert,
and keep a verified backup. See docs/monitor.md; the app drives `Monitor` and reads snapshots.
"""

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
