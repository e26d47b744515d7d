"""FPA-level products in the LE1 layout: a master (bias, dark), its spread and the cosmetics mask.

    EUC_MASTERBIAS_FPA.fits      empty primary (provenance), then 144 extensions `j-i.Q` in LE1 order:
                                 per pixel, the median of the offset-subtracted frames (ADU)
    EUC_MASTERBIAS_FPA_STD.fits  the same layout: per pixel, the std (ddof 1) of those frames (ADU)
    EUC_MASTERDARK_FPA.fits      (DARK01) the same, of the dark frames; _ERR: std / sqrt(NCOMB)
    EUC_MASK_FPA.fits            the same layout, uint8: the cosmetics DEFECTS bits of each image
                                 pixel (cosmetics.py: 1 = hot), 0 = good; prescan and overscans 0
    EUC_FF_<nm>nm_col<NNN>_FPA.fits  (FLAT01, fpa_flat.py) a column's master flat (relative response),
                                 _ERR its error; the mask then holds the flat defects (2 dead, 4 low,
                                 8 high response, 16 bad column): write_ratio_plane, FLAT_MASK_PRODUCT

Each extension holds its quadrant as the LE1 input extension of that name holds it (the canonical
quadrant flipped by its LE1 position): opened beside a raw LE1 frame in ds9, a pixel of the master
lies on the same pixel of the frame.

The mask's hot pixels are the block COSMETICS00's dark defects (cosmetics.dark_defects) of the
quadrant's median stack: more than its `hot_pixel_threshold_adu` (and 10 robust sigma) above a
smooth background of the stack's image area.

Made inside the FPA quadrant units (fpa_family.fpa_quadrant_unit), from the same band reads as
the read noise: `LE1StackWriter` is fed by bandpass.fuse_band (the block's compiled median and spread, the
same float32 arithmetic) and puts each band's planes into the quadrant's float32 staging files in
the stored orientation; `finish` compresses them with stacking.compress_plane (tile compression,
quantisation step a fraction of the quadrant's read noise: stacking.QUANT_FRACTION). The run then
puts the 144 compressed planes after a provenance header (stacking.assemble_product) under a
temporary name and renames the file: a product under its final name is always whole.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import __version__
from ..formats.fpa import FPAQuadrant
from ..formats.geometry import CCDGeometry
from ..formats.le1 import LE1Quadrant
from .cosmetics import (
    BAD_COLUMN,
    DEAD,
    HIGH,
    HOT,
    HOT_SIGNIFICANCE,
    LOW,
    CosmeticsLimits,
    dark_defects,
)
from .dataset import obsid_ranges
from .measures import region_columns
from .stacking import (
    QUANT_FRACTION,
    Band,
    allocate_fits,
    assemble_product,
    compress_plane,
    network_pairs,
    quantisation_step,
    write_quantised_plane,
)
from .stats import CLIP_SIGMA, ClippedStats, clipped_stats

if TYPE_CHECKING:  # astropy takes 0.3 s to import: loaded where a FITS file is read or written
    from astropy.io import fits

MASK_THRESHOLD_ADU = float(CosmeticsLimits().hot_pixel_threshold_adu)  # COSMETICS00's default limit


@dataclass(frozen=True)
class FPAProduct:
    """One LE1-layout product of an FPA family: which plane of the units it holds, its file, kind."""

    plane: str  # "median", "spread" or "mask"
    file: str
    kind: str  # the primary header's PRODUCT
    method: str  # the primary header's METHOD


def master_products(kind: str, spread: str = "std") -> tuple[FPAProduct, FPAProduct]:
    """The master `kind` (MASTERBIAS, MASTERDARK) and its spread file: the frames' std (ddof 1), or
    the median's error, std / sqrt(NCOMB) (as the block's EDARK)."""
    suffix, method = (("STD", "std (ddof 1) of offset-subtracted frames") if spread == "std" else
                      ("ERR", "std (ddof 1) / sqrt(NCOMB) of offset-subtracted frames"))
    return (FPAProduct("median", f"EUC_{kind}_FPA.fits", kind, "median of offset-subtracted frames"),
            FPAProduct("spread", f"EUC_{kind}_FPA_{suffix}.fits", f"{kind}_{suffix}", method))


MASK_PRODUCT = FPAProduct("mask", "EUC_MASK_FPA.fits", "MASK",
                          "hot pixels of the median stack above its smooth background (COSMETICS00 dark defects)")
# a flat family's mask (fpa_flat.py): the same file name and DEFECTS bits, of the flat defects
FLAT_MASK_PRODUCT = FPAProduct("flat_mask", "EUC_MASK_FPA.fits", "MASK",
                               "dead, low- and high-response pixels, bad columns of the master flat "
                               "(COSMETICS00 flat defects)")
FLAT_PLANES = {"flat": "median", "flat_error": "spread"}  # a flat plane -> the QUANT_FRACTION it is quantised with
BIAS_PRODUCTS = (*master_products("MASTERBIAS"), MASK_PRODUCT)
MASTER_FILE, SPREAD_FILE = BIAS_PRODUCTS[0].file, BIAS_PRODUCTS[1].file
QRON_METHOD = "median over frames of the quadrant's trimmed prescan robust std"


@dataclass(frozen=True)
class LE1StackTarget:
    """Where one quadrant unit writes its two compressed planes (paths: the unit writes them)."""

    extname: str
    median_plane: Path  # a FITS with an empty primary and the compressed extension `extname`
    spread_plane: Path
    spread: str = "std"  # what bandpass.fuse_band reads: the frames' std, or "error" (std / sqrt(n))
    mask_plane: Path | None = None  # the quadrant's cosmetics mask, when the family makes one

    def staging(self, plane: Path) -> Path:
        """The float32 file a plane is filled in before it is compressed."""
        return plane.with_name(f"{plane.stem}.float32.fits")


def stack_targets(folder: Path, extnames: Sequence[str], spread: str = "std",
                  mask: bool = False) -> dict[str, LE1StackTarget]:
    """The plane files of each quadrant, in `folder` (a staging folder the workers can write to)."""
    return {name: LE1StackTarget(name, folder / f".median.{name}.fits", folder / f".spread.{name}.fits", spread,
                                 folder / f".mask.{name}.fits" if mask else None) for name in extnames}


@dataclass(frozen=True)
class QuadrantMaster:
    """One quadrant of the FPA master, compressed: its plane files and what they hold."""

    extname: str
    median_plane: Path | None  # None: not written (the products switched off), the statistics stand
    spread_plane: Path | None
    frames: int  # frames combined
    ron_adu: float  # read noise the quantisation steps are fractions of (QRON)
    steps: dict[str, float]  # plane -> quantisation step (ADU)
    level: ClippedStats  # clipped statistics of the master's image area (ADU)
    hot_count: int | None = None  # image pixels more than the unit's hot threshold above `level.mean`
    mask_plane: Path | None = None
    mask_hot: int | None = None  # hot pixels of the cosmetics mask
    mask_threshold_adu: float = math.nan  # the mask's hot threshold used (the limit, or 10 robust sigma)


def place_cards(place: FPAQuadrant) -> list[tuple[str, Any, str]]:
    """The extension cards saying where a quadrant lies (every FPA product's planes carry them)."""
    return [("CCDID", f"{place.ccd.slice}-{place.ccd.column}", "FPA CCD j-i, as the LE1 input"),
            ("QUADID", place.quadrant, "quadrant"),
            ("FPACCD", place.ccd.ccdid, "FPA CCD"),
            ("BLOCK", place.ccd.block, "flight block"), ("BLOCKCCD", place.ccd.block_ccd, "CCD of the block")]


class LE1StackWriter:
    """One quadrant of the FPA master, band by band, in its LE1 extension's orientation.

    What bandpass.fuse_band takes from a stacking.StackWriter (`offsets32`, `pairs`,
    `target.spread`), so the compiled pass computes the median and spread; `put` then writes each
    band's planes (frame orientation, as read) into the staging files flipped as the extension is
    stored. The staging files are made at once (allocate_fits: a full disk is an OSError here)."""

    def __init__(self, view: LE1Quadrant, offsets: Sequence[float], geometry: CCDGeometry, target: LE1StackTarget):
        from astropy.io import fits

        self.view, self.geometry, self.target = view, geometry, target
        self.offsets32 = np.asarray(offsets, np.float32)
        self.pairs = network_pairs(len(offsets))
        self.shape = view.extension.shape
        self.maps: dict[str, np.memmap] = {}
        try:
            for plane, path in (("median", target.median_plane), ("spread", target.spread_plane)):
                staging = target.staging(path)
                offsets_in_file = allocate_fits(staging, fits.Header(), [target.extname], self.shape,
                                                {target.extname: fits.Header([("BUNIT", "ADU")])})
                self.maps[plane] = np.memmap(staging, dtype=">f4", mode="r+", offset=offsets_in_file[target.extname],
                                             shape=self.shape)
        except BaseException:
            self.discard()
            raise

    def put(self, band: Band, median: np.ndarray, spread: np.ndarray) -> None:
        for plane, values in (("median", median), ("spread", spread)):
            rows, stored = self.view.to_stored(band.frame_rows, values)
            self.maps[plane][rows] = stored

    def fill_nan(self) -> None:
        """No frame to combine: the quadrant is written unknown (NaN) rather than left out."""
        for values in self.maps.values():
            values[:] = np.nan

    def finish(self, ron_adu: float, *, write: bool = True, hot_threshold_adu: float | None = None,
               mask_threshold_adu: float = MASK_THRESHOLD_ADU) -> QuadrantMaster:
        """The master's image statistics (clipped level; pixels more than `hot_threshold_adu` above
        it), the cosmetics mask of the image area (if the target has a mask plane), and with `write`
        both planes compressed (quantisation steps from `ron_adu`); the staging files dropped."""
        place = self.view.extension.place
        median = np.asarray(self.maps["median"])  # stored orientation; canonical = flipped by the position
        canonical = median[:: -1 if place.flip_rows else 1, :: -1 if place.flip_cols else 1]
        image_cols = region_columns(self.geometry, "image", trim=False)
        image = np.array(canonical[: self.geometry.image_rows, image_cols], np.float32)
        level = clipped_stats(image)
        hot_count = None
        if hot_threshold_adu is not None and math.isfinite(level.mean):  # as stacking.StackWriter.finish
            hot_count = int(np.count_nonzero(image > level.mean + hot_threshold_adu))
        self.maps.clear()  # the pages stay in the page cache, which compress_plane reads
        ron = ron_adu if math.isfinite(ron_adu) and ron_adu > 0 else 1.0
        steps = {plane: quantisation_step(ron, plane) for plane in ("median", "spread")}
        target = self.target
        if not write:
            self.discard()
            return QuadrantMaster(target.extname, None, None, len(self.offsets32), ron, steps, level, hot_count)
        offset = float(np.mean(self.offsets32)) if self.offsets32.size else math.nan
        cards = place_cards(place)
        mask_hot, mask_threshold = None, math.nan
        if target.mask_plane is not None:
            bits = np.zeros(canonical.shape, np.uint8)
            if np.isfinite(image).all():
                hot, mask_threshold = dark_defects(image, mask_threshold_adu)
                bits[: self.geometry.image_rows, image_cols][hot] = HOT
                mask_hot = int(np.count_nonzero(hot))
            write_mask_plane(target.mask_plane, target.extname,
                             bits[:: -1 if place.flip_rows else 1, :: -1 if place.flip_cols else 1],
                             [*cards, ("HOTTHR", round(mask_threshold, 4) if math.isfinite(mask_threshold) else -1.0,
                                       "hot threshold used (ADU above background)"),
                              ("NHOT", mask_hot if mask_hot is not None else -1, "hot pixels in this quadrant")])
        if math.isfinite(offset):
            cards.append(("OFFSET", round(offset, 4), "mean prescan clipped mean subtracted (ADU)"))
        for plane, path in (("median", target.median_plane), ("spread", target.spread_plane)):
            compress_plane(target.staging(path), target.extname, steps[plane], ron, path, cards)
            target.staging(path).unlink(missing_ok=True)
        return QuadrantMaster(target.extname, target.median_plane, target.spread_plane, len(self.offsets32), ron,
                              steps, level, hot_count, target.mask_plane, mask_hot, mask_threshold)

    def discard(self) -> None:
        """Remove whatever this quadrant wrote (a failed unit leaves nothing behind)."""
        self.maps.clear()
        for path in (self.target.median_plane, self.target.spread_plane):
            self.target.staging(path).unlink(missing_ok=True)
            path.unlink(missing_ok=True)
        if self.target.mask_plane is not None:
            self.target.mask_plane.unlink(missing_ok=True)


HOT_BITS = (("BIT0", "hot", HOT),)
FLAT_BITS = (("BIT1", "dead", DEAD), ("BIT2", "low response", LOW), ("BIT3", "high response", HIGH),
             ("BIT4", "bad column", BAD_COLUMN))


def write_mask_plane(path: Path, extname: str, stored_bits: np.ndarray, cards: Sequence[tuple[str, Any, str]],
                     bits: Sequence[tuple[str, str, int]] = HOT_BITS) -> Path:
    """One quadrant's mask (uint8 DEFECTS bits, stored orientation) as a FITS with an empty primary
    and the tile-compressed extension `extname` (RICE_1 on integers: lossless); `bits` names the
    bits it may hold (keyword, name, value)."""
    from astropy.io import fits

    header = fits.Header([("BUNIT", "")])
    for keyword, value, comment in cards:
        header[keyword] = (value, comment)
    for keyword, name, value in bits:
        header[keyword] = (name, f"DEFECTS bit {value} (cosmetics.py bits)")
    header.add_comment("0 = good pixel; prescan and overscans 0 (not judged)")
    plane = fits.CompImageHDU(np.ascontiguousarray(stored_bits, np.uint8), header=header, name=extname,
                              compression_type="RICE_1")
    fits.HDUList([fits.PrimaryHDU(), plane]).writeto(path, overwrite=True)
    return path


def write_ratio_plane(path: Path, extname: str, stored: np.ndarray, step: float, noise: float,
                      cards: Sequence[tuple[str, Any, str]]) -> Path:
    """One quadrant's plane of relative response (a master flat, or its error; float32, stored
    orientation) as a FITS with an empty primary and the tile-compressed extension `extname`,
    quantised with `step` (a fraction of the plane's own noise `noise`, as stacking.compress_plane
    quantises a master against the read noise), its precision in its header."""
    write_quantised_plane(path, np.ascontiguousarray(stored, np.float32), extname, step, "", cards,
                          ("QNOISE", noise, "noise of the master (median EFLAT)"), "QNOISE")
    return path


def quadrant_read_noise(prescan_stds: Sequence[float]) -> float:
    """The read noise a quadrant's planes are quantised against (QRON_METHOD); NaN if unknown."""
    finite = [v for v in prescan_stds if math.isfinite(v)]
    return float(np.median(finite)) if finite else math.nan


def provenance_header(product: FPAProduct, *, test: str, session: str, obsids: Sequence[int],
                      frames: Sequence[str], design: str, geometry: CCDGeometry, when: datetime, run_id: str,
                      partial: Sequence[str] = (), extra: Sequence[tuple[str, Any, str]] = ()) -> fits.Header:
    """Primary header of an FPA product: what, from what, how (`extra`: the family's own cards)."""
    from astropy.io import fits

    header = fits.Header()
    header["ORIGIN"] = ("vison", "CCD273 ground-calibration pipeline")
    header["VISON"] = (__version__, "vison version")
    header["PRODUCT"] = (product.kind, "kind of calibration product")
    header["DATE"] = (when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"), "UTC creation time")
    header["TEST"] = (test, "test the frames belong to")
    header["SESSION"] = (session, "campaign session")
    header["BLOCK"] = ("FPA", "the whole focal plane")
    header["FPADESGN"] = (design, "FPA layout design (final or initial)")
    header["LAYOUT"] = ("LE1", "extension names, order, orientation of LE1")
    header["GEOMETRY"] = (geometry.name, "LE1 quadrant geometry of the input")
    header["RUNID"] = (run_id, "vison run that made it")
    header["OBSID0"] = (min(obsids) if obsids else -1, "first OBSID combined")
    header["OBSID1"] = (max(obsids) if obsids else -1, "last OBSID combined")
    header["OBSIDS"] = (obsid_ranges(obsids, sep=","), "OBSIDs combined")
    header["NCOMB"] = (len(frames), "frames combined (per quadrant: see COMMENT)")
    header["METHOD"] = (product.method, "" if len(product.method) > 40 else "per-pixel combination")
    header["OFFSMETH"] = ("prescan clipped mean", f"offset per frame/quadrant: {CLIP_SIGMA:g}-sigma clipped")
    for keyword, value, comment in extra:
        header[keyword] = (value, comment)
    if product.plane == "mask":
        header["BUNIT"] = ("", "masks carry no unit")
        header["HOTLIM"] = (MASK_THRESHOLD_ADU, "hot: ADU above the background, at least")
        header["HOTSIG"] = (HOT_SIGNIFICANCE, "hot: robust sigmas above it, at least")
        header["BIT0"] = ("hot", "DEFECTS bit 1 (cosmetics.py bits); 0 = good")
        header.add_comment("Each extension: uint8 DEFECTS bits of its quadrant, oriented as the LE1 input "
                           "(tile-compressed, lossless); HOTTHR (threshold used) and NHOT per extension. "
                           "Prescan and overscans are 0 (not judged).")
    elif product.plane == "flat_mask":
        limits = CosmeticsLimits()
        header["BUNIT"] = ("", "masks carry no unit")
        header["DEADMAX"] = (float(limits.dead_response_max), "dead pixel: relative flat response below")
        header["FLATLOW"] = (float(limits.flat_response_range[0]), "low response: relative flat response below")
        header["FLATHIGH"] = (float(limits.flat_response_range[1]), "high response: relative flat response above")
        header["COLFRAC"] = (float(limits.bad_column_fraction), "bad column: fraction of its pixels flagged")
        for keyword, name, value in FLAT_BITS:
            header[keyword] = (name, f"DEFECTS bit {value} (cosmetics.py bits); 0 = good")
        header.add_comment("Each extension: uint8 DEFECTS bits of its quadrant, oriented as the LE1 input "
                           "(tile-compressed, lossless), from the master flat (all columns) over its smooth "
                           "background; NDEAD, NLOW, NHIGH, NBADCOL per extension. Prescan and overscans are 0.")
    elif product.plane in FLAT_PLANES:
        fraction = QUANT_FRACTION[FLAT_PLANES[product.plane]]
        header["QFRAC"] = (fraction, "quantisation step / flat noise (QSTEP/QNOISE)")
        header["BUNIT"] = ("", "relative response" if product.plane == "flat" else "error of the relative response")
        header.add_comment(f"Each extension is tile-compressed (RICE_1) and quantised with a step of {fraction:g} "
                           "of its quadrant's master-flat noise (QNOISE: median EFLAT); QSTEP and QMAXERR "
                           "(largest error of a pixel) per extension. Outside the image area FLAT is 1, EFLAT 0.")
        header.add_comment("Frames offset-subtracted (prescan clipped mean) and divided by their level before "
                           "the per-pixel clipped mean; the stack divided by its smooth illumination model.")
    else:
        header["QFRAC"] = (QUANT_FRACTION[product.plane], "quantisation step / read noise (QSTEP/QRON)")
        header["BUNIT"] = ("ADU", "offset-subtracted counts")
        header.add_comment(f"Each extension is tile-compressed (RICE_1) and quantised with a step of "
                           f"{QUANT_FRACTION[product.plane]:g} of its quadrant's read noise (QRON: {QRON_METHOD}); "
                           "QSTEP and QMAXERR (largest error of a pixel) are stated per extension, in ADU.")
        header.add_comment("The offset subtracted per quadrant is each frame's prescan clipped mean (their mean: "
                           "each extension's OFFSET): master + OFFSET is the quadrant's level.")
    for line in partial:
        header.add_comment(line)
    for name in frames:
        header.add_history(f"input {name}")
    return header


def write_product(folder: Path, name: str, header: fits.Header, planes: Sequence[Path]) -> Path:
    """Assemble one product from its planes in order under a temporary name, then rename it:
    killed half-way, nothing is left under `name` (an earlier file of that name is kept until the
    rename replaces it whole)."""
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / name
    partial = folder / f".{name}.part-{os.getpid()}"
    try:
        assemble_product(partial, header, planes)
        os.replace(partial, final)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return final
