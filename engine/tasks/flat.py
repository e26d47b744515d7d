"""FLAT01, FLAT02_<w>, FLAT_STB: illumination model, normalised flats, master flats and PRNU.

Sub-tasks (after the generic `init` and `check`):

- `check` (family part, flat_lib.py): per column the median raw fluence against
  min(exptime / tFWC_flat(λ), 1) x `full_well_adu` (FLUENCE_OOL), per quadrant the flux and the
  time to full well it implies against the chamber profile (FLUX_OOL), each with value and limit.
- `prep` (offsets.py): per frame and quadrant the offset (clipped prescan mean) and the frame's
  level (clipped image mean minus offset), from the raw measurements: no extra read.
- `do_master_flats`: the master flat per column (fluence), CCD and quadrant, made while the check
  reads the frames (Family.per_quadrant, quadrant_pass.py): one unit per (CCD, quadrant) reads
  that quadrant of each frame once, the check measures it and the same counts go into the
  column's running sums (compiled/flat_kernels.py, in batches of BATCH_FRAMES frames): each frame
  offset-subtracted and divided by its level (x), per pixel the sum and sum of squares of x and
  the two highest and the lowest x, per illumination box the frame's binned counts. When a
  column's last frame is in, the per-pixel clipped mean is taken (below), the smooth
  illumination model of the column is a cubic spline through the median of each box of that
  stack, each frame's binned map says how far its illumination departs from the column's
  (`illumination_stability_pct`), and the master flat is the stack divided by the model (FLAT),
  with its error (EFLAT: std of the kept values / sqrt(kept) / model) and the frames combined
  (NCOMB). The planes are staged in a file of the worker's; `do_master_flats` copies them into the
  products (whose headers need the frames the check found usable). It uses them only if they were
  made from exactly the frames and offsets it would use, and otherwise (frames left out, the
  check's consumer failed, the sub-task run alone) has one unit per (CCD, quadrant) read the
  frames again into the same sums (`flat_unit`), saying so in the log. Memory: the sums of the
  columns whose frames are still coming (28 bytes a pixel, 119 MB a full-size quadrant column),
  never the frame count.
  PRNU per quadrant and column: 5-sigma clipped std of the master flat's image pixels (defects
  drop out), with the stack's own noise (median EFLAT) removed in quadrature, in percent.
- `meta`: per CCD the master flat of the wavelength, the inverse-variance weighted mean of the
  column flats: the `master_flat` calibration product (calproducts.py finds it by name).

Differences from vison, on purpose: vison fitted a model to each frame and wrote each normalised
frame to disk (170 files per CCD for FLAT01); a column's frames share one illumination pattern,
so the model is fitted once on their stack (25x less noise in each box) and each frame only
contributes its level, while its binned map checks that the pattern did not move. The frames are
read once for all of it. vison's PRNU was a 3-sigma clipped std, which drops 0.3 % of a Gaussian
PRNU and biases it low by about 1.5 %; 5 sigma keeps the PRNU and still drops the defects.

The per-pixel combination is a clipped mean, not the median over the column's frames it was:
a median needs every frame of the column at hand (80 full-size quadrants, 680 MB a unit, or a
second read band by band), a mean streams. Its clip: per pixel the two highest values and the
lowest are the candidates, each dropped only if more than CLIP_SIGMA true sigmas (the spread of
the other n - 3 values, scaled for their trimming: trimmed_spread_factor) from the others' mean,
the second highest only after the highest. A cosmic ray or a flash in a frame is tens of sigmas
out (a flat's pixel scatters by ~0.5 % a frame at 25 % of full well) and goes; Gaussian noise
alone loses a value in 0.3 % of the pixels with 15 frames, 0.02 % with 80 (the others' spread
is itself noisy), each a ~5-sigma value of n: no bias to speak of. What it costs against the
median: at most two high values and one low per pixel are dropped, where the median shrugs off
up to half the frames; a pixel hit in three frames of one column (the simulator's ground rate,
3e-5 a pixel a frame, gives ~10^-9 of the pixels over 80 frames) keeps one hit. What it gains: a mean's noise is 1 / 1.2533 of a median's (sqrt(pi / 2) for
Gaussian values), so EFLAT and the master's noise drop by 20 % for the same frames. Columns of
fewer than MIN_CLIP_FRAMES frames (none in the catalogue: 15 to 80) get a plain mean. The sums
are float64 (a flat's variance, 1e-5 of its squared mean, comes from sums of squares ~n), the
extremes and the planes float32 (the frames' own precision).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..formats.fits import read_frame
from ..formats.geometry import QUADRANTS, CCDGeometry
from .context import TaskContext
from .family import Family, QuadrantConsumers, ValueSpec
from .figures import markdown_table, new_figure
from .flat_lib import (
    FLUENCE_VALUES,
    FlatLimitsBase,
    check_flat_fluence_and_flux,
    frame_infos,
)
from .measures import FrameMeasures, QuadrantStats
from .offsets import FrameOffsets, OffsetSubtractingTask, PreparedData
from .outputs import CsvTable, Outputs, Plot, Section, StagedFile, SubTaskResult
from .stacking import allocate_fits, ccd_serial, provenance_header
from .stats import CLIP_SIGMA, clipped_stats

FLAT_EXTENSIONS = ("FLAT", "EFLAT", "NCOMB")
FULL_SIZE_BIN_PX = 25  # vison's illumination boxes
MIN_CLIP_FRAMES = 10  # fewer frames: a plain mean (the 3 candidates dropped, too few left to judge them by)
BATCH_FRAMES = 8  # frames added to a column's sums in one sweep (memory: 8 x 8.5 MB at full size)


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

    from .compiled.flat_kernels import box_medians

    rows, cols = image.shape
    r_edges, c_edges = bin_edges(rows, size), bin_edges(cols, size)
    medians = np.empty((r_edges.size - 1, c_edges.size - 1))
    box_medians(np.ascontiguousarray(image, np.float32), r_edges.astype(np.int64), c_edges.astype(np.int64), medians)
    r_centres = (r_edges[:-1] + r_edges[1:] - 1) / 2.0
    c_centres = (c_edges[:-1] + c_edges[1:] - 1) / 2.0
    kr, kc = min(3, medians.shape[0] - 1), min(3, medians.shape[1] - 1)
    spline = RectBivariateSpline(r_centres, c_centres, medians, kx=kr, ky=kc,
                                 bbox=[0, rows - 1, 0, cols - 1], s=0)
    return spline(np.arange(rows), np.arange(cols)).astype(np.float32)


@cache
def trimmed_spread_factor(n: int) -> float:
    """sigma / the expected std (ddof 1) of n Gaussian values without their two highest and their
    lowest: what the clip multiplies the others' spread by (1.11 for 80 frames, 1.43 for 15) so
    that its threshold is `nsigma` true sigmas. Deterministic (seeded draws, 0.1 % precision)."""
    if n < 6:
        return 1.0
    draws = max(2000, 4_000_000 // n)
    samples = np.sort(np.random.default_rng(n).standard_normal((draws, n)), axis=1)[:, 1:-2]
    return float(1.0 / samples.std(axis=1, ddof=1).mean())


def prnu_percent(flat: np.ndarray, eflat: np.ndarray) -> tuple[float, float]:
    """(PRNU %, noise %) of a master flat: clipped std of its pixels with the stack's own noise
    (median of EFLAT) removed in quadrature."""
    stats = clipped_stats(flat, CLIP_SIGMA)
    noise = float(np.median(eflat)) if eflat.size else 0.0
    spread = stats.std / stats.mean if stats.mean else math.nan
    value = math.sqrt(max(spread ** 2 - noise ** 2, 0.0))
    return 100.0 * value, 100.0 * noise


# ---------------------------------------------------------------------------------------------
# One CCD quadrant, every column: each frame added to its column's sums as it is read
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
    illumination_stability_pct: float  # worst frame: rms departure of its binned map from the column's
    dropped: int = 0  # pixel values the clip left out (cosmic rays)


PRNU_METHOD = (f"{CLIP_SIGMA:g}-sigma clipped std of the master flat's image pixels, its noise (median EFLAT) "
               "removed in quadrature, percent")


def column_values(columns: Sequence[ColumnFlat], ordered: Sequence[str]) -> dict[str, Any]:
    """A quadrant's master-flat values from its column flats: lists in the test's column order
    (`ordered` labels; a column the quadrant lacks is NaN, 0 frames), the worst stability."""
    by_label = {c.label: c for c in columns}
    listed = [by_label.get(label) for label in ordered]
    return {
        "prnu_pct": [c.prnu_pct if c else math.nan for c in listed],
        "flat_fluence_adu": [c.fluence_adu if c else math.nan for c in listed],
        "flat_noise_pct": [c.noise_pct if c else math.nan for c in listed],
        "illumination_rms_pct": [c.illumination_rms_pct if c else math.nan for c in listed],
        "illumination_stability_pct": max((c.illumination_stability_pct for c in columns), default=math.nan),
        "frames_combined": [c.frames if c else 0 for c in listed],
    }


def image_area(geometry: CCDGeometry, quadrant: str) -> tuple[slice, slice]:
    """(rows, cols) of the image area in a quadrant as read (frame orientation)."""
    rows, cols = geometry.canonical_region("image")
    flip_rows, flip_cols = geometry.flips(quadrant)
    if flip_rows:
        rows = slice(geometry.quad_height - rows.stop, geometry.quad_height - rows.start)
    if flip_cols:
        cols = slice(geometry.quad_width - cols.stop, geometry.quad_width - cols.start)
    return rows, cols


def read_edges(edges: np.ndarray, length: int, flipped: bool) -> np.ndarray:
    """Canonical box edges as they lie in a quadrant as read: the same boxes, mirrored if flipped."""
    return (length - edges[::-1]).astype(np.int64) if flipped else edges.astype(np.int64)


class ColumnSums:
    """The running sums of one column (fluence) of one quadrant: frames added in batches of
    BATCH_FRAMES (compiled.flat_kernels.accumulate_flat), the clipped mean taken at the end.
    Memory: the sums (float64 sum and sum of squares, float32 extremes: 28 bytes a pixel, 119 MB
    for a full-size quadrant), one batch of frames (uint16, 8 x 8.5 MB) and each frame's binned
    illumination (6.7 k boxes), whatever the column's frame count."""

    def __init__(self, label: str, geometry: CCDGeometry, quadrant: str):
        from .compiled.flat_kernels import accumulate_flat

        self._accumulate = accumulate_flat
        self.label, self.geometry, self.quadrant = label, geometry, quadrant
        self.area = image_area(geometry, quadrant)
        rows, cols = geometry.image_rows, geometry.image_cols
        size = bin_size(geometry)
        flip_rows, flip_cols = geometry.flips(quadrant)
        r_edges = read_edges(bin_edges(rows, size), rows, flip_rows)
        self.c_edges = read_edges(bin_edges(cols, size), cols, flip_cols)
        self.row_box = (np.searchsorted(r_edges, np.arange(rows), side="right") - 1).astype(np.int64)
        self.box_pixels = np.diff(r_edges)[:, None] * np.diff(self.c_edges)[None, :]
        self.sums, self.squares = np.zeros((rows, cols)), np.zeros((rows, cols))
        self.high1 = np.full((rows, cols), -np.inf, np.float32)
        self.high2 = np.full((rows, cols), -np.inf, np.float32)
        self.low = np.full((rows, cols), np.inf, np.float32)
        self.batch = np.empty((BATCH_FRAMES, rows, cols), np.uint16)
        self.batch_offsets = np.empty(BATCH_FRAMES, np.float32)
        self.batch_scales = np.empty(BATCH_FRAMES, np.float32)
        self.pending = 0
        self.levels: list[float] = []
        self.maps: list[np.ndarray] = []  # per frame: its binned illumination (box means, ADU)

    def add(self, counts: np.ndarray, offset: float, level: float) -> None:
        """A frame's quadrant (uint16, as read), its offset and level (ADU)."""
        k = self.pending
        self.batch[k] = counts[self.area]
        self.batch_offsets[k] = offset
        self.batch_scales[k] = np.float32(1.0) / np.float32(level)  # numpy's float32 1 / level
        self.levels.append(level)
        self.pending += 1
        if self.pending == BATCH_FRAMES:
            self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        boxes = np.zeros((self.pending, *self.box_pixels.shape), np.int64)
        self._accumulate(self.batch, self.pending, self.batch_offsets, self.batch_scales, self.row_box, self.c_edges,
                         boxes, self.sums, self.squares, self.high1, self.high2, self.low)
        for k in range(self.pending):
            self.maps.append(boxes[k] / self.box_pixels - float(self.batch_offsets[k]))
        self.pending = 0

    def finish(self) -> tuple[np.ndarray, np.ndarray, ColumnFlat]:
        """(FLAT, EFLAT as canonical image-area float32 planes, the column's figures); the sums freed."""
        from .compiled.flat_kernels import clipped_mean

        self._flush()
        n = len(self.levels)
        mean, error = np.empty_like(self.high1), np.empty_like(self.high1)
        dropped = clipped_mean(self.sums, self.squares, self.high1, self.high2, self.low, n,
                               CLIP_SIGMA * trimmed_spread_factor(n), MIN_CLIP_FRAMES, mean, error)
        del self.sums, self.squares, self.high1, self.high2, self.low, self.batch
        stack = np.ascontiguousarray(self.geometry.to_canonical(mean, self.quadrant))
        del mean
        model = illumination_model(stack, bin_size(self.geometry))
        flat = stack / model
        del stack
        eflat = self.geometry.to_canonical(error, self.quadrant) / model
        prnu, noise = prnu_percent(flat, eflat)
        maps = np.stack(self.maps)  # binned maps as read: the same boxes, orientation irrelevant to an rms
        shapes = maps / maps.mean(axis=(1, 2), keepdims=True)
        reference = np.median(shapes, axis=0)
        stability = float(np.max(np.sqrt(np.mean((shapes / reference - 1.0) ** 2, axis=(1, 2))))) if n > 1 else 0.0
        figures = ColumnFlat(self.label, n, float(np.mean(self.levels)), prnu, noise,
                             100.0 * float(np.std(model) / np.mean(model)), 100.0 * stability, int(dropped))
        return flat, eflat, figures


