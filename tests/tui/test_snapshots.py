"""Snapshots of each screen at 120x40 (pytest-textual-snapshot; refresh with --snapshot-update).

Deterministic: the demo campaign in tmp_path, shown relative to it (demo/campaign.toml), cursors
steady in headless runs, no clock, no simulated data, no notifications on screen.
"""

from __future__ import annotations

from .conftest import SIZE, settle


async def _on_scripts(pilot) -> None:
    await settle(pilot)
    await pilot.press("escape", "2")
    await settle(pilot)


def test_campaign_screen(app, snap_compare) -> None:
    assert snap_compare(app, terminal_size=SIZE, run_before=settle)


def test_campaign_screen_with_a_problem(app, snap_compare) -> None:
    async def misspell_block(pilot) -> None:
        # "Xblock": an unknown key on line 5 and a missing `block` in [campaign] (line 4); unlike
        # a wrong chamber, neither message names a path of this checkout
        await settle(pilot)
        await pilot.press("e")  # into the editor (it does not take the focus by itself)
        app.screen.editor.move_cursor((4, 0))
        await pilot.press("X", "ctrl+r")
        await settle(pilot)
        # the status line reads on a timer: read now, after the check, so the snapshot never
        # depends on which came first (it says "monitor: no campaign" for a campaign with errors)
        from vison_tui.widgets.status_line import StatusLine

        app.screen.query_one(StatusLine).read_if_shown()
        await settle(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=misspell_block)


def test_campaign_form(app, snap_compare) -> None:
    async def form(pilot) -> None:
        await settle(pilot)
        await pilot.press("ctrl+t")
        await settle(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=form)


def test_scripts_screen(app, snap_compare) -> None:
    assert snap_compare(app, terminal_size=SIZE, run_before=_on_scripts)


def test_sessions_view(app, snap_compare) -> None:
    async def sessions(pilot) -> None:
        await _on_scripts(pilot)
        await pilot.press("ctrl+t")
        await settle(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=sessions)


def test_help_screen(app, snap_compare) -> None:
    async def help_screen(pilot) -> None:
        await _on_scripts(pilot)
        await pilot.press("question_mark")
        await settle(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=help_screen)
