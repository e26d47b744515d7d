"""Following the day folder: observers, resuming from the state, settings, summaries, the CLI."""

import json
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
from engine.formats.tomlfile import ConfigError
from engine.monitor import (ExposureLogged, FrameArrived, HKOutOfLimits, Monitor, MonitorSettings, MonitorStarted,
                            StateLocked, choose_observer, filesystem_type, load_monitor_settings)
from engine.paths import configs_dir
from engine.sim.elvis import SimulationRequest, StreamPacing, simulate
from engine.sim.housekeeping import HKExcursion

NOSTROMO = load_chamber("B_NOSTROMO")

MOUNTS = """\
/dev/vda / ext4 rw,relatime 0 0
server:/export/caldata /disk/euclid_caldata04 nfs4 rw,relatime 0 0
//mssl3m/EEDisk5 /mssl3m/D5 cifs rw,relatime 0 0
raf@msslus:/data2 /home/raf/us fuse.sshfs rw 0 0
/dev/vdb /mnt/with\\040space xfs rw 0 0
"""


def _request(out, tests=("BIAS01",), excursions=()):
    return SimulationRequest(tests=tests, out=out, chamber=NOSTROMO, geometry=SMALL, jobs=1,
                             hk_excursions=tuple(HKExcursion.parse(e) for e in excursions))


