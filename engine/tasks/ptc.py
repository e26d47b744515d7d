"""PTC01, PTC02WAVE, PTC02TEMP, PTC02RD: photon transfer curves, gain, blooming level per quadrant.

Sub-tasks (after the generic `init` and `check`):

- `check` (family part): each fluence column's image level (image median minus the prescan
  offset, median over its frames and quadrants) against the column's exposure time times the
  flux measured on the unsaturated columns (FLUENCE_OOL beyond `flat_fluence_tolerance`). vison
  compared with fractions of 2^16 ADU, which assumes the chamber's "time to full well" fills
  exactly the ADC; the relative test needs no such scale and catches a wrong exposure or shutter.
- `prep`: offsets (prescan clipped means, as the biases) and the pairs: frames (0, 1), (2, 3)...
  of each column (an odd frame out is said). A pair whose two fluences differ by more than
  `pair_fluence_tolerance` (|f1 - f2| / mean) is left out with POORQUALDATA naming both fluences
  and the limit: a lamp or shutter that changed within the pair.
- `extract_PTC`: per pair and quadrant, tiles of ~300 x 300 pixels (at least 4 x 4 on small
  frames, covering the whole image area): the mean of the two frames and half the clipped
  variance of their difference scaled by the fluence ratio (PRNU and illumination cancel even for
  unequal fluences: vison's plain difference does not). Computed as the check reads the frames
  (Family.per_quadrant: ptc_lib.PairTiles keeps a pair's first quadrant until the second comes,
  compiled tile sweeps), so the frames are read once; a pair the check's read did not make (a
  frame left out re-pairs its column) is read again (ptc_lib.pair_tiles_unit, the same numbers).
- `meta` (ptc_lib.fit_ptc): tiles with ADC-saturated pixels and saturation-smeared columns
  dropped, 1e3-4e4 ADU kept, a weighted robust quadratic fit var = p0 mu^2 + p1 mu + p2; gain =
  1/p1 with its error dp1/p1^2 (vison's "egain" divided by gain^2, a quirk), blooming where the
  variance falls off the fit; the gain checked against `gain_e_per_adu`. Products: the gain
  table, every tile point with its fate, a PTC figure per CCD.

Error budget (small simulated frames, 64 x 64 pixels a quadrant): a tile variance from n pixels
has a relative error sqrt(2/n); PTC01's 5 pairs in each of the ~5 columns inside the fit range
give about 1 % per fluence, and the free quadratic term (brighter-fatter) multiplies it about
2.5 times on the gain: ~2-2.5 % rms per quadrant there, ~0.07 % on full frames (1000 x more
pixels), where the 1 % target is met with room. POORFIT says when the gain's own error exceeds
`gain_rel_err_max`.

The measured gain is the calibration product later tests take (calproducts.py reads
`gain_e_per_adu` from the newest error-free result of this family).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..campaign.limits import GenericLimits, Range, limit
from ..formats.geometry import QUADRANTS
from .check import RawStats
from .context import TaskContext
from .family import Family, QuadrantConsumers, ValueSpec
from .figures import markdown_table, new_figure
from .measures import FrameMeasures
from .offsets import OffsetSubtractingTask, PreparedData
from .outputs import CsvTable, Outputs, Plot, Section, SubTaskResult
from .ptc_lib import (
    FIT_RANGE_ADU,
    PairQuadrant,
    PairTiles,
    PTCFit,
    PTCPoints,
    fit_ptc,
    pair_tiles_unit,
)

NEAR_SATURATION_ADU = 0.8 * 65536  # columns above it do not measure the flux (vison's FLAT rule)


@dataclass(frozen=True)
class PTCLimits(GenericLimits):
    gain_e_per_adu: Range = limit((3.1, 3.5), "e-/ADU", "PTC gain")
    flat_fluence_tolerance: float = limit(0.10, "fraction", "relative tolerance of flat fluence vs expected")
    pair_fluence_tolerance: float = limit(0.05, "fraction", "largest |f1 - f2| / mean of a pair's fluences")
    gain_rel_err_max: float = limit(0.01, "fraction", "largest relative gain error of a good PTC fit")


# ---------------------------------------------------------------------------------------------
# Pairs
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FlatPair:
    ccd: int
    column: int
    obsid1: int
    obsid2: int
    path1: Path
    path2: Path
    offsets1: dict[str, float]
    offsets2: dict[str, float]
    fluence1_adu: float  # image level above the offset, mean over quadrants (raw check's medians)
    fluence2_adu: float
    exptime_s: float

    @property
    def mismatch(self) -> float:
        return fluence_mismatch(self.fluence1_adu, self.fluence2_adu)


def fluence_mismatch(fluence1_adu: float, fluence2_adu: float) -> float:
    """|f1 - f2| / mean of a pair's two fluences (held to `pair_fluence_tolerance`)."""
    mean = 0.5 * (fluence1_adu + fluence2_adu)
    return abs(fluence1_adu - fluence2_adu) / mean if mean > 0 else 0.0


