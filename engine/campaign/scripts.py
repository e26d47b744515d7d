"""The script writer: ELVIS acquisition scripts (.xlsx) of a campaign, with checksums, inventory and scheduler.

Inputs are a TOML file (configs/scripts_template.toml): equipment serials, operator, ELVIS version,
chamber, output folder, optional date and a [write] table of tests. Every input problem is reported
at once with file, line and key. The output folder is written whole or not at all (see write_folder).

Test structures come from the catalogue, durations from the timing model (docs/timing.md).
"""

from __future__ import annotations

import hashlib
import io
import json
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
from ..formats.tomlfile import MISSING, TomlChecker, load_toml
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


def load_script_inputs(path: str | Path) -> ScriptInputs:
    """Read and check a scripts-inputs TOML; raises ConfigError listing every problem."""
    doc = load_toml(path)
    check = TomlChecker(doc)
    data = check.table(doc.data, (), _TOP_KEYS, "elvis = \"7.5.X\"")

    elvis = check.string(data, (), "elvis", required=True, example='elvis = "7.5.X"')
    if elvis is not None and (problem := elvis_problem(elvis)):
        check.problem(("elvis",), problem)
    chamber = check.string(data, (), "chamber", required=True, example='chamber = "B_NOSTROMO"')
    if chamber is not None and (problem := chamber_problem(chamber)):
        check.problem(("chamber",), problem)
    campaign_type = check.string(data, (), "campaign_type", example='campaign_type = "Full"') or "Full"
    if campaign_type not in CAMPAIGN_TYPES:
        check.problem(("campaign_type",), f"campaign type {campaign_type!r} has no tests in the catalogue; "
                                          f"expected one of: {', '.join(CAMPAIGN_TYPES)}")
    output = check.path(data, (), "output", required=True, example='output = "Scripts_NOSTROMO_APR19_W18"')
    day = _script_day(check, data.get("date", MISSING))
    equipment = _equipment(check, data.get("equipment", MISSING))
    tests = _tests_to_write(check, data.get("write", MISSING))

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


def _script_day(check: TomlChecker, value: Any) -> date:
    if value is MISSING:
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
    check.wrong_type(("date",), value, 'a date, e.g. date = 2019-04-01 (or "01Apr19")')
    return date.today()


def _equipment(check: TomlChecker, value: Any) -> dict[str, str]:
    example = '[equipment] with sn_roe = "FM15", sn_ccd1 = "14888-88-81", ...'
    if value is MISSING:
        check.problem(("equipment",), f"missing required table [equipment]; e.g. {example}")
        return {}
    table = check.table(value, ("equipment",), DIFFERENTIAL_KEYS, example)
    equipment = {"operator": check.string(table, ("equipment",), "operator", example='operator = "unk"') or "unk"}
    for key in _REQUIRED_SERIALS:
        serial = check.string(table, ("equipment",), key, required=True,
                              example=f'{key} = "FM15"' if key in ("sn_roe", "sn_rpsu") else f'{key} = "14888-88-81"')
        if serial is not None and (problem := serial_problem(serial)):
            check.problem(("equipment", key), problem)
        if serial is not None:
            equipment[key] = serial
    return equipment


def _tests_to_write(check: TomlChecker, value: Any) -> tuple[str, ...]:
    """Instances selected by [write], in the order of its keys; an instance key overrides its handle's."""
    example = "[write] with BIAS01 = true, FOCUS00 = true"
    if value is MISSING:
        check.problem(("write",), f"missing required table [write]; e.g. {example}")
        return ()
    table = check.table(value, ("write",), None, example)
    decision: dict[str, tuple[bool, bool]] = {}  # instance -> (written, set by its own name)
    order: list[str] = []
    for key, flag in table.items():
        key_path = ("write", key)
        if not isinstance(flag, bool):
            check.wrong_type(key_path, flag, "true or false (the old JSON's 1/0)")
            continue
        try:
            instances = resolve(key)
        except UnknownTestError as exc:
            check.problem(key_path, str(exc))
            continue
        surrogates = [t for t in instances if not t.acquires]
        if flag and surrogates:
            uses = ", ".join(sorted({t.surrogate or "" for t in surrogates}))
            check.problem(key_path, f"{key} has no script of its own: it analyses the frames of {uses}; write that instead")
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
        check.problem(("write",), "no test is set to true: nothing to write")
    elif not table:
        check.problem(("write",), f"[write] is empty; e.g. {example}")
    return chosen


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

    Refuses an existing non-empty output folder unless `force`, which replaces a folder this
    command wrote and nothing else (see write_folder).
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
    folder = write_folder(inputs.output, fill, force=force, protect=protect, command="vison-engine scripts")
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
    """The output folder cannot be (re)written: it exists and is not empty, holds the inputs, is a
    folder vison-engine did not write, or is one it must never replace (/, the home folder)."""


