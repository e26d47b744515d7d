"""What every analysis over the focal plane shares: one work unit per LE1 quadrant, and the
declaration (`FPAFamily`) a module `fpa_<family>.py` makes to run its tests over the FPA.

    FPA_FAMILY = FPAFamily(tests=("DARK01",), family="dark", quadrant_values=..., ...)

The unit (`fpa_quadrant_unit`) is the same for every family: it maps its extension of each LE1
frame, measures each frame's quadrant with the block's check statistics (measures.quadrant_stats:
offsets, medians, noise of prescan, image and overscan), then walks the frames in row bands once
(stacking.quadrant_bands) through the block's compiled pass (bandpass.fuse_band), feeding what the
family asks for: the read-noise histograms (bandpass.NoiseAccumulator, the bias family's) and/or
the per-pixel median and spread of the offset-subtracted frames (fpa_products.LE1StackWriter),
from which the master, its image statistics and the cosmetics mask come. A family may also
declare a per-quadrant consumer (`FPAConsumer`: its block family's `per_quadrant.start`, e.g.
PTC's ptc_lib.PairTiles, a flat's column sums): the unit feeds it each frame's quadrant counts
and check statistics as the block's quadrant pass does (quadrant_pass.py) and returns its result;
a consumer that `writes` (fpa_flat.py) also writes its quadrant's LE1 planes in the run's staging
folder, which the family's `consumer_products` names for the meta step. The family's
`quadrant_values` turns the unit's record into its block family's values (same names, units,
precision as docs/results.md); `flags` applies its checks; the run (pipeline/fpa_run.py) does the
rest: the index, the executor, result.json per CCD C_ji, the LE1-layout products, the FPA maps.

The families are discovered: every module of engine.tasks that defines `FPA_FAMILY`.
"""

from __future__ import annotations

import importlib
import math
import pkgutil
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from ..formats.fpa import FPALayout
from ..formats.geometry import CCDGeometry
from ..formats.le1 import LE1Extension, LE1Quadrant
from .bandpass import NoiseAccumulator, fuse_band, window_rows
from .calproducts import NOMINAL_GAIN_E_PER_ADU
from .fpa_products import (
    FPAProduct,
    LE1StackTarget,
    LE1StackWriter,
    QuadrantMaster,
    quadrant_read_noise,
)
from .measures import REGIONS, QuadrantStats, counts_stats
from .outputs import CsvTable
from .stacking import band_rows_for, quadrant_bands

CcdValues = dict[str, dict[str, dict[str, Any]]]  # C_ji -> quadrant -> value name -> value


@dataclass(frozen=True)
class UnitWork:
    """What a family asks of each quadrant unit (plain values: it travels to the workers)."""

    noise: bool = False  # the read noise of each region (residuals to the per-pixel mean)
    write_planes: bool = True  # compress the stack's planes for the products (else: statistics only)
    hot_threshold_adu: float | None = None  # count stack pixels this far above the stack's level


@dataclass(frozen=True)
class FPAQuadrantResult:
    """What one quadrant's unit gives back: small numbers only (and where its planes are)."""

    extname: str
    frame_stats: list[QuadrantStats]  # per frame used: the check's statistics of the quadrant
    exptimes: list[float | None]  # per frame used: the extension's EXPTIME header (s)
    ron: dict[str, float]  # region -> read noise (ADU); NaN with fewer than 2 frames or not asked
    left_out: list[str] = field(default_factory=list)  # frames left out, each with why
    master: QuadrantMaster | None = None  # the stack's statistics (and planes, when written)
    master_error: str | None = None  # why the planes could not be written
    used: tuple[int, ...] = ()  # per frame used: its index in the unit's frame list (OBSID order)
    frame_names: tuple[str, ...] = ()  # per frame used: its file name
    consumed: Any = None  # the family's consumer's result (FPAFamily.consumer), None without one
    consumer_error: str | None = None  # why the consumer has no result

    @property
    def frames_used(self) -> int:
        return len(self.frame_stats)

    def levels(self, region: str) -> list[float]:
        """Per frame used: the region's clipped mean (ADU)."""
        return [getattr(s, region).clipped_mean for s in self.frame_stats]

    @property
    def saturated(self) -> int:
        return sum(s.saturated for s in self.frame_stats)

    @property
    def lost(self) -> int:
        return sum(s.lost for s in self.frame_stats)


