"""When is a file in the day folder completely written?

ELVIS (or the copy from the acquisition laptop) writes files progressively, so a name appears
long before its content is whole. A frame is complete by the policy wait mode shares
(engine.formats.fits.FrameCompleteness: whole FITS structure, unchanged for the settle time); an
HK file counts as written once it has not changed for a settle time. Text tables (EXP_LOG, HK)
are used up to their last complete line.
"""

from __future__ import annotations

import os
import time

from ..formats.fits import FitsCheck, FrameCompleteness, FrameLook, check_fits  # noqa: F401  (re-exported)
from ..formats.names import is_explog_name, parse_frame_name, parse_hk_filename



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


def settled(mtime: float, settle_seconds: float, now: float | None = None) -> bool:
    """Unchanged for at least `settle_seconds` (a slow writer pauses, then carries on)."""
    return (time.time() if now is None else now) - mtime >= settle_seconds


def complete_text_size(path: str | os.PathLike[str], size: int | None = None) -> int:
    """Bytes up to and including the last line terminator (a partial last line is left out)."""
    with open(path, "rb") as handle:
        data = handle.read() if size is None else handle.read(size)
    return data.rfind(b"\n") + 1
