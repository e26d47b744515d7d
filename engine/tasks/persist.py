"""PERSIST01: residual charge after a saturating exposure, its decay, saturated footprints.

Structure (the test's columns, catalogue.py): RESET frames (exptime 0), REFER darks, one EXPOSE
frame (a defocused point source left on long enough to saturate), LATENT darks. Each frame's
role comes from the column of the test's structure it belongs to, as vison read it. Sub-tasks
(after the generic `init` and `check`, which adds the dark-level check of REFER and LATENT):

- `prep`: offsets of every frame (the check's prescan clipped means, offsets.py), roles and
  time stamps.
- `satur_masks`: per CCD/quadrant the saturated footprint of the EXPOSE frame (see
  `saturated_footprint` for the criterion); a mask FITS per CCD; NONSATURATION when a quadrant
  did not saturate enough.
- `basic`: per REFER and LATENT frame and quadrant, the clipped mean inside the footprint and
  outside it (the frame's dark level).

`satur_masks` and `basic` are made in the check's read of the frames (Family.per_quadrant:
PersistConsumer, one per CCD and quadrant: the footprint when the EXPOSE frame comes, the levels
of each dark as it comes); where that read did not see the very frames and offsets `prep` keeps,
units read them again (footprint_unit, levels_unit: the same functions, the same numbers),
saying why.
- `meta`: persistence = (inside - outside) of each LATENT frame minus the same averaged over the
  REFER frames, in ADU and electrons; its decay over the LATENT frames and a release time.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..campaign.limits import GenericLimits, limit
from ..formats.fits import read_frame
from ..formats.geometry import QUADRANTS, CCDGeometry
from ..formats.names import parse_date_token
from .base import AnalysisTask
from .check import RawStats
from .context import TaskContext
from .family import Family, QuadrantConsumers, ValueSpec
from .figures import markdown_table
from .measures import FrameMeasures
from .offsets import FrameOffsets, PreparedData, measure_offsets
from .outputs import CsvTable, Outputs, Plot, Section, StagedFile, SubTaskResult
from .stacking import product_names, provenance_header
from .stats import ADC_SATURATED, clipped_stats

ROLES = ("RESET", "REFER", "EXPOSE", "LATENT")
PLATEAU_TOLERANCE = 0.02  # footprint: pixels within 2 % of the full-well plateau
PLATEAU_FRACTION = 1e-3  # the plateau level: median of the brightest 0.1 % of the image (>= 9 pixels)
MIN_OUTSIDE_PIXELS = 100  # fewer pixels outside the footprint: no dark level from the frame itself


@dataclass(frozen=True)
class PersistenceLimits(GenericLimits):
    saturated_fraction: tuple[float, float] = limit(
        (0.002, 0.2), "fraction", "saturated fraction of a quadrant's image in the EXPOSE frame (vison's window)")
    full_well_floor_e: float = limit(
        150000.0, "e-", "a quadrant's brightest pixels below this did not reach full well (CCD273: ~200 ke-)")
    background_adu: tuple[float, float] = limit(
        (0.0, 200.0), "ADU", "image level above the offsets of the REFER and LATENT darks (BGD_OOL)")


# ---------------------------------------------------------------------------------------------
# Science
# ---------------------------------------------------------------------------------------------

def saturated_footprint(counts: np.ndarray, offset_adu: float, floor_adu: float,
                        tolerance: float = PLATEAU_TOLERANCE) -> tuple[np.ndarray, float]:
    """(mask of the saturated pixels, plateau level in ADU above the offset, NaN if none).

    A pixel is saturated when its well filled. Where the full well in ADU exceeds the ADC range
    that shows as 65535; where it does not (gain x 65535 above the full well, some quadrants of
    every block), the pixel clips at the full well and never reaches 65535, so counting 65535s
    alone would call a saturated quadrant unsaturated. A saturated region is a plateau: all its
    pixels sit at one level (full well, or the ADC ceiling) instead of following the light. The
    plateau level is the median of the brightest 0.1 % of the image; the footprint is every pixel
    within `tolerance` of it (full-well differences between pixels, blooming along the column)
    plus any pixel at the ADC ceiling. A plateau below `floor_adu` (the lowest credible full well
    in ADU) is no saturation: the brightest pixels of an unsaturated spot are not a footprint.
    """
    level = counts.astype(np.float32) - np.float32(offset_adu)
    ceiling = counts >= ADC_SATURATED
    k = min(level.size, max(9, int(PLATEAU_FRACTION * level.size)))
    top = np.partition(level.ravel(), level.size - k)[level.size - k:]
    plateau = float(np.median(top))
    if plateau < floor_adu and not ceiling.any():
        return np.zeros(level.shape, bool), math.nan
    return (level >= np.float32((1.0 - tolerance) * plateau)) | ceiling, plateau


def release_time_s(delays_s: list[float], persistence: list[float]) -> float:
    """Exponential release time from the persistence of successive equal darks: the slope of
    ln(persistence) vs delay (needs two positive values, decreasing); NaN otherwise."""
    points = [(t, p) for t, p in zip(delays_s, persistence) if math.isfinite(p) and p > 0]
    if len(points) < 2:
        return math.nan
    t, p = np.array(points).T
    slope = np.polyfit(t, np.log(p), 1)[0]
    return float(-1.0 / slope) if slope < 0 else math.nan


# ---------------------------------------------------------------------------------------------
# prep
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RoleFrame:
    frame: FrameOffsets
    role: str
    when: datetime | None


@dataclass
class PersistPlan(SubTaskResult):
    geometry: CCDGeometry
    prepared: PreparedData
    frames: dict[int, list[RoleFrame]]  # ccd -> frames in OBSID order with their role

    def of_role(self, ccd: int, role: str) -> list[RoleFrame]:
        return [f for f in self.frames.get(ccd, []) if f.role == role]

    @classmethod
    def produce(cls, ctx: TaskContext) -> "PersistPlan":
        return plan_persistence(ctx)


def frame_roles(ctx: TaskContext) -> dict[int, str]:
    """OBSID -> role (RESET, REFER, EXPOSE, LATENT) from the column of the structure it belongs to."""
    labels = [column.label.upper() for column in ctx.test.columns(ctx.chamber)]
    roles = {}
    for exposure in ctx.dataset.exposures:
        if 0 <= exposure.column < len(labels) and labels[exposure.column] in ROLES:
            roles[exposure.obsid] = labels[exposure.column]
    return roles


def _when(row: Mapping[str, Any]) -> datetime | None:
    try:
        return parse_date_token(str(row.get("date", "")))
    except ValueError:
        return None


def plan_persistence(ctx: TaskContext) -> PersistPlan:
    prepared = measure_offsets(ctx)
    roles = frame_roles(ctx)
    rows = {(f.ccd, f.obsid): f.row for ccd in ctx.ccds for f in ctx.dataset.frames(ccd)}
    frames = {ccd: [RoleFrame(f, roles[f.obsid], _when(rows[(ccd, f.obsid)]))
                    for f in prepared.frames.get(ccd, []) if f.obsid in roles] for ccd in ctx.ccds}
    if not any(f.role == "EXPOSE" for fs in frames.values() for f in fs):
        raise RuntimeError(f"no EXPOSE (saturating) frame of {ctx.test.name} on disk: no persistence to measure")
    return PersistPlan(prepared.geometry, prepared, frames)


# ---------------------------------------------------------------------------------------------
# Work units
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Footprint:
    packed: np.ndarray  # np.packbits of the canonical image-area mask
    plateau_adu: float
    pixels: int


def footprint_of(counts: np.ndarray, offset: float, floor_adu: float) -> Footprint:
    """The footprint of a quadrant's canonical image area (uint16 counts)."""
    mask, plateau = saturated_footprint(counts, offset, floor_adu)
    return Footprint(np.packbits(mask), plateau, int(mask.sum()))


