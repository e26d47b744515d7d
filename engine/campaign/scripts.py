"""The script writer: ELVIS acquisition scripts (.xlsx) of a campaign, with checksums, inventory and scheduler.

Inputs are a TOML file (configs/scripts_template.toml): equipment serials, operator, ELVIS version,
chamber, output folder, optional date and a [write] table of tests. Every input problem is reported
at once with file, line and key. The output folder is written whole or not at all (see write_folder).

Test structures come from the catalogue, durations from the timing model (docs/timing.md).
"""

from __future__ import annotations

import difflib
import hashlib
import io
import os
import re
import shutil
import uuid
import zipfile
from dataclasses import dataclass, field
from datetime import date, datetime
from itertools import accumulate
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from openpyxl import Workbook
from openpyxl.writer.excel import ExcelWriter

from .. import __version__
from ..formats.names import script_date
from ..formats.tomlfile import ConfigError, ConfigProblem, TomlDocument, format_key_path, load_toml
from .catalogue import UnknownTestError, resolve
from .chamber import ChamberError, load_chamber
from .script_params import DIFFERENTIAL_KEYS, SCRIPT_ROWS
from .timing import duration_minutes

# Script layouts we know (formats.md); the version is also part of every script's name.
ELVIS_VERSIONS = ("6.5.X", "7.2.X", "7.5.X")
# Only the full FM campaign has test structures in the catalogue (old vison also had a "Mini" one).
CAMPAIGN_TYPES = ("Full",)
# The template's placeholders: scripts carrying them would make every frame fail its serials check.
PLACEHOLDER_SERIALS = ("FMNN", "14XXX-XX-XX")

_SCRIPT_NAME_RE = re.compile(
    r"^vis_CalCamp_(?P<test>.+)_(?P<date>\d{2}[A-Z][a-z]{2}\d{2})_v(?P<elvis>[^/\\]+)\.xlsx$"
)


def script_filename(test: str, day: date, elvis: str) -> str:
    """`vis_CalCamp_<TEST>_<DDMmmYY>_v<elvis>.xlsx`, as ELVIS and the team expect."""
    return f"vis_CalCamp_{test}_{script_date(day)}_v{elvis}.xlsx"


def parse_script_filename(name: str) -> tuple[str, str, str] | None:
    """(test, DDMmmYY, elvis) of a script file name, or None if it is not one."""
    match = _SCRIPT_NAME_RE.match(name)
    return (match["test"], match["date"], match["elvis"]) if match else None


def checksums_filename(day: date) -> str:
    return f"CHECK_SUMS_{script_date(day)}.txt"


def inventory_filename(day: date) -> str:
    return f"TESTS_INVENTORY_{script_date(day)}.txt"


def scheduler_filename(day: date) -> str:
    return f"TESTS_SCHEDULER_{script_date(day)}.xlsx"


# ---------------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ScriptInputs:
    """What to write: the campaign's differential values, where, when, and which test instances."""

    equipment: Mapping[str, str]  # operator, sn_roe, sn_rpsu, sn_ccd1..3 (DIFFERENTIAL_KEYS)
    elvis: str
    chamber: str
    output: Path  # absolute
    tests: tuple[str, ...]  # instance names, in writing order
    day: date = field(default_factory=date.today)
    campaign_type: str = "Full"
    source: Path | None = None  # the inputs file, never overwritten by the output


_TOP_KEYS = ("elvis", "chamber", "campaign_type", "output", "date", "equipment", "write")
_REQUIRED_SERIALS = ("sn_roe", "sn_rpsu", "sn_ccd1", "sn_ccd2", "sn_ccd3")
_MISSING = object()


