"""Charge-injection science as pure functions: which half a drain timing injects, the injection
vison predicts, extraction of the injected lines from one quadrant, and the fits of the injection
level against IG1 (CHINJ01) and IDL (CHINJ02).

Images are canonical quadrant image areas (output node at row 0, column 0), offset-subtracted,
ADU. The on/off pattern starts at canonical image row 0 (ELVIS): `on` lines injected, `off` lines
empty, repeated up the image; the phase is checked against the data (`pattern_phase`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

# vison's prediction (inject/lib.py predict_inj_level): a notch level plus a rise per volt of IG2 - IG1,
# injection only where IDL < IG1 + threshold.
PREDICTED_NOTCH_ADU = 600.0
PREDICTED_SLOPE_ADU_PER_V = 6000.0
PREDICTED_THRESHOLD_DV = 7.5
ADC_FULL_SCALE_ADU = 65535.0
NOISE_ALLOWANCE_ADU = 10.0  # widens the fluence and gradient windows where little is injected
MIN_FIT_POINTS = 4
FEW_POINTS = 6  # up to this many points the sigmoid's steepness and the background are fixed (as vison)
FIXED_STEEPNESS_PER_V = 15.0
LEVEL_ERROR_FRACTION = 0.01  # model error of a level in the fits: 1 % (plus 1 ADU)


# ---------------------------------------------------------------------------------------------
# What was commanded
# ---------------------------------------------------------------------------------------------

def injected_half(chinj: int, id_wid: float, id_dly: float, toi_ch: float) -> str | None:
    """The CCD half the drain-pulse timing lets charge reach: id_dly/toi_ch in [2, 3] -> "B"
    (quadrants E, F), in [1, 2) -> "T" (G, H); None when nothing is injected."""
    if not chinj or id_wid < 10 or toi_ch <= 0:
        return None
    ratio = id_dly / toi_ch
    if 2.0 <= ratio <= 3.0:
        return "B"
    if 1.0 <= ratio < 2.0:
        return "T"
    return None


def predicted_injection_adu(ig1: float, ig2: float, idl: float, below_threshold: float = 0.0) -> float:
    """vison's expected injection (ADU) for these gate voltages: 600 + max(0, IG2 - IG1) x 6000 ADU
    when IDL < IG1 + 7.5 V, else `below_threshold` (0: nothing injected; TP01/02 pass NaN: no prediction)."""
    if idl >= ig1 + PREDICTED_THRESHOLD_DV:
        return below_threshold
    return PREDICTED_NOTCH_ADU + PREDICTED_SLOPE_ADU_PER_V * max(0.0, ig2 - ig1)


def logged_number(row: Mapping[str, Any], *names: str, default: float = math.nan) -> float:
    """The first of `names` in an EXP_LOG row that reads as a number, else `default`."""
    for name in names:
        value = row.get(name)
        if value not in (None, ""):
            try:
                return float(value)
            except (TypeError, ValueError):
                continue
    return default


@dataclass(frozen=True)
class InjectionWindow:
    predicted_adu: float
    low_adu: float  # allowed median injection
    high_adu: float
    std_limit_adu: float  # largest std of the injected pixels ("gradient")


def injection_window(ig1: float, ig2: float, idl: float, tolerance: float, margin_v: float,
                     gradient_fraction: float) -> InjectionWindow:
    """The fluence and gradient limits of one frame: the prediction at IG1 +- margin_v (the
    threshold and notch voltages of a real device differ from the nominal law by a few 0.1 V,
    where the level changes by thousands of ADU), widened by the relative tolerance. Where the
    prediction is 0 somewhere in the margin (near or below the threshold) the lower limit is
    0 less the noise allowance; with no injection predicted at all, only the ADC range bounds it."""
    shifts = np.linspace(-margin_v, margin_v, 9) if margin_v > 0 else [0.0]
    levels = [predicted_injection_adu(ig1 + d, ig2, idl) for d in shifts]
    low, high = min(levels), max(levels)
    if high <= 0:  # no injection predicted anywhere near: not judged (as vison's NaN expectation)
        high = ADC_FULL_SCALE_ADU
    return InjectionWindow(
        predicted_adu=predicted_injection_adu(ig1, ig2, idl),
        low_adu=(1.0 - tolerance) * low - NOISE_ALLOWANCE_ADU,
        high_adu=(1.0 + tolerance) * high + NOISE_ALLOWANCE_ADU,
        std_limit_adu=gradient_fraction * high + NOISE_ALLOWANCE_ADU,
    )


# ---------------------------------------------------------------------------------------------
# Extraction of the injected lines
# ---------------------------------------------------------------------------------------------

PERCENTILES = (5, 25, 50, 75, 95)


@dataclass(frozen=True)
class InjectedLines:
    """The injected lines of one quadrant of one frame."""

    mean: float  # statistics of the injected pixels of the cycle-averaged image (ADU)
    std: float
    min: float
    max: float
    p5: float
    p25: float
    p50: float
    p75: float
    p95: float
    nonuniformity: float  # (p95 - p5) / p50
    spillover: float  # (first empty line - level of the empty lines) / p50
    phase: int  # canonical image row where the first injected line of a cycle lies
    row_profile: np.ndarray  # per image column: mean over the injected lines (along a row)
    column_profile: np.ndarray  # per line of the cycle (from `phase`): mean over columns


def pattern_phase(line_means: np.ndarray, on: int, off: int) -> int:
    """Row (0..period-1) where injected cycles start. ELVIS starts them at row 0; another phase is
    taken only when the data clearly say so (its on-window is brighter by > 10 % of the contrast)."""
    period = on + off
    if off <= 0 or on <= 0 or line_means.size < period:
        return 0
    folded = fold(line_means[:, None], period)[:, 0]
    # row s: the on-window shifted by s (np.roll of [1] * on + [0] * off), built at once
    windows = (((np.arange(period)[None, :] - np.arange(period)[:, None]) % period) < on).astype(np.float64)
    contrast = np.array([folded @ window / on - folded @ (1 - window) / off for window in windows])
    best = int(np.argmax(contrast))
    if best != 0 and contrast[best] > 1.1 * contrast[0] + NOISE_ALLOWANCE_ADU:
        return best
    return 0


def fold(image: np.ndarray, period: int) -> np.ndarray:
    """Mean over cycles of the rows of `image` (rows x columns): line k of the result averages
    rows k, k + period, ...; partial last cycles count where they have rows."""
    rows = image.shape[0]
    sums = np.zeros((period, image.shape[1]), np.float64)
    counts = np.zeros(period, np.int64)
    for start in range(0, rows, period):
        block = image[start: start + period]
        valid = np.isfinite(block).all(axis=1)  # rows outside the readout window are NaN
        n = block.shape[0]
        if valid.all():
            sums[:n] += block
        else:
            sums[:n][valid] += block[valid]
        counts[:n] += valid
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts[:, None]


def cycle(on: int, off: int, rows: int) -> tuple[int, int]:
    """(injected lines, period) of the on/off cycle over an image of `rows` rows."""
    on = max(0, min(on, rows))
    return on, on + max(off, 0) if off > 0 else max(on, 1)


def extract_lines(image: np.ndarray, on: int, off: int) -> InjectedLines:
    """Injected lines of an offset-subtracted canonical image area (rows from canonical row 0).

    The image is folded over the on/off cycle (mean over cycles), the injected lines picked with
    the pattern's phase; statistics are over those injected pixels, the along-row profile is
    their mean per column, the along-column profile the mean over columns of each cycle line.
    Spill-over compares the first empty line with the median of the empty lines after the
    first five (charge-transfer trails are gone there). The numpy definition: the analyses fold
    the counts compiled (compiled/chinj_kernels.py) and call `folded_lines`, to the same numbers.
    """
    image = np.asarray(image, dtype=np.float32)
    on, period = cycle(on, off, image.shape[0])
    return folded_lines(fold(image, period), image.mean(axis=1, dtype=np.float64), on, off)


def folded_lines(cube: np.ndarray, line_means: np.ndarray, on: int, off: int) -> InjectedLines:
    """The injected lines from the folded image (period x columns, `fold`) and the image's row
    means (NaN for rows outside the readout window); `on` as `cycle` gives it."""
    period = cube.shape[0]
    phase = pattern_phase(line_means, on, off) if off > 0 else 0
    lines = (phase + np.arange(on)) % period
    injected = cube[lines] if on else np.zeros((0, cube.shape[1]))
    values = injected[np.isfinite(injected)]
    column_profile = np.roll(cube.mean(axis=1), -phase)
    if values.size == 0:
        nan = math.nan
        return InjectedLines(nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, phase,
                             np.full(cube.shape[1], np.nan), column_profile)
    p5, p25, p50, p75, p95 = (float(v) for v in np.percentile(values, PERCENTILES))
    nonuniformity = (p95 - p5) / p50 if p50 > 0 else math.nan
    spillover = math.nan
    if off > 0 and p50 > 0:
        empty = column_profile[on:]
        empty = empty[np.isfinite(empty)]  # cycle lines past the last row read have no data
        settled = empty[5:] if empty.size > 6 else empty[1:]
        if settled.size:
            spillover = float((empty[0] - np.median(settled)) / p50)
    return InjectedLines(
        mean=float(values.mean()), std=float(values.std()), min=float(values.min()), max=float(values.max()),
        p5=p5, p25=p25, p50=p50, p75=p75, p95=p95, nonuniformity=float(nonuniformity), spillover=spillover,
        phase=phase, row_profile=injected.mean(axis=0).astype(np.float32),
        column_profile=column_profile.astype(np.float32),
    )


# ---------------------------------------------------------------------------------------------
# Injection curves
# ---------------------------------------------------------------------------------------------

def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def ig1_model(v: np.ndarray, background: float, steepness: float, threshold: float, notch: float,
              slope: float, notch_level: float) -> np.ndarray:
    """vison's "ReLU" curve of injection vs IG1: nothing below the threshold, a linear fall of
    `slope` ADU/V down to the notch voltage, a plateau `notch_level` above it."""
    v = np.asarray(v, dtype=np.float64)
    return background + _sigmoid(steepness * (v - threshold)) * (slope * np.maximum(notch - v, 0.0) + notch_level)


def idl_model(v: np.ndarray, background: float, amplitude: float, steepness: float, threshold: float) -> np.ndarray:
    """Injection vs IDL: a plateau `amplitude` that falls as a sigmoid around the threshold."""
    v = np.asarray(v, dtype=np.float64)
    return background + amplitude * _sigmoid(-steepness * (v - threshold))


def ig1_jacobian(v: np.ndarray, background: float, steepness: float, threshold: float, notch: float,
                 slope: float, notch_level: float) -> np.ndarray:
    """d ig1_model / d (each parameter, in IG1_PARAMS order), one row per voltage (the sigmoid's
    derivative is S (1 - S); at the notch the one-sided derivative of the kink below it)."""
    v = np.asarray(v, dtype=np.float64)
    rising = _sigmoid(steepness * (v - threshold))
    bend = rising * (1.0 - rising)
    below_notch = np.maximum(notch - v, 0.0)
    level = slope * below_notch + notch_level
    return np.stack([np.ones_like(v), bend * (v - threshold) * level, -steepness * bend * level,
                     rising * slope * (notch > v), rising * below_notch, rising], axis=1)


def idl_jacobian(v: np.ndarray, background: float, amplitude: float, steepness: float,
                 threshold: float) -> np.ndarray:
    """d idl_model / d (each parameter, in IDL_PARAMS order), one row per voltage."""
    v = np.asarray(v, dtype=np.float64)
    falling = _sigmoid(-steepness * (v - threshold))
    bend = amplitude * falling * (1.0 - falling)
    return np.stack([np.ones_like(v), falling, -bend * (v - threshold), bend * steepness], axis=1)


@dataclass(frozen=True)
class CurveFit:
    """A fitted injection curve; `ok` False with the reason when it could not be fitted."""

    ok: bool
    reason: str
    points: int
    params: dict[str, float]  # model parameters by name (NaN when not fitted)
    rms_adu: float  # rms residual of the points

    def get(self, name: str) -> float:
        return self.params.get(name, math.nan)


IG1_PARAMS = ("background", "steepness", "threshold", "notch", "slope", "notch_level")
IDL_PARAMS = ("background", "amplitude", "steepness", "threshold")


def _clean(volts, levels) -> tuple[np.ndarray, np.ndarray]:
    v = np.asarray(volts, dtype=np.float64)
    y = np.asarray(levels, dtype=np.float64)
    keep = np.isfinite(v) & np.isfinite(y)
    order = np.argsort(v[keep], kind="stable")
    return v[keep][order], y[keep][order]


def _crossing(v: np.ndarray, y: np.ndarray, level: float, rising: bool) -> float:
    """First voltage where the curve crosses `level` going up (rising) or down, interpolated."""
    for i in range(len(v) - 1):
        a, b = y[i], y[i + 1]
        if (rising and a < level <= b) or (not rising and a >= level > b):
            return float(v[i] + (level - a) / (b - a) * (v[i + 1] - v[i]))
    return float(v[len(v) // 2])


def _least_squares(model, jacobian, v, y, starts, lower, upper, fixed: dict[int, float]):
    """Best of several starts of a bounded least-squares fit with 1 % + 1 ADU level errors.
    The model's analytic `jacobian` (None: finite differences) saves ~30 % of each start."""
    from scipy.optimize import least_squares

    sigma = 1.0 + LEVEL_ERROR_FRACTION * np.abs(y)
    free = [i for i in range(len(lower)) if i not in fixed]

    def full(p):
        params = np.empty(len(lower))
        params[free] = p
        for i, value in fixed.items():
            params[i] = value
        return params

    def residuals(p):
        return (model(v, *full(p)) - y) / sigma

    def derivatives(p):
        return jacobian(v, *full(p))[:, free] / sigma[:, None]

    best, jac = None, "2-point" if jacobian is None else derivatives
    for start in starts:
        x0 = np.clip([start[i] for i in free], [lower[i] for i in free], [upper[i] for i in free])
        try:
            result = least_squares(residuals, x0, jac=jac, bounds=([lower[i] for i in free], [upper[i] for i in free]),
                                   loss="soft_l1", f_scale=3.0, max_nfev=4000)
        except (ValueError, np.linalg.LinAlgError):
            continue
        if best is None or result.cost < best.cost:
            best = result
    if best is None:
        return None
    return full(best.x)