def footprint_unit(path: Path, quadrant: str, geometry: CCDGeometry, offset: float, floor_adu: float) -> Footprint:
    with read_frame(path) as frame:
        counts = np.array(frame.region(quadrant, "image", geometry))
    return footprint_of(counts, offset, floor_adu)


@dataclass(frozen=True)
class DarkLevels:
    obsid: int
    role: str
    inside_adu: float
    inside_std_adu: float
    pixels_inside: int
    outside_adu: float
    pixels_outside: int

    @property
    def excess_adu(self) -> float:
        """Inside minus outside: what the footprint holds above the frame's own dark level."""
        return self.inside_adu - (self.outside_adu if math.isfinite(self.outside_adu) else 0.0)


def levels_unit(quadrant: str, geometry: CCDGeometry, packed: np.ndarray,
                frames: list[tuple[int, str, Path, float]]) -> list[DarkLevels]:
    """Worker: clipped means inside and outside the footprint of each dark frame's quadrant."""
    mask = unpacked(packed, geometry)
    found = []
    for obsid, role, path, offset in frames:
        with read_frame(path) as frame:
            found.append(dark_levels(obsid, role, frame.region(quadrant, "image", geometry), offset, mask))
    return found


def unpacked(packed: np.ndarray, geometry: CCDGeometry) -> np.ndarray:
    shape = (geometry.image_rows, geometry.image_cols)
    return np.unpackbits(packed, count=shape[0] * shape[1]).reshape(shape).astype(bool)


