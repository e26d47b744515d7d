"""One pass over the frames of a test: each quadrant band of each frame read once, every consumer fed.

A family that declares `per_band` (family.BandConsumers) has its frames measured here rather than
one frame at a time (measures.py): one work unit per (CCD, quadrant) opens the CCD's frames, takes
each frame's prescan statistics (the offset the stacks subtract: a few columns), then walks the
quadrant in row bands (stacking.quadrant_bands) and, from the one read of each band of each frame,
feeds
- the check's per-frame measurements: exact uint16 histograms of the prescan, image and overscan
  over the rows the readout window read, saturated and lost pixels (the same statistics as
  measures.quadrant_stats, from the same histograms: the same numbers);
- the read-noise histograms and row/column profiles (`NoiseAccumulator`, the bias family's `basic`);
- the stack (stacking.StackWriter: the master's median and spread into its float32 staging file).
Memory is bounded by the band size whatever the frame count (band_rows_for).

The consumers' results are kept with the measurements (`QuadrantPass`) and used by the sub-tasks
only if the frames and offsets they would use are those the pass used (`matches`): a frame left
out afterwards (unusable in another quadrant, another shape) makes them recompute the old way.
"""

from __future__ import annotations

import math
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..formats.fits import Frame, FrameIndex, index_frame, read_frame
from ..formats.geometry import CCDGeometry
from .measures import (
    REGIONS,
    QuadrantStats,
    quadrant_stats,
    region_columns,
    unreadable_reason,
    window_rows,
)
from .stacking import (
    Band,
    StackStats,
    StackTarget,
    StackWriter,
    band_rows_for,
    quadrant_bands,
)
from .stats import (
    ADC_SATURATED,
    ADU_BINS,
    LOST_PIXEL,
    RegionStats,
    histogram_region_stats,
    histogram_stats,
    region_stats,
)

RESIDUAL_RANGE_ADU = 64  # residuals to the per-pixel mean beyond this are outliers (RON ~1-2 ADU)


# ---------------------------------------------------------------------------------------------
# Read noise and profiles from residuals to the per-pixel mean (the bias family's `basic`)
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class QuadrantNoise:
    ron: dict[str, float]  # region -> RON (ADU) from the residuals to the per-pixel mean
    row_profile: list[float]  # canonical image rows: mean offset-subtracted level (ADU)
    col_profile: list[float]  # canonical image columns


