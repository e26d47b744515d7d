"""The truths the ELVIS simulator injects, drawn from a seed, and the physical laws that use them.

Every analysis test recovers one of these numbers from simulated frames, so each law lives here,
next to its parameters, and the renderer calls it rather than re-deriving it:

- Non-linearity (`QuadrantTruth.nonlinear_e`): the charge a pixel reports is
  S' = S * (1 + nl(S)), nl(S) = nl_a2 * (S/FW)^2 + nl_a3 * (S/FW)^3, with S in electrons and FW
  the full well; then ADU = S' / gain. nl is the relative deviation NL01/NL02 measure.
- Charge injection (`InjectionTruth.level_e`): electrons per injected pixel,
  level = sigmoid(k * (IG1 + threshold_dv - IDL)) * (notch_level_e + slope_e_per_v * max(xN - IG1, 0)),
  xN = IG2 + notch_offset_v. Against IG1 (CHINJ01) it is vison's "ReLU" curve: nothing below the
  threshold IG1 = IDL - threshold_dv, a linear fall to the notch xN, a plateau notch_level_e above.
  Against IDL (CHINJ02) it is a falling sigmoid of threshold IDL = IG1 + threshold_dv.
- Parallel CTI: a fraction `cti` of each line's charge is trailed into the following (higher
  canonical) rows with an exponential profile of e-folding `cti_tail_rows`; the serial analogue
  (`her`, `her_tail_cols`) trails charge from the image into the serial overscan (hard-edge response).
- Trap pumping (`pumped_electrons`): a trap under phase p of its pixel, pumped n times with phase
  time t, moves A = n * pc * (exp(-t/tau) - exp(-2t/tau)) electrons from its pixel into the
  neighbour (the standard pumping law; maximum 0.25 * n * pc at t = tau * ln 2). Vertical: t =
  toi_tp + dwell_v (us), n = v_tp_cnt. Serial: t = 4.75 us (serial phase time) + dwell_s,
  n = s_tp_cnt, applied to every pumped line. A pumping mode (v_tp_mod 123/234/341/412,
  s_tp_mod 23/31) pumps the traps under its first phase towards +1 (next row/column, the neighbour
  read later) and those under its last phase towards -1 (`dipole_polarity`); other traps stay quiet.
  vison's TP02 fitted 1 - exp(-t/tau) for serial traps: these truths follow the standard law.
- Persistence (`QuadrantTruth.persistence_e`): a pixel that reached full well releases charge at
  a rate decaying as exp(-dt/tau); a later frame collecting from dt0 to dt1 after the end of the
  saturating exposure gets persistence_e * (exp(-dt0/tau) - exp(-dt1/tau)) electrons.
- Brighter-fatter: neighbouring pixels exchange charge in proportion to their difference times
  their mean level, so the nearest-neighbour correlation of a flat is about
  bf_strength * mean / full_well (and the variance shrinks by about 4x that fraction).
- Focus (`PSFTruth.fwhm_px`): FWHM(dz) = sqrt(b^2 + 2 b c dz^2), b = best FWHM, c =
  focus_curvature_px_per_mm2, dz = mirr_pos - best focus: b + c dz^2 near focus (the parabola
  FOCUS00 fits), growing linearly far from it as a geometric blur does.

Coordinates are canonical quadrant coordinates (geometry.py): [row, col] with the output node at
[0, 0]; image columns start at `geometry.prescan`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from engine.formats.geometry import GEOMETRIES, QUADRANTS, CCDGeometry

SPOT_NAMES: tuple[str, ...] = ("ALPHA", "BRAVO", "CHARLIE", "DELTA", "ECHO")
# (x, y) fractions of a quadrant's image area as seen in the frame (x right, y up), as vison's
# nominal point-source pattern places them.
SPOT_FRACTIONS: tuple[tuple[float, float], ...] = ((0.2, 0.8), (0.8, 0.8), (0.5, 0.5), (0.2, 0.2), (0.8, 0.2))
DEFAULT_WAVELENGTHS_NM: tuple[int, ...] = (590, 640, 730, 800, 880, 0, 2000)
DEFAULT_BEST_FOCUS_MM = 47.2
PIXEL_PITCH_CM = 12e-4
SERIAL_PHASE_TIME_US = 4.75
# Full-frame readout (71.8 s for 2086 rows): how long a row waits, collecting dark, before it is read.
ROW_READ_TIME_S = 71.8 / 2086
READOUT_TIME_S = 71.8


@dataclass
class SimOptions:
    """Which effects the simulator applies. Cosmic rays only ever hit frames with exptime > 0."""

    cosmics: bool = True
    cosmetics: bool = True
    traps: bool = True
    persistence: bool = True
    nonlinearity: bool = True
    bf: bool = True
    prnu: bool = True
    cti: bool = True
    crosstalk: bool = False  # couple the 12 channels (Truths.crosstalk; drawn only when asked)


@dataclass
class InjectionTruth:
    """Charge-injection curve of one quadrant (see the module docstring for the law)."""

    threshold_dv: float  # IDL - IG1 at the injection threshold, V
    steepness_per_v: float  # sigmoid slope k, 1/V
    notch_offset_v: float  # notch IG1 minus IG2, V
    notch_level_e: float  # plateau above the notch, e-
    slope_e_per_v: float  # rise below the notch, e- per V of IG1
    nonuniformity: float  # rms of the column-to-column injection profile (relative)

    def level_e(self, ig1: float, idl: float, ig2: float) -> float:
        """Mean electrons injected per pixel for these gate voltages."""
        notch = ig2 + self.notch_offset_v
        ceiling = self.notch_level_e + self.slope_e_per_v * max(notch - ig1, 0.0)
        return ceiling * _sigmoid(self.steepness_per_v * (ig1 + self.threshold_dv - idl))


@dataclass
class VerticalTrap:
    row: int
    col: int
    tau_us: float  # release time constant
    pc: float  # effective capture probability per cycle (a site may hold several traps: up to ~2)
    phase: int  # parallel phase 1..4 under which the trap sits


@dataclass
class SerialTrap:
    col: int  # column of the serial register (canonical, image columns)
    tau_us: float
    pc: float
    phase: int  # serial phase 1..3


@dataclass
class QuadrantTruth:
    offset_adu: float
    ron_adu: float  # std of the digitised read noise (includes the 1/sqrt(12) ADU quantisation)
    gain_e_per_adu: float
    dark_e_per_pix_per_hour: float
    prnu_rms: float
    full_well_e: float
    nl_a2: float
    nl_a3: float
    bf_strength: float
    injection: InjectionTruth
    cti: float
    cti_tail_rows: float
    her: float
    her_tail_cols: float
    vertical_traps: list[VerticalTrap]
    serial_traps: list[SerialTrap]
    persistence_e: float
    persistence_tau_s: float
    map_seed: int  # seeds the pixel maps (PRNU, injection profile) that are too big for JSON

    def nl(self, signal_e: np.ndarray | float) -> np.ndarray | float:
        """Relative non-linearity at a signal (electrons)."""
        x = np.asarray(signal_e, dtype=np.float64) / self.full_well_e
        return self.nl_a2 * x**2 + self.nl_a3 * x**3

    def nonlinear_e(self, signal_e: np.ndarray) -> np.ndarray:
        """What the chain reports for a charge, in electrons (float32 in, float32 out)."""
        x = signal_e * np.float32(1.0 / self.full_well_e)
        return signal_e * (1 + x * x * (np.float32(self.nl_a2) + np.float32(self.nl_a3) * x))

    def expected_adu(self, signal_e: float) -> float:
        """Mean offset-subtracted ADU for a mean charge (electrons), non-linearity included."""
        return signal_e * (1 + float(self.nl(signal_e))) / self.gain_e_per_adu

    def persistence_between(self, dt0_s: float, dt1_s: float) -> float:
        """Electrons released between dt0 and dt1 seconds after the end of a saturating exposure."""
        if dt1_s <= 0:
            return 0.0
        dt0_s = max(dt0_s, 0.0)
        tau = self.persistence_tau_s
        return self.persistence_e * (math.exp(-dt0_s / tau) - math.exp(-dt1_s / tau))


@dataclass
class BadColumn:
    col: int
    row_start: int  # the column is degraded from this row to the top of the image
    response: float


@dataclass
class CCDTruth:
    ccd: int
    serial: str
    quadrants: dict[str, QuadrantTruth]
    # Cosmetics, per quadrant, canonical [row, col]; hot pixels also carry their dark rate (e-/s),
    # cold pixels their relative response. Dead pixels do not respond to light.
    hot_pixels: dict[str, list[tuple[int, int, float]]]
    dead_pixels: dict[str, list[tuple[int, int]]]
    cold_pixels: dict[str, list[tuple[int, int, float]]]
    bad_columns: dict[str, list[BadColumn]]


@dataclass
class Spot:
    name: str
    row: float  # canonical quadrant coordinates of the centre (pixel centres at integers)
    col: float


@dataclass
class PSFTruth:
    fwhm_best_px: dict[int, float]  # wavelength nm -> FWHM at best focus
    best_focus_mm: dict[int, float]  # wavelength nm -> mirror position of best focus
    focus_curvature_px_per_mm2: float
    spots: dict[int, dict[str, list[Spot]]]  # ccd -> quadrant -> 5 spots

    def fwhm_px(self, mirr_pos: float, best_focus_mm: float, wavelength_nm: int | None = None) -> float:
        best = self.fwhm_best_px.get(wavelength_nm) or _mean(self.fwhm_best_px)
        dz = mirr_pos - best_focus_mm
        return math.sqrt(best * best + 2.0 * best * self.focus_curvature_px_per_mm2 * dz * dz)

    def focus_of(self, wavelength_nm: int | None) -> float:
        if wavelength_nm in self.best_focus_mm:
            return self.best_focus_mm[wavelength_nm]
        return _mean(self.best_focus_mm)


@dataclass
class Truths:
    seed: int
    geometry_name: str
    geometry: dict[str, int]  # CCDGeometry fields, so an unnamed geometry round-trips
    ccds: dict[int, CCDTruth]
    psf: PSFTruth
    cosmic_rate_per_cm2_s: float
    options: SimOptions = field(default_factory=SimOptions)
    # Channel coupling, row = source, column = victim, channels CCD1 E..H, CCD2 E..H, CCD3 E..H:
    # a victim pixel gains coefficient x the source's signal (ADU) at the same canonical pixel.
    crosstalk: list[list[float]] | None = None

    @property
    def ccd_geometry(self) -> CCDGeometry:
        if self.geometry_name in GEOMETRIES:
            return GEOMETRIES[self.geometry_name]
        return CCDGeometry(**self.geometry)

    # -- JSON -------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Truths:
        return Truths(
            seed=int(data["seed"]),
            geometry_name=data["geometry_name"],
            geometry={k: v for k, v in data["geometry"].items()},
            ccds={int(n): _ccd_from_dict(c) for n, c in data["ccds"].items()},
            psf=_psf_from_dict(data["psf"]),
            cosmic_rate_per_cm2_s=float(data["cosmic_rate_per_cm2_s"]),
            options=SimOptions(**data.get("options", {})),
            crosstalk=data.get("crosstalk"),
        )

    @classmethod
    def from_json(cls, text: str) -> Truths:
        return cls.from_dict(json.loads(text))

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.to_json())
        return path

    @classmethod
    def load(cls, path: str | Path) -> Truths:
        return cls.from_json(Path(path).read_text())


def pumped_electrons(n_cycles: int, phase_time_us: float, tau_us: float, pc: float) -> float:
    """Electrons a trap moves into its neighbour over n pumping cycles of this phase time."""
    x = phase_time_us / tau_us
    return n_cycles * pc * (math.exp(-x) - math.exp(-2.0 * x))


def dipole_polarity(mode: int | str, phase: int) -> int:
    """+1: charge pumped into the next row/column; -1: into the previous; 0: trap not pumped."""
    digits = str(mode).strip()
    if not digits:
        return 0
    if phase == int(digits[0]):
        return 1
    if phase == int(digits[-1]):
        return -1
    return 0


# -- drawing ---------------------------------------------------------------------------------


def draw_truths(
    seed: int,
    geometry: CCDGeometry,
    serials: dict[int, str],
    best_focus_mm: dict[int, float] | None = None,
    options: SimOptions | None = None,
) -> Truths:
    """Draw every injected truth of a block (CCDs = the keys of `serials`) from one seed."""
    options = options or SimOptions()
    nominal_focus = best_focus_mm or {nm: DEFAULT_BEST_FOCUS_MM for nm in DEFAULT_WAVELENGTHS_NM}
    rng = _rng(seed, "block")
    psf = PSFTruth(
        fwhm_best_px={nm: float(rng.uniform(1.8, 2.3)) for nm in nominal_focus},
        # The chamber's nominal focus is close to, not exactly at, the truth FOCUS00 must find.
        best_focus_mm={nm: round(float(mm + rng.uniform(-0.3, 0.3)), 4) for nm, mm in nominal_focus.items()},
        focus_curvature_px_per_mm2=float(rng.uniform(1.5, 3.0)),
        spots={ccd: _draw_spots(_rng(seed, "spots", ccd), geometry) for ccd in sorted(serials)},
    )
    ccds = {ccd: _draw_ccd(seed, ccd, serials[ccd], geometry) for ccd in sorted(serials)}
    crosstalk = _draw_crosstalk(_rng(seed, "crosstalk"), len(serials)) if options.crosstalk else None
    return Truths(
        seed=int(seed),
        geometry_name=geometry.name,
        geometry={f.name: getattr(geometry, f.name) for f in fields(geometry) if f.name != "name"},
        ccds=ccds,
        psf=psf,
        cosmic_rate_per_cm2_s=float(rng.uniform(0.02, 0.04)),  # ground level: muons and local radioactivity
        options=options,
        crosstalk=crosstalk,
    )


def _draw_crosstalk(rng: np.random.Generator, ccds: int) -> list[list[float]]:
    """Electronic cross-talk of one ROE: within a CCD 2e-5..1e-3 (log-uniform), between CCDs
    1e-6..3e-5; a fifth of the couplings negative (undershoots)."""
    n = 4 * ccds
    matrix = np.zeros((n, n))
    for s in range(n):
        for v in range(n):
            if s == v:
                continue
            low, high = (2e-5, 1e-3) if s // 4 == v // 4 else (1e-6, 3e-5)
            sign = -1.0 if rng.uniform() < 0.2 else 1.0
            matrix[s, v] = sign * float(np.exp(rng.uniform(math.log(low), math.log(high))))
    return [[round(float(c), 9) for c in row] for row in matrix]


def _draw_ccd(seed: int, ccd: int, serial: str, geometry: CCDGeometry) -> CCDTruth:
    quadrants = {}
    hot, dead, cold, bad = {}, {}, {}, {}
    for index, quadrant in enumerate(QUADRANTS):
        quadrants[quadrant] = _draw_quadrant(_rng(seed, "quadrant", ccd, index), geometry)
        hot[quadrant], dead[quadrant], cold[quadrant], bad[quadrant] = _draw_cosmetics(
            _rng(seed, "cosmetics", ccd, index), geometry
        )
    return CCDTruth(ccd, serial, quadrants, hot, dead, cold, bad)


def _draw_quadrant(rng: np.random.Generator, geometry: CCDGeometry) -> QuadrantTruth:
    u = rng.uniform
    injection = InjectionTruth(
        threshold_dv=float(u(7.3, 7.7)),
        steepness_per_v=float(u(10.0, 20.0)),
        notch_offset_v=float(u(-0.3, 0.3)),
        notch_level_e=float(u(1500.0, 2500.0)),
        slope_e_per_v=float(u(18000.0, 22000.0)),
        nonuniformity=float(u(0.01, 0.03)),
    )
    return QuadrantTruth(
        offset_adu=round(float(u(2500.0, 2950.0)), 2),
        ron_adu=float(u(1.0, 1.4)),
        gain_e_per_adu=float(u(3.1, 3.5)),
        dark_e_per_pix_per_hour=float(u(0.2, 0.8)),
        prnu_rms=float(u(0.008, 0.012)),
        full_well_e=float(u(195e3, 225e3)),
        nl_a2=float(u(1e-3, 3e-3)),
        nl_a3=float(u(-5e-3, -3e-3)),
        bf_strength=float(u(0.02, 0.04)),
        injection=injection,
        cti=float(u(5e-4, 3e-3)),
        cti_tail_rows=float(u(1.0, 3.0)),
        her=float(u(2e-4, 1e-3)),
        her_tail_cols=float(u(0.8, 2.0)),
        vertical_traps=_draw_vertical_traps(rng, geometry),
        serial_traps=_draw_serial_traps(rng, geometry),
        persistence_e=float(u(30.0, 120.0)),
        persistence_tau_s=float(u(200.0, 600.0)),
        map_seed=int(rng.integers(0, 2**31 - 1)),
    )


def _draw_vertical_traps(rng: np.random.Generator, geometry: CCDGeometry) -> list[VerticalTrap]:
    count = max(4, int(rng.poisson(2e-5 * geometry.image_pixels)))
    # Keep both dipole pixels inside the image: rows 1 .. image_rows - 2.
    rows = rng.integers(1, geometry.image_rows - 1, count)
    cols = rng.integers(geometry.prescan, geometry.prescan + geometry.image_cols, count)
    taus = _log_uniform(rng, 30.0, 30000.0, count)
    pcs = _log_uniform(rng, 0.2, 2.0, count)
    phases = rng.integers(1, 5, count)
    return [
        VerticalTrap(int(r), int(c), round(float(t), 3), round(float(p), 5), int(ph))
        for r, c, t, p, ph in zip(rows, cols, taus, pcs, phases)
    ]


def _draw_serial_traps(rng: np.random.Generator, geometry: CCDGeometry) -> list[SerialTrap]:
    count = max(2, int(rng.poisson(0.01 * geometry.image_cols)))
    cols = rng.choice(np.arange(geometry.prescan + 1, geometry.prescan + geometry.image_cols - 1), count, replace=False)
    taus = _log_uniform(rng, 1.0, 60.0, count)
    pcs = _log_uniform(rng, 0.2, 2.0, count)
    phases = rng.integers(1, 4, count)
    return [
        SerialTrap(int(c), round(float(t), 4), round(float(p), 5), int(ph))
        for c, t, p, ph in zip(sorted(cols), taus, pcs, phases)
    ]


def _draw_cosmetics(rng: np.random.Generator, geometry: CCDGeometry):
    npix = geometry.image_pixels
    counts = [max(1, int(rng.poisson(density * npix))) for density in (3e-5, 1e-5, 3e-5)]
    # One draw without replacement: no pixel is two kinds of defect.
    flat = rng.choice(npix, sum(counts), replace=False)
    rows, cols = np.divmod(flat, geometry.image_cols)
    cols = cols + geometry.prescan
    pixels = [(int(r), int(c)) for r, c in zip(rows, cols)]
    hot_px, dead_px, cold_px = (
        pixels[: counts[0]],
        pixels[counts[0] : counts[0] + counts[1]],
        pixels[counts[0] + counts[1] :],
    )
    hot = [(r, c, round(float(rate), 3)) for (r, c), rate in zip(hot_px, _log_uniform(rng, 1.0, 50.0, len(hot_px)))]
    cold = [(r, c, round(float(resp), 3)) for (r, c), resp in zip(cold_px, rng.uniform(0.2, 0.6, len(cold_px)))]
    bad = [
        BadColumn(
            col=int(rng.integers(geometry.prescan, geometry.prescan + geometry.image_cols)),
            row_start=int(rng.integers(0, geometry.image_rows // 2)),
            response=round(float(rng.uniform(0.1, 0.5)), 3),
        )
        for _ in range(int(rng.poisson(0.5)))
    ]
    return hot, dead_px, cold, bad


def _draw_spots(rng: np.random.Generator, geometry: CCDGeometry) -> dict[str, list[Spot]]:
    spots = {}
    for quadrant in QUADRANTS:
        flip_rows, flip_cols = geometry.flips(quadrant)
        spots[quadrant] = []
        for name, (fx, fy) in zip(SPOT_NAMES, SPOT_FRACTIONS):
            # Frame-orientation position inside the image area, with a little pattern jitter.
            x = fx * geometry.image_cols + rng.uniform(-2.0, 2.0)
            y = fy * geometry.image_rows + rng.uniform(-2.0, 2.0)
            col = (geometry.image_cols - 1 - x) if flip_cols else x
            row = (geometry.image_rows - 1 - y) if flip_rows else y
            spots[quadrant].append(Spot(name, round(float(row), 3), round(float(col + geometry.prescan), 3)))
    return spots


# -- JSON helpers ----------------------------------------------------------------------------


def _ccd_from_dict(data: dict[str, Any]) -> CCDTruth:
    quadrants = {}
    for q, qd in data["quadrants"].items():
        qd = dict(qd)
        qd["injection"] = InjectionTruth(**qd["injection"])
        qd["vertical_traps"] = [VerticalTrap(**t) for t in qd["vertical_traps"]]
        qd["serial_traps"] = [SerialTrap(**t) for t in qd["serial_traps"]]
        quadrants[q] = QuadrantTruth(**qd)
    return CCDTruth(
        ccd=int(data["ccd"]),
        serial=data["serial"],
        quadrants=quadrants,
        hot_pixels={q: [tuple(p) for p in v] for q, v in data["hot_pixels"].items()},
        dead_pixels={q: [tuple(p) for p in v] for q, v in data["dead_pixels"].items()},
        cold_pixels={q: [tuple(p) for p in v] for q, v in data["cold_pixels"].items()},
        bad_columns={q: [BadColumn(**b) for b in v] for q, v in data["bad_columns"].items()},
    )


def _psf_from_dict(data: dict[str, Any]) -> PSFTruth:
    return PSFTruth(
        fwhm_best_px={int(k): float(v) for k, v in data["fwhm_best_px"].items()},
        best_focus_mm={int(k): float(v) for k, v in data["best_focus_mm"].items()},
        focus_curvature_px_per_mm2=float(data["focus_curvature_px_per_mm2"]),
        spots={
            int(ccd): {q: [Spot(**s) for s in spots] for q, spots in per_q.items()}
            for ccd, per_q in data["spots"].items()
        },
    )


# -- small helpers ---------------------------------------------------------------------------


_PURPOSES = {"block": 0, "quadrant": 1, "cosmetics": 2, "spots": 3, "crosstalk": 4}


def _rng(seed: int, purpose: str, *keys: int) -> np.random.Generator:
    # One independent stream per purpose and place: adding a truth later does not reshuffle others.
    return np.random.default_rng([int(seed), _PURPOSES[purpose], *(int(k) for k in keys)])


def _log_uniform(rng: np.random.Generator, low: float, high: float, size: int) -> np.ndarray:
    return np.exp(rng.uniform(math.log(low), math.log(high), size))


def _sigmoid(x: float) -> float:
    return 0.5 * (1.0 + math.tanh(0.5 * x))


def _mean(values: dict[Any, float]) -> float:
    return float(sum(values.values()) / len(values)) if values else 0.0