def dark_levels(obsid: int, role: str, counts: np.ndarray, offset: float, mask: np.ndarray) -> DarkLevels:
    """Clipped means inside and outside the footprint of a dark's canonical image area (uint16)."""
    image = counts.astype(np.float32)
    image -= np.float32(offset)
    inside = clipped_stats(image[mask]) if mask.any() else None
    outside = clipped_stats(image[~mask]) if (~mask).sum() >= MIN_OUTSIDE_PIXELS else None
    return DarkLevels(obsid, role, inside.mean if inside else math.nan, inside.std if inside else math.nan,
                      inside.count if inside else 0, outside.mean if outside else math.nan,
                      outside.count if outside else 0)


# ---------------------------------------------------------------------------------------------
# The same from the check's read (Family.per_quadrant, quadrant_pass.py)
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ReadPlan:
    """Per CCD, for the check's read: each frame's role and OBSID (by index in the unit's list),
    the index of the EXPOSE frame, and per quadrant the lowest credible full well in ADU."""

    roles: tuple[str, ...]  # "" for a frame of no role
    obsids: tuple[int, ...]
    expose: int
    floors_adu: dict[str, float]


def read_plan(ctx: TaskContext, ccd: int, frames: list[Any]) -> ReadPlan | None:
    roles = frame_roles(ctx)
    found = tuple(roles.get(f.obsid, "") for f in frames)
    if "EXPOSE" not in found:
        return None  # `prep` says why there is nothing to measure
    floors = {q: float(ctx.limits.full_well_floor_e) / ctx.gain(ccd, q)[0] for q in QUADRANTS}
    return ReadPlan(found, tuple(f.obsid for f in frames), found.index("EXPOSE"), floors)


@dataclass(frozen=True)
class ReadPersistence:
    """The consumer's result: the EXPOSE frame's footprint and each dark's levels, by index."""

    expose: int | None
    footprint: Footprint | None
    levels: dict[int, DarkLevels]


