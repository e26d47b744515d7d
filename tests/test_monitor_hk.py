"""The monitor's HK checks against the simulator's streamed output with injected excursions."""

import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from engine.campaign.chamber import load_chamber
from engine.formats.geometry import SMALL
from engine.formats.hklimits import load_hk_limits
from engine.monitor import HKBackInLimits, HKOutOfLimits, HKReadProblem, Monitor, MonitorSettings
from engine.monitor.hkwatch import HKWatch
from engine.sim.elvis import SimulationRequest, StreamPacing, simulate
from engine.sim.housekeeping import HKExcursion

NOSTROMO = load_chamber("B_NOSTROMO")
FAST = MonitorSettings(settle_seconds=0.1, poll_seconds=0.1, polling="events")


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


def _follow_stream(tmp_path, excursions, settings=FAST, interval=0.12):
    """Run the monitor live while the simulator streams; return its events."""
    request = _request(tmp_path / "src", excursions=excursions)
    request.day_folder.mkdir(parents=True)
    monitor = Monitor(request.day_folder, settings, state_path=tmp_path / "state.json")
    events = []
    monitor.subscribe(events.append)
    stop = threading.Event()
    runner = threading.Thread(target=monitor.run, args=(stop,))
    runner.start()
    simulate(request, StreamPacing(frame_interval_s=interval))
    # every HK file read and finished: nothing more can come
    assert _wait_until(lambda: len(monitor.store.state.hk_done) == 10)
    stop.set()
    monitor.stop()
    runner.join(10)
    assert not runner.is_alive()
    return monitor, events


def test_every_streamed_excursion_is_reported_once_with_its_key_and_obsid(tmp_path):
    excursions = ["CCD1_TEMP_T=-246@1002", "CCD2_OD_T=20@1005", "RPSU_28V_PRI_I=0.9@1005", "VccdErrFlg=1@1008"]
    monitor, events = _follow_stream(tmp_path, excursions)
    alerts = [e for e in events if isinstance(e, HKOutOfLimits)]
    assert sorted((a.key, a.obsid) for a in alerts) == [
        ("CCD1_TEMP_T", 1002), ("CCD2_OD_T", 1005), ("RPSU_28V_PRI_I", 1005), ("VccdErrFlg", 1008)]
    by_key = {a.key: a for a in alerts}
    temp = by_key["CCD1_TEMP_T"]
    assert temp.status == "critical" and temp.value == -246.0 and "disconnected" in temp.reason
    assert temp.limit == (-133.0, 35.0) and temp.tier == "S"
    assert temp.path.name.startswith("HK_1002_") and temp.line is not None
    assert isinstance(temp.time, datetime) and temp.time.date() == datetime(2019, 3, 12).date()
    # relative limit: OD against its commanded value from the EXP_LOG row of the same exposure
    od = by_key["CCD2_OD_T"]
    assert od.limit_kind == "R" and od.value == 20.0 and od.limit[0] < 26 < od.limit[1]
    assert by_key["VccdErrFlg"].limit_kind == "I"
    # each cleared once the next exposure's HK is within limits
    cleared = sorted((e.key, e.obsid, e.since_obsid) for e in events if isinstance(e, HKBackInLimits))
    assert cleared == [("CCD1_TEMP_T", 1003, 1002), ("CCD2_OD_T", 1006, 1005),
                       ("RPSU_28V_PRI_I", 1006, 1005), ("VccdErrFlg", 1009, 1008)]
    assert monitor.store.state.alerts == {}
    statuses = {e.obsid: e.hk_status for e in monitor.snapshot().exposures}
    # OBSID 1005: OD outside its performance limits, the 28 V current outside its safe ones
    assert (by_key["CCD2_OD_T"].status, by_key["RPSU_28V_PRI_I"].status) == ("warning", "critical")
    assert (statuses[1001], statuses[1002], statuses[1005], statuses[1008]) == ("ok", "critical", "critical", "critical")