class InputChecker:
    """Collects every problem of an inputs TOML with its line, to report them all at once."""

    def __init__(self, doc: TomlDocument):
        self.doc = doc
        self.problems: list[ConfigProblem] = []

    def add(self, key_path: tuple, message: str) -> None:
        self.problems.append(ConfigProblem(self.doc.path, self.doc.nearest_line(key_path),
                                           format_key_path(key_path), message))

    def table(self, value: Any, key_path: tuple, known: tuple[str, ...] | None, example: str) -> dict:
        """`value` as a table (empty if it is not one), reporting keys outside `known`."""
        if not isinstance(value, dict):
            self.add(key_path, f"expected a table, e.g. {example}; got {_describe(value)}")
            return {}
        for key in value if known is not None else ():
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                self.add(key_path + (key,), f"unknown key {key!r}{hint} (expected one of: {', '.join(known)})")
        return value

    def text(self, table: dict, key_path: tuple, key: str, example: str, required: bool = True) -> str | None:
        value = table.get(key, _MISSING)
        if value is _MISSING:
            if required:
                where = f"in [{format_key_path(key_path)}]" if key_path else "at the top of the file"
                self.add(key_path + (key,), f"missing required key {key!r} {where}; e.g. {example}")
            return None
        if not isinstance(value, str) or not value.strip():
            self.add(key_path + (key,), f"expected a non-empty string, e.g. {example}; got {_describe(value)}")
            return None
        return value.strip()

    def folder(self, table: dict, key: str, example: str) -> Path | None:
        """A folder named relative to the inputs file's folder (~ expanded)."""
        text = self.text(table, (), key, example)
        if text is None:
            return None
        path = Path(os.path.expanduser(text))
        base = Path(os.path.abspath(self.doc.path)).parent
        return Path(os.path.abspath(path if path.is_absolute() else base / path))

    def raise_if_any(self) -> None:
        if self.problems:
            raise ConfigError(sorted(self.problems, key=lambda p: (p.line is None, p.line or 0)))


def load_script_inputs(path: str | Path) -> ScriptInputs:
    """Read and check a scripts-inputs TOML; raises ConfigError listing every problem."""
    doc = load_toml(path)
    check = InputChecker(doc)
    data = check.table(doc.data, (), _TOP_KEYS, "elvis = \"7.5.X\"")

    elvis = check.text(data, (), "elvis", 'elvis = "7.5.X"')
    if elvis is not None and (problem := elvis_problem(elvis)):
        check.add(("elvis",), problem)
    chamber = check.text(data, (), "chamber", 'chamber = "B_NOSTROMO"')
    if chamber is not None and (problem := chamber_problem(chamber)):
        check.add(("chamber",), problem)
    campaign_type = check.text(data, (), "campaign_type", 'campaign_type = "Full"', required=False) or "Full"
    if campaign_type not in CAMPAIGN_TYPES:
        check.add(("campaign_type",), f"campaign type {campaign_type!r} has no tests in the catalogue; "
                                      f"expected one of: {', '.join(CAMPAIGN_TYPES)}")
    output = check.folder(data, "output", 'output = "Scripts_NOSTROMO_APR19_W18"')
    day = _script_day(check, data.get("date", _MISSING))
    equipment = _equipment(check, data.get("equipment", _MISSING))
    tests = _tests_to_write(check, data.get("write", _MISSING))

    check.raise_if_any()
    assert elvis and chamber and output
    return ScriptInputs(equipment=equipment, elvis=elvis, chamber=chamber, output=output, tests=tests,
                        day=day, campaign_type=campaign_type, source=Path(os.path.abspath(doc.path)))


# The checks of the inputs, shared by the TOML reader here and the app's form.

def elvis_problem(elvis: str) -> str | None:
    if elvis.strip() in ELVIS_VERSIONS:
        return None
    return f"unknown ELVIS version {elvis!r}; scripts can be written for {', '.join(ELVIS_VERSIONS)}"


def chamber_problem(chamber: str | None) -> str | None:
    try:
        load_chamber(chamber or None)  # its exposure times and focus go into the scripts
    except ChamberError as exc:
        return str(exc)
    return None


