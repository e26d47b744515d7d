"""FLAT01 (and FLAT02_*, FLAT_STB) over the focal plane: master flats and PRNU of the 144 quadrants
of LE1 flats, the master flats and the flat-defect mask in the LE1 layout.

The block FLAT01's analysis (flat.py, flat_lib.py), by its code, on each LE1 quadrant:
- columns: the FPA log has no test structure, so a column (fluence) is an exposure time, each
  extension's EXPTIME (fpa_ptc.fluence_columns: ranks in order of first appearance), labelled
  col001, col002... as the block labels a column beyond its structure; EXPTIME 0 is no flat;
- master flats: the block's consumer of the check's read (flat.FAMILY.per_quadrant.start,
  flat.FlatReadConsumer) fed by the quadrant unit (fpa_family.py) as the block's quadrant pass
  feeds it: each frame's quadrant counts as read and its check statistics (offset: the prescan's
  clipped mean; level: the image's clipped mean minus it). Per column the per-pixel clipped mean
  of the frames each divided by its level, over the column's smooth illumination model (FLAT),
  its error (EFLAT), the frames combined; the inverse-variance mean of the columns. Each frame is
  read once; memory is the block's (the sums of the columns still open);
- PRNU per column (flat.prnu_percent through flat.ColumnSums: 5-sigma clipped std of the master's
  image pixels, its noise removed in quadrature) and the block's other per-column values
  (flat.column_values: same names, units, lists in column order);
- the check's fluence and flux (flat_lib.quadrant_fluences, fluence_flux_values) and their flags
  FLUENCE_OOL, FLUX_OOL (flat_lib.fluence_flux_problems, the block's reasons), judged per quadrant
  as the block does; the expectation min(exptime / tFWC_flat(nm), 1) x full_well_adu takes the
  wavelength from the catalogue's test (FLAT01: 800 nm) and tFWC_flat from the default chamber
  profile (the FPA has no chamber file); RON_OOL on the prescan noise (the family's noise region).

The consumer here is the block's, wrapped (`LE1FlatConsumer`): when the block's has staged its
planes (canonical image area, float32), the wrapper writes each column's FLAT and EFLAT as the
quadrant's LE1 planes (full quadrant, FLAT 1 and EFLAT 0 outside the image area as the block's
product; tile-compressed with a step a fraction of the column's noise, oriented as the LE1
extension: fpa_products.write_ratio_plane) and its mask, then deletes the staged file; the unit
returns only figures and paths. Products (`meta`, products/): per column
EUC_FF_<nm>nm_col<NNN>_FPA.fits (FLAT) and _ERR.fits (EFLAT), NCOMB a card of each extension
(the block's NCOMB plane is that one number a quadrant); EUC_MASK_FPA.fits. The inverse-variance
mean of the columns (the block's per-CCD calibration product) is made for the mask, not written:
astropy's cost per compressed plane (~10 ms, its header handling) is what the units' products
cost on small frames.

The mask (`meta`, EUC_MASK_FPA.fits): the block COSMETICS00's flat defects (cosmetics.defect_map
on a flat, cosmetics.py's docstring): the relative response of each image pixel, the master flat
(inverse-variance mean of the columns) over its smooth background (block medians, bilinearly
interpolated), DEAD below `dead_response_max` (0.1), LOW below `flat_response_range` (0.75), HIGH
above it (1.25), BAD_COLUMN where a column has `bad_column_fraction` (10 %) of its pixels flagged;
COSMETICS00's default limits, its DEFECTS bits.

The FPA mode uses the family's default limits (no campaign file), here as in pipeline/fpa_run.py.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from ..formats.fpa import FPAQuadrant
from ..formats.geometry import CCDGeometry
from ..formats.le1 import LE1Extension
from .cosmetics import (
    BAD_COLUMN,
    DEAD,
    HIGH,
    LOW,
    CosmeticsLimits,
    Thresholds,
    defect_map,
)
from .flat import FAMILY as FLAT_FAMILY
from .flat import (
    MIN_CLIP_FRAMES,
    PRNU_METHOD,
    ColumnFlat,
    FlatLimits,
    FlatPlan,
    StagedFlats,
    column_values,
)
from .flat_lib import (
    FrameInfo,
    QuadrantFluence,
    fluence_flux_problems,
    fluence_flux_values,
    quadrant_fluences,
)
from .fpa_bias import ron_flags
from .fpa_family import (
    CcdValues,
    FPAConsumer,
    FPAFamily,
    FPAQuadrantResult,
    PlanesProduct,
    check_values,
)
from .fpa_products import (
    FLAT_BITS,
    FLAT_MASK_PRODUCT,
    FPAProduct,
    place_cards,
    write_mask_plane,
    write_ratio_plane,
)
from .fpa_ptc import fluence_columns
from .stacking import QUANT_FRACTION
from .stats import CLIP_SIGMA

LIMITS: FlatLimits = FLAT_FAMILY.limits()  # what fpa_run passes to `flags` (declared.limits())
COMBINED = "ALL"  # label of the inverse-variance mean of the columns (the block's per-CCD master): the mask's
FLAT_METHOD = "clipped mean(frame/level) / illum. model"  # the block's master flat METHOD
ERROR_METHOD = "std of kept values/sqrt(kept)/illum. model"
FALLBACK_NOISE = 1e-3  # a plane's quantisation reference when its noise is unknown (one frame: no EFLAT)
DEFECT_VALUES = {"mask_dead_pixels": DEAD, "mask_low_response_pixels": LOW, "mask_high_response_pixels": HIGH}


def column_label(column: int) -> str:
    """The FPA's label of a fluence column (0-based), as the block labels one beyond its structure."""
    return f"col{column + 1:03d}"