class NoiseAccumulator:
    """Read noise of one quadrant: each frame minus the per-pixel mean of all frames removes every
    fixed pattern; the residuals are kept exactly as integers, n * x_i - sum_j x_j, in one histogram
    per frame and region (per frame, so an offset drift between frames does not count as noise).
    Bands come in frame orientation, as read (no strided copies): the column labels and the
    profiles are flipped instead; bands without image rows are skipped."""

    def __init__(self, n: int, offsets: Sequence[float], geometry: CCDGeometry, quadrant: str):
        self.n, self.geometry = n, geometry
        self.flip_rows, self.flip_cols = geometry.flips(quadrant)
        self.offset_sum = float(np.sum(offsets))
        self.image_cols = _frame_columns(region_columns(geometry, "image", trim=False), geometry, self.flip_cols)
        self.reach = RESIDUAL_RANGE_ADU * n  # residual histogram half-width, in units of 1/n ADU
        self.bins = 2 * self.reach + 1
        # one bincount per frame and band for the three regions: each column's residuals are shifted
        # into its region's block of bins (columns of no region, the trimmed edges, into a last block)
        label = np.full(geometry.quad_width, len(REGIONS), np.int32)
        for index, region in enumerate(REGIONS):
            label[region_columns(geometry, region)] = index
        self.shift = ((label[::-1] if self.flip_cols else label) * self.bins + self.reach).astype(np.int64)
        self.counts = np.zeros((n, (len(REGIONS) + 1) * self.bins), np.int64)  # per frame, region blocks
        self.row_sum = np.zeros(geometry.image_rows)
        self.col_sum = np.zeros(geometry.image_cols)
        self.image_buffer = np.empty((0, 0), np.float64)

    def image_band_rows(self, band: Band) -> tuple[int, int]:
        """The band's image rows as read (frame orientation): (first, stop), empty without any."""
        if band.image_rows == 0:
            return 0, 0  # parallel overscan: not part of the region statistics
        height = band.frame_rows.stop - band.frame_rows.start
        return (height - band.image_rows, height) if self.flip_rows else (0, band.image_rows)

    def add(self, band: Band, sections: Sequence[np.ndarray]) -> None:
        """One band of the n frames on its own (the pass feeds `counts` and `add_profiles` itself)."""
        first, stop = self.image_band_rows(band)
        if stop <= first:
            return
        cube = np.stack(sections)
        total = np.empty(cube.shape[1:], np.int64)
        fuse_band(cube, np.arange(self.n), noise=self, noise_rows=(first, stop), total=total)
        self.add_profiles(band, total)

    def add_profiles(self, band: Band, total: np.ndarray) -> None:
        """Row and column profiles from the band's per-pixel sums of the frames (`total`, as read)."""
        first, stop = self.image_band_rows(band)
        if stop <= first:
            return
        rows = stop - first
        # float64(sum) - offsets into a buffer kept band after band (a fresh 6 MB array per band
        # cost its page faults); C order, as numpy's `astype(float64) - offset_sum` made it: the same sums
        width = self.image_cols.stop - self.image_cols.start
        if self.image_buffer.shape[0] < rows:
            self.image_buffer = np.empty((rows, width), np.float64)
        image = self.image_buffer[:rows]
        np.subtract(total[first:stop, self.image_cols], self.offset_sum, out=image, dtype=np.float64)
        row_sums, col_sums = image.sum(axis=1), image.sum(axis=0)
        self.row_sum[band.canonical_rows.start: band.canonical_rows.start + rows] += (
            row_sums[::-1] if self.flip_rows else row_sums)
        self.col_sum += col_sums[::-1] if self.flip_cols else col_sums

    def result(self) -> QuadrantNoise:
        n, geometry = self.n, self.geometry
        ron = {}
        for index, region in enumerate(REGIONS):
            # std(n x_i - sum) = n sigma sqrt((n-1)/n)
            block = self.counts[:, index * self.bins: (index + 1) * self.bins]
            variances = [histogram_stats(h, -self.reach).std ** 2 for h in block]
            ron[region] = math.sqrt(float(np.nanmean(variances)) / (n * (n - 1))) if n > 1 else math.nan
        return QuadrantNoise(
            ron=ron,
            row_profile=(self.row_sum / (n * geometry.image_cols)).tolist(),
            col_profile=(self.col_sum / (n * geometry.image_rows)).tolist(),
        )


def fuse_band(cube: np.ndarray, used: np.ndarray, *, measure_rows: Sequence[tuple[int, int]] = (),
              measure_shift: np.ndarray | None = None, measure_counts: np.ndarray | None = None, noise: NoiseAccumulator | None = None,
              noise_rows: tuple[int, int] = (0, 0), total: np.ndarray | None = None,
              stack: StackWriter | None = None, planes: np.ndarray | None = None) -> None:
    """One band of frames (uint16 cube, as read) through the compiled loop (kernels.sweep),
    feeding whichever consumers are given: the frames' measurement histograms (rows
    `measure_rows[k]` of frame k counted into `measure_counts[k]`, shifted by column), the noise of the
    `used` frames over `noise_rows` (sums into `total`), the stack of the `used` frames into
    `planes` (median, spread)."""
    from .compiled.kernels import sweep  # compiled: numba loaded only where units run

    consumers: dict[str, Any] = {}
    if noise is not None:
        consumers.update(noise_rows=noise_rows, noise_shift=noise.shift, reach=noise.reach, noise_counts=noise.counts,
                         total=total)
    if stack is not None and planes is not None:
        consumers.update(offsets=stack.offsets32, pairs=stack.pairs, spread_error=stack.target.spread == "error",
                         median=planes[0], spread=planes[1])
    sweep(cube, used=used, measure_rows=measure_rows, measure_shift=measure_shift, measure_counts=measure_counts,
          **consumers)