class QuadrantFlats:
    """The master flats of one CCD quadrant, every column, fed frame by frame in OBSID order:
    each frame's quadrant goes into its column's sums (ColumnSums) and a column is finished as
    soon as its last frame is in (its planes handed to `sink`, its sums freed), so at most the
    columns whose frames interleave are held. The inverse-variance weighted mean of the column
    flats (the per-CCD master) is summed as they finish (float32, as the planes)."""

    def __init__(self, quadrant: str, geometry: CCDGeometry, columns: Sequence[str | None], sink: FlatSink):
        self.quadrant, self.geometry, self.columns, self.sink = quadrant, geometry, columns, sink
        self.last = {label: i for i, label in enumerate(columns) if label is not None}
        self.open: dict[str, ColumnSums] = {}
        self.members: dict[str, list[int]] = {}  # column -> indices of the frames combined
        self.figures: list[ColumnFlat] = []
        self.weight_sum: np.ndarray | None = None
        self.weighted: np.ndarray | None = None

    def feed(self, index: int, counts: np.ndarray, offset: float, level: float) -> None:
        label = self.columns[index]
        if label is None or not (math.isfinite(level) and level > 0):  # not a flat; shutter failed
            return
        column = self.open.get(label)
        if column is None:
            column = self.open[label] = ColumnSums(label, self.geometry, self.quadrant)
        column.add(counts, offset, level)
        self.members.setdefault(label, []).append(index)
        if index == self.last[label]:
            self._finish(label)

    def _finish(self, label: str) -> None:
        flat, eflat, figures = self.open.pop(label).finish()
        self.sink.column(label, flat, eflat, figures.frames)
        self.figures.append(figures)
        variance = np.maximum(eflat, 1e-6) ** 2
        if self.weight_sum is None:
            self.weight_sum, self.weighted = 1.0 / variance, flat / variance
        else:
            self.weight_sum += 1.0 / variance
            self.weighted += flat / variance

    def finish(self) -> list[ColumnFlat]:
        """Every column finished (those whose last frame was not fed too), the combination handed over."""
        for label in sorted(self.open, key=lambda name: self.last[name]):
            self._finish(label)
        if self.weight_sum is not None:
            self.sink.combined(self.weighted / self.weight_sum, 1.0 / np.sqrt(self.weight_sum),
                               sum(f.frames for f in self.figures))
        return self.figures


