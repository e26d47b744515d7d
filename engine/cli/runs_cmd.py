"""`vison-engine runs | monitors | status RUN | stop RUN | tail RUN`: the pipeline runs, in the
background or not, and the detached monitors.

RUN is a run id (FM20190323_193647_D11), a unique prefix of one, `last`, or a run folder.
Runs are found in the per-user index of runs, or under `--results RESULTS_OR_CONFIG`.
`status` and `stop` also take a detached monitor's id (MON20190312_090000_12_Mar_19) or record folder.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

from ..tasks.registry import load_campaign_checked
from ..formats.tomlfile import ConfigError
from ..monitor.detached import (MonitorRecord, MonitorStatus, find_monitor, is_monitor_ref, list_monitors,
                                monitor_status, stop_monitor)
from ..pipeline.runs import RunRecord, RunStatus, find_run, indexed_runs, list_runs, run_status, stop_run, tail_run


class InputProblem(ValueError):
    pass


def _results_root(value: str) -> Path:
    """A results folder, or the results folder of a campaign file."""
    path = Path(value)
    if path.is_file():
        try:
            return load_campaign_checked(path).paths.results
        except ConfigError as exc:
            raise InputProblem(f"{value}: {exc}") from None
    if not path.is_dir():
        raise InputProblem(f"{value}: no such results folder or campaign file")
    return path


def _find(args: argparse.Namespace) -> RunRecord:
    where = _results_root(args.results) if args.results else None
    try:
        return find_run(args.run_ref, where)
    except LookupError as exc:
        raise InputProblem(str(exc)) from None


def _find_monitor(args: argparse.Namespace) -> MonitorRecord | None:
    """The detached monitor RUN names, or None when it names a run."""
    if not is_monitor_ref(args.run_ref) or args.results:
        return None
    try:
        return find_monitor(args.run_ref)
    except LookupError as exc:
        raise InputProblem(str(exc)) from None


def _guarded(function):
    def run(args: argparse.Namespace) -> int:
        try:
            return function(args)
        except InputProblem as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    return run


def _add_run_argument(parser: argparse.ArgumentParser) -> None:
    # not dest "run": the entry point keeps the command's function there
    parser.add_argument("run_ref", metavar="RUN", help="run id, unique prefix, 'last', or run folder")
    parser.add_argument("--results", metavar="RESULTS_OR_CONFIG", help="look for the run under these results")


def _progress(status: RunStatus) -> str:
    p = status.progress
    if not p:
        return "-"
    errors = f", {p['errors']} with errors" if p.get("errors") else ""
    return f"{p.get('done', 0) + p.get('errors', 0)}/{p.get('tests', 0)}{errors}"


class ListRuns:
    NAME = "runs"
    HELP = "list pipeline runs (background or not): state, progress, what each is doing"

    @staticmethod
    def configure(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("where", nargs="?", metavar="RESULTS_OR_CONFIG",
                            help="results folder or campaign file (default: every run you started)")
        parser.add_argument("--json", action="store_true", help="machine-readable output")

    @staticmethod
    @_guarded
    def run(args: argparse.Namespace) -> int:
        runs = list_runs(_results_root(args.where)) if args.where else indexed_runs()
        statuses = [run_status(r) for r in runs]
        if args.json:
            print(json.dumps([s.to_json() for s in statuses], indent=2))
            return 0
        if not statuses:
            print("no runs recorded" + (f" under {args.where}" if args.where else ""))
            return 0
        header = ("RUN", "STATE", "MODE", "SESSION", "STARTED", "TESTS", "NOW")
        rows = [(s.run_id, s.state, s.mode, s.session, s.started.replace("T", " "), _progress(s),
                 s.activity if s.state in ("running", "starting") else (s.end_reason or "")) for s in statuses]
        widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header) - 1)]
        for row in [header, *rows]:
            print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)) + "  " + str(row[-1]))
        return 0


class Status:
    NAME = "status"
    HELP = "one run's state: each test's progress, flags and OBSIDs"

    @staticmethod
    def configure(parser: argparse.ArgumentParser) -> None:
        _add_run_argument(parser)
        parser.add_argument("--json", action="store_true", help="machine-readable output")

    @staticmethod
    @_guarded
    def run(args: argparse.Namespace) -> int:
        monitor = _find_monitor(args)
        if monitor is not None:
            return _monitor_status(monitor_status(monitor), args.json)
        status = run_status(_find(args))
        if args.json:
            print(json.dumps(status.to_json(), indent=2))
            return 0
        where = f"pid {status.pid}" + (f" on {status.host}" if status.alive is None and not status.process_note else "")
        print(f"Run {status.run_id}: {status.state.upper()} ({where}); {status.mode} mode, session {status.session}")
        _print_lifecycle(status, "a wait run skips the tests already analysed")
        for test in status.tests:
            detail = test["state"]
            if test.get("subtask"):
                detail += f" ({test['subtask']})"
            if test.get("frames") and test["state"] in ("waiting", "acquiring", "writing", "complete"):
                detail += f", {test['frames'][0]}/{test['frames'][1]} exposures"
            if test.get("minutes") is not None:
                detail += f", {test['minutes']:.1f} min"
            if test.get("obsids"):
                detail += f", OBSIDs {test['obsids'][0]}-{test['obsids'][1]}"
            if test.get("flags"):
                detail += f", flags {', '.join(test['flags'])}"
            if test.get("note"):
                detail += f" [{test['note']}]"
            print(f"  {test['test']:<14} {detail}")
        print(f"  log: {status.log}")
        if status.output:
            print(f"  console output: {status.output}")
        return 0


class Stop:
    NAME = "stop"
    HELP = "stop a run gracefully: its current test is abandoned cleanly and the summary written"

    @staticmethod
    def configure(parser: argparse.ArgumentParser) -> None:
        _add_run_argument(parser)
        parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for it to end (default 30)")
        parser.add_argument("--force", action="store_true", help="kill it if it has not ended after the timeout")

    @staticmethod
    @_guarded
    def run(args: argparse.Namespace) -> int:
        monitor = _find_monitor(args)
        if monitor is not None:
            return _stop_monitor(monitor, args)
        run = _find(args)
        before = run_status(run)
        code, after = stop_confirmed("Run", before.run_id, before,
                                     lambda: stop_run(run, timeout=args.timeout, force=args.force), args.timeout)
        if after is None:
            return code
        ended = after.end_reason if (after.end_reason or "").startswith(after.state) else after.state
        print(f"Run {after.run_id}: {ended}" + ("" if ended == after.end_reason or not after.end_reason
                                                else f" ({after.end_reason})"))
        return 0


class Tail:
    NAME = "tail"
    HELP = "show the end of a run's pipeline log (-f: follow it while the run goes on)"

    @staticmethod
    def configure(parser: argparse.ArgumentParser) -> None:
        _add_run_argument(parser)
        parser.add_argument("-f", "--follow", action="store_true", help="keep printing new lines until the run ends")
        parser.add_argument("-n", "--lines", type=int, default=20, help="lines to show first (default 20)")
        parser.add_argument("--output", action="store_true",
                            help="the run's console output instead of its pipeline log (background runs)")

    @staticmethod
    @_guarded
    def run(args: argparse.Namespace) -> int:
        run = _find(args)
        source = "output" if args.output else "log"
        shown = False
        try:
            for line in tail_run(run, follow=args.follow, lines=args.lines, source=source):
                print(line, flush=True)
                shown = True
        except KeyboardInterrupt:  # Ctrl-C ends the following, not the run
            return 0
        if not shown:
            print(f"(nothing in the run's {'console output' if args.output else 'log'} yet)")
        return 0


class ListMonitors:
    NAME = "monitors"
    HELP = "list the detached monitors (monitor --detach, or started from the app): state, day folder, backup"

    @staticmethod
    def configure(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--json", action="store_true", help="machine-readable output")

    @staticmethod
    @_guarded
    def run(args: argparse.Namespace) -> int:
        statuses = [monitor_status(r) for r in list_monitors()]
        if args.json:
            print(json.dumps([s.to_json() for s in statuses], indent=2))
            return 0
        if not statuses:
            print("no detached monitors recorded")
            return 0
        header = ("MONITOR", "STATE", "PID", "STARTED", "DAY FOLDER", "BACKUP")
        rows = [(s.monitor_id, s.state, str(s.pid or "-"), s.started.replace("T", " "), s.day_folder,
                 ", ".join([*s.backup, *s.broadcast]) or "-") for s in statuses]
        widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header) - 1)]
        for row in [header, *rows]:
            print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)) + "  " + str(row[-1]))
        return 0


def _print_lifecycle(status: Any, on_restart: str) -> None:
    """What a run's or a monitor's status says of its process: identity note, times, now or end."""
    if status.process_note:
        print(f"  {status.process_note}")
    print(f"  started {status.started}, updated {status.updated}")
    if status.state in ("running", "starting"):
        print(f"  now: {status.activity}")
    elif status.end_reason:
        print(f"  ended: {status.end_reason}" + (f" (exit {status.exit_code})" if status.exit_code is not None else ""))
    if status.state == "died":
        print(f"  the process is gone without saying why (killed, or the machine restarted); start it again: "
              f"{on_restart}")


def _monitor_status(status: MonitorStatus, as_json: bool) -> int:
    if as_json:
        print(json.dumps(status.to_json(), indent=2))
        return 0
    print(f"Monitor {status.monitor_id}: {status.state.upper()} (pid {status.pid}), following {status.day_folder}")
    _print_lifecycle(status, "it carries on from its state file")
    for target in [*status.backup, *status.broadcast]:
        print(f"  backup: {target}")
    print(f"  state: {status.state_file}\n  log: {status.log}\n  console output: {status.output}")
    return 0


def stop_confirmed(what: str, ident: str, before: Any, stop: Callable[[], Any], timeout: float) -> tuple[int, Any]:
    """Stop a recorded process (a run, a monitor) only once it is confirmed to be the one recorded:
    (exit status, its status after the stop, None when nothing was stopped), each case said."""
    if before.process_note:  # a live pid not confirmed to be ours: never signalled
        print(f"{what} {ident}: not stopped; {before.process_note}.")
        return (0 if before.alive is False else 1), None
    if before.alive is None:
        print(f"{what} {ident} runs on {before.host}: stop it there.")
        return 1, None
    if not before.alive:
        print(f"{what} {ident} is not running ({before.state}).")
        return 0, None
    print(f"Stopping {what.lower()} {ident} (pid {before.pid})...", flush=True)
    after = stop()
    if after.alive:
        print(f"{what} {ident} is still running after {timeout:g} s (finishing a step); check again with "
              f"`vison-engine status {ident}`, or use --force.")
        return 1, None
    return 0, after


def _stop_monitor(record: MonitorRecord, args: argparse.Namespace) -> int:
    before = monitor_status(record)
    code, after = stop_confirmed("Monitor", before.monitor_id, before,
                                 lambda: stop_monitor(record, timeout=args.timeout, force=args.force), args.timeout)
    if after is None:
        return code
    print(f"Monitor {after.monitor_id}: {after.end_reason or after.state}; its state is saved in {after.state_file}")
    return 0


COMMANDS = (ListRuns, ListMonitors, Status, Stop, Tail)
