"""CHINJ01/CHINJ02: charge-injection lines versus IG1 and IDL (thresholds, notch, slope, uniformity).

Sub-tasks (after the generic `init`; the science is in chinj_lib.py):

- `check` (family part): per frame and quadrant of the half its drain timing injects, the
  median and the std of the injected pixels against the predicted injection (vison's law,
  evaluated over IG1 +- `injection_margin_v`, widened by `injection_tolerance`): FLUENCE_OOL and
  FLUENCEGRAD_OOL with the value, the limit, the OBSID and how many frames are out.
- `prep` (offsets.py): per frame and quadrant the offset (clipped prescan mean).
- `extract`: each quadrant's image area offset-subtracted and folded over the on/off cycle:
  statistics of the injected pixels (mean, std, min, max, percentiles), non-uniformity,
  spill-over, profiles along rows and columns. Made in the check's read of the frames
  (Family.per_quadrant: LinesConsumer, one per CCD and quadrant, fed each frame's quadrant as the
  check measures it); a frame that read did not see with the same offsets and on/off cycle (check
  switched off, consumer failed) is read again (extract_unit, one unit per frame: the same
  function, the same numbers), said in the log. The check and this sub-task share the one extraction.
  The same consumers fit each quadrant's injection curve once its last frame is in (in the
  workers, while other quadrants are read); `meta` takes a fit made of the very points it would
  fit, else fits them itself.
- `basic`: the extraction table and profiles (CSV), per quadrant the median non-uniformity and
  spill-over of the injected frames, the profiles figure.
- `meta`: per quadrant the fit of the median injection against the swept voltage (CHINJ01: IG1,
  CHINJ02: IDL) over the frames of its injected half: thresholds, notch, slope, levels; the
  curves figure and the fit table. A fit that cannot be made raises BADFIT with the reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..campaign.limits import GenericLimits, limit
from ..formats.fits import FrameError, read_frame
from ..formats.geometry import HALF_OF_QUADRANT, QUADRANTS, CCDGeometry
from .check import RawStats
from .chinj_lib import (
    CurveFit,
    InjectedLines,
    cycle,
    fit_idl_curve,
    fit_ig1_curve,
    folded_lines,
    idl_model,
    ig1_model,
    injected_half,
    injection_window,
)
from .chinj_lib import logged_number as _number
from .context import TaskContext
from .family import Family, QuadrantConsumers, ValueSpec
from .figures import markdown_table, new_figure
from .measures import FrameMeasures
from .offsets import OffsetSubtractingTask, PreparedData
from .outputs import CsvTable, Outputs, Plot, Section, SubTaskResult


@dataclass(frozen=True)
class InjectionLimits(GenericLimits):
    injection_tolerance: float = limit(0.5, "fraction", "relative tolerance of the injection level vs predicted")
    injection_margin_v: float = limit(0.5, "V", "gate-voltage margin over which the predicted injection is taken")
    injection_gradient_fraction: float = limit(0.45, "fraction", "largest std of the injected pixels "
                                               "relative to the largest predicted injection")


# ---------------------------------------------------------------------------------------------
# What each frame was commanded to do
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class InjectionSetting:
    """The injection parameters of one frame of one CCD, from its EXP_LOG row."""

    chinj: int
    on: int
    off: int
    id_wid: float
    id_dly: float
    toi_ch: float
    idl: float
    ig1: dict[str, float]  # half ("T", "B") -> IG1 of this CCD
    ig2: dict[str, float]
    vstart: int
    vend: int | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any], ccd: int) -> "InjectionSetting":
        vend = row.get("vend")
        return cls(
            chinj=int(_number(row, "chinj", default=0)),
            on=int(_number(row, "chinj_on", default=0)),
            off=int(_number(row, "chinj_of", default=0)),
            id_wid=_number(row, "id_wid", default=0.0),
            id_dly=_number(row, "id_dly", default=0.0),
            toi_ch=_number(row, "toi_ch", default=0.0),
            idl=_number(row, "IDL"),
            ig1={h: _number(row, f"IG1_{ccd}_{h}", f"IG1_1_{h}") for h in "TB"},
            ig2={h: _number(row, f"IG2_{h}", "IG2_T") for h in "TB"},
            vstart=int(_number(row, "vstart", default=0)),
            vend=int(float(vend)) if vend not in (None, "") else None,
        )

    @property
    def half(self) -> str | None:
        return injected_half(self.chinj, self.id_wid, self.id_dly, self.toi_ch)

    def injects(self, quadrant: str) -> bool:
        return self.half is not None and self.half == HALF_OF_QUADRANT[quadrant]

    def voltages(self, quadrant: str) -> tuple[float, float, float]:
        """(IG1, IG2, IDL) of a quadrant's half."""
        half = HALF_OF_QUADRANT[quadrant]
        return self.ig1[half], self.ig2[half], self.idl