def test_no_alert_when_everything_is_within_limits(tmp_path):
    monitor, events = _follow_stream(tmp_path, [])
    assert [e for e in events if e.severity != "info"] == []
    assert sorted({e.obsid for e in events if e.kind == "exposure_logged"}) == list(range(1000, 1010))
    snapshot = monitor.snapshot()
    assert all(k.status == "ok" for k in snapshot.hk if k.key in monitor.limits)


def test_relative_limits_wait_for_the_exposure_log_row(tmp_path):
    # HK read before its EXP_LOG row: OD cannot be judged yet, and is judged when the row lands
    request = _request(tmp_path / "src", excursions=["CCD3_OD_B=24@1001"])
    simulate(request)
    day = request.day_folder
    explog = day / "EXP_LOG_120319.txt"
    full = explog.read_bytes()
    lines = full.split(b"\n")
    explog.write_bytes(b"\n".join(lines[:4]) + b"\n")  # header + OBSID 1000 only
    time.sleep(0.15)
    monitor = Monitor(day, FAST, state_path=tmp_path / "state.json")
    first = monitor.scan()
    assert [e for e in first if isinstance(e, HKOutOfLimits)] == []
    assert "HK_1001" in " ".join(monitor.store.state.hk_open)  # waiting for its row
    explog.write_bytes(full)
    time.sleep(0.15)
    second = monitor.scan()
    alerts = [e for e in second if isinstance(e, HKOutOfLimits)]
    assert [(a.key, a.obsid, a.limit_kind) for a in alerts] == [("CCD3_OD_B", 1001, "R")]
    monitor.close("test")


def test_non_numeric_hk_value_is_reported_with_file_and_line_and_the_rest_is_used(tmp_path):
    request = _request(tmp_path / "src", excursions=["CCD2_TEMP_B=-150@1004"])
    simulate(request)
    path = next(request.day_folder.glob("HK_1004_*.txt"))
    lines = path.read_bytes().decode().split("\r\n")
    header = lines[0].split("\t")
    cells = lines[9].split("\t")  # line 10 of the file
    cells[header.index("CCD1_TEMP_T")] = "n/a"
    lines[9] = "\t".join(cells)
    path.write_bytes("\r\n".join(lines).encode())
    time.sleep(0.15)
    collected = []
    monitor = Monitor(request.day_folder, FAST, state_path=tmp_path / "state.json")
    monitor.subscribe(collected.append)
    monitor.run_once()
    problems = [e for e in collected if isinstance(e, HKReadProblem)]
    assert len(problems) == 1
    problem = problems[0]
    assert (problem.path.name, problem.line, problem.key) == (path.name, 10, "CCD1_TEMP_T")
    assert path.name in problem.message() and "line 10" in problem.message() and "'n/a'" in problem.message()
    # the rest of the file was used: the other key's excursion in the same file is caught
    alerts = [(e.key, e.obsid) for e in collected if isinstance(e, HKOutOfLimits)]
    assert alerts == [("CCD2_TEMP_B", 1004)]
    series = monitor.snapshot().key("CCD1_TEMP_T")
    assert sum(np.isnan(series.values)) == 1 and series.minimum is not None


def test_elvis_5_7_hk_file_is_checked(tmp_path):
    # the real lab layout: HK_timestamp HH:MM:SS, padded names, CRLF, a blank last line
    day = tmp_path / "05_Aug_00"
    day.mkdir()
    header = ["HK_timestamp", "HK_temp_top_CCD1 ", " HK_temp_bottom_CCD1", "HK_OD_Top_CCD1", "HK_VCCD_RPSU"]
    rows = ["23:59:58\t-120.01\t-119.98\t26.0\t33.5", "23:59:59\t-246.08\t-119.97\t26.0\t33.5",
            "00:00:00\t-119.99\t-120.02\t26.0\t33.5"]
    path = day / "HK_191_050800D235958T_ROE1.txt"
    path.write_bytes(("\r\n".join(["\t".join(header)] + rows) + "\r\n\r\n").encode())
    time.sleep(0.15)
    collected = []
    monitor = Monitor(day, FAST, state_path=tmp_path / "state.json")
    monitor.subscribe(collected.append)
    monitor.run_once()
    alerts = [e for e in collected if isinstance(e, HKOutOfLimits)]
    assert [(a.key, a.value, a.status, a.line) for a in alerts] == [("CCD1_TEMP_T", -246.08, "critical", 3)]
    assert alerts[0].time == datetime(2000, 8, 5, 23, 59, 59)


