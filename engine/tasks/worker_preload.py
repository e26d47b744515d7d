"""What the fork server of the local executor loads once, so that every worker forked from it
starts ready: the analysis modules (the registry imports them all) and the compiled kernels
(numba's import and the load of their cached machine code take about 0.6 s per process)."""

from . import registry  # noqa: F401
from .kernels import warm

warm()