@dataclass(frozen=True)
class FPAConsumer:
    """A block family's per-quadrant consumer (family.QuadrantConsumers) fed by the FPA units: the
    block's `start` (module-level: it travels to the workers by name; or a module-level wrapper of
    it that also writes the quadrant's LE1 planes, as fpa_flat.py's), and the FPA's own `plan`,
    made in the run's process per quadrant from its frames' LE1 extensions in OBSID order (the
    FPA log has no test structure: e.g. the fluences from each extension's EXPTIME); the plan's
    indices refer to that list, as the block's refer to a CCD's frames. None: nothing to consume."""

    start: Callable[[str, CCDGeometry, Any], Any]
    plan: Callable[..., Any]  # (extensions) -> plan; with `writes`, (extensions, folder, products) -> plan
    # the consumer writes files (a flat's staged planes, its LE1 planes): the plan is then also given a
    # folder of the run's staging area the workers can write into, and whether the products are made
    writes: bool = False


@dataclass(frozen=True)
class PlanesProduct:
    """An LE1-layout product whose planes a family's consumer wrote in the units (a master flat of
    one fluence column): one plane file per quadrant (an empty primary, the extension `j-i.Q`)."""

    product: FPAProduct
    planes: tuple[Path | None, ...]  # per quadrant in LE1 order; None: not written
    frames: tuple[int, ...]  # the run's frames combined (indices in OBSID order), for the provenance
    cards: tuple[tuple[str, Any, str], ...] = ()  # extra primary-header cards
    partial: tuple[str, ...] = ()  # a COMMENT each: quadrants that combined fewer frames
    missing: tuple[str, ...] = ()  # per quadrant without a plane: why


@dataclass(frozen=True)
class FPAFamily:
    """A block family's tests run over the FPA: what the units compute, and how their records
    become the family's values, flags, products and report.

    `stack`: "always" when the values come from the median stack (DARK01's dark signal), "meta"
    when only the products need it (BIAS01's master), "never". The products (master, spread, and
    the cosmetics mask when `mask`) are written by the `meta` sub-task."""

    tests: tuple[str, ...]
    family: str  # the block family (registry): value specs, limits
    summary: str  # what it measures, for the CLI's help and the docs
    quadrant_values: Callable[[FPAQuadrantResult, float], dict[str, float]]  # (record, gain) -> values
    flags: Callable[[CcdValues, Any], list[dict[str, Any]]]  # (ccds, the family's limits) -> flag reasons
    # checks on one quadrant's record, for what its values do not hold (a pair left out, a fluence
    # off its exposure time): (record, the family's limits) -> [(flag, reason)]
    quadrant_flags: Callable[[FPAQuadrantResult, Any], list[tuple[str, str]]] = lambda record, limits: []
    products: tuple[FPAProduct, ...] = ()  # the meta sub-task's LE1-layout products, in order
    noise: bool = False
    stack: str = "never"  # "always" | "meta" | "never"
    spread: str = "std"  # the spread plane: the frames' "std" or the median's "error"
    mask: bool = False  # the cosmetics mask (fpa_products.MASK_PRODUCT) among the products
    hot_threshold_adu: float | None = None
    test_values: Callable[[Sequence[FPAQuadrantResult]], dict[str, Any]] = lambda results: {}
    maps: tuple[str, ...] = ()  # values drawn by default as FPA maps
    map_limits: Callable[[str, Any], tuple[float, float] | None] = lambda value, limits: None
    report_title: str = ""  # the table's section title
    report_columns: tuple[tuple[str, str, int], ...] = ()  # (header, value name, decimals)
    report_method: str = ""  # how the values are measured (a paragraph of report.md)
    product_cards: Callable[[Sequence[FPAQuadrantResult]], list[tuple[str, Any, str]]] = lambda results: []
    consumer: FPAConsumer | None = None  # fed each frame's quadrant by the units (PTC: the pairs' tiles)
    # the meta sub-task's CSV products (products/<name>): (test, the values per C_ji) -> tables
    tables: Callable[[str, CcdValues], list[CsvTable]] = lambda test, ccds: []
    # the meta sub-task's LE1-layout products whose planes the consumer wrote: ((extname, the unit's
    # record or None) in LE1 order) -> products (fpa_flat.py: the master flats, the mask)
    consumer_products: Callable[[Sequence[tuple[str, FPAQuadrantResult | None]]], list[PlanesProduct]] | None = None
    report_products: str = ""  # report.md's paragraph on the consumer's products

    def work(self, meta: bool) -> UnitWork:
        return UnitWork(noise=self.noise, write_planes=meta, hot_threshold_adu=self.hot_threshold_adu)

    def stacks(self, meta: bool) -> bool:
        return self.stack == "always" or (self.stack == "meta" and meta)


class NotInFPAMode(ValueError):
    """A test the FPA mode does not analyse (yet): said in one line, with what it does analyse."""


