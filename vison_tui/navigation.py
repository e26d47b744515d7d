"""The app's screens, in the order of their keys. To add a screen: write `screens/<name>.py` (a
`Screen` subclass with its BINDINGS and an `AppBar` + `Footer`), then add one `ScreenEntry` here;
the app builds its modes, switching keys, help and command palette entries from this list.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.screen import Screen

from .screens.campaign import CampaignScreen
from .screens.log import LogScreen
from .screens.results import ResultsScreen
from .screens.runs import RunsScreen
from .screens.cleanup import CleanupScreen
from .screens.monitor import MonitorScreen
from .screens.scripts import ScriptsScreen


@dataclass(frozen=True)
class ScreenEntry:
    mode: str  # the app mode holding the screen
    key: str  # switches to it (also shown in the app bar)
    title: str
    screen: type[Screen]
    purpose: str
    short_title: str = ""  # for narrow terminals

    @property
    def short(self) -> str:
        return self.short_title or self.title


SCREEN_ENTRIES: tuple[ScreenEntry, ...] = (
    ScreenEntry("campaign", "1", "Campaign", CampaignScreen,
                "open, edit, validate and save the campaign TOML"),
    ScreenEntry("scripts", "2", "Scripts & sessions", ScriptsScreen,
                "choose tests, write ELVIS scripts, build session folders", short_title="Scripts"),
    ScreenEntry("runs", "3", "Runs", RunsScreen,
                "start pipeline runs in the background, follow them test by test, stop them"),
    ScreenEntry("log", "4", "Log", LogScreen,
                "follow a run's pipeline log live: search, jump to a task or an error"),
    ScreenEntry("results", "5", "Results", ResultsScreen,
                "per test: values and flags, report, plots, quick look at products and frames"),
    ScreenEntry("monitor", "6", "Monitor", MonitorScreen,
                "follow a day folder: HK against limits, alerts, EXP-LOG, acquisition progress, backup"),
    ScreenEntry("cleanup", "7", "Clean-up", CleanupScreen,
                "free space in a results folder: choose kinds, see what goes, confirm", short_title="Clean"),
)