# ---------------------------------------------------------------------------------------------
# The per-frame measurements, accumulated band by band
# ---------------------------------------------------------------------------------------------

def _frame_columns(canonical: slice, geometry: CCDGeometry, flip_cols: bool) -> slice:
    """The quadrant columns, in frame orientation, of canonical quadrant columns `canonical`."""
    if not flip_cols:
        return canonical
    return slice(geometry.quad_width - canonical.stop, geometry.quad_width - canonical.start)


class MeasureAccumulator:
    """measures.quadrant_stats of one frame's quadrant over canonical rows [first, stop), built from
    its bands: image and overscan histograms, saturated and lost pixels; the prescan's statistics
    are given (taken before the bands: the stacks subtract its clipped mean)."""

    def __init__(self, geometry: CCDGeometry, rows: slice, prescan: RegionStats, quadrant: str):
        self.rows, self.prescan = rows, prescan
        self.flip_rows, flip_cols = geometry.flips(quadrant)  # bands come in frame orientation, as read
        # one bincount per band: each column's counts shifted into its region's block of 65536 bins
        # (image 0, overscan 1, the other columns 2: counted for the saturated and lost pixels)
        label = np.full(geometry.quad_width, 2, np.int32)
        label[region_columns(geometry, "image")] = 0
        label[region_columns(geometry, "overscan")] = 1
        self.shift = ((label[::-1] if flip_cols else label) * ADU_BINS).astype(np.int64)
        self.counts = np.zeros(3 * ADU_BINS, np.int64)  # the pass may put a row of its own array here

    def band_rows(self, band: Band) -> tuple[int, int]:
        """The band's rows this frame counts, as read (frame orientation): (first, stop), maybe empty."""
        first = max(self.rows.start, band.canonical_rows.start) - band.canonical_rows.start
        stop = min(self.rows.stop, band.canonical_rows.stop) - band.canonical_rows.start
        if stop <= first:
            return 0, 0
        if self.flip_rows:  # canonical row j of the band is its row height - 1 - j as read
            height = band.frame_rows.stop - band.frame_rows.start
            first, stop = height - stop, height - first
        return first, stop

    def result(self) -> QuadrantStats:
        blocks = self.counts.reshape(3, ADU_BINS)
        saturated, lost = int(blocks[:, ADC_SATURATED].sum()), int(blocks[:, LOST_PIXEL].sum())
        # lost and saturated pixels left out (of a copy, only when there are any); the occupied
        # bins found once for the robust and the clipped statistics
        return QuadrantStats(prescan=self.prescan, image=histogram_region_stats(blocks[0]),
                             overscan=histogram_region_stats(blocks[1]), saturated=saturated, lost=lost)


StoredWords = tuple[np.ndarray, bool, np.uint16]  # a frame's stored words (uint16 view), byte-swap, BZERO flip


def stored_words(frame: Frame) -> StoredWords | None:
    """The frame's stored 16-bit words as kernels.read_region_histograms converts them, or None
    when the map is not a plain C-order 2-D array (read_band then asks frame.section)."""
    stored, bzero = frame.stored()
    if stored.ndim != 2 or not stored.flags.c_contiguous:
        return None
    return np.asarray(stored).view(np.uint16), not stored.dtype.isnative, np.uint16(0x8000 if bzero == 32768 else 0)


_NO_RUNS = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))
_NO_HISTOGRAMS = np.zeros((0, ADU_BINS), np.int64)


def read_band(frame: Frame, words: StoredWords | None, band: Band, out: np.ndarray) -> None:
    """The band's counts (uint16, as read: frame.section's) into `out`, converted in one compiled
    sweep of the stored words (read_region_histograms with no rows to count) instead of numpy's
    swapping copy and then its XOR pass over the copy."""
    # compiled: numba loaded only where units run
    from .compiled.kernels import read_region_histograms

    rows, cols = band.frame_rows, band.cols
    if words is None or rows.step not in (None, 1) or cols.step not in (None, 1):
        frame.section(rows, cols, out=out)
        return
    stored, swap, flip = words
    row0, col0 = rows.start, cols.start
    if not (0 <= row0 and row0 + out.shape[0] <= stored.shape[0] and 0 <= col0
            and col0 + out.shape[1] <= stored.shape[1] and out.flags.c_contiguous):
        frame.section(rows, cols, out=out)
        return
    read_region_histograms(stored, row0, col0, swap, flip, out, 0, 0, *_NO_RUNS, _NO_HISTOGRAMS)


