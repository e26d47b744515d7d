"""Messages the app's workers and widgets post (toolong-style: all custom messages in one place)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:  # annotations only: importing these at start-up would load openpyxl, astropy...
    from engine.campaign.config import Campaign
    from engine.campaign.scripts import ScriptsWritten
    from engine.campaign.sessions import SessionsBuilt
    from engine.monitor import MonitorSnapshot
    from engine.pipeline.cleanup import CleanupPlan, CleanupReport, KindTotal

    from .campaign_doc import Validation


@dataclass
class CampaignValidated(Message):
    """A validation worker finished; `generation` tells whether the text changed meanwhile."""

    generation: int
    validation: Validation


@dataclass
class CampaignChanged(Message):
    """The open campaign file or its last valid content changed (posted to the app)."""

    path: Path | None
    campaign: Campaign | None


@dataclass
class ScriptsDone(Message):
    result: ScriptsWritten


@dataclass
class SessionsDone(Message):
    result: SessionsBuilt


@dataclass
class EngineFailed(Message):
    """An engine call failed: `what` names the action, `lines` the problems, one per line."""

    what: str
    lines: list[str]


@dataclass
class DemoReady(Message):
    summary: str


# -- monitor (screen 6) and clean-up (screen 7) ------------------------------------------------------

@dataclass
class MonitorAlert(Message):
    """An HK alert or a backup problem from the running monitor, posted to the app: it notifies on
    whatever screen is shown (`bell`: ring the terminal bell too)."""

    title: str
    text: str
    severity: str  # Textual notification severity: "information", "warning" or "error"
    bell: bool = False


@dataclass
class MonitorSnapshotTaken(Message):
    snapshot: MonitorSnapshot  # plain frozen data


@dataclass
class MonitorEnded(Message):
    """The monitor's thread returned: `reason` from MonitorStopped, or `lines` saying why it failed."""

    reason: str
    lines: list[str]


@dataclass
class CleanupPlanned(Message):
    generation: int
    plan: CleanupPlan | None  # None when refused
    alone: dict[str, tuple[KindTotal, int]]  # kind -> (what it frees on its own, paths kept); {}: not measured
    refusal: str = ""


@dataclass
class CleanupDone(Message):
    report: CleanupReport | None  # None: the clean-up failed (an EngineFailed says why)


# -- runs, log, results (screens 3-5) -----------------------------------------------------------

@dataclass
class RunsRefreshed(Message):
    """The run records under `results`, re-read by a worker (`RunView`s, newest first)."""

    results: Path | None
    runs: list
    problem: str = ""


@dataclass
class RunStarted(Message):
    record: object  # engine.pipeline.runs.RunRecord


@dataclass
class RunStopped(Message):
    """A stop finished: `status` as read afterwards (still alive if it did not stop in time)."""

    run_id: str
    status: object  # engine.pipeline.runs.RunStatus
    forced: bool = False


@dataclass
class LogScanned(Message):
    """A piece of the followed log indexed by the tail worker: kind is tail, head, append or reset."""

    generation: int
    kind: str
    scan: object  # vison_tui.log_file.Scan, None for reset


@dataclass
class LogEvents(Message):
    """New lines of the followed run's events file (engine.pipeline.events), parsed."""

    generation: int
    events: list  # event dicts, in order
    restarted: bool = False  # the events file was replaced: these replace the ones before


@dataclass
class LogSearched(Message):
    generation: int
    pattern: str
    offsets: list
    jump: bool = False  # a new search: go to its first match


@dataclass
class ResultsLoaded(Message):
    """The tests of a session with their result records, read by a worker."""

    session: str
    entries: list


@dataclass
class QuickLookRead(Message):
    """A downsampled image read by the quick-look worker (or why not)."""

    generation: int
    image: object  # vison_tui.quicklook.DownsampledImage, None on failure
    problem: str = ""


@dataclass
class DetachedMonitorPolled(Message):
    """What a detached monitor wrote since the last look (vison_tui/detached_monitor.py)."""

    past: list  # MonitorEvent: the history, and events written before attaching (listed, not notified)
    new: list  # MonitorEvent: new since the last poll (listed and notified)
    snapshot: MonitorSnapshot | None
    status: object  # engine.monitor.detached.MonitorStatus
