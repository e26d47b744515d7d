"""Readers and writers of the files an ELVIS-run campaign produces.

The public entry points, one import line per module (add yours as a new line).
"""

from .explog import ExpLog, ExpLogError, ExpLogFollower, read_explog  # noqa: F401
from .hk import HKFile, HKFollower, read_hk  # noqa: F401
from .hklimits import HKLimits, LimitVerdict, load_hk_limits  # noqa: F401
