"""TP01/TP11 (vertical) and TP02/TP21 (serial) trap pumping: dipoles, release times, capture probabilities.

The test injects charge over the whole image of one CCD half per injection delay and pumps it
back and forth (5000 cycles) under one clocking mode and phase time per frame; a trap under the
pumped phase moves charge from its pixel into a neighbour, a dipole. Sub-tasks (after the
generic `init` and `check`, which adds the injection-level check):

- `prep`: per frame its offsets (the check's prescan clipped means, offsets.py), its pumping
  (direction, mode, phase time, cycles, from the EXP_LOG) and, per quadrant, whether it was
  injected (its raw image level against the quadrant's highest: measured, not guessed from the
  drain-pulse timing).
- `injection`: per CCD/quadrant, the unpumped injected frame: injection level and per-pixel noise
  (of its relative map), and for serial pumping the reference column profile.
- `extract`: per CCD/quadrant/mode: relative dipole map of each pumped frame (tp_lib.vertical_map,
  compiled as tp_lib.CountsMap / serial_map), dipoles with polarity (tp_lib.find_dipoles), merged
  over the phase times, and every merged trap's amplitude measured in every frame of the mode,
  detected there or not (so the fit sees the whole curve).

Both are made in the check's read of the frames (Family.per_quadrant: PumpingConsumer, one per
CCD and quadrant, fed each frame's quadrant as the check measures it); the sub-tasks take those
results where the consumer saw the frames and offsets the plan analyses, and otherwise read the
frames again with their own units (reference_unit, mode_unit: the same functions, the same
numbers), saying why.
- `basic`: per trap the fit of amplitude vs phase time (tp_lib.fit_release): release time
  `tau_us` and capture probability `pc`; the trap catalogue per CCD (CSV and FITS table).
- `meta`: per quadrant and mode the trap count and the Pc-weighted mean tau; tau-Pc heat maps.

Coordinates in the catalogue are canonical quadrant coordinates (output node at [0, 0]; x
counts columns from the quadrant's first prescan column, y rows from the serial register), as
the hot-pixel table of DARK01 and the simulator's truths use.
"""

from __future__ import annotations

import math
import threading
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..campaign.limits import GenericLimits, limit
from ..formats.fits import read_frame
from ..formats.geometry import HALF_OF_QUADRANT, QUADRANTS, CCDGeometry
from . import chinj_lib, tp_lib
from .base import AnalysisTask
from .check import RawStats, quadrant_frames
from .context import TaskContext
from .family import Family, QuadrantConsumers, ValueSpec
from .figures import markdown_table, new_figure
from .measures import FrameMeasures
from .offsets import FrameOffsets, PreparedData, measure_offsets
from .outputs import CsvTable, Outputs, Plot, Section, StagedFile, SubTaskResult
from .stacking import product_names, provenance_header

VERTICAL_MODES = ("123", "234", "341", "412")
SERIAL_MODES = ("23", "31")
INJECTED_FRACTION = 0.25  # a quadrant is injected in a frame if its level is >= this x its highest
INJECTED_MIN_ADU = 100.0  # ... and above this (a quadrant never injected stays near 0)
CATALOGUE_COLUMNS = ("ccd", "quadrant", "x", "y", "polarity", "mode", "tau_us", "pc", "amplitude",
                     "detections", "fit_rms_e")


@dataclass(frozen=True)
class PumpingLimits(GenericLimits):
    injection_tolerance: float = limit(0.5, "fraction", "relative tolerance of the injection level vs predicted")


# ---------------------------------------------------------------------------------------------
# prep: which frame is what
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PumpFrame:
    obsid: int
    path: Path
    offsets: dict[str, float]
    direction: str  # "vertical" | "serial" | "" (not pumped)
    mode: str
    phase_time_us: float
    cycles: float
    rows: tuple[int, int]  # canonical image rows read: [first, last)
    injected: frozenset[str]  # quadrants injected in this frame
    row: Mapping[str, Any] = field(repr=False, compare=False)


@dataclass
class PumpingPlan(SubTaskResult):
    geometry: CCDGeometry
    direction: str
    prepared: PreparedData
    frames: dict[int, list[PumpFrame]]

    def reference(self, ccd: int, quadrant: str) -> PumpFrame | None:
        """The first unpumped frame in which the quadrant is injected."""
        return next((f for f in self.frames[ccd] if not f.direction and quadrant in f.injected), None)

    def pumped(self, ccd: int, quadrant: str) -> dict[str, list[PumpFrame]]:
        """mode -> the injected frames pumped in that mode (in the test's direction), by phase time."""
        groups: dict[str, list[PumpFrame]] = defaultdict(list)
        for f in self.frames[ccd]:
            if f.direction == self.direction and quadrant in f.injected:
                groups[f.mode].append(f)
        return {mode: sorted(frames, key=lambda f: f.phase_time_us) for mode, frames in sorted(groups.items())}

    @classmethod
    def produce(cls, ctx: TaskContext) -> PumpingPlan:
        return plan_pumping(ctx)


def _number(row: Mapping[str, Any], *names: str, default: float = 0.0) -> float:
    return chinj_lib.logged_number(row, *names, default=default)


def _mode(row: Mapping[str, Any], *names: str) -> str:
    for name in names:
        value = row.get(name)
        if value not in (None, ""):
            return str(int(float(value))) if str(value).replace(".", "", 1).isdigit() else str(value).strip()
    return ""


