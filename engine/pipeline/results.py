"""A test's results folder: `<results>/<session>/<TEST>/` with products/, figs/, report.md and
result.json (documented in docs/results.md).

Results are built in a staging folder and moved into place at the end; a folder from an earlier
run is kept beside it as `<TEST>.previous-<time>`, never overwritten (clean-up can remove it).
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

from .. import __version__
from ..tasks.base import TaskOutcome
from ..tasks.context import TaskContext

RESULT_FILE = "result.json"


def result_folder(results_root: Path, session: str, test: str) -> Path:
    return results_root / session / test


def staging_folder(results_root: Path, session: str, test: str, run_id: str) -> Path:
    return results_root / session / f".{test}.staging-{run_id}"


def result_record(ctx: TaskContext, outcome: TaskOutcome, mode: str, started: datetime, finished: datetime) -> dict[str, Any]:
    ds = ctx.dataset
    return {
        "test": ctx.test.name,
        "handle": ctx.test.handle,
        "family": ctx.test.family,
        "session": ctx.session,
        "block": ctx.campaign.info.block,
        "chamber": ctx.chamber.name,
        "mode": mode,
        "vison_version": __version__,
        "started": started.isoformat(timespec="seconds"),
        "finished": finished.isoformat(timespec="seconds"),
        "obsids": list(ds.obsid_range) if ds.obsid_range else None,
        "exposures": len(ds.exposures),
        "expected_exposures": ds.expected_frames,
        "day_folder": str(ds.day_folder),
        "errors": outcome.errors,
        "error_messages": outcome.error_messages,
        "flags": ctx.flags.names(),
        "flag_reasons": ctx.flags.to_json(),
        "timings_s": outcome.timings,
        "subtasks_skipped": outcome.skipped,
        "notes": ds.notes,
        "values": ctx.test_values,
        "ccds": ctx.values,
        "products": ctx.products,
        "figures": ctx.figures,
        "report": "report.md" if (ctx.workdir / "report.md").exists() else None,
    }


def publish(ctx: TaskContext, record: dict[str, Any], final: Path) -> Path:
    """Write result.json into the staging folder, then move the folder into place."""
    tmp = ctx.workdir / f".{RESULT_FILE}.part"
    tmp.write_text(json.dumps(record, indent=2, default=_jsonable) + "\n")
    os.replace(tmp, ctx.workdir / RESULT_FILE)
    if final.exists():
        stamp = datetime.now().strftime("%Y%m%dT%H%M%S")
        final.rename(final.with_name(f"{final.name}.previous-{stamp}"))
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(ctx.workdir, final)
    return final


def discard(workdir: Path) -> None:
    shutil.rmtree(workdir, ignore_errors=True)


def read_result(folder: Path) -> dict[str, Any] | None:
    path = folder / RESULT_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return str(value)
