"""Screen 7, Clean-up: free space in a results folder (engine.pipeline.cleanup).

Choose the kinds (and optionally sessions and tests); a thread worker plans at once and the plan
lists every path that would go, with sizes. `x` asks in a dialog that repeats what will go, per
kind; only `y` removes (Cancel has the focus). The report says what was freed, kept or failed.
"""

from __future__ import annotations

import os
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Static

from engine.campaign.config import Campaign
from engine.pipeline.cleanup import KINDS, ROUTINE_KINDS, CleanupError, CleanupPlan, execute, human_size, plan_cleanup

from ..dialogs.confirm import ConfirmDialog
from ..dialogs.text_prompt import TextPrompt
from ..messages import CleanupDone, CleanupPlanned, EngineFailed
from ..widgets.app_bar import AppBar, display_path
from ..widgets.status_line import bottom_bars
from ..widgets.cleanup_plan import PlanItems, PlanTotals, plural, totals_lines
from ..widgets.cleanup_report import CleanupLog
from ..widgets.kind_checklist import KindChecklist
from ..widgets.panel import Panel, toggle_zoom
from .base import VisonScreen


def names(text: str) -> list[str] | None:
    """`D11, D12` -> ["D11", "D12"]; empty -> None (no filter)."""
    found = [part.strip() for part in text.replace(" ", ",").split(",") if part.strip()]
    return found or None


def confirmation_text(plan: CleanupPlan, sessions: list[str] | None, tests: list[str] | None) -> str:
    """The dialog's body: per kind what goes, then what stays; read before saying yes."""
    lines = [f"From {display_path(plan.root)}"
             + (f", sessions {', '.join(sessions)}" if sessions else "")
             + (f", tests {', '.join(tests)}" if tests else "") + ":", ""]
    lines += totals_lines(plan.totals(), len(plan.items), plan.files, plan.bytes)
    if plan.kept:
        lines += ["", f"Kept, not removed: {len(plan.kept)} (listed on the screen with the reasons)."]
    if "results" in plan.kinds:
        lines += ["", "`results` is chosen: current result.json and report.md files go too."]
    lines += ["", "Each path is checked again just before it goes. This cannot be undone."]
    return "\n".join(lines)


