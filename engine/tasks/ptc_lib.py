"""Flat-pair science shared by PTC01/02 (ptc.py) and BF01 (bf.py): paths and numbers in, numbers out.

A pair is two flats of the same exposure. Their scaled difference `(a*m2 - b*m1) / mean(m1, m2)`
(a, b offset-subtracted, m1, m2 their means) cancels the pixel response (PRNU) and the
illumination whatever the ratio of the two fluences, which a plain `a - b` only does when the
fluences are equal (at 40 kADU and 1 % PRNU, a 0.5 % fluence mismatch would add ~2 % to the
variance). Half its variance is the photon-transfer variance of one frame at the pair's mean
(exact to (dm/m)^2 / 4: 0.06 % for the 5 % a pair may differ by).

Outliers (cosmic rays) are clipped at CLIP_SIGMA robust sigmas of the difference; clipping a
Gaussian at k sigma keeps `truncation_factor(k)` of its variance (0.9989 at 4) and the same factor
of a small correlation coefficient: both are divided out (vison's "bias correction", analytic here
rather than from simulated noise).

The PTC's tiles are computed as the check reads each quadrant (PairTiles, fed by quadrant_pass:
a worker holds the first frame's quadrant of a pair until the second comes) by two compiled
sweeps of the quadrant (pair_quadrant, compiled/ptc_kernels.py); a pair read again on its own
(pair_tiles_unit) is read per quadrant in row bands, one band of tiles at a time, by numpy: the
same numbers (tests/test_ptc_pass.py). BF's covariances are made the same way (PairCovariances,
pair_covariance: compiled/bf_kernels.py), and a pair read again on its own goes through the
same compiled code; quadrant_covariance_numpy states them in numpy (tests/test_bf_pass.py). A
worker holds two quadrants or two bands (and BF a quadrant's float32 difference), never whole
frames, whatever the frame count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..formats.fits import read_frame
from ..formats.geometry import QUADRANTS, CCDGeometry
from .stats import ADC_SATURATED

CLIP_SIGMA = 4.0  # vison's clipsigma for pair differences
TILE_TARGET_PX = 300  # vison's PTC tile side; tiles are stretched to cover the whole image area
MIN_TILES_PER_SIDE = 4  # small geometries still get 16 tiles per quadrant
FIT_RANGE_ADU = (1.0e3, 4.0e4)  # means the PTC fit uses (vison): above, non-linearity and blooming bend it
SMEAR_LEVEL_ADU = 0.5 * 65536  # columns above this mean are tested for saturation smearing
SMEAR_SPREAD = 0.10  # ... and dropped when their tiles' variances spread more than this (relative)
BLOOM_SEARCH_FROM_ADU = 3.0e4  # blooming is looked for above this mean (vison)
BLOOM_MAD_RANGE_ADU = (2.0e3, 3.0e4)  # residual scatter measured here (vison)
BLOOM_MADS = 10.0  # a point blooms when its variance is this many MADs below the fit ...
MIN_PIXELS = 100  # fewer kept pixels: no covariance measured
BLOOM_RUN = 5  # ... and so are the next BLOOM_RUN - 1 points in fluence order


def truncation_factor(k: float) -> float:
    """Fraction of a Gaussian's variance kept when it is clipped at +-k sigma."""
    inside = math.erf(k / math.sqrt(2.0))  # math, not scipy.special: 0.3 s of import in every run
    density = math.exp(-0.5 * k * k) / math.sqrt(2.0 * math.pi)
    return 1.0 - 2.0 * k * density / inside


def tile_edges(length: int, target: int = TILE_TARGET_PX, minimum: int = MIN_TILES_PER_SIDE) -> np.ndarray:
    """Edges of tiles of about `target` pixels (at least `minimum` tiles) covering 0..length."""
    count = max(minimum, int(round(length / target)))
    return np.linspace(0, length, count + 1).round().astype(int)


def image_counts(frame, geometry: CCDGeometry, quadrant: str, start: int, stop: int) -> np.ndarray:
    """Canonical image rows [start, stop) of a quadrant's image area: counts (uint16, a flipped view)."""
    rows, cols = geometry.frame_region_slices(quadrant, "image")
    flip_rows, flip_cols = geometry.flips(quadrant)
    if flip_rows:
        frame_rows = slice(rows.stop - stop, rows.stop - start)
    else:
        frame_rows = slice(rows.start + start, rows.start + stop)
    block = frame.section(frame_rows, cols)
    return block[:: -1 if flip_rows else 1, :: -1 if flip_cols else 1]


