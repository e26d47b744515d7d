"""What a task works with: its test, data set, campaign, limits, and where its results go.

Results are staged in a private folder and moved into place when the task ends, so a killed run
never leaves half a result; every product file is itself written under a temporary name and
renamed.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from ..campaign.catalogue import TestDefinition
from ..campaign.chamber import ChamberProfile
from ..campaign.config import Campaign
from ..formats.hklimits import HKLimits
from .dataset import CCDS, DataSet
from .flags import FlagBook

NOMINAL_GAIN_E_PER_ADU = 3.3  # CCD273 gains are 3.1-3.5 e-/ADU; used until a PTC gain is configured


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
    jobs: int = 1
    flags: FlagBook = field(default_factory=FlagBook)
    values: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # CCDn -> Q -> name -> value
    test_values: dict[str, Any] = field(default_factory=dict)  # values of the test as a whole
    report: list[str] = field(default_factory=list)  # Markdown sections, in order
    products: list[str] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)
    scratch: dict[str, Any] = field(default_factory=dict)  # passed from one sub-task to the next
    on_subtask: Callable[[str], None] | None = None  # told each sub-task as it starts (run state)

    # -- values -------------------------------------------------------------------------------

    def set_value(self, ccd: int, quadrant: str, name: str, value: Any) -> None:
        self.values.setdefault(f"CCD{ccd}", {}).setdefault(quadrant, {})[name] = _plain(value)

    def value(self, ccd: int, quadrant: str, name: str, default: Any = None) -> Any:
        return self.values.get(f"CCD{ccd}", {}).get(quadrant, {}).get(name, default)

    def limit(self, name: str) -> Any:
        return self.campaign.limit(name)

    def gain(self, ccd: int, quadrant: str) -> tuple[float, str]:
        """(gain e-/ADU, where it comes from): the campaign's calibration products when they hold
        a gain for this quadrant (a `gains` table CCDn -> quadrant -> e-/ADU), else the nominal."""
        gains = getattr(self.campaign.calproducts, "gains", None) or {}
        value = gains.get(f"CCD{ccd}", {}).get(quadrant) if isinstance(gains, dict) else None
        if value:
            return float(value), "campaign [calproducts] gain"
        return (NOMINAL_GAIN_E_PER_ADU,
                f"nominal {NOMINAL_GAIN_E_PER_ADU} e-/ADU (no gain in the campaign's [calproducts])")

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

    @contextmanager
    def figure(self, name: str) -> Iterator[Path]:
        with _atomic(self.figures_dir / name) as tmp:
            yield tmp
        self.figures.append(f"figs/{name}")

    def add_section(self, title: str, body: str) -> None:
        self.report.append(f"## {title}\n\n{body.strip()}\n")

    # -- parallel work ------------------------------------------------------------------------

    def map_units(self, function: Callable[..., Any], calls: Sequence[tuple]) -> list[Any]:
        """`function(*call)` for each call, in worker processes when jobs > 1; results in call order.

        Units are what balances the workers: a frame, a (CCD, quadrant). `function` is
        module-level; calls carry paths and small numbers, never frames.
        """
        if self.jobs <= 1 or len(calls) <= 1:
            return [function(*call) for call in calls]
        with ProcessPoolExecutor(max_workers=min(self.jobs, len(calls))) as pool:
            futures = [pool.submit(function, *call) for call in calls]
            return [future.result() for future in futures]


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


def _plain(value: Any) -> Any:
    """JSON-ready: numpy scalars become Python numbers; NaN stays a float."""
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value