@dataclass(frozen=True)
class LE1FlatPlan:
    """The plan of one quadrant's flat consumer (small, picklable): the block's, and the LE1's."""

    read: FlatPlan  # the block consumer's: per frame (OBSID order) its column label, None: not a flat
    place: FPAQuadrant  # where the quadrant lies: its LE1 orientation and cards
    planes: Path | None  # folder of its LE1 planes; None: the products are off
    exptimes: dict[str, float]  # column label -> exposure time (s)
    wavelength_nm: int | None  # the catalogue test's


@dataclass(frozen=True)
class FPAFlats:
    """What a quadrant's flat consumer gives back: the block's figures, and what it wrote."""

    columns: tuple[str, ...]  # every column planned, in order
    figures: list[ColumnFlat]  # the columns made (flat.ColumnFlat: PRNU, fluence, noise...)
    members: dict[str, tuple[int, ...]]  # column -> frame indices combined (OBSID order)
    exptimes: dict[str, float]
    wavelength_nm: int | None
    planes: dict[tuple[str, str], Path]  # (plane "flat" | "flat_error" | "flat_mask", column or ALL) -> file
    defects: dict[int, int]  # DEFECTS bit -> pixels of the mask; BAD_COLUMN: columns


@cache
def test_wavelength(test: str) -> int | None:
    from ..campaign.catalogue import UnknownTestError, resolve_test

    try:
        return resolve_test(test).wavelength
    except UnknownTestError:
        return None


@cache
def default_tfwc_flat() -> dict[int, float]:
    """nm -> the default chamber profile's time to full well of the flat source (s)."""
    from ..campaign.chamber import load_chamber

    return dict(load_chamber().tfwc_flat)


def plan_flats(extensions: Sequence[LE1Extension], folder: Path, products: bool, test: str) -> LE1FlatPlan | None:
    """FPAConsumer.plan (`writes`): each frame's column from its extension's EXPTIME (None: no
    flat), the block consumer's staging in `folder`; None if no frame is a flat."""
    exptimes = [e.exptime if e.exptime is not None and e.exptime > 0 else None for e in extensions]
    columns = fluence_columns(exptimes)
    labels = tuple(column_label(c) if c is not None else None for c in columns)
    if all(label is None for label in labels):
        return None
    place = extensions[0].place
    # the block names its staged file flat_CCD<n>_<Q>.f32: n = ji keeps the 144 quadrants apart
    read = FlatPlan(labels, folder / "flat_read", place.ccd.slice * 10 + place.ccd.column)
    times = {label: float(t) for label, t in zip(labels, exptimes) if label is not None and t is not None}
    return LE1FlatPlan(read, place, folder if products else None, times, test_wavelength(test))


