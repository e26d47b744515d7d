"""The app's screens, in the order of their keys. To add a screen: write `screens/<name>.py` (a
`screens.base.VisonScreen` subclass with its BINDINGS, AUTO_FOCUS, an `AppBar` and `bottom_bars()`),
then add one `ScreenEntry` here; the app builds its modes, switching keys, help and command palette
entries from this list.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from textual.screen import Screen


@dataclass(frozen=True)
class ScreenEntry:
    mode: str  # the app mode holding the screen
    key: str  # switches to it (also shown in the app bar)
    title: str
    screen: str  # "module:Class" under vison_tui.screens, imported on the first visit (start-up stays fast)
    purpose: str
    short_title: str = ""  # for narrow terminals

    @property
    def short(self) -> str:
        return self.short_title or self.title

    @property
    def module(self) -> str:
        return "vison_tui.screens." + self.screen.split(":")[0]

    @property
    def class_name(self) -> str:
        return self.screen.split(":")[1]

    def load(self) -> type[Screen]:
        return getattr(importlib.import_module(self.module), self.class_name)

    def make(self) -> Screen:
        """A new screen of this entry (the app's MODES call this on the first visit)."""
        return self.load()()

    def shows(self, screen: object) -> bool:
        """Whether `screen` is this entry's screen (without importing the screen's module)."""
        return any(cls.__name__ == self.class_name and cls.__module__ == self.module for cls in type(screen).__mro__)


SCREEN_ENTRIES: tuple[ScreenEntry, ...] = (
    ScreenEntry("campaign", "1", "Campaign", "campaign:CampaignScreen",
                "open, edit, validate and save the campaign TOML"),
    ScreenEntry("scripts", "2", "Scripts & sessions", "scripts:ScriptsScreen",
                "choose tests, write ELVIS scripts, build session folders", short_title="Scripts"),
    ScreenEntry("runs", "3", "Runs", "runs:RunsScreen",
                "start pipeline runs in the background, follow them test by test, stop them"),
    ScreenEntry("log", "4", "Log", "log:LogScreen",
                "follow a run's pipeline log live: search, jump to a task or an error"),
    ScreenEntry("results", "5", "Results", "results:ResultsScreen",
                "per test: values and flags, report, plots, quick look at products and frames"),
    ScreenEntry("monitor", "6", "Monitor", "monitor:MonitorScreen",
                "follow a day folder: HK against limits, alerts, EXP-LOG, acquisition progress, backup"),
    ScreenEntry("cleanup", "7", "Clean-up", "cleanup:CleanupScreen",
                "free space in a results folder: choose kinds, see what goes, confirm", short_title="Clean"),
    ScreenEntry("trends", "8", "Trends", "trends:TrendsScreen",
                "result.json of many blocks, sessions and runs: per-quadrant comparison with limits, drift, "
                "outliers; export CSV/xlsx"),
)
