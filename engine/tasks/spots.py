"""Point sources (FOCUS00, PSF01/02, PSFLUX00): the spot pattern locked per quadrant, every spot
measured, and the raw-data checks of point-source frames.

One pass over the frames (`lock`, also in check-only runs; one work unit per frame, each
quadrant copied out of the frame once; a family may have some exposures' frames read together by
one unit doing more with the same read, ReadTogether: PSF01's cross-talk) gives per frame and
quadrant (measure_frame_spots):

- the generic raw-frame statistics (measures.py), handed to the generic check so it does not
  read the frames again;
- the sources `sep` detects in the image area (background: the image median, threshold
  DETECT_SIGMA x its robust std, at least 3 pixels); sources fainter than MIN_PEAK_FRACTION of
  the peak the column should reach (cosmic rays, cross-talk ghosts) are left out. sep runs on
  the image max-pooled DETECT_BIN x DETECT_BIN, then at full resolution only on the windows of
  the pooled sources that reach that floor (detect_sources): the same sources, positions and
  fluxes as sep over the whole image (but for sep's cleaning; checked on every frame of a
  full-size FOCUS00 and of the test days), in 1.5 ms of CPU a full-size quadrant against 14-18 ms;
- the match of the brightest sources to the chamber's nominal pattern (ChamberProfile.spot_pattern:
  fractions of the image area seen in the frame): candidate rigid transforms from every
  source-spot pair (translation) and every pair of pairs (rotation within MAX_SEARCH_ROTATION_DEG),
  the one matching most spots within the match radius wins, refined by least squares on its
  matches. The lock is the pattern's offset (dx, dy along the frame's columns and rows) and
  rotation about the image centre;
- each matched spot measured on a stamp of STAMP_HALF_PX around it (local background: median of
  the stamp's outer ring): peak, aperture flux (radius APERTURE_RADIUS_PX), a least-squares fit of
  an axis-aligned Gaussian integrated over the pixels (centre, FWHM x and y, total flux; the
  pixel integration matters at 2 px FWHM: a point-sampled fit reads 5 % wide), and the second
  moments (less the 1/12 px^2 of a pixel) for the ellipticity e = |(Qxx - Qyy, 2 Qxy)| /
  (Qxx + Qyy); a frame's spots measured together, as arrays (measure_spots, fit_gaussians).

The quadrant's lock is the median over its frames; STARS_MISSING says when the pattern is not
found, shifted or rotated beyond the limits, or some spots never show. The checks (BGD_OOL,
FLUX_OOL, FOCUS_OOL) judge the same measurements, with value and limit.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..campaign.chamber import ChamberError
from ..campaign.limits import GenericLimits, Range, limit
from ..formats.fits import Frame, FrameError, FrameIndex, index_frame, read_frame
from ..formats.geometry import QUADRANTS, CCDGeometry
from .base import AnalysisTask
from .check import RawStats
from .context import TaskContext
from .family import ValueSpec
from .figures import markdown_table
from .measures import (
    FrameMeasures,
    FrameStats,
    QuadrantStats,
    read_quadrant_stats,
    window_rows,
)
from .outputs import CsvTable, Measured, Outputs, Section, SubTaskResult
from .stats import ADC_SATURATED

EFFECTIVE_SATURATION_ADU = 55000.0  # vison's eff_satur: the peak a spot reaches at tFWC_point
DETECT_SIGMA = 10.0  # detection threshold, x the image's robust std
DETECT_MIN_PIXELS = 3
DETECT_BIN = 16  # detection first runs on the image max-pooled by this (detect_sources)
DETECT_MARGIN_PX = 2  # around a pooled source's window: the 3 x 3 filter's reach, and one more
MIN_PEAK_FRACTION = 0.02  # of the peak the column should reach: below, a source is no spot
MATCH_CANDIDATES = 10  # brightest sources tried against the pattern
MIN_MATCHED = 3  # spots a lock needs
MAX_SEARCH_ROTATION_DEG = 5.0  # rotations searched (the limit is judged afterwards)
STAMP_HALF_PX = 10
APERTURE_RADIUS_PX = 8.0
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


@dataclass(frozen=True)
class PointSourceLimits(GenericLimits):
    point_background_adu: Range = limit((-1.0, 5.0), "ADU", "background around point sources")
    fwhm_px: Range = limit((1.2, 3.0), "pixels", "point-source FWHM")
    lock_shift_px: float = limit(100.0, "pixels", "largest shift of the spot pattern from the chamber's nominal")
    lock_rotation_deg: float = limit(2.0, "degrees", "largest rotation of the spot pattern")
    peak_tolerance: float = limit(0.3, "fraction", "spot peak per column within its expected value x (1 +- this)")
    saturation_time_tolerance: float = limit(0.2, "fraction",
                                             "spots' time to full well within tFWC_point x (1 +- this)")


# ---------------------------------------------------------------------------------------------
# Pure science: pattern matching and spot measurement
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PatternMatch:
    """A rigid transform taking the nominal pattern onto the detections, and which spots matched."""

    dx: float  # shift of the pattern centre, along x (columns), px
    dy: float
    rotation_deg: float  # anticlockwise, about the pattern's reference centre
    matches: tuple[tuple[int, int], ...]  # (detection index, nominal index)
    rms_px: float  # residual of the matched spots
    rotation_error_deg: float = math.nan  # the rotation's uncertainty: rms / sqrt(sum of squared arms)

    @property
    def shift_px(self) -> float:
        return math.hypot(self.dx, self.dy)


def match_pattern(detected: np.ndarray, nominal: np.ndarray, centre: Sequence[float], radius_px: float,
                  max_rotation_deg: float = MAX_SEARCH_ROTATION_DEG) -> PatternMatch | None:
    """The rigid transform (rotation about `centre`, then shift) matching most nominal spots to
    detections within `radius_px`; None without detections. Arrays are (n, 2) of (x, y)."""
    detected = np.asarray(detected, float).reshape(-1, 2)
    nominal = np.asarray(nominal, float).reshape(-1, 2)
    if not len(detected) or not len(nominal):
        return None
    c = np.asarray(centre, float)
    rel = nominal - c
    # candidates: every detection on every nominal spot (no rotation), then every pair of
    # detections on a pair of nominal spots as long and turned within the limit
    angles = [np.zeros(len(detected) * len(nominal))]
    shifts = [(detected[:, None, :] - nominal[None, :, :]).reshape(-1, 2)]
    limit_rad = math.radians(max_rotation_deg)
    if len(detected) >= 2 and len(nominal) >= 2:
        di, dj = np.triu_indices(len(detected), 1)
        ni, nj = np.nonzero(~np.eye(len(nominal), dtype=bool))
        dvec = detected[dj] - detected[di]
        nvec = nominal[nj] - nominal[ni]
        dlen, nlen = np.hypot(*dvec.T), np.hypot(*nvec.T)
        ratio = dlen[:, None] / np.maximum(nlen[None, :], 1e-9)
        theta = np.arctan2(dvec[:, 1], dvec[:, 0])[:, None] - np.arctan2(nvec[:, 1], nvec[:, 0])[None, :]
        theta = (theta + math.pi) % (2 * math.pi) - math.pi
        a, b = np.nonzero((np.abs(ratio - 1) < 0.03) & (np.abs(theta) <= limit_rad) & (np.abs(theta) > 1e-6))
        turned = theta[a, b]
        angles.append(turned)
        shifts.append(detected[di[a]] - (_rotate(rel[ni[b]], turned) + c))
    angles_arr = np.concatenate(angles)
    shifts_arr = np.concatenate(shifts)
    cos, sin = np.cos(angles_arr)[:, None], np.sin(angles_arr)[:, None]
    px = cos * rel[None, :, 0] - sin * rel[None, :, 1] + c[0] + shifts_arr[:, None, 0]
    py = sin * rel[None, :, 0] + cos * rel[None, :, 1] + c[1] + shifts_arr[:, None, 1]
    distance = np.hypot(px[:, :, None] - detected[None, None, :, 0], py[:, :, None] - detected[None, None, :, 1])
    nearest = distance.min(axis=2)
    inside = nearest < radius_px
    score = inside.sum(axis=1) - np.where(inside, nearest, 0).sum(axis=1) / (radius_px * (len(nominal) + 1))
    best = int(np.argmax(score))
    angle, shift = float(angles_arr[best]), shifts_arr[best]
    matches = _assign(distance[best], radius_px)
    for _ in range(2):  # refine on the matches: least-squares rotation and shift
        if len(matches) >= 2:
            d = detected[[i for i, _ in matches]]
            n = rel[[j for _, j in matches]]
            dc, nc = d - d.mean(axis=0), n - n.mean(axis=0)
            angle = math.atan2(float(np.sum(nc[:, 0] * dc[:, 1] - nc[:, 1] * dc[:, 0])),
                               float(np.sum(nc[:, 0] * dc[:, 0] + nc[:, 1] * dc[:, 1])))
            shift = d.mean(axis=0) - (_rotate(n.mean(axis=0), angle) + c)
        elif len(matches) == 1:
            i, j = matches[0]
            angle, shift = 0.0, detected[i] - nominal[j]
        projected = _rotate(rel, angle) + c + shift
        distance_now = np.hypot(projected[:, None, 0] - detected[None, :, 0], projected[:, None, 1] - detected[None, :, 1])
        matches = _assign(distance_now, radius_px)
    projected = _rotate(rel, angle) + c + shift
    residuals = [math.hypot(*(detected[i] - projected[j])) for i, j in matches]
    rms = math.sqrt(float(np.mean(np.square(residuals)))) if residuals else math.nan
    arms = math.sqrt(sum(float(rel[j] @ rel[j]) for _, j in matches))
    error = math.degrees(rms / arms) if len(matches) >= 2 and arms > 0 else math.nan
    return PatternMatch(float(shift[0]), float(shift[1]), math.degrees(angle), tuple(matches), rms, error)


def _rotate(xy: np.ndarray, angle: float | np.ndarray) -> np.ndarray:
    """(x, y) points (..., 2) turned anticlockwise by `angle` (radians; one per point, or one)."""
    cos, sin = np.cos(angle), np.sin(angle)
    return np.stack([cos * xy[..., 0] - sin * xy[..., 1], sin * xy[..., 0] + cos * xy[..., 1]], axis=-1)


def _assign(distance: np.ndarray, radius_px: float) -> list[tuple[int, int]]:
    """(detection, nominal) pairs from `distance` (nominal, detection), closest first, each used
    once, within the radius."""
    flat = distance.ravel()
    order = np.argsort(flat, kind="stable")[:np.count_nonzero(flat < radius_px)]
    pairs = []
    used_d, used_n = set(), set()
    for j, i in zip(*np.unravel_index(order, distance.shape)):
        if i in used_d or j in used_n:
            continue
        pairs.append((int(i), int(j)))
        used_d.add(i)
        used_n.add(j)
    return sorted(pairs, key=lambda p: p[1])


@dataclass(frozen=True)
class SpotShape:
    """One spot on one frame. Positions are frame coordinates (x = column, y = row, 0-based,
    pixel centres at integers); fluxes in ADU above the local background."""

    name: str
    x: float
    y: float
    peak_adu: float
    flux_adu: float  # aperture sum, radius APERTURE_RADIUS_PX
    fit_flux_adu: float  # total flux of the fitted Gaussian
    fwhm_x_px: float
    fwhm_y_px: float
    e1: float
    e2: float
    ellipticity: float
    background_adu: float  # local background (stamp ring) above the quadrant's level
    saturated: bool
    fit_ok: bool

    @property
    def fwhm_px(self) -> float:
        """Quadratic mean of the two axes: sqrt((FWHMx^2 + FWHMy^2) / 2)."""
        return math.sqrt(0.5 * (self.fwhm_x_px ** 2 + self.fwhm_y_px ** 2))


def _profiles(edges_low: np.ndarray, centre: np.ndarray, sigma: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel-integrated unit Gaussians over pixels [e, e + 1], and their derivatives in centre and
    sigma: `centre` and `sigma` (n,) give (n, len(edges_low)) profiles. The normal CDF and density
    taken once per edge (a pixel's upper edge is the next one's lower edge)."""
    from .compiled.kernels import normal_cdf  # compiled: numba loaded only where units run

    centre, sigma = centre[:, None], sigma[:, None]
    z = (np.append(edges_low, edges_low[-1] + 1.0) - centre) / sigma
    cdf, pdf = normal_cdf(z), np.exp(-0.5 * z * z)
    norm = 1.0 / (math.sqrt(2.0 * math.pi) * sigma)
    profile = cdf[:, 1:] - cdf[:, :-1]
    d_centre = -(pdf[:, 1:] - pdf[:, :-1]) * norm
    d_sigma = -(pdf[:, 1:] * z[:, 1:] - pdf[:, :-1] * z[:, :-1]) * norm
    return profile, d_centre, d_sigma


