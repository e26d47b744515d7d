"""NL01, NL02, NL02RD: non-linearity curves per quadrant.

Sub-tasks (after the generic `init` and `check`):

- `check` (family part): the stability frames' raw fluences (image minus prescan median) within
  `flat_fluence_tolerance` of their median (FLUENCE_OOL: the lamp moved). The frames at 100-110 %
  of full well saturate by design (no SATURATION flag).
- `prep` (offsets.py): per frame and quadrant the offset (clipped prescan mean).
- `extract`: made in the check's read of the frames (Family.per_quadrant: TilesConsumer, one
  per CCD and quadrant, fed each frame's quadrant as the check measures it; where that read did
  not see these frames with these offsets, one unit per (CCD, quadrant) reads them again:
  tile_unit, the same function of each frame, the same numbers, said in the log): the image area is cut
  into tiles (about 256 px a side, 2-8 a side) and each tile's 10 % trimmed mean (by rank) minus
  the offset is kept, with whether the tile holds an ADC-saturated pixel. Ranks, not a clip window
  in ADU: a window that moves with the fluence would keep a cold pixel at one fluence and drop it
  at the next, a step of (1 - response) / pixels in the tile's level that reads as
  non-linearity; cold pixels and cosmic rays stay in the trimmed tails at every fluence. A median
  would do too, but it is 1.5x noisier and drifts from the mean as shot noise gives way to PRNU.
- `basic`: background (the exposure-time-0 frames' tiles) subtracted; the stability frames
  (catalogue label STAB, else the most repeated exposure time) fitted against time (degree 2,
  3-sigma clipped) and the frames of their lamp divided by that trend (drift correction); then per
  quadrant one linear least-squares fit of every tile and frame between NL_FIT_RANGE_ADU and
  without saturated pixels:

      x = k_{tile,lamp} t + e_{tile,lamp} + d2 x^2 + d3 x^3 + d4 x^4,     x = F / 2^16

  Each tile and lamp has its own linear response (k t + e: the linear expectation, the intercept
  taking a shutter delay); the curve is shared. With two lamps (NL02) their scales are free and
  the shared curve stitches them: the overlap fluences tie them. NL(F) = F / Y - 1, with
  Y = F - 2^16 (d2 x^2 + d3 x^3 + d4 x^4) the linear expectation, in percent: a smooth curve
  per quadrant (the tangent at zero fluence is the linear reference). `max_nl_pct` is its extreme
  over the fitted fluences in size (vison's NL01 max |NL|; `nl_extreme_pct` keeps its sign),
  `fluence_at_max_nl_adu` where. The size, not the signed extreme: when the curve has a bump and
  a dip of similar size, the signed extreme jumps from one to the other on noise, the size does
  not (it moves no more than the curve does).
  Weights: each point's error is sqrt((a F)^2 + shot noise + read noise) with a the lamp's
  measured stability (at least SYSTEMATIC_FLOOR), so faint tiles do not pull the linear reference.
- `meta`: the curves (CSV, 200 points per quadrant, and the figure) and the table of the fitted
  coefficients (a user linearises with Y = F - 2^16 (d2 x^2 + d3 x^3 + d4 x^4)).

Differences from vison: NL01's NL fit called a function commented out at HEAD (it crashed); its
linear expectation came from the exposure time reaching half of 2^16, where the curve is not
zero, so the curve's level depended on where the 50 % point fell. NL02 fitted each filter on its
overlap exposures only; here every fluence of both lamps enters one fit. vison corrected the
exposure times with a shutter calibration file; the chamber profiles here have none, so each
lamp's intercept absorbs a constant shutter delay instead.
"""

from __future__ import annotations

import math
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..formats.fits import read_frame
from ..formats.geometry import QUADRANTS, CCDGeometry
from .check import RawStats, quadrant_frames
from .context import TaskContext
from .family import Family, QuadrantConsumers, ValueSpec
from .figures import markdown_table, new_figure
from .flat_lib import FlatLimitsBase, FrameInfo, frame_infos
from .measures import FrameMeasures
from .offsets import OffsetSubtractingTask, PreparedData
from .outputs import CsvTable, Outputs, Plot, Section, SubTaskResult