class PersistConsumer:
    """Footprint and dark levels of one quadrant from the frames as the check reads them.

    The REFER darks come before the EXPOSE frame: their canonical image areas are kept until
    the footprint is known (uint16, 8.5 MB a frame at full size: 3 REFER frames, 25 MB), then
    measured and dropped; the LATENT darks are measured as they come."""

    def __init__(self, quadrant: str, geometry: CCDGeometry, plan: ReadPlan):
        self.quadrant, self.geometry, self.plan = quadrant, geometry, plan
        self.window = geometry.canonical_region("image")
        self.footprint: Footprint | None = None
        self.mask: np.ndarray | None = None
        self.waiting: dict[int, tuple[np.ndarray, float]] = {}
        self.levels: dict[int, DarkLevels] = {}

    def add(self, index: int, counts: np.ndarray, stats: Any) -> None:
        role = self.plan.roles[index]
        if role not in ("EXPOSE", "REFER", "LATENT"):
            return
        rows, cols = self.window
        image = self.geometry.to_canonical(counts, self.quadrant)[rows, cols]
        offset = stats.prescan.clipped_mean  # the frame's offset, as `prep` takes it
        if index == self.plan.expose:
            self.footprint = footprint_of(np.array(image), offset, self.plan.floors_adu[self.quadrant])
            self.mask = unpacked(self.footprint.packed, self.geometry)
            for i, (waiting, waiting_offset) in sorted(self.waiting.items()):
                self.levels[i] = self.measure(i, waiting, waiting_offset)
            self.waiting.clear()
        elif role != "EXPOSE":
            if self.mask is None:
                self.waiting[index] = np.array(image), offset
            else:
                self.levels[index] = self.measure(index, image, offset)

    def measure(self, index: int, image: np.ndarray, offset: float) -> DarkLevels:
        return dark_levels(self.plan.obsids[index], self.plan.roles[index], image, offset, self.mask)

    def result(self) -> ReadPersistence:
        expose = self.plan.expose if self.footprint is not None else None
        return ReadPersistence(expose, self.footprint, self.levels)


def start_persist(quadrant: str, geometry: CCDGeometry, plan: ReadPlan) -> PersistConsumer:
    return PersistConsumer(quadrant, geometry, plan)


class CheckReadouts:
    """The consumers' results where they were made from the very frames and offsets `prep`
    keeps; elsewhere the sub-task reads the frames again and says why."""

    def __init__(self, ctx: TaskContext):
        self.readouts = ctx.need(FrameMeasures).readouts
        self.log = ctx.log
        self.used: list[str] = []
        self.not_used: dict[str, list[str]] = defaultdict(list)

    def result(self, ccd: int, q: str, frames: list[RoleFrame]) -> ReadPersistence | None:
        readout = self.readouts.get((ccd, q))
        why = ("the check's read made no footprint (check switched off or its sub-tasks run alone)" if readout is None
               else f"its extraction failed ({readout.error})" if readout.error
               else "its extraction was not fed" if readout.result is None
               else "it saw no EXPOSE frame" if readout.result.footprint is None
               else "" if readout.matches([f.frame.path for f in frames], [f.frame.offsets[q] for f in frames])
               else "the frames it measured or their offsets differ from those `prep` keeps")
        if why:
            self.not_used[why].append(f"CCD{ccd}{q}")
            return None
        return readout.result

    def index_of(self, ccd: int, q: str, path: Path) -> int | None:
        readout = self.readouts[(ccd, q)]
        return next((i for i, p in zip(readout.fed, readout.paths) if p == path), None)

    def say(self, subtask: str, what: str) -> None:
        if self.used:
            self.log.info(f"{subtask}: {', '.join(self.used)} from the check's read of the frames")
        for why, quadrants in self.not_used.items():
            self.log.warning(f"{subtask}: {', '.join(quadrants)}: {what} read again: {why}")


# ---------------------------------------------------------------------------------------------
# Sub-tasks
# ---------------------------------------------------------------------------------------------

@dataclass
class SaturationMasks(SubTaskResult):
    footprints: dict[tuple[int, str], Footprint]
    expose: dict[int, RoleFrame]


@dataclass
class PersistLevels(SubTaskResult):
    levels: dict[tuple[int, str], list[DarkLevels]]


@dataclass
class PersistenceResult(SubTaskResult):
    persistence_adu: dict[tuple[int, str], list[float]] = field(default_factory=dict)


