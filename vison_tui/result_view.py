"""What the Results screen shows of a test's result.json, without Textual: the tests of a session,
the measured values as a table (value x CCD/quadrant), the flags with their reasons, and a
plotext chart of one value per quadrant for the three CCDs (format: docs/results.md).

Units, precision and key values come from the family's declaration (engine/tasks/family.py),
formatted by the engine's one formatter, as the report does.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from engine.campaign.config import Campaign
from engine.formats.geometry import QUADRANTS
from engine.pipeline.results import read_result, result_folder
from engine.tasks.family import CCD_KEY, ValueSpec
from engine.tasks.family import format_value as format_declared

CCDS = ("CCD1", "CCD2", "CCD3")
CCD_COLOURS = {"CCD1": "cyan", "CCD2": "magenta", "CCD3": "green"}  # names plotext and Rich share



@cache
def family_specs(family: str) -> tuple[dict[str, ValueSpec], tuple[str, ...]]:
    """(value name -> spec, key value names) of a family; empty for one this engine does not know."""
    from engine.tasks.registry import UnknownFamily, family as declared  # the analysis modules: on first use

    try:
        found = declared(family)
    except UnknownFamily:
        return {}, ()
    return found.value_specs(), found.key_values()
_PLOT_LOCK = threading.Lock()
PLOT_SHIFTS = (-0.2, 0.0, 0.2)  # CCD1..3 beside each other at each quadrant  # plotext keeps state in module globals


@dataclass(frozen=True)
class TestEntry:
    __test__ = False  # not a pytest class

    name: str
    folder: Path
    result: dict[str, Any] | None
    in_session: bool = True  # False: a folder of the session that the campaign no longer lists
    report: str | None = None  # report.md's text
    stamp: float = 0.0  # result.json's mtime: tells a re-analysed test

    @classmethod
    def read(cls, name: str, folder: Path, in_session: bool = True) -> "TestEntry":
        result = read_result(folder)
        report = None
        stamp = 0.0
        if result is not None:
            try:
                stamp = (folder / "result.json").stat().st_mtime
                report = (folder / (result.get("report") or "report.md")).read_text(encoding="utf-8", errors="replace")
            except OSError:
                pass
        return cls(name, folder, result, in_session, report, stamp)

    @property
    def state(self) -> str:
        """no result | errors | flags | ok"""
        if self.result is None:
            return "no result"
        if self.result.get("errors"):
            return "errors"
        return "flags" if self.result.get("flags") else "ok"


def session_tests(campaign: Campaign, session: str) -> list[TestEntry]:
    """The session's tests in order with their results, then other test folders found there."""
    root = campaign.paths.results
    entries = []
    names = [t.name for t in campaign.sessions[session].tests] if session in campaign.sessions else []
    for name in names:
        entries.append(TestEntry.read(name, result_folder(root, session, name)))
    session_folder = root / session
    if session_folder.is_dir():
        for folder in sorted(session_folder.iterdir()):
            if folder.name in names or folder.name.startswith(".") or ".previous-" in folder.name:
                continue
            if (folder / "result.json").is_file():
                entries.append(TestEntry.read(folder.name, folder, in_session=False))
    return entries


def value_names(result: dict[str, Any]) -> list[str]:
    """Every per-quadrant value name: the family's key values first, then in the record's order."""
    names: dict[str, None] = {}
    for ccd in (result.get("ccds") or {}).values():
        for key, quadrant in (ccd or {}).items():
            if key == CCD_KEY:  # per-CCD values: ccd_values
                continue
            for name, value in (quadrant or {}).items():
                if isinstance(value, (int, float)) or value is None:
                    names.setdefault(name, None)
    keys = family_specs(str(result.get("family")))[1]
    return [n for n in keys if n in names] + [n for n in names if n not in keys]


def value_spec(result: dict[str, Any], name: str) -> ValueSpec | None:
    return family_specs(str(result.get("family")))[0].get(name)


def value_label(result: dict[str, Any], name: str) -> str:
    """A value's name with its declared unit: "ron_image_adu (ADU)"."""
    spec = value_spec(result, name)
    return f"{name} ({spec.unit})" if spec is not None and spec.unit else name


def value_of(result: dict[str, Any], ccd: str, quadrant: str, name: str) -> float | None:
    value = (((result.get("ccds") or {}).get(ccd) or {}).get(quadrant) or {}).get(name)
    return float(value) if isinstance(value, (int, float)) else None


def format_value(value: Any, spec: ValueSpec | None = None) -> str:
    """The engine's one formatter (the report's): the declared precision, else 7 significant figures."""
    return format_declared(value, spec.precision if spec is not None else None)


