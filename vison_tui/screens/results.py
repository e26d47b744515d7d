"""Screen 5, Results: per test of a session, the measured values and the flags with their reasons,
the Markdown report, a terminal plot of any value per quadrant for the three CCDs, and a quick look
at the test's products and raw frames.

Result records (result.json, docs/results.md) and reports are read in a thread worker; the screen
looks again every few seconds while shown and redraws only when a result changed (a running
pipeline publishes tests one by one). Listing the raw frames (the day folder) is a worker too.

Fitted to 120 columns: the values table has a row per value and CCD and a column per quadrant
(plus the per-CCD values' column), the flags and the test-wide values are lists that scroll, the
report's wide tables are split per CCD (result_view.fit_markdown_tables), and the plot draws a
marker per CCD and quadrant. `/` filters the values and flags by text.
"""

from __future__ import annotations

from typing import Callable

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import DataTable, Input, Markdown, OptionList, Static, TabbedContent, TabPane
from textual.widgets.option_list import Option

from engine.campaign.config import Campaign

from ..dialogs.choose import ChooseDialog
from ..dialogs.quicklook import QuickLookScreen
from ..messages import ResultsLoaded
from ..quicklook import ImageSource, test_sources
from ..result_view import (CCD_COLOURS, CCDS, TestEntry, ccd_table, default_plot_value, fit_markdown_tables, flag_rows,
                           plot_value, session_tests, summary_lines, test_values, value_label, value_names)
from ..widgets.app_bar import AppBar, display_path
from ..widgets.list_table import Column, ListTable
from ..widgets.status_line import bottom_bars
from .base import VisonScreen

RELOAD_S = 3.0
VIEWS = ("values-pane", "report-pane", "plot-pane", "images-pane")
STATE_MARKS = {"ok": ("✓", "green"), "flags": ("⚑", "yellow"), "errors": ("✗", "bold red"), "no result": ("·", "dim")}


class PlotView(Static):
    """The plot, drawn for its own size (again when resized)."""

    def __init__(self, **kwargs) -> None:
        super().__init__("", **kwargs)
        self.draw: Callable[[int, int], Text | str] | None = None

    def on_resize(self) -> None:
        self.redraw()

    def redraw(self) -> None:
        if self.draw is not None and self.size.width and self.size.height:
            self.update(self.draw(self.size.width, self.size.height))


class TestList(OptionList):
    __test__ = False
    HELP_GROUP = "Tests of the session"


class FlagList(OptionList):
    HELP_GROUP = "Flags of the test"


class TestValueList(OptionList):
    __test__ = False
    HELP_GROUP = "Test-wide values"


class ValuesTable(ListTable):
    """A row per value and CCD, a column per quadrant; sorted by a column (header click, > and <),
    every row names its value. `/` is the screen's: it filters the values and the flags."""
    HELP_GROUP = "Values"


class SourceList(OptionList):
    HELP_GROUP = "Products and frames"
    BINDINGS = [Binding("enter", "select", "Quick look")]


