"""The ELVIS simulator: writes a day folder exactly as ELVIS would, with known injected truths.

Output: `<out>/<DD_Mmm_YY>/` holding one FITS per CCD per OBSID, one HK file per OBSID and the
EXP_LOG; `<out>/truths.json` beside it holds every injected truth. Seeded: same request, same bytes.

Per exposure ELVIS writes the HK file (sampled during readout), then the three frames, then the
three EXP_LOG rows; a streamed simulation keeps that order, so a watcher that trusts the EXP_LOG
still has to check that the frames it names are complete on disk.
"""

from __future__ import annotations

import io
import math
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from ..campaign.chamber import ChamberProfile
from ..campaign.timing import frame_seconds
from ..formats.explog import append_explog_rows, format_explog_header, format_explog_rows
from ..formats.fits import frame_hdulist, write_frame
from ..formats.geometry import FULL, CCDGeometry
from ..formats.hk import write_hk
from ..formats.hklimits import load_hk_limits
from ..formats.names import day_folder_name, explog_filename, frame_filename, hk_filename
from .crosstalk import apply_crosstalk
from .housekeeping import HKExcursion, hk_samples
from .pattern import place_pattern
from .plan import PlannedExposure, expand_tests, plan_acquisition
from .records import Equipment, explog_row, fits_header
from .render import CCDState, Exposure, render_frame
from .truths import SimOptions, Truths, draw_truths

CCDS = (1, 2, 3)
NOMINAL_FULL_WELL_E = 200_000.0  # a spot's peak reaches it at the chamber's tFWC_point (in focus)
# vison's convention for the flat lamp: tFWC_flat is the time a flat takes to reach 2^16 ADU
# (FLATFLUX00 measures it so), here at the nominal gain: the lamp knows electrons, not ADU
TFWC_FLAT_SIGNAL_E = 65536 * 3.3


@dataclass(frozen=True)
class SimulationRequest:
    tests: tuple[str, ...]
    out: Path
    chamber: ChamberProfile
    geometry: CCDGeometry = FULL
    seed: int = 0
    first_obsid: int = 1000
    start: datetime = datetime(2019, 3, 12, 9, 0, 0)
    equipment: Equipment = Equipment()
    hk_excursions: tuple[HKExcursion, ...] = ()
    exptime_factors: Mapping[str, float] = field(default_factory=dict)  # test -> logged/actual exptime
    missing_frames: frozenset[tuple[int, int]] = frozenset()  # (obsid, ccd) logged but never written
    aborted: Mapping[str, int] = field(default_factory=dict)  # test -> frames taken before an abort
    options: SimOptions | None = None
    jobs: int = 2
    # Point-source pattern per (ccd, quadrant): shifted by (dx, dy) px in frame orientation, or not lit.
    pattern_shifts: Mapping[tuple[int, str], tuple[float, float]] = field(default_factory=dict)
    unlit_quadrants: frozenset[tuple[int, str]] = frozenset()

    @property
    def day_folder(self) -> Path:
        return self.out / day_folder_name(self.start)

    @property
    def truths_path(self) -> Path:
        return self.out / "truths.json"


@dataclass(frozen=True)
class StreamPacing:
    """How a streamed simulation spreads its exposures over time."""

    frame_interval_s: float = 1.0
    partial_pause_s: float = 0.0  # > 0: files and the EXP_LOG line stay half-written this long


@dataclass
class SimulationResult:
    day_folder: Path
    truths_path: Path
    explog_path: Path
    exposures: list[PlannedExposure]
    tests: list[str]
    seconds: float = 0.0

    @property
    def obsid_range(self) -> tuple[int, int]:
        return (self.exposures[0].obsid, self.exposures[-1].obsid) if self.exposures else (0, 0)


class SimulationError(ValueError):
    """A request the simulator refuses, e.g. one that would overwrite data."""


def plan_for(request: SimulationRequest) -> list[PlannedExposure]:
    """Exposures in ELVIS order; an aborted test is taken partly, then again in full."""
    tests = expand_tests(request.tests)
    if not tests:
        raise SimulationError("no test to simulate (surrogate tests such as BF01 have no acquisition)")
    differential = request.equipment.differential()
    plan: list[PlannedExposure] = []
    obsid, clock = request.first_obsid, request.start
    for test in tests:
        runs = [request.aborted[test.name]] if test.name in request.aborted else []
        for limit in [*runs, None]:
            part = plan_acquisition([test], request.chamber, differential, obsid, clock)
            part = part[:limit] if limit is not None else part
            plan.extend(part)
            if part:
                obsid, clock = part[-1].obsid + 1, part[-1].when
    return plan


