"""The task machinery: a family's sub-tasks run in order, each switched, timed and logged.

A sub-task is a method named after it, `def basic(self, ctx, prepared: PreparedData) -> NoiseResult`:
its parameters after `ctx` are the typed results of earlier sub-tasks (by annotation; made on the
spot by the type's `produce(ctx)` when the sub-task that returns it was switched off), and it
returns a `SubTaskResult` whose outputs the recorder writes (recorder.py). Every sub-task ends
with a status: done, off (switched off), not implemented (declared, no code yet), skipped (an
earlier one failed, or an input is missing) or failed.

A sub-task that throws is logged with its traceback, raises SUBTASKCRASH, and ends the task's
analysis (later sub-tasks would work on missing inputs); the report is still written and the
pipeline goes on with the next test.
"""

from __future__ import annotations

import inspect
import shutil
import time
import traceback
import typing
from dataclasses import dataclass, field
from typing import Any, Callable

from .check import RawStats, generic_check
from .context import WORK_FOLDER, MissingInput, TaskContext
from .outputs import SubTaskResult
from .recorder import record
from .report import write_report

DONE, OFF, NOT_IMPLEMENTED, SKIPPED, FAILED = "done", "off", "not implemented", "skipped", "failed"


@dataclass
class TaskOutcome:
    errors: bool = False
    timings: dict[str, float] = field(default_factory=dict)  # sub-task -> seconds
    statuses: dict[str, str] = field(default_factory=dict)  # sub-task -> done | off | not implemented | ...
    reasons: dict[str, str] = field(default_factory=dict)  # sub-task -> why skipped
    error_messages: list[str] = field(default_factory=list)

    @property
    def skipped(self) -> list[str]:
        """Sub-tasks that did not run, whatever the reason."""
        return [name for name, status in self.statuses.items() if status != DONE]

    @property
    def not_implemented(self) -> list[str]:
        return [name for name, status in self.statuses.items() if status == NOT_IMPLEMENTED]