class FlatSink(Protocol):
    """Where a quadrant's finished planes go (canonical image area, float32): a column's master,
    then the combination of the columns."""

    def column(self, label: str, flat: np.ndarray, eflat: np.ndarray, frames: int) -> None: ...

    def combined(self, flat: np.ndarray, eflat: np.ndarray, frames: int) -> None: ...


@dataclass
class TargetSink:
    """Planes written straight into the allocated FITS files (the unit that reads the frames itself)."""

    geometry: CCDGeometry
    quadrant: str
    targets: dict[str, FlatTarget]
    combined_target: FlatTarget | None

    def column(self, label: str, flat: np.ndarray, eflat: np.ndarray, frames: int) -> None:
        _write_quadrant(self.targets[label], self.geometry, self.quadrant, flat, eflat, float(frames))

    def combined(self, flat: np.ndarray, eflat: np.ndarray, frames: int) -> None:
        if self.combined_target is not None:
            _write_quadrant(self.combined_target, self.geometry, self.quadrant, flat, eflat, float(frames))


class StagingSink:
    """Planes appended to a staging file of the worker's (float32, native order, canonical image
    area, in the order `planes` lists), named `<name>.part` until complete, then renamed: the
    products do not exist yet when the check reads the frames (their headers say which frames
    were usable, known after the check), so `do_master_flats` copies the planes into them."""

    def __init__(self, path: Path):
        self.path, self.partial = path, path.with_name(path.name + ".part")
        self.planes: list[tuple[str | None, str, int]] = []  # (column label, None: the combination; FLAT | EFLAT; frames)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.partial, "wb")  # noqa: SIM115 - appended to column by column, closed in close()

    def column(self, label: str | None, flat: np.ndarray, eflat: np.ndarray, frames: int) -> None:
        for name, plane in (("FLAT", flat), ("EFLAT", eflat)):
            np.ascontiguousarray(plane, np.float32).tofile(self._file)
            self.planes.append((label, name, frames))

    def combined(self, flat: np.ndarray, eflat: np.ndarray, frames: int) -> None:
        self.column(None, flat, eflat, frames)

    def close(self) -> None:
        self._file.close()
        os.replace(self.partial, self.path)

    def discard(self) -> None:
        self._file.close()
        self.partial.unlink(missing_ok=True)