class LE1FlatConsumer:
    """The block's flat consumer (flat.FlatReadConsumer) of one LE1 quadrant; its staged planes
    then written as the quadrant's LE1 planes and mask (`le1_planes`), the staged file removed."""

    def __init__(self, quadrant: str, geometry: CCDGeometry, plan: LE1FlatPlan):
        self.geometry, self.plan = geometry, plan
        self.read = FLAT_FAMILY.per_quadrant.start(quadrant, geometry, plan.read)

    def add(self, index: int, counts: np.ndarray, stats: Any) -> None:
        self.read.add(index, counts, stats)

    def result(self) -> FPAFlats:
        staged: StagedFlats = self.read.result()
        try:
            planes, defects = le1_planes(staged, self.geometry, self.plan)
        finally:
            staged.path.unlink(missing_ok=True)
        return FPAFlats(tuple(dict.fromkeys(label for label in self.plan.read.columns if label is not None)),
                        staged.figures, staged.members, self.plan.exptimes, self.plan.wavelength_nm, planes, defects)


def start_le1_flats(quadrant: str, geometry: CCDGeometry, plan: LE1FlatPlan) -> LE1FlatConsumer:
    """Worker: the consumer of one LE1 quadrant (module-level: it travels to the workers by name)."""
    return LE1FlatConsumer(quadrant, geometry, plan)


def le1_planes(staged: StagedFlats, geometry: CCDGeometry,
               plan: LE1FlatPlan) -> tuple[dict[tuple[str, str], Path], dict[int, int]]:
    """Worker: the staged planes (canonical image area) as LE1 planes, full quadrant (FLAT 1, EFLAT
    0 outside the image area, as the block's product), flipped as the extension is stored,
    compressed with a step a fraction of the column's noise (median EFLAT); the flat-defect mask of
    the combination. Returns (the files written, the mask's counts)."""
    if not staged.planes:
        return {}, {}
    place = plan.place
    stored = (slice(None, None, -1 if place.flip_rows else 1), slice(None, None, -1 if place.flip_cols else 1))
    image = geometry.canonical_region("image")
    cards = place_cards(place)
    data = np.memmap(staged.path, np.float32, mode="r", shape=(len(staged.planes), *staged.shape))
    written: dict[tuple[str, str], Path] = {}
    defects: dict[int, int] = {}
    for i in range(0, len(staged.planes), 2):
        label, _, frames = staged.planes[i]
        flat, eflat = data[i], data[i + 1]
        noise = float(np.median(eflat))
        if label is None:  # the combination: the mask, from the master of all columns
            bits, _ = defect_map(None, flat, Thresholds.of(CosmeticsLimits()))
            defects = {bit: int(np.count_nonzero(bits & bit)) for bit in (DEAD, LOW, HIGH)}
            defects[BAD_COLUMN] = int(np.count_nonzero((bits & BAD_COLUMN).any(axis=0)))
            if plan.planes is not None:
                full = np.zeros((geometry.quad_height, geometry.quad_width), np.uint8)
                full[image] = bits
                path = plan.planes / f".flatmask.{place.extname}.fits"
                written[("flat_mask", COMBINED)] = write_mask_plane(
                    path, place.extname, full[stored],
                    [*cards, ("NDEAD", defects[DEAD], "dead pixels in this quadrant"),
                     ("NLOW", defects[LOW], "low-response pixels"), ("NHIGH", defects[HIGH], "high-response pixels"),
                     ("NBADCOL", defects[BAD_COLUMN], "bad columns")], FLAT_BITS)
        if plan.planes is None or label is None:  # the combination is the mask's, not a product (docstring)
            continue
        reference = noise if math.isfinite(noise) and noise > 0 else FALLBACK_NOISE
        extra = [*cards, ("COLUMN", label, "fluence column"), ("NCOMB", frames, "frames combined in this quadrant"),
                 ("EXPTIME", plan.exptimes.get(label, -1.0), "exposure time of the column (s)")]
        for plane, values, outside in (("flat", flat, 1.0), ("flat_error", eflat, 0.0)):
            full = np.full((geometry.quad_height, geometry.quad_width), outside, np.float32)
            full[image] = values
            step = reference * QUANT_FRACTION["median" if plane == "flat" else "spread"]
            written[(plane, label)] = write_ratio_plane(plan.planes / f".{plane}.{label}.{place.extname}.fits",
                                                       place.extname, full[stored], step, reference, extra)
    return written, defects


# -- values and flags (the run's process) ------------------------------------------------------------------

