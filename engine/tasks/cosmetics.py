"""COSMETICS00: dark and flat defect masks per CCD (hot, dead, low-response pixels, bad columns).

Sub-tasks (after the generic `init` and `check`):

- `masks`: per CCD and quadrant, the per-pixel median of the offset-subtracted bias frames
  (exptime 0) and of the flats (exptime > 0), made in the check's read of the frames
  (Family.per_quadrant: DefectsConsumer keeps each frame's image area and builds the medians and
  the defect map at the end); where that read did not see the very frames and offsets `prep`
  keeps, a unit per quadrant reads them again (cosmetics_unit, the same numbers), saying why. The dark map is the bias median minus a smooth background, the flat map the flat
  median divided by its smooth background (block medians, bilinearly interpolated: a defect or a
  bad column does not move a block median; an illumination gradient is followed). Hot pixels:
  dark map above `hot_pixel_threshold_adu` (and 10 robust sigma of the map); dead pixels: flat
  response below `dead_response_max`; low- and high-response pixels: outside
  `flat_response_range`. A column with at least `bad_column_fraction` of its image pixels flagged
  is a bad column: it is masked from its lowest flagged row upwards where half or more of the
  pixels are flagged (charge read through a column defect is what degrades), not below.
- `meta`: the merged mask per CCD, `EUC_MASK_<BLOCK>_CCD<n>_SN_<serial>.fits` (MASK: 1 = do not
  use; DEFECTS: which defect, bit-coded), the defect list and counts (CSV), the mask figure.
  Later tests take it as their `cosmetics_mask` calibration product (calproducts.py).
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..campaign.limits import GenericLimits, limit
from ..formats.fits import read_frame
from ..formats.geometry import QUADRANTS, CCDGeometry
from .base import AnalysisTask
from .context import TaskContext
from .family import Family, QuadrantConsumers, ValueSpec
from .figures import markdown_table, new_figure
from .measures import FrameMeasures
from .offsets import FrameOffsets, PreparedData
from .outputs import CsvTable, Outputs, Plot, Section, StagedFile, SubTaskResult
from .stacking import (
    band_rows_for,
    ccd_serial,
    median_of_stack,
    provenance_header,
    quadrant_bands,
)

if TYPE_CHECKING:  # astropy takes 0.3 s to import: loaded where a FITS file is read or written
    from astropy.io import fits

# Bits of the DEFECTS extension.
HOT, DEAD, LOW, HIGH, BAD_COLUMN = 1, 2, 4, 8, 16
DEFECT_NAMES = {HOT: "hot", DEAD: "dead", LOW: "low_response", HIGH: "high_response", BAD_COLUMN: "bad_column"}
HOT_SIGNIFICANCE = 10.0  # hot pixels also stand this many robust sigma above the dark map
DEFECT_LIST_LIMIT = 200_000  # pixel rows written to the defect table at most (a broken CCD would flood it)


@dataclass(frozen=True)
class CosmeticsLimits(GenericLimits):
    hot_pixel_threshold_adu: float = limit(20.0, "ADU", "hot pixel: median bias above its background by more than this")
    dead_response_max: float = limit(0.1, "fraction", "dead pixel: flat response (relative to its "
                                      "neighbourhood) below this")
    flat_response_range: tuple[float, float] = limit((0.75, 1.25), "fraction", "relative flat response of a good "
                                                     "pixel (outside: low- or high-response)")
    bad_column_fraction: float = limit(0.1, "fraction", "bad column: at least this fraction of its image pixels "
                                       "flagged (vison: 200 of 2066)")


@dataclass(frozen=True)
class Thresholds:
    """The limits a worker needs, as plain numbers."""

    hot_adu: float
    dead_max: float
    low: float
    high: float
    column_fraction: float

    @classmethod
    def of(cls, limits: CosmeticsLimits) -> "Thresholds":
        low, high = limits.flat_response_range
        return cls(float(limits.hot_pixel_threshold_adu), float(limits.dead_response_max), float(low), float(high),
                   float(limits.bad_column_fraction))


# ---------------------------------------------------------------------------------------------
# Pure science: stacks, backgrounds, defect maps
# ---------------------------------------------------------------------------------------------

def median_image(paths: list[Path], offsets: list[float], geometry: CCDGeometry, quadrant: str) -> np.ndarray:
    """Per-pixel median of the offset-subtracted frames over a quadrant's canonical image area,
    band by band (memory bounded by the band), each frame opened once."""
    image = np.zeros((geometry.image_rows, geometry.image_cols), np.float32)
    cols = slice(geometry.prescan, geometry.prescan + geometry.image_cols)
    subtract = np.asarray(offsets, np.float32)[:, None, None]
    with ExitStack() as stack:
        frames = [stack.enter_context(read_frame(p)) for p in paths]
        for band in quadrant_bands(geometry, quadrant, band_rows_for(len(paths), geometry)):
            if band.image_rows == 0:
                continue
            cube = np.stack([geometry.to_canonical(f.section(band.frame_rows, band.cols), quadrant)[: band.image_rows,
                                                                                                    cols]
                             for f in frames]).astype(np.float32)
            cube -= subtract
            start = band.canonical_rows.start
            image[start: start + band.image_rows] = np.median(cube, axis=0)
    return image


def smooth_background(image: np.ndarray, block: int | None = None) -> np.ndarray:
    """A smooth model of an image: medians of blocks, bilinearly interpolated between block centres.
    A block median ignores defects (even a bad column: one column of a block) but follows gradients."""
    from scipy.ndimage import map_coordinates

    rows, cols = image.shape
    block = block or max(8, min(64, min(rows, cols) // 4))
    nr, nc = max(1, rows // block), max(1, cols // block)
    edges_r = np.linspace(0, rows, nr + 1).astype(int)
    edges_c = np.linspace(0, cols, nc + 1).astype(int)
    grid = np.empty((nr, nc), np.float64)
    for i in range(nr):
        for j in range(nc):
            cell = image[edges_r[i]: edges_r[i + 1], edges_c[j]: edges_c[j + 1]]
            cell = cell[np.isfinite(cell)]
            grid[i, j] = np.median(cell) if cell.size else np.nan
    if np.isnan(grid).any():
        grid[np.isnan(grid)] = np.nanmedian(grid) if np.isfinite(grid).any() else 0.0
    centres_r = 0.5 * (edges_r[:-1] + edges_r[1:]) - 0.5
    centres_c = 0.5 * (edges_c[:-1] + edges_c[1:]) - 0.5
    # fractional grid index of every pixel row and column
    index_r = np.interp(np.arange(rows), centres_r, np.arange(nr)) if nr > 1 else np.zeros(rows)
    index_c = np.interp(np.arange(cols), centres_c, np.arange(nc)) if nc > 1 else np.zeros(cols)
    rr, cc = np.meshgrid(index_r, index_c, indexing="ij")
    return map_coordinates(grid, [rr, cc], order=1, mode="nearest").astype(np.float32)


def robust_sigma(values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return math.nan
    q25, q75 = np.percentile(values, [25, 75])
    return float((q75 - q25) / 1.349)


def dark_defects(bias_median: np.ndarray, threshold_adu: float) -> tuple[np.ndarray, float]:
    """Hot pixels of a median bias (image area): (bool map, threshold used in ADU)."""
    residual = bias_median - smooth_background(bias_median)
    threshold = max(threshold_adu, HOT_SIGNIFICANCE * robust_sigma(residual))
    return residual > threshold, float(threshold)


def flat_response(flat_median: np.ndarray) -> np.ndarray:
    """Relative response of each pixel: the median flat over its smooth background."""
    background = smooth_background(flat_median)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(background > 0, flat_median / background, np.nan).astype(np.float32)


def bad_column_segments(flagged: np.ndarray, fraction: float) -> tuple[np.ndarray, list[int]]:
    """Columns with at least `fraction` of their pixels flagged, masked from their lowest flagged
    row whose part of the column above is at least half flagged: (bool map, bad column indices)."""
    rows = flagged.shape[0]
    segments = np.zeros_like(flagged, dtype=bool)
    columns = []
    counts = flagged.sum(axis=0)
    for col in np.flatnonzero(counts >= max(1.0, fraction * rows)):
        column = flagged[:, col]
        above = np.cumsum(column[::-1])[::-1]  # flagged pixels from each row to the top
        share = above / np.arange(rows, 0, -1)
        start = np.flatnonzero(column & (share >= 0.5))
        if start.size:
            segments[start[0]:, col] = True
            columns.append(int(col))
    return segments, columns


def defect_map(bias_median: np.ndarray | None, flat_median: np.ndarray | None,
               thresholds: Thresholds) -> tuple[np.ndarray, dict[str, float]]:
    """The DEFECTS bits of a quadrant's image area, and what was used (thresholds, levels)."""
    shape = (bias_median if bias_median is not None else flat_median).shape
    bits = np.zeros(shape, np.uint8)
    used: dict[str, float] = {"hot_threshold_adu": math.nan, "flat_level_adu": math.nan}
    if bias_median is not None:
        hot, used["hot_threshold_adu"] = dark_defects(bias_median, thresholds.hot_adu)
        bits[hot] |= HOT
    if flat_median is not None:
        response = flat_response(flat_median)
        used["flat_level_adu"] = float(np.nanmedian(flat_median))
        invalid = ~np.isfinite(response)
        bits[(response < thresholds.dead_max) | invalid] |= DEAD
        bits[(response >= thresholds.dead_max) & (response < thresholds.low)] |= LOW
        bits[response > thresholds.high] |= HIGH
    segments, _ = bad_column_segments(bits != 0, thresholds.column_fraction)
    bits[segments] |= BAD_COLUMN
    return bits, used