@dataclass(frozen=True)
class FramePumping:
    """What a frame's EXP_LOG row says of its pumping and readout window."""

    direction: str  # "vertical" | "serial" | "" (not pumped)
    mode: str
    phase_time_us: float
    cycles: float
    vstart: int
    vend: int | None  # None: not logged (the whole quadrant)

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> FramePumping:
        direction, mode, t_us, cycles = "", "", math.nan, math.nan
        if int(_number(row, "v_tpump")):
            direction, mode = "vertical", _mode(row, "v_tp_mod", "v_tpmod")
            t_us = _number(row, "toi_tp") + _number(row, "dwell_v")
            cycles = _number(row, "v_tp_cnt", default=math.nan)
        elif int(_number(row, "s_tpump")):
            direction, mode = "serial", _mode(row, "s_tp_mod", "s_tpmod")
            t_us = tp_lib.SERIAL_PHASE_TIME_US + _number(row, "dwell_s")
            cycles = _number(row, "s_tp_cnt", default=math.nan)
        vend = _number(row, "vend", default=math.nan)
        return cls(direction, mode, t_us, cycles, int(_number(row, "vstart")), int(vend) if math.isfinite(vend) else None)

    def rows(self, geometry: CCDGeometry) -> tuple[int, int]:
        """Canonical image rows read: [first, last)."""
        vend = geometry.quad_height if self.vend is None else self.vend
        return max(0, self.vstart), min(geometry.image_rows, vend)


def is_injected(level_adu: float, highest_adu: float) -> bool:
    """A quadrant is injected in a frame if its image level above the offset is near the highest
    of its frames (measured, not guessed from the drain-pulse timing)."""
    return level_adu >= max(INJECTED_MIN_ADU, INJECTED_FRACTION * highest_adu)


def pumped_direction(directions: set[str]) -> str | None:
    """The direction analysed when a test pumps in both: the vertical one."""
    pumped = sorted(d for d in directions if d)
    return pumped[-1] if pumped else None


def plan_pumping(ctx: TaskContext) -> PumpingPlan:
    prepared = measure_offsets(ctx)
    geometry = prepared.geometry
    rows_of = {(f.ccd, f.obsid): f.row for ccd in ctx.ccds for f in ctx.dataset.frames(ccd)}
    frames: dict[int, list[PumpFrame]] = {}
    directions = set()
    for ccd in ctx.ccds:
        usable = prepared.frames.get(ccd, [])
        levels = {q: [f.stats[q].image.median - f.offsets[q] for f in usable] for q in QUADRANTS}
        highest = {q: max(v, default=0.0) for q, v in levels.items()}
        entries = []
        for i, f in enumerate(usable):
            row = rows_of[(ccd, f.obsid)]
            pumping = FramePumping.of(row)
            directions.add(pumping.direction)
            injected = frozenset(q for q in QUADRANTS if is_injected(levels[q][i], highest[q]))
            entries.append(PumpFrame(f.obsid, f.path, f.offsets, pumping.direction, pumping.mode,
                                     pumping.phase_time_us, pumping.cycles, pumping.rows(geometry), injected, row))
        frames[ccd] = entries
    direction = pumped_direction(directions)
    if direction is None:
        raise RuntimeError(f"no pumped frame in {ctx.test.name} (v_tpump and s_tpump are 0 in every EXP_LOG row)")
    if len({d for d in directions if d}) > 1:
        ctx.log.warning(f"{ctx.test.name} holds vertical and serial pumping; analysing the vertical frames")
    return PumpingPlan(geometry, direction, prepared, frames)


# ---------------------------------------------------------------------------------------------
# Work units (paths and small numbers in, small records out)
# ---------------------------------------------------------------------------------------------

def read_quadrant(path: Path, quadrant: str, geometry: CCDGeometry) -> np.ndarray:
    """One quadrant's counts as read (frame orientation, uint16), as the check's read hands them."""
    with read_frame(path) as frame:
        return frame.section(*geometry.quadrant_slices(quadrant))


def image_window(quadrant: str, geometry: CCDGeometry, rows: tuple[int, int]) -> tp_lib.ImageWindow:
    """Where the canonical image rows [first, last) lie in the quadrant's counts as read."""
    return tp_lib.ImageWindow.of((geometry.quad_height, geometry.quad_width), geometry.flips(quadrant), rows,
                                 (geometry.prescan, geometry.prescan + geometry.image_cols))


def offset_subtracted(counts: np.ndarray, window: tp_lib.ImageWindow, offset: float) -> np.ndarray:
    """Offset-subtracted canonical image of the window, float32 (as astype, then -= offset)."""
    return np.subtract(window.image(counts), np.float32(offset), dtype=np.float32)


@dataclass(frozen=True)
class ReferenceMeasures:
    level_adu: float  # median of the injected image
    noise_adu: float  # per-pixel noise of the relative map x level
    profile_adu: np.ndarray | None  # serial: clipped column means (image columns)


def measure_reference(counts: np.ndarray, window: tp_lib.ImageWindow, offset: float, serial: bool) -> ReferenceMeasures:
    """The unpumped frame's injection level, per-pixel noise and (serial) column profile."""
    level = tp_lib.window_median(counts, window, offset)  # np.median of the offset-subtracted image
    sigma = tp_lib.CountsMap.of(counts, window, offset, with_map=False).sigma  # vertical_map's
    profile = tp_lib.column_profile(offset_subtracted(counts, window, offset)) if serial else None
    return ReferenceMeasures(level, sigma * level, profile)


def reference_unit(path: Path, quadrant: str, geometry: CCDGeometry, offset: float, rows: tuple[int, int],
                   serial: bool) -> ReferenceMeasures:
    return measure_reference(read_quadrant(path, quadrant, geometry), image_window(quadrant, geometry, rows), offset,
                             serial)


