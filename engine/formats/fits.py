"""ELVIS frames: one FITS file per CCD per OBSID.

Layout: an empty primary HDU, then one image extension (the last HDU) with BITPIX 16,
BZERO 32768 (unsigned 16-bit ADU). astropy cannot memory-map BZERO-scaled data, so reads take
the raw int16 memory map and flip the sign bit, and only for the rows and columns asked for.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from astropy.io import fits

from .geometry import CCDGeometry, geometry_for_shape

FITS_BLOCK = 2880
_CARD = 80


class FrameError(ValueError):
    """A frame file that cannot be read as an ELVIS frame; the message names the file."""


class Frame:
    """An opened ELVIS frame. Pixel data stay on disk until a section is asked for.

    Use as a context manager, or call close(), so the memory map is released.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self._hdul = fits.open(self.path, memmap=True, do_not_scale_image_data=True, mode="readonly")
        except (OSError, ValueError) as exc:
            raise FrameError(f"{self.path}: not a readable FITS file ({exc})") from exc
        try:
            self._hdu = self._hdul[-1]
            self.header: fits.Header = self._hdu.header
            self.primary_header: fits.Header = self._hdul[0].header
            raw = self._hdu.data
        except Exception as exc:  # astropy raises many kinds on truncated files
            self._hdul.close()
            raise FrameError(f"{self.path}: broken FITS data ({exc})") from exc
        if raw is None or raw.ndim != 2:
            self._hdul.close()
            raise FrameError(f"{self.path}: the last HDU holds no 2-D image")
        self._bzero = self.header.get("BZERO", 0)
        if raw.dtype.kind != "i" or raw.dtype.itemsize != 2 or self._bzero not in (0, 32768):
            self._hdul.close()
            raise FrameError(
                f"{self.path}: expected 16-bit data with BZERO 32768 (ELVIS), "
                f"found {raw.dtype} with BZERO {self._bzero}"
            )
        self._raw = raw
        self.shape: tuple[int, int] = tuple(raw.shape)  # type: ignore[assignment]

    # -- pixels ------------------------------------------------------------------------------

    def section(self, rows: slice = slice(None), cols: slice = slice(None)) -> np.ndarray:
        """Counts (ADU, uint16) of a rectangular section, read from disk on demand."""
        # One copy from the big-endian map to native int16, then flip the sign bit in place:
        # int16 + 32768 has the same bits as the uint16 count with bit 15 flipped.
        counts = np.array(self._raw[rows, cols], dtype=np.int16).view(np.uint16)
        if self._bzero == 32768:
            counts ^= np.uint16(0x8000)
        return counts

    @property
    def data(self) -> np.ndarray:
        """The whole frame as uint16 (reads it all: prefer section() or geometry views)."""
        return self.section()

    @property
    def geometry(self) -> CCDGeometry:
        return geometry_for_shape(self.shape)

    def region(self, quadrant: str, region: str, geometry: CCDGeometry | None = None) -> np.ndarray:
        """One region of one quadrant in canonical orientation, reading only that section."""
        geometry = geometry or self.geometry
        rows, cols = geometry.frame_region_slices(quadrant, region)
        flip_rows, flip_cols = geometry.flips(quadrant)
        block = self.section(rows, cols)
        return block[:: -1 if flip_rows else 1, :: -1 if flip_cols else 1]

    def quadrant(self, quadrant: str, canonical: bool = True, geometry: CCDGeometry | None = None) -> np.ndarray:
        geometry = geometry or self.geometry
        rows, cols = geometry.quadrant_slices(quadrant)
        block = self.section(rows, cols)
        return geometry.to_canonical(block, quadrant) if canonical else block

    # -- lifetime ----------------------------------------------------------------------------

    def close(self) -> None:
        self._raw = None
        self._hdu = None
        self._hdul.close()

    def __enter__(self) -> "Frame":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def read_frame(path: str | Path) -> Frame:
    """Open an ELVIS frame lazily: `with read_frame(p) as f: f.region("E", "prescan")`."""
    return Frame(path)


def read_header(path: str | Path) -> fits.Header:
    """The image extension's header, without touching pixel data."""
    try:
        with fits.open(path, memmap=True, do_not_scale_image_data=True) as hdul:
            return hdul[-1].header.copy()
    except (OSError, ValueError) as exc:
        raise FrameError(f"{path}: not a readable FITS file ({exc})") from exc