def fit_gaussians(stamps: np.ndarray, valid: np.ndarray, start: np.ndarray, shapes: np.ndarray,
                  iterations: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Levenberg-Marquardt fits of flux * Px(x) * Py(y) + b to n stamps at once, P the
    pixel-integrated Gaussian profiles (analytic derivatives). `stamps` (n, h, w) float64, `valid`
    their pixels to fit (saturated ones and the padding of stamps cut by the image edge left out);
    `start` (n, 4) the first (x, y, sigma, flux); `shapes` (n, 2) each stamp's own (rows, cols),
    which bound its centre and widths. Stamp coordinates: pixel (r, c) covers [c - 0.5, c + 0.5].
    Each stamp follows its own damping and stopping rule, exactly as fitted alone (numpy's sums
    over the stamp's pixels: the same to float64 rounding); the batch only shares the numpy calls.
    The Jacobian is built from its separable factors, and only where a step is taken (its normal
    equations kept, not the Jacobian): a full-size frame's 20 spots take 3-5 ms of CPU with their
    cuts and moments (measure_spots), against 6-9 ms with a Jacobian at every trial step and the
    stamps measured one by one.
    Returns (n, 6) parameters (flux, x, y, sx, sy, b) and (n,) whether each converged."""
    n, rows, cols = stamps.shape
    col_edges, row_edges = np.arange(cols) - 0.5, np.arange(rows) - 0.5
    mask = valid.astype(np.float64)
    data = np.where(valid, stamps, 0.0)
    span = shapes.max(axis=1).astype(float)
    low = np.column_stack([np.zeros(n), np.full(n, -0.5), np.full(n, -0.5), np.full(n, 0.15), np.full(n, 0.15),
                           np.full(n, -np.inf)])
    high = np.column_stack([np.full(n, np.inf), shapes[:, 1] - 0.5, shapes[:, 0] - 0.5, span, span, np.full(n, np.inf)])
    x0, y0, sigma0, flux0 = start.T
    p = np.clip(np.column_stack([np.maximum(flux0, 1.0), x0, y0, sigma0, sigma0, np.zeros(n)]), low, high)

    def factors(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row and column factors (m, 6, h) and (m, 6, w) of the model's derivatives in (flux, x, y,
        sx, sy, b): each Jacobian column is the outer product of its two (the model is separable)."""
        flux = q[:, :1]
        px, dpx, dsx = _profiles(col_edges, q[:, 1], q[:, 3])
        py, dpy, dsy = _profiles(row_edges, q[:, 2], q[:, 4])
        ones_r, ones_c = np.ones_like(py), np.ones_like(px)
        return (np.stack([py, flux * py, flux * dpy, flux * py, flux * dsy, ones_r], axis=1),
                np.stack([px, dpx, px, dsx, px, ones_c], axis=1))

    def residuals(q: np.ndarray, rows_f: np.ndarray, cols_f: np.ndarray, index: np.ndarray) -> np.ndarray:
        """(m, h * w) model less data of stamps `index`, zero off `valid`."""
        shape = rows_f[:, 0, :, None] * cols_f[:, 0, None, :]
        residual = ((q[:, 0, None, None] * shape + q[:, 5, None, None]) - data[index]) * mask[index]
        return residual.reshape(len(index), rows * cols)

    def normal_equations(rows_f: np.ndarray, cols_f: np.ndarray, residual: np.ndarray, index: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray]:
        """J^T J (m, 6, 6) and J^T r (m, 6) of stamps `index`, J zero off `valid`."""
        jac = rows_f[:, :, :, None] * cols_f[:, :, None, :]
        jac *= mask[index][:, None]
        jac = jac.reshape(len(index), 6, rows * cols)
        return np.matmul(jac, jac.transpose(0, 2, 1)), np.matmul(jac, residual[..., None])[..., 0]

    everyone = np.arange(n)
    rows_f, cols_f = factors(p)
    residual = residuals(p, rows_f, cols_f, everyone)
    cost = np.einsum("ij,ij->i", residual, residual)
    jtj, gradient = normal_equations(rows_f, cols_f, residual, everyone)
    damping = np.full(n, 1e-3)
    converged = np.zeros(n, bool)
    active = np.ones(n, bool)
    eye = np.eye(6)
    for _ in range(iterations):
        index = np.flatnonzero(active)
        if not len(index):
            break
        scale = np.sqrt(np.maximum(np.diagonal(jtj[index], axis1=1, axis2=2), 1e-30))
        normal = jtj[index] / (scale[:, :, None] * scale[:, None, :]) + damping[index, None, None] * eye
        step_gradient = gradient[index]
        try:
            step = -np.linalg.solve(normal, (step_gradient / scale)[..., None])[..., 0] / scale
        except np.linalg.LinAlgError:  # some system singular: that fit ends where it stands, not converged
            solvable = np.array([np.linalg.matrix_rank(system) == 6 for system in normal])
            active[index[~solvable]] = False
            index, normal, step_gradient, scale = (index[solvable], normal[solvable], step_gradient[solvable],
                                                   scale[solvable])
            if not len(index):
                break
            step = -np.linalg.solve(normal, (step_gradient / scale)[..., None])[..., 0] / scale
        trial = np.clip(p[index] + step, low[index], high[index])
        trial_rows, trial_cols = factors(trial)
        trial_residual = residuals(trial, trial_rows, trial_cols, index)
        trial_cost = np.einsum("ij,ij->i", trial_residual, trial_residual)
        better = trial_cost < cost[index]
        kept = index[better]
        improvement = (cost[kept] - trial_cost[better]) / np.maximum(cost[kept], 1e-300)
        p[kept], cost[kept] = trial[better], trial_cost[better]
        if len(kept):  # the normal equations where the fits moved
            jtj[kept], gradient[kept] = normal_equations(trial_rows[better], trial_cols[better], trial_residual[better],
                                                         kept)
        damping[kept] = np.maximum(damping[kept] / 10, 1e-9)
        small = np.all(np.abs(step[better]) <= 1e-7 * (np.abs(p[kept]) + 1e-3), axis=1)
        done = kept[(improvement < 1e-10) | small]
        worse = index[~better]
        damping[worse] *= 10
        stuck = worse[damping[worse] > 1e8]  # no step lowers the cost: at the minimum
        converged[done] = converged[stuck] = True
        active[done] = active[stuck] = False
    return p, converged


@dataclass(frozen=True)
class SpotCut:
    """A spot's raw stamp as cut from its quadrant (measure_spots measures a frame's at once)."""

    name: str
    x: float  # the detection, image-area coordinates (x = column, y = row)
    y: float
    level: float  # the image median (raw ADU) the detection subtracted
    raw: np.ndarray  # uint16 copy of the stamp: rows r0.., columns c0.. of the image area
    r0: int
    c0: int


def cut_stamps(counts: np.ndarray, level: float, spots: Iterable[tuple[str, float, float]],
               half: int = STAMP_HALF_PX) -> list[SpotCut]:
    """The stamp of 2 half + 1 pixels about each spot (name, x, y) of `counts` (raw ADU, uint16;
    x = column, y = row), narrower where the image ends; a spot the image edge leaves less than
    5 x 5 pixels is left out."""
    height, width = counts.shape
    cuts = []
    for name, x, y in spots:
        xi, yi = round(x), round(y)
        r0, r1 = max(0, yi - half), min(height, yi + half + 1)
        c0, c1 = max(0, xi - half), min(width, xi + half + 1)
        if r1 - r0 >= 5 and c1 - c0 >= 5:
            cuts.append(SpotCut(name, x, y, level, counts[r0:r1, c0:c1].copy(), r0, c0))
    return cuts


def measure_spots(cuts: Sequence[SpotCut], origins: Sequence[tuple[int, int]],
                  half: int = STAMP_HALF_PX) -> list[SpotShape | None]:
    """A frame's stamps measured together, as arrays over its spots: each less `level` and its
    local background (median of the stamp's outer ring), its aperture flux (radius
    APERTURE_RADIUS_PX about the detection), peak and centroid; then all fitted at once
    (fit_gaussians), and their second moments. SpotShapes in frame coordinates (`origins`: each
    stamp's image-area origin (row, col) in the frame), None for a stamp with nothing positive
    in its aperture."""
    n, size = len(cuts), 2 * half + 1
    if not n:
        return []
    raw, valid = np.zeros((n, size, size)), np.zeros((n, size, size), bool)
    for k, cut in enumerate(cuts):  # top-left aligned: a stamp cut by the image edge is padded
        h, w = cut.raw.shape
        raw[k, :h, :w] = cut.raw
        valid[k, :h, :w] = True
    shapes = np.array([cut.raw.shape for cut in cuts])
    r0, c0 = np.array([cut.r0 for cut in cuts]), np.array([cut.c0 for cut in cuts])
    x, y = np.array([cut.x for cut in cuts]), np.array([cut.y for cut in cuts])
    levels = np.array([np.float64(np.float32(cut.level)) for cut in cuts])  # float32, as the detection subtracts it
    saturated = valid & (raw == ADC_SATURATED)
    grid = np.arange(size)
    xx, yy = (c0[:, None] + grid)[:, None, :], (r0[:, None] + grid)[:, :, None]  # image-area coordinates
    stamp = raw - levels[:, None, None]
    rr = np.hypot(xx - x[:, None, None], yy - y[:, None, None])
    local = _ring_medians(stamp, valid & (rr >= half - 2))
    stamp = np.where(valid, stamp - local[:, None, None], 0.0)
    inside = valid & (rr <= APERTURE_RADIUS_PX)
    flux = np.where(inside, stamp, 0.0).sum(axis=(1, 2))
    peak = np.where(valid, stamp, -np.inf).max(axis=(1, 2))
    weights = np.where(inside, np.clip(stamp, 0, None), 0.0)
    total = weights.sum(axis=(1, 2))
    fitted = np.flatnonzero(total > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cx, cy = (weights * xx).sum(axis=(1, 2)) / total, (weights * yy).sum(axis=(1, 2)) / total
        spread = (weights * ((xx - cx[:, None, None]) ** 2 + (yy - cy[:, None, None]) ** 2)).sum(axis=(1, 2)) / total
    sigma0 = np.sqrt(np.maximum(spread / 2 - 1 / 12, 0.09))
    start = np.column_stack([cx - c0, cy - r0, np.minimum(sigma0, half / 2), flux])
    params, converged = np.full((n, 6), np.nan), np.zeros(n, bool)
    if len(fitted):
        params[fitted], converged[fitted] = fit_gaussians(stamp[fitted], valid[fitted] & ~saturated[fitted],
                                                          start[fitted], shapes[fitted])
    fit_flux, fx, fy, sx, sy, _ = params.T
    fx, fy = fx + c0, fy + r0
    with np.errstate(invalid="ignore"):
        ok = converged & (np.abs(fx - cx) < 3) & (np.abs(fy - cy) < 3) & (sx < half / 2) & (sy < half / 2)
    centre_x, centre_y = np.where(ok, fx, cx), np.where(ok, fy, cy)
    # Second moments within 3 sigma of the centre, less a pixel's own 1/12 px^2.
    sigma = np.where(ok, np.maximum(0.5 * (sx + sy), 0.8), np.maximum(sigma0, 0.8))
    ux, uy = xx - centre_x[:, None, None], yy - centre_y[:, None, None]
    near = valid & (np.hypot(ux, uy) <= np.maximum(3.0 * sigma, 2.5)[:, None, None])
    w = np.where(near, np.clip(stamp, 0, None), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        wsum = w.sum(axis=(1, 2))
        qxx = (w * ux ** 2).sum(axis=(1, 2)) / wsum - 1 / 12
        qyy = (w * uy ** 2).sum(axis=(1, 2)) / wsum - 1 / 12
        qxy = (w * ux * uy).sum(axis=(1, 2)) / wsum
        trace = qxx + qyy
        e1 = np.where(trace > 0, (qxx - qyy) / trace, np.nan)
        e2 = np.where(trace > 0, 2 * qxy / trace, np.nan)
    fwhm_x = np.where(ok, sx * FWHM_PER_SIGMA, np.nan)
    fwhm_y = np.where(ok, sy * FWHM_PER_SIGMA, np.nan)
    fit_flux = np.where(ok, fit_flux, np.nan)
    columns = zip(centre_x.tolist(), centre_y.tolist(), peak.tolist(), flux.tolist(), fit_flux.tolist(),
                  fwhm_x.tolist(), fwhm_y.tolist(), e1.tolist(), e2.tolist(), local.tolist(),
                  saturated.any(axis=(1, 2)).tolist(), ok.tolist())
    return [SpotShape(cut.name, px + col0, py + row0, pk, fl, ff, wx, wy, a, b, math.hypot(a, b), bg, sat, good)
            if lit else None
            for cut, (row0, col0), lit, (px, py, pk, fl, ff, wx, wy, a, b, bg, sat, good)
            in zip(cuts, origins, (total > 0).tolist(), columns)]


def _ring_medians(stamps: np.ndarray, ring: np.ndarray) -> np.ndarray:
    """np.median of each stamp's `ring` pixels (0 for a ring of fewer than 8): the ring's values
    sorted first, then its middle one, or the mean of its middle two."""
    n = len(stamps)
    count = ring.sum(axis=(1, 2))
    ordered = np.sort(np.where(ring, stamps, np.inf).reshape(n, -1), axis=1)
    rows = np.arange(n)
    low, high = ordered[rows, np.maximum(count - 1, 0) // 2], ordered[rows, count // 2]
    return np.where(count >= 8, (low + high) / 2, 0.0)


# ---------------------------------------------------------------------------------------------
# Where the pattern and the image area are, per quadrant, in frame coordinates
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ImageArea:
    """A quadrant's image area in frame coordinates (frame orientation)."""

    rows: slice
    cols: slice

    @classmethod
    def of(cls, geometry: CCDGeometry, quadrant: str) -> ImageArea:
        rows, cols = geometry.frame_region_slices(quadrant, "image")
        return cls(rows, cols)

    @property
    def shape(self) -> tuple[int, int]:
        return self.rows.stop - self.rows.start, self.cols.stop - self.cols.start

    @property
    def centre(self) -> tuple[float, float]:
        """(x, y) of the image centre in image-area coordinates."""
        height, width = self.shape
        return (width - 1) / 2.0, (height - 1) / 2.0


def nominal_positions(pattern: Sequence[tuple[str, float, float]], area: ImageArea) -> np.ndarray:
    """(n, 2) nominal (x, y) of the pattern's spots in image-area coordinates."""
    height, width = area.shape
    return np.array([(fx * width, fy * height) for _, fx, fy in pattern], float).reshape(-1, 2)


def match_radius_px(area: ImageArea) -> float:
    """How far a spot may sit from the locked pattern: 4 px, 1 % of the image on full frames
    (nominal patterns are not exact to the pixel)."""
    return max(4.0, 0.01 * max(area.shape))


def to_canonical_xy(geometry: CCDGeometry, quadrant: str, x: float, y: float) -> tuple[float, float]:
    """Frame (x, y) -> canonical (col, row) of the quadrant (node at 0, 0; prescan first)."""
    q_rows, q_cols = geometry.quadrant_slices(quadrant)
    flip_rows, flip_cols = geometry.flips(quadrant)
    col, row = x - q_cols.start, y - q_rows.start
    if flip_cols:
        col = geometry.quad_width - 1 - col
    if flip_rows:
        row = geometry.quad_height - 1 - row
    return col, row


# ---------------------------------------------------------------------------------------------
# The pass over the frames (worker)
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class QuadrantSpots:
    """One quadrant of one frame: level, sources, lock and the matched spots."""

    background_adu: float  # image median minus the prescan offset
    level_adu: float  # image median (raw ADU): what detection subtracts
    noise_adu: float
    detections: int  # sources kept (brighter than the floor)
    brightest_peak_adu: float  # of every source detected, kept or not
    lock: PatternMatch | None
    spots: tuple[SpotShape, ...]

    @property
    def matched(self) -> int:
        return len(self.lock.matches) if self.lock else 0

    @property
    def locked(self) -> bool:
        return self.matched >= MIN_MATCHED


@dataclass(frozen=True)
class FrameSpots:
    stats: FrameStats
    quadrants: dict[str, QuadrantSpots]


def max_pool(counts: np.ndarray, size: int) -> np.ndarray:
    """The largest count of each size x size block (the last row and column of blocks may be
    narrower): a spot's peak survives whole, on an image size^2 times smaller. Rows first, in one
    reduction over a view (each pooled row the maximum of `size` whole image rows: as fast as
    reading the image once), then the columns of that smaller image, `size` strided maxima:
    0.8 ms for a full-size quadrant by 8, against 1.5 ms halving the image pair by pair."""
    height, width = counts.shape
    whole_rows, whole_cols = height - height % size, width - width % size
    rows = np.empty((-(-height // size), width), counts.dtype)
    np.maximum.reduce(counts[:whole_rows].reshape(whole_rows // size, size, width), axis=1,
                      out=rows[:whole_rows // size])
    if whole_rows < height:  # the last, narrower block of rows
        np.maximum.reduce(counts[whole_rows:], axis=0, out=rows[-1])
    blocks = rows[:, :whole_cols].reshape(len(rows), whole_cols // size, size)
    pooled = np.empty((len(rows), -(-width // size)), counts.dtype)
    pooled[:, :whole_cols // size] = blocks[:, :, 0]
    for k in range(1, size):
        np.maximum(pooled[:, :whole_cols // size], blocks[:, :, k], out=pooled[:, :whole_cols // size])
    if whole_cols < width:  # the last, narrower block of columns
        pooled[:, -1] = rows[:, whole_cols:].max(axis=1)
    return pooled


SOURCE_DTYPE = np.dtype([("x", float), ("y", float), ("peak", float), ("flux", float)])


def detect_sources(counts: np.ndarray, level: float, threshold: float, floor_adu: float) -> tuple[np.ndarray, float]:
    """The sources `sep` finds in `counts` (raw ADU, uint16) less `level` (threshold in ADU, at
    least DETECT_MIN_PIXELS pixels, its default 3 x 3 filter, no deblending) peaking at or above
    `floor_adu`, without sweeping the whole image with sep (1.5 ms of CPU a full-size quadrant
    against 14-18 ms for sep over it and the float32 copy it needs):

    1. sep (no filter, no cleaning, one pixel enough) on the image max-pooled DETECT_BIN x
       DETECT_BIN: every pixel above the threshold lies in a pooled pixel above it, and a pooled
       source's peak is its brightest pixel's, exactly;
    2. sep as over the whole image on the full-resolution window (bounding box and
       DETECT_MARGIN_PX) of each pooled source reaching the floor; a source is kept in the
       window of the pooled source holding its peak pixel. A source's pixels (filtered above the
       threshold) lie within a pixel of pixels above it, all in one pooled source: its window
       holds it whole, and it is measured as over the whole image.

    Both without deblending (deblend_cont 1), so with deblend_nthresh 1: sep otherwise builds its
    32 sub-thresholds of every object all the same (half of a small image's extraction time).
    Same sources, positions, peaks and fluxes as sep over the whole image, but for sep's cleaning
    (a faint detection in a brighter one's wings merged into it), which sees only the window: a
    faint source near a bright one may be kept (seen on synthetic images without a floor: a
    25-60 ADU source 14-20 px from a bright spot). Every frame of a full-size FOCUS00 (floor 2 %
    of the expected peak) and of the tests' FOCUS00, PSFLUX00 and PSF01 days (with and without
    a floor) gave the same sources, locks and spots as sep over the whole image.
    Returns (x, y, peak, flux) per source (array coordinates, ADU above `level`) and the
    brightest peak of every pooled source, kept or not (NaN without one)."""
    import sep

    pooled = np.subtract(max_pool(counts, DETECT_BIN), np.float32(level), dtype=np.float32)
    # sep allocates its pixel stack (300 000 pixels unless set) at every call: 0.5 ms, ten times a
    # small window's extraction. An image's sources cannot hold more pixels than it has.
    stack = sep.get_extract_pixstack()
    try:
        sep.set_extract_pixstack(max(pooled.size, 1024))
        try:
            objects, segments = sep.extract(pooled, threshold, minarea=1, filter_kernel=None, deblend_cont=1.0,
                                            deblend_nthresh=1, clean=False, segmentation_map=True)
        except Exception:  # noqa: BLE001 - sep raises a bare Exception when it refuses images with too many objects: not a spot pattern
            return np.zeros(0, SOURCE_DTYPE), math.nan
        sources = []
        for index in np.flatnonzero(objects["peak"] >= floor_adu):
            sources += _window_sources(counts, level, threshold, floor_adu, objects[index], segments, index + 1)
    finally:
        sep.set_extract_pixstack(stack)
    brightest = float(objects["peak"].max()) if len(objects) else math.nan
    return np.array(sources, SOURCE_DTYPE), brightest


def _window_sources(counts: np.ndarray, level: float, threshold: float, floor_adu: float, pooled_source: np.void,
                    segments: np.ndarray, label: int) -> list[tuple[float, float, float, float]]:
    """sep over the full-resolution window of one pooled source (`label` in the pooled image's
    `segments`): the sources peaking in it, in `counts` coordinates."""
    import sep

    height, width = counts.shape
    o = pooled_source
    r0 = max(0, int(o["ymin"]) * DETECT_BIN - DETECT_MARGIN_PX)
    r1 = min(height, (int(o["ymax"]) + 1) * DETECT_BIN + DETECT_MARGIN_PX)
    c0 = max(0, int(o["xmin"]) * DETECT_BIN - DETECT_MARGIN_PX)
    c1 = min(width, (int(o["xmax"]) + 1) * DETECT_BIN + DETECT_MARGIN_PX)
    window = np.subtract(counts[r0:r1, c0:c1], np.float32(level), dtype=np.float32)
    sep.set_extract_pixstack(max(window.size, 1024))
    sources = []
    for f in sep.extract(window, threshold, minarea=DETECT_MIN_PIXELS, deblend_cont=1.0, deblend_nthresh=1):
        row, col = int(f["ypeak"]) + r0, int(f["xpeak"]) + c0
        if f["peak"] >= floor_adu and segments[row // DETECT_BIN, col // DETECT_BIN] == label:
            sources.append((float(f["x"]) + c0, float(f["y"]) + r0, float(f["peak"]), float(f["flux"])))
    return sources


def find_spots(counts: np.ndarray, level: float, noise: float, pattern: Sequence[tuple[str, float, float]],
               centre: tuple[float, float], radius: float, floor_adu: float
               ) -> tuple[int, float, PatternMatch | None, list[SpotCut]]:
    """Detect and lock the spots of one quadrant's image area (`counts`: raw ADU, frame
    orientation) and cut their stamps (measure_spots measures them, a frame's at once)."""
    threshold = max(DETECT_SIGMA * noise, 5.0) if math.isfinite(noise) else 50.0
    sources, brightest = detect_sources(counts, level, threshold, floor_adu)
    keep = np.sort(sources, order="flux")[::-1][:MATCH_CANDIDATES]
    detected = np.column_stack([keep["x"], keep["y"]]) if len(keep) else np.zeros((0, 2))
    nominal = np.array([(fx * counts.shape[1], fy * counts.shape[0]) for _, fx, fy in pattern]).reshape(-1, 2)
    lock = match_pattern(detected, nominal, centre, radius)
    matched = [(pattern[j][0], float(detected[i, 0]), float(detected[i, 1])) for i, j in lock.matches] if lock else []
    return len(keep), brightest, lock, cut_stamps(counts, level, matched)


def spot_frame_unit(path: Path, vstart: int, vend: int | None, pattern: tuple[tuple[str, float, float], ...],
                    floor_adu: float, index: FrameIndex | None = None) -> FrameSpots | str:
    """Worker: one frame read once: measure_frame_spots, or why the frame is unreadable. With its
    `index` (fits.index_frame, made by the run's process) the frame is mapped without astropy."""
    try:
        with read_frame(path, index) as frame:
            return measure_frame_spots(frame, window_rows(frame.geometry, vstart, vend), pattern, floor_adu)
    except FrameError as exc:
        return f"unreadable frame: {exc}"


def measure_frame_spots(frame: Frame, rows: slice, pattern: Sequence[tuple[str, float, float]], floor_adu: float,
                        each_quadrant: Callable[[str, np.ndarray, QuadrantStats], None] | None = None) -> FrameSpots:
    """The lock's work on one opened frame (each quadrant copied out once): its generic
    statistics, and per quadrant the locked spots, all the frame's spots fitted together.
    `each_quadrant(q, counts, stats)` gets each quadrant's counts as read (frame orientation) and
    their statistics: a unit reading an exposure's frames together does more with the same read
    (psf_lib.xtalk_lock_unit)."""
    geometry = frame.geometry
    stats, found = {}, {}
    stamps, origins = [], []
    for q in QUADRANTS:
        q_rows, q_cols = geometry.quadrant_slices(q)
        # the generic check's statistics, as the check takes them, made as the quadrant is read
        counts, stats[q] = read_quadrant_stats(frame, q, geometry, rows)
        if each_quadrant is not None:
            each_quadrant(q, counts, stats[q])
        area = ImageArea.of(geometry, q)
        image = counts[area.rows.start - q_rows.start:area.rows.stop - q_rows.start,
                       area.cols.start - q_cols.start:area.cols.stop - q_cols.start]
        level, noise = stats[q].image.median, stats[q].image.std
        found[q] = find_spots(image, level, noise, pattern, area.centre, match_radius_px(area), floor_adu)
        stamps += found[q][3]
        origins += [(area.rows.start, area.cols.start)] * len(found[q][3])
    shapes = iter(measure_spots(stamps, origins))
    quadrants = {}
    for q, (detections, brightest, lock, cuts) in found.items():
        level = stats[q].image.median
        measured = tuple(shape for shape in (next(shapes) for _ in cuts) if shape is not None)
        quadrants[q] = QuadrantSpots(level - stats[q].prescan.clipped_mean, level, stats[q].image.std,
                                     detections, brightest, lock, measured)
    return FrameSpots(FrameStats(geometry, stats), quadrants)


@dataclass(frozen=True)
class ExposureSpots:
    """What a unit reading an exposure's frames together gives: each frame's spot_frame_unit
    result, and what it made more from the same read."""

    frames: dict[int, FrameSpots | str]  # ccd -> measurements, or why the frame is unreadable
    extra: Any


@dataclass(frozen=True)
class ReadTogether:
    """Exposures whose frames one unit reads together (PSF01's bright exposures and their
    cross-talk): `columns(partial)` says which columns' exposures, from the partial SpotLock
    (exposure times, expected peaks); `unit(frames, pattern)` is module-level, `frames` a tuple of
    (ccd, path, vstart, vend, floor_adu, index: fits.FrameIndex or None), and gives an
    ExposureSpots."""

    unit: Callable[..., ExposureSpots]
    columns: Callable[[SpotLock], Iterable[int]]


# ---------------------------------------------------------------------------------------------
# The task side: the pass, the lock per quadrant, the checks
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FrameInfo:
    obsid: int
    ccd: int
    column: int  # 0-based column of the structure
    exptime_s: float
    mirr_pos_mm: float
    path: Path


@dataclass(frozen=True)
class QuadrantLock:
    """The pattern's lock on one quadrant: medians over the frames where it held."""

    dx: float
    dy: float
    rotation_deg: float
    rotation_error_deg: float  # from the spots' scatter about the locked pattern
    frames_locked: int
    frames: int
    spots_found: float  # median matched spots per frame
    missing: tuple[str, ...]  # nominal spots never found where the pattern held

    @property
    def shift_px(self) -> float:
        return math.hypot(self.dx, self.dy)


@dataclass
class SpotLock(SubTaskResult):
    """`lock`: every frame's spots and the lock per (CCD, quadrant)."""

    frames: dict[tuple[int, int], FrameSpots]  # (obsid, ccd) -> measurements
    info: dict[tuple[int, int], FrameInfo]
    locks: dict[tuple[int, str], QuadrantLock]
    pattern: tuple[tuple[str, float, float], ...]
    wavelength_nm: int | None
    tfwc_point_s: float | None
    # obsid -> what the unit reading that exposure's frames together made more (ReadTogether)
    read_together: dict[int, Any] = field(default_factory=dict, kw_only=True)

    @classmethod
    def produce(cls, ctx: TaskContext) -> SpotLock:
        """`lock` switched off: the frames are measured and the spots locked here (flags said)."""
        return lock_spots(ctx)

    def spots(self, ccd: int | None = None, quadrant: str | None = None
              ) -> Iterable[tuple[FrameInfo, str, SpotShape]]:
        """(frame, quadrant, spot) for every measured spot, in OBSID order."""
        for key in sorted(self.frames):
            info = self.info[key]
            if ccd is not None and info.ccd != ccd:
                continue
            for q, measured in self.frames[key].quadrants.items():
                if quadrant is None or q == quadrant:
                    for spot in measured.spots:
                        yield info, q, spot

    def columns(self) -> list[int]:
        return sorted({info.column for info in self.info.values() if info.column >= 0})

    def column_exptime(self, column: int) -> float:
        times = [i.exptime_s for i in self.info.values() if i.column == column]
        return float(np.median(times)) if times else math.nan

    def expected_peak_adu(self, exptime_s: float) -> float:
        """The peak an in-focus spot reaches in `exptime_s` (tFWC_point: EFFECTIVE_SATURATION_ADU)."""
        if not self.tfwc_point_s or not math.isfinite(exptime_s):
            return math.nan
        return EFFECTIVE_SATURATION_ADU * exptime_s / self.tfwc_point_s


def test_wavelength(ctx: TaskContext) -> int | None:
    if ctx.test.wavelength is not None:
        return int(ctx.test.wavelength)
    for exposure in ctx.dataset.exposures:
        try:
            return ctx.chamber.wavelength(int(float(exposure.row.get("wave"))))
        except (ChamberError, TypeError, ValueError):
            continue
    return None


def _float(value: Any, default: float = math.nan) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def lock_spots(ctx: TaskContext, together: ReadTogether | None = None) -> SpotLock:
    """The pass over every frame (one unit per frame; with `together`, one unit per exposure of
    its columns, its frames read together), then the lock per quadrant, flags raised."""
    nm = test_wavelength(ctx)
    try:
        tfwc = ctx.chamber.tfwc_point[nm] if nm is not None else None
    except KeyError:
        tfwc = None
    pattern = tuple(ctx.chamber.spot_pattern)
    refs, infos = [], {}
    columns = {e.obsid: e.column for e in ctx.dataset.exposures}
    for ccd in ctx.ccds:
        for ref in ctx.dataset.frames(ccd):
            if ref.path.is_file():
                refs.append(ref)
                infos[(ref.obsid, ccd)] = FrameInfo(ref.obsid, ccd, columns.get(ref.obsid, -1),
                                                    _float(ref.row.get("exptime")), _float(ref.row.get("mirr_pos")),
                                                    ref.path)
    partial = SpotLock({}, infos, {}, pattern, nm, tfwc)
    chosen = set(together.columns(partial)) if together is not None else set()
    calls, single, grouped = [], [], defaultdict(list)
    for ref in refs:
        expected = partial.expected_peak_adu(infos[(ref.obsid, ref.ccd)].exptime_s)
        floor = MIN_PEAK_FRACTION * expected if math.isfinite(expected) else 0.0
        vend = ref.row.get("vend")
        vstart, vend = int(_float(ref.row.get("vstart"), 0)), int(_float(vend)) if vend not in (None, "") else None
        if infos[(ref.obsid, ref.ccd)].column in chosen:
            grouped[ref.obsid].append((ref.ccd, ref.path, vstart, vend, floor, index_frame(ref.path)))
        else:
            single.append(ref)
            calls.append((ref.path, vstart, vend, pattern, floor, index_frame(ref.path)))
    results = _lock_units(ctx, [(ref.obsid, ref.ccd) for ref in single], calls, together, grouped, pattern,
                          partial.read_together)
    by_frame: dict[tuple[int, int], Any] = {}
    frames: dict[tuple[int, int], FrameSpots] = {}
    for ref in refs:
        key = (ref.obsid, ref.ccd)
        result = results[key]
        if isinstance(result, str):
            by_frame[key] = result
            infos.pop(key, None)
        else:
            by_frame[key] = result.stats
            frames[key] = result
    ctx.keep(FrameMeasures(by_frame))  # the generic check reuses these: the frames are not read again
    partial.frames = frames
    partial.locks = quadrant_locks(frames, infos, pattern)
    raise_lock_flags(ctx, partial)
    return partial


def _lock_units(ctx: TaskContext, keys: list[tuple[int, int]], calls: list[tuple], together: ReadTogether | None,
                grouped: dict[int, list[tuple]], pattern: tuple[tuple[str, float, float], ...],
                extras: dict[int, Any]) -> dict[tuple[int, int], FrameSpots | str]:
    """(obsid, ccd) -> the frame's measurements: spot_frame_unit on the frames `calls` (`keys`),
    and `together.unit` on the exposures `grouped` (obsid -> its frames), queued first on the
    run's executor (the longer units); their extras into `extras` by obsid."""
    if not grouped or together is None:
        return dict(zip(keys, ctx.map_units(spot_frame_unit, calls)))
    exposure_calls = [(tuple(frames), pattern) for frames in grouped.values()]
    if ctx.executor is not None:
        underway = ctx.executor.start(together.unit, exposure_calls)
        results = dict(zip(keys, ctx.map_units(spot_frame_unit, calls)))
        exposures = underway.results()
    else:
        exposures = ctx.map_units(together.unit, exposure_calls)
        results = dict(zip(keys, ctx.map_units(spot_frame_unit, calls)))
    for obsid, exposure in zip(grouped, exposures):
        results.update({(obsid, ccd): measured for ccd, measured in exposure.frames.items()})
        extras[obsid] = exposure.extra
    return results


def quadrant_locks(frames: dict[tuple[int, int], FrameSpots], infos: dict[tuple[int, int], FrameInfo],
                   pattern: Sequence[tuple[str, float, float]]) -> dict[tuple[int, str], QuadrantLock]:
    per_quadrant: dict[tuple[int, str], list[QuadrantSpots]] = defaultdict(list)
    for key, measured in sorted(frames.items()):
        for q, spots in measured.quadrants.items():
            per_quadrant[(infos[key].ccd, q)].append(spots)
    locks = {}
    for (ccd, q), items in sorted(per_quadrant.items()):
        held = [s for s in items if s.locked]
        if held:
            seen = {spot.name for s in held for spot in s.spots}
            missing = tuple(name for name, _, _ in pattern if name not in seen)
            locks[(ccd, q)] = QuadrantLock(
                float(np.median([s.lock.dx for s in held])), float(np.median([s.lock.dy for s in held])),
                float(np.median([s.lock.rotation_deg for s in held])),
                float(np.median([s.lock.rotation_error_deg for s in held])), len(held), len(items),
                float(np.median([s.matched for s in held])), missing)
        else:
            locks[(ccd, q)] = QuadrantLock(math.nan, math.nan, math.nan, math.nan, 0, len(items), 0.0,
                                           tuple(name for name, _, _ in pattern))
    return locks


def raise_lock_flags(ctx: TaskContext, result: SpotLock) -> None:
    """STARS_MISSING: pattern not found, shifted or rotated beyond the limits, spots missing."""
    shift_limit, rotation_limit = float(ctx.limits.lock_shift_px), float(ctx.limits.lock_rotation_deg)
    n = len(result.pattern)
    for (ccd, q), lock in sorted(result.locks.items()):
        if lock.frames_locked == 0:
            found = [f.quadrants[q] for key, f in result.frames.items() if result.info[key].ccd == ccd]
            sources = max((s.detections for s in found), default=0)
            peaks = [s.brightest_peak_adu for s in found if math.isfinite(s.brightest_peak_adu)]
            brightest = f"; brightest source {max(peaks):.0f} ADU above the background" if peaks else "; no source detected"
            ctx.flags.raise_flag("STARS_MISSING", f"spot pattern not found in any of {lock.frames} frames: fewer than "
                                 f"{MIN_MATCHED} of the {n} nominal spots matched (at most {sources} spot-like sources"
                                 f"{brightest})", ccd=ccd, quadrant=q)
            continue
        if lock.shift_px > shift_limit:
            ctx.flags.raise_flag("STARS_MISSING", f"spot pattern shifted by {lock.shift_px:.1f} px (dx {lock.dx:+.1f}, "
                                 f"dy {lock.dy:+.1f} px) from the nominal, beyond the {shift_limit:g} px limit",
                                 ccd=ccd, quadrant=q)
        # A small pattern (the test geometries) measures its rotation poorly: judged beyond 2 sigma.
        error = lock.rotation_error_deg if math.isfinite(lock.rotation_error_deg) else 0.0
        if abs(lock.rotation_deg) - 2 * error > rotation_limit:
            ctx.flags.raise_flag("STARS_MISSING", f"spot pattern rotated by {lock.rotation_deg:+.2f} deg (+- "
                                 f"{error:.2f}), beyond the {rotation_limit:g} deg limit", ccd=ccd, quadrant=q)
        if lock.missing:
            ctx.flags.raise_flag("STARS_MISSING", f"spot(s) {', '.join(lock.missing)} not found in any of the "
                                 f"{lock.frames_locked} frames where the pattern locked (off the image, or not lit?)",
                                 ccd=ccd, quadrant=q)
        if lock.frames_locked < lock.frames:
            lost = sorted(result.info[key].obsid for key, f in result.frames.items()
                          if result.info[key].ccd == ccd and not f.quadrants[q].locked)
            ctx.flags.raise_flag("STARS_MISSING", f"spot pattern not found in {len(lost)} of {lock.frames} frames "
                                 f"(OBSIDs {', '.join(map(str, lost[:10]))}{' ...' if len(lost) > 10 else ''})",
                                 ccd=ccd, quadrant=q)


def lock_outputs(result: SpotLock, test: str) -> Outputs:
    out = Outputs()
    rows = []
    for (ccd, q), lock in sorted(result.locks.items()):
        out.value("lock_dx_px", lock.dx, ccd, q)
        out.value("lock_dy_px", lock.dy, ccd, q)
        out.value("lock_shift_px", lock.shift_px, ccd, q)
        out.value("lock_rotation_deg", lock.rotation_deg, ccd, q)
        out.value("spots_found", lock.spots_found, ccd, q)
        rows.append([f"CCD{ccd}", q, f"{lock.dx:+.2f}", f"{lock.dy:+.2f}", f"{lock.shift_px:.2f}",
                     f"{lock.rotation_deg:+.3f}", f"{lock.frames_locked}/{lock.frames}", f"{lock.spots_found:g}",
                     ", ".join(lock.missing) or "–"])
    table_rows = []
    for info, q, spot in result.spots():
        table_rows.append([info.obsid, f"CCD{info.ccd}", q, spot.name, info.column + 1, f"{info.exptime_s:g}",
                           f"{info.mirr_pos_mm:g}", f"{spot.x:.3f}", f"{spot.y:.3f}", f"{spot.peak_adu:.1f}",
                           f"{spot.flux_adu:.1f}", f"{spot.fit_flux_adu:.1f}", f"{spot.fwhm_x_px:.4f}",
                           f"{spot.fwhm_y_px:.4f}", f"{spot.e1:.4f}", f"{spot.e2:.4f}", f"{spot.ellipticity:.4f}",
                           f"{spot.background_adu:.2f}", int(spot.saturated), int(spot.fit_ok)])
    name = f"{test}_spots.csv"
    out.tables.append(CsvTable(name, SPOT_TABLE_HEADER, table_rows))
    out.values.append(_pattern_value(result.pattern))
    out.sections.append(Section("Source lock", "\n\n".join([
        "Spots detected with sep (threshold 10 x the image's robust std above its median) on every frame, matched "
        "to the chamber's nominal pattern by a rigid transform (shift of the pattern centre dx, dy along the "
        "frame's columns and rows, rotation about the image centre); per quadrant the medians over the frames "
        f"where at least {MIN_MATCHED} spots matched. Every measured spot of every frame: `products/{name}` (frame "
        "coordinates, 0-based; FWHM from a pixel-integrated Gaussian fit).",
        markdown_table(["CCD", "Q", "dx (px)", "dy (px)", "shift (px)", "rotation (deg)", "frames locked",
                        "spots", "missing"], rows)])))
    return out


SPOT_TABLE_HEADER = ("obsid", "ccd", "quadrant", "spot", "column", "exptime_s", "mirr_pos_mm", "x", "y", "peak_adu",
                     "flux_adu", "fit_flux_adu", "fwhm_x_px", "fwhm_y_px", "e1", "e2", "ellipticity",
                     "local_background_adu", "saturated", "fit_ok")


def _pattern_value(pattern: Sequence[tuple[str, float, float]]) -> Measured:
    return Measured("spot_pattern", [f"{name} ({fx:g}, {fy:g})" for name, fx, fy in pattern])


LOCK_VALUES: tuple[ValueSpec, ...] = (
    ValueSpec("lock_dx_px", "px", 2, "pattern shift along the frame's columns from the nominal (median over frames)"),
    ValueSpec("lock_dy_px", "px", 2, "pattern shift along the frame's rows from the nominal (median over frames)"),
    ValueSpec("lock_shift_px", "px", 2, "modulus of the pattern shift"),
    ValueSpec("lock_rotation_deg", "deg", 3, "pattern rotation about the image centre (median over frames)"),
    ValueSpec("spots_found", "", 1, "nominal spots matched per frame (median)"),
    ValueSpec("background_adu", "ADU", 3, "image median minus the prescan offset, median over frames (check)"),
    ValueSpec("spot_fwhm_px", "px", 3, "spot FWHM sqrt((FWHMx^2 + FWHMy^2) / 2), median over spots and frames (check)"),
    ValueSpec("saturation_time_s", "s", 3, "time a spot's peak takes to reach 55000 ADU at the chamber's nominal "
              "FWHM, from its flux rate (median; check)"),
    ValueSpec("spot_pattern", "", None, "the nominal pattern locked onto: spot (x, y) fractions of the image area",
              scope="test"),
)


class PointSourceTask(AnalysisTask):
    """Base of the point-source families: `lock` before the generic `check`."""

    def lock(self, ctx: TaskContext) -> SpotLock:
        result = lock_spots(ctx)
        result.outputs = lock_outputs(result, ctx.test.name)
        return result


# ---------------------------------------------------------------------------------------------
# Raw-data checks of point-source frames (Family.checks)
# ---------------------------------------------------------------------------------------------

def _quadrant_keys(result: SpotLock) -> list[tuple[int, str]]:
    return sorted({(info.ccd, q) for key, info in result.info.items() if key in result.frames for q in QUADRANTS})


def check_background(ctx: TaskContext, stats: RawStats) -> None:
    """Image median minus the prescan offset per frame; the quadrant's median within
    `point_background_adu` (BGD_OOL with the worst frame)."""
    result = ctx.need(SpotLock)
    low, high = ctx.limits.point_background_adu
    for ccd, q in _quadrant_keys(result):
        per_frame = [(result.info[key].obsid, f.quadrants[q].background_adu) for key, f in sorted(result.frames.items())
                     if result.info[key].ccd == ccd]
        value = float(np.median([v for _, v in per_frame]))
        ctx.set_value(ccd, q, "background_adu", value)
        if not low <= value <= high:
            obsid, worst = max(per_frame, key=lambda item: abs(item[1]))
            ctx.flags.raise_flag("BGD_OOL", f"background {value:+.2f} ADU (image median minus prescan offset, median of "
                                 f"{len(per_frame)} frames; most extreme {worst:+.2f} at OBSID {obsid}) outside "
                                 f"[{low:g}, {high:g}] ADU", ccd=ccd, quadrant=q)


def spot_fwhm_by_frame(result: SpotLock, ccd: int, q: str) -> list[tuple[FrameInfo, float]]:
    """(frame, median FWHM of its fitted spots) for the frames of a quadrant with spots."""
    values = []
    for key, f in sorted(result.frames.items()):
        info = result.info[key]
        if info.ccd != ccd:
            continue
        fwhm = [s.fwhm_px for s in f.quadrants[q].spots if s.fit_ok and not s.saturated]
        if fwhm:
            values.append((info, float(np.median(fwhm))))
    return values


def check_fwhm(ctx: TaskContext, stats: RawStats, best_of_scan: bool = False) -> None:
    """Median spot FWHM within `fwhm_px` (FOCUS_OOL); `best_of_scan`: the smallest frame median
    (a focus scan is out of focus by design at its ends)."""
    result = ctx.need(SpotLock)
    low, high = ctx.limits.fwhm_px
    for ccd, q in _quadrant_keys(result):
        per_frame = spot_fwhm_by_frame(result, ccd, q)
        if not per_frame:
            continue
        if best_of_scan:
            info, value = min(per_frame, key=lambda item: item[1])
            what = f"smallest median over the scan (OBSID {info.obsid}, mirror at {info.mirr_pos_mm:g} mm)"
        else:
            value = float(np.median([v for _, v in per_frame]))
            what = f"median of {len(per_frame)} frames"
        ctx.set_value(ccd, q, "spot_fwhm_px", value)
        if not low <= value <= high:
            ctx.flags.raise_flag("FOCUS_OOL", f"spot FWHM {value:.2f} px ({what}) outside [{low:g}, {high:g}] px",
                                 ccd=ccd, quadrant=q)


def saturation_time_s(flux_adu: float, exptime_s: float, nominal_fwhm_px: float) -> float:
    """Seconds for the peak of a spot of this flux rate to reach EFFECTIVE_SATURATION_ADU if it had
    the nominal FWHM (a Gaussian's peak is flux / (2 pi sigma^2))."""
    if not (flux_adu > 0 and exptime_s > 0):
        return math.nan
    sigma = nominal_fwhm_px / FWHM_PER_SIGMA
    return EFFECTIVE_SATURATION_ADU * 2 * math.pi * sigma ** 2 / (flux_adu / exptime_s)


def check_flux(ctx: TaskContext, stats: RawStats, peaks: bool = True) -> None:
    """Per quadrant and column: the spots' time to full well (from their flux) within
    tFWC_point x (1 +- saturation_time_tolerance), and (`peaks`) their median peak within the
    expected peak x (1 +- peak_tolerance); FLUX_OOL with value, window and column."""
    result = ctx.need(SpotLock)
    tfwc = result.tfwc_point_s
    if not tfwc:
        ctx.log.warning(f"no tFWC_point for {result.wavelength_nm} nm in chamber {ctx.chamber.name}: spot fluxes "
                        "not checked")
        return
    t_tol, p_tol = float(ctx.limits.saturation_time_tolerance), float(ctx.limits.peak_tolerance)
    exptimes = {column: result.column_exptime(column) for column in result.columns()}
    for ccd, q in _quadrant_keys(result):
        by_column = defaultdict(list)
        for info, _, s in result.spots(ccd, q):
            if not s.saturated:
                by_column[info.column].append((info, s))
        times_all = []
        for column, exptime in exptimes.items():
            spots = by_column.get(column)
            if not spots:
                continue
            times = [saturation_time_s(s.flux_adu, info.exptime_s, ctx.chamber.fwhm_px) for info, s in spots]
            times = [t for t in times if math.isfinite(t)]
            times_all += times
            label = f"column {column + 1} ({exptime:g} s)"
            if times:
                t = float(np.median(times))
                if not tfwc * (1 - t_tol) <= t <= tfwc * (1 + t_tol):
                    ctx.flags.raise_flag("FLUX_OOL", f"{label}: spots reach full well in {t:.3g} s (median of "
                                         f"{len(times)}), outside tFWC_point {tfwc:g} s x [{1 - t_tol:g}, {1 + t_tol:g}]",
                                         ccd=ccd, quadrant=q)
            expected = result.expected_peak_adu(exptime)
            if peaks and math.isfinite(expected):
                peak = float(np.median([s.peak_adu for _, s in spots]))
                if not expected * (1 - p_tol) <= peak <= expected * (1 + p_tol):
                    ctx.flags.raise_flag("FLUX_OOL", f"{label}: spot peak {peak:.0f} ADU (median of {len(spots)}) "
                                         f"outside the expected {expected:.0f} ADU x [{1 - p_tol:g}, {1 + p_tol:g}]",
                                         ccd=ccd, quadrant=q)
        if times_all:
            ctx.set_value(ccd, q, "saturation_time_s", float(np.median(times_all)))


def check_point_sources(ctx: TaskContext, stats: RawStats) -> None:
    """The checks of in-focus point-source frames (PSF01/02, PSFLUX00)."""
    check_background(ctx, stats)
    check_fwhm(ctx, stats)
    check_flux(ctx, stats)


def check_focus_scan(ctx: TaskContext, stats: RawStats) -> None:
    """The checks of a focus scan: background, the best FWHM of the scan, fluxes (no peak window:
    the peaks fall away from focus by design)."""
    check_background(ctx, stats)
    check_fwhm(ctx, stats, best_of_scan=True)
    check_flux(ctx, stats, peaks=False)
