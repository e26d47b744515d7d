"""The scrub: backup copies hashed again, a few at a time, so a change their size and times do not
show (bit rot, a filesystem-level write) is found, reported as a conflict and kept until solved."""

import json
import os
import threading
from pathlib import Path

import pytest

from engine.campaign.chamber import load_chamber
from engine.cli.main import main as cli
from engine.formats.geometry import SMALL
from engine.formats.tomlfile import ConfigError
from engine.monitor import BackupConflict, MonitorNotice, load_monitor_settings
from engine.monitor.backup import SCRUB_ONCE_MAX_SECONDS, Backup, FolderTarget, SourceFile, file_signature
from engine.sim.elvis import SimulationRequest, simulate

HOUR = 3600.0


class Clock:
    def __init__(self, now: float = 1_700_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


class Night:
    """A day folder of `files` frames of `size` bytes, one backup target, the ledger and scrub state
    kept as the monitor state keeps them (each run() is a restarted monitor)."""

    def __init__(self, root: Path, files: int = 4, size: int = 4096, clock: Clock | None = None):
        self.source = root / "data" / "12_Mar_19"
        self.source.mkdir(parents=True)
        self.target_root = root / "backup"
        self.target_root.mkdir()
        self.clock = clock or Clock()
        self.saved = {"ledger": {}, "scrub": {}}
        self.events: list = []
        for obsid in range(1000, 1000 + files):
            (self.source / self.name(obsid)).write_bytes(bytes([obsid % 256]) * size)

    @staticmethod
    def name(obsid: int) -> str:
        return f"EUC_{obsid}_120319D090134T_ROE1_CCD1.fits"

    def copy_of(self, obsid: int) -> Path:
        return self.target_root / "12_Mar_19" / self.name(obsid)

    def backup(self, scrub_hours: float = 12.0) -> Backup:
        saved = json.loads(json.dumps(self.saved))
        backup = Backup(self.source, [FolderTarget(self.target_root, "12_Mar_19")], saved["ledger"],
                        threading.RLock(), self.events.append, clock=self.clock, scrub_hours=scrub_hours,
                        scrub_state=saved["scrub"])
        backup.offer([SourceFile(p.name, "frame", p.stat().st_size) for p in sorted(self.source.iterdir())])
        self._live = saved
        return backup

    def keep(self) -> None:
        self.saved = json.loads(json.dumps(self._live))

    def entry(self, obsid: int) -> dict:
        return self.saved["ledger"][str(self.target_root)][self.name(obsid)]

    def report(self, backup: Backup):
        return next(iter(backup.report().values()))


def _rot(path: Path) -> None:
    """A byte changed as bit rot would: size, times and inode as they were. (ctime cannot be set back
    by a user; the ledger's copy signature is set to the new one, as a filesystem that hid the
    change would leave it.)"""
    info = path.stat()
    with open(path, "r+b") as handle:
        handle.seek(100)
        byte = handle.read(1)
        handle.seek(100)
        handle.write(bytes([byte[0] ^ 0xFF]))
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))


def _hide(night: Night, obsid: int) -> None:
    night.saved["ledger"][str(night.target_root)][night.name(obsid)]["copy_sig"] = file_signature(night.copy_of(obsid))


def test_a_change_the_signature_hides_is_found_by_the_scrub_and_stays_a_conflict(tmp_path):
    night = Night(tmp_path)
    backup = night.backup()
    backup.run_pass(threading.Event())
    night.keep()
    assert night.entry(1001)["verified"] == night.clock.now  # verified when published
    _rot(night.copy_of(1001))
    _hide(night, 1001)

    backup = night.backup()
    backup.run_pass(threading.Event())
    assert night.report(backup).copied == 4  # by signature nothing changed: not seen without hashing
    assert backup.scrub_due() == []  # and checked less than scrub_hours ago

    night.clock.now += 12 * HOUR
    counts = backup.scrub()
    assert counts == {"checked": 4, "bytes": 4 * 4096, "changed": 1}
    backup.run_pass(threading.Event())
    night.keep()
    report = night.report(backup)
    assert list(report.conflicts) == [night.name(1001)] and report.copied == 3
    [conflict] = [e for e in night.events if isinstance(e, BackupConflict)]
    assert "keeping its size and times" in conflict.message() and "hashed again" in conflict.message()
    kept = night.copy_of(1001).with_name(conflict.kept_as)
    assert kept.read_bytes() == (night.source / night.name(1001)).read_bytes()  # the good content beside it
    assert night.copy_of(1001).read_bytes() != kept.read_bytes()  # the backup itself never overwritten

    backup = night.backup()  # a restart: still a conflict
    backup.run_pass(threading.Event())
    assert list(night.report(backup).conflicts) == [night.name(1001)]
    night.copy_of(1001).unlink()  # solved by hand
    backup.run_pass(threading.Event())
    assert not night.report(backup).conflicts and night.report(backup).copied == 4


