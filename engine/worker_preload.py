"""What the fork server of the local executor loads once, so that every worker forked from it
starts ready: the task framework (numpy, astropy, the frame readers) and numba with the generic
compiled kernels every family's read uses (numba's import and its first cached load, which starts
LLVM, take about 0.6 s a process).

Not loaded here, because this module's time is the wait before a run's first unit can start (it
was most of a small test's run): the family modules (a worker imports the one its unit belongs to
when the unit arrives, tens of ms) and the family-specific kernels (loaded from numba's cache on
their first call in a worker, 10-70 ms each). A family kernel module not compiled yet (the first
run after an install) is compiled here, once, rather than in every worker at the same time."""

from importlib import import_module

from .tasks import registry  # noqa: F401  (the task framework every unit runs in)
from .tasks.compiled import GENERIC_KERNEL_MODULES, uncompiled_modules

for name in sorted(set(GENERIC_KERNEL_MODULES) | set(uncompiled_modules())):
    import_module(f"{__package__}.tasks.compiled.{name}").warm()  # compile, or load each signature once
