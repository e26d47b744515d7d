"""What the Scripts & sessions screen edits, without Textual: the test checklist, the script
writer's fields, and the session lists. The engine does the writing (scripts.py, sessions.py).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from pathlib import Path

from engine.campaign.catalogue import CATALOGUE, HANDLES, TestDefinition
from engine.campaign.chamber import available_chambers, load_chamber
from engine.campaign.config import Campaign
from engine.campaign.scripts import ScriptInputs, chamber_problem, elvis_problem, serial_problem
from engine.campaign.sessions import SessionInputs
from engine.campaign.timing import duration_minutes


# ---------------------------------------------------------------------------------------------------
# The checklist
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChecklistRow:
    """A line of the checklist: a generic handle grouping several instances, or one instance."""

    key: str  # row key: the instance name, or "<HANDLE>/*" for a group
    label: str
    instances: tuple[str, ...]  # what toggling this row selects
    purpose: str
    group: bool = False
    in_group: bool = False  # an instance listed under its handle's row
    surrogate: str | None = None  # set when the test has no script of its own

    @property
    def writable(self) -> bool:
        return self.surrogate is None


def checklist_rows() -> list[ChecklistRow]:
    """Handles in catalogue order; a handle with several instances heads its instances."""
    rows = []
    for handle, names in HANDLES.items():
        tests = [CATALOGUE[n] for n in names]
        if len(tests) > 1:
            rows.append(ChecklistRow(f"{handle}/*", handle, tuple(names), tests[0].purpose.split(" at ")[0],
                                     group=True, surrogate=_surrogate_of(tests)))
        rows += [ChecklistRow(t.name, t.name, (t.name,), t.purpose, in_group=len(tests) > 1, surrogate=t.surrogate)
                 for t in tests]
    return rows


def _surrogate_of(tests: list[TestDefinition]) -> str | None:
    surrogates = [t.surrogate for t in tests if t.surrogate]
    return ", ".join(surrogates) if len(surrogates) == len(tests) else None


@dataclass(frozen=True)
class TestFigures:
    __test__ = False

    columns: int
    frames: int
    minutes: float


def chamber_figures(chamber: str | None) -> dict[str, TestFigures]:
    """Columns, frames and acquisition minutes of every instance with this chamber's profile.

    Surrogates acquire nothing (they analyse another test's frames), so they count zero.
    Raises ChamberError for an unknown or broken profile.
    """
    profile = load_chamber(chamber or None)
    figures = {}
    for test in CATALOGUE.values():
        if not test.acquires:
            figures[test.name] = TestFigures(0, 0, 0.0)
            continue
        frames = test.frames_per_column(profile)
        figures[test.name] = TestFigures(len(frames), sum(frames), duration_minutes(test, profile))
    return figures


def row_figures(row: ChecklistRow, figures: dict[str, TestFigures]) -> TestFigures:
    parts = [figures[name] for name in row.instances if name in figures]
    return TestFigures(sum(p.columns for p in parts), sum(p.frames for p in parts), sum(p.minutes for p in parts))


@dataclass(frozen=True)
class Totals:
    tests: int
    frames: int
    minutes: float

    def describe(self) -> str:
        hours = self.minutes / 60.0
        return f"{self.tests} tests · {self.frames} frames · {self.minutes:.1f} min ({hours:.1f} h)"


def selection_totals(selected: set[str], figures: dict[str, TestFigures]) -> Totals:
    chosen = [figures[name] for name in selected if name in figures]
    return Totals(len(chosen), sum(f.frames for f in chosen), sum(f.minutes for f in chosen))


def campaign_tests(campaign: Campaign | None) -> list[str]:
    """The acquiring test instances named in the campaign's sessions, in first-mention order."""
    if campaign is None:
        return []
    names = [t.name for session in campaign.sessions.values() for t in session.tests]
    return [n for n in dict.fromkeys(names) if n in CATALOGUE and CATALOGUE[n].acquires]


# ---------------------------------------------------------------------------------------------------
# The script writer's fields
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ScriptFields:
    """The form's values, as typed (strings)."""

    roe: str = ""
    rpsu: str = ""
    ccd1: str = ""
    ccd2: str = ""
    ccd3: str = ""
    operator: str = "unk"
    elvis: str = "7.5.X"
    chamber: str = "default"
    output: str = "scripts"
    sessions_output: str = "sessions"
    date: str = ""  # YYYY-MM-DD; empty = today


FIELD_LABELS = {
    "roe": "ROE", "rpsu": "RPSU", "ccd1": "CCD1", "ccd2": "CCD2", "ccd3": "CCD3", "operator": "Operator",
    "elvis": "ELVIS", "chamber": "Chamber", "output": "Folder", "sessions_output": "Sessions folder",
    "date": "Date",
}
SERIAL_FIELDS = ("roe", "rpsu", "ccd1", "ccd2", "ccd3")


def fields_from_campaign(campaign: Campaign | None) -> ScriptFields:
    """The fields a campaign implies: its serials, operator, ELVIS version, chamber.

    Folders stay relative ("scripts", "sessions"): the screen takes them from the campaign's folder.
    """
    if campaign is None:
        return ScriptFields()
    hardware = campaign.hardware
    return ScriptFields(
        roe=hardware.roe or "", rpsu=hardware.rpsu or "", ccd1=hardware.ccd1 or "", ccd2=hardware.ccd2 or "",
        ccd3=hardware.ccd3 or "", operator=campaign.info.operator or "unk", elvis=campaign.info.elvis,
        chamber=campaign.info.chamber or "default",
    )


@dataclass(frozen=True)
class FieldProblem:
    field: str  # a ScriptFields attribute ("" = the selection)
    message: str

    def __str__(self) -> str:
        label = FIELD_LABELS.get(self.field, "tests")
        return f"{label}: {self.message}"


def resolve_folder(text: str, base: Path) -> Path:
    path = Path(os.path.expanduser(text.strip()))
    return Path(os.path.abspath(path if path.is_absolute() else base / path))


def script_inputs(fields: ScriptFields, tests: list[str], base: Path) -> tuple[ScriptInputs | None, list[FieldProblem]]:
    """ScriptInputs for the engine's writer, or every problem of the fields at once.

    Checks what `engine.campaign.scripts.load_script_inputs` checks of a TOML file.
    """
    problems = [FieldProblem(name, problem) for name in SERIAL_FIELDS
                if (problem := serial_problem(getattr(fields, name)))]
    if problem := elvis_problem(fields.elvis):
        problems.append(FieldProblem("elvis", problem))
    if problem := chamber_problem(fields.chamber.strip()):
        problems.append(FieldProblem("chamber", problem))
    if not fields.output.strip():
        problems.append(FieldProblem("output", "give the folder to write the scripts into"))
    day = date.today()
    if fields.date.strip():
        try:
            day = datetime.strptime(fields.date.strip(), "%Y-%m-%d").date()
        except ValueError:
            problems.append(FieldProblem("date", f"expected YYYY-MM-DD (or empty for today); got {fields.date!r}"))
    writable = [t for t in tests if t in CATALOGUE and CATALOGUE[t].acquires]
    if not writable:
        problems.append(FieldProblem("", "no test selected: nothing to write"))
    if problems:
        return None, problems
    equipment = {"operator": fields.operator.strip() or "unk",
                 **{f"sn_{name}": getattr(fields, name).strip() for name in SERIAL_FIELDS}}
    return ScriptInputs(equipment=equipment, elvis=fields.elvis.strip(), chamber=fields.chamber.strip(),
                        output=resolve_folder(fields.output, base), tests=tuple(writable), day=day), []


def folder_in_use(folder: Path) -> int:
    """How many entries an existing folder holds (0: absent or empty, writing needs no force)."""
    try:
        return len(os.listdir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return 0


# ---------------------------------------------------------------------------------------------------
# Sessions
# ---------------------------------------------------------------------------------------------------
_SESSION_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class SessionPlan:
    """Session name -> ordered test instances, as the session builder takes them."""

    sessions: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def from_campaign(cls, campaign: Campaign | None) -> "SessionPlan":
        if campaign is None:
            return cls()
        return cls({name: [t.name for t in s.tests] for name, s in campaign.sessions.items()})

    def names(self) -> list[str]:
        return list(self.sessions)

    def name_problem(self, name: str, renaming: str | None = None) -> str | None:
        """Why a session name cannot be used, or None (it names a folder: D00, D11, ...)."""
        if not _SESSION_NAME_RE.match(name):
            return f"session name {name!r} must be usable as a folder name: letters, digits, _ . - (e.g. D11)"
        if name in self.sessions and name != renaming:
            return f"there is already a session {name}"
        return None

    def add(self, name: str) -> None:
        problem = self.name_problem(name)
        if problem:
            raise ValueError(problem)
        self.sessions[name] = []

    def rename(self, old: str, new: str) -> None:
        problem = self.name_problem(new, renaming=old)
        if problem:
            raise ValueError(problem)
        self.sessions = {new if name == old else name: tests for name, tests in self.sessions.items()}

    def remove(self, name: str) -> None:
        del self.sessions[name]

    def add_test(self, session: str, test: str, index: int | None = None) -> int:
        """Insert a test (after `index`, else at the end); returns its position."""
        tests = self.sessions[session]
        if test in tests:
            raise ValueError(f"{test} is already in session {session} (a test runs once per session)")
        position = len(tests) if index is None else min(index + 1, len(tests))
        tests.insert(position, test)
        return position

    def remove_test(self, session: str, index: int) -> str:
        return self.sessions[session].pop(index)

    def move_test(self, session: str, index: int, delta: int) -> int:
        """Move a test up (-1) or down (+1); returns its new position."""
        tests = self.sessions[session]
        target = max(0, min(len(tests) - 1, index + delta))
        tests.insert(target, tests.pop(index))
        return target

    def inputs(self, scripts_folder: Path, output: Path) -> SessionInputs:
        non_empty = {name: tuple(tests) for name, tests in self.sessions.items() if tests}
        return SessionInputs(scripts_folder=scripts_folder, output=output, sessions=non_empty)

    def copy(self) -> "SessionPlan":
        return replace(self, sessions={name: list(tests) for name, tests in self.sessions.items()})


def chamber_choices() -> list[str]:
    return available_chambers()
