"""`vison-engine clean RESULTS`: list what chosen kinds of results take, ask, remove (docs/cleanup.md)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TextIO

from ..pipeline.cleanup import (KINDS, ROUTINE_KINDS, CleanupError, CleanupPlan, CleanupReport, execute,
                                human_size, kinds_except, parse_kinds, plan_cleanup)

NAME = "clean"
# what a bare `clean RESULTS` shows; not "results", which would swallow the parts of each test
OVERVIEW_KINDS = (*ROUTINE_KINDS, "logs")
HELP = "free space in a results tree: list by kind (files, sizes), ask, remove; never outside it"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = "kinds:\n" + "\n".join(f"  {name:<15}{what}" for name, what in KINDS.items()) + (
        f"\n\n--keep removes the routine kinds ({', '.join(ROUTINE_KINDS)}) except those named;"
        "\nlogs and results go only when named with --kind. Without either, shows what each kind takes.")
    parser.add_argument("results", help="results root (holds <session>/<TEST>/, logs/, runs/)")
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--kind", action="append", metavar="KIND[,KIND]",
                        help="remove these kinds, e.g. --kind staging,previous")
    choice.add_argument("--keep", action="append", metavar="KIND[,KIND]",
                        help="remove every routine kind except these, e.g. --keep products,figures")
    parser.add_argument("--session", action="append", metavar="NAME[,NAME]", help="only these sessions, e.g. D11")
    parser.add_argument("--test", action="append", metavar="TEST[,TEST]", help="only these tests, e.g. BIAS01")
    parser.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")
    parser.add_argument("--yes", action="store_true", help="remove without asking (for scripts)")
    parser.add_argument("--json", action="store_true", help="machine-readable output (questions go to stderr)")


def run(args: argparse.Namespace) -> int:
    out = sys.stderr if args.json else sys.stdout  # with --json, stdout carries the JSON only
    chosen = args.kind is not None or args.keep is not None
    if not chosen and args.yes:
        return _fail("--yes needs kinds to remove: give --kind or --keep", args.json)
    try:
        kinds = (parse_kinds(_split(args.kind)) if args.kind is not None
                 else kinds_except(_split(args.keep)) if args.keep is not None else OVERVIEW_KINDS)
        plan = plan_cleanup(args.results, kinds, _split(args.session), _split(args.test))
    except CleanupError as exc:
        return _fail(str(exc), args.json)

    if not chosen or args.dry_run:
        if args.json:
            print(json.dumps({"dry_run": True, "plan": plan.as_dict()}, indent=2))
        else:
            show_plan(plan, out, list_items=chosen)
            print("Nothing removed: " + ("dry run." if chosen else "choose kinds with --kind or --keep."), file=out)
        return 0

    if not args.json:
        show_plan(plan, out, list_items=False)
    if not plan.items:
        if args.json:
            print(json.dumps({"plan": plan.as_dict(), "report": None}, indent=2))
        else:
            print("Nothing to remove.", file=out)
        return 0
    if not args.yes:
        if not sys.stdin.isatty():
            return _fail("stdin is not a terminal, so no one can answer: add --yes to remove without asking, "
                         "or --dry-run to list only", args.json)
        if args.json:
            show_plan(plan, out, list_items=False)
        if not _confirm(f"Remove {_count(plan.files, 'file')} ({human_size(plan.bytes)})? [y/N] ", out):
            if args.json:
                print(json.dumps({"plan": plan.as_dict(), "report": None, "declined": True}, indent=2))
            else:
                print("Nothing removed.", file=out)
            return 0

    report = execute(plan)
    if args.json:
        print(json.dumps({"plan": plan.as_dict(), "report": report.as_dict()}, indent=2))
    else:
        show_report(report, out)
    return 1 if report.errors else 0


def show_plan(plan: CleanupPlan, out: TextIO, list_items: bool) -> None:
    print(f"Results root: {plan.root}", file=out)
    print(f"  {'kind':<15}{'items':>6}{'files':>8}{'size':>11}", file=out)
    for kind, total in plan.totals().items():
        print(f"  {kind:<15}{total.items:>6}{total.files:>8}{human_size(total.bytes):>11}   {KINDS[kind]}", file=out)
    if list_items:
        for item in plan.items:
            link = ", link only" if item.is_link else ""
            print(f"  - {item.kind:<15}{_relative(plan, item.path)} ({_count(item.files, 'file')}, "
                  f"{human_size(item.bytes)}{link})", file=out)
    print(f"Total: {_count(plan.files, 'file')}, {human_size(plan.bytes)}", file=out)
    for kept in plan.kept:
        print(f"  kept {_relative(plan, kept.path)}: {kept.reason}", file=out)
    for note in plan.notes:
        print(f"  note: {note}", file=out)


def show_report(report: CleanupReport, out: TextIO) -> None:
    print(f"Freed {_count(report.files, 'file')} ({human_size(report.bytes)}):", file=out)
    for kind, total in report.totals().items():
        print(f"  {kind:<15}{_count(total.files, 'file'):>12}{human_size(total.bytes):>11}", file=out)
    for kept in report.kept:
        print(f"  kept {kept.path}: {kept.reason}", file=out)
    for path, message in report.errors.items():
        print(f"  error: {path}: {message}", file=out)


def _confirm(question: str, out: TextIO) -> bool:
    try:
        if out is sys.stdout:
            answer = input(question)
        else:
            print(question, end="", file=out, flush=True)
            answer = input()
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def _count(number: int, word: str) -> str:
    return f"{number} {word}{'' if number == 1 else 's'}"


def _split(values: list[str] | None) -> list[str] | None:
    """Repeated and comma-separated values as one list (None when the option was not given)."""
    if values is None:
        return None
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _relative(plan: CleanupPlan, path) -> str:
    try:
        return str(path.relative_to(plan.root))
    except ValueError:
        return str(path)


def _fail(message: str, as_json: bool) -> int:
    if as_json:
        print(json.dumps({"error": message}, indent=2))
    else:
        print(f"error: {message}", file=sys.stderr)
    return 1