def simulate(
    request: SimulationRequest,
    pacing: StreamPacing | None = None,
    on_exposure: Callable[[PlannedExposure], None] | None = None,
) -> SimulationResult:
    """Write the day folder. With `pacing`, exposures land one by one over time (wait-mode tests)."""
    started = time.perf_counter()
    plan = plan_for(request)
    day = request.day_folder
    explog_path = day / explog_filename(request.start)
    _refuse_to_overwrite(request, explog_path)
    day.mkdir(parents=True, exist_ok=True)
    truths = draw_truths(request.seed, request.geometry, _serials(request.equipment),
                         {nm: request.chamber.focus(nm) for nm in request.chamber.best_focus_mm}, request.options)
    if request.pattern_shifts or request.unlit_quadrants:
        place_pattern(truths, request.pattern_shifts, request.unlit_quadrants)
    if truths.crosstalk is not None and pacing is not None:
        raise SimulationError("cross-talk is simulated on a whole day folder, not a streamed one")
    truths.save(request.truths_path)

    if pacing is None:
        _write_frames(request, truths, plan)
        if truths.crosstalk is not None:
            _add_crosstalk(request, truths, plan)
        _write_hk_files(request, plan)
        rows = [row for exposure in plan for row in _rows(request, exposure)]
        _write_text(explog_path, format_explog_header(request.equipment.elvis) + format_explog_rows(rows, request.equipment.elvis))
        if on_exposure:
            for exposure in plan:
                on_exposure(exposure)
    else:
        _stream(request, truths, plan, explog_path, pacing, on_exposure)
    tests = list(dict.fromkeys(e.test for e in plan))
    return SimulationResult(day, request.truths_path, explog_path, plan, tests, time.perf_counter() - started)


# -- batch writing -----------------------------------------------------------------------------

def _write_frames(request: SimulationRequest, truths: Truths, plan: list[PlannedExposure]) -> None:
    # One worker per CCD: each CCD's frames must be drawn in order (persistence carries over).
    jobs = max(1, min(request.jobs, len(CCDS)))
    if jobs == 1:
        for ccd in CCDS:
            _render_ccd(request, truths, plan, ccd)
        return
    # from a fork server, never a fork of this process: a fork copies locks other threads hold
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("forkserver")) as pool:
        for future in [pool.submit(_render_ccd, request, truths, plan, ccd) for ccd in CCDS]:
            future.result()


def _render_ccd(request: SimulationRequest, truths: Truths, plan: list[PlannedExposure], ccd: int) -> None:
    state = CCDState()
    for exposure in plan:
        frame = _render(request, truths, exposure, ccd, state)
        if (exposure.obsid, ccd) in request.missing_frames:
            continue
        row = explog_row(exposure, ccd, request.equipment, _exptime_factor(request, exposure))
        path = request.day_folder / frame_filename(exposure.obsid, exposure.when, ccd)
        write_frame(path, frame, fits_header(row, _elvis_path(path)), extname=f"ROE1_CCD{ccd}")


def _add_crosstalk(request: SimulationRequest, truths: Truths, plan: list[PlannedExposure]) -> None:
    """Couple the channels of each exposure's frames (all CCDs at once), rewriting them."""
    from ..formats.fits import read_frame, read_header

    for exposure in plan:
        paths = {ccd: request.day_folder / frame_filename(exposure.obsid, exposure.when, ccd) for ccd in CCDS}
        paths = {ccd: path for ccd, path in paths.items() if path.is_file()}
        frames = {}
        for ccd, path in paths.items():
            with read_frame(path) as frame:
                frames[ccd] = frame.data
        coupled = apply_crosstalk(frames, truths, np.random.default_rng([request.seed, exposure.obsid, 98]))
        for ccd, path in paths.items():
            header = {k: v for k, v in read_header(path).items()
                      if k not in ("XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "PCOUNT", "GCOUNT", "BZERO",
                                   "BSCALE", "EXTNAME")}
            write_frame(path, coupled[ccd], header, extname=f"ROE1_CCD{ccd}", overwrite=True)


def _write_hk_files(request: SimulationRequest, plan: list[PlannedExposure]) -> None:
    limits = load_hk_limits()
    for exposure in plan:
        _write_hk_file(request, exposure, limits)


def _write_hk_file(request: SimulationRequest, exposure: PlannedExposure, limits) -> Path:
    rng = np.random.default_rng([request.seed, exposure.obsid, 99])
    excursions = [e for e in request.hk_excursions if e.obsid == exposure.obsid]
    commanded = explog_row(exposure, 1, request.equipment)
    times, values = hk_samples(limits, commanded, exposure.when, rng, excursions)
    path = request.day_folder / hk_filename(exposure.obsid, exposure.when)
    write_hk(path, times, values, request.equipment.elvis)
    return path


# -- streaming ---------------------------------------------------------------------------------