def scaled_difference(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(a*m2 - b*m1) / mean(m1, m2) and the two means (offset-subtracted inputs)."""
    m1, m2 = float(a.mean(dtype=np.float64)), float(b.mean(dtype=np.float64))
    mean = 0.5 * (m1 + m2)
    if mean == 0:
        return a - b, m1, m2
    diff = a * np.float32(m2 / mean)
    diff -= b * np.float32(m1 / mean)
    return diff, m1, m2


SIGMA_PERCENTILES = np.array([15.865, 50.0, 84.135])  # the median and +-1 sigma of a Gaussian


def percentiles(values: np.ndarray, q: np.ndarray) -> np.ndarray:
    """np.percentile(values, q) (linear interpolation), bit for bit, from a sort: numpy's
    selection for several percentiles (it also selects the ends) takes 5x longer than sorting a
    float32 sample. No NaNs in `values`."""
    ordered = np.sort(values, axis=None)
    return _sorted_percentiles(ordered[None, :], np.array([ordered.size]), q)[0]


def row_percentiles(samples: np.ndarray, sizes: np.ndarray, q: np.ndarray) -> np.ndarray:
    """percentiles(samples[i, :sizes[i]], q) of each row i, bit for bit: [row, percentile]. No NaNs;
    sorts the rows in place, their ends past sizes[i] overwritten with +inf (which sorts last)."""
    for row in np.flatnonzero(sizes < samples.shape[1]):
        samples[row, sizes[row]:] = np.inf
    samples.sort(axis=1)
    return _sorted_percentiles(samples, sizes, q)


def _sorted_percentiles(ordered: np.ndarray, sizes: np.ndarray, q: np.ndarray) -> np.ndarray:
    """np.percentile's linear interpolation in each sorted row's first sizes[i] values."""
    virtual = (sizes[:, None] - 1) * (np.asarray(q, np.float64)[None, :] / 100)
    below = np.floor(virtual).astype(np.intp)
    above = np.minimum(below + 1, sizes[:, None] - 1)
    gamma = virtual - below
    low, high = np.take_along_axis(ordered, below, 1), np.take_along_axis(ordered, above, 1)
    step = high - low  # in the values' dtype, then the weights in float64, as numpy's _lerp
    return np.where(gamma >= 0.5, high - step * (1 - gamma), low + step * gamma)


def clip_mask(diff: np.ndarray, k: float = CLIP_SIGMA, within: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Pixels (of `within`, if given) within k robust sigmas of the difference's median, and that sigma."""
    values = diff[within] if within is not None else diff.ravel()
    if values.size == 0:
        return np.zeros(diff.shape, bool), math.nan
    sample = values[:: max(1, values.size // 20_000)]  # ~1 % on sigma: enough to place a 4-sigma window
    q16, median, q84 = percentiles(sample, SIGMA_PERCENTILES)
    sigma = max(0.5 * (q84 - q16), 1e-6)
    keep = np.abs(diff - np.float32(median)) <= np.float32(k * sigma)
    return (keep & within if within is not None else keep), float(sigma)


def clipped_variance(diff: np.ndarray, k: float = CLIP_SIGMA) -> tuple[float, int]:
    """Variance of the k-sigma clipped difference, corrected for the clipping; pixels kept."""
    keep, _ = clip_mask(diff, k)
    kept = diff[keep].astype(np.float64)
    if kept.size < 3:
        return math.nan, int(kept.size)
    return float(kept.var(ddof=1)) / truncation_factor(k), int(kept.size)


# ---------------------------------------------------------------------------------------------
# PTC: tile statistics of one pair
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PairQuadrant:
    """One pair in one quadrant: the frames' mean fluences and the tiles' PTC points."""

    fluence1_adu: float
    fluence2_adu: float
    means: np.ndarray  # per tile: mean of the two offset-subtracted frames (ADU)
    variances: np.ndarray  # per tile: half the clipped variance of the scaled difference (ADU^2)
    pixels: np.ndarray  # per tile: pixels kept by the clipping
    saturated: np.ndarray  # per tile: pixels at the ADC ceiling in either frame
    tile_rows: np.ndarray  # per tile: canonical image row of its first pixel
    tile_cols: np.ndarray  # per tile: canonical image column of its first pixel


def pair_tiles_unit(path1: Path, path2: Path, offsets1: dict[str, float], offsets2: dict[str, float],
                    geometry: CCDGeometry) -> dict[str, PairQuadrant]:
    """Worker: PTC points of every tile of every quadrant of one pair (each frame opened once)."""
    row_edges = tile_edges(geometry.image_rows)
    col_edges = tile_edges(geometry.image_cols)
    result = {}
    with read_frame(path1) as one, read_frame(path2) as two:
        for q in QUADRANTS:
            means, variances, pixels, saturated, rows, cols = [], [], [], [], [], []
            sums = [0.0, 0.0]
            for r0, r1 in zip(row_edges[:-1], row_edges[1:]):
                counts1 = image_counts(one, geometry, q, r0, r1)
                counts2 = image_counts(two, geometry, q, r0, r1)
                ceiling = (counts1 >= ADC_SATURATED) | (counts2 >= ADC_SATURATED)
                # offset-subtracted float32 in one pass (as a float32 copy, then -= offset)
                a = np.subtract(counts1, np.float32(offsets1[q]), dtype=np.float32)
                b = np.subtract(counts2, np.float32(offsets2[q]), dtype=np.float32)
                sums[0] += float(a.sum(dtype=np.float64))
                sums[1] += float(b.sum(dtype=np.float64))
                for c0, c1 in zip(col_edges[:-1], col_edges[1:]):
                    diff, m1, m2 = scaled_difference(a[:, c0:c1], b[:, c0:c1])
                    variance, kept = clipped_variance(diff)
                    means.append(0.5 * (m1 + m2))
                    variances.append(0.5 * variance)
                    pixels.append(kept)
                    saturated.append(int(np.count_nonzero(ceiling[:, c0:c1])))
                    rows.append(int(r0))
                    cols.append(int(c0))
            npix = geometry.image_rows * geometry.image_cols
            result[q] = PairQuadrant(sums[0] / npix, sums[1] / npix, np.array(means), np.array(variances),
                                     np.array(pixels), np.array(saturated), np.array(rows), np.array(cols))
    return result


SAMPLE_SIZE = 20_000  # clip_mask's sample: every (pixels // SAMPLE_SIZE)-th value


@dataclass(frozen=True)
class TileLayout:
    """pair_quadrant's tiles of a geometry (row band i, column band j: tile i * columns + j):
    edges, pixels, and the stride and size of each tile's clip sample (clip_mask's)."""

    row_edges: np.ndarray
    col_edges: np.ndarray
    pixels: np.ndarray
    steps: np.ndarray
    sizes: np.ndarray  # len(values[::step])

    @classmethod
    def of(cls, geometry: CCDGeometry) -> TileLayout:
        row_edges = tile_edges(geometry.image_rows).astype(np.int64)
        col_edges = tile_edges(geometry.image_cols).astype(np.int64)
        pixels = (np.diff(row_edges)[:, None] * np.diff(col_edges)[None, :]).ravel()
        steps = np.maximum(1, pixels // SAMPLE_SIZE)
        return cls(row_edges, col_edges, pixels, steps, -(-pixels // steps))


class SampleBuffers:
    """Room for pair_quadrant's clip samples (float32, tiles x the largest sample, ~4 MB at full
    size, and a band's sampled values of both frames), kept from pair to pair by a consumer:
    fresh arrays for each pair cost ~0.8 ms more (page faults, with a quadrant pass's reads
    allocating between pairs), 7 % of the pair."""

    def __init__(self) -> None:
        self.samples = self.band = np.empty((0, 0), np.float32)

    def take(self, layout: TileLayout) -> tuple[np.ndarray, np.ndarray]:
        shape = (layout.pixels.size, int(layout.sizes.max()))
        if self.samples.shape != shape:
            self.samples = np.empty(shape, np.float32)
            self.band = np.empty((layout.col_edges.size - 1, 2 * shape[1]), np.float32)
        return self.samples, self.band


def pair_quadrant(counts1: np.ndarray, counts2: np.ndarray, offset1: float, offset2: float,
                  geometry: CCDGeometry, quadrant: str, buffers: SampleBuffers | None = None) -> PairQuadrant:
    """pair_tiles_unit's numbers for one quadrant of a pair, from the two quadrants' counts as read
    (uint16, frame orientation, geometry.quadrant_slices): two compiled sweeps of the quadrant
    (compiled/ptc_kernels.py) and one sort of the clip windows' samples (in `buffers`, if given).
    The same tiles, means, kept pixels and saturated counts as the numpy loop, the variances to
    float64 rounding (tests/test_ptc_pass.py). CPU a full-size quadrant, in the check's read on a
    loaded machine: 11 ms (first sweep ~4, sort ~3, second sweep ~3), 22-25 ms when the sweeps
    went a tile at a time."""
    # numba loaded only where units run
    from .compiled.ptc_kernels import clipped_sums, tile_sums

    layout = TileLayout.of(geometry)
    row_edges, col_edges, pixels = layout.row_edges, layout.col_edges, layout.pixels
    flip_rows, flip_cols = geometry.flips(quadrant)
    first_col = geometry.canonical_region("image")[1].start
    tiles = pixels.size
    sum1, sum2 = np.zeros(tiles), np.zeros(tiles)
    saturated = np.zeros(tiles, np.int64)
    samples, band = (buffers or SampleBuffers()).take(layout)
    one, two = np.ascontiguousarray(counts1), np.ascontiguousarray(counts2)
    off1, off2 = np.float32(offset1), np.float32(offset2)
    tile_sums(one, two, off1, off2, flip_rows, flip_cols, first_col, row_edges, col_edges, sum1, sum2, saturated,
              layout.steps, samples, layout.sizes, band)
    # clip_mask's window from each sample's percentiles, computed as percentiles() does
    q16, median, q84 = row_percentiles(samples, layout.sizes, SIGMA_PERCENTILES).T
    sigma = np.maximum(0.5 * (q84 - q16), 1e-6)
    m1, m2 = sum1 / pixels, sum2 / pixels
    mean = 0.5 * (m1 + m2)
    plain = mean == 0
    with np.errstate(invalid="ignore", divide="ignore"):
        scale1 = np.where(plain, 1.0, m2 / mean).astype(np.float32)
        scale2 = np.where(plain, 1.0, m1 / mean).astype(np.float32)
    kept = np.zeros(tiles, np.int64)
    total, squares = np.zeros(tiles), np.zeros(tiles)
    clipped_sums(one, two, off1, off2, flip_rows, flip_cols, first_col, row_edges, col_edges, scale1, scale2,
                 median.astype(np.float32), (CLIP_SIGMA * sigma).astype(np.float32), kept, total, squares)
    with np.errstate(invalid="ignore", divide="ignore"):
        variance = (squares - total * total / kept) / (kept - 1)
    variance = np.where(kept >= 3, variance / truncation_factor(CLIP_SIGMA), np.nan)
    npix = geometry.image_rows * geometry.image_cols
    rows = np.repeat(row_edges[:-1], col_edges.size - 1)
    cols = np.tile(col_edges[:-1], row_edges.size - 1)
    return PairQuadrant(float(sum1.sum()) / npix, float(sum2.sum()) / npix, mean, 0.5 * variance, kept, saturated,
                        rows, cols)


class PairConsumer:
    """A consumer of the check's read (Family.per_quadrant, quadrant_pass.py) for flat pairs: in
    one (CCD, quadrant) it keeps a pair's first frame (its quadrant's counts and offset) until the
    second arrives, then measures the pair (`measure`). Memory: the quadrants of the first frames
    waiting for their partner (one at a time when pairs are consecutive, as PTC01's)."""

    def __init__(self, quadrant: str, geometry: CCDGeometry, pairs: tuple[tuple[int, int], ...]):
        self.quadrant, self.geometry = quadrant, geometry
        self.second_of = {first: second for first, second in pairs}
        self.first_of = {second: first for first, second in pairs}
        self.waiting: dict[int, tuple[np.ndarray, float]] = {}
        self.measured: dict[tuple[int, int], object] = {}

    def add(self, index: int, counts: np.ndarray, stats) -> None:
        offset = stats.prescan.clipped_mean
        if index in self.second_of:
            self.waiting[index] = (counts, offset)  # the pass reads each frame into a fresh array: no copy
        elif index in self.first_of and self.first_of[index] in self.waiting:  # a first not fed: no pair
            first = self.first_of[index]
            counts1, offset1 = self.waiting.pop(first)
            self.measured[(first, index)] = self.measure(counts1, counts, offset1, offset)

    def measure(self, counts1: np.ndarray, counts2: np.ndarray, offset1: float, offset2: float) -> object:
        raise NotImplementedError

    def result(self) -> dict[tuple[int, int], object]:
        """(index of the first frame, of the second) -> what was measured of the pair in this quadrant."""
        return self.measured


class PairTiles(PairConsumer):
    """The PTC's pair consumer: each pair's tiles (pair_quadrant), in sample buffers it keeps."""

    def __init__(self, quadrant: str, geometry: CCDGeometry, pairs: tuple[tuple[int, int], ...]):
        super().__init__(quadrant, geometry, pairs)
        self.buffers = SampleBuffers()

    def measure(self, counts1: np.ndarray, counts2: np.ndarray, offset1: float, offset2: float) -> PairQuadrant:
        return pair_quadrant(counts1, counts2, offset1, offset2, self.geometry, self.quadrant, self.buffers)


# ---------------------------------------------------------------------------------------------
# PTC: the fit
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PTCPoints:
    """Every tile point of one quadrant, all pairs together."""

    means: np.ndarray
    variances: np.ndarray
    pixels: np.ndarray
    saturated: np.ndarray
    column: np.ndarray  # fluence column (0-based) of each point's pair


@dataclass
class PTCFit:
    gain: float = math.nan  # e-/ADU = 1 / linear term
    gain_err: float = math.nan
    quadratic: float = math.nan  # p0 of var = p0 mu^2 + p1 mu + p2 (1/ADU)
    linear: float = math.nan
    intercept: float = math.nan  # ADU^2: the read noise squared of one frame
    chi2_reduced: float = math.nan
    points_fitted: int = 0
    bloom_adu: float = math.nan
    bloom_lower_limit: bool = False  # no blooming seen: bloom_adu is the highest mean reached
    quality: list[str] = field(default_factory=list)  # empty when good
    used: np.ndarray | None = None  # per point: fitted
    dropped: dict[str, int] = field(default_factory=dict)  # why points were left out -> count
    smeared_columns: list[int] = field(default_factory=list)

    @property
    def quality_text(self) -> str:
        return ",".join(self.quality) if self.quality else "OK"


def _weighted_quadratic(x: np.ndarray, y: np.ndarray, sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Coefficients (p0, p1, p2) of y = p0 x^2 + p1 x + p2, their covariance, reduced chi2."""
    design = np.vstack([x * x, x, np.ones_like(x)]).T / sigma[:, None]
    target = y / sigma
    normal = design.T @ design
    covariance = np.linalg.inv(normal)
    coefficients = covariance @ design.T @ target
    dof = max(len(x) - 3, 1)
    chi2 = float(np.sum((design @ coefficients - target) ** 2) / dof)
    return coefficients, covariance, chi2


def fit_ptc(points: PTCPoints, fit_range: tuple[float, float] = FIT_RANGE_ADU, rel_error_max: float = 0.01) -> PTCFit:
    """Robust quadratic fit of variance vs mean, saturation-smeared columns dropped, and blooming.

    Each tile variance has the Gaussian error var * sqrt(2 / pixels): the fit is weighted with it
    (vison weighted nothing and clipped |var - pred| / sqrt(pred) < 5, an ADU-unit test that is
    loose at low fluence and tight at high). The first fit is on each column's median point
    (a few bad tiles cannot pull it); tiles more than 5 sigma off it are clipped; the final
    weighted fit's covariance is scaled by the reduced chi2 when the scatter exceeds the errors.
    """
    fit = PTCFit()
    means, variances = points.means, points.variances
    n = len(means)
    finite = np.isfinite(means) & np.isfinite(variances) & (points.pixels > 10)
    ok = finite & (points.saturated == 0)
    fit.dropped["ADC-saturated tiles"] = int(np.count_nonzero(finite & ~ok))
    smeared = np.zeros(n, bool)
    for column in np.unique(points.column):
        inside = ok & (points.column == column)
        if not inside.any():
            continue
        level = float(np.median(means[inside]))
        vs = variances[inside]
        spread = 1.4826 * float(np.median(np.abs(vs - np.median(vs)))) / max(float(np.median(vs)), 1e-9)
        if level > SMEAR_LEVEL_ADU and spread > SMEAR_SPREAD:
            smeared |= points.column == column
            fit.smeared_columns.append(int(column))
    fit.dropped["saturation-smeared columns"] = int(np.count_nonzero(ok & smeared))
    ok &= ~smeared
    in_range = ok & (means > fit_range[0]) & (means < fit_range[1])
    fit.dropped["outside the fit range"] = int(np.count_nonzero(ok & ~in_range))
    columns = [c for c in np.unique(points.column[in_range])]
    if len(columns) < 3 or np.count_nonzero(in_range) < 6:
        fit.quality.append("FEWPOINTS")
        fit.used = in_range
        fit.bloom_adu, fit.bloom_lower_limit = _bloom(points, None)
        return fit
    try:
        x = np.array([np.median(means[in_range & (points.column == c)]) for c in columns])
        y = np.array([np.median(variances[in_range & (points.column == c)]) for c in columns])
        first = np.polyfit(x, y, 2) if len(columns) >= 3 else np.polyfit(x, y, 1)
        predicted = np.polyval(first, means)
        sigma = np.abs(predicted) * np.sqrt(2.0 / np.maximum(points.pixels, 1))
        used = in_range & (np.abs(variances - predicted) <= 5.0 * sigma)
        for _ in range(3):  # refit on the kept points, re-clip against the new curve
            coefficients, covariance, chi2 = _weighted_quadratic(means[used], variances[used], sigma[used])
            predicted = np.polyval(coefficients, means)
            sigma = np.abs(predicted) * np.sqrt(2.0 / np.maximum(points.pixels, 1))
            again = in_range & (np.abs(variances - predicted) <= 5.0 * sigma)
            if np.array_equal(again, used):
                break
            used = again
        fit.dropped["clipped (over 5 sigma off the fit)"] = int(np.count_nonzero(in_range & ~used))
        scale = max(chi2, 1.0)
        p0, p1, p2 = (float(c) for c in coefficients)
        fit.quadratic, fit.linear, fit.intercept = p0, p1, p2
        fit.chi2_reduced = chi2
        fit.points_fitted = int(np.count_nonzero(used))
        fit.used = used
        p1_err = math.sqrt(covariance[1, 1] * scale)
        if p1 <= 0 or not math.isfinite(p1_err):
            fit.quality.append("BADERRORS")
        else:
            fit.gain = 1.0 / p1
            fit.gain_err = p1_err / (p1 * p1)  # d(1/p1) = dp1 / p1^2 (vison divided by gain^2: a quirk)
            if fit.gain_err / fit.gain > rel_error_max:
                fit.quality.append("POORFIT")
        fit.bloom_adu, fit.bloom_lower_limit = _bloom(points, coefficients)
    except (np.linalg.LinAlgError, ValueError) as exc:
        fit.quality.append(f"EXCEPTION ({exc})")
    return fit


def _bloom(points: PTCPoints, coefficients: np.ndarray | None) -> tuple[float, bool]:
    """Mean (ADU) where the variance falls off the fit: the first of BLOOM_RUN points in fluence
    order, above BLOOM_SEARCH_FROM_ADU, all more than BLOOM_MADS MADs (of the relative residuals
    between BLOOM_MAD_RANGE_ADU) below it. None found: the highest mean, a lower limit (vison
    returned it negated, a sign a reader must know to look for)."""
    finite = np.isfinite(points.means) & np.isfinite(points.variances)
    means, variances = points.means[finite], points.variances[finite]
    if means.size == 0:
        return math.nan, True
    top = float(means.max())
    if coefficients is None:
        return top, True
    order = np.argsort(means)
    means, variances = means[order], variances[order]
    model = np.polyval(coefficients, means)
    relative = np.where(model > 0, variances / np.where(model > 0, model, 1.0) - 1.0, np.nan)
    low, high = BLOOM_MAD_RANGE_ADU
    reference = relative[(means > low) & (means < high) & np.isfinite(relative)]
    if reference.size < 5:
        return top, True
    mad = float(np.median(np.abs(reference - np.median(reference))))
    below = (relative < -BLOOM_MADS * max(mad, 1e-4)) & (means > BLOOM_SEARCH_FROM_ADU)
    for i in np.flatnonzero(below):
        if i + BLOOM_RUN <= below.size and below[i: i + BLOOM_RUN].all():
            return float(means[i]), False
    return top, True


# ---------------------------------------------------------------------------------------------
# BF: covariances of one pair's difference
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PairCovariance:
    """One pair in one quadrant: mean fluence, and covariances of the difference by lag."""

    fluence1_adu: float
    fluence2_adu: float
    mean_adu: float
    covariance: np.ndarray  # [drow, dcol] for 0..max_lag, ADU^2, of ONE frame (halved, clip-corrected)
    pixels: int


def lag_covariances(diff: np.ndarray, keep: np.ndarray, max_lag: int) -> np.ndarray:
    """Covariances [drow, dcol] (0..max_lag) of the kept pixels of a zero-mean-ish image: each
    lag uses the pixel pairs both kept; the mean of the kept pixels is removed first."""
    values = np.where(keep, diff - np.float32(diff[keep].mean(dtype=np.float64)), np.float32(0))
    weight = keep.astype(np.float32)
    rows, cols = diff.shape
    out = np.full((max_lag + 1, max_lag + 1), np.nan)
    for dr in range(max_lag + 1):
        for dc in range(max_lag + 1):
            a = values[: rows - dr, : cols - dc]
            b = values[dr:, dc:]
            pairs = float(np.sum(weight[: rows - dr, : cols - dc] * weight[dr:, dc:], dtype=np.float64))
            if pairs > 1:
                out[dr, dc] = float(np.sum(a * b, dtype=np.float64)) / pairs
    return out


def remove_smooth_surface(diff: np.ndarray, keep: np.ndarray, block: int = 16, degree: int = 2) -> np.ndarray:
    """Subtract a low-order 2-D polynomial fitted to block means of the kept pixels (a residual
    illumination difference); small lags' covariances are blind to it, the variance is not."""
    rows, cols = diff.shape
    nr, nc = max(1, rows // block), max(1, cols // block)
    ys, xs, zs = [], [], []
    for i in range(nr):
        for j in range(nc):
            r0, r1 = i * rows // nr, (i + 1) * rows // nr
            c0, c1 = j * cols // nc, (j + 1) * cols // nc
            k = keep[r0:r1, c0:c1]
            if k.sum() > 0.5 * k.size:
                ys.append(0.5 * (r0 + r1) / rows - 0.5)
                xs.append(0.5 * (c0 + c1) / cols - 0.5)
                zs.append(float(diff[r0:r1, c0:c1][k].mean(dtype=np.float64)))
    terms = [(p, q) for p in range(degree + 1) for q in range(degree + 1 - p)]
    if len(zs) <= len(terms):
        return diff - np.float32(diff[keep].mean(dtype=np.float64))
    ys, xs, zs = np.array(ys), np.array(xs), np.array(zs)
    design = np.vstack([ys ** p * xs ** q for p, q in terms]).T
    coefficients = np.linalg.lstsq(design, zs, rcond=None)[0]
    y = (np.arange(rows) + 0.5) / rows - 0.5
    x = (np.arange(cols) + 0.5) / cols - 0.5
    surface = np.zeros((rows, cols), np.float32)
    for (p, q), c in zip(terms, coefficients):
        surface += np.float32(c) * np.outer(y ** p, x ** q).astype(np.float32)
    return diff - surface


def one_frame_covariance(covariance: np.ndarray) -> np.ndarray:
    """A pair difference's clipped covariances -> one frame's: halved, the clipping's bias divided
    out (the variance: / factor; a small covariance: / factor^2, first order in the correlation)."""
    factor = truncation_factor(CLIP_SIGMA)
    scale = np.full_like(covariance, 0.5 / factor ** 2)
    scale[0, 0] = 0.5 / factor
    return covariance * scale


def quadrant_covariance_numpy(counts1: np.ndarray, counts2: np.ndarray, offset1: float, offset2: float,
                              max_lag: int) -> PairCovariance:
    """The numpy statement of a pair's covariances in one quadrant, from the two canonical image
    areas' counts (uint16): what the compiled pair_covariance computes (tests/test_bf_pass.py
    compares them). Slow at full size (0.6-0.7 s a quadrant: the Python loop over the surface's
    16 000 blocks, 25 whole-image lags and their weights)."""
    saturated = (counts1 >= ADC_SATURATED) | (counts2 >= ADC_SATURATED)
    a = np.subtract(counts1, np.float32(offset1), dtype=np.float32)
    b = np.subtract(counts2, np.float32(offset2), dtype=np.float32)
    diff, m1, m2 = scaled_difference(a, b)
    del a, b
    keep, _ = clip_mask(diff)
    keep &= ~saturated
    if keep.sum() < MIN_PIXELS:  # saturated throughout: nothing to correlate
        nothing = np.full((max_lag + 1, max_lag + 1), np.nan)
        return PairCovariance(m1, m2, 0.5 * (m1 + m2), nothing, int(keep.sum()))
    diff = remove_smooth_surface(diff, keep)
    keep = clip_mask(diff, within=keep)[0]
    covariance = lag_covariances(diff, keep, max_lag)
    return PairCovariance(m1, m2, 0.5 * (m1 + m2), one_frame_covariance(covariance), int(keep.sum()))


SURFACE_BLOCK, SURFACE_DEGREE = 16, 2  # remove_smooth_surface's defaults


def _clip_window(sample: np.ndarray, k: float = CLIP_SIGMA) -> tuple[np.float32, np.float32]:
    """clip_mask's window (centre, half width, float32) from its sample of the values."""
    q16, median, q84 = percentiles(sample, SIGMA_PERCENTILES)
    sigma = max(0.5 * (q84 - q16), 1e-6)
    return np.float32(median), np.float32(k * sigma)


def _surface_coefficients(block_sums: np.ndarray, block_kept: np.ndarray, rows: int, cols: int,
                          terms: list[tuple[int, int]]) -> np.ndarray | None:
    """remove_smooth_surface's fit from the blocks' sums and kept counts (None: too few blocks)."""
    nr, nc = block_sums.shape
    row_edges = np.arange(nr + 1) * rows // nr
    col_edges = np.arange(nc + 1) * cols // nc
    sizes = np.diff(row_edges)[:, None] * np.diff(col_edges)[None, :]
    usable = block_kept > 0.5 * sizes
    if np.count_nonzero(usable) <= len(terms):
        return None
    centres_y = 0.5 * (row_edges[:-1] + row_edges[1:]) / rows - 0.5
    centres_x = 0.5 * (col_edges[:-1] + col_edges[1:]) / cols - 0.5
    # the normal equations (6 x 6): lstsq's solution to 1e-14 without its ~5 ms (a LAPACK call
    # on 16 000 rows), unless the blocks left (a saturated area) make them ill-conditioned. The
    # blocks lie on a grid, so their sums of y^a x^b (z) are products of small matrices: the
    # design matrix (1 ms to build) is made only for lstsq
    powers = np.arange(2 * max(p + q for p, q in terms) + 1)
    along_y, along_x = centres_y[:, None] ** powers, centres_x[:, None] ** powers
    means = np.divide(block_sums, block_kept, out=np.zeros_like(block_sums), where=usable)
    moments = along_y.T @ usable.astype(np.float64) @ along_x  # [a, b]: sum over the blocks of y^a x^b
    weighted = along_y.T @ means @ along_x  # ... of z y^a x^b
    exponents = np.array(terms)
    normal = moments[exponents[:, 0][:, None] + exponents[:, 0], exponents[:, 1][:, None] + exponents[:, 1]]
    if np.linalg.cond(normal) > 1e8:
        i, j = np.nonzero(usable)
        design = np.vstack([centres_y[i] ** p * centres_x[j] ** q for p, q in terms]).T
        return np.linalg.lstsq(design, means[i, j], rcond=None)[0]
    return np.linalg.solve(normal, weighted[exponents[:, 0], exponents[:, 1]])


def _stored_edges(length: int, blocks: int, flip: bool) -> np.ndarray:
    """remove_smooth_surface's block edges along an axis of `length`, in stored order (the
    canonical edges mirrored when the axis is flipped as read: block k is canonical block
    blocks - 1 - k then)."""
    edges = np.arange(blocks + 1) * length // blocks
    return (length - edges[::-1]) if flip else edges


def pair_covariance(counts1: np.ndarray, counts2: np.ndarray, offset1: float, offset2: float,
                    geometry: CCDGeometry, quadrant: str, max_lag: int) -> PairCovariance:
    """quadrant_covariance_numpy's numbers for one quadrant of a pair, from the two quadrants'
    counts as read (uint16, frame orientation, geometry.quadrant_slices): four compiled sweeps
    (compiled/bf_kernels.py) over the image area as the frame holds it (memory order), two
    sorts of 20 000 values and a 6 x 6 solve. The same fluences, clipped pixels and pair counts,
    the covariances to float rounding (tests/test_bf_pass.py). CPU a full-size quadrant in the
    check's read on a loaded machine: ~32 ms (lags 13, difference and first clip 6, sums 4,
    surface and second clip 4), 46 ms in six sweeps in canonical orientation; numpy's 600-700 ms."""
    from .compiled import bf_kernels as kernels  # numba loaded only where units run

    rows, cols = geometry.image_rows, geometry.image_cols
    flip_rows, flip_cols = geometry.flips(quadrant)
    height, width = counts1.shape
    first_col = geometry.canonical_region("image")[1].start
    first_row = height - rows if flip_rows else 0  # the image area's first row and column as read
    first_col = width - first_col - cols if flip_cols else first_col
    one, two = np.ascontiguousarray(counts1), np.ascontiguousarray(counts2)
    off1, off2 = np.float32(offset1), np.float32(offset2)
    step = max(1, rows * cols // SAMPLE_SIZE)  # clip_mask's sample of the difference: its pixels' counts
    sampled1, sampled2 = np.empty((2, -(-rows * cols // step)), np.uint16)
    sum1, sum2 = kernels.quadrant_sums(one, two, first_row, first_col, rows, cols, flip_rows, flip_cols, off1, off2,
                                       step, sampled1, sampled2)
    m1, m2 = sum1 / (rows * cols), sum2 / (rows * cols)
    mean = 0.5 * (m1 + m2)
    scale1, scale2 = (np.float32(m2 / mean), np.float32(m1 / mean)) if mean != 0 else (np.float32(1),) * 2
    sample = np.empty(sampled1.size, np.float32)
    kernels.sample_difference(sampled1, sampled2, off1, off2, scale1, scale2, sample)
    centre, half_width = _clip_window(sample)
    nr, nc = max(1, rows // SURFACE_BLOCK), max(1, cols // SURFACE_BLOCK)
    row_block = np.repeat(np.arange(nr), np.diff(_stored_edges(rows, nr, flip_rows)))
    block_sums, block_kept = np.zeros((nr, nc)), np.zeros((nr, nc), np.int64)
    diff = np.empty((rows, cols), np.float32)  # the image area as stored
    mask = np.empty((rows, cols), np.uint8)  # 1: kept
    row_kept = np.empty(rows, np.int64)
    kept = kernels.difference_blocks(one, two, off1, off2, first_row, first_col, scale1, scale2, centre, half_width,
                                     row_block, _stored_edges(cols, nc, flip_cols), diff, mask, block_sums,
                                     block_kept, row_kept)
    if kept < MIN_PIXELS:  # saturated throughout: nothing to correlate
        return PairCovariance(m1, m2, mean, np.full((max_lag + 1, max_lag + 1), np.nan), int(kept))
    canonical = (slice(None, None, -1 if flip_rows else 1), slice(None, None, -1 if flip_cols else 1))
    terms = [(p, q) for p in range(SURFACE_DEGREE + 1) for q in range(SURFACE_DEGREE + 1 - p)]
    coefficients = _surface_coefficients(block_sums[canonical], block_kept[canonical], rows, cols, terms)
    if coefficients is None:  # too few blocks: the kept pixels' mean only
        terms, coefficients = [(0, 0)], np.array([block_sums[canonical].sum() / kept])
    # the surface's float32 terms as numpy makes them, in stored order: the leading terms constant
    # along the columns (y ** 0) summed once, then each row's others
    y = ((np.arange(rows) + 0.5) / rows - 0.5)[canonical[0]]
    x = ((np.arange(cols) + 0.5) / cols - 0.5)[canonical[1]]
    coefficients = coefficients.astype(np.float32)
    leading = next((t for t, (p, _) in enumerate(terms) if p > 0), len(terms))
    col_surface = np.zeros(cols, np.float32)
    for (_, q), c in zip(terms[:leading], coefficients[:leading]):
        col_surface += c * (x ** q).astype(np.float32)
    rest = terms[leading:]
    row_terms = np.array([y ** p for p, _ in rest]).reshape(len(rest), rows)
    col_terms = np.array([x ** q for _, q in rest]).reshape(len(rest), cols)
    row_only = np.array([q == 0 for _, q in rest], np.bool_)
    surface = (col_surface, row_terms, col_terms, row_only, coefficients[leading:])
    step = max(1, kept // SAMPLE_SIZE)
    sample = np.empty(-(-kept // step), np.float32)
    kernels.surface_sample(diff, mask, row_kept, flip_rows, flip_cols, *surface, step, sample)
    centre, half_width = _clip_window(sample)
    total, kept = kernels.subtract_surface_clip(diff, mask, *surface, centre, half_width, row_kept)
    mirrored = flip_rows != flip_cols
    sums = np.zeros((max_lag + 1, max_lag + 1))
    kernels.lag_sums(diff, mask, np.float32(total / kept if kept else 0.0), max_lag, mirrored, sums)
    pairs = np.zeros((max_lag + 1, max_lag + 1), np.int64)
    kernels.pair_counts(mask, row_kept, max_lag, mirrored, pairs)
    with np.errstate(invalid="ignore", divide="ignore"):
        covariance = np.where(pairs > 1, sums / pairs, np.nan)
    return PairCovariance(m1, m2, mean, one_frame_covariance(covariance), int(kept))


def pair_covariance_unit(path1: Path, path2: Path, offsets1: dict[str, float], offsets2: dict[str, float],
                         geometry: CCDGeometry, max_lag: int) -> dict[str, PairCovariance]:
    """Worker: per quadrant the covariances of one pair's scaled difference (pair_covariance; each
    frame opened once, a quadrant of both held at a time: 2 x 9 MB at full size)."""
    result = {}
    with read_frame(path1) as one, read_frame(path2) as two:
        for q in QUADRANTS:
            section = geometry.quadrant_slices(q)
            result[q] = pair_covariance(one.section(*section), two.section(*section), offsets1[q], offsets2[q],
                                        geometry, q, max_lag)
    return result


@dataclass(frozen=True)
class CovariancePlan:
    """PairCovariances' plan: the pairs (indices of the CCD's frames) and the largest lag."""

    pairs: tuple[tuple[int, int], ...]
    max_lag: int


class PairCovariances(PairConsumer):
    """BF's pair consumer: each pair's covariances (pair_covariance)."""

    def __init__(self, quadrant: str, geometry: CCDGeometry, plan: CovariancePlan):
        super().__init__(quadrant, geometry, plan.pairs)
        self.max_lag = plan.max_lag

    def measure(self, counts1: np.ndarray, counts2: np.ndarray, offset1: float, offset2: float) -> PairCovariance:
        return pair_covariance(counts1, counts2, offset1, offset2, self.geometry, self.quadrant, self.max_lag)


def proportional_fit(x: np.ndarray, y: np.ndarray, sigma: np.ndarray) -> tuple[float, float, float, float]:
    """Weighted straight line y = a + b x: (a, b, error of a, error of b)."""
    w = 1.0 / sigma ** 2
    s, sx, sy = w.sum(), (w * x).sum(), (w * y).sum()
    sxx, sxy = (w * x * x).sum(), (w * x * y).sum()
    det = s * sxx - sx * sx
    if len(x) < 2 or det <= 0:
        return math.nan, math.nan, math.nan, math.nan
    b = (s * sxy - sx * sy) / det
    a = (sxx * sy - sx * sxy) / det
    return float(a), float(b), math.sqrt(sxx / det), math.sqrt(s / det)
