"""`vison`: the keyboard-driven console of a calibration campaign.

    vison [CAMPAIGN.toml]          open a campaign (default ./campaign.toml if there is one)
    vison demo [--out DIR]         make (or reopen) the built-in demo campaign on simulated data

Screens are listed in `navigation.py`; each is an app mode with its own key (1, 2, ...).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.reactive import reactive
from textual.screen import ModalScreen, Screen

from .commands import vison_commands
from .dialogs.confirm import ConfirmDialog
from .messages import CampaignChanged, DemoReady, EngineFailed, MonitorAlert
from .navigation import SCREEN_ENTRIES, ScreenEntry
from .screens.help import HelpScreen

from .live_monitor import LiveMonitor

if TYPE_CHECKING:
    from engine.campaign.config import Campaign

# Start-up imports only what the first screen needs: the other screens, the analysis modules
# (astropy, scipy, matplotlib through engine.tasks.registry) and openpyxl are imported after the
# first paint, in a worker (see VisonApp.preload), or on first use.

SCREENS_GROUP = Binding.Group("Screens")
PRELOAD_AFTER_S = 1.0  # after the first paint and the first validation: the other screens' modules
FOLLOW_MONITOR_S = 2.0  # the app's look at a detached monitor's events until the Monitor screen takes over
PRELOAD_MODULES = ("engine.pipeline.launch", "engine.monitor.monitor", "engine.pipeline.cleanup",
                   "engine.campaign.scripts")
KEEP_AFTER_S = 1.0  # after a screen's first visit: what it made stays for the app's life (keep_long_lived)


class VisonApp(App):
    TITLE = "vison"
    HELP_GROUP = "Everywhere"
    MODES = {entry.mode: entry.make for entry in SCREEN_ENTRIES}
    DEFAULT_MODE = SCREEN_ENTRIES[0].mode
    BINDINGS = [
        # help and quit first: in a narrow terminal the footer loses its last keys (the app bar
        # repeats the screen keys)
        Binding("question_mark,f1", "help", "Help", tooltip="all keys of this screen (F1 also while editing text)"),
        # priority: works while the campaign editor or a text field has the focus, where digits and ? are typed
        Binding("ctrl+g", "go_to", "Go to", priority=True, show=False,  # the app bar shows it while typing
                tooltip="from anywhere, even while editing: then a screen's key (1-8) or ? for help"),
        Binding("q,ctrl+q", "quit", "Quit", tooltip="asks first if something is unsaved or still being written"),
        *(Binding(entry.key, f"switch_mode('{entry.mode}')", entry.title, group=SCREENS_GROUP,
                  tooltip=entry.purpose) for entry in SCREEN_ENTRIES),
    ]
    CSS = """
    Screen { background: $background; }
    """

    campaign_path: reactive[Path | None] = reactive(None)
    campaign: reactive[Campaign | None] = reactive(None, always_update=True)  # last valid content
    unsaved = reactive(False)

    def __init__(self, campaign: Path | None = None, *, demo: bool = False, simulate: bool = True) -> None:
        super().__init__()
        self.initial_campaign = campaign
        self.demo = demo
        self.simulate = simulate
        self.screen_entries: tuple[ScreenEntry, ...] = SCREEN_ENTRIES
        self.live_runs_told: set[Path] = set()  # campaigns whose live runs were announced
        # a detached monitor left running: found before the first paint, followed from the start
        self.live_monitor: LiveMonitor | None = None
        self.monitor_day: Path | None = None  # the day folder the followed monitor watches (status line)
        self.monitor_follower = None  # DetachedMonitor, until the Monitor screen takes it over
        self.monitor_taken_by = None  # the Monitor screen once it follows the monitor itself
        self.monitor_past: list = []  # MonitorEvent seen by the app, handed over with the follower
        self.monitor_polling = False
        self.monitor_handed = False
        # freeze what start-up and first visits made (keep_long_lived); not in tests, which run
        # hundreds of apps in one process
        self.keeps_long_lived: bool | None = None  # None: when the app is not headless
        self.keep_after_s = KEEP_AFTER_S

    def on_load(self) -> None:
        from .live_monitor import live_monitors, monitor_to_show

        try:
            monitors = live_monitors()
        except Exception:  # the Monitor screen says what is wrong with the records
            monitors = []
        self.live_monitor = monitor_to_show(monitors, self.initial_campaign)
        if self.live_monitor is not None:
            self.monitor_day = self.live_monitor.day_folder

    def on_mount(self) -> None:
        if self.demo and self.simulate and self.initial_campaign is not None:
            self.simulate_demo_data(self.initial_campaign)
        if self.keeps_long_lived is None:
            self.keeps_long_lived = not self.is_headless
        if not self.is_headless:  # tests make every screen anyway; a user gets quick first visits
            self.set_timer(PRELOAD_AFTER_S, self.preload)
        if self.live_monitor is not None:
            self.call_after_refresh(self.poll_live_monitor)
            self.monitor_timer = self.set_interval(FOLLOW_MONITOR_S, self.poll_live_monitor)

    # -- a detached monitor running when the app starts ---------------------------------------------
    def poll_live_monitor(self) -> None:
        if self.live_monitor is None or self.monitor_taken_by is not None:
            self.monitor_timer.stop()
            return
        if not self.monitor_polling:
            self.monitor_polling = True
            self.read_live_monitor(self.live_monitor)

    @work(thread=True, group="monitor-follow")
    def read_live_monitor(self, live: LiveMonitor) -> None:
        """Its new events (alerts notified here, on any screen) and whether it still runs."""
        from engine.monitor.detached import MonitorRecord

        from .detached_monitor import DetachedMonitor

        try:
            if self.monitor_follower is None:
                self.monitor_follower = DetachedMonitor(MonitorRecord.load(live.folder), catch_up_events=True)
            polled = self.monitor_follower.poll(False)
        except Exception:  # a record half written: the next look may work
            polled = None
        self.call_from_thread(self.live_monitor_read, polled)

    def live_monitor_read(self, polled) -> None:
        from .detached_monitor import alert_for

        self.monitor_polling = False
        if polled is None:
            return
        for event in polled.new:
            alert = None if event.detail else alert_for(event, "warning")
            if alert is not None:
                self.post_message(alert)
        events = [event for event in (*polled.past, *polled.new) if not event.detail]
        if self.monitor_handed:
            self.monitor_taken_by.take_past_events(events)  # read while being handed over
        else:
            self.monitor_past = (self.monitor_past + events)[-2000:]
        status = polled.status
        if status is not None and not status.alive and status.state != "starting":
            self.notify(f"{status.monitor_id}: {status.end_reason or status.state}", title="Monitor ended",
                        severity="warning" if status.state in ("failed", "died") else "information", markup=False)
            self.live_monitor = None

    def take_monitor_follower(self, screen) -> tuple | None:
        """The Monitor screen takes over following the live monitor: (its DetachedMonitor, the events
        already seen), or None when the app follows none."""
        if self.live_monitor is None:
            return None
        self.monitor_taken_by = screen  # from now on the screen reads it (and notifies its alerts)
        if self.monitor_follower is None:
            return None  # not read yet: the screen reads it from the start
        self.monitor_handed = True
        past, self.monitor_past = self.monitor_past, []
        return self.monitor_follower, past

    @work(thread=True, group="preload")
    def preload(self) -> None:
        """Import the other screens and the engine modules they use while the user reads the first
        screen: a first visit then only composes the screen (the imports took up to a second)."""
        import importlib

        from textual.worker import get_current_worker

        worker = get_current_worker()
        for name in (*(entry.module for entry in self.screen_entries), *PRELOAD_MODULES):
            if worker.is_cancelled:
                return
            try:
                importlib.import_module(name)
            except Exception:  # the screen reports its own problem when shown
                pass
        try:
            self.call_from_thread(self.keep_long_lived)
        except RuntimeError:  # the app is closing
            pass

    def keep_long_lived(self) -> None:
        """Take what is alive now out of the cyclic garbage collector's full passes (gc.freeze).

        Textual's widgets hold reference cycles and its render caches many small objects, so the
        collector's full passes came every few screen switches and each went through every object
        of the process (the modules, every screen made so far): 0.1-0.3 s landing inside a switch.
        Frozen objects are skipped; what was frozen and dies later is freed by reference counting
        unless it sits in a cycle (then it stays, bounded by what was alive at these few moments:
        after the preload and after each screen's first visit)."""
        if not self.keeps_long_lived:
            return
        gc.collect()  # garbage is not frozen
        gc.freeze()

    # -- state shared by the screens ------------------------------------------------------------
    def on_campaign_changed(self, message: CampaignChanged) -> None:
        if message.path != self.campaign_path:
            # another file: forget the previous one's content even before the new one validates
            self.campaign_path = message.path
            self.campaign = message.campaign
        elif message.campaign is not None:
            self.campaign = message.campaign
        if message.campaign is not None and message.path is not None and message.path not in self.live_runs_told:
            self.live_runs_told.add(message.path)
            self.announce_live_runs(message.campaign.paths.results)

    # -- runs left going (by an earlier vison or the CLI) ----------------------------------------------
    @work(thread=True, group="live-runs")
    def announce_live_runs(self, results: Path) -> None:
        """Once per campaign opened: say that runs are still going, so nobody starts them twice."""
        from engine.pipeline.runs import list_runs, run_status

        from .run_view import RunView, live_runs

        try:
            views = [RunView(record, run_status(record)) for record in list_runs(results)]
        except OSError:
            return  # the Runs screen says what is wrong with the folder
        going = live_runs(views)
        if not going:
            return
        key = next((entry.key for entry in self.screen_entries if entry.mode == "runs"), "")
        what = f"{len(going)} runs still going" if len(going) > 1 else f"run {going[0].status.run_id} still going"
        self.call_from_thread(self.notify, what + (f": press {key}" if key else ""), title="Runs", timeout=10)

    # -- demo -------------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="demo")
    def simulate_demo_data(self, config_path: Path) -> None:
        from engine.campaign.config import ConfigError

        try:
            from engine.sim.demo import demo_request, simulate_demo
            from engine.tasks.registry import load_campaign_checked

            request = demo_request(load_campaign_checked(config_path))
            if request.day_folder.exists():
                return  # simulated by an earlier run
            self.call_from_thread(self.notify, "simulating the demo session's frames…", title="Demo")
            result = simulate_demo(request)
        except (ConfigError, KeyError, ValueError, OSError) as exc:
            self.post_message(EngineFailed("Demo data not simulated", [str(exc)]))
            return
        except Exception as exc:  # an engine bug must not take the console down with it
            self.post_message(EngineFailed("Demo data not simulated (internal error)", [f"{type(exc).__name__}: {exc}"]))
            return
        if result is None:
            return  # already there from an earlier run
        first, last = result.obsid_range
        self.post_message(DemoReady(f"{len(result.exposures)} exposures of {', '.join(result.tests)} "
                                    f"(OBSIDs {first}-{last}) in {result.day_folder.name}"))

    def on_demo_ready(self, message: DemoReady) -> None:
        self.notify(message.summary, title="Demo data ready")

    def on_engine_failed(self, message: EngineFailed) -> None:
        self.notify("\n".join(message.lines), title=message.what, severity="error", timeout=10)

    def on_monitor_alert(self, message: MonitorAlert) -> None:
        """The monitor's alerts reach the user whatever screen is shown (posted from its threads)."""
        timeout = {"error": 30, "warning": 15}.get(message.severity, 6)
        self.notify(message.text, title=message.title, severity=message.severity, timeout=timeout, markup=False)
        if message.bell:
            self.bell()

    # -- keys -------------------------------------------------------------------------------------
    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    def action_go_to(self) -> None:
        from .dialogs.go_to import GoToDialog

        if isinstance(self.screen, GoToDialog):
            return
        if isinstance(self.screen, ModalScreen):
            self.notify("close this dialog first (escape, or its Cancel button)", title="Go to", severity="warning")
            return

        def chosen(target: str | None) -> None:
            if target == "help":
                self.action_help()
            elif target:
                self.switch_mode(target)

        self.push_screen(GoToDialog(self.screen_entries, self.current_mode), chosen)

    async def action_quit(self) -> None:
        pending = self.pending_work()
        if not pending:
            self.exit()
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.exit()

        self.push_screen(ConfirmDialog("Quit vison?", "\n".join(pending), yes="Quit", no="Stay"), answered)

    def pending_work(self) -> list[str]:
        """What quitting now would lose or interrupt."""
        pending = []
        if self.unsaved:
            pending.append(f"{self.campaign_path.name if self.campaign_path else 'The campaign'} has unsaved changes.")
        busy = {"write-scripts": "Scripts are being written.", "build-sessions": "Session folders are being built.",
                "demo": "Demo data are being simulated (quitting waits for them to finish).",
                "monitor": "The monitor is following a day folder: quitting stops it and its backup "
                           "(started again, it carries on where it stopped).",
                "cleanup": "Files are being removed (quitting waits for the clean-up to finish).",
                "stop-run": "A run is being stopped (quitting waits until it has ended; it ends either way)."}
        for worker in self.workers:
            if worker.group in busy and worker.is_running:
                pending.append(busy[worker.group])
        for screen in self._all_mode_screens():
            for worker in screen.workers:
                if worker.group in busy and worker.is_running:
                    pending.append(busy[worker.group])
        return list(dict.fromkeys(pending))

    def _all_mode_screens(self) -> list[Screen]:
        return [screen for stack in self._screen_stacks.values() for screen in stack]

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from vison_commands(self, screen, self.screen_entries)
        for command in super().get_system_commands(screen):
            if command.title not in ("Quit", "Keys"):  # ours asks before losing edits; help is `?`
                yield command


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["demo"]:
        parser = argparse.ArgumentParser(prog="vison demo", description="make or reopen the demo campaign")
        parser.add_argument("--out", default="demo", help="demo folder (default ./demo)")
        parser.add_argument("--no-simulate", action="store_true", help="do not simulate the demo session's data")
        args = parser.parse_args(argv[1:])
        args.demo = True
        return args
    parser = argparse.ArgumentParser(prog="vison", description=__doc__.split("\n\n")[0],
                                     epilog="`vison demo [--out DIR]` makes or reopens the demo campaign.")
    parser.add_argument("campaign", nargs="?", help="campaign TOML (default ./campaign.toml if present)")
    args = parser.parse_args(argv)
    args.demo = False
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.demo:
        from engine.sim.demo import prepare_demo_folder

        try:
            campaign = prepare_demo_folder(Path(args.out))
        except OSError as exc:
            print(f"vison demo: cannot make {args.out}: {exc}", file=sys.stderr)
            return 1
        app = VisonApp(campaign, demo=True, simulate=not args.no_simulate)
    else:
        path = Path(args.campaign) if args.campaign else None
        if path is None and Path("campaign.toml").is_file():
            path = Path("campaign.toml")
        if path is not None and not path.is_file():
            print(f"vison: no campaign file {path}", file=sys.stderr)
            return 1
        app = VisonApp(Path(os.path.abspath(path)) if path else None)
    app.run()
    # Leave at once. By now asyncio has waited for the thread workers and the terminal is restored;
    # runs are processes of their own. The interpreter's teardown (collecting astropy, numpy,
    # Textual...) would keep the shell waiting 1-2 s more after the screen is gone.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(app.return_code or 0)


if __name__ == "__main__":
    sys.exit(main())
