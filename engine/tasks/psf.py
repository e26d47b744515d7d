"""PSF01/PSF02: spot shapes versus fluence and wavelength, and cross-talk between channels.

Sub-tasks:

- `lock` (spots.py): every frame read once: generic statistics, the spots detected, locked on the
  chamber's pattern and measured (photometry, centroid, pixel-integrated Gaussian fit: FWHM x and
  y, second moments: ellipticity); table of every spot on every frame.
- `check`: the generic checks, then background (BGD_OOL), spot FWHM (FOCUS_OOL), peak and flux
  per fluence column (FLUX_OOL).
- `prep`: the spot measurements the analyses use (fitted, no saturated pixel), per quadrant and
  fluence column.
- `basic`: per quadrant and column the medians of FWHM x, FWHM y and ellipticity, and of the
  peak; the headline values are those of the faintest column (free of brighter-fatter); a table
  per spot and column.
- `meta`: FWHM against peak per quadrant (straight line: the brighter-fatter slope), figure.
- `xtalk_sex`: (S, V) pixel pairs of every source/victim channel pair from the exposures of the
  bright columns (psf_lib.py), made in the lock's read: there the three CCD frames of a bright
  exposure are read together by one unit (psf_lib.xtalk_lock_unit) doing their lock work and the
  samples; an exposure whose frames are not those the lock read together (a frame unreadable,
  the lock switched off) has them read again (xtalk_exposure_unit), the log says why.
- `xtalk_build`: the 12 x 12 coupling matrix with signs and errors.
- `xtalk_meta`: the matrix as FITS and CSV products, and its figure.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..formats.geometry import QUADRANTS, CCDGeometry
from .check import RawStats
from .context import TaskContext
from .dataset import obsid_ranges
from .family import Family, ValueSpec
from .figures import markdown_table, new_figure
from .outputs import CsvTable, Outputs, Plot, Section, StagedFile, SubTaskResult
from .psf_lib import (
    CHANNELS,
    XTALK_SOURCE_MIN_ADU,
    Coupling,
    ExposureXtalk,
    XtalkSamples,
    bright_columns,
    channel_name,
    coupling_matrix,
    linear_slope,
    xtalk_exposure_unit,
    xtalk_lock_unit,
)
from .spots import (
    LOCK_VALUES,
    PointSourceLimits,
    PointSourceTask,
    ReadTogether,
    SpotLock,
    SpotShape,
    check_point_sources,
    lock_outputs,
    lock_spots,
    to_canonical_xy,
)

__all__ = ["FAMILY", "TASK", "PointSourceLimits"]

Key = tuple[int, str]  # (ccd, quadrant)


@dataclass
class PSFSpots(SubTaskResult):
    """`prep`: usable spot measurements per (ccd, quadrant) and column, with their frame's exposure time."""

    by_column: dict[Key, dict[int, list[SpotShape]]]
    exptimes: dict[int, float]  # column -> exposure time (s)
    left_out: int


@dataclass(frozen=True)
class ColumnShape:
    exptime_s: float
    spots: int
    peak_adu: float
    flux_adu: float
    fwhm_x_px: float
    fwhm_y_px: float
    ellipticity: float


@dataclass
class PSFShapes(SubTaskResult):
    """`basic`: per quadrant and column, the medians over its spots."""

    columns: dict[Key, dict[int, ColumnShape]]


@dataclass
class XtalkExtraction(SubTaskResult):
    samples: list[XtalkSamples]
    obsids: list[int]
    read_again: list[int]  # exposures whose frames were read again (not from the lock's read)


@dataclass
class XtalkMatrix(SubTaskResult):
    couplings: dict[tuple[int, int], Coupling]
    obsids: list[int]


