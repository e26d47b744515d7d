"""The app's screens, in the order of their keys. To add a screen: write `screens/<name>.py` (a
`Screen` subclass with its BINDINGS and an `AppBar` + `Footer`), then add one `ScreenEntry` here;
the app builds its modes, switching keys, help and command palette entries from this list.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.screen import Screen

from .screens.campaign import CampaignScreen
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
    # 3 Runs, 4 Log, 5 Results, 6 Monitor, 7 Clean-up: added as their engine parts land.
)