class PersistenceTask(AnalysisTask):
    def prep(self, ctx: TaskContext) -> PersistPlan:
        plan = plan_persistence(ctx)
        for note in plan.prepared.skipped:
            ctx.log.warning(f"left out of the analysis: {note}")
        return plan

    def satur_masks(self, ctx: TaskContext, plan: PersistPlan) -> SaturationMasks:
        from astropy.io import fits

        geometry = plan.geometry
        low, high = ctx.limits.saturated_fraction
        readouts = CheckReadouts(ctx)
        calls, keys, expose, footprints = [], [], {}, {}
        for ccd in ctx.ccds:
            exposed = plan.of_role(ccd, "EXPOSE")
            if not exposed:
                continue
            expose[ccd] = exposed[0]
            for q in QUADRANTS:
                floor_adu = float(ctx.limits.full_well_floor_e) / ctx.gain(ccd, q)[0]
                read = readouts.result(ccd, q, [exposed[0]])
                if read is not None and readouts.index_of(ccd, q, exposed[0].frame.path) == read.expose:
                    footprints[(ccd, q)] = read.footprint
                    readouts.used.append(f"CCD{ccd}{q}")
                    continue
                if read is not None:
                    readouts.not_used["its EXPOSE frame is not the one `prep` keeps"].append(f"CCD{ccd}{q}")
                keys.append((ccd, q))
                calls.append((exposed[0].frame.path, q, geometry, exposed[0].frame.offsets[q], floor_adu))
        footprints.update(zip(keys, ctx.map_units(footprint_unit, calls)))
        readouts.say("satur_masks", "the EXPOSE frame")
        out = Outputs()
        pixels = geometry.image_pixels
        names = product_names(ctx, plan.prepared, "PERSIST01_SATMASK")
        for ccd, name in names.items():
            if ccd not in expose:
                continue
            mask = np.zeros(geometry.shape, np.uint8)
            for q in QUADRANTS:
                footprint = footprints[(ccd, q)]
                canonical = np.zeros((geometry.quad_height, geometry.quad_width), np.uint8)
                image_rows, image_cols = geometry.canonical_region("image")
                canonical[image_rows, image_cols] = np.unpackbits(
                    footprint.packed, count=pixels).reshape(geometry.image_rows, geometry.image_cols)
                geometry.put_quadrant(mask, q, canonical)
                fraction = footprint.pixels / pixels
                out.value("saturated_pixels", footprint.pixels, ccd, q)
                out.value("saturated_fraction", fraction, ccd, q)
                out.value("saturation_level_adu", footprint.plateau_adu, ccd, q)
                obsid = expose[ccd].frame.obsid
                if fraction < low:
                    ctx.flags.raise_flag("NONSATURATION", f"{100 * fraction:.3f} % of the image saturated (full-well "
                                         f"plateau or ADC ceiling), below {100 * low:g} %", ccd=ccd, quadrant=q,
                                         obsid=obsid)
                elif fraction > high:
                    ctx.flags.raise_flag("POORQUALDATA", f"{100 * fraction:.1f} % of the image saturated, above "
                                         f"{100 * high:g} %: little unsaturated area left for the dark level",
                                         ccd=ccd, quadrant=q, obsid=obsid)
            header = provenance_header(ctx, ccd, [expose[ccd].frame], "EXPOSE saturated footprint",
                                       "PERSIST01_SATMASK")
            header["BUNIT"] = ("", "1 = saturated")
            header["PLATTOL"] = (PLATEAU_TOLERANCE, "fraction below the plateau kept")
            path = ctx.staging_path(name)
            hdu = fits.ImageHDU(mask, name="SATMASK")
            fits.HDUList([fits.PrimaryHDU(header=header), hdu]).writeto(path, overwrite=True)
            out.files.append(StagedFile(name, path))
        out.value("saturation_criterion", f"pixels within {100 * PLATEAU_TOLERANCE:g} % of the full-well plateau "
                  "(median of the brightest 0.1 %) or at the ADC ceiling 65535; no plateau below "
                  f"{ctx.limits.full_well_floor_e:g} e-")
        return SaturationMasks(footprints, expose, outputs=out)

    def basic(self, ctx: TaskContext, plan: PersistPlan, masks: SaturationMasks) -> PersistLevels:
        readouts = CheckReadouts(ctx)
        calls, keys, levels = [], [], {}
        for (ccd, q), footprint in masks.footprints.items():
            darks = [f for f in plan.frames[ccd] if f.role in ("REFER", "LATENT")]
            read = readouts.result(ccd, q, [masks.expose[ccd], *darks])
            if read is not None:
                indices = [readouts.index_of(ccd, q, f.frame.path) for f in darks]
                if np.array_equal(read.footprint.packed, footprint.packed) and all(i in read.levels for i in indices):
                    levels[(ccd, q)] = [read.levels[i] for i in indices]
                    readouts.used.append(f"CCD{ccd}{q}")
                    continue
                readouts.not_used["its footprint or the darks it measured differ from the plan's"].append(f"CCD{ccd}{q}")
            keys.append((ccd, q))
            calls.append((q, plan.geometry, footprint.packed,
                          [(f.frame.obsid, f.role, f.frame.path, f.frame.offsets[q]) for f in darks]))
        levels.update(zip(keys, ctx.map_units(levels_unit, calls)))
        readouts.say("basic", "the REFER and LATENT darks")
        return PersistLevels({key: levels[key] for key in masks.footprints})

    def meta(self, ctx: TaskContext, plan: PersistPlan, masks: SaturationMasks, levels: PersistLevels) -> PersistenceResult:
        out = Outputs()
        rows, table, series = [], [], {}
        delays_by_ccd: dict[int, dict[int, float]] = {}
        for ccd, exposed in masks.expose.items():
            delays_by_ccd[ccd] = {f.frame.obsid: (f.when - exposed.when).total_seconds()
                                  for f in plan.frames[ccd] if f.when and exposed.when}
        result = PersistenceResult()
        for (ccd, q), found in sorted(levels.levels.items()):
            gain = ctx.gain(ccd, q)[0]
            delays = delays_by_ccd.get(ccd, {})
            refer = [d.excess_adu for d in found if d.role == "REFER" and math.isfinite(d.excess_adu)]
            latent = [d for d in found if d.role == "LATENT"]
            reference = float(np.mean(refer)) if refer else math.nan
            persistence = [d.excess_adu - reference for d in latent]
            result.persistence_adu[(ccd, q)] = persistence
            for d in found:
                table.append([f"CCD{ccd}", q, d.obsid, d.role, f"{delays.get(d.obsid, math.nan):.0f}",
                              f"{d.inside_adu:.3f}", f"{d.inside_std_adu:.3f}", d.pixels_inside,
                              f"{d.outside_adu:.3f}", d.pixels_outside, f"{d.excess_adu:.3f}"])
            first = persistence[0] if persistence else math.nan
            spread = float(np.std(refer, ddof=1)) if len(refer) > 1 else 0.0
            noise = latent[0].inside_std_adu / math.sqrt(max(latent[0].pixels_inside, 1)) if latent else math.nan
            error = math.sqrt(spread ** 2 + noise ** 2)
            latent_delays = [delays.get(d.obsid, math.nan) for d in latent]
            tau = release_time_s(latent_delays, persistence)
            out.value("persistence_adu", first, ccd, q)
            out.value("persistence_e", first * gain, ccd, q)
            out.value("persistence_err_e", error * gain, ccd, q)
            out.value("persistence_decay_e", [round(p * gain, 2) for p in persistence], ccd, q)
            out.value("persistence_tau_s", tau, ccd, q)
            out.value("gain_e_per_adu_used", gain, ccd, q)
            series[(ccd, q)] = (latent_delays, [p * gain for p in persistence])
            rows.append([f"CCD{ccd}", q, f"{first * gain:.1f} +- {error * gain:.1f}",
                         ", ".join(f"{p * gain:.1f}" for p in persistence), f"{tau:.0f}" if math.isfinite(tau) else "–"])
        delays = sorted({round(t) for ccd, e in masks.expose.items() for f in plan.of_role(ccd, "LATENT")
                         if (t := delays_by_ccd.get(ccd, {}).get(f.frame.obsid)) is not None})
        out.value("latent_delay_s", delays)
        name = f"{ctx.test.name}_persistence.csv"
        out.tables.append(CsvTable(name, ("ccd", "quadrant", "obsid", "role", "seconds_after_expose", "inside_adu",
                                          "inside_std_adu", "pixels_inside", "outside_adu", "pixels_outside",
                                          "excess_adu"), table))
        test = ctx.test.name
        out.plots.append(Plot("persistence", lambda: decay_figure(test, series)))
        out.sections.append(Section("Persistence", "\n\n".join([
            "Footprint: the saturated pixels of the EXPOSE frame (full-well plateau or ADC ceiling). Per REFER and "
            "LATENT dark, the clipped mean of the offset-subtracted pixels inside the footprint minus that outside "
            "(the frame's own dark level; the inside level alone when the footprint leaves too few pixels). "
            "Persistence = that excess in a LATENT frame minus its mean over the REFER frames; "
            f"table `products/{name}` (seconds after the EXPOSE frame's time stamp).",
            markdown_table(["CCD", "Q", "first LATENT (e-)", "all LATENT (e-)", "release time (s)"], rows),
        ])))
        result.outputs = out
        return result


