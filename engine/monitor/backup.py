"""A verified copy of the day folder to backup and broadcast targets, as the data land.

Only complete files are offered (see completeness.py). Each is copied into `<target>/<day>/`
under a temporary name, fsynced, read back and compared (size and sha256) with what was read
from the source, then put in place without replacing anything: a same-named file that differs
is never overwritten; ours is written beside it as `<name>.conflict-<sha8>` and reported. The
only files ever replaced are earlier copies of a file that grew (the EXP_LOG): the new content
starts with the old. The ledger (in the monitor state) records what each target holds, so a
restarted monitor carries on; a copy interrupted by a kill leaves only a temporary file, which
the next run removes and redoes.

The EXP_LOG copy stops before the first line naming a frame not yet in that target, so a
pipeline in wait mode on the backup never sees a logged frame that is not there yet.

Targets are folders (local disks, mounted shares) or `host:path`, sent with rsync when rsync is
installed (rsync checks its own transfers; conflicts are detected and kept the same way).
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .events import BackupConflict, BackupCopied, BackupFailed, MonitorEvent, MonitorNotice

CHUNK = 4 * 1024 * 1024
TEMP_SUFFIX = ".vison-part"
EXPLOG_HOLD_SECONDS = 120.0  # a logged frame younger than this holds the EXP_LOG copy back
RETRY_SECONDS = 30.0  # a failed copy is tried again this often
# The scrub: copies are hashed again in the background, in case a copy changes in a way its size
# and times do not show (bit rot, a filesystem-level change). Pace and interval: MonitorSettings.
SCRUB_ONCE_MAX_SECONDS = 300.0  # a --once run re-hashes at most what the pace allows in this long
SCRUB_IDLE_SECONDS = 300.0  # with nothing due, the background scrub looks again this often
SCRUB_FOUND = "scrub_found"  # ledger key: the hash a scrub found, differing from the copy's sha256


class CopyStopped(Exception):
    """The monitor is stopping: the copy in progress was abandoned (its temporary file removed)."""


class SourceChanged(Exception):
    """The source changed while it was copied: try again later."""


class TargetUnwritable(OSError):
    """The target folder refuses writes (read-only, permission denied, full): one problem of the
    target, said once, not one per file."""


@dataclass(frozen=True)
class SourceFile:
    name: str
    kind: str  # "frame", "hk" or "explog"
    size: int  # bytes known complete (EXP_LOG: up to its last complete line)


@dataclass
class BackupReport:
    target: str
    copied: int = 0  # files the target holds as copied by us
    copied_bytes: int = 0
    pending: list[str] = field(default_factory=list)  # waiting to be complete, or to be copied
    failed: dict[str, str] = field(default_factory=dict)  # name -> last reason
    conflicts: dict[str, str] = field(default_factory=dict)  # name -> the name ours was kept as

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "copied": self.copied, "copied_bytes": self.copied_bytes,
                "pending": len(self.pending), "pending_files": list(self.pending), "failed": len(self.failed),
                "failed_files": dict(self.failed), "conflicts": len(self.conflicts),
                "conflict_files": dict(self.conflicts)}


# -- hashing and publishing ------------------------------------------------------------------------

def sha256_of(path: Path, size: int | None = None, stop: threading.Event | None = None,
              pace: Callable[[int], None] | None = None) -> str:
    """sha256 of the first `size` bytes (all: None); `pace(n)` is called after each chunk of n bytes
    (the scrub waits there, so it never hogs the disk)."""
    digest = hashlib.sha256()
    left = size
    with open(path, "rb") as handle:
        while left is None or left > 0:
            chunk = handle.read(CHUNK if left is None else min(CHUNK, left))
            if not chunk:
                break
            digest.update(chunk)
            if left is not None:
                left -= len(chunk)
            if stop is not None and stop.is_set():
                raise CopyStopped()
            if pace is not None:
                pace(len(chunk))
    return digest.hexdigest()


def file_signature(path: Path) -> list[int] | None:
    """What changes when a file's content may have: size, mtime, ctime (which no one can set back)
    and inode (a file replaced by another). None when it is not there."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return [info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino]