def quadrant_fluence(result: FPAQuadrantResult) -> QuadrantFluence | None:
    """The block check's fluences and flux of one quadrant (flat_lib.quadrant_fluences), each
    frame keyed by its index in the quadrant's frame list."""
    flats: FPAFlats | None = result.consumed
    nm = flats.wavelength_nm if flats is not None else None
    infos, frames = {}, []
    for index, exptime, column, stats in zip(result.used, result.exptimes, fluence_columns(
            [t if t is not None and t > 0 else None for t in result.exptimes]), result.frame_stats):
        if column is None:
            continue
        infos[index] = FrameInfo(index, column, column_label(column), float(exptime), 0, nm, True, 0.0)
        frames.append((index, stats))
    if not frames:
        return None
    return quadrant_fluences(infos, frames, float(LIMITS.full_well_adu), default_tfwc_flat())


def quadrant_values(result: FPAQuadrantResult, gain: float) -> dict[str, Any]:
    """The flat family's per-quadrant values of one FPA quadrant (not yet rounded); `gain` is not
    used (a flat's values are relative, its fluences in ADU)."""
    values: dict[str, Any] = check_values(result)
    fluence = quadrant_fluence(result)
    if fluence is not None and fluence.columns:
        values.update(fluence_flux_values(fluence))
    flats: FPAFlats | None = result.consumed
    if flats is not None:
        values.update(column_values(flats.figures, flats.columns))
        if flats.defects:
            values.update({name: flats.defects[bit] for name, bit in DEFECT_VALUES.items()})
            values["mask_bad_columns"] = flats.defects[BAD_COLUMN]
    return values


def quadrant_flags(result: FPAQuadrantResult, limits: FlatLimits) -> list[tuple[str, str]]:
    """FLUENCE_OOL and FLUX_OOL as the block's check raises them (flat_lib.fluence_flux_problems),
    the frames named by their file."""
    fluence = quadrant_fluence(result)
    if fluence is None:
        return []
    names = dict(zip(result.used, result.frame_names))
    return fluence_flux_problems(fluence, default_tfwc_flat(), float(limits.full_well_adu),
                                 float(limits.flat_fluence_tolerance), float(limits.tfwc_tolerance),
                                 frame=lambda index: names.get(index, f"frame {index}"))


def flat_flags(ccds: CcdValues, limits: Any) -> list[dict[str, Any]]:
    """RON_OOL for a prescan noise outside the limits (the generic check's, the family's noise region)."""
    return ron_flags(ccds, tuple(limits.ron_adu), ("ron_prescan_adu",))


def _flats(results: Sequence[FPAQuadrantResult | None]) -> list[FPAFlats]:
    return [r.consumed for r in results if r is not None and isinstance(r.consumed, FPAFlats)]


def _columns(flats: Sequence[FPAFlats]) -> tuple[list[str], dict[str, float], int | None]:
    labels = list(dict.fromkeys(label for f in flats for label in f.columns))
    exptimes = {label: t for f in flats for label, t in f.exptimes.items()}
    wavelength = next((f.wavelength_nm for f in flats if f.wavelength_nm is not None), None)
    return labels, exptimes, wavelength


def flat_test_values(results: Sequence[FPAQuadrantResult]) -> dict[str, Any]:
    labels, exptimes, wavelength = _columns(_flats(results))
    return {"flat_columns": labels, "exptime_s": [exptimes[label] for label in labels],
            "wavelength_nm": wavelength, "prnu_method": PRNU_METHOD,
            "tfwc_source": "default chamber profile (tFWC_flat per wavelength)"}


def product_name(wavelength: int | None, label: str, error: bool = False) -> str:
    """EUC_FF_<nm>nm_col<NNN>_FPA[_ERR].fits: the block's master-flat names, the FPA for the CCD."""
    return f"EUC_FF_{wavelength if wavelength is not None else 'NA'}nm_{label}_FPA{'_ERR' if error else ''}.fits"


def flat_products(records: Sequence[tuple[str, FPAQuadrantResult | None]]) -> list[PlanesProduct]:
    """The meta sub-task's LE1-layout products from the units' planes: per column the master flat
    and its error, then the flat-defect mask."""
    labels, exptimes, wavelength = _columns(_flats([r for _, r in records]))
    made: list[PlanesProduct] = []
    for label in labels:
        cards = (("WAVELEN", wavelength if wavelength is not None else -1, "wavelength (nm), the test's"),
                 ("COLUMN", label, "fluence column"),
                 ("EXPTIME", exptimes.get(label, -1.0), "exposure time of the column's frames (s)"))
        made.append(_planes_product(records, FPAProduct("flat", product_name(wavelength, label), "MASTERFLAT",
                                                        FLAT_METHOD), ("flat", label), label, cards))
        made.append(_planes_product(records, FPAProduct("flat_error", product_name(wavelength, label, error=True),
                                                        "MASTERFLAT_ERR", ERROR_METHOD), ("flat_error", label),
                                    label, cards))
    cards = (("WAVELEN", wavelength if wavelength is not None else -1, "wavelength (nm), the test's"),)
    made.append(_planes_product(records, FLAT_MASK_PRODUCT, ("flat_mask", COMBINED), None, cards))
    return made