def _wait_until(condition, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_network_mounts_are_polled(tmp_path):
    assert filesystem_type("/disk/euclid_caldata04/data04/12_Mar_19", MOUNTS) == "nfs4"
    assert filesystem_type("/mnt/with space/x", MOUNTS) == "xfs"
    assert filesystem_type("/disk/euclid_caldata0", MOUNTS) == "ext4"  # a prefix of a name is not inside it
    assert choose_observer("/mssl3m/D5/NOSTROMO/data/12_Mar_19", "auto", MOUNTS) == (
        "polling", "cifs mount gives no file events")
    assert choose_observer("/home/raf/us/x", "auto", MOUNTS)[0] == "polling"
    assert choose_observer("/data/12_Mar_19", "auto", MOUNTS) == ("events", "inotify on ext4")
    assert choose_observer("/mssl3m/D5", "events", MOUNTS) == ("events", "asked for")
    assert choose_observer(tmp_path, "polling") == ("polling", "asked for")


def test_polling_observer_follows_a_stream(tmp_path):
    request = _request(tmp_path / "src", tests=("DARK01",))
    request.day_folder.mkdir(parents=True)
    settings = MonitorSettings(settle_seconds=0.1, polling="polling", poll_seconds=0.1)
    monitor = Monitor(request.day_folder, settings, state_path=tmp_path / "state.json")
    events = []
    monitor.subscribe(lambda e: events.append((time.monotonic(), e)))
    stop = threading.Event()
    runner = threading.Thread(target=monitor.run, args=(stop,))
    runner.start()
    landed = []
    simulate(request, StreamPacing(frame_interval_s=0.3), on_exposure=lambda e: landed.append(time.monotonic()))
    assert _wait_until(lambda: len(monitor.store.state.frames_done) == 12)
    monitor.stop()
    runner.join(10)
    started = next(e for _, e in events if isinstance(e, MonitorStarted))
    assert (started.observer, started.observer_reason) == ("polling", "asked for")
    logged = {e.obsid: t for t, e in events if isinstance(e, ExposureLogged)}
    assert sorted(logged) == [1000, 1001, 1002, 1003]
    # seen while the stream went on, within a few polls of landing
    assert all(logged[1000 + i] - landed[i] < 1.0 for i in range(4))
    assert logged[1000] < landed[-1]


def test_a_restarted_monitor_resumes_without_repeating_itself(tmp_path):
    request = _request(tmp_path / "src", excursions=["CCD1_TEMP_T=-246@1002", "CCD1_TEMP_T=-246@1003"])
    simulate(request)
    day = request.day_folder
    log = next(day.glob("EXP_LOG_*"))
    full = log.read_bytes()
    lines = full.split(b"\n")
    log.write_bytes(b"\n".join(lines[:1 + 3 * 4]) + b"\n")  # OBSIDs 1000-1003 logged so far
    for later in list(day.glob("*")):
        obsid = later.name.split("_")[1]
        if obsid.isdigit() and int(obsid) >= 1005:
            later.unlink()  # not acquired yet
    time.sleep(0.15)
    settings = MonitorSettings(settle_seconds=0.1)
    first = []
    monitor = Monitor(day, settings, state_path=tmp_path / "state.json")
    monitor.subscribe(first.append)
    monitor.run_once()
    assert [(e.key, e.obsid) for e in first if isinstance(e, HKOutOfLimits)] == [("CCD1_TEMP_T", 1002)]
    assert monitor.store.state.alerts["CCD1_TEMP_T"]["since_obsid"] == 1002  # 1004's HK has no row yet
    # the rest is acquired; a new monitor process carries on from the state
    log.write_bytes(full)
    simulate(_request(tmp_path / "rest", excursions=["CCD1_TEMP_T=-246@1002", "CCD1_TEMP_T=-246@1003"]))
    for path in (tmp_path / "rest" / day.name).iterdir():
        if not (day / path.name).exists():
            path.rename(day / path.name)
    time.sleep(0.15)
    second = []
    resumed = Monitor(day, settings, state_path=tmp_path / "state.json")
    resumed.subscribe(second.append)
    resumed.run_once()
    assert next(e for e in second if isinstance(e, MonitorStarted)).resumed
    assert sorted(e.obsid for e in second if isinstance(e, ExposureLogged)) == list(range(1004, 1010))
    assert {e.obsid for e in second if isinstance(e, FrameArrived)} == set(range(1005, 1010))
    assert [e for e in second if isinstance(e, HKOutOfLimits)] == []  # 1003 continued the 1002 alert
    assert [(e.key, e.obsid) for e in second if e.kind == "hk_back_in_limits"] == [("CCD1_TEMP_T", 1004)]
    # the summary still knows the whole day
    snapshot = resumed.snapshot()
    assert [e.obsid for e in snapshot.exposures] == list(range(1000, 1010))
    assert [p.describe() for p in snapshot.progress] == ["BIAS01 10/10 frames (complete)"]


def test_one_monitor_per_state_file(tmp_path):
    day = tmp_path / "12_Mar_19"
    day.mkdir()
    first = Monitor(day, state_path=tmp_path / "state.json")
    first.open()
    with pytest.raises(StateLocked, match="in use by another monitor"):
        Monitor(day, state_path=tmp_path / "state.json").open()
    first.close("test")
    Monitor(day, state_path=tmp_path / "state.json").run_once()


def test_snapshot_for_the_app(tmp_path):
    request = _request(tmp_path / "src", excursions=["CCD3_TEMP_B=-125@1008"])
    simulate(request)
    time.sleep(0.15)
    monitor = Monitor(request.day_folder, MonitorSettings(settle_seconds=0.1, series_length=200),
                      state_path=tmp_path / "state.json")
    monitor.run_once()
    snapshot = monitor.snapshot(max_exposures=3)
    assert [e.obsid for e in snapshot.exposures] == [1007, 1008, 1009]
    exposure = snapshot.exposures[1]
    assert exposure.test == "BIAS01" and exposure.ccds == ("CCD1", "CCD2", "CCD3")
    assert exposure.rows["CCD2"]["ObsID"] == 1008 and exposure.hk_status == "warning"
    temp = snapshot.key("CCD3_TEMP_B")
    assert len(temp.values) == len(temp.times) == 200  # bounded (10 files hold 710)
    assert temp.minimum == -125.0 and temp.limit == (-121.0, -119.0) and temp.unit == "C"
    assert temp.status == "ok" and not temp.alert_active  # the last file, 1009, is back within limits
    assert snapshot.hk[0].key in monitor.limits  # limited keys first
    json.dumps(snapshot.to_dict())  # plain data all the way down
    assert snapshot.to_dict()["progress"][0]["text"] == "BIAS01 10/10 frames (complete)"


def test_monitor_settings_file(tmp_path):
    assert load_monitor_settings(configs_dir() / "monitor_template.toml").repeat_minutes == 60
    good = tmp_path / "monitor.toml"
    good.write_text(
        '[monitor]\nrepeat_minutes = 15\nsettle_seconds = 1.5\n'
        '[alerts.email]\nhost = "smtp.lab"\nfrom = "m@lab.org"\nto = "ops@lab.org"\n'
        '[alerts.command]\nargv = ["/bin/sms", "+44"]\nlevel = "warning"\n'
        '[limits.CCD1_TEMP_T]\nP = { kind = "A", lo = -125.0, hi = -115.0 }\n')
    settings = load_monitor_settings(good)
    assert (settings.repeat_minutes, settings.settle_seconds) == (15, 1.5)
    assert settings.email.to == ("ops@lab.org",) and settings.email.port == 25
    assert settings.command.argv == ("/bin/sms", "+44") and settings.command.level == "warning"
    assert settings.load_limits().check("CCD1_TEMP_T", -124.0).ok

    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[monitor]\n'
        'repeat_minute = 15\n'           # line 2: typo
        'polling = "sometimes"\n'        # line 3
        '[alerts.email]\n'
        'port = 25\n'                    # host, from, to missing
        '[limits.CCD1_TEMP_TT]\n'        # line 6: typo of a key
        'P = { kind = "A", lo = -1, hi = 1 }\n'
        '[limits.CCD2_TEMP_T]\n'
        'P = { kind = "A", lo = 5, hi = 1 }\n')  # line 9
    with pytest.raises(ConfigError) as caught:
        load_monitor_settings(bad)
    text = str(caught.value)
    assert "bad.toml:2: monitor.repeat_minute: unknown key 'repeat_minute'; did you mean 'repeat_minutes'?" in text
    assert "bad.toml:3: monitor.polling: expected one of 'auto', 'events', 'polling'; got 'sometimes'" in text
    assert "alerts.email.host: missing required key 'host'" in text
    assert "bad.toml:6: limits.CCD1_TEMP_TT: unknown HK key 'CCD1_TEMP_TT'; did you mean 'CCD1_TEMP_T'?" in text
    assert "bad.toml:9: limits.CCD2_TEMP_T.P: expected lo <= hi, found lo = 5, hi = 1" in text