@dataclass
class PumpedMap:
    """One pumped frame's relative map as the merge and the fit use it: its dipoles, the noise of
    its pixels (relative), the level that scales it to ADU (per index `level_axis` of a trap:
    vertical the column's injection, serial the reference profile) and its traps' amplitudes."""

    dipoles: tp_lib.Dipoles
    sigma: float
    level: np.ndarray  # float64
    level_axis: int
    map: tp_lib.CountsMap | np.ndarray  # vertical: the counts that replay its columns; serial: the residual profile

    def amplitudes(self, traps: list[tuple[int, int, int]]) -> np.ndarray:
        if isinstance(self.map, tp_lib.CountsMap):
            return self.map.amplitudes(traps)
        return tp_lib.dipole_amplitudes(self.map, traps)


def vertical_pumped(counts: np.ndarray, window: tp_lib.ImageWindow, offset: float,
                    keep: np.ndarray | None = None) -> PumpedMap:
    """A vertically pumped frame's dipoles, without keeping its map: its counts (copied into
    `keep` if given, as CountsMap.of) replay the columns of the traps found in the other frames of
    the mode (half the memory of the map)."""
    counts_map = tp_lib.CountsMap.of(counts, window, offset, keep=keep, with_map=False)
    dipoles = counts_map.dipoles()
    counts_map.drop_map()  # made only where some residuals were not finite
    return PumpedMap(dipoles, counts_map.sigma, np.asarray(counts_map.level, np.float64), 1, counts_map)


def serial_pumped(profile: np.ndarray, reference_profile: np.ndarray) -> PumpedMap:
    """A serially pumped frame's column profile against the unpumped one's."""
    residual, sigma = tp_lib.serial_map(profile, reference_profile)
    return PumpedMap(tp_lib.find_dipoles(residual, sigma), sigma, np.asarray(reference_profile, np.float64), 0,
                     residual)


@dataclass(frozen=True)
class ModeTraps:
    """The traps of one CCD/quadrant/mode: positions along/across the pumping axis (map indices),
    polarity, amplitude (e-) in every frame of the mode, and whether each frame detected it."""

    traps: list[tuple[int, int, int]]
    amplitudes_e: np.ndarray  # traps x frames
    detected: np.ndarray  # traps x frames, bool
    sigma_e: list[float]  # per frame: noise of a dipole amplitude (e-)


@dataclass(frozen=True)
class ModeMeasures:
    """ModeTraps before the gain (the check's read does not resolve calibration products)."""

    traps: list[tuple[int, int, int]]
    amplitudes_adu: np.ndarray  # traps x frames
    detected: np.ndarray
    sigma_level_adu: list[float]  # per frame: pixel noise (relative) x typical level

    def in_electrons(self, gain: float) -> ModeTraps:
        return ModeTraps(self.traps, self.amplitudes_adu * gain, self.detected,
                         [s * gain / math.sqrt(2.0) for s in self.sigma_level_adu])


def mode_measures(maps: list[PumpedMap]) -> ModeMeasures:
    """Dipoles of a mode's frames (by phase time) merged, and each trap's amplitude in every frame."""
    found = [m.dipoles for m in maps]
    traps = tp_lib.merge_dipoles(found)
    amplitudes = np.zeros((len(traps), len(maps)))
    detected = np.zeros((len(traps), len(maps)), bool)
    for j, (pumped, dipoles) in enumerate(zip(maps, found)):
        if traps:
            across = np.array([t[pumped.level_axis] for t in traps], np.intp)  # index of the level
            amplitudes[:, j] = pumped.amplitudes(traps) * pumped.level[across]
            seen = set(zip(dipoles.along.tolist(), dipoles.across.tolist(), dipoles.polarity.tolist()))
            detected[:, j] = [any((a + d, c, p) in seen for d in (-1, 0, 1)) for a, c, p in traps]
    typical_level = [float(np.nanmedian(m.level)) for m in maps]
    return ModeMeasures(traps, amplitudes, detected, [m.sigma * lv for m, lv in zip(maps, typical_level)])


def mode_unit(quadrant: str, geometry: CCDGeometry, frames: list[tuple[Path, float, tuple[int, int]]], serial: bool,
              reference_profile: np.ndarray | None) -> ModeMeasures:
    """Worker: the pumped frames of one quadrant and mode, each read once: dipole maps, dipoles,
    merging over phase times, and each trap's amplitude in every frame (when the check's read did
    not make them)."""
    maps = []
    for path, offset, rows in frames:
        counts = read_quadrant(path, quadrant, geometry)
        window = image_window(quadrant, geometry, rows)
        if serial:
            maps.append(serial_pumped(tp_lib.column_profile(offset_subtracted(counts, window, offset)),
                                      reference_profile))
        else:
            maps.append(vertical_pumped(counts, window, offset))
    return mode_measures(maps)


# ---------------------------------------------------------------------------------------------
# The same from the check's read (Family.per_quadrant, quadrant_pass.py)
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ReadoutPlan:
    """Per CCD, for the check's read: the test's pumping direction and each frame's pumping (by
    the index of the frame in the unit's list)."""

    direction: str
    frames: tuple[FramePumping, ...]


def readout_plan(ctx: TaskContext, ccd: int, frames: list[Any]) -> ReadoutPlan | None:
    directions = {FramePumping.of(f.row).direction for c in ctx.ccds for f in ctx.dataset.frames(c)}
    direction = pumped_direction(directions)
    if direction is None:
        return None  # `prep` says why there is nothing to analyse
    return ReadoutPlan(direction, tuple(FramePumping.of(f.row) for f in frames))


