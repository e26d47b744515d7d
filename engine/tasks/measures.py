"""The raw-frame measurements of every test: each frame of the data set read once per analysis.

A family that declares `per_band` (family.BandConsumers) has them made by the one pass over the
quadrant bands (bandpass.py), one that declares `per_quadrant` (family.QuadrantConsumers) by one
unit per (CCD, quadrant) that hands each quadrant read to its extraction (quadrant_pass.py):
both feed the family's consumers from the same read. The others get one work unit per frame here.

Per frame and quadrant, over the rows the readout window read: median, robust std and mean of
the prescan, image and overscan (stats.RegionStats, with the clipped mean the analyses subtract
as the offset), and how many pixels are saturated or lost. The generic check judges them; the
families' `prep` takes its offsets from them, so no analysis reads the frames for that again.

Edges are trimmed as the campaign did: prescan [25, 5] columns from its start and end, overscan
and image [5, 5].
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..formats.fits import Frame, FrameError, read_frame
from ..formats.geometry import QUADRANTS, CCDGeometry
from .context import TaskContext
from .stats import (
    ADC_SATURATED,
    ADU_BINS,
    LOST_PIXEL,
    RegionStats,
    histogram_region_stats,
)

TRIM_COLUMNS = {"prescan": (25, 5), "overscan": (5, 5), "image": (5, 5)}
REGIONS = ("prescan", "image", "overscan")


@dataclass(frozen=True)
class QuadrantStats:
    prescan: RegionStats
    image: RegionStats
    overscan: RegionStats
    saturated: int  # pixels at the ADC ceiling
    lost: int  # pixels at 0


@dataclass(frozen=True)
class FrameStats(Mapping[str, QuadrantStats]):
    """One frame's statistics: quadrant -> QuadrantStats, and the frame's geometry."""

    geometry: CCDGeometry
    quadrants: dict[str, QuadrantStats]

    def __getitem__(self, quadrant: str) -> QuadrantStats:
        return self.quadrants[quadrant]

    def __iter__(self) -> Iterator[str]:
        return iter(self.quadrants)

    def __len__(self) -> int:
        return len(self.quadrants)


def trimmed(region: np.ndarray, name: str, geometry: CCDGeometry) -> np.ndarray:
    """Cut the columns next to region edges, where transitions smear values."""
    start, end = TRIM_COLUMNS.get(name, (0, 0))
    # keep at least a few columns on the small test geometry
    width = region.shape[1]
    if start + end >= width - 2:
        start, end = min(start, width // 4), min(end, width // 4)
    return region[:, start: width - end if end else None]


def region_columns(geometry: CCDGeometry, region: str, trim: bool = True) -> slice:
    """Canonical quadrant columns of a region, edges trimmed (unless `trim` is False)."""
    _, cols = geometry.canonical_region(region)
    if not trim:
        return cols
    kept = trimmed(np.arange(cols.start, cols.stop)[None, :], region, geometry)[0]
    return slice(int(kept[0]), int(kept[-1]) + 1)


def quadrant_stats(frame: Frame, quadrant: str, geometry: CCDGeometry, rows: slice) -> QuadrantStats:
    """Offsets, noise and pixel-value extremes of one quadrant over canonical image rows `rows`:
    one histogram per region, from which every statistic comes (read_quadrant_stats)."""
    return read_quadrant_stats(frame, quadrant, geometry, rows)[1]


def read_quadrant_stats(frame: Frame, quadrant: str, geometry: CCDGeometry,
                        rows: slice) -> tuple[np.ndarray, QuadrantStats]:
    """One quadrant's counts (a fresh uint16 array, as read: what frame.section gives) and their
    quadrant_stats, in one compiled sweep over the frame's stored words: each row converted and
    histogrammed while it sits in the CPU cache (kernels.read_region_histograms), instead of a
    numpy copy and then a sweep reading the copy back from memory."""
    from .compiled.kernels import read_region_histograms  # compiled: numba loaded only where units run

    stored, bzero = frame.stored()
    q_rows, q_cols = geometry.quadrant_slices(quadrant)
    row0, row_stop, row_step = q_rows.indices(stored.shape[0])
    col0, col_stop, col_step = q_cols.indices(stored.shape[1])
    if row_step != 1 or col_step != 1 or not stored.flags.c_contiguous:  # not a plain section of a map
        counts = frame.section(q_rows, q_cols)
        return counts, counts_stats(counts, quadrant, geometry, rows)
    counts = np.empty((max(row_stop - row0, 0), max(col_stop - col0, 0)), np.uint16)
    first, stop = _measured_rows(geometry, quadrant, rows, counts.shape[0])
    histograms = np.zeros((len(REGIONS) + 1, ADU_BINS), np.int64)
    read_region_histograms(np.asarray(stored).view(np.uint16), row0, col0, not stored.dtype.isnative,
                           np.uint16(0x8000 if bzero == 32768 else 0), counts, first, stop,
                           *_column_runs(geometry, quadrant, counts.shape[1]), histograms)
    return counts, _stats_of_histograms(histograms)


def counts_stats(quadrant_counts: np.ndarray, quadrant: str, geometry: CCDGeometry, rows: slice) -> QuadrantStats:
    """quadrant_stats of a quadrant's counts already read (uint16, frame orientation, as read)."""
    from .compiled.kernels import region_histograms  # compiled: numba loaded only where units run

    counts = np.ascontiguousarray(quadrant_counts)
    first, stop = _measured_rows(geometry, quadrant, rows, counts.shape[0])
    histograms = np.zeros((len(REGIONS) + 1, ADU_BINS), np.int64)
    region_histograms(counts, first, stop, *_column_runs(geometry, quadrant, counts.shape[1]), histograms)
    return _stats_of_histograms(histograms)


