"""What a sub-task hands back besides its data: values, tables, staged files, plots, report sections.

A sub-task returns a small dataclass deriving from `SubTaskResult`: its own typed fields (what
later sub-tasks take as inputs, by type) and `outputs`, which the one recorder (recorder.py)
turns into result.json values, CSV and FITS products, PNG figures and report sections. Sub-tasks
write nothing into the results folder themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence


@dataclass(frozen=True)
class Measured:
    """A value for result.json: of a quadrant (`ccd`, `quadrant` given) or of the test."""

    name: str
    value: Any
    ccd: int | None = None
    quadrant: str | None = None


@dataclass(frozen=True)
class CsvTable:
    """A CSV product: `products/<name>`; cells are written as given (format them before)."""

    name: str
    header: Sequence[str]
    rows: Sequence[Sequence[Any]]


@dataclass(frozen=True)
class StagedFile:
    """A product already written (e.g. a master FITS streamed band by band) under a temporary
    path; the recorder moves it to `products/<name>`."""

    name: str
    path: Path


@dataclass(frozen=True)
class Plot:
    """A figure `figs/<TEST>_<name>.png`; `draw()` returns a matplotlib Figure (figures.py), called
    only when the recorder saves it, so nothing imports matplotlib before a plot is made."""

    name: str
    draw: Callable[[], Any]


@dataclass(frozen=True)
class Section:
    title: str
    body: str


@dataclass
class Outputs:
    values: list[Measured] = field(default_factory=list)
    tables: list[CsvTable] = field(default_factory=list)
    files: list[StagedFile] = field(default_factory=list)
    plots: list[Plot] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)

    def value(self, name: str, value: Any, ccd: int | None = None, quadrant: str | None = None) -> None:
        self.values.append(Measured(name, value, ccd, quadrant))


@dataclass
class SubTaskResult:
    """Base of every sub-task's result. Subclasses add typed fields for later sub-tasks."""

    outputs: Outputs = field(default_factory=Outputs, kw_only=True)
