"""When is a file in the day folder completely written?

ELVIS (or the copy from the acquisition laptop) writes files progressively, so a name appears
long before its content is whole. A FITS frame is complete when its size is exactly what its
headers announce and it holds an image; any file counts as written once it has not changed for
a settle time. Text tables (EXP_LOG, HK) are used up to their last complete line.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..formats.names import is_explog_name, parse_frame_name, parse_hk_filename

FITS_BLOCK = 2880
_CARD = 80


def file_kind(name: str) -> str | None:
    """"frame", "hk", "explog" or None for a file the monitor ignores."""
    if name.startswith("."):
        return None  # hidden: temporary files of copy tools, ours included
    if name.endswith(".fits"):
        try:
            parse_frame_name(name)
            return "frame"
        except ValueError:
            return None
    if name.startswith("HK_"):
        try:
            parse_hk_filename(name)
            return "hk"
        except ValueError:
            return None
    return "explog" if is_explog_name(name) else None


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


def settled(mtime: float, settle_seconds: float, now: float | None = None) -> bool:
    """Unchanged for at least `settle_seconds` (a slow writer pauses, then carries on)."""
    return (time.time() if now is None else now) - mtime >= settle_seconds


def complete_text_size(path: str | os.PathLike[str], size: int | None = None) -> int:
    """Bytes up to and including the last line terminator (a partial last line is left out)."""
    with open(path, "rb") as handle:
        data = handle.read() if size is None else handle.read(size)
    return data.rfind(b"\n") + 1
