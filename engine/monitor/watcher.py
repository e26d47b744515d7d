"""Wake the monitor when something changes in the day folder.

File events only wake the scanner, which then looks at the whole folder: an event missed (or
never sent, as on network mounts) delays the news by at most one rescan, it never loses data.
inotify (watchdog's Observer) sees nothing that another machine writes to an NFS/SMB/CIFS or
FUSE (sshfs) mount, so there watchdog's PollingObserver is used: asked for (polling = "polling")
or detected from the folder's filesystem type in /proc/mounts (polling = "auto").
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

from watchdog.events import FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

# Filesystems whose changes made elsewhere raise no inotify event here.
NETWORK_FILESYSTEMS = frozenset({
    "nfs", "nfs4", "cifs", "smb", "smbfs", "smb3", "9p", "afs", "ceph", "glusterfs", "lustre",
    "gpfs", "davfs", "ncpfs", "sshfs", "beegfs", "vboxsf", "vmhgfs",
})


def _unescape(field: str) -> str:
    # /proc/mounts writes space, tab, newline and backslash in paths as octal escapes (\040).
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def filesystem_type(path: str | os.PathLike[str], mounts_text: str | None = None) -> str | None:
    """Type of the filesystem holding `path` (the longest matching mount point), None if unknown."""
    if mounts_text is None:
        try:
            mounts_text = Path("/proc/mounts").read_text()
        except OSError:
            return None
    target = os.path.realpath(path)
    best, best_type = "", None
    for line in mounts_text.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        mount_point, fstype = _unescape(fields[1]), fields[2]
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best):
            best, best_type = mount_point, fstype
    return best_type


def is_network_filesystem(fstype: str | None) -> bool:
    if fstype is None:
        return False
    return fstype in NETWORK_FILESYSTEMS or fstype.startswith("fuse") or fstype.startswith("nfs")


def choose_observer(path: str | os.PathLike[str], mode: str = "auto",
                    mounts_text: str | None = None) -> tuple[str, str]:
    """("events" or "polling", why) for a folder and a polling mode (auto | events | polling)."""
    if mode == "polling":
        return "polling", "asked for"
    if mode == "events":
        return "events", "asked for"
    fstype = filesystem_type(path, mounts_text)
    if is_network_filesystem(fstype):
        return "polling", f"{fstype} mount gives no file events"
    return "events", f"inotify on {fstype or 'local disk'}"


class _Wake(FileSystemEventHandler):
    def __init__(self, event: threading.Event):
        self.event = event

    def on_any_event(self, event) -> None:  # noqa: ANN001 - watchdog's event type
        self.event.set()


class FolderWatcher:
    """Sets `woken` on any change in one folder (not recursive). `wait()` sleeps until then."""

    def __init__(self, folder: str | os.PathLike[str], mode: str = "auto", poll_seconds: float = 5.0,
                 mounts_text: str | None = None):
        self.folder = Path(folder)
        self.poll_seconds = poll_seconds
        self.kind, self.reason = choose_observer(self.folder, mode, mounts_text)
        self.woken = threading.Event()
        self._observer = None

    def start(self) -> None:
        try:
            self._observer = self._start(self.kind)
        except OSError as exc:
            if self.kind == "polling":
                raise
            # e.g. the inotify watch limit is reached: polling still works
            self.kind, self.reason = "polling", f"inotify failed ({exc.strerror or exc})"
            self._observer = self._start("polling")

    def _start(self, kind: str):
        observer = PollingObserver(timeout=self.poll_seconds) if kind == "polling" else Observer()
        observer.schedule(_Wake(self.woken), str(self.folder), recursive=False)
        observer.daemon = True
        observer.start()
        return observer

    def wait(self, timeout: float) -> bool:
        """Sleep until a change (True) or `timeout` seconds (False); clears the flag."""
        woken = self.woken.wait(max(0.0, timeout))
        self.woken.clear()
        return woken

    def wake(self) -> None:
        """Wake `wait()` now (used to stop)."""
        self.woken.set()

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None
