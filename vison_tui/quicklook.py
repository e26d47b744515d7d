"""Quick look at a FITS image in the terminal (the console's quickds9), without Textual.

Reading: the image HDU is memory-mapped and read in bands of rows, each band reduced at once to
block means, so a full 4k x 4k frame costs a few MB of memory and only the area shown is read
(a quadrant reads a quarter of the file). Raw ELVIS frames (int16, BZERO 32768) and float
products (the master bias's STACK/STD) go through the same path.

Drawing: one terminal cell shows two pixels stacked (upper half block "▀", foreground = upper
pixel, background = lower pixel), so a cell-high pair is square on a usual terminal font. Row 0
is at the bottom, as ds9 shows a FITS image. Scales: min-max, percentiles 1-99 and 5-95, and
zscale (IRAF's, via astropy).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from astropy.io import fits
from rich.color import Color
from rich.segment import Segment
from rich.style import Style

from engine.formats.geometry import QUADRANTS, geometry_for_shape
from engine.formats.names import parse_frame_name

SCALES = ("zscale", "min-max", "1-99 %", "5-95 %")
AREAS = ("frame", *QUADRANTS)
PALETTES = ("grey", "heat")
BAND_PIXELS = 4 << 20  # pixels read at once: bounds memory whatever the frame size
LEVELS = 64


class QuickLookError(ValueError):
    """A file or extension that cannot be shown; the message names it."""


@dataclass(frozen=True)
class ImageSource:
    """A FITS file offered for quick look: a product of the test or one of its raw frames."""

    path: Path
    kind: str  # "product" | "raw"
    label: str


@dataclass
class DownsampledImage:
    path: Path
    extension: str
    area: str  # frame or a quadrant
    block: int  # source pixels per side of a shown pixel
    source_shape: tuple[int, int]  # rows, cols of the area read
    data: np.ndarray  # float32 block means, row 0 at the bottom
    extensions: list[str] = field(default_factory=list)
    areas: list[str] = field(default_factory=list)

    def limits(self, scale: str) -> tuple[float, float]:
        return scale_limits(self.data, scale)

    def describe(self) -> str:
        rows, cols = self.source_shape
        shown = f"{self.data.shape[1]}x{self.data.shape[0]}"
        binning = f"block means {self.block}x{self.block}" if self.block > 1 else "every pixel"
        return f"{self.area} {cols}x{rows} px shown as {shown} ({binning})"


# -- reading ----------------------------------------------------------------------------------------

def image_extensions(hdul: fits.HDUList) -> list[str]:
    """Names (or indices) of the 2-D image HDUs."""
    names = []
    for number, hdu in enumerate(hdul):
        if hdu.header.get("NAXIS") == 2 and hdu.is_image:
            names.append(hdu.name or str(number))
    return names


def read_downsampled(path: Path, extension: str | None, area: str, width: int, height: int) -> DownsampledImage:
    """The area (frame or quadrant E..H) of an image HDU as block means fitting width x height pixels."""
    try:
        hdul = fits.open(path, memmap=True, do_not_scale_image_data=True, mode="readonly")
    except (OSError, ValueError) as exc:
        raise QuickLookError(f"{Path(path).name}: not a readable FITS file ({exc})") from exc
    with hdul:
        extensions = image_extensions(hdul)
        if not extensions:
            raise QuickLookError(f"{Path(path).name}: no 2-D image in it")
        extension = extension if extension in extensions else extensions[0]
        hdu = hdul[int(extension) if extension.isdigit() else extension]
        rows_total, cols_total = hdu.header["NAXIS2"], hdu.header["NAXIS1"]
        areas = ["frame"]
        rows, cols = slice(0, rows_total), slice(0, cols_total)
        try:
            geometry = geometry_for_shape((rows_total, cols_total))
            areas += list(QUADRANTS)
            if area in QUADRANTS:
                rows, cols = geometry.quadrant_slices(area)
        except ValueError:
            pass  # not a CCD273 frame: the whole image only
        if area not in areas:
            area = "frame"
        try:
            raw = hdu.data
        except Exception as exc:  # astropy raises many kinds on truncated files
            raise QuickLookError(f"{Path(path).name}[{extension}]: unreadable data ({exc})") from exc
        scale = float(hdu.header.get("BSCALE", 1.0))
        zero = float(hdu.header.get("BZERO", 0.0))
        n_rows, n_cols = rows.stop - rows.start, cols.stop - cols.start
        block = max(1, math.ceil(n_rows / max(height, 1)), math.ceil(n_cols / max(width, 1)))
        data = block_means(raw, rows, cols, block, scale, zero)
    return DownsampledImage(Path(path), extension, area, block, (n_rows, n_cols), data, extensions, areas)


def block_means(raw: np.ndarray, rows: slice, cols: slice, block: int, scale: float = 1.0,
                zero: float = 0.0) -> np.ndarray:
    """Means of block x block pixels over rows x cols, read band by band (the last partial
    block of each axis is left out)."""
    out_rows = (rows.stop - rows.start) // block
    out_cols = (cols.stop - cols.start) // block
    out = np.empty((out_rows, out_cols), dtype=np.float32)
    band = max(1, BAND_PIXELS // max(1, block * block * out_cols))  # output rows per band
    col_stop = cols.start + out_cols * block
    for first in range(0, out_rows, band):
        last = min(out_rows, first + band)
        piece = np.asarray(raw[rows.start + first * block: rows.start + last * block, cols.start:col_stop],
                           dtype=np.float32)
        if scale != 1.0:
            piece *= scale
        if zero:
            piece += zero
        piece = piece.reshape(last - first, block, out_cols, block)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN blocks stay NaN
            out[first:last] = np.nanmean(piece, axis=(1, 3)) if block > 1 else piece[:, 0, :, 0]
    return out


# -- scaling ----------------------------------------------------------------------------------------

def scale_limits(data: np.ndarray, scale: str) -> tuple[float, float]:
    values = data[np.isfinite(data)]
    if values.size == 0:
        return 0.0, 1.0
    if scale == "min-max":
        low, high = float(values.min()), float(values.max())
    elif scale == "1-99 %":
        low, high = (float(v) for v in np.percentile(values, [1, 99]))
    elif scale == "5-95 %":
        low, high = (float(v) for v in np.percentile(values, [5, 95]))
    else:
        from astropy.visualization import ZScaleInterval

        low, high = (float(v) for v in ZScaleInterval().get_limits(values))
    if not high > low:
        high = low + 1.0
    return low, high


# -- drawing ----------------------------------------------------------------------------------------

def _palette(name: str) -> list[Color]:
    if name == "heat":  # black, red, yellow, white: faint structure stands out
        anchors = [(0, 0, 0), (140, 20, 0), (230, 120, 0), (255, 230, 80), (255, 255, 255)]
    else:
        anchors = [(0, 0, 0), (255, 255, 255)]
    colours = []
    for level in range(LEVELS):
        position = level / (LEVELS - 1) * (len(anchors) - 1)
        i = min(int(position), len(anchors) - 2)
        t = position - i
        rgb = [round(a + (b - a) * t) for a, b in zip(anchors[i], anchors[i + 1])]
        colours.append(Color.from_rgb(*rgb))
    return colours


@lru_cache(maxsize=8)
def _palette_cached(name: str) -> tuple[Color, ...]:
    return tuple(_palette(name))


NAN_COLOUR = Color.from_rgb(60, 0, 60)


@lru_cache(maxsize=LEVELS * LEVELS * 2 + 16)
def _cell_style(palette: str, top: int, bottom: int) -> Style:
    colours = _palette_cached(palette)
    return Style(color=colours[top] if top >= 0 else NAN_COLOUR, bgcolor=colours[bottom] if bottom >= 0 else NAN_COLOUR)


def levels(data: np.ndarray, low: float, high: float) -> np.ndarray:
    """Palette indices 0..LEVELS-1 (-1 for NaN)."""
    with np.errstate(invalid="ignore"):
        scaled = np.clip((data - low) / (high - low), 0.0, 1.0) * (LEVELS - 1)
    result = np.where(np.isfinite(data), np.rint(np.nan_to_num(scaled)), -1)
    return result.astype(np.int16)


def render_cells(data: np.ndarray, low: float, high: float, palette: str = "grey", zoom: int = 1) -> list[list[Segment]]:
    """Lines of segments, top line first: each cell two pixels stacked ("▀")."""
    if zoom > 1:
        data = np.repeat(np.repeat(data, zoom, axis=0), zoom, axis=1)
    indices = levels(data, low, high)[::-1]  # row 0 at the bottom
    if indices.shape[0] % 2:
        indices = np.vstack([indices, np.full((1, indices.shape[1]), -2, dtype=np.int16)])
    lines = []
    for top_row, bottom_row in zip(indices[0::2], indices[1::2]):
        segments: list[Segment] = []
        run_style = None
        run = 0
        for top, bottom in zip(top_row.tolist(), bottom_row.tolist()):
            style = _cell_style(palette, top, bottom) if bottom != -2 else Style(
                color=_palette_cached(palette)[top] if top >= 0 else NAN_COLOUR)
            if style is run_style:
                run += 1
                continue
            if run:
                segments.append(Segment("▀" * run, run_style))
            run_style, run = style, 1
        if run:
            segments.append(Segment("▀" * run, run_style))
        lines.append(segments)
    return lines


def zoom_to_fit(image: DownsampledImage, width: int, height: int) -> int:
    """Whole-number enlargement of a small image to fill width x height pixels."""
    rows, cols = image.data.shape
    if not rows or not cols:
        return 1
    return max(1, min(width // cols, height // rows))


# -- what a test offers ----------------------------------------------------------------------------

def test_sources(folder: Path, result: dict | None) -> list[ImageSource]:
    """The test's FITS products, then its raw frames (from the result's day folder and OBSIDs)."""
    sources = [ImageSource(path, "product", f"product  {path.name}")
               for path in sorted((Path(folder) / "products").glob("*.fits"))]
    if result and result.get("day_folder") and result.get("obsids"):
        first, last = result["obsids"]
        day = Path(result["day_folder"])
        frames = []
        for path in day.glob("EUC_*.fits"):
            try:
                name = parse_frame_name(path)
            except ValueError:
                continue
            if first <= name.obsid <= last:
                frames.append((name.obsid, name.ccd, path))
        for obsid, ccd, path in sorted(frames):
            sources.append(ImageSource(path, "raw", f"raw {obsid} CCD{ccd}  {path.name}"))
    return sources
