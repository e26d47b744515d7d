"""What the fork server of the local executor loads once, so that every worker forked from it
starts ready: the analysis modules (the registry imports them all) and the compiled kernels
(numba's import and the load of their cached machine code take about 0.6 s per process).
Outside engine/tasks, whose every module the registry imports: the run's own process does not
load the kernels unless it runs units itself."""

from .tasks import registry  # noqa: F401
from .tasks.compiled import (
    bf_kernels,
    chinj_kernels,
    flat_kernels,
    median_kernels,
    nl_kernels,
    ptc_kernels,
    tp_kernels,
)
from .tasks.compiled.kernels import warm

warm()
flat_kernels.warm()
ptc_kernels.warm()
bf_kernels.warm()
tp_kernels.warm()
median_kernels.warm()
chinj_kernels.warm()
nl_kernels.warm()
