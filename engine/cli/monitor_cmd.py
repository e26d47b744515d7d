"""`vison-engine monitor DAYFOLDER`: follow an acquisition, check HK, alert, keep a verified backup."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from ..campaign.chamber import ChamberError, load_chamber
from ..tasks.registry import load_campaign_checked
from ..formats.hklimits import HKLimitsError
from ..formats.tomlfile import ConfigError
from ..monitor import BellSink, CommandSink, EmailSink, Monitor, StateLocked, StreamSink, settings_for
from ..monitor.detached import MonitorRecorder, MonitorStartError, start_detached_monitor
from ..monitor.state import state_file_refusal

NAME = "monitor"
HELP = "follow a day folder as ELVIS writes it: HK limits and alerts, EXP_LOG, verified backup"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("day_folder", metavar="DAYFOLDER", help="the day folder ELVIS writes, e.g. data/12_Mar_19")
    parser.add_argument("--config", metavar="CAMPAIGN.toml",
                        help="campaign config: chamber (expected frames) and [watch] polling settings")
    parser.add_argument("--monitor-config", metavar="MONITOR.toml",
                        help="monitor settings: alerts (email, command), repeat interval, HK limit overrides "
                        "(default: monitor.toml beside the campaign config, if there is one)")
    parser.add_argument("--backup", action="append", default=[], metavar="DIR",
                        help="data root to copy the day folder into (DIR/<day>/...); repeatable")
    parser.add_argument("--broadcast", action="append", default=[], metavar="DIR",
                        help="second target, e.g. the gateway for external inspectors; DIR or host:path (rsync)")
    parser.add_argument("--log", metavar="FILE", help="append every event to this log (eyegore's -g)")
    parser.add_argument("--json", action="store_true", help="one JSON event per line on stdout")
    parser.add_argument("--once", action="store_true", help="handle what is in the folder now, then exit (cron)")
    parser.add_argument("--verify-backup", action="store_true",
                        help="as --once, and hash every backup copy again now against its sha256 (exit status 1 "
                        "if any changed); without it copies are re-hashed a few at a time (docs/monitor.md)")
    parser.add_argument("--polling", action="store_true",
                        help="poll instead of file events (NFS/SMB mounts; detected automatically)")
    parser.add_argument("--idle-stop", type=float, metavar="MIN",
                        help="stop after MIN minutes without new data (default: never)")
    parser.add_argument("--state", metavar="FILE",
                        help="state file (default: ~/.local/state/vison/monitor/<day>-<hash>.json)")
    parser.add_argument("--chamber", help="chamber profile for expected frames (default: the campaign's)")
    parser.add_argument("--settle", type=float, metavar="S", help="seconds a file must be unchanged to count as "
                        "written (default 3)")
    parser.add_argument("--verbose", "-v", action="store_true", help="also print each frame and each copy")
    parser.add_argument("--no-bell", action="store_true", help="no terminal bell on warnings")
    parser.add_argument("--detach", action="store_true",
                        help="run in the background, in its own session (it outlives the terminal), with a record "
                        "that `vison-engine monitors` lists and `status`/`stop` act on")
    parser.add_argument("--record", metavar="FOLDER", help=argparse.SUPPRESS)  # the detached monitor's own record


def _log_refusal(path: str | None) -> str | None:
    """Why `--log FILE` cannot be appended to, found before anything starts (a disk that fills later
    is reported by the monitor, which goes on)."""
    if not path:
        return None
    target = Path(path).expanduser()
    if target.is_dir():
        return f"--log {path} is a folder: give a file, e.g. {Path(path) / 'monitor.log'}"
    if target.exists():
        if not os.access(target, os.W_OK):
            return f"--log {path}: the file cannot be written (permission denied)"
        return None
    parent = target.parent if str(target.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        return f"--log {path}: {parent} is not a folder"
    if parent.is_dir() and not os.access(parent, os.W_OK | os.X_OK):
        return f"--log {path}: cannot create a file in {parent} (permission denied)"
    return None


def run(args: argparse.Namespace) -> int:
    refusal = _log_refusal(args.log)
    if refusal:
        print(f"error: {refusal}", file=sys.stderr)
        return 2
    try:
        settings, chamber = _settings(args)
        monitor = Monitor(args.day_folder, settings, targets=[*args.backup, *args.broadcast],
                          state_path=args.state, log_path=args.log, chamber=chamber)
    except ConfigError as exc:
        print(f"{len(exc.problems)} problem(s) in the configuration:\n{exc}", file=sys.stderr)
        return 2
    except (HKLimitsError, ChamberError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.verify_backup and (args.detach or not monitor.targets):
        print("error: --verify-backup checks the copies in --backup/--broadcast folders once and exits: "
              + ("it is not to be detached" if args.detach else "give the backup, e.g. --backup /caldata/data"),
              file=sys.stderr)
        return 2
    if args.detach:
        return _detach(args, monitor)
    monitor.add_sink(StreamSink(sys.stdout, json_lines=args.json, details=args.verbose))
    if not args.json and not args.no_bell and settings.bell_level != "off" and sys.stderr.isatty():
        monitor.add_sink(BellSink(sys.stderr, settings.bell_level))
    if settings.email is not None:
        monitor.add_sink(EmailSink(settings.email))
    if settings.command is not None:
        monitor.add_sink(CommandSink(settings.command))

    signals: list[str] = []

    def stop(signum, _frame) -> None:
        signals.append(signal.Signals(signum).name)
        monitor.stop()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    # a detached monitor says "running" only once a stop request would be handled cleanly
    recorder = MonitorRecorder(args.record, monitor) if args.record else None
    try:
        if args.once or args.verify_backup:
            stopped = monitor.run_once(verify_all=args.verify_backup)
        else:
            stopped = monitor.run(idle_stop_minutes=args.idle_stop)
    except (StateLocked, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        if recorder is not None:
            recorder.finish("failed", str(exc), 2)
        return 2
    except BaseException as exc:
        if recorder is not None:
            recorder.finish("failed", f"{type(exc).__name__}: {exc}", 1)
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    counts = monitor.counts
    unsolved = _backup_unsolved(monitor)
    for line in unsolved:
        print(line, file=sys.stderr)
    if unsolved:
        code = 1  # a backup that is not what it says is never a success, however old the conflict
    else:
        # for cron and scripts: 1 when something needs a look (out of limits, bad lines, failed copies)
        code = 1 if (args.once or args.verify_backup) and (counts.get("warning", 0) or counts.get("critical", 0)) else 0
    if recorder is not None:
        ended = f"stopped ({signals[0]} received)" if signals else f"finished ({stopped.reason})"
        recorder.finish("stopped" if signals else "finished", ended + ("; " + "; ".join(unsolved) if unsolved else ""),
                        code)
    return code


def _detach(args: argparse.Namespace, monitor: Monitor) -> int:
    """Start the same monitor in the background, with its record; say how to follow and stop it."""
    if args.once:
        print("error: --once handles what is there and exits: it is not to be detached (cron runs it)",
              file=sys.stderr)
        return 2
    refusal = state_file_refusal(monitor.store.path)
    if refusal:
        print(f"error: {refusal}", file=sys.stderr)
        return 2
    options = ["--polling"] if args.polling else []
    for flag, value in (("--idle-stop", args.idle_stop), ("--settle", args.settle), ("--chamber", args.chamber)):
        if value is not None:
            options += [flag, str(value)]
    options += ["-v"] if args.verbose else []
    try:
        record = start_detached_monitor(args.day_folder, backup=args.backup, broadcast=args.broadcast,
                                        config=args.config, monitor_config=args.monitor_config,
                                        state_file=monitor.store.path, log=args.log, options=options)
    except (MonitorStartError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    info = record.info
    print(f"Monitor {record.monitor_id} started in the background (pid {info.get('pid')}), following "
          f"{record.day_folder}")
    for target in [*record.backup, *record.broadcast]:
        print(f"  backup: {target}")
    print(f"  log: {info.get('log')}\n  state: {info.get('state_file')}\n  record: {record.folder}")
    print(f"`vison-engine monitors` lists it; `vison-engine stop {record.monitor_id}` stops it (its state is saved).")
    return 0


def _backup_unsolved(monitor) -> list[str]:
    """One line per target holding conflicts or failed copies (from the ledger: also those of an
    earlier run, until they are solved)."""
    lines = []
    for label, report in monitor.backup_report().items():
        problems = []
        if report.conflicts:
            names = sorted(report.conflicts)
            problems.append(f"{len(names)} conflict(s) ({', '.join(names[:5])}{', ...' if len(names) > 5 else ''}): "
                            "the backup and the source differ; compare them, keep the right one, remove the "
                            "other (its .conflict-* copy is beside it)")
        if report.failed:
            names = sorted(report.failed)
            problems.append(f"{len(names)} failed ({', '.join(names[:5])}{', ...' if len(names) > 5 else ''})")
        if problems:
            lines.append(f"backup {label}: " + "; ".join(problems))
    return lines


def _settings(args: argparse.Namespace):
    campaign = load_campaign_checked(args.config) if args.config else None
    settings = settings_for(campaign, args.monitor_config)
    changes = {}
    if args.polling:
        changes["polling"] = "polling"
    if args.settle is not None:
        changes["settle_seconds"] = args.settle
    if args.chamber:
        changes["chamber"] = args.chamber
    settings = settings.with_changes(**changes)
    return settings, load_chamber(settings.chamber)