class AnalysisTask:
    """Base of every family's task. Subclasses add methods named after their sub-tasks."""

    def init(self, ctx: TaskContext) -> None:
        """Record the inputs: the data set was selected from the EXP_LOG before the task started;
        the calibration products the family needs are resolved and said."""
        ds = ctx.dataset
        ctx.workdir.mkdir(parents=True, exist_ok=True)
        first, last = ds.obsid_range or (None, None)
        ctx.log.info(f"Inputs:\ntest = {ctx.test.name}\nsession = {ctx.session}\nOBSID_lims = [{first}, {last}]\n"
                     f"frames = {ds.frames_per_column}\nday_folder = {ds.day_folder}\nchamber = {ctx.chamber.name}")
        for note in ds.notes:
            ctx.log.info(note)
        sources = {}
        for kind in ctx.family.needs:
            source = ctx.calibration.source(kind)
            sources[kind] = source.to_json()
            ctx.log.info(f"calibration product {kind}: {source.description}")
            if source.fallback and kind in ctx.family.required:
                ctx.flags.raise_flag("MISSCALPROD", f"{kind}: {source.description}")
        if sources:
            ctx.set_value(None, None, "calproducts", sources)

    def check(self, ctx: TaskContext) -> RawStats:
        """Raw-data checks: the generic ones (structure, files, serials, script vs log, HK, offsets,
        noise, pixels), then those the family declares, on the same measurements."""
        stats = generic_check(ctx)
        for family_check in ctx.family.checks:
            family_check(ctx, stats)
        return stats

    def report(self, ctx: TaskContext) -> None:
        write_report(ctx)

    # -- running ------------------------------------------------------------------------------

    def run(self, ctx: TaskContext, enabled: set[str]) -> TaskOutcome:
        try:
            return self._run(ctx, enabled)
        finally:  # a product no sub-task published (switched off, crashed) is not a result
            ctx.finish_figures()  # nothing left drawing once the task is over
            shutil.rmtree(ctx.workdir / WORK_FOLDER, ignore_errors=True)

    def _run(self, ctx: TaskContext, enabled: set[str]) -> TaskOutcome:
        outcome = TaskOutcome()
        ctx.outcome = outcome  # the report lists each sub-task's status
        ctx.enabled = frozenset(name for name in enabled if name not in ctx.family.not_implemented)
        crashed = False
        for name in ctx.family.subtasks:
            if name in ctx.family.not_implemented:
                outcome.statuses[name] = NOT_IMPLEMENTED
                ctx.log.info(f"Sub-task {name} of {ctx.test.name}: not implemented")
                continue
            if name not in enabled:
                outcome.statuses[name] = OFF
                continue
            if crashed and name != "report":
                outcome.statuses[name] = SKIPPED
                outcome.reasons[name] = "an earlier sub-task failed"
                continue
            if name == "report":  # the report lists the figures: the ones being drawn are waited for
                self._finish_figures(ctx, outcome)
            method = getattr(self, name)  # the contract test guarantees it exists
            if ctx.on_subtask:
                ctx.on_subtask(name)
            ctx.log.info(f"Executing {name}: {type(self).__module__}")
            started = time.perf_counter()
            error = None
            try:
                result = method(ctx, **self.inputs(method, ctx))
                if isinstance(result, SubTaskResult):
                    ctx.keep(result)
                    record(ctx, result.outputs)
                elif result is not None:
                    ctx.keep(result)
                outcome.statuses[name] = DONE
            except MissingInput as missing:
                outcome.statuses[name] = SKIPPED
                outcome.reasons[name] = str(missing)
                error = str(missing)
            except Exception as exc:  # one sub-task's bug must not stop the campaign's run
                crashed = outcome.errors = True
                outcome.statuses[name] = FAILED
                error = f"{type(exc).__name__}: {exc}"
                outcome.error_messages.append(f"{name}: {error}")
                ctx.flags.raise_flag("SUBTASKCRASH", f"sub-task {name}: {error}")
                trace = traceback.format_exc()
            seconds = time.perf_counter() - started
            if ctx.on_subtask_end:  # before the error is logged: the event points at its record
                ctx.on_subtask_end(name, outcome.statuses[name], round(seconds, 3), error)
            if outcome.statuses[name] == SKIPPED:
                ctx.log.warning(f"Sub-task {name} of {ctx.test.name} skipped: {error}")
            elif outcome.statuses[name] == FAILED:
                ctx.log.error(f"Sub-task {name} of {ctx.test.name} failed:\n{trace}")
            outcome.timings[name] = round(seconds, 3)
            ctx.log.info(f"{seconds / 60:.1f} minutes in running Sub-task: {name}")
        self._finish_figures(ctx, outcome)
        return outcome

    @staticmethod
    def _finish_figures(ctx: TaskContext, outcome: TaskOutcome) -> None:
        """The figures drawn in the background, waited for; one that failed is a flagged error of
        the task (its numbers stand: the sub-tasks after it have run)."""
        for name, exc in ctx.finish_figures():
            outcome.errors = True
            error = f"{type(exc).__name__}: {exc}"
            outcome.error_messages.append(f"figure {name}: {error}")
            ctx.flags.raise_flag("SUBTASKCRASH", f"figure {name}: {error}")
            ctx.log.error(f"Figure {name} of {ctx.test.name} failed: {error}")

    @staticmethod
    def inputs(method: Callable[..., Any], ctx: TaskContext) -> dict[str, Any]:
        """The typed results a sub-task asks for, by the annotations of its parameters after ctx.
        An optional one (`x: T | None = None`) is given only if an earlier sub-task produced it."""
        hints = typing.get_type_hints(method)
        kwargs = {}
        for name, parameter in list(inspect.signature(method).parameters.items())[1:]:
            kind = hints.get(name)
            optional = parameter.default is None
            if optional:
                kind = next((a for a in typing.get_args(kind) if a is not type(None)), kind)
            if not isinstance(kind, type):
                raise TypeError(f"sub-task {method.__name__}: parameter {name} needs a class annotation")
            kwargs[name] = ctx.have(kind) if optional else ctx.need(kind)
        return kwargs
