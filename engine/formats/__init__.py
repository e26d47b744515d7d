"""Readers and writers of the files an ELVIS-run campaign produces.

The public entry points, one import line per module (add yours as a new line).
"""

from .explog import ExpLog, ExpLogError, ExpLogFollower, read_explog  # noqa: F401
from .hk import HKFile, HKFollower, read_hk  # noqa: F401
from .hklimits import HKLimits, LimitVerdict, load_hk_limits  # noqa: F401
from .fits import Frame, FrameError, read_frame, read_header, write_frame  # noqa: F401
from .geometry import FULL, QUADRANTS, REGIONS, SMALL, CCDGeometry  # noqa: F401
from .names import day_folder_name, frame_filename, parse_day_folder, parse_frame_name  # noqa: F401