SCALE_ADU = 65536.0
NL_FIT_RANGE_ADU = (250.0, SCALE_ADU - 1e4)  # vison's NL02 range: below, the offset dominates; above, the full well
TILE_PX = 256
CURVE_POINTS = 200
DRIFT_CLIP_SIGMA = 3.0
FIT_CLIP_SIGMA = 4.0
TRIM_FRACTION = 0.1  # of each tail of a tile's pixels: cold pixels and cosmic rays fall there by rank
TRIMMED_MEAN_VARIANCE = 1.2  # variance of a 10 % trimmed mean / that of the mean (Gaussian)
NOMINAL_GAIN = 3.3  # e-/ADU: only sets the shot-noise weights of the fit
NOMINAL_RON_ADU = 1.3
SYSTEMATIC_FLOOR = 1e-4  # relative error of a point from the lamp and the shutter, at least


@dataclass(frozen=True)
class NonLinearityLimits(FlatLimitsBase):
    pass


# ---------------------------------------------------------------------------------------------
# extract: tile levels, each frame read once
# ---------------------------------------------------------------------------------------------

def tile_edges(length: int) -> np.ndarray:
    count = int(min(8, max(2, round(length / TILE_PX))))
    return np.linspace(0, length, count + 1).astype(int)


def trimmed_mean(values: np.ndarray, fraction: float = TRIM_FRACTION) -> float:
    """Mean of the values between the `fraction` and 1 - `fraction` quantiles (by rank)."""
    flat = values.ravel()
    k = int(fraction * flat.size)
    if k == 0:
        return float(flat.mean())
    part = np.partition(flat, (k, flat.size - k - 1))
    return float(part[k: flat.size - k].mean(dtype=np.float64))


@dataclass(frozen=True)
class TileLevels:
    """One quadrant: per frame (rows) and tile (columns) the offset-subtracted trimmed mean (ADU)."""

    fluence: np.ndarray  # (frames, tiles)
    saturated: np.ndarray  # (frames, tiles) bool: an ADC-saturated pixel in the tile


def band_tiles(band: np.ndarray, c_edges: np.ndarray, offset: float, fluence: np.ndarray,
               saturated: np.ndarray) -> None:
    """One band of tile rows (canonical image rows x image columns): each tile's trimmed mean
    minus the offset and whether it holds an ADC-saturated pixel, into `fluence`, `saturated`."""
    from .compiled.nl_kernels import band_trimmed_means  # numba loaded only where units run

    band_trimmed_means(band, c_edges, TRIM_FRACTION, fluence, saturated)  # trimmed_mean of each tile, compiled
    fluence -= offset


def frame_tiles(canonical: np.ndarray, geometry: CCDGeometry, offset: float) -> tuple[np.ndarray, np.ndarray]:
    """(fluence, saturated) per tile of one quadrant (counts in canonical orientation) of one frame."""
    r_edges, c_edges = tile_edges(geometry.image_rows), tile_edges(geometry.image_cols)
    per_row = c_edges.size - 1
    fluence, saturated = np.full((r_edges.size - 1) * per_row, np.nan), np.zeros((r_edges.size - 1) * per_row, bool)
    image_cols = slice(geometry.prescan, geometry.prescan + geometry.image_cols)
    for a in range(r_edges.size - 1):
        band = canonical[int(r_edges[a]): int(r_edges[a + 1]), image_cols]
        band_tiles(band, c_edges, offset, fluence[a * per_row: (a + 1) * per_row], saturated[a * per_row: (a + 1) * per_row])
    return fluence, saturated


