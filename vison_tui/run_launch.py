"""Starting a pipeline run from the app, exactly as `vison-engine run CONFIG --session S ... --detach`
starts one: both go through engine.pipeline.launch.start_background_run (same validation, same run
record), a background process in its own session. Quitting the app leaves it running.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from engine.formats.names import day_folder_name

if TYPE_CHECKING:
    from engine.campaign.config import Campaign
    from engine.pipeline.runs import RunRecord

# label shown in the dialog -> (--wait, --check)
MODES: dict[str, tuple[bool, bool]] = {
    "aim": (False, False),
    "wait": (True, False),
    "check only": (False, True),
    "check only, waiting": (True, True),
}
MODE_HELP = {
    "aim": "every test of the session on the data already there",
    "wait": "watch the day folder, analyse each test as soon as its frames are complete",
    "check only": "init and check sub-tasks only, on the data already there",
    "check only, waiting": "init and check only, each test as its frames complete",
}


class LaunchRefused(ValueError):
    """The engine refused the run's inputs; the message says why, as the CLI would."""


@dataclass(frozen=True)
class RunRequest:
    config: Path
    session: str
    mode: str = "aim"
    day: str = ""
    start_obsid: int | None = None
    jobs: int | None = None  # None: the engine's default (the machine's cores)
    tag: str = ""
    idle_stop: float | None = None
    results: str = ""  # absolute; "" = the campaign's results folder
    executor: str = ""  # "local" or "dask://HOST:PORT"; "" = the campaign's [run] executor

    def cli_args(self) -> list[str]:
        """The arguments of `vison-engine run` (without --detach)."""
        wait, check = MODES[self.mode]
        args = [str(self.config), "--session", self.session]
        args += ["--wait"] if wait else []
        args += ["--check"] if check else []
        if self.day:
            args += ["--day", self.day]
        if self.start_obsid is not None:
            args += ["--start-obsid", str(self.start_obsid)]
        if self.jobs is not None:
            args += ["--jobs", str(self.jobs)]
        if self.executor:
            args += ["--executor", self.executor]
        if self.tag:
            args += [f"--tag={self.tag}"]
        if self.idle_stop is not None and wait:
            args += ["--idle-stop", f"{self.idle_stop:g}"]
        if self.results:
            args += ["--results", self.results]
        return args

    def command_line(self) -> str:
        """The same run typed in a shell (shown in the dialog: the CLI is the app's twin)."""
        return shlex.join(["vison-engine", "run", *self.cli_args(), "--detach"])


def start_run(request: RunRequest) -> RunRecord:
    """Validate as the CLI does, then start the run in the background; raises LaunchRefused."""
    from engine.pipeline.launch import RunInputError, start_background_run  # loads the analysis modules

    wait, check = MODES[request.mode]
    try:
        return start_background_run(request.config, request.session, wait=wait, check_only=check,
                                    day_folder=request.day or None, start_obsid=request.start_obsid,
                                    jobs=request.jobs, tag=request.tag, idle_stop=request.idle_stop,
                                    results=request.results or None, executor=request.executor or None)
    except RunInputError as problem:
        raise LaunchRefused(str(problem)) from None


def day_folders(campaign: Campaign | None) -> list[str]:
    """Day folders under the campaign's data folder that hold an EXP_LOG, newest name last."""
    if campaign is None:
        return []
    try:
        folders = {p.parent.name for p in campaign.paths.data.glob("*/EXP_LOG_*.txt")}
    except OSError:
        return []
    return sorted(folders, key=lambda name: os.path.getmtime(campaign.paths.data / name))


def newest_day_folder(campaign: Campaign | None) -> str | None:
    """The most recently written day folder (with an EXP_LOG) under the data folder, or None."""
    folders = day_folders(campaign)
    return folders[-1] if folders else None


def watched_day_folder(campaign: Campaign, session: str | None, day: str, when: datetime | None = None) -> tuple[Path, str]:
    """The day folder a wait run watches, as the engine picks it: the given one, else the session's,
    else the one ELVIS names after the date (`when`, default now). Returns (path, how it was chosen)."""
    chosen, how = day, "given"
    if not chosen and session in campaign.sessions:
        chosen, how = campaign.sessions[session].day_folder or "", "the session's"
    if not chosen:
        return campaign.paths.data / day_folder_name(when or datetime.now()), "today's"
    path = Path(os.path.expanduser(chosen))
    if path.is_absolute():
        return path, how
    for base in (campaign.paths.data, campaign.paths.config_dir):
        if (base / path).is_dir():
            return base / path, how
    return campaign.paths.data / path, how


def missing_day_note(campaign: Campaign, path: Path, how: str) -> str:
    """Why a wait run on `path` would wait for ever ("" when the folder is there)."""
    if path.is_dir():
        return ""
    newest = newest_day_folder(campaign)
    where = path.name if path.parent == campaign.paths.data else str(path)
    offer = f"newest day folder there: {newest}" if newest else "no day folder there yet"
    return f"day folder {where} ({how}) does not exist: the run waits until ELVIS creates it; {offer}"