def serial_problem(serial: str) -> str | None:
    if not serial.strip():
        return "serial required (every frame carries it)"
    if serial.strip() in PLACEHOLDER_SERIALS:
        return f"{serial.strip()!r} is the template's placeholder: give the real serial"
    return None


def _script_day(check: InputChecker, value: Any) -> date:
    if value is _MISSING:
        return date.today()
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        for form in ("%Y-%m-%d", "%d%b%y"):
            try:
                return datetime.strptime(value.strip(), form).date()
            except ValueError:
                pass
    check.add(("date",), f"expected a date, e.g. date = 2019-04-01 (or \"01Apr19\"); got {_describe(value)}")
    return date.today()


def _equipment(check: InputChecker, value: Any) -> dict[str, str]:
    example = '[equipment] with sn_roe = "FM15", sn_ccd1 = "14888-88-81", ...'
    if value is _MISSING:
        check.add(("equipment",), f"missing required table [equipment]; e.g. {example}")
        return {}
    table = check.table(value, ("equipment",), DIFFERENTIAL_KEYS, example)
    equipment = {"operator": check.text(table, ("equipment",), "operator", 'operator = "unk"', required=False) or "unk"}
    for key in _REQUIRED_SERIALS:
        serial = check.text(table, ("equipment",), key, f'{key} = "FM15"' if key in ("sn_roe", "sn_rpsu")
                            else f'{key} = "14888-88-81"')
        if serial is not None and (problem := serial_problem(serial)):
            check.add(("equipment", key), problem)
        if serial is not None:
            equipment[key] = serial
    return equipment


def _tests_to_write(check: InputChecker, value: Any) -> tuple[str, ...]:
    """Instances selected by [write], in the order of its keys; an instance key overrides its handle's."""
    example = "[write] with BIAS01 = true, FOCUS00 = true"
    if value is _MISSING:
        check.add(("write",), f"missing required table [write]; e.g. {example}")
        return ()
    table = check.table(value, ("write",), None, example)
    decision: dict[str, tuple[bool, bool]] = {}  # instance -> (written, set by its own name)
    order: list[str] = []
    for key, flag in table.items():
        key_path = ("write", key)
        if not isinstance(flag, bool):
            check.add(key_path, f"expected true or false (the old JSON's 1/0); got {_describe(flag)}")
            continue
        try:
            instances = resolve(key)
        except UnknownTestError as exc:
            check.add(key_path, str(exc))
            continue
        surrogates = [t for t in instances if not t.acquires]
        if flag and surrogates:
            uses = ", ".join(sorted({t.surrogate or "" for t in surrogates}))
            check.add(key_path, f"{key} has no script of its own: it analyses the frames of {uses}; write that instead")
            continue
        specific = len(instances) == 1 and instances[0].name == key.strip().upper()
        for test in instances:
            if test.name in decision and decision[test.name][1] and not specific:
                continue  # the instance's own key wins over its handle's
            decision[test.name] = (flag, specific)
            if flag and test.name not in order:
                order.append(test.name)
    chosen = tuple(name for name in order if decision[name][0])
    if not chosen and table:
        check.add(("write",), "no test is set to true: nothing to write")
    elif not table:
        check.add(("write",), f"[write] is empty; e.g. {example}")
    return chosen


def _describe(value: Any) -> str:
    if value is _MISSING:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    shown = repr(value)
    return shown if len(shown) <= 40 else shown[:37] + "..."


# ---------------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WrittenScript:
    test: str
    filename: str
    md5: str
    frames: tuple[int, ...]  # per column
    minutes: float

    @property
    def columns(self) -> int:
        return len(self.frames)


