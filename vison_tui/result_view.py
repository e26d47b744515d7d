"""What the Results screen shows of a test's result.json, without Textual: the tests of a session,
the measured values as a table (value x CCD/quadrant), the flags with their reasons, and a
plotext chart of one value per quadrant for the three CCDs (format: docs/results.md).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.campaign.config import Campaign
from engine.formats.geometry import QUADRANTS
from engine.pipeline.results import read_result, result_folder

CCDS = ("CCD1", "CCD2", "CCD3")
CCD_COLOURS = {"CCD1": "cyan", "CCD2": "magenta", "CCD3": "green"}  # names plotext and Rich share
# the value a family's plot opens on: its key figure (else the first value)
KEY_VALUES = {
    "bias": ("ron_image_adu", "ron_prescan_adu"),
    "dark": ("dark_e_per_pix_per_hour", "dark_signal_adu"),
    "chinj": ("injection_adu",),
    "focus": ("fwhm_x_pix", "fwhm_pix"),
    "ptc": ("gain_e_per_adu",),
}
_PLOT_LOCK = threading.Lock()  # plotext keeps state in module globals


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
    """Every per-quadrant value name, in the order the record gives them."""
    names: dict[str, None] = {}
    for ccd in (result.get("ccds") or {}).values():
        for quadrant in (ccd or {}).values():
            for name, value in (quadrant or {}).items():
                if isinstance(value, (int, float)) or value is None:
                    names.setdefault(name, None)
    return list(names)


def value_of(result: dict[str, Any], ccd: str, quadrant: str, name: str) -> float | None:
    value = (((result.get("ccds") or {}).get(ccd) or {}).get(quadrant) or {}).get(name)
    return float(value) if isinstance(value, (int, float)) else None


def format_value(value: float | None) -> str:
    """Four significant digits, and offsets-sized values to 0.01 ADU; NaN and missing say so."""
    if value is None:
        return "–"
    if math.isnan(value):
        return "NaN"
    if value == 0:
        return "0"
    if abs(value) >= 1e5 or abs(value) < 1e-3:
        return f"{value:.3e}"
    if abs(value) >= 100:  # offsets: a 2773 would hide the 0.5 ADU the checks care about
        return f"{value:.2f}"
    return f"{value:.4g}"


def value_table(result: dict[str, Any]) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """Columns "CCD1 E" ... "CCD3 H" and one row per value name (cells formatted)."""
    columns = [f"{ccd[-1]}{q}" for ccd in CCDS for q in QUADRANTS]
    rows = [(name, [format_value(value_of(result, ccd, q, name)) for ccd in CCDS for q in QUADRANTS])
            for name in value_names(result)]
    return columns, rows


def test_values(result: dict[str, Any]) -> list[tuple[str, str]]:
    """The test-wide values (gain source, methods...) as (name, text)."""
    shown = []
    for name, value in (result.get("values") or {}).items():
        if isinstance(value, float):
            text = format_value(value)
        elif isinstance(value, list):
            text = ", ".join(str(v) for v in value)
        else:
            text = str(value)
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
    if result.get("subtasks_skipped"):
        lines.append(f"sub-tasks not run: {', '.join(result['subtasks_skipped'])}")
    return lines


def default_plot_value(result: dict[str, Any]) -> str | None:
    names = value_names(result)
    for preferred in KEY_VALUES.get(str(result.get("family")), ()):
        if preferred in names:
            return preferred
    return names[0] if names else None


def plot_value(result: dict[str, Any], name: str, width: int, height: int) -> str:
    """A chart of `name` per quadrant, one coloured line per CCD (CCD_COLOURS), as text with ANSI
    colours. No legend in the chart (it would hide points): the caller names the colours."""
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
        for ccd, values in series.items():
            points = [(i + 1, v) for i, v in enumerate(values) if v is not None and math.isfinite(v)]
            if not points:
                continue
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            line = figure.signal(xs, ys, marker=Marker("dot", Pixel(foreground=CCD_COLOURS[ccd])))
            line.lines()
            figure.draw(line)
            figure.draw(figure.signal(xs, ys, marker=Marker("●", Pixel(foreground=CCD_COLOURS[ccd]))))
        low, high = min(finite), max(finite)
        margin = (high - low) * 0.1 or abs(high) * 0.05 or 1.0
        figure.ruler("y").lim(low - margin, high + margin)
        figure.ruler("x").lim(0.7, 4.3)
        figure.ruler("x").ticks([1, 2, 3, 4], list(QUADRANTS))
        return figure.build().string()