def frame_hdulist(data: np.ndarray, header: Mapping[str, Any] | None = None, extname: str = "ROE1_CCD1") -> fits.HDUList:
    """An ELVIS-shaped HDU list: empty primary, then the uint16 image with BZERO 32768."""
    if data.dtype != np.uint16:
        raise TypeError(f"ELVIS frames hold uint16 counts, got {data.dtype}")
    # Store int16 with BZERO ourselves: one cheap bit flip, no astropy rescaling pass.
    raw = (data ^ np.uint16(0x8000)).view(np.int16)
    image = fits.ImageHDU(data=raw, do_not_scale_image_data=True)
    image.header["BZERO"] = 32768
    image.header["BSCALE"] = 1
    image.header["EXTNAME"] = extname
    for key, value in (header or {}).items():
        image.header[key.upper()] = value
    return fits.HDUList([fits.PrimaryHDU(), image])


def write_frame(
    path: str | Path,
    data: np.ndarray,
    header: Mapping[str, Any] | None = None,
    extname: str = "ROE1_CCD1",
    overwrite: bool = False,
) -> Path:
    """Write an ELVIS frame atomically (temporary name, then rename).

    Refuses to replace an existing file unless overwrite=True: nothing written is lost silently.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; not overwriting it")
    hdul = frame_hdulist(data, header, extname)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        hdul.writeto(tmp, overwrite=True, output_verify="silentfix")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# -- is a file completely written? ----------------------------------------------------------
# ELVIS, or a slow copy, writes a frame progressively: its name appears long before its content
# is whole. These read headers only.

@dataclass(frozen=True)
class FitsCheck:
    complete: bool
    expected: int | None  # the size the headers announce (None: headers not all there)
    size: int
    reason: str


def _header_value(card: bytes) -> str:
    value = card[10:].split(b"/", 1)[0] if card[8:10] == b"= " else b""
    return value.decode("ascii", "replace").strip()


def check_fits(path: str | os.PathLike[str]) -> FitsCheck:
    """Is the file a whole FITS file: every HDU's header and padded data present, nothing more?"""
    path = Path(path)
    try:
        size = path.stat().st_size
        handle = open(path, "rb")
    except OSError as exc:
        return FitsCheck(False, None, 0, f"cannot read: {exc.strerror or exc}")
    with handle:
        offset, has_image, first = 0, False, True
        while offset < size:
            cards: dict[str, str] = {}
            header_end = None
            block_offset = offset
            while header_end is None:
                handle.seek(block_offset)
                block = handle.read(FITS_BLOCK)
                if len(block) < FITS_BLOCK:
                    return FitsCheck(False, None, size, "header still being written")
                for i in range(0, FITS_BLOCK, _CARD):
                    card = block[i:i + _CARD]
                    key = card[:8].decode("ascii", "replace").strip()
                    if key == "END":
                        header_end = block_offset + FITS_BLOCK
                        break
                    if key and key not in cards:
                        cards[key] = _header_value(card)
                block_offset += FITS_BLOCK
            if ("SIMPLE" if first else "XTENSION") not in cards:
                return FitsCheck(False, None, size, "not a FITS file (or bytes after its end)")
            try:
                bitpix = abs(int(cards["BITPIX"]))
                naxis = int(cards["NAXIS"])
                axes = [int(cards[f"NAXIS{i}"]) for i in range(1, naxis + 1)]
                pcount = int(cards.get("PCOUNT", "0") or 0)
                gcount = int(cards.get("GCOUNT", "1") or 1)
            except (KeyError, ValueError):
                return FitsCheck(False, None, size, "header lacks BITPIX/NAXISn")
            pixels = 1
            for axis in axes:
                pixels *= axis
            data = 0 if naxis == 0 else bitpix // 8 * gcount * (pcount + pixels)
            has_image = has_image or (naxis >= 2 and pixels > 0)
            offset = header_end + -(-data // FITS_BLOCK) * FITS_BLOCK
            first = False
        if offset != size:
            return FitsCheck(False, offset, size, f"{size} of {offset} bytes written")
        if not has_image:
            return FitsCheck(False, offset, size, "no image yet (only the primary header)")
        return FitsCheck(True, offset, size, "complete")
