"""What the fork server of the local executor loads once, so that every worker forked from it
starts ready: the task framework (numpy, the frame readers) and numba with the generic compiled
kernels every family's read uses (numba's import and its first cached load, which starts LLVM,
take about 0.4 s).

Not loaded here, because this module's time is the wait before a run's first unit can start (it
was most of a small test's run): astropy (engine.formats.fits imports it where a file is parsed;
a unit maps frames from their index), the family modules (each worker imports the session's as
it starts: LocalExecutor.warm), the family-specific kernels (loaded from numba's cache on their
first call in a worker, 10-70 ms each; a module not compiled yet, the first run after an
install, is compiled here, once, rather than in every worker at the same time), and scipy (see
_without_scipy)."""

import importlib.abc
import sys
from contextlib import contextmanager
from importlib import import_module

from .tasks import registry  # noqa: F401  (the task framework every unit runs in)
from .tasks.compiled import GENERIC_KERNEL_MODULES, uncompiled_modules


class _RefuseScipy(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "scipy" or name.startswith("scipy."):
            raise ModuleNotFoundError(f"{name}: not loaded by the fork server", name=name)
        # anything else: None, the next finder looks


@contextmanager
def _without_scipy():
    """numba's first compile or cached load imports numba.np.arraymath, whose import-time probe
    for a BLAS imports scipy.linalg (0.2 s). Refused, the probe finds none: np.correlate and
    np.convolve then compile as loops (no kernel uses them), and numba's BLAS functions (np.dot,
    np.linalg) probe again when compiled, with scipy importable then."""
    finder = _RefuseScipy()
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)


with _without_scipy():
    for name in sorted(set(GENERIC_KERNEL_MODULES) | set(uncompiled_modules())):
        import_module(f"{__package__}.tasks.compiled.{name}").warm()  # compile, or load each signature once