@dataclass
class PairedFrames(SubTaskResult):
    """`prep`: the frames with their offsets, and the pairs kept per CCD."""

    prepared: PreparedData
    pairs: list[FlatPair]
    rejected: list[str] = field(default_factory=list)

    @classmethod
    def produce(cls, ctx: TaskContext) -> PairedFrames:
        return pair_frames(ctx, PreparedData.produce(ctx))


def frame_fluence(frame) -> float:
    """Image level above the offset of a frame (FrameOffsets), mean over its quadrants."""
    return float(np.mean([frame.stats[q].image.median - frame.offsets[q] for q in QUADRANTS]))


def column_frames(ctx: TaskContext, frames: list) -> dict[int, list[int]]:
    """Column of the test's structure (0-based, in order) -> indices of its frames among `frames`
    (one CCD's, OBSID order; anything with .obsid). Frames beyond the structure are left out."""
    columns = {e.obsid: e.column for e in ctx.dataset.exposures}
    by_column: dict[int, list[int]] = defaultdict(list)
    for index, frame in enumerate(frames):
        by_column[columns.get(frame.obsid, -1)].append(index)
    return {column: indices for column, indices in sorted(by_column.items()) if column >= 0}


def plan_pairs(ctx: TaskContext, ccd: int, frames: list) -> tuple[tuple[int, int], ...] | None:
    """QuadrantConsumers.plan: the pairs `pair_frames` will make if every frame on disk is usable
    (frames (0, 1), (2, 3)... of each column); a frame left out later re-pairs its column, and
    extract_PTC computes those pairs again."""
    return tuple((first, second) for indices in column_frames(ctx, frames).values()
                 for first, second in zip(indices[0::2], indices[1::2])) or None


def pair_frames(ctx: TaskContext, prepared: PreparedData) -> PairedFrames:
    """Frames (0, 1), (2, 3)... of each column; pairs of unequal fluences left out, flagged."""
    tolerance = float(ctx.limits.pair_fluence_tolerance)
    result = PairedFrames(prepared, [])
    for ccd in ctx.ccds:
        usable = prepared.frames.get(ccd, [])
        rows = {f.obsid: f for f in ctx.dataset.frames(ccd)}
        for column, indices in column_frames(ctx, usable).items():
            frames = [usable[i] for i in indices]
            if len(frames) % 2:
                ctx.log.info(f"CCD{ccd} column {column + 1}: odd frame OBSID {frames[-1].obsid} has no pair")
            for first, second in zip(frames[0::2], frames[1::2]):
                exptime = float(rows[first.obsid].row.get("exptime") or 0.0) if first.obsid in rows else 0.0
                pair = FlatPair(ccd, column, first.obsid, second.obsid, first.path, second.path, first.offsets,
                                second.offsets, frame_fluence(first), frame_fluence(second), exptime)
                if pair.mismatch > tolerance:
                    reason = (f"pair OBSIDs {pair.obsid1}/{pair.obsid2} (column {column + 1}): fluences "
                              f"{pair.fluence1_adu:.1f} and {pair.fluence2_adu:.1f} ADU differ by "
                              f"{100 * pair.mismatch:.1f} % (limit {100 * tolerance:g} %): pair left out")
                    ctx.flags.raise_flag("POORQUALDATA", reason, ccd=ccd, obsid=pair.obsid1)
                    result.rejected.append(f"CCD{ccd}: {reason}")
                    ctx.log.warning(f"CCD{ccd}: {reason}")
                else:
                    result.pairs.append(pair)
    return result


