"""FPA mode: one test of LE1 frames analysed over the whole focal plane, results per CCD `C_ji`.

    request = FPARequest(day=Path("data/02_Dec_19"), test="BIAS01", results=Path("results"))
    outcome = run_fpa(request, executor)        # FPAInputError: nothing to analyse, said in one line

Steps: the day folder's FPA EXP_LOG(s) (5 columns) give the test's exposures and frame names;
each LE1 frame is indexed from its headers (le1.LE1File: the 145 HDUs checked against the
layout); one work unit per quadrant (144) runs on the executor (tasks/executor.py: local pool or
Dask cluster; units get paths and byte offsets); the values, FPA maps and a short report are
written into a staging folder and moved into `<results>/<session>/<TEST>/` (docs/fpa.md), an
earlier result kept beside it as `<TEST>.previous-<time>` as the block runs do.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from .. import __version__
from ..formats.explog import ExpLogError
from ..formats.fpa import DEFAULT_DESIGN, fpa_layout
from ..formats.le1 import FPAExposure, LE1Error, LE1File, is_fpa_explog, read_fpa_explog
from ..tasks.executor import Executor, LocalExecutor
from ..tasks.flags import FLAG_NAMES
from ..tasks.fpa_bias import (
    FPA_TESTS,
    OFFSET_METHOD,
    RON_METHOD,
    fpa_bias_unit,
    fpa_flags,
    fpa_values,
    gain_of,
)
from ..tasks.fpa_map import save_fpa_map
from ..tasks.registry import family
from .results import (
    RESULT_FILE,
    finite_json,
    locked_test_folder,
    previous_name,
    result_folder,
    staging_folder,
)

DEFAULT_SESSION = "FPA"
DEFAULT_MAPS = ("offset_prescan_adu", "ron_image_adu")


class FPAInputError(ValueError):
    """Nothing the FPA mode can analyse (no FPA log, no frame, an unknown test): one line."""


@dataclass(frozen=True)
class FPARequest:
    day: Path  # day folder holding the LE1 frames and the FPA EXP_LOG
    test: str  # BIAS01 or BIAS02
    results: Path  # results root: the test's folder is <results>/<session>/<TEST>
    session: str = DEFAULT_SESSION
    obsids: tuple[int, int] | None = None  # first and last OBSID to analyse (inclusive)
    design: str = DEFAULT_DESIGN  # FPA layout: "final" or "initial"
    maps: tuple[str, ...] = DEFAULT_MAPS  # per-quadrant values drawn as FPA maps
    run_id: str | None = None


@dataclass
class FPAOutcome:
    folder: Path
    record: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def fpa_exposures(request: FPARequest) -> tuple[list[tuple[FPAExposure, Path]], list[Path], list[str]]:
    """(the test's exposures with their frame paths, the FPA logs read, notes on what was left out)."""
    day = request.day
    if not day.is_dir():
        raise FPAInputError(f"no day folder {day}")
    logs = sorted(p for p in day.glob("EXP_LOG_*.txt") if is_fpa_explog(p))
    if not logs:
        others = sorted(p.name for p in day.glob("EXP_LOG_*.txt"))
        raise FPAInputError(f"no FPA EXP_LOG in {day} (a tab-separated log with the 5 columns ObsID, File_name, "
                            f"date, program, test){'; block logs there: ' + ', '.join(others) if others else ''}")
    chosen: list[tuple[FPAExposure, Path]] = []
    notes: list[str] = []
    seen: dict[int, Path] = {}
    for path in logs:
        try:
            log = read_fpa_explog(path)
        except ExpLogError as exc:
            raise FPAInputError(str(exc)) from None
        for exposure in log.for_test(request.test):
            if request.obsids and not request.obsids[0] <= exposure.obsid <= request.obsids[1]:
                continue
            if exposure.obsid in seen:
                notes.append(f"OBSID {exposure.obsid} of {path.name} line {exposure.line} already in "
                             f"{seen[exposure.obsid].name}: left out")
                continue
            seen[exposure.obsid] = path
            chosen.append((exposure, log.frame_path(exposure)))
    if not chosen:
        span = f" OBSIDs {request.obsids[0]}-{request.obsids[1]}" if request.obsids else ""
        tests = sorted({e.test for p in logs for e in read_fpa_explog(p).exposures})
        raise FPAInputError(f"no exposure of {request.test}{span} in {', '.join(p.name for p in logs)} "
                            f"(tests logged: {', '.join(tests) or 'none'})")
    return sorted(chosen, key=lambda item: item[0].obsid), logs, notes


def run_fpa(request: FPARequest, executor: Executor | None = None, *, clock: Callable[[], datetime] = datetime.now,
            say: Callable[[str], None] = lambda line: None) -> FPAOutcome:
    family_name = FPA_TESTS.get(request.test.upper())
    if family_name is None:
        raise FPAInputError(f"the FPA mode analyses {', '.join(FPA_TESTS)}; not {request.test}")
    test = request.test.upper()
    request = FPARequest(**{**request.__dict__, "test": test})
    started = clock()
    run_id = request.run_id or f"FPA{started:%Y%m%dT%H%M%S}-{os.getpid()}"
    exposures, logs, notes = fpa_exposures(request)
    flag_reasons: list[dict[str, Any]] = []
    timings: dict[str, float] = {}

    tick = time.monotonic()
    indexed: list[tuple[FPAExposure, LE1File]] = []
    for exposure, path in exposures:
        if not path.is_file():
            flag_reasons.append({"flag": "MISSDATA", "obsid": exposure.obsid,
                                 "reason": f"{path.name} (OBSID {exposure.obsid}) is not in {request.day}"})
            continue
        try:
            indexed.append((exposure, LE1File(path, request.design)))
        except LE1Error as exc:
            flag_reasons.append({"flag": "MISSDATA", "obsid": exposure.obsid, "reason": f"unreadable LE1 frame: {exc}"})
    if indexed:
        geometry = indexed[0][1].geometry
        odd = [(e, f) for e, f in indexed if f.geometry != geometry]
        for exposure, frame in odd:
            flag_reasons.append({"flag": "MISSDATA", "obsid": exposure.obsid,
                                 "reason": f"{frame.path.name}: {frame.geometry.name} quadrants, the first frame's "
                                           f"are {geometry.name}: left out"})
        indexed = [(e, f) for e, f in indexed if f.geometry == geometry]
    if not indexed:
        reasons = "; ".join(r["reason"] for r in flag_reasons)
        raise FPAInputError(f"no readable LE1 frame of {test} in {request.day}: {reasons}")
    timings["index"] = round(time.monotonic() - tick, 3)
    say(f"{test}: {len(indexed)} LE1 frame{'s' if len(indexed) != 1 else ''} indexed "
        f"({geometry.name} quadrants, {geometry.quad_width} x {geometry.quad_height} px)")

    layout = fpa_layout(request.design)
    calls = [([(frame.path, frame.extensions[place.extname]) for _, frame in indexed], geometry)
             for place in layout.quadrants]
    tick = time.monotonic()
    own_executor = executor is None
    executor = executor or LocalExecutor()
    try:
        say(f"{test}: {len(calls)} quadrant units on {executor.describe()}")
        results = executor.map(fpa_bias_unit, calls)
    finally:
        if own_executor:
            executor.close()
    timings["units"] = round(time.monotonic() - tick, 3)
    by_extname = {r.extname: r for r in results}
    for result in results:
        for why in result.left_out:
            flag_reasons.append({"flag": "MISSDATA", "reason": why,
                                 **_where(layout.by_extname(result.extname))})

    declared = family(family_name)
    specs = declared.value_specs()
    first = indexed[0][1]
    gains, sources = {}, set()
    for place in layout.quadrants:
        gains[place.extname], source = gain_of(first.extensions[place.extname])
        sources.add(source)
    ccds = fpa_values(by_extname, layout, gains, specs)
    limits = declared.limits()
    flag_reasons += fpa_flags(ccds, tuple(limits.ron_adu), tuple(limits.offset_gradient_adu))

    final = result_folder(request.results, request.session, test)
    work = staging_folder(request.results, request.session, test, run_id)
    work.mkdir(parents=True, exist_ok=False)
    try:
        tick = time.monotonic()
        figures = []
        for value in request.maps:
            named = {(ccdid, q): values.get(value) for ccdid, quads in ccds.items() for q, values in quads.items()}
            numbers = {k: float(v) for k, v in named.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
            if not numbers:
                notes.append(f"no value {value} to map (values: {', '.join(specs_in(ccds))})")
                continue
            unit = specs[value].unit if value in specs else ""
            ron_limits = tuple(limits.ron_adu) if value in ("ron_image_adu", "ron_prescan_adu", "ron_overscan_adu",
                                                            "std_image_raw_adu") else None
            name = f"figs/{test}_fpa_{value}.png"
            save_fpa_map(work / name, numbers, title=f"{test} {value} over the FPA", unit=unit, limits=ron_limits,
                         design=request.design)
            figures.append(name)
        timings["figures"] = round(time.monotonic() - tick, 3)
        finished = clock()
        frames = [frame for _, frame in indexed]
        record = {
            "test": test, "handle": test, "family": family_name, "session": request.session, "block": "FPA",
            "chamber": "", "mode": "fpa/aim", "fpa_design": request.design, "layout": "LE1",
            "vison_version": __version__, "run_id": run_id,
            "started": started.isoformat(timespec="seconds"), "finished": finished.isoformat(timespec="seconds"),
            "obsids": [indexed[0][0].obsid, indexed[-1][0].obsid], "exposures": len(indexed),
            "expected_exposures": None, "day_folder": str(request.day),
            "explogs": [p.name for p in logs], "frames": [f.path.name for f in frames],
            "geometry": geometry.name, "executor": executor.describe(),
            "inputs": _fingerprint(request.day, frames),
            "errors": False, "error_messages": [],
            "flags": [name for name in FLAG_NAMES if any(r["flag"] == name for r in flag_reasons)],
            "flag_reasons": flag_reasons,
            "timings_s": timings, "notes": notes,
            "values": {"gain_source": "; ".join(sorted(sources)), "ron_method": RON_METHOD,
                       "offset_method": OFFSET_METHOD},
            "ccds": ccds,
            "fpa_positions": {c.ccdid: {"block": c.block, "ccd": c.block_ccd, "serial": c.serial}
                              for c in layout.ccds.values()},
            "products": [], "figures": figures, "report": "report.md",
        }
        (work / "report.md").write_text(_report(record))
        record, unknown = finite_json(record)
        if unknown:
            record["values_not_measured"] = unknown
        (work / RESULT_FILE).write_text(json.dumps(record, indent=2, allow_nan=False) + "\n")
        final.parent.mkdir(parents=True, exist_ok=True)
        with locked_test_folder(final):
            if final.exists():
                final.rename(previous_name(final, clock()))
            os.rename(work, final)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return FPAOutcome(final, record, notes)


def specs_in(ccds: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    return list(dict.fromkeys(name for quads in ccds.values() for values in quads.values() for name in values))


def _where(place: Any) -> dict[str, Any]:
    return {"ccd": place.ccd.ccdid, "quadrant": place.quadrant}


def _fingerprint(day: Path, frames: list[LE1File]) -> str:
    """sha256 over the day folder's real path and each frame's name, size and mtime (as block results)."""
    lines = [os.path.realpath(day)] + [f"{f.path.name} {f.size} {f.mtime_ns}" for f in frames]
    return "sha256:" + hashlib.sha256("\n".join(lines).encode("utf-8", "surrogateescape")).hexdigest()


def _report(record: dict[str, Any]) -> str:
    """report.md: what was read, flags, and per CCD the offsets and read noise of its quadrants."""
    def number(value: Any, digits: int) -> str:
        return "–" if not isinstance(value, (int, float)) or math.isnan(value) else f"{value:.{digits}f}"

    lines = [f"# {record['test']} over the FPA (session {record['session']})", "",
             (f"{record['exposures']} LE1 frames (OBSIDs {record['obsids'][0]}-{record['obsids'][1]}) from "
              f"`{record['day_folder']}`, {record['geometry']} quadrants, {record['fpa_design']} FPA design; "
              f"work units on {record['executor']}."), "",
             (f"Offsets: {record['values']['offset_method']}. Read noise: {record['values']['ron_method']}. "
              f"Gain: {record['values']['gain_source']}."), ""]
    if record["flag_reasons"]:
        lines += ["## Flags", ""]
        for reason in record["flag_reasons"]:
            where = " ".join(str(reason[k]) for k in ("ccd", "quadrant", "obsid") if k in reason)
            lines.append(f"- {reason['flag']} {where}: {reason['reason']}")
        lines.append("")
    if record["notes"]:
        lines += ["## Notes", ""] + [f"- {note}" for note in record["notes"]] + [""]
    lines += ["## Offsets and read noise (ADU)", "",
              "| CCD | block | Q | offset pre | offset img | offset ove | RON pre | RON img | RON ove |",
              "|---|---|---|---|---|---|---|---|---|"]
    for ccdid, quads in record["ccds"].items():
        position = record["fpa_positions"][ccdid]
        for q, v in quads.items():
            lines.append(f"| {ccdid} | {position['block']} CCD{position['ccd']} | {q} | "
                         f"{number(v['offset_prescan_adu'], 2)} | {number(v['offset_image_adu'], 2)} | "
                         f"{number(v['offset_overscan_adu'], 2)} | {number(v['ron_prescan_adu'], 3)} | "
                         f"{number(v['ron_image_adu'], 3)} | {number(v['ron_overscan_adu'], 3)} |")
    lines += ["", "## FPA maps", ""] + [f"![{name}]({name})" for name in record["figures"]]
    return "\n".join(lines) + "\n"