@dataclass(frozen=True)
class ScriptsWritten:
    """What write_scripts put in the output folder."""

    folder: Path
    day: date
    scripts: tuple[WrittenScript, ...]
    checksums: str  # file names inside `folder`
    inventory: str
    scheduler: str
    inventory_text: str

    @property
    def total_frames(self) -> int:
        return sum(sum(s.frames) for s in self.scripts)

    @property
    def total_minutes(self) -> float:
        return sum(s.minutes for s in self.scripts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "folder": str(self.folder), "date": script_date(self.day),
            "checksums": self.checksums, "inventory": self.inventory, "scheduler": self.scheduler,
            "scripts": [{"test": s.test, "file": s.filename, "md5": s.md5, "columns": s.columns,
                         "frames": list(s.frames), "total_frames": sum(s.frames), "minutes": round(s.minutes, 2)}
                        for s in self.scripts],
            "total_frames": self.total_frames, "total_minutes": round(self.total_minutes, 2),
        }


def write_scripts(inputs: ScriptInputs, *, force: bool = False, written_at: datetime | None = None) -> ScriptsWritten:
    """Write the scripts, CHECK_SUMS, TESTS_INVENTORY and TESTS_SCHEDULER into inputs.output.

    Refuses an existing non-empty output folder unless `force` (which replaces it whole).
    """
    chamber = load_chamber(inputs.chamber)
    differential = {key: inputs.equipment.get(key, "") for key in DIFFERENTIAL_KEYS}
    stamp = datetime(inputs.day.year, inputs.day.month, inputs.day.day)
    tests = list({t.name: t for name in inputs.tests for t in resolve(name)}.values())
    surrogates = [t.name for t in tests if not t.acquires]
    if surrogates:
        raise ValueError(f"no script to write for {', '.join(surrogates)}: they analyse other tests' frames")
    rendered: list[tuple[WrittenScript, bytes]] = []
    for test in tests:
        content = xlsx_bytes(script_workbook(test.script_columns(chamber, differential)), stamp)
        rendered.append((WrittenScript(test=test.name, filename=script_filename(test.name, inputs.day, inputs.elvis),
                                       md5=hashlib.md5(content).hexdigest(),
                                       frames=tuple(test.frames_per_column(chamber)),
                                       minutes=duration_minutes(test, chamber)), content))
    scripts = tuple(script for script, _ in rendered)
    names = (checksums_filename(inputs.day), inventory_filename(inputs.day), scheduler_filename(inputs.day))
    inventory = inventory_text(scripts, names[0], written_at or datetime.now())

    def fill(folder: Path) -> None:
        for script, content in rendered:
            (folder / script.filename).write_bytes(content)
        (folder / names[0]).write_text("".join(f"{s.filename:<60}\t{s.md5}\n" for s in scripts))
        (folder / names[1]).write_text(inventory)
        (folder / names[2]).write_bytes(xlsx_bytes(scheduler_workbook(scripts), stamp))

    protect = [inputs.source] if inputs.source is not None else []
    folder = write_folder(inputs.output, fill, force=force, protect=protect)
    return ScriptsWritten(folder=folder, day=inputs.day, scripts=scripts, checksums=names[0],
                          inventory=names[1], scheduler=names[2], inventory_text=inventory)


def script_workbook(columns: list[Mapping[str, Any]]) -> Workbook:
    """One ELVIS script: parameter names in column A, a column per configuration, then `End`.

    `frames` is cumulative across columns, as ELVIS reads it.
    """
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "Sheet1"
    for row, parameter in enumerate(SCRIPT_ROWS, start=1):
        sheet.cell(row=row, column=1, value=parameter)
    cumulative = list(accumulate(int(c["frames"]) for c in columns))
    for index, values in enumerate(columns, start=2):
        for row, parameter in enumerate(SCRIPT_ROWS, start=1):
            value = cumulative[index - 2] if parameter == "frames" else values[parameter]
            sheet.cell(row=row, column=index, value=None if value == "" else value)
    sheet.cell(row=1, column=len(columns) + 2, value="End")
    return workbook


