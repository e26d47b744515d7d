"""Screen 7 driven by keys on a results tree laid out as the pipeline writes it: kinds are chosen in
the checklist, the plan lists what goes; only `y` in the dialog (which repeats the plan per kind)
removes, anything else removes nothing; the report says what was freed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from vison_tui.dialogs.confirm import ConfirmDialog
from vison_tui.dialogs.text_prompt import TextPrompt
from vison_tui.screens.cleanup import CleanupScreen, names
from vison_tui.widgets.cleanup_plan import PlanItems, PlanTotals
from vison_tui.widgets.cleanup_report import CleanupLog
from vison_tui.widgets.kind_checklist import KindChecklist

from .conftest import SIZE, settle

OLD = 1552381200  # 2019-03-12 09:00 UTC: nothing looks like a run in progress
NO_SUCH_PID = 4194305  # above Linux's highest pid: the run is over
STAGING = "D11/.BIAS02.staging-FM20190312_100000"
INTERMEDIATE = "D11/BIAS01/products/intermediate"


def write(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)


def make_results(root: Path) -> Path:
    """Every kind, as the pipeline lays it out (see tests/test_cleanup.py), all written long ago."""
    for test in ("D11/BIAS01", "D11/BIAS01.previous-20190312T090000", "D12/DARK01"):
        write(root / test / "result.json", 50)
        write(root / test / "report.md", 60)
    write(root / "D11/BIAS01/products/EUC_MASTERBIAS_CCD1.fits", 1000)
    write(root / INTERMEDIATE / "prep_1000.fits", 5000)
    write(root / INTERMEDIATE / "prep_1001.fits", 5000)
    write(root / "D11/BIAS01/figs/offsets.png", 300)
    write(root / "D11/BIAS01.previous-20190312T090000/products/EUC_MASTERBIAS_CCD1.fits", 1000)
    write(root / "D12/DARK01/figs/dark.png", 200)
    write(root / STAGING / "products/partial.fits", 400)
    write(root / "logs/Calib_FM20190312_090000.log", 120)
    write(root / "runs/FM20190312_090000/run.json", 0)
    (root / "runs/FM20190312_090000/run.json").write_text(json.dumps({"pid": NO_SUCH_PID}))
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            os.utime(Path(folder) / name, (OLD, OLD))
    return root


@pytest.fixture
def results(demo_campaign: Path) -> Path:
    return make_results(demo_campaign.parent / "results")  # the campaign's results folder


def all_files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


async def on_cleanup(pilot) -> CleanupScreen:
    await settle(pilot)
    await pilot.press("escape", "7")
    await settle(pilot)
    assert isinstance(pilot.app.screen, CleanupScreen)
    return pilot.app.screen


async def choose(pilot, *kinds: str) -> None:
    """Tick kinds by moving the cursor to them and pressing space, as a user would."""
    checklist = pilot.app.screen.query_one(KindChecklist)
    for kind in kinds:
        while checklist.current_kind() != kind:
            await pilot.press("down")
        await pilot.press("space")
    await settle(pilot)


def log_text(screen) -> str:
    return "\n".join(line.text for line in screen.query_one(CleanupLog).lines)


async def test_remove_after_yes(app, results: Path) -> None:
    before = all_files(results)
    async with app.run_test(size=SIZE) as pilot:
        screen = await on_cleanup(pilot)
        assert screen.query_one(KindChecklist).has_focus
        # nothing chosen: the checklist still says what each kind would free on its own
        assert "2 files · 10.0 kB" == str(screen.query_one(KindChecklist).get_cell("intermediates", "alone"))
        await choose(pilot, "staging", "intermediates")
        plan = screen.plan
        assert plan is not None and plan.kinds == ("staging", "intermediates")
        assert (plan.files, plan.bytes) == (3, 10400)
        assert screen.query_one(PlanItems).row_count == 2

        await pilot.press("x")
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, ConfirmDialog) and dialog.focused.id == "no"  # a stray enter cancels
        body = str(dialog.query_one(".body").render())
        assert dialog.title_text == "Remove 3 files (10.4 kB)?"
        assert "staging" in body and "intermediates" in body and "10.4 kB" in body and "figures" not in body
        await pilot.press("y")
        await settle(pilot)
        assert isinstance(app.screen, CleanupScreen)
        assert not (results / STAGING).exists() and not (results / INTERMEDIATE).exists()
        gone = {f for f in before if f.startswith((STAGING, INTERMEDIATE))}
        assert all_files(results) == before - gone  # the rest, results and products included, untouched
        assert "Freed 10.4 kB in 3 files" in log_text(screen)
        assert screen.plan is not None and screen.plan.files == 0  # measured again after


async def test_cancel_removes_nothing(app, results: Path) -> None:
    before = all_files(results)
    async with app.run_test(size=SIZE) as pilot:
        screen = await on_cleanup(pilot)
        await choose(pilot, "products", "results")
        assert {item.kind for item in screen.plan.items} == {"products", "results"}
        await pilot.press("x")
        await pilot.pause()
        assert "result.json and report.md files go too" in str(app.screen.query_one(".body").render())
        await pilot.press("enter")  # on Cancel
        await settle(pilot)
        await pilot.press("x")
        await pilot.pause()
        await pilot.press("n")
        await settle(pilot)
        assert isinstance(app.screen, CleanupScreen)
        assert all_files(results) == before
        assert log_text(screen).count("Nothing removed") == 2

        # one session only; runs and logs are not per session, so the plan says they are left out
        await pilot.press("s")
        await pilot.pause()
        assert isinstance(app.screen, TextPrompt)
        await pilot.press(*"D12", "enter")
        await settle(pilot)
        assert {item.path.relative_to(results).parts[0] for item in screen.plan.items} == {"D12"}

        # a folder that is not a results tree is refused, with the reason
        await pilot.press("o")
        await pilot.pause()
        await pilot.press("ctrl+u", *"demo/results/D11", "enter")  # relative to the working folder
        await settle(pilot)
        assert screen.plan is None
        assert "looks like a session folder" in screen.query_one(PlanTotals).refusal


def test_names() -> None:
    assert names(" D11, D12 D13,") == ["D11", "D12", "D13"] and names("  ") is None


def test_cleanup_snapshot(app, results: Path, snap_compare) -> None:
    async def plan(pilot) -> None:
        await on_cleanup(pilot)
        await choose(pilot, "staging", "intermediates", "figures")

    assert snap_compare(app, terminal_size=SIZE, run_before=plan)


def test_cleanup_confirmation_snapshot(app, results: Path, snap_compare) -> None:
    async def ask(pilot) -> None:
        await on_cleanup(pilot)
        await choose(pilot, "staging", "previous", "figures")
        await pilot.press("x")
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=ask)
