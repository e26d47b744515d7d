"""Campaign trends: the result.json of many blocks, sessions and runs in one table, compared per
quadrant across blocks against the families' limits, followed over time, outliers named.

    trends = gather_trends([Path("/data/results"), Path("/other/results")], tests=["BIAS01"],
                           values=["ron_image_adu"])
    trends.points      # one TrendPoint per (record, CCD, quadrant, numeric value)
    trends.outliers()  # the points of current records outside their limit
    trends.compare("BIAS01", "ron_image_adu")   # per (CCD, quadrant): each block's newest value
    trends.drift()     # per (block, test, value, CCD, quadrant) in more than one result.json
    write_trends(trends, Path("trends"))        # trends.csv, outliers.csv, trends.xlsx (+ figures, FPA maps)

An FPA result (`vison-engine fpa run`: CCDs C_ji, with `fpa_positions`) gives its points under
the block and block CCD each position holds, `fpa` naming the position: the same quadrant is then
followed from its block's tests to the FPA's. FPA maps place each quadrant's newest value on the
focal plane (FPA results where measured, block results where their block sits).

Which limit a value is held to: the family's range limits (engine.tasks.registry, the limits
dataclass; its defaults, or a campaign's [limits] / [limits.<family>] when one is given) whose
name is the value's own (`gain_e_per_adu`), or whose stem and unit frame it: `ron_adu` holds
`ron_image_adu`, `ron_prescan_adu` and `ron_overscan_adu` (not `ron_image_e`); plus the checks
that name another value (`std_image_raw_adu` is held to `ron_adu` by the bias family); the
prescan or overscan noise of a family whose check leaves that region out (`Family.noise_regions`)
has none. Values without a limit are gathered and compared, never outliers.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from ..campaign.config import Campaign
from ..campaign.limits import limit_specs
from ..tasks.family import CCD_KEY
from ..tasks.registry import UnknownFamily, family

__all__ = ["TrendPoint", "Trends", "TrendsError", "fpa_map_values", "gather_trends", "limit_of", "write_trends"]

RESULT_FILE = "result.json"
PREVIOUS_MARK = ".previous-"  # <TEST>.previous-<time>: an earlier result of the test, kept by a later run
# values a family checks against a limit of another name (the bias family's raw-image check)
CHECKED_AGAINST = {"std_image_raw_adu": "ron_adu"}
UNIT_SUFFIXES = ("_e_per_adu", "_e_per_pix_per_hour", "_adu", "_e", "_px", "_s")
COLUMNS = ("block", "chamber", "session", "test", "family", "run_id", "time", "ccd", "quadrant", "value",
           "number", "unit", "limit", "low", "high", "verdict", "current", "source", "fpa")


class TrendsError(ValueError):
    """Nothing to gather, or a filter that matches nothing: said in one line (exit status 2)."""


@dataclass(frozen=True)
class TrendPoint:
    block: str
    chamber: str
    session: str
    test: str
    family: str
    run_id: str
    time: str  # the analysis's end (result.json `finished`), local ISO time
    ccd: int
    quadrant: str  # E..H, or "" for a value of the whole CCD
    value: str
    number: float
    unit: str
    limit: str  # the limit's name, "" when the value has none
    low: float | None
    high: float | None
    current: bool  # False: an earlier result kept beside a newer one (<TEST>.previous-<time>)
    source: str  # the result.json
    fpa: str = ""  # FPA position (C_ji) of a point from an FPA result (fpa_positions); "" for a block's

    @property
    def verdict(self) -> str:
        """ok, low, high; "no limit"; "nan" when the measurement had no valid pixel."""
        if math.isnan(self.number):
            return "nan"
        if self.low is None or self.high is None:
            return "no limit"
        return "low" if self.number < self.low else ("high" if self.number > self.high else "ok")

    @property
    def order(self) -> tuple[str, str, str]:
        """When its record was made: time (to the second), then run id (unique, in time order)."""
        return self.time, self.run_id, self.source

    @property
    def out_of_limits(self) -> bool:
        return self.verdict in ("low", "high")

    @property
    def where(self) -> str:
        where = f"CCD{self.ccd}" + (f" {self.quadrant}" if self.quadrant else "")
        return where + (f" ({self.fpa})" if self.fpa else "")

    def limit_text(self) -> str:
        if self.low is None or self.high is None:
            return "no limit"
        unit = f" {self.unit}" if self.unit else ""
        return f"{self.limit} [{self.low:g}, {self.high:g}]{unit}"

    def row(self) -> dict[str, Any]:
        return {"block": self.block, "chamber": self.chamber, "session": self.session, "test": self.test,
                "family": self.family, "run_id": self.run_id, "time": self.time, "ccd": self.ccd,
                "quadrant": self.quadrant, "value": self.value, "number": self.number, "unit": self.unit,
                "limit": self.limit, "low": self.low, "high": self.high, "verdict": self.verdict,
                "current": self.current, "source": self.source, "fpa": self.fpa}

    def describe(self) -> str:
        """One line naming the outlier: block, CCD, quadrant, value, limit, and where it comes from."""
        unit = f" {self.unit}" if self.unit else ""
        return (f"{self.block} {self.where}: {self.value} = {self.number:g}{unit} {self.verdict} "
                f"({self.limit_text()}); {self.test}, session {self.session}, run {self.run_id}")


@dataclass(frozen=True)
class Comparison:
    """One value of one test across blocks: rows (CCD, quadrant), a column per block (its newest)."""

    test: str
    value: str
    unit: str
    limit: str
    low: float | None
    high: float | None
    blocks: tuple[str, ...]
    rows: dict[tuple[int, str], dict[str, TrendPoint]]  # (ccd, quadrant) -> block -> point

    def spread(self, key: tuple[int, str]) -> float | None:
        numbers = [p.number for p in self.rows[key].values() if not math.isnan(p.number)]
        return max(numbers) - min(numbers) if len(numbers) > 1 else None


@dataclass(frozen=True)
class Drift:
    block: str
    test: str
    value: str
    ccd: int
    quadrant: str
    unit: str
    points: tuple[TrendPoint, ...]  # in time order

    @property
    def change(self) -> float:
        return self.points[-1].number - self.points[0].number

    def row(self) -> dict[str, Any]:
        first, last = self.points[0], self.points[-1]
        numbers = [p.number for p in self.points]
        width = (first.high - first.low) if first.low is not None and first.high is not None else None
        return {"block": self.block, "test": self.test, "value": self.value, "ccd": self.ccd,
                "quadrant": self.quadrant, "unit": self.unit, "n": len(self.points), "first_time": first.time,
                "last_time": last.time, "first": first.number, "last": last.number, "change": self.change,
                "min": min(numbers), "max": max(numbers),
                "change_of_limit_width": (self.change / width) if width else None,
                "sessions": " ".join(dict.fromkeys(p.session for p in self.points))}


@dataclass
class Trends:
    points: list[TrendPoint]
    records: list[Path]  # the result.json read, in the order found
    skipped: list[str] = field(default_factory=list)  # unreadable result.json, each with why

    def blocks(self) -> list[str]:
        return sorted({p.block for p in self.points})

    def tests(self) -> list[str]:
        return sorted({p.test for p in self.points})

    def values(self, test: str | None = None) -> list[str]:
        return list(dict.fromkeys(p.value for p in self.points if test is None or p.test == test))

    def outliers(self) -> list[TrendPoint]:
        """Points outside their limit, of the current results (not those a later run replaced)."""
        return sorted((p for p in self.points if p.current and p.out_of_limits),
                      key=lambda p: (p.test, p.value, p.block, p.ccd, p.quadrant))

    def newest(self) -> list[TrendPoint]:
        """Each (block, test)'s newest current record's points."""
        latest: dict[tuple[str, str], tuple[str, str, str]] = {}
        for p in self.points:
            if p.current and p.order > latest.get((p.block, p.test), ("", "", "")):
                latest[(p.block, p.test)] = p.order
        return [p for p in self.points if p.current and p.order == latest[(p.block, p.test)]]

    def compare(self, test: str, value: str) -> Comparison:
        chosen = [p for p in self.newest() if p.test == test and p.value == value]
        rows: dict[tuple[int, str], dict[str, TrendPoint]] = {}
        for p in sorted(chosen, key=lambda p: (p.ccd, p.quadrant, p.block)):
            rows.setdefault((p.ccd, p.quadrant), {})[p.block] = p
        first = chosen[0] if chosen else None
        return Comparison(test, value, first.unit if first else "", first.limit if first else "",
                          first.low if first else None, first.high if first else None,
                          tuple(sorted({p.block for p in chosen})), rows)

    def comparisons(self) -> list[Comparison]:
        return [self.compare(test, value) for test in self.tests() for value in self.values(test)]

    def drift(self) -> list[Drift]:
        series: dict[tuple, list[TrendPoint]] = {}
        for p in self.points:
            series.setdefault((p.block, p.test, p.value, p.ccd, p.quadrant), []).append(p)
        found = []
        for (block, test, value, ccd, quadrant), points in sorted(series.items()):
            points = sorted((p for p in points if not math.isnan(p.number)), key=lambda p: p.order)
            if len({p.source for p in points}) > 1:  # seen in more than one result.json
                found.append(Drift(block, test, value, ccd, quadrant, points[0].unit, tuple(points)))
        return found


# -- gathering --------------------------------------------------------------------------------------

def find_results(paths: Iterable[Path]) -> Iterator[tuple[Path, bool]]:
    """(result.json, current) under each path (a result.json, a test, session or results folder);
    staging folders (hidden) are left out, earlier results (<TEST>.previous-<time>) are not current."""
    seen: set[Path] = set()
    for path in paths:
        path = Path(path)
        if path.is_file():
            candidates = [path]
        else:
            candidates = []
            for folder, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                if RESULT_FILE in files:
                    candidates.append(Path(folder) / RESULT_FILE)
        for candidate in candidates:
            resolved = candidate.resolve()
            if resolved not in seen:
                seen.add(resolved)
                yield candidate, PREVIOUS_MARK not in candidate.parent.name


def gather_trends(paths: Sequence[Path], *, tests: Sequence[str] = (), values: Sequence[str] = (),
                  campaign: Campaign | None = None) -> Trends:
    """Every numeric per-quadrant and per-CCD value of the result.json under `paths`, for the
    `tests` (names or handles; all when empty) and `values` (all when empty). Limits: the
    families' defaults, or `campaign`'s. TrendsError when nothing is found."""
    missing = [str(p) for p in paths if not Path(p).exists()]
    if missing:
        raise TrendsError(f"no such file or folder: {', '.join(missing)}")
    wanted_tests = {t.upper() for t in tests}
    wanted_values = set(values)
    points: list[TrendPoint] = []
    records: list[Path] = []
    skipped: list[str] = []
    limits_cache: dict[str, Any] = {}
    for path, current in find_results(paths):
        try:
            record = json.loads(path.read_text())
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as exc:
            skipped.append(f"{path}: {getattr(exc, 'strerror', None) or exc}")
            continue
        test, handle = str(record.get("test", "")), str(record.get("handle", ""))
        if wanted_tests and test.upper() not in wanted_tests and handle.upper() not in wanted_tests:
            continue
        records.append(path)
        points += record_points(record, path, current, wanted_values, campaign, limits_cache)
    if not records:
        where = ", ".join(str(p) for p in paths)
        raise TrendsError(f"no result.json{' of ' + ', '.join(tests) if tests else ''} under {where}")
    if wanted_values and not points:
        raise TrendsError(f"no value {', '.join(sorted(wanted_values))} in the {len(records)} result.json found "
                          f"(per-quadrant values of {', '.join(sorted({_name(r) for r in records}))})")
    return Trends(points, records, skipped)


def _name(path: Path) -> str:
    return path.parent.name.split(PREVIOUS_MARK)[0]


def record_points(record: dict, source: Path, current: bool, wanted: set[str], campaign: Campaign | None,
                  cache: dict[str, Any]) -> list[TrendPoint]:
    family_name = str(record.get("family", ""))
    specs, limits, unchecked = _family_facts(family_name, campaign, cache)
    common = dict(block=str(record.get("block") or "UNKNOWN"), chamber=str(record.get("chamber") or ""),
                  session=str(record.get("session") or ""), test=str(record.get("test") or ""),
                  family=family_name, run_id=str(record.get("run_id") or ""),
                  time=str(record.get("finished") or record.get("started") or ""), current=current,
                  source=str(source))
    found = []
    positions = record.get("fpa_positions") or {}  # an FPA result: C_ji -> its block and block CCD
    for ccd_name, quadrants in sorted((record.get("ccds") or {}).items()):
        place = _fpa_place(ccd_name, positions)
        if place is not None:
            block, ccd, fpa = place
        elif isinstance(quadrants, dict) and ccd_name.startswith("CCD") and ccd_name[3:].isdigit():
            block, ccd, fpa = common["block"], int(ccd_name[3:]), ""
        else:
            continue
        if not isinstance(quadrants, dict):
            continue
        for quadrant, named in sorted(quadrants.items()):
            if not isinstance(named, dict):
                continue
            for name, number in named.items():
                if wanted and name not in wanted:
                    continue
                if isinstance(number, bool) or not isinstance(number, (int, float)):
                    continue
                spec = specs.get(name)
                limit_name, low, high = ("", None, None) if name in unchecked else limit_of(name, limits)
                found.append(TrendPoint(ccd=ccd, quadrant="" if quadrant == CCD_KEY else quadrant,
                                        value=name, number=float(number), unit=spec.unit if spec else "",
                                        limit=limit_name, low=low, high=high, fpa=fpa,
                                        **{**common, "block": block}))
    return found


def _fpa_place(ccd_name: str, positions: dict) -> tuple[str, int, str] | None:
    """(block, block CCD, C_ji) of an FPA result's CCD key, from its fpa_positions; None otherwise."""
    position = positions.get(ccd_name) if isinstance(positions, dict) else None
    if not (isinstance(position, dict) and position.get("block") and str(position.get("ccd", "")).isdigit()):
        return None
    return str(position["block"]), int(position["ccd"]), ccd_name