def tile_unit(unit: tuple[int, str], paths: list[Path], offsets: list[float], geometry: CCDGeometry) -> TileLevels:
    """Worker: tile levels of one quadrant of every frame, a tile row at a time."""
    _, quadrant = unit
    r_edges, c_edges = tile_edges(geometry.image_rows), tile_edges(geometry.image_cols)
    per_row = c_edges.size - 1
    fluence = np.full((len(paths), (r_edges.size - 1) * per_row), np.nan)
    saturated = np.zeros(fluence.shape, bool)
    q_rows, q_cols = geometry.quadrant_slices(quadrant)
    flip_rows, _ = geometry.flips(quadrant)
    height = geometry.quad_height
    image_cols = slice(geometry.prescan, geometry.prescan + geometry.image_cols)
    with ExitStack() as opened:
        frames = [opened.enter_context(read_frame(p)) for p in paths]
        for i, frame in enumerate(frames):
            for a in range(r_edges.size - 1):
                start, stop = int(r_edges[a]), int(r_edges[a + 1])
                rows = slice(height - stop, height - start) if flip_rows else slice(start, stop)
                band = geometry.to_canonical(frame.section(slice(q_rows.start + rows.start, q_rows.start + rows.stop),
                                                           q_cols), quadrant)[:, image_cols]
                band_tiles(band, c_edges, offsets[i], fluence[i, a * per_row: (a + 1) * per_row],
                           saturated[i, a * per_row: (a + 1) * per_row])
    return TileLevels(fluence, saturated)


# The same from the check's read (Family.per_quadrant, quadrant_pass.py): a frame's tiles depend
# on that frame and its offset only, so each is measured as the check reads it.

def plan_tiles(ctx: TaskContext, ccd: int, frames: list) -> bool | None:
    """QuadrantConsumers.plan: every frame is tiled alike; nothing to plan but whether there are frames."""
    return True if frames else None


class TilesConsumer:
    """Each frame's tile levels of one quadrant as the check reads it (a few numbers per frame)."""

    def __init__(self, quadrant: str, geometry: CCDGeometry, plan: bool):
        self.quadrant, self.geometry = quadrant, geometry
        self.found: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def add(self, index: int, counts: np.ndarray, stats) -> None:
        canonical = self.geometry.to_canonical(counts, self.quadrant)
        self.found[index] = frame_tiles(canonical, self.geometry, stats.prescan.clipped_mean)

    def result(self) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        return self.found


def start_tiles(quadrant: str, geometry: CCDGeometry, plan: bool) -> TilesConsumer:
    return TilesConsumer(quadrant, geometry, plan)


def read_tiles(readout, paths: list[Path], offsets: list[float]) -> tuple[TileLevels | None, str]:
    """The tile levels of these frames with these offsets from the check's read
    (quadrant_pass.QuadrantReadout holding TilesConsumer's result), else None and why not."""
    if readout is None or (readout.result is None and not readout.error):
        return None, "the check's read made no extraction (check switched off or its sub-tasks not run)"
    if readout.error:
        return None, f"its extraction failed ({readout.error})"
    index = dict(zip(readout.paths, readout.fed))
    if not readout.matches(paths, offsets) or any(index.get(Path(p)) not in readout.result for p in paths):
        return None, "the frames or their offsets differ from those the check's read saw"
    rows = [readout.result[index[Path(p)]] for p in paths]
    return TileLevels(np.array([f for f, _ in rows]), np.array([s for _, s in rows])), ""


# ---------------------------------------------------------------------------------------------
# basic: background, drift, the fit (pure)
# ---------------------------------------------------------------------------------------------

def stability_frames(infos: list[FrameInfo]) -> list[int]:
    """Indices of the stability frames: labelled STAB in the structure, else the lit frames at the
    most repeated exposure time (vison's rule)."""
    labelled = [i for i, f in enumerate(infos) if f.lit and f.label.upper().startswith("STAB")]
    if labelled:
        return labelled
    counts = Counter((f.exptime, f.wave) for f in infos if f.lit)
    if not counts:
        return []
    (exptime, wave), _ = counts.most_common(1)[0]
    return [i for i, f in enumerate(infos) if f.lit and f.exptime == exptime and f.wave == wave]