# ---------------------------------------------------------------------------------------------
# Worker
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class QuadrantDefects:
    bits: np.ndarray  # canonical image area, DEFECTS bits
    used: dict[str, float]

    def count(self, bit: int) -> int:
        return int(np.count_nonzero(self.bits & bit))

    @property
    def masked(self) -> int:
        return int(np.count_nonzero(self.bits))

    @property
    def bad_columns(self) -> int:
        return int(np.count_nonzero((self.bits & BAD_COLUMN).any(axis=0)))


def cosmetics_unit(unit: tuple[int, str], bias: tuple[list[Path], list[float]], flat: tuple[list[Path], list[float]],
                   geometry: CCDGeometry, thresholds: Thresholds) -> QuadrantDefects:
    """Worker: the defect map of one quadrant from its bias and flat frames."""
    _, quadrant = unit
    bias_median = median_image(*bias, geometry, quadrant) if bias[0] else None
    flat_median = median_image(*flat, geometry, quadrant) if flat[0] else None
    if bias_median is None and flat_median is None:
        return QuadrantDefects(np.zeros((geometry.image_rows, geometry.image_cols), np.uint8), {})
    bits, used = defect_map(bias_median, flat_median, thresholds)
    return QuadrantDefects(bits, used)


# ---------------------------------------------------------------------------------------------
# The same from the check's read (Family.per_quadrant, quadrant_pass.py)
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DefectsPlan:
    """Per CCD, for the check's read: which frames (by index in the unit's list) are bias frames."""

    dark: tuple[bool, ...]
    thresholds: Thresholds