def _family_facts(name: str, campaign: Campaign | None, cache: dict[str, Any]) -> tuple[dict, dict, set]:
    """(value specs, range limits name -> (low, high), values held to no limit) of a family; empty
    for one unknown here. A region the family's check does not hold to the RON limits (the
    overscan after an illuminated image carries charge, not noise) has no limit here either."""
    if name not in cache:
        try:
            declared = family(name)
        except UnknownFamily:
            cache[name] = ({}, {}, set())
        else:
            limits = campaign.limits_for(declared.limits, name) if campaign is not None else declared.limits()
            ranges = {}
            for limit_name in limit_specs(declared.limits):
                value = getattr(limits, limit_name)
                if isinstance(value, (tuple, list)) and len(value) == 2 and all(
                        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
                    ranges[limit_name] = (float(value[0]), float(value[1]))
            regions = getattr(declared, "noise_regions", ("prescan", "overscan"))
            unchecked = {f"ron_{r}_adu" for r in ("prescan", "overscan") if r not in regions}
            cache[name] = (declared.value_specs(), ranges, unchecked)
    return cache[name]


def limit_of(value: str, ranges: dict[str, tuple[float, float]]) -> tuple[str, float | None, float | None]:
    """The range limit holding `value` (see the module's docstring): (name, low, high), or ("", None, None)."""
    checked = CHECKED_AGAINST.get(value)
    if checked in ranges:
        return (checked, *ranges[checked])
    if value in ranges:
        return (value, *ranges[value])
    for name, (low, high) in ranges.items():
        suffix = next((s for s in UNIT_SUFFIXES if name.endswith(s)), None)
        if suffix is None:
            continue
        stem = name[: -len(suffix)]
        if value.startswith(stem + "_") and value.endswith(suffix) and not any(
                value.endswith(longer) for longer in UNIT_SUFFIXES if len(longer) > len(suffix) and longer.endswith(suffix)):
            return name, low, high
    return "", None, None


# -- writing ----------------------------------------------------------------------------------------

def write_trends(trends: Trends, out: Path, *, figures: bool = True, maps_of: Sequence[str] = ()) -> list[Path]:
    """trends.csv (every point), outliers.csv, trends.xlsx (values, compare, drift, outliers) and,
    with `figures`, one comparison PNG per (test, value) that has a limit, and an FPA map of each
    such value (and of the values `maps_of` names) whose quadrants can be placed on the FPA (FPA
    results, or blocks of the FPA layout). Returns the files."""
    out.mkdir(parents=True, exist_ok=True)
    written = [_csv(out / "trends.csv", COLUMNS, [p.row() for p in trends.points]),
               _csv(out / "outliers.csv", COLUMNS, [p.row() for p in trends.outliers()]),
               _xlsx(out / "trends.xlsx", trends)]
    if figures:
        for comparison in trends.comparisons():
            if comparison.limit and comparison.rows:
                written.append(_comparison_figure(out / f"compare_{comparison.test}_{comparison.value}.png", comparison))
            if comparison.limit or comparison.value in maps_of:
                written += _fpa_map(out, trends, comparison)
    return written


def fpa_map_values(trends: Trends, test: str, value: str) -> tuple[dict[tuple[str, str], float], dict[str, str]]:
    """The newest value of each quadrant placed on the FPA, (C_ji, quadrant) -> number, and the
    label of each CCD placed (C_ji -> "BLOCK CCDn"): an FPA result's where it was measured, a
    block's where its block sits (final design, else initial: SKLODOWSKA, MAX)."""
    from ..formats.fpa import place_of_block_ccd

    placed: dict[tuple[str, str], float] = {}
    labels: dict[str, str] = {}
    chosen = [p for p in trends.newest() if p.test == test and p.value == value and p.quadrant]
    for point in sorted(chosen, key=lambda p: p.order):  # the newest last: it wins a shared place
        place = point.fpa or getattr(place_of_block_ccd(point.block, point.ccd), "ccdid", "")
        if place:
            placed[(place, point.quadrant)] = point.number
            labels[place] = f"{point.block} CCD{point.ccd}"
    return placed, labels


def _fpa_map(out: Path, trends: Trends, comparison: Comparison) -> list[Path]:
    from ..tasks.fpa_map import save_fpa_map

    placed, labels = fpa_map_values(trends, comparison.test, comparison.value)
    if not placed:
        return []
    limits = (comparison.low, comparison.high) if comparison.low is not None and comparison.high is not None else None
    title = f"{comparison.test} {comparison.value}, newest of each block"
    title += f" (limit {comparison.limit})" if limits else ""
    return [save_fpa_map(out / f"fpa_{comparison.test}_{comparison.value}.png", placed, title=title,
                         unit=comparison.unit, limits=limits, blocks=labels)]


def _csv(path: Path, columns: Sequence[str], rows: list[dict[str, Any]]) -> Path:
    tmp = path.with_name(f".{path.name}.part")
    with tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if v is None else v) for k, v in row.items() if k in columns})
    os.replace(tmp, path)
    return path