class CleanupScreen(VisonScreen):
    AUTO_FOCUS = "#kinds"  # focused as the screen is made (before the first frame)
    HELP_GROUP = "Clean-up screen"
    BINDINGS = [
        Binding("x", "remove", "Remove…", tooltip="remove what the plan lists, after a question that repeats it"),
        Binding("o", "choose_root", "Results folder", tooltip="the results folder to clean (default: the campaign's)"),
        Binding("s", "choose_sessions", "Sessions", tooltip="only these sessions (e.g. D11,D12); empty: all"),
        Binding("t", "choose_tests", "Tests", tooltip="only these tests (e.g. BIAS01,BIAS02); empty: all"),
        Binding("r", "replan", "Measure again", show=False, tooltip="look at the results folder again"),
        Binding("z", "zoom", "Zoom", show=False, tooltip="show the focused panel alone, z again to come back"),
    ]
    DEFAULT_CSS = """
    CleanupScreen #cleanup-where { height: 1; padding: 0 1; background: $boost; }
    CleanupScreen #cleanup-top { height: 14; }
    CleanupScreen #kinds-panel { width: 1fr; }
    CleanupScreen KindChecklist { height: auto; max-height: 100%; overflow-x: hidden; }
    CleanupScreen #kind-detail { height: auto; max-height: 2; padding: 0 1; color: $text-muted; }
    CleanupScreen #totals-panel { width: 40; }
    CleanupScreen PlanTotals { height: auto; }
    CleanupScreen #items-panel { height: 1fr; min-height: 5; }
    CleanupScreen #report-panel { height: 8; }
    CleanupScreen.-short #cleanup-top { height: 12; }
    CleanupScreen.-short #kind-detail { max-height: 1; }
    CleanupScreen.-short #report-panel { height: 4; }
    CleanupScreen.-narrow #totals-panel { width: 34; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.root_choice: Path | None = None  # chosen with o; else the campaign's results folder
        self.sessions: list[str] | None = None
        self.tests: list[str] | None = None
        self.plan: CleanupPlan | None = None
        self.generation = 0  # bumped by every change; a plan applies only to its own generation
        self.measured_for: tuple | None = None  # (root, sessions, tests) the "on its own" sizes are for
        self.measuring: tuple | None = None  # the scope being measured by the newest plan worker
        self.removing = False

    def compose(self) -> ComposeResult:
        yield AppBar()
        yield Static("", id="cleanup-where", markup=False)
        with Horizontal(id="cleanup-top"):
            with Panel(title="Kinds to remove (space)", id="kinds-panel"):
                yield KindChecklist(id="kinds")
                yield Static("", id="kind-detail", markup=False)
            with Panel(title="Plan", id="totals-panel"):
                yield PlanTotals(id="totals")
        with Panel(title="What goes, and what is kept", id="items-panel"):
            yield PlanItems(id="items")
        with Panel(title="Report", id="report-panel"):
            yield CleanupLog(id="report")
        yield from bottom_bars()  # the status line, then the keys (the app bar shows ^p)

    def on_mount(self) -> None:
        self.query_one(KindChecklist).focus()
        self.watch(self.app, "campaign", self.campaign_changed)

    def on_resize(self) -> None:
        self.set_class(self.size.height < 30, "-short")
        self.set_class(self.size.width < 100, "-narrow")

    def on_screen_resume(self) -> None:
        self.query_one(AppBar).update_bar()
        self.replan(measure=True)  # runs may have written or removed results meanwhile

    def campaign_changed(self, campaign: Campaign | None) -> None:
        if self.root_choice is None:
            self.replan(measure=True)

    # -- what to clean --------------------------------------------------------------------------
    def results_root(self) -> Path | None:
        if self.root_choice is not None:
            return self.root_choice
        campaign = getattr(self.app, "campaign", None)
        return campaign.paths.results if campaign is not None else None

    def update_where(self) -> None:
        root = self.results_root()
        where = display_path(root) if root else "none (no campaign open): o chooses one"
        source = "" if self.root_choice or root is None else " (the campaign's)"
        self.query_one("#cleanup-where", Static).update(
            f"Results {where}{source} · sessions: {', '.join(self.sessions) if self.sessions else 'all'} (s)"
            f" · tests: {', '.join(self.tests) if self.tests else 'all'} (t)")

    def action_choose_root(self) -> None:
        def check(text: str) -> str | None:
            if not text:
                return "give the results folder (the one holding the session folders, logs/ and runs/)"
            return None if Path(text).expanduser().is_dir() else f"{text} is not an existing folder"

        def chosen(text: str | None) -> None:
            if text is not None:
                self.root_choice = Path(os.path.abspath(Path(text).expanduser()))
                self.replan(measure=True)

        root = self.results_root()
        self.app.push_screen(TextPrompt("Results folder to clean", display_path(root) if root else "",
                                        hint="the folder holding <session>/<TEST>/, logs/ and runs/", ok="Use",
                                        check=check), chosen)

    def action_choose_sessions(self) -> None:
        self._ask_names("Only these sessions", "sessions", "e.g. D11, D12; empty: every session")

    def action_choose_tests(self) -> None:
        self._ask_names("Only these tests", "tests", "e.g. BIAS01, BIAS02; empty: every test")

    def _ask_names(self, title: str, attribute: str, hint: str) -> None:
        def chosen(text: str | None) -> None:
            if text is not None:
                setattr(self, attribute, names(text))
                self.replan(measure=True)

        current = getattr(self, attribute)
        self.app.push_screen(TextPrompt(title, ", ".join(current or []), hint=hint + " (runs and logs are not per "
                                        "session: a filter leaves them out)", ok="Use", check=lambda _: None), chosen)

    @on(KindChecklist.RowHighlighted, "#kinds")
    def show_kind_detail(self) -> None:
        kind = self.query_one(KindChecklist).current_kind()
        if kind is not None:
            routine = "routine" if kind in ROUTINE_KINDS else "never routine: only when ticked"
            self.query_one("#kind-detail", Static).update(f"{kind}: {KINDS[kind]} ({routine})")

    @on(KindChecklist.Changed)
    def kinds_changed(self) -> None:
        self.replan(measure=False)

    def action_replan(self) -> None:
        self.replan(measure=True)

    # -- planning -------------------------------------------------------------------------------
    def replan(self, measure: bool) -> None:
        self.update_where()
        self.generation += 1
        self.plan = None
        root = self.results_root()
        scope = (root, tuple(self.sessions or ()), tuple(self.tests or ()))
        if measure:
            self.measured_for = None  # until this measurement lands: a newer plan measures again
        measure = scope != self.measured_for
        self.measuring = scope
        self.query_one(PlanTotals).show_plan(None, "" if root else "No results folder: o chooses one.")
        self.query_one(PlanItems).show_plan(None)
        if root is None:
            return
        if measure:
            self.query_one(KindChecklist).set_alone(None)
        self.compute_plan(self.generation, root, self.query_one(KindChecklist).kinds, self.sessions, self.tests,
                          measure)

    @work(thread=True, exclusive=True, group="cleanup-plan")
    def compute_plan(self, generation: int, root: Path, kinds: tuple[str, ...], sessions: list[str] | None,
                     tests: list[str] | None, measure: bool) -> None:
        try:
            plan = plan_cleanup(root, kinds, sessions, tests)
            alone = {}
            for kind in KINDS if measure else ():
                on_its_own = plan_cleanup(root, [kind], sessions, tests)
                alone[kind] = (on_its_own.totals()[kind], len(on_its_own.kept))
        except CleanupError as exc:  # RefusedRoot: not a results tree, the home folder...
            self.post_message(CleanupPlanned(generation, None, {}, str(exc)))
        except OSError as exc:
            self.post_message(CleanupPlanned(generation, None, {}, f"cannot read {root}: {exc.strerror or exc}"))
        except Exception as exc:  # an engine bug: say so, keep the app alive
            self.post_message(CleanupPlanned(generation, None, {}, f"internal error: {type(exc).__name__}: {exc}"))
        else:
            self.post_message(CleanupPlanned(generation, plan, alone))

    def on_cleanup_planned(self, message: CleanupPlanned) -> None:
        if message.generation != self.generation:
            return  # the choice changed meanwhile: a newer plan is on its way
        self.plan = message.plan
        if message.alone:
            self.measured_for = self.measuring
        if message.alone or message.plan is None:
            self.query_one(KindChecklist).set_alone(message.alone if message.plan is not None else {})
        self.query_one(PlanTotals).show_plan(message.plan, message.refusal)
        self.query_one(PlanItems).show_plan(message.plan)
        plan = message.plan
        title = "Plan"
        if plan is not None and plan.kinds:
            title = f"Plan: {plural(plan.files, 'file')}, {human_size(plan.bytes)}"
        self.query_one("#totals-panel").border_title = title

    # -- removing -------------------------------------------------------------------------------
    def action_remove(self) -> None:
        plan = self.plan
        if plan is None:
            self.tell("the plan is not ready yet (or the folder was refused)", "warning")
            return
        if not plan.kinds:
            self.tell("choose kinds to remove first (space on a kind)", "warning")
            return
        if not plan.items:
            self.tell("nothing of the chosen kinds to remove")
            return
        if self.removing:
            self.tell("a clean-up is still removing files: wait for its report", "warning")
            return
        sessions, tests = self.sessions, self.tests

        def answered(yes: bool | None) -> None:
            if yes:
                self.query_one(CleanupLog).note(f"Removing {plural(plan.files, 'file')} ({human_size(plan.bytes)})…")
                self.removing = True
                self.run_cleanup(plan)
            else:
                self.query_one(CleanupLog).note("Nothing removed: the clean-up was cancelled.", style="dim")

        self.app.push_screen(ConfirmDialog(f"Remove {plural(plan.files, 'file')} ({human_size(plan.bytes)})?",
                                           confirmation_text(plan, sessions, tests), yes="Remove", no="Cancel"),
                             answered)

    @work(thread=True, exclusive=True, group="cleanup")
    def run_cleanup(self, plan: CleanupPlan) -> None:
        try:
            report = execute(plan)
        except Exception as exc:  # execute reports per path; anything else is a bug worth saying
            self.post_message(EngineFailed("Clean-up stopped (internal error)", [f"{type(exc).__name__}: {exc}"]))
            report = None
        self.post_message(CleanupDone(report))

    def on_cleanup_done(self, message: CleanupDone) -> None:
        self.removing = False
        report = message.report
        if report is None:
            self.replan(measure=True)
            return
        self.query_one(CleanupLog).report(report)
        problems = len(report.kept) + len(report.errors)
        self.notify(f"freed {human_size(report.bytes)} in {plural(report.files, 'file')}"
                    + (f"; {problems} kept or failed, see the report" if problems else ""),
                    title="Clean-up", severity="warning" if report.errors else "information", markup=False)
        self.replan(measure=True)

    # -- other keys -----------------------------------------------------------------------------
    def action_zoom(self) -> None:
        toggle_zoom(self)

    def tell(self, text: str, severity: str = "information") -> None:
        self.notify(text, title="Clean-up", severity=severity, markup=False)

    def on_engine_failed(self, message: EngineFailed) -> None:
        self.query_one(CleanupLog).note(f"✗ {message.what}: " + "; ".join(message.lines), style="bold red")
        self.notify("\n".join(message.lines), title=message.what, severity="error", timeout=10, markup=False)
