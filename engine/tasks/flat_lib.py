"""What the flat-illumination families share (FLATFLUX00, FLAT01/02, NL01/02): which frame is which
(column, label, lamp, exposure time, time of day) and the fluence and flux checks.

Fluence of a raw frame = image median minus prescan median (the generic check's measurements,
each frame read once). Expected fluence of a flat = min(exptime / tFWC_flat(λ), 1) x the fluence
the chamber's "time to full well" refers to (`full_well_adu`, vison's 2^16 ADU), within
`flat_fluence_tolerance`; the exposure time is the one the EXP_LOG says, so a logged time that
differs from what the shutter did shows here.

Flux: vison took the mean of fluence / exptime over the frames. A shutter that opens late (tens
of ms) biases that ratio by several percent at the short exposures FLATFLUX00 takes; the slope of
fluence against exposure time does not see it. The slope is used when the frames span at least
a factor 1.5 in exposure time, the ratio otherwise (one exposure time, FLAT_STB), and the method
is said. Time to full well = `full_well_adu` / flux, checked against the chamber profile's
tFWC_flat(λ) within `tfwc_tolerance` (FLUX_OOL).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from ..campaign.chamber import ChamberError
from ..campaign.limits import GenericLimits, limit
from ..formats.names import parse_date_token
from .check import RawStats, quadrant_frames
from .context import TaskContext
from .family import ValueSpec

FULL_WELL_ADU = 65536.0  # vison: the chamber's tFWC_flat is the time a flat takes to reach 2^16 ADU
FLUX_FLUENCE_FRACTION = 0.8  # frames above this fraction of full well are left out of the flux (vison)
SLOPE_SPAN = 1.5  # exposure times spanning at least this factor: flux from the slope


@dataclass(frozen=True)
class FlatLimitsBase(GenericLimits):
    """Limits of every flat-illumination family."""

    flat_fluence_tolerance: float = limit(0.10, "fraction", "relative tolerance of flat fluence vs expected")
    full_well_adu: float = limit(FULL_WELL_ADU, "ADU", "fluence the chamber's time to full well (tFWC_flat) "
                                 "refers to: expected fluence = min(exptime / tFWC, 1) x this")
    tfwc_tolerance: float = limit(0.10, "fraction", "relative tolerance of the measured time to full well "
                                  "against the chamber profile's tFWC_flat")


# ---------------------------------------------------------------------------------------------
# Which frame is which
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FrameInfo:
    """What the EXP_LOG and the test's structure say about one exposure."""

    obsid: int
    column: int  # 0-based column of the structure; -1 beyond it
    label: str  # the column's label in the catalogue ("FLAT_25", "STAB", "NL_0_0.5"), or "col<NNN>"
    exptime: float  # s, as logged
    wave: int  # filter-wheel position as logged
    nm: int | None  # its wavelength in the chamber profile (None if the wheel position is unknown)
    lit: bool  # shutter open on the flat source with a positive exposure time
    seconds: float  # acquisition time (s) since the test's first exposure


def frame_infos(ctx: TaskContext) -> dict[int, FrameInfo]:
    """obsid -> FrameInfo for every exposure of the data set, in OBSID order."""
    try:
        labels = [c.label for c in ctx.test.columns(ctx.chamber)]
    except Exception:  # noqa: BLE001 - a structure that cannot be built leaves generic labels
        labels = []
    infos: dict[int, FrameInfo] = {}
    start: datetime | None = None
    for index, exposure in enumerate(ctx.dataset.exposures):
        row = exposure.row
        try:
            when = parse_date_token(str(row.get("date", "")))
        except ValueError:
            when = None
        if when is not None and start is None:
            start = when
        seconds = (when - start).total_seconds() if when is not None and start is not None else float(index)
        wave = _int(row.get("wave"))
        try:
            nm = ctx.chamber.wavelength(wave) if wave is not None else None
        except ChamberError:
            nm = None
        exptime = _float(row.get("exptime"))
        column = exposure.column
        label = labels[column] if 0 <= column < len(labels) else f"col{column + 1:03d}"
        shutter = _int(row.get("shuttr"))
        source = str(row.get("source", "flat")).strip().lower()
        lit = exptime > 0 and shutter != 0 and source in ("flat", "")
        infos[exposure.obsid] = FrameInfo(exposure.obsid, column, label, exptime, wave or 0, nm, lit, seconds)
    return infos