@dataclass(frozen=True)
class Drift:
    factors: np.ndarray  # per frame: divide its fluence by this (1 for frames of other lamps)
    stability_pct: float  # std of the stability frames' levels / mean
    drift_pct: float  # range of the fitted trend over the test
    lamp: int | None  # filter-wheel position of the stability frames


def lamp_drift(levels: np.ndarray, seconds: np.ndarray, stab: list[int], waves: np.ndarray) -> Drift:
    """Trend of the stability frames' levels with time (degree <= 2, clipped), normalised to 1."""
    ones = np.ones(levels.size)
    if len(stab) < 2:
        return Drift(ones, math.nan, math.nan, int(waves[stab[0]]) if stab else None)
    t, y = seconds[stab], levels[stab]
    degree = min(2, len(stab) - 2) if len(stab) > 2 else 0
    keep = np.isfinite(y)
    for _ in range(5):
        coefficients = np.polyfit(t[keep], y[keep], degree)
        residual = y - np.polyval(coefficients, t)
        sigma = 1.4826 * np.median(np.abs(residual[keep])) or np.std(residual[keep]) or 1e-12
        new_keep = np.isfinite(y) & (np.abs(residual) <= DRIFT_CLIP_SIGMA * sigma)
        if np.array_equal(new_keep, keep) or new_keep.sum() <= degree + 1:
            break
        keep = new_keep
    reference = float(np.mean(np.polyval(coefficients, t)))
    lamp = int(waves[stab[0]])
    trend = np.polyval(coefficients, seconds) / reference
    factors = np.where(waves == lamp, trend, 1.0)
    span = np.polyval(coefficients, np.linspace(seconds.min(), seconds.max(), 50)) / reference
    return Drift(factors, 100.0 * float(np.std(y[keep]) / np.mean(y[keep])), 100.0 * float(span.max() - span.min()),
                 lamp)


@dataclass(frozen=True)
class NonLinearityFit:
    coefficients: tuple[float, float, float]  # d2, d3, d4 (x = F / 2^16)
    fit_min_adu: float
    fit_max_adu: float
    points: int
    residual_rms_pct: float
    linear: np.ndarray  # (frames, tiles): each point's linear expectation Y (ADU), NaN where unused
    used: np.ndarray  # (frames, tiles) bool
    point_fluence: np.ndarray  # the fitted points: fluence (ADU)
    point_nl_pct: np.ndarray  # and their NL, 100 (F / Y - 1)

    def nl_pct(self, fluence_adu: np.ndarray | float) -> np.ndarray:
        """The smooth curve: 100 (F / Y - 1), Y = F - 2^16 (d2 x^2 + d3 x^3 + d4 x^4)."""
        x = np.asarray(fluence_adu, float) / SCALE_ADU
        d2, d3, d4 = self.coefficients
        return 100.0 * (1.0 / (1.0 - d2 * x - d3 * x * x - d4 * x ** 3) - 1.0)

    def curve(self, points: int = CURVE_POINTS) -> tuple[np.ndarray, np.ndarray]:
        fluence = np.linspace(self.fit_min_adu, self.fit_max_adu, points)
        return fluence, self.nl_pct(fluence)

    def extreme(self) -> tuple[float, float]:
        """(NL % of the largest size, signed; its fluence in ADU) over the fitted fluences."""
        fluence, nl = self.curve(2000)
        index = int(np.argmax(np.abs(nl)))
        return float(nl[index]), float(fluence[index])


