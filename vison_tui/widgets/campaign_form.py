"""The form view of the campaign: the common fields, each edit written back into the TOML text."""

from __future__ import annotations

from dataclasses import dataclass

from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import Input, Label, Select, Static

from engine.campaign.chamber import available_chambers

from ..campaign_doc import FORM_FIELDS, FormField

_DEFAULT_CHAMBER = ""  # the Select's value for "no chamber key": the default profile


class CampaignForm(VerticalScroll):
    HELP_GROUP = "Form"
    DEFAULT_CSS = """
    CampaignForm { padding: 0 1; }
    CampaignForm .note { color: $text-muted; margin-bottom: 1; height: auto; }
    CampaignForm .note.-error { color: $error; }
    CampaignForm .section { text-style: bold; margin-top: 1; }
    CampaignForm .row { height: 1; margin-bottom: 1; }
    CampaignForm Label { width: 18; }
    CampaignForm Input, CampaignForm Select { width: 1fr; max-width: 60; }
    CampaignForm Input.-invalid { color: $error; text-style: bold; }
    """

    @dataclass
    class FieldEdited(Message):
        field: FormField
        value: str

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        # field id -> value as last read from the text; None until the form shows a text. Only a
        # change away from it is the user's edit (widgets also post Changed when set or mounted).
        self.known: dict[str, str] | None = None

    def compose(self) -> ComposeResult:
        yield Static("Edits here are written into the TOML text, keeping its comments. ctrl+t: back to the TOML.",
                     classes="note", id="form-note", markup=False)
        table = None
        for field in FORM_FIELDS:
            if field.table != table:
                table = field.table
                yield Static(f"[{table}]", classes="section", markup=False)
            with Horizontal(classes="row"):
                yield Label(field.label + (" *" if field.required else ""))
                if field.key == "chamber":
                    yield Select(self._chamber_options(""), id=field.id, allow_blank=False, compact=True,
                                 value=_DEFAULT_CHAMBER)
                else:
                    yield Input(placeholder=field.hint, id=field.id, compact=True)

    def on_mount(self) -> None:
        for field_input in self.query(Input):
            field_input.cursor_blink = not self.app.is_headless

    @staticmethod
    def _chamber_options(current: str) -> list[tuple[str, str]]:
        # "default" is what no chamber key means: offered once, as the absence of the key
        names = [n for n in available_chambers() if n != "default" or current == "default"]
        options = [("(none: default profile)", _DEFAULT_CHAMBER)] + [(n, n) for n in names]
        if current and current not in names:
            options.append((f"{current} (unknown profile)", current))
        return options

    def show_values(self, values: dict[str, str] | None, problem: str = "") -> None:
        """Fill the fields without echoing edits back; None (unreadable TOML) disables them."""
        note = self.query_one("#form-note", Static)
        note.set_class(values is None, "-error")
        note.update(problem if values is None else
                    "Edits here are written into the TOML text, keeping its comments. ctrl+t: back to the TOML.")
        self.known = dict(values) if values is not None else None
        for field in FORM_FIELDS:
            widget = self.query_one(f"#{field.id}")
            widget.disabled = values is None
            if values is None:
                continue
            value = values.get(field.id, "")
            if isinstance(widget, Select):
                with widget.prevent(Select.Changed):
                    widget.set_options(self._chamber_options(value))
                    widget.value = value
            elif isinstance(widget, Input) and widget.value != value:
                with widget.prevent(Input.Changed):
                    widget.value = value

    def mark_invalid(self, keys: set[str]) -> None:
        """Flag fields named by problems (keys such as "campaign.block")."""
        for field in FORM_FIELDS:
            self.query_one(f"#{field.id}").set_class(f"{field.table}.{field.key}" in keys, "-invalid")

    def _field(self, widget_id: str | None) -> FormField | None:
        return next((f for f in FORM_FIELDS if f.id == widget_id), None)

    def _edited(self, widget_id: str | None, value: str) -> None:
        field = self._field(widget_id)
        if field is None or self.known is None or self.known.get(field.id) == value:
            return
        self.known[field.id] = value
        self.post_message(self.FieldEdited(field, value))

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self._edited(event.input.id, event.value)

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        if event.value is not Select.NULL:
            self._edited(event.select.id, str(event.value))
