"""BIAS01 and BIAS02: offsets and read noise per quadrant, row/column profiles, master bias.

Sub-tasks (after the generic `init` and `check`):

- `prep`: per frame and quadrant, the offset = mean of the 5-sigma clipped prescan. Only these
  small arrays are kept (`ctx.scratch["offsets"]`); later sub-tasks subtract them.
- `basic`: one pass per CCD quadrant over row bands of all its frames (each frame opened once)
  accumulates exact integer histograms of the raw counts per frame and region, and of each
  frame's residuals to the per-pixel mean of the frames. From them: offsets in prescan, image and
  overscan (clipped means, ~0.01 ADU over 10 frames) and the read noise (RON) from the residuals,
  so fixed pattern (hot pixels, structure) does not inflate it; the RON in electrons with the
  gain; mean row and column profiles of the image area (CSV).
- `meta`: the master bias per CCD, the per-pixel median of the offset-subtracted frames, computed
  band by band and written straight into the FITS file (memory stays bounded whatever the frame
  count); extensions STACK and STD, provenance in the primary header.

Work is split per (CCD, quadrant): 12 equal units keep 2 workers busy (3 CCDs would leave one
idle a third of the time). Workers get paths and offsets, return small records, and write their
quadrant of a product themselves. The stacking machinery here is shared with DARK01 (dark.py).
"""

from __future__ import annotations

import math
import re
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
from astropy.io import fits

from .. import __version__
from ..formats.fits import FrameError, read_frame
from ..formats.geometry import QUADRANTS, CCDGeometry
from .base import AnalysisTask
from .context import TaskContext
from .measures import ADC_SATURATED, LOST_PIXEL, trimmed

NOMINAL_GAIN_E_PER_ADU = 3.3  # CCD273 gains are 3.1-3.5 e-/ADU; used until a PTC gain is configured
CLIP_SIGMA = 5.0
REGIONS = ("prescan", "image", "overscan")
RESIDUAL_RANGE_ADU = 64  # residuals to the per-pixel mean beyond this are outliers (RON ~1-2 ADU)
BAND_BYTES = 32_000_000  # float32 frames x rows x columns held per band by one worker
ADU_BINS = 65536


# ---------------------------------------------------------------------------------------------
# Statistics from integer histograms: exact, and they add up band after band
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ClippedStats:
    mean: float
    std: float
    median: float
    count: int  # values kept by the clipping


NAN_STATS = ClippedStats(math.nan, math.nan, math.nan, 0)


def histogram_stats(counts: np.ndarray, first_value: float = 0.0, nsigma: float = CLIP_SIGMA) -> ClippedStats:
    """Sigma-clipped mean and std of integer values given as counts per value.

    The window starts at nsigma x the interquartile sigma (at least one bin: the values are
    quantised) around the median, then follows the std of the kept values until it settles.
    """
    nonzero = np.flatnonzero(counts)
    if nonzero.size == 0:
        return NAN_STATS
    lo, hi = int(nonzero[0]), int(nonzero[-1]) + 1
    c = counts[lo:hi].astype(np.float64)
    v = first_value + np.arange(lo, hi, dtype=np.float64)
    cumulative = np.cumsum(c)
    total = cumulative[-1]

    def quantile(p: float) -> float:
        return float(v[min(int(np.searchsorted(cumulative, p * total)), v.size - 1)])

    median = quantile(0.5)
    sigma = max((quantile(0.75) - quantile(0.25)) / 1.349, 1.0)
    kept_before = None
    mean = std = math.nan
    kept = 0
    for _ in range(20):
        keep = np.abs(v - median) <= nsigma * sigma
        signature = (int(np.argmax(keep)), int(keep.sum()))
        if signature == kept_before:
            break
        kept_before = signature
        ck, vk = c[keep], v[keep]
        kept = int(ck.sum())
        if kept == 0:
            return NAN_STATS
        mean = float(ck @ vk / kept)
        variance = float(ck @ (vk - mean) ** 2) / max(kept - 1, 1)
        std = math.sqrt(variance)
        sigma = max(std, 0.5)
    return ClippedStats(mean, std, median, kept)


