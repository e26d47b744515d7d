"""The pipeline log, in the format the campaign's users read (and grep) every day.

`Calib_FM<YYYYMMDD>_<HHMMSS><tag>.log`: a header (pipeline id, block, chamber, version, tasks),
each task's inputs and sub-tasks, and a summary block between lines of '#' after every task and
at the end of the run.
"""

from __future__ import annotations

import logging
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


def pipeline_id(started: datetime, tag: str = "") -> str:
    return f"FM{started:%Y%m%d_%H%M%S}{tag}"


def log_filename(started: datetime, tag: str = "") -> str:
    return f"Calib_{pipeline_id(started, tag)}.log"


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
