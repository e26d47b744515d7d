"""Screen 8, Trends: the result.json of many blocks, sessions and runs side by side
(engine.pipeline.trends, the app's twin of `vison-engine trends`).

The outliers first, each named (block, CCD, quadrant, value, limit); then one value compared per
quadrant across blocks (each block's newest result, out-of-limit cells in red) and its drift over
sessions and runs. `o` chooses the results folders (default: the campaign's), `t` the tests, `v`
the value compared (default: the first outlier's); `x` writes the table (CSV, xlsx) and figures.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import DataTable, Static

from ..dialogs.text_prompt import TextPrompt
from ..widgets.app_bar import AppBar, display_path
from ..widgets.status_line import bottom_bars
from ..widgets.panel import Panel, toggle_zoom
from .base import VisonScreen

if TYPE_CHECKING:  # engine.pipeline.trends loads the analysis families: imported in the worker
    from engine.pipeline.trends import Trends

PREFERRED_VALUE = "ron_image_adu"


def split_paths(text: str) -> list[Path]:
    """`a, b` or `a b` -> paths (commas when a path holds spaces); ~ expanded, made absolute."""
    parts = text.split(",") if "," in text else text.split()
    return [Path(os.path.abspath(os.path.expanduser(p.strip()))) for p in parts if p.strip()]


def number_text(value: float, out: bool = False) -> Text:
    text = "NaN" if value != value else f"{value:.4g}"
    return Text(text, style="bold red" if out else "")


@dataclass
class TrendsGathered(Message):
    generation: int
    trends: Any  # Trends | None
    problem: str = ""


@dataclass
class TrendsWritten(Message):
    files: list[Path]
    problem: str = ""


class TrendsScreen(VisonScreen):
    AUTO_FOCUS = "#outliers"  # focused as the screen is made (before the first frame)
    HELP_GROUP = "Trends screen"
    BINDINGS = [
        Binding("o", "choose_folders", "Results folders",
                tooltip="the results folders (or session/test folders) to gather; default: the campaign's"),
        Binding("t", "choose_tests", "Tests", tooltip="only these tests (e.g. BIAS01, BIAS02); empty: all"),
        Binding("v", "choose_value", "Value", tooltip="the value compared across blocks and followed in time"),
        Binding("x", "export", "Export", tooltip="write trends.csv, outliers.csv, trends.xlsx and figures"),
        Binding("r", "gather", "Gather again", show=False, tooltip="read the result.json files again"),
        Binding("z", "zoom", "Zoom", show=False, tooltip="show the focused panel alone, z again to come back"),
    ]
    DEFAULT_CSS = """
    TrendsScreen #trends-where { height: auto; padding: 0 1; background: $boost; }
    TrendsScreen #outliers-panel { height: 1fr; min-height: 6; }
    TrendsScreen #trends-bottom { height: 2fr; }
    TrendsScreen #compare-panel { width: 3fr; }
    TrendsScreen #drift-panel { width: 2fr; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.folders: list[Path] | None = None  # chosen with o; else the campaign's results folder
        self.tests: list[str] = []
        self.value: str | None = None  # chosen with v; else the first outlier's (or ron_image_adu)
        self.trends: Trends | None = None
        self.problem = ""
        self.status = ""  # the second line of the header: what was gathered, or what is going on
        self.generation = 0

    def compose(self) -> ComposeResult:
        yield AppBar()
        yield Static("", id="trends-where", markup=False)
        with Panel(title="Outside the limits", id="outliers-panel"):
            yield DataTable(id="outliers", cursor_type="row")
        with Horizontal(id="trends-bottom"):
            with Panel(title="Compared across blocks", id="compare-panel"):
                yield DataTable(id="compare", cursor_type="row", fixed_columns=1)
            with Panel(title="Drift", id="drift-panel"):
                yield DataTable(id="drift", cursor_type="row")
        yield from bottom_bars()  # the status line, then the keys (the app bar shows ^p)

    def on_mount(self) -> None:
        self.query_one("#outliers", DataTable).focus()
        self.watch(self.app, "campaign", lambda _: self.folders is None and self.action_gather())

    def on_screen_resume(self) -> None:
        self.query_one(AppBar).update_bar()

    # -- what is gathered -------------------------------------------------------------------------
    def sources(self) -> list[Path]:
        if self.folders is not None:
            return self.folders
        campaign = getattr(self.app, "campaign", None)
        return [campaign.paths.results] if campaign is not None else []

    def update_where(self, status: str | None = None) -> None:
        if status is not None:
            self.status = status
        sources = self.sources()
        where = ", ".join(display_path(p) for p in sources) if sources else "none (no campaign open): o chooses"
        said = (f"Results {where}{'' if self.folders is not None or not sources else ' (the campaign’s)'} (o)"
                f" · tests: {', '.join(self.tests) or 'all'} (t) · value: {self.shown_value() or '–'} (v)")
        self.query_one("#trends-where", Static).update(said + (f"\n{self.status}" if self.status else ""))

    def action_gather(self) -> None:
        self.generation += 1
        sources = self.sources()
        if not sources:
            self.trends, self.problem = None, ""
            self.show()
            return
        self.update_where("gathering…")
        self.gather(self.generation, sources, list(self.tests))

    @work(thread=True, exclusive=True, group="trends")
    def gather(self, generation: int, sources: list[Path], tests: list[str]) -> None:
        from engine.pipeline.trends import TrendsError, gather_trends

        try:
            self.post_message(TrendsGathered(generation, gather_trends(sources, tests=tests)))
        except TrendsError as exc:
            self.post_message(TrendsGathered(generation, None, str(exc)))
        except Exception as exc:  # an engine bug: say it, keep the app
            self.post_message(TrendsGathered(generation, None, f"internal error: {type(exc).__name__}: {exc}"))

    def on_trends_gathered(self, message: TrendsGathered) -> None:
        if message.generation != self.generation:
            return  # the choice changed meanwhile
        self.trends, self.problem = message.trends, message.problem
        self.show()

    # -- showing ----------------------------------------------------------------------------------
    def shown_value(self) -> str | None:
        trends = self.trends
        if trends is None:
            return self.value
        if self.value:
            return self.value
        outliers = trends.outliers()
        if outliers:
            return outliers[0].value
        values = trends.values()
        return PREFERRED_VALUE if PREFERRED_VALUE in values else next(
            (p.value for p in trends.points if p.limit), values[0] if values else None)

    def shown_test(self, value: str | None) -> str | None:
        trends = self.trends
        if trends is None or value is None:
            return None
        outlier = next((p for p in trends.outliers() if p.value == value), None)
        return outlier.test if outlier else next((p.test for p in trends.points if p.value == value), None)

    def show(self) -> None:
        trends = self.trends
        if trends is None:
            self.update_where(f"✗ {self.problem}" if self.problem else "")
            for name in ("outliers", "compare", "drift"):
                self.query_one(f"#{name}", DataTable).clear(columns=True)
            return
        outliers = trends.outliers()
        self.update_where(f"{len(trends.records)} result.json: blocks {', '.join(trends.blocks())}; tests "
                          f"{', '.join(trends.tests())}; {len(outliers)} value(s) outside the limits")
        table = self.query_one("#outliers", DataTable)
        table.clear(columns=True)
        table.add_columns("block", "CCD", "quadrant", "value", "measured", "limit", "test", "session", "run")
        for p in outliers:
            table.add_row(p.block, str(p.ccd), p.quadrant or "–", p.value, number_text(p.number, True),
                          p.limit_text(), p.test, p.session, p.run_id)
        self.query_one("#outliers-panel", Panel).border_title = f"Outside the limits ({len(outliers)})"
        self.show_value()

    def show_value(self) -> None:
        trends = self.trends
        value = self.shown_value()
        test = self.shown_test(value)
        compare = self.query_one("#compare", DataTable)
        compare.clear(columns=True)
        drift = self.query_one("#drift", DataTable)
        drift.clear(columns=True)
        if trends is None or value is None or test is None:
            self.update_where()
            return
        comparison = trends.compare(test, value)
        limit = f"{comparison.limit} [{comparison.low:g}, {comparison.high:g}]" if comparison.limit else "no limit"
        self.query_one("#compare-panel", Panel).border_title = (f"{test} {value} ({comparison.unit or 'no unit'}), "
                                                                f"newest per block; {limit}")
        compare.add_columns("CCD Q", *comparison.blocks, "spread")
        for (ccd, quadrant), by_block in comparison.rows.items():
            cells = [number_text(by_block[b].number, by_block[b].out_of_limits) if b in by_block else Text("–")
                     for b in comparison.blocks]
            spread = comparison.spread((ccd, quadrant))
            compare.add_row(f"{ccd}{quadrant or ''}", *cells, "–" if spread is None else f"{spread:.3g}")
        series = [d for d in trends.drift() if d.value == value and d.test == test]
        self.query_one("#drift-panel", Panel).border_title = f"Drift of {value} ({len(series)} series)"
        drift.add_columns("block", "CCD Q", "n", "first", "last", "change", "sessions")
        for d in series:
            row = d.row()
            drift.add_row(d.block, f"{d.ccd}{d.quadrant or ''}", str(row["n"]), f"{row['first']:.4g}",
                          f"{row['last']:.4g}", f"{row['change']:+.3g}", row["sessions"])
        self.update_where()

    # -- choices ------------------------------------------------------------------------------------
    def action_choose_folders(self) -> None:
        def check(text: str) -> str | None:
            missing = [str(p) for p in split_paths(text) if not p.exists()]
            return f"no such folder: {', '.join(missing)}" if missing else None

        def chosen(text: str | None) -> None:
            if text is not None:
                self.folders = split_paths(text) or None
                self.action_gather()

        current = " ".join(str(p) for p in self.folders) if self.folders else ""
        self.app.push_screen(TextPrompt("Results to gather", current, ok="Gather", check=check,
                                        hint="results folders (or session/test folders, result.json files), "
                                        "separated by spaces, or commas when a path holds spaces; empty: the "
                                        "campaign's"), chosen)

    def action_choose_tests(self) -> None:
        def chosen(text: str | None) -> None:
            if text is not None:
                self.tests = [t for t in text.replace(",", " ").split() if t]
                self.action_gather()

        self.app.push_screen(TextPrompt("Only these tests", ", ".join(self.tests), ok="Use", check=lambda _: None,
                                        hint="e.g. BIAS01, BIAS02 (names or handles); empty: every test"), chosen)

    def action_choose_value(self) -> None:
        known = self.trends.values() if self.trends else []

        def check(text: str) -> str | None:
            return None if not text or not known or text in known else \
                f"no value {text!r} gathered; e.g. {', '.join(known[:6])}"

        def chosen(text: str | None) -> None:
            if text is not None:
                self.value = text.strip() or None
                self.show_value()

        self.app.push_screen(TextPrompt("Value to compare", self.value or "", ok="Show", check=check,
                                        hint=f"e.g. {', '.join(known[:4]) or PREFERRED_VALUE}; empty: the first "
                                        "outlier's"), chosen)

    @on(DataTable.RowSelected, "#outliers")
    def outlier_chosen(self, event: DataTable.RowSelected) -> None:
        if self.trends is not None:
            outliers = self.trends.outliers()
            if 0 <= event.cursor_row < len(outliers):
                self.value = outliers[event.cursor_row].value
                self.show_value()

    # -- export ---------------------------------------------------------------------------------------
    def export_folder(self) -> Path | None:
        sources = self.sources()
        if not sources:
            return None
        first = sources[0] if sources[0].is_dir() else sources[0].parent
        return first / "trends"

    def action_export(self) -> None:
        out = self.export_folder()
        if self.trends is None or out is None:
            self.notify("nothing gathered yet", title="Trends", severity="warning", markup=False)
            return
        self.write(self.trends, out)

    @work(thread=True, exclusive=True, group="trends-export")
    def write(self, trends: Trends, out: Path) -> None:
        from engine.pipeline.trends import write_trends

        try:
            self.post_message(TrendsWritten(write_trends(trends, out)))
        except Exception as exc:  # a disk problem or a bug: said, the app goes on
            self.post_message(TrendsWritten([], f"{type(exc).__name__}: {exc}"))

    def on_trends_written(self, message: TrendsWritten) -> None:
        if message.problem:
            self.notify(message.problem, title="Trends not written", severity="error", markup=False)
        else:
            folder = message.files[0].parent if message.files else None
            self.notify(f"{len(message.files)} files in {display_path(folder)}", title="Trends written",
                        markup=False)

    def action_zoom(self) -> None:
        toggle_zoom(self)