def _measured_rows(geometry: CCDGeometry, quadrant: str, rows: slice, height: int) -> tuple[int, int]:
    """The quadrant's rows as read (first, stop) that hold canonical image rows `rows`; maybe empty."""
    first, stop = max(0, rows.start or 0), min(height, height if rows.stop is None else rows.stop)
    if geometry.flips(quadrant)[0]:  # canonical row j is row height - 1 - j as read
        first, stop = height - stop, height - first
    return first, max(first, stop)


@lru_cache(maxsize=64)
def _column_runs(geometry: CCDGeometry, quadrant: str, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(starts, stops, blocks): the runs of the quadrant's columns as read, each with the histogram
    it counts into: REGIONS' index, or a last block for the trimmed edges (lost and saturated
    pixels are counted there too). The fill columns of ground data put into LE1
    (geometry.fill_cols) are in no run: not pixels, not lost. Cached: the kernels only read them."""
    fill = -1
    labels = np.full(width, len(REGIONS), np.int64)
    for index, name in enumerate(REGIONS):
        labels[region_columns(geometry, name)] = index
    if geometry.fill_cols:
        labels[geometry.quad_width - geometry.fill_cols:] = fill
    if geometry.flips(quadrant)[1]:
        labels = labels[::-1]
    starts = np.flatnonzero(np.diff(labels, prepend=-2))  # where each run begins
    stops = np.append(starts[1:], width)[: starts.size]
    blocks = labels[starts]
    counted = blocks != fill
    return starts[counted].astype(np.int64), stops[counted].astype(np.int64), blocks[counted]


def _stats_of_histograms(histograms: np.ndarray) -> QuadrantStats:
    """QuadrantStats from the per-region histograms (REGIONS, then the other columns); the lost
    and saturated bins are emptied in place once counted (histogram_region_stats leaves them out)."""
    saturated, lost = int(histograms[:, ADC_SATURATED].sum()), int(histograms[:, LOST_PIXEL].sum())
    histograms[:, ADC_SATURATED] = histograms[:, LOST_PIXEL] = 0
    regions = {name: histogram_region_stats(histograms[index]) for index, name in enumerate(REGIONS)}
    return QuadrantStats(
        prescan=regions["prescan"], image=regions["image"], overscan=regions["overscan"], saturated=saturated, lost=lost,
    )


def window_rows(geometry: CCDGeometry, vstart: int, vend: int | None) -> slice:
    """Canonical image rows the readout window read."""
    vend = geometry.quad_height if vend is None else min(vend, geometry.quad_height)
    return slice(max(0, vstart), min(vend, geometry.image_rows))


def frame_stats(path: Path, vstart: int = 0, vend: int | None = None) -> FrameStats:
    """Per quadrant statistics of one frame file, over the image rows the readout window read."""
    with read_frame(path) as frame:
        geometry = frame.geometry
        rows = window_rows(geometry, vstart, vend)
        return FrameStats(geometry, {q: quadrant_stats(frame, q, geometry, rows) for q in QUADRANTS})


class PoorFrame(str):
    """Why a frame that could be read is left out of the analysis (all its prescan saturated or
    lost: no offset, no noise): a `str`, like the reason a frame is unreadable, so every analysis
    leaves it out alike; `flag` tells the check to raise POORQUALDATA rather than MISSDATA."""

    flag = "POORQUALDATA"


def unusable_reason(stats: FrameStats) -> str | None:
    """Why a measured frame cannot be analysed, or None. A quadrant whose prescan has no pixel
    between 0 and the ADC ceiling (a frame all saturated or all zero) has no offset: subtracting
    NaN would poison every stack and mean it enters."""
    bad = []
    for q in QUADRANTS:
        pre = stats[q].prescan
        if not (math.isfinite(pre.clipped_mean) and math.isfinite(pre.median) and math.isfinite(pre.std)):
            bad.append(q)
    if not bad:
        return None
    kinds = set()
    for q in bad:
        kinds.add("saturated" if stats[q].saturated else "lost (0 ADU)" if stats[q].lost else "unmeasurable")
    return (f"prescan of quadrant{'s' if len(bad) > 1 else ''} {', '.join(bad)} {' and '.join(sorted(kinds))}: "
            "no offset can be measured; frame left out of the analysis")


def unreadable_reason(path: Path, exc: Exception) -> str:
    """Why a frame could not be read (FrameError: its file), or used (a shape no CCD273 has, a file
    gone or denied meanwhile): what every measuring unit says of it."""
    if isinstance(exc, FrameError):
        return f"unreadable frame: {exc}"
    return f"unusable frame {path.name}: {getattr(exc, 'strerror', None) or exc}"


def frame_unit(path: Path, vstart: int, vend: int | None) -> FrameStats | str:
    """Worker: one frame's statistics, or why it cannot be read (str) or used (PoorFrame)."""
    try:
        stats = frame_stats(path, vstart, vend)
    except (ValueError, OSError) as exc:  # FrameError is a ValueError
        return unreadable_reason(path, exc)
    reason = unusable_reason(stats)
    return PoorFrame(f"{path.name}: {reason}") if reason else stats


