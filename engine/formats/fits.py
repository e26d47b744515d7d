"""ELVIS frames: one FITS file per CCD per OBSID.

Layout: an empty primary HDU, then one image extension (the last HDU) with BITPIX 16,
BZERO 32768 (unsigned 16-bit ADU). astropy cannot memory-map BZERO-scaled data, so reads take
the raw int16 memory map and flip the sign bit, and only for the rows and columns asked for.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from .geometry import CCDGeometry, geometry_for_shape

if TYPE_CHECKING:  # astropy takes 0.3 s to import: a worker reading frames by their index never needs it
    from astropy.io import fits

FITS_BLOCK = 2880
_CARD = 80


class FrameError(ValueError):
    """A frame file that cannot be read as an ELVIS frame; the message names the file."""


class Frame:
    """An opened ELVIS frame. Pixel data stay on disk until a section is asked for.

    Use as a context manager, or call close(), so the memory map is released.
    """

    def __init__(self, path: str | Path, index: "FrameIndex | None" = None):
        self.path = Path(path)
        self._hdul: fits.HDUList | None = None
        self._header: fits.Header | None = None
        self._primary_header: fits.Header | None = None
        raw = index.map(self.path) if index is not None else None
        if raw is not None:  # the pixels where the index says, headers parsed only if asked for
            self._bzero = index.bzero
        else:
            raw = self._open()
        self._raw = raw
        self.shape: tuple[int, int] = tuple(raw.shape)  # type: ignore[assignment]

    def _open(self) -> np.ndarray:
        """The headers parsed by astropy, the image HDU's raw int16 memory map checked."""
        try:
            from astropy.io import fits

            self._hdul = fits.open(self.path, memmap=True, do_not_scale_image_data=True, mode="readonly")
        except (OSError, ValueError) as exc:
            raise FrameError(f"{self.path}: not a readable FITS file ({exc})") from exc
        try:
            hdu = self._hdul[-1]
            self._header, self._primary_header = hdu.header, self._hdul[0].header
            raw = hdu.data
        except Exception as exc:  # astropy raises many kinds on truncated files
            self._hdul.close()
            raise FrameError(f"{self.path}: broken FITS data ({exc})") from exc
        if raw is None or raw.ndim != 2:
            self._hdul.close()
            raise FrameError(f"{self.path}: the last HDU holds no 2-D image")
        self._bzero = self._header.get("BZERO", 0)
        if raw.dtype.kind != "i" or raw.dtype.itemsize != 2 or self._bzero not in (0, 32768):
            self._hdul.close()
            raise FrameError(
                f"{self.path}: expected 16-bit data with BZERO 32768 (ELVIS), "
                f"found {raw.dtype} with BZERO {self._bzero}"
            )
        return raw

    @property
    def header(self) -> fits.Header:
        """The image extension's header (parsed now if the frame was mapped from its index)."""
        if self._header is None:
            self._header = read_header(self.path)
        return self._header

    @property
    def primary_header(self) -> fits.Header:
        if self._primary_header is None:
            from astropy.io import fits

            with fits.open(self.path, memmap=True, do_not_scale_image_data=True) as hdul:
                self._primary_header = hdul[0].header.copy()
        return self._primary_header

    # -- pixels ------------------------------------------------------------------------------

    def section(self, rows: slice = slice(None), cols: slice = slice(None), out: np.ndarray | None = None) -> np.ndarray:
        """Counts (ADU, uint16) of a rectangular section, read from disk on demand (into `out`, a
        uint16 array of the section's shape, if given: no fresh array per read)."""
        # One copy from the big-endian map to native int16, then flip the sign bit in place:
        # int16 + 32768 has the same bits as the uint16 count with bit 15 flipped.
        if out is None:
            counts = np.array(self._raw[rows, cols], dtype=np.int16).view(np.uint16)
        else:
            np.copyto(out.view(np.int16), self._raw[rows, cols])
            counts = out
        if self._bzero == 32768:
            counts ^= np.uint16(0x8000)
        return counts

    def stored(self) -> tuple[np.ndarray, int]:
        """The pixels as the file stores them (the raw 16-bit memory map, no copy) and their BZERO,
        for a compiled reader converting them as section() does while it sweeps them."""
        return self._raw, self._bzero

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
        if self._hdul is not None:
            self._hdul.close()

    def __enter__(self) -> "Frame":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def read_frame(path: str | Path, index: FrameIndex | None = None) -> Frame:
    """Open an ELVIS frame lazily: `with read_frame(p) as f: f.region("E", "prescan")`; with its
    `index` (index_frame), mapped without parsing its headers while the file is the one indexed."""
    return Frame(path, index)


