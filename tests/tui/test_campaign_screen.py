"""Screen 1 driven by keys: the demo campaign opens valid; an error shows in the list, the gutter and
under the editor with its line; saving asks first while invalid; fixed, it saves; the form edits the
TOML keeping its comments; another campaign opens from a path."""

from __future__ import annotations

from pathlib import Path

from vison_tui.dialogs.confirm import ConfirmDialog
from vison_tui.dialogs.text_prompt import TextPrompt
from vison_tui.screens.campaign import CampaignScreen
from vison_tui.widgets.problem_list import ProblemList
from vison_tui.widgets.toml_editor import TomlEditor

from .conftest import SIZE, settle

CHAMBER_LINE = 6  # chamber = "B_NOSTROMO" in configs/examples/demo_campaign.toml


async def down_to_line(pilot, line: int) -> None:
    """Press down until the cursor is on `line` (1-based); long lines wrap, so count rows as a user."""
    editor = pilot.app.screen.editor
    for _ in range(4 * line):
        if editor.cursor_location[0] >= line - 1:
            break
        await pilot.press("down")
    assert editor.cursor_location[0] == line - 1


async def test_open_break_fix_and_save(app, demo_campaign: Path) -> None:
    original = demo_campaign.read_text()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, CampaignScreen)
        assert screen.editor.text == original
        assert screen.validation is not None and screen.validation.ok
        assert app.campaign is not None and app.campaign.info.block == "NOSTROMO"
        assert app.campaign_path == demo_campaign and not app.unsaved
        assert screen.query_one(ProblemList).has_focus  # not the editor: screen keys are not typed into the file
        await pilot.press("e")  # into the editor
        assert screen.editor.has_focus

        # on the chamber line, just before its closing quote, type an X: an unknown chamber
        await down_to_line(pilot, CHAMBER_LINE)
        await pilot.press("ctrl+e", "left", "X", "ctrl+r")
        await settle(pilot)
        problems = screen.query_one(ProblemList).problems
        assert [(p.line, p.key) for p in problems] == [(CHAMBER_LINE, "campaign.chamber")]
        assert "unknown chamber 'B_NOSTROMOX'" in problems[0].message
        assert "did you mean 'B_NOSTROMO'" in problems[0].message
        assert screen.query_one(TomlEditor)._problem_lines == {CHAMBER_LINE}
        assert not screen.query_one("#line-problem").has_class("-empty")  # the cursor is on that line
        assert app.unsaved

        # saving an invalid campaign asks first; "n" keeps editing and writes nothing
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("n")
        await pilot.pause()
        assert app.screen is screen and demo_campaign.read_text() == original

        # choosing the problem in the list puts the cursor on its line
        await pilot.press("ctrl+home", "escape")  # cursor to the top, then to the problem list
        assert screen.query_one(ProblemList).has_focus
        await pilot.press("enter")
        assert screen.editor.has_focus and screen.editor.cursor_location[0] == CHAMBER_LINE - 1

        # fix it (delete the X), change the operator, save: written at once, comments kept
        await pilot.press("ctrl+e", "left", "backspace", "down", "ctrl+e", "left", "2", "ctrl+r")
        await settle(pilot)
        assert screen.query_one(ProblemList).problems == []
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert app.screen is screen  # no question: it was valid
        assert demo_campaign.read_text() == original.replace('operator = "demo"', 'operator = "demo2"')
        assert not app.unsaved


async def test_form_writes_into_the_toml_keeping_comments(app, demo_campaign: Path) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.screen
        await pilot.press("ctrl+t")  # form view; the Block field has the focus
        await pilot.pause()
        block = screen.query_one("#campaign-block")
        assert block.has_focus and block.value == "NOSTROMO"
        await pilot.press("ctrl+e", "2")
        screen.query_one("#hardware-roe").focus()
        await pilot.press("ctrl+e", "backspace", "backspace", "1", "5", "ctrl+t", "ctrl+r")
        await settle(pilot)
        text = screen.editor.text
        assert 'block = "NOSTROMO2"' in text and 'roe = "FM15"' in text
        assert "[hardware]                     # the simulator stamps these serials on its frames" in text
        assert text.replace("NOSTROMO2", "NOSTROMO", 1).replace("FM15", "FM14", 1) == demo_campaign.read_text()
        assert screen.validation.ok
        # form edits are edits of the text: ctrl+z in the editor undoes them, last first
        await pilot.press("ctrl+z")
        assert 'roe = "FM15"' not in screen.editor.text and 'block = "NOSTROMO2"' in screen.editor.text

        # text the form cannot read (a syntax error) disables it and says why
        await pilot.press("ctrl+home", "[", "ctrl+t")
        await pilot.pause()
        assert screen.query_one("#campaign-block").disabled
        assert "syntax error" in str(screen.query_one("#form-note").render())


async def test_save_invalid_on_request_and_open_another(app, demo_campaign: Path) -> None:
    other = demo_campaign.parent / "other.toml"
    other.write_text(demo_campaign.read_text().replace('block = "NOSTROMO"', 'block = "ALIEN"'))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("e", "x", "ctrl+r")  # "x# Demo campaign..." is a TOML syntax error on line 1
        await settle(pilot)
        problems = app.screen.query_one(ProblemList).problems
        assert problems[0].line == 1 and "TOML syntax error" in problems[0].message
        await pilot.press("ctrl+s")
        await pilot.pause()
        await pilot.press("y")
        await settle(pilot)
        assert demo_campaign.read_text().startswith("x# Demo campaign")

        await pilot.press("ctrl+o")
        await pilot.pause()
        assert isinstance(app.screen, TextPrompt)
        answer = app.screen.query_one("#answer")
        answer.value = ""
        await pilot.press(*"demo/nothing.toml", "enter")
        assert isinstance(app.screen, TextPrompt)  # refused: not a file
        answer.value = ""
        await pilot.press(*"demo/other.toml", "enter")
        await settle(pilot)
        assert app.campaign_path == other and app.campaign.info.block == "ALIEN"


async def test_go_to_line_without_home_or_end(app, demo_campaign: Path) -> None:
    """tmux may swallow ctrl+Home/End: ctrl+l asks for a line, from the editor too, and the
    number typed goes into the prompt, never into the campaign."""
    original = demo_campaign.read_text()
    last = len(original.splitlines())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.screen
        await pilot.press("e", "ctrl+l")  # from inside the editor
        await pilot.pause()
        assert isinstance(app.screen, TextPrompt)
        await pilot.press("ctrl+u", *str(CHAMBER_LINE), "enter")
        await pilot.pause()
        assert app.screen is screen and screen.editor.has_focus
        assert screen.editor.cursor_location == (CHAMBER_LINE - 1, 0)
        await pilot.press("ctrl+l", "ctrl+u", "$", "enter")  # the last line
        await pilot.pause()
        assert screen.editor.cursor_location[0] == screen.editor.document.line_count - 1 >= last - 1
        await pilot.press("ctrl+l", "ctrl+u", "x", "enter")  # refused with the reason, nothing moves
        await pilot.pause()
        assert isinstance(app.screen, TextPrompt)
        assert "a line number from 1 to" in str(app.screen.query_one("#error").render())
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is screen and screen.editor.text == original and not app.unsaved
