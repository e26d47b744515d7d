"""The monitor's backup: verified, byte-identical, resumable, never overwriting."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from engine.campaign.chamber import load_chamber
from engine.cli.main import main as cli
from engine.formats.geometry import SMALL
from engine.monitor import BackupConflict, BackupCopied, Monitor, MonitorSettings, check_fits
from engine.monitor.backup import FolderTarget, is_remote, make_target, rsync_available
from engine.sim.elvis import SimulationRequest, StreamPacing, simulate

NOSTROMO = load_chamber("B_NOSTROMO")
FAST = MonitorSettings(settle_seconds=0.1, poll_seconds=0.1, polling="events")
REPO = Path(__file__).resolve().parent.parent


def _request(out, tests=("BIAS01",)):
    return SimulationRequest(tests=tests, out=out, chamber=NOSTROMO, geometry=SMALL, jobs=1)


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def _wait_until(condition, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    """A whole simulated day folder (batch), old enough to count as settled."""
    result = simulate(_request(tmp_path_factory.mktemp("sim")))
    time.sleep(0.15)
    return result.day_folder


def _monitor_cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from engine.cli.main import main; sys.exit(main(sys.argv[1:]))",
            "monitor", *args]


def test_backup_and_broadcast_hold_byte_identical_copies(day, tmp_path):
    backup, broadcast = tmp_path / "backup", tmp_path / "broadcast"
    backup.mkdir(), broadcast.mkdir()
    events = []
    monitor = Monitor(day, FAST, targets=[str(backup), str(broadcast)], state_path=tmp_path / "state.json")
    monitor.subscribe(events.append)
    stopped = monitor.run_once()
    source = _digests(day)
    assert len(source) == 10 * 4 + 1
    assert _digests(backup / day.name) == source
    assert _digests(broadcast / day.name) == source
    report = stopped.backup[str(backup)]
    assert (report["copied"], report["pending"], report["failed"], report["conflicts"]) == (41, 0, 0, 0)
    assert report["copied_bytes"] == sum(p.stat().st_size for p in day.iterdir())
    copied = [e for e in events if isinstance(e, BackupCopied)]
    assert len(copied) == 82 and all(e.sha256 == source[e.name] for e in copied)
    # the EXP_LOG is copied after the frames it names
    names = [e.name for e in copied if e.target == str(backup)]
    assert names[-1].startswith("EXP_LOG_")
    # a second run copies nothing
    again = []
    rerun = Monitor(day, FAST, targets=[str(backup), str(broadcast)], state_path=tmp_path / "state.json")
    rerun.subscribe(again.append)
    rerun.run_once()
    assert [e for e in again if isinstance(e, BackupCopied)] == []


def test_killed_between_temporary_copy_and_rename_then_restarted(day, tmp_path):
    backup = tmp_path / "backup"
    backup.mkdir()
    state = tmp_path / "state.json"
    # a monitor process that dies (SIGKILL: no cleanup at all) at its 7th rename into place
    killer = (
        "import os, signal, sys\n"
        "import engine.monitor.backup as backup\n"
        "original, count = backup.publish, [0]\n"
        "def publish(tmp, dest, *, replace):\n"
        "    count[0] += 1\n"
        "    if count[0] == 7:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return original(tmp, dest, replace=replace)\n"
        "backup.publish = publish\n"
        "from engine.cli.main import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    args = ["monitor", str(day), "--once", "--backup", str(backup), "--state", str(state), "--settle", "0.1", "--json"]
    killed = subprocess.run([sys.executable, "-c", killer, *args], cwd=REPO, capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL
    target = backup / day.name
    leftovers = [p.name for p in target.iterdir() if p.name.endswith(".vison-part")]
    assert len(leftovers) == 1  # the verified temporary copy that never got its name
    assert len([p for p in target.iterdir() if not p.name.startswith(".")]) == 6
    restarted = subprocess.run(_monitor_cli(*args[1:]), cwd=REPO, capture_output=True, text=True)
    assert restarted.returncode == 0, restarted.stderr
    assert _digests(target) == _digests(day)  # identical, and no temporary or conflict file left
    events = [json.loads(line) for line in restarted.stdout.splitlines()]
    assert not [e for e in events if e["kind"] in ("backup_conflict", "backup_failed")]
    assert len([e for e in events if e["kind"] == "backup_copied"]) == 41 - 6


def test_monitor_killed_while_following_a_stream_resumes_the_backup(tmp_path):
    request = _request(tmp_path / "src")
    request.day_folder.mkdir(parents=True)
    backup = tmp_path / "backup"
    backup.mkdir()
    state = tmp_path / "state.json"
    args = [str(request.day_folder), "--backup", str(backup), "--state", str(state), "--settle", "0.1", "--json"]
    live = subprocess.Popen(_monitor_cli(*args), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    streamer = threading.Thread(target=simulate, args=(request, StreamPacing(frame_interval_s=0.15)))
    streamer.start()
    target = backup / request.day_folder.name
    try:
        assert _wait_until(lambda: target.is_dir() and len(list(target.glob("EUC_*.fits"))) >= 9)
    finally:
        live.send_signal(signal.SIGKILL)
        live.wait(10)
    streamer.join(30)
    assert len(list(request.day_folder.glob("EUC_*.fits"))) == 30
    time.sleep(0.15)
    restarted = subprocess.run(_monitor_cli(*args, "--once"), cwd=REPO, capture_output=True, text=True)
    assert restarted.returncode == 0, restarted.stderr
    assert _digests(target) == _digests(request.day_folder)


def test_half_written_frames_are_not_copied_until_complete(tmp_path):
    # a settle time far shorter than the writer's pause: only the size check can hold them back
    request = _request(tmp_path / "src", tests=("DARK01",))
    request.day_folder.mkdir(parents=True)
    backup = tmp_path / "backup"
    backup.mkdir()
    settings = MonitorSettings(settle_seconds=0.02, poll_seconds=0.05, polling="polling")
    monitor = Monitor(request.day_folder, settings, targets=[str(backup)], state_path=tmp_path / "state.json")
    copies, explog_copies = [], []

    def watch(event):
        if isinstance(event, BackupCopied):
            copies.append(event)
            if event.name.startswith("EXP_LOG"):
                explog_copies.append((backup / request.day_folder.name / event.name).read_bytes())

    monitor.subscribe(watch)
    stop = threading.Event()
    runner = threading.Thread(target=monitor.run, args=(stop,))
    runner.start()
    simulate(request, StreamPacing(frame_interval_s=0.05, partial_pause_s=0.1))
    assert _wait_until(lambda: sum(1 for c in copies if c.name.endswith(".fits")) == 12)
    stop.set()
    monitor.stop()
    runner.join(10)
    final = _digests(request.day_folder)
    # every frame copied once, and only in its final form
    frames = [c for c in copies if c.name.endswith(".fits")]
    assert len(frames) == 12 and all(c.sha256 == final[c.name] for c in frames)
    # every copy of the growing EXP_LOG ended on a complete line and was a prefix of the final log
    log = next(request.day_folder.glob("EXP_LOG_*")).read_bytes()
    assert explog_copies and all(c.endswith(b"\n") and log.startswith(c) for c in explog_copies)


def test_fits_completeness_from_its_headers(day, tmp_path):
    frame = next(day.glob("EUC_*.fits"))
    data = frame.read_bytes()
    assert check_fits(frame).complete
    for cut in (100, 2880, 2880 * 2, len(data) // 2, len(data) - 1):
        partial = tmp_path / frame.name
        partial.write_bytes(data[:cut])
        result = check_fits(partial)
        assert not result.complete, cut
    partial.write_bytes(data + b"\0" * 2880)  # bytes after the end: not what ELVIS wrote
    assert not check_fits(partial).complete


def test_a_different_file_of_the_same_name_is_kept_and_reported(day, tmp_path):
    backup = tmp_path / "backup"
    target = backup / day.name
    target.mkdir(parents=True)
    frame = sorted(day.glob("EUC_*.fits"))[4]
    hk = sorted(day.glob("HK_*.txt"))[2]
    (target / frame.name).write_bytes(b"someone else's frame")
    (target / hk.name).write_bytes(hk.read_bytes().replace(b"\t", b" ", 1))  # same size, other bytes
    events = []
    monitor = Monitor(day, FAST, targets=[str(backup)], state_path=tmp_path / "state.json")
    monitor.subscribe(events.append)
    stopped = monitor.run_once()
    assert (target / frame.name).read_bytes() == b"someone else's frame"  # never overwritten
    conflicts = {e.name: e for e in events if isinstance(e, BackupConflict)}
    assert set(conflicts) == {frame.name, hk.name}
    ours = conflicts[frame.name]
    assert ours.kept_as == f"{frame.name}.conflict-{ours.new_sha256[:8]}" and ours.severity == "warning"
    assert (target / ours.kept_as).read_bytes() == frame.read_bytes()
    assert (target / conflicts[hk.name].kept_as).read_bytes() == hk.read_bytes()
    report = stopped.backup[str(backup)]
    assert report["conflicts"] == 2 and report["conflict_files"][frame.name] == ours.kept_as
    assert report["copied"] == 39 and report["pending"] == 0
    # reported once: a second run leaves both alone and says nothing new
    again = []
    rerun = Monitor(day, FAST, targets=[str(backup)], state_path=tmp_path / "state.json")
    rerun.subscribe(again.append)
    rerun.run_once()
    assert [e for e in again if isinstance(e, (BackupConflict, BackupCopied))] == []


def test_a_shorter_copy_of_the_growing_exposure_log_is_updated(day, tmp_path):
    backup = tmp_path / "backup"
    target = backup / day.name
    target.mkdir(parents=True)
    log = next(day.glob("EXP_LOG_*"))
    lines = log.read_bytes().split(b"\n")
    (target / log.name).write_bytes(b"\n".join(lines[:5]) + b"\n")  # an earlier copy
    events = []
    monitor = Monitor(day, FAST, targets=[str(backup)], state_path=tmp_path / "state.json")
    monitor.subscribe(events.append)
    monitor.run_once()
    assert (target / log.name).read_bytes() == log.read_bytes()
    updated = [e for e in events if isinstance(e, BackupCopied) and e.name == log.name]
    assert [e.updated for e in updated] == [True]


def test_stale_temporary_files_are_removed_and_missing_roots_refused(tmp_path):
    root = tmp_path / "backup"
    (root / "12_Mar_19").mkdir(parents=True)
    stale = root / "12_Mar_19" / ".EUC_1_120319D090000T_ROE1_CCD1.fits.4242.vison-part"
    stale.write_bytes(b"half")
    target = FolderTarget(root, "12_Mar_19")
    assert target.prepare() == [stale.name] and not stale.exists()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        make_target(str(tmp_path / "typo"), "12_Mar_19")


def test_remote_targets_need_rsync(tmp_path):
    assert is_remote("msslus:/data2/gaia/Quarantine") and is_remote("raf@msslus:/data")
    assert not is_remote(str(tmp_path)) and not is_remote("/data/backup")
    if not rsync_available():
        with pytest.raises(FileNotFoundError, match="needs rsync"):
            make_target("msslus:/data2/quarantine", "12_Mar_19")


def test_cli_refuses_a_missing_backup_folder(day, tmp_path, capsys):
    code = cli(["monitor", str(day), "--once", "--backup", str(tmp_path / "nope"), "--state", str(tmp_path / "s.json")])
    assert code == 2
    assert "does not exist (create it first)" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "nope")


def test_a_failed_copy_is_reported_once_and_retried(day, tmp_path, monkeypatch):
    import engine.monitor.backup as backup_module

    backup = tmp_path / "backup"
    backup.mkdir()
    original = backup_module.publish

    def disk_full(tmp, dest, *, replace):
        if dest.name.startswith("HK_1003"):
            raise OSError(28, "No space left on device")
        return original(tmp, dest, replace=replace)

    monkeypatch.setattr(backup_module, "publish", disk_full)
    events = []
    monitor = Monitor(day, FAST, targets=[str(backup)], state_path=tmp_path / "state.json")
    monitor.subscribe(events.append)
    monitor.open()
    monitor.scan()
    monitor.backup.run_pass()
    monitor.backup.run_pass()  # tried again, not reported again
    failed = [e for e in events if e.kind == "backup_failed"]
    assert len(failed) == 1 and failed[0].name.startswith("HK_1003") and "No space" in failed[0].reason
    report = monitor.backup_report()[str(backup)]
    assert list(report.failed) == [failed[0].name] and report.copied == 40
    assert not list((backup / day.name).glob(".*"))  # no temporary file left behind
    monkeypatch.setattr(backup_module, "publish", original)
    monitor.backup.run_pass()
    report = monitor.backup_report()[str(backup)]
    assert report.failed == {} and report.copied == 41
    monitor.close("test")
    assert _digests(backup / day.name) == _digests(day)