# ---------------------------------------------------------------------------------------------
# extract: from the check's read (one consumer per CCD and quadrant), else one unit per frame
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FoldPlan:
    """What the extraction of one frame needs of its EXP_LOG row: the on/off cycle and the
    readout window."""

    on: int
    off: int
    vstart: int
    vend: int | None

    @classmethod
    def of(cls, setting: InjectionSetting) -> FoldPlan:
        return cls(setting.on, setting.off, setting.vstart, setting.vend)


def quadrant_lines(canonical: np.ndarray, geometry: CCDGeometry, offset: float, fold: FoldPlan) -> InjectedLines:
    """The injected lines of one quadrant (counts in canonical orientation) of one frame: its
    image area minus the offset from canonical row 0 (the pattern's origin) to the last row read,
    the rows below the readout window left out (they carry no charge), folded over the cycle in
    one compiled sweep; chinj_lib.extract_lines on that area gives the same numbers."""
    stop = geometry.quad_height if fold.vend is None else min(fold.vend, geometry.quad_height)
    rows = slice(max(0, fold.vstart), min(stop, geometry.image_rows))
    from .compiled.chinj_kernels import fold_rows  # numba loaded only where units run

    on, period = cycle(fold.on, fold.off, rows.stop)
    # swept in memory order (a flipped quadrant's flips undone; the sums' columns mirrored back
    # after): contiguous rows are what lets the compiler vectorise the sweep
    stored, col0 = canonical, geometry.prescan
    mirrored = stored.strides[1] < 0
    if mirrored:
        stored, col0 = stored[:, ::-1], stored.shape[1] - col0 - geometry.image_cols
    rows_reversed = stored.strides[0] < 0
    if rows_reversed:
        stored = stored[::-1]
    sums, counts, line_sums = np.zeros((period, geometry.image_cols)), np.zeros(period, np.int64), np.empty(rows.stop)
    fold_rows(stored, rows_reversed, col0, geometry.image_cols, np.float32(offset), min(rows.start, rows.stop),
              rows.stop, sums, counts, line_sums)
    with np.errstate(invalid="ignore", divide="ignore"):
        cube = (sums[:, ::-1] if mirrored else sums) / counts[:, None]  # a new C-ordered array either way
    return folded_lines(cube, line_sums / geometry.image_cols, on, fold.off)


def extract_unit(path: Path, offsets: dict[str, float], on: int, off: int, vstart: int,
                 vend: int | None) -> dict[str, InjectedLines] | str:
    """Worker: the injected lines of each quadrant of one frame (opened once), or why not."""
    fold = FoldPlan(on, off, vstart, vend)
    try:
        with read_frame(path) as frame:
            geometry = frame.geometry
            return {q: quadrant_lines(frame.quadrant(q, geometry=geometry), geometry, offsets[q], fold)
                    for q in QUADRANTS}
    except FrameError as exc:
        return f"unreadable frame: {exc}"


@dataclass(frozen=True)
class LinesPlan:
    """What the consumers of one CCD need: each frame's fold and, when `meta` will fit the
    injection curves, each frame's setting and the swept voltage ("IG1" or "IDL")."""

    folds: tuple[FoldPlan, ...]
    settings: tuple[InjectionSetting, ...] | None = None
    swept: str = "IG1"


def plan_folds(ctx: TaskContext, ccd: int, frames: list[Any]) -> LinesPlan | None:
    """QuadrantConsumers.plan: each frame's fold (and setting), from its EXP_LOG row as
    `InjectionLines` reads it."""
    settings = tuple(InjectionSetting.from_row(f.row, ccd) for f in frames)
    if not settings:
        return None
    fitting = ctx.enabled is None or "meta" in ctx.enabled
    return LinesPlan(tuple(FoldPlan.of(s) for s in settings), settings if fitting else None, swept_voltage(ctx))


