"""Readers and writers of the files an ELVIS-run campaign produces.

The public entry points, one line per module (add yours as a new line). They are imported on
first use (PEP 562): importing a light module of this package (names, tomlfile) must not load
astropy and numpy, or the `vison` app would start seconds later.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy_exports import lazy_exports

_EXPORTS = {
    ".explog": ("ExpLog", "ExpLogError", "ExpLogFollower", "read_explog"),
    ".hk": ("HKFile", "HKFollower", "read_hk"),
    ".hklimits": ("HKLimits", "LimitVerdict", "load_hk_limits"),
    ".fits": ("Frame", "FrameError", "read_frame", "read_header", "write_frame"),
    ".geometry": ("FULL", "QUADRANTS", "REGIONS", "SMALL", "CCDGeometry"),
    ".names": ("day_folder_name", "frame_filename", "parse_day_folder", "parse_frame_name"),
}
__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)


if TYPE_CHECKING:  # what type checkers and editors see
    from .explog import ExpLog, ExpLogError, ExpLogFollower, read_explog  # noqa: F401
    from .hk import HKFile, HKFollower, read_hk  # noqa: F401
    from .hklimits import HKLimits, LimitVerdict, load_hk_limits  # noqa: F401
    from .fits import Frame, FrameError, read_frame, read_header, write_frame  # noqa: F401
    from .geometry import FULL, QUADRANTS, REGIONS, SMALL, CCDGeometry  # noqa: F401
    from .names import day_folder_name, frame_filename, parse_day_folder, parse_frame_name  # noqa: F401
