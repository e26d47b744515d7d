"""A screen switch does only the work the new screen needs (issue 15, item 3: a switch under 0.3 s;
bench/bench_app_startup.py times it): Textual's whole-app CSS re-parse and whole-screen restyles on
switches are skipped while nothing they depend on changed (a theme change still reaches every
screen), the footer composes its keys once a visit and never again for the same keys, the first
validation's imports wait for the first paint, and what a first visit made is frozen for the
garbage collector."""

from __future__ import annotations

import gc

from textual.app import App
from textual.css.stylesheet import Stylesheet
from textual.screen import Screen

from vison_tui.navigation import SCREEN_ENTRIES
from vison_tui.screens.campaign import CampaignScreen
from vison_tui.widgets.app_bar import AppBar
from vison_tui.widgets.status_line import VisonFooter

from .conftest import SIZE, settle


async def visit(pilot, entry) -> None:
    await pilot.press(entry.key)
    await settle(pilot)
    assert entry.shows(pilot.app.screen), entry.title


async def test_switches_neither_reparse_the_css_nor_restyle_whole_screens(app, monkeypatch) -> None:
    reparsed, restyled = [], []
    reparse, update_styles = Stylesheet.reparse, App.update_styles

    def counted_reparse(self) -> None:
        reparsed.append(True)
        reparse(self)

    def counted_update_styles(self, node, animate: bool = True) -> None:
        if isinstance(node, Screen):  # the whole screen, every widget in it
            restyled.append(type(node).__name__)
        update_styles(self, node, animate)

    monkeypatch.setattr(Stylesheet, "reparse", counted_reparse)
    monkeypatch.setattr(App, "update_styles", counted_update_styles)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("escape")
        reparsed.clear()
        restyled.clear()
        for entry in (*SCREEN_ENTRIES[1:], *SCREEN_ENTRIES):  # first visits, then second visits
            await visit(pilot, entry)
        assert reparsed == [] and restyled == []


async def test_a_theme_change_reaches_the_screens_made_before(app) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("escape")
        await visit(pilot, SCREEN_ENTRIES[1])
        scripts = app.screen
        dark = scripts.query_one(AppBar).styles.background
        await visit(pilot, SCREEN_ENTRIES[0])
        app.theme = "textual-light"
        await settle(pilot)
        await visit(pilot, SCREEN_ENTRIES[1])
        assert app.screen is scripts and scripts.query_one(AppBar).styles.background != dark


async def test_the_footer_composes_its_keys_once_a_visit(app, monkeypatch) -> None:
    composed = []
    compose = VisonFooter.compose

    def counted_compose(self):
        if self.key_groups():
            composed.append((type(self.screen).__name__, type(self.screen.focused).__name__))
        return compose(self)

    monkeypatch.setattr(VisonFooter, "compose", counted_compose)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("escape")
        composed.clear()
        for entry in SCREEN_ENTRIES[1:]:
            await visit(pilot, entry)
        # each with the keys of its main list (focused as it is made), not first those of a hidden field
        assert [screen for screen, _ in composed] == [type(app.get_screen_stack(entry.mode)[0]).__name__
                                                      for entry in SCREEN_ENTRIES[1:]], composed
        assert "ListFilter" not in {focused for _, focused in composed}
        composed.clear()
        for entry in SCREEN_ENTRIES:  # the same keys again: nothing composed
            await visit(pilot, entry)
        assert composed == []


async def test_the_first_validation_waits_for_the_first_paint(app, monkeypatch) -> None:
    """Validating imports the analysis modules (0.5 s in a thread, competing with the paint): it
    starts once a frame with the screen's keys (the last thing drawn) has gone to the terminal."""
    painted, painted_at_start = [], []
    display, start_validation = App._display, CampaignScreen.start_validation

    def noted_display(self, screen, renderable) -> None:
        display(self, screen, renderable)
        if renderable is not None and screen.query("FooterKey"):
            painted.append(True)

    def noted_start(self) -> None:
        painted_at_start.append(bool(painted))
        start_validation(self)

    monkeypatch.setattr(App, "_display", noted_display)
    monkeypatch.setattr(CampaignScreen, "start_validation", noted_start)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert painted_at_start[:1] == [True]
        assert app.campaign is not None  # and it did validate


async def test_what_a_first_visit_made_is_frozen_for_the_collector(app) -> None:
    app.keeps_long_lived = True  # as when not headless
    app.keep_after_s = 0.0
    try:
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            await pilot.pause()
            frozen = gc.get_freeze_count()
            assert frozen  # the first screen's
            await pilot.press("escape")
            await visit(pilot, SCREEN_ENTRIES[1])
            await pilot.pause()
            assert gc.get_freeze_count() > frozen
    finally:
        gc.unfreeze()  # the other tests' apps are not to be kept
