"""FPA mode: one test of LE1 frames analysed over the whole focal plane, results per CCD `C_ji`.

    request = FPARequest(day=Path("data/02_Dec_19"), test="BIAS01", results=Path("results"))
    outcome = run_fpa(request, executor)        # FPAInputError: nothing to analyse, said in one line

The test's FPA family (tasks/fpa_family.py: BIAS01/02 in fpa_bias.py, DARK01 in fpa_dark.py,
PTC01 in fpa_ptc.py, FLAT01 in fpa_flat.py) says what the units compute and how their records become values, flags and
products; this module is the same for all. Steps (the keys of `timings_s`): `index`, the day folder's FPA
EXP_LOG(s) (5 columns) give the test's exposures and each LE1 frame is indexed from its headers
(le1.LE1File: the 145 HDUs checked against the layout); `units`, one work unit per quadrant (144)
on the executor (tasks/executor.py: local pool or Dask cluster; units get paths and byte
offsets) measures the family's values (the `basic` sub-task; a family's per-quadrant consumer,
PTC's pair tiles, a flat's column sums, fed as it reads) and, unless switched off, writes the quadrant's compressed
planes of the family's products; `meta`, the planes put together into the LE1-layout products
(fpa_products.py: master, spread, cosmetics mask; the planes a flat's consumer wrote) and the family's tables (PTC's gain table);
`figures`, the FPA maps. Everything is written into a staging
folder and moved into `<results>/<session>/<TEST>/` (docs/fpa.md), an earlier result kept beside
it as `<TEST>.previous-<time>` as the block runs do.
"""

from __future__ import annotations

import csv
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
from ..formats.fpa import DEFAULT_DESIGN, FPALayout, fpa_layout
from ..formats.geometry import CCDGeometry
from ..formats.le1 import FPAExposure, LE1Error, LE1File, is_fpa_explog, read_fpa_explog
from ..tasks.cosmetics import HOT_SIGNIFICANCE
from ..tasks.executor import Executor, LocalExecutor
from ..tasks.flags import FLAG_NAMES
from ..tasks.fpa_family import (
    FPAFamily,
    FPAQuadrantResult,
    NotInFPAMode,
    fpa_family_for,
    fpa_quadrant_unit,
    fpa_values,
    gain_of,
)
from ..tasks.fpa_map import save_fpa_map
from ..tasks.fpa_products import (
    MASK_THRESHOLD_ADU,
    provenance_header,
    stack_targets,
    write_product,
)
from ..tasks.outputs import CsvTable
from ..tasks.registry import family
from ..tasks.stacking import QUANT_FRACTION
from .results import (
    RESULT_FILE,
    discard,
    finite_json,
    locked_test_folder,
    previous_name,
    result_folder,
    staging_folder,
)

DEFAULT_SESSION = "FPA"
PLANES_FOLDER = ".work"  # inside the staging folder: the units' compressed planes


class FPAInputError(ValueError):
    """Nothing the FPA mode can analyse (no FPA log, no frame, an unknown test): one line."""