@dataclass(frozen=True)
class PumpingReadout:
    """What the consumer of one (CCD, quadrant) gives back: frames by their index in the unit's list."""

    direction: str
    reference: int | None  # the unpumped injected frame measured
    reference_measures: ReferenceMeasures | None
    modes: dict[str, tuple[tuple[int, ...], ModeMeasures]]  # mode -> (its frames by phase time, measures)


class ArrayPool:
    """Arrays handed from one consumer to the next in a worker process. Made fresh for each unit,
    the 24 quadrants of counts TP01 keeps per unit (200 MB at full size) had the kernel find and
    zero 200 MB of pages per unit, often taking them back from the page cache: that cost the
    check's read as much CPU as the maps themselves and stalled it. Free arrays are let go once no
    consumer has taken one for IDLE_S seconds: a worker does not hold them into the next tests."""

    IDLE_S = 5.0

    def __init__(self) -> None:
        self._free: dict[tuple[tuple[int, ...], str], list[np.ndarray]] = defaultdict(list)
        self._lock = threading.Lock()  # Dask runs units in threads
        self._timer: threading.Timer | None = None

    def take(self, shape: tuple[int, ...], dtype: type) -> np.ndarray:
        """A C-ordered array of that shape and type, its contents left over (np.empty's)."""
        key = (tuple(shape), np.dtype(dtype).str)
        with self._lock:
            self._stop_timer()
            free = self._free.get(key)
            if free:
                return free.pop()
        return np.empty(shape, dtype)

    def give_back(self, arrays: list[np.ndarray]) -> None:
        """Arrays from take() that nothing uses any more."""
        with self._lock:
            for array in arrays:
                self._free[(array.shape, array.dtype.str)].append(array)
            self._stop_timer()
            self._timer = threading.Timer(self.IDLE_S, self.clear)
            self._timer.daemon = True
            self._timer.start()

    def clear(self) -> None:
        with self._lock:
            self._free.clear()

    def free_count(self) -> int:
        with self._lock:
            return sum(len(arrays) for arrays in self._free.values())

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


KEPT_ARRAYS = ArrayPool()  # per process: the counts the consumers keep


class PumpingConsumer:
    """The injection and extraction of one quadrant from the frames as the check reads them.

    Which frames are injected is only known at the end (the highest level of the quadrant over
    all frames): a frame below INJECTED_MIN_ADU is never injected and is skipped at once; the
    others are measured as they come and sorted out in result(). An unpumped frame keeps its
    ReferenceMeasures (a few numbers and, serial, a profile). A vertically pumped frame keeps
    its dipoles and a copy of its image's counts (8.5 MB at full size, made in the map's first
    sweep), which replay the columns of the traps found in the mode's later frames: TP01 keeps
    its 24 injected pumped frames per quadrant, ~200 MB per unit at full size (the maps
    themselves, float32, would be twice that), in arrays reused from unit to unit (ArrayPool).
    A serially pumped frame keeps its column profile: its map needs the reference, which may
    come later."""

    def __init__(self, quadrant: str, geometry: CCDGeometry, plan: ReadoutPlan):
        self.quadrant, self.geometry, self.plan = quadrant, geometry, plan
        self.serial = plan.direction == "serial"
        self.levels: dict[int, float] = {}
        self.references: dict[int, ReferenceMeasures] = {}
        self.pumped: dict[int, PumpedMap | np.ndarray] = {}  # vertical maps; serial profiles
        self.kept: list[np.ndarray] = []  # the pumped frames' counts, from KEPT_ARRAYS: given back with the result
        self.made: PumpingReadout | None = None

    def add(self, index: int, counts: np.ndarray, stats: Any) -> None:
        pumping = self.plan.frames[index]
        offset = stats.prescan.clipped_mean
        self.levels[index] = level = stats.image.median - offset  # as plan_pumping measures it
        if level < INJECTED_MIN_ADU or (pumping.direction and pumping.direction != self.plan.direction):
            return  # never injected, or pumped the other way: not analysed
        window = image_window(self.quadrant, self.geometry, pumping.rows(self.geometry))
        if not pumping.direction:
            self.references[index] = measure_reference(counts, window, offset, self.serial)
        elif self.serial:
            self.pumped[index] = tp_lib.column_profile(offset_subtracted(counts, window, offset))
        else:
            self.kept.append(KEPT_ARRAYS.take((window.rows, window.width), np.uint16))
            self.pumped[index] = vertical_pumped(counts, window, offset, self.kept[-1])

    def result(self) -> PumpingReadout:
        """The consumer's measures (made once: the kept arrays go back to the pool with them)."""
        if self.made is None:
            try:
                self.made = self._measured()
            finally:
                self.pumped.clear()  # their counts are the pool's again
                kept, self.kept = self.kept, []
                KEPT_ARRAYS.give_back(kept)
        return self.made

    def _measured(self) -> PumpingReadout:
        highest = max(self.levels.values(), default=0.0)
        injected = sorted(i for i, level in self.levels.items() if is_injected(level, highest))
        reference = next((i for i in injected if i in self.references), None)
        measures = self.references.get(reference) if reference is not None else None
        modes: dict[str, tuple[tuple[int, ...], ModeMeasures]] = {}
        if self.serial and (measures is None or measures.profile_adu is None):
            return PumpingReadout(self.plan.direction, reference, measures, modes)  # no serial map without it
        groups: dict[str, list[int]] = defaultdict(list)
        for i in injected:
            if i in self.pumped:
                groups[self.plan.frames[i].mode].append(i)
        for mode, indices in sorted(groups.items()):
            indices.sort(key=lambda i: self.plan.frames[i].phase_time_us)
            maps = [serial_pumped(self.pumped[i], measures.profile_adu) if self.serial else self.pumped[i]
                    for i in indices]
            modes[mode] = (tuple(indices), mode_measures(maps))
        return PumpingReadout(self.plan.direction, reference, measures, modes)


