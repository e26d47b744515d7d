"""What each clean-up did: space freed per kind, and anything kept at the last check or that could
not be removed, with the reason. Kept for the session, newest last."""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.widgets import RichLog

from engine.pipeline.cleanup import CleanupReport, human_size

from .app_bar import display_path
from .cleanup_plan import plural, relative, totals_lines


def report_lines(report: CleanupReport) -> list[Text]:
    lines = [Text(f"Freed {human_size(report.bytes)} in {plural(report.files, 'file')} under "
                  f"{display_path(report.root)}", style="bold green")]
    if report.removed:
        lines += [Text(line) for line in totals_lines(report.totals(), len(report.removed), report.files, report.bytes)]
    for kept in report.kept:
        lines.append(Text(f"  kept {relative(kept.path, report.root)} ({kept.kind}): {kept.reason}", style="yellow"))
    for path, error in report.errors.items():
        lines.append(Text(f"  ✗ {path}: {error}", style="bold red"))
    return lines


class CleanupLog(RichLog):
    HELP_GROUP = "Clean-up report"
    BINDINGS = [Binding("c", "clear_log", "Clear report", show=False)]

    def __init__(self, **kwargs) -> None:
        super().__init__(wrap=True, markup=False, highlight=False, **kwargs)

    def on_mount(self) -> None:
        self.write(Text("What each clean-up freed, kept or could not remove is written here.", style="dim"))

    def report(self, report: CleanupReport) -> None:
        for line in report_lines(report):
            self.write(line)

    def note(self, text: str, style: str = "") -> None:
        self.write(Text(text, style=style))

    def action_clear_log(self) -> None:
        self.clear()