# ---------------------------------------------------------------------------------------------
# Sub-task results
# ---------------------------------------------------------------------------------------------

@dataclass
class PTCExtraction(SubTaskResult):
    """`extract_PTC`: the tile points of every pair, per (CCD, quadrant)."""

    pairs: list[FlatPair]
    tiles: list[dict[str, PairQuadrant]]  # per pair, quadrant -> its tiles

    def points(self, ccd: int, quadrant: str) -> PTCPoints:
        chosen = [(p, t[quadrant]) for p, t in zip(self.pairs, self.tiles) if p.ccd == ccd]
        if not chosen:
            empty = np.zeros(0)
            return PTCPoints(empty, empty, empty.astype(int), empty.astype(int), empty.astype(int))
        return PTCPoints(np.concatenate([t.means for _, t in chosen]), np.concatenate([t.variances for _, t in chosen]),
                         np.concatenate([t.pixels for _, t in chosen]), np.concatenate([t.saturated for _, t in chosen]),
                         np.concatenate([np.full(t.means.size, p.column) for p, t in chosen]))


def read_tiles(readouts: dict, pair: FlatPair) -> dict[str, PairQuadrant] | None:
    """The pair's tiles in every quadrant from the check's read (quadrant_pass.QuadrantReadout
    per (CCD, quadrant) holding PairTiles' result), or None if a quadrant's are not those of
    these two frames with these offsets."""
    found = {}
    for q in QUADRANTS:
        readout = readouts.get((pair.ccd, q))
        if readout is None or not isinstance(readout.result, dict):
            return None
        index = {path: i for i, path in zip(readout.fed, readout.paths)}
        key = (index.get(pair.path1), index.get(pair.path2))
        if key not in readout.result or not readout.matches((pair.path1, pair.path2),
                                                            (pair.offsets1[q], pair.offsets2[q])):
            return None
        found[q] = readout.result[key]
    return found


def pairs_from_read(ctx: TaskContext, paired: PairedFrames, what: str, unit, call) -> list[dict[str, Any]]:
    """Per pair, quadrant -> what the check's read measured of it (a PairConsumer's result), when
    that read paired the same two frames with the same offsets in every quadrant; the other pairs
    (a frame left out re-paired its column, the consumer failed, the check measured without it)
    are read again, one `unit(*call(pair))` each, and the log says how many and why."""
    readouts = ctx.need(FrameMeasures).readouts
    results: list[dict[str, Any] | None] = [read_tiles(readouts, pair) for pair in paired.pairs]
    again = [i for i, found in enumerate(results) if found is None]
    if again:
        why = sorted({r.error for r in readouts.values() if r.error}) or ["not paired so when the check read them"]
        ctx.log.info(f"{len(paired.pairs) - len(again)} pairs' {what} from the check's read; {len(again)} read "
                     f"again ({'; '.join(why)})")
        for i, computed in zip(again, ctx.map_units(unit, [call(paired.pairs[i]) for i in again])):
            results[i] = computed
    else:
        ctx.log.info(f"the {len(paired.pairs)} pairs' {what} from the check's read")
    return results