def decay_figure(test: str, series: dict[tuple[int, str], tuple[list[float], list[float]]]):
    if not series:
        return None
    from .figures import new_figure

    figure = new_figure(7, 4)
    axes = figure.add_subplot(1, 1, 1)
    for (ccd, q), (delays, values) in sorted(series.items()):
        axes.plot(delays, values, marker="o", label=f"CCD{ccd} {q}")
    axes.set_xlabel("seconds after the saturating exposure")
    axes.set_ylabel("persistence (e-/pixel)")
    axes.set_title(f"{test}: persistence in the saturated footprint")
    axes.legend(fontsize=6, ncol=3)
    return figure


# ---------------------------------------------------------------------------------------------
# Check: dark level of REFER and LATENT frames (BGD_OOL)
# ---------------------------------------------------------------------------------------------

def check_backgrounds(ctx: TaskContext, stats: RawStats) -> None:
    """Image median minus the mean of prescan and overscan medians of the REFER and LATENT darks
    within `background_adu`, else BGD_OOL (vison's check)."""
    low, high = ctx.limits.background_adu
    roles = frame_roles(ctx)
    for (obsid, ccd), frame in sorted(stats.by_frame.items()):
        if roles.get(obsid) not in ("REFER", "LATENT"):
            continue
        for q in QUADRANTS:
            s = frame[q]
            level = s.image.median - 0.5 * (s.prescan.median + s.overscan.median)
            if not low <= level <= high:
                ctx.flags.raise_flag("BGD_OOL", f"{roles[obsid]} dark level {level:.1f} ADU outside [{low:g}, "
                                     f"{high:g}] ADU", ccd=ccd, quadrant=q, obsid=obsid)