def frames_from_quadrants(ccd: int, frames: list[Any], units: list[Any]) -> dict[tuple[int, int], FrameStats | str]:
    """(obsid, ccd) -> each frame's statistics assembled from the four (CCD, quadrant) units that
    measured it (`units` in QUADRANTS order, each with `measures` and `shapes` per frame), or why
    it cannot be read (the first quadrant saying so) or used (PoorFrame)."""
    from ..formats.geometry import geometry_for_shape

    by_frame: dict[tuple[int, int], FrameStats | str] = {}
    for i, f in enumerate(frames):
        reasons = [u.measures[i] for u in units if isinstance(u.measures[i], str)]
        if reasons:
            by_frame[(f.obsid, ccd)] = reasons[0]
            continue
        stats = FrameStats(geometry_for_shape(units[0].shapes[i]), {q: u.measures[i] for q, u in zip(QUADRANTS, units)})
        reason = unusable_reason(stats)
        by_frame[(f.obsid, ccd)] = PoorFrame(f"{f.path.name}: {reason}") if reason else stats
    return by_frame


@dataclass(frozen=True)
class FrameMeasures:
    """(obsid, ccd) -> statistics of every frame on disk, or why it is unreadable."""

    by_frame: dict[tuple[int, int], FrameStats | str] = field(default_factory=dict)
    passes: dict[tuple[int, str], Any] = field(default_factory=dict)  # (ccd, q) -> bandpass.QuadrantPass
    readouts: dict[tuple[int, str], Any] = field(default_factory=dict)  # (ccd, q) -> quadrant_pass.QuadrantReadout

    @classmethod
    def produce(cls, ctx: TaskContext) -> "FrameMeasures":
        """Measured once per analysis: the first sub-task to ask (the check, else `prep`) measures,
        the others reuse (TaskContext.need). One work unit per frame: the workers share evenly."""
        frames = [f for ccd in ctx.ccds for f in ctx.dataset.frames(ccd) if f.path.is_file()]
        by_ccd = {ccd: [f for f in frames if f.ccd == ccd] for ccd in ctx.ccds}
        if ctx.family.per_band is not None:  # one pass over the bands feeds the family's consumers too
            from .bandpass import run_pass

            by_frame, passes = run_pass(ctx, by_ccd)
            return cls({(f.obsid, f.ccd): by_frame[(f.obsid, f.ccd)] for f in frames}, passes)
        if ctx.family.per_quadrant is not None:  # each quadrant read once feeds the family's extraction too
            from .quadrant_pass import run_readout

            by_frame, readouts = run_readout(ctx, by_ccd)
            return cls({(f.obsid, f.ccd): by_frame[(f.obsid, f.ccd)] for f in frames}, readouts=readouts)
        results = ctx.map_units(frame_unit, [frame_call(f) for f in frames])
        return cls({(f.obsid, f.ccd): result for f, result in zip(frames, results)})


def measure_frames(ctx: TaskContext) -> dict[tuple[int, int], FrameStats | str]:
    """(obsid, ccd) -> statistics of every frame on disk (or why it is unreadable), once per analysis."""
    return ctx.need(FrameMeasures).by_frame


def frame_call(frame: Any) -> tuple[Path, int, int | None]:
    """(path, vstart, vend) of a data-set frame: what a measuring unit needs of it."""
    return frame.path, int(frame.row.get("vstart") or 0), _row_int(frame.row.get("vend"))


def _row_int(value: object) -> int | None:
    return int(value) if value not in (None, "") else None