@dataclass
class PTCResults(SubTaskResult):
    """`meta`: the fit of each (CCD, quadrant)."""

    fits: dict[tuple[int, str], PTCFit]


class PTCTask(OffsetSubtractingTask):
    def prep(self, ctx: TaskContext) -> PairedFrames:
        prepared = super().prep(ctx)
        paired = pair_frames(ctx, prepared)
        counts = ", ".join(f"CCD{ccd} {sum(p.ccd == ccd for p in paired.pairs)}" for ccd in ctx.ccds)
        ctx.log.info(f"flat pairs kept: {counts}; {len(paired.rejected)} left out for unequal fluences")
        return paired

    def extract_PTC(self, ctx: TaskContext, paired: PairedFrames) -> PTCExtraction:
        """Each pair's tiles as the check's read computed them (PairTiles), the others read again
        one unit per pair (pair_tiles_unit): pairs_from_read."""
        geometry = paired.prepared.geometry
        tiles = pairs_from_read(ctx, paired, "tiles", pair_tiles_unit,
                                lambda p: (p.path1, p.path2, p.offsets1, p.offsets2, geometry))
        return PTCExtraction(paired.pairs, tiles)

    def meta(self, ctx: TaskContext, paired: PairedFrames, extraction: PTCExtraction) -> PTCResults:
        fits = {}
        for ccd in ctx.ccds:
            for q in QUADRANTS:
                points = extraction.points(ccd, q)
                if points.means.size:
                    fits[(ccd, q)] = fit_ptc(points, rel_error_max=float(ctx.limits.gain_rel_err_max))
        out = ptc_outputs(ctx, paired, extraction, fits)
        check_gains(ctx, fits)
        return PTCResults(fits, outputs=out)


# ---------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------

def check_column_fluences(ctx: TaskContext, stats: RawStats) -> None:
    """Per CCD, each column's level against exposure time x the flux of the unsaturated columns."""
    tolerance = float(ctx.limits.flat_fluence_tolerance)
    columns = {e.obsid: (e.column, float(e.row.get("exptime") or 0.0)) for e in ctx.dataset.exposures}
    for ccd in ctx.ccds:
        levels: dict[int, list[float]] = defaultdict(list)
        times: dict[int, float] = {}
        for (obsid, c), s in stats.by_frame.items():
            if c != ccd or obsid not in columns:
                continue
            column, exptime = columns[obsid]
            levels[column].append(float(np.median([s[q].image.median - s[q].prescan.clipped_mean for q in QUADRANTS])))
            times[column] = exptime
        fluence = {c: float(np.median(v)) for c, v in levels.items()}
        for reason in fluence_outliers(fluence, times, tolerance):
            ctx.flags.raise_flag("FLUENCE_OOL", reason, ccd=ccd)


def fluence_outliers(fluence: dict[int, float], times: dict[int, float], tolerance: float) -> list[str]:
    """Why each column's fluence (ADU, by 0-based column) is off its exposure time (s) x the flux
    of the unsaturated columns by more than `tolerance` (check_column_fluences; the FPA mode too)."""
    rates = [fluence[c] / times[c] for c in fluence if times[c] > 0 and 0 < fluence[c] < NEAR_SATURATION_ADU]
    if len(rates) < 2:
        return []
    flux = float(np.median(rates))
    reasons = []
    for column in sorted(fluence):
        expected = flux * times[column]
        if times[column] <= 0 or expected >= NEAR_SATURATION_ADU:
            continue
        if abs(fluence[column] / expected - 1.0) > tolerance:
            reasons.append(f"column {column + 1} (exptime {times[column]:g} s): fluence {fluence[column]:.0f} ADU, "
                           f"expected {expected:.0f} ADU from the test's flux {flux:.1f} ADU/s "
                           f"(tolerance {100 * tolerance:g} %)")
    return reasons


