"""The app's frame: help lists the real keys, the palette reaches every action, quitting asks only
when something would be lost; and the plain helpers the screens rely on."""

from __future__ import annotations

from pathlib import Path

import io

import pytest
from rich.console import Console

from engine.campaign.scripts import ScriptInputs
from vison_tui.app import parse_args
from vison_tui.campaign_doc import FORM_FIELDS, FormError, read_form_values, validate_campaign_text, write_form_value
from vison_tui.dialogs.confirm import ConfirmDialog
from vison_tui.keys import key_actions
from vison_tui.navigation import SCREEN_ENTRIES
from vison_tui.screens.help import HelpScreen
from vison_tui.script_plan import ScriptFields, SessionPlan, checklist_rows, script_inputs
from vison_tui.widgets.app_bar import display_path
from vison_tui.widgets.toml_editor import highlight_toml_lines

from .conftest import SIZE, settle


async def test_help_palette_and_quit(app) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("f1")  # works from inside the editor, where ? is typed
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        console = Console(width=100, record=True, file=io.StringIO())
        console.print(app.screen.keys_tables())
        shown = console.export_text()
        await pilot.press("q")
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen)

        campaign_screen = app.screen
        titles = [command.title for command in app.get_system_commands(campaign_screen)]
        for entry in SCREEN_ENTRIES:
            assert f"Go to {entry.title}" in titles
        assert "Campaign screen: Save" in titles and "Everywhere: Quit" in titles
        for action in key_actions(app, campaign_screen):
            assert action.description  # every key says what it does
        assert "Campaign screen" in shown and "Next error" in shown and "Everywhere" in shown

        # nothing unsaved: q quits at once; after an edit it asks, and "n" stays
        await pilot.press("e", "a")  # into the editor, "a" typed there: now unsaved
        await pilot.press("escape", "q")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDialog)
        assert "unsaved changes" in str(app.screen.query_one(".body").render())
        await pilot.press("n")
        await pilot.pause()
        assert app.is_running
        await pilot.press("ctrl+q")
        await pilot.pause()
        await pilot.press("y")
        await pilot.pause()
        assert not app.is_running


async def test_quit_at_once_when_nothing_is_pending(app) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("escape", "q")
        await pilot.pause()
        assert not app.is_running


# -- plain helpers -------------------------------------------------------------------------------
def test_parse_args() -> None:
    demo = parse_args(["demo", "--out", "/tmp/d"])
    assert demo.demo and demo.out == "/tmp/d" and not demo.no_simulate
    plain = parse_args(["c.toml"])
    assert not plain.demo and plain.campaign == "c.toml"
    assert parse_args([]).campaign is None


def test_validation_of_unsaved_text(demo_campaign: Path) -> None:
    text = demo_campaign.read_text()
    assert validate_campaign_text(text, demo_campaign).ok
    broken = validate_campaign_text(text.replace('elvis = "7.5.X"', "elvis = 7"), demo_campaign)
    assert [(p.line, p.key) for p in broken.problems] == [(8, "campaign.elvis")]
    assert broken.problems_on_line(8)


def test_form_values_round_trip_keeps_comments(demo_campaign: Path) -> None:
    text = demo_campaign.read_text()
    values = read_form_values(text)
    assert values["campaign-block"] == "NOSTROMO" and values["paths-data"] == "data"
    fields = {f.id: f for f in FORM_FIELDS}
    edited = write_form_value(text, fields["hardware-ccd2"], "14888-88-99")
    assert edited == text.replace('ccd2 = "14888-88-82"', 'ccd2 = "14888-88-99"')
    # an emptied optional field removes its key; a required one stays (empty, so validation flags it)
    assert 'operator = ' not in write_form_value(text, fields["campaign-operator"], " ")
    assert 'block = ""' in write_form_value(text, fields["campaign-block"], "")
    with pytest.raises(FormError):
        read_form_values("[campaign\n")


def test_script_inputs_checks_like_the_engine(tmp_path: Path) -> None:
    fields = ScriptFields(roe="FM15", rpsu="FM15", ccd1="1", ccd2="2", ccd3="14XXX-XX-XX", elvis="7.5.X",
                          chamber="B_NOSTROMO", output="out", date="2019-04-01")
    inputs, problems = script_inputs(fields, ["BIAS01", "BF01"], tmp_path)
    assert inputs is None and [p.field for p in problems] == ["ccd3"]
    inputs, problems = script_inputs(ScriptFields(**{**fields.__dict__, "ccd3": "3"}), ["BIAS01", "BF01"], tmp_path)
    assert problems == [] and isinstance(inputs, ScriptInputs)
    assert inputs.tests == ("BIAS01",) and inputs.output == tmp_path / "out"  # BF01 has no script
    assert inputs.equipment["sn_ccd3"] == "3" and str(inputs.day) == "2019-04-01"


def test_session_plan_edits() -> None:
    plan = SessionPlan({"D11": ["BIAS01"]})
    plan.add("D00")
    assert plan.name_problem("D00") and plan.name_problem("a/b") and plan.name_problem("D12") is None
    plan.add_test("D00", "MOT_WARM")
    plan.add_test("D00", "BIAS02", index=None)
    with pytest.raises(ValueError):
        plan.add_test("D00", "MOT_WARM")
    assert plan.move_test("D00", 1, -1) == 0 and plan.sessions["D00"] == ["BIAS02", "MOT_WARM"]
    plan.rename("D00", "D01")
    assert plan.names() == ["D11", "D01"]
    inputs = plan.inputs(Path("/s"), Path("/o"))
    assert dict(inputs.sessions) == {"D11": ("BIAS01",), "D01": ("BIAS02", "MOT_WARM")}


def test_checklist_rows_group_handles() -> None:
    rows = {row.key: row for row in checklist_rows()}
    assert rows["FOCUS00/*"].instances == ("FOCUS00_590", "FOCUS00_730", "FOCUS00_800", "FOCUS00_880")
    assert rows["FOCUS00_590"].in_group and not rows["BIAS01"].in_group
    assert not rows["BF01"].writable and rows["BF01WAVE/*"].surrogate


def test_toml_highlighting_without_tree_sitter() -> None:
    lines = ['[campaign]  # c', 'block = "NOSTROMO"', 'n = 1.5', 'flag = true', 's = """a', 'b"""']
    names = {index: [name for _, _, name in spans] for index, spans in highlight_toml_lines(lines).items()}
    assert names[0] == ["heading", "comment"]
    assert names[1] == ["toml.type", "string"]
    assert names[2] == ["toml.type", "number"]
    assert names[3] == ["toml.type", "boolean"]
    assert names[5] == ["string"]  # inside the multi-line string


def test_display_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert display_path(tmp_path / "a" / "c.toml") == "a/c.toml"
    assert display_path(None) == "no campaign open"


def test_engine_never_imports_textual() -> None:
    """The boundary the app relies on: engine code runs headless (CLI, detached runs) without Textual."""
    import subprocess
    import sys

    # build_parser() imports every command's module (the CLI imports only the one given)
    code = ("import sys, engine.campaign.scripts, engine.campaign.sessions; "
            "import engine.tasks.registry, engine.monitor.monitor, engine.pipeline.runner; "
            "from engine.cli.main import build_parser; build_parser(); sys.exit('textual' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[2]).returncode == 0