def _planes_product(records: Sequence[tuple[str, FPAQuadrantResult | None]], product: FPAProduct,
                    key: tuple[str, str], column: str | None, cards: tuple[tuple[str, Any, str], ...]) -> PlanesProduct:
    files, missing, partial, frames = [], [], [], set()
    for extname, record in records:
        flats = record.consumed if record is not None and isinstance(record.consumed, FPAFlats) else None
        path = flats.planes.get(key) if flats is not None else None
        files.append(path)
        if path is None:
            why = (record.consumer_error if record is not None and record.consumer_error
                   else "no flat frame usable" if flats is None or not flats.figures else f"no {key[1]} plane")
            missing.append(why if why.startswith(extname) else f"{extname}: {why}")
            continue
        combined = [i for label, indices in flats.members.items() if column in (None, label) for i in indices]
        frames.update(combined)
        partial.append((extname, len(combined)))
    total = len(frames)
    return PlanesProduct(product, tuple(files), tuple(sorted(frames)), cards,
                         tuple(f"{extname}: {n} of {total} frames combined" for extname, n in partial if n != total),
                         tuple(missing))


def flat_tests() -> tuple[str, ...]:
    """FLAT01, the FLAT02 wavelengths and FLAT_STB: the catalogue's flat-family tests (flats all)."""
    from ..campaign.catalogue import acquired_tests

    return acquired_tests("flat")


FPA_FAMILY = FPAFamily(
    tests=flat_tests(),
    family="flat",
    summary="master flats and PRNU per quadrant and fluence column, the FPA master flats and flat-defect mask",
    quadrant_values=quadrant_values,
    flags=flat_flags,
    quadrant_flags=quadrant_flags,
    consumer=FPAConsumer(start=start_le1_flats, plan=plan_flats, writes=True),
    consumer_products=flat_products,
    test_values=flat_test_values,
    maps=("prnu_pct",),
    report_title="Master flats and PRNU (first column; every column in result.json)",
    report_columns=(("offset pre (ADU)", "offset_prescan_adu", 2), ("flux (ADU/s)", "flux_adu_per_s", 1),
                    ("PRNU (%)", "prnu_pct", 3), ("noise (%)", "flat_noise_pct", 3),
                    ("frames", "frames_combined", 0), ("dead", "mask_dead_pixels", 0),
                    ("low", "mask_low_response_pixels", 0)),
    report_method=("Columns: frames of the same exposure time (EXPTIME). Per column and quadrant the master flat: "
                   "the per-pixel clipped mean of the offset-subtracted frames each divided by its level (of each "
                   f"pixel's values, the two highest and the lowest dropped if {CLIP_SIGMA:g} sigma from the others; "
                   f"a plain mean under {MIN_CLIP_FRAMES} frames), divided by the column's smooth illumination model (bicubic spline "
                   "through box medians: 25 px, fewer on small frames). PRNU: " + PRNU_METHOD
                   + ". Fluence and flux against the default chamber profile's tFWC_flat (the block FLAT01's "
                   "analysis, docs/results.md)."),
    report_products=("Per fluence column the master flat (`EUC_FF_<nm>nm_colNNN_FPA.fits`: FLAT, relative response) "
                     "and its error (`..._ERR.fits`: EFLAT) in the LE1 layout (names, order and orientation of the "
                     "LE1 input); per extension NCOMB (frames combined), COLUMN, EXPTIME, and the quantisation step "
                     "QSTEP, a fraction of the quadrant's flat noise QNOISE (median EFLAT). `EUC_MASK_FPA.fits`: the "
                     "flat defects of COSMETICS00 (DEFECTS bits 2 dead, 4 low response, 8 high response, 16 bad "
                     "column) of the inverse-variance mean of the column masters over its smooth background; per "
                     "extension NDEAD, NLOW, NHIGH, NBADCOL."),
)