@dataclass(frozen=True)
class FPARequest:
    day: Path  # day folder holding the LE1 frames and the FPA EXP_LOG
    test: str  # a test an FPA family runs (fpa_family.fpa_families(): BIAS01, BIAS02, DARK01, PTC01, FLAT01...)
    results: Path  # results root: the test's folder is <results>/<session>/<TEST>
    session: str = DEFAULT_SESSION
    obsids: tuple[int, int] | None = None  # first and last OBSID to analyse (inclusive)
    design: str = DEFAULT_DESIGN  # FPA layout: "final" or "initial"
    maps: tuple[str, ...] = ()  # per-quadrant values drawn as FPA maps; () the family's defaults
    run_id: str | None = None
    meta: bool = True  # the `meta` sub-task: the family's products in the LE1 layout


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
    try:
        fpa = fpa_family_for(request.test)
    except NotInFPAMode as exc:
        raise FPAInputError(str(exc)) from None
    family_name = fpa.family
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
    final = result_folder(request.results, request.session, test)
    work = staging_folder(request.results, request.session, test, run_id)
    work.mkdir(parents=True, exist_ok=False)
    try:
        planes = work / PLANES_FOLDER  # the units' master planes, put together by the meta step
        targets = {}
        if fpa.stacks(request.meta) or (fpa.consumer is not None and fpa.consumer.writes):
            planes.mkdir()
        if fpa.stacks(request.meta):
            targets = stack_targets(planes, [place.extname for place in layout.quadrants], fpa.spread,
                                    mask=fpa.mask and request.meta)
        work_asked = fpa.work(request.meta)
        calls = []
        for place in layout.quadrants:
            extensions = [frame.extensions[place.extname] for _, frame in indexed]
            feed = None
            if fpa.consumer is not None:
                plan = (fpa.consumer.plan(extensions, planes, request.meta, test) if fpa.consumer.writes
                        else fpa.consumer.plan(extensions))
                feed = (fpa.consumer.start, plan)
            calls.append(([(frame.path, extension) for (_, frame), extension in zip(indexed, extensions)], geometry,
                          0, None, targets.get(place.extname), work_asked, feed))
        tick = time.monotonic()
        own_executor = executor is None
        executor = executor or LocalExecutor()
        try:
            say(f"{test}: {len(calls)} quadrant units on {executor.describe()}"
                f"{' (with the products)' if request.meta and fpa.products else ''}")
            results = executor.map(fpa_quadrant_unit, calls)
            described = executor.describe()
        finally:
            if own_executor:
                executor.close()
        timings["units"] = round(time.monotonic() - tick, 3)
        by_extname = {r.extname: r for r in results}
        error_messages: list[str] = []
        for result in results:
            for why in result.left_out:
                flag_reasons.append({"flag": "MISSDATA", "reason": why,
                                     **_where(layout.by_extname(result.extname))})
            if result.consumer_error:  # the family's values of that quadrant are not measured
                flag_reasons.append({"flag": "SUBTASKCRASH", "reason": f"basic: {result.consumer_error}",
                                     **_where(layout.by_extname(result.extname))})
                error_messages.append(f"basic: {result.consumer_error}")

        declared = family(family_name)
        specs = declared.value_specs()
        first = indexed[0][1]
        gains, sources = {}, set()
        for place in layout.quadrants:
            gains[place.extname], source = gain_of(first.extensions[place.extname])
            sources.add(source)
        ccds = fpa_values(fpa, by_extname, layout, gains, specs)
        limits = declared.limits()
        for place in layout.quadrants:
            if place.extname in by_extname:
                flag_reasons += [{"flag": flag, "reason": reason, **_where(place)}
                                 for flag, reason in fpa.quadrant_flags(by_extname[place.extname], limits)]
        flag_reasons += fpa.flags(ccds, limits)
        if fpa.stack == "always":  # the values come from the stack: a quadrant without one is said
            for result in results:
                if result.master is None and result.master_error:
                    flag_reasons.append({"flag": "MISSDATA", "reason": result.master_error,
                                         **_where(layout.by_extname(result.extname))})

        subtasks = {"basic": "done", "meta": "off"}
        products: list[str] = []
        tables = fpa.tables(test, ccds) if request.meta else []
        if request.meta and (fpa.products or tables or fpa.consumer_products is not None):
            tick = time.monotonic()
            try:
                if fpa.products or fpa.consumer_products is not None:
                    products = _products(fpa, work, results, layout, indexed, request, geometry, run_id, clock())
                products += _tables(work, tables)
                subtasks["meta"] = "done"
                say(f"{test}: FPA products {', '.join(products)}")
            except MasterNotMade as exc:
                subtasks["meta"] = "failed"
                error_messages.append(f"meta: {exc}")
                flag_reasons.append({"flag": "SUBTASKCRASH", "reason": f"sub-task meta: {exc}"})
                say(f"{test}: no FPA products: {exc}")
            timings["meta"] = round(time.monotonic() - tick, 3)
        discard(planes)

        tick = time.monotonic()
        figures = []
        for value in request.maps or fpa.maps:
            named = {(ccdid, q): values.get(value) for ccdid, quads in ccds.items() for q, values in quads.items()}
            listed = any(isinstance(v, list) for v in named.values())  # per column (flats): the first column's
            named = {k: (v[0] if v else None) if isinstance(v, list) else v for k, v in named.items()}
            numbers = {k: float(v) for k, v in named.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
            if not numbers:
                notes.append(f"no value {value} to map (values: {', '.join(specs_in(ccds))})")
                continue
            unit = specs[value].unit if value in specs else ""
            name = f"figs/{test}_fpa_{value}.png"
            save_fpa_map(work / name, numbers, title=f"{test} {value}{' (first column)' if listed else ''} over the FPA",
                         unit=unit, limits=fpa.map_limits(value, limits), design=request.design)
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
            "geometry": geometry.name, "executor": described,
            "inputs": _fingerprint(request.day, frames),
            "errors": bool(error_messages), "error_messages": error_messages,
            "flags": [name for name in FLAG_NAMES if any(r["flag"] == name for r in flag_reasons)],
            "flag_reasons": flag_reasons,
            "timings_s": timings, "subtasks": subtasks,
            "subtasks_skipped": [name for name, state in subtasks.items() if state != "done"],
            "notes": notes,
            "values": {**({"gain_source": "; ".join(sorted(sources))} if _uses_gain(ccds) else {}),
                       **fpa.test_values(results)},
            "ccds": ccds,
            "fpa_positions": {c.ccdid: {"block": c.block, "ccd": c.block_ccd, "serial": c.serial}
                              for c in layout.ccds.values()},
            "products": products, "figures": figures, "report": "report.md",
        }
        (work / "report.md").write_text(_report(record, fpa))
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


