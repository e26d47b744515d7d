"""Screen 2 driven by keys: totals follow the checklist and the chamber; scripts are written into the
campaign's folder (an existing folder is replaced only after a yes); sessions are built with their
sequence files; refusals (the app's or the engine's) arrive as messages."""

from __future__ import annotations

from pathlib import Path

from vison_tui.dialogs.confirm import ConfirmDialog
from vison_tui.dialogs.text_prompt import TextPrompt
from vison_tui.screens.scripts import ScriptsScreen
from vison_tui.script_plan import chamber_figures
from vison_tui.widgets.message_panel import MessagePanel
from vison_tui.widgets.session_editor import AvailableScripts, SessionEditor, SessionNames, SessionTests
from vison_tui.widgets.test_checklist import TestChecklist

from .conftest import SIZE, settle, to_scripts_screen

CAMPAIGN_TESTS = ["BIAS01", "BIAS02", "DARK01", "CHINJ01", "FOCUS00_800"]  # the demo's sessions, catalogue order


def totals_text(screen) -> str:
    return str(screen.query_one("#totals").render())


def messages(screen) -> str:
    return "\n".join(line.text for line in screen.query_one(MessagePanel).lines)


def script(test: str) -> str:
    return f"vis_CalCamp_{test}_01Apr19_v7.5.X.xlsx"


async def test_checklist_totals_chamber_and_refusals(app, demo_campaign: Path) -> None:
    figures = chamber_figures("B_NOSTROMO")
    async with app.run_test(size=SIZE) as pilot:
        await to_scripts_screen(pilot)
        screen = app.screen
        assert isinstance(screen, ScriptsScreen)
        checklist = screen.query_one(TestChecklist)
        assert checklist.has_focus
        assert checklist.selected_in_order() == CAMPAIGN_TESTS  # prefilled from the campaign's sessions
        frames = sum(figures[t].frames for t in CAMPAIGN_TESTS)
        assert f"5 tests · {frames} frames" in totals_text(screen)

        await pilot.press("space")  # the first row: MOT_WARM
        assert "MOT_WARM" in checklist.selected
        assert f"6 tests · {frames + figures['MOT_WARM'].frames} frames" in totals_text(screen)
        await pilot.press("n")
        assert "0 tests · 0 frames" in totals_text(screen)
        await pilot.press("a")
        writable = [f for f in figures.values() if f.frames]
        assert f"{len(writable)} tests · {sum(f.frames for f in writable)} frames" in totals_text(screen)

        # a generic handle toggles all its instances; a surrogate (BF01 analyses PTC01's frames) cannot be chosen
        await pilot.press("n")
        checklist.move_cursor(row=checklist.get_row_index("FOCUS00/*"))
        await pilot.press("space")
        assert checklist.selected_in_order() == ["FOCUS00_590", "FOCUS00_730", "FOCUS00_800", "FOCUS00_880"]
        checklist.move_cursor(row=checklist.get_row_index("BF01"))
        await pilot.press("space")
        assert "BF01" not in checklist.selected

        # the chamber's profile sets the durations
        before = totals_text(screen)
        chamber = screen.query_one("#field-chamber")
        chamber.focus()
        await pilot.press("enter")  # open the list
        await pilot.pause()
        await pilot.press("down", "enter")  # B_NOSTROMO -> default
        await settle(pilot)
        assert chamber.value == "default" and totals_text(screen) != before

        # a placeholder serial: nothing written, the field flagged, the reason listed
        roe = screen.query_one("#field-roe")
        roe.focus()
        await pilot.press("ctrl+u", *"FMNN", "escape", "w")
        await settle(pilot)
        assert not (demo_campaign.parent / "scripts").exists()
        assert roe.has_class("-invalid")
        assert "ROE: 'FMNN' is the template's placeholder" in messages(screen)

        # building before writing: refused with the reason
        await pilot.press("b")
        await settle(pilot)
        assert "write the scripts first" in messages(screen)