def defects_plan(ctx: TaskContext, ccd: int, frames: list[Any]) -> DefectsPlan:
    return DefectsPlan(tuple(is_dark_frame(f.row) for f in frames), Thresholds.of(ctx.limits))


@dataclass(frozen=True)
class ReadDefects:
    """The consumer's result: the defect map and the frames (by index) of each median."""

    bias: tuple[int, ...]
    flat: tuple[int, ...]
    defects: QuadrantDefects


class DefectsConsumer:
    """The defect map of one quadrant from the frames as the check reads them.

    A median needs every frame of its stack at once: each frame's canonical image area is kept
    in its stack (uint16, 8.5 MB a frame at full size: COSMETICS00's 5 bias frames and 5 flats
    keep 85 MB per unit, as the banded read of the unit it replaces held ~100 MB of float32
    bands) and the medians are made in result() (stacking.median_of_stack: the stacks' compiled network)."""

    def __init__(self, quadrant: str, geometry: CCDGeometry, plan: DefectsPlan):
        self.quadrant, self.geometry, self.plan = quadrant, geometry, plan
        self.window = geometry.canonical_region("image")
        self.stacks: dict[bool, np.ndarray] = {}  # bias (True) or flat -> (planned frames, rows, cols) uint16
        self.fed: dict[bool, list[int]] = {True: [], False: []}
        self.offsets: dict[bool, list[float]] = {True: [], False: []}

    def add(self, index: int, counts: np.ndarray, stats: Any) -> None:
        dark = self.plan.dark[index]
        if dark not in self.stacks:
            self.stacks[dark] = np.empty((sum(d == dark for d in self.plan.dark), self.geometry.image_rows,
                                          self.geometry.image_cols), np.uint16)
        rows, cols = self.window
        self.stacks[dark][len(self.fed[dark])] = self.geometry.to_canonical(counts, self.quadrant)[rows, cols]
        self.fed[dark].append(index)
        self.offsets[dark].append(stats.prescan.clipped_mean)  # the frame's offset, as `prep` takes it

    def median(self, dark: bool) -> np.ndarray | None:
        if not self.fed[dark]:
            return None
        return median_of_stack(self.stacks[dark], len(self.fed[dark]), np.asarray(self.offsets[dark], np.float32))

    def result(self) -> ReadDefects:
        bias_median, flat_median = self.median(True), self.median(False)
        self.stacks.clear()
        if bias_median is None and flat_median is None:
            found = QuadrantDefects(np.zeros((self.geometry.image_rows, self.geometry.image_cols), np.uint8), {})
        else:
            found = QuadrantDefects(*defect_map(bias_median, flat_median, self.plan.thresholds))
        return ReadDefects(tuple(self.fed[True]), tuple(self.fed[False]), found)


