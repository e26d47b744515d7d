"""Raw-frame measurements shared by the checks of every test: plain functions over a frame.

Each function reads only the sections it needs. Edges are trimmed as the campaign did:
prescan [25, 5] columns from its start and end, overscan and image [5, 5].
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..formats.fits import Frame, read_frame
from ..formats.geometry import QUADRANTS, CCDGeometry

ADC_SATURATED = 65535
LOST_PIXEL = 0
TRIM_COLUMNS = {"prescan": (25, 5), "overscan": (5, 5), "image": (5, 5)}


@dataclass(frozen=True)
class RegionStats:
    median: float
    std: float  # of the pixels within 5 sigma of the median: cosmic rays and hot pixels left out
    mean: float


@dataclass(frozen=True)
class QuadrantStats:
    prescan: RegionStats
    image: RegionStats
    overscan: RegionStats
    saturated: int  # pixels at the ADC ceiling
    lost: int  # pixels at 0


def trimmed(region: np.ndarray, name: str, geometry: CCDGeometry) -> np.ndarray:
    """Cut the columns next to region edges, where transitions smear values."""
    start, end = TRIM_COLUMNS.get(name, (0, 0))
    # keep at least a few columns on the small test geometry
    width = region.shape[1]
    if start + end >= width - 2:
        start, end = min(start, width // 4), min(end, width // 4)
    return region[:, start: width - end if end else None]


def robust_stats(values: np.ndarray) -> RegionStats:
    valid = values[(values != ADC_SATURATED) & (values != LOST_PIXEL)].astype(np.float64)
    if valid.size == 0:
        return RegionStats(float("nan"), float("nan"), float("nan"))
    q25, median, q75 = np.percentile(valid, [25, 50, 75])
    # Counts are integers: the interquartile range only seeds the clip window, at least 1 ADU wide,
    # and the std is measured on the pixels inside it.
    window = 5 * max((q75 - q25) / 1.349, 1.0)
    kept = valid[np.abs(valid - median) <= window]
    return RegionStats(float(median), float(kept.std()), float(kept.mean()))


def quadrant_stats(frame: Frame, quadrant: str, geometry: CCDGeometry, rows: slice | None = None) -> QuadrantStats:
    """Offsets, noise and pixel-value extremes of one quadrant (canonical rows `rows`)."""
    regions = {}
    for name in ("prescan", "image", "overscan"):
        data = frame.region(quadrant, name, geometry)
        if rows is not None:
            data = data[rows]
        regions[name] = robust_stats(trimmed(data, name, geometry))
    whole = frame.quadrant(quadrant, geometry=geometry)
    if rows is not None:
        whole = whole[rows]
    return QuadrantStats(
        prescan=regions["prescan"], image=regions["image"], overscan=regions["overscan"],
        saturated=int(np.count_nonzero(whole == ADC_SATURATED)), lost=int(np.count_nonzero(whole == LOST_PIXEL)),
    )


def frame_stats(path: Path, vstart: int = 0, vend: int | None = None) -> dict[str, QuadrantStats]:
    """Per quadrant statistics of one frame file, over the rows the readout window read."""
    with read_frame(path) as frame:
        geometry = frame.geometry
        vend = geometry.quad_height if vend is None else min(vend, geometry.quad_height)
        rows = slice(max(0, vstart), min(vend, geometry.image_rows))
        return {q: quadrant_stats(frame, q, geometry, rows) for q in QUADRANTS}