def read_header(path: str | Path) -> fits.Header:
    """The image extension's header, without touching pixel data."""
    from astropy.io import fits

    try:
        with fits.open(path, memmap=True, do_not_scale_image_data=True) as hdul:
            return hdul[-1].header.copy()
    except (OSError, ValueError) as exc:
        raise FrameError(f"{path}: not a readable FITS file ({exc})") from exc


def frame_hdulist(data: np.ndarray, header: Mapping[str, Any] | None = None, extname: str = "ROE1_CCD1") -> fits.HDUList:
    """An ELVIS-shaped HDU list: empty primary, then the uint16 image with BZERO 32768."""
    from astropy.io import fits

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
# is whole. These read headers only, and trust no header value before checking it: a negative
# NAXIS1 once sent the HDU walk backwards for ever.

MAX_AXIS_LENGTH = 1_000_000  # pixels along one axis; a CCD273 frame has 4238
MAX_HDU_DATA_BYTES = 1 << 32  # one HDU's data; a full ELVIS frame holds 35 MB
MAX_HEADER_BLOCKS = 100  # 3600 cards; an ELVIS header takes 2 blocks
MAX_HDUS = 1000
_BITPIX = (8, 16, 32, 64, -32, -64)
UNREADABLE = "cannot read"  # how a FitsCheck's reason starts when the file could not be opened


@dataclass(frozen=True)
class ImageLayout:
    """An image extension of a FITS file, from its header alone (image_extension)."""

    data_offset: int
    shape: tuple[int, ...]  # numpy order (NAXISn ... NAXIS1)
    bitpix: int
    cards: dict[str, str]  # each keyword's value as written (first occurrence; strings quoted)

    def text(self, keyword: str, default: str = "") -> str:
        """A keyword's value as text, a string without its quotes (`default` if absent)."""
        return unquoted(self.cards[keyword]) if keyword in self.cards else default


@dataclass(frozen=True)
class FitsCheck:
    complete: bool
    expected: int | None  # the size the headers announce (None: headers not all there)
    size: int
    reason: str
    broken: bool = False  # will never become whole by being written further: a bad header, extra bytes
    images: tuple[ImageLayout, ...] = ()  # every image HDU, in file order, when whole

    @property
    def shape(self) -> tuple[int, ...] | None:
        """numpy shape of the last image HDU (NAXISn ... NAXIS1), when whole."""
        return self.images[-1].shape if self.images else None

    @property
    def data_offset(self) -> int | None:
        """Where the last image HDU's data start (bytes), when whole."""
        return self.images[-1].data_offset if self.images else None

    @property
    def bitpix(self) -> int | None:
        return self.images[-1].bitpix if self.images else None

    @property
    def bzero(self) -> str | None:
        """The last image HDU's BZERO as written ("" if absent), when whole."""
        return self.images[-1].cards.get("BZERO", "") if self.images else None


def _card_value(card: bytes) -> str:
    """A card's value as written, its comment left out: a string with its quotes (a '/' inside
    it kept: unquoted() reads it), anything else up to the comment."""
    text = card[10:].decode("ascii", "replace").strip() if card[8:10] == b"= " else ""
    if not text.startswith("'"):
        return text.split("/", 1)[0].strip()
    i = 1
    while i < len(text):
        if text[i] == "'":
            if text[i + 1:i + 2] != "'":
                return text[:i + 1]
            i += 1
        i += 1
    return text  # no closing quote: what there is


def unquoted(value: str) -> str:
    """A header string as _card_value gives it, without its quotes (doubled quotes undone,
    trailing blanks dropped); anything else as it is."""
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1].replace("''", "'").rstrip()
    return value


def _header_int(cards: dict[str, str], key: str, low: int, high: int, default: int | None = None) -> int:
    """A header integer within [low, high]; ValueError naming the key and value otherwise."""
    text = cards.get(key)
    if text is None or text == "":
        if default is None:
            raise ValueError(f"no {key}")
        return default
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{key} = {text!r} is not an integer") from None
    if not low <= value <= high:
        raise ValueError(f"{key} = {value} outside {low}..{high}")
    return value


