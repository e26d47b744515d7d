"""Is a recorded process still ours? Reused pids and zombies, for run status, stop and clean-up."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.cli.main import main as cli
from engine.pipeline.cleanup import run_in_use
from engine.process import ENDED, RUNNING, UNCONFIRMED, check_process, process_command, process_start_ticks
from engine.pipeline.runs import RunRecord, run_status, stop_run

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")


@pytest.fixture
def stranger():
    """An unrelated long-lived process: what a pid from an old run record may now belong to."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield process
    process.kill()
    process.wait()


@pytest.fixture
def zombie():
    """A child that has exited and is not reaped yet."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    start = process_start_ticks(process.pid)
    for _ in range(500):  # until it has exited (bounded: a few seconds at most)
        if Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z":
            break
        time.sleep(0.01)
    yield process, start
    process.wait()


def write_record(folder: Path, **info) -> RunRecord:
    folder.mkdir(parents=True)
    record = {"id": folder.name, "host": socket.gethostname(), "detached": True, "session": "D11", "mode": "wait",
              **info}
    (folder / "run.json").write_text(json.dumps(record))
    (folder / "state.json").write_text(json.dumps({"state": "running", "activity": "waiting for data"}))
    return RunRecord.load(folder)


def test_our_own_process_is_confirmed_by_start_time_or_command() -> None:
    pid = os.getpid()
    assert check_process(pid, process_start_ticks(pid)).state == RUNNING
    assert check_process(pid, command=process_command(pid)).state == RUNNING
    assert check_process(pid, process_start_ticks(pid) + 1).state == ENDED
    assert check_process(pid, command=["vison-engine", "run"]).state == ENDED
    assert check_process(pid).state == UNCONFIRMED  # nothing recorded to confirm it


def test_a_reused_pid_is_not_our_run_and_stop_leaves_it_alone(tmp_path, stranger, capsys) -> None:
    later = write_record(tmp_path / "runs" / "R1", pid=stranger.pid, pgid=stranger.pid,
                         pid_start=process_start_ticks(stranger.pid) - 1)  # our run started earlier
    status = run_status(later)
    assert status.alive is False and status.state == "died"
    assert "now belongs to a process started later" in status.process_note
    stop_run(later, timeout=0.5, force=True)
    assert cli(["stop", str(later.folder), "--force", "--timeout", "0.5"]) == 0
    assert "not stopped" in capsys.readouterr().out
    time.sleep(0.2)
    assert stranger.poll() is None  # never signalled


def test_a_record_without_start_time_never_signals_the_pid(tmp_path, stranger, capsys) -> None:
    old = write_record(tmp_path / "runs" / "R2", pid=stranger.pid, pgid=stranger.pid)
    status = run_status(old)
    assert status.alive is None and status.state == "unknown"
    assert "no start time" in status.process_note and "never signalled" in status.process_note
    assert stop_run(old, timeout=0.5, force=True).alive is None
    assert cli(["stop", str(old.folder), "--force", "--timeout", "0.5"]) == 1
    out = capsys.readouterr().out
    assert "not stopped" in out and "no start time" in out
    assert cli(["status", str(old.folder)]) == 0
    assert "never signalled" in capsys.readouterr().out
    time.sleep(0.2)
    assert stranger.poll() is None


def test_a_recorded_command_that_differs_means_the_pid_was_reused(tmp_path, stranger) -> None:
    record = write_record(tmp_path / "runs" / "R3", pid=stranger.pid,
                          command=[sys.executable, "-m", "engine.cli", "run", "c.toml", "--run-id", "R3"])
    assert run_status(record).state == "died"
    stop_run(record, timeout=0.5, force=True)
    assert stranger.poll() is None


def test_a_zombie_counts_as_ended(tmp_path, zombie) -> None:
    process, start = zombie
    check = check_process(process.pid, start)
    assert check.state == ENDED and "zombie" in check.reason
    record = write_record(tmp_path / "runs" / "R4", pid=process.pid, pid_start=start)
    assert run_status(record).state == "died"


def test_cleanup_uses_the_same_check(tmp_path, stranger, zombie) -> None:
    runs = tmp_path / "runs"
    own = os.getpid()
    ours = write_record(runs / "ours", pid=own, pid_start=process_start_ticks(own))
    reused = write_record(runs / "reused", pid=stranger.pid, pid_start=process_start_ticks(stranger.pid) - 1)
    unconfirmed = write_record(runs / "unconfirmed", pid=stranger.pid)
    dead = write_record(runs / "zombie", pid=zombie[0].pid, pid_start=zombie[1])

    assert "still going" in run_in_use(ours.folder)
    assert run_in_use(reused.folder) is None  # removable: its run has ended
    assert run_in_use(dead.folder) is None
    assert "no start time" in run_in_use(unconfirmed.folder)  # kept: it might be the run