async def test_write_scripts_then_build_sessions(app, demo_campaign: Path) -> None:
    folder = demo_campaign.parent
    async with app.run_test(size=SIZE) as pilot:
        await to_scripts_screen(pilot)
        screen = app.screen
        checklist = screen.query_one(TestChecklist)
        screen.query_one("#field-date").focus()  # scripts carry their date in their names
        await pilot.press(*"2019-04-01", "escape")
        checklist.move_cursor(row=checklist.get_row_index("CHINJ01"))
        await pilot.press("space", "w")  # without CHINJ01
        await settle(pilot)
        written = sorted(p.name for p in (folder / "scripts").iterdir())
        assert written == sorted([script(t) for t in CAMPAIGN_TESTS if t != "CHINJ01"]
                                 + ["CHECK_SUMS_01Apr19.txt", "TESTS_INVENTORY_01Apr19.txt",
                                    "TESTS_SCHEDULER_01Apr19.xlsx", ".vison-output.json"])  # what --force may replace
        assert "Wrote 4 scripts to demo/scripts" in messages(screen)
        assert "Frames Total" in messages(screen)  # the inventory is shown

        # the campaign's D12 lists CHINJ01, which has no script: D11 is built all the same, D12 is
        # named with what it lacks (building used to be all-or-nothing)
        await pilot.press("b")
        await settle(pilot)
        assert "Not built: D12" in messages(screen) and "no script for CHINJ01" in messages(screen)
        assert "Built 1 session(s) in demo/sessions" in messages(screen)
        assert sorted(p.name for p in (folder / "sessions").iterdir()) == [".vison-output.json", "D11"]

        # writing again into the non-empty folder asks: "n" leaves it alone, "y" replaces it
        checklist.move_cursor(row=0)
        await pilot.press("space")  # MOT_WARM
        checklist.move_cursor(row=checklist.get_row_index("CHINJ01"))
        await pilot.press("space", "w")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("n")
        await settle(pilot)
        assert not (folder / "scripts" / script("MOT_WARM")).exists()
        await pilot.press("w")
        await pilot.pause()
        await pilot.press("y")
        await settle(pilot)
        assert (folder / "scripts" / script("MOT_WARM")).exists()
        assert (folder / "scripts" / script("CHINJ01")).exists()

        # sessions: the campaign's D11 and D12 are there; add D00 with MOT_WARM, then DARK01 first
        await pilot.press("ctrl+t")
        await settle(pilot)
        editor = screen.query_one(SessionEditor)
        assert screen.query_one(SessionNames).has_focus
        assert editor.plan.sessions == {"D11": ["BIAS01", "DARK01", "BIAS02"], "D12": ["CHINJ01", "FOCUS00_800"]}
        await pilot.press("n")
        await pilot.pause()
        assert isinstance(app.screen, TextPrompt)
        await pilot.press("enter")  # the suggested name, D00
        await pilot.pause()
        available = screen.query_one(AvailableScripts)
        assert available.has_focus
        offered = [available.get_option_at_index(i).id for i in range(available.option_count)]
        assert offered == ["BIAS01", "BIAS02", "CHINJ01", "DARK01", "FOCUS00_800", "MOT_WARM"]
        await pilot.press("up", "enter")  # up from the top wraps to the last: MOT_WARM
        await pilot.press("up", "up", "enter")  # DARK01, added after MOT_WARM
        assert editor.plan.sessions["D00"] == ["MOT_WARM", "DARK01"]
        await pilot.press("left")  # to the session's tests, on DARK01
        assert screen.query_one(SessionTests).has_focus
        await pilot.press("K")  # move it up
        assert editor.plan.sessions["D00"] == ["DARK01", "MOT_WARM"]

        await pilot.press("b")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDialog)  # the sessions folder holds the D11 built above
        assert "replaces what vison built there before" in str(app.screen.query_one(".body").render())
        await pilot.press("y")
        await settle(pilot)
        sessions = folder / "sessions"
        assert sorted(p.name for p in sessions.iterdir()) == [".vison-output.json", "D00", "D11", "D12"]
        assert (sessions / "D00" / "TEST_SEQUENCE_D00.txt").read_text() == (
            f"{script('DARK01')}\n{script('MOT_WARM')}\n")
        assert (sessions / "D11" / "TEST_SEQUENCE_D11.txt").read_text().splitlines() == [
            script(t) for t in ("BIAS01", "DARK01", "BIAS02")]
        assert (sessions / "D00" / script("MOT_WARM")).is_file()
        assert "Built 3 session(s) in demo/sessions" in messages(screen)