def start_consumer(quadrant: str, geometry: CCDGeometry, plan: ReadoutPlan) -> PumpingConsumer:
    return PumpingConsumer(quadrant, geometry, plan)


# ---------------------------------------------------------------------------------------------
# Sub-task results
# ---------------------------------------------------------------------------------------------

@dataclass
class InjectionLevels(SubTaskResult):
    references: dict[tuple[int, str], ReferenceMeasures]


@dataclass(frozen=True)
class ModeExtraction:
    phase_times_us: list[float]
    cycles: float
    obsids: list[int]
    traps: ModeTraps


@dataclass
class Extraction(SubTaskResult):
    modes: dict[tuple[int, str, str], ModeExtraction]  # (ccd, quadrant, mode)


@dataclass(frozen=True)
class Trap:
    ccd: int
    quadrant: str
    x: int
    y: int  # -1 for serial traps (in the serial register: every row shows them)
    polarity: int
    mode: str
    tau_us: float
    pc: float
    amplitude_e: float  # largest amplitude measured over the phase times
    detections: int
    fit_rms_e: float


@dataclass
class TrapCatalogue(SubTaskResult):
    traps: list[Trap]
    modes: dict[tuple[int, str], list[str]]  # (ccd, quadrant) -> modes analysed


@dataclass
class TrapSummary(SubTaskResult):
    """`meta`: per quadrant and mode counts and Pc-weighted tau (values), heat maps, report."""


class CheckReadouts:
    """The consumers' results of the check's read (PumpingReadout per CCD and quadrant), used
    where they were made from the very frames and offsets the plan analyses; elsewhere the
    sub-task reads the frames again, and says why."""

    def __init__(self, ctx: TaskContext, plan: PumpingPlan):
        self.plan = plan
        self.readouts = ctx.need(FrameMeasures).readouts
        self.log = ctx.log
        self.used: list[str] = []
        self.not_used: dict[str, list[str]] = defaultdict(list)  # why -> quadrants

    def _result(self, ccd: int, q: str) -> tuple[Any, PumpingReadout | None]:
        readout = self.readouts.get((ccd, q))
        why = ("the check's read made no extraction (check switched off or its sub-tasks not run)" if readout is None
               else f"its extraction failed ({readout.error})" if readout.error
               else "its extraction was not fed (no pumped frame planned)" if readout.result is None
               else f"it analysed {readout.result.direction} pumping, the plan {self.plan.direction}"
               if readout.result.direction != self.plan.direction else "")
        if why:
            self.not_used[why].append(f"CCD{ccd}{q}")
            return readout, None
        return readout, readout.result

    def _frames_match(self, ccd: int, q: str, readout: Any, indices: tuple[int, ...], frames: list[PumpFrame]) -> bool:
        paths = dict(zip(readout.fed, readout.paths))
        if [paths.get(i) for i in indices] == [f.path for f in frames] and \
                readout.matches([f.path for f in frames], [f.offsets[q] for f in frames]):
            return True
        self.not_used["the frames it took as injected or their offsets differ from the plan's"].append(f"CCD{ccd}{q}")
        return False

    def reference(self, ccd: int, q: str, ref: PumpFrame) -> ReferenceMeasures | None:
        readout, result = self._result(ccd, q)
        if result is None or result.reference is None or \
                not self._frames_match(ccd, q, readout, (result.reference,), [ref]):
            return None
        self.used.append(f"CCD{ccd}{q}")
        return result.reference_measures

    def modes(self, ccd: int, q: str, pumped: dict[str, list[PumpFrame]]) -> dict[str, ModeMeasures] | None:
        readout, result = self._result(ccd, q)
        if result is None:
            return None
        if set(result.modes) != set(pumped):
            self.not_used["the modes it found differ from the plan's"].append(f"CCD{ccd}{q}")
            return None
        if not all(self._frames_match(ccd, q, readout, result.modes[mode][0], frames) for mode, frames in pumped.items()):
            return None
        self.used.append(f"CCD{ccd}{q}")
        return {mode: result.modes[mode][1] for mode in pumped}

    def say(self, subtask: str, what: str) -> None:
        if self.used:
            self.log.info(f"{subtask}: {', '.join(self.used)} from the check's read of the frames")
        for why, quadrants in self.not_used.items():
            self.log.warning(f"{subtask}: {', '.join(quadrants)}: {what} read again: {why}")


