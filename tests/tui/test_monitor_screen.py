"""Screen 6 driven by keys, on a day folder streamed by the ELVIS simulator with an injected HK
excursion: the alert is listed and notified (also while another screen is shown, with the bell),
the EXP-LOG grows, progress and backup counts follow; the HK list filters and sorts."""

from __future__ import annotations

import dataclasses
import os
import re
import threading
import time
from pathlib import Path

import pytest

from engine.campaign.chamber import load_chamber
from engine.formats.geometry import SMALL
from engine.monitor import BackupFailed, HKBackInLimits, HKOutOfLimits
from engine.sim.elvis import SimulationRequest, StreamPacing, simulate
from engine.sim.housekeeping import HKExcursion
from vison_tui.dialogs.text_prompt import TextPrompt
from vison_tui.screens.campaign import CampaignScreen
from vison_tui.screens.monitor import MonitorScreen, Throttle, alert_for, newest_day_folder
from vison_tui.widgets.acquisition_progress import AcquisitionProgress
from vison_tui.widgets.alert_list import AlertList
from vison_tui.widgets.backup_status import BackupStatus
from vison_tui.widgets.explog_table import ExpLogTable, taken_at
from vison_tui.widgets.hk_sparklines import HKSparklines

from .conftest import SIZE, settle, to_monitor_screen

# quick settling and polling: files of the small geometry are whole at once
MONITOR_TOML = '[monitor]\nsettle_seconds = 0.2\npolling = "polling"\npoll_seconds = 0.2\n'
LONG_AGO = 1552381200  # 2019-03-12 09:00 UTC, the simulated day
TIMEOUT_S = 45.0  # generous: a loaded 2-core machine runs the simulator, the monitor and the app at once


def bias_request(data: Path, excursion_obsid: int) -> SimulationRequest:
    return SimulationRequest(tests=("BIAS01",), out=data, chamber=load_chamber("B_NOSTROMO"), geometry=SMALL,
                             jobs=1, hk_excursions=(HKExcursion("CCD1_TEMP_T", -246.0, excursion_obsid),))