def fit_nonlinearity(fluence: np.ndarray, exptime: np.ndarray, lamp: np.ndarray, usable: np.ndarray,
                     tile_pixels: int, relative_error: float = SYSTEMATIC_FLOOR,
                     fit_range: tuple[float, float] = NL_FIT_RANGE_ADU) -> NonLinearityFit | None:
    """One weighted linear least-squares fit of a quadrant (see the module docstring).

    fluence: (frames, tiles) ADU; exptime, lamp: per frame; usable: (frames, tiles) bool. A point's
    error: `relative_error` x F (lamp, shutter) with the shot and read noise of a trimmed mean of
    `tile_pixels` pixels in quadrature (nominal gain: it only weighs the points). Points beyond FIT_CLIP_SIGMA of the fit are dropped once
    (a cosmic-ray-struck tile, a frame whose lamp flickered)."""
    frames, tiles = fluence.shape
    low, high = fit_range
    used = usable & np.isfinite(fluence) & (fluence > low) & (fluence < high) & (exptime[:, None] > 0)
    lamps = sorted(set(int(v) for v in lamp[used.any(axis=1)]))
    if not lamps or used.sum() < 8:
        return None
    lamp_index = {value: j for j, value in enumerate(lamps)}
    for attempt in range(3):
        f_idx, t_idx = np.nonzero(used)
        x = fluence[f_idx, t_idx] / SCALE_ADU
        group = t_idx * len(lamps) + np.array([lamp_index[int(v)] for v in lamp[f_idx]])
        groups = tiles * len(lamps)
        design = np.zeros((x.size, 2 * groups + 3))
        design[np.arange(x.size), group] = exptime[f_idx]
        design[np.arange(x.size), groups + group] = 1.0
        design[:, -3], design[:, -2], design[:, -1] = x ** 2, x ** 3, x ** 4
        f_adu = np.maximum(x * SCALE_ADU, 0.0)
        sigma_adu = np.sqrt((relative_error * f_adu) ** 2 + TRIMMED_MEAN_VARIANCE *
                            (f_adu / NOMINAL_GAIN + NOMINAL_RON_ADU ** 2) / tile_pixels)
        weight = 1.0 / (sigma_adu / SCALE_ADU)
        present = np.flatnonzero(np.abs(design).sum(axis=0) > 0)
        solution, *_ = np.linalg.lstsq(design[:, present] * weight[:, None], x * weight, rcond=None)
        full = np.zeros(design.shape[1])
        full[present] = solution
        linear_x = design[:, : 2 * groups] @ full[: 2 * groups]
        d2, d3, d4 = full[-3:]
        curve_x = 1.0 / (1.0 - d2 * x - d3 * x * x - d4 * x ** 3) - 1.0
        residual = (x / linear_x - 1.0) - curve_x
        sigma = 1.4826 * np.median(np.abs(residual)) or 1e-12
        outliers = np.abs(residual) > FIT_CLIP_SIGMA * max(sigma, 1e-5)
        if not outliers.any() or attempt == 2:
            break
        used = used.copy()
        used[f_idx[outliers], t_idx[outliers]] = False
    linear = np.full(fluence.shape, np.nan)
    linear[f_idx, t_idx] = linear_x * SCALE_ADU
    values = fluence[used]
    return NonLinearityFit((float(d2), float(d3), float(d4)), float(values.min()), float(values.max()), int(used.sum()),
                           100.0 * float(np.sqrt(np.mean(residual ** 2))), linear, used,
                           x * SCALE_ADU, 100.0 * (x / linear_x - 1.0))


# ---------------------------------------------------------------------------------------------
# Checks on raw statistics
# ---------------------------------------------------------------------------------------------

def check_stability_frames(ctx: TaskContext, stats: RawStats) -> None:
    """The stability frames' raw fluences within `flat_fluence_tolerance` of their median."""
    infos = frame_infos(ctx)
    ordered = [infos[o] for o in sorted(infos)]
    stab = {ordered[i].obsid for i in stability_frames(ordered)}
    tolerance = float(ctx.limits.flat_fluence_tolerance)
    for ccd, q, frames in quadrant_frames(ctx, stats):
        values = [(obsid, s.image.median - s.prescan.median) for obsid, s in frames if obsid in stab]
        if len(values) < 2:
            continue
        median = float(np.median([v for _, v in values]))
        bad = [(o, v) for o, v in values if abs(v / median - 1) > tolerance]
        if bad:
            obsid, worst = max(bad, key=lambda item: abs(item[1] - median))
            ctx.flags.raise_flag("FLUENCE_OOL", (
                f"stability frame fluence {worst:.0f} ADU (OBSID {obsid}) {100 * (worst / median - 1):+.1f} % from "
                f"the stability frames' median {median:.0f} ADU; limit +-{100 * tolerance:g} % "
                f"({len(bad)} of {len(values)} frames out): the lamp was not stable"), ccd=ccd, quadrant=q)


