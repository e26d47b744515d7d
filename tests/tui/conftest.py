"""Fixtures for the app's tests: a demo campaign folder in tmp_path, an app on it, and a way to
wait until workers (validation, writing) have finished and their messages are handled."""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path

import pytest
from textual.pilot import Pilot

from vison_tui.app import VisonApp
from engine.sim.demo import prepare_demo_folder

SIZE = (120, 40)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run `async def` tests in a fresh event loop (no async plugin is a project dependency)."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    arguments = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    asyncio.run(pyfuncitem.obj(**arguments))
    return True


@pytest.fixture
def demo_campaign(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tmp_path/demo/campaign.toml (no simulated data: the screens tested here do not read frames).

    The working folder is tmp_path, so the app shows the path as demo/campaign.toml: snapshots
    stay the same from run to run.
    """
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VISON_STATE_DIR", str(tmp_path / "state"))  # run index, session lists kept by the app
    return prepare_demo_folder(tmp_path / "demo")


@pytest.fixture
def app(demo_campaign: Path) -> VisonApp:
    app = VisonApp(demo_campaign, demo=True, simulate=False)
    app.animation_level = "none"  # Pilot waits for animations after every key: keep the tests fast
    return app


async def settle(pilot: Pilot) -> None:
    """Let running workers finish and the app handle what they posted."""
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


async def to_scripts_screen(pilot: Pilot) -> None:
    """From the campaign editor (which types printable keys), as a user would: escape, then 2."""
    await settle(pilot)
    await pilot.press("escape", "2")
    await settle(pilot)


async def to_monitor_screen(pilot: Pilot):
    """From the campaign editor to the Monitor screen as a user would (escape, then 6): the screen."""
    from vison_tui.screens.monitor import MonitorScreen

    await settle(pilot)
    await pilot.press("escape", "6")
    await settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, MonitorScreen)
    return screen
