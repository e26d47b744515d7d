"""The script writer's fields: serials, operator, ELVIS version, chamber, folders, date.

Fields follow the open campaign until the user edits them (then the campaign no longer overwrites).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import Input, Label, Select, Static

from engine.campaign.scripts import ELVIS_VERSIONS

from ..script_plan import FIELD_LABELS, ScriptFields, chamber_choices

_SELECTS = ("elvis", "chamber")
_SHOWN = ("roe", "rpsu", "ccd1", "ccd2", "ccd3", "operator", "elvis", "chamber", "output", "date")
_HINTS = {"output": "scripts folder", "date": "YYYY-MM-DD (empty: today)",
          "operator": "unk if not known yet"}


class ScriptFieldsForm(VerticalScroll):
    HELP_GROUP = "Script fields"
    DEFAULT_CSS = """
    ScriptFieldsForm { padding: 0 1; }
    ScriptFieldsForm .title { text-style: bold; }
    ScriptFieldsForm .hint { color: $text-muted; }
    ScriptFieldsForm .row { height: 1; margin-top: 1; }
    ScriptFieldsForm Label { width: 10; }
    ScriptFieldsForm Input, ScriptFieldsForm Select { width: 1fr; }
    ScriptFieldsForm .-invalid { color: $error; text-style: bold; }
    """

    @dataclass
    class FieldChanged(Message):
        name: str
        value: str

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.prefilled: dict[str, str] = {}  # what the campaign last put in each field
        self.last: dict[str, str] = {}  # each field's value as last announced

    def compose(self) -> ComposeResult:
        yield Static("Script writer", classes="title")
        yield Static("Folder: relative to the campaign's folder", classes="hint")
        defaults = ScriptFields()
        for name in _SHOWN:
            with Horizontal(classes="row"):
                yield Label(FIELD_LABELS[name])
                value = getattr(defaults, name)
                if name == "elvis":
                    yield Select([(v, v) for v in ELVIS_VERSIONS], value=value, allow_blank=False, compact=True,
                                 id=f"field-{name}")
                elif name == "chamber":
                    yield Select([(c, c) for c in chamber_choices()], value=value, allow_blank=False, compact=True,
                                 id=f"field-{name}")
                else:
                    yield Input(value, placeholder=_HINTS.get(name, ""), compact=True, id=f"field-{name}")

    def on_mount(self) -> None:
        for field_input in self.query(Input):
            field_input.cursor_blink = not self.app.is_headless

    def values(self, sessions_output: str = "") -> ScriptFields:
        found = {}
        for name in _SHOWN:
            widget = self.query_one(f"#field-{name}")
            value = widget.value
            found[name] = "" if value is Select.NULL else str(value)
        return ScriptFields(**found, sessions_output=sessions_output or ScriptFields().sessions_output)

    def prefill(self, values: ScriptFields) -> None:
        """Set each field the user has not changed since the last prefill."""
        for name, value in asdict(values).items():
            if name not in _SHOWN:
                continue
            widget = self.query_one(f"#field-{name}")
            current = "" if widget.value is Select.NULL else str(widget.value)
            if name in self.prefilled and current != self.prefilled[name]:
                continue  # the user's edit wins
            if isinstance(widget, Select):
                options = [(v, v) for v in (ELVIS_VERSIONS if name == "elvis" else chamber_choices())]
                if value and value not in dict(options):
                    options.append((f"{value} (unknown)", value))
                with widget.prevent(Select.Changed):
                    widget.set_options(options)
                widget.value = value
            else:
                widget.value = value
            self.prefilled[name] = value
            self.last[name] = value  # the screen reads prefilled values itself, no announcement needed

    def mark_invalid(self, names: set[str]) -> None:
        for name in _SHOWN:
            self.query_one(f"#field-{name}").set_class(name in names, "-invalid")

    def _changed(self, widget: Input | Select) -> None:
        # the widget's value now, not the event's: Select posts a Changed for its initial value
        # after mounting, which may arrive after a prefill
        name = (widget.id or "").removeprefix("field-")
        value = "" if widget.value is Select.NULL else str(widget.value)
        if self.last.get(name) != value:
            self.last[name] = value
            self.post_message(self.FieldChanged(name, value))

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self._changed(event.input)

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        self._changed(event.select)


