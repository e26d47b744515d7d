"""Point sources (FOCUS00, PSF01/02, PSFLUX00): the spot pattern locked per quadrant, every spot
measured, and the raw-data checks of point-source frames.

One pass over the frames (`lock`, also in check-only runs; one work unit per frame, each
quadrant copied out of the frame once) gives per frame and quadrant:

- the generic raw-frame statistics (measures.py), handed to the generic check so it does not
  read the frames again;
- the sources `sep` detects in the image area (background: the image median, threshold
  DETECT_SIGMA x its robust std, at least 3 pixels); sources fainter than MIN_PEAK_FRACTION of
  the peak the column should reach (cosmic rays, cross-talk ghosts) are left out. sep runs on
  the image max-pooled DETECT_BIN x DETECT_BIN, then at full resolution only on the windows of
  the pooled sources that reach that floor (detect_sources): the same sources, positions and
  fluxes as sep over the whole image (but for sep's cleaning; checked on every frame of a
  full-size FOCUS00 and of the test days), in 4 ms of CPU a full-size quadrant against 14-18 ms;
- the match of the brightest sources to the chamber's nominal pattern (ChamberProfile.spot_pattern:
  fractions of the image area seen in the frame): candidate rigid transforms from every
  source-spot pair (translation) and every pair of pairs (rotation within MAX_SEARCH_ROTATION_DEG),
  the one matching most spots within the match radius wins, refined by least squares on its
  matches. The lock is the pattern's offset (dx, dy along the frame's columns and rows) and
  rotation about the image centre;
- each matched spot measured on a stamp of STAMP_HALF_PX around it (local background: median of
  the stamp's outer ring): peak, aperture flux (radius APERTURE_RADIUS_PX), a least-squares fit of
  an axis-aligned Gaussian integrated over the pixels (centre, FWHM x and y, total flux; the
  pixel integration matters at 2 px FWHM: a point-sampled fit reads 5 % wide; a frame's spots
  fitted together, fit_gaussians), and the second moments (less the 1/12 px^2 of a pixel) for the
  ellipticity e = |(Qxx - Qyy, 2 Qxy)| / (Qxx + Qyy).

The quadrant's lock is the median over its frames; STARS_MISSING says when the pattern is not
found, shifted or rotated beyond the limits, or some spots never show. The checks (BGD_OOL,
FLUX_OOL, FOCUS_OOL) judge the same measurements, with value and limit.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..campaign.chamber import ChamberError
from ..campaign.limits import GenericLimits, Range, limit
from ..formats.fits import FrameError, read_frame
from ..formats.geometry import QUADRANTS, CCDGeometry
from .base import AnalysisTask
from .check import RawStats
from .context import TaskContext
from .family import ValueSpec
from .figures import markdown_table
from .measures import FrameMeasures, FrameStats, counts_stats, window_rows
from .outputs import CsvTable, Measured, Outputs, Section, SubTaskResult
from .stats import ADC_SATURATED

EFFECTIVE_SATURATION_ADU = 55000.0  # vison's eff_satur: the peak a spot reaches at tFWC_point
DETECT_SIGMA = 10.0  # detection threshold, x the image's robust std
DETECT_MIN_PIXELS = 3
DETECT_BIN = 8  # detection first runs on the image max-pooled by this, a power of 2 (detect_sources)
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
    angle_list = [0.0] * (len(detected) * len(nominal))
    shift_list = [detected[i] - nominal[j] for i in range(len(detected)) for j in range(len(nominal))]
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
        for p, q in zip(a, b):
            angle = float(theta[p, q])
            rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
            angle_list.append(angle)
            shift_list.append(detected[di[p]] - (rotation @ rel[ni[q]] + c))
    angles_arr = np.asarray(angle_list)
    shifts_arr = np.asarray(shift_list)
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
            d = np.array([detected[i] for i, _ in matches])
            n = np.array([rel[j] for _, j in matches])
            dc, nc = d - d.mean(axis=0), n - n.mean(axis=0)
            angle = math.atan2(float(np.sum(nc[:, 0] * dc[:, 1] - nc[:, 1] * dc[:, 0])),
                               float(np.sum(nc[:, 0] * dc[:, 0] + nc[:, 1] * dc[:, 1])))
            rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
            shift = d.mean(axis=0) - (rotation @ n.mean(axis=0) + c)
        elif len(matches) == 1:
            i, j = matches[0]
            angle, shift = 0.0, detected[i] - nominal[j]
        rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        projected = rel @ rotation.T + c + shift
        distance_now = np.hypot(projected[:, None, 0] - detected[None, :, 0], projected[:, None, 1] - detected[None, :, 1])
        matches = _assign(distance_now, radius_px)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    projected = rel @ rotation.T + c + shift
    residuals = [math.hypot(*(detected[i] - projected[j])) for i, j in matches]
    rms = math.sqrt(float(np.mean(np.square(residuals)))) if residuals else math.nan
    arms = math.sqrt(sum(float(rel[j] @ rel[j]) for _, j in matches))
    error = math.degrees(rms / arms) if len(matches) >= 2 and arms > 0 else math.nan
    return PatternMatch(float(shift[0]), float(shift[1]), math.degrees(angle), tuple(matches), rms, error)


def _assign(distance: np.ndarray, radius_px: float) -> list[tuple[int, int]]:
    """(detection, nominal) pairs, closest first, each used once, within the radius."""
    pairs = []
    used_d, used_n = set(), set()
    for j, i in sorted(np.ndindex(distance.shape), key=lambda ji: distance[ji]):
        if distance[j, i] >= radius_px:
            break
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
    sigma: `centre` and `sigma` (n,) give (n, len(edges_low)) profiles."""
    from scipy.special import ndtr

    centre, sigma = centre[:, None], sigma[:, None]
    upper = (edges_low + 1.0 - centre) / sigma
    lower = (edges_low - centre) / sigma
    pdf_u, pdf_l = np.exp(-0.5 * upper * upper), np.exp(-0.5 * lower * lower)
    norm = 1.0 / (math.sqrt(2.0 * math.pi) * sigma)
    profile = ndtr(upper) - ndtr(lower)
    d_centre = -(pdf_u - pdf_l) * norm
    d_sigma = -(pdf_u * upper - pdf_l * lower) * norm
    return profile, d_centre, d_sigma