def prescan_stats(frame: Frame, quadrant: str, geometry: CCDGeometry, rows: slice) -> RegionStats:
    """The trimmed prescan's statistics over `rows`, reading only the prescan columns."""
    block = frame.region(quadrant, "prescan", geometry)  # canonical, image rows, untrimmed columns
    return region_stats(block[rows, region_columns(geometry, "prescan")])


# ---------------------------------------------------------------------------------------------
# The work unit: one (CCD, quadrant), every frame of the CCD, each band read once
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class QuadrantPass:
    """What one (CCD, quadrant) unit of the pass gives back."""

    measures: list[QuadrantStats | str]  # per frame given: this quadrant's statistics, or why unreadable
    shapes: list[tuple[int, int] | None]  # per frame: its shape (None: unreadable)
    used: tuple[Path, ...] = ()  # frames that went into the noise and the stack
    offsets: tuple[float, ...] = ()  # their offsets (prescan clipped means)
    noise: QuadrantNoise | None = None
    stack: StackStats | None = None
    target: Path | None = None  # the float32 file the stack was written into

    def matches(self, paths: Sequence[Path], offsets: Sequence[float]) -> bool:
        """Did the consumers see exactly these frames with these offsets?"""
        return tuple(paths) == self.used and tuple(offsets) == self.offsets


