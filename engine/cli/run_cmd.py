"""`vison-engine run`: the pipeline over one session, in aim, wait, check-only or dry mode.

    vison-engine run CONFIG --session D11 [--wait] [--check] [--dry] [--day DAYFOLDER]
                     [--start-obsid N] [--jobs N | --executor dask://HOST:PORT] [--tag _D11] [--detach]
                     [--idle-stop MIN] [--json]
    vison-engine run --data DAYFOLDER --tests BIAS01 [--obsids 8101-8110] [--results DIR]

Short options are those of the old vison_run (-W, -k, -T, -d, -O, -m, -t).
Exit status: 0 the run completed (raised flags are results, not failures); 1 a test ended with
errors (or the engine failed); 2 bad input; 3 a wait run stopped idle before every test was
analysed; 130 stopped on request (SIGTERM, Ctrl-C, terminal closed).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import traceback
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from ..campaign.config import POLLING_MODES
from ..tasks.executor import start_worker_server

# The pipeline's modules (numpy, astropy, every analysis: 0.7 s) are imported where they are used,
# once `run` has started the workers' fork server: it loads its own modules meanwhile.
if TYPE_CHECKING:
    from ..pipeline.launch import RunPlan
    from ..pipeline.runner import PipelineRun

NAME = "run"
HELP = "run the pipeline on a session: aim (default), wait for data (-W), check only (-k), dry (-T)"

EXIT_OK, EXIT_ERRORS, EXIT_INPUT, EXIT_INCOMPLETE, EXIT_STOPPED = 0, 1, 2, 3, 130


def input_problem(message: str) -> Exception:
    """Bad input: said in one message, exit status 2, no traceback (launch.RunInputError, shared
    with the app's launches)."""
    from ..pipeline.launch import RunInputError

    return RunInputError(message)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", help="campaign TOML file (or the quick form: --data and --tests)")
    parser.add_argument("-s", "--session", help="session to process, e.g. D11 (default: the campaign's only one)")
    modes = parser.add_argument_group("modes")
    modes.add_argument("-W", "--wait", action="store_true",
                       help="wait for the data: analyse each test as soon as its frames are complete")
    modes.add_argument("-k", "--check", action="store_true", help="check only: init + check (+ lock) sub-tasks")
    modes.add_argument("-T", "--dry", action="store_true",
                       help="validate the inputs and create the result folders; analyse nothing")
    options = parser.add_argument_group("run options")
    options.add_argument("-d", "--day", metavar="DAYFOLDER", help="day folder (name under the data folder, or a path)")
    options.add_argument("-O", "--start-obsid", type=_positive_int, metavar="N",
                         help="use only OBSIDs from N on (a test resubmitted after an abort)")
    options.add_argument("-m", "--jobs", type=_positive_int, metavar="N",
                         help="worker processes of the local executor for the per-CCD work (default: the machine's "
                         "cores)")
    options.add_argument("--executor", metavar="WHERE",
                         help='where the work units run: "local" (process pool, --jobs) or "dask://HOST:PORT" '
                         "(a dask.distributed scheduler; docs/scaling.md); default: the campaign's [run] executor, "
                         "else local")
    options.add_argument("-t", "--tag", default="", help="added to the log's name and the run id, e.g. _D11 "
                         "(letters, digits, _ - . +)")
    options.add_argument("--detach", action="store_true",
                         help="run in the background, surviving the terminal; follow with status/tail, end with stop")
    options.add_argument("--idle-stop", type=_minutes, metavar="MIN",
                         help="wait mode: stop after MIN minutes without new data (0 = never; default: campaign)")
    options.add_argument("--polling", choices=POLLING_MODES,
                         help="wait mode: file events or polling (default: campaign's [watch] polling)")
    options.add_argument("--json", action="store_true", help="events and summary as JSON lines")
    quick = parser.add_argument_group("quick form (no campaign file)")
    quick.add_argument("--data", metavar="DAYFOLDER", help="day folder holding the frames and EXP_LOG")
    quick.add_argument("--tests", nargs="+", metavar="TEST", help="tests to analyse, e.g. BIAS01 BIAS02 (or BIAS01,BIAS02)")
    quick.add_argument("--obsids", metavar="FIRST-LAST", help="OBSID range for every test, e.g. 8101-8110")
    options.add_argument("--results", metavar="DIR",
                         help="results folder (default: the campaign's [paths] results; ./results in the quick form)")
    quick.add_argument("--block", help="block name for the log (default UNKNOWN)")
    quick.add_argument("--chamber", help="chamber profile (default: the default profile)")
    # set by `--detach` for the background process
    parser.add_argument("--run-id", help=argparse.SUPPRESS)
    parser.add_argument("--record", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    plan = None
    if not (args.detach or args.dry) and (args.jobs or 2) > 1 and args.executor in (None, "local"):
        start_worker_server()  # its task framework and kernels load while the campaign is read
    from ..pipeline.launch import RunInputError
    from ..pipeline.runs import release_run_id

    try:
        plan = _plan(args)
        pipeline = _pipeline(args, plan)
    except RunInputError as problem:
        if plan is not None and not args.run_id:
            release_run_id(plan.results, plan.run_id)  # this run never started: its id is free again
        _say_error(args, str(problem))
        return EXIT_INPUT
    if args.detach:
        return _detach(args, plan)
    return _execute(args, plan, pipeline)


# -- inputs ------------------------------------------------------------------------------------

def _plan(args: argparse.Namespace) -> RunPlan:
    from ..campaign.config import quick_campaign
    from ..formats.tomlfile import ConfigError
    from ..pipeline.launch import (
        check_jobs,
        choose_executor,
        finish_plan,
        load_campaign_file,
        only_session,
        with_results,
    )

    quick = args.data or args.tests or args.obsids or args.block or args.chamber
    if args.config and quick:
        raise input_problem("give a campaign file or the quick form (--data, --tests, ...), not both")
    args.workers = check_jobs(args.jobs)
    notes: list[str] = []
    if args.config:
        campaign = with_results(load_campaign_file(args.config), args.results)
        session = args.session or only_session(campaign, args.config)
        config: Path | None = Path(args.config).resolve()
    elif quick or args.results:
        if not args.data or not args.tests:
            raise input_problem("the quick form needs --data DAYFOLDER and --tests TEST [TEST ...]")
        tests = [t.strip() for item in args.tests for t in item.split(",") if t.strip()]
        obsids = _obsid_range(args.obsids) if args.obsids else None
        results = Path(args.results or "results")
        session = args.session or "QUICK"
        try:
            campaign = quick_campaign(Path(args.data), tests, obsids, results, session=session,
                                      block=args.block or "UNKNOWN", chamber=args.chamber)
        except ConfigError as exc:
            raise input_problem(str(exc)) from None
        notes.append(
            "Quick run without a campaign file; defaults: "
            f"block {campaign.info.block}{'' if args.block else ' (no --block)'}, "
            f"chamber {args.chamber or 'default profile'}, ELVIS {campaign.info.elvis}, no hardware serials "
            f"checked, every sub-task of each test, OBSIDs {args.obsids or 'found in the EXP_LOG'}, "
            f"results in {campaign.paths.results}{'' if args.results else ' (no --results)'}")
        config = None
    else:
        raise input_problem("nothing to run: give a campaign file (run CONFIG --session D11) or the quick form "
                            "(run --data DAYFOLDER --tests BIAS01)")
    args.executor_spec = choose_executor(campaign, args.executor, args.jobs)
    return finish_plan(campaign, session, config, notes, tag=args.tag, run_id=args.run_id, wait=args.wait,
                       dry=args.dry)


def _pipeline(args: argparse.Namespace, plan: RunPlan) -> PipelineRun:
    from ..pipeline.launch import check_inputs
    from ..pipeline.runner import RunOptions

    options = RunOptions(session=plan.session, mode="wait" if args.wait and not args.dry else "aim",
                         check_only=args.check, dry=args.dry, day_folder=args.day, start_obsid=args.start_obsid,
                         jobs=args.workers, tag=args.tag, run_id=plan.run_id, notes=tuple(plan.notes),
                         executor=args.executor_spec)
    return check_inputs(plan, options)


def _obsid_range(text: str) -> tuple[int, int]:
    for separator in ("-", ":", ","):
        if separator in text:
            first, _, last = text.partition(separator)
            break
    else:
        first = last = text
    try:
        low, high = int(first), int(last)
    except ValueError:
        raise input_problem(f"--obsids {text!r}: expected FIRST-LAST, e.g. 8101-8110") from None
    if low <= 0 or low > high:
        raise input_problem(f"--obsids {text!r}: expected positive FIRST <= LAST")
    return low, high


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def _minutes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected minutes, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("expected minutes >= 0 (0 = never stop)")
    return value


# -- background --------------------------------------------------------------------------------

def child_argv(args: argparse.Namespace) -> list[str]:
    """The run's arguments for a background process: same run, paths absolute, no --detach."""
    from ..pipeline.launch import day_argument

    def path(value: str) -> str:
        return str(Path(value).resolve())

    argv: list[str] = [path(args.config)] if args.config else []
    if args.session:
        argv += ["--session", args.session]
    argv += [flag for flag, on in (("--wait", args.wait), ("--check", args.check), ("--dry", args.dry),
                                   ("--json", args.json)) if on]
    if args.day:
        argv += ["--day", day_argument(args.day)]
    for flag, value in (("--start-obsid", args.start_obsid), ("--idle-stop", args.idle_stop),
                        ("--polling", args.polling), ("--obsids", args.obsids), ("--block", args.block),
                        ("--chamber", args.chamber)):
        if value is not None:
            argv += [flag, str(value)]
    if args.jobs is not None:
        argv += ["--jobs", str(args.jobs)]
    if args.executor:
        argv += ["--executor", args.executor]
    if args.tag:
        argv += [f"--tag={args.tag}"]  # a tag may start with "-"
    if args.data:
        argv += ["--data", path(args.data)]
    if args.tests:
        argv += ["--tests", *args.tests]
    if args.results:
        argv += ["--results", path(args.results)]
    return argv


def _detach(args: argparse.Namespace, plan: RunPlan) -> int:
    from ..pipeline.launch import launch_detached

    record = launch_detached(plan, child_argv(args), wait=args.wait, check_only=args.check, tag=args.tag)
    if args.json:
        print(json.dumps(record.info, indent=2))
        return EXIT_OK
    print(f"Started run {record.run_id} in the background (pid {record.pid}); it survives this terminal.")
    print(f"  follow:  vison-engine tail {record.run_id} -f")
    print(f"  state:   vison-engine status {record.run_id}")
    print(f"  stop:    vison-engine stop {record.run_id}")
    print(f"  record:  {record.folder}")
    return EXIT_OK


# -- running here ------------------------------------------------------------------------------

def _execute(args: argparse.Namespace, plan: RunPlan, pipeline: PipelineRun) -> int:
    from ..pipeline.runner import RunError
    from ..pipeline.runs import (
        RunRecorder,
        discard_orphan_staging,
        record_info,
        runs_root,
    )
    from ..pipeline.wait import WaitMode, WaitSettings

    options = pipeline.options
    recorder = None
    if not options.dry:
        pipeline.options.notes = tuple([*options.notes, *discard_orphan_staging(plan.results, plan.session,
                                                                               plan.run_id)])
        folder = Path(args.record) if args.record else runs_root(plan.results) / plan.run_id
        fields: dict[str, Any] = {"config": str(plan.config) if plan.config else None, "session": plan.session,
                                  "mode": options.mode, "check_only": options.check_only, "tag": args.tag,
                                  "results": str(plan.results.resolve()),
                                  "started": datetime.now().isoformat(timespec="seconds")}
        if not args.record:  # a foreground run: say how to start it again
            fields.update(argv=child_argv(args), cwd=os.getcwd(), detached=False, output=None)
        recorder = RunRecorder(folder, record_info(plan.run_id, folder, **fields))
    printer = _Printer(args.json)

    def on_event(kind: str, payload: Mapping[str, Any]) -> None:
        if recorder is not None:
            recorder(kind, payload)
        printer(kind, payload)

    pipeline.on_event = on_event
    try:
        with _stop_on_signals(pipeline):
            if options.mode == "wait":
                settings = WaitSettings.from_watch(plan.campaign.watch, args.idle_stop, args.polling)
                WaitMode(pipeline, settings).execute()
            else:
                pipeline.run_aim()
    except (RunError, OSError) as exc:  # the run's inputs or disk, said in one line (the log has the rest)
        message = str(exc) if isinstance(exc, RunError) else f"{exc.strerror or exc}" + (
            f": {exc.filename}" if getattr(exc, "filename", None) else "")
        _say_error(args, message)
        if recorder is not None:
            recorder.finish("failed", message, EXIT_ERRORS)
        printer.summary(pipeline, EXIT_ERRORS)
        return EXIT_ERRORS
    except Exception as exc:  # the engine itself failed (not a test: those are contained)
        traceback.print_exc()
        if recorder is not None:
            recorder.finish("failed", f"{type(exc).__name__}: {exc}", EXIT_ERRORS)
        return EXIT_ERRORS
    code = _exit_code(pipeline)
    if recorder is not None:
        recorder.finish(pipeline.end_state or "finished", recorder.state.get("end_reason") or "", code)
    printer.summary(pipeline, code)
    return code


def _exit_code(pipeline: PipelineRun) -> int:
    if pipeline.end_state == "stopped":
        return EXIT_STOPPED
    if pipeline.end_state == "failed" or any(s.errors for s in pipeline.summaries):
        return EXIT_ERRORS
    if pipeline.options.mode == "wait" and any(s.state == "skipped" for s in pipeline.summaries):
        return EXIT_INCOMPLETE
    return EXIT_OK


@contextmanager
def _stop_on_signals(pipeline: PipelineRun) -> Iterator[None]:
    """SIGTERM (vison-engine stop), Ctrl-C and a closing terminal end the run gracefully."""
    def handler(signum: int, _frame: Any) -> None:
        pipeline.request_stop(f"{signal.Signals(signum).name} received")

    previous = {}
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        try:
            previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread (embedded use): no signal handling
            break
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class _Printer:
    """Progress lines for the terminal (or JSON lines with --json)."""

    def __init__(self, as_json: bool):
        self.as_json = as_json
        self.closed = False

    def __call__(self, kind: str, p: Mapping[str, Any]) -> None:
        if self.as_json:
            self.print(json.dumps({"event": kind, "time": datetime.now().isoformat(timespec="seconds"), **p},
                                  default=str))
            return
        line = self.line(kind, p)
        if line:
            self.print(f"[{datetime.now():%H:%M:%S}] {line}")

    def print(self, text: str) -> None:
        """Print, unless the terminal is gone (closed SSH session): the run must go on regardless."""
        if self.closed:
            return
        try:
            print(text, flush=True)
        except OSError:
            self.closed = True

    @staticmethod
    def line(kind: str, p: Mapping[str, Any]) -> str | None:
        test = p.get("test", "")
        if kind == "run_started":
            return f"Pipeline started ({p.get('mode')}): {', '.join(p.get('tests', []))}; log {p.get('log')}"
        if kind == "watching":
            return f"Watching {p.get('folder')} ({p.get('observer')}: {p.get('why')})"
        if kind == "waiting":
            return str(p.get("message"))
        if kind == "test_started":
            return f"{test} started"
        if kind == "test_finished":
            verdict = "finished with ERRORS" if p.get("state") == "errors" else "done"
            return f"{test} {verdict} in {p.get('minutes', 0):.1f} min{_span(p.get('obsids'))}; flags {_flags(p.get('flags'))}"
        if kind == "test_abandoned":
            return f"{test} abandoned ({p.get('reason')}); its partial results were discarded"
        if kind == "test_skipped":
            if p.get("reason") == "already analysed":
                return f"{test} already analysed{_span(p.get('obsids'))} by an earlier run: not redone"
            return f"{test} not analysed: {p.get('logged', 0)}/{p.get('expected', '?')} exposures"
        if kind == "test_prepared":
            plan = p.get("subtasks") or {}
            said = ", ".join(name if status == "to run" else f"{name} ({status})" for name, status in plan.items())
            return (f"{test}: {p.get('exposures')} of {p.get('expected')} exposures{_span(p.get('obsids'))}; "
                    f"folder {p.get('folder')} ready" + (f"\n    sub-tasks: {said}" if said else ""))
        if kind == "run_finished":
            return f"Pipeline {p.get('reason')}"
        return None

    def summary(self, pipeline: PipelineRun, code: int) -> None:
        rows = [{"test": s.test, "state": s.state, "minutes": round(s.minutes, 2),
                 "obsids": list(s.obsids) if s.obsids else None, "flags": s.flags, "errors": s.errors}
                for s in pipeline.summaries]
        if self.as_json:
            self.print(json.dumps({"event": "summary", "run_id": pipeline.run_id, "state": pipeline.end_state,
                                   "exit_code": code, "log": str(pipeline.log_path), "tests": rows}))
            return
        lines = [f"\nSummary of run {pipeline.run_id} ({pipeline.end_state}); log {pipeline.log_path}"]
        width = max([len(r["test"]) for r in rows] + [4])
        for r in rows:
            state = {"done": "done", "errors": "ERRORS", "skipped": "not analysed"}.get(r["state"], r["state"])
            if pipeline.options.dry:
                state = "prepared"
            lines.append(f"  {r['test']:<{width}}  {state:<12}  {_span(r['obsids']).strip(', ') or '-':<20}  "
                         f"flags {_flags(r['flags'])}")
        self.print("\n".join(lines) + "\n")


def _span(obsids: Any) -> str:
    return f", OBSIDs {obsids[0]}-{obsids[1]}" if obsids else ""


def _flags(flags: Any) -> str:
    return ", ".join(flags) if flags else "none"


def _say_error(args: argparse.Namespace, message: str) -> None:
    if getattr(args, "json", False):
        print(json.dumps({"event": "error", "message": message}))
    print(f"error: {message}", file=sys.stderr)
