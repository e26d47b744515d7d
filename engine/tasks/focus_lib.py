"""FOCUS00 science: a focus curve fitted per spot, best focus per CCD and for the block.

A defocus blur adds in quadrature to the in-focus spot, so the square of the FWHM is a parabola
in the mirror position z: FWHM^2 = A (z - z0)^2 + FWHM0^2. Fitting FWHM^2 (not FWHM) with a
quadratic keeps the vertex at the focus whether or not the scan is centred on it. Per spot:
z0 = -B / 2A of the fit FWHM^2 = A z^2 + B z + C (z taken from the scan's mean, for conditioning),
FWHM0 = sqrt(C - B^2 / 4A). Per CCD (and block): the 4-sigma clipped mean of its spots' foci
(vison's estimate), its error std / sqrt(n), and the median of the spots' curves at that focus.
The clipping is stats.clipped_stats's, written in numpy for the few dozen foci of a block: the run's
own process then never loads numba and a compiled kernel (0.5-1 s, 105 MB) for 60 numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .stats import NAN_STATS, ClippedStats

FOCUS_CLIP_SIGMA = 4.0
MIN_POINTS = 4  # mirror positions a spot's curve needs


@dataclass(frozen=True)
class FocusCurve:
    """FWHM^2 = a z^2 + b z + c with z = mirror - z_ref."""

    a: float
    b: float
    c: float
    z_ref: float
    points: int
    ok: bool
    reason: str = ""

    @property
    def focus_mm(self) -> float:
        return self.z_ref - self.b / (2 * self.a) if self.a > 0 else math.nan

    def fwhm_at(self, mirror_mm: float | np.ndarray) -> float | np.ndarray:
        z = np.asarray(mirror_mm, float) - self.z_ref
        return np.sqrt(np.clip(self.a * z * z + self.b * z + self.c, 0, None))

    @property
    def fwhm_best_px(self) -> float:
        return float(self.fwhm_at(self.focus_mm)) if self.ok else math.nan


def fit_focus_curve(mirror_mm: Sequence[float], fwhm_px: Sequence[float], scan: tuple[float, float] | None = None
                    ) -> FocusCurve:
    """The curve through one spot's FWHM at each mirror position; `ok` False with the reason when
    it does not fit (too few points, opening downwards, vertex below zero or outside the scan)."""
    z = np.asarray(mirror_mm, float)
    w = np.asarray(fwhm_px, float)
    good = np.isfinite(z) & np.isfinite(w) & (w > 0)
    z, w = z[good], w[good]
    ref = float(np.mean(z)) if len(z) else math.nan
    if len(np.unique(z)) < MIN_POINTS:
        return FocusCurve(math.nan, math.nan, math.nan, ref, len(z), False,
                          f"{len(np.unique(z))} mirror positions with a measured FWHM (at least {MIN_POINTS} needed)")
    a, b, c = np.polyfit(z - ref, w * w, 2)
    curve = FocusCurve(float(a), float(b), float(c), ref, len(z), True)
    if a <= 0:
        return FocusCurve(float(a), float(b), float(c), ref, len(z), False, "the FWHM curve does not open upwards")
    if c - b * b / (4 * a) <= 0:
        return FocusCurve(float(a), float(b), float(c), ref, len(z), False, "the curve's minimum FWHM is not positive")
    low, high = scan if scan is not None else (float(z.min()), float(z.max()))
    if not low <= curve.focus_mm <= high:
        return FocusCurve(float(a), float(b), float(c), ref, len(z), False,
                          f"the curve's minimum at {curve.focus_mm:.3f} mm lies outside the scan [{low:g}, {high:g}] mm")
    return curve


def clipped_foci(foci: np.ndarray, nsigma: float = FOCUS_CLIP_SIGMA) -> ClippedStats:
    """stats.clipped_stats for a short float array (the same window around the median, widths and
    iterations; numpy's sums instead of the compiled sweep: equal to float64 rounding)."""
    values = np.asarray(foci, float).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        return NAN_STATS
    p1, p16, q25, median, q75, p84, p99 = np.percentile(values, [1, 16, 25, 50, 75, 84, 99])
    sigma = max((q75 - q25) / 1.349, (p84 - p16) / 2.0, (p99 - p1) / 4.65, 1e-6)
    kept_before, mean, std, count = -1, math.nan, math.nan, 0
    for _ in range(20):
        kept = values[np.abs(values - median) <= nsigma * sigma]
        count = len(kept)
        if count == kept_before or count < 2:
            break
        kept_before = count
        mean, std = float(kept.mean()), float(kept.std(ddof=1))
        sigma = max(std, 1e-6)
    return ClippedStats(mean, std, float(median), count)


@dataclass(frozen=True)
class FocusEstimate:
    focus_mm: float
    error_mm: float
    fwhm_best_px: float
    spots_used: int
    spots_fitted: int
    spots_total: int
    reason: str = ""  # why there is no estimate

    @property
    def ok(self) -> bool:
        return math.isfinite(self.focus_mm)


def combine_foci(curves: Sequence[FocusCurve]) -> FocusEstimate:
    """Best focus from the spots' curves: clipped mean of their foci, median FWHM at it."""
    fitted = [c for c in curves if c.ok]
    if not fitted:
        reasons = sorted({c.reason for c in curves if c.reason})
        return FocusEstimate(math.nan, math.nan, math.nan, 0, 0, len(curves),
                             "no spot's focus curve fits" + (f" ({'; '.join(reasons)})" if reasons else ""))
    foci = np.array([c.focus_mm for c in fitted])
    clipped = clipped_foci(foci) if len(foci) > 2 else None
    if clipped is not None and math.isfinite(clipped.mean):
        focus, kept = clipped.mean, clipped.count
        spread = clipped.std
    else:
        focus, kept, spread = float(np.mean(foci)), len(foci), float(np.std(foci))
    error = spread / math.sqrt(kept) if kept > 1 else math.nan
    fwhm = float(np.median([c.fwhm_at(focus) for c in fitted]))
    return FocusEstimate(float(focus), float(error), fwhm, int(kept), len(fitted), len(curves))
