"""Stacks of a CCD's frames, written band by band into a FITS product (master bias, master dark).

Work goes in (CCD, quadrant) units. Each unit walks its quadrant in row bands of all the CCD's
frames (each frame opened once, a band small enough that memory stays bounded whatever the frame
count), subtracts each frame's offset, and writes the per-pixel median and spread of the band
straight into the product file: `allocate_fits` writes the headers and leaves the data to fill,
each unit memory-maps its quadrant. The per-pixel median sorts the frames with a sorting network
(`sort_frames`), several times faster than numpy's sort along a short axis. Products carry their
provenance in the primary header (`provenance_header`).

The units fill a float32 FITS in the staging area; one unit per CCD then writes the product
itself with FITS tile compression (`compress_plane`, one unit a plane; `assemble_product`): each float plane quantised with a fixed
step, a fraction of the read noise (`QUANT_FRACTION`), dithered (SUBTRACTIVE_DITHER_1, fixed
seed: the same file every run), Rice coded. A pixel read back differs from the float32 value by
at most half a step; each extension states its step, the largest error and the read noise in its
header (QSTEP, QMAXERR, QRON). astropy, ds9 and cfitsio read them as they are: a third of the
float32 size.
"""

from __future__ import annotations

import errno
import math
import os
import re
import shutil
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Iterator, Sequence

import numpy as np

from .. import __version__
from ..formats.fits import image_extension, read_frame
from ..formats.geometry import QUADRANTS, CCDGeometry
from .context import TaskContext
from .dataset import obsid_ranges
from .executor import Underway
from .measures import region_columns
from .offsets import FrameOffsets, PreparedData
from .stats import CLIP_SIGMA, ClippedStats, clipped_stats
from .tile_compression import DITHER_SEED, write_tiles

if TYPE_CHECKING:  # astropy takes 0.3 s to import: loaded where a FITS file is read or written
    from astropy.io import fits

BAND_BYTES = 32_000_000  # float32 frames x rows x columns held per band by one worker


# ---------------------------------------------------------------------------------------------
# Walking a quadrant in row bands
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Band:
    frame_rows: slice  # rows of the frame file
    cols: slice  # columns of the quadrant in the frame file
    canonical_rows: slice  # the same rows in canonical quadrant coordinates (increasing)
    image_rows: int  # how many of the band's canonical rows (from its start) are image rows


def quadrant_bands(geometry: CCDGeometry, quadrant: str, band_rows: int) -> Iterator[Band]:
    q_rows, q_cols = geometry.quadrant_slices(quadrant)
    flip_rows, _ = geometry.flips(quadrant)
    height = geometry.quad_height
    for start in range(0, height, band_rows):
        stop = min(start + band_rows, height)
        canonical = slice(height - stop, height - start) if flip_rows else slice(start, stop)
        image_rows = max(0, min(canonical.stop, geometry.image_rows) - canonical.start)
        yield Band(slice(q_rows.start + start, q_rows.start + stop), q_cols, canonical, image_rows)


def band_rows_for(frames: int, geometry: CCDGeometry) -> int:
    rows = BAND_BYTES // max(1, frames * geometry.quad_width * 4)
    return int(min(geometry.quad_height, max(16, rows)))


# ---------------------------------------------------------------------------------------------
# Stacks written band by band into a FITS file
# ---------------------------------------------------------------------------------------------

