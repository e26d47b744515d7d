"""A pipeline run over one session: each test's data set is selected, its task run, its results
published, and the log's summary block written after every test and at the end.

Modes: *aim* (the session's tests with their OBSID limits, data already there), *wait* (see
wait.py: each test starts as soon as its frames are complete), *check only* (init + check, plus
lock for point sources), and *dry* (validate inputs and create folders, analyse nothing).
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from ..campaign.catalogue import UnknownTestError, resolve_test
from ..campaign.chamber import load_chamber
from ..campaign.config import Campaign, SessionTest
from ..campaign.executor_spec import ExecutorSpec
from ..formats.explog import read_explog
from ..formats.hklimits import load_hk_limits
from ..tasks.calproducts import CalibrationInputs
from ..tasks.context import TaskContext
from ..tasks.dataset import DataSet, select_dataset
from ..tasks.executor import Executor, ExecutorUnavailable, open_executor
from ..tasks.family import CHECK_ONLY_SUBTASKS
from ..tasks.registry import family, family_module, task_for
from . import log as pipelog
from .events import (EventLog, PipelineEvent, RunFinished, RunStarted, SubtaskEnded, SubtaskStarted, TestAbandoned,
                     TestFinished, TestPrepared, TestStarted, events_path, log_size)
from .results import discard, publish, result_folder, result_record, staging_folder
from .runs import new_run_id

Event = Callable[[str, Mapping[str, Any]], None]


DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # the results disk (or quota, or file size limit)


class RunError(ValueError):
    """A run that cannot start: no day folder, no EXP_LOG, unknown session..."""


class StopRequested(BaseException):
    """A stop was asked (SIGTERM from `vison-engine stop`, Ctrl-C, the terminal closing).

    A BaseException so that no task's `except Exception` swallows it: the running analysis is
    abandoned (its staging folder discarded), then the summary is written and the run ends.
    """


@dataclass
class RunOptions:
    session: str
    mode: str = "aim"  # "aim" | "wait"
    check_only: bool = False
    dry: bool = False
    day_folder: str | Path | None = None
    start_obsid: int | None = None
    jobs: int = 1  # worker processes of the local executor
    executor: ExecutorSpec | None = None  # where the work units run; None: the campaign's [run] executor
    tag: str = ""
    run_id: str | None = None
    log_dir: Path | None = None  # default <results>/logs
    notes: tuple[str, ...] = ()  # said in the log after the header (e.g. the quick form's defaults)


@dataclass
class RunEnd:
    """How a run ended, as its summary block and run record say it."""

    reason: str = "finished"
    state: str = "finished"  # finished | stopped | failed


@dataclass
class PipelineRun:
    campaign: Campaign
    options: RunOptions
    on_event: Event | None = None
    started: datetime = field(default_factory=datetime.now)
    summaries: list[pipelog.TaskSummary] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.session = self.campaign.session(self.options.session)
        self.chamber = load_chamber(self.campaign.info.chamber)
        self.hk_limits = load_hk_limits()
        problem = pipelog.tag_problem(self.options.tag)
        if problem:
            raise RunError(problem)
        # a unique id, hence a log and staging folders of this run's own (see new_run_id)
        self.run_id = self.options.run_id or new_run_id(self.campaign.paths.results, self.options.tag, self.started)
        self.pid = self.run_id  # the "Pipeline ID" of the log
        log_dir = self.options.log_dir or self.campaign.paths.results / pipelog.LOGS_FOLDER
        self.log_path = log_dir / pipelog.log_filename(self.run_id)
        self.event_log = EventLog(events_path(self.log_path))  # typed events beside the log (events.py)
        self.log: logging.Logger | None = None
        self.stop_event = threading.Event()
        self.stop_reason: str | None = None
        self.end_state: str | None = None  # finished | stopped | failed, once closed
        self._stop_callbacks: list[Callable[[], None]] = []
        self._analysing = False  # True while a task's sub-tasks run: a stop abandons it
        self._thread = threading.get_ident()
        self._executor: Executor | None = None  # made at the first analysis, closed with the run

    # -- inputs -------------------------------------------------------------------------------

    @property
    def test_names(self) -> list[str]:
        return [t.name for t in self.session.tests]

    def day_folders(self) -> list[Path]:
        """The day folder of the session (option, then config), or every day folder of the data."""
        chosen = self.options.day_folder or self.session.day_folder
        if chosen:
            path = Path(chosen)
            path = path if path.is_absolute() or path.exists() else self.campaign.paths.data / path
            if not path.is_dir():
                raise RunError(f"day folder {path} does not exist")
            return [path]
        folders = sorted({p.parent for p in self.campaign.paths.data.glob("*/EXP_LOG_*.txt")})
        if not folders:
            raise RunError(f"no day folder with an EXP_LOG under {self.campaign.paths.data}; give --day")
        return folders

    def read_rows(self, folders: list[Path] | None = None) -> list[dict[str, Any]]:
        """Every EXP_LOG row of the day folders, each knowing its folder; the last line may be pending."""
        rows: list[dict[str, Any]] = []
        for folder in folders or self.day_folders():
            for path in sorted(folder.glob("EXP_LOG_*.txt")):
                try:
                    explog = read_explog(path, errors="collect")
                except OSError as exc:  # a folder, denied, gone: no row of it can be trusted
                    raise RunError(f"EXP_LOG {path} cannot be read ({exc.strerror or exc}): the tests of "
                                   f"{folder.name} cannot be selected; fix its permissions or give another "
                                   "day folder") from None
                for problem in explog.problems:
                    self._log().warning(str(problem))
                for row in explog.rows:
                    row["_folder"] = str(folder)
                    rows.append(row)
        return rows

    def dataset_for(self, test: SessionTest, rows: list[dict[str, Any]]) -> DataSet:
        definition = resolve_test(test.name)
        name = definition.surrogate or definition.name
        folder = Path(rows[0]["_folder"]) if rows else self.campaign.paths.data
        return select_dataset(rows, name, definition.frames_per_column(self.chamber), folder,
                              obsids=test.obsids, start_obsid=self.options.start_obsid)

    def enabled_subtasks(self, test: SessionTest) -> set[str]:
        declared = family(resolve_test(test.name).family)
        unknown = sorted(set(test.subtasks) - set(declared.subtasks))
        if unknown:  # a campaign loaded without the families' schema: say it rather than ignore it
            raise RunError(f"{test.name}: unknown sub-task(s) {', '.join(unknown)} "
                           f"(its sub-tasks: {', '.join(declared.subtasks)})")
        names = set(declared.implemented)
        if self.options.check_only:
            return names & CHECK_ONLY_SUBTASKS
        return {n for n in names if test.subtasks.get(n, True)}

    def subtask_plan(self, test: SessionTest) -> dict[str, str]:
        """Each declared sub-task in order: "to run", "off" or "not implemented"."""
        declared = family(resolve_test(test.name).family)
        enabled = self.enabled_subtasks(test)
        return {name: "not implemented" if name in declared.not_implemented else
                ("to run" if name in enabled else "off") for name in declared.subtasks}

    # -- running ------------------------------------------------------------------------------

    def open(self) -> None:
        self._thread = threading.get_ident()  # the thread that runs the analyses (see request_stop)
        self.log = pipelog.open_pipeline_log(self.log_path, self.run_id)
        self.log.info(pipelog.header(self.pid, self.campaign.info.block, self.chamber.name, self.test_names))
        self.log.info(f"Results will be saved in: {self.campaign.paths.results}")
        mode = f"{self.options.mode}{' (check only)' if self.options.check_only else ''}{' (dry)' if self.options.dry else ''}"
        executor = self.executor_spec
        said = f"jobs {self.options.jobs}" if executor.is_local else f"executor {executor}"
        self.log.info(f"Mode: {mode}; session {self.session.name}; {said}")
        for note in self.options.notes:
            self.log.info(note)
        self.emit(RunStarted(self.test_names, str(self.log_path), mode, log_offset=0))

    def close(self, reason: str = "finished", state: str = "finished") -> None:
        """Write the final summary; `state` is finished, stopped or failed (for the run record)."""
        log = self._log()
        mark = self.log_mark()
        log.info(pipelog.summary_block(self.pid, self.campaign.info.block, self.chamber.name, self.test_names,
                                       self.summaries))
        log.info(f"Pipeline {reason}.")
        self.end_state = state
        self.emit(RunFinished(reason, state, any(s.errors for s in self.summaries), log_offset=mark))
        if self._executor is not None:
            self._executor.close()
            self._executor = None
        pipelog.close_pipeline_log(log)

    # -- stopping -----------------------------------------------------------------------------

    def request_stop(self, why: str = "stop requested") -> None:
        """Ask the run to end. Safe in a signal handler of the run's thread: a running analysis
        is abandoned at once (StopRequested is raised there); between tests the run ends at its
        next look. From another thread, the current test is finished first."""
        self.stop_reason = why
        self.stop_event.set()
        for callback in list(self._stop_callbacks):
            callback()
        if self._analysing and threading.get_ident() == self._thread:
            self._analysing = False
            raise StopRequested(why)

    def on_stop(self, callback: Callable[[], None]) -> None:
        """Call `callback` when a stop is requested (e.g. to wake a sleeping watcher)."""
        self._stop_callbacks.append(callback)

    def check_stop(self) -> None:
        if self.stop_event.is_set():
            raise StopRequested(self.stop_reason or "stop requested")

    def run_test(self, test: SessionTest, rows: list[dict[str, Any]]) -> pipelog.TaskSummary:
        """Run one test's task on its data set; never raises for the test's own failures."""
        log = self._log()
        if self.options.dry:
            return self.prepare_test(test, rows)
        executor = self.executor()  # before the test starts: an unreachable cluster ends the run
        started_at, started = datetime.now(), time.perf_counter()
        mark = self.log_mark()
        log.info(f"Running Task: {test.name}")
        self.emit(TestStarted(test.name, log_offset=mark))
        definition = resolve_test(test.name)
        results_root = self.campaign.paths.results
        workdir = staging_folder(results_root, self.session.name, test.name, self.run_id)
        discard(workdir)
        try:
            dataset = self.dataset_for(test, rows)
            ctx = TaskContext(
                test=definition, session=self.session.name, campaign=self.campaign, chamber=self.chamber,
                dataset=dataset, workdir=workdir, log=log, hk_limits=self.hk_limits, jobs=self.options.jobs,
                executor=executor,
                family=family(definition.family),
                limits=self.campaign.limits_for(family(definition.family).limits, definition.family),
                calibration=CalibrationInputs(self.campaign),
                on_subtask=lambda name: self.emit(SubtaskStarted(test.name, name)),
                on_subtask_end=lambda name, status, seconds, error: self.emit(
                    SubtaskEnded(test.name, name, status, seconds, error)),
            )
            task = task_for(definition.family)
            enabled = self.enabled_subtasks(test)
            self._analysing = True
            try:
                outcome = task.run(ctx, enabled)
            finally:
                self._analysing = False
            record = result_record(ctx, outcome, self.mode_name, started_at, datetime.now(), self.run_id)
            publish(ctx, record, result_folder(results_root, self.session.name, test.name))
            summary = pipelog.TaskSummary(test.name, (time.perf_counter() - started) / 60, dataset.obsid_range,
                                          ctx.flags.names(), outcome.errors, "errors" if outcome.errors else "done")
            full = next((m for m in outcome.error_messages if any(f"[Errno {n}]" in m for n in DISK_FULL)), None)
        except StopRequested as stop:
            discard(workdir)
            self.emit(TestAbandoned(test.name, str(stop)))
            log.warning(f"Task {test.name} abandoned ({stop}): its partial results were discarded")
            raise
        except Exception as exc:  # a broken test never stops the others
            failure = f"{type(exc).__name__}: {exc}"
            full = failure if isinstance(exc, OSError) and exc.errno in DISK_FULL else None
            failed_at = self.log_mark()
            log.exception(f"TASK {test.name} FAILED")
            discard(workdir)
            summary = pipelog.TaskSummary(test.name, (time.perf_counter() - started) / 60, None, ["UNKNOWN"], True,
                                          "errors")
        else:
            failure = failed_at = None
        mark = failed_at if failed_at is not None else self.log_mark()
        log.info(f"Finished {definition.family}")
        log.info(f"{summary.minutes:.1f} minutes in running Task: {test.name}")
        log.info(f"Task {test.name} exited with Errors: {summary.errors}")
        self.add_summary(summary)
        self.emit(TestFinished(test.name, summary.state, summary.flags, round(summary.minutes, 3),
                               list(summary.obsids) if summary.obsids else None, failure, log_offset=mark))
        if full:
            # every later test would fail alike (or fill the disk the raw data may share): the run
            # ends here, failed, with the reason; the summary and the run's state are still written
            raise OSError(errno.ENOSPC, f"the results disk is full: {test.name} failed ({full}); the run stops "
                          f"here: free space in {results_root} and run the remaining tests again")
        return summary

    def prepare_test(self, test: SessionTest, rows: list[dict[str, Any]]) -> pipelog.TaskSummary:
        """Dry mode: select the data set, say what would be analysed, create the result folders."""
        log = self._log()
        folder = result_folder(self.campaign.paths.results, self.session.name, test.name)
        dataset = self.dataset_for(test, rows)
        for sub in ("products", "figs"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        found = f"{len(dataset.exposures)} of {dataset.expected_frames} exposures"
        span = f", OBSIDs {dataset.obsid_range[0]}-{dataset.obsid_range[1]}" if dataset.obsid_range else ""
        plan = self.subtask_plan(test)
        said = ", ".join(name if status == "to run" else f"{name} ({status})" for name, status in plan.items())
        log.info(f"Dry run, {test.name}: {found}{span}; sub-tasks {said}; folder {folder} ready, nothing analysed")
        for note in dataset.notes:
            log.info(note)
        summary = pipelog.TaskSummary(test.name, 0.0, dataset.obsid_range, [], False, "skipped")
        self.add_summary(summary, block=False)
        self.emit(TestPrepared(test.name, len(dataset.exposures), dataset.expected_frames, str(folder), plan,
                               list(dataset.obsid_range) if dataset.obsid_range else None))
        return summary

    def add_summary(self, summary: pipelog.TaskSummary, block: bool = True) -> None:
        """Record a test's outcome (replacing an earlier one) and log the progress block."""
        self.summaries = [s for s in self.summaries if s.test != summary.test] + [summary]
        if block:
            self._log().info(pipelog.summary_block(self.pid, self.campaign.info.block, self.chamber.name,
                                                   self.test_names, self.summaries))

    @property
    def mode_name(self) -> str:
        return "dry" if self.options.dry else ("check" if self.options.check_only else "full") + f"/{self.options.mode}"

    @contextmanager
    def opened(self) -> Iterator[RunEnd]:
        """Open the run; on leaving, close it with how it ended: finished (or the reason the body
        set), stopped (a StopRequested, which ends here) or failed (the exception goes on)."""
        self.open()
        end = RunEnd()
        try:
            yield end
        except StopRequested as stop:
            end.reason, end.state = f"stopped ({stop})", "stopped"
        except BaseException as exc:
            end.reason, end.state = f"failed ({type(exc).__name__}: {exc})", "failed"
            raise
        finally:
            self.close(end.reason, end.state)

    def run_aim(self) -> list[pipelog.TaskSummary]:
        """Every test of the session, in order, on the data already there.

        A requested stop ends the run after abandoning the current test (see `end_state`)."""
        with self.opened():
            if self.session.tests:
                self.warm_up()
            rows = self.read_rows()
            for test in self.session.tests:
                self.check_stop()
                self.run_test(test, rows)
        return self.summaries

    # -- where the work units run ---------------------------------------------------------------

    def warm_up(self) -> threading.Thread | None:
        """In the background, while the data are listed: the local workers start (the fork server
        loads the task framework and the generic compiled kernels) and import the session's family
        modules, and this process imports the analyses and matplotlib, so the first units and
        figures wait for none. Returns the importing thread (wait mode joins it before its first
        analysis)."""
        if self.options.dry:
            return None
        if self.executor_spec.is_local:
            self.executor().warm(self.worker_modules())
        thread = threading.Thread(target=_load_analyses_and_figures, args=(self._session_families(),),
                                  name="vison-warm-up", daemon=True)
        thread.start()
        return thread

    def worker_modules(self) -> list[str]:
        """What each local worker imports as it starts: the session's family modules."""
        return [family_module(name) for name in self._session_families()]

    def _session_families(self) -> list[str]:
        """The families of the session's tests (a test the catalogue does not know is left to the
        run, which says so)."""
        families = set()
        for test in self.session.tests:
            try:
                families.add(resolve_test(test.name).family)
            except UnknownTestError:  # run_test reports it
                pass
        return sorted(families)

    @property
    def executor_spec(self) -> ExecutorSpec:
        return self.options.executor or self.campaign.run.executor

    def executor(self) -> Executor:
        """The run's executor (engine/tasks/executor.py), made once: a Dask cluster is connected to
        for the whole run. RunError when its scheduler cannot be reached."""
        if self._executor is None:
            try:
                self._executor = open_executor(self.executor_spec, self.options.jobs)
            except ExecutorUnavailable as exc:
                raise RunError(str(exc)) from None
            if not self.executor_spec.is_local:
                self._log().info(f"Work units run on {self._executor.describe()}")
        return self._executor

    # -- helpers ------------------------------------------------------------------------------

    def _log(self) -> logging.Logger:
        if self.log is None:
            self.log = pipelog.open_pipeline_log(self.log_path, self.run_id)
        return self.log

    def emit(self, event: PipelineEvent) -> None:
        """Record a typed event (events.py) in the run's events file, at the log's current size
        unless it carries its own offset, and tell the listener (console, run record) as
        (kind, payload); kinds are listed in docs/runs.md."""
        if event.log_offset is None:
            event = dataclasses.replace(event, log_offset=self.log_mark())
        self.event_log.write(event)
        if self.on_event:
            self.on_event(event.kind, event.payload())

    def log_mark(self) -> int | None:
        """The log's size now: where the next record starts (handlers flush every record)."""
        return log_size(self.log_path)


def _load_analyses_and_figures(session_families: Sequence[str] = ()) -> None:
    """The analyses and matplotlib, and astropy if a family of the session writes FITS products
    from this process (Family.fits_products: 0.3 s that a test writing none never pays)."""
    try:
        from ..tasks.figures import new_figure
        from ..tasks.registry import families

        declared = families()
        # astropy before matplotlib: its import looks up the module of each config item it makes
        # (inspect.getmodule: a realpath of every module loaded, the first time), fewer so
        if any(declared[name].fits_products for name in session_families if name in declared):
            import astropy.io.fits  # noqa: F401
        new_figure(1, 1)  # imports matplotlib's Figure and Agg canvas
    except Exception:  # noqa: BLE001 - the analysis imports them again and says what fails
        pass
