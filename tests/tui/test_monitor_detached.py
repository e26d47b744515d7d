"""The monitor outlives the app (issue 15 item 10): started from the Monitor screen it runs detached;
a reopened app re-attaches to it, takes its day and backup folders and lists the alert history
kept in its state; quitting leaves it running, and stopping it from the app asks first."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from engine.monitor.detached import list_monitors, monitor_status, start_detached_monitor, stop_monitor
from engine.sim.elvis import simulate
from vison_tui.dialogs.confirm import ConfirmDialog
from vison_tui.widgets.alert_list import AlertList

from .conftest import SIZE, to_monitor_screen
from .test_monitor_screen import MONITOR_TOML, TIMEOUT_S, bias_request, type_in_prompt, wait_for, words


@pytest.fixture
def day(demo_campaign: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A simulated day with a CCD1_TEMP_T excursion at OBSID 1003, fast monitor settings, a backup folder."""
    (demo_campaign.parent / "monitor.toml").write_text(MONITOR_TOML)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    (tmp_path / "backup").mkdir()
    result = simulate(bias_request(demo_campaign.parent / "data", excursion_obsid=1003))
    yield result.day_folder
    for record in list_monitors():  # never leave a monitor running behind a test
        stop_monitor(record, timeout=20, force=True)


def wait_until(condition, what: str, timeout: float = TIMEOUT_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


async def test_the_app_reattaches_to_a_running_monitor_and_shows_its_alerts(app, demo_campaign: Path, day: Path,
                                                                             tmp_path: Path) -> None:
    # started earlier (by the app, or vison-engine monitor --detach); the app was closed since
    record = start_detached_monitor(day, backup=[str(tmp_path / "backup")], config=demo_campaign)
    wait_until(lambda: any(e.kind == "hk_out_of_limits" for e in record.read_history()),
               "the alert in the monitor's state")
    async with app.run_test(size=SIZE) as pilot:
        screen = await to_monitor_screen(pilot)
        assert screen.running and screen.detached is not None
        assert screen.detached.record.monitor_id == record.monitor_id
        assert screen.day_choice == day and screen.backup_choice == tmp_path / "backup"
        alerts = screen.query_one(AlertList)
        await wait_for(pilot, lambda: any(e.subject == "CCD1_TEMP_T" and e.severity == "critical" for e in alerts.entries),
                       "the earlier alert listed")
        entry = next(e for e in alerts.entries if e.subject == "CCD1_TEMP_T" and e.severity == "critical")
        assert entry.obsid == "1003"
        shown = "\n".join(str(alerts.get_option_at_index(i).prompt) for i in range(alerts.option_count))
        assert "no alert since the monitor started" not in shown
        status = words(screen.query_one("#monitor-status"))
        assert record.monitor_id in status and "in the background" in status
        # the earlier alert is no news: not notified again
        assert not any("CCD1_TEMP_T" in n.title for n in app._notifications)

        # stopping from the app asks first; "keep running" keeps it
        await pilot.press("s")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("n")
        await pilot.pause()
        assert screen.running and monitor_status(record).alive

        # quitting asks nothing about the monitor, and leaves it running
        assert not any("monitor" in line.lower() for line in app.pending_work())
        await pilot.press("q")
        await pilot.pause()
    assert monitor_status(record).alive


async def test_started_from_the_app_it_runs_detached_and_stops_after_asking(app, demo_campaign: Path, day: Path,
                                                                            tmp_path: Path) -> None:
    async with app.run_test(size=SIZE) as pilot:
        screen = await to_monitor_screen(pilot)
        assert screen.detached is None  # nothing to re-attach to
        await pilot.press("b")
        await type_in_prompt(pilot, str(tmp_path / "backup"))
        await pilot.press("s")  # the newest day folder of the campaign's data folder
        await pilot.pause()
        (record,) = list_monitors()
        assert screen.detached is not None and screen.detached.record.monitor_id == record.monitor_id
        assert record.day_folder == day and record.backup == [str(tmp_path / "backup")]
        # alerts from the detached monitor are listed and notified as they come
        await wait_for(pilot, lambda: any("CCD1_TEMP_T" in n.title for n in app._notifications), "the HK alert")
        assert "in the background" in words(screen.query_one("#monitor-status"))

        await pilot.press("s")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("y")
        await wait_for(pilot, lambda: not screen.running, "the monitor to end")
        status = monitor_status(record)
        assert status.state == "stopped" and not status.alive
        assert "stopped" in words(screen.query_one("#monitor-status"))