class PSFTask(PointSourceTask):
    def prep(self, ctx: TaskContext, lock: SpotLock) -> PSFSpots:
        by_column: dict[Key, dict[int, list[SpotShape]]] = defaultdict(lambda: defaultdict(list))
        left_out = 0
        for info, q, spot in lock.spots():
            if info.column < 0:
                continue
            if spot.fit_ok and not spot.saturated:
                by_column[(info.ccd, q)][info.column].append(spot)
            else:
                left_out += 1
        if left_out:
            ctx.log.info(f"{left_out} spot measurements left out of the shapes: saturated pixels or no fit")
        exptimes = {column: lock.column_exptime(column) for column in lock.columns()}
        return PSFSpots({k: dict(v) for k, v in by_column.items()}, exptimes, left_out)

    def basic(self, ctx: TaskContext, spots: PSFSpots) -> PSFShapes:
        out = Outputs()
        columns: dict[Key, dict[int, ColumnShape]] = {}
        rows = []
        for key, per_column in sorted(spots.by_column.items()):
            columns[key] = {}
            for column, measured in sorted(per_column.items()):
                columns[key][column] = ColumnShape(
                    spots.exptimes.get(column, math.nan), len(measured),
                    _median(s.peak_adu for s in measured), _median(s.flux_adu for s in measured),
                    _median(s.fwhm_x_px for s in measured), _median(s.fwhm_y_px for s in measured),
                    _median(s.ellipticity for s in measured))
                for name in sorted({s.name for s in measured}):
                    mine = [s for s in measured if s.name == name]
                    rows.append([f"CCD{key[0]}", key[1], name, column + 1, f"{spots.exptimes.get(column, math.nan):g}",
                                 len(mine), f"{_median(s.x for s in mine):.3f}", f"{_median(s.y for s in mine):.3f}",
                                 f"{_median(s.peak_adu for s in mine):.1f}", f"{_median(s.flux_adu for s in mine):.1f}",
                                 f"{_median(s.fit_flux_adu for s in mine):.1f}", f"{_median(s.fwhm_x_px for s in mine):.4f}",
                                 f"{_median(s.fwhm_y_px for s in mine):.4f}", f"{_median(s.e1 for s in mine):.4f}",
                                 f"{_median(s.e2 for s in mine):.4f}", f"{_median(s.ellipticity for s in mine):.4f}"])
            ordered = [columns[key][c] for c in sorted(columns[key])]
            if not ordered:
                continue
            faintest = min(ordered, key=lambda c: c.peak_adu)
            ccd, q = key
            out.value("fwhm_x_px", faintest.fwhm_x_px, ccd, q)
            out.value("fwhm_y_px", faintest.fwhm_y_px, ccd, q)
            out.value("ellipticity", faintest.ellipticity, ccd, q)
            out.value("fwhm_x_px_by_column", [round(c.fwhm_x_px, 4) for c in ordered], ccd, q)
            out.value("fwhm_y_px_by_column", [round(c.fwhm_y_px, 4) for c in ordered], ccd, q)
            out.value("ellipticity_by_column", [round(c.ellipticity, 4) for c in ordered], ccd, q)
            out.value("peak_adu_by_column", [round(c.peak_adu, 1) for c in ordered], ccd, q)
        out.value("column_exptimes_s", [round(spots.exptimes[c], 4) for c in sorted(spots.exptimes)])
        name = f"{ctx.test.name}_psf_spots.csv"
        out.tables.append(CsvTable(name, ("ccd", "quadrant", "spot", "column", "exptime_s", "frames", "x", "y",
                                          "peak_adu", "flux_adu", "fit_flux_adu", "fwhm_x_px", "fwhm_y_px", "e1",
                                          "e2", "ellipticity"), rows))
        table = [[f"CCD{c}", q, *(f"{s.fwhm_x_px:.3f}/{s.fwhm_y_px:.3f}/{s.ellipticity:.3f}"
                                  for _, s in sorted(columns[(c, q)].items()))] for c, q in sorted(columns)]
        header = ["CCD", "Q", *(f"col {c + 1} ({spots.exptimes[c]:g} s)" for c in sorted(spots.exptimes))]
        out.sections.append(Section("Spot shapes against fluence", "\n\n".join([
            "Per quadrant and fluence column, medians over its spots and frames of FWHM x / FWHM y (px, "
            "pixel-integrated Gaussian fit) / ellipticity (second moments). The values `fwhm_x_px`, `fwhm_y_px` "
            "and `ellipticity` are those of the faintest column (least brighter-fatter). Medians per spot and "
            f"column: `products/{name}`.", markdown_table(header, table)])))
        return PSFShapes(columns, outputs=out)

    def meta(self, ctx: TaskContext, shapes: PSFShapes, spots: PSFSpots) -> SubTaskResult:
        out = Outputs()
        rows = []
        for (ccd, q), per_column in sorted(spots.by_column.items()):
            measured = [s for column in per_column.values() for s in column]
            peaks = [s.peak_adu / 1e4 for s in measured]
            slope_x = linear_slope(peaks, [s.fwhm_x_px for s in measured])
            slope_y = linear_slope(peaks, [s.fwhm_y_px for s in measured])
            out.value("fwhm_x_slope_px_per_10kadu", slope_x, ccd, q)
            out.value("fwhm_y_slope_px_per_10kadu", slope_y, ccd, q)
            rows.append([f"CCD{ccd}", q, f"{slope_x:+.4f}", f"{slope_y:+.4f}"])
        test = ctx.test.name
        columns = shapes.columns
        out.plots.append(Plot("fwhm_vs_peak", lambda: shapes_figure(test, columns)))
        out.sections.append(Section("Brighter-fatter", "Slope of each spot's FWHM against its peak (straight line "
                                    "over every spot of every column; px per 10 kADU): the spots broaden as they "
                                    "fill.\n\n" + markdown_table(["CCD", "Q", "FWHM x slope", "FWHM y slope"], rows)))
        return SubTaskResult(outputs=out)

    def lock(self, ctx: TaskContext) -> SpotLock:
        """The lock's pass reads the bright exposures' frames together (psf_lib.xtalk_lock_unit):
        their cross-talk samples come from that read."""
        result = lock_spots(ctx, ReadTogether(xtalk_lock_unit, bright_columns))
        result.outputs = lock_outputs(result, ctx.test.name)
        return result

    def xtalk_sex(self, ctx: TaskContext, lock: SpotLock) -> XtalkExtraction:
        geometry = next(iter(lock.frames.values())).stats.geometry if lock.frames else None
        if geometry is None:
            raise RuntimeError("no frame measured: no cross-talk")
        bright = bright_columns(lock)
        calls, obsids, made = [], [], []
        for exposure in ctx.dataset.exposures:
            if exposure.column not in bright:
                continue
            keys = [(exposure.obsid, ccd) for ccd in ctx.ccds if (exposure.obsid, ccd) in lock.frames]
            if not keys:
                continue
            paths = {ccd: lock.info[(obsid, ccd)].path for obsid, ccd in keys}
            levels, own = {}, {}
            for obsid, ccd in keys:
                for q, measured in lock.frames[(obsid, ccd)].quadrants.items():
                    levels[(ccd, q)] = measured.level_adu
                    own[(ccd, q)] = [to_canonical_xy(geometry, q, s.x, s.y) for s in measured.spots]
            calls.append((paths, levels, own, geometry))
            obsids.append(exposure.obsid)
            made.append(lock.read_together.get(exposure.obsid))
        samples = [m.samples if isinstance(m, ExposureXtalk) and m.matches(call[0], geometry) else None
                   for m, call in zip(made, calls)]
        again = [i for i, found in enumerate(samples) if found is None]
        if again:
            why = sorted({_not_from_lock(made[i], calls[i][0], geometry) for i in again})
            ctx.log.info(f"cross-talk pixels of {len(calls) - len(again)} exposures from the lock's read; "
                         f"{len(again)} read again ({'; '.join(why)})")
            for i, computed in zip(again, ctx.map_units(xtalk_exposure_unit, [calls[i] for i in again])):
                samples[i] = computed
        else:
            ctx.log.info(f"cross-talk pixels of the {len(calls)} exposures from the lock's read")
        ctx.log.info(f"cross-talk pixels from {len(samples)} exposures of columns {[c + 1 for c in bright]}")
        return XtalkExtraction(samples, obsids, [obsids[i] for i in again])

    def xtalk_build(self, ctx: TaskContext, extraction: XtalkExtraction) -> XtalkMatrix:
        couplings = coupling_matrix(extraction.samples)
        out = Outputs()
        for s, (ccd, q) in enumerate(CHANNELS):
            mine = [c for (ss, _), c in couplings.items() if ss == s and math.isfinite(c.coefficient)]
            if mine:
                strongest = max(mine, key=lambda c: abs(c.coefficient))
                out.value("xtalk_max_coefficient", strongest.coefficient, ccd, q)
        out.value("xtalk_channels", [channel_name(i) for i in range(len(CHANNELS))])
        out.value("xtalk_exposures", len(extraction.obsids))
        return XtalkMatrix(couplings, extraction.obsids, outputs=out)

    def xtalk_meta(self, ctx: TaskContext, matrix: XtalkMatrix) -> SubTaskResult:
        n = len(CHANNELS)
        values = np.full((n, n), np.nan)
        errors = np.full((n, n), np.nan)
        pixels = np.zeros((n, n), np.int32)
        rows = []
        for (s, v), c in sorted(matrix.couplings.items()):
            values[s, v], errors[s, v], pixels[s, v] = c.coefficient, c.error, c.pixels
            rows.append([f"CCD{CHANNELS[s][0]}", CHANNELS[s][1], f"CCD{CHANNELS[v][0]}", CHANNELS[v][1],
                         f"{c.coefficient:.4e}", f"{c.error:.2e}", f"{c.significance:.1f}", c.pixels])
        base = f"{ctx.test.name}_crosstalk"
        staged = ctx.staging_path(f"{base}.fits")
        crosstalk_fits(ctx, staged, values, errors, pixels, matrix.obsids)
        out = Outputs(files=[StagedFile(f"{base}.fits", staged)])
        out.tables.append(CsvTable(f"{base}.csv", ("source_ccd", "source_quadrant", "victim_ccd", "victim_quadrant",
                                                   "coefficient", "error", "significance", "pixels"), rows))
        test = ctx.test.name
        out.plots.append(Plot("crosstalk", lambda: crosstalk_figure(test, values, errors)))
        strongest = sorted(matrix.couplings.items(), key=lambda item: -abs(item[1].coefficient)
                           if math.isfinite(item[1].coefficient) else 0)[:8]
        table = [[channel_name(s), channel_name(v), f"{c.coefficient:+.3e}", f"{c.error:.1e}"] for (s, v), c in strongest]
        out.sections.append(Section("Cross-talk", "\n\n".join([
            f"Coupling coefficients between the 12 channels (victim level / source level at the same canonical pixel, "
            f"from source pixels more than {XTALK_SOURCE_MIN_ADU:g} ADU above their background in "
            f"{len(matrix.obsids)} exposures, OBSIDs {obsid_ranges(matrix.obsids)}); negative: the victim dips. "
            f"`products/{base}.fits` (XTALK, EXTALK, NPIX: row = source, column = victim, in the order "
            f"{', '.join(channel_name(i) for i in range(n))}) and `products/{base}.csv`. The strongest:",
            markdown_table(["source", "victim", "coefficient", "error"], table)])))
        return SubTaskResult(outputs=out)


