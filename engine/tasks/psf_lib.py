"""PSF01/02 science: spot shapes against fluence, and the cross-talk between the block's 12 channels.

Cross-talk: the 12 read-out channels (3 CCDs x 4 quadrants) are read in step, pixel by pixel in
canonical order, so a signal in one channel (source) leaks into the others (victims) at the same
canonical pixel. Per exposure (the three CCDs' frames together), for every source channel the
pixels of its spots brighter than XTALK_SOURCE_MIN_ADU and below the ADC ceiling give (S, V)
pairs: S the source's level above its image median, V each victim's level above its own median
at the same canonical pixel, left out where the victim has a spot of its own (within
STAMP_HALF_PX). Per (source, victim) pair a straight line V = c S + b, fitted with 5-sigma
clipping of the residuals (cosmic rays, hot pixels), gives the coupling coefficient c (signed:
negative is an undershoot) and its error sigma_res / sqrt(sum (S - mean S)^2).

The samples are made in the lock's read (xtalk_lock_unit: a bright exposure's three frames read
together, each frame's lock work done on the same counts), or, for an exposure the lock did not
read so, from its frames read again (xtalk_exposure_unit); the same numbers either way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from ..formats.fits import FrameError, FrameIndex, read_frame
from ..formats.geometry import QUADRANTS, CCDGeometry
from .measures import QuadrantStats, window_rows
from .spots import (
    EFFECTIVE_SATURATION_ADU,
    ExposureSpots,
    FrameSpots,
    SpotLock,
    measure_frame_spots,
    to_canonical_xy,
)
from .stats import ADC_SATURATED, LOST_PIXEL

CHANNELS: tuple[tuple[int, str], ...] = tuple((ccd, q) for ccd in (1, 2, 3) for q in QUADRANTS)
XTALK_SOURCE_MIN_ADU = 500.0  # source pixels used: this far above their background
XTALK_MIN_FLUENCE_FRACTION = 0.5  # columns used: at least this fraction of full well in the spots
XTALK_CLIP_SIGMA = 5.0
VICTIM_EXCLUSION_PX = 10.0


@dataclass(frozen=True)
class XtalkSamples:
    """One exposure's (S, V) pairs: source channel index -> S; (source, victim) -> V (NaN: left out)."""

    source: dict[int, np.ndarray]
    victim: dict[tuple[int, int], np.ndarray]


def bright_columns(lock: SpotLock) -> list[int]:
    """The columns whose exposures give the cross-talk: spots expected at XTALK_MIN_FLUENCE_FRACTION
    of full well or more; without an exposure time to full well, the longest column."""
    floor = XTALK_MIN_FLUENCE_FRACTION * EFFECTIVE_SATURATION_ADU
    bright = [c for c in lock.columns() if lock.expected_peak_adu(lock.column_exptime(c)) >= floor]
    if not bright and lock.columns():
        bright = [max(lock.columns(), key=lock.column_exptime)]
    return bright