FAMILY = Family(
    name="persist",
    noise_regions=("prescan",),  # the overscan after an exposed image holds trailed charge, not noise
    summary="PERSIST01: residual charge after a saturating exposure, its decay, saturated footprints.",
    subtasks=("init", "check", "prep", "satur_masks", "basic", "meta", "report"),
    task=PersistenceTask,
    limits=PersistenceLimits,
    values=(
        ValueSpec("saturated_pixels", "", None, "saturated image pixels of the EXPOSE frame (the footprint)"),
        ValueSpec("saturated_fraction", "fraction", 5, "footprint / image pixels"),
        ValueSpec("saturation_level_adu", "ADU", 1, "full-well plateau of the EXPOSE frame above the offset"),
        ValueSpec("persistence_adu", "ADU", 3, "first LATENT frame's excess in the footprint minus the REFER frames'"),
        ValueSpec("persistence_e", "e-", 2, "persistence_adu x gain: electrons per footprint pixel", key=True),
        ValueSpec("persistence_err_e", "e-", 2, "its error: REFER spread and the LATENT mean's noise"),
        ValueSpec("persistence_decay_e", "e-", 2, "persistence of each LATENT frame in order"),
        ValueSpec("persistence_tau_s", "s", 0, "release time from the decay over the LATENT frames", key=True),
        ValueSpec("gain_e_per_adu_used", "e-/ADU", None, "gain converting ADU to electrons"),
        ValueSpec("latent_delay_s", "s", None, "seconds from the EXPOSE frame's time stamp to each LATENT frame's",
                  scope="test"),
        ValueSpec("saturation_criterion", "", None, "how saturated pixels are told", scope="test"),
    ),
    checks=(check_backgrounds,),
    saturation_expected=True,  # the test saturates on purpose
    per_quadrant=QuadrantConsumers(plan=read_plan, start=start_persist, subtasks=("satur_masks", "basic")),
    needs=("gain",),
    fits_products=True,
)