def clipped_stats(values: np.ndarray, nsigma: float = CLIP_SIGMA) -> ClippedStats:
    """Sigma-clipped mean and std of float values (a stacked image), in a window around the median.

    The median and the first window width come from a regular subsample (1 pixel in 16 of a
    large image: ample for a window); mean and std use every pixel inside the window.
    """
    values = np.ravel(values)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return NAN_STATS
    sample = values[:: max(1, values.size // 250_000)]
    p1, p16, q25, median, q75, p84, p99 = np.percentile(sample, [1, 16, 25, 50, 75, 84, 99])
    # Stacks of integer counts are quantised (medians of few frames take few values): the
    # interquartile range may be 0, so the first window takes the widest robust width.
    sigma = max((q75 - q25) / 1.349, (p84 - p16) / 2.0, (p99 - p1) / 4.65, 1e-6)
    kept_before = -1
    mean = std = math.nan
    count = 0
    for _ in range(20):
        inside = np.abs(values - np.float32(median)) <= np.float32(nsigma * sigma)
        count = int(np.count_nonzero(inside))
        if count == kept_before or count < 2:
            break
        kept_before = count
        kept = values[inside]
        mean = float(kept.mean(dtype=np.float64))
        std = float(kept.std(dtype=np.float64, ddof=1))
        sigma = max(std, 1e-6)
    if count == 0:
        return NAN_STATS
    return ClippedStats(mean, std, float(median), count)


def adu_histogram(values: np.ndarray) -> np.ndarray:
    """Counts per ADU value (0..65535), lost (0) and saturated (65535) pixels left out."""
    counts = np.bincount(values.ravel(), minlength=ADU_BINS)
    counts[LOST_PIXEL] = counts[ADC_SATURATED] = 0
    return counts


# ---------------------------------------------------------------------------------------------
# Where things are in a quadrant, and how to walk it in row bands
# ---------------------------------------------------------------------------------------------

def region_columns(geometry: CCDGeometry, region: str, trim: bool = True) -> slice:
    """Canonical columns of a region, edges trimmed as the raw checks trim them (measures.py)."""
    _, cols = geometry.canonical_region(region)
    if not trim:
        return cols
    kept = trimmed(np.arange(cols.start, cols.stop)[None, :], region, geometry)[0]
    return slice(int(kept[0]), int(kept[-1]) + 1)


@dataclass(frozen=True)
class Band:
    frame_rows: slice  # rows of the frame file
    cols: slice  # columns of the quadrant in the frame file
    canonical_rows: slice  # the same rows in canonical quadrant coordinates (increasing)
    image_rows: int  # how many of the band's canonical rows (from its start) are image rows


def quadrant_bands(geometry: CCDGeometry, quadrant: str, band_rows: int) -> Iterator[Band]:
    q_rows, q_cols = geometry.quadrant_slices(quadrant)
    flip_rows, _ = geometry.flips(quadrant)
    height = geometry.quad_height
    for start in range(0, height, band_rows):
        stop = min(start + band_rows, height)
        canonical = slice(height - stop, height - start) if flip_rows else slice(start, stop)
        image_rows = max(0, min(canonical.stop, geometry.image_rows) - canonical.start)
        yield Band(slice(q_rows.start + start, q_rows.start + stop), q_cols, canonical, image_rows)


def band_rows_for(frames: int, geometry: CCDGeometry) -> int:
    rows = BAND_BYTES // max(1, frames * geometry.quad_width * 4)
    return int(min(geometry.quad_height, max(16, rows)))


# ---------------------------------------------------------------------------------------------
# Work units: one per (CCD, quadrant), in worker processes when jobs > 1
# ---------------------------------------------------------------------------------------------

def run_units(jobs: int, function: Callable[..., Any], calls: Sequence[tuple]) -> list[Any]:
    """`function(*call)` for each call, in worker processes when jobs > 1; results in call order.

    `function` is module-level; calls carry paths and small numbers, never frames.
    """
    if jobs <= 1 or len(calls) <= 1:
        return [function(*call) for call in calls]
    with ProcessPoolExecutor(max_workers=min(jobs, len(calls))) as pool:
        futures = [pool.submit(function, *call) for call in calls]
        return [future.result() for future in futures]


# ---------------------------------------------------------------------------------------------
# prep: per-frame offsets
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FrameOffsets:
    """A usable frame of a CCD and its offset per quadrant (mean of the clipped prescan)."""

    obsid: int
    path: Path
    offsets: dict[str, float]


@dataclass
class PreparedData:
    """What `prep` leaves for the next sub-tasks: small per-CCD arrays and the geometry."""

    geometry: CCDGeometry
    frames: dict[int, list[FrameOffsets]]  # ccd -> usable frames in OBSID order
    skipped: list[str] = field(default_factory=list)  # frames left out, with the reason


def measure_offsets(ctx: TaskContext) -> PreparedData:
    """Per frame and quadrant offsets; frames missing or unreadable are left out (check flags them)."""
    refs = {ccd: [f for f in ctx.dataset.frames(ccd) if f.path.is_file()] for ccd in ctx.ccds}
    first = next((f.path for ccd in ctx.ccds for f in refs[ccd]), None)
    if first is None:
        raise RuntimeError(f"no frame of {ctx.test.name} on disk: nothing to analyse")
    with read_frame(first) as frame:
        geometry = frame.geometry
    calls = [((ccd, q), [f.path for f in refs[ccd]], geometry) for ccd in ctx.ccds for q in QUADRANTS]
    results = dict(zip([call[0] for call in calls], run_units(ctx.jobs, prescan_offsets_unit, calls)))
    prepared = PreparedData(geometry, {})
    for ccd in ctx.ccds:
        usable = []
        for index, ref in enumerate(refs[ccd]):
            values = {q: results[(ccd, q)][index] for q in QUADRANTS}
            problems = {v for v in values.values() if isinstance(v, str)}
            if problems:
                prepared.skipped.append(f"CCD{ccd} OBSID {ref.obsid}: {problems.pop()}")
                continue
            usable.append(FrameOffsets(ref.obsid, ref.path, values))
        prepared.frames[ccd] = usable
    return prepared


def prescan_offsets_unit(unit: tuple[int, str], paths: list[Path], geometry: CCDGeometry) -> list[float | str]:
    """Worker: the clipped-mean prescan offset of one quadrant in each frame (or why not)."""
    _, quadrant = unit
    cols = region_columns(geometry, "prescan")
    out: list[float | str] = []
    for path in paths:
        try:
            with read_frame(path) as frame:
                if frame.shape != geometry.shape:
                    out.append(f"frame shape {frame.shape} differs from the test's {geometry.shape}")
                    continue
                prescan = frame.region(quadrant, "prescan", geometry)
        except FrameError as exc:
            out.append(f"unreadable frame: {exc}")
            continue
        out.append(histogram_stats(adu_histogram(prescan[:, cols])).mean)  # prescan starts at column 0
    return out


def prepared_data(ctx: TaskContext) -> PreparedData:
    """The offsets `prep` measured; measured now if `prep` was switched off."""
    prepared = ctx.scratch.get("offsets")
    if prepared is None:
        prepared = measure_offsets(ctx)
        ctx.scratch["offsets"] = prepared
    return prepared


# ---------------------------------------------------------------------------------------------
# basic: offsets, RON and profiles per quadrant in one banded pass
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class QuadrantNoise:
    offsets: dict[str, list[float]]  # region -> per-frame clipped mean (ADU)
    ron: dict[str, float]  # region -> RON (ADU) from the residuals to the per-pixel mean
    row_profile: list[float]  # canonical image rows: mean offset-subtracted level (ADU)
    col_profile: list[float]  # canonical image columns


def noise_unit(unit: tuple[int, str], paths: list[Path], offsets: list[float], geometry: CCDGeometry) -> QuadrantNoise:
    """Worker: one quadrant of every frame of a CCD, band by band, each frame opened once.

    Read noise: each frame minus the per-pixel mean of all frames removes every fixed pattern;
    the residuals are kept exactly as integers, n * x_i - sum_j x_j, in one histogram per frame
    and region (per frame, so an offset drift between frames does not count as noise).
    """
    _, quadrant = unit
    n = len(paths)
    columns = {region: region_columns(geometry, region) for region in REGIONS}
    image_cols = region_columns(geometry, "image", trim=False)
    reach = RESIDUAL_RANGE_ADU * n  # residual histogram half-width, in units of 1/n ADU
    value_hist = {r: np.zeros((n, ADU_BINS), np.int64) for r in REGIONS}
    residual_hist = {r: np.zeros((n, 2 * reach + 1), np.int64) for r in REGIONS}
    row_sum = np.zeros(geometry.image_rows)
    col_sum = np.zeros(geometry.image_cols)
    with ExitStack() as stack:
        frames = [stack.enter_context(read_frame(p)) for p in paths]
        for band in quadrant_bands(geometry, quadrant, band_rows_for(n, geometry)):
            if band.image_rows == 0:
                continue  # parallel overscan: not part of the region statistics
            # Columns first: each region is then one contiguous block, histogrammed without copies.
            cube = np.empty((n, geometry.quad_width, band.image_rows), np.int32)
            for i, frame in enumerate(frames):
                counts = geometry.to_canonical(frame.section(band.frame_rows, band.cols), quadrant)
                cube[i] = counts[: band.image_rows].T
                for region, cols in columns.items():
                    value_hist[region][i] += adu_histogram(cube[i, cols])
            total = cube.sum(axis=0, dtype=np.int32)  # exact below 32768 frames; int32 halves the traffic
            residual = np.empty_like(total)
            for i in range(n):
                np.multiply(cube[i], n, out=residual)
                residual -= total
                np.clip(residual, -reach, reach, out=residual)
                residual += reach
                for region, cols in columns.items():
                    residual_hist[region][i] += np.bincount(residual[cols].ravel(), minlength=2 * reach + 1)
            image = total[image_cols].astype(np.float64) - float(np.sum(offsets))
            canonical = slice(band.canonical_rows.start, band.canonical_rows.start + band.image_rows)
            row_sum[canonical] += image.sum(axis=0)
            col_sum += image.sum(axis=1)
    region_offsets = {r: [histogram_stats(value_hist[r][i]).mean for i in range(n)] for r in REGIONS}
    ron = {}
    for region in REGIONS:
        # std(n x_i - sum) = n sigma sqrt((n-1)/n)
        variances = [histogram_stats(h, -reach).std ** 2 for h in residual_hist[region]]
        ron[region] = math.sqrt(float(np.nanmean(variances)) / (n * (n - 1))) if n > 1 else math.nan
    return QuadrantNoise(
        offsets=region_offsets, ron=ron,
        row_profile=(row_sum / (n * geometry.image_cols)).tolist(),
        col_profile=(col_sum / (n * geometry.image_rows)).tolist(),
    )


# ---------------------------------------------------------------------------------------------
# Stacks written band by band into a FITS file (master bias, master dark)
# ---------------------------------------------------------------------------------------------

def allocate_fits(path: Path, primary: fits.Header, extnames: Sequence[str], shape: tuple[int, int],
                  ext_headers: dict[str, fits.Header] | None = None) -> dict[str, int]:
    """Write a FITS file with float32 image extensions of `shape` whose data are left to fill.

    Returns each extension's data byte offset: workers memory-map it and write their part, so
    the whole stack is never held in memory. Unwritten data read as 0.
    """
    rows, cols = shape
    data_bytes = rows * cols * 4
    padded = -(-data_bytes // 2880) * 2880
    offsets: dict[str, int] = {}
    head = fits.PrimaryHDU(header=primary).header
    with open(path, "wb") as handle:
        handle.write(head.tostring().encode("ascii"))
        for name in extnames:
            header = fits.Header([("XTENSION", "IMAGE"), ("BITPIX", -32), ("NAXIS", 2), ("NAXIS1", cols),
                                  ("NAXIS2", rows), ("PCOUNT", 0), ("GCOUNT", 1), ("EXTNAME", name)])
            for card in (ext_headers or {}).get(name, fits.Header()).cards:
                header.append(card)
            handle.write(header.tostring().encode("ascii"))
            offsets[name] = handle.tell()
            handle.seek(padded, 1)
        handle.truncate(handle.tell())
    return offsets


@dataclass(frozen=True)
class StackTarget:
    """Where a worker writes its quadrant of a stack: file, extension data offsets, shape."""

    path: Path
    offsets: dict[str, int]  # "median" and "spread" extension name -> data offset
    median_ext: str
    spread_ext: str
    spread: str = "std"  # "std" of the frames, or "error" of the mean (std / sqrt(n))


@dataclass(frozen=True)
class StackStats:
    """The image area of one quadrant of a stack."""

    level: ClippedStats  # clipped statistics of the stacked image pixels (ADU)
    hot: list[tuple[int, int, float]]  # canonical (row, col, ADU above level) beyond the threshold
    hot_count: int


def stack_unit(unit: tuple[int, str], paths: list[Path], offsets: list[float], geometry: CCDGeometry,
               target: StackTarget, hot_threshold_adu: float | None = None, hot_list_limit: int = 10000) -> StackStats:
    """Worker: per-pixel median (and spread) of the offset-subtracted frames for one quadrant,
    written into the target file band by band; returns statistics of the stacked image area."""
    _, quadrant = unit
    n = len(paths)
    shape = geometry.shape
    median_out = np.memmap(target.path, dtype=">f4", mode="r+", offset=target.offsets[target.median_ext], shape=shape)
    spread_out = np.memmap(target.path, dtype=">f4", mode="r+", offset=target.offsets[target.spread_ext], shape=shape)
    image_cols = region_columns(geometry, "image", trim=False)
    image = np.empty((geometry.image_rows, geometry.image_cols), np.float32)
    subtract = np.asarray(offsets, np.float32)[:, None, None]
    try:
        with ExitStack() as stack:
            frames = [stack.enter_context(read_frame(p)) for p in paths]
            for band in quadrant_bands(geometry, quadrant, band_rows_for(n, geometry)):
                cube = np.stack([f.section(band.frame_rows, band.cols) for f in frames]).astype(np.float32)
                cube -= subtract
                median, spread = _median_and_spread(cube, target.spread)
                median_out[band.frame_rows, band.cols] = median
                spread_out[band.frame_rows, band.cols] = spread
                if band.image_rows:
                    canonical = geometry.to_canonical(median, quadrant)
                    start = band.canonical_rows.start
                    image[start: start + band.image_rows] = canonical[: band.image_rows, image_cols]
        median_out.flush()
        spread_out.flush()
    finally:
        del median_out, spread_out
    level = clipped_stats(image)
    hot: list[tuple[int, int, float]] = []
    count = 0
    if hot_threshold_adu is not None and math.isfinite(level.mean):
        rows, cols = np.nonzero(image > level.mean + hot_threshold_adu)
        count = int(rows.size)
        excess = image[rows, cols] - level.mean
        hot = [(int(r), int(c) + geometry.prescan, round(float(e), 2))
               for r, c, e in zip(rows[:hot_list_limit], cols[:hot_list_limit], excess[:hot_list_limit])]
    return StackStats(level, hot, count)


def _median_and_spread(cube: np.ndarray, spread: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel median and std over the frame axis (axis 0); sorts `cube` in place."""
    n = cube.shape[0]
    if n == 1:
        return cube[0], np.zeros_like(cube[0])
    std = cube.std(axis=0, ddof=1)
    if spread == "error":
        std /= np.float32(math.sqrt(n))
    sort_frames(cube)
    if n % 2:
        median = cube[n // 2]
    else:
        median = (cube[n // 2 - 1] + cube[n // 2]) * np.float32(0.5)
    return median, std


NETWORK_MAX_FRAMES = 32  # beyond, numpy's sort is as fast as the network
NETWORK_CHUNK = 16384  # pixels per chunk: n lanes of it stay in the CPU cache


def sort_frames(cube: np.ndarray) -> None:
    """Sort a (frames, ...) float32 cube along axis 0 in place.

    numpy sorts each pixel's short lane on its own (about 45 ns a pixel for 10 frames); a sorting
    network applies the same compare-exchanges to whole chunks of pixels at once, 4-5x faster.
    """
    n = cube.shape[0]
    if n > NETWORK_MAX_FRAMES or not cube.flags.c_contiguous:
        cube.sort(axis=0)
        return
    pairs = sorting_network(n)
    flat = cube.reshape(n, -1)
    low = np.empty(NETWORK_CHUNK, cube.dtype)
    for start in range(0, flat.shape[1], NETWORK_CHUNK):
        lanes = flat[:, start: start + NETWORK_CHUNK]
        buffer = low[: lanes.shape[1]]
        for a, b in pairs:
            np.minimum(lanes[a], lanes[b], out=buffer)
            np.maximum(lanes[a], lanes[b], out=lanes[b])
            lanes[a] = buffer


def sorting_network(n: int) -> list[tuple[int, int]]:
    """Batcher's odd-even merge sort: compare-exchange pairs (low index gets the smaller value)."""
    pairs = []
    p = 1
    while p < n:
        k = p
        while k >= 1:
            for j in range(k % p, n - k, 2 * k):
                for i in range(min(k, n - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return pairs


def provenance_header(ctx: TaskContext, ccd: int, frames: list[FrameOffsets], method: str,
                      product: str) -> fits.Header:
    """Primary header of a product: who made it, from what, how (ccdproc-style provenance)."""
    obsids = [f.obsid for f in frames]
    header = fits.Header()
    header["ORIGIN"] = ("vison", "CCD273 ground-calibration pipeline")
    header["VISON"] = (__version__, "vison version")
    header["PRODUCT"] = (product, "kind of calibration product")
    header["DATE"] = (datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"), "UTC creation time")
    header["TEST"] = (ctx.test.name, "test the frames belong to")
    header["SESSION"] = (ctx.session, "campaign session")
    header["BLOCK"] = (ctx.campaign.info.block, "detector block")
    header["CHAMBER"] = (ctx.chamber.name, "test chamber")
    header["CCD"] = (f"CCD{ccd}", "CCD of the block")
    header["SN"] = (ccd_serial(frames_rows(ctx, ccd)), "CCD serial as the data record it")
    header["OBSID0"] = (min(obsids) if obsids else -1, "first OBSID combined")
    header["OBSID1"] = (max(obsids) if obsids else -1, "last OBSID combined")
    header["OBSIDS"] = (_ranges(obsids), "OBSIDs combined")
    header["NCOMB"] = (len(frames), "frames combined")
    header["METHOD"] = (method, "per-pixel combination")
    header["OFFSMETH"] = ("prescan clipped mean", f"offset per frame/quadrant: {CLIP_SIGMA:g}-sigma clipped")
    for q in QUADRANTS:
        values = [f.offsets[q] for f in frames]
        header[f"OFFS_{q}"] = (round(float(np.mean(values)), 4) if values else math.nan,
                               f"mean offset subtracted in quadrant {q} (ADU)")
    header["BUNIT"] = ("ADU", "offset-subtracted counts")
    for f in frames:
        header.add_history(f"input {f.path.name}")
    return header


def frames_rows(ctx: TaskContext, ccd: int) -> list[dict[str, Any]]:
    return [dict(f.row) for f in ctx.dataset.frames(ccd)]


def ccd_serial(rows: list[dict[str, Any]]) -> str:
    """The CCD serial the frames carry (EXP_LOG sn_ccdN of the CCD's own rows)."""
    for row in rows:
        ccd = str(row.get("CCD", "")).upper().replace("CCD", "")
        serial = str(row.get(f"sn_ccd{ccd}", "")).strip()
        if serial:
            return serial
    return "UNKNOWN"


def product_name(kind: str, ccd: int, serial: str, block: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9.+-]", "_", serial) or "UNKNOWN"
    return f"EUC_{kind}_CCD{ccd}_SN_{safe}_{re.sub(r'[^A-Za-z0-9.+-]', '_', block)}.fits"


def build_stacks(ctx: TaskContext, prepared: PreparedData, files: dict[int, Path], kind: str,
                 extnames: tuple[str, str], spread: str, method: str,
                 hot_threshold_adu: float | None = None,
                 extra_header: Callable[[int], dict[str, Any]] | None = None) -> dict[tuple[int, str], StackStats]:
    """Allocate one FITS per CCD at `files[ccd]` and fill it from 12 quadrant workers."""
    geometry = prepared.geometry
    calls = []
    for ccd, path in files.items():
        frames = prepared.frames[ccd]
        primary = provenance_header(ctx, ccd, frames, method, kind)
        for key, value in (extra_header(ccd) if extra_header else {}).items():
            primary[key] = value
        ext_headers = {name: fits.Header([("BUNIT", "ADU")]) for name in extnames}
        offsets = allocate_fits(path, primary, extnames, geometry.shape, ext_headers)
        target = StackTarget(path, offsets, extnames[0], extnames[1], spread)
        for q in QUADRANTS:
            calls.append(((ccd, q), [f.path for f in frames], [f.offsets[q] for f in frames], geometry, target,
                          hot_threshold_adu))
    results = run_units(ctx.jobs, stack_unit, calls)
    return {call[0]: result for call, result in zip(calls, results)}


# ---------------------------------------------------------------------------------------------
# Gain
# ---------------------------------------------------------------------------------------------

def gain_for(ctx: TaskContext, ccd: int, quadrant: str) -> tuple[float, str]:
    """(gain e-/ADU, where it comes from): the campaign's calibration products when they hold
    a gain for this quadrant (a `gains` table CCDn -> quadrant -> e-/ADU), else the nominal."""
    gains = getattr(ctx.campaign.calproducts, "gains", None) or {}
    value = gains.get(f"CCD{ccd}", {}).get(quadrant) if isinstance(gains, dict) else None
    if value:
        return float(value), "campaign [calproducts] gain"
    return NOMINAL_GAIN_E_PER_ADU, f"nominal {NOMINAL_GAIN_E_PER_ADU} e-/ADU (no gain in the campaign's [calproducts])"


# ---------------------------------------------------------------------------------------------
# Checks on raw statistics (from the generic check's measurements)
# ---------------------------------------------------------------------------------------------

def check_offset_gradients(ctx: TaskContext, regions: Sequence[str]) -> None:
    """Region offset minus prescan offset, per frame, within `offset_gradient_adu` (POORQUALDATA)."""
    stats = ctx.scratch.get("raw_stats") or {}
    low, high = ctx.limit("offset_gradient_adu")
    for ccd in ctx.ccds:
        for q in QUADRANTS:
            for region in regions:
                deltas = [(obsid, getattr(s[q], region).median - s[q].prescan.median)
                          for (obsid, c), s in sorted(stats.items()) if c == ccd]
                bad = [(obsid, d) for obsid, d in deltas if not low <= d <= high]
                if bad:
                    obsid, worst = max(bad, key=lambda item: abs(item[1]))
                    ctx.flags.raise_flag(
                        "POORQUALDATA", f"{region} minus prescan offset {worst:+.1f} ADU outside [{low:g}, {high:g}] "
                        f"ADU (OBSID {obsid}; {len(bad)} of {len(deltas)} frames out)", ccd=ccd, quadrant=q)


def check_image_noise(ctx: TaskContext) -> None:
    """Std of the raw image area (median over frames) within the RON limits (RON_OOL)."""
    stats = ctx.scratch.get("raw_stats") or {}
    low, high = ctx.limit("ron_adu")
    for ccd in ctx.ccds:
        for q in QUADRANTS:
            stds = [s[q].image.std for (obsid, c), s in stats.items() if c == ccd]
            if not stds:
                continue
            value = float(np.nanmedian(stds))
            ctx.set_value(ccd, q, "std_image_raw_adu", round(value, 4))
            if not low <= value <= high:
                ctx.flags.raise_flag("RON_OOL", f"image-area std {value:.3f} ADU (median over {len(stds)} frames) "
                                     f"outside [{low:g}, {high:g}] ADU", ccd=ccd, quadrant=q)


# ---------------------------------------------------------------------------------------------
# The task
# ---------------------------------------------------------------------------------------------

class BiasTask(AnalysisTask):
    family = "bias"

    def check_data(self, ctx: TaskContext) -> None:
        check_offset_gradients(ctx, ("image", "overscan"))
        check_image_noise(ctx)

    def prep(self, ctx: TaskContext) -> None:
        prepared = measure_offsets(ctx)
        ctx.scratch["offsets"] = prepared
        for note in prepared.skipped:
            ctx.log.warning(f"left out of the analysis: {note}")
        counts = ", ".join(f"CCD{ccd} {len(frames)}" for ccd, frames in prepared.frames.items())
        ctx.log.info(f"offsets measured (prescan clipped mean) on {prepared.geometry.name} frames: {counts}")

    def basic(self, ctx: TaskContext) -> None:
        prepared = prepared_data(ctx)
        geometry = prepared.geometry
        units = [(ccd, q) for ccd in ctx.ccds for q in QUADRANTS if len(prepared.frames[ccd]) >= 2]
        calls = [((ccd, q), [f.path for f in prepared.frames[ccd]], [f.offsets[q] for f in prepared.frames[ccd]],
                  geometry) for ccd, q in units]
        noise = dict(zip(units, run_units(ctx.jobs, noise_unit, calls)))
        sources = set()
        for (ccd, q), result in noise.items():
            gain, source = gain_for(ctx, ccd, q)
            sources.add(source)
            for region in REGIONS:
                ctx.set_value(ccd, q, f"offset_{region}_adu", round(float(np.mean(result.offsets[region])), 4))
                ctx.set_value(ccd, q, f"ron_{region}_adu", round(result.ron[region], 4))
                ctx.set_value(ccd, q, f"ron_{region}_e", round(result.ron[region] * gain, 3))
            ctx.set_value(ccd, q, "gain_e_per_adu_used", gain)
        ctx.test_values["gain_source"] = "; ".join(sorted(sources))
        ctx.test_values["ron_method"] = ("std of each frame minus the per-pixel mean of the frames, "
                                         f"{CLIP_SIGMA:g}-sigma clipped, pooled over frames, x sqrt(n/(n-1))")
        ctx.test_values["offset_method"] = (f"mean of {CLIP_SIGMA:g}-sigma clipped pixels per frame, "
                                            "averaged over frames")
        ctx.scratch["noise"] = noise
        write_profiles(ctx, noise)
        obsids = {ccd: [f.obsid for f in prepared.frames[ccd]] for ccd in ctx.ccds}
        plot_ron(ctx, noise)
        plot_offsets(ctx, noise, obsids)
        ctx.add_section("Offsets and read noise", noise_tables(ctx, noise, sources))

    def meta(self, ctx: TaskContext) -> None:
        prepared = prepared_data(ctx)
        block = ctx.campaign.info.block
        ccds = [ccd for ccd in ctx.ccds if prepared.frames[ccd]]
        names = {ccd: product_name("MASTERBIAS", ccd, ccd_serial(frames_rows(ctx, ccd)), block) for ccd in ccds}
        with ExitStack() as stack:
            # entered last to first so they are published (and listed) CCD1 first
            files = {ccd: stack.enter_context(ctx.product(names[ccd])) for ccd in reversed(ccds)}
            stats = build_stacks(ctx, prepared, files, "MASTERBIAS", ("STACK", "STD"), "std",
                                 "median of offset-subtracted frames")
        rows = []
        for (ccd, q), result in sorted(stats.items()):
            ctx.set_value(ccd, q, "master_bias_std_adu", round(result.level.std, 4))
            rows.append([f"CCD{ccd}", q, f"{result.level.mean:+.3f}", f"{result.level.std:.3f}"])
        counts = ", ".join(f"CCD{c} {len(prepared.frames[c])}" for c in ccds)
        body = (f"Per CCD, the per-pixel median of its offset-subtracted frames ({counts}; offset: clipped "
                "prescan mean per frame and quadrant), with the per-pixel std of the frames (extension STD). "
                "Provenance in the primary header (VISON, TEST, SESSION, BLOCK, CCD, SN, OBSIDS, NCOMB, METHOD, "
                "OFFS_E..H, DATE, inputs as HISTORY). STACK + OFFS_q is the quadrant's bias level.\n\n"
                + "\n".join(f"- `products/{names[c]}`" for c in ccds) + "\n\n"
                + markdown_table(["CCD", "Q", "image clipped mean (ADU)", "clipped std (ADU)"], rows))
        ctx.add_section("Master bias", body)


TASK = BiasTask


# ---------------------------------------------------------------------------------------------
# Products, figures and report tables
# ---------------------------------------------------------------------------------------------

def write_profiles(ctx: TaskContext, noise: dict[tuple[int, str], QuadrantNoise]) -> None:
    """Mean row and column profiles of the image area, long format, canonical coordinates."""
    name = f"{ctx.test.name}_profiles.csv"
    with ctx.product(name) as tmp:
        with open(tmp, "w") as out:
            out.write("ccd,quadrant,axis,index,mean_adu\n")
            for (ccd, q), result in sorted(noise.items()):
                for axis, profile in (("row", result.row_profile), ("column", result.col_profile)):
                    out.writelines(f"CCD{ccd},{q},{axis},{i},{v:.4f}\n" for i, v in enumerate(profile))
    ctx.add_section("Profiles", f"`products/{name}`: mean offset-subtracted level of the image area per canonical "
                    "row (averaged over image columns and frames) and per canonical column (over image rows and "
                    "frames); canonical = output node at row 0, column 0; columns count from the image's first.")


def noise_tables(ctx: TaskContext, noise: dict[tuple[int, str], QuadrantNoise], sources: set[str]) -> str:
    offset_rows, ron_rows = [], []
    for (ccd, q), result in sorted(noise.items()):
        means = {r: float(np.mean(result.offsets[r])) for r in REGIONS}
        offset_rows.append([f"CCD{ccd}", q, *(f"{means[r]:.2f}" for r in REGIONS),
                            f"{means['image'] - means['prescan']:+.2f}",
                            f"{means['overscan'] - means['prescan']:+.2f}"])
        gain = ctx.value(ccd, q, "gain_e_per_adu_used")
        ron_rows.append([f"CCD{ccd}", q, *(f"{result.ron[r]:.3f}" for r in REGIONS),
                         f"{result.ron['prescan'] * gain:.2f}", f"{result.ron['image'] * gain:.2f}"])
    low, high = ctx.limit("ron_adu")
    return "\n\n".join([
        "Offsets: mean of the 5-sigma clipped pixels of each frame, averaged over frames (ADU). "
        "Read noise: std of each frame minus the per-pixel mean of all frames (clipped, pooled over "
        "frames, x sqrt(n/(n-1))): fixed pattern cancels.",
        markdown_table(["CCD", "Q", "prescan", "image", "overscan", "image-pre", "overscan-pre"], offset_rows),
        f"Read noise (ADU; limits [{low:g}, {high:g}]) and in electrons:",
        markdown_table(["CCD", "Q", "RON pre", "RON img", "RON ove", "RON pre (e-)", "RON img (e-)"], ron_rows),
        f"Gain used: {'; '.join(sorted(sources))}.",
    ])


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def new_figure(width: float, height: float):
    """A matplotlib figure on the Agg canvas: no pyplot state, no display needed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def plot_ron(ctx: TaskContext, noise: dict[tuple[int, str], QuadrantNoise]) -> None:
    keys = sorted(noise)
    if not keys:
        return
    figure = new_figure(8, 3.6)
    axes = figure.add_subplot(1, 1, 1)
    x = np.arange(len(keys))
    for offset, region in zip((-0.27, 0, 0.27), REGIONS):
        axes.bar(x + offset, [noise[k].ron[region] for k in keys], width=0.27, label=region)
    low, high = ctx.limit("ron_adu")
    for limit in (low, high):
        axes.axhline(limit, color="k", linestyle=":", linewidth=1)
    finite = [noise[k].ron[r] for k in keys for r in REGIONS if math.isfinite(noise[k].ron[r])]
    axes.set_ylim(0, max([high, *finite]) * 1.12)
    axes.set_xticks(x, [f"CCD{c}\n{q}" for c, q in keys], fontsize=8)
    axes.set_ylabel("RON (ADU)")
    axes.set_title(f"{ctx.test.name}: read noise per quadrant (dotted: limits)")
    axes.legend(fontsize=8, ncol=3, loc="lower right")
    figure.tight_layout()
    with ctx.figure(f"{ctx.test.name}_ron.png") as tmp:
        figure.savefig(tmp)


def plot_offsets(ctx: TaskContext, noise: dict[tuple[int, str], QuadrantNoise], obsids: dict[int, list[int]]) -> None:
    ccds = sorted({ccd for ccd, _ in noise})
    if not ccds:
        return
    figure = new_figure(9, 2.4 * len(ccds))
    for index, ccd in enumerate(ccds, start=1):
        axes = figure.add_subplot(len(ccds), 1, index)
        for q in QUADRANTS:
            if (ccd, q) not in noise:
                continue
            values = np.array(noise[(ccd, q)].offsets["prescan"])
            axes.plot(obsids[ccd], values - values.mean(), marker="o", markersize=3,
                      label=f"{q} ({values.mean():.1f})")
        axes.set_ylabel(f"CCD{ccd} Δoffset (ADU)")
        axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    axes.set_xlabel("OBSID")
    figure.suptitle(f"{ctx.test.name}: prescan offset minus its mean over the test (mean in legend)", fontsize=10)
    figure.tight_layout()
    with ctx.figure(f"{ctx.test.name}_offsets.png") as tmp:
        figure.savefig(tmp)


def _ranges(numbers: list[int]) -> str:
    if not numbers:
        return ""
    numbers = sorted(numbers)
    spans, start, previous = [], numbers[0], numbers[0]
    for n in numbers[1:]:
        if n != previous + 1:
            spans.append((start, previous))
            start = n
        previous = n
    spans.append((start, previous))
    return ",".join(f"{a}-{b}" if a != b else str(a) for a, b in spans)
