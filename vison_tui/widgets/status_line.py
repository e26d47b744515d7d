"""The status line above the keys of every screen (vison_tui.status_view says what), and the
footer that keeps the app's own keys (screens, help, quit) when the screen's keys do not all fit
(80 columns): the screen's last keys give way, as they are in the help (?) and the palette."""

from __future__ import annotations

from collections import defaultdict
from itertools import groupby

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.message import Message
from textual.widgets import Footer, Static
from textual.widgets._footer import FooterKey, FooterLabel, KeyGroup

from ..status_view import StatusInfo, gather_status, status_at_start

READ_EVERY_S = 3.0


class StatusLine(Static):
    DEFAULT_CSS = """
    StatusLine { height: 1; padding: 0 1; background: $boost; color: $text-muted; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__("", id="status-line", markup=False, **kwargs)
        self.info: StatusInfo | None = None
        self.reading = False

    def on_mount(self) -> None:
        live = getattr(self.app, "live_monitor", None)  # found before the first paint (app.on_load)
        if self.info is None and live is not None:
            self.info = status_at_start(live.monitor_id, live.day_folder)
        self.set_interval(READ_EVERY_S, self.read_if_shown)
        self.call_after_refresh(self.read_if_shown)

    def read_if_shown(self) -> None:
        if self.screen.is_current and not self.reading:
            self.reading = True
            self.read(getattr(self.app, "campaign", None), getattr(self.app, "monitor_day", None))

    @work(thread=True, exclusive=True, group="status-line")
    def read(self, campaign, day=None) -> None:
        try:
            info = gather_status(campaign, day)
        except Exception:  # the status line must never take a screen down
            info = StatusInfo(monitor="monitor: state unreadable")
        self.app.call_from_thread(self.show_info, info)

    def show_info(self, info: StatusInfo) -> None:
        self.reading = False
        self.info = info
        self.refresh()

    def render(self) -> Text:
        info = self.info
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        if info is None:
            text.append("reading the runs and the monitor…", style="dim")
            return text
        if not info.runs_read:
            text.append("reading the runs…", style="dim")
        elif info.running:
            first, doing = info.running[0]
            more = f" +{len(info.running) - 1}" if len(info.running) > 1 else ""
            text.append(f"▶ {len(info.running)} running", style="bold green")
            text.append(f": {first}{' ' + doing if doing else ''}{more}")
        else:
            text.append("no run going", style="dim")
        text.append(" │ ")
        text.append(info.monitor, style="bold" if info.monitor_live else "dim")
        if info.last_alert:
            text.append(" │ ")
            text.append(f"last alert {info.last_alert}", style="bold red" if info.alert_severity == "critical"
                        else "yellow")
        if info.backup:
            text.append(" │ ")
            text.append(info.backup, style="yellow" if "behind" in info.backup else "green")
        return text


class VisonFooter(Footer):
    """A compact footer; when the keys do not all fit, the app's (screens, help, quit) come first.

    Textual's footer composes its keys again whenever the screen's bindings may have changed (every
    focus change, several times while a screen is first shown); this one does so only when the keys
    to show did change (each composition restyled some fifteen widgets: a tenth of a first visit)."""

    class KeysShown(Message):
        """The screen's keys are drawn for the first time: the screen is painted whole (the footer's
        keys come last: they follow the focus). Heavy work that need not be on screen waits for it."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.shown_keys: tuple = ()  # what the last composition placed (key_layout)
        self.painted = False  # KeysShown posted

    def on_resize(self) -> None:
        if self.size.width != getattr(self, "_laid_out_for", None):
            self._laid_out_for = self.size.width
            self.call_after_refresh(self.recompose)

    async def recompose(self) -> None:
        if self.key_layout() == self.shown_keys:
            return
        await super().recompose()

    def key_groups(self) -> list[tuple]:
        """(binding group or None, [(binding, enabled, tooltip) for each action]) in the order shown."""
        if not self._bindings_ready:
            return []
        bindings = [(binding, enabled, tooltip) for (node, binding, enabled, tooltip)
                    in self.screen.active_bindings.values() if binding.show]
        by_action: defaultdict[str, list] = defaultdict(list)
        for binding, enabled, tooltip in bindings:
            by_action[binding.action].append((binding, enabled, tooltip))
        groups = []
        for group, items in groupby(by_action.values(), lambda b: b[0][0].group):
            if group is None:  # ungrouped keys are placed one by one (the app's among the screen's)
                groups += [(None, [item[0]]) for item in items]
            else:
                groups.append((group, [item[0] for item in items]))

        def width(group, items) -> int:
            if group is not None and len(items) > 1:
                return sum(len(self.app.get_key_display(b[0])) + 1 for b in items) + len(group.description) + 1
            return sum(len(self.app.get_key_display(b[0])) + len(b[0].description) + 2 for b in items)

        app_actions = {b.action for bs in self.app._bindings.key_to_bindings.values() for b in bs}
        if sum(width(g, items) for g, items in groups) > self.app.size.width:
            own = [(g, items) for g, items in groups if items[0][0].action not in app_actions]
            app = [(g, items) for g, items in groups if items[0][0].action in app_actions]
            groups = app + own
        return groups

    def key_layout(self, groups: list[tuple] | None = None) -> tuple:
        """What the footer shows, comparable: the keys in order with their text and state."""
        return tuple((group.description if group is not None else None,
                      tuple((b.key, b.description, b.action, enabled, tooltip) for b, enabled, tooltip in items))
                     for group, items in (self.key_groups() if groups is None else groups))

    def compose(self) -> ComposeResult:
        groups = self.key_groups()
        self.shown_keys = self.key_layout(groups)
        if not groups:
            return
        if not self.painted:
            self.painted = True
            self.call_after_refresh(self.post_message, self.KeysShown())
        self.styles.grid_size_columns = sum(len(items) for _, items in groups)
        for group, multi in groups:
            if group is not None and len(multi) > 1:
                with KeyGroup(classes="-compact" if group.compact else ""):
                    for binding, enabled, tooltip in multi:
                        yield FooterKey(binding.key, self.app.get_key_display(binding), "", binding.action,
                                        disabled=not enabled, tooltip=tooltip or binding.description,
                                        classes="-grouped -compact")
                yield FooterLabel(group.description + " ")
            else:
                for binding, enabled, tooltip in multi:
                    yield FooterKey(binding.key, self.app.get_key_display(binding), binding.description,
                                    binding.action, disabled=not enabled, tooltip=tooltip, classes="-compact")


def bottom_bars() -> ComposeResult:
    """What every screen has at the bottom: the status line, then the keys."""
    yield StatusLine()
    yield VisonFooter(compact=True, show_command_palette=False)