# Written last into every output folder: what we wrote (file -> sha256). `--force` replaces a
# folder only when this says we wrote everything it holds, unchanged.
OUTPUT_MARKER = ".vison-output.json"


def write_folder(target: Path, fill: Callable[[Path], None], *, force: bool = False,
                 protect: Iterable[Path] = (), command: str = "vison-engine") -> Path:
    """Fill a fresh sibling folder with `fill`, then rename it to `target`; returns the folder.

    A failure leaves `target` as it was. An existing non-empty `target` is refused unless `force`,
    and even then unless `command` wrote it (OUTPUT_MARKER) and it holds nothing else. `protect`
    lists paths (the inputs) the target may not hold; /, the home folder and what holds it are
    always refused.
    """
    target = Path(os.path.realpath(target))  # rename the real folder, never a symlink to it
    refusal = output_folder_refusal(target, protect)
    if refusal:
        raise OutputFolderError(refusal)
    if target.exists() and not target.is_dir():
        raise OutputFolderError(f"output {target} exists and is not a folder")
    if target.is_dir() and any(target.iterdir()):
        if not force:
            raise OutputFolderError(f"output folder {target} exists and is not empty; "
                                    "rewrite with force (--force) to replace it")
        refusal = replace_refusal(target, command)
        if refusal:
            raise OutputFolderError(refusal)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.writing-{uuid.uuid4().hex[:8]}")
    staging.mkdir()  # plain mkdir, not mkdtemp: keep the umask's permissions for the team
    try:
        fill(staging)
        marker = {"written_by": command, "vison_version": __version__, "files": folder_digests(staging)}
        (staging / OUTPUT_MARKER).write_text(json.dumps(marker, indent=2) + "\n")
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


def output_folder_refusal(target: Path, protect: Iterable[Path] = ()) -> str | None:
    """Why `target` (a real path) may never be an output folder, or None."""
    if target == Path(target.anchor):
        return f"output folder {target} is the filesystem root: choose a folder of its own"
    home = Path(os.path.realpath(os.path.expanduser("~")))
    if target == home:
        return f"output folder {target} is your home folder: choose a folder of its own inside it"
    if target in home.parents:
        return f"output folder {target} holds your home folder {home}: choose a folder of its own"
    for kept in protect:
        kept = Path(os.path.realpath(kept))
        if kept == target or target in kept.parents:
            what = "is" if kept == target else "holds"
            return f"output folder {target} {what} the input {kept}, which it would replace: choose a folder of its own"
    return None


def replace_refusal(target: Path, command: str) -> str | None:
    """Why `--force` may not replace the existing folder `target`, or None when `command` wrote
    everything in it and nothing was changed since."""
    keep = "nothing was written; move it away or choose another output folder"
    try:
        marker = json.loads((target / OUTPUT_MARKER).read_text())
        written = dict(marker["files"])
        writer = marker["written_by"]
    except (OSError, ValueError, KeyError, TypeError):
        return (f"output folder {target} was not written by {command} (no readable {OUTPUT_MARKER} in it): "
                f"--force only replaces a folder {command} wrote; {keep}")
    if writer != command:
        return f"output folder {target} was written by {writer}, not {command}: {keep}"
    found = folder_digests(target, skip={OUTPUT_MARKER}, hashed=written.keys())
    others = sorted(name for name in found if name not in written)
    changed = sorted(name for name, digest in found.items() if name in written and written[name] != digest)
    if not others and not changed:
        return None
    parts = []
    if others:
        parts.append(f"files {command} did not write: {_some(others)}")
    if changed:
        parts.append(f"files changed since {command} wrote them: {_some(changed)}")
    return (f"output folder {target} holds {'; '.join(parts)}. --force replaces only what {command} wrote: "
            "move those out (or choose another output folder); nothing was written")


def folder_digests(folder: Path, skip: Iterable[str] = (), hashed: Iterable[str] | None = None) -> dict[str, str]:
    """Every entry under `folder` (relative path -> sha256 of a file; "link"/"folder" otherwise).

    Symbolic links are not followed; an empty folder is listed so that it is not lost unseen.
    With `hashed`, only those files are read (the others are "file"): a foreign file is foreign
    whatever it holds.
    """
    to_hash = set(hashed) if hashed is not None else None
    found: dict[str, str] = {}
    skipped = set(skip)
    for top, dirs, files in os.walk(folder):
        relative = Path(top).relative_to(folder)
        if relative != Path(".") and not dirs and not files:
            found[relative.as_posix()] = "folder"
        for name in dirs + files:
            path = Path(top) / name
            key = (relative / name).as_posix()
            if key in skipped:
                continue
            if path.is_symlink():
                found[key] = "link"
            elif name in files:
                found[key] = (hashlib.sha256(path.read_bytes()).hexdigest() if to_hash is None or key in to_hash
                              else "file")
    return found


def _some(names: list[str], shown: int = 5) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more
