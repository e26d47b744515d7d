"""Screen 1, Campaign: open a campaign TOML, edit it (text or form), validate as you type, save.

Validation runs in a thread worker a moment after typing stops (or at once with ctrl+r); results of
text that has changed since are dropped. Problems show in the gutter, on the cursor's line and in a
list; choosing one moves the cursor to its line.
"""

from __future__ import annotations

import os
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.timer import Timer
from textual.widgets import Static, TabbedContent, TabPane, TextArea

from ..campaign_doc import FORM_FIELDS, FormError, Validation, read_form_values, save_text, validate_campaign_text, write_form_value
from ..dialogs.confirm import ConfirmDialog
from ..dialogs.text_prompt import TextPrompt
from ..messages import CampaignChanged, CampaignValidated
from ..widgets.app_bar import AppBar, display_path
from ..widgets.status_line import VisonFooter, bottom_bars
from ..widgets.campaign_form import CampaignForm
from ..widgets.problem_list import ProblemList
from ..widgets.toml_editor import TomlEditor
from .base import VisonScreen

VALIDATE_AFTER_S = 0.6  # pause in typing before validating on its own
VALIDATE_LATEST_S = 2.0  # the first validation waits for the first paint, at most this long (no terminal focus:
                         # Textual's footer draws its keys when the terminal has the focus again)
NARROW_WIDTH = 100  # below this the problems go under the editor