def _write_temp(source: Path, size: int, folder: Path, name: str,
                stop: threading.Event | None) -> tuple[Path, str]:
    """Copy the first `size` bytes of `source` to a temporary file in `folder`; (temp path, sha256)."""
    tmp = folder / f".{name}.{os.getpid()}{TEMP_SUFFIX}"
    digest = hashlib.sha256()
    try:
        with open(source, "rb") as src, open(tmp, "wb") as dst:
            left = size
            while left > 0:
                chunk = src.read(min(CHUNK, left))
                if not chunk:
                    raise SourceChanged(f"{source.name} shrank while being copied")
                try:
                    dst.write(chunk)
                except OSError as exc:  # a full or failing target: the target's problem, not this file's
                    raise TargetUnwritable(exc.errno, f"cannot write in {folder} ({exc.strerror or exc})") from None
                digest.update(chunk)
                left -= len(chunk)
                if stop is not None and stop.is_set():
                    raise CopyStopped()
            try:
                dst.flush()
                os.fsync(dst.fileno())
            except OSError as exc:
                raise TargetUnwritable(exc.errno, f"cannot write in {folder} ({exc.strerror or exc})") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp, digest.hexdigest()


def publish(tmp: Path, dest: Path, *, replace: bool) -> None:
    """Give the verified temporary file its final name. Without `replace`, never clobber."""
    if replace:
        os.replace(tmp, dest)
    else:
        try:
            os.link(tmp, dest)  # atomic, and fails if the name was taken meanwhile
        except FileExistsError:
            tmp.unlink(missing_ok=True)
            raise
        except OSError:
            # no hard links on this filesystem (SMB, FAT): check, then rename
            if dest.exists():
                tmp.unlink(missing_ok=True)
                raise FileExistsError(dest) from None
            os.replace(tmp, dest)
            return
        tmp.unlink(missing_ok=True)
    _fsync_dir(dest.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass  # not every filesystem syncs directories
    finally:
        os.close(handle)


def conflict_name(name: str, sha256: str) -> str:
    return f"{name}.conflict-{sha256[:8]}"


# -- targets -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Outcome:
    action: str  # "copied", "updated", "present" (already identical), "conflict"
    sha256: str
    kept_as: str | None = None  # conflict: the name ours was written under
    existing_sha256: str | None = None


class FolderTarget:
    """A data root on a local disk or a mounted share; files go to `<root>/<day>/`."""

    local = True  # its copies can be looked at (signature, hash) without a transfer

    def __init__(self, root: str | os.PathLike[str], day_name: str):
        self.root = Path(os.path.abspath(os.path.expanduser(root)))
        self.label = str(self.root)
        self.folder = self.root / day_name

    def prepare(self) -> list[str]:
        """Check the root, make the day folder, remove temporary files left by a killed run."""
        if not self.root.is_dir():
            raise FileNotFoundError(f"backup folder {self.root} does not exist (create it first)")
        try:
            self.folder.mkdir(exist_ok=True)
            probe = self.folder / f".vison-probe.{os.getpid()}{TEMP_SUFFIX}"
            probe.touch()  # a read-only or denied folder is one message, not one per file
            probe.unlink()
        except OSError as exc:
            raise TargetUnwritable(exc.errno, f"cannot write in {self.folder} ({exc.strerror or exc})") from None
        removed = []
        for leftover in self.folder.glob(f".*{TEMP_SUFFIX}"):
            leftover.unlink(missing_ok=True)
            removed.append(leftover.name)
        return removed

    def holds(self, name: str, size: int) -> bool:
        try:
            return (self.folder / name).stat().st_size == size
        except OSError:
            return False

    def signature(self, name: str) -> list[int] | None:
        return file_signature(self.folder / name)

    def sha256(self, name: str, stop: threading.Event | None = None,
               pace: Callable[[int], None] | None = None) -> str:
        return sha256_of(self.folder / name, stop=stop, pace=pace)

    def put(self, source: Path, size: int, name: str, ours: dict[str, Any] | None,
            stop: threading.Event | None = None) -> Outcome:
        """Copy `size` bytes of `source` as `name`. `ours`: the ledger entry of our earlier copy."""
        dest = self.folder / name
        try:
            existing = dest.stat().st_size
        except FileNotFoundError:
            existing = None
        if existing is None:
            sha = self._copy(source, size, name, dest, replace=False, stop=stop)
            return Outcome("copied", sha)
        ours_intact = (ours is not None and ours.get("status") == "copied" and ours.get("size") == existing
                       and ours.get("sha256") == sha256_of(dest, stop=stop))
        if ours_intact and existing < size and sha256_of(source, existing, stop) == ours["sha256"]:
            sha = self._copy(source, size, name, dest, replace=True, stop=stop)
            return Outcome("updated", sha)
        source_sha = sha256_of(source, size, stop)
        existing_sha = ours["sha256"] if ours_intact else sha256_of(dest, stop=stop)
        if existing == size and existing_sha == source_sha:
            return Outcome("present", source_sha)
        if existing < size and sha256_of(source, existing, stop) == existing_sha:
            # a shorter copy of the same growing file (ours from a killed run, or anyone's): no loss
            sha = self._copy(source, size, name, dest, replace=True, stop=stop)
            return Outcome("updated", sha)
        kept_as = conflict_name(name, source_sha)
        other = self.folder / kept_as
        if not (other.exists() and sha256_of(other, stop=stop) == source_sha):
            self._copy(source, size, kept_as, other, replace=False, stop=stop)
        return Outcome("conflict", source_sha, kept_as, existing_sha)

    def _copy(self, source: Path, size: int, name: str, dest: Path, *, replace: bool,
              stop: threading.Event | None) -> str:
        before = source.stat()
        tmp, sha = _write_temp(source, size, self.folder, name, stop)
        try:
            written = tmp.stat().st_size
            if written != size:
                raise OSError(f"wrote {written} bytes of {size}")
            check = sha256_of(tmp, stop=stop)  # read back what the target really holds
            if check != sha:
                raise OSError(f"read-back checksum {check[:8]} differs from the source's {sha[:8]}")
            after = source.stat()
            if (after.st_size < size or after.st_ino != before.st_ino
                    or (after.st_mtime_ns != before.st_mtime_ns and after.st_size == before.st_size)):
                raise SourceChanged(f"{source.name} changed while being copied")
            # the source as it is now, at the moment of publishing: a rewrite that kept its size and
            # time (or fell within the time's resolution) is caught here, not published torn
            if sha256_of(source, size, stop) != sha:
                raise SourceChanged(f"{source.name} changed while being copied (its content now differs "
                                    "from what was read)")
            publish(tmp, dest, replace=replace)
        finally:
            tmp.unlink(missing_ok=True)
        return sha


def rsync_available() -> bool:
    return shutil.which("rsync") is not None


_REMOTE_RE = re.compile(r"^(?:[\w.-]+@)?[\w.-]+:")


def is_remote(spec: str) -> bool:
    """`host:path` or `user@host:path` (a local path that exists always wins)."""
    return bool(_REMOTE_RE.match(spec)) and not os.path.exists(spec)


class RsyncTarget:
    """`host:path` through rsync (over ssh). rsync writes to a temporary name and checks its own
    transfers; the same no-overwrite rule holds: a different remote file is kept, ours goes to
    `<name>.conflict-<sha8>`."""

    local = False  # copies are checked by rsync itself, not looked at again from here

    def __init__(self, spec: str, day_name: str, rsync: str = "rsync"):
        if shutil.which(rsync) is None:
            raise FileNotFoundError(f"{spec}: a host:path target needs rsync, which is not installed")
        self.rsync = rsync
        self.label = spec.rstrip("/")
        self.remote = f"{self.label}/{day_name}/"

    def prepare(self) -> list[str]:
        with tempfile.TemporaryDirectory() as empty:  # creates the day folder, like mkdir -p
            self._run(["-r", "--ignore-existing", f"{empty}/", self.remote])
        return []

    def holds(self, name: str, size: int) -> bool:
        return True  # asking the remote for every file on start is too slow; rsync skips what is there

    def put(self, source: Path, size: int, name: str, ours: dict[str, Any] | None,
            stop: threading.Event | None = None) -> Outcome:
        with tempfile.TemporaryDirectory() as staging:
            staged = Path(staging) / name
            tmp, sha = _write_temp(source, size, Path(staging), name, stop)  # exactly the complete part
            if sha256_of(source, size, stop) != sha:
                raise SourceChanged(f"{source.name} changed while being copied")
            os.replace(tmp, staged)
            grew = ours is not None and ours.get("status") == "copied" and ours.get("size", 0) < size
            if grew:
                self._run(["-t", "--append-verify", str(staged), self.remote])
                return Outcome("updated", sha)
            sent = self._run(["-t", "-i", "--ignore-existing", str(staged), self.remote])
            if sent.strip():
                return Outcome("copied", sha)
            differs = self._run(["-n", "-i", "--checksum", str(staged), self.remote])
            if not differs.strip():
                return Outcome("present", sha)
            kept_as = conflict_name(name, sha)
            os.replace(staged, Path(staging) / kept_as)
            self._run(["-t", "--ignore-existing", str(Path(staging) / kept_as), self.remote])
            return Outcome("conflict", sha, kept_as, "remote")

    def _run(self, args: list[str]) -> str:
        done = subprocess.run([self.rsync, *args], capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise OSError(f"rsync exit {done.returncode}: {(done.stderr or '').strip()[-300:]}")
        return done.stdout


def make_target(spec: str, day_name: str, source: str | os.PathLike[str] | None = None):
    """A target for `--backup`/`--broadcast`; refuses a folder that does not exist (a typo would
    otherwise start a new tree somewhere), host:path without rsync, and (given the day folder
    `source`) a copy that would land on, inside or around the source itself."""
    if is_remote(spec):
        return RsyncTarget(spec, day_name)
    target = FolderTarget(spec, day_name)
    if not target.root.is_dir():
        raise FileNotFoundError(f"backup folder {target.root} does not exist (create it first)")
    if source is not None:
        problem = overlap_problem(target, Path(source))
        if problem:
            raise ValueError(problem)
    return target


def overlap_problem(target: FolderTarget, source: Path) -> str | None:
    """Why copying `source` into `target` would not be a backup, or None.

    A copy onto the source "verifies" against itself, one inside it is lost with it, and one
    around it holds the source: none is a second copy. Real paths, so links do not hide it.
    """
    copy, data = Path(os.path.realpath(target.folder)), Path(os.path.realpath(source))
    if copy == data:
        where = "is the day folder itself"
    elif data in copy.parents:
        where = "lies inside the day folder"
    elif copy in data.parents:
        where = "holds the day folder"
    else:
        return None
    return (f"backup {target.label}: the copy would go to {copy}, which {where} ({data}); "
            f"a backup must be outside the data it copies: give the backup disk's data folder, "
            f"e.g. --backup /caldata/data")


# -- the backup of one day folder --------------------------------------------------------------------

class Backup:
    """Copies what the scanner offers to every target; the ledger lives in the monitor state."""

    def __init__(self, day_folder: Path, targets: list, ledger: dict[str, dict[str, dict[str, Any]]],
                 lock: threading.RLock, emit: Callable[[MonitorEvent], None],
                 save: Callable[[], None] = lambda: None, hold_seconds: float = EXPLOG_HOLD_SECONDS, *,
                 clock: Callable[[], float] = time.time, scrub_hours: float = 12.0, scrub_mb_per_s: float = 4.0,
                 scrub_state: dict[str, Any] | None = None):
        self.day_folder = Path(day_folder)
        self.targets = targets
        self.ledger = ledger
        self.lock = lock
        self.emit = emit
        self.save = save
        self.hold_seconds = hold_seconds
        self.retry_seconds = RETRY_SECONDS
        self.clock = clock  # wall-clock seconds: when each copy was last verified (the ledger's "verified")
        self.scrub_hours = scrub_hours
        self.scrub_bytes_per_s = scrub_mb_per_s * 1e6
        self.scrub_state = scrub_state if scrub_state is not None else {}
        self._scrub_thread: threading.Thread | None = None
        self._offered: dict[str, SourceFile] = {}
        self._waiting: list[str] = []
        self._failures: dict[tuple[str, str], str] = {}  # (target, name) -> reason already reported
        self._prepared: set[str] = set()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._idle = threading.Event()
        self._idle.set()

    # -- what there is to copy ---------------------------------------------------------------

    def offer(self, files: list[SourceFile], waiting: list[str] = ()) -> None:
        """Complete files (replacing earlier offers of the same name) and names not complete yet."""
        changed = False
        with self.lock:
            for item in files:
                if self._offered.get(item.name) != item:
                    self._offered[item.name] = item
                    changed = True
            self._waiting = sorted(set(waiting))
        if changed:  # the same offer every scan must not keep the backup thread busy (or "not idle")
            self._idle.clear()
            self._wake.set()

    def _ordered(self) -> list[SourceFile]:
        # frames and HK by OBSID, the EXP_LOG last: it then names only frames already copied
        with self.lock:
            items = list(self._offered.values())
        return sorted(items, key=lambda f: (f.kind == "explog", _obsid_of(f.name), f.name))

    # -- copying -----------------------------------------------------------------------------

    def run_pass(self, stop: threading.Event | None = None) -> None:
        """One pass over every target: copy whatever is offered and not there yet."""
        stop = stop or self._stop
        for target in self.targets:
            if stop.is_set():
                return
            if not self._prepare(target):
                continue
            with self.lock:
                ledger = self.ledger.setdefault(target.label, {})
            for item in self._ordered():
                if stop.is_set():
                    return
                try:
                    self._one(target, ledger, item, stop)
                except TargetUnwritable as exc:
                    self._prepared.discard(target.label)  # looked at again (and said again) on the next pass
                    self._fail(target, "(target)", exc.strerror or str(exc))
                    break

    def _prepare(self, target) -> bool:
        if target.label in self._prepared:
            return True
        try:
            target.prepare()
        except (OSError, subprocess.SubprocessError) as exc:
            self._fail(target, "(target)", getattr(exc, "strerror", None) or str(exc))
            return False
        if self._failures.pop((target.label, "(target)"), None) is not None:
            self.emit(MonitorNotice(text=f"backup to {target.label} works again", level="info"))
        with self.lock:
            ledger = self.ledger.setdefault(target.label, {})
            # a copy deleted from the target since the last run is copied again
            for name, entry in list(ledger.items()):
                if entry.get("status") == "copied" and not target.holds(name, entry.get("size", -1)):
                    del ledger[name]
        self._prepared.add(target.label)
        return True

    def _one(self, target, ledger: dict[str, dict[str, Any]], item: SourceFile, stop: threading.Event) -> None:
        size = item.size
        if item.kind == "explog":
            size = self._explog_prefix(item, ledger)
            if size <= 0:
                return
        with self.lock:
            entry = dict(ledger[item.name]) if item.name in ledger else None
        why = ""
        if entry is not None and entry.get("size") == size and entry.get("status") in ("copied", "conflict"):
            try:
                unchanged, why = self._unchanged(target, ledger, item.name, size, entry, stop)
            except CopyStopped:
                return
            except OSError as exc:
                self._fail(target, item.name, f"cannot check the copy: {exc.strerror or exc}")
                return
            if unchanged:
                return
        source = self.day_folder / item.name
        source_sig = file_signature(source)
        try:
            outcome = target.put(source, size, item.name, entry, stop)
        except CopyStopped:
            return
        except SourceChanged as exc:
            # offered again once it is complete and settled; said once (raw data should not change)
            self._fail(target, item.name, f"{exc}; copied again once it is settled")
            return
        except FileExistsError:
            return  # the name was taken meanwhile: judged again on the next pass
        except (OSError, subprocess.SubprocessError) as exc:
            if isinstance(exc, TargetUnwritable):
                raise
            if _in_target(target, exc):
                raise TargetUnwritable(exc.errno, f"cannot write in {target.folder} ({exc.strerror or exc})") from None
            self._fail(target, item.name, getattr(exc, "strerror", None) or str(exc))
            with self.lock:
                ledger[item.name] = {"status": "failed", "size": size, "reason": str(exc)}
            self.save()
            return
        self._failures.pop((target.label, item.name), None)
        if file_signature(source) != source_sig:
            source_sig = None  # changed meanwhile: hashed again on the next pass
        signatures = {"source_sig": source_sig,
                      "copy_sig": target.signature(item.name) if getattr(target, "local", False) else None}
        with self.lock:
            if outcome.action == "conflict":
                ledger[item.name] = {"status": "conflict", "size": size, "sha256": outcome.sha256,
                                     "kept_as": outcome.kept_as, "existing_sha256": outcome.existing_sha256,
                                     "why": why, **signatures}
            else:
                ledger[item.name] = {"status": "copied", "size": size, "sha256": outcome.sha256, **signatures,
                                     "verified": self.clock()}
        was_conflict = entry is not None and entry.get("status") == "conflict"
        if was_conflict and not why and outcome.action == "conflict":
            why = str(entry.get("why") or "")
            with self.lock:
                ledger[item.name]["why"] = why
        if outcome.action == "conflict":
            same = was_conflict and (entry.get("kept_as"), entry.get("existing_sha256")) == (
                outcome.kept_as, outcome.existing_sha256)
            if not same:
                self.emit(BackupConflict(target=target.label, name=item.name, kept_as=outcome.kept_as or "",
                                         existing_sha256=outcome.existing_sha256 or "",
                                         new_sha256=outcome.sha256, why=why))
        elif was_conflict:
            self.emit(MonitorNotice(text=f"{target.label}: the conflict on {item.name} is solved: the backup now "
                                    f"holds the source's content (sha256 {outcome.sha256[:8]})", level="info"))
        if outcome.action in ("copied", "updated"):
            self.emit(BackupCopied(target=target.label, name=item.name, size=size, sha256=outcome.sha256,
                                   updated=outcome.action == "updated"))
        self.save()

    def _unchanged(self, target, ledger: dict[str, dict[str, Any]], name: str, size: int,
                   entry: dict[str, Any], stop: threading.Event) -> tuple[bool, str]:
        """Is a copy (or a conflict) recorded in the ledger still what it says? (True, "") when
        neither the source nor the copy changed since (by signature, then by content hash); else
        (False, how it changed), and the file is judged again by put(). A conflict is looked at
        again whenever either side changes, until it is solved."""
        source = self.day_folder / name
        source_sig = file_signature(source)
        if source_sig is None:
            return True, ""  # the source is gone: the copy is all there is; the monitor says so
        copied = entry.get("status") == "copied"
        if copied and entry.get(SCRUB_FOUND):
            if target.sha256(name, stop) != entry.get("sha256"):
                return False, ("the backup copy changed after it was copied, keeping its size and times "
                               "(found when it was hashed again)")
            with self.lock:  # put back meanwhile: nothing to solve
                if name in ledger:
                    ledger[name].pop(SCRUB_FOUND, None)
        fresh: dict[str, Any] = {}
        if source_sig != entry.get("source_sig"):
            if not copied:
                return False, ""
            if sha256_of(source, size, stop) != entry.get("sha256"):
                return False, "the source changed after it was copied"
            if file_signature(source) == source_sig:
                fresh["source_sig"] = source_sig
        if getattr(target, "local", False):
            copy_sig = target.signature(name)
            if copy_sig != entry.get("copy_sig"):
                if not copied or copy_sig is None:
                    return False, ""  # a conflict to look at again, or a copy deleted: copied again
                if copy_sig[0] != size or target.sha256(name, stop) != entry.get("sha256"):
                    return False, "the backup copy changed after it was copied"
                fresh["copy_sig"] = copy_sig
                fresh["verified"] = self.clock()
        if fresh:
            with self.lock:
                if name in ledger:
                    ledger[name].update(fresh)
            self.save()
        return True, ""

    def _fail(self, target, name: str, reason: str) -> None:
        if self._failures.get((target.label, name)) == reason:
            return  # said once; retried quietly
        self._failures[(target.label, name)] = reason
        self.emit(BackupFailed(target=target.label, name=name, reason=reason))

    def _explog_prefix(self, item: SourceFile, ledger: dict[str, dict[str, Any]]) -> int:
        """Bytes of the EXP_LOG whose lines name only frames this target already holds."""
        try:
            with open(self.day_folder / item.name, "rb") as handle:
                data = handle.read(item.size)
        except OSError:
            return 0
        end = data.rfind(b"\n") + 1
        position, column = 0, None
        now = time.time()
        while position < end:
            stop = data.index(b"\n", position) + 1
            fields = data[position:stop].decode("latin-1").strip("\r\n").split("\t")
            if column is None:
                if any(f.strip() for f in fields):
                    names = [f.strip() for f in fields]
                    column = names.index("File_name") if "File_name" in names else 1
            elif len(fields) > column and fields[column].strip():
                name = fields[column].strip() + ".fits"
                with self.lock:
                    held = ledger.get(name, {}).get("status") in ("copied", "conflict")
                if not held and self._recent(name, now):
                    return position
            position = stop
        return end

    def _recent(self, name: str, now: float) -> bool:
        try:
            return now - (self.day_folder / name).stat().st_mtime < self.hold_seconds
        except OSError:
            return False  # never written (a missing frame): nothing to wait for

    # -- the scrub: copies hashed again -------------------------------------------------------

    def scrub_due(self, everything: bool = False) -> list[tuple[Any, str]]:
        """(target, name) of the copies to hash again, the longest unverified first: those last
        verified `scrub_hours` ago or more (all of them with `everything`), and copies whose source
        is gone that were found changed (to see whether they were put back). Local targets only:
        rsync checks its own transfers and a remote copy cannot be read from here cheaply."""
        now = self.clock()
        after = self.scrub_hours * 3600
        due = []
        with self.lock:
            for target in self.targets:
                if not getattr(target, "local", False):
                    continue
                for name, entry in self.ledger.get(target.label, {}).items():
                    verified = float(entry.get("verified") or 0)
                    if entry.get("status") == "conflict" and entry.get("source_gone"):
                        if target.signature(name) != entry.get("copy_sig"):  # touched since: put back?
                            due.append((verified, target.label, name, target))
                    elif entry.get("status") == "copied" and not entry.get(SCRUB_FOUND) and (
                            everything or (after > 0 and now - verified >= after)):
                        due.append((verified, target.label, name, target))
        due.sort(key=lambda item: item[:3])
        return [(target, name) for _, _, name, target in due]

    def scrub(self, budget: int | None = None, *, everything: bool = False, paced: bool = False,
              stop: threading.Event | None = None) -> dict[str, int]:
        """Hash copies again against the sha256 they were published with, until `budget` bytes are
        read (None: no limit; a file begun is finished, so a budget smaller than a file still checks
        one). `paced`: at scrub_mb_per_s, waiting between chunks (the background scrub). A copy found
        different is flagged: the next pass judges it like any changed copy (a conflict, the source's
        content written beside it); one whose source is gone is a conflict at once. Returns counts:
        checked, bytes, changed."""
        stop = stop or self._stop
        pace = (lambda n: stop.wait(n / self.scrub_bytes_per_s)) if paced and self.scrub_bytes_per_s > 0 else None
        counts = {"checked": 0, "bytes": 0, "changed": 0}
        for target, name in self.scrub_due(everything):
            if stop.is_set() or (budget is not None and counts["bytes"] >= budget):
                break
            with self.lock:
                entry = dict(self.ledger.get(target.label, {}).get(name) or {})
            try:
                found = target.sha256(name, stop, pace)
            except CopyStopped:
                break
            except FileNotFoundError:
                continue  # deleted: the next pass copies it again
            except OSError as exc:
                self._fail(target, name, f"cannot read the copy to verify it: {exc.strerror or exc}")
                continue
            counts["checked"] += 1
            counts["bytes"] += int(entry.get("size", 0))
            if self._scrubbed(target, name, entry, found):
                counts["changed"] += 1
        self.scrub_state["at"] = self.clock()
        if counts["changed"]:
            self._idle.clear()
            self._wake.set()  # the backup thread judges the flagged copies now
        self.save()
        return counts

    def _scrubbed(self, target, name: str, entry: dict[str, Any], found: str) -> bool:
        """Record what a scrub found for one copy; True when it differs from what was published."""
        now = self.clock()
        with self.lock:
            ledger = self.ledger.get(target.label, {})
            current = ledger.get(name)
            if current is None or current.get("sha256") != entry.get("sha256"):
                return False  # judged again meanwhile
            if current.get("status") == "conflict":  # its source is gone: was the copy put back?
                if found != current.get("sha256"):
                    current["copy_sig"] = target.signature(name)  # still not: hashed again when touched
                    return False
                ledger[name] = {"status": "copied", "size": current.get("size"), "sha256": found,
                                "source_sig": None, "copy_sig": target.signature(name), "verified": now}
                solved = True
            elif found == current.get("sha256"):
                current["verified"] = now
                return False
            elif (self.day_folder / name).exists():
                current[SCRUB_FOUND] = found
                return True
            else:
                ledger[name] = {**current, "status": "conflict", "kept_as": "", "existing_sha256": found,
                                "source_gone": True, "copy_sig": target.signature(name),
                                "why": "the backup copy changed after it was copied"}
                solved = False
        if solved:
            self.emit(MonitorNotice(text=f"{target.label}: the conflict on {name} is solved: the copy holds "
                                    f"its published content again (sha256 {found[:8]})", level="info"))
            return False
        self.emit(MonitorNotice(
            text=f"{target.label}: {name}: the backup copy changed after it was copied (sha256 {found[:8]}, "
                 f"published {str(entry.get('sha256'))[:8]}) and its source is no longer in {self.day_folder}: "
                 "restore it from another copy; a conflict until then", level="warning"))
        return True

    def scrub_budget(self) -> int:
        """Bytes a --once run may hash again: what the pace allows since the last scrub, at most
        SCRUB_ONCE_MAX_SECONDS' worth (a cron run every 10 minutes stays short)."""
        last = self.scrub_state.get("at")
        elapsed = SCRUB_ONCE_MAX_SECONDS if last is None else max(0.0, self.clock() - float(last))
        return int(self.scrub_bytes_per_s * min(elapsed, SCRUB_ONCE_MAX_SECONDS))

    # -- report ------------------------------------------------------------------------------

    def report(self) -> dict[str, BackupReport]:
        reports = {}
        with self.lock:
            offered = dict(self._offered)
            waiting = list(self._waiting)
            for target in self.targets:
                ledger = self.ledger.get(target.label, {})
                report = BackupReport(target.label)
                for name, entry in ledger.items():
                    status = entry.get("status")
                    if status == "copied":
                        report.copied += 1
                        report.copied_bytes += int(entry.get("size", 0))
                    elif status == "conflict":
                        report.conflicts[name] = entry.get("kept_as", "")
                    elif status == "failed":
                        report.failed[name] = entry.get("reason", "")
                pending = set(waiting)
                for name, item in offered.items():
                    entry = ledger.get(name)
                    if entry is None or (entry.get("status") == "copied" and entry.get("size") != item.size
                                         and item.kind != "explog"):
                        pending.add(name)
                if (target.label, "(target)") in self._failures:
                    report.failed["(target)"] = self._failures[(target.label, "(target)")]
                report.pending = sorted(pending - set(report.failed))
                reports[target.label] = report
        return reports

    # -- background thread -------------------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._work, name="vison-backup", daemon=True)
        self._thread.start()
        if self.scrub_hours > 0 and any(getattr(t, "local", False) for t in self.targets):
            self._scrub_thread = threading.Thread(target=self._scrub_work, name="vison-scrub", daemon=True)
            self._scrub_thread.start()

    def _scrub_work(self) -> None:
        """Hash due copies again at the scrub pace, then sleep until more are due."""
        while not self._stop.is_set():
            try:
                counts = self.scrub(paced=True, stop=self._stop)
            except Exception as exc:  # the copies go on; say what went wrong
                self.emit(MonitorNotice(text=f"backup scrub failed: {type(exc).__name__}: {exc}", level="warning"))
                counts = {"checked": 0}
            if not counts["checked"]:
                self._stop.wait(SCRUB_IDLE_SECONDS)

    def _work(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.retry_seconds)  # also wakes to retry failed or interrupted copies
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self.run_pass(self._stop)
            except Exception as exc:  # keep copying later files; say what went wrong
                self.emit(MonitorNotice(text=f"backup pass failed: {type(exc).__name__}: {exc}", level="warning"))
            if not self._wake.is_set():
                self._idle.set()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until everything offered so far has been tried (True) or `timeout` (False)."""
        return self._idle.wait(timeout)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for thread in (self._thread, self._scrub_thread):
            if thread is not None:
                thread.join(timeout=30)
        self._thread = self._scrub_thread = None


def _in_target(target, exc: BaseException) -> bool:
    """Did writing into a local target fail for a reason of the target's (not of one file)?"""
    if not getattr(target, "local", False) or not isinstance(exc, OSError):
        return False
    if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT):
        return False
    return bool(exc.filename) and Path(os.path.abspath(exc.filename)).parent == target.folder


def _obsid_of(name: str) -> int:
    match = re.match(r"^(?:EUC|HK)_(\d+)_", name)
    return int(match.group(1)) if match else 1 << 62
