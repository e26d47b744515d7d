"""`VisonScreen`, the base of the app's screens: a switch does only the new screen's work.

Textual restyles on screen switches by default: the first time a mode's screen is shown it parses
every stylesheet of the app again and restyles the screen being left (twice: `App._init_mode` and
`App.switch_mode` each call `refresh_css`), and every resume restyles the whole screen shown. But a
new screen's widgets are styled as they mount, and a suspended screen's styles only go stale when
the app's CSS (a theme change) or the app's own classes change. Textual counts the CSS changes
(`_css_update_count`; `switch_mode` restyles a screen that missed one), the app's classes are
compared here. Besides: the focus goes to the screen's main list as it is made (AUTO_FOCUS), and
what a first visit made is frozen for the garbage collector (VisonApp.keep_long_lived). With the
footer composing its keys only when they change, these took first visits from 0.2-0.6 s to
0.06-0.25 s and second visits from up to 0.3 s to under 0.1 s (docs/performance.md).
"""

from __future__ import annotations

from textual import events, on
from textual.screen import Screen


class VisonScreen(Screen):
    # each screen names its main list (a selector): Textual focuses it as the screen is composed.
    # Textual's default ("*") focused the first focusable widget (a hidden filter field, the tabs)
    # until the screen's on_mount moved the focus, and each focus change composed the footer again.
    AUTO_FOCUS = ""  # none ("" : None would mean the app's "*")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # styled as its widgets mount, with the app's CSS as it is now: no need to parse it again
        self._css_update_count = self.app._css_update_count
        self.styled_for = self.app_style_state()

    @on(events.Mount)
    def keep_when_made(self) -> None:
        # the screen is kept for the app's life: its widgets join what the collector skips
        keep = getattr(self.app, "keep_long_lived", None)
        if keep is None:
            return
        if self.app.keep_after_s > 0:  # once the user looks at it (a switch away costs nothing then)
            self.set_timer(self.app.keep_after_s, keep)
        else:
            self.call_after_refresh(keep)

    def app_style_state(self) -> tuple:
        """What of the app, besides its CSS, the screen's styles depend on."""
        app = self.app
        return frozenset(app.classes), app.pseudo_classes

    @on(events.ScreenSuspend)
    def remember_app_style(self) -> None:
        self.styled_for = self.app_style_state()

    @on(events.ScreenResume)
    def skip_needless_restyle(self, event: events.ScreenResume) -> None:
        # Textual's own handler (Screen._on_screen_resume) runs after this one and restyles when asked;
        # a change of the app's CSS is caught by switch_mode's own check of _css_update_count
        if event.refresh_styles and self.styled_for == self.app_style_state():
            event.refresh_styles = False