@dataclass(frozen=True)
class FittedCurve:
    """A quadrant's injection curve fitted where its points were measured: the points and the fit."""

    swept: str
    volts: tuple[float, ...]
    levels: tuple[float, ...]
    fit: CurveFit

    def of(self, swept: str, volts: list[float], levels: list[float]) -> CurveFit | None:
        """The fit if it was made of exactly these points (a pure function of them), else None."""
        same = swept == self.swept and np.array_equal(np.array(volts, np.float64), np.array(self.volts, np.float64),
                                                      equal_nan=True) \
            and np.array_equal(np.array(levels, np.float64), np.array(self.levels, np.float64), equal_nan=True)
        return self.fit if same else None


@dataclass(frozen=True)
class ConsumedLines:
    """A LinesConsumer's result: index of each frame fed -> (its fold, its lines); the fitted
    curve of the injected frames (None: `meta` not wanted)."""

    found: dict[int, tuple[FoldPlan, InjectedLines]]
    curve: FittedCurve | None


class LinesConsumer:
    """The check's read feeding the extraction: each frame's quadrant folded as it comes (the
    consumer keeps a few numbers and two profiles per frame, no counts); at the end the quadrant's
    injection curve fitted (`meta`'s fit, made here so the fits run in parallel with the read)."""

    def __init__(self, quadrant: str, geometry: CCDGeometry, plan: LinesPlan):
        self.quadrant, self.geometry, self.plan = quadrant, geometry, plan
        self.found: dict[int, tuple[FoldPlan, InjectedLines]] = {}

    def add(self, index: int, counts: np.ndarray, stats: Any) -> None:
        fold = self.plan.folds[index]
        canonical = self.geometry.to_canonical(counts, self.quadrant)
        self.found[index] = fold, quadrant_lines(canonical, self.geometry, stats.prescan.clipped_mean, fold)

    def result(self) -> ConsumedLines:
        settings, swept, q = self.plan.settings, self.plan.swept, self.quadrant
        if settings is None:
            return ConsumedLines(self.found, None)
        injected = [i for i in sorted(self.found) if settings[i].injects(q)]
        volts = tuple(setting_swept(settings[i], q, swept) for i in injected)
        levels = tuple(self.found[i][1].p50 for i in injected)
        return ConsumedLines(self.found, FittedCurve(swept, volts, levels, curve_fitter(swept)(volts, levels)))


def start_lines(quadrant: str, geometry: CCDGeometry, plan: LinesPlan) -> LinesConsumer:
    return LinesConsumer(quadrant, geometry, plan)


class ReadLines:
    """The consumers' results of the check's read, per frame: taken when every quadrant's was made
    from this frame with its offsets and its fold; else None and why is kept."""

    def __init__(self, readouts: dict[tuple[int, str], Any]):
        self.readouts = readouts
        self.index = {key: dict(zip(r.paths, r.fed)) for key, r in readouts.items()}
        self.why: dict[str, int] = {}  # reason -> frames

    def lines(self, ccd: int, frame: Any, fold: FoldPlan) -> dict[str, InjectedLines] | None:
        found = {}
        for q in QUADRANTS:
            readout = self.readouts.get((ccd, q))
            why = ("the check's read made no extraction (check switched off or its sub-tasks not run)"
                   if readout is None or (readout.result is None and not readout.error)
                   else f"its extraction failed ({readout.error})" if readout.error else "")
            entry = None if why else readout.result.found.get(self.index[(ccd, q)].get(Path(frame.path)))
            if not why and (entry is None or entry[0] != fold
                            or not readout.matches([frame.path], [frame.offsets[q]])):
                why = "the frame, its offsets or its on/off cycle differ from those the check's read saw"
            if why:
                self.why[why] = self.why.get(why, 0) + 1
                return None
            found[q] = entry[1]
        return found


@dataclass(frozen=True)
class FrameInjection:
    obsid: int
    ccd: int
    setting: InjectionSetting
    quadrants: dict[str, InjectedLines]