def _int(value: object) -> int | None:
    try:
        return int(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _float(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0


def tfwc_flat(ctx: TaskContext, nm: int | None) -> float | None:
    """The chamber profile's time to full well (s) for flats at this wavelength, or None."""
    if nm is None:
        return None
    return ctx.chamber.tfwc_flat.get(nm)


# ---------------------------------------------------------------------------------------------
# Fluence and flux (pure)
# ---------------------------------------------------------------------------------------------

def expected_fluence(exptime: float, tfwc: float | None, full_well_adu: float) -> float:
    """vison's expected flat fluence: min(exptime / tFWC, 1) x full well (ADU); NaN without tFWC."""
    if not tfwc or tfwc <= 0:
        return math.nan
    return min(exptime / tfwc, 1.0) * full_well_adu


@dataclass(frozen=True)
class Flux:
    adu_per_s: float
    method: str  # "slope" | "ratio" | "none"
    frames: int


def measure_flux(exptimes: Sequence[float], fluences: Sequence[float], full_well_adu: float) -> Flux:
    """Flux (ADU/s) from frames below FLUX_FLUENCE_FRACTION of full well: the slope of fluence vs
    exposure time when they span a factor SLOPE_SPAN, else the median of fluence / exptime."""
    t = np.asarray(exptimes, float)
    f = np.asarray(fluences, float)
    keep = (t > 0) & np.isfinite(f) & (f < FLUX_FLUENCE_FRACTION * full_well_adu)
    t, f = t[keep], f[keep]
    if t.size == 0:
        return Flux(math.nan, "none", 0)
    if t.size >= 2 and t.max() >= SLOPE_SPAN * t.min():
        slope, _ = np.polyfit(t, f, 1)
        return Flux(float(slope), "slope", int(t.size))
    return Flux(float(np.median(f / t)), "ratio", int(t.size))


# ---------------------------------------------------------------------------------------------
# The checks (from the generic check's raw measurements)
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ColumnFluence:
    label: str
    exptime: float  # median logged exposure time (s)
    nm: int | None
    fluence: float  # median over the column's frames (ADU)
    expected: float  # ADU, NaN when the chamber has no tFWC for the wavelength
    frames: int
    worst_obsid: int
    worst_fluence: float


@dataclass(frozen=True)
class QuadrantFluence:
    columns: list[ColumnFluence]
    flux: dict[int, Flux]  # nm -> flux
    tfwc_measured: dict[int, float]  # nm -> full_well_adu / flux (s)


def quadrant_fluences(infos: dict[int, FrameInfo], frames: Iterable[tuple[int, object]], full_well_adu: float,
                      tfwc: dict[int, float]) -> QuadrantFluence:
    """Per column the median fluence against its expectation; per wavelength the flux and the
    time to full well. `frames`: (obsid, QuadrantStats) of one CCD quadrant."""
    by_column: dict[int, list[tuple[int, float]]] = defaultdict(list)
    by_nm: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for obsid, stats in frames:
        info = infos.get(obsid)
        if info is None or not info.lit:
            continue
        fluence = float(stats.image.median - stats.prescan.median)  # type: ignore[attr-defined]
        by_column[info.column].append((obsid, fluence))
        if info.nm is not None:
            by_nm[info.nm].append((info.exptime, fluence))
    columns = []
    for column, values in sorted(by_column.items()):
        members = [infos[o] for o, _ in values]
        exptime = float(np.median([m.exptime for m in members]))
        nm = members[0].nm
        median = float(np.median([f for _, f in values]))
        expected = expected_fluence(exptime, tfwc.get(nm) if nm is not None else None, full_well_adu)
        obsid, worst = max(values, key=lambda item: abs(item[1] - (expected if math.isfinite(expected) else median)))
        columns.append(ColumnFluence(members[0].label, exptime, nm, median, expected, len(values), obsid, worst))
    flux = {nm: measure_flux([t for t, _ in v], [f for _, f in v], full_well_adu) for nm, v in sorted(by_nm.items())}
    measured = {nm: (full_well_adu / fx.adu_per_s if fx.adu_per_s > 0 else math.nan) for nm, fx in flux.items()}
    return QuadrantFluence(columns, flux, measured)


def fluence_flux_values(result: QuadrantFluence) -> dict[str, Any]:
    """A quadrant's check values: per-column fluences and expectations (lists in column order),
    the flux and time to full well of its first wavelength with a measured flux."""
    values: dict[str, Any] = {"fluence_adu": [c.fluence for c in result.columns],
                              "fluence_expected_adu": [c.expected for c in result.columns]}
    nm_flux = [(nm, fx) for nm, fx in result.flux.items() if math.isfinite(fx.adu_per_s)]
    if nm_flux:
        values["flux_adu_per_s"] = nm_flux[0][1].adu_per_s
        values["tfwc_measured_s"] = result.tfwc_measured[nm_flux[0][0]]
    return values


def fluence_flux_problems(result: QuadrantFluence, tfwc: dict[int, float], full_well: float, tolerance: float,
                          tfwc_tol: float, frame: Callable[[int], str] = lambda obsid: f"OBSID {obsid}",
                          ) -> list[tuple[str, str]]:
    """(flag, reason) of one quadrant: FLUENCE_OOL per column whose median fluence is off its
    expectation by more than `tolerance`, FLUX_OOL per wavelength whose measured time to full well
    is off the chamber's tFWC_flat by more than `tfwc_tol`. `frame` names a frame by its key."""
    raised = []
    for column in result.columns:
        if not math.isfinite(column.expected):
            continue
        low, high = column.expected * (1 - tolerance), column.expected * (1 + tolerance)
        if not low <= column.fluence <= high:
            raised.append(("FLUENCE_OOL", (
                f"column {column.label}: fluence {column.fluence:.0f} ADU (median of {column.frames} frames; "
                f"most extreme {column.worst_fluence:.0f} at {frame(column.worst_obsid)}) "
                f"{100 * (column.fluence / column.expected - 1):+.1f} % from the expected {column.expected:.0f} ADU "
                f"(exptime {column.exptime:g} s / tFWC_flat({column.nm}) {tfwc.get(column.nm):g} s x "
                f"{full_well:g} ADU); limit [{low:.0f}, {high:.0f}] ADU (+-{100 * tolerance:g} %)")))
    for nm, fx in result.flux.items():
        if not math.isfinite(fx.adu_per_s):
            continue
        measured, nominal = result.tfwc_measured[nm], tfwc.get(nm)
        if not nominal or not math.isfinite(measured):
            continue
        low, high = nominal * (1 - tfwc_tol), nominal * (1 + tfwc_tol)
        if not low <= measured <= high:
            raised.append(("FLUX_OOL", (
                f"{nm} nm: flux {fx.adu_per_s:.0f} ADU/s ({fx.method} over {fx.frames} frames) gives a time to "
                f"full well ({full_well:g} ADU) of {measured:.3g} s, {100 * (measured / nominal - 1):+.1f} % from "
                f"the chamber profile's tFWC_flat {nominal:g} s; limit [{low:.3g}, {high:.3g}] s "
                f"(+-{100 * tfwc_tol:g} %)")))
    return raised


def check_flat_fluence_and_flux(ctx: TaskContext, stats: RawStats) -> dict[tuple[int, str], QuadrantFluence]:
    """FLUENCE_OOL per CCD, quadrant and column; FLUX_OOL per CCD, quadrant and wavelength; each
    with the measured value, the expectation and the limit. Values: per-column fluences (lists in
    column order), flux and time to full well."""
    infos = frame_infos(ctx)
    limits = ctx.limits
    tolerance = float(limits.flat_fluence_tolerance)
    tfwc_tol = float(limits.tfwc_tolerance)
    full_well = float(limits.full_well_adu)
    tfwc = dict(ctx.chamber.tfwc_flat)
    results: dict[tuple[int, str], QuadrantFluence] = {}
    for ccd, q, frames in quadrant_frames(ctx, stats):
        result = quadrant_fluences(infos, frames, full_well, tfwc)
        if not result.columns:
            continue
        results[(ccd, q)] = result
        for name, value in fluence_flux_values(result).items():
            ctx.set_value(ccd, q, name, value)
        for flag, reason in fluence_flux_problems(result, tfwc, full_well, tolerance, tfwc_tol):
            ctx.flags.raise_flag(flag, reason, ccd=ccd, quadrant=q)
    return results


FLUENCE_VALUES: tuple[ValueSpec, ...] = (
    ValueSpec("fluence_adu", "ADU", 1, "median raw fluence (image minus prescan median) of each column's frames, "
              "in column order (check)"),
    ValueSpec("fluence_expected_adu", "ADU", 1, "expected fluence of each column: min(exptime / tFWC_flat, 1) x "
              "full_well_adu (check)"),
    ValueSpec("flux_adu_per_s", "ADU/s", 2, "flat flux: slope of fluence vs logged exposure time, or median ratio (check)"),
    ValueSpec("tfwc_measured_s", "s", 4, "measured time to full well: full_well_adu / flux (check)"),
)
