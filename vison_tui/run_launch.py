"""Starting a pipeline run from the app, exactly as `vison-engine run CONFIG --session S ... --detach`
starts one: both go through engine.pipeline.launch.start_background_run (same validation, same run
record), a background process in its own session. Quitting the app leaves it running.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from engine.campaign.config import Campaign
from engine.pipeline.launch import RunInputError, start_background_run
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
    jobs: int = 1
    tag: str = ""
    idle_stop: float | None = None

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
        if self.jobs != 1:
            args += ["--jobs", str(self.jobs)]
        if self.tag:
            args += [f"--tag={self.tag}"]
        if self.idle_stop is not None and wait:
            args += ["--idle-stop", f"{self.idle_stop:g}"]
        return args

    def command_line(self) -> str:
        """The same run typed in a shell (shown in the dialog: the CLI is the app's twin)."""
        return shlex.join(["vison-engine", "run", *self.cli_args(), "--detach"])


def start_run(request: RunRequest) -> RunRecord:
    """Validate as the CLI does, then start the run in the background; raises LaunchRefused."""
    wait, check = MODES[request.mode]
    try:
        return start_background_run(request.config, request.session, wait=wait, check_only=check,
                                    day_folder=request.day or None, start_obsid=request.start_obsid,
                                    jobs=request.jobs, tag=request.tag, idle_stop=request.idle_stop)
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