def start_defects(quadrant: str, geometry: CCDGeometry, plan: DefectsPlan) -> DefectsConsumer:
    return DefectsConsumer(quadrant, geometry, plan)


def defects_from_read(readout: Any, darks: list[FrameOffsets], flats: list[FrameOffsets],
                      quadrant: str) -> tuple[QuadrantDefects | None, str]:
    """The consumer's defect map if it was made from these very frames and offsets, else (None, why)."""
    if readout is None:
        return None, "the check's read made no defect map (check switched off or `masks` run alone)"
    if readout.error or readout.result is None:
        return None, f"its defect map failed ({readout.error or 'no frame fed'})"
    paths = dict(zip(readout.fed, readout.paths))
    made = readout.result
    frames = darks + flats
    if [paths.get(i) for i in made.bias] != [f.path for f in darks] or \
            [paths.get(i) for i in made.flat] != [f.path for f in flats] or \
            not readout.matches([f.path for f in frames], [f.offsets[quadrant] for f in frames]):
        return None, "the frames it stacked or their offsets differ from those `prep` keeps"
    return made.defects, ""


# ---------------------------------------------------------------------------------------------
# The task
# ---------------------------------------------------------------------------------------------

@dataclass
class CosmeticsMaps(SubTaskResult):
    """`masks`: the defect map of each (CCD, quadrant) and the frames it came from."""

    geometry: CCDGeometry
    defects: dict[tuple[int, str], QuadrantDefects]
    frames: dict[int, list[FrameOffsets]]  # ccd -> the frames used (provenance)

    @classmethod
    def produce(cls, ctx: TaskContext) -> "CosmeticsMaps":
        return CosmeticsTask().masks(ctx, ctx.need(PreparedData))


@dataclass
class CosmeticsMasks(SubTaskResult):
    """`meta`: the published masks, CCD -> product name."""

    names: dict[int, str]