def _stream(request, truths, plan, explog_path, pacing, on_exposure) -> None:
    limits = load_hk_limits()
    states = {ccd: CCDState() for ccd in CCDS}
    _write_text(explog_path, format_explog_header(request.equipment.elvis))
    for exposure in plan:
        _write_hk_file(request, exposure, limits)
        for ccd in CCDS:
            frame = _render(request, truths, exposure, ccd, states[ccd])
            if (exposure.obsid, ccd) in request.missing_frames:
                continue
            row = explog_row(exposure, ccd, request.equipment, _exptime_factor(request, exposure))
            path = request.day_folder / frame_filename(exposure.obsid, exposure.when, ccd)
            if pacing.partial_pause_s > 0:
                buffer = io.BytesIO()
                frame_hdulist(frame, fits_header(row, _elvis_path(path)), f"ROE1_CCD{ccd}").writeto(buffer)
                _write_slowly(path, buffer.getvalue(), pacing.partial_pause_s, mode="wb")
            else:
                write_frame(path, frame, fits_header(row, _elvis_path(path)), extname=f"ROE1_CCD{ccd}")
        text = format_explog_rows(_rows(request, exposure), request.equipment.elvis)
        if pacing.partial_pause_s > 0:
            _write_slowly(explog_path, text.encode(), pacing.partial_pause_s, mode="ab")
        else:
            append_explog_rows(explog_path, _rows(request, exposure), request.equipment.elvis)
        if on_exposure:
            on_exposure(exposure)
        time.sleep(pacing.frame_interval_s)


def _write_slowly(path: Path, data: bytes, pause_s: float, mode: str) -> None:
    """Write the first half, flush, wait, write the rest: what a slow copy looks like."""
    half = len(data) // 2
    with open(path, mode) as handle:
        handle.write(data[:half])
        handle.flush()
        time.sleep(pause_s)
        handle.write(data[half:])


# -- helpers -----------------------------------------------------------------------------------

def _render(request: SimulationRequest, truths: Truths, exposure: PlannedExposure, ccd: int, state: CCDState) -> np.ndarray:
    rng = np.random.default_rng([request.seed, exposure.obsid, ccd])
    return render_frame(request.geometry, _physical_exposure(request, exposure), truths.ccds[ccd], truths, rng, state)


def _physical_exposure(request: SimulationRequest, exposure: PlannedExposure) -> Exposure:
    """What the hardware really did (the scripted values, whatever the log later says)."""
    params = exposure.params
    chamber = request.chamber
    nm = chamber.wavelength(int(params["wave"]))
    shutter = int(params["shuttr"]) == 1
    source = str(params["source"]) if shutter else "none"
    flat_rate = TFWC_FLAT_SIGNAL_E / chamber.tfwc_flat[nm] if source == "flat" and nm in chamber.tfwc_flat else 0.0
    sigma = chamber.fwhm_px / (2 * math.sqrt(2 * math.log(2)))
    # a spot's peak reaches full well at tFWC_point when in focus
    spot_rate = (NOMINAL_FULL_WELL_E * 2 * math.pi * sigma**2 / chamber.tfwc_point[nm]
                 if source == "point" and nm in chamber.tfwc_point else 0.0)
    exposure_start = exposure.when - timedelta(seconds=frame_seconds(params))
    row = explog_row(exposure, 1, request.equipment)
    row["vend"] = _scaled_vend(request.geometry, int(params["vend"]))
    row["vstart"] = min(int(params["vstart"]), request.geometry.quad_height)
    return Exposure.from_log_row(
        row, shutter=shutter, source=source, wavelength_nm=nm, flat_e_per_s=flat_rate, spot_e_per_s=spot_rate,
        seconds_since_start=(exposure_start - request.start).total_seconds(),
    )


def _scaled_vend(geometry: CCDGeometry, vend: int) -> int:
    # Scripts speak full-frame rows; a full read on the small geometry reads all its rows.
    return geometry.quad_height if vend >= FULL.quad_height else min(vend, geometry.quad_height)


def _rows(request: SimulationRequest, exposure: PlannedExposure) -> list[dict[str, Any]]:
    factor = _exptime_factor(request, exposure)
    # A missing frame keeps its log row: ELVIS logged it, the file never landed.
    return [explog_row(exposure, ccd, request.equipment, factor) for ccd in CCDS]


def _exptime_factor(request: SimulationRequest, exposure: PlannedExposure) -> float:
    return float(request.exptime_factors.get(exposure.test, 1.0))


def _serials(equipment: Equipment) -> dict[int, str]:
    values = equipment.differential()
    return {ccd: values[f"sn_ccd{ccd}"] for ccd in CCDS}


def _write_text(path: Path, text: str) -> None:
    with open(path, "w", newline="") as handle:
        handle.write(text)


def _refuse_to_overwrite(request: SimulationRequest, explog_path: Path) -> None:
    day = request.day_folder
    if day.exists() and any(day.iterdir()):
        raise SimulationError(f"{day} already holds data; choose another --out or remove it first")
    if request.truths_path.exists():
        raise SimulationError(f"{request.truths_path} exists; choose another --out or remove it first")


def _elvis_path(path: Path) -> str:
    # ELVIS records where it wrote the frame on the acquisition machine, not where we copy it.
    return f"data/{path.parent.name}/{path.name}"
