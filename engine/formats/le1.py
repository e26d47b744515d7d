"""LE1 frames of the whole focal plane, and the FPA exposure log that lists them.

An LE1 frame is one multi-extension FITS file per exposure: an empty primary HDU, then 144
quadrant images named `j-i.Q` (slice j, column i, quadrant Q), each 16-bit with BZERO 32768,
2128 x 2086 pixels (51 prescan, 2048 image, 29 serial overscan columns; 2066 image and 20
parallel-overscan rows): 1.3 GB. Where each extension sits and how it is flipped is the FPA
layout (fpa.py).

`LE1File(path)` reads the headers only (astropy, memory-mapped), checks the 145 HDUs against the
layout (a missing, misplaced or odd extension is an LE1Error naming the file and the extension)
and keeps each extension's byte offset. `LE1Quadrant` then memory-maps one extension's raw int16
and flips the sign bit of what is read, as fits.py does for ELVIS frames: a section costs its own
bytes, never the file's. A quadrant reads in canonical orientation (output node at [0, 0]), or
as quadrant Q of an ELVIS-oriented CCD frame: the block analyses' functions (measures, bandpass)
take it as they take a Frame; `to_stored` puts what was computed from such a read back where the
extension stores it (FPA products in the LE1 orientation).

The FPA EXP_LOG is written by hand: tab-separated, a header line, the 5 columns ObsID, File_name,
date, program, test; a frame is `<File_name>.fits` in the log's folder.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .explog import ExpLogError, read_explog
from .fits import FrameError
from .fpa import DEFAULT_DESIGN, LE1_EXTENSIONS, FPALayout, FPAQuadrant, fpa_layout
from .geometry import CCDGeometry

if TYPE_CHECKING:  # astropy takes 0.3 s to import: loaded where a FITS file is read or written
    from astropy.io import fits

LE1_HDUS = 1 + LE1_EXTENSIONS  # 145

LE1_FULL = CCDGeometry(overscan=29, name="le1")
"""One LE1 quadrant as the FPA reads it: 2128 x 2086 pixels (29 serial overscan columns)."""

LE1_SMALL = CCDGeometry(prescan=12, image_cols=64, overscan=9, image_rows=64, parallel_overscan=6, name="le1-small")
"""The same structure scaled down, for tests: 85 x 70 pixels a quadrant, 145 HDUs all the same."""

LE1_GEOMETRIES = {g.name: g for g in (LE1_FULL, LE1_SMALL)}

FPA_EXPLOG_COLUMNS = ("ObsID", "File_name", "date", "program", "test")


class LE1Error(FrameError):
    """A file that is not a readable LE1 frame; the message names the file (and the extension)."""

    def __init__(self, message: str, path: Path | None = None, extension: str | None = None):
        super().__init__(message)
        self.path = path
        self.extension = extension


class MissingExtension(LE1Error):
    """An LE1 quadrant extension the layout expects is not in the file."""


class OddExtension(LE1Error):
    """An extension that is not where the layout puts it, or not a 16-bit quadrant image."""


def le1_geometry(shape: tuple[int, int], prescan: int | None = None, overscan: int | None = None) -> CCDGeometry:
    """The LE1 quadrant geometry of this (rows, cols) extension shape; PRESCANX/OVRSCANX, when
    the header gives them, must agree. A smaller OVRSCANX is ground data put into LE1 (20
    overscan columns padded to LE1's width with the fill value, 0): the columns after its overscan
    are fill, in no region, left out of every statistic (CCDGeometry.fill_cols). ValueError
    otherwise."""
    for geometry in LE1_GEOMETRIES.values():
        if (geometry.quad_height, geometry.quad_width) != tuple(shape) or prescan not in (None, geometry.prescan):
            continue
        if overscan in (None, geometry.overscan):
            return geometry
        if 0 < overscan < geometry.overscan:
            return dataclasses.replace(geometry, overscan=overscan, fill_cols=geometry.overscan - overscan,
                                       name=f"{geometry.name}-padded-ovs{overscan}")
    known = ", ".join(f"{g.name} {g.quad_height} x {g.quad_width} (prescan {g.prescan}, overscan {g.overscan})"
                      for g in LE1_GEOMETRIES.values())
    raise ValueError(f"quadrant shape {tuple(shape)} (PRESCANX {prescan}, OVRSCANX {overscan}) is no LE1 "
                     f"geometry; known (rows x columns): {known}")


@dataclass(frozen=True)
class LE1Extension:
    """Where one quadrant's pixels lie in its LE1 file: enough for a worker to map them."""

    place: FPAQuadrant
    data_offset: int  # bytes from the start of the file
    shape: tuple[int, int]  # (rows, cols) as stored
    bzero: int
    gain: float | None  # header GAIN (e-/ADU), None if absent
    exptime: float | None

    @property
    def name(self) -> str:
        return self.place.extname


class LE1File:
    """The index of one LE1 frame, from its headers: checked against the layout, then closed.

        le1 = LE1File("VIS_..._00042.L1.fits")            # LE1Error if not a whole LE1 frame
        with le1.open("4-1.G") as quadrant:
            prescan = quadrant.canonical_region("prescan")
    """

    def __init__(self, path: str | os.PathLike[str], design: str = DEFAULT_DESIGN):
        from astropy.io import fits

        self.path = Path(path)
        self.layout: FPALayout = fpa_layout(design)
        try:
            stat = self.path.stat()
            hdul = fits.open(self.path, memmap=True, do_not_scale_image_data=True, mode="readonly")
        except (OSError, ValueError) as exc:
            raise LE1Error(f"{self.path}: not a readable FITS file ({getattr(exc, 'strerror', None) or exc})",
                           self.path) from exc
        self.size, self.mtime_ns = stat.st_size, stat.st_mtime_ns
        try:
            self.primary_header = hdul[0].header.copy()
            self.extensions = self._index(hdul)
            self.geometry = self._geometry(hdul)
        except LE1Error:
            raise
        except Exception as exc:  # astropy raises many kinds on truncated files
            raise LE1Error(f"{self.path}: broken FITS data ({exc})", self.path) from exc
        finally:
            hdul.close()

    def _index(self, hdul: fits.HDUList) -> dict[str, LE1Extension]:
        names = [str(hdu.name) for hdu in hdul]
        expected = self.layout.quadrants
        for place in expected:  # what is missing first: the plainest thing to say
            if place.extname not in names:
                raise MissingExtension(f"{self.path}: no extension {place.extname} (HDU {place.hdu} of an LE1 "
                                       f"frame); the file has {len(hdul)} HDUs, an LE1 frame {LE1_HDUS}",
                                       self.path, place.extname)
        if len(hdul) != LE1_HDUS:
            extra = [n for n in names[1:] if not self.layout.is_extname(n)]
            raise OddExtension(f"{self.path}: {len(hdul)} HDUs, an LE1 frame has {LE1_HDUS} (a primary and "
                               f"{LE1_EXTENSIONS} quadrants); not LE1 quadrants: {', '.join(extra) or '-'}",
                               self.path, extra[0] if extra else None)
        index: dict[str, LE1Extension] = {}
        for place in expected:
            hdu = hdul[place.hdu]
            if str(hdu.name) != place.extname:
                raise OddExtension(f"{self.path}: HDU {place.hdu} is {hdu.name!r}, the LE1 layout puts "
                                   f"{place.extname} there", self.path, place.extname)
            index[place.extname] = self._extension(hdu, place)
        return index

    def _extension(self, hdu: Any, place: FPAQuadrant) -> LE1Extension:
        header = hdu.header
        where = f"{self.path}: extension {place.extname} (HDU {place.hdu})"
        naxis = header.get("NAXIS", 0)
        if header.get("BITPIX") != 16 or naxis != 2 or header.get("BZERO", 0) not in (0, 32768):
            raise OddExtension(f"{where}: expected a 2-D 16-bit image with BZERO 32768, found BITPIX "
                               f"{header.get('BITPIX')}, NAXIS {naxis}, BZERO {header.get('BZERO', 0)}",
                               self.path, place.extname)
        for key, wanted in (("QUADID", place.quadrant), ("CCDID", f"{place.ccd.slice}-{place.ccd.column}")):
            if key in header and str(header[key]).strip() != wanted:
                raise OddExtension(f"{where}: {key} = {header[key]!r}, expected {wanted!r}", self.path, place.extname)
        info = hdu.fileinfo()
        gain, exptime = header.get("GAIN"), header.get("EXPTIME")
        return LE1Extension(place, int(info["datLoc"]), (int(header["NAXIS2"]), int(header["NAXIS1"])),
                            int(header.get("BZERO", 0)), float(gain) if gain is not None else None,
                            float(exptime) if exptime is not None else None)

    def _geometry(self, hdul: fits.HDUList) -> CCDGeometry:
        first = self.extensions[self.layout.quadrants[0].extname]
        shapes = {ext.shape for ext in self.extensions.values()}
        if len(shapes) > 1:
            odd = next(e for e in self.extensions.values() if e.shape != first.shape)
            raise OddExtension(f"{self.path}: extension {odd.name} is {odd.shape[1]} x {odd.shape[0]} pixels, "
                               f"{first.name} {first.shape[1]} x {first.shape[0]}: LE1 quadrants are all alike",
                               self.path, odd.name)
        header = hdul[first.place.hdu].header
        prescan, overscan = header.get("PRESCANX"), header.get("OVRSCANX")
        try:
            return le1_geometry(first.shape, prescan, overscan)
        except ValueError as exc:
            raise OddExtension(f"{self.path}: extension {first.name}: {exc}", self.path, first.name) from None

    def extension(self, extname: str) -> LE1Extension:
        try:
            return self.extensions[extname]
        except KeyError:
            self.layout.by_extname(extname)  # says what an extension name looks like
            raise

    def open(self, extname: str) -> LE1Quadrant:
        return LE1Quadrant(self.path, self.extension(extname), self.geometry)


def read_le1(path: str | os.PathLike[str], design: str = DEFAULT_DESIGN) -> LE1File:
    """Index an LE1 frame (headers only): `read_le1(p).open("1-1.E").canonical_region("prescan")`."""
    return LE1File(path, design)


class LE1Quadrant:
    """One LE1 extension, memory-mapped; pixels are read when a section is asked for.

    Canonical reads: `canonical(rows, cols)`, `canonical_region(region)`. As a Frame: the
    extension stands for quadrant Q of an ELVIS-oriented CCD frame of `geometry` (frame
    coordinates, Q's flips), so `measures.quadrant_stats(view, Q, geometry, rows)` and the banded
    read-noise pass read it as they read a block frame, with the same numbers.
    """

    def __init__(self, path: str | os.PathLike[str], extension: LE1Extension, geometry: CCDGeometry):
        self.path = Path(path)
        self.extension = extension
        self.letter = extension.place.quadrant
        self._geometry = geometry
        if extension.shape != (geometry.quad_height, geometry.quad_width):
            raise OddExtension(f"{self.path}: extension {extension.name} is {extension.shape}, the geometry "
                               f"{geometry.name} quadrant {(geometry.quad_height, geometry.quad_width)}",
                               self.path, extension.name)
        try:
            self._raw: np.ndarray | None = np.memmap(self.path, dtype=">i2", mode="r", offset=extension.data_offset,
                                                     shape=extension.shape)
        except (OSError, ValueError) as exc:  # shorter than the index says: rewritten or truncated since
            raise LE1Error(f"{self.path}: extension {extension.name} cannot be mapped "
                           f"({getattr(exc, 'strerror', None) or exc})", self.path, extension.name) from exc
        flip_rows, flip_cols = CCDGeometry.flips(self.letter)
        # stored = canonical flipped by the LE1 position; frame = canonical flipped by Q's flips
        self._frame_flip_rows = flip_rows != extension.place.flip_rows
        self._frame_flip_cols = flip_cols != extension.place.flip_cols

    # -- canonical orientation -----------------------------------------------------------------

    def canonical(self, rows: slice = slice(None), cols: slice = slice(None)) -> np.ndarray:
        """Counts (uint16) of canonical rows and columns of the quadrant (output node at [0, 0])."""
        place = self.extension.place
        return self._stored(rows, cols, place.flip_rows, place.flip_cols)

    def canonical_region(self, region: str) -> np.ndarray:
        rows, cols = self._geometry.canonical_region(region)
        return self.canonical(rows, cols)

    # -- as quadrant Q of a frame (the Frame interface the block analyses use) -------------------

    @property
    def geometry(self) -> CCDGeometry:
        return self._geometry

    @property
    def shape(self) -> tuple[int, int]:
        return self._geometry.shape

    def section(self, rows: slice = slice(None), cols: slice = slice(None)) -> np.ndarray:
        """Counts of a section in frame coordinates; it must lie within quadrant Q's part of the frame."""
        q_rows, q_cols = self._geometry.quadrant_slices(self.letter)
        relative_rows = _within(rows, q_rows, "rows", self)
        relative_cols = _within(cols, q_cols, "columns", self)
        return self._stored(relative_rows, relative_cols, self._frame_flip_rows, self._frame_flip_cols)

    def quadrant(self, quadrant: str, canonical: bool = True, geometry: CCDGeometry | None = None) -> np.ndarray:
        self._check(quadrant, geometry)
        if canonical:
            return self.canonical()
        return self._stored(slice(None), slice(None), self._frame_flip_rows, self._frame_flip_cols)

    def region(self, quadrant: str, region: str, geometry: CCDGeometry | None = None) -> np.ndarray:
        self._check(quadrant, geometry)
        return self.canonical_region(region)

    def to_stored(self, rows: slice, block: np.ndarray) -> tuple[slice, np.ndarray]:
        """Where a block shaped like `section(rows)` over the quadrant's full width (frame
        coordinates) lies in the stored extension: (stored rows, the block flipped as stored).
        A product written this way overlays the LE1 extension pixel for pixel."""
        height, width = self.extension.shape
        if block.ndim != 2 or block.shape[1] != width:
            raise ValueError(f"{self.path} extension {self.extension.name}: a block of {block.shape} is not "
                             f"full rows of the quadrant ({width} columns)")
        q_rows, _ = self._geometry.quadrant_slices(self.letter)
        stored_rows = _unflip(_within(rows, q_rows, "rows", self), height, self._frame_flip_rows)
        if stored_rows.stop - stored_rows.start != block.shape[0]:
            raise ValueError(f"{self.path} extension {self.extension.name}: a block of {block.shape[0]} rows "
                             f"for frame rows {rows.start}..{rows.stop}")
        return stored_rows, block[:: -1 if self._frame_flip_rows else 1, :: -1 if self._frame_flip_cols else 1]

    # -- reading ---------------------------------------------------------------------------------

    def _stored(self, rows: slice, cols: slice, flip_rows: bool, flip_cols: bool) -> np.ndarray:
        """Rows and columns counted in an orientation that is the stored one flipped as said."""
        if self._raw is None:
            raise ValueError(f"{self.path} extension {self.extension.name}: read after close()")
        height, width = self.extension.shape
        stored_rows = _unflip(rows, height, flip_rows)
        stored_cols = _unflip(cols, width, flip_cols)
        counts = np.array(self._raw[stored_rows, stored_cols], dtype=np.int16).view(np.uint16)
        if self.extension.bzero == 32768:
            counts ^= np.uint16(0x8000)
        return counts[:: -1 if flip_rows else 1, :: -1 if flip_cols else 1]

    def _check(self, quadrant: str, geometry: CCDGeometry | None) -> None:
        if quadrant != self.letter:
            raise ValueError(f"{self.path} extension {self.extension.name} holds quadrant {self.letter}, "
                             f"not {quadrant}")
        if geometry is not None and geometry != self._geometry:
            raise ValueError(f"{self.path} extension {self.extension.name}: geometry {geometry.name} asked, "
                             f"the frame's is {self._geometry.name}")

    def close(self) -> None:
        self._raw = None  # the map is released with its last reference

    def __enter__(self) -> LE1Quadrant:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _unflip(span: slice, length: int, flipped: bool) -> slice:
    start, stop, step = span.indices(length)
    if step != 1:
        raise ValueError("LE1 sections are read with unit steps")
    stop = max(stop, start)
    return slice(length - stop, length - start) if flipped else slice(start, stop)


def _within(span: slice, quadrant_span: slice, what: str, view: LE1Quadrant) -> slice:
    start = quadrant_span.start if span.start is None else span.start
    stop = quadrant_span.stop if span.stop is None else span.stop
    if start < quadrant_span.start or stop > quadrant_span.stop or (span.step or 1) != 1:
        raise ValueError(f"{view.path} extension {view.extension.name}: frame {what} {start}..{stop} are outside "
                         f"quadrant {view.letter} ({quadrant_span.start}..{quadrant_span.stop})")
    return slice(start - quadrant_span.start, stop - quadrant_span.start)


# -- the FPA exposure log ---------------------------------------------------------------------------

@dataclass(frozen=True)
class FPAExposure:
    obsid: int
    file_name: str  # the frame is <file_name>.fits beside the log
    date: str  # DDMMYYDhhmmssT
    program: str
    test: str
    line: int  # in the log


@dataclass(frozen=True)
class FPAExpLog:
    path: Path
    exposures: list[FPAExposure]

    def frame_path(self, exposure: FPAExposure) -> Path:
        return self.path.parent / f"{exposure.file_name}.fits"

    def for_test(self, test: str) -> list[FPAExposure]:
        return [e for e in self.exposures if e.test == test]

    def tests(self) -> list[str]:
        return list(dict.fromkeys(e.test for e in self.exposures))


def read_fpa_explog(path: str | os.PathLike[str]) -> FPAExpLog:
    """An FPA EXP_LOG: exactly the 5 columns ObsID, File_name, date, program, test (header line
    first). ExpLogError naming the file (and the line) otherwise; rows are parsed by explog.py,
    which refuses a repeated ObsID."""
    path = Path(path)
    log = read_explog(path)
    if list(log.columns) != list(FPA_EXPLOG_COLUMNS):
        found = ", ".join(log.columns) or "none"
        raise ExpLogError(f"{path.name}: not an FPA EXP_LOG: its columns are {found}; an FPA log has the "
                          f"{len(FPA_EXPLOG_COLUMNS)} columns {', '.join(FPA_EXPLOG_COLUMNS)}", path, 1)
    exposures = []
    for row in log.rows:
        name = str(row["File_name"] or "").strip()
        if not name:
            raise ExpLogError(f"{path.name} line {row['line']}: column 'File_name' is empty", path, row["line"])
        exposures.append(FPAExposure(int(row["ObsID"]), name, str(row["date"] or ""), str(row["program"] or ""),
                                     str(row["test"] or ""), int(row["line"])))
    return FPAExpLog(path, exposures)


def is_fpa_explog(path: str | os.PathLike[str]) -> bool:
    """Does the log's header name the 5 FPA columns (and only them)?"""
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as handle:
            header = handle.readline()
    except OSError:
        return False
    return [n.strip() for n in header.rstrip("\r\n").split("\t") if n.strip()] == list(FPA_EXPLOG_COLUMNS)


def write_fpa_explog(path: str | os.PathLike[str], exposures: Iterable[FPAExposure | dict[str, Any]],
                     overwrite: bool = False) -> Path:
    """Write an FPA EXP_LOG (header, then a tab-separated line per exposure); refuses to replace one."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; not overwriting it")
    lines = ["\t".join(FPA_EXPLOG_COLUMNS)]
    for item in exposures:
        row = item if isinstance(item, dict) else {"ObsID": item.obsid, "File_name": item.file_name,
                                                   "date": item.date, "program": item.program, "test": item.test}
        cells = [str(row[c]) for c in FPA_EXPLOG_COLUMNS]
        if any(ch in cell for cell in cells for ch in "\t\r\n"):
            raise ValueError(f"FPA EXP_LOG row {row!r} holds a tab or line break")
        lines.append("\t".join(cells))
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)
    return path
