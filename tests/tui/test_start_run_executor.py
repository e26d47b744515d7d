"""The start-run dialog offers the executor: what is typed shows in the equivalent command, wrong
words and --jobs with a Dask cluster are said at once, and an unreachable scheduler is the
engine's one-line refusal in the dialog (nothing started)."""

from __future__ import annotations

from pathlib import Path

from engine.pipeline.runs import list_runs
from engine.sim.demo import demo_request, simulate_demo
from engine.campaign.config import load_campaign
from vison_tui.app import VisonApp
from vison_tui.dialogs.start_run import StartRunDialog
from vison_tui.screens.runs import RunsScreen

from .conftest import SIZE
from .runs_fixtures import wait_for


async def test_the_dialog_offers_the_executor(demo_campaign: Path) -> None:
    simulate_demo(demo_request(load_campaign(demo_campaign)))
    app = VisonApp(demo_campaign, demo=True, simulate=False)
    app.animation_level = "none"
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("escape", "3")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen), "the Runs screen")
        await pilot.press("n")
        dialog = await wait_for(pilot, lambda: isinstance(app.screen, StartRunDialog) and app.screen, "the dialog")
        command = lambda: str(dialog.query_one("#command").render())  # noqa: E731
        error = lambda: str(dialog.query_one("#error").render())  # noqa: E731
        assert "--jobs" not in command() and "--executor" not in command()  # the defaults: cores, campaign's
        dialog.query_one("#executor").focus()
        await pilot.press(*"tcp://127.0.0.1:9")
        assert "executor: expected" in error() and "dask://127.0.0.1:9" in error()
        await pilot.press("ctrl+u", *"dask://127.0.0.1:9")
        assert command().endswith("--executor dask://127.0.0.1:9 --detach") and not error()
        dialog.query_one("#jobs").focus()
        await pilot.press("2")
        assert "jobs: for the local executor only" in error()
        await pilot.press("backspace", "ctrl+s")  # nothing listens on port 9: refused before anything starts
        await wait_for(pilot, lambda: "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in error(),
                       "the engine's refusal", timeout=30)
        assert app.screen is dialog and not list_runs(demo_campaign.parent / "results")