def _rows(key, values, start=datetime(2019, 3, 12, 9, 0, 0), step=timedelta(seconds=1)):
    return [{"line": i + 2, "time": start + i * step, key: v} for i, v in enumerate(values)]


def test_alert_repeats_only_after_the_interval_or_on_escalation():
    limits = load_hk_limits()
    watch = HKWatch(limits, {}, repeat_minutes=30)
    path = Path("HK_1_120319D090000T_ROE1.txt")
    sent = []
    start = datetime(2019, 3, 12, 9, 0, 0)
    for minute, value in [(0, -125.0), (10, -125.0), (20, -140.0), (25, -140.0), (55, -140.0), (70, -125.0)]:
        rows = _rows("CCD1_TEMP_T", [value], start + timedelta(minutes=minute))
        sent += watch.check_rows(rows, path=path, obsid=minute, commanded=None).events
    # warning at 0; critical escalation at 20; a reminder 30 min after that (55); -125 at 70 is not news
    assert [(e.obsid, e.status, e.escalated, e.repeat) for e in sent] == [
        (0, "warning", False, False), (20, "critical", True, False), (55, "critical", False, True)]
    cleared = watch.file_finished(obsid=71, seen={"CCD1_TEMP_T"}, bad=set())
    assert [(c.key, c.since_obsid) for c in cleared] == [("CCD1_TEMP_T", 0)]
    again = watch.check_rows(_rows("CCD1_TEMP_T", [-125.0], start + timedelta(minutes=80)),
                             path=path, obsid=80, commanded=None).events
    assert len(again) == 1 and not again[0].repeat  # after clearing, news again


def test_a_file_still_out_of_limits_does_not_clear_and_zero_means_never_repeat():
    watch = HKWatch(load_hk_limits(), {}, repeat_minutes=0)
    path = Path("HK_1_120319D090000T_ROE1.txt")
    start = datetime(2019, 3, 12, 9)
    first = watch.check_rows(_rows("CCD1_TEMP_T", [-119.5, -125.0, -119.6]), path=path, obsid=1, commanded=None)
    assert len(first.events) == 1 and first.bad == {"CCD1_TEMP_T"}
    assert watch.file_finished(obsid=1, seen=first.seen, bad=first.bad) == []
    later = watch.check_rows(_rows("CCD1_TEMP_T", [-125.0], start + timedelta(days=1)), path=path, obsid=2,
                             commanded=None)
    assert later.events == []


def test_an_empty_hk_file_is_said_once_it_is_finished(tmp_path):
    from engine.formats.explog import write_explog

    day = tmp_path / "25_Jul_19"
    day.mkdir()
    write_explog(day / "EXP_LOG_250719.txt", [{"ObsID": 1000, "File_name": "EUC_1000_250719D121603T_ROE1_CCD1",
                                              "CCD": "CCD1", "date": "250719D121603T", "test": "BIAS01"}])
    empty = day / "HK_1000_250719D121603T_ROE1.txt"
    empty.write_bytes(b"")
    now = [empty.stat().st_mtime]  # the moment it was written
    collected = []
    monitor = Monitor(day, FAST, state_path=tmp_path / "state.json", clock=lambda: now[0])
    monitor.subscribe(collected.append)
    monitor.run_once()
    assert [e for e in collected if isinstance(e, HKReadProblem)] == []  # ELVIS may not have written it yet
    now[0] += 60  # settled, and its exposure is logged: it will never hold more
    monitor.run_once()
    problems = [e for e in collected if isinstance(e, HKReadProblem)]
    assert [(p.path.name, p.line, p.key) for p in problems] == [(empty.name, None, None)]
    assert problems[0].message() == f"{empty.name}: empty file (no header, no sample): no HK for this exposure"
    monitor.close("test")