def is_dark_frame(row) -> bool:
    try:
        return float(row.get("exptime") or 0.0) <= 0.0
    except (TypeError, ValueError):
        return False


class CosmeticsTask(AnalysisTask):
    def masks(self, ctx: TaskContext, prepared: PreparedData) -> CosmeticsMaps:
        thresholds = Thresholds.of(ctx.limits)
        readouts = ctx.need(FrameMeasures).readouts
        defects, used, not_used = {}, [], defaultdict(list)
        units, calls = [], []
        for ccd in ctx.ccds:
            rows = {f.obsid: f.row for f in ctx.dataset.frames(ccd)}
            frames = prepared.frames[ccd]
            if not frames:
                continue
            darks = [f for f in frames if is_dark_frame(rows[f.obsid])]
            flats = [f for f in frames if not is_dark_frame(rows[f.obsid])]
            if not darks or not flats:
                ctx.log.warning(f"CCD{ccd}: {len(darks)} bias and {len(flats)} flat frames: "
                                f"{'no dark mask' if not darks else 'no flat mask'}")
            for q in QUADRANTS:
                found, why = defects_from_read(readouts.get((ccd, q)), darks, flats, q)
                if found is not None:
                    defects[(ccd, q)] = found
                    used.append(f"CCD{ccd}{q}")
                    continue
                not_used[why].append(f"CCD{ccd}{q}")
                units.append((ccd, q))
                calls.append(((ccd, q), ([f.path for f in darks], [f.offsets[q] for f in darks]),
                              ([f.path for f in flats], [f.offsets[q] for f in flats]), prepared.geometry, thresholds))
        defects.update(zip(units, ctx.map_units(cosmetics_unit, calls)))
        if used:
            ctx.log.info(f"masks: {', '.join(used)} from the check's read of the frames")
        for why, quadrants in not_used.items():
            ctx.log.warning(f"masks: {', '.join(quadrants)}: bias and flat frames read again: {why}")
        out = Outputs()
        pixels = prepared.geometry.image_pixels
        rows_out = []
        for (ccd, q), found in sorted(defects.items()):
            counts = {name: found.count(bit) for bit, name in DEFECT_NAMES.items()}
            out.value("hot_pixels", counts["hot"], ccd, q)
            out.value("dead_pixels", counts["dead"], ccd, q)
            out.value("low_response_pixels", counts["low_response"], ccd, q)
            out.value("high_response_pixels", counts["high_response"], ccd, q)
            out.value("bad_columns", found.bad_columns, ccd, q)
            out.value("masked_pixels", found.masked, ccd, q)
            out.value("pixels_lost_pct", 100.0 * found.masked / pixels, ccd, q)
            out.value("hot_threshold_adu", found.used.get("hot_threshold_adu", math.nan), ccd, q)
            out.value("flat_level_adu", found.used.get("flat_level_adu", math.nan), ccd, q)
            rows_out.append([f"CCD{ccd}", q, counts["hot"], counts["dead"], counts["low_response"],
                             counts["high_response"], found.bad_columns, found.masked,
                             f"{100.0 * found.masked / pixels:.4f}"])
        low, high = ctx.limits.flat_response_range
        out.sections.append(Section("Defects", "\n\n".join([
            "Dark map: median of the offset-subtracted bias frames minus its smooth background (block medians); "
            f"hot: more than {ctx.limits.hot_pixel_threshold_adu:g} ADU (and {HOT_SIGNIFICANCE:g} robust sigma) above. "
            "Flat map: median of the offset-subtracted flats over its smooth background; dead: response below "
            f"{ctx.limits.dead_response_max:g}; low/high response: outside [{low:g}, {high:g}]. Bad column: at "
            f"least {100 * ctx.limits.bad_column_fraction:g} % of the column's image pixels flagged; masked from "
            "its lowest flagged row where at least half the column above is flagged. Counts per quadrant "
            "(a pixel may be several kinds; masked = any):",
            markdown_table(["CCD", "Q", "hot", "dead", "low", "high", "bad columns", "masked", "lost (%)"], rows_out),
        ])))
        frames = {ccd: prepared.frames[ccd] for ccd in ctx.ccds if prepared.frames[ccd]}
        return CosmeticsMaps(prepared.geometry, defects, frames, outputs=out)

    def meta(self, ctx: TaskContext, maps: CosmeticsMaps) -> CosmeticsMasks:
        geometry = maps.geometry
        out = Outputs()
        names = {}
        for ccd, frames in maps.frames.items():
            name = mask_name(ctx, ccd)
            path = ctx.staging_path(name)
            write_mask(path, provenance_header(ctx, ccd, frames, "defect masks of median bias and flat",
                                               "MASK"), geometry, {q: maps.defects[(ccd, q)] for q in QUADRANTS
                                                                   if (ccd, q) in maps.defects}, ctx.limits)
            out.files.append(StagedFile(name, path))
            names[ccd] = name
        out.tables.append(defects_table(ctx.test.name, geometry, maps.defects))
        test = ctx.test.name
        out.plots.append(Plot("masks", lambda: masks_figure(test, geometry, maps.defects)))
        out.sections.append(Section("Cosmetics masks", (
            "Per CCD, frame orientation and size: extension MASK (uint8, 1 = defective image pixel, 0 = good; "
            "prescan and overscans 0) and DEFECTS (uint8 bits: 1 hot, 2 dead, 4 low response, 8 high response, "
            "16 bad column). Provenance in the primary header (VISON, TEST, SESSION, BLOCK, CCD, SN, OBSIDS, "
            "NCOMB, thresholds). Later tests use them as the `cosmetics_mask` calibration product.\n\n"
            + "\n".join(f"- `products/{n}`" for n in names.values())
            + f"\n\nDefect pixels listed in `products/{ctx.test.name}_defects.csv` (canonical row, column counted "
            "from the quadrant's first prescan column).")))
        return CosmeticsMasks(names, outputs=out)