def _xlsx(path: Path, trends: Trends) -> Path:
    from openpyxl import Workbook
    from openpyxl.styles import Font, PatternFill

    bold, red = Font(bold=True), PatternFill("solid", start_color="FFC7CE", end_color="FFC7CE")
    book = Workbook()
    sheet = book.active
    sheet.title = "values"
    sheet.append(list(COLUMNS))
    for point in trends.points:
        row = point.row()
        sheet.append([_cell(row[c]) for c in COLUMNS])
        if point.out_of_limits:
            sheet.cell(sheet.max_row, COLUMNS.index("number") + 1).fill = red

    compare = book.create_sheet("compare")
    for comparison in trends.comparisons():
        limit = f"{comparison.limit} [{comparison.low:g}, {comparison.high:g}]" if comparison.limit else "no limit"
        compare.append([f"{comparison.test} {comparison.value}", comparison.unit, limit])
        compare.cell(compare.max_row, 1).font = bold
        compare.append(["ccd", "quadrant", *comparison.blocks, "spread"])
        for (ccd, quadrant), by_block in comparison.rows.items():
            compare.append([ccd, quadrant, *(_cell(by_block[b].number) if b in by_block else None
                                             for b in comparison.blocks), comparison.spread((ccd, quadrant))])
            for i, block in enumerate(comparison.blocks):
                if block in by_block and by_block[block].out_of_limits:
                    compare.cell(compare.max_row, 3 + i).fill = red
        compare.append([])

    drift = book.create_sheet("drift")
    drift_columns = ("block", "test", "value", "ccd", "quadrant", "unit", "n", "first_time", "last_time", "first",
                     "last", "change", "min", "max", "change_of_limit_width", "sessions")
    drift.append(list(drift_columns))
    for series in trends.drift():
        row = series.row()
        drift.append([_cell(row[c]) for c in drift_columns])

    outliers = book.create_sheet("outliers")
    outliers.append(["block", "ccd", "quadrant", "value", "number", "unit", "limit", "low", "high", "verdict",
                     "test", "session", "run_id", "time", "source"])
    for point in trends.outliers():
        outliers.append([point.block, point.ccd, point.quadrant, point.value, _cell(point.number), point.unit,
                         point.limit, point.low, point.high, point.verdict, point.test, point.session, point.run_id,
                         point.time, point.source])
    for ws in book.worksheets:
        if ws.max_row:
            for cell in ws[1]:
                cell.font = bold
        ws.freeze_panes = "A2" if ws.title != "compare" else None
    tmp = path.with_name(f".{path.stem}.part.xlsx")
    book.save(tmp)
    os.replace(tmp, path)
    return path