class MasterNotMade(RuntimeError):
    """The FPA products could not be written (a quadrant's planes missing, a full disk)."""


def _products(fpa: FPAFamily, work: Path, results: list[FPAQuadrantResult], layout: FPALayout,
              indexed: list[tuple[FPAExposure, LE1File]], request: FPARequest, geometry: CCDGeometry,
              run_id: str, when: datetime) -> list[str]:
    """The meta step: the units' planes in LE1 order after a provenance header, one product per
    plane (fpa_products.write_product: temporary name, then renamed); all of them or none. The
    planes are the stack's (`fpa.products`) and those the family's consumer wrote
    (`fpa.consumer_products`: a flat's masters per column and its mask)."""
    by_extname = {r.extname: r for r in results}
    missing = []
    if fpa.products:
        for place in layout.quadrants:
            result = by_extname.get(place.extname)
            if result is None or result.master is None or result.master.median_plane is None:
                missing.append(result.master_error if result is not None and result.master_error
                               else f"{place.extname}: no master planes")
    consumed = (fpa.consumer_products([(place.extname, by_extname.get(place.extname)) for place in layout.quadrants])
                if fpa.consumer_products is not None else [])
    for made in consumed:
        missing += [f"{made.product.file}: {why}" for why in made.missing]
    if missing:
        more = f" (and {len(missing) - 1} more quadrant{'s' if len(missing) > 2 else ''})" if len(missing) > 1 else ""
        raise MasterNotMade(missing[0] + more)
    if not consumed and not fpa.products:
        raise MasterNotMade("no product planes made (no usable frame)")
    masters = [by_extname[place.extname].master for place in layout.quadrants] if fpa.products else []
    partial = [f"{r.extname}: {r.frames_used} of {len(indexed)} frames combined" for r in results
               if r.frames_used != len(indexed)]
    folder = work / "products"
    written: list[Path] = []
    try:
        cards = fpa.product_cards(results)
        for product in fpa.products:
            header = provenance_header(product, test=request.test, session=request.session,
                                       obsids=[e.obsid for e, _ in indexed], frames=[f.path.name for _, f in indexed],
                                       design=request.design, geometry=geometry, when=when, run_id=run_id,
                                       partial=partial, extra=cards)
            paths = [getattr(m, f"{product.plane}_plane") for m in masters]
            written.append(write_product(folder, product.file, header, paths))
        for made in consumed:
            chosen = [indexed[i] for i in made.frames]
            header = provenance_header(made.product, test=request.test, session=request.session,
                                       obsids=[e.obsid for e, _ in chosen], frames=[f.path.name for _, f in chosen],
                                       design=request.design, geometry=geometry, when=when, run_id=run_id,
                                       partial=made.partial, extra=[*cards, *made.cards])
            written.append(write_product(folder, made.product.file, header, [p for p in made.planes if p]))
    except OSError as exc:
        for path in written:
            path.unlink(missing_ok=True)
        raise MasterNotMade(f"{getattr(exc, 'strerror', None) or exc} ({getattr(exc, 'filename', None) or folder})") \
            from exc
    return [f"products/{path.name}" for path in written]


def _tables(work: Path, tables: list[CsvTable]) -> list[str]:
    """The family's CSV products (the staging folder makes them appear whole, with the result)."""
    folder = work / "products"
    written = []
    try:
        folder.mkdir(exist_ok=True)
        for table in tables:
            with open(folder / table.name, "w", newline="") as out:
                writer = csv.writer(out, lineterminator="\n")
                writer.writerow(table.header)
                writer.writerows(table.rows)
            written.append(f"products/{table.name}")
    except OSError as exc:
        raise MasterNotMade(f"{getattr(exc, 'strerror', None) or exc} ({getattr(exc, 'filename', None) or folder})") \
            from exc
    return written


def _uses_gain(ccds: dict[str, dict[str, dict[str, Any]]]) -> bool:
    """Whether the family's values convert ADU with a gain it takes (the LE1 header's); PTC measures it."""
    return any("gain_e_per_adu_used" in values for quads in ccds.values() for values in quads.values())


