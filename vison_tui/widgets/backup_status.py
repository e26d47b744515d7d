"""Per backup target: files copied (and verified), pending, failed (with the reason) and in conflict
(a different file of that name was there: kept, ours written beside it)."""

from __future__ import annotations

from typing import Any, Mapping

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from engine.pipeline.cleanup import human_size

from .alert_list import TARGET_FAILURE
from .app_bar import display_path

LISTED = 3  # failed or conflicting files named per target; the rest are counted


def backup_text(backup: Mapping[str, Mapping[str, Any]], targets_chosen: bool) -> Text:
    if not backup:
        return Text("no backup folder: b chooses one (the copy starts with the monitor)" if not targets_chosen
                    else "waiting for the monitor to start", style="dim")
    text = Text()
    for index, (target, report) in enumerate(backup.items()):
        if index:
            text.append("\n")
        text.append(f"→ {display_path(target) if ':' not in target else target}\n", style="bold")
        text.append(f"  {report.get('copied', 0)} copied", style="green")
        text.append(f" ({human_size(report.get('copied_bytes', 0))})", style="dim")
        failed_files = dict(report.get("failed_files", {}))
        unwritable = failed_files.pop(TARGET_FAILURE, None)  # the target itself, not a file
        pending, conflicts = report.get("pending", 0), report.get("conflicts", 0)
        failed = report.get("failed", 0) - (unwritable is not None)
        text.append(f" · {pending} pending", style="" if pending else "dim")
        text.append(f" · {failed} failed", style="bold red" if failed else "dim")
        text.append(f" · {conflicts} conflicts", style="bold yellow" if conflicts else "dim")
        if unwritable is not None:
            text.append(f"\n  ✗ cannot back up here: {unwritable}; nothing is copied until it can be",
                        style="bold red")
        for name, reason in list(failed_files.items())[:LISTED]:
            text.append(f"\n  ✗ {name}: {reason}", style="red")
        for name, kept_as in list(report.get("conflict_files", {}).items())[:LISTED]:
            text.append(f"\n  ! {name}: differs at the target; ours kept as {kept_as}", style="yellow")
        more = max(0, failed - LISTED) + max(0, conflicts - LISTED)
        if more:
            text.append(f"\n  … {more} more in the alerts list", style="dim")
    return text


class BackupStatus(VerticalScroll, can_focus=True):
    HELP_GROUP = "Backup"
    DEFAULT_CSS = """
    BackupStatus { height: auto; max-height: 100%; scrollbar-size-vertical: 1; }
    """

    def compose(self):
        yield Static(backup_text({}, False), markup=False)

    def show_backup(self, backup: Mapping[str, Mapping[str, Any]], targets_chosen: bool) -> None:
        self.query_one(Static).update(backup_text(backup, targets_chosen))