def _cell(value: Any) -> Any:
    """Excel has no NaN: an empty cell says "no valid pixel" (the CSV keeps NaN)."""
    return None if isinstance(value, float) and math.isnan(value) else value


def _comparison_figure(path: Path, comparison: Comparison) -> Path:
    """The value per quadrant (x) for each block (markers), the limits dotted, outliers circled."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    keys = list(comparison.rows)
    figure = Figure(figsize=(max(6.0, 0.5 * len(keys) + 2), 4), dpi=100)
    axes = figure.add_subplot()
    for i, block in enumerate(comparison.blocks):
        xs, ys, bad = [], [], []
        for x, key in enumerate(keys):
            point = comparison.rows[key].get(block)
            if point is not None:
                xs.append(x + (i - (len(comparison.blocks) - 1) / 2) * 0.12)
                ys.append(point.number)
                if point.out_of_limits:
                    bad.append((xs[-1], ys[-1]))
        axes.plot(xs, ys, "o", label=block, markersize=4)
        if bad:
            axes.plot(*zip(*bad), "o", markersize=11, markerfacecolor="none", markeredgecolor="red")
    for bound in (comparison.low, comparison.high):
        if bound is not None:
            axes.axhline(bound, linestyle=":", color="gray")
    axes.set_xticks(range(len(keys)), [f"{ccd}{q}" for ccd, q in keys], fontsize=7)
    axes.set_ylabel(f"{comparison.value} ({comparison.unit})" if comparison.unit else comparison.value)
    axes.set_title(f"{comparison.test} {comparison.value} per quadrant, newest of each block (dotted: "
                   f"{comparison.limit})", fontsize=9)
    axes.legend(fontsize=7)
    tmp = path.with_name(f".{path.stem}.part.png")
    figure.savefig(tmp)
    os.replace(tmp, path)
    return path