@dataclass
class InjectionLines:
    """Every frame's injected lines, extracted once per analysis (the check's or `extract`'s)."""

    geometry: CCDGeometry
    frames: list[FrameInjection]
    skipped: list[str]

    @classmethod
    def produce(cls, ctx: TaskContext) -> "InjectionLines":
        """From the check's read where it saw the frame with its offsets (LinesConsumer); the
        other frames are read again, one unit per frame (extract_unit: the same numbers)."""
        prepared = ctx.need(PreparedData)
        read = ReadLines(ctx.need(FrameMeasures).readouts)
        units, found, calls = [], [], []
        for ccd in ctx.ccds:
            rows = {f.obsid: f.row for f in ctx.dataset.frames(ccd)}
            for frame in prepared.frames[ccd]:
                setting = InjectionSetting.from_row(rows[frame.obsid], ccd)
                units.append((frame.obsid, ccd, setting))
                found.append(read.lines(ccd, frame, FoldPlan.of(setting)))
                if found[-1] is None:
                    calls.append((frame.path, frame.offsets, setting.on, setting.off, setting.vstart, setting.vend))
        again = iter(ctx.map_units(extract_unit, calls))
        results = [lines if lines is not None else next(again) for lines in found]
        if calls:
            ctx.log.info(f"injected lines of {len(found) - len(calls)} frames from the check's read; {len(calls)} read "
                         f"again ({'; '.join(f'{n}: {why}' for why, n in read.why.items())})")
        elif found:
            ctx.log.info(f"injected lines of the {len(found)} frames from the check's read")
        frames, skipped = [], list(prepared.skipped)
        for (obsid, ccd, setting), result in zip(units, results):
            if isinstance(result, str):
                skipped.append(f"CCD{ccd} OBSID {obsid}: {result}")
            else:
                frames.append(FrameInjection(obsid, ccd, setting, result))
        return cls(prepared.geometry, frames, skipped)

    def injected(self, ccd: int, quadrant: str) -> list[FrameInjection]:
        """Frames of a CCD whose drain timing injects this quadrant, in OBSID order."""
        return [f for f in self.frames if f.ccd == ccd and f.setting.injects(quadrant)]


# ---------------------------------------------------------------------------------------------
# check: fluence and gradient of each injected quadrant against the prediction
# ---------------------------------------------------------------------------------------------

def frame_window(ctx: TaskContext, frame: FrameInjection, quadrant: str):
    ig1, ig2, idl = frame.setting.voltages(quadrant)
    return injection_window(ig1, ig2, idl, ctx.limits.injection_tolerance, ctx.limits.injection_margin_v,
                            ctx.limits.injection_gradient_fraction)


def check_injection(ctx: TaskContext, stats: RawStats) -> None:
    """Median and std of the injected pixels of each injected quadrant against the predicted
    injection (FLUENCE_OOL, FLUENCEGRAD_OOL), one flag per CCD and quadrant with the worst frame."""
    lines = ctx.need(InjectionLines)
    for ccd in ctx.ccds:
        for q in QUADRANTS:
            fluence_out, gradient_out = [], []
            frames = lines.injected(ccd, q)
            for frame in frames:
                window = frame_window(ctx, frame, q)
                found = frame.quadrants[q]
                if not window.low_adu <= found.p50 <= window.high_adu:
                    fluence_out.append((frame, window, found.p50))
                if not found.std <= window.std_limit_adu:
                    gradient_out.append((frame, window, found.std))
            if fluence_out:
                frame, window, value = max(fluence_out, key=lambda f: abs(f[2] - f[1].predicted_adu))
                ig1, _, idl = frame.setting.voltages(q)
                ctx.flags.raise_flag("FLUENCE_OOL", (
                    f"median injection {value:.1f} ADU outside [{window.low_adu:.0f}, {window.high_adu:.0f}] ADU "
                    f"(predicted {window.predicted_adu:.0f} ADU at IG1 {ig1:g} V, IDL {idl:g} V) at OBSID "
                    f"{frame.obsid}; {len(fluence_out)} of {len(frames)} injected frames out"), ccd=ccd, quadrant=q)
            if gradient_out:
                frame, window, value = max(gradient_out, key=lambda f: f[2] - f[1].std_limit_adu)
                ctx.flags.raise_flag("FLUENCEGRAD_OOL", (
                    f"std of the injected pixels {value:.1f} ADU above {window.std_limit_adu:.0f} ADU at OBSID "
                    f"{frame.obsid}; {len(gradient_out)} of {len(frames)} injected frames out"), ccd=ccd, quadrant=q)


# ---------------------------------------------------------------------------------------------
# The task
# ---------------------------------------------------------------------------------------------

