"""FLAT01, FLAT02_<w>, FLAT_STB: illumination model, normalised flats, master flats and PRNU.

Sub-tasks (after the generic `init` and `check`):

- `check` (family part, flat_lib.py): per column the median raw fluence against
  min(exptime / tFWC_flat(λ), 1) x `full_well_adu` (FLUENCE_OOL), per quadrant the flux and the
  time to full well it implies against the chamber profile (FLUX_OOL), each with value and limit.
- `prep` (offsets.py): per frame and quadrant the offset (clipped prescan mean) and the frame's
  level (clipped image mean minus offset), from the raw measurements: no extra read.
- `do_master_flats`: one work unit per (CCD, quadrant), each frame read once, band by band. Per
  column (fluence) of the test: every frame is offset-subtracted and divided by its level, and the
  per-pixel median over the column's frames is taken (cosmic rays drop out); per frame, its
  binned illumination (means over `bin_px` boxes) is kept as it streams past. The smooth
  illumination model of the column is a cubic spline through the median of each box of the stack;
  each frame's own model is its level times that shape, and the frames' binned maps say how far
  each frame's illumination departs from it (`illumination_stability_pct`). The master flat is the
  stack divided by the model (FLAT), with its error (EFLAT: 1.2533 x per-pixel std / sqrt(n) /
  model) and the frames combined (NCOMB).
  PRNU per quadrant and column: 5-sigma clipped std of the master flat's image pixels (defects
  drop out), with the stack's own noise (median EFLAT) removed in quadrature, in percent.
- `meta`: per CCD the master flat of the wavelength, the inverse-variance weighted mean of the
  column flats: the `master_flat` calibration product (calproducts.py finds it by name).

Differences from vison, on purpose: vison fitted a model to each frame and wrote each normalised
frame to disk (170 files per CCD for FLAT01); a column's frames share one illumination pattern,
so the model is fitted once on their median (25x less noise in each box) and each frame only
contributes its level, while its binned map checks that the pattern did not move. The frames are
read once for all of it. vison's PRNU was a 3-sigma clipped std, which drops 0.3 % of a Gaussian
PRNU and biases it low by about 1.5 %; 5 sigma keeps the PRNU and still drops the defects.
"""

from __future__ import annotations

import math
import re
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

from ..formats.fits import read_frame
from ..formats.geometry import QUADRANTS, CCDGeometry
from .context import TaskContext
from .family import Family, ValueSpec
from .figures import markdown_table, new_figure
from .flat_lib import FLUENCE_VALUES, FlatLimitsBase, check_flat_fluence_and_flux, frame_infos
from .offsets import FrameOffsets, OffsetSubtractingTask, PreparedData
from .outputs import CsvTable, Outputs, Plot, Section, StagedFile, SubTaskResult
from .stacking import allocate_fits, band_rows_for, ccd_serial, provenance_header, quadrant_bands, sort_frames, NETWORK_MAX_FRAMES
from .stats import CLIP_SIGMA, clipped_stats

FLAT_EXTENSIONS = ("FLAT", "EFLAT", "NCOMB")
MEDIAN_ERROR_FACTOR = math.sqrt(math.pi / 2)  # error of a median / error of a mean (Gaussian)
FULL_SIZE_BIN_PX = 25  # vison's illumination boxes


@dataclass(frozen=True)
class FlatLimits(FlatLimitsBase):
    pass


# ---------------------------------------------------------------------------------------------
# Science (pure)
# ---------------------------------------------------------------------------------------------