def value_table(result: dict[str, Any]) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """Columns "CCD1 E" ... "CCD3 H" and one row per value name (cells formatted by its spec)."""
    columns = [f"{ccd[-1]}{q}" for ccd in CCDS for q in QUADRANTS]
    rows = []
    for name in value_names(result):
        spec = value_spec(result, name)
        rows.append((name, [format_value(value_of(result, ccd, q, name), spec) for ccd in CCDS for q in QUADRANTS]))
    return columns, rows


def ccd_table(result: dict[str, Any]) -> tuple[list[str], list[tuple[str, str, str, list[str]]]]:
    """The Results screen's table, narrow enough for 120 columns: one row per value and CCD, a
    column per quadrant (E F G H), and a "CCD" column for the per-CCD values (FOCUS00's) when the
    result has any. Rows: (key "name/CCDn", value name, CCD, cells); the name's row group in CCD order."""
    per_ccd: dict[str, None] = {}
    for ccd in (result.get("ccds") or {}).values():
        per_ccd.update(dict.fromkeys(((ccd or {}).get(CCD_KEY) or {})))
    columns = list(QUADRANTS) + (["CCD"] if per_ccd else [])
    rows = []
    for name in value_names(result):
        spec = value_spec(result, name)
        for ccd in CCDS:
            cells = [format_value(value_of(result, ccd, q, name), spec) for q in QUADRANTS]
            rows.append((f"{name}/{ccd}", name, ccd, cells + ([""] if per_ccd else [])))
    for name in per_ccd:
        spec = value_spec(result, name)
        for ccd in CCDS:
            value = (((result.get("ccds") or {}).get(ccd) or {}).get(CCD_KEY) or {}).get(name)
            rows.append((f"{name}/{ccd}", name, ccd, [""] * len(QUADRANTS) + [format_value(value, spec)]))
    return columns, rows


def fit_markdown_tables(markdown: str, width: int) -> str:
    """The report with each table too wide for `width` cells split into several, each repeating the
    first column (value names) and taking as many of the others as fit, cut where the header's
    first word changes (CCD1 E..H, CCD2 E..H...) when that fits: no cell is cut to "27…"."""
    lines = markdown.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        if not (_table_row(lines[i]) and i + 1 < len(lines) and _table_rule(lines[i + 1])):
            out.append(lines[i])
            i += 1
            continue
        end = i + 2
        while end < len(lines) and _table_row(lines[end]):
            end += 1
        rows = [_cells(line) for line in lines[i:end]]
        out += _split_table(rows, width) or lines[i:end]
        i = end
    return "\n".join(out)


def _table_row(line: str) -> bool:
    return line.strip().startswith("|") and line.strip().endswith("|") and len(line.strip()) > 1


def _table_rule(line: str) -> bool:
    return _table_row(line) and set(line.replace("|", "").strip()) <= set("-: ")


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip()[1:-1].split("|")]


def _split_table(rows: list[list[str]], width: int) -> list[str] | None:
    header, rule, body = rows[0], rows[1], rows[2:]
    count = len(header)
    widths = [max(len(row[c]) if c < len(row) else 0 for row in [header, *body]) + 3 for c in range(count)]
    if sum(widths) + 1 <= width or count < 3:
        return None  # fits: left as written
    room = max(width - widths[0] - 1, 1)
    groups: list[list[int]] = []  # columns with the same first header word, in order
    for c in range(1, count):
        word = header[c].split(" ")[0] if " " in header[c] else None
        if groups and word is not None and word == groups[-1][0]:
            groups[-1][1].append(c)
        else:
            groups.append((word, [c]))  # type: ignore[arg-type]
    parts: list[list[int]] = [[]]
    for _, columns in groups:  # type: ignore[misc]
        used = sum(widths[c] for c in parts[-1])
        if parts[-1] and used + sum(widths[c] for c in columns) > room:
            parts.append([])
        for c in columns:
            if parts[-1] and sum(widths[k] for k in parts[-1]) + widths[c] > room:
                parts.append([])
            parts[-1].append(c)
    out: list[str] = []
    for n, part in enumerate(parts):
        if n:
            out.append("")
        for row in [header, rule, *body]:
            cells = [row[c] if c < len(row) else "" for c in [0, *part]]
            out.append("| " + " | ".join(cells) + " |")
    return out


def ccd_values(result: dict[str, Any]) -> list[tuple[str, str]]:
    """The per-CCD values (`ccds -> CCDn -> CCD`) as (name with unit, "CCD1 x · CCD2 y · CCD3 z")."""
    names: dict[str, None] = {}
    for ccd in (result.get("ccds") or {}).values():
        names.update(dict.fromkeys(((ccd or {}).get(CCD_KEY) or {})))
    shown = []
    for name in names:
        spec = value_spec(result, name)
        cells = [f"{ccd} {format_value(((result['ccds'].get(ccd) or {}).get(CCD_KEY) or {}).get(name), spec)}"
                 for ccd in CCDS if ccd in result["ccds"]]
        shown.append((value_label(result, name), " · ".join(cells)))
    return shown


