"""The session builder: one folder per session with copies of its scripts and its ELVIS sequence file.

Inputs are a TOML file (configs/sessions_template.toml): the scripts folder (written by the script
writer), the output folder, and [sessions] with each session's ordered test instances. A test with
no script, or more than one, in the scripts folder stops the build before anything is written.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..formats.tomlfile import TomlChecker, TomlDocument, load_toml
from .catalogue import UnknownTestError, resolve_test
from .scripts import parse_script_filename, write_folder


def sequence_filename(session: str) -> str:
    return f"TEST_SEQUENCE_{session}.txt"


@dataclass(frozen=True)
class SessionInputs:
    scripts_folder: Path  # absolute
    output: Path  # absolute
    sessions: Mapping[str, tuple[str, ...]]  # session -> test instances, in acquisition order
    source: Path | None = None
    doc: TomlDocument | None = field(default=None, repr=False, compare=False)  # lines for messages


@dataclass(frozen=True)
class BuiltSession:
    name: str
    scripts: tuple[str, ...]  # script file names, in sequence order

    @property
    def sequence(self) -> str:
        return sequence_filename(self.name)


@dataclass(frozen=True)
class SessionsBuilt:
    folder: Path
    scripts_folder: Path
    sessions: tuple[BuiltSession, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "folder": str(self.folder), "scripts_folder": str(self.scripts_folder),
            "sessions": [{"name": s.name, "folder": str(self.folder / s.name), "sequence": s.sequence,
                          "scripts": list(s.scripts)} for s in self.sessions],
        }


_TOP_KEYS = ("scripts", "output", "sessions")


def load_session_inputs(path: str | Path) -> SessionInputs:
    """Read and check a sessions TOML, including that each test has exactly one script.

    Raises ConfigError listing every problem with file, line and key.
    """
    doc = load_toml(path)
    check = TomlChecker(doc)
    data = check.table(doc.data, (), _TOP_KEYS, 'scripts = "Scripts_NOSTROMO_APR19_W18"')
    scripts_folder = check.path(data, (), "scripts", required=True, example='scripts = "Scripts_NOSTROMO_APR19_W18"')
    if scripts_folder is not None and not scripts_folder.is_dir():
        check.problem(("scripts",), f"scripts folder {scripts_folder} does not exist (write it with `vison-engine scripts`)")
        scripts_folder = None
    output = check.path(data, (), "output", required=True, example='output = "SEQUENCES_NOSTROMO_APR19_W18"')
    sessions = _sessions(check, data.get("sessions"))
    if scripts_folder is not None:
        _match_scripts(scripts_folder, sessions, check.problem)
    check.raise_if_any()
    assert scripts_folder is not None and output is not None
    return SessionInputs(scripts_folder=scripts_folder, output=output,
                         sessions={name: tuple(test for _, test in tests) for name, tests in sessions.items()},
                         source=Path(os.path.abspath(doc.path)), doc=doc)


def _sessions(check: TomlChecker, value: Any) -> dict[str, list[tuple[int, str]]]:
    """Each session's valid test instances with their index in the file's list (for line numbers)."""
    example = '[sessions] with D11 = ["BIAS01", "BIAS02"]'
    if value is None:
        check.problem(("sessions",), f"missing required table [sessions]; e.g. {example}")
        return {}
    table = check.table(value, ("sessions",), None, example)
    if not table:
        check.problem(("sessions",), f"no sessions defined; e.g. {example}")
    sessions: dict[str, list[tuple[int, str]]] = {}
    for name, tests in table.items():
        key_path = ("sessions", name)
        if not name.strip() or any(c in name for c in "/\\") or name in (".", ".."):
            check.problem(key_path, f"session name {name!r} must be usable as a folder name (e.g. D11)")
            continue
        if not isinstance(tests, list) or not tests:
            check.wrong_type(key_path, tests, f'a non-empty list of test names, e.g. {name} = ["BIAS01", "BIAS02"]')
            continue
        names: list[tuple[int, str]] = []
        for index, test in enumerate(tests):
            if not isinstance(test, str):
                check.wrong_type(key_path + (index,), test, 'a test name such as "FOCUS00_800"')
                continue
            try:
                canonical = resolve_test(test).name
            except UnknownTestError as exc:
                check.problem(key_path + (index,), str(exc))
                continue
            if any(canonical == known for _, known in names):
                # the pipeline analyses a test once per session (the campaign config refuses repeats)
                check.problem(key_path + (index,), f"test {canonical} is listed twice in session {name}; list it once")
                continue
            names.append((index, canonical))
        sessions[name] = names
    return sessions


def scripts_by_test(folder: Path) -> dict[str, list[str]]:
    """Test instance -> script file names in a scripts folder (empty if there is no such folder)."""
    found: dict[str, list[str]] = {}
    try:
        entries = sorted(os.listdir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return found
    for entry in entries:
        parsed = parse_script_filename(entry)
        if parsed is not None and (folder / entry).is_file():
            found.setdefault(parsed[0], []).append(entry)
    return found


def _match_scripts(folder: Path, sessions: Mapping[str, Sequence[tuple[int, str]]],
                   report: Callable[[tuple, str], None]) -> dict[str, tuple[str, ...]]:
    """Each session's script file names; a test with no script or several is reported.

    Tests come with their index in the inputs file's list, so that a report names its line.
    """
    available = scripts_by_test(folder)
    matched: dict[str, tuple[str, ...]] = {}
    for session, tests in sessions.items():
        files = []
        for index, test in tests:
            candidates = available.get(test, [])
            if len(candidates) == 1:
                files.append(candidates[0])
            elif not candidates:
                report(("sessions", session, index),
                       f"no script for {test} in {folder} (expected vis_CalCamp_{test}_<DDMmmYY>_v<elvis>.xlsx)")
            else:
                report(("sessions", session, index),
                       f"{len(candidates)} scripts for {test} in {folder} ({', '.join(candidates)}): "
                       "keep one, so the session runs the intended one")
        matched[session] = tuple(files)
    return matched


def build_sessions(inputs: SessionInputs, *, force: bool = False) -> SessionsBuilt:
    """Write a folder per session (its scripts and TEST_SEQUENCE_<session>.txt) into inputs.output.

    Checks the scripts again (the folder may have changed since the inputs were read); refuses an
    existing non-empty output folder unless `force`, which replaces a folder this command wrote and
    nothing else (see write_folder).
    """
    check = TomlChecker(inputs.doc, origin=inputs.source or "<sessions>")
    if not inputs.scripts_folder.is_dir():
        check.problem(("scripts",), f"scripts folder {inputs.scripts_folder} does not exist")
        check.raise_if_any()
    matched = _match_scripts(inputs.scripts_folder,
                             {name: list(enumerate(tests)) for name, tests in inputs.sessions.items()}, check.problem)
    check.raise_if_any()

    def fill(folder: Path) -> None:
        for session, files in matched.items():
            session_folder = folder / session
            session_folder.mkdir()
            for name in files:
                shutil.copy2(inputs.scripts_folder / name, session_folder / name)
            (session_folder / sequence_filename(session)).write_text("".join(f"{name}\n" for name in files))

    protect = [inputs.scripts_folder] + ([inputs.source] if inputs.source is not None else [])
    folder = write_folder(inputs.output, fill, force=force, protect=protect, command="vison-engine sessions")
    return SessionsBuilt(folder=folder, scripts_folder=inputs.scripts_folder,
                         sessions=tuple(BuiltSession(name, files) for name, files in matched.items()))