def _data_bytes(cards: dict[str, str]) -> tuple[int, bool]:
    """(data bytes the header announces, whether they hold an image); ValueError on a bad header."""
    bitpix = _header_int(cards, "BITPIX", -64, 64)
    if bitpix not in _BITPIX:
        raise ValueError(f"BITPIX = {bitpix} is not one of {', '.join(map(str, _BITPIX))}")
    naxis = _header_int(cards, "NAXIS", 0, 999)
    axes = [_header_int(cards, f"NAXIS{i}", 0, MAX_AXIS_LENGTH) for i in range(1, naxis + 1)]
    pcount = _header_int(cards, "PCOUNT", 0, MAX_HDU_DATA_BYTES, default=0)
    gcount = _header_int(cards, "GCOUNT", 0, MAX_AXIS_LENGTH, default=1)
    if naxis == 0:
        return 0, False
    pixels = 1
    for axis in axes:
        pixels *= axis
    data = abs(bitpix) // 8 * gcount * (pcount + pixels)
    if data > MAX_HDU_DATA_BYTES:
        raise ValueError(f"data of {data} bytes announced ({' x '.join(map(str, axes))} pixels): absurd for a frame")
    return data, naxis >= 2 and pixels > 0


def check_fits(path: str | os.PathLike[str]) -> FitsCheck:
    """Is the file a whole FITS file: every HDU's header and padded data present, nothing more?

    Bounded whatever the bytes: at most MAX_HDUS headers of MAX_HEADER_BLOCKS blocks each, and
    each HDU moves forward (header values are range-checked before use).
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        handle = open(path, "rb")
    except OSError as exc:
        return FitsCheck(False, None, 0, f"{UNREADABLE}: {exc.strerror or exc}")
    with handle:
        offset, images = 0, []
        for hdu in range(MAX_HDUS):
            if offset >= size:
                break
            cards: dict[str, str] = {}
            header_end = None
            for block_index in range(MAX_HEADER_BLOCKS):
                handle.seek(offset + block_index * FITS_BLOCK)
                block = handle.read(FITS_BLOCK)
                if len(block) < FITS_BLOCK:
                    return FitsCheck(False, None, size, "header still being written")
                if block_index == 0 and block[:8].strip() != (b"SIMPLE" if hdu == 0 else b"XTENSION"):
                    what = "not a FITS file" if hdu == 0 else f"{size - offset} bytes after the FITS file's end"
                    return FitsCheck(False, None, size, what, broken=True)
                for i in range(0, FITS_BLOCK, _CARD):
                    card = block[i:i + _CARD]
                    key = card[:8].decode("ascii", "replace").strip()
                    if key == "END":
                        header_end = offset + (block_index + 1) * FITS_BLOCK
                        break
                    if key and key not in cards:
                        cards[key] = _card_value(card)
                if header_end is not None:
                    break
            if header_end is None:
                return FitsCheck(False, None, size, f"no END card in {MAX_HEADER_BLOCKS} header blocks", broken=True)
            try:
                data, image = _data_bytes(cards)
            except ValueError as exc:
                return FitsCheck(False, None, size, f"bad header in HDU {hdu}: {exc}", broken=True)
            if image:  # header values checked by _data_bytes above
                shape = tuple(int(cards[f"NAXIS{i}"]) for i in range(int(cards["NAXIS"]), 0, -1))
                images.append(ImageLayout(header_end, shape, int(cards["BITPIX"]), cards))
            offset = header_end + -(-data // FITS_BLOCK) * FITS_BLOCK  # > the last offset: the walk ends
        else:
            return FitsCheck(False, None, size, f"more than {MAX_HDUS} HDUs", broken=True)
        if offset != size:
            return FitsCheck(False, offset, size, f"{size} of {offset} bytes written")
        if not images:
            return FitsCheck(False, offset, size, "no image yet (only the primary header)")
        return FitsCheck(True, offset, size, "complete", images=tuple(images))


@dataclass(frozen=True)
class FrameIndex:
    """Where an ELVIS frame's pixels lie, from one walk over its headers (index_frame): a work unit
    given it maps the raw pixels at once instead of having astropy parse the headers (about 1 ms
    a frame, paid by each of the four quadrant units that read it). It is used only while the
    file is the one indexed (same size and modification time); otherwise the frame is opened the
    usual way, and says what is wrong with it as usual."""

    data_offset: int
    shape: tuple[int, int]
    bzero: int
    size: int
    mtime_ns: int

    def map(self, path: Path) -> np.ndarray | None:
        """The raw big-endian int16 pixels, or None when the file is not the one indexed."""
        try:
            status = path.stat()
            if (status.st_size, status.st_mtime_ns) != (self.size, self.mtime_ns):
                return None
            return np.memmap(path, dtype=">i2", mode="r", offset=self.data_offset, shape=self.shape)
        except (OSError, ValueError):
            return None


def index_frame(path: str | os.PathLike[str]) -> FrameIndex | None:
    """The FrameIndex of a whole ELVIS frame (16-bit image in its last HDU, BZERO 0 or 32768),
    else None (the unit then opens it with astropy, which says what is wrong)."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    check = check_fits(path)
    if not (check.complete and check.data_offset is not None and check.bitpix == 16 and check.shape
            and len(check.shape) == 2):
        return None
    try:
        bzero = float(check.bzero) if check.bzero else 0.0
    except ValueError:
        return None
    if bzero not in (0.0, 32768.0):
        return None
    after = os.stat(path)
    if (after.st_size, after.st_mtime_ns) != (status.st_size, status.st_mtime_ns):
        return None  # written to while indexed
    return FrameIndex(check.data_offset, (int(check.shape[0]), int(check.shape[1])), int(bzero), status.st_size,
                      status.st_mtime_ns)