@dataclass
class Extraction(SubTaskResult):
    """`extract`: the injected lines of every frame."""

    lines: InjectionLines

    @classmethod
    def produce(cls, ctx: TaskContext) -> "Extraction":
        """`extract` switched off: the later sub-tasks still need the lines (extracted without products)."""
        return cls(ctx.need(InjectionLines))


@dataclass
class InjectionStats(SubTaskResult):
    """`basic`: per quadrant, the median non-uniformity and spill-over of its injected frames."""

    nonuniformity: dict[tuple[int, str], float]
    spillover: dict[tuple[int, str], float]


@dataclass
class InjectionCurves(SubTaskResult):
    """`meta`: the fitted injection curve of each quadrant."""

    swept: str  # "IG1" or "IDL"
    fits: dict[tuple[int, str], CurveFit]


def swept_voltage(ctx: TaskContext) -> str:
    """CHINJ02 sweeps IDL, CHINJ01 IG1."""
    return "IDL" if ctx.test.handle.upper().startswith("CHINJ02") else "IG1"


class InjectionTask(OffsetSubtractingTask):
    def extract(self, ctx: TaskContext, prepared: PreparedData) -> Extraction:
        lines = ctx.need(InjectionLines)
        for note in lines.skipped:
            ctx.log.warning(f"left out of the extraction: {note}")
        phases = sorted({(f.ccd, q, f.quadrants[q].phase) for f in lines.frames for q in QUADRANTS
                         if f.setting.injects(q) and f.quadrants[q].phase})
        out = Outputs()
        out.tables.append(profiles_table(ctx.test.name, lines))
        if phases:
            out.sections.append(Section("Injection pattern", "The injected lines start at another row than ELVIS's "
                                        "canonical row 0 in: " + ", ".join(f"CCD{c} {q} (row {p})" for c, q, p in phases)))
        return Extraction(lines, outputs=out)

    def basic(self, ctx: TaskContext, extraction: Extraction) -> InjectionStats:
        lines = extraction.lines
        out = Outputs()
        rows, nonuniformity, spillover, summary = [], {}, {}, []
        for frame in sorted(lines.frames, key=lambda f: (f.obsid, f.ccd)):
            for q in QUADRANTS:
                rows.append(extraction_row(ctx, frame, q))
        for ccd in ctx.ccds:
            for q in QUADRANTS:
                frames = [f for f in lines.injected(ccd, q) if f.quadrants[q].p50 > 100.0]
                nu = float(np.median([f.quadrants[q].nonuniformity for f in frames])) if frames else math.nan
                so = [f.quadrants[q].spillover for f in frames if math.isfinite(f.quadrants[q].spillover)]
                spill = float(np.median(so)) if so else math.nan
                nonuniformity[(ccd, q)], spillover[(ccd, q)] = nu, spill
                out.value("injection_nonuniformity", nu, ccd, q)
                out.value("injection_spillover", spill, ccd, q)
                out.value("injected_frames", len(lines.injected(ccd, q)), ccd, q)
                summary.append([f"CCD{ccd}", q, len(lines.injected(ccd, q)), len(frames), f"{nu:.4f}", f"{spill:.5f}"])
        name = f"{ctx.test.name}_extraction.csv"
        out.tables.append(CsvTable(name, EXTRACTION_COLUMNS, rows))
        test = ctx.test.name
        out.plots.append(Plot("profiles", lambda: profiles_figure(test, lines)))
        out.sections.append(Section("Injected lines", "\n\n".join([
            f"Per frame and quadrant (`products/{name}`): the image area minus the frame's offset, folded over "
            "the on/off cycle (mean over cycles); statistics of the injected pixels (mean, std, min, max, "
            "percentiles 5-95), non-uniformity = (p95 - p5) / p50, spill-over = (first empty line - median of the "
            "empty lines after the fifth) / p50, the predicted injection and the check's limits. Profiles "
            f"(`products/{ctx.test.name}_profiles.csv`): along a row = mean over the injected lines per image "
            "column; along a column = mean over columns per line of the cycle. Quadrant medians below over the "
            "injected frames with more than 100 ADU:",
            markdown_table(["CCD", "Q", "injected frames", "used", "non-uniformity", "spill-over"], summary),
        ])))
        return InjectionStats(nonuniformity, spillover, outputs=out)

    def meta(self, ctx: TaskContext, extraction: Extraction) -> InjectionCurves:
        lines = extraction.lines
        swept = swept_voltage(ctx)
        fitter = curve_fitter(swept)
        readouts = ctx.need(FrameMeasures).readouts
        fits, points, here = {}, {}, 0
        out = Outputs()
        for ccd in ctx.ccds:
            for q in QUADRANTS:
                frames = lines.injected(ccd, q)
                volts = [frame_swept(f, q, swept) for f in frames]
                levels = [f.quadrants[q].p50 for f in frames]
                points[(ccd, q)] = (volts, levels)
                fit = fitted_in_read(readouts.get((ccd, q)), swept, volts, levels)
                if fit is None:
                    fit, here = fitter(volts, levels), here + bool(volts)  # no points: nothing to fit
                fits[(ccd, q)] = fit
                if not fit.ok:
                    ctx.flags.raise_flag("BADFIT", f"injection vs {swept} not fitted: {fit.reason}", ccd=ccd, quadrant=q)
                write_fit_values(out, swept, fit, ccd, q)
        if here:
            ctx.log.info(f"{here} injection curves fitted here, not in the check's read (their points differ from "
                         "those the read saw, or it made no fit)")
        out.tables.append(fits_table(ctx.test.name, swept, fits))
        test = ctx.test.name
        out.plots.append(Plot("curves", lambda: curves_figure(test, swept, points, fits)))
        out.sections.append(Section(f"Injection vs {swept}", fits_section(swept, fits)))
        return InjectionCurves(swept, fits, outputs=out)