@dataclass(frozen=True)
class StagedFlats:
    """What the check's read made of one CCD quadrant (the consumer's result)."""

    path: Path  # the staging file
    shape: tuple[int, int]  # of each plane (canonical image area)
    planes: list[tuple[str | None, str, int]]  # (column label, None: the combination; FLAT | EFLAT; frames)
    members: dict[str, tuple[int, ...]]  # column -> indices (in the CCD's frame list) combined
    figures: list[ColumnFlat]


@dataclass(frozen=True)
class FlatPlan:
    """Per frame of a CCD (the check's list, OBSID order): its column label, None if not a lit flat."""

    columns: tuple[str | None, ...]
    staging: Path  # folder of the staged planes (the task's work folder)
    ccd: int


class FlatReadConsumer:
    """The check's read feeding the master flats (Family.per_quadrant): each frame's quadrant,
    with the offset and level the check measured on the same counts, into QuadrantFlats; the
    planes staged in a file (StagingSink)."""

    def __init__(self, quadrant: str, geometry: CCDGeometry, plan: FlatPlan):
        self.sink = StagingSink(plan.staging / f"flat_CCD{plan.ccd}_{quadrant}.f32")
        self.flats = QuadrantFlats(quadrant, geometry, plan.columns, self.sink)
        self.shape = (geometry.image_rows, geometry.image_cols)

    def add(self, index: int, counts: np.ndarray, stats: QuadrantStats) -> None:
        offset = stats.prescan.clipped_mean
        self.flats.feed(index, counts, offset, stats.image.clipped_mean - offset)

    def result(self) -> StagedFlats:
        try:
            figures = self.flats.finish()
            self.sink.close()
        except BaseException:
            self.sink.discard()
            raise
        members = {label: tuple(indices) for label, indices in self.flats.members.items()}
        return StagedFlats(self.sink.path, self.shape, self.sink.planes, members, figures)