class CampaignScreen(VisonScreen):
    AUTO_FOCUS = "#problems"  # focused as the screen is made (before the first frame)
    HELP_GROUP = "Campaign screen"
    BINDINGS = [
        Binding("ctrl+s", "save", "Save", tooltip="save the file; asks first if the campaign has problems"),
        Binding("ctrl+r", "validate", "Check", tooltip="validate now (it also runs by itself when typing pauses)"),
        Binding("ctrl+n", "next_problem", "Next error", tooltip="move the cursor to the next line with a problem"),
        Binding("ctrl+l", "ask_line", "Go to line…", show=False, tooltip="go to a line of the TOML (1 is the top, 0 or $ the last): "
                "Home/End and ctrl+Home may not reach the app in tmux"),
        Binding("ctrl+t", "toggle_view", "Form", tooltip="switch between the TOML text and the form"),
        Binding("ctrl+o", "open", "Open", tooltip="open another campaign TOML"),
        Binding("n", "new_campaign", "New", tooltip="make a new campaign TOML from the commented template, and open it"),
        Binding("e", "edit", "Edit", tooltip="put the cursor in the editor (or the form): letters and digits are "
                "typed there until you leave it with tab or escape"),
        Binding("escape", "leave_editor", "Leave the editor", show=False,
                tooltip="from the editor or the form to the problem list, where screen keys work again "
                "(tab does too; ctrl+g works from inside the editor)"),
    ]
    DEFAULT_CSS = """
    CampaignScreen #main { height: 1fr; }
    CampaignScreen TabbedContent { width: 1fr; height: 1fr; }
    CampaignScreen TabPane { padding: 0; height: 1fr; }
    CampaignScreen TomlEditor { height: 1fr; border: none; }
    CampaignScreen #line-problem { height: auto; max-height: 3; background: $error 20%; color: $text; padding: 0 1; }
    CampaignScreen #line-problem.-empty { display: none; }
    CampaignScreen #side { width: 46; max-width: 45%; height: 1fr; border-left: vkey $panel-lighten-2; }
    CampaignScreen #status { height: auto; padding: 0 1; }
    CampaignScreen #status.-ok { color: $success; }
    CampaignScreen #status.-bad { color: $error; }
    CampaignScreen ProblemList { height: 1fr; border: none; }
    CampaignScreen.-narrow #main { layout: vertical; }
    CampaignScreen.-narrow #side { width: 1fr; max-width: 100%; height: auto; max-height: 9; border-left: none; border-top: hkey $panel-lighten-2; }
    CampaignScreen.-narrow ProblemList { height: auto; max-height: 8; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.path: Path | None = None
        self.saved_text = ""
        self.generation = 0  # bumped on every edit; a validation applies only to its own generation
        self.validation: Validation | None = None
        self.validated_generation = -1
        self.known_text = ""  # the editor's text as last seen by text_changed
        self._timer: Timer | None = None
        self._user_toggled = False  # ctrl+t: the view change comes from the user (focus follows it)
        self.painted = False  # the footer's keys drawn: the screen is on the terminal whole
        self.validate_when_painted = False

    # -- layout ---------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield AppBar()
        with Horizontal(id="main"):
            with TabbedContent(id="views", initial="toml"):
                with TabPane("TOML", id="toml"):
                    yield TomlEditor(id="editor", read_only=True, placeholder=(
                        "No campaign open.\n\nctrl+o opens a campaign TOML; n makes a new one from the template; "
                        "`vison demo` makes a demo campaign."))
                    yield Static("", id="line-problem", classes="-empty", markup=False)
                with TabPane("Form", id="form"):
                    yield CampaignForm(id="campaign-form")
            with Vertical(id="side"):
                yield Static("no campaign open", id="status", markup=False)
                yield ProblemList(id="problems")
        yield from bottom_bars()  # the status line, then the keys (the app bar shows ^p)

    @property
    def editor(self) -> TomlEditor:
        return self.query_one("#editor", TomlEditor)

    def on_mount(self) -> None:
        self.editor.cursor_blink = not self.app.is_headless
        # the editor takes the focus only when the user goes there (e, tab, enter on a problem):
        # until then 2, ?, q... are the app's keys, never characters typed into the campaign
        self.query_one(ProblemList).focus()
        initial = getattr(self.app, "initial_campaign", None)
        if initial is not None:
            self.open_file(Path(initial))

    def on_resize(self) -> None:
        self.set_class(self.size.width < NARROW_WIDTH, "-narrow")

    @on(VisonFooter.KeysShown)
    def first_painted(self) -> None:
        self.painted = True
        self.validate_if_waiting()

    def validate_if_waiting(self) -> None:
        if self.validate_when_painted:
            self.validate_when_painted = False
            self.start_validation()

    def on_screen_resume(self) -> None:
        self.query_one(AppBar).update_bar()

    # -- opening and saving ---------------------------------------------------------------------
    def open_file(self, path: Path) -> bool:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            self.notify(f"cannot open {path}: {getattr(exc, 'strerror', None) or exc}", severity="error",
                        title="Open")
            return False
        self.path = Path(os.path.abspath(path))
        self.saved_text = self.known_text = text
        editor = self.editor
        editor.read_only = False
        editor.load_text(text)
        editor.move_cursor((0, 0))
        self._edited()
        if self.painted:
            self.call_after_refresh(self.start_validation)
        else:  # after the first paint: validating loads the analysis modules (engine.tasks.registry,
            self.validate_when_painted = True  # 0.5 s of imports in a thread, slowing the paint)
            self.set_timer(VALIDATE_LATEST_S, self.validate_if_waiting)  # the keys may wait for the focus
        self.post_message(CampaignChanged(self.path, None))
        return True

    @property
    def unsaved(self) -> bool:
        return self.path is not None and self.editor.text != self.saved_text

    def action_save(self) -> None:
        if self.path is None:
            self.notify("no campaign open: ctrl+o opens one", severity="warning")
            return
        text = self.editor.text
        validation = self.current_validation() or validate_campaign_text(text, self.path)
        self.apply_validation(validation)
        if validation.ok:
            self.write(text)
            return
        count = len(validation.problems)
        first = "\n".join(f"  {p.line or '-'}: {p.message}" for p in validation.problems[:5])

        def answered(yes: bool | None) -> None:
            if yes:
                self.write(text)

        self.app.push_screen(ConfirmDialog(
            f"Save with {count} problem(s)?",
            f"{display_path(self.path)} does not validate:\n{first}\n\nThe pipeline will refuse it until they are fixed.",
            yes="Save anyway", no="Keep editing"), answered)

    def write(self, text: str) -> None:
        assert self.path is not None
        try:
            save_text(self.path, text)
        except OSError as exc:
            self.notify(f"cannot save {self.path}: {exc.strerror or exc}", severity="error", title="Save")
            return
        self.saved_text = text
        self._edited()
        self.notify(f"saved {display_path(self.path)}", title="Save")

    def action_open(self) -> None:
        def chosen(answer: str | None) -> None:
            if answer:
                self.open_file(Path(os.path.expanduser(answer)))

        def ask_path(go: bool | None = True) -> None:
            if not go:
                return
            start = str(self.path) if self.path else os.getcwd() + os.sep
            self.app.push_screen(TextPrompt("Open a campaign TOML", start, ok="Open",
                                            hint="path of the file (relative to the folder vison started in)",
                                            check=_readable_file), chosen)

        self.after_discarding(ask_path)

    def after_discarding(self, then) -> None:
        """`then(True)` at once, or once the user agrees to discard unsaved changes (False if not)."""
        if self.unsaved:
            self.app.push_screen(ConfirmDialog("Discard unsaved changes?",
                                               f"{display_path(self.path)} has changes that are not saved.",
                                               yes="Discard", no="Keep editing"), then)
        else:
            then(True)

    def action_new_campaign(self) -> None:
        """A new campaign file from configs/campaign_template.toml (never over an existing file)."""
        from engine.paths import configs_dir

        template = configs_dir() / "campaign_template.toml"

        def chosen(answer: str | None) -> None:
            if not answer:
                return
            path = Path(os.path.abspath(os.path.expanduser(answer)))
            try:
                text = template.read_text(encoding="utf-8")
                with open(path, "x", encoding="utf-8") as out:  # "x": never over an existing file
                    out.write(text)
            except OSError as exc:
                self.notify(f"cannot make {path}: {exc.strerror or exc}", severity="error", title="New campaign")
                return
            if self.open_file(path):
                self.notify(f"made {display_path(path)} from the template: set the block, serials and paths "
                            "(e edits; the problems list says what is still wrong)", title="New campaign", timeout=10)

        def ask_path(go: bool | None = True) -> None:
            if not go:
                return
            folder = self.path.parent if self.path else Path.cwd()
            start = str(folder / "campaign_new.toml")
            self.app.push_screen(TextPrompt("New campaign from the template", start, ok="Make",
                                            hint="the file to make (it must not exist yet); its folder holds "
                                                 "data/ and results/ unless you change [paths]",
                                            check=_new_file), chosen)

        self.after_discarding(ask_path)

    # -- editing and validation -----------------------------------------------------------------
    @on(TextArea.Changed, "#editor")
    def text_changed(self) -> None:
        text = self.editor.text
        if text == self.known_text:
            return  # load_text posts Changed too: same text, same generation, no second validation
        self.known_text = text
        self._edited()
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(VALIDATE_AFTER_S, self.start_validation)

    def _edited(self) -> None:
        self.generation += 1
        self.app.unsaved = self.unsaved

    def action_validate(self) -> None:
        if self.path is None:
            self.notify("no campaign open: ctrl+o opens one", severity="warning")
            return
        self.start_validation()

    def start_validation(self) -> None:
        if self.path is not None:
            self.run_validation(self.generation, self.editor.text, self.path)

    @work(thread=True, exclusive=True, group="validate")
    def run_validation(self, generation: int, text: str, path: Path) -> None:
        self.post_message(CampaignValidated(generation, validate_campaign_text(text, path)))

    def on_campaign_validated(self, message: CampaignValidated) -> None:
        if message.generation == self.generation:
            self.validated_generation = message.generation
            self.apply_validation(message.validation)

    def current_validation(self) -> Validation | None:
        if self.validation is not None and self.validated_generation == self.generation:
            return self.validation
        return None

    def apply_validation(self, validation: Validation) -> None:
        self.validation = validation
        self.validated_generation = self.generation
        problems = list(validation.problems)
        self.editor.set_problem_lines({p.line for p in problems if p.line})
        self.query_one(ProblemList).show(problems)
        self.query_one(CampaignForm).mark_invalid({p.key for p in problems})
        status = self.query_one("#status", Static)
        status.set_class(validation.ok, "-ok")
        status.set_class(not validation.ok, "-bad")
        if validation.ok and validation.campaign is not None:
            campaign = validation.campaign
            sessions = ", ".join(campaign.sessions) or "none"
            status.update(f"✓ valid — block {campaign.info.block}, chamber {campaign.info.chamber or 'default'}, "
                          f"sessions {sessions}")
            self.post_message(CampaignChanged(self.path, campaign))
        else:
            count = len(problems)
            status.update(f"✗ {count} problem{'s' if count != 1 else ''} (^n: next, enter: go to line)")
        self.show_line_problem()

    @on(TextArea.SelectionChanged, "#editor")
    def show_line_problem(self) -> None:
        line_problem = self.query_one("#line-problem", Static)
        problems = self.validation.problems_on_line(self.editor.cursor_location[0] + 1) if self.validation else []
        line_problem.set_class(not problems, "-empty")
        line_problem.update("\n".join(f"✗ {p.key + ': ' if p.key else ''}{p.message}" for p in problems))

    # -- moving around --------------------------------------------------------------------------
    @on(ProblemList.ProblemChosen)
    def problem_chosen(self, message: ProblemList.ProblemChosen) -> None:
        if message.problem.line is None:
            self.notify("this problem names no line (it is about the whole file)", severity="information")
            return
        self.go_to_line(message.problem.line, message.problem.column)

    def go_to_line(self, line: int, column: int | None = None) -> None:
        self.query_one(TabbedContent).active = "toml"
        editor = self.editor
        editor.move_cursor((line - 1, max(0, (column or 1) - 1)), center=True)
        editor.focus()

    def action_next_problem(self) -> None:
        lines = sorted({p.line for p in (self.validation.problems if self.validation else ()) if p.line})
        if not lines:
            self.notify("no problem with a line", severity="information")
            return
        current = self.editor.cursor_location[0] + 1
        self.go_to_line(next((line for line in lines if line > current), lines[0]))

    def action_ask_line(self) -> None:
        last = self.editor.document.line_count

        def chosen(answer: str | None) -> None:
            if answer is not None:
                self.go_to_line(_line_number(answer, last))

        self.app.push_screen(TextPrompt("Go to line", str(self.editor.cursor_location[0] + 1), ok="Go",
                                        hint=f"1 to {last} (0 or $: the last line)",
                                        check=lambda text: _line_problem(text, last)), chosen)

    def action_leave_editor(self) -> None:
        """Escape: out of the editor or the form, to the problem list; never into the editor (a late
        escape followed by a screen key must not type that key into the campaign)."""
        self.query_one(ProblemList).focus()

    def action_edit(self) -> None:
        if self.query_one(TabbedContent).active == "toml":
            self.editor.focus()
        else:
            field = self.query_one(f"#{FORM_FIELDS[0].id}")
            field.focus() if not field.disabled else self.notify("the form cannot read the text: ctrl+t, fix it in the editor")

    def action_toggle_view(self) -> None:
        views = self.query_one(TabbedContent)
        self._user_toggled = True
        views.active = "form" if views.active == "toml" else "toml"

    @on(TabbedContent.TabActivated, "#views")
    def view_changed(self, event: TabbedContent.TabActivated) -> None:
        by_user, self._user_toggled = self._user_toggled, False
        if event.pane.id == "form":
            form = self.query_one(CampaignForm)
            if self.path is None:
                form.show_values(None, "No campaign open: ctrl+o opens one.")
                return
            try:
                form.show_values(read_form_values(self.editor.text))
            except FormError as exc:
                form.show_values(None, str(exc))
                return
            form.query_one(f"#{FORM_FIELDS[0].id}").focus()
        elif by_user or self.query_one(CampaignForm).has_focus_within:
            self.editor.focus()  # back from the form: the user was editing

    @on(CampaignForm.FieldEdited)
    def form_edited(self, message: CampaignForm.FieldEdited) -> None:
        editor = self.editor
        try:
            text = write_form_value(editor.text, message.field, message.value)
        except FormError as exc:
            self.notify(str(exc), severity="error", title="Form")
            return
        old = editor.text
        if text == old:
            return
        # replace only the changed span: the cursor and scroll stay put, ctrl+z undoes it like a keystroke
        start = 0
        limit = min(len(old), len(text))
        while start < limit and old[start] == text[start]:
            start += 1
        end_old, end_new = len(old), len(text)
        while end_old > start and end_new > start and old[end_old - 1] == text[end_new - 1]:
            end_old, end_new = end_old - 1, end_new - 1
        editor.replace(text[start:end_new], _location(old, start), _location(old, end_old))


def _location(text: str, index: int) -> tuple[int, int]:
    """(row, column) of a character offset in text, as TextArea locates it."""
    row = text.count("\n", 0, index)
    return row, index - (text.rfind("\n", 0, index) + 1)


def _new_file(answer: str) -> str | None:
    path = Path(os.path.expanduser(answer))
    if not answer.strip():
        return "give the path of the campaign TOML to make"
    if path.exists():
        return f"{path} exists: choose another name (ctrl+o opens an existing campaign)"
    if not path.parent.is_dir():
        return f"folder {path.parent} does not exist"
    if path.suffix != ".toml":
        return "a campaign file ends in .toml"
    return None


def _readable_file(answer: str) -> str | None:
    path = Path(os.path.expanduser(answer))
    if not answer:
        return "give the path of a campaign TOML"
    if not path.is_file():
        return f"{path} is not a file"
    return None


def _line_number(text: str, last: int) -> int:
    """A line the user typed: "$" or 0 the last line, beyond the end the last one too."""
    text = text.strip()
    if text in ("$", "0"):
        return last
    return max(1, min(int(text), last))


def _line_problem(text: str, last: int) -> str | None:
    text = text.strip()
    if text == "$" or text.isdigit():
        return None
    return f"a line number from 1 to {last}, or $ for the last line"