def setting_swept(setting: InjectionSetting, quadrant: str, swept: str) -> float:
    ig1, _, idl = setting.voltages(quadrant)
    return idl if swept == "IDL" else ig1


def frame_swept(frame: FrameInjection, quadrant: str, swept: str) -> float:
    return setting_swept(frame.setting, quadrant, swept)


def curve_fitter(swept: str):
    return fit_idl_curve if swept == "IDL" else fit_ig1_curve


def fitted_in_read(readout: Any, swept: str, volts: list[float], levels: list[float]) -> CurveFit | None:
    """The fit the check's read made of these very points (ConsumedLines.curve), else None."""
    result = None if readout is None or readout.error else readout.result
    if not isinstance(result, ConsumedLines) or result.curve is None:
        return None
    return result.curve.of(swept, volts, levels)


def write_fit_values(out: Outputs, swept: str, fit: CurveFit, ccd: int, q: str) -> None:
    out.value("fit_points", fit.points, ccd, q)
    out.value("fit_rms_adu", fit.rms_adu, ccd, q)
    out.value("injection_background_adu", fit.get("background"), ccd, q)
    out.value("injection_steepness_per_v", fit.get("steepness"), ccd, q)
    if swept == "IDL":
        out.value("idl_threshold_v", fit.get("threshold"), ccd, q)
        out.value("injection_max_adu", fit.get("amplitude"), ccd, q)
    else:
        out.value("ig1_threshold_v", fit.get("threshold"), ccd, q)
        out.value("ig1_notch_v", fit.get("notch"), ccd, q)
        out.value("injection_notch_adu", fit.get("notch_level"), ccd, q)
        out.value("slope_adu_per_v", fit.get("slope"), ccd, q)


FAMILY = Family(
    name="chinj",
    summary="CHINJ01/CHINJ02: charge-injection lines versus IG1 and IDL (thresholds, notch, slope, uniformity).",
    subtasks=("init", "check", "prep", "extract", "basic", "meta", "report"),
    task=InjectionTask,
    limits=InjectionLimits,
    values=(
        ValueSpec("injected_frames", "", None, "frames whose drain timing injects the quadrant"),
        ValueSpec("injection_nonuniformity", "", 4, "median over injected frames of (p95 - p5) / p50 of the "
                  "injected pixels"),
        ValueSpec("injection_spillover", "", 5, "median over injected frames of the first empty line's excess "
                  "over the empty lines, relative to the injection"),
        ValueSpec("ig1_threshold_v", "V", 3, "CHINJ01: IG1 where injection starts (sigmoid midpoint)", key=True),
        ValueSpec("ig1_notch_v", "V", 3, "CHINJ01: IG1 above which the injection stays at the notch level", key=True),
        ValueSpec("injection_notch_adu", "ADU", 1, "CHINJ01: injection above the notch voltage", key=True),
        ValueSpec("slope_adu_per_v", "ADU/V", 1, "CHINJ01: fall of the injection per volt of IG1 below the notch"),
        ValueSpec("idl_threshold_v", "V", 3, "CHINJ02: IDL where the injection falls to half", key=True),
        ValueSpec("injection_max_adu", "ADU", 1, "CHINJ02: injection well below the IDL threshold", key=True),
        ValueSpec("injection_background_adu", "ADU", 2, "fitted level without injection"),
        ValueSpec("injection_steepness_per_v", "1/V", 2, "fitted steepness of the threshold sigmoid"),
        ValueSpec("fit_points", "", None, "frames (voltages) in the fit"),
        ValueSpec("fit_rms_adu", "ADU", 2, "rms residual of the fit"),
    ),
    checks=(check_injection,),
    per_quadrant=QuadrantConsumers(plan=plan_folds, start=start_lines, subtasks=("check", "extract", "basic", "meta")),
)
TASK = InjectionTask