@cache
def fpa_families() -> dict[str, FPAFamily]:
    """Test name -> the FPA family that runs it: every engine.tasks module defining FPA_FAMILY."""
    package = importlib.import_module(__package__)
    found: dict[str, FPAFamily] = {}
    for module_info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if not module_info.name.startswith("fpa_"):
            continue
        declared = getattr(importlib.import_module(f"{__package__}.{module_info.name}"), "FPA_FAMILY", None)
        if isinstance(declared, FPAFamily):
            for test in declared.tests:
                if test in found:
                    raise RuntimeError(f"{test} declared by two FPA families (engine.tasks.{module_info.name})")
                found[test] = declared
    return found


def fpa_family_for(test: str) -> FPAFamily:
    """The FPA family of `test`; NotInFPAMode naming the tests the FPA mode analyses otherwise."""
    name = test.upper()
    known = fpa_families()
    if name in known:
        return known[name]
    from ..campaign.catalogue import UnknownTestError, resolve

    offered = ", ".join(known)
    try:
        defined = resolve(name)
    except UnknownTestError as exc:
        raise NotInFPAMode(f"{exc}; the FPA mode analyses {offered}") from None
    family = ", ".join(dict.fromkeys(t.family for t in defined))
    raise NotInFPAMode(f"{name} is not available in FPA mode (family {family}: it runs per block, "
                       f"vison-engine run); the FPA mode analyses {offered}")


def gain_of(extension: LE1Extension) -> tuple[float, str]:
    """(gain e-/ADU, where from): the extension's GAIN header key, else the nominal gain."""
    if extension.gain is not None and math.isfinite(extension.gain) and extension.gain > 0:
        return extension.gain, "LE1 header GAIN"
    return NOMINAL_GAIN_E_PER_ADU, f"nominal {NOMINAL_GAIN_E_PER_ADU} e-/ADU (no GAIN in the LE1 header)"


def fpa_values(family: FPAFamily, results: Mapping[str, FPAQuadrantResult], layout: FPALayout,
               gains: Mapping[str, float], specs: Mapping[str, Any]) -> CcdValues:
    """`ccds -> C_ji -> quadrant -> value name -> value`, rounded as the block family declares
    (`specs`: its ValueSpecs by name), CCDs and quadrants in LE1 order."""
    ccds: CcdValues = {}
    for place in layout.quadrants:
        result = results.get(place.extname)
        if result is None:
            continue
        values = family.quadrant_values(result, gains[place.extname])
        if result.master is not None and result.master.mask_hot is not None:
            values["mask_hot_pixels"] = result.master.mask_hot
        ccds.setdefault(place.ccd.ccdid, {})[place.quadrant] = {
            name: (specs[name].round(value) if name in specs else value) for name, value in values.items()}
    return ccds


# -- the unit ------------------------------------------------------------------------------------------