# ---------------------------------------------------------------------------------------------
# The task
# ---------------------------------------------------------------------------------------------

@dataclass
class NonLinearityTiles(SubTaskResult):
    """`extract`: per CCD the frames (OBSIDs in order) and per quadrant their tile levels."""

    obsids: dict[int, list[int]]
    tiles: dict[tuple[int, str], TileLevels]
    tile_pixels: int  # pixels per tile (about)


@dataclass
class NonLinearityCurves(SubTaskResult):
    fits: dict[tuple[int, str], NonLinearityFit]
    drifts: dict[tuple[int, str], Drift]


@dataclass
class NonLinearityProducts(SubTaskResult):
    pass


class NonLinearityTask(OffsetSubtractingTask):
    def extract(self, ctx: TaskContext, prepared: PreparedData) -> NonLinearityTiles:
        readouts = ctx.need(FrameMeasures).readouts
        tiles, units, calls, why_again = {}, [], [], {}
        for ccd in ctx.ccds:
            if not prepared.frames[ccd]:
                continue
            paths = [f.path for f in prepared.frames[ccd]]
            for q in QUADRANTS:
                offsets = [f.offsets[q] for f in prepared.frames[ccd]]
                tiles[(ccd, q)], why = read_tiles(readouts.get((ccd, q)), paths, offsets)
                if tiles[(ccd, q)] is None:
                    why_again.setdefault(why, []).append(f"CCD{ccd}{q}")
                    units.append((ccd, q))
                    calls.append(((ccd, q), paths, offsets, prepared.geometry))
        tiles.update(zip(units, ctx.map_units(tile_unit, calls)))
        if tiles and not units:
            ctx.log.info("tile levels of every quadrant from the check's read")
        for why, quadrants in why_again.items():
            ctx.log.warning(f"extract: {', '.join(quadrants)}: frames read again for the tile levels: {why}")
        obsids = {ccd: [f.obsid for f in prepared.frames[ccd]] for ccd in ctx.ccds}
        geometry = prepared.geometry
        pixels = (geometry.image_rows * geometry.image_cols) // ((tile_edges(geometry.image_rows).size - 1)
                                                                 * (tile_edges(geometry.image_cols).size - 1))
        return NonLinearityTiles(obsids, tiles, pixels)

    def basic(self, ctx: TaskContext, tiles: NonLinearityTiles) -> NonLinearityCurves:
        infos = frame_infos(ctx)
        out = Outputs()
        fits_: dict[tuple[int, str], NonLinearityFit] = {}
        drifts: dict[tuple[int, str], Drift] = {}
        point_rows = []
        for (ccd, q), levels in sorted(tiles.tiles.items()):
            frames = [infos[o] for o in tiles.obsids[ccd]]
            lit = np.array([f.lit for f in frames])
            exptime = np.array([f.exptime for f in frames])
            waves = np.array([f.wave for f in frames])
            seconds = np.array([f.seconds for f in frames])
            fluence = levels.fluence.copy()
            background = ~lit & (exptime == 0)
            if background.any():
                fluence -= np.nanmean(fluence[background], axis=0)
            stab = stability_frames(frames)
            drift = lamp_drift(np.nanmean(fluence, axis=1), seconds, stab, waves)
            fluence /= drift.factors[:, None]
            drifts[(ccd, q)] = drift
            stability = drift.stability_pct / 100 if math.isfinite(drift.stability_pct) else 0.0
            result = fit_nonlinearity(fluence, exptime, waves, lit[:, None] & ~levels.saturated,
                                      tiles.tile_pixels, max(SYSTEMATIC_FLOOR, stability))
            out.value("lamp_stability_pct", drift.stability_pct, ccd, q)
            out.value("lamp_drift_pct", drift.drift_pct, ccd, q)
            if result is None:
                ctx.log.warning(f"CCD{ccd} {q}: too few unsaturated lit tiles in {NL_FIT_RANGE_ADU} ADU to fit")
                out.value("max_nl_pct", math.nan, ccd, q)
                continue
            fits_[(ccd, q)] = result
            extreme, where = result.extreme()
            out.value("max_nl_pct", abs(extreme), ccd, q)
            out.value("nl_extreme_pct", extreme, ccd, q)
            out.value("fluence_at_max_nl_adu", where, ccd, q)
            out.value("nl_fit_min_adu", result.fit_min_adu, ccd, q)
            out.value("nl_fit_max_adu", result.fit_max_adu, ccd, q)
            out.value("nl_residual_rms_pct", result.residual_rms_pct, ccd, q)
            out.value("nl_points", result.points, ccd, q)
            for i, f in enumerate(frames):
                for t in range(fluence.shape[1]):
                    if not f.lit or not np.isfinite(fluence[i, t]):
                        continue
                    linear = result.linear[i, t]
                    point_rows.append((f"CCD{ccd}", q, f.obsid, t, f.nm, f"{f.exptime:g}", f"{fluence[i, t]:.2f}",
                                       f"{linear:.2f}" if np.isfinite(linear) else "",
                                       f"{100 * (fluence[i, t] / linear - 1):.4f}" if np.isfinite(linear) else "",
                                       int(result.used[i, t])))
        lamps = Counter((f.nm, f.wave) for f in infos.values() if f.lit)
        out.value("lamps", [f"{nm} nm (F{wave}): {count} frames" for (nm, wave), count in sorted(lamps.items())])
        out.value("nl_method", "tile trimmed means, background and lamp drift removed; one weighted fit per quadrant "
                               "x = k t + e (per tile and lamp) + d2 x^2 + d3 x^3 + d4 x^4, x = F/65536; "
                               "NL = F/Y - 1 with Y = k t + e")
        name = f"{ctx.test.name}_NL_points.csv"
        out.tables.append(CsvTable(name, ("ccd", "quadrant", "obsid", "tile", "wavelength_nm", "exptime_s",
                                          "fluence_adu", "linear_adu", "nl_pct", "used"), point_rows))
        return NonLinearityCurves(fits_, drifts, outputs=out)

    def meta(self, ctx: TaskContext, curves: NonLinearityCurves) -> NonLinearityProducts:
        out = Outputs()
        curve_rows, table_rows, report_rows = [], [], []
        for (ccd, q), result in sorted(curves.fits.items()):
            fluence, nl = result.curve()
            curve_rows += [(f"CCD{ccd}", q, f"{f:.1f}", f"{v:.5f}") for f, v in zip(fluence, nl)]
            extreme, where = result.extreme()
            d2, d3, d4 = result.coefficients
            drift = curves.drifts[(ccd, q)]
            table_rows.append((f"CCD{ccd}", q, f"{abs(extreme):.4f}", f"{where:.0f}", f"{d2:.6e}", f"{d3:.6e}", f"{d4:.6e}",
                               f"{result.fit_min_adu:.0f}", f"{result.fit_max_adu:.0f}", result.points,
                               f"{result.residual_rms_pct:.4f}", f"{drift.stability_pct:.3f}"))
            report_rows.append([f"CCD{ccd}", q, f"{abs(extreme):.3f} ({extreme:+.3f})", f"{where:.0f}", f"{result.residual_rms_pct:.3f}",
                                f"{drift.stability_pct:.3f}", f"{drift.drift_pct:.3f}"])
        curves_name, table_name = f"{ctx.test.name}_NL_curves.csv", f"{ctx.test.name}_NL_table.csv"
        out.tables.append(CsvTable(curves_name, ("ccd", "quadrant", "fluence_adu", "nl_pct"), curve_rows))
        out.tables.append(CsvTable(table_name, ("ccd", "quadrant", "max_nl_pct", "fluence_at_max_nl_adu", "d2", "d3",
                                                "d4", "fit_min_adu", "fit_max_adu", "points", "residual_rms_pct",
                                                "lamp_stability_pct"), table_rows))
        test = ctx.test.name
        out.plots.append(Plot("nl_curves", lambda: nl_figure(test, curves.fits)))
        out.sections.append(Section("Non-linearity", "\n\n".join([
            "NL = F / Y - 1 (%), Y the linear expectation k t + e of each tile and lamp, fitted with the shared curve "
            f"over {NL_FIT_RANGE_ADU[0]:g}-{NL_FIT_RANGE_ADU[1]:g} ADU (tiles with a saturated pixel left out), after "
            "the background and the lamp drift (stability frames vs time) were removed. Linearise with "
            "Y = F - 65536 (d2 x^2 + d3 x^3 + d4 x^4), x = F / 65536 "
            f"(`products/{table_name}`); curves in `products/{curves_name}`.",
            markdown_table(["CCD", "Q", "max |NL| (%) (signed)", "at (ADU)", "residual rms (%)", "lamp std (%)",
                            "lamp drift (%)"], report_rows),
        ])))
        return NonLinearityProducts(outputs=out)