FAMILY = Family(
    name="cosmetics",
    summary="COSMETICS00: dark and flat defect masks per CCD (hot, dead, low-response pixels, bad columns).",
    subtasks=("init", "check", "masks", "meta", "report"),
    task=CosmeticsTask,
    limits=CosmeticsLimits,
    per_quadrant=QuadrantConsumers(plan=defects_plan, start=start_defects, subtasks=("masks",)),
    values=(
        ValueSpec("hot_pixels", "", None, "image pixels of the median bias above the hot threshold", key=True),
        ValueSpec("dead_pixels", "", None, "image pixels with a flat response below dead_response_max", key=True),
        ValueSpec("low_response_pixels", "", None, "pixels below flat_response_range (not dead)"),
        ValueSpec("high_response_pixels", "", None, "pixels above flat_response_range"),
        ValueSpec("bad_columns", "", None, "columns masked as bad columns", key=True),
        ValueSpec("masked_pixels", "", None, "image pixels masked (any defect)"),
        ValueSpec("pixels_lost_pct", "%", 4, "masked image pixels over all image pixels", key=True),
        ValueSpec("hot_threshold_adu", "ADU", 2, "hot threshold used (the limit, or 10 robust sigma if larger)"),
        ValueSpec("flat_level_adu", "ADU", 1, "median level of the median flat"),
    ),
    fits_products=True,
)
TASK = CosmeticsTask


# ---------------------------------------------------------------------------------------------
# Products and figures
# ---------------------------------------------------------------------------------------------

def mask_name(ctx: TaskContext, ccd: int) -> str:
    block = re.sub(r"[^A-Za-z0-9.+-]", "_", ctx.campaign.info.block)
    serial = re.sub(r"[^A-Za-z0-9.+-]", "_", ccd_serial(ctx, ccd)) or "UNKNOWN"
    return f"EUC_MASK_{block}_CCD{ccd}_SN_{serial}.fits"