def scheduler_workbook(scripts: Iterable[WrittenScript]) -> Workbook:
    """A row per test (columns, frames, minutes), to paste into the block's scheduler sheet."""
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "Sheet1"
    sheet.append(["test", "columns", "frames", "minutes"])
    scripts = list(scripts)
    for script in scripts:
        sheet.append([script.test, script.columns, sum(script.frames), round(script.minutes, 2)])
    sheet.append(["Total", sum(s.columns for s in scripts), sum(sum(s.frames) for s in scripts),
                  round(sum(s.minutes for s in scripts), 2)])
    return workbook


def inventory_text(scripts: Iterable[WrittenScript], checksums_name: str, written_at: datetime) -> str:
    scripts = list(scripts)
    lines = [
        f"Scripts written on {script_date(written_at)} {written_at:%H:%M:%S}",
        f"checksumf: {checksums_name}",
        f"vison version: {__version__}",
    ]
    lines += [f"{s.test}: {s.columns} [{s.minutes:.2f} min] cols: {list(s.frames)}" for s in scripts]
    lines.append(f"{sum(sum(s.frames) for s in scripts)} Frames Total")
    lines.append(f"{sum(s.minutes for s in scripts):.2f} Minutes Total")
    return "\n".join(lines) + "\n"


def xlsx_bytes(workbook: Workbook, stamp: datetime) -> bytes:
    """The workbook's bytes, identical for identical content: a checksum then identifies a script.

    openpyxl stamps the save time into the document properties and each zip member; both are
    pinned to `stamp` (the script date) here.
    """
    workbook.properties.created = stamp
    workbook.properties.modified = stamp
    raw = io.BytesIO()
    # ExcelWriter, not Workbook.save: save() overwrites `modified` with the current time.
    ExcelWriter(workbook, zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED)).save()
    stable = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(raw.getvalue())) as source, \
            zipfile.ZipFile(stable, "w", zipfile.ZIP_DEFLATED) as target:
        for member in source.infolist():
            pinned = zipfile.ZipInfo(member.filename, date_time=stamp.timetuple()[:6])
            pinned.compress_type = zipfile.ZIP_DEFLATED
            pinned.create_system = 0  # same bytes whichever OS writes them
            target.writestr(pinned, source.read(member))
    return stable.getvalue()


# ---------------------------------------------------------------------------------------------------
# Output folders, written whole or not at all (shared with the session builder)
# ---------------------------------------------------------------------------------------------------
class OutputFolderError(Exception):
    """The output folder cannot be (re)written: it exists and is not empty, or holds the inputs."""


def write_folder(target: Path, fill: Callable[[Path], None], *, force: bool = False,
                 protect: Iterable[Path] = ()) -> Path:
    """Fill a fresh sibling folder with `fill`, then rename it to `target`; returns the folder.

    A failure leaves `target` as it was. An existing non-empty `target` is refused unless `force`,
    and then replaced whole. `protect` lists paths (the inputs) the target may not hold.
    """
    target = Path(os.path.realpath(target))  # rename the real folder, never a symlink to it
    for kept in protect:
        kept = Path(os.path.realpath(kept))
        if kept == target or target in kept.parents:
            raise OutputFolderError(f"output folder {target} would replace {kept}: choose a folder of its own")
    if target.exists() and not target.is_dir():
        raise OutputFolderError(f"output {target} exists and is not a folder")
    if target.is_dir() and any(target.iterdir()) and not force:
        raise OutputFolderError(f"output folder {target} exists and is not empty; "
                                "rewrite with force (--force) to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.writing-{uuid.uuid4().hex[:8]}")
    staging.mkdir()  # plain mkdir, not mkdtemp: keep the umask's permissions for the team
    try:
        fill(staging)
        if target.exists():
            previous = target.with_name(f".{target.name}.replaced-{uuid.uuid4().hex[:8]}")
            os.rename(target, previous)
            try:
                os.rename(staging, target)
            except BaseException:
                os.rename(previous, target)
                raise
            shutil.rmtree(previous, ignore_errors=True)
        else:
            os.rename(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target
