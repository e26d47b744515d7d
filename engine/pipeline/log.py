"""The pipeline log, in the format the campaign's users read (and grep) every day.

`Calib_<run id>.log` (`FM<YYYYMMDD>_<HHMMSS><tag>`, `-2`... when taken): a header (pipeline id, block, chamber, version, tasks),
each task's inputs and sub-tasks, and a summary block between lines of '#' after every task and
at the end of the run.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from .. import __version__

RULE = "#" * 70


@dataclass
class TaskSummary:
    test: str
    minutes: float
    obsids: tuple[int, int] | None
    flags: list[str]
    errors: bool
    state: str = "done"  # done | errors | skipped


LOGS_FOLDER = "logs"  # <results>/logs/
# A tag ends the run id and the log's file name: a name, never a path (no "/", no "..").
_TAG_RE = re.compile(r"[A-Za-z0-9_.+-]{0,40}")


def tag_problem(tag: str) -> str | None:
    """Why `tag` cannot be part of a run id and a file name, or None."""
    if _TAG_RE.fullmatch(tag) and ".." not in tag:
        return None
    return (f"tag {tag!r}: expected up to 40 letters, digits, '_', '-', '.' or '+' (e.g. _D11); "
            "it names the run and its log, it is not a path")


def pipeline_id(started: datetime, tag: str = "") -> str:
    return f"FM{started:%Y%m%d_%H%M%S}{tag}"


def log_filename(run_id: str) -> str:
    """`Calib_<run id>.log`: one log per run, since run ids are unique (runs.new_run_id)."""
    return f"Calib_{run_id}.log"


def open_pipeline_log(path: Path, name: str) -> logging.Logger:
    """A logger writing to the pipeline log file (appending: a restarted run keeps its history)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger(f"vison.pipeline.{name}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s - %(levelname)s - %(message)s"))
    logger.addHandler(handler)
    return logger


def close_pipeline_log(logger: logging.Logger) -> None:
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()


def header(pid: str, block: str, chamber: str, tasks: list[str]) -> str:
    return (f"_\nStarting FM Calib. Pipeline\nPipeline ID: {pid}\nBLOCK ID: {block}\nChamber: {chamber}\n"
            f"vison version: {__version__}\nTasks: {tasks}\n_")


def summary_block(pid: str, block: str, chamber: str, tasks: list[str], summaries: list[TaskSummary]) -> str:
    lines = [RULE, f"Pipeline ID: {pid}", f"BLOCK ID: {block}", f"Chamber: {chamber}",
             f"vison version: {__version__}", f"Tasks: {tasks}", "_"]
    for s in summaries:
        lines.append(s.test)
        if s.state == "skipped":
            lines.append("Not executed")
        elif s.errors:
            lines.append(f"Executed with Error(s) in {s.minutes:.1f} minutes")
        else:
            lines.append(f"Executed in {s.minutes:.1f} minutes")
        span = f"[{s.obsids[0]},{s.obsids[1]}]" if s.obsids else "[-1,-1]"
        lines.append(f"OBSIDs range = {span}")
        lines.append(f"Raised Flags = {s.flags}")
        lines.append("_")
    lines.append(RULE)
    return "\n".join(lines)