def frame_array(geometry: CCDGeometry, quadrants: dict[str, np.ndarray]) -> np.ndarray:
    """A frame-orientation uint8 array holding each quadrant's canonical image-area map."""
    frame = np.zeros(geometry.shape, np.uint8)
    for q, image in quadrants.items():
        canonical = np.zeros((geometry.quad_height, geometry.quad_width), np.uint8)
        canonical[: geometry.image_rows, geometry.prescan: geometry.prescan + geometry.image_cols] = image
        geometry.put_quadrant(frame, q, canonical)
    return frame


def write_mask(path: Path, primary: fits.Header, geometry: CCDGeometry, defects: dict[str, QuadrantDefects],
               limits: CosmeticsLimits) -> None:
    from astropy.io import fits

    primary["HOTTHR"] = (float(limits.hot_pixel_threshold_adu), "hot pixel: ADU above the bias background")
    primary["DEADMAX"] = (float(limits.dead_response_max), "dead pixel: relative flat response below")
    primary["FLATLOW"] = (float(limits.flat_response_range[0]), "low response: relative flat response below")
    primary["FLATHIGH"] = (float(limits.flat_response_range[1]), "high response: relative flat response above")
    primary["BADCOLFR"] = (float(limits.bad_column_fraction), "bad column: fraction of its pixels flagged")
    primary["BUNIT"] = ("", "masks carry no unit")
    bits = frame_array(geometry, {q: d.bits for q, d in defects.items()})
    mask_header = fits.Header([("COMMENT", "1 = defective image pixel, 0 = good")])
    defects_header = fits.Header([("BIT0", "hot", "1"), ("BIT1", "dead", "2"), ("BIT2", "low response", "4"),
                                  ("BIT3", "high response", "8"), ("BIT4", "bad column", "16")])
    hdul = fits.HDUList([fits.PrimaryHDU(header=primary),
                         fits.ImageHDU((bits != 0).astype(np.uint8), header=mask_header, name="MASK"),
                         fits.ImageHDU(bits, header=defects_header, name="DEFECTS")])
    hdul.writeto(path, overwrite=True)


def defects_table(test: str, geometry: CCDGeometry, defects: dict[tuple[int, str], QuadrantDefects]) -> CsvTable:
    rows = []
    for (ccd, q), found in sorted(defects.items()):
        r, c = np.nonzero(found.bits & ~np.uint8(BAD_COLUMN))  # bad-column fill listed by column, not pixel
        for row, col in zip(r[:DEFECT_LIST_LIMIT], c[:DEFECT_LIST_LIMIT]):
            bits = int(found.bits[row, col])
            kinds = "+".join(name for bit, name in DEFECT_NAMES.items() if bits & bit)
            rows.append((f"CCD{ccd}", q, int(row), int(col) + geometry.prescan, kinds))
        for col in np.flatnonzero((found.bits & BAD_COLUMN).any(axis=0)):
            first = int(np.argmax(found.bits[:, col] & BAD_COLUMN))
            rows.append((f"CCD{ccd}", q, first, int(col) + geometry.prescan, "bad_column_from_row"))
    return CsvTable(f"{test}_defects.csv", ("ccd", "quadrant", "row", "col", "kind"), rows)


def masks_figure(test: str, geometry: CCDGeometry, defects: dict[tuple[int, str], QuadrantDefects]):
    ccds = sorted({ccd for ccd, _ in defects})
    if not ccds:
        return None
    figure = new_figure(3.6 * len(ccds), 3.8)
    for index, ccd in enumerate(ccds, start=1):
        axes = figure.add_subplot(1, len(ccds), index)
        frame = frame_array(geometry, {q: defects[(ccd, q)].bits for q in QUADRANTS if (ccd, q) in defects})
        axes.imshow(frame != 0, origin="lower", cmap="Greys", interpolation="nearest")
        axes.set_title(f"CCD{ccd}: {sum(defects[(ccd, q)].masked for q in QUADRANTS if (ccd, q) in defects)} masked",
                       fontsize=9)
        axes.set_xticks([])
        axes.set_yticks([])
    figure.suptitle(f"{test}: masked pixels (frame orientation)", fontsize=10)
    return figure