def fpa_quadrant_unit(frames: Sequence[tuple[Path, LE1Extension]], geometry: CCDGeometry,
                      vstart: int = 0, vend: int | None = None, stack_target: LE1StackTarget | None = None,
                      work: UnitWork = UnitWork(),
                      feed: tuple[Callable[[str, CCDGeometry, Any], Any], Any] | None = None) -> FPAQuadrantResult:
    """Worker: one quadrant of every LE1 frame (path, the extension's index entry), read once for
    the per-frame statistics (and, with `feed` = (the consumer's start, its plan), handed with
    them to the family's consumer) and once, band by band, for what `work` asks (the read noise)
    and, with `stack_target`, the median stack (its statistics, its planes, its mask). Planes that
    cannot be written (a full disk) are said in `master_error`, a consumer that fails in
    `consumer_error`; the other numbers are measured all the same."""
    extname = frames[0][1].name
    letter = frames[0][1].place.quadrant
    rows = window_rows(geometry, vstart, vend)
    quadrant_rows, quadrant_cols = geometry.quadrant_slices(letter)
    master_result: QuadrantMaster | None = None
    master_error: str | None = None
    consumer, consumed, consumer_error = None, None, None
    with ExitStack() as stack:
        views: list[LE1Quadrant] = []
        stats: list[QuadrantStats] = []
        exptimes: list[float | None] = []
        left_out: list[str] = []
        used: list[int] = []
        for index, (path, extension) in enumerate(frames):
            try:
                view = stack.enter_context(LE1Quadrant(path, extension, geometry))
                # quadrant Q as it lies in a CCD frame (frame orientation; a fresh array a frame):
                # what measures.quadrant_stats reads, and what the block's quadrant pass feeds
                counts = view.section(quadrant_rows, quadrant_cols)
                measured = counts_stats(counts, letter, geometry, rows)
            except (ValueError, OSError) as exc:  # LE1Error is a ValueError
                left_out.append(f"{Path(path).name}: {getattr(exc, 'strerror', None) or exc}")
                continue
            if not math.isfinite(measured.prescan.clipped_mean):
                left_out.append(f"{Path(path).name}: prescan of {extname} all saturated or lost: no offset")
                continue
            views.append(view)
            stats.append(measured)
            exptimes.append(extension.exptime)
            used.append(index)
            if feed is not None and feed[1] is not None and consumer_error is None:
                try:
                    if consumer is None:
                        consumer = feed[0](letter, geometry, feed[1])
                    consumer.add(index, counts, measured)
                except Exception as exc:  # noqa: BLE001 - said in the record; the other values stand
                    consumer_error = f"{extname}: {type(exc).__name__}: {exc} (frame {Path(path).name})"
        if consumer is not None and consumer_error is None:
            try:
                consumed = consumer.result()
            except Exception as exc:  # noqa: BLE001 - as above
                consumer_error = f"{extname}: {type(exc).__name__}: {exc}"
        n = len(views)
        offsets = [s.prescan.clipped_mean for s in stats]
        noise = NoiseAccumulator(n, offsets, geometry, letter) if work.noise and n >= 2 else None
        writer: LE1StackWriter | None = None
        if stack_target is not None:
            try:
                if n == 0:  # every extension of the LE1 layout is written: this one unknown
                    writer = LE1StackWriter(stack.enter_context(LE1Quadrant(*frames[0], geometry)), [], geometry,
                                            stack_target)
                    writer.fill_nan()
                else:
                    writer = LE1StackWriter(views[0], offsets, geometry, stack_target)
            except (ValueError, OSError) as exc:
                master_error = f"{extname}: master planes not written ({getattr(exc, 'strerror', None) or exc})"
        try:
            if n and (noise is not None or writer is not None):
                _banded_pass(views, geometry, letter, noise, writer)
            if writer is not None:
                try:
                    master_result = writer.finish(quadrant_read_noise([s.prescan.std for s in stats]),
                                                  write=work.write_planes, hot_threshold_adu=work.hot_threshold_adu)
                except OSError as exc:  # compressing (a full disk): the numbers stand, the planes do not
                    writer.discard()
                    master_error = f"{extname}: master planes not written ({getattr(exc, 'strerror', None) or exc})"
        except BaseException:  # a failed or stopped unit leaves no plane behind
            if writer is not None:
                writer.discard()
            raise
        ron = dict(noise.result().ron) if noise is not None else {r: math.nan for r in REGIONS}
    return FPAQuadrantResult(extname=extname, frame_stats=stats, exptimes=exptimes, ron=ron, left_out=left_out,
                             master=master_result, master_error=master_error, used=tuple(used),
                             frame_names=tuple(Path(frames[i][0]).name for i in used), consumed=consumed,
                             consumer_error=consumer_error)


def _banded_pass(views: Sequence[LE1Quadrant], geometry: CCDGeometry, letter: str,
                 noise: NoiseAccumulator | None, writer: LE1StackWriter | None) -> None:
    """The frames' quadrant walked in row bands (frame orientation, as the block's pass reads a
    CCD frame), each band read once into one cube and fed to the compiled pass: the noise
    histograms over the image rows, the median and spread over every row (parallel overscan too)."""
    n = len(views)
    band_rows = band_rows_for(n, geometry)
    cube = np.empty((n, band_rows, geometry.quad_width), np.uint16)  # kept band after band
    total = np.empty((band_rows, geometry.quad_width), np.int64)
    planes = np.empty((2, band_rows, geometry.quad_width), np.float32) if writer is not None else None
    used = np.arange(n, dtype=np.int64)
    for band in quadrant_bands(geometry, letter, band_rows):
        if writer is None and band.image_rows == 0:
            continue  # parallel overscan: not part of the region statistics
        height = band.frame_rows.stop - band.frame_rows.start
        sections = cube[:, :height]
        for k, view in enumerate(views):
            sections[k] = view.section(band.frame_rows, band.cols)
        noise_rows = noise.image_band_rows(band) if noise is not None else (0, 0)
        fuse_band(sections, used, noise=noise, noise_rows=noise_rows, total=total[:height], stack=writer,
                  planes=planes[:, :height] if planes is not None else None)
        if writer is not None and planes is not None:
            writer.put(band, planes[0, :height], planes[1, :height])


def median_or_nan(values: Sequence[float]) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.median(finite)) if finite else math.nan


def check_values(result: FPAQuadrantResult) -> dict[str, float]:
    """The generic check's per-quadrant values (family.GENERIC_VALUES): offsets and noise of the
    prescan and overscan, medians over frames of each frame's median and robust std."""
    values: dict[str, float] = {}
    for region in ("prescan", "overscan"):
        values[f"offset_{region}_adu"] = median_or_nan([getattr(s, region).median for s in result.frame_stats])
        values[f"ron_{region}_adu"] = median_or_nan([getattr(s, region).std for s in result.frame_stats])
    return values
