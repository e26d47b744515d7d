"""The `/` field of a list: one line above it, shown while used or while it holds text (on a
24-line terminal every row counts). What is typed filters the list at once (its `set_filter`);
enter, tab or escape go back to the list. In tmux escape arrives late, so enter and tab never wait
for it; the list's keys are never typed anywhere else.
"""

from __future__ import annotations

from textual.binding import Binding
from textual.widget import Widget
from textual.widgets import Input


class ListFilter(Input):
    HELP_GROUP = "Filter field"
    DEFAULT_CSS = """
    ListFilter { height: 1; border: none; padding: 0 1; background: $surface; display: none; }
    ListFilter.-shown { display: block; }
    ListFilter:focus { background: $accent 25%; }
    """
    BINDINGS = [Binding("escape", "leave", "Back to the list", show=False,
                        tooltip="leave the filter (enter and tab do too); the filter stays until emptied")]

    def __init__(self, target: str, placeholder: str = "filter: words to find (enter, tab or escape: back to the list)",
                 **kwargs) -> None:
        super().__init__(placeholder=placeholder, compact=True, **kwargs)
        self.target_id = target

    @property
    def target(self) -> Widget:
        return self.screen.query_one(f"#{self.target_id}")

    def open(self) -> None:
        self.add_class("-shown")
        self.focus()

    def action_leave(self) -> None:
        self.target.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input is self:
            self.target.set_filter(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input is self:
            event.stop()
            self.target.focus()

    def on_blur(self) -> None:
        self.set_class(bool(self.value.strip()), "-shown")
