"""A test's results folder: `<results>/<session>/<TEST>/` with products/, figs/, report.md and
result.json (documented in docs/results.md).

Results are built in a staging folder and moved into place at the end; a folder from an earlier
run is kept beside it as `<TEST>.previous-<time>`, never overwritten (clean-up can remove it).
Publishing holds `<session>/.<TEST>.lock`, so runs sharing a results root never lose a result.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import shutil
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Iterator

from .. import __version__
from ..tasks.base import TaskOutcome
from ..tasks.context import TaskContext

RESULT_FILE = "result.json"


def result_folder(results_root: Path, session: str, test: str) -> Path:
    return results_root / session / test


def staging_folder(results_root: Path, session: str, test: str, run_id: str) -> Path:
    return results_root / session / f".{test}.staging-{run_id}"


def result_record(ctx: TaskContext, outcome: TaskOutcome, mode: str, started: datetime, finished: datetime,
                  run_id: str | None = None) -> dict[str, Any]:
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
        "run_id": run_id,
        "started": started.isoformat(timespec="seconds"),
        "finished": finished.isoformat(timespec="seconds"),
        "obsids": list(ds.obsid_range) if ds.obsid_range else None,
        "exposures": len(ds.exposures),
        "expected_exposures": ds.expected_frames,
        "day_folder": str(ds.day_folder),
        "inputs": inputs_fingerprint(ds),
        "errors": outcome.errors,
        "error_messages": outcome.error_messages,
        "flags": ctx.flags.names(),
        "flag_reasons": ctx.flags.to_json(),
        "timings_s": outcome.timings,
        "subtasks": outcome.statuses,
        "subtasks_skipped": outcome.skipped,
        "notes": ds.notes,
        "values": ctx.test_values,
        "ccds": ctx.values,
        "products": ctx.products,
        "figures": ctx.figures,
        "report": "report.md" if (ctx.workdir / "report.md").exists() else None,
    }


def inputs_fingerprint(ds: Any) -> str:
    """sha256 over the day folder's real path and each input file's name, size and mtime (frames
    and HK files): a result stands for another run's data set only if this is the same (the same
    OBSIDs in another day folder, or a frame rewritten since, are other data)."""
    lines = [os.path.realpath(ds.day_folder)]
    for exposure in ds.exposures:
        paths = [ref.path for _, ref in sorted(exposure.frames.items())]
        try:
            hk = ds.hk_path(exposure)
        except (OSError, KeyError, ValueError):
            hk = None
        if hk is not None:
            paths.append(hk)
        for path in paths:
            try:
                info = os.stat(path)
                lines.append(f"{exposure.obsid} {Path(path).name} {info.st_size} {info.st_mtime_ns}")
            except OSError:
                lines.append(f"{exposure.obsid} {Path(path).name} missing")
    return "sha256:" + hashlib.sha256("\n".join(lines).encode("utf-8", "surrogateescape")).hexdigest()


def publish(ctx: TaskContext, record: dict[str, Any], final: Path,
            clock: Callable[[], datetime] = datetime.now) -> Path:
    """Write result.json into the staging folder, then move the folder into place.

    Runs sharing a results root may publish the same test at once: the test folder's lock makes
    the move of the earlier result aside and the move of ours into place one step.
    """
    tmp = ctx.workdir / f".{RESULT_FILE}.part"
    record, unknown = finite_json(record)
    if unknown:
        # NaN is no JSON number: a value that could not be measured is null, and named here
        record["values_not_measured"] = unknown
    tmp.write_text(json.dumps(record, indent=2, default=_jsonable, allow_nan=False) + "\n")
    os.replace(tmp, ctx.workdir / RESULT_FILE)
    final.parent.mkdir(parents=True, exist_ok=True)
    with locked_test_folder(final):
        if final.exists():
            final.rename(previous_name(final, clock()))
        os.rename(ctx.workdir, final)  # not replace: never over a folder that is there after all
    return final


def finite_json(value: Any, where: str = "") -> tuple[Any, list[str]]:
    """`value` with every NaN or infinity replaced by None, and where they were ("ccds.CCD2.E.x")."""
    if hasattr(value, "item") and callable(value.item) and not isinstance(value, (list, dict)):
        try:
            value = value.item()
        except (TypeError, ValueError):
            pass
    if isinstance(value, float):
        return (value, []) if math.isfinite(value) else (None, [where or "(value)"])
    if isinstance(value, dict):
        out, unknown = {}, []
        for key, item in value.items():
            out[key], found = finite_json(item, f"{where}.{key}" if where else str(key))
            unknown += found
        return out, unknown
    if isinstance(value, (list, tuple)):
        out_list, unknown = [], []
        for i, item in enumerate(value):
            clean, found = finite_json(item, f"{where}[{i}]")
            out_list.append(clean)
            unknown += found
        return out_list, unknown
    return value, []


def previous_name(final: Path, when: datetime) -> Path:
    """`<TEST>.previous-<time>` not taken yet (call under the test folder's lock).

    A taken time moves on by a second: the name keeps the form clean-up recognises.
    """
    while True:
        candidate = final.with_name(f"{final.name}.previous-{when:%Y%m%dT%H%M%S}")
        if not os.path.lexists(candidate):
            return candidate
        when += timedelta(seconds=1)


@contextmanager
def locked_test_folder(final: Path) -> Iterator[None]:
    """An exclusive lock on `<session>/.<TEST>.lock` (fcntl: released if the process dies)."""
    with open(final.with_name(f".{final.name}.lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


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