def check_gains(ctx: TaskContext, fits: dict[tuple[int, str], PTCFit]) -> None:
    """The gain against `gain_e_per_adu` (REQNOTMET when outside by more than 2 sigma: a gain whose
    error bar reaches into the range cannot be said out of it); a bad fit raises BADFIT."""
    for (ccd, q), fit in sorted(fits.items()):
        for flag, reason in gain_problems(fit.gain, fit.gain_err, fit.quality_text, ctx.limits):
            ctx.flags.raise_flag(flag, reason, ccd=ccd, quadrant=q)


def gain_problems(gain: float, gain_err: float, quality: str, limits: PTCLimits) -> list[tuple[str, str]]:
    """(flag, reason) of one quadrant's fit: BADFIT for a fit quality other than OK, REQNOTMET
    for a gain outside `gain_e_per_adu` by more than 2 sigma (check_gains; the FPA mode too)."""
    low, high = limits.gain_e_per_adu
    problems = []
    if quality != "OK":
        problems.append(("BADFIT", (f"PTC fit {quality}: gain {gain:.4f} +- {gain_err:.4f} "
                                    f"e-/ADU (largest relative error {limits.gain_rel_err_max:g})")))
    if math.isfinite(gain):
        distance = max(low - gain, gain - high, 0.0)
        if distance > 2.0 * (gain_err if math.isfinite(gain_err) else 0.0):
            problems.append(("REQNOTMET", (f"gain {gain:.4f} +- {gain_err:.4f} e-/ADU outside "
                                           f"[{low:g}, {high:g}] e-/ADU")))
    return problems


# ---------------------------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------------------------

GAIN_TABLE_COLUMNS = ("ccd", "quadrant", "gain_e_per_adu", "gain_err_e_per_adu", "quad_term_per_adu",
                      "intercept_adu2", "bloom_adu", "bloom_e", "bloom_lower_limit", "fit_quality")


def fit_values(fit: PTCFit) -> dict[str, Any]:
    """One quadrant's values (result.json names) from its PTC fit (ptc_outputs; the FPA mode too)."""
    bloom_e = fit.bloom_adu * fit.gain if math.isfinite(fit.gain) else math.nan
    return {"gain_e_per_adu": fit.gain, "gain_err_e_per_adu": fit.gain_err, "quad_term_per_adu": fit.quadratic,
            "ptc_intercept_adu2": fit.intercept, "bloom_adu": fit.bloom_adu, "bloom_e": bloom_e,
            "bloom_lower_limit": fit.bloom_lower_limit, "fit_quality": fit.quality_text,
            "fit_chi2_reduced": fit.chi2_reduced, "ptc_points_fitted": fit.points_fitted}


def gain_table_row(ccd: str, quadrant: str, values: dict[str, Any]) -> list[str]:
    """One row of the gain table (GAIN_TABLE_COLUMNS) from a quadrant's fit_values."""
    return [ccd, quadrant, _num(values["gain_e_per_adu"], 5), _num(values["gain_err_e_per_adu"], 5),
            _num(values["quad_term_per_adu"], 4, "e"), _num(values["ptc_intercept_adu2"], 3),
            _num(values["bloom_adu"], 1), _num(values["bloom_e"], 0), str(values["bloom_lower_limit"]).lower(),
            values["fit_quality"]]


PTC_METHOD = ("tiles of ~300 px: mean of the pair, half the 4-sigma clipped variance of the fluence-scaled "
              "difference; weighted robust quadratic fit; gain = 1/linear term")