def test_values(result: dict[str, Any]) -> list[tuple[str, str]]:
    """The test-wide values (gain source, methods...) as (name, text)."""
    shown = []
    for name, value in (result.get("values") or {}).items():
        if name == "calproducts" and isinstance(value, dict):
            text = "; ".join(f"{kind}: {source.get('description', '')}" for kind, source in value.items()
                             if isinstance(source, dict))
        else:
            spec = value_spec(result, name)
            text = format_value(value, spec) + (f" {spec.unit}" if spec is not None and spec.unit else "")
        shown.append((name, text))
    return shown


def flag_rows(result: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(flag, CCD, quadrant, OBSID, reason) per raised flag, in the record's order."""
    rows = []
    for reason in result.get("flag_reasons") or []:
        ccd = reason.get("ccd")
        rows.append((str(reason.get("flag", "?")), f"CCD{ccd}" if isinstance(ccd, int) else str(ccd or ""),
                     str(reason.get("quadrant") or ""), str(reason.get("obsid") or ""), str(reason.get("reason", ""))))
    listed = {row[0] for row in rows}
    rows += [(flag, "", "", "", "(no reason recorded)") for flag in result.get("flags") or [] if flag not in listed]
    return rows


def summary_lines(entry: TestEntry) -> list[str]:
    result = entry.result
    if result is None:
        return [f"{entry.name}: no result in {entry.folder} yet (the test has not been analysed)"]
    obsids = result.get("obsids")
    span = f"OBSIDs {obsids[0]}-{obsids[1]}" if obsids else "no OBSIDs"
    lines = [f"{entry.name} ({result.get('family')}) · {span} · {result.get('exposures')} of "
             f"{result.get('expected_exposures')} exposures · {result.get('mode')} · "
             f"analysed {str(result.get('finished', '')).replace('T', ' ')}"]
    if result.get("errors"):
        lines.append("ERRORS: " + "; ".join(result.get("error_messages") or ["(no message)"]))
    for note in result.get("notes") or []:
        lines.append(f"note: {note}")
    statuses = result.get("subtasks")
    if isinstance(statuses, dict):
        for status in ("not implemented", "failed", "skipped", "off"):
            names = [name for name, said in statuses.items() if said == status]
            if names:
                lines.append(f"sub-tasks {status}: {', '.join(names)}")
    elif result.get("subtasks_skipped"):  # a record from before sub-task statuses
        lines.append(f"sub-tasks not run: {', '.join(result['subtasks_skipped'])}")
    return lines


def default_plot_value(result: dict[str, Any]) -> str | None:
    """The family's first key value present (value_names puts them first), else the first value."""
    names = value_names(result)
    return names[0] if names else None


def plot_value(result: dict[str, Any], name: str, width: int, height: int) -> str:
    """A chart of `name` per quadrant: a coloured marker per CCD (CCD_COLOURS) at each quadrant,
    the three CCDs side by side, never joined by lines (quadrants are not a series). Text with
    ANSI colours. No legend in the chart (it would hide points): the caller names the colours."""
    from plotext._kernel.terminal import terminal as PlotTerminal  # plotext 6: a figure of our own
    from plotext._primitives.marker import marker as Marker
    from plotext._primitives.pixel import pixel as Pixel

    series = {ccd: [value_of(result, ccd, q, name) for q in QUADRANTS] for ccd in CCDS}
    finite = [v for values in series.values() for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return f"{name}: no finite value to plot"
    with _PLOT_LOCK:
        terminal = PlotTerminal()
        terminal.limit(False, False)  # sized by the widget, not by the terminal plotext sees
        figure = terminal._master
        figure.plot_size(max(width, 30), max(height, 8))
        figure.theme("simple")
        figure.title(f"{result.get('test')} · {name} per quadrant")
        for shift, (ccd, values) in zip(PLOT_SHIFTS, series.items()):
            points = [(i + 1 + shift, v) for i, v in enumerate(values) if v is not None and math.isfinite(v)]
            if not points:
                continue
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            figure.draw(figure.signal(xs, ys, marker=Marker("●", Pixel(foreground=CCD_COLOURS[ccd]))))
        low, high = min(finite), max(finite)
        margin = (high - low) * 0.1 or abs(high) * 0.05 or 1.0
        figure.ruler("y").lim(low - margin, high + margin)
        figure.ruler("x").lim(0.7, 4.3)
        figure.ruler("x").ticks([1, 2, 3, 4], list(QUADRANTS))
        return figure.build().string()
