"""Issue 16, items 7 and 13: a failing alert sink never stops the monitor; the backup is what it says."""

import io
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from engine.campaign.chamber import load_chamber
from engine.cli.main import main as cli
from engine.formats.geometry import SMALL
from engine.monitor import (AlertDeliveryFailed, AlertDispatcher, BackupConflict, BackupCopied, BackupFailed,
                            CallbackSink, Monitor, MonitorNotice, MonitorSettings, StreamSink)
from engine.monitor import backup as backup_module
from engine.monitor.alerts import LogSink
from engine.monitor.backup import Backup, FolderTarget, SourceFile
from engine.sim.elvis import SimulationRequest, simulate

NOSTROMO = load_chamber("B_NOSTROMO")
FAST = MonitorSettings(settle_seconds=0.1, poll_seconds=0.1, polling="events")


def _later() -> float:
    """An injected clock an hour ahead: every file has settled."""
    return time.time() + 3600


@pytest.fixture(scope="module")
def day(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data")
    return simulate(SimulationRequest(tests=("BIAS01",), out=out, chamber=NOSTROMO, geometry=SMALL, jobs=1)).day_folder


# -- 7: a sink that cannot be written ------------------------------------------------------------

def test_a_log_that_is_a_folder_is_reported_once_on_the_others(tmp_path):
    folder = tmp_path / "monitor.log"
    folder.mkdir()
    console, seen = io.StringIO(), []
    dispatcher = AlertDispatcher()
    dispatcher.on_failure = lambda event: dispatcher.dispatch([event])  # as the monitor does
    dispatcher.add(LogSink(folder))
    dispatcher.add(StreamSink(console))
    dispatcher.add(CallbackSink(seen.append, "info"))
    for i in range(3):
        dispatcher.dispatch([MonitorNotice(text=f"event {i}", level="warning")])
    failures = [e for e in seen if isinstance(e, AlertDeliveryFailed)]
    assert len(failures) == 1 and "Is a directory" in failures[0].reason
    assert console.getvalue().count("alert by log") == 1
    assert [e.text for e in seen if isinstance(e, MonitorNotice)] == ["event 0", "event 1", "event 2"]
    assert dispatcher.failing() == {f"log {folder}": failures[0].reason}


def test_two_failing_sinks_never_recurse_and_a_recovered_one_is_said(tmp_path):
    seen, broken = [], {"on": True}

    def flaky(_event):
        if broken["on"]:
            raise OSError("screen gone")

    dispatcher = AlertDispatcher()
    dispatcher.on_failure = lambda event: dispatcher.dispatch([event])
    dispatcher.add(LogSink(tmp_path))  # a folder
    dispatcher.add(CallbackSink(flaky, "info", "app"))
    dispatcher.add(CallbackSink(seen.append, "info", "test"))
    dispatcher.dispatch([MonitorNotice(text="one", level="warning")])
    dispatcher.dispatch([MonitorNotice(text="two", level="warning")])
    assert sorted(e.sink for e in seen if isinstance(e, AlertDeliveryFailed)) == ["app", f"log {tmp_path}"]
    broken["on"] = False
    dispatcher.dispatch([MonitorNotice(text="three", level="warning")])
    assert any(isinstance(e, MonitorNotice) and "alert by app works again" in e.text for e in seen)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full to stand for a full disk")
def test_a_monitor_whose_log_disk_is_full_goes_on_and_backs_up(day, tmp_path):
    seen = []
    backup = tmp_path / "backup"
    backup.mkdir()
    monitor = Monitor(day, FAST, state_path=tmp_path / "state.json", log_path="/dev/full", targets=[str(backup)],
                      clock=_later)
    monitor.subscribe(seen.append)
    monitor.run_once()
    failures = [e for e in seen if isinstance(e, AlertDeliveryFailed)]
    assert len(failures) == 1 and "No space left" in failures[0].reason
    copied = [e for e in seen if isinstance(e, BackupCopied)]
    assert len(copied) == len([p for p in day.iterdir() if p.is_file()])


def test_a_state_disk_that_refuses_is_reported_and_the_monitor_goes_on(day, tmp_path, monkeypatch):
    seen = []
    monitor = Monitor(day, FAST, state_path=tmp_path / "state.json", clock=_later)
    monitor.subscribe(seen.append)

    def full(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(monitor.store, "save", full)
    monitor.run_once()
    said = [e.text for e in seen if isinstance(e, MonitorNotice) and "cannot save the monitor state" in e.text]
    assert len(said) == 1 and "No space left" in said[0]
    assert monitor.store._lock_handle is None  # closed and unlocked all the same


def test_cli_log_that_is_a_folder_is_one_line(day, tmp_path, capsys):
    code = cli(["monitor", str(day), "--once", "--log", str(tmp_path), "--state", str(tmp_path / "s.json")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: --log") and "is a folder" in err and "Traceback" not in err


# -- 13: the backup is what it says -------------------------------------------------------------

class _Day:
    """A tiny day folder and one backup target, with the ledger kept as the monitor state keeps it."""

    def __init__(self, root: Path):
        self.source = root / "data" / "12_Mar_19"
        self.source.mkdir(parents=True)
        (root / "backup").mkdir()
        self.target_root = root / "backup"
        self.ledger_json = "{}"
        self.events: list = []
        for obsid in (1000, 1001):
            (self.source / self.name(obsid)).write_bytes(bytes(range(256)) * 64)

    @staticmethod
    def name(obsid: int) -> str:
        return f"EUC_{obsid}_120319D090134T_ROE1_CCD1.fits"

    def copy_of(self, obsid: int) -> Path:
        return self.target_root / "12_Mar_19" / self.name(obsid)

    def run(self) -> Backup:
        """One monitor run: a fresh Backup on the saved ledger (a restart), one pass, ledger saved."""
        ledger = json.loads(self.ledger_json)
        backup = Backup(self.source, [FolderTarget(self.target_root, "12_Mar_19")], ledger, threading.RLock(),
                        self.events.append)
        files = [SourceFile(p.name, "frame", p.stat().st_size) for p in sorted(self.source.iterdir())]
        backup.offer(files)
        backup.run_pass(threading.Event())
        self.ledger_json = json.dumps(ledger)
        return backup

    def report(self, backup: Backup):
        return next(iter(backup.report().values()))


def _flip_byte_keeping_times(path: Path) -> None:
    info = path.stat()
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    with open(path, "r+b") as handle:
        handle.write(data)
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))


def test_a_backup_copy_changed_after_copying_is_a_conflict_until_solved(tmp_path):
    setup = _Day(tmp_path)
    assert setup.report(setup.run()).copied == 2
    _flip_byte_keeping_times(setup.copy_of(1000))  # same size, same mtime
    report = setup.report(setup.run())
    assert report.copied == 1 and list(report.conflicts) == [setup.name(1000)]
    conflict = [e for e in setup.events if isinstance(e, BackupConflict)]
    assert len(conflict) == 1 and "backup copy changed" in conflict[0].message()
    kept = setup.copy_of(1000).with_name(conflict[0].kept_as)
    assert kept.read_bytes() == (setup.source / setup.name(1000)).read_bytes()  # a good copy beside it
    setup.events.clear()
    assert list(setup.report(setup.run()).conflicts) == [setup.name(1000)]  # still, after a restart
    assert not [e for e in setup.events if isinstance(e, BackupConflict)]  # but said once
    setup.copy_of(1000).unlink()  # solved by hand: the damaged copy removed
    report = setup.report(setup.run())
    assert report.copied == 2 and not report.conflicts
    assert setup.copy_of(1000).read_bytes() == (setup.source / setup.name(1000)).read_bytes()


def test_a_source_changed_after_copying_is_a_conflict(tmp_path):
    setup = _Day(tmp_path)
    setup.run()
    before = setup.copy_of(1001).read_bytes()
    _flip_byte_keeping_times(setup.source / setup.name(1001))
    report = setup.report(setup.run())
    assert list(report.conflicts) == [setup.name(1001)]
    assert setup.copy_of(1001).read_bytes() == before  # the backup is never overwritten
    assert any(isinstance(e, BackupConflict) and "source changed after it was copied" in e.message()
               for e in setup.events)


def test_a_source_rewritten_while_copied_is_not_published(tmp_path, monkeypatch):
    setup = _Day(tmp_path)
    write_temp = backup_module._write_temp
    rewrites = []

    def rewriting(source, size, folder, name, stop):
        written = write_temp(source, size, folder, name, stop)
        if not rewrites:  # ELVIS rewrites the file while we copy it, keeping size and time
            rewrites.append(name)
            _flip_byte_keeping_times(source)
        return written

    monkeypatch.setattr(backup_module, "_write_temp", rewriting)
    report = setup.report(setup.run())
    torn = setup.name(1000)
    assert torn in report.pending and report.copied == 1 and not setup.copy_of(1000).exists()
    assert any(isinstance(e, BackupFailed) and "changed while being copied" in e.reason for e in setup.events)
    report = setup.report(setup.run())
    assert report.copied == 2 and setup.copy_of(1000).read_bytes() == (setup.source / torn).read_bytes()


def test_cli_exit_is_not_zero_while_a_conflict_stands(day, tmp_path, capsys):
    backup = tmp_path / "backup"
    backup.mkdir()
    state = tmp_path / "state.json"
    args = ["monitor", str(day), "--once", "--backup", str(backup), "--state", str(state), "--settle", "0"]
    cli(args)
    name = sorted(p.name for p in day.glob("EUC_*.fits"))[0]
    _flip_byte_keeping_times(backup / day.name / name)
    capsys.readouterr()
    assert cli(args) == 1
    assert cli(args) == 1  # a restart that sees nothing new still says so
    err = capsys.readouterr().err
    assert f"1 conflict(s) ({name})" in err and "Traceback" not in err


# -- 14: the alert history is kept across restarts ---------------------------------------------------

def test_alert_history_survives_a_restart(day, tmp_path):
    backup = tmp_path / "backup"
    backup.mkdir()
    state = tmp_path / "state.json"
    first = Monitor(day, FAST, state_path=state, targets=[str(backup)], clock=_later)
    first.run_once()
    name = sorted(p.name for p in day.glob("EUC_*.fits"))[0]
    _flip_byte_keeping_times(backup / day.name / name)
    second = Monitor(day, FAST, state_path=state, targets=[str(backup)], clock=_later)
    second.run_once()
    conflicts = [e for e in second.history() if e["kind"] == "backup_conflict"]
    assert len(conflicts) == 1 and conflicts[0]["name"] == name
    third = Monitor(day, FAST, state_path=state, targets=[str(backup)], clock=_later)
    third.open()
    try:
        assert [e["kind"] for e in third.history()] == [e["kind"] for e in second.history()]
        assert json.loads(state.read_text())["history"][-1]["kind"] == "backup_conflict"
    finally:
        third.close("test")


# -- a backup disk that fills or refuses during the night -------------------------------------------

@pytest.fixture
def small_backup_disk(tmp_path):
    """A 300 kB tmpfs: a few frames of the small day fit, not all."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a full disk needs a tmpfs mount, which needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_full_backup_disk_is_one_warning_and_what_fits_is_verified(day, small_backup_disk, tmp_path):
    seen = []
    monitor = Monitor(day, FAST, state_path=tmp_path / "state.json", targets=[str(small_backup_disk)], clock=_later)
    monitor.subscribe(seen.append)
    stopped = monitor.run_once()
    failed = [e for e in seen if isinstance(e, BackupFailed)]
    assert [e.name for e in failed] == ["(target)"]  # one warning for the disk, not one per file
    assert "No space left on device" in failed[0].message() and "nothing is copied there" in failed[0].message()
    report = stopped.backup[str(small_backup_disk)]
    assert report["failed_files"] == {"(target)": failed[0].reason} and report["pending"] > 0
    copies = [p for p in (small_backup_disk / day.name).iterdir()]
    assert report["copied"] == len(copies) > 0  # no temporary file left, each copy whole
    for copy in copies:
        assert copy.read_bytes() == (day / copy.name).read_bytes()