def channel_image(area: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """A channel's image area (uint16, canonical) less its level, float32, and its usable pixels
    (not at the ADC ceiling, not lost)."""
    return area.astype(np.float32) - np.float32(level), (area != ADC_SATURATED) & (area != LOST_PIXEL)


def xtalk_exposure_unit(paths: dict[int, Path], levels: dict[tuple[int, str], float],
                        own_spots: dict[tuple[int, str], list[tuple[float, float]]],
                        geometry: CCDGeometry, source_min_adu: float = XTALK_SOURCE_MIN_ADU) -> XtalkSamples:
    """Worker: the three frames of one exposure read again after the lock (xtalk_lock_unit does
    it in the lock's read); every channel's image area in canonical orientation."""
    rows, cols = geometry.canonical_region("image")
    images: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    with ExitStack() as stack:
        frames = {ccd: stack.enter_context(read_frame(path)) for ccd, path in paths.items()}
        for index, (ccd, q) in enumerate(CHANNELS):
            if ccd not in frames or (ccd, q) not in levels:
                continue
            images[index] = channel_image(frames[ccd].quadrant(q, canonical=True, geometry=geometry)[rows, cols],
                                          levels[(ccd, q)])
    return xtalk_samples(images, own_spots, geometry, source_min_adu)


def xtalk_samples(images: dict[int, tuple[np.ndarray, np.ndarray]],
                  own_spots: dict[tuple[int, str], list[tuple[float, float]]], geometry: CCDGeometry,
                  source_min_adu: float = XTALK_SOURCE_MIN_ADU) -> XtalkSamples:
    """One exposure's (S, V) pairs from its channels' images (channel index -> channel_image, in
    channel order), each victim's own spots (canonical (col, row)) masked."""
    height, width = geometry.image_rows, geometry.image_cols
    reach = int(math.ceil(VICTIM_EXCLUSION_PX))
    clear: dict[int, np.ndarray] = {}
    for index, (_, usable) in images.items():
        mask = usable.copy()
        for col, row in own_spots.get(CHANNELS[index], []):
            x = col - geometry.prescan
            r0, r1 = max(0, int(row) - reach), min(height, int(row) + reach + 2)
            c0, c1 = max(0, int(x) - reach), min(width, int(x) + reach + 2)
            if r0 < r1 and c0 < c1:
                yy, xx = np.mgrid[r0:r1, c0:c1]
                mask[r0:r1, c0:c1] &= np.hypot(xx - x, yy - row) > VICTIM_EXCLUSION_PX
        clear[index] = mask
    sources, victims = {}, {}
    for s, (image, usable) in images.items():
        where = np.nonzero((image > source_min_adu) & usable)
        sources[s] = image[where].astype(np.float32)
        for v, (victim, _) in images.items():
            if v != s:
                victims[(s, v)] = np.where(clear[v][where], victim[where], np.nan).astype(np.float32)
    return XtalkSamples(sources, victims)


@dataclass(frozen=True)
class ExposureXtalk:
    """One exposure's cross-talk samples made in the lock's read (xtalk_lock_unit), and what from:
    the frames (CCD -> path) and the geometry; `samples` None with `error` saying why not."""

    paths: dict[int, Path]
    geometry: CCDGeometry | None
    samples: XtalkSamples | None
    error: str = ""

    def matches(self, paths: dict[int, Path], geometry: CCDGeometry) -> bool:
        """Made from these frames with this geometry (the levels and own spots are then the lock's)."""
        return (self.samples is not None and self.geometry == geometry
                and {ccd: Path(p) for ccd, p in self.paths.items()} == {ccd: Path(p) for ccd, p in paths.items()})


def _keep_channel(images: dict[int, tuple[np.ndarray, np.ndarray]], ccd: int, geometry: CCDGeometry, q: str,
                  counts: np.ndarray, stats: QuadrantStats) -> None:
    """measure_frame_spots' each_quadrant: the quadrant's channel_image from its counts as read."""
    rows, cols = geometry.canonical_region("image")
    images[CHANNELS.index((ccd, q))] = channel_image(geometry.to_canonical(counts, q)[rows, cols], stats.image.median)


def xtalk_lock_unit(frames: tuple[tuple[int, Path, int, int | None, float, FrameIndex | None], ...],
                    pattern: tuple[tuple[str, float, float], ...],
                    source_min_adu: float = XTALK_SOURCE_MIN_ADU) -> ExposureSpots:
    """Worker: a bright exposure's frames ((ccd, path, vstart, vend, floor_adu, index) each) read once:
    each frame's lock work as spot_frame_unit does it (spots.measure_frame_spots), and from the
    same counts the exposure's cross-talk samples as xtalk_exposure_unit makes them (image areas in
    canonical orientation less their level, the spots just found masked). Holds the exposure's
    channel images (12 quadrants' image areas), as xtalk_exposure_unit does."""
    measured: dict[int, FrameSpots | str] = {}
    images: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    geometries: dict[int, CCDGeometry] = {}
    for ccd, path, vstart, vend, floor_adu, index in frames:
        mine: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        try:
            with read_frame(path, index) as frame:
                geometry = frame.geometry
                measured[ccd] = measure_frame_spots(frame, window_rows(geometry, vstart, vend), pattern, floor_adu,
                                                    partial(_keep_channel, mine, ccd, geometry))
        except FrameError as exc:
            measured[ccd] = f"unreadable frame: {exc}"
            continue
        images.update(mine)
        geometries[ccd] = geometry
    paths = {ccd: path for ccd, path, *_ in frames if ccd in geometries}
    if not geometries:
        return ExposureSpots(measured, ExposureXtalk(paths, None, None, "no frame of the exposure readable"))
    geometry = next(iter(geometries.values()))
    if any(g != geometry for g in geometries.values()):
        return ExposureSpots(measured, ExposureXtalk(paths, None, None, "the exposure's frames differ in geometry"))
    own = {(ccd, q): [to_canonical_xy(geometry, q, s.x, s.y) for s in spots.spots]
           for ccd, found in measured.items() if not isinstance(found, str) for q, spots in found.quadrants.items()}
    samples = xtalk_samples(dict(sorted(images.items())), own, geometry, source_min_adu)
    return ExposureSpots(measured, ExposureXtalk(paths, geometry, samples))


@dataclass(frozen=True)
class Coupling:
    coefficient: float
    error: float
    pixels: int

    @property
    def significance(self) -> float:
        return abs(self.coefficient) / self.error if self.error > 0 else math.nan


def fit_coupling(source: np.ndarray, victim: np.ndarray) -> Coupling:
    """V = c S + b by least squares, residuals clipped at XTALK_CLIP_SIGMA x their robust std."""
    s = np.asarray(source, float)
    v = np.asarray(victim, float)
    keep = np.isfinite(s) & np.isfinite(v)
    c = b = math.nan
    sigma = math.nan
    for _ in range(5):
        if np.count_nonzero(keep) < 5 or np.ptp(s[keep]) <= 0:
            return Coupling(math.nan, math.nan, int(np.count_nonzero(keep)))
        c, b = np.polyfit(s[keep], v[keep], 1)
        residual = v - (c * s + b)
        sigma = 1.4826 * float(np.median(np.abs(residual[keep] - np.median(residual[keep]))))
        if not sigma > 0:
            sigma = float(np.std(residual[keep]))
        within = np.isfinite(residual) & (np.abs(residual) <= XTALK_CLIP_SIGMA * max(sigma, 1e-9))
        if np.array_equal(within, keep):
            break
        keep = within
    spread = float(np.sum((s[keep] - s[keep].mean()) ** 2))
    std = float(np.std(v[keep] - (c * s[keep] + b), ddof=2)) if np.count_nonzero(keep) > 2 else sigma
    return Coupling(float(c), std / math.sqrt(spread) if spread > 0 else math.nan, int(np.count_nonzero(keep)))


def coupling_matrix(samples: Sequence[XtalkSamples]) -> dict[tuple[int, int], Coupling]:
    """(source, victim) channel indices -> coupling, from every exposure's samples."""
    result = {}
    for s in range(len(CHANNELS)):
        parts = [x.source[s] for x in samples if s in x.source]
        if not parts:
            continue
        source = np.concatenate(parts)
        for v in range(len(CHANNELS)):
            if v == s:
                continue
            victim = np.concatenate([x.victim[(s, v)] if (s, v) in x.victim else np.full(len(x.source[s]), np.nan,
                                                                                          np.float32)
                                     for x in samples if s in x.source])
            result[(s, v)] = fit_coupling(source, victim)
    return result


def channel_name(index: int) -> str:
    ccd, q = CHANNELS[index]
    return f"CCD{ccd}{q}"


def linear_slope(x: Sequence[float], y: Sequence[float]) -> float:
    """Least-squares slope of y against x; NaN with fewer than 2 distinct x."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    good = np.isfinite(x) & np.isfinite(y)
    if len(np.unique(x[good])) < 2:
        return math.nan
    return float(np.polyfit(x[good], y[good], 1)[0])