class PumpingTask(AnalysisTask):
    def prep(self, ctx: TaskContext) -> PumpingPlan:
        plan = plan_pumping(ctx)
        for note in plan.prepared.skipped:
            ctx.log.warning(f"left out of the analysis: {note}")
        for ccd in ctx.ccds:
            for q in QUADRANTS:
                if plan.reference(ccd, q) is None and plan.frames.get(ccd):
                    ctx.log.warning(f"CCD{ccd} {q}: no unpumped injected frame: no injection level nor noise")
        return plan

    def injection(self, ctx: TaskContext, plan: PumpingPlan) -> InjectionLevels:
        serial = plan.direction == "serial"
        readouts = CheckReadouts(ctx, plan)
        references, calls, keys = {}, [], []
        for ccd in ctx.ccds:
            for q in QUADRANTS:
                ref = plan.reference(ccd, q)
                if ref is None:
                    continue
                measured = readouts.reference(ccd, q, ref)
                if measured is not None:
                    references[(ccd, q)] = measured
                else:
                    keys.append((ccd, q))
                    calls.append((ref.path, q, plan.geometry, ref.offsets[q], ref.rows, serial))
        references.update(zip(keys, ctx.map_units(reference_unit, calls)))
        readouts.say("injection", "the unpumped frames")
        out = Outputs()
        for ccd in ctx.ccds:
            for q in QUADRANTS:
                if (ccd, q) in references:
                    measured = references[(ccd, q)]
                    out.value("injection_level_adu", measured.level_adu, ccd, q)
                    out.value("injection_noise_adu", measured.noise_adu, ccd, q)
                    out.value("injection_predicted_adu", predicted_for(plan.reference(ccd, q).row, ccd, q), ccd, q)
        return InjectionLevels(references, outputs=out)

    def extract(self, ctx: TaskContext, plan: PumpingPlan, injection: InjectionLevels) -> Extraction:
        serial = plan.direction == "serial"
        readouts = CheckReadouts(ctx, plan)
        measured: dict[tuple[int, str, str], ModeMeasures] = {}
        calls, keys = [], []
        for ccd in ctx.ccds:
            for q in QUADRANTS:
                reference = injection.references.get((ccd, q))
                if serial and (reference is None or reference.profile_adu is None):
                    continue  # a serial map needs the unpumped profile (the injection's column pattern)
                pumped = plan.pumped(ccd, q)
                from_read = readouts.modes(ccd, q, pumped)
                if from_read is not None:
                    measured.update({(ccd, q, mode): m for mode, m in from_read.items()})
                    continue
                for mode, frames in pumped.items():
                    keys.append((ccd, q, mode))
                    calls.append((q, plan.geometry, [(f.path, f.offsets[q], f.rows) for f in frames], serial,
                                  reference.profile_adu if serial else None))
        measured.update(zip(keys, ctx.map_units(mode_unit, calls)))
        readouts.say("extract", "the pumped frames")
        modes = {}
        for ccd in ctx.ccds:
            for q in QUADRANTS:
                for mode, frames in plan.pumped(ccd, q).items():
                    if (ccd, q, mode) in measured:
                        modes[(ccd, q, mode)] = ModeExtraction(
                            [f.phase_time_us for f in frames], float(np.nanmedian([f.cycles for f in frames])),
                            [f.obsid for f in frames], measured[(ccd, q, mode)].in_electrons(ctx.gain(ccd, q)[0]))
        out = Outputs()
        out.value("pumping", plan.direction)
        times = sorted({t for m in modes.values() for t in m.phase_times_us})
        out.value("phase_times_us", times)
        out.value("pumping_cycles", sorted({m.cycles for m in modes.values()}))
        out.value("dipole_threshold_sigma", tp_lib.DIPOLE_THRESHOLD_SIGMA)
        return Extraction(modes, outputs=out)

    def basic(self, ctx: TaskContext, plan: PumpingPlan, extraction: Extraction) -> TrapCatalogue:
        serial = plan.direction == "serial"
        prescan = plan.geometry.prescan
        traps: list[Trap] = []
        modes: dict[tuple[int, str], list[str]] = defaultdict(list)
        for (ccd, q, mode), m in sorted(extraction.modes.items()):
            modes[(ccd, q)].append(mode)
            found = m.traps
            if not found.traps:
                continue
            fit = tp_lib.fit_release(np.array(m.phase_times_us), found.amplitudes_e, m.cycles)
            first_row = plan.frames[ccd][0].rows[0] if plan.frames[ccd] else 0
            for i, (along, across, polarity) in enumerate(found.traps):
                x = prescan + (along if serial else across)
                y = -1 if serial else first_row + along
                traps.append(Trap(ccd, q, int(x), int(y), int(polarity), mode, float(fit.tau_us[i]), float(fit.pc[i]),
                                  float(found.amplitudes_e[i].max()), int(found.detected[i].sum()),
                                  float(fit.rms_e[i])))
        out = Outputs()
        names = product_names(ctx, plan.prepared, "TRAPCAT")
        for ccd, name in names.items():
            rows = [catalogue_row(t) for t in traps if t.ccd == ccd]
            out.tables.append(CsvTable(f"{ctx.test.name}_trap_catalogue_CCD{ccd}.csv", CATALOGUE_COLUMNS, rows))
            path = ctx.staging_path(name)
            write_catalogue_fits(path, ctx, ccd, plan, [t for t in traps if t.ccd == ccd])
            out.files.append(StagedFile(name, path))
        out.value("fit_law", "A(t) = cycles x pc x (exp(-t/tau) - exp(-2t/tau)), least squares over every phase "
                             "time of the mode (amplitudes measured where detected or not)")
        return TrapCatalogue(traps, dict(modes), outputs=out)

    def meta(self, ctx: TaskContext, plan: PumpingPlan, catalogue: TrapCatalogue) -> TrapSummary:
        out = Outputs()
        by_quadrant: dict[tuple[int, str], list[Trap]] = defaultdict(list)
        for trap in catalogue.traps:
            by_quadrant[(trap.ccd, trap.quadrant)].append(trap)
        rows = []
        for (ccd, q), modes in sorted(catalogue.modes.items()):
            found = by_quadrant.get((ccd, q), [])
            gain = ctx.gain(ccd, q)[0]
            out.value("gain_e_per_adu_used", gain, ccd, q)
            out.value("trap_count", len(found), ccd, q)
            out.value("tau_weighted_us", tp_lib.pc_weighted_tau([t.tau_us for t in found], [t.pc for t in found]), ccd, q)
            cells = []
            for mode in modes:
                of_mode = [t for t in found if t.mode == mode]
                tau = tp_lib.pc_weighted_tau([t.tau_us for t in of_mode], [t.pc for t in of_mode])
                name = mode_key(plan.direction, mode)
                if name is not None:
                    out.value(f"trap_count_{name}", len(of_mode), ccd, q)
                    out.value(f"tau_weighted_{name}_us", tau, ccd, q)
                cells.append(f"{mode}: {len(of_mode)} ({tau:.0f} us)" if math.isfinite(tau) else f"{mode}: 0")
            rows.append([f"CCD{ccd}", q, len(found), "; ".join(cells)])
        test = ctx.test.name
        traps = catalogue.traps
        direction = plan.direction
        out.plots.append(Plot("tau_pc", lambda: heat_map_figure(test, direction, traps)))
        out.sections.append(Section("Traps", "\n\n".join([
            f"{direction.capitalize()} trap pumping. Per pumped frame a relative dipole map (each "
            + ("column divided by its mean over rows" if direction == "vertical" else
               "column profile divided by the unpumped frame's") +
            f", local background along the pumping axis removed); a dipole is an adjacent deficit/excess pair "
            f"whose half-difference exceeds {tp_lib.DIPOLE_THRESHOLD_SIGMA:g} sigma of the map's pixel noise. "
            "Dipoles are merged over the phase times of a mode; each trap's amplitude is measured in every "
            "frame of the mode and fitted with A(t) = cycles x pc x (exp(-t/tau) - exp(-2t/tau)). "
            "Catalogue: `products/<TEST>_trap_catalogue_CCD<n>.csv` and the FITS table per CCD "
            "(canonical quadrant coordinates).",
            markdown_table(["CCD", "Q", "traps", "per mode: count (Pc-weighted tau)"], rows),
        ])))
        return TrapSummary(outputs=out)