def image_extension(path: str | os.PathLike[str], extname: str) -> ImageLayout:
    """Where the image extension named `extname` lies in the FITS file `path`, from its headers
    (check_fits: no astropy), for a worker that maps the pixels. ValueError naming the file and
    what is wrong when the file is not whole or has no such extension."""
    check = check_fits(path)
    if not check.complete:
        raise ValueError(f"{path}: not a whole FITS file ({check.reason})")
    for layout in check.images:
        if layout.text("EXTNAME").upper() == extname.upper():
            return layout
    raise ValueError(f"{path}: no image extension named {extname}")


# -- when is a frame file done with? -----------------------------------------------------------

FRAME_STATES = ("complete", "settling", "incomplete", "broken", "missing")


@dataclass(frozen=True)
class FrameLook:
    """What one look at a frame file found; `state` is one of FRAME_STATES, `detail` says why."""

    state: str
    detail: str = ""
    size: int = 0
    shape: tuple[int, ...] | None = None  # the image's numpy shape, on the look that finds it complete

    @property
    def complete(self) -> bool:
        return self.state == "complete"


class FrameCompleteness:
    """The one policy deciding when a frame file is complete (wait mode and the monitor use it).

    Complete: a whole FITS file (check_fits: headers parsed and valid, size what they announce,
    an image), and stable: size and mtime unchanged for `stable_s`. A file whose mtime is already
    `stable_s` old counts at the first look (a folder opened after the fact); a fresh one needs a
    look `stable_s` after its size and mtime last changed. "broken" files (bad header, bytes after
    the end) are looked at again only when they change.

    `clock` gives wall-clock seconds, the scale of file mtimes; tests pass a fake one. A file
    found complete is not looked at again until forget().
    """

    def __init__(self, stable_s: float, clock: Callable[[], float] = time.time):
        self.stable_s = stable_s
        self.clock = clock
        self.confirmed: dict[Path, int] = {}  # path -> its size when found complete
        self._seen: dict[Path, tuple[tuple[int, int], float, FitsCheck]] = {}  # signature, since, check

    def look(self, path: str | os.PathLike[str]) -> FrameLook:
        path = Path(path)
        if path in self.confirmed:
            return FrameLook("complete", "", self.confirmed[path])
        try:
            stat = path.stat()
        except FileNotFoundError:
            self._seen.pop(path, None)
            return FrameLook("missing", "not on disk")
        except OSError as exc:
            return FrameLook("missing", f"cannot look at it: {exc.strerror or exc}")
        now = self.clock()
        signature = (stat.st_size, stat.st_mtime_ns)
        seen = self._seen.get(path)
        if seen is None or seen[0] != signature:
            check = check_fits(path)
            if check.reason.startswith(UNREADABLE):  # permission denied: not cached, it may be granted later
                return FrameLook("incomplete", check.reason, stat.st_size)
            if check.size != stat.st_size:  # changed while being read: judge it at the next look
                check = FitsCheck(False, None, check.size, "changing while looked at")
            seen = (signature, now, check)
            self._seen[path] = seen
        _, since, check = seen
        if not check.complete:
            return FrameLook("broken" if check.broken else "incomplete", check.reason, stat.st_size)
        unchanged_s = max(now - stat.st_mtime_ns / 1e9, now - since)
        if unchanged_s >= self.stable_s:
            self.confirmed[path] = stat.st_size
            self._seen.pop(path, None)
            return FrameLook("complete", "", stat.st_size, check.shape)
        return FrameLook("settling", f"unchanged for {unchanged_s:.1f} of {self.stable_s:g} s", stat.st_size)

    def forget(self, path: str | os.PathLike[str]) -> None:
        """Look at this file afresh next time (e.g. it was replaced)."""
        self.confirmed.pop(Path(path), None)
        self._seen.pop(Path(path), None)
