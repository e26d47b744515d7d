"""What the Runs screen shows of a run record, without Textual: rows of the run list and of a
run's test table, durations (never wall-clock "now" unless the run is live), states and colours.

A `RunView` pairs the record (run.json: how it was started) with its status (state.json read
back, plus whether the process lives), as `engine.pipeline.runs` returns them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from engine.pipeline.runs import END_STATES, LIVE_STATES, RunRecord, RunStatus

STATE_STYLES = {
    "starting": "yellow", "running": "bold green", "finished": "green", "stopped": "yellow",
    "failed": "bold red", "died": "bold red", "unknown": "dim",
    # a test's states
    "waiting": "dim", "acquiring": "cyan", "writing": "cyan", "complete": "cyan", "done": "green",
    "errors": "bold red", "abandoned": "yellow", "skipped": "yellow", "prepared": "dim",
}
ANALYSED_TEST_STATES = ("done", "errors", "prepared")  # skipped and abandoned tests were not analysed


@dataclass(frozen=True)
class RunView:
    record: RunRecord
    status: RunStatus
    note: str = ""  # a problem the app sees and the run cannot say (a wait run's day folder missing)

    @property
    def key(self) -> str:
        return str(self.record.folder)

    @property
    def live(self) -> bool:
        return self.status.state in LIVE_STATES

    @property
    def ended(self) -> bool:
        return self.status.state in END_STATES or self.status.state == "died"

    @property
    def mode(self) -> str:
        """aim, wait, check or check+wait: as the user chose it."""
        mode = self.status.mode or "aim"
        if self.status.check_only:
            return "check" if mode == "aim" else "check+wait"
        return mode

    @property
    def log_path(self) -> Path | None:
        return Path(self.status.log) if self.status.log else None

    @property
    def output_path(self) -> Path | None:
        return Path(self.status.output) if self.status.output else None


def parse_time(text: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text)) if text else None
    except ValueError:
        return None


def duration_text(seconds: float | None) -> str:
    """12 s, 4 min 05 s, 2 h 03 min: as long as it needs to be, no longer."""
    if seconds is None or seconds < 0:
        return "–"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def run_seconds(view: RunView, now: datetime) -> float | None:
    """How long the run has been going (live) or went (ended: until its last update)."""
    started = parse_time(view.status.started)
    if started is None:
        return None
    until = now if view.live else parse_time(view.status.updated)
    return (until - started).total_seconds() if until else None


def test_seconds(test: dict[str, Any], now: datetime, live: bool) -> float | None:
    if test.get("minutes") is not None:
        return float(test["minutes"]) * 60
    started = parse_time(test.get("started"))
    if started is not None and test.get("state") == "running" and live:
        return (now - started).total_seconds()
    return None


def progress(view: RunView) -> tuple[int, int]:
    """(tests analysed, tests of the run)."""
    tests = view.status.tests
    return sum(1 for t in tests if t.get("state") in ANALYSED_TEST_STATES), len(tests)


def started_text(view: RunView) -> str:
    started = parse_time(view.status.started)
    return f"{started:%Y-%m-%d %H:%M}" if started else "–"


def run_row(view: RunView, now: datetime) -> tuple[str, ...]:
    """Run list columns: id, session, mode, state, tests, started, duration, activity."""
    status = view.status
    done, total = progress(view)
    activity = status.activity if view.live else (status.end_reason or status.activity or "")
    if status.state == "died":
        activity = "died: its process is gone (killed?)"
    elif view.note and view.live:
        activity = f"⚠ {view.note}"
    return (status.run_id, status.session or "–", view.mode, status.state, f"{done}/{total}" if total else "–",
            started_text(view), duration_text(run_seconds(view, now)), activity)


def test_state_text(test: dict[str, Any]) -> str:
    state = str(test.get("state") or "waiting")
    frames = test.get("frames")
    if state == "running" and test.get("subtask"):
        return f"running: {test['subtask']}"
    if state in ("acquiring", "writing") and frames:
        return f"{state} {frames[0]}/{frames[1]}"
    return state


def test_row(test: dict[str, Any], now: datetime, live: bool) -> tuple[str, ...]:
    """Test table columns: test, state, frames, OBSIDs, duration, flags, note."""
    frames = test.get("frames")
    obsids = test.get("obsids")
    flags = test.get("flags") or []
    return (str(test.get("test")), test_state_text(test),
            f"{frames[0]}/{frames[1]}" if frames and frames[0] is not None else "–",
            f"{obsids[0]}-{obsids[1]}" if obsids else "–",
            duration_text(test_seconds(test, now, live)),
            ", ".join(flags) if flags else ("none" if test.get("state") in ("done", "errors") else ""),
            str(test.get("note") or ""))


def run_summary(view: RunView) -> str:
    """One line on the chosen run: what, where, how it ended."""
    status = view.status
    parts = [status.run_id, f"session {status.session or '–'}", view.mode, status.state]
    if view.live and status.pid:
        parts.append(f"pid {status.pid}")
    if status.process_note:
        parts.append(status.process_note)
    elif status.alive is None and status.host:
        parts.append(f"on {status.host} (cannot check from here)")
    if status.exit_code is not None:
        parts.append(f"exit {status.exit_code}")
    return " · ".join(parts)


def activity_line(view: RunView) -> str:
    """The chosen run's status line, from the same state as its tests table (the wait loop's own
    message is written only now and then: shown alone it lagged the table by minutes)."""
    status = view.status
    if not view.live:
        return f"ended: {status.end_reason or status.state}"
    if view.note:
        return f"⚠ {view.note}"
    detail = status.activity or status.state
    if not detail.startswith("waiting"):
        return detail
    pending = next((t for t in status.tests if t.get("state") not in (*ANALYSED_TEST_STATES, "skipped", "abandoned")),
                   None)
    if pending is not None:
        return f"{detail}: next {pending.get('test')}, {test_state_text(pending)}"
    return detail + (f" — {status.message}" if status.message and status.message not in detail else "")


def live_runs(views: list[RunView]) -> list[RunView]:
    return [view for view in views if view.live]


def day_option(argv: list[str]) -> str:
    """The --day value a run was started with ("" when none)."""
    for index, arg in enumerate(argv):
        if arg in ("--day", "-d") and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith("--day="):
            return arg.split("=", 1)[1]
    return ""


def run_results_root(view: RunView) -> Path:
    """The results folder a run writes into (its record lives in <results>/runs/<id>)."""
    results = view.record.info.get("results")
    return Path(results) if results else Path(view.record.folder).parent.parent
