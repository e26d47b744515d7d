"""The list of a campaign's problems, each with its line; choosing one jumps the editor there."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from engine.formats.tomlfile import ConfigProblem


class ProblemList(OptionList):
    HELP_GROUP = "Problems list"
    BINDINGS = [Binding("enter", "select", "Go to line")]

    @dataclass
    class ProblemChosen(Message):
        problem: ConfigProblem

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.problems: list[ConfigProblem] = []

    def show(self, problems: list[ConfigProblem]) -> None:
        highlighted = self.highlighted
        self.problems = list(problems)
        self.set_options([Option(self._prompt(p), id=str(i)) for i, p in enumerate(self.problems)])
        if self.problems:
            self.highlighted = min(highlighted or 0, len(self.problems) - 1)

    @staticmethod
    def _prompt(problem: ConfigProblem) -> Text:
        where = f"line {problem.line}" if problem.line is not None else "no line"
        text = Text.assemble((f"{where:>8} ", "bold"), (problem.key + ": " if problem.key else "", "italic"),
                             problem.message)
        return text

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.post_message(self.ProblemChosen(self.problems[event.option_index]))
