"""Per test, how many of its frames are in (complete on disk) against what the catalogue expects
for the chamber: a progress bar and the engine's words (acquiring, complete, files missing...)."""

from __future__ import annotations

from typing import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import ProgressBar, Static

from engine.campaign.progress import TestProgress

STATE_STYLE = {"complete": "green", "acquiring": "", "unknown test": "dim"}


def progress_words(progress: TestProgress) -> Text:
    expected = "?" if progress.expected is None else str(progress.expected)
    text = Text(f"{progress.on_disk:>3}/{expected:<3} ")
    state = progress.state
    text.append(state, style=STATE_STYLE.get(state, "yellow"))
    if progress.logged != progress.on_disk:
        text.append(f" · {progress.logged} logged", style="dim")
    return text


class TestProgressRow(Horizontal):
    __test__ = False  # not a pytest class
    DEFAULT_CSS = """
    TestProgressRow { height: 1; }
    TestProgressRow > .test-name { width: 13; }
    TestProgressRow > ProgressBar { width: 1fr; min-width: 8; }
    TestProgressRow > ProgressBar > Bar { width: 1fr; }
    TestProgressRow > .test-state { width: auto; max-width: 50%; margin-left: 1; }
    """

    def __init__(self, test: str) -> None:
        super().__init__()
        self.test = test
        self.bar = ProgressBar(total=1, show_percentage=False, show_eta=False)
        self.words = Static("", classes="test-state", markup=False)

    def compose(self) -> ComposeResult:
        yield Static(self.test, classes="test-name", markup=False)
        yield self.bar
        yield self.words

    def show(self, progress: TestProgress) -> None:
        # an unknown test has no expected count: a full bar of what is there, never an endless pulse
        total = progress.expected if progress.expected else max(progress.on_disk, 1)
        self.bar.update(total=total, progress=min(progress.on_disk, total))
        self.words.update(progress_words(progress))


class AcquisitionProgress(VerticalScroll, can_focus=True):
    HELP_GROUP = "Acquisition"
    DEFAULT_CSS = """
    AcquisitionProgress { height: auto; max-height: 100%; scrollbar-size-vertical: 1; }
    AcquisitionProgress > .empty { color: $text-muted; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.rows: dict[str, TestProgressRow] = {}

    def compose(self) -> ComposeResult:
        yield Static("no exposure logged yet", classes="empty", markup=False)

    def show_progress(self, progress: Sequence[TestProgress]) -> None:
        self.query_one(".empty").display = not progress
        if not progress and self.rows:  # another day folder
            self.remove_children(TestProgressRow)
            self.rows = {}
        for item in progress:
            row = self.rows.get(item.test)
            if row is None:
                row = self.rows[item.test] = TestProgressRow(item.test)
                self.mount(row)
            row.show(item)