def test_the_scrub_checks_a_few_per_cycle_the_longest_unverified_first(tmp_path):
    night = Night(tmp_path, files=5, size=1000)
    backup = night.backup()
    backup.run_pass(threading.Event())
    for obsid, age in zip(range(1000, 1005), (20, 30, 15, 40, 13)):  # hours since each was verified
        backup.ledger[str(night.target_root)][night.name(obsid)]["verified"] = night.clock.now - age * HOUR
    order = [name for _, name in backup.scrub_due()]
    assert order == [night.name(o) for o in (1003, 1001, 1000, 1002, 1004)]
    assert backup.scrub(budget=1500)["checked"] == 2  # a file begun is finished: 2 of 1000 bytes
    assert [name for _, name in backup.scrub_due()] == [night.name(o) for o in (1000, 1002, 1004)]
    assert backup.scrub(budget=1)["checked"] == 1
    assert backup.scrub(budget=None)["checked"] == 2
    assert backup.scrub_due() == []


def test_a_once_run_hashes_what_the_pace_allows_since_the_last_scrub(tmp_path):
    night = Night(tmp_path)
    backup = night.backup()
    assert backup.scrub_budget() == int(4e6 * SCRUB_ONCE_MAX_SECONDS)  # never scrubbed: the cap (1.2 GB)
    backup.scrub()
    night.clock.now += 60
    assert backup.scrub_budget() == int(4e6 * 60)  # cron every minute: 240 MB a run
    night.clock.now += 10 * HOUR
    assert backup.scrub_budget() == int(4e6 * SCRUB_ONCE_MAX_SECONDS)


def test_the_background_scrub_reads_at_its_pace(tmp_path):
    night = Night(tmp_path, files=2, size=3 * 1024 * 1024)
    backup = night.backup()
    backup.run_pass(threading.Event())
    waits = []

    class Stop(threading.Event):
        def wait(self, timeout=None):  # the pace's waits, recorded instead of slept
            waits.append(timeout)
            return False

    night.clock.now += 13 * HOUR
    assert backup.scrub(paced=True, stop=Stop())["checked"] == 2
    assert sum(waits) == pytest.approx(2 * 3 * 1024 * 1024 / 4e6)  # 6.3 MB at 4 MB/s: 1.6 s of reading


def test_a_changed_copy_whose_source_is_gone_is_a_conflict_until_put_back(tmp_path):
    night = Night(tmp_path, files=2)
    backup = night.backup()
    backup.run_pass(threading.Event())
    good = night.copy_of(1000).read_bytes()
    (night.source / night.name(1000)).unlink()  # the acquisition disk was cleaned
    _rot(night.copy_of(1000))
    assert backup.scrub(everything=True)["changed"] == 1
    report = night.report(backup)
    assert list(report.conflicts) == [night.name(1000)]
    said = [e.text for e in night.events if isinstance(e, MonitorNotice) and e.level == "warning"]
    assert len(said) == 1 and "its source is no longer in" in said[0] and "restore it from another copy" in said[0]
    assert backup.scrub(everything=True)["checked"] == 1  # the other copy; the conflict only when touched
    night.copy_of(1000).write_bytes(good)  # restored from another backup
    backup.scrub()
    assert not night.report(backup).conflicts and night.report(backup).copied == 2
    assert any(isinstance(e, MonitorNotice) and "is solved" in e.text for e in night.events)


def test_scrub_settings_in_monitor_toml(tmp_path):
    path = tmp_path / "monitor.toml"
    path.write_text("[monitor]\nscrub_hours = 24\nscrub_mb_per_s = 10\n")
    settings = load_monitor_settings(path)
    assert (settings.scrub_hours, settings.scrub_mb_per_s) == (24.0, 10.0)
    path.write_text("[monitor]\nscrub_mb_per_s = 0\n")
    with pytest.raises(ConfigError) as caught:
        load_monitor_settings(path)
    assert "monitor.toml:2" in str(caught.value) and "scrub_mb_per_s" in str(caught.value)


@pytest.fixture(scope="module")
def day(tmp_path_factory) -> Path:
    return simulate(SimulationRequest(tests=("BIAS01",), out=tmp_path_factory.mktemp("data"),
                                      chamber=load_chamber("B_NOSTROMO"), geometry=SMALL, jobs=1)).day_folder


def test_cli_verify_backup_finds_it_and_the_exit_stays_non_zero(day, tmp_path, capsys):
    backup = tmp_path / "backup"
    backup.mkdir()
    state = tmp_path / "state.json"
    once = ["monitor", str(day), "--once", "--backup", str(backup), "--state", str(state), "--settle", "0"]
    assert cli(once) == 0
    name = sorted(p.name for p in day.glob("EUC_*.fits"))[3]
    copy = backup / day.name / name
    _rot(copy)
    saved = json.loads(state.read_text())
    saved["backup"][str(backup)][name]["copy_sig"] = file_signature(copy)
    state.write_text(json.dumps(saved))
    capsys.readouterr()
    assert cli(once) == 0  # verified minutes ago: not due yet, not seen
    verify = ["monitor", str(day), "--verify-backup", "--backup", str(backup), "--state", str(state)]
    assert cli(verify) == 1
    out = capsys.readouterr()
    assert "verified 41 backup copies" in out.out and "1 changed" in out.out
    assert f"1 conflict(s) ({name})" in out.err and "Traceback" not in out.err
    assert cli(once) == 1  # until solved
    assert cli(["monitor", str(day), "--verify-backup", "--state", str(tmp_path / "s2.json")]) == 2
    assert "give the backup" in capsys.readouterr().err