def start_flat_read(quadrant: str, geometry: CCDGeometry, plan: FlatPlan) -> FlatReadConsumer:
    """Worker: the consumer of one (CCD, quadrant) of the check's read (module-level: picklable)."""
    return FlatReadConsumer(quadrant, geometry, plan)


def plan_flat_read(ctx: TaskContext, ccd: int, frames: list[Any]) -> FlatPlan | None:
    """Main process: the column of each of the CCD's frames (lit flats only), or None if none is."""
    infos = frame_infos(ctx)
    columns = tuple(infos[f.obsid].label if f.obsid in infos and infos[f.obsid].lit else None for f in frames)
    if all(label is None for label in columns):
        return None
    return FlatPlan(columns, ctx.staging_path("flat_read"), ccd)


def flat_unit(unit: tuple[int, str], columns: list[ColumnInput], geometry: CCDGeometry,
              combined: FlatTarget | None) -> list[ColumnFlat]:
    """Worker: master flats of every column of one quadrant, the frames read here (when the check's
    read could not make them), written into their FITS files, the combination into `combined`.
    The same sums as the check's read: each frame's quadrant read once, in OBSID order."""
    _, quadrant = unit
    # column after column: one column's sums held at a time
    order = [(path, c.label, offset, level) for c in columns for path, offset, level in zip(c.paths, c.offsets, c.levels)]
    sink = TargetSink(geometry, quadrant, {c.label: c.target for c in columns}, combined)
    flats = QuadrantFlats(quadrant, geometry, [label for _, label, _, _ in order], sink)
    rows, cols = geometry.quadrant_slices(quadrant)
    counts = np.empty((geometry.quad_height, geometry.quad_width), np.uint16)
    for index, (path, _, offset, level) in enumerate(order):
        with read_frame(path) as frame:
            frame.section(rows, cols, out=counts)
        flats.feed(index, counts, offset, level)
    return flats.finish()