def bin_size(geometry: CCDGeometry) -> int:
    """Illumination box size: vison's 25 px, smaller on small frames so there are >= 8 boxes a side."""
    return max(4, min(FULL_SIZE_BIN_PX, min(geometry.image_rows, geometry.image_cols) // 8))


def bin_edges(length: int, size: int) -> np.ndarray:
    count = max(2, length // size)
    return np.linspace(0, length, count + 1).astype(int)


def illumination_model(image: np.ndarray, size: int) -> np.ndarray:
    """A smooth model of a flat's illumination: bicubic spline through the medians of size x size
    boxes (defects, cosmic rays and the PRNU average out), evaluated at every pixel."""
    from scipy.interpolate import RectBivariateSpline

    rows, cols = image.shape
    r_edges, c_edges = bin_edges(rows, size), bin_edges(cols, size)
    medians = np.empty((r_edges.size - 1, c_edges.size - 1))
    for i in range(medians.shape[0]):
        block_rows = image[r_edges[i]: r_edges[i + 1]]
        for j in range(medians.shape[1]):
            medians[i, j] = np.median(block_rows[:, c_edges[j]: c_edges[j + 1]])
    r_centres = (r_edges[:-1] + r_edges[1:] - 1) / 2.0
    c_centres = (c_edges[:-1] + c_edges[1:] - 1) / 2.0
    kr, kc = min(3, medians.shape[0] - 1), min(3, medians.shape[1] - 1)
    spline = RectBivariateSpline(r_centres, c_centres, medians, kx=kr, ky=kc,
                                 bbox=[0, rows - 1, 0, cols - 1], s=0)
    return spline(np.arange(rows), np.arange(cols)).astype(np.float32)


def median_and_std(cube: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel median and std over the frame axis (axis 0) of a float32 cube (may reorder it)."""
    n = cube.shape[0]
    if n == 1:
        return cube[0].copy(), np.zeros_like(cube[0])
    std = cube.std(axis=0, ddof=1)
    if n > NETWORK_MAX_FRAMES:  # numpy's partition beats a full sort of long lanes
        return np.median(cube, axis=0).astype(np.float32), std
    sort_frames(cube)
    median = cube[n // 2].copy() if n % 2 else (cube[n // 2 - 1] + cube[n // 2]) * np.float32(0.5)
    return median, std


def prnu_percent(flat: np.ndarray, eflat: np.ndarray) -> tuple[float, float]:
    """(PRNU %, noise %) of a master flat: clipped std of its pixels with the stack's own noise
    (median of EFLAT) removed in quadrature."""
    stats = clipped_stats(flat, CLIP_SIGMA)
    noise = float(np.median(eflat)) if eflat.size else 0.0
    spread = stats.std / stats.mean if stats.mean else math.nan
    value = math.sqrt(max(spread ** 2 - noise ** 2, 0.0))
    return 100.0 * value, 100.0 * noise


# ---------------------------------------------------------------------------------------------
# Work unit: one CCD quadrant, every column, each frame read once
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FlatTarget:
    """A FITS file allocated for a master flat: path and data offsets of FLAT, EFLAT, NCOMB."""

    path: Path
    offsets: dict[str, int]


@dataclass(frozen=True)
class ColumnInput:
    label: str
    paths: list[Path]
    offsets: list[float]  # ADU, per frame
    levels: list[float]  # offset-subtracted clipped image mean, per frame (ADU)
    target: FlatTarget


@dataclass(frozen=True)
class ColumnFlat:
    """One column of one quadrant: what the report and result.json say."""

    label: str
    frames: int
    fluence_adu: float  # mean level of the frames
    prnu_pct: float
    noise_pct: float  # median EFLAT (%)
    illumination_rms_pct: float  # rms of the model about its mean
    illumination_stability_pct: float  # worst frame: rms of its binned map / the column's, minus 1


def flat_unit(unit: tuple[int, str], columns: list[ColumnInput], geometry: CCDGeometry,
              combined: FlatTarget | None) -> list[ColumnFlat]:
    """Worker: master flats of every column of one quadrant, written into their FITS files; the
    inverse-variance weighted combination into `combined`."""
    _, quadrant = unit
    size = bin_size(geometry)
    image_cols = slice(geometry.prescan, geometry.prescan + geometry.image_cols)
    r_edges, c_edges = bin_edges(geometry.image_rows, size), bin_edges(geometry.image_cols, size)
    row_bin = np.searchsorted(r_edges, np.arange(geometry.image_rows), side="right") - 1
    results = []
    weight_sum = weighted = ncomb_total = None
    for column in columns:
        n = len(column.paths)
        stack = np.empty((geometry.image_rows, geometry.image_cols), np.float32)
        spread = np.empty_like(stack)
        binned = np.zeros((n, r_edges.size - 1, c_edges.size - 1))
        subtract = np.asarray(column.offsets, np.float32)[:, None, None]
        scale = (1.0 / np.asarray(column.levels, np.float32))[:, None, None]
        with ExitStack() as opened:
            frames = [opened.enter_context(read_frame(p)) for p in column.paths]
            for band in quadrant_bands(geometry, quadrant, band_rows_for(n, geometry)):
                if band.image_rows == 0:
                    continue
                cube = np.empty((n, band.image_rows, geometry.image_cols), np.float32)
                for i, frame in enumerate(frames):
                    counts = geometry.to_canonical(frame.section(band.frame_rows, band.cols), quadrant)
                    cube[i] = counts[: band.image_rows, image_cols]
                cube -= subtract
                rows = slice(band.canonical_rows.start, band.canonical_rows.start + band.image_rows)
                sums = np.add.reduceat(cube, c_edges[:-1], axis=2)  # (n, rows, column bins)
                for i in range(n):
                    np.add.at(binned[i], row_bin[rows], sums[i])
                cube *= scale
                median, std = median_and_std(cube)
                stack[rows] = median
                spread[rows] = std
        model = illumination_model(stack, size)
        flat = stack / model
        eflat = (MEDIAN_ERROR_FACTOR / math.sqrt(max(n, 1))) * spread / model if n > 1 else np.zeros_like(flat)
        prnu, noise = prnu_percent(flat, eflat)
        counts = np.diff(r_edges)[:, None] * np.diff(c_edges)[None, :]
        maps = binned / counts  # per frame binned illumination (ADU)
        shapes = maps / maps.mean(axis=(1, 2), keepdims=True)
        reference = np.median(shapes, axis=0)
        stability = float(np.max(np.sqrt(np.mean((shapes / reference - 1.0) ** 2, axis=(1, 2))))) if n > 1 else 0.0
        results.append(ColumnFlat(column.label, n, float(np.mean(column.levels)), prnu, noise,
                                  100.0 * float(np.std(model) / np.mean(model)), 100.0 * stability))
        _write_quadrant(column.target, geometry, quadrant, flat, eflat, float(n))
        if combined is not None:
            variance = np.maximum(eflat, 1e-6) ** 2
            if weight_sum is None:
                weight_sum, weighted, ncomb_total = 1.0 / variance, flat / variance, float(n)
            else:
                weight_sum += 1.0 / variance
                weighted += flat / variance
                ncomb_total += n
    if combined is not None and weight_sum is not None:
        _write_quadrant(combined, geometry, quadrant, weighted / weight_sum, 1.0 / np.sqrt(weight_sum), ncomb_total)
    return results


def _write_quadrant(target: FlatTarget, geometry: CCDGeometry, quadrant: str, flat: np.ndarray, eflat: np.ndarray,
                    ncomb: float) -> None:
    """Put a canonical image-area quadrant into the frame-oriented extensions (1, 0, 0 outside it)."""
    rows, cols = geometry.quadrant_slices(quadrant)
    image = geometry.canonical_region("image")
    for name, data, outside in (("FLAT", flat, 1.0), ("EFLAT", eflat, 0.0), ("NCOMB", None, 0.0)):
        canonical = np.full((geometry.quad_height, geometry.quad_width), outside, np.float32)
        canonical[image] = ncomb if data is None else data
        out = np.memmap(target.path, dtype=">f4", mode="r+", offset=target.offsets[name], shape=geometry.shape)
        try:
            out[rows, cols] = geometry.to_canonical(canonical, quadrant)
            out.flush()
        finally:
            del out


# ---------------------------------------------------------------------------------------------
# The task
# ---------------------------------------------------------------------------------------------

@dataclass
class MasterFlats(SubTaskResult):
    """`do_master_flats`: per (CCD, quadrant) the column flats' figures; the combined flats staged."""

    columns: list[str]  # column labels, in order
    flats: dict[tuple[int, str], list[ColumnFlat]]
    combined: dict[int, tuple[str, Path]] = field(default_factory=dict)  # ccd -> (name, staged path)
    wavelength: int | None = None


@dataclass
class MasterFlatProducts(SubTaskResult):
    names: dict[int, str]


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]", "_", text)


def master_flat_name(ctx: TaskContext, ccd: int, nm: int | None, column: int | None = None) -> str:
    """EUC_FF_<nm>nm[_col<NNN>]_CCD<n>_SN_<serial>_<BLOCK>.fits (the calibration product has no column)."""
    part = f"_col{column + 1:03d}" if column is not None else ""
    return (f"EUC_FF_{nm if nm is not None else 'NA'}nm{part}_CCD{ccd}_SN_{_safe(ccd_serial(ctx, ccd)) or 'UNKNOWN'}"
            f"_{_safe(ctx.campaign.info.block)}.fits")


class FlatTask(OffsetSubtractingTask):
    def do_master_flats(self, ctx: TaskContext, prepared: PreparedData) -> MasterFlats:
        geometry = prepared.geometry
        infos = frame_infos(ctx)
        column_ids = sorted({infos[f.obsid].column for frames in prepared.frames.values() for f in frames
                             if f.obsid in infos and infos[f.obsid].lit})
        labels = {c: next(i.label for i in infos.values() if i.column == c) for c in column_ids}
        nm_of = {c: next(i.nm for i in infos.values() if i.column == c) for c in column_ids}
        wavelength = ctx.test.wavelength if ctx.test.wavelength is not None else next(iter(nm_of.values()), None)
        out = Outputs()
        calls, combined = [], {}
        for ccd in ctx.ccds:
            by_column: dict[int, list[FrameOffsets]] = {c: [] for c in column_ids}
            for frame in prepared.frames[ccd]:
                info = infos.get(frame.obsid)
                if info is not None and info.lit and info.column in by_column:
                    by_column[info.column].append(frame)
            by_column = {c: f for c, f in by_column.items() if f}
            if not by_column:
                continue
            targets = {}
            for c, frames in by_column.items():
                name = master_flat_name(ctx, ccd, nm_of[c], c)
                path = ctx.staging_path(name)
                targets[c] = FlatTarget(path, self._allocate(ctx, ccd, frames, path, nm_of[c], labels[c]))
                out.files.append(StagedFile(name, path))
            all_frames = [f for frames in by_column.values() for f in frames]
            name = master_flat_name(ctx, ccd, wavelength)
            path = ctx.staging_path(name)
            combined_target = FlatTarget(path, self._allocate(ctx, ccd, all_frames, path, wavelength, "ALL",
                                                              "inverse-variance mean of columns"))
            combined[ccd] = (name, path)
            for q in QUADRANTS:
                columns = [ColumnInput(labels[c], [f.path for f in frames], [f.offsets[q] for f in frames],
                                       [f.level(q, "image") - f.offsets[q] for f in frames], targets[c])
                           for c, frames in by_column.items()]
                columns = [_usable(c) for c in columns]
                calls.append(((ccd, q), [c for c in columns if c.paths], geometry, combined_target))
        results = ctx.map_units(flat_unit, calls)
        flats = {call[0]: result for call, result in zip(calls, results)}
        ordered = [labels[c] for c in column_ids]
        for (ccd, q), columns in sorted(flats.items()):
            by_label = {c.label: c for c in columns}
            listed = [by_label.get(label) for label in ordered]
            out.value("prnu_pct", [c.prnu_pct if c else math.nan for c in listed], ccd, q)
            out.value("flat_fluence_adu", [c.fluence_adu if c else math.nan for c in listed], ccd, q)
            out.value("flat_noise_pct", [c.noise_pct if c else math.nan for c in listed], ccd, q)
            out.value("illumination_rms_pct", [c.illumination_rms_pct if c else math.nan for c in listed], ccd, q)
            out.value("illumination_stability_pct",
                      max((c.illumination_stability_pct for c in columns), default=math.nan), ccd, q)
            out.value("frames_combined", [c.frames if c else 0 for c in listed], ccd, q)
        out.value("flat_columns", ordered)
        out.value("wavelength_nm", wavelength)
        out.value("prnu_method", f"{CLIP_SIGMA:g}-sigma clipped std of the master flat's image pixels, its noise "
                                 "(median EFLAT) removed in quadrature, percent")
        table = [(f"CCD{ccd}", q, c.label, wavelength, f"{c.fluence_adu:.1f}", c.frames, f"{c.prnu_pct:.4f}",
                  f"{c.noise_pct:.4f}", f"{c.illumination_rms_pct:.3f}", f"{c.illumination_stability_pct:.4f}")
                 for (ccd, q), columns in sorted(flats.items()) for c in columns]
        name = f"{ctx.test.name}_PRNU.csv"
        out.tables.append(CsvTable(name, ("ccd", "quadrant", "column", "wavelength_nm", "fluence_adu", "frames",
                                          "prnu_pct", "noise_pct", "illumination_rms_pct",
                                          "illumination_stability_pct"), table))
        test = ctx.test.name
        out.plots.append(Plot("prnu", lambda: prnu_figure(test, flats, wavelength)))
        rows = [[f"CCD{ccd}", q, c.label, f"{c.fluence_adu:.0f}", c.frames, f"{c.prnu_pct:.3f}", f"{c.noise_pct:.3f}",
                 f"{c.illumination_rms_pct:.2f}", f"{c.illumination_stability_pct:.3f}"]
                for (ccd, q), columns in sorted(flats.items()) for c in columns]
        products = "\n".join(f"- `products/{f.name}`" for f in out.files)
        out.sections.append(Section("Master flats and PRNU", "\n\n".join([
            f"Per column and CCD the master flat at {wavelength} nm: per-pixel median of the offset-subtracted frames "
            "each divided by its level, divided by the column's smooth illumination model (bicubic spline through "
            f"{bin_size(geometry)}-px box medians). Extensions FLAT, EFLAT (error of the median), NCOMB; provenance "
            "in the primary header. PRNU: clipped std of the flat with its noise removed in quadrature. "
            "Illumination stability: the worst frame's rms departure of its binned illumination from the "
            f"column's. Table `products/{name}`.",
            markdown_table(["CCD", "Q", "column", "fluence (ADU)", "frames", "PRNU (%)", "noise (%)",
                            "illum. rms (%)", "illum. stab. (%)"], rows),
            products,
        ])))
        return MasterFlats(ordered, flats, combined, wavelength, outputs=out)

    def meta(self, ctx: TaskContext, prepared: PreparedData, flats: MasterFlats | None = None) -> MasterFlatProducts:
        if flats is None:  # `do_master_flats` switched off: the combination is made in the same pass
            flats = self.do_master_flats(ctx, prepared)
            out = flats.outputs
        else:
            out = Outputs()
        out.files += [StagedFile(name, path) for name, path in flats.combined.values()]
        names = {ccd: name for ccd, (name, _) in flats.combined.items()}
        out.sections.append(Section("Master flat (calibration product)", (
            f"Per CCD the master flat at {flats.wavelength} nm: the inverse-variance weighted mean of the column master "
            "flats (FLAT), its error (EFLAT) and the frames combined (NCOMB). Later tests take it as `master_flat` "
            "(campaign `[calproducts.flats.<nm>]` first, else the newest flat result with this wavelength).\n\n"
            + "\n".join(f"- `products/{name}`" for name in names.values()))))
        return MasterFlatProducts(names, outputs=out)

    @staticmethod
    def _allocate(ctx: TaskContext, ccd: int, frames: list[FrameOffsets], path: Path, nm: int | None, label: str,
                  method: str = "median(frame/level) / illum. model") -> dict[str, int]:
        primary = provenance_header(ctx, ccd, frames, method, "MASTERFLAT")
        extra: dict[str, Any] = {
            "WAVELEN": (nm if nm is not None else -1, "wavelength (nm; 0 = no filter)"),
            "WAVEL": (nm if nm is not None else -1, "wavelength (nm), vison's keyword"),
            "COLUMN": (label, "column (fluence) of the test's structure"),
            "BUNIT": ("", "relative response (FLAT), its error (EFLAT), frames (NCOMB)"),
        }
        for q in QUADRANTS:
            levels = [f.level(q, "image") - f.offsets[q] for f in frames]
            extra[f"FLU_{q}"] = (round(float(np.mean(levels)), 1) if levels else math.nan,
                                 f"mean fluence of the frames in quadrant {q} (ADU)")
        for key, value in extra.items():
            primary[key] = value
        headers = {"FLAT": fits.Header([("BUNIT", "")]), "EFLAT": fits.Header([("BUNIT", "")]),
                   "NCOMB": fits.Header([("BUNIT", "frames")])}
        return allocate_fits(path, primary, FLAT_EXTENSIONS, frames[0].stats.geometry.shape, headers)


def _usable(column: ColumnInput) -> ColumnInput:
    """Frames without a positive level (shutter failed, unreadable region) are left out."""
    keep = [i for i, level in enumerate(column.levels) if math.isfinite(level) and level > 0]
    return ColumnInput(column.label, [column.paths[i] for i in keep], [column.offsets[i] for i in keep],
                       [column.levels[i] for i in keep], column.target)


def prnu_figure(test: str, flats: dict[tuple[int, str], list[ColumnFlat]], wavelength: int | None):
    if not flats:
        return None
    figure = new_figure(8, 4)
    axes = figure.add_subplot(1, 1, 1)
    for (ccd, q), columns in sorted(flats.items()):
        axes.plot([c.fluence_adu for c in columns], [c.prnu_pct for c in columns], marker="o", markersize=3,
                  linewidth=0.8, label=f"CCD{ccd}{q}")
    axes.set_xlabel("fluence (ADU)")
    axes.set_ylabel("PRNU (%)")
    axes.set_title(f"{test}: PRNU per quadrant vs fluence at {wavelength} nm")
    axes.legend(fontsize=6, ncol=3)
    return figure


FAMILY = Family(
    name="flat",
    noise_regions=("prescan",),  # the overscan after an exposed image holds trailed charge, not noise
    summary="FLAT01/FLAT02/FLAT_STB: illumination model, normalised flats, master flats and PRNU.",
    subtasks=("init", "check", "prep", "do_master_flats", "meta", "report"),
    task=FlatTask,
    limits=FlatLimits,
    values=(
        *FLUENCE_VALUES,
        ValueSpec("prnu_pct", "%", 4, "PRNU of each column's master flat (clipped std, noise removed), in column "
                  "order", key=True),
        ValueSpec("flat_fluence_adu", "ADU", 1, "mean level of each column's frames (offset-subtracted)"),
        ValueSpec("flat_noise_pct", "%", 4, "noise of each column's master flat: median EFLAT"),
        ValueSpec("illumination_rms_pct", "%", 3, "rms of each column's illumination model about its mean"),
        ValueSpec("illumination_stability_pct", "%", 4, "worst frame: rms departure of its binned illumination "
                  "from its column's"),
        ValueSpec("frames_combined", "", None, "frames combined into each column's master flat"),
        ValueSpec("flat_columns", "", None, "column labels, the order of the per-column lists", scope="test"),
        ValueSpec("wavelength_nm", "nm", None, "wavelength of the flats", scope="test"),
        ValueSpec("prnu_method", "", None, "how the PRNU was measured", scope="test"),
    ),
    checks=(check_flat_fluence_and_flux,),
)
TASK = FlatTask