def mode_key(direction: str, mode: str) -> str | None:
    """Value-name suffix of a pumping mode (`v123`, `s23`), None for a mode the family does not declare."""
    known = VERTICAL_MODES if direction == "vertical" else SERIAL_MODES
    return f"{direction[0]}{mode}" if mode in known else None


def catalogue_row(t: Trap) -> list[Any]:
    return [f"CCD{t.ccd}", t.quadrant, t.x, t.y, t.polarity, t.mode, f"{t.tau_us:.4g}", f"{t.pc:.4g}",
            f"{t.amplitude_e:.1f}", t.detections, f"{t.fit_rms_e:.1f}"]


def write_catalogue_fits(path: Path, ctx: TaskContext, ccd: int, plan: PumpingPlan, traps: list[Trap]) -> None:
    from astropy.io import fits

    frames: list[FrameOffsets] = plan.prepared.frames.get(ccd, [])
    header = provenance_header(ctx, ccd, frames, "dipoles, fit vs phase time", "TRAPCAT")
    header["BUNIT"] = ("", "table")
    header["COORDS"] = ("canonical", "x, y in canonical quadrant coordinates")
    header["PUMPING"] = (plan.direction, "pumping direction")
    columns = [
        fits.Column("ccd", "I", array=np.array([t.ccd for t in traps], np.int16)),
        fits.Column("quadrant", "1A", array=np.array([t.quadrant for t in traps], "U1")),
        fits.Column("x", "J", array=np.array([t.x for t in traps], np.int32)),
        fits.Column("y", "J", array=np.array([t.y for t in traps], np.int32)),
        fits.Column("polarity", "I", array=np.array([t.polarity for t in traps], np.int16)),
        fits.Column("mode", "4A", array=np.array([t.mode for t in traps], "U4")),
        fits.Column("tau_us", "E", unit="us", array=np.array([t.tau_us for t in traps], np.float32)),
        fits.Column("pc", "E", array=np.array([t.pc for t in traps], np.float32)),
        fits.Column("amplitude", "E", unit="electron", array=np.array([t.amplitude_e for t in traps], np.float32)),
        fits.Column("detections", "I", array=np.array([t.detections for t in traps], np.int16)),
        fits.Column("fit_rms_e", "E", unit="electron", array=np.array([t.fit_rms_e for t in traps], np.float32)),
    ]
    table = fits.BinTableHDU.from_columns(columns, name="TRAPS")
    fits.HDUList([fits.PrimaryHDU(header=header), table]).writeto(path, overwrite=True)


def heat_map_figure(test: str, direction: str, traps: list[Trap]):
    """log10 tau vs log10 Pc, one panel per mode, all CCDs and quadrants."""
    modes = sorted({t.mode for t in traps})
    if not modes:
        return None
    figure = new_figure(3.2 * len(modes) + 0.8, 3.4)
    tau_range = (0.0, 2.5) if direction == "serial" else (1.0, 5.0)
    for i, mode in enumerate(modes):
        axes = figure.add_subplot(1, len(modes), i + 1)
        chosen = [t for t in traps if t.mode == mode and t.tau_us > 0 and t.pc > 0]
        tau = np.log10([t.tau_us for t in chosen]) if chosen else np.zeros(0)
        pc = np.log10([t.pc for t in chosen]) if chosen else np.zeros(0)
        counts, xedges, yedges = np.histogram2d(tau, pc, bins=15, range=[tau_range, [-3.0, 0.5]])
        image = axes.imshow(counts.T, origin="lower", aspect="auto", cmap="viridis",
                            extent=[xedges[0], xedges[-1], yedges[0], yedges[-1]])
        axes.set_title(f"mode {mode}: {len(chosen)} traps", fontsize=9)
        axes.set_xlabel("log10 tau (us)")
        if i == 0:
            axes.set_ylabel("log10 Pc")
        figure.colorbar(image, ax=axes, fraction=0.05)
    figure.suptitle(f"{test}: release time vs capture probability", fontsize=10)
    return figure