def nl_figure(test: str, fits_: dict[tuple[int, str], NonLinearityFit]):
    ccds = sorted({ccd for ccd, _ in fits_})
    if not ccds:
        return None
    figure = new_figure(9, 2.8 * len(ccds))
    for index, ccd in enumerate(ccds, start=1):
        axes = figure.add_subplot(len(ccds), 1, index)
        for q in QUADRANTS:
            result = fits_.get((ccd, q))
            if result is None:
                continue
            fluence, nl = result.curve()
            line, = axes.plot(fluence, nl, linewidth=1.2, label=q)
            axes.plot(result.point_fluence, result.point_nl_pct, ".", markersize=1.5, alpha=0.4,
                      color=line.get_color())
            axes.axhline(0, color="k", linewidth=0.5)
            extreme, where = result.extreme()
            axes.plot([where], [extreme], marker="x", color=line.get_color())
        axes.set_ylabel(f"CCD{ccd} NL (%)")
        axes.legend(fontsize=7, loc="lower left")
    axes.set_xlabel("fluence (ADU)")
    figure.suptitle(f"{test}: non-linearity per quadrant (x: extreme)", fontsize=10)
    return figure


FAMILY = Family(
    name="nl",
    noise_regions=("prescan",),  # the overscan after an exposed image holds trailed charge, not noise
    summary="NL01/NL02/NL02RD: non-linearity curves per quadrant.",
    subtasks=("init", "check", "prep", "extract", "basic", "meta", "report"),
    task=NonLinearityTask,
    limits=NonLinearityLimits,
    values=(
        ValueSpec("max_nl_pct", "%", 4, "largest |NL| of the non-linearity curve over the fitted fluences", key=True),
        ValueSpec("nl_extreme_pct", "%", 4, "the curve's NL there, signed"),
        ValueSpec("fluence_at_max_nl_adu", "ADU", 0, "fluence of that extreme", key=True),
        ValueSpec("nl_fit_min_adu", "ADU", 0, "lowest tile fluence in the fit"),
        ValueSpec("nl_fit_max_adu", "ADU", 0, "highest tile fluence in the fit"),
        ValueSpec("nl_residual_rms_pct", "%", 4, "rms of the points' NL about the curve"),
        ValueSpec("nl_points", "", None, "tile measurements in the fit"),
        ValueSpec("lamp_stability_pct", "%", 4, "std of the stability frames' levels / their mean"),
        ValueSpec("lamp_drift_pct", "%", 4, "range of the fitted lamp trend over the test (corrected)"),
        ValueSpec("lamps", "", None, "frames per lamp (wavelength, filter-wheel position)", scope="test"),
        ValueSpec("nl_method", "", None, "how the curves were measured", scope="test"),
    ),
    checks=(check_stability_frames,),
    saturation_expected=True,
    per_quadrant=QuadrantConsumers(plan=plan_tiles, start=start_tiles, subtasks=("extract",)),
)
TASK = NonLinearityTask