def ptc_outputs(ctx: TaskContext, paired: PairedFrames, extraction: PTCExtraction,
                fits: dict[tuple[int, str], PTCFit]) -> Outputs:
    out = Outputs()
    test = ctx.test.name
    gain_rows, table_rows, point_rows = [], [], []
    for (ccd, q), fit in sorted(fits.items()):
        values = fit_values(fit)
        bloom_e = values["bloom_e"]
        for name, value in values.items():
            out.value(name, value, ccd, q)
        gain_rows.append(gain_table_row(f"CCD{ccd}", q, values))
        table_rows.append([f"CCD{ccd}", q, _num(fit.gain, 4), _num(fit.gain_err, 4), _num(fit.quadratic, 3, "e"),
                           ("> " if fit.bloom_lower_limit else "") + _num(fit.bloom_adu, 0),
                           ("> " if fit.bloom_lower_limit else "") + _num(bloom_e, 0), fit.quality_text])
    for pair, tiles in zip(extraction.pairs, extraction.tiles):
        for q in QUADRANTS:
            t = tiles[q]
            fit = fits.get((pair.ccd, q))
            offset = 0
            if fit is not None and fit.used is not None:
                # points of this pair sit at the same place in the concatenated arrays as in fit.used
                offset = _offset_of(extraction, pair, q)
            for i in range(t.means.size):
                used = bool(fit.used[offset + i]) if fit is not None and fit.used is not None else False
                point_rows.append([f"CCD{pair.ccd}", q, pair.column + 1, pair.obsid1, pair.obsid2, int(t.tile_rows[i]),
                                   int(t.tile_cols[i]), _num(t.means[i], 2), _num(t.variances[i], 3),
                                   int(t.pixels[i]), int(t.saturated[i]), int(used)])
    out.tables.append(CsvTable(f"{test}_GAIN_TB.csv", GAIN_TABLE_COLUMNS, gain_rows))
    out.tables.append(CsvTable(f"{test}_PTC_curves.csv", ("ccd", "quadrant", "column", "obsid1", "obsid2", "tile_row",
                                                            "tile_col", "mean_adu", "var_adu2", "pixels", "saturated",
                                                            "fitted"), point_rows))
    for ccd in ctx.ccds:
        if any(key[0] == ccd for key in fits):
            out.plots.append(Plot(f"PTC_CCD{ccd}", _figure_drawer(test, ccd, extraction, fits)))
    low, high = FIT_RANGE_ADU
    out.value("pairs_used", len(paired.pairs))
    out.value("pairs_rejected", paired.rejected)
    out.value("ptc_fit_range_adu", [low, high])
    out.value("ptc_method", PTC_METHOD)
    dropped = defaultdict(int)
    for fit in fits.values():
        for reason, count in fit.dropped.items():
            dropped[reason] += count
    lines = [
        f"Pairs: {len(paired.pairs)} kept; {len(paired.rejected)} left out for unequal fluences "
        f"(limit {100 * ctx.limits.pair_fluence_tolerance:g} %)." +
        "".join(f"\n- {reason}" for reason in paired.rejected),
        f"Fit: var = p0 mu^2 + p1 mu + p2 on tile points with {low:g} < mu < {high:g} ADU, weighted by each "
        "variance's error; gain = 1/p1. Points left out: " +
        (", ".join(f"{reason} {count}" for reason, count in dropped.items() if count) or "none") + ".",
        markdown_table(["CCD", "Q", "gain (e-/ADU)", "error", "p0 (1/ADU)", "bloom (ADU)", "bloom (e-)", "fit"],
                       table_rows),
        f"Tables: `products/{test}_GAIN_TB.csv` (gain table), `products/{test}_PTC_curves.csv` (every tile point, "
        "`fitted` 1 when the fit used it). Later tests take these gains (calibration product `gain`).",
    ]
    out.sections.append(Section("Photon transfer curve and gain", "\n\n".join(lines)))
    return out


def _offset_of(extraction: PTCExtraction, pair: FlatPair, quadrant: str) -> int:
    offset = 0
    for p, t in zip(extraction.pairs, extraction.tiles):
        if p is pair:
            return offset
        if p.ccd == pair.ccd:
            offset += t[quadrant].means.size
    return offset


def _num(value: float, decimals: int, style: str = "f") -> str:
    if value is None or not math.isfinite(value):
        return "NaN"
    return f"{value:.{decimals}{style}}"