def fit_gaussians(stamps: np.ndarray, valid: np.ndarray, start: np.ndarray, shapes: np.ndarray,
                  iterations: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Levenberg-Marquardt fits of flux * Px(x) * Py(y) + b to n stamps at once, P the
    pixel-integrated Gaussian profiles (analytic derivatives). `stamps` (n, h, w) float64, `valid`
    their pixels to fit (saturated ones and the padding of stamps cut by the image edge left out);
    `start` (n, 4) the first (x, y, sigma, flux); `shapes` (n, 2) each stamp's own (rows, cols),
    which bound its centre and widths. Stamp coordinates: pixel (r, c) covers [c - 0.5, c + 0.5].
    Each stamp follows its own damping and stopping rule, exactly as fitted alone (numpy's sums
    over the stamp's pixels: the same to float64 rounding); the batch only shares the numpy calls
    (a full-size frame's 20 spots: 4-5 ms of CPU with their moments, against 8.5 ms for the fits
    one at a time).
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

    def evaluate(q: np.ndarray, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Residuals (m, h * w) and Jacobians (m, h * w, 6) of stamps `index`, zero off `valid`."""
        flux, x, y, sx, sy, b = q.T
        px, dpx, dsx = _profiles(col_edges, x, sx)
        py, dpy, dsy = _profiles(row_edges, y, sy)
        f = flux[:, None, None]
        shape = py[:, :, None] * px[:, None, :]
        w = mask[index]
        residual = ((f * shape + b[:, None, None]) - data[index]) * w
        jac = np.stack([shape, f * py[:, :, None] * dpx[:, None, :], f * dpy[:, :, None] * px[:, None, :],
                        f * py[:, :, None] * dsx[:, None, :], f * dsy[:, :, None] * px[:, None, :],
                        np.ones_like(shape)], axis=-1) * w[..., None]
        m = len(index)
        return residual.reshape(m, -1), jac.reshape(m, -1, 6)

    everyone = np.arange(n)
    residual, jac = evaluate(p, everyone)
    cost = np.einsum("ij,ij->i", residual, residual)
    damping = np.full(n, 1e-3)
    converged = np.zeros(n, bool)
    active = np.ones(n, bool)
    eye = np.eye(6)
    for _ in range(iterations):
        index = np.flatnonzero(active)
        if not len(index):
            break
        j, r = jac[index], residual[index]
        jtj = np.matmul(j.transpose(0, 2, 1), j)
        gradient = np.einsum("mpk,mp->mk", j, r)
        scale = np.sqrt(np.maximum(np.diagonal(jtj, axis1=1, axis2=2), 1e-30))
        normal = jtj / (scale[:, :, None] * scale[:, None, :]) + damping[index, None, None] * eye
        try:
            step = -np.linalg.solve(normal, (gradient / scale)[..., None])[..., 0] / scale
        except np.linalg.LinAlgError:  # some system singular: that fit ends where it stands, not converged
            solvable = np.array([np.linalg.matrix_rank(system) == 6 for system in normal])
            active[index[~solvable]] = False
            index, normal, gradient, scale = index[solvable], normal[solvable], gradient[solvable], scale[solvable]
            if not len(index):
                break
            step = -np.linalg.solve(normal, (gradient / scale)[..., None])[..., 0] / scale
        trial = np.clip(p[index] + step, low[index], high[index])
        trial_residual, trial_jac = evaluate(trial, index)
        trial_cost = np.einsum("ij,ij->i", trial_residual, trial_residual)
        better = trial_cost < cost[index]
        kept = index[better]
        improvement = (cost[kept] - trial_cost[better]) / np.maximum(cost[kept], 1e-300)
        p[kept], cost[kept] = trial[better], trial_cost[better]
        residual[kept], jac[kept] = trial_residual[better], trial_jac[better]
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
class _Stamp:
    """A spot's stamp ready for the fit, and what was measured on it before."""

    name: str
    stamp: np.ndarray  # ADU above the local background (float64)
    saturated: np.ndarray
    corner: tuple[int, int]  # (row, col) of the stamp's first pixel in the image area
    centroid: tuple[float, float]  # aperture centroid (x, y), image-area coordinates
    sigma0: float
    peak: float
    flux: float
    local: float


def cut_stamp(counts: np.ndarray, level: float, name: str, x: float, y: float,
              half: int = STAMP_HALF_PX) -> _Stamp | None:
    """The stamp of the spot near (x, y) (array coordinates x = column, y = row) of `counts` (raw
    ADU, uint16), less `level` and its local background (median of the stamp's outer ring), with
    its aperture flux (radius APERTURE_RADIUS_PX about (x, y)), peak and centroid; None when the
    image edge leaves less than 5 x 5 pixels or nothing positive in the aperture."""
    height, width = counts.shape
    xi, yi = round(x), round(y)
    r0, r1 = max(0, yi - half), min(height, yi + half + 1)
    c0, c1 = max(0, xi - half), min(width, xi + half + 1)
    if r1 - r0 < 5 or c1 - c0 < 5:
        return None
    raw = counts[r0:r1, c0:c1]
    stamp = raw - np.float64(np.float32(level))  # float32 levels, as the detection subtracts them
    yy, xx = np.mgrid[r0:r1, c0:c1]
    rr = np.hypot(xx - x, yy - y)
    ring = rr >= half - 2
    local = float(np.median(stamp[ring])) if np.count_nonzero(ring) >= 8 else 0.0
    stamp -= local
    inside = rr <= APERTURE_RADIUS_PX
    flux = float(stamp[inside].sum())
    peak = float(stamp.max())
    weights = np.where(inside, np.clip(stamp, 0, None), 0.0)
    total = weights.sum()
    if total <= 0:
        return None
    cx, cy = float((weights * xx).sum() / total), float((weights * yy).sum() / total)
    sigma0 = math.sqrt(max(float((weights * ((xx - cx) ** 2 + (yy - cy) ** 2)).sum() / total) / 2 - 1 / 12, 0.09))
    return _Stamp(name, stamp, raw == ADC_SATURATED, (r0, c0), (cx, cy), sigma0, peak, flux, local)


def measure_spots(stamps: Sequence[_Stamp], origins: Sequence[tuple[int, int]],
                  half: int = STAMP_HALF_PX) -> list[SpotShape]:
    """Every stamp fitted at once (fit_gaussians), then its second moments: SpotShapes in frame
    coordinates (`origins`: each stamp's image-area origin (row, col) in the frame)."""
    if not stamps:
        return []
    size = 2 * half + 1
    n = len(stamps)
    cube, valid = np.zeros((n, size, size)), np.zeros((n, size, size), bool)
    start, shapes = np.zeros((n, 4)), np.zeros((n, 2), int)
    for k, s in enumerate(stamps):
        h, w = s.stamp.shape
        cube[k, :h, :w] = s.stamp
        valid[k, :h, :w] = ~s.saturated
        r0, c0 = s.corner
        start[k] = (s.centroid[0] - c0, s.centroid[1] - r0, min(s.sigma0, half / 2), s.flux)
        shapes[k] = (h, w)
    params, converged = fit_gaussians(cube, valid, start, shapes)
    return [_spot_shape(s, p, ok, origin, half) for s, p, ok, origin in zip(stamps, params, converged, origins)]


def _spot_shape(s: _Stamp, params: np.ndarray, ok: bool, origin: tuple[int, int], half: int) -> SpotShape:
    fit_flux, fx, fy, sx, sy, _ = params
    r0, c0 = s.corner
    cx, cy = s.centroid
    fx, fy = fx + c0, fy + r0
    ok = bool(ok) and abs(fx - cx) < 3 and abs(fy - cy) < 3 and sx < half / 2 and sy < half / 2
    centre_x, centre_y = (fx, fy) if ok else (cx, cy)
    # Second moments within 3 sigma of the centre, less a pixel's own 1/12 px^2.
    stamp = s.stamp
    yy, xx = np.mgrid[r0:r0 + stamp.shape[0], c0:c0 + stamp.shape[1]]
    sigma = max(0.5 * (sx + sy), 0.8) if ok else max(s.sigma0, 0.8)
    near = np.hypot(xx - centre_x, yy - centre_y) <= max(3.0 * sigma, 2.5)
    w = np.where(near, np.clip(stamp, 0, None), 0.0)
    wsum = w.sum()
    qxx = float((w * (xx - centre_x) ** 2).sum() / wsum) - 1 / 12
    qyy = float((w * (yy - centre_y) ** 2).sum() / wsum) - 1 / 12
    qxy = float((w * (xx - centre_x) * (yy - centre_y)).sum() / wsum)
    trace = qxx + qyy
    e1, e2 = ((qxx - qyy) / trace, 2 * qxy / trace) if trace > 0 else (math.nan, math.nan)
    row0, col0 = origin
    return SpotShape(
        name=s.name, x=centre_x + col0, y=centre_y + row0, peak_adu=s.peak, flux_adu=s.flux,
        fit_flux_adu=float(fit_flux) if ok else math.nan,
        fwhm_x_px=float(sx) * FWHM_PER_SIGMA if ok else math.nan,
        fwhm_y_px=float(sy) * FWHM_PER_SIGMA if ok else math.nan,
        e1=e1, e2=e2, ellipticity=math.hypot(e1, e2), background_adu=s.local,
        saturated=bool(s.saturated.any()), fit_ok=ok)


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
    """The largest count of each size x size block, size a power of 2 (the last row and column of
    blocks may be narrower): a spot's peak survives whole, on an image size^2 times smaller.
    Halved pair by pair, whole rows first: each step reads what the last one wrote (1.5 ms for a
    full-size quadrant by 8, against 3 ms for `size` strided passes over the image)."""
    if size & (size - 1):
        raise ValueError(f"max_pool: block size {size} is not a power of 2")
    pooled = counts
    for axis in (0, 1):
        step = size
        while step > 1:
            length = pooled.shape[axis]
            even, odd = (pooled[0::2], pooled[1::2]) if axis == 0 else (pooled[:, 0::2], pooled[:, 1::2])
            halved = even.copy()  # ceil(length / 2): an odd last one stays alone
            pairs = halved[:length // 2] if axis == 0 else halved[:, :length // 2]
            np.maximum(pairs, odd, out=pairs)
            pooled, step = halved, step // 2
    return pooled


SOURCE_DTYPE = np.dtype([("x", float), ("y", float), ("peak", float), ("flux", float)])


def detect_sources(counts: np.ndarray, level: float, threshold: float, floor_adu: float) -> tuple[np.ndarray, float]:
    """The sources `sep` finds in `counts` (raw ADU, uint16) less `level` (threshold in ADU, at
    least DETECT_MIN_PIXELS pixels, its default 3 x 3 filter, no deblending) peaking at or above
    `floor_adu`, without sweeping the whole image with sep (4 ms of CPU a full-size quadrant against
    14-18 ms for sep over it and the float32 copy it needs):

    1. sep (no filter, no cleaning, one pixel enough) on the image max-pooled DETECT_BIN x
       DETECT_BIN: every pixel above the threshold lies in a pooled pixel above it, and a pooled
       source's peak is its brightest pixel's, exactly;
    2. sep as over the whole image on the full-resolution window (bounding box and
       DETECT_MARGIN_PX) of each pooled source reaching the floor; a source is kept in the
       window of the pooled source holding its peak pixel. A source's pixels (filtered above the
       threshold) lie within a pixel of pixels above it, all in one pooled source: its window
       holds it whole, and it is measured as over the whole image.

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
                                            clean=False, segmentation_map=True)
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
    for f in sep.extract(window, threshold, minarea=DETECT_MIN_PIXELS, deblend_cont=1.0):
        row, col = int(f["ypeak"]) + r0, int(f["xpeak"]) + c0
        if f["peak"] >= floor_adu and segments[row // DETECT_BIN, col // DETECT_BIN] == label:
            sources.append((float(f["x"]) + c0, float(f["y"]) + r0, float(f["peak"]), float(f["flux"])))
    return sources


def find_spots(counts: np.ndarray, level: float, noise: float, pattern: Sequence[tuple[str, float, float]],
               centre: tuple[float, float], radius: float, floor_adu: float
               ) -> tuple[int, float, PatternMatch | None, list[_Stamp]]:
    """Detect and lock the spots of one quadrant's image area (`counts`: raw ADU, frame
    orientation) and cut their stamps (measure_spots fits them, a frame's at once)."""
    threshold = max(DETECT_SIGMA * noise, 5.0) if math.isfinite(noise) else 50.0
    sources, brightest = detect_sources(counts, level, threshold, floor_adu)
    keep = np.sort(sources, order="flux")[::-1][:MATCH_CANDIDATES]
    detected = np.column_stack([keep["x"], keep["y"]]) if len(keep) else np.zeros((0, 2))
    nominal = np.array([(fx * counts.shape[1], fy * counts.shape[0]) for _, fx, fy in pattern]).reshape(-1, 2)
    lock = match_pattern(detected, nominal, centre, radius)
    stamps = []
    if lock is not None:
        for i, j in lock.matches:
            stamp = cut_stamp(counts, level, pattern[j][0], float(detected[i, 0]), float(detected[i, 1]))
            if stamp is not None:
                stamps.append(stamp)
    return len(keep), brightest, lock, stamps


def spot_frame_unit(path: Path, vstart: int, vend: int | None, pattern: tuple[tuple[str, float, float], ...],
                    floor_adu: float) -> FrameSpots | str:
    """Worker: one frame read once (each quadrant copied out once): its generic statistics, and
    per quadrant the locked spots, all the frame's spots fitted together."""
    try:
        with read_frame(path) as frame:
            geometry = frame.geometry
            rows = window_rows(geometry, vstart, vend)
            stats, found = {}, {}
            stamps, origins = [], []
            for q in QUADRANTS:
                q_rows, q_cols = geometry.quadrant_slices(q)
                counts = frame.section(q_rows, q_cols)
                # the generic check's statistics, as the check takes them (measures.quadrant_stats)
                stats[q] = counts_stats(counts, q, geometry, rows)
                area = ImageArea.of(geometry, q)
                image = counts[area.rows.start - q_rows.start:area.rows.stop - q_rows.start,
                               area.cols.start - q_cols.start:area.cols.stop - q_cols.start]
                level, noise = stats[q].image.median, stats[q].image.std
                found[q] = find_spots(image, level, noise, pattern, area.centre, match_radius_px(area), floor_adu)
                stamps += found[q][3]
                origins += [(area.rows.start, area.cols.start)] * len(found[q][3])
            shapes = iter(measure_spots(stamps, origins))
            quadrants = {}
            for q, (detections, brightest, lock, spot_stamps) in found.items():
                level = stats[q].image.median
                quadrants[q] = QuadrantSpots(level - stats[q].prescan.clipped_mean, level, stats[q].image.std,
                                             detections, brightest, lock, tuple(next(shapes) for _ in spot_stamps))
            return FrameSpots(FrameStats(geometry, stats), quadrants)
    except FrameError as exc:
        return f"unreadable frame: {exc}"


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


def lock_spots(ctx: TaskContext) -> SpotLock:
    """The pass over every frame (one unit per frame), then the lock per quadrant, flags raised."""
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
    calls = []
    for ref in refs:
        expected = partial.expected_peak_adu(infos[(ref.obsid, ref.ccd)].exptime_s)
        floor = MIN_PEAK_FRACTION * expected if math.isfinite(expected) else 0.0
        vend = ref.row.get("vend")
        calls.append((ref.path, int(_float(ref.row.get("vstart"), 0)), int(_float(vend)) if vend not in (None, "") else None,
                      pattern, floor))
    results = ctx.map_units(spot_frame_unit, calls)
    by_frame: dict[tuple[int, int], Any] = {}
    frames: dict[tuple[int, int], FrameSpots] = {}
    for ref, result in zip(refs, results):
        key = (ref.obsid, ref.ccd)
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
    for ccd, q in _quadrant_keys(result):
        times_all = []
        for column in result.columns():
            spots = [(info, s) for info, qq, s in result.spots(ccd, q) if info.column == column and not s.saturated]
            if not spots:
                continue
            times = [saturation_time_s(s.flux_adu, info.exptime_s, ctx.chamber.fwhm_px) for info, s in spots]
            times = [t for t in times if math.isfinite(t)]
            times_all += times
            label = f"column {column + 1} ({result.column_exptime(column):g} s)"
            if times:
                t = float(np.median(times))
                if not tfwc * (1 - t_tol) <= t <= tfwc * (1 + t_tol):
                    ctx.flags.raise_flag("FLUX_OOL", f"{label}: spots reach full well in {t:.3g} s (median of "
                                         f"{len(times)}), outside tFWC_point {tfwc:g} s x [{1 - t_tol:g}, {1 + t_tol:g}]",
                                         ccd=ccd, quadrant=q)
            expected = result.expected_peak_adu(result.column_exptime(column))
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