def _quadrant_pass(unit: tuple[int, str], frames: list[tuple[Path, int, int | None]], noise: bool,
                       target: StackTarget | None, target_shape: tuple[int, int] | None = None,
                       hot_threshold_adu: float | None = None,
                       indexes: Sequence[FrameIndex | None] | None = None) -> QuadrantPass:
    """Worker: one quadrant of every frame of a CCD read once, band by band (see the module doc).

    `frames`: (path, vstart, vend) of each frame on disk. Frames that cannot be read are said
    (as measures.frame_unit says them); frames of another shape than the first readable one, or
    whose prescan has no offset, are measured but left out of the noise and the stack; `indexes`:
    each frame's fits.FrameIndex (mapped without astropy parsing its headers) or None."""
    _, quadrant = unit
    measures: list[QuadrantStats | str] = [""] * len(frames)
    shapes: list[tuple[int, int] | None] = [None] * len(frames)
    with ExitStack() as stack:
        members: list[tuple[int, Frame, MeasureAccumulator]] = []
        geometry: CCDGeometry | None = None
        for i, (path, vstart, vend) in enumerate(frames):
            try:
                frame = stack.enter_context(read_frame(path, indexes[i] if indexes else None))
                frame_geometry = frame.geometry
                rows = window_rows(frame_geometry, vstart, vend)
                if geometry is None:
                    geometry = frame_geometry
                if frame_geometry.shape != geometry.shape:  # measured alone, left out of the consumers
                    measures[i] = quadrant_stats(frame, quadrant, frame_geometry, rows)
                    shapes[i] = frame_geometry.shape
                    continue
                prescan = prescan_stats(frame, quadrant, frame_geometry, rows)
            except (ValueError, OSError) as exc:  # FrameError is a ValueError
                measures[i] = unreadable_reason(path, exc)
                continue
            shapes[i] = frame_geometry.shape
            members.append((i, frame, MeasureAccumulator(frame_geometry, rows, prescan, quadrant)))
        if geometry is None or not members:
            return QuadrantPass(measures, shapes)
        used = [(i, frame, acc) for i, frame, acc in members if math.isfinite(acc.prescan.clipped_mean)]
        offsets = [acc.prescan.clipped_mean for _, _, acc in used]
        n = len(used)
        noise_acc = NoiseAccumulator(n, offsets, geometry, quadrant) if noise and n >= 2 else None
        stacking = target is not None and n > 0 and tuple(target_shape or ()) == geometry.shape
        writer = StackWriter(quadrant, offsets, geometry, target) if stacking and target is not None else None
        in_use = [k for k, (_, _, acc) in enumerate(members) if math.isfinite(acc.prescan.clipped_mean)]
        measure_counts = np.zeros((len(members), 3 * ADU_BINS), np.int64)
        for k, (_, _, acc) in enumerate(members):
            acc.counts = measure_counts[k]
        words = [stored_words(frame) for _, frame, _ in members]
        band_rows = band_rows_for(max(1, len(members)), geometry)
        # one buffer kept band after band, each band's cube a C-order view of its start (the last,
        # shorter band too: the compiled loop takes it without a contiguous copy)
        buffer = np.empty(len(members) * band_rows * geometry.quad_width, np.uint16)
        total = np.empty((band_rows, geometry.quad_width), np.int64)
        planes = np.empty((2, band_rows, geometry.quad_width), np.float32) if writer is not None else None
        try:
            for band in quadrant_bands(geometry, quadrant, band_rows):
                height = band.frame_rows.stop - band.frame_rows.start
                sections = buffer[: len(members) * height * geometry.quad_width].reshape(
                    len(members), height, geometry.quad_width)
                for k, (_, frame, _) in enumerate(members):
                    try:
                        read_band(frame, words[k], band, sections[k])
                    except (ValueError, OSError) as exc:
                        raise PassFailed(unreadable_reason(frame.path, exc)) from exc
                noise_rows = noise_acc.image_band_rows(band) if noise_acc is not None else (0, 0)
                fuse_band(sections, np.asarray(in_use, np.int64),
                          measure_rows=[acc.band_rows(band) for _, _, acc in members],
                          measure_shift=members[0][2].shift, measure_counts=measure_counts,
                          noise=noise_acc, noise_rows=noise_rows, total=total[:height],
                          stack=writer, planes=planes[:, :height] if planes is not None else None)
                if noise_acc is not None:
                    noise_acc.add_profiles(band, total[:height])
                if writer is not None and planes is not None:
                    writer.put(band, planes[0, :height], planes[1, :height])
            stack_stats = writer.finish(hot_threshold_adu) if writer is not None else None
        finally:
            if writer is not None:
                writer.release()
    for i, _, acc in members:
        measures[i] = acc.result()
    return QuadrantPass(measures, shapes, tuple(frames[i][0] for i, _, _ in used), tuple(offsets),
                        noise_acc.result() if noise_acc is not None else None, stack_stats,
                        target.path if writer is not None and target is not None else None)


class PassFailed(RuntimeError):
    """A frame could not be read half-way through the pass: the caller measures frame by frame."""


