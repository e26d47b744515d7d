"""A clean-up plan as the user checks it before saying yes: totals per chosen kind, then every path
that would go (and every one kept, with the reason), with its files and size."""

from __future__ import annotations

from pathlib import Path

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.widgets import DataTable, Static

from engine.pipeline.cleanup import CleanupPlan, human_size


def plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def totals_lines(totals: dict, items: int, files: int, size: int) -> list[str]:
    """Aligned lines per kind then the total, for the dialog and the report."""
    lines = [f"  {'':<14}{'items':>6}{'files':>8}{'size':>11}"]
    for kind, total in totals.items():
        if total.items:
            lines.append(f"  {kind:<14}{total.items:>6}{total.files:>8}{human_size(total.bytes):>11}")
    lines.append(f"  {'total':<14}{items:>6}{files:>8}{human_size(size):>11}")
    return lines


def relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def totals_table(plan: CleanupPlan | None, refusal: str = "") -> Table | Text:
    if plan is None:
        return Text(refusal or "measuring…", style="bold red" if refusal else "dim")
    if not plan.kinds:
        return Text("No kind chosen: tick kinds on the left (space) to see what they would free.", style="dim")
    table = Table(box=None, expand=True, padding=(0, 1), show_footer=True)
    table.add_column("Kind", footer=Text("total", style="bold"))
    table.add_column("Items", justify="right", footer=str(len(plan.items)))
    table.add_column("Files", justify="right", footer=str(plan.files))
    table.add_column("Size", justify="right", footer=Text(human_size(plan.bytes), style="bold"))
    for kind, total in plan.totals().items():
        style = "" if total.items else "dim"
        table.add_row(Text(kind, style=style), str(total.items), str(total.files),
                      Text(human_size(total.bytes), style=style))
    return table


def plan_notes(plan: CleanupPlan | None) -> Text:
    text = Text()
    if plan is None:
        return text
    if plan.kept:
        text.append(f"{len(plan.kept)} kept (see the list)\n", style="yellow")
    for note in plan.notes:
        text.append(f"{note}\n", style="dim")
    return text


class PlanTotals(Static):
    refusal = ""  # why there is no plan (the folder was refused), as shown

    def show_plan(self, plan: CleanupPlan | None, refusal: str = "") -> None:
        self.refusal = refusal
        self.update(Group(totals_table(plan, refusal), plan_notes(plan)))


class PlanItems(DataTable):
    HELP_GROUP = "Plan"

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)

    def on_mount(self) -> None:
        self.add_column("", key="action", width=6)
        self.add_column("Kind", key="kind", width=13)
        self.add_column(Text("Files", justify="right"), key="files", width=6)
        self.add_column(Text("Size", justify="right"), key="size", width=9)
        self.add_column("Path (in the results folder)", key="path")

    def show_plan(self, plan: CleanupPlan | None) -> None:
        self.clear()
        if plan is None:
            return
        for index, item in enumerate(plan.items):
            link = " (link)" if item.is_link else ""
            self.add_row(Text("remove", style="red"), item.kind, Text(str(item.files), justify="right"),
                         Text(human_size(item.bytes), justify="right"), relative(item.path, plan.root) + link,
                         key=f"item-{index}")
        for index, kept in enumerate(plan.kept):
            self.add_row(Text("keep", style="bold yellow"), kept.kind, "", "",
                         Text(f"{relative(kept.path, plan.root)}: {kept.reason}", style="yellow"), key=f"kept-{index}")
        if plan.kinds and not self.row_count:
            self.add_row("", "", "", "", Text("nothing of the chosen kinds here", style="dim"), key="nothing")