def specs_in(ccds: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    return list(dict.fromkeys(name for quads in ccds.values() for values in quads.values() for name in values))


def _where(place: Any) -> dict[str, Any]:
    return {"ccd": place.ccd.ccdid, "quadrant": place.quadrant}


def _fingerprint(day: Path, frames: list[LE1File]) -> str:
    """sha256 over the day folder's real path and each frame's name, size and mtime (as block results)."""
    lines = [os.path.realpath(day)] + [f"{f.path.name} {f.size} {f.mtime_ns}" for f in frames]
    return "sha256:" + hashlib.sha256("\n".join(lines).encode("utf-8", "surrogateescape")).hexdigest()


def _report(record: dict[str, Any], fpa: FPAFamily) -> str:
    """report.md: what was read, flags, and per CCD the family's values of its quadrants."""
    def number(value: Any, digits: int) -> str:
        if isinstance(value, list):  # per column (flats): the first column's, as the maps
            value = value[0] if value else None
        return "–" if not isinstance(value, (int, float)) or math.isnan(value) else f"{value:.{digits}f}"

    lines = [f"# {record['test']} over the FPA (session {record['session']})", "",
             (f"{record['exposures']} LE1 frames (OBSIDs {record['obsids'][0]}-{record['obsids'][1]}) from "
              f"`{record['day_folder']}`, {record['geometry']} quadrants, {record['fpa_design']} FPA design; "
              f"work units on {record['executor']}."), "",
             fpa.report_method + (f" Gain: {record['values']['gain_source']}." if "gain_source" in record["values"]
                                  else ""), ""]
    if record["flag_reasons"]:
        lines += ["## Flags", ""]
        for reason in record["flag_reasons"]:
            where = " ".join(str(reason[k]) for k in ("ccd", "quadrant", "obsid") if k in reason)
            lines.append(f"- {reason['flag']} {where}: {reason['reason']}")
        lines.append("")
    if record["notes"]:
        lines += ["## Notes", ""] + [f"- {note}" for note in record["notes"]] + [""]
    present = {name for quads in record["ccds"].values() for values in quads.values() for name in values}
    columns = [c for c in fpa.report_columns if c[1] in present]
    lines += [f"## {fpa.report_title}", "",
              "| CCD | block | Q | " + " | ".join(header for header, _, _ in columns) + " |",
              "|---|---|---|" + "---|" * len(columns)]
    for ccdid, quads in record["ccds"].items():
        position = record["fpa_positions"][ccdid]
        for q, v in quads.items():
            lines.append(f"| {ccdid} | {position['block']} CCD{position['ccd']} | {q} | "
                         + " | ".join(number(v.get(name), digits) for _, name, digits in columns) + " |")
    lines += ["", "## FPA products (meta)", ""]
    state = record["subtasks"]["meta"]
    if state == "done" and fpa.report_products:
        lines += [fpa.report_products, ""] + [f"- `{name}`" for name in record["products"]]
    elif state == "done" and not fpa.products:
        lines += [f"- `{name}`" for name in record["products"]]
    elif state == "done":
        master = fpa.products[0]
        lines += [(f"Per quadrant, the per-pixel median of the offset-subtracted frames (offset: each frame's "
                   f"prescan clipped mean): `{master.file}`; in a second file their per-pixel "
                   f"{'std (ddof 1)' if fpa.spread == 'std' else 'std (ddof 1) / sqrt(NCOMB)'}. The files have "
                   "the LE1 layout: an empty primary with the provenance (TEST, SESSION, OBSIDS, NCOMB, METHOD, "
                   "VISON, DATE, inputs as HISTORY), then the 144 extensions named, ordered and oriented as in the "
                   "LE1 frames (a pixel overlays the raw frame's in ds9). Tile-compressed, quantised with a step "
                   f"of {QUANT_FRACTION['median']:g} (median) and {QUANT_FRACTION['spread']:g} (spread) of each "
                   "quadrant's read noise: each extension's QSTEP, QMAXERR (largest error of a pixel) and QRON, "
                   "in ADU. The master plus `offset_prescan_adu` is the quadrant's level."), ""]
        if fpa.mask:
            lines += [("`EUC_MASK_FPA.fits`, the cosmetics mask in the same layout (uint8, lossless): per image "
                       "pixel the DEFECTS bits of COSMETICS00 (1 = hot, 0 = good): the median stack more than "
                       f"{MASK_THRESHOLD_ADU:g} ADU (and {HOT_SIGNIFICANCE:g} robust sigma) above its smooth "
                       "background; per extension the threshold used (HOTTHR) and the count (NHOT); result.json's "
                       "`mask_hot_pixels`."), ""]
        lines += [f"- `{name}`" for name in record["products"]]
    elif state == "off":
        lines.append("Not made: the meta sub-task was switched off (`--no-meta`).")
    else:
        lines.append("Not made: " + "; ".join(m.removeprefix("meta: ") for m in record["error_messages"]
                                               if m.startswith("meta: ")))
    lines += ["", "## FPA maps", ""] + [f"![{name}]({name})" for name in record["figures"]]
    return "\n".join(lines) + "\n"