class ResultsScreen(VisonScreen):
    AUTO_FOCUS = "#tests"  # focused as the screen is made (before the first frame)
    HELP_GROUP = "Results screen"
    BINDINGS = [
        Binding("s", "choose_session", "Session", tooltip="show the results of another session"),
        Binding("v", "view('values-pane')", "Values", tooltip="measured values per CCD and quadrant, flags with reasons"),
        Binding("m", "view('report-pane')", "Report", tooltip="the test's Markdown report"),
        Binding("p", "view('plot-pane')", "Plot", tooltip="a value per quadrant for the three CCDs"),
        Binding("i", "view('images-pane')", "Images", tooltip="the test's products and raw frames, for a quick look"),
        Binding("ctrl+t", "next_view", "Next view", show=False, tooltip="values, report, plot, images in turn"),
        Binding("right_square_bracket", "plot_step(1)", "Next value", show=False, tooltip="plot the next value"),
        Binding("left_square_bracket", "plot_step(-1)", "Prev value", show=False, tooltip="plot the previous value"),
        Binding("o", "quick_look", "Quick look", tooltip="open the highlighted product or frame (else the first product)"),
        Binding("r", "reload", "Reload", show=False, tooltip="read the results again"),
        Binding("slash", "filter", "Filter", tooltip="show only the values and flags whose text holds what you type"),
        Binding("escape", "focus_tests", "Back to the tests", show=False, tooltip="move to the list of tests"),
    ]
    DEFAULT_CSS = """
    ResultsScreen #results-title { height: 1; padding: 0 1; background: $boost; text-style: bold; }
    ResultsScreen #results-main { height: 1fr; }
    ResultsScreen #tests-column { width: 20; max-width: 30%; border-right: vkey $panel-lighten-2; }
    ResultsScreen #session-line { height: 1; padding: 0 1; color: $text-muted; }
    ResultsScreen TestList { height: 1fr; border: none; }
    ResultsScreen TabbedContent { width: 1fr; height: 1fr; }
    ResultsScreen TabPane { padding: 0; height: 1fr; }
    ResultsScreen #summary { height: auto; max-height: 4; padding: 0 1; }
    ResultsScreen #flags { height: auto; max-height: 6; border: none; padding: 0; }
    ResultsScreen #values { height: 1fr; }
    ResultsScreen #test-values { height: auto; max-height: 4; border: none; padding: 0; color: $text-muted; }
    ResultsScreen #values-filter { display: none; }
    ResultsScreen #values-filter.-shown { display: block; }
    ResultsScreen #report-scroll { height: 1fr; }
    ResultsScreen #plot-title { height: 1; padding: 0 1; }
    ResultsScreen #plot { width: 1fr; height: 1fr; overflow: hidden; }
    ResultsScreen #images-hint { height: 1; padding: 0 1; color: $text-muted; }
    ResultsScreen SourceList { height: 1fr; border: none; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.campaign: Campaign | None = None
        self.session: str | None = None
        self.entries: list[TestEntry] = []
        self.shown_test: str | None = None
        self.shown_stamp = -1.0
        self.plot_name: str | None = None
        self.sources: list[ImageSource] = []
        self.sources_for: tuple[str, float] | None = None
        self.open_when_listed = False
        self.focus_wanted: str | None = None
        self.reading = False
        self.filter_text = ""
        self.report_width = 0  # the width the report's tables were fitted to

    def compose(self) -> ComposeResult:
        yield AppBar()
        yield Static("", id="results-title", markup=False)
        with Horizontal(id="results-main"):
            with Vertical(id="tests-column"):
                yield Static("", id="session-line", markup=False)
                yield TestList(id="tests")
            with TabbedContent(id="result-views", initial="values-pane"):
                with TabPane("Values (v)", id="values-pane"):
                    yield Static("", id="summary", markup=False)
                    yield FlagList(id="flags")
                    yield ValuesTable(id="values", cursor_type="row", fixed_columns=2)
                    yield TestValueList(id="test-values")
                    yield Input(placeholder="filter values and flags: enter or tab back", id="values-filter",
                                compact=True)
                with TabPane("Report (m)", id="report-pane"):
                    with VerticalScroll(id="report-scroll"):
                        yield Markdown("", id="report")
                with TabPane("Plot (p)", id="plot-pane"):
                    yield Static("", id="plot-title", markup=False)
                    yield PlotView(id="plot")
                with TabPane("Images (i)", id="images-pane"):
                    yield Static("enter or o: quick look · n/p in the viewer: next/previous file", id="images-hint",
                                 markup=False)
                    yield SourceList(id="sources")
        yield from bottom_bars()  # the status line, then the keys (the app bar shows ^p)

    def on_mount(self) -> None:
        self.query_one(TestList).focus()
        self.watch(self.app, "campaign", self.campaign_changed)
        self.set_interval(RELOAD_S, self.reload_if_shown)

    def on_screen_resume(self) -> None:
        self.query_one(AppBar).update_bar()
        self.load()

    # -- which session --------------------------------------------------------------------------
    def campaign_changed(self, campaign: Campaign | None) -> None:
        self.campaign = campaign
        if campaign is None:
            self.session = None
        elif self.session not in campaign.sessions:
            self.session = next(iter(campaign.sessions), None)
        self.load()

    def show_session(self, session: str | None) -> None:
        """Show a session's results (the Runs screen's v)."""
        if session and self.campaign is not None and session in self.campaign.sessions:
            self.session = session
            self.shown_test = None
            self.load()

    def action_choose_session(self) -> None:
        if self.campaign is None or not self.campaign.sessions:
            self.notify("no valid campaign with sessions open", severity="warning", title="Results")
            return
        options = [(Text.assemble((name, "bold"), f"  {', '.join(t.name for t in session.tests)}"), name)
                   for name, session in self.campaign.sessions.items()]

        def chosen(name: str | None) -> None:
            if name:
                self.show_session(name)

        self.app.push_screen(ChooseDialog("Show the results of which session?", options, self.session), chosen)

    # -- reading (worker) -----------------------------------------------------------------------
    def reload_if_shown(self) -> None:
        if self.is_current:
            self.load()

    def action_reload(self) -> None:
        self.shown_stamp = -1.0
        self.sources_for = None
        self.load()

    def load(self) -> None:
        if self.campaign is None or self.session is None:
            self.entries = []
            self.show_entries()
            return
        if not self.reading:
            self.reading = True
            self.read_session(self.campaign, self.session)

    @work(thread=True, group="results-read")
    def read_session(self, campaign: Campaign, session: str) -> None:
        try:
            entries = session_tests(campaign, session)
        except OSError:
            entries = []
        self.post_message(ResultsLoaded(session, entries))

    def on_results_loaded(self, message: ResultsLoaded) -> None:
        self.reading = False
        if message.session != self.session:
            self.load()
            return
        before = [(e.name, e.stamp) for e in self.entries]
        self.entries = message.entries
        if before != [(e.name, e.stamp) for e in self.entries] or not self.query_one(TestList).option_count:
            self.show_entries()

    # -- showing --------------------------------------------------------------------------------
    def show_entries(self) -> None:
        analysed = sum(e.result is not None for e in self.entries)
        if self.campaign is None:
            title = "No valid campaign open: open one on the Campaign screen (1)"
        elif self.session is None:
            title = "The campaign has no session"
        else:
            title = (f"Results of session {self.session} in {display_path(self.campaign.paths.results / self.session)}"
                     f": {analysed} of {len(self.entries)} tests analysed")
        self.query_one("#results-title", Static).update(title)
        self.query_one("#session-line", Static).update(f"Session {self.session or '–'} · s")
        tests = self.query_one(TestList)
        options = []
        for entry in self.entries:
            mark, style = STATE_MARKS[entry.state]
            flags = len(entry.result.get("flags") or []) if entry.result else 0
            label = Text.assemble((f"{mark} ", style), (entry.name, "bold" if entry.in_session else "italic"),
                                  (f" {flags}⚑" if flags else "", "yellow"))
            options.append(Option(label, id=entry.name))
        names = [entry.name for entry in self.entries]
        keep = self.shown_test if self.shown_test in names else (names[0] if names else None)
        tests.set_options(options)
        if keep is not None:
            tests.highlighted = names.index(keep)
        self.show_test(keep, force=True)

    @on(OptionList.OptionHighlighted, "#tests")
    def test_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        self.show_test(event.option.id)

    @on(OptionList.OptionSelected, "#tests")
    def test_selected(self) -> None:
        views = self.query_one(TabbedContent)
        if views.active == "images-pane":
            self.query_one(SourceList).focus()
        elif views.active == "values-pane":
            self.query_one("#values", DataTable).focus()

    @property
    def entry(self) -> TestEntry | None:
        return next((e for e in self.entries if e.name == self.shown_test), None)

    def show_test(self, name: str | None, force: bool = False) -> None:
        entry = next((e for e in self.entries if e.name == name), None)
        stamp = entry.stamp if entry else -1.0
        if not force and name == self.shown_test and stamp == self.shown_stamp:
            return
        self.shown_test, self.shown_stamp = name, stamp
        self.show_values(entry)
        self.show_report(entry)
        if entry is not None and entry.result is not None:
            names = value_names(entry.result)
            if self.plot_name not in names:
                self.plot_name = default_plot_value(entry.result)
        self.show_plot()
        if self.query_one(TabbedContent).active == "images-pane":
            self.list_sources()

    def show_values(self, entry: TestEntry | None) -> None:
        table = self.query_one(ValuesTable)
        cursor = table.cursor_row
        summary = self.query_one("#summary", Static)
        flags = self.query_one(FlagList)
        extra = self.query_one(TestValueList)
        flags.clear_options()
        extra.clear_options()
        if entry is None or entry.result is None:
            table.set_columns([])
        if entry is None:
            summary.update("no test" if self.session else "")
            return
        summary.update(Text("\n".join(summary_lines(entry)), style="bold red" if entry.state == "errors" else ""))
        if entry.result is None:
            return
        wanted = self.filter_text.lower()
        rows = flag_rows(entry.result)
        if not rows:
            flags.add_option(Option(Text("no flag raised", style="green")))
        for flag, ccd, quadrant, obsid, reason in rows:
            where = " ".join(part for part in (ccd, quadrant, f"OBSID {obsid}" if obsid else "") if part)
            line = Text.assemble((f"⚑ {flag}", "bold yellow"), (f"  {where}  " if where else "  ", "dim"), reason)
            if not wanted or wanted in line.plain.lower():
                flags.add_option(Option(line))
        if rows and not flags.option_count:
            flags.add_option(Option(Text(f"no flag matches “{self.filter_text}” (/)", style="dim")))
        columns, value_rows = ccd_table(entry.result)
        labels = {name: value_label(entry.result, name) for _, name, _, _ in value_rows}
        shown = [row for row in value_rows if not wanted or wanted in labels[row[1]].lower()]
        table.set_columns([Column("name", "value", max([len(label) for label in labels.values()] + [8])),
                           Column("ccd", "CCD", 4), *(Column(column, Text(column, justify="right")) for column in columns)])
        rows = []
        for i, (key, name, ccd, cells) in enumerate(shown):
            # the name once, on its first CCD's row; on every row once sorted
            first = i == 0 or shown[i - 1][1] != name or table.sort_column is not None
            rows.append((key, [Text(labels[name] if first else "", style="bold" if first else ""),
                               Text(ccd, style=CCD_COLOURS[ccd]), *(Text(cell, justify="right") for cell in cells)]))
        table.set_rows(rows)
        if shown:
            table.move_cursor(row=min(cursor, len(shown) - 1), animate=False)
        for name, text in test_values(entry.result):
            if not wanted or wanted in f"{name}: {text}".lower():
                extra.add_option(Option(Text.assemble((f"{name}: ", "bold"), text)))

    def show_report(self, entry: TestEntry | None) -> None:
        markdown = self.query_one("#report", Markdown)
        if entry is None or entry.result is None:
            markdown.update("*No report: the test has not been analysed.*")
        elif entry.report is None:
            markdown.update("*This result has no report.md.*")
        else:
            self.report_width = self.query_one("#report-scroll").size.width or self.size.width - 24
            markdown.update(fit_markdown_tables(entry.report, self.report_width - 6))

    def on_resize(self) -> None:
        if self.entry is not None and self.entry.report and self.query_one("#report-scroll").size.width not in (
                0, self.report_width):
            self.show_report(self.entry)

    # -- plot -----------------------------------------------------------------------------------
    def show_plot(self) -> None:
        entry = self.entry
        title = self.query_one("#plot-title", Static)
        plot = self.query_one(PlotView)
        if entry is None or entry.result is None or self.plot_name is None:
            title.update("")
            plot.draw = lambda width, height: "no values to plot"
            plot.redraw()
            return
        names = value_names(entry.result)
        position = names.index(self.plot_name) + 1 if self.plot_name in names else 0
        legend = Text.assemble(*[(f"● {ccd} ", CCD_COLOURS[ccd]) for ccd in CCDS])
        title.update(Text.assemble(legend, (f" {self.plot_name} ({position}/{len(names)}) · [ ] other values", "dim")))
        result, name = entry.result, self.plot_name
        plot.draw = lambda width, height: Text.from_ansi(plot_value(result, name, width, height), no_wrap=True)
        plot.redraw()

    @on(TabbedContent.TabActivated, "#result-views")
    def view_changed(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id == "images-pane":
            self.list_sources()
        if self.focus_wanted == event.pane.id:
            self.call_after_refresh(self.focus_view, event.pane.id)  # a hidden widget cannot take the focus
        self.focus_wanted = None

    def focus_view(self, pane: str | None) -> None:
        """The view's own list or table (the plot has none: the tests keep it, so [ ] and up/down work)."""
        target = {"values-pane": "#values", "report-pane": "#report-scroll", "images-pane": "#sources"}.get(pane or "",
                                                                                                         "#tests")
        self.query_one(target).focus()

    def action_plot_step(self, step: int) -> None:
        entry = self.entry
        if entry is None or entry.result is None:
            return
        names = value_names(entry.result)
        if not names:
            return
        position = names.index(self.plot_name) if self.plot_name in names else 0
        self.plot_name = names[(position + step) % len(names)]
        self.action_view("plot-pane")
        self.show_plot()

    @on(ListTable.ViewChanged, "#values")
    def values_sorted(self) -> None:
        self.show_values(self.entry)

    @on(DataTable.RowSelected, "#values")
    def value_chosen(self, event: DataTable.RowSelected) -> None:
        name = str(event.row_key.value).rpartition("/")[0]
        entry = self.entry
        if entry is None or entry.result is None or name not in value_names(entry.result):
            return  # a per-CCD value: not plotted per quadrant
        self.plot_name = name
        self.action_view("plot-pane")

    # -- filter ---------------------------------------------------------------------------------
    def action_filter(self) -> None:
        field = self.query_one("#values-filter", Input)
        self.action_view("values-pane")
        field.add_class("-shown")
        field.value = self.filter_text
        self.call_after_refresh(field.focus)

    @on(Input.Changed, "#values-filter")
    def filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value.strip()
        self.show_values(self.entry)

    @on(Input.Submitted, "#values-filter")
    def filter_submitted(self) -> None:
        self.query_one("#values", DataTable).focus()

    @on(Input.Blurred, "#values-filter")
    def filter_left(self) -> None:
        if not self.filter_text:
            self.query_one("#values-filter", Input).remove_class("-shown")

    # -- images ---------------------------------------------------------------------------------
    def list_sources(self) -> None:
        entry = self.entry
        if entry is None or entry.result is None:
            self.sources = []
            self.query_one(SourceList).clear_options()
            self.sources_for = None
            self.open_when_listed = False
            return
        if self.sources_for != (entry.name, entry.stamp):
            self.sources_for = (entry.name, entry.stamp)
            self.read_sources(entry)

    @work(thread=True, exclusive=True, group="results-sources")
    def read_sources(self, entry: TestEntry) -> None:
        try:
            sources = test_sources(entry.folder, entry.result)
        except OSError:
            sources = []
        self.app.call_from_thread(self.sources_read, entry.name, sources)

    def sources_read(self, name: str, sources: list[ImageSource]) -> None:
        if name != self.shown_test:
            return
        self.sources = sources
        listing = self.query_one(SourceList)
        listing.set_options([Option(Text(source.label, style="bold" if source.kind == "product" else ""),
                                    id=str(i)) for i, source in enumerate(sources)])
        if sources:
            listing.highlighted = 0
            if self.open_when_listed:
                self.open_quick_look(0)
        self.open_when_listed = False

    @on(OptionList.OptionSelected, "#sources")
    def source_chosen(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.open_quick_look(int(event.option.id))

    def action_quick_look(self) -> None:
        if not self.sources:
            self.open_when_listed = True  # the list is being read: open its first file once there
            self.action_view("images-pane")
            return
        highlighted = self.query_one(SourceList).highlighted
        self.open_quick_look(highlighted or 0)

    def open_quick_look(self, position: int) -> None:
        if 0 <= position < len(self.sources):
            self.app.push_screen(QuickLookScreen(self.sources, position))

    # -- views ----------------------------------------------------------------------------------
    def action_view(self, pane: str) -> None:
        views = self.query_one(TabbedContent)
        if views.active == pane:
            self.focus_view(pane)
        else:
            self.focus_wanted = pane  # view_changed focuses it once shown
            views.active = pane

    def action_next_view(self) -> None:
        active = self.query_one(TabbedContent).active
        self.action_view(VIEWS[(VIEWS.index(active) + 1) % len(VIEWS)] if active in VIEWS else VIEWS[0])

    def action_focus_tests(self) -> None:
        self.query_one(TestList).focus()