def test_cli_once_json_and_exit_codes(tmp_path, capsys):
    clean = simulate(_request(tmp_path / "clean", tests=("DARK01",))).day_folder
    hot = simulate(_request(tmp_path / "hot", tests=("DARK01",), excursions=["CCD1_TEMP_T=-246@1001"])).day_folder
    time.sleep(0.15)
    backup = tmp_path / "backup"
    backup.mkdir()
    code = cli(["monitor", str(clean), "--once", "--json", "--settle", "0.1", "--state", str(tmp_path / "a.json"),
                "--backup", str(backup), "--log", str(tmp_path / "monitor.log")])
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0
    assert events[0]["kind"] == "monitor_started" and events[-1]["kind"] == "monitor_stopped"
    assert events[-1]["backup"][str(backup)]["copied"] == 4 * 4 + 1
    assert (tmp_path / "monitor.log").read_text().count("\n") == len(events)
    code = cli(["monitor", str(hot), "--once", "--settle", "0.1", "--state", str(tmp_path / "b.json")])
    out = capsys.readouterr().out
    assert code == 1  # something needs a look
    assert "CRITICAL  OBSID 1001 CCD1_TEMP_T = -246 C" in out and "frame complete" not in out

    settings = tmp_path / "monitor.toml"
    settings.write_text("[monitor]\nsettle_seconds = -1\n")
    code = cli(["monitor", str(clean), "--once", "--monitor-config", str(settings)])
    assert code == 2 and "monitor.toml:2: monitor.settle_seconds: expected a number >= 0" in capsys.readouterr().err
    code = cli(["monitor", str(tmp_path / "12_Mar_20"), "--once", "--state", str(tmp_path / "c.json")])
    assert code == 2 and "does not exist" in capsys.readouterr().err


def test_idle_stop(tmp_path):
    day = simulate(_request(tmp_path / "src", tests=("DARK01",))).day_folder
    monitor = Monitor(day, MonitorSettings(settle_seconds=0.05, polling="events"), state_path=tmp_path / "s.json")
    started = time.monotonic()
    stopped = monitor.run(idle_stop_minutes=0.01)  # 0.6 s without news
    assert stopped.reason == "idle" and time.monotonic() - started < 5
    assert len(monitor.store.state.frames_done) == 12


def test_sigterm_stops_cleanly_with_state_saved(tmp_path):
    day = simulate(_request(tmp_path / "src", tests=("DARK01",))).day_folder
    state = tmp_path / "state.json"
    command = [sys.executable, "-c", "import sys; from engine.cli.main import main; sys.exit(main(sys.argv[1:]))",
               "monitor", str(day), "--json", "--settle", "0.05", "--state", str(state)]
    process = subprocess.Popen(command, cwd=Path(__file__).resolve().parent.parent, stdout=subprocess.PIPE, text=True)
    first = json.loads(process.stdout.readline())
    assert first["kind"] == "monitor_started" and first["observer"] == "events"
    assert _wait_until(lambda: state.exists() and len(json.loads(state.read_text())["frames_done"]) == 12)
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=10)
    assert process.returncode == 0
    assert json.loads(out.splitlines()[-1])["reason"] == "interrupted"
    assert len(json.loads(state.read_text())["hk_done"]) == 4


def test_settings_beside_the_campaign_and_its_watch_table(tmp_path):
    from engine.campaign.config import load_campaign
    from engine.monitor import settings_for

    (tmp_path / "data").mkdir()
    campaign_file = tmp_path / "campaign.toml"
    campaign_file.write_text(
        '[campaign]\nblock = "NOSTROMO"\nchamber = "B_NOSTROMO"\n'
        '[paths]\ndata = "data"\nresults = "results"\n'
        '[watch]\npolling = "polling"\npoll_seconds = 2\n'
        '[sessions.D11]\ntests = ["BIAS01"]\n')
    campaign = load_campaign(campaign_file)
    settings = settings_for(campaign)
    assert (settings.polling, settings.poll_seconds, settings.chamber) == ("polling", 2.0, "B_NOSTROMO")
    (tmp_path / "monitor.toml").write_text('[monitor]\npolling = "events"\nrepeat_minutes = 5\n')
    settings = settings_for(campaign)
    assert (settings.polling, settings.poll_seconds, settings.repeat_minutes) == ("events", 2.0, 5)
    assert settings_for().polling == "auto"
