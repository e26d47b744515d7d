"""What a task works with: its test, family, data set, campaign, typed limits, calibration inputs,
the typed results of its earlier sub-tasks, and where its results go.

Results are staged in a private folder and moved into place when the task ends, so a killed run
never leaves half a result; every product file is itself written under a temporary name and
renamed.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TypeVar

from ..campaign.catalogue import TestDefinition
from ..campaign.chamber import ChamberProfile
from ..campaign.config import Campaign
from ..formats.hklimits import HKLimits
from .calproducts import NOMINAL_GAIN_E_PER_ADU, CalibrationInputs
from .dataset import CCDS, DataSet
from .executor import Executor, LocalExecutor
from .family import CCD_KEY, Family, UndeclaredValue
from .flags import FlagBook

__all__ = ["NOMINAL_GAIN_E_PER_ADU", "MissingInput", "TaskContext"]
T = TypeVar("T")
WORK_FOLDER = ".work"  # inside the task's staging folder: products being built


class MissingInput(LookupError):
    """A sub-task needs the result of one that did not run, and that result cannot be made here."""


@dataclass
class TaskContext:
    test: TestDefinition
    session: str
    campaign: Campaign
    chamber: ChamberProfile
    dataset: DataSet
    workdir: Path  # staging folder of this task's results (becomes <results>/<session>/<TEST>)
    log: logging.Logger
    hk_limits: HKLimits
    family: Family
    limits: Any  # the family's frozen limits dataclass, resolved from the campaign
    calibration: CalibrationInputs
    jobs: int = 1  # worker processes when no executor is given
    executor: Executor | None = None  # where map_units runs the work units (executor.py); None: local, `jobs`
    flags: FlagBook = field(default_factory=FlagBook)
    values: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # CCDn -> Q -> name -> value
    test_values: dict[str, Any] = field(default_factory=dict)  # values of the test as a whole
    report: list[str] = field(default_factory=list)  # Markdown sections, in order
    products: list[str] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)
    results: dict[type, Any] = field(default_factory=dict)  # typed results of the sub-tasks so far
    on_subtask: Callable[[str], None] | None = None  # told each sub-task as it starts (run state)
    # told each sub-task's end: (name, status, seconds, error or None), before its error is logged
    on_subtask_end: Callable[[str, str, float | None, str | None], None] | None = None
    outcome: Any = None  # the TaskOutcome being built (base.py), for the report's sub-task list
    enabled: frozenset[str] | None = None  # the sub-tasks this run of the task will run (None: all)
    # figures being drawn in the background (draw_figure): (name, future) in the order asked
    pending_figures: list[tuple[str, Future]] = field(default_factory=list)
    figure_thread: ThreadPoolExecutor | None = None

    # -- values -------------------------------------------------------------------------------

    def set_value(self, ccd: int | None, quadrant: str | None, name: str, value: Any) -> None:
        """Store a declared value (family.py) rounded to its precision; `ccd` None: of the test;
        `quadrant` None: of the CCD (under CCD_KEY beside its quadrants)."""
        spec = self.family.value_specs().get(name)
        if spec is None:
            raise UndeclaredValue(f"value {name!r} is not declared by family {self.family.name} (add a "
                                  "ValueSpec to its FAMILY and document it in docs/results.md)")
        if ccd is None:
            self.test_values[name] = spec.round(value)
        else:
            self.values.setdefault(f"CCD{ccd}", {}).setdefault(quadrant or CCD_KEY, {})[name] = spec.round(value)

    def value(self, ccd: int, quadrant: str, name: str, default: Any = None) -> Any:
        return self.values.get(f"CCD{ccd}", {}).get(quadrant, {}).get(name, default)

    def gain(self, ccd: int, quadrant: str) -> tuple[float, str]:
        """(gain e-/ADU, where it comes from): see calproducts.py."""
        return self.calibration.gain(ccd, quadrant)

    # -- results of earlier sub-tasks, by type ----------------------------------------------------

    def keep(self, result: Any) -> None:
        self.results[type(result)] = result

    def have(self, kind: type[T]) -> T | None:
        return self.results.get(kind)

    def need(self, kind: type[T]) -> T:
        """The result of type `kind` an earlier sub-task returned; made now by `kind.produce(ctx)`
        when that sub-task was switched off (e.g. the frames' measurements), else MissingInput."""
        if kind in self.results:
            return self.results[kind]
        produce = getattr(kind, "produce", None)
        if produce is None:
            raise MissingInput(f"needs {kind.__name__}, which no earlier sub-task produced (switched off?)")
        result = produce(self)
        self.results[kind] = result
        return result

    @property
    def ccds(self) -> tuple[int, ...]:
        return CCDS

    # -- files --------------------------------------------------------------------------------

    @property
    def products_dir(self) -> Path:
        return self.workdir / "products"

    @property
    def figures_dir(self) -> Path:
        return self.workdir / "figs"

    @contextmanager
    def output(self, relative: str) -> Iterator[Path]:
        """A temporary path for a result file (relative to the test's folder), renamed when done."""
        with _atomic(self.workdir / relative) as tmp:
            yield tmp

    @contextmanager
    def product(self, name: str) -> Iterator[Path]:
        """A temporary path to write product `name` to; renamed into products/ when done."""
        with _atomic(self.products_dir / name) as tmp:
            yield tmp
        self.products.append(f"products/{name}")

    def draw_figure(self, name: str, draw: Callable[[], Any]) -> None:
        """figs/<name> drawn and saved in the background while the next sub-task runs (its work
        units, a compression, are what the run waits for): one thread per task, so matplotlib
        draws one figure at a time. `draw()` returns a Figure, or None for nothing to draw.
        finish_figures lists them, in the order asked, once drawn."""
        if self.figure_thread is None:
            self.figure_thread = ThreadPoolExecutor(1, thread_name_prefix="vison-figures")
        self.pending_figures.append((name, self.figure_thread.submit(_draw_and_save, self.figures_dir / name, draw)))

    def finish_figures(self) -> list[tuple[str, BaseException]]:
        """Wait for the figures drawn in the background: each saved one listed in `figures`, the
        ones that failed returned with their error (the caller flags them)."""
        failed = []
        for name, drawing in self.pending_figures:
            try:
                if drawing.result():
                    self.figures.append(f"figs/{name}")
            except Exception as exc:  # noqa: BLE001 - a figure's bug: said by the caller, the numbers stand
                failed.append((name, exc))
        self.pending_figures.clear()
        if self.figure_thread is not None:
            self.figure_thread.shutdown()
            self.figure_thread = None
        return failed

    def staging_path(self, name: str) -> Path:
        """A private path for a product being built (a master streamed band by band); the recorder
        publishes it from there, and the folder is removed when the task ends (base.py)."""
        folder = self.workdir / WORK_FOLDER
        folder.mkdir(parents=True, exist_ok=True)
        return folder / name

    def add_section(self, title: str, body: str) -> None:
        self.report.append(f"## {title}\n\n{body.strip()}\n")

    # -- parallel work ------------------------------------------------------------------------

    def map_units(self, function: Callable[..., Any], calls: Sequence[tuple]) -> list[Any]:
        """`function(*call)` for each call on the run's executor (a local process pool of `jobs`
        workers when none is given, or a Dask cluster); results in call order.

        Units are what balances the workers: a frame, a (CCD, quadrant). `function` is
        module-level; calls carry paths and small numbers, never frames (on a Dask cluster they
        travel over the network, and the paths must mean the same on every worker).
        """
        if self.executor is not None:
            return self.executor.map(function, calls)
        with LocalExecutor(self.jobs) as executor:  # no run around this task: a pool for this call
            return executor.map(function, calls)


def _draw_and_save(path: Path, draw: Callable[[], Any]) -> bool:
    figure = draw()
    if figure is None:
        return False
    figure.tight_layout()
    with _atomic(path) as tmp:
        figure.savefig(tmp)
    return True


@contextmanager
def _atomic(final: Path) -> Iterator[Path]:
    final.parent.mkdir(parents=True, exist_ok=True)
    # keep the suffix: writers (astropy, plotting) pick the format from it
    tmp = final.with_name(f".{final.stem}.part-{os.getpid()}{final.suffix}")
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)

