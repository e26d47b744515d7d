"""Clean-up of a results tree: plan what a chosen set of kinds would free, then remove it.

The tree (see results.py and docs/cleanup.md):

    <root>/<session>/<TEST>/                  result.json, report.md, products/, figs/
    <root>/<session>/<TEST>.previous-<time>/  superseded earlier results
    <root>/<session>/.<TEST>.staging-<run>/   results of a run that never finished
    <root>/logs/*.log                         pipeline logs
    <root>/runs/<run_id>/run.json             background-run records (with the run's `pid`)

Safety rules, because a clean-up bug deletes calibration results nobody can re-take:
- the root must look like a results tree and is never `/` or the home folder (or above it);
- symbolic links are never followed: a link inside a removed folder is removed as a link, a
  planned path that is itself a link is removed as a link only if it points inside the root,
  otherwise it is refused with a message; linked session or test folders are not walked;
- each path is checked again right before deletion: still inside the root, no linked folder on
  the way, still of its planned kind, and (for runs, staging folders, logs) still not in use.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import stat
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from ..process import ENDED, check_process

# name -> what it is (shown by the CLI and the app)
KINDS: dict[str, str] = {
    "staging": "leftovers of interrupted runs (.<TEST>.staging-<run>/)",
    "previous": "superseded earlier results (<TEST>.previous-<time>/)",
    "intermediates": "files a task marked intermediate (products/intermediate/)",
    "figures": "PNG figures of the reports (figs/)",
    "products": "FITS masters and tables (products/, intermediates aside)",
    "runs": "records of finished background runs (runs/<run_id>/)",
    "logs": "pipeline logs (logs/*.log)",
    "results": "whole current test folders, result.json and report.md included",
}
# what "everything removable" means for `--keep`; the others destroy history or the results
# themselves, so they are only ever removed when named
ROUTINE_KINDS = ("staging", "previous", "intermediates", "figures", "products", "runs")
EXPLICIT_KINDS = ("logs", "results")
ROOT_LEVEL_KINDS = ("runs", "logs")  # not per session: left out when sessions/tests are filtered

INTERMEDIATE_DIR = "intermediate"  # products/intermediate/: a task's scratch products
RECENT_S = 15 * 60  # a staging folder or log touched this recently may belong to a run in progress

_RESULT = "result.json"
_RUN_RECORD = "run.json"
_STAGING = re.compile(r"^\.(?P<test>.+)\.staging-(?P<run>.+)$")
_PREVIOUS = re.compile(r"^(?P<test>.+)\.previous-\d{8}T\d{6}$")


class CleanupError(ValueError):
    """A clean-up that cannot be planned: unknown kind, refused results root."""


class RefusedRoot(CleanupError):
    """The folder is not one clean-up may work in."""


@dataclass(frozen=True)
class CleanupItem:
    path: Path
    kind: str
    files: int
    bytes: int
    is_link: bool = False  # removed as a link, its target untouched

    def as_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "kind": self.kind, "files": self.files, "bytes": self.bytes,
                "is_link": self.is_link}


@dataclass(frozen=True)
class Kept:
    """Something of a chosen kind left alone, and why (running run, link outside the root...)."""
    path: Path
    kind: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "kind": self.kind, "reason": self.reason}


@dataclass
class KindTotal:
    items: int = 0
    files: int = 0
    bytes: int = 0

    def add(self, files: int, size: int) -> None:
        self.items += 1
        self.files += files
        self.bytes += size


def tally(items: Iterable[CleanupItem], kinds: Iterable[str] = ()) -> dict[str, KindTotal]:
    """Items, files and bytes per kind: `kinds` first (empty ones too), then any other kind met."""
    totals = {kind: KindTotal() for kind in kinds}
    for item in items:
        totals.setdefault(item.kind, KindTotal()).add(item.files, item.bytes)
    return totals


@dataclass
class CleanupPlan:
    root: Path
    kinds: tuple[str, ...]
    items: list[CleanupItem] = field(default_factory=list)
    kept: list[Kept] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def files(self) -> int:
        return sum(item.files for item in self.items)

    @property
    def bytes(self) -> int:
        return sum(item.bytes for item in self.items)

    def totals(self) -> dict[str, KindTotal]:
        """Per chosen kind (all of them, empty ones too), in KINDS order."""
        return tally(self.items, [kind for kind in KINDS if kind in self.kinds])

    def as_dict(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "kinds": list(self.kinds),
            "files": self.files,
            "bytes": self.bytes,
            "totals": {kind: vars(total) for kind, total in self.totals().items()},
            "items": [item.as_dict() for item in self.items],
            "kept": [kept.as_dict() for kept in self.kept],
            "notes": list(self.notes),
        }


@dataclass
class CleanupReport:
    root: Path
    removed: list[CleanupItem] = field(default_factory=list)  # files/bytes actually freed
    kept: list[Kept] = field(default_factory=list)  # refused at the last check
    errors: dict[str, str] = field(default_factory=dict)  # path -> what went wrong

    @property
    def files(self) -> int:
        return sum(item.files for item in self.removed)

    @property
    def bytes(self) -> int:
        return sum(item.bytes for item in self.removed)

    def totals(self) -> dict[str, KindTotal]:
        return tally(self.removed)

    def as_dict(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "freed_files": self.files,
            "freed_bytes": self.bytes,
            "totals": {kind: vars(total) for kind, total in self.totals().items()},
            "removed": [item.as_dict() for item in self.removed],
            "kept": [kept.as_dict() for kept in self.kept],
            "errors": dict(self.errors),
        }


# -- kinds ----------------------------------------------------------------------------------------


def parse_kinds(names: Iterable[str]) -> tuple[str, ...]:
    """Known kind names, in KINDS order; an unknown one is an error naming the known ones."""
    wanted = {name.strip().lower() for name in names if name.strip()}
    unknown = sorted(wanted - set(KINDS))
    if unknown:
        raise CleanupError(f"unknown kind(s) {', '.join(unknown)}; known: {', '.join(KINDS)}")
    return tuple(kind for kind in KINDS if kind in wanted)


def kinds_except(keep: Iterable[str]) -> tuple[str, ...]:
    """The routine kinds minus those to keep (`--keep`)."""
    kept = parse_kinds(keep)
    return tuple(kind for kind in ROUTINE_KINDS if kind not in kept)


# -- the results root -----------------------------------------------------------------------------


def check_results_root(path: str | Path) -> Path:
    """The resolved results root, or RefusedRoot saying why not."""
    given = Path(path).expanduser()
    if not given.exists():
        raise RefusedRoot(f"{given} does not exist")
    root = given.resolve()
    if not root.is_dir():
        raise RefusedRoot(f"{given} is not a folder")
    if root == Path(root.anchor):
        raise RefusedRoot(f"{given} is the filesystem root: refused")
    home = Path.home().resolve()
    if root == home or root in home.parents:
        raise RefusedRoot(f"{given} is the home folder or above it: refused")
    if not _looks_like_results(root):
        hint = ""
        if any(_is_file(child / _RESULT) for child in _real_dirs(root)):
            hint = f"; it looks like a session folder: give {root.parent} and --session {root.name}"
        raise RefusedRoot(f"{given} does not look like a vison results tree (no <session>/<TEST>/result.json, "
                          f"no logs/Calib_*.log, no runs/<id>/run.json){hint}")
    return root


def _looks_like_results(root: Path) -> bool:
    for session in _real_dirs(root):
        if session.name in ROOT_LEVEL_KINDS:
            continue
        if any(_is_file(folder / _RESULT) for folder in _real_dirs(session)):
            return True
    logs = root / "logs"
    if _is_real_dir(logs) and any(logs.glob("Calib_*.log")):
        return True
    runs = root / "runs"
    return _is_real_dir(runs) and any(_is_file(run / _RUN_RECORD) for run in _real_dirs(runs))


# -- planning -------------------------------------------------------------------------------------


def plan_cleanup(results_root: str | Path, kinds: Iterable[str], sessions: Iterable[str] | None = None,
                 tests: Iterable[str] | None = None, *, recent_s: float = RECENT_S) -> CleanupPlan:
    """What removing `kinds` under `results_root` (optionally some sessions/tests only) would free.

    Nothing is touched. Raises RefusedRoot for a root clean-up must not work in, CleanupError for
    an unknown kind.
    """
    root = check_results_root(results_root)
    plan = CleanupPlan(root, parse_kinds(kinds))
    wanted_sessions = _name_set(sessions)
    wanted_tests = _name_set(tests)
    state = _TreeState(root, time.time() - recent_s)

    def offer(path: Path, kind: str) -> None:
        if kind not in plan.kinds:
            return
        refusal = _link_refusal(root, path) or state.busy_reason(path, kind)
        if refusal:
            plan.kept.append(Kept(path, kind, refusal))
            return
        files, size, _ = _measure(path)
        plan.items.append(CleanupItem(path, kind, files, size, path.is_symlink()))

    seen_sessions: set[str] = set()
    seen_tests: set[str] = set()
    for session in sorted(root.iterdir()):
        if session.name.startswith(".") or session.name in ROOT_LEVEL_KINDS:
            continue
        if wanted_sessions is not None and session.name not in wanted_sessions:
            continue
        if session.is_symlink():
            plan.notes.append(f"{session}: symbolic link, not followed")
            continue
        if not session.is_dir():
            continue
        seen_sessions.add(session.name)
        for folder in sorted(session.iterdir()):
            kind, test = _folder_kind(folder)
            if kind is None or (wanted_tests is not None and test not in wanted_tests):
                continue
            seen_tests.add(test)
            if folder.is_symlink():
                plan.notes.append(f"{folder}: symbolic link, not followed")
            elif kind == "staging" or kind in plan.kinds:
                offer(folder, kind)
            else:  # a test folder kept whole: its parts may still go
                for part, part_kind in _parts(folder):
                    offer(part, part_kind)

    if wanted_sessions is None and wanted_tests is None:
        for kind in ROOT_LEVEL_KINDS:
            if kind in plan.kinds:
                for path in _root_level(root, kind, plan):
                    offer(path, kind)
    elif set(plan.kinds) & set(ROOT_LEVEL_KINDS):
        plan.notes.append("runs and logs are not per session: left out when sessions or tests are chosen")
    for name in sorted((wanted_sessions or set()) - seen_sessions):
        plan.notes.append(f"no session folder {name} under {root}")
    for name in sorted((wanted_tests or set()) - seen_tests):
        plan.notes.append(f"no results of test {name}")
    return plan


def _folder_kind(folder: Path) -> tuple[str | None, str]:
    """The kind a folder of a session is taken whole as, and its test name."""
    if match := _STAGING.match(folder.name):
        return "staging", match["test"]
    if folder.name.startswith("."):
        return None, ""
    if not folder.is_symlink() and not _is_file(folder / _RESULT):
        return None, ""  # not a published result: not ours to judge
    if match := _PREVIOUS.match(folder.name):
        return "previous", match["test"]
    return "results", folder.name


def _parts(folder: Path) -> Iterable[tuple[Path, str]]:
    """figs/, products/intermediate/ and each other entry of products/ of a test folder."""
    figs = folder / "figs"
    if figs.is_symlink() or figs.exists():
        yield figs, "figures"
    products = folder / "products"
    if not _is_real_dir(products):
        return
    for entry in sorted(products.iterdir()):
        yield entry, "intermediates" if entry.name == INTERMEDIATE_DIR else "products"


def _root_level(root: Path, kind: str, plan: CleanupPlan) -> Iterable[Path]:
    folder = root / kind
    if folder.is_symlink():
        plan.notes.append(f"{folder}: symbolic link, not followed")
        return
    if not folder.is_dir():
        return
    for entry in sorted(folder.iterdir()):
        if _classify(root, entry) == kind:
            yield entry


# -- in use? --------------------------------------------------------------------------------------


class _TreeState:
    """Which runs are alive, read once per plan or execution."""

    def __init__(self, root: Path, recent_since: float) -> None:
        self.root = root
        self.recent_since = recent_since
        self.live: dict[str, str] = {}  # run id -> why it counts as running
        self.live_logs: set[str] = set()  # log file names of live runs
        runs = root / "runs"
        for record in _real_dirs(runs) if _is_real_dir(runs) else ():
            running = run_in_use(record)
            if running:
                data = _read_record(record) or {}
                for run_id in {record.name, str(data.get("run_id", "")), str(data.get("id", ""))} - {""}:
                    self.live[run_id] = running
                for key in ("log", "log_path"):
                    if data.get(key):
                        self.live_logs.add(Path(str(data[key])).name)

    def busy_reason(self, path: Path, kind: str) -> str | None:
        if kind == "runs":
            return run_in_use(path)
        if kind == "staging":
            run_id = _STAGING.match(path.name)["run"]  # type: ignore[index]
            if run_id in self.live:
                return f"belongs to run {run_id}: {self.live[run_id]}"
            return self._recent(path)
        if kind == "logs":
            if path.name in self.live_logs or any(run_id in path.name for run_id in self.live):
                return "log of a run that may still be going"
            return self._recent(path)
        return None

    def _recent(self, path: Path) -> str | None:
        newest = _measure(path)[2]
        if newest >= self.recent_since:
            minutes = max(0, int((time.time() - newest) // 60))
            return f"changed {minutes} min ago: may belong to a run in progress"
        return None


def run_in_use(record: Path) -> str | None:
    """Why a run record must be kept (its process is alive, or that cannot be told), else None."""
    data = _read_record(record)
    if data is None:
        return f"no readable {_RUN_RECORD}: cannot tell whether the run is still going"
    host = data.get("host")
    if host and host != socket.gethostname():
        return f"started on host {host}: cannot tell from here whether it still runs"
    try:
        pid = int(data.get("pid"))
    except (TypeError, ValueError):
        return f"{_RUN_RECORD} has no pid: cannot tell whether the run is still going"
    process = check_process(pid, data.get("pid_start"), data.get("command"))
    if process.state == ENDED:
        return None
    # running, or a live pid nothing confirms is the run's: keep the record either way
    return f"run still going (pid {pid} alive)" if process.running else f"may still be going: {process.reason}"


def _read_record(record: Path) -> dict[str, Any] | None:
    path = record / _RUN_RECORD
    if not _is_file(path):
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# -- removing -------------------------------------------------------------------------------------

Progress = Callable[[CleanupItem, str | None], None]


def execute(plan: CleanupPlan, on_item: Progress | None = None, *, recent_s: float = RECENT_S) -> CleanupReport:
    """Remove the plan's items, each re-checked just before; what was freed, and errors per path.

    `on_item(item, error)` is told after each item (for a progress display); `item` then holds
    what was actually freed.
    """
    root = plan.root
    report = CleanupReport(root)
    state = _TreeState(root, time.time() - recent_s)
    for item in plan.items:
        refusal = _recheck(root, item, state)
        if refusal:
            report.kept.append(Kept(item.path, item.kind, refusal))
            if on_item:
                on_item(item, refusal)
            continue
        files, size, _ = _measure(item.path)
        errors = _remove(item.path)
        left_files, left_size, _ = _measure(item.path) if errors else (0, 0, 0.0)
        freed = CleanupItem(item.path, item.kind, files - left_files, size - left_size, item.is_link)
        report.removed.append(freed)
        report.errors.update(errors)
        if on_item:
            on_item(freed, next(iter(errors.values()), None))
    return report


def _recheck(root: Path, item: CleanupItem, state: _TreeState) -> str | None:
    """Why the item must not be deleted now (moved, replaced by a link, in use), else None."""
    path = item.path
    try:
        path.relative_to(root)
    except ValueError:
        return "outside the results root: refused"
    if not (path.is_symlink() or path.exists()):
        return "already gone"
    if path.is_symlink() != item.is_link:
        return "changed into or from a symbolic link since planned: refused"
    if _classify(root, path) != item.kind:
        return f"no longer a {item.kind} path: refused"
    return _link_refusal(root, path) or state.busy_reason(path, item.kind)


def _remove(path: Path) -> dict[str, str]:
    """Delete `path` without following any link; errors per path."""
    errors: dict[str, str] = {}
    if path.is_symlink() or not path.is_dir():
        try:
            path.unlink()
        except OSError as exc:
            errors[str(path)] = exc.strerror or str(exc)
        return errors

    def collect(_function: Any, failed: str, exc: Any) -> None:
        exc = exc[1] if isinstance(exc, tuple) else exc  # onerror gives exc_info, onexc the exception
        errors[str(failed)] = getattr(exc, "strerror", None) or str(exc)

    # rmtree unlinks links it meets inside (on Linux through directory descriptors, safe from a
    # folder being swapped for a link mid-walk) and refuses a top that is itself a link
    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=collect)
    else:
        shutil.rmtree(path, onerror=collect)
    return errors


# -- where a path sits in the tree ------------------------------------------------------------------


def _classify(root: Path, path: Path) -> str | None:
    """The kind `path` is by its place in the tree, or None; no linked folder may lead to it."""
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        return None
    if not parts or not all(_is_real_dir(root.joinpath(*parts[:i])) for i in range(1, len(parts))):
        return None
    if len(parts) == 2 and parts[0] == "runs":
        return "runs" if path.is_symlink() or _is_real_dir(path) else None
    if len(parts) == 2 and parts[0] == "logs":
        return "logs" if path.name.endswith(".log") and (path.is_symlink() or _is_file(path)) else None
    if parts[0] in ROOT_LEVEL_KINDS or parts[0].startswith("."):
        return None
    if len(parts) == 2:
        return _folder_kind(path)[0]
    if _folder_kind(root.joinpath(*parts[:2]))[0] not in ("results", "previous"):
        return None
    if len(parts) == 3 and parts[2] == "figs":
        return "figures"
    if len(parts) == 4 and parts[2] == "products":
        return "intermediates" if parts[3] == INTERMEDIATE_DIR else "products"
    return None


def _link_refusal(root: Path, path: Path) -> str | None:
    """A message when `path` is a link whose target lies outside the root (or cannot be told)."""
    if not path.is_symlink():
        return None
    try:
        target = path.resolve(strict=False)
    except (OSError, RuntimeError):  # a link loop
        return "symbolic link that cannot be resolved: refused"
    if target != root and root not in target.parents:
        return f"symbolic link to {target}, outside the results root: refused"
    return None


def _measure(path: Path) -> tuple[int, int, float]:
    """(files, bytes, newest mtime) under `path`, links counted as files of no size, never followed."""
    try:
        info = path.lstat()
    except OSError:
        return 0, 0, 0.0
    if not stat.S_ISDIR(info.st_mode):
        return 1, info.st_size if stat.S_ISREG(info.st_mode) else 0, info.st_mtime
    files, size, newest = 0, 0, info.st_mtime
    stack = [path]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    try:
                        entry_info = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    newest = max(newest, entry_info.st_mtime)
                    if stat.S_ISDIR(entry_info.st_mode):
                        stack.append(Path(entry.path))
                    else:
                        files += 1
                        size += entry_info.st_size if stat.S_ISREG(entry_info.st_mode) else 0
        except OSError:
            continue
    return files, size, newest


def _is_real_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(path.lstat().st_mode)
    except OSError:
        return False


def _is_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False


def _real_dirs(folder: Path) -> list[Path]:
    try:
        return sorted(child for child in folder.iterdir() if _is_real_dir(child))
    except OSError:
        return []


def _name_set(names: Iterable[str] | None) -> set[str] | None:
    if names is None:
        return None
    chosen = {name.strip() for name in names if name.strip()}
    return chosen or None


def human_size(size: float) -> str:
    """Bytes in decimal units, as `du --si` shows them: 512 B, 3.4 kB, 1.2 GB."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"