@pytest.fixture
def monitored(demo_campaign: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """monitor.toml beside the demo campaign, the monitor's state in tmp_path, a backup folder."""
    (demo_campaign.parent / "monitor.toml").write_text(MONITOR_TOML)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    # the monitor as a thread of the app (these tests watch its events in-process); detached monitors,
    # the default, are tested in test_monitor_detached.py
    monkeypatch.setattr(MonitorScreen, "DETACH", False)
    backup = tmp_path / "backup"
    backup.mkdir()
    return backup


async def wait_for(pilot, condition, what: str, timeout: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        await pilot.pause(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def type_in_prompt(pilot, text: str) -> None:
    await pilot.pause()
    assert isinstance(pilot.app.screen, TextPrompt)
    await pilot.press("ctrl+u", *text, "enter")
    await pilot.pause()


def words(widget) -> str:
    return str(widget.render())


async def test_streamed_session(app, demo_campaign: Path, monitored: Path) -> None:
    request = bias_request(demo_campaign.parent / "data", excursion_obsid=1006)
    go_on = threading.Event()

    def hold(exposure) -> None:  # the stream pauses after 1002: the test sees a test partly acquired
        if exposure.obsid == 1002:
            go_on.wait(TIMEOUT_S)

    streamer = threading.Thread(target=simulate, args=(request, StreamPacing(frame_interval_s=0.1)),
                                kwargs={"on_exposure": hold}, daemon=True)
    bells = []
    app.bell = lambda: bells.append(True)
    try:
        async with app.run_test(size=SIZE) as pilot:
            screen = await to_monitor_screen(pilot)
            await pilot.press("s")  # no day folder yet: refused, with the way out
            await pilot.pause()
            assert not screen.running
            assert any("d" in n.message and "day folder" in n.message for n in app._notifications)

            # the day folder ELVIS has not made yet, then the backup folder: typed in their prompts
            await pilot.press("d")
            await type_in_prompt(pilot, "12_Mar_19")
            assert screen.day_choice == request.day_folder
            await pilot.press("b")
            await type_in_prompt(pilot, str(monitored))
            await pilot.press("s")
            await wait_for(pilot, lambda: "waiting for the day folder" in words(screen.query_one("#monitor-status")),
                           "the monitor to wait for the day folder")
            streamer.start()

            table = screen.query_one(ExpLogTable)
            await wait_for(pilot, lambda: table.row_count == 3, "the first three exposures in the EXP-LOG")
            await wait_for(pilot, lambda: "3/10" in words(screen.query_one(AcquisitionProgress).rows["BIAS01"].words),
                           "BIAS01 at 3/10")
            assert table.cursor_row == 2  # follow mode: on the newest

            # on another screen when the excursion comes: a notification and the bell
            await pilot.press("1")
            assert isinstance(app.screen, CampaignScreen)
            go_on.set()
            await wait_for(pilot, lambda: any("CCD1_TEMP_T" in n.title for n in app._notifications),
                           "the HK alert notification")
            alert = next(n for n in app._notifications if "CCD1_TEMP_T" in n.title)
            assert alert.severity == "error" and "OBSID 1006" in alert.title and "-246" in alert.message
            assert bells and isinstance(app.screen, CampaignScreen)

            await pilot.press("6")
            await wait_for(pilot, lambda: table.row_count == 10, "all ten exposures in the EXP-LOG")
            alerts = screen.query_one(AlertList)
            critical = next(e for e in alerts.entries if e.severity == "critical")
            assert (critical.subject, critical.obsid) == ("CCD1_TEMP_T", "1006")
            assert "safe limits" in critical.text and critical.when.count(":") == 2  # the HK sample's time
            await wait_for(pilot, lambda: any(e.severity == "cleared" for e in alerts.entries), "back within limits")
            hk = screen.query_one(HKSparklines)
            await wait_for(pilot, lambda: hk.shown and hk.shown[0].key == "CCD1_TEMP_T", "the alerted key first")
            await wait_for(pilot, lambda: "10/10" in words(screen.query_one(AcquisitionProgress).rows["BIAS01"].words),
                           "BIAS01 complete")
            # 30 frames, 10 HK files and the EXP_LOG, verified at the target
            await wait_for(pilot, lambda: "41 copied" in words(screen.query_one(BackupStatus).query_one("Static"))
                           and "0 pending" in words(screen.query_one(BackupStatus).query_one("Static")),
                           "the backup to hold every file")
            assert len(list((monitored / request.day_folder.name).glob("*.fits"))) == 30

            # stop; the HK list filters by name; follow mode off keeps the cursor where it is
            await pilot.press("s")
            await wait_for(pilot, lambda: not screen.running, "the monitor to stop")
            assert "stopped" in words(screen.query_one("#monitor-status"))
            await pilot.press("slash", *"ccd1_t")
            await pilot.pause()
            assert [k.key for k in hk.shown] == ["CCD1_TEMP_T", "CCD1_TEMP_B"]  # the alerted key first
            await pilot.press("escape")
            assert hk.has_focus
            await pilot.press("f")
            assert not table.follow and "follow off" in str(screen.query_one("#explog-panel").border_title)
    finally:
        go_on.set()
        streamer.join(TIMEOUT_S) if streamer.is_alive() else None


async def test_quitting_asks_and_stops_the_monitor(app, demo_campaign: Path, monitored: Path) -> None:
    simulate(bias_request(demo_campaign.parent / "data", excursion_obsid=1003))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("escape", "6")
        await pilot.pause()
        screen = app.screen
        await pilot.press("s")
        await wait_for(pilot, lambda: screen.query_one(ExpLogTable).row_count == 10, "the day's exposures")
        monitor = screen.monitor
        await pilot.press("q")
        await pilot.pause()
        body = str(app.screen.query_one(".body").render())
        assert "monitor is following" in body
        await pilot.press("y")
        await pilot.pause()
    assert monitor._stop.is_set()  # the thread was told to stop: the process can end


def test_plain_helpers(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert newest_day_folder(data) is None
    for name in ("11_Mar_19", "02_Apr_19", "notes", "31_Dec_18"):
        (data / name).mkdir(parents=True)
    (data / "05_May_19").write_text("a file, not a folder")
    assert newest_day_folder(data) == data / "02_Apr_19"
    assert taken_at("120319D090134T") == "2019-03-12 09:01:34" and taken_at("odd") == "odd"

    out = HKOutOfLimits(key="CCD1_TEMP_T", value=-246.0, status="critical", limit=(-133.0, 35.0), tier="S",
                        limit_kind="A", time=None, obsid=1003, path=tmp_path / "hk.txt", line=3, reason="cold")
    loud = alert_for(out, "warning")
    assert loud.severity == "error" and loud.bell and "OBSID 1003" in loud.title
    assert not alert_for(out, "off").bell  # monitor.toml can silence the bell
    back = alert_for(HKBackInLimits(key="CCD1_TEMP_T", obsid=1004, since_obsid=1003), "warning")
    assert back.severity == "information" and not back.bell


def test_monitor_snapshot(app, demo_campaign: Path, monitored: Path, snap_compare, monkeypatch) -> None:
    """A whole simulated day (written long ago, so every file has settled), followed and stopped:
    fixed data and HK sample times, no clock in view (the status line's alert shows its key, not
    the wall time it was noticed), no notification left on screen."""
    from vison_tui.widgets import status_line

    real_gather = status_line.gather_status

    def without_clock(*args, **kwargs):
        info = real_gather(*args, **kwargs)
        return dataclasses.replace(info, last_alert=re.sub(r"^\d\d:\d\d ", "", info.last_alert),
                                   monitor=re.sub(r" \(saved \d\d:\d\d\)", "", info.monitor))

    monkeypatch.setattr(status_line, "gather_status", without_clock)
    day = simulate(bias_request(demo_campaign.parent / "data", excursion_obsid=1003)).day_folder
    for path in [day, *day.iterdir()]:
        os.utime(path, (LONG_AGO, LONG_AGO))

    async def follow_then_stop(pilot) -> None:
        await settle(pilot)
        await pilot.press("escape", "6")
        await pilot.pause()
        screen = app.screen
        await pilot.press("b")
        await type_in_prompt(pilot, "backup")  # tmp_path/backup, the working folder being tmp_path
        await pilot.press("s")
        await wait_for(pilot, lambda: screen.snapshot is not None and len(screen.snapshot.exposures) == 10
                       and screen.snapshot.backup.get(str(monitored), {}).get("copied") == 41
                       and len(screen.query_one(AlertList).entries) == 2, "the whole day read and backed up")
        await pilot.press("s")
        await wait_for(pilot, lambda: not screen.running and not screen.snapshot_due
                       and not screen.snapshot_in_flight, "the monitor to stop")
        line = screen.query_one(status_line.StatusLine)
        line.info = None  # read again now: the last read may predate the copies
        line.read_if_shown()
        await wait_for(pilot, lambda: line.info is not None and line.info.backup == "backup up to date",
                       "the status line read after the backup")
        await pilot.pause()
        app.clear_notifications()
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=follow_then_stop)


def test_backup_failures_share_a_line_and_a_notification(tmp_path: Path) -> None:
    throttle = Throttle(seconds=60)
    assert throttle.allow("backup_failed /bk") == (True, 0)
    assert [throttle.allow("backup_failed /bk")[0] for _ in range(3)] == [False] * 3
    throttle.last["backup_failed /bk"] -= 61
    assert throttle.allow("backup_failed /bk") == (True, 3)  # then says how many it held back

    alerts = AlertList()
    alerts.rebuild = lambda: None  # not mounted: the entries alone
    failures = [BackupFailed(target="/bk", name=f"f{i}.fits", reason="No space left on device") for i in range(3)]
    alerts.add_events(failures + [BackupFailed(target="/bk", name="g.fits", reason="Permission denied")])
    assert [e.count for e in alerts.entries] == [3, 1]
    assert "could not copy 3 files to /bk: No space left on device" in alerts.entries[0].text


async def test_a_backup_target_that_cannot_be_written_is_one_line_about_the_target(app, monitored: Path) -> None:
    """The engine reports a read-only, full or missing backup target as a failure named "(target)"
    (again on each pass while it lasts): one line about the target, not "could not copy 1 files"."""
    async with app.run_test(size=SIZE) as pilot:
        screen = await to_monitor_screen(pilot)
        unwritable = BackupFailed(target="/bk", name="(target)", reason="cannot write in /bk (Read-only file system)")
        screen.take_past_events([unwritable, dataclasses.replace(unwritable),
                                 BackupFailed(target="/bk", name="f1.fits", reason="No space left on device")])
        await pilot.pause()
        alerts = screen.query_one(AlertList)
        lines = [str(alerts.get_option_at_index(i).prompt) for i in range(alerts.option_count)]
        about_target = [line for line in lines if "cannot back up to /bk" in line]
        assert len(about_target) == 1, lines  # said again in place, not a line per pass
        assert "Read-only file system" in about_target[0] and "nothing is copied there" in about_target[0]
        assert not any("(target)" in line or "files to" in line for line in lines), lines
        assert any("could not copy f1.fits to /bk" in line for line in lines), lines

        status = screen.query_one(BackupStatus)
        status.show_backup({"/bk": {"copied": 2, "failed": 2, "pending": 3, "conflicts": 0,
                                    "failed_files": {"(target)": "cannot write in /bk (Read-only file system)",
                                                     "f1.fits": "No space left on device"}}}, True)
        await pilot.pause()
        shown = str(status.query_one("Static").render())
        assert "1 failed" in shown and "✗ (target)" not in shown, shown
        assert "cannot back up here: cannot write in /bk (Read-only file system)" in shown, shown