# ---------------------------------------------------------------------------------------------
# Tables, figures and report text
# ---------------------------------------------------------------------------------------------

EXTRACTION_COLUMNS = ("obsid", "ccd", "quadrant", "ig1_v", "ig2_v", "idl_v", "id_dly_us", "toi_ch_us", "injected",
                      "predicted_adu", "low_adu", "high_adu", "std_limit_adu", "mean_adu", "std_adu", "min_adu",
                      "max_adu", "p5_adu", "p25_adu", "p50_adu", "p75_adu", "p95_adu", "nonuniformity", "spillover")


def extraction_row(ctx: TaskContext, frame: FrameInjection, q: str) -> list[Any]:
    found = frame.quadrants[q]
    ig1, ig2, idl = frame.setting.voltages(q)
    injects = frame.setting.injects(q)
    window = frame_window(ctx, frame, q) if injects else None
    limits = ([f"{window.predicted_adu:.1f}", f"{window.low_adu:.1f}", f"{window.high_adu:.1f}",
               f"{window.std_limit_adu:.1f}"] if window else ["", "", "", ""])
    return [frame.obsid, f"CCD{frame.ccd}", q, f"{ig1:g}", f"{ig2:g}", f"{idl:g}", f"{frame.setting.id_dly:g}",
            f"{frame.setting.toi_ch:g}", int(injects), *limits,
            *(f"{getattr(found, name):.2f}" for name in ("mean", "std", "min", "max", "p5", "p25", "p50", "p75", "p95")),
            f"{found.nonuniformity:.5f}", f"{found.spillover:.6f}"]


def profiles_table(test: str, lines: InjectionLines) -> CsvTable:
    """Profiles of the injected quadrants: along a row (per image column), along a column (per
    line of the on/off cycle, from its first injected line)."""
    rows = []
    for frame in sorted(lines.frames, key=lambda f: (f.obsid, f.ccd)):
        for q in QUADRANTS:
            if not frame.setting.injects(q):
                continue
            found = frame.quadrants[q]
            for axis, profile in (("row", found.row_profile), ("column", found.column_profile)):
                rows += [(frame.obsid, f"CCD{frame.ccd}", q, axis, i, f"{v:.2f}") for i, v in enumerate(profile)]
    return CsvTable(f"{test}_profiles.csv", ("obsid", "ccd", "quadrant", "axis", "index", "mean_adu"), rows)


def fits_table(test: str, swept: str, fits: dict[tuple[int, str], CurveFit]) -> CsvTable:
    names = ("background", "steepness", "threshold", "notch", "slope", "notch_level") if swept == "IG1" else \
        ("background", "amplitude", "steepness", "threshold")
    rows = [(f"CCD{ccd}", q, swept, fit.points, int(fit.ok), fit.reason, *(f"{fit.get(n):.5g}" for n in names),
             f"{fit.rms_adu:.3f}") for (ccd, q), fit in sorted(fits.items())]
    return CsvTable(f"{test}_fits.csv", ("ccd", "quadrant", "swept", "points", "ok", "reason", *names, "rms_adu"), rows)


