"""Drawing one ELVIS frame of one CCD from the injected truths.

Per quadrant, in canonical orientation and physical order: the mean photo-electrons (dark current,
flat lamp x pixel response, point-source spots, charge injection, persistence), trap-pumping
dipoles, charge-transfer trails, shot noise, brighter-fatter, full-well clipping, non-linearity,
gain; then cosmic rays, offset and read noise on the whole quadrant, digitisation, the ADC range
and the readout window. Defective pixels act where they physically do: dead, cold and bad-column
pixels in the pixel response, hot pixels as dark current (also collected while rows wait to be
read, so they show in biases). Brighter-fatter acts on the realised charge, after shot noise:
that is what correlates neighbouring pixels.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.formats.geometry import HALF_OF_QUADRANT, QUADRANTS, CCDGeometry
from engine.sim import effects
from engine.sim.truths import (
    PIXEL_PITCH_CM,
    READOUT_TIME_S,
    ROW_READ_TIME_S,
    SERIAL_PHASE_TIME_US,
    CCDTruth,
    QuadrantTruth,
    Truths,
    dipole_polarity,
    pumped_electrons,
)

F32 = np.float32
ADC_MAX = 65535
# Below an electron per pixel an injection is indistinguishable from none: treat it as off.
_MIN_INJECTION_E = 1.0


@dataclass
class Exposure:
    """What one ELVIS frame was commanded to do (EXP_LOG 7.5.X names, lower case) plus optics.

    Voltages are per CCD half ("T" = G, H; "B" = E, F); `ig1` is keyed by (ccd, half) and falls
    back to the ELVIS default 6.0 V. Times are in us as in the log, exptime in s. `vend` None reads
    the whole quadrant. `best_focus_mm` None takes the truth's best focus at `wavelength_nm`.
    """

    exptime: float = 0.0
    shutter: bool = True
    source: str = "none"  # "flat" | "point" | "none"
    wavelength_nm: int = 800
    flat_e_per_s: float = 0.0  # electrons per pixel per second from the flat lamp at this filter
    spot_e_per_s: float = 0.0  # electrons per second in one spot
    mirr_pos: float = 70.0
    best_focus_mm: float | None = None
    chinj: int = 0
    chinj_on: int = 1
    chinj_of: int = 1
    idl: float = 13.0
    idh: float = 18.0
    ig1: dict[tuple[int, str], float] = field(default_factory=dict)
    ig2: dict[str, float] = field(default_factory=lambda: {"T": 2.0, "B": 2.0})
    id_dly: float = 1500.0
    id_wid: float = 100.0
    toi_ch: float = 1000.0
    v_tpump: int = 0
    v_tp_mod: int = 123
    v_tp_cnt: int = 1000
    toi_tp: float = 1000.0
    dwell_v: float = 0.0
    s_tpump: int = 0
    s_tp_mod: int = 23
    s_tp_cnt: int = 1000
    dwell_s: float = 0.0
    vstart: int = 0
    vend: int | None = None
    rdmode: str = "fwd_bas"  # accepted; the simulated offsets and noise do not depend on it
    seconds_since_start: float = 0.0  # acquisition clock at the start of the exposure

    def ig1_of(self, ccd: int, half: str) -> float:
        return float(self.ig1.get((ccd, half), 6.0))

    def ig2_of(self, half: str) -> float:
        return float(self.ig2.get(half, 2.0))

    def injected_half(self) -> str | None:
        """Which CCD half the drain-pulse timing lets charge reach: 2.5 x toi_ch -> "B", 1.5 -> "T"."""
        if not self.chinj or self.id_wid < 10 or self.toi_ch <= 0:
            return None
        ratio = self.id_dly / self.toi_ch
        if 2.0 <= ratio <= 3.0:
            return "B"
        if 1.0 <= ratio < 2.0:
            return "T"
        return None

    @property
    def lit(self) -> bool:
        return self.shutter and self.exptime > 0 and self.source.lower() in ("flat", "point")

    @classmethod
    def from_log_row(cls, row: Mapping[str, Any], **optics: Any) -> Exposure:
        """Build from an EXP_LOG-like row (names as in the log: `IG1_1_T`, `IDL`, `exptime`...).

        `optics` gives what the log does not hold: shutter, wavelength_nm, flat_e_per_s,
        spot_e_per_s, best_focus_mm, seconds_since_start.
        """
        values: dict[str, Any] = dict(optics)
        given = {str(k).lower(): v for k, v in row.items() if v not in (None, "")}
        for name, spec in cls.__dataclass_fields__.items():
            if name not in values and name in given and name not in ("ig1", "ig2"):
                values[name] = _coerce(spec.type, given[name])
        values["ig1"] = {
            (ccd, half): float(given[f"ig1_{ccd}_{half.lower()}"])
            for ccd in (1, 2, 3)
            for half in ("T", "B")
            if f"ig1_{ccd}_{half.lower()}" in given
        }
        values["ig2"] = {half: float(given[f"ig2_{half.lower()}"]) for half in ("T", "B") if f"ig2_{half.lower()}" in given}
        return cls(**values)


class CCDState:
    """What one CCD carries from frame to frame: saturation history and its fixed pixel maps.

    Create one per CCD and pass it to `render_frame` for each frame in acquisition order.
    """

    def __init__(self) -> None:
        # quadrant -> [(end of the saturating exposure in s, packed saturated-pixel mask)]
        self.saturations: dict[str, list[tuple[float, np.ndarray]]] = {q: [] for q in QUADRANTS}
        self._maps: dict[tuple, np.ndarray] = {}

    def record_saturation(self, quadrant: str, saturated: np.ndarray, when_s: float, forget_after_s: float) -> None:
        """Remember which pixels filled their well, and when; a pixel's newest saturation is what
        its persistence decays from, so older events keep only the pixels not saturated again."""
        if not saturated.any():
            return
        events = []
        for when, packed in self.saturations[quadrant]:
            if when_s - when >= forget_after_s:
                continue
            older = _unpack(packed, saturated.shape) & ~saturated
            if older.any():
                events.append((when, np.packbits(older)))
        events.append((when_s, np.packbits(saturated)))
        self.saturations[quadrant] = events

    def persistence_e(
        self, quadrant: str, truth: QuadrantTruth, shape: tuple[int, int], t0: float, t1: float
    ) -> np.ndarray | None:
        """Mean persistence electrons per image pixel collected in [t0, t1] (acquisition clock), or None."""
        total = None
        for when, packed in self.saturations[quadrant]:
            amount = truth.persistence_between(t0 - when, t1 - when)
            if amount <= 1e-3:
                continue
            if total is None:
                total = np.zeros(shape, dtype=F32)
            total[_unpack(packed, shape)] += F32(amount)
        return total

    def cached(self, key: tuple, build) -> np.ndarray:
        if key not in self._maps:
            self._maps[key] = build()
        return self._maps[key]


def _unpack(packed: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return np.unpackbits(packed, count=shape[0] * shape[1]).reshape(shape).view(bool)


def render_frame(
    geometry: CCDGeometry,
    exposure: Exposure,
    ccd_truth: CCDTruth,
    truths: Truths,
    rng: np.random.Generator,
    state: CCDState,
) -> np.ndarray:
    """One CCD frame as ELVIS writes it: uint16 ADU, frame orientation, shape geometry.shape."""
    # Read noise for the whole frame in one draw; quadrants scale and offset their part in place.
    frame = rng.standard_normal(geometry.shape, dtype=F32)
    for quadrant in QUADRANTS:
        truth = ccd_truth.quadrants[quadrant]
        view = geometry.quadrant(frame, quadrant, canonical=True)
        # ron_adu is what a digitised bias shows: remove the quantisation that rounding adds back.
        view *= F32(math.sqrt(max(truth.ron_adu**2 - 1.0 / 12.0, 0.0)))
        view += F32(truth.offset_adu)
        dense, sparse = _quadrant_signal_adu(geometry, exposure, ccd_truth, quadrant, truths, rng, state)
        if dense is not None:
            view += dense
        for rows, cols, adu in sparse:
            np.add.at(view, (rows, cols), adu)
    np.rint(frame, out=frame)
    np.clip(frame, 0, ADC_MAX, out=frame)
    out = frame.astype(np.uint16)
    _apply_window(geometry, out, exposure)
    return out


# -- one quadrant ----------------------------------------------------------------------------

Sparse = list[tuple[np.ndarray, np.ndarray, np.ndarray]]  # (rows, cols, ADU) in canonical quadrant


def _quadrant_signal_adu(
    geometry: CCDGeometry,
    exposure: Exposure,
    ccd_truth: CCDTruth,
    quadrant: str,
    truths: Truths,
    rng: np.random.Generator,
    state: CCDState,
) -> tuple[np.ndarray | None, Sparse]:
    """Offset-free signal of one canonical quadrant in ADU: a dense map (None when no pixel-wide
    charge: biases) and sparse additions (hot pixels of a bias, cosmic rays)."""
    options = truths.options
    truth = ccd_truth.quadrants[quadrant]
    charge, structured = _expected_charge(geometry, exposure, ccd_truth, quadrant, truths, state)
    hot = _hot_pixel_charge(geometry, ccd_truth, quadrant, exposure.exptime) if options.cosmetics else None
    sparse: Sparse = []
    if charge is None:
        if hot is not None:
            rows, cols, expected = hot
            electrons = rng.poisson(expected).astype(F32)
            sparse.append((rows, cols, _to_adu(electrons, truth, options.nonlinearity)))
    else:
        image = charge[geometry.canonical_region("image")]
        if hot is not None:
            rows, cols, expected = hot
            np.add.at(charge, (rows, cols), expected)
        if options.traps:
            _pump_traps(image, geometry, exposure, truth)
        if options.cti:
            # Trails along the column into later rows (parallel CTI) and along the row into the
            # serial overscan (hard-edge response); a uniform image only shows them at its edges.
            parallel_start = 0 if structured else geometry.image_rows
            serial_start = 0 if structured else geometry.prescan + geometry.image_cols
            effects.trail(charge, truth.cti, truth.cti_tail_rows, axis=0, start=parallel_start)
            effects.trail(charge, truth.her, truth.her_tail_cols, axis=1, start=serial_start)
        charge = effects.shot_noise(charge, rng)
        image = charge[geometry.canonical_region("image")]
        if options.bf and image.max() > 100.0:
            image[...] = effects.brighter_fatter(image, truth.bf_strength, truth.full_well_e)
        _clip_full_well(image, truth, quadrant, exposure, state, options.persistence)
        charge = _to_adu(charge, truth, options.nonlinearity)
    sparse.extend(_cosmic_rays_adu(geometry, exposure, truth, truths, rng))
    return charge, sparse


def _expected_charge(
    geometry: CCDGeometry,
    exposure: Exposure,
    ccd_truth: CCDTruth,
    quadrant: str,
    truths: Truths,
    state: CCDState,
) -> tuple[np.ndarray | None, bool]:
    """Mean electrons over the canonical quadrant from every pixel-wide source, or None; and
    whether the charge has sharp features (spots, injected lines) that CTI visibly trails."""
    options = truths.options
    truth = ccd_truth.quadrants[quadrant]
    rows, cols = geometry.canonical_region("image")
    charge = np.zeros((geometry.quad_height, geometry.quad_width), dtype=F32)
    image = charge[rows, cols]
    dense = structured = False

    if exposure.exptime > 0:
        image += F32(truth.dark_e_per_pix_per_hour * exposure.exptime / 3600.0)
        dense = True
    if exposure.lit:
        response = _response_map(geometry, ccd_truth, quadrant, truths, state)
        source = exposure.source.lower()
        if source == "flat" and exposure.flat_e_per_s > 0:
            image += F32(exposure.flat_e_per_s * exposure.exptime) * response
            dense = True
        if source == "point" and exposure.spot_e_per_s > 0:
            spots = np.zeros_like(image)
            _add_spots(spots, geometry, exposure, ccd_truth.ccd, quadrant, truths)
            image += spots * response
            dense = structured = True
    if _add_injection(image, geometry, exposure, ccd_truth, quadrant, state):
        dense = structured = True
    if options.persistence:
        t0 = exposure.seconds_since_start
        persistence = state.persistence_e(quadrant, truth, image.shape, t0, t0 + exposure.exptime + READOUT_TIME_S)
        if persistence is not None:
            image += persistence
            dense = True
    return (charge if dense else None), structured


def _clip_full_well(
    image: np.ndarray, truth: QuadrantTruth, quadrant: str, exposure: Exposure, state: CCDState, remember: bool
) -> None:
    """Pixels cannot hold more than the full well; those that filled it will show persistence."""
    full_well = F32(truth.full_well_e)
    saturated = image >= full_well
    if not saturated.any():
        return
    np.minimum(image, full_well, out=image)
    if remember:
        when = exposure.seconds_since_start + exposure.exptime
        state.record_saturation(quadrant, saturated, when, forget_after_s=20.0 * truth.persistence_tau_s)


def _to_adu(electrons: np.ndarray, truth: QuadrantTruth, nonlinearity: bool) -> np.ndarray:
    if nonlinearity:
        electrons = truth.nonlinear_e(electrons)
    else:
        electrons = electrons.copy()
    electrons *= F32(1.0 / truth.gain_e_per_adu)
    return electrons


def _response_map(
    geometry: CCDGeometry, ccd_truth: CCDTruth, quadrant: str, truths: Truths, state: CCDState
) -> np.ndarray:
    """Relative photo-response of each image pixel: PRNU and the dead/cold/bad-column defects."""
    options = truths.options
    truth = ccd_truth.quadrants[quadrant]
    key = ("response", ccd_truth.ccd, quadrant, truth.map_seed, options.prnu, options.cosmetics)

    def build() -> np.ndarray:
        shape = (geometry.image_rows, geometry.image_cols)
        if options.prnu:
            # A fixed map per quadrant, from its own seed: identical in every frame.
            response = np.random.default_rng([truth.map_seed, 1]).standard_normal(shape, dtype=F32)
            response *= F32(truth.prnu_rms)
            response += F32(1.0)
        else:
            response = np.ones(shape, dtype=F32)
        if options.cosmetics:
            p = geometry.prescan
            for row, col in ccd_truth.dead_pixels[quadrant]:
                response[row, col - p] = 0.0
            for row, col, relative in ccd_truth.cold_pixels[quadrant]:
                response[row, col - p] *= F32(relative)
            for bad in ccd_truth.bad_columns[quadrant]:
                response[bad.row_start :, bad.col - p] *= F32(bad.response)
        return response

    return state.cached(key, build)


def _add_spots(
    image: np.ndarray, geometry: CCDGeometry, exposure: Exposure, ccd: int, quadrant: str, truths: Truths
) -> None:
    psf = truths.psf
    best_focus = exposure.best_focus_mm
    if best_focus is None:
        best_focus = psf.focus_of(exposure.wavelength_nm)
    fwhm = psf.fwhm_px(exposure.mirr_pos, best_focus, exposure.wavelength_nm)
    sigma = fwhm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    total = exposure.spot_e_per_s * exposure.exptime
    inside = (slice(0, image.shape[0]), slice(0, image.shape[1]))
    for spot in psf.spots[ccd][quadrant]:
        effects.add_gaussian_spot(image, spot.row, spot.col - geometry.prescan, sigma, total, *inside)


def _add_injection(
    image: np.ndarray, geometry: CCDGeometry, exposure: Exposure, ccd_truth: CCDTruth, quadrant: str, state: CCDState
) -> bool:
    """Injected lines in the half the drain timing selects; True when something was injected."""
    half = HALF_OF_QUADRANT[quadrant]
    if exposure.injected_half() != half:
        return False
    truth = ccd_truth.quadrants[quadrant]
    level = truth.injection.level_e(exposure.ig1_of(ccd_truth.ccd, half), exposure.idl, exposure.ig2_of(half))
    lines = effects.injected_rows(geometry.image_rows, exposure.chinj_on, exposure.chinj_of)
    if level < _MIN_INJECTION_E or not lines.any():
        return False
    key = ("injection", ccd_truth.ccd, quadrant, truth.map_seed)

    def build() -> np.ndarray:
        # Column-to-column non-uniformity of the injection structure: fixed, from the map seed.
        profile = np.random.default_rng([truth.map_seed, 2]).standard_normal(geometry.image_cols)
        return (1.0 + truth.injection.nonuniformity * profile).astype(F32)

    image[lines, :] += F32(level) * state.cached(key, build)
    return True


def _hot_pixel_charge(geometry: CCDGeometry, ccd_truth: CCDTruth, quadrant: str, exptime: float):
    """(rows, cols, mean electrons) of the hot pixels in canonical quadrant coordinates, or None."""
    hot = ccd_truth.hot_pixels[quadrant]
    if not hot:
        return None
    rows, cols, rates = (np.array(v) for v in zip(*hot))
    # A row waits row x (row read time) in the queue before it is read: hot pixels show in
    # biases too, brighter away from the serial register.
    seconds = exptime + rows * ROW_READ_TIME_S
    return rows.astype(np.intp), cols.astype(np.intp), (rates * seconds).astype(F32)


def _pump_traps(image: np.ndarray, geometry: CCDGeometry, exposure: Exposure, truth: QuadrantTruth) -> None:
    prescan = geometry.prescan
    if exposure.v_tpump and truth.vertical_traps:
        t_us = exposure.toi_tp + exposure.dwell_v
        traps = [t for t in truth.vertical_traps if dipole_polarity(exposure.v_tp_mod, t.phase)]
        if traps:
            effects.pump_vertical(
                image,
                np.array([t.row for t in traps], dtype=np.intp),
                np.array([t.col - prescan for t in traps], dtype=np.intp),
                np.array([pumped_electrons(exposure.v_tp_cnt, t_us, t.tau_us, t.pc) for t in traps], dtype=F32),
                np.array([dipole_polarity(exposure.v_tp_mod, t.phase) for t in traps], dtype=np.intp),
            )
    if exposure.s_tpump and truth.serial_traps:
        t_us = SERIAL_PHASE_TIME_US + exposure.dwell_s
        traps = [t for t in truth.serial_traps if dipole_polarity(exposure.s_tp_mod, t.phase)]
        if traps:
            effects.pump_serial(
                image,
                np.array([t.col - prescan for t in traps], dtype=np.intp),
                np.array([pumped_electrons(exposure.s_tp_cnt, t_us, t.tau_us, t.pc) for t in traps]),
                np.array([dipole_polarity(exposure.s_tp_mod, t.phase) for t in traps], dtype=np.intp),
            )


def _cosmic_rays_adu(
    geometry: CCDGeometry, exposure: Exposure, truth: QuadrantTruth, truths: Truths, rng: np.random.Generator
) -> Sparse:
    if not truths.options.cosmics or exposure.exptime <= 0:
        return []
    area_cm2 = geometry.image_pixels * PIXEL_PITCH_CM**2
    count = int(rng.poisson(truths.cosmic_rate_per_cm2_s * area_cm2 * exposure.exptime))
    if count == 0:
        return []
    rows, cols, electrons = effects.cosmic_ray_hits(rng, count, (geometry.image_rows, geometry.image_cols))
    return [(rows, cols + geometry.prescan, electrons * F32(1.0 / truth.gain_e_per_adu))]


def _apply_window(geometry: CCDGeometry, frame: np.ndarray, exposure: Exposure) -> None:
    vend = geometry.quad_height if exposure.vend is None else exposure.vend
    if exposure.vstart <= 0 and vend >= geometry.quad_height:
        return
    outside = ~geometry.window_mask(exposure.vstart, vend)
    for quadrant in QUADRANTS:
        geometry.quadrant(frame, quadrant, canonical=True)[outside, :] = 0


def _coerce(annotation: Any, value: Any) -> Any:
    text = str(annotation)
    if "str" in text and "float" not in text and "int" not in text:
        return str(value)
    if "bool" in text:
        return bool(int(float(value)))
    if "int" in text and "float" not in text:
        return int(float(value))
    return float(value)
