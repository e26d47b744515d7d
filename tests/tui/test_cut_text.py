"""Cut text (issue 15, item 7) and the status line (item 9): run ids and what a run is doing end
with an ellipsis inside the screen, the app bar keeps the file name and its help hint, the footer
keeps the screen keys at 80x24, and every screen has the status line."""

from __future__ import annotations

from pathlib import Path

import pytest

from vison_tui.app import VisonApp
from vison_tui.navigation import SCREEN_ENTRIES
from vison_tui.widgets.app_bar import AppBar
from vison_tui.widgets.status_line import StatusLine

from .conftest import settle
from .runs_fixtures import fixture_runs, wait_for


def screen_text(app: VisonApp, widget) -> str:
    return "".join(segment.text for line in widget.render_lines(widget.region.reset_offset) for segment in line)


def footer_text(app: VisonApp) -> str:
    footer = app.screen.query_one("VisonFooter")
    return " ".join(str(key.render()) for key in footer.children if key.region.right <= app.size.width
                    and key.region.width)


@pytest.mark.parametrize("size", [(120, 40), (80, 24)])
async def test_app_bar_and_footer_fit(app: VisonApp, size) -> None:
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        await pilot.press("escape", "3")
        await settle(pilot)
        bar = str(app.screen.query_one(AppBar).render())
        assert len(bar) <= size[0] and "campaign.toml" in bar and "? help" in bar, bar
        keys = [key for key in app.screen.query("FooterKey") if key.region.width]
        visible = [key for key in keys if key.region.right <= size[0]]
        assert {"1", "2", "8"} <= {key.key for key in visible}, [k.key for k in visible]
        assert {"question_mark", "q"} & {key.key.split(",")[0] for key in visible}, [k.key for k in visible]


async def test_run_ids_end_with_an_ellipsis_and_status_line_everywhere(demo_campaign: Path) -> None:
    results = demo_campaign.parent / "results"
    fixture_runs(results)
    app = VisonApp(demo_campaign, demo=True, simulate=False)
    app.animation_level = "none"
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("escape", "3")
        table = await wait_for(pilot, lambda: app.screen.query("RunList") and app.screen.query_one("RunList"), "runs")
        await wait_for(pilot, lambda: table.row_count == 3, "the runs")
        await pilot.pause()
        columns = list(table.columns.values())
        ids = [str(table.get_cell_at((row, 0))) for row in range(table.row_count)]
        assert columns[0].width >= max(len(i) for i in ids) or columns[0].width == 30
        assert sum(c.get_render_width(table) for c in columns) <= table.scrollable_content_region.width
        for entry in SCREEN_ENTRIES:
            await pilot.press(entry.key)
            await wait_for(pilot, lambda: entry.shows(app.screen), entry.title)
            line = await wait_for(pilot, lambda: app.screen.query(StatusLine) and app.screen.query_one(StatusLine),
                                  f"{entry.title}'s status line")
            await wait_for(pilot, lambda: line.info is not None, "the status read")
            assert "monitor:" in str(line.render()) and line.region.height == 1
            await pilot.press("escape")