def run_pass(ctx: Any, frames_by_ccd: dict[int, list[Any]]) -> tuple[dict, dict]:
    """The pass over a test's frames for `ctx.family.per_band`: ((obsid, ccd) -> FrameStats or
    why not, (ccd, quadrant) -> QuadrantPass). A unit that fails (a frame gone half-way) leaves its
    CCD to the frame-by-frame measurement, which says why."""
    from ..formats.geometry import QUADRANTS
    from .measures import frame_call, frame_unit, frames_from_quadrants
    from .stacking import (
        allocate_fits,
        check_free_space,
        fits_size,
        raw_path,
        stack_file_name,
    )

    noise, spec = ctx.family.per_band.wanted(ctx.enabled)
    targets: dict[int, StackTarget] = {}
    finals: dict[int, Path] = {}  # ccd -> its product (staging), whose float32 stack the pass fills
    shape = _first_shape(frames_by_ccd) if spec is not None else None
    if spec is not None:
        if shape is not None:
            from astropy.io import fits

            finals = {ccd: ctx.staging_path(stack_file_name(ctx, ccd, spec.kind))
                      for ccd, frames in frames_by_ccd.items() if frames}
            raws = {ccd: raw_path(final) for ccd, final in finals.items()}
            try:
                if raws:
                    needed = sum(fits_size(fits.Header(), spec.extnames, shape) for _ in raws)
                    check_free_space(next(iter(raws.values())).parent, needed, f"the {spec.kind} stacks")
                for ccd, raw in raws.items():
                    headers = {name: fits.Header([("BUNIT", "ADU")]) for name in spec.extnames}
                    offsets = allocate_fits(raw, fits.Header(), spec.extnames, shape, headers)
                    targets[ccd] = StackTarget(raw, offsets, spec.extnames[0], spec.extnames[1], spec.spread)
            except OSError as exc:  # a full disk: the check measures; the stacking sub-task says it
                ctx.log.info(f"stacks not made with the measurements ({getattr(exc, 'strerror', None) or exc})")
                for raw in raws.values():
                    raw.unlink(missing_ok=True)
                targets = {}
    calls, keys = [], []
    for ccd, frames in frames_by_ccd.items():
        if not frames:
            continue
        indexes = [index_frame(f.path) for f in frames]  # each frame's headers parsed once, here
        for q in QUADRANTS:
            keys.append((ccd, q))
            calls.append(((ccd, q), [frame_call(f) for f in frames], noise, targets.get(ccd), shape,
                          spec.hot_threshold_adu if spec else None, indexes))
    if targets and ctx.executor is not None:
        passes = _stack_and_compress(ctx, calls, keys, frames_by_ccd, targets, finals, spec)
    else:
        passes = dict(zip(keys, ctx.map_units(quadrant_pass_unit, calls)))
    by_frame: dict[tuple[int, int], Any] = {}
    for ccd, frames in frames_by_ccd.items():
        mine = [passes.get((ccd, q)) for q in QUADRANTS]
        if not frames:
            continue
        if any(not isinstance(p, QuadrantPass) for p in mine):  # fall back: frame by frame
            for q in QUADRANTS:
                passes.pop((ccd, q), None)
            results = ctx.map_units(frame_unit, [frame_call(f) for f in frames])
            by_frame.update({(f.obsid, ccd): r for f, r in zip(frames, results)})
            continue
        by_frame.update(frames_from_quadrants(ccd, frames, mine))
    return by_frame, passes


def _stack_and_compress(ctx: Any, calls: list[tuple], keys: list[tuple[int, str]], frames_by_ccd: dict[int, list[Any]],
                        targets: dict[int, StackTarget], finals: dict[int, Path],
                        spec: Any) -> dict[tuple[int, str], QuadrantPass | str]:
    """The pass's units on the run's executor; as soon as the four of a CCD have stacked it, the
    compression of its product starts (stacking.start_compression), queued behind the pass, so
    that it runs while the check, the figures and the other sub-tasks go on in this process."""
    from ..formats.geometry import QUADRANTS
    from .stacking import read_noise_adu, start_compression

    underway = ctx.executor.start(quadrant_pass_unit, calls)
    passes = {}
    for ccd, frames in frames_by_ccd.items():
        mine = {q: underway.result(keys.index((ccd, q))) for q in QUADRANTS if (ccd, q) in keys}
        passes.update({(ccd, q): result for q, result in mine.items()})
        target = targets.get(ccd)
        if (target is None or len(mine) != len(QUADRANTS)
                or any(not isinstance(p, QuadrantPass) or p.stack is None or p.target != target.path
                       for p in mine.values())):
            continue
        stds = []  # per quadrant, the prescan noise of the frames stacked (stacking.frames_read_noise)
        for p in mine.values():
            used = set(p.used)
            stds.append([m.prescan.std for f, m in zip(frames, p.measures) if f.path in used and not isinstance(m, str)])
        start_compression(ctx, finals[ccd], target.path, read_noise_adu(stds), spec.extnames)
    return passes


def quadrant_pass_unit(*call: Any) -> QuadrantPass | str:
    """Worker: `_quadrant_pass`, or why it failed half-way (a frame unreadable meanwhile)."""
    try:
        return _quadrant_pass(*call)
    except PassFailed as exc:
        return str(exc)


def _first_shape(frames_by_ccd: dict[int, list[Any]]) -> tuple[int, int] | None:
    for frames in frames_by_ccd.values():
        for f in frames:
            try:
                with read_frame(f.path) as frame:
                    return frame.shape
            except (ValueError, OSError):
                continue
    return None