def staged_unit(unit: tuple[int, str], staged: StagedFlats, targets: dict[str, FlatTarget],
                combined: FlatTarget | None, geometry: CCDGeometry) -> list[ColumnFlat]:
    """Worker: the planes the check's read staged for one quadrant copied into the FITS files."""
    _, quadrant = unit
    if not staged.planes:  # no usable frame in this quadrant: nothing to copy (an empty file cannot be mapped)
        staged.path.unlink(missing_ok=True)
        return staged.figures
    planes = np.memmap(staged.path, dtype=np.float32, mode="r", shape=(len(staged.planes), *staged.shape))
    try:
        sink = TargetSink(geometry, quadrant, targets, combined)
        for i in range(0, len(staged.planes), 2):
            label, _, frames = staged.planes[i]
            if label is None:
                sink.combined(planes[i], planes[i + 1], frames)
            else:
                sink.column(label, planes[i], planes[i + 1], frames)
    finally:
        del planes
    staged.path.unlink(missing_ok=True)
    return staged.figures


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
        readouts = ctx.need(FrameMeasures).readouts  # what the check's read made, if it fed this family
        copies, reads, again, combined = [], [], [], {}
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
                columns = [c for c in (_usable(c) for c in columns) if c.paths]
                staged, why = staged_flats(readouts.get((ccd, q)), columns)
                if staged is not None:
                    copies.append(((ccd, q), staged, {c.label: c.target for c in columns}, combined_target, geometry))
                else:
                    reads.append(((ccd, q), columns, geometry, combined_target))
                    again.append(f"CCD{ccd}{q} ({why})")
        if again:
            ctx.log.info(f"master flats: {len(again)} quadrant(s) read the frames again: {'; '.join(again)}")
        flats = dict(zip([call[0] for call in copies + reads],
                         ctx.map_units(staged_unit, copies) + ctx.map_units(flat_unit, reads)))
        ordered = [labels[c] for c in column_ids]
        dropped = sum(c.dropped for columns in flats.values() for c in columns)
        combined_values = sum(c.frames for columns in flats.values() for c in columns) * geometry.image_pixels
        ctx.log.info(f"master flats: {dropped} pixel values of {combined_values} dropped by the clip (cosmic rays)")
        for (ccd, q), columns in sorted(flats.items()):
            for name, value in column_values(columns, ordered).items():
                out.value(name, value, ccd, q)
        out.value("flat_columns", ordered)
        out.value("wavelength_nm", wavelength)
        out.value("prnu_method", PRNU_METHOD)
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
            (f"Per column and CCD the master flat at {wavelength} nm: per-pixel clipped mean of the offset-subtracted "
            "frames each divided by its level (of each pixel's values, the two highest and the lowest dropped if "
            f"{CLIP_SIGMA:g} sigma from the others: cosmic rays), divided by the column's smooth illumination model "
            f"(bicubic spline through {bin_size(geometry)}-px box medians). Extensions FLAT, EFLAT (error of the mean), "
            "NCOMB; provenance "
            "in the primary header. PRNU: clipped std of the flat with its noise removed in quadrature. "
            "Illumination stability: the worst frame's rms departure of its binned illumination from the "
            f"column's. Table `products/{name}`."),
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
                  method: str = "clipped mean(frame/level) / illum. model") -> dict[str, int]:
        from astropy.io import fits

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


def staged_flats(readout: Any, columns: list[ColumnInput]) -> tuple[StagedFlats | None, str]:
    """The check's read's master flats of a quadrant if made from exactly these columns' frames
    with these offsets (and staged on disk); else None and why not."""
    if readout is None:
        return None, "the check's read did not make them"
    if readout.error or not isinstance(readout.result, StagedFlats):
        return None, readout.error or "the check's read did not make them"
    staged: StagedFlats = readout.result
    paths = dict(zip(readout.fed, readout.paths))
    made = {label: [paths.get(i) for i in indices] for label, indices in staged.members.items()}
    wanted = {c.label: list(c.paths) for c in columns}
    if made != wanted or not readout.matches([p for c in columns for p in c.paths],
                                             [o for c in columns for o in c.offsets]):
        return None, "frames or offsets differ from those the check's read combined"
    if not staged.path.is_file():
        return None, f"its staged planes {staged.path.name} are gone"
    return staged, ""


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
    per_quadrant=QuadrantConsumers(plan=plan_flat_read, start=start_flat_read, subtasks=("do_master_flats", "meta")),
    fits_products=True,
)
TASK = FlatTask