# ---------------------------------------------------------------------------------------------
# Check: injection level against vison's prediction (FLUENCE_OOL)
# ---------------------------------------------------------------------------------------------

def predicted_for(row: Mapping[str, Any], ccd: int, quadrant: str) -> float:
    """vison's expected injection (ADU) for the quadrant in this frame; NaN if its half is not
    injected or the injection is below threshold."""
    half = HALF_OF_QUADRANT[quadrant]
    if chinj_lib.injected_half(int(_number(row, "chinj", default=1)), _number(row, "id_wid", default=100),
                               _number(row, "id_dly"), _number(row, "toi_ch")) != half:
        return math.nan
    ig1 = _number(row, f"IG1_{ccd}_{half}", default=math.nan)
    ig2 = _number(row, f"IG2_{half}", default=math.nan)
    idl = _number(row, "IDL", default=math.nan)
    if not all(math.isfinite(v) for v in (ig1, ig2, idl)):
        return math.nan
    return chinj_lib.predicted_injection_adu(ig1, ig2, idl, below_threshold=math.nan)


def check_injection(ctx: TaskContext, stats: RawStats) -> None:
    """Raw image level above the prescan (median over frames where the quadrant's half is
    injected) within predicted x (1 +- injection_tolerance), else FLUENCE_OOL."""
    tolerance = float(ctx.limits.injection_tolerance)
    rows = {(f.ccd, f.obsid): f.row for ccd in ctx.ccds for f in ctx.dataset.frames(ccd)}
    for ccd, q, frames in quadrant_frames(ctx, stats):
        measured = []
        for obsid, s in frames:
            expected = predicted_for(rows.get((ccd, obsid), {}), ccd, q)
            if math.isfinite(expected):
                measured.append((obsid, s.image.median - s.prescan.median, expected))
        if not measured:
            continue
        bad = [m for m in measured if not (1 - tolerance) * m[2] <= m[1] <= (1 + tolerance) * m[2]]
        if bad:
            obsid, level, expected = max(bad, key=lambda m: abs(m[1] / m[2] - 1))
            ctx.flags.raise_flag("FLUENCE_OOL", f"injection {level:.0f} ADU, predicted {expected:.0f} ADU x (1 +- "
                                 f"{tolerance:g}) ({len(bad)} of {len(measured)} injected frames out; worst OBSID {obsid})",
                                 ccd=ccd, quadrant=q)


def _mode_values() -> tuple[ValueSpec, ...]:
    specs = []
    for direction, modes in (("vertical", VERTICAL_MODES), ("serial", SERIAL_MODES)):
        for mode in modes:
            key = mode_key(direction, mode)
            specs.append(ValueSpec(f"trap_count_{key}", "", None, f"traps found pumping in {direction} mode {mode}"))
            specs.append(ValueSpec(f"tau_weighted_{key}_us", "us", 1,
                                   f"Pc-weighted mean release time of the traps of {direction} mode {mode}"))
    return tuple(specs)


FAMILY = Family(
    name="tp",
    noise_regions=("prescan",),  # the overscan after an exposed image holds trailed charge, not noise
    summary="TP01/TP11 (vertical) and TP02/TP21 (serial) trap pumping: dipoles, release times, capture probabilities.",
    subtasks=("init", "check", "prep", "injection", "extract", "basic", "meta", "report"),
    task=PumpingTask,
    limits=PumpingLimits,
    values=(
        ValueSpec("injection_level_adu", "ADU", 1, "median injected level of the unpumped frame (offset subtracted)"),
        ValueSpec("injection_noise_adu", "ADU", 2, "per-pixel noise of the unpumped frame's relative map x level"),
        ValueSpec("injection_predicted_adu", "ADU", 0, "vison's predicted injection for the unpumped frame"),
        ValueSpec("trap_count", "", None, "traps found, all modes (a trap pumped in two modes counts twice)", key=True),
        ValueSpec("tau_weighted_us", "us", 1, "Pc-weighted mean release time of the traps, all modes", key=True),
        *_mode_values(),
        ValueSpec("gain_e_per_adu_used", "e-/ADU", None, "gain converting dipole amplitudes to electrons"),
        ValueSpec("pumping", "", None, "pumping direction: vertical or serial", scope="test"),
        ValueSpec("phase_times_us", "us", None, "phase times of the pumped frames", scope="test"),
        ValueSpec("pumping_cycles", "", None, "pumping cycles (shuffles) per frame", scope="test"),
        ValueSpec("dipole_threshold_sigma", "", None, "dipole detection threshold in sigmas of the map noise",
                  scope="test"),
        ValueSpec("fit_law", "", None, "the law fitted to each trap's amplitudes", scope="test"),
    ),
    checks=(check_injection,),
    needs=("gain",),
    per_quadrant=QuadrantConsumers(plan=readout_plan, start=start_consumer, subtasks=("injection", "extract")),
    fits_products=True,
)
