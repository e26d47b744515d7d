"""A detached monitor left running is followed from the app's start (issue 15, item 10): the status
line says so from the first frame (found without importing engine.monitor), its new alerts are
notified on any screen before the Monitor screen was ever shown, and the Monitor screen takes the
following over without reading or notifying anything twice."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from datetime import datetime
from pathlib import Path

import pytest

from engine.monitor import HKOutOfLimits
from engine.monitor import detached
from engine.pipeline.records import own_identity
from vison_tui.app import VisonApp
from engine.monitor.detached import MONITOR_FILE, MONITORS_FOLDER
from vison_tui.live_monitor import live_monitors, monitor_to_show
from vison_tui.screens.monitor import MonitorScreen
from vison_tui.widgets import status_line
from vison_tui.widgets.alert_list import AlertList
from vison_tui.widgets.status_line import StatusLine

from .conftest import settle
from .runs_fixtures import wait_for


def hk_alert(key: str, obsid: int) -> HKOutOfLimits:
    return HKOutOfLimits(key=key, value=-80.0, status="critical", limit=(-120.0, -100.0), tier="S", limit_kind="A",
                         time=datetime(2019, 3, 12, 10, 0), obsid=obsid, path=Path("HK.txt"), line=3,
                         reason=f"{key} -80 outside -120..-100")


@pytest.fixture
def live_record(demo_campaign: Path, tmp_path: Path) -> Path:
    """A detached monitor's record whose process is this one (alive), with one alert written."""
    folder = tmp_path / "state" / MONITORS_FOLDER / "MON20190312_100000"
    folder.mkdir(parents=True)
    day = demo_campaign.parent / "data" / "12_Mar_19"
    info = {**own_identity(), "id": folder.name, "day_folder": str(day), "backup": [],
            "started": "2019-03-12T10:00:00", "state_file": str(tmp_path / "monitor-state.json")}
    (folder / MONITOR_FILE).write_text(json.dumps(info))
    (folder / "state.json").write_text(json.dumps({"state": "running", "activity": "following"}))
    (folder / "events.jsonl").write_text(json.dumps(hk_alert("CCD1_TEMP_T", 1003).to_dict()) + "\n")
    return folder


def test_the_start_up_lookup_is_the_engines(live_record: Path) -> None:
    assert [m.monitor_id for m in live_monitors()] == [r.monitor_id for r in detached.running_monitors()] \
        == ["MON20190312_100000"]
    # a record saying it stopped is not followed, even while its process is still ending
    (live_record / "state.json").write_text(json.dumps({"state": "stopped"}))
    assert live_monitors() == []


def test_the_records_of_detached_monitors_load_without_the_monitor() -> None:
    """engine.monitor exports lazily: the app looks for a running monitor before its first paint
    through engine.monitor.detached, which must not load numpy, astropy and watchdog (0.7 s)."""
    heavy = "('numpy', 'astropy', 'watchdog', 'engine.monitor.monitor')"
    code = ("import sys, vison_tui.live_monitor as live; live.live_monitors(); "
            f"print(' '.join(m for m in {heavy} if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert loaded == []


def test_with_two_chambers_monitored_the_app_follows_its_campaigns(live_record: Path, demo_campaign: Path,
                                                                   tmp_path: Path, app: VisonApp) -> None:
    """Two monitors running (two chambers): the app follows the one watching its campaign's data
    folder even when the other started later; without a campaign, or one naming no data folder
    it can read, the newest."""
    other = live_record.parent / "MON20190312_110000"  # newer, another chamber's data
    other.mkdir()
    info = json.loads((live_record / MONITOR_FILE).read_text())
    info.update(id=other.name, day_folder=str(tmp_path / "chamber2" / "data" / "12_Mar_19"), started="2019-03-12T11:00:00")
    (other / MONITOR_FILE).write_text(json.dumps(info))
    (other / "state.json").write_text(json.dumps({"state": "running"}))
    monitors = live_monitors()
    assert [m.monitor_id for m in monitors] == ["MON20190312_110000", "MON20190312_100000"]
    assert monitor_to_show(monitors, demo_campaign).monitor_id == "MON20190312_100000"
    assert monitor_to_show(monitors, None).monitor_id == "MON20190312_110000"
    broken = tmp_path / "broken.toml"
    broken.write_text("[paths\n")
    assert monitor_to_show(monitors, broken).monitor_id == "MON20190312_110000"
    assert monitor_to_show([], demo_campaign) is None
    app.on_load()  # what the app does before its first paint
    assert app.live_monitor.monitor_id == "MON20190312_100000"
    assert app.monitor_day == demo_campaign.parent / "data" / "12_Mar_19"


async def test_the_status_line_shows_the_monitor_from_the_first_frame(app: VisonApp, live_record: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    real = status_line.gather_status

    def slow_read(*args):  # nothing read from disk before the first frame
        release.wait(30)
        return real(*args)

    monkeypatch.setattr(status_line, "gather_status", slow_read)
    async with app.run_test(size=(120, 40)) as pilot:
        line = app.screen.query_one(StatusLine)
        shown = str(line.render())
        assert "monitor: following 12_Mar_19 (MON20190312_100000)" in shown, shown
        assert "reading the runs" in shown
        release.set()
        await settle(pilot)


async def test_alerts_are_notified_before_the_monitor_screen_and_it_takes_over(app: VisonApp, live_record: Path
                                                                              ) -> None:
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        follower = await wait_for(pilot, lambda: app.monitor_follower, "the app to follow the monitor")
        # the alert written before the app started is the past: listed later, not notified
        assert not any("CCD1_TEMP_T" in n.title for n in app._notifications)
        with open(live_record / "events.jsonl", "a") as events:
            events.write(json.dumps(hk_alert("CCD2_TEMP_T", 1004).to_dict()) + "\n")
        await wait_for(pilot, lambda: any("CCD2_TEMP_T" in n.title for n in app._notifications),
                       "the new alert notified on the Campaign screen")
        assert not app.screen.query(AlertList)  # the Monitor screen was never made

        await pilot.press("escape", "6")
        screen = await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen) and app.screen, "Monitor")
        assert screen.running and screen.detached is follower  # taken over, not read again
        alerts = screen.query_one(AlertList)
        await wait_for(pilot, lambda: {"CCD1_TEMP_T", "CCD2_TEMP_T"} <= {e.subject for e in alerts.entries},
                       "both alerts listed")
        with open(live_record / "events.jsonl", "a") as events:
            events.write(json.dumps(hk_alert("CCD3_TEMP_T", 1005).to_dict()) + "\n")
        await wait_for(pilot, lambda: any("CCD3_TEMP_T" in n.title for n in app._notifications), "the next alert")
        await pilot.pause(2.5)  # the app's own look (every 2 s) has stopped: one notification each
        titles = [n.title for n in app._notifications]
        assert sum("CCD2_TEMP_T" in t for t in titles) == 1 and sum("CCD3_TEMP_T" in t for t in titles) == 1
