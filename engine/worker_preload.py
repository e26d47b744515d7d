"""What the fork server of the local executor loads once, so that every worker forked from it
starts ready: the analysis modules (the registry imports them all) and the compiled kernels
(numba's import and the load of their cached machine code take about 0.6 s per process).
Outside engine/tasks, whose every module the registry imports: the run's own process does not
load the kernels unless it runs units itself."""

from importlib import import_module

from .tasks import registry
from .tasks.compiled import KERNEL_MODULES

registry.families()  # imports every family's modules (the registry alone imports none)

for name in KERNEL_MODULES:  # every kernel module has warm(): compile or load each signature once
    import_module(f"{__package__}.tasks.compiled.{name}").warm()