def _figure_drawer(test: str, ccd: int, extraction: PTCExtraction, fits: dict[tuple[int, str], PTCFit]):
    def draw():
        figure = new_figure(10, 7)
        for index, q in enumerate(QUADRANTS):
            fit = fits.get((ccd, q))
            if fit is None:
                continue
            axes = figure.add_subplot(2, 2, index + 1)
            points = extraction.points(ccd, q)
            used = fit.used if fit.used is not None else np.zeros(points.means.size, bool)
            axes.plot(points.means[~used], points.variances[~used], ".", color="0.6", ms=3, label="not fitted")
            axes.plot(points.means[used], points.variances[used], ".", color="tab:blue", ms=3, label="fitted")
            if math.isfinite(fit.linear):
                x = np.linspace(0, max(float(np.nanmax(points.means)), 1.0), 200)
                axes.plot(x, np.polyval([fit.quadratic, fit.linear, fit.intercept], x), "-", color="tab:red",
                          label=f"gain {fit.gain:.3f} e-/ADU")
            if math.isfinite(fit.bloom_adu):
                axes.axvline(fit.bloom_adu, ls="--", color="tab:orange", label="bloom" + (" (>)" if fit.bloom_lower_limit else ""))
            axes.set_title(f"CCD{ccd} {q}", fontsize=9)
            axes.set_xlabel("mean (ADU)", fontsize=8)
            axes.set_ylabel("variance (ADU^2)", fontsize=8)
            axes.legend(fontsize=7)
        figure.suptitle(f"{test}: photon transfer curves, CCD{ccd}")
        return figure
    return draw


FAMILY = Family(
    name="ptc",
    noise_regions=("prescan",),  # the overscan after an exposed image holds trailed charge, not noise
    summary="PTC01/PTC02: photon transfer curves, gain, full well per quadrant.",
    subtasks=("init", "check", "prep", "extract_PTC", "meta", "report"),
    task=PTCTask,
    limits=PTCLimits,
    values=(
        ValueSpec("gain_e_per_adu", "e-/ADU", 4, "gain: 1 / linear term of the PTC fit", key=True),
        ValueSpec("gain_err_e_per_adu", "e-/ADU", 4, "statistical error of the gain (fit covariance)"),
        ValueSpec("quad_term_per_adu", "1/ADU", None, "quadratic term p0 of var = p0 mu^2 + p1 mu + p2"),
        ValueSpec("ptc_intercept_adu2", "ADU^2", 3, "intercept p2 of the fit: read noise squared of a frame"),
        ValueSpec("bloom_adu", "ADU", 1, "mean where the variance falls off the fit (blooming, full well)", key=True),
        ValueSpec("bloom_e", "e-", 0, "bloom_adu x gain"),
        ValueSpec("bloom_lower_limit", "", None, "true: no blooming seen, bloom_adu is the highest mean reached"),
        ValueSpec("fit_quality", "", None, "OK, or FEWPOINTS / BADERRORS / POORFIT / EXCEPTION"),
        ValueSpec("fit_chi2_reduced", "", 3, "reduced chi2 of the weighted fit"),
        ValueSpec("ptc_points_fitted", "", None, "tile points the fit used"),
        ValueSpec("pairs_used", "", None, "flat pairs analysed (all CCDs)", scope="test"),
        ValueSpec("pairs_rejected", "", None, "pairs left out for unequal fluences, with both fluences and the limit",
                  scope="test"),
        ValueSpec("ptc_fit_range_adu", "ADU", None, "means the fit uses", scope="test"),
        ValueSpec("ptc_method", "", None, "how the PTC was measured", scope="test"),
    ),
    checks=(check_column_fluences,),
    saturation_expected=True,
    per_quadrant=QuadrantConsumers(plan=plan_pairs, start=PairTiles, subtasks=("extract_PTC",)),
)
TASK = PTCTask