def fits_section(swept: str, fits: dict[tuple[int, str], CurveFit]) -> str:
    if swept == "IG1":
        header = ["CCD", "Q", "points", "IG1 threshold (V)", "notch (V)", "notch level (ADU)", "slope (ADU/V)",
                  "rms (ADU)"]
        rows = [[f"CCD{c}", q, f.points, f"{f.get('threshold'):.3f}", f"{f.get('notch'):.3f}",
                 f"{f.get('notch_level'):.1f}", f"{f.get('slope'):.1f}", f"{f.rms_adu:.2f}"]
                for (c, q), f in sorted(fits.items())]
        model = ("I = b + sigmoid(k (IG1 - IG1_thr)) x (slope x max(IG1_notch - IG1, 0) + notch level), vison's "
                 "\"ReLU\" curve")
    else:
        header = ["CCD", "Q", "points", "IDL threshold (V)", "max injection (ADU)", "rms (ADU)"]
        rows = [[f"CCD{c}", q, f.points, f"{f.get('threshold'):.3f}", f"{f.get('amplitude'):.1f}",
                 f"{f.rms_adu:.2f}"] for (c, q), f in sorted(fits.items())]
        model = "I = b + A x sigmoid(-k (IDL - IDL_thr))"
    failed = [f"CCD{c} {q}: {f.reason}" for (c, q), f in sorted(fits.items()) if not f.ok]
    return "\n\n".join([
        f"Median injection of each injected frame (ADU) against {swept}, per quadrant, fitted with {model} "
        "(bounded least squares, 1 % + 1 ADU errors, soft-L1 loss; up to 6 points b = 0 and k = 15/V). "
        "Fit parameters in the fits table (CSV).",
        markdown_table(header, rows),
        *(["Not fitted: " + "; ".join(failed)] if failed else []),
    ])


def profiles_figure(test: str, lines: InjectionLines):
    """Per quadrant, the profiles of its brightest injected frame, relative to its median level."""
    chosen = {}
    for frame in lines.frames:
        for q in QUADRANTS:
            level = frame.quadrants[q].p50
            if frame.setting.injects(q) and math.isfinite(level) and level > 0:
                key = (frame.ccd, q)
                if key not in chosen or level > chosen[key].quadrants[q].p50:
                    chosen[key] = frame
    if not chosen:
        return None
    figure = new_figure(10, 4.2)
    along_row = figure.add_subplot(1, 2, 1)
    along_column = figure.add_subplot(1, 2, 2)
    for (ccd, q), frame in sorted(chosen.items()):
        found = frame.quadrants[q]
        along_row.plot(found.row_profile / found.p50, linewidth=0.7, label=f"CCD{ccd} {q}")
        along_column.plot(found.column_profile / found.p50, linewidth=0.8, label=f"CCD{ccd} {q}")
    along_row.set_xlabel("image column (canonical)")
    along_row.set_ylabel("injection / median")
    along_row.set_title("along a row (mean of injected lines)", fontsize=9)
    along_column.set_xlabel("line of the on/off cycle")
    along_column.set_yscale("symlog", linthresh=1e-3)
    along_column.set_title("along a column (mean over columns)", fontsize=9)
    along_column.legend(fontsize=6, ncol=2)
    figure.suptitle(f"{test}: injection profiles of each quadrant's brightest frame", fontsize=10)
    return figure


def curves_figure(test: str, swept: str, points, fits: dict[tuple[int, str], CurveFit]):
    ccds = sorted({ccd for (ccd, _), (volts, _) in points.items() if volts})  # a CCD without frames: no panel
    if not ccds:
        return None
    figure = new_figure(4.0 * len(ccds), 3.8)
    for index, ccd in enumerate(ccds, start=1):
        axes = figure.add_subplot(1, len(ccds), index)
        for q in QUADRANTS:
            volts, levels = points.get((ccd, q), ([], []))
            if not volts:
                continue
            line = axes.plot(volts, levels, "o", markersize=3, label=q)[0]
            fit = fits[(ccd, q)]
            if fit.ok:
                grid = np.linspace(min(volts), max(volts), 300)
                model = idl_model if swept == "IDL" else ig1_model
                names = ("background", "amplitude", "steepness", "threshold") if swept == "IDL" else \
                    ("background", "steepness", "threshold", "notch", "slope", "notch_level")
                axes.plot(grid, model(grid, *(fit.get(n) for n in names)), color=line.get_color(), linewidth=0.8)
        axes.set_xlabel(f"{swept} (V)")
        axes.set_ylabel("median injection (ADU)")
        axes.set_title(f"CCD{ccd}", fontsize=9)
        axes.legend(fontsize=7)
    figure.suptitle(f"{test}: injection vs {swept} (lines: fits)", fontsize=10)
    return figure
