"""The task machinery: a family's sub-tasks run in order, each switched, timed and logged.

A sub-task that throws is logged with its traceback, raises SUBTASKCRASH, and ends the task's
analysis (later sub-tasks would work on missing inputs); the report is still written and the
pipeline goes on with the next test.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from typing import Callable

from .check import generic_check
from .context import TaskContext
from .report import write_report

SubTask = Callable[[TaskContext], None]


@dataclass
class TaskOutcome:
    errors: bool = False
    timings: dict[str, float] = field(default_factory=dict)  # sub-task -> seconds
    skipped: list[str] = field(default_factory=list)
    error_messages: list[str] = field(default_factory=list)


class AnalysisTask:
    """Base of every family's task. Subclasses add methods named after their sub-tasks."""

    family = "generic"

    def init(self, ctx: TaskContext) -> None:
        """Record the inputs: the data set was selected from the EXP_LOG before the task started."""
        ds = ctx.dataset
        ctx.workdir.mkdir(parents=True, exist_ok=True)
        first, last = ds.obsid_range or (None, None)
        ctx.log.info(f"Inputs:\ntest = {ctx.test.name}\nsession = {ctx.session}\nOBSID_lims = [{first}, {last}]\n"
                     f"frames = {ds.frames_per_column}\nday_folder = {ds.day_folder}\nchamber = {ctx.chamber.name}")
        for note in ds.notes:
            ctx.log.info(note)

    def check(self, ctx: TaskContext) -> None:
        """Raw-data checks: structure, files, serials, script vs log, HK, offsets, noise, pixels."""
        generic_check(ctx)
        self.check_data(ctx)

    def check_data(self, ctx: TaskContext) -> None:
        """The family's own raw-data checks (after the generic ones)."""

    def report(self, ctx: TaskContext) -> None:
        write_report(ctx)

    # -- running ------------------------------------------------------------------------------

    def subtask(self, name: str) -> SubTask | None:
        function = getattr(self, name, None)
        return function if callable(function) else None

    def run(self, ctx: TaskContext, enabled: set[str]) -> TaskOutcome:
        outcome = TaskOutcome()
        crashed = False
        for name in ctx.test.subtasks:
            function = self.subtask(name)
            if name not in enabled or function is None or (crashed and name != "report"):
                outcome.skipped.append(name)
                continue
            ctx.log.info(f"Executing {name}: {type(self).__module__}")
            if ctx.on_subtask:
                ctx.on_subtask(name)
            started = time.perf_counter()
            try:
                function(ctx)
            except Exception as exc:  # one sub-task's bug must not stop the campaign's run
                crashed = outcome.errors = True
                message = f"{name}: {type(exc).__name__}: {exc}"
                outcome.error_messages.append(message)
                ctx.flags.raise_flag("SUBTASKCRASH", f"sub-task {message}")
                ctx.log.error(f"Sub-task {name} of {ctx.test.name} failed:\n{traceback.format_exc()}")
            seconds = time.perf_counter() - started
            outcome.timings[name] = round(seconds, 3)
            ctx.log.info(f"{seconds / 60:.1f} minutes in running Sub-task: {name}")
        return outcome