def _unfittable(v: np.ndarray, y: np.ndarray, names: tuple[str, ...]) -> CurveFit | None:
    """The failed fit when there are too few points or no injection to fit, else None."""
    nan = {name: math.nan for name in names}
    if v.size < MIN_FIT_POINTS:
        return CurveFit(False, f"{v.size} points (at least {MIN_FIT_POINTS} needed)", int(v.size), nan, math.nan)
    peak = float(y.max())
    if peak <= NOISE_ALLOWANCE_ADU:
        return CurveFit(False, f"no injection seen (largest level {peak:.1f} ADU)", int(v.size), nan, math.nan)
    return None


def _fitted(model, names: tuple[str, ...], v: np.ndarray, y: np.ndarray, params) -> CurveFit:
    """The CurveFit of `_least_squares`'s parameters (None: the fit did not converge)."""
    if params is None:
        return CurveFit(False, "the fit did not converge", int(v.size), {name: math.nan for name in names}, math.nan)
    rms = float(np.sqrt(np.mean((model(v, *params) - y) ** 2)))
    return CurveFit(True, "", int(v.size), dict(zip(names, map(float, params))), rms)


def fit_ig1_curve(volts, levels) -> CurveFit:
    """Fit injection (ADU) vs IG1 (V) with `ig1_model`. Up to FEW_POINTS points the background is
    0 and the steepness 15/V (as vison); fewer than MIN_FIT_POINTS: no fit."""
    v, y = _clean(volts, levels)
    unfit = _unfittable(v, y, IG1_PARAMS)
    if unfit is not None:
        return unfit
    peak = float(y.max())
    span = (float(v.min()) - 1.0, float(v.max()) + 1.0)
    plateau = float(np.median(y[-3:]))
    threshold0 = _crossing(v, y, 0.5 * peak, rising=True)
    upper_part = np.flatnonzero(y > plateau + 0.1 * (peak - plateau))
    notch0 = float(v[upper_part[-1]]) + 0.125 if upper_part.size else float(v.max())
    slope0 = (peak - plateau) / max(notch0 - threshold0, 0.25)
    lower = [-200.0, 1.0, span[0], span[0], 0.0, 0.0]
    upper = [200.0, 200.0, span[1], span[1], 1e6, 1e5]
    starts = [[0.0, FIXED_STEEPNESS_PER_V, threshold0 + dt, notch0 + dn, slope0, plateau]
              for dt in (-0.15, 0.0, 0.15) for dn in (-0.4, 0.0, 0.4)]
    starts += [[0.0, k, threshold0, notch0, slope0, plateau] for k in (5.0, 40.0)]
    fixed = {0: 0.0, 1: FIXED_STEEPNESS_PER_V} if v.size <= FEW_POINTS else {}
    params = _least_squares(ig1_model, ig1_jacobian, v, y, starts, lower, upper, fixed)
    return _fitted(ig1_model, IG1_PARAMS, v, y, params)


def fit_idl_curve(volts, levels) -> CurveFit:
    """Fit injection (ADU) vs IDL (V) with `idl_model` (few points: background 0, steepness 15/V)."""
    v, y = _clean(volts, levels)
    unfit = _unfittable(v, y, IDL_PARAMS)
    if unfit is not None:
        return unfit
    peak = float(y.max())
    span = (float(v.min()) - 1.0, float(v.max()) + 1.0)
    threshold0 = _crossing(v, y, 0.5 * peak, rising=False)
    lower = [-200.0, 0.0, 1.0, span[0]]
    upper = [200.0, 1e5, 200.0, span[1]]
    starts = [[0.0, peak, k, threshold0 + dt] for k in (5.0, 15.0, 40.0) for dt in (-0.1, 0.1)]
    fixed = {0: 0.0, 2: FIXED_STEEPNESS_PER_V} if v.size <= FEW_POINTS else {}
    params = _least_squares(idl_model, idl_jacobian, v, y, starts, lower, upper, fixed)
    return _fitted(idl_model, IDL_PARAMS, v, y, params)