def allocate_fits(path: Path, primary: fits.Header, extnames: Sequence[str], shape: tuple[int, int],
                  ext_headers: dict[str, fits.Header] | None = None) -> dict[str, int]:
    """Write a FITS file with float32 image extensions of `shape` whose data are left to fill.

    Returns each extension's data byte offset: workers memory-map it and write their part, so
    the whole stack is never held in memory. Unwritten data read as 0.

    The file's blocks are reserved here (posix_fallocate, else zeros written): a sparse file on a
    disk that fills up would kill the worker writing through its memory map with SIGBUS; reserved,
    a full disk is an OSError (ENOSPC) here, before any work, and the test fails with it.
    """
    from astropy.io import fits

    rows, cols = shape
    data_bytes = rows * cols * 4
    padded = -(-data_bytes // 2880) * 2880
    offsets: dict[str, int] = {}
    head = fits.PrimaryHDU(header=primary).header
    with open(path, "wb") as handle:
        handle.write(head.tostring().encode("ascii"))
        for name in extnames:
            header = fits.Header([("XTENSION", "IMAGE"), ("BITPIX", -32), ("NAXIS", 2), ("NAXIS1", cols),
                                  ("NAXIS2", rows), ("PCOUNT", 0), ("GCOUNT", 1), ("EXTNAME", name)])
            for card in (ext_headers or {}).get(name, fits.Header()).cards:
                header.append(card)
            handle.write(header.tostring().encode("ascii"))
            offsets[name] = handle.tell()
            handle.seek(padded, 1)
        handle.truncate(handle.tell())
        handle.flush()
        try:
            for start in offsets.values():
                reserve_blocks(handle.fileno(), start, start + padded)
        except OSError:
            handle.close()
            path.unlink(missing_ok=True)  # no half product left behind
            raise
    return offsets


def reserve_blocks(fd: int, start: int, end: int) -> None:
    """Make bytes [start, end) of an open file real blocks (zeros), or raise OSError (ENOSPC)."""
    if end <= start:
        return
    try:
        os.posix_fallocate(fd, start, end - start)
        return
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
    except AttributeError:
        pass  # no posix_fallocate on this system
    os.lseek(fd, start, os.SEEK_SET)
    zeros = bytes(1 << 20)
    left = end - start
    while left > 0:
        left -= os.write(fd, zeros[: min(left, len(zeros))])


def check_free_space(folder: Path, needed: int, what: str) -> None:
    """Raise OSError(ENOSPC) with the numbers when `folder`'s disk has not `needed` bytes free."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return  # cannot tell: the reservation itself will say
    if needed > free:
        raise OSError(errno.ENOSPC, f"no space left on the results disk for {what}: {needed / 1e6:.1f} MB "
                      f"needed, {free / 1e6:.1f} MB free in {folder}")


def fits_size(primary: fits.Header, extnames: Sequence[str], shape: tuple[int, int]) -> int:
    """Bytes allocate_fits writes (headers counted generously: a few blocks each)."""
    from astropy.io import fits

    padded = -(-shape[0] * shape[1] * 4 // 2880) * 2880
    head = -(-len(fits.PrimaryHDU(header=primary).header.tostring()) // 2880) * 2880
    return head + len(extnames) * (padded + 2 * 2880)


# Quantisation step of each plane of a product, as a fraction of the read noise: a pixel read back
# is within half a step of its float32 value (STACK 0.8 %, STD 1.6 % of the read noise at most).
QUANT_FRACTION = {"median": 1 / 64, "spread": 1 / 32}
PRECISION_NOTE = ("Stored FITS tile-compressed (RICE_1): {median} quantised in steps of 1/64 of the read noise "
                  "(a pixel within 0.8 % of the read noise of its float32 value), {spread} in steps of 1/32 "
                  "(1.6 %); each extension states its step (QSTEP), largest error (QMAXERR) and the read "
                  "noise (QRON), in ADU.")
TILE_ROWS = 64  # rows per compression tile


def quantisation_step(ron_adu: float, plane: str) -> float:
    """The quantisation step (ADU) of a product plane ("median" or "spread") for this read noise."""
    if not (math.isfinite(ron_adu) and ron_adu > 0):
        ron_adu = 1.0  # no measured noise: a step of 1/64 ADU, well below any CCD273's read noise
    return float(ron_adu * QUANT_FRACTION[plane])


def compress_plane(raw: Path, name: str, step: float, ron_adu: float, out: Path,
                   cards: Sequence[tuple[str, Any, str]] = ()) -> Path:
    """Worker: one float32 plane of the staging stack `raw` tile-compressed into `out` (a FITS
    whose primary HDU is empty), quantised with `step` (ADU), its precision stated in its header
    with the extra `cards` (keyword, value, comment). The plane is found from the file's headers
    and mapped as it lies, read a tile at a time (write_quantised_plane): no astropy, no copy."""
    layout = image_extension(raw, name)
    if layout.bitpix != -32 or len(layout.shape) != 2:
        raise ValueError(f"{raw}: extension {name} is not a float32 plane (BITPIX {layout.bitpix})")
    data = np.memmap(raw, dtype=">f4", mode="r", offset=layout.data_offset, shape=layout.shape)
    write_quantised_plane(out, data, name, step, layout.text("BUNIT", "ADU"), cards,
                          ("QRON", ron_adu, "read noise (ADU) the step is a fraction of"), "the read noise")
    return out


def plane_cards(step: float, unit: str, cards: Sequence[tuple[str, Any, str]], reference: tuple[str, float, str],
                reference_name: str) -> tuple[list[tuple[str, Any, str]], str]:
    """The header of a quantised plane: its cards (BUNIT, the extra `cards`, QSTEP, QMAXERR and
    the `reference` card: the noise the step is a fraction of, called `reference_name`; a
    keyword given twice keeps its first place and its last value) and its comment."""
    in_unit = f" ({unit})" if unit else ""
    keyword, noise, comment = reference
    ordered: dict[str, tuple[Any, str]] = {"BUNIT": (unit, "")}
    for key, value, note in [*cards, ("QSTEP", step, f"quantisation step{in_unit} of this plane"),
                             ("QMAXERR", step / 2, f"largest |stored - computed| of a pixel{in_unit}"),
                             (keyword, noise, comment)]:
        ordered[key] = (value, note)
    text = (f"Tile-compressed (RICE_1), quantised with step {step:.5g}{' ' + unit if unit else ''} "
            f"({step / noise if noise > 0 else math.nan:.4g} of {reference_name}), "
            "SUBTRACTIVE_DITHER_1: a pixel is within QMAXERR of the float32 value.")
    return [(key, value, note) for key, (value, note) in ordered.items()], text


def write_quantised_plane(out: Path, data: np.ndarray, name: str, step: float, unit: str,
                          cards: Sequence[tuple[str, Any, str]], reference: tuple[str, float, str],
                          reference_name: str) -> None:
    """A float32 plane written to `out` as a FITS whose primary is empty and whose extension
    `name` is the plane tile-compressed and quantised with `step`, its header plane_cards: by the
    compiled writer (tile_compression), or by astropy's when the plane holds what only astropy
    writes (a NaN, an infinity, a range beyond an int32's levels)."""
    header, comment = plane_cards(step, unit, cards, reference, reference_name)
    if write_tiles(out, data, name, step, TILE_ROWS, header, [comment]):
        return
    from astropy.io import fits

    fits.HDUList([fits.PrimaryHDU(), quantised_plane(data, name, step, unit, cards, reference, reference_name)]
                 ).writeto(out, overwrite=True)


def quantised_plane(data: np.ndarray, name: str, step: float, unit: str, cards: Sequence[tuple[str, Any, str]],
                    reference: tuple[str, float, str], reference_name: str) -> fits.CompImageHDU:
    """A float32 plane as astropy's tile-compressed extension (RICE_1, SUBTRACTIVE_DITHER_1, the
    fixed seed), quantised with `step` (in `unit`), its header plane_cards (set before the data:
    a card added afterwards makes astropy compress the plane again)."""
    from astropy.io import fits

    values, comment = plane_cards(step, unit, cards, reference, reference_name)
    header = fits.Header()
    for keyword, value, note in values:
        header[keyword] = (value, note)
    header.add_comment(comment)
    return fits.CompImageHDU(data, header=header, name=name, compression_type="RICE_1",
                             tile_shape=(TILE_ROWS, data.shape[1]), quantize_level=-step, quantize_method=1,
                             dither_seed=DITHER_SEED)


def assemble_product(final: Path, primary: fits.Header, planes: Sequence[Path]) -> int:
    """The product: its primary header, then each compressed plane's extension as written (a FITS
    file is its HDUs end to end), the plane files removed. Returns the bytes written."""
    from astropy.io import fits

    header = primary.copy()
    header["EXTEND"] = (True, "extensions follow")
    with open(final, "wb", buffering=0) as product:
        product.write(fits.PrimaryHDU(header=header).header.tostring().encode("ascii"))
        for plane in planes:
            with fits.open(plane) as hdus:
                start = hdus[1].fileinfo()["hdrLoc"]
            with open(plane, "rb", buffering=0) as source:
                append_from(product, source, start)
    for plane in planes:
        plane.unlink(missing_ok=True)
    return final.stat().st_size


def append_from(product: BinaryIO, source: BinaryIO, start: int) -> None:
    """`source` from byte `start` to its end appended to `product` (both unbuffered) by the
    kernel (copy_file_range: no pass through Python's buffers, 0.1 s of CPU for BIAS01's three
    masters), or read and written where the file system refuses it."""
    offset, left = start, os.fstat(source.fileno()).st_size - start
    while left > 0:
        try:
            sent = os.copy_file_range(source.fileno(), product.fileno(), left, offset)
        except OSError:  # EXDEV, ENOSYS, EINVAL: file systems or kernels without it
            sent = 0
        if sent == 0:
            source.seek(offset)
            while chunk := source.read(1 << 22):
                view = memoryview(chunk)
                while view:  # an unbuffered write may take part of it
                    view = view[product.write(view):]
            return
        offset += sent
        left -= sent


def frames_read_noise(frames: list[FrameOffsets]) -> float:
    """The read noise (ADU) a CCD's products are quantised against: the smallest over quadrants of
    the median over frames of the prescan's robust std (the check's measurements)."""
    return read_noise_adu([[f.stats[q].prescan.std for f in frames] for q in QUADRANTS])


def read_noise_adu(prescan_stds: Sequence[Sequence[float]]) -> float:
    """The smallest over quadrants of the median of a quadrant's prescan robust stds (one per
    frame, in frame order; NaN left out): frames_read_noise."""
    values = []
    for stds in prescan_stds:
        stds = [v for v in stds if math.isfinite(v)]
        if stds:
            values.append(float(np.median(stds)))
    return min(values) if values else math.nan


@dataclass(frozen=True)
class StackTarget:
    """Where a worker writes its quadrant of a stack: file, extension data offsets, shape."""

    path: Path
    offsets: dict[str, int]  # "median" and "spread" extension name -> data offset
    median_ext: str
    spread_ext: str
    spread: str = "std"  # "std" of the frames, or "error" of the mean (std / sqrt(n))


@dataclass(frozen=True)
class StackStats:
    """The image area of one quadrant of a stack."""

    level: ClippedStats  # clipped statistics of the stacked image pixels (ADU)
    hot: list[tuple[int, int, float]]  # canonical (row, col, ADU above level) beyond the threshold
    hot_count: int


class StackWriter:
    """One quadrant of a stack, band by band: per band the frames' sections (uint16, frame
    orientation) in, the median and spread of the offset-subtracted frames written into the
    target's memory maps; `finish` gives the statistics of the stacked image area."""

    def __init__(self, quadrant: str, offsets: list[float], geometry: CCDGeometry, target: StackTarget):
        self.quadrant, self.geometry, self.target = quadrant, geometry, target
        shape = geometry.shape
        self.median_out = np.memmap(target.path, dtype=">f4", mode="r+", offset=target.offsets[target.median_ext],
                                    shape=shape)
        self.spread_out = np.memmap(target.path, dtype=">f4", mode="r+", offset=target.offsets[target.spread_ext],
                                    shape=shape)
        self.image_cols = region_columns(geometry, "image", trim=False)
        self.image = np.empty((geometry.image_rows, geometry.image_cols), np.float32)
        self.offsets32 = np.asarray(offsets, np.float32)
        self.pairs = network_pairs(len(offsets))

    def add(self, band: Band, sections: Sequence[np.ndarray]) -> None:
        """One band of the frames' sections (uint16, as read): median and spread of the
        offset-subtracted frames (kernels.band_pass, numpy's float32 arithmetic) written."""
        from .compiled.kernels import sweep  # compiled: numba loaded only where units run

        cube = np.stack(sections)
        planes = np.empty((2, *cube.shape[1:]), np.float32)
        sweep(cube, used=np.arange(len(cube)), offsets=self.offsets32, pairs=self.pairs,
              spread_error=self.target.spread == "error", median=planes[0], spread=planes[1])
        self.put(band, planes[0], planes[1])

    def put(self, band: Band, median: np.ndarray, spread: np.ndarray) -> None:
        """The band's median and spread (as read) into the product and the image statistics."""
        self.median_out[band.frame_rows, band.cols] = median
        self.spread_out[band.frame_rows, band.cols] = spread
        if band.image_rows:
            canonical = self.geometry.to_canonical(median, self.quadrant)
            start = band.canonical_rows.start
            self.image[start: start + band.image_rows] = canonical[: band.image_rows, self.image_cols]

    def release(self) -> None:
        """Drop the memory maps. Not flushed (msync would wait for the disk): the pages are the
        page cache's, which the process compressing the file reads (MAP_SHARED)."""
        self.median_out = self.spread_out = None

    def finish(self, hot_threshold_adu: float | None = None, hot_list_limit: int = 10000) -> StackStats:
        self.release()
        image, geometry = self.image, self.geometry
        level = clipped_stats(image)
        hot: list[tuple[int, int, float]] = []
        count = 0
        if hot_threshold_adu is not None and math.isfinite(level.mean):
            rows, cols = np.nonzero(image > level.mean + hot_threshold_adu)
            count = int(rows.size)
            excess = image[rows, cols] - level.mean
            hot = [(int(r), int(c) + geometry.prescan, round(float(e), 2))
                   for r, c, e in zip(rows[:hot_list_limit], cols[:hot_list_limit], excess[:hot_list_limit])]
        return StackStats(level, hot, count)


def stack_unit(unit: tuple[int, str], paths: list[Path], offsets: list[float], geometry: CCDGeometry,
               target: StackTarget, hot_threshold_adu: float | None = None, hot_list_limit: int = 10000) -> StackStats:
    """Worker: per-pixel median (and spread) of the offset-subtracted frames for one quadrant,
    written into the target file band by band; returns statistics of the stacked image area."""
    _, quadrant = unit
    writer = StackWriter(quadrant, offsets, geometry, target)
    try:
        with ExitStack() as stack:
            frames = [stack.enter_context(read_frame(p)) for p in paths]
            for band in quadrant_bands(geometry, quadrant, band_rows_for(len(paths), geometry)):
                writer.add(band, [f.section(band.frame_rows, band.cols) for f in frames])
        return writer.finish(hot_threshold_adu, hot_list_limit)
    finally:
        writer.release()


NETWORK_MAX_FRAMES = 32  # beyond, numpy's sort is as fast as the network
NETWORK_CHUNK = 16384  # pixels per chunk: n lanes of it stay in the CPU cache


def sort_frames(cube: np.ndarray) -> None:
    """Sort a (frames, ...) float32 cube along axis 0 in place.

    numpy sorts each pixel's short lane on its own (about 45 ns a pixel for 10 frames); a sorting
    network applies the same compare-exchanges to whole chunks of pixels at once, 4-5x faster.
    """
    n = cube.shape[0]
    if n > NETWORK_MAX_FRAMES or not cube.flags.c_contiguous:
        cube.sort(axis=0)
        return
    pairs = sorting_network(n)
    flat = cube.reshape(n, -1)
    low = np.empty(NETWORK_CHUNK, cube.dtype)
    for start in range(0, flat.shape[1], NETWORK_CHUNK):
        lanes = flat[:, start: start + NETWORK_CHUNK]
        buffer = low[: lanes.shape[1]]
        for a, b in pairs:
            np.minimum(lanes[a], lanes[b], out=buffer)
            np.maximum(lanes[a], lanes[b], out=lanes[b])
            lanes[a] = buffer


def network_pairs(n: int) -> np.ndarray:
    """The compare-exchange pairs of the sorting network for n frames, as kernels.band_pass takes them."""
    return np.array(sorting_network(n) if n > 1 else [], np.int64).reshape(-1, 2)


def median_of_stack(cube: np.ndarray, count: int, offsets: np.ndarray) -> np.ndarray:
    """The per-pixel median of the first `count` frames of `cube` (uint16), each minus its offset
    (float32): the stack's median of the one pass (kernels.sweep, its sorting network), bit for bit
    `np.median(cube[:count].astype(float32) - offsets, axis=0)` without numpy's float32 copy of the cube."""
    from .compiled.kernels import sweep  # compiled: numba loaded only where units run

    median = np.empty(cube.shape[1:], np.float32)
    spread = np.empty_like(median)  # the sweep makes the spread too: not used here
    sweep(cube, used=np.arange(count), offsets=np.ascontiguousarray(offsets[:count], np.float32),
          pairs=network_pairs(count), median=median, spread=spread)
    return median


def sorting_network(n: int) -> list[tuple[int, int]]:
    """Batcher's odd-even merge sort: compare-exchange pairs (low index gets the smaller value)."""
    pairs = []
    p = 1
    while p < n:
        k = p
        while k >= 1:
            for j in range(k % p, n - k, 2 * k):
                for i in range(min(k, n - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return pairs


def provenance_header(ctx: TaskContext, ccd: int, frames: list[FrameOffsets], method: str,
                      product: str) -> fits.Header:
    """Primary header of a product: who made it, from what, how (ccdproc-style provenance)."""
    from astropy.io import fits

    obsids = [f.obsid for f in frames]
    header = fits.Header()
    header["ORIGIN"] = ("vison", "CCD273 ground-calibration pipeline")
    header["VISON"] = (__version__, "vison version")
    header["PRODUCT"] = (product, "kind of calibration product")
    header["DATE"] = (datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"), "UTC creation time")
    header["TEST"] = (ctx.test.name, "test the frames belong to")
    header["SESSION"] = (ctx.session, "campaign session")
    header["BLOCK"] = (ctx.campaign.info.block, "detector block")
    header["CHAMBER"] = (ctx.chamber.name, "test chamber")
    header["CCD"] = (f"CCD{ccd}", "CCD of the block")
    header["SN"] = (ccd_serial(ctx, ccd), "CCD serial as the data record it")
    header["OBSID0"] = (min(obsids) if obsids else -1, "first OBSID combined")
    header["OBSID1"] = (max(obsids) if obsids else -1, "last OBSID combined")
    header["OBSIDS"] = (obsid_ranges(obsids, sep=","), "OBSIDs combined")
    header["NCOMB"] = (len(frames), "frames combined")
    header["METHOD"] = (method, "per-pixel combination")
    header["OFFSMETH"] = ("prescan clipped mean", f"offset per frame/quadrant: {CLIP_SIGMA:g}-sigma clipped")
    for q in QUADRANTS:
        values = [f.offsets[q] for f in frames]
        mean = float(np.mean(values)) if values else math.nan
        if math.isfinite(mean):  # FITS has no NaN card value: an unknown offset is said, not written
            header[f"OFFS_{q}"] = (round(mean, 4), f"mean offset subtracted in quadrant {q} (ADU)")
        else:
            header.add_comment(f"OFFS_{q} unknown: no finite offset in quadrant {q}")
    header["BUNIT"] = ("ADU", "offset-subtracted counts")
    for f in frames:
        header.add_history(f"input {f.path.name}")
    return header


def ccd_serial(ctx: TaskContext, ccd: int) -> str:
    """The CCD serial the frames carry (EXP_LOG sn_ccdN of the CCD's own rows)."""
    for frame in ctx.dataset.frames(ccd):
        number = str(frame.row.get("CCD", "")).upper().replace("CCD", "")
        serial = str(frame.row.get(f"sn_ccd{number}", "")).strip()
        if serial:
            return serial
    return "UNKNOWN"


def product_names(ctx: TaskContext, prepared: PreparedData, kind: str) -> dict[int, str]:
    """CCD -> file name of its product `kind` (MASTERBIAS...), for the CCDs with usable frames."""
    return {ccd: stack_file_name(ctx, ccd, kind) for ccd in ctx.ccds if prepared.frames[ccd]}


def stack_file_name(ctx: TaskContext, ccd: int, kind: str) -> str:
    """The file name of a CCD's product `kind`: EUC_<kind>_CCD<n>_SN_<serial>_<BLOCK>.fits."""
    block = re.sub(r"[^A-Za-z0-9.+-]", "_", ctx.campaign.info.block)
    serial = re.sub(r"[^A-Za-z0-9.+-]", "_", ccd_serial(ctx, ccd)) or "UNKNOWN"
    return f"EUC_{kind}_CCD{ccd}_SN_{serial}_{block}.fits"


def build_stacks(ctx: TaskContext, prepared: PreparedData, files: dict[int, Path], kind: str,
                 extnames: tuple[str, str], spread: str, method: str,
                 hot_threshold_adu: float | None = None,
                 extra_header: Callable[[int], dict[str, Any]] | None = None) -> dict[tuple[int, str], StackStats]:
    """Allocate one FITS per CCD at `files[ccd]` and fill it from 12 quadrant workers."""
    from astropy.io import fits

    geometry = prepared.geometry
    calls = []
    primaries = {}
    for ccd in files:
        primary = provenance_header(ctx, ccd, prepared.frames[ccd], method, kind)
        for key, value in (extra_header(ccd) if extra_header else {}).items():
            primary[key] = value
        primaries[ccd] = primary
    raws = {ccd: raw_path(path) for ccd, path in files.items()}
    stacked = stacks_from_pass(ctx, prepared, raws)
    if stacked is not None:  # the one pass over the frames stacked them already (bandpass.py)
        compress_all(ctx, prepared, files, raws, primaries, extnames)
        return stacked
    drop_planes_underway(ctx)  # the pass's stacks are not the products: stacked again below, same files
    if files:  # all the products or none: a full disk is found before the first byte is written
        needed = sum(fits_size(primaries[ccd], extnames, geometry.shape) for ccd in files)
        check_free_space(next(iter(files.values())).parent, needed, f"the {kind} products ({len(files)} files)")
    for ccd in files:
        frames = prepared.frames[ccd]
        ext_headers = {name: fits.Header([("BUNIT", "ADU")]) for name in extnames}
        offsets = allocate_fits(raws[ccd], fits.Header(), extnames, geometry.shape, ext_headers)
        target = StackTarget(raws[ccd], offsets, extnames[0], extnames[1], spread)
        for q in QUADRANTS:
            calls.append(((ccd, q), [f.path for f in frames], [f.offsets[q] for f in frames], geometry, target,
                          hot_threshold_adu))
    results = ctx.map_units(stack_unit, calls)
    compress_all(ctx, prepared, files, raws, primaries, extnames)
    return {call[0]: result for call, result in zip(calls, results)}


def stacks_from_pass(ctx: TaskContext, prepared: PreparedData,
                     raws: dict[int, Path]) -> dict[tuple[int, str], StackStats] | None:
    """The statistics of the stacks the one pass wrote into `raws`, if it stacked every quadrant of
    every CCD from the frames and offsets `prepared` has; None otherwise (stack again)."""
    from .measures import FrameMeasures

    measures = ctx.have(FrameMeasures)
    if measures is None or not measures.passes or not raws:
        return None
    stats = {}
    for ccd, raw in raws.items():
        frames = prepared.frames[ccd]
        for q in QUADRANTS:
            done = measures.passes.get((ccd, q))
            if (done is None or done.stack is None or done.target != raw
                    or not done.matches([f.path for f in frames], [f.offsets[q] for f in frames])):
                return None
            stats[(ccd, q)] = done.stack
    return stats


def raw_path(final: Path) -> Path:
    """Where the float32 stack of a product is filled before it is compressed (staging area)."""
    return final.with_name(f".{final.stem}.float32.fits")


def plane_calls(final: Path, raw: Path, ron: float, extnames: tuple[str, str]) -> list[tuple]:
    """The compress_plane calls of a product's planes (median, spread) from its float32 stack."""
    steps = {extnames[0]: quantisation_step(ron, "median"), extnames[1]: quantisation_step(ron, "spread")}
    return [(raw, name, steps[name], ron if math.isfinite(ron) else 1.0, final.with_name(f".{final.stem}.{name}.fits"))
            for name in extnames]  # one unit per plane: 6 planes share 2 workers better than 3 CCDs


@dataclass
class PlanesUnderway:
    """Planes whose compression started before `meta` asked for them: as soon as the one pass
    over the frames had stacked a CCD (bandpass.run_pass), so that they are written while the
    check, the figures and the other CCDs go on. Call (plane_calls) -> (its units, its index)."""

    started: dict[tuple, tuple[Underway, int]] = field(default_factory=dict)


def start_compression(ctx: TaskContext, final: Path, raw: Path, ron: float, extnames: tuple[str, str]) -> None:
    """Start compressing the planes of `final` from its complete float32 stack `raw` on the run's
    executor (not waited for): compress_all takes them if its calls are the same."""
    if ctx.executor is None:
        return  # no run's executor to queue them on: compress_all does it
    calls = plane_calls(final, raw, ron, extnames)
    units = ctx.executor.start(compress_plane, calls)
    underway = ctx.have(PlanesUnderway)
    if underway is None:
        underway = PlanesUnderway()
        ctx.keep(underway)
    underway.started.update({call: (units, i) for i, call in enumerate(calls)})


def compressed_planes(ctx: TaskContext, calls: list[tuple]) -> list[Path]:
    """compress_plane of each call: the result of the same call started early (PlanesUnderway),
    else computed now. Those started early with other arguments (`meta` quantises against
    another read noise: its frames differ from the pass's) are dropped first (they share names)."""
    started = drop_planes_underway(ctx, keep=calls)
    fresh = [call for call in calls if call not in started]
    done = dict(zip(fresh, ctx.map_units(compress_plane, fresh)))
    return [started[call][0].result(started[call][1]) if call in started else done[call] for call in calls]


def drop_planes_underway(ctx: TaskContext, keep: Sequence[tuple] = ()) -> dict[tuple, tuple[Underway, int]]:
    """Wait for the planes started early but not wanted (their calls not in `keep`: a failure
    too), remove their files; the wanted ones are returned (call -> (units, index))."""
    underway = ctx.results.pop(PlanesUnderway, None)
    started = underway.started if underway is not None else {}
    for call, (units, index) in started.items():
        if call not in keep:
            with suppress(Exception):
                units.result(index)
            Path(call[4]).unlink(missing_ok=True)
    return {call: started[call] for call in keep if call in started}


def compress_all(ctx: TaskContext, prepared: PreparedData, files: dict[int, Path], raws: dict[int, Path],
                 primaries: dict[int, fits.Header], extnames: tuple[str, str]) -> None:
    """Each CCD's float32 stack written to its product with tile compression: one unit per plane
    (or the planes started early, PlanesUnderway), then the planes put after the product's
    primary header."""
    calls: list[tuple] = []
    primaries_done: dict[int, fits.Header] = {}
    for ccd, path in files.items():
        ron = frames_read_noise(prepared.frames[ccd])
        primary = primaries[ccd].copy()
        primary["QRON"] = (round(ron, 4) if math.isfinite(ron) else 1.0,
                           "read noise (ADU): prescan robust std")
        primary.add_comment("Planes tile-compressed, quantised: each extension's QSTEP (ADU) and QMAXERR "
                            "(largest error of a pixel, ADU) state its precision.")
        primaries_done[ccd] = primary
        calls += plane_calls(path, raws[ccd], ron, extnames)
    planes = compressed_planes(ctx, calls)
    for ccd, path in files.items():
        assemble_product(path, primaries_done[ccd], [p for p, call in zip(planes, calls) if call[0] == raws[ccd]])
        raws[ccd].unlink(missing_ok=True)
