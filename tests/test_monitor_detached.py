"""Detached monitors (issue 16 item 14): `vison-engine monitor DAY --backup DIR --detach` runs in the
background with a record that `monitors` lists and `status`/`stop` act on, through the same
process-identity check as pipeline runs; stopped, it saves its state, and a restarted one keeps the
alert history. Bounded polling with generous timeouts: several processes share two loaded cores."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.campaign.chamber import load_chamber
from engine.cli.main import main as cli
from engine.formats.geometry import SMALL
from engine.monitor.detached import (MonitorRecord, MonitorStartError, find_monitor, list_monitors, monitor_status,
                                     start_detached_monitor, stop_monitor)
from engine.monitor.state import state_in_use
from engine.process import ENDED, check_process, process_start_ticks
from engine.sim.elvis import SimulationRequest, simulate
from engine.sim.housekeeping import HKExcursion

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")

TIMEOUT_S = 90.0
MONITOR_TOML = '[monitor]\nsettle_seconds = 0.2\npolling = "polling"\npoll_seconds = 0.2\n'


@pytest.fixture
def place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("VISON_STATE_DIR", str(tmp_path / "records"))  # inherited by the detached monitors
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "monitor.toml").write_text(MONITOR_TOML)
    (tmp_path / "backup").mkdir()
    yield tmp_path
    for record in list_monitors():  # a failed test leaves no monitor behind
        stop_monitor(record, timeout=20, force=True)


def request(data: Path) -> SimulationRequest:
    return SimulationRequest(tests=("BIAS01",), out=data, chamber=load_chamber("B_NOSTROMO"), geometry=SMALL, jobs=1,
                             hk_excursions=(HKExcursion("CCD1_TEMP_T", -246.0, 1003),))


def wait_until(condition, what: str, timeout: float = TIMEOUT_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def events_of(record: MonitorRecord) -> list[dict]:
    try:
        return [json.loads(line) for line in record.events_path.read_text().splitlines() if line.strip()]
    except OSError:
        return []


def ccd1_alerts(events) -> list:
    return [e for e in events if (e["kind"] if isinstance(e, dict) else e.kind) == "hk_out_of_limits"
            and (e["key"] if isinstance(e, dict) else e.key) == "CCD1_TEMP_T"]


def start(place: Path, capsys) -> MonitorRecord:
    before = {r.monitor_id for r in list_monitors()}
    code = cli(["monitor", "data/12_Mar_19", "--backup", "backup", "--monitor-config", "monitor.toml", "--detach"])
    out = capsys.readouterr().out
    assert code == 0, out
    (record,) = [r for r in list_monitors() if r.monitor_id not in before]
    assert f"Monitor {record.monitor_id} started in the background" in out
    wait_until(lambda: monitor_status(record).state == "running", "the monitor to say it runs")
    return record


def test_detached_monitor_progresses_stops_cleanly_and_keeps_its_history(place: Path, capsys) -> None:
    # started before ELVIS makes the day folder: it waits for it, as an overnight monitor does
    record = start(place, capsys)
    info = record.info
    assert info["day_folder"] == str(place / "data" / "12_Mar_19")
    assert info["backup"] == [str(place / "backup")]
    assert info["pid"] and info["pid_start"] == process_start_ticks(info["pid"]) and info["command"]
    assert Path(info["state_file"]).parent == place / "xdg" / "vison" / "monitor"
    assert Path(info["log"]).parent == record.folder
    assert cli(["monitors"]) == 0
    listed = capsys.readouterr().out
    assert record.monitor_id in listed and "running" in listed and str(place / "backup") in listed

    # a second monitor on the same day folder (the same state file) is refused, with the reason
    with pytest.raises(MonitorStartError, match="in use by another monitor|already follows"):
        start_detached_monitor(place / "data" / "12_Mar_19")

    simulate(request(place / "data"))
    copied = place / "backup" / "12_Mar_19"
    # frames landing are backed up; the HK excursion alerts
    wait_until(lambda: len(list(copied.glob("*.fits"))) == 30, "the 30 frames in the backup")
    wait_until(lambda: ccd1_alerts(events_of(record)), "the CCD1_TEMP_T alert")
    def copied_all():
        snapshot = record.read_snapshot()
        report = snapshot.backup.get(str(place / "backup"), {}) if snapshot else {}
        return snapshot if (report.get("copied"), report.get("pending")) == (41, 0) else None

    snapshot = wait_until(copied_all, "41 files copied and verified")
    assert len(snapshot.exposures) == 10
    assert cli(["status", record.monitor_id]) == 0
    assert "RUNNING" in capsys.readouterr().out

    pid = record.info["pid"]
    assert cli(["stop", record.monitor_id]) == 0
    said = capsys.readouterr().out
    assert "stopped (SIGTERM received)" in said
    status = monitor_status(record)
    assert (status.state, status.alive, status.exit_code) == ("stopped", False, 0)
    assert check_process(pid, record.info["pid_start"]).state == ENDED
    assert state_in_use(record.info["state_file"]) is None  # the lock is released
    saved = json.loads(Path(record.info["state_file"]).read_text())
    assert ccd1_alerts(saved["history"]) and len(saved["backup"][str(place / "backup")]) == 41
    assert "monitor stopped" in Path(record.info["log"]).read_text().lower()

    # started again: a new record, the same state: the history is there and nothing is alerted again
    again = start(place, capsys)
    assert again.monitor_id != record.monitor_id
    history = again.read_history()
    assert len(ccd1_alerts(history)) == 1 and history[0].obsid == 1003
    wait_until(lambda: any(e["kind"] == "monitor_started" and e["resumed"] for e in events_of(again)),
               "the restarted monitor to resume")
    time.sleep(1.0)
    assert not ccd1_alerts(events_of(again))
    assert stop_monitor(again, timeout=TIMEOUT_S).state == "stopped"
    assert len(ccd1_alerts(again.read_history())) == 1


def test_a_reused_pid_is_never_signalled(place: Path, capsys) -> None:
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        folder = place / "records" / "monitors" / "MON20190312_090000_12_Mar_19"
        folder.mkdir(parents=True)
        info = {"id": folder.name, "host": socket.gethostname(), "detached": True, "pid": stranger.pid,
                "day_folder": str(place / "data" / "12_Mar_19"), "started": "2019-03-12T09:00:00",
                "command": [sys.executable, "-m", "engine.cli", "monitor", "data/12_Mar_19"]}
        (folder / "state.json").write_text(json.dumps({"state": "running"}))
        # the record's process ended long ago; its pid now belongs to another process (a later start)
        (folder / "monitor.json").write_text(json.dumps({**info, "pid_start": process_start_ticks(stranger.pid) - 1}))
        assert cli(["stop", folder.name]) == 0
        assert "not stopped" in capsys.readouterr().out
        assert stranger.poll() is None
        assert monitor_status(find_monitor(folder.name)).state == "died"
        # no start time recorded, another command line: still not taken for the monitor
        (folder / "monitor.json").write_text(json.dumps(info))
        assert stop_monitor(MonitorRecord.load(folder), timeout=1).alive is False
        assert stranger.poll() is None
        # neither start time nor command: a live pid that cannot be confirmed is never signalled either
        (folder / "monitor.json").write_text(json.dumps({k: v for k, v in info.items() if k != "command"}))
        assert cli(["stop", str(folder)]) == 1
        assert "not stopped" in capsys.readouterr().out and stranger.poll() is None
        assert monitor_status(MonitorRecord.load(folder)).state == "unknown"
    finally:
        stranger.kill()
        stranger.wait()


def test_detach_refuses_what_it_cannot_do(place: Path, capsys) -> None:
    (place / "data" / "12_Mar_19").mkdir(parents=True)
    assert cli(["monitor", "data/12_Mar_19", "--once", "--detach"]) == 2
    assert "--once" in capsys.readouterr().err
    (place / "camp.toml").write_text("[campaign]\nname = 'x'\n")
    assert cli(["monitor", "data/12_Mar_19", "--state", "camp.toml", "--detach"]) == 2
    assert "not a monitor state" in capsys.readouterr().err
    assert list_monitors() == [] and os.path.getsize(place / "camp.toml") > 0