def _not_from_lock(made: ExposureXtalk | None, paths: dict[int, Path], geometry: CCDGeometry) -> str:
    """Why an exposure's cross-talk samples are not taken from the lock's read."""
    if made is None:
        return "the lock's read did not read its frames together (lock off, or its bright columns not these)"
    if made.samples is None:
        return f"the lock's read made no samples: {made.error}"
    if made.geometry != geometry:
        return "the lock's read saw another geometry"
    return f"the lock's read had frames of CCDs {sorted(made.paths)}, now {sorted(paths)}"


def _median(values: Any) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.median(finite)) if finite else math.nan


def crosstalk_fits(ctx: TaskContext, path, values: np.ndarray, errors: np.ndarray, pixels: np.ndarray,
                   obsids: list[int]) -> None:
    from astropy.io import fits

    header = fits.Header()
    header["ORIGIN"] = ("vison", "CCD273 ground-calibration pipeline")
    header["VISON"] = (__version__, "vison version")
    header["PRODUCT"] = ("CROSSTALK", "kind of calibration product")
    header["DATE"] = (datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"), "UTC creation time")
    header["TEST"] = (ctx.test.name, "test the frames belong to")
    header["SESSION"] = (ctx.session, "campaign session")
    header["BLOCK"] = (ctx.campaign.info.block, "detector block")
    header["CHAMBER"] = (ctx.chamber.name, "test chamber")
    header["OBSID0"] = (min(obsids) if obsids else -1, "first OBSID used")
    header["OBSID1"] = (max(obsids) if obsids else -1, "last OBSID used")
    header["OBSIDS"] = (obsid_ranges(obsids, sep=","), "OBSIDs used")
    header["NCOMB"] = (len(obsids), "exposures used")
    header["METHOD"] = ("victim vs source level, clipped line fit", "coefficient = slope")
    header["SRCMIN"] = (XTALK_SOURCE_MIN_ADU, "source pixels used: ADU above background")
    for index in range(len(CHANNELS)):
        header[f"CHAN{index + 1:02d}"] = (channel_name(index), "row/column order: row = source, column = victim")
    hdus = [fits.PrimaryHDU(header=header)]
    for name, data, unit in (("XTALK", values, "victim/source"), ("EXTALK", errors, "victim/source"),
                             ("NPIX", pixels, "pixels")):
        hdu = fits.ImageHDU(data=data, name=name)
        hdu.header["BUNIT"] = unit
        hdus.append(hdu)
    fits.HDUList(hdus).writeto(path, overwrite=True)


def shapes_figure(test: str, columns: dict[Key, dict[int, ColumnShape]]):
    if not columns:
        return None
    ccds = sorted({ccd for ccd, _ in columns})
    figure = new_figure(4.0 * len(ccds), 3.6)
    for index, ccd in enumerate(ccds, start=1):
        axes = figure.add_subplot(1, len(ccds), index)
        for q in QUADRANTS:
            if (ccd, q) not in columns:
                continue
            ordered = [columns[(ccd, q)][c] for c in sorted(columns[(ccd, q)])]
            peaks = [c.peak_adu for c in ordered]
            line = axes.plot(peaks, [c.fwhm_x_px for c in ordered], "o-", markersize=3, label=f"{q} x")[0]
            axes.plot(peaks, [c.fwhm_y_px for c in ordered], "s--", markersize=3, color=line.get_color(), label=f"{q} y")
        axes.set_xlabel("spot peak (ADU)")
        axes.set_title(f"CCD{ccd}", fontsize=9)
        if index == 1:
            axes.set_ylabel("FWHM (px)")
        axes.legend(fontsize=6, ncol=2)
    figure.suptitle(f"{test}: spot FWHM against peak, medians per column", fontsize=9)
    return figure


def crosstalk_figure(test: str, values: np.ndarray, errors: np.ndarray):
    from matplotlib.colors import TwoSlopeNorm

    figure = new_figure(7.5, 6.5)
    axes = figure.add_subplot(1, 1, 1)
    shown = np.sign(values) * np.log10(np.clip(np.abs(values), 1e-7, None) / 1e-7)
    limit = float(np.nanmax(np.abs(shown))) if np.isfinite(shown).any() else 1.0
    image = axes.imshow(shown, cmap="RdBu_r", norm=TwoSlopeNorm(0, -max(limit, 1e-3), max(limit, 1e-3)))
    names = [channel_name(i) for i in range(len(CHANNELS))]
    axes.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    axes.set_yticks(range(len(names)), names, fontsize=7)
    axes.set_xlabel("victim")
    axes.set_ylabel("source")
    for (s, v), value in np.ndenumerate(values):
        if math.isfinite(value) and abs(value) > 3 * (errors[s, v] if math.isfinite(errors[s, v]) else 0):
            axes.text(v, s, f"{value * 1e4:.1f}", ha="center", va="center", fontsize=5)
    bar = figure.colorbar(image, ax=axes)
    bar.set_label("sign x log10(|coefficient| / 1e-7)")
    axes.set_title(f"{test}: cross-talk (numbers: coefficient x 1e4 where > 3 sigma)", fontsize=9)
    return figure


def check_psf(ctx: TaskContext, stats: RawStats) -> None:
    """Background, spot FWHM, peaks and fluxes per column."""
    check_point_sources(ctx, stats)


FAMILY = Family(
    name="psf",
    summary="PSF01/PSF02: spot shapes versus fluence and wavelength, and cross-talk between channels",
    subtasks=("init", "lock", "check", "prep", "basic", "meta", "xtalk_sex", "xtalk_build", "xtalk_meta", "report"),
    task=PSFTask,
    limits=PointSourceLimits,
    values=(
        *LOCK_VALUES,
        ValueSpec("fwhm_x_px", "px", 3, "spot FWHM along columns (x), median over the faintest column's spots",
                  key=True),
        ValueSpec("fwhm_y_px", "px", 3, "spot FWHM along rows (y), median over the faintest column's spots", key=True),
        ValueSpec("ellipticity", "", 4, "spot ellipticity from second moments, faintest column's median"),
        ValueSpec("fwhm_x_px_by_column", "px", None, "median FWHM x per fluence column"),
        ValueSpec("fwhm_y_px_by_column", "px", None, "median FWHM y per fluence column"),
        ValueSpec("ellipticity_by_column", "", None, "median ellipticity per fluence column"),
        ValueSpec("peak_adu_by_column", "ADU", None, "median spot peak per fluence column"),
        ValueSpec("fwhm_x_slope_px_per_10kadu", "px/10kADU", 4, "slope of FWHM x against the spot peak"),
        ValueSpec("fwhm_y_slope_px_per_10kadu", "px/10kADU", 4, "slope of FWHM y against the spot peak"),
        ValueSpec("xtalk_max_coefficient", "", 7, "largest coupling (signed) from this channel into another"),
        ValueSpec("column_exptimes_s", "s", None, "exposure time of each fluence column", scope="test"),
        ValueSpec("xtalk_channels", "", None, "channel order of the cross-talk matrix", scope="test"),
        ValueSpec("xtalk_exposures", "", None, "exposures the cross-talk was measured on", scope="test"),
    ),
    checks=(check_psf,),
    fits_products=True,
)
TASK = PSFTask
