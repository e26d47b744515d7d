"""Compiled inner loops (numba). A package of its own: the registry imports every module of
engine/tasks to find the families, and numba (0.3 s to import, 0.3 s to load the machine code)
belongs only in the processes that run work units."""

import os
from pathlib import Path

# every module of this package, each with warm(): compile, or load each signature once
KERNEL_MODULES = ("kernels", "flat_kernels", "ptc_kernels", "bf_kernels", "tp_kernels", "chinj_kernels",
                  "nl_kernels", "tile_kernels")
# the ones every family's read uses: the fork server loads them before any worker starts (worker_preload)
GENERIC_KERNEL_MODULES = ("kernels",)


def uncompiled_modules(here: Path | None = None) -> list[str]:
    """Kernel modules without machine code in numba's cache beside them (the first run after an
    install compiles them: about 40 s of CPU). Cheap, without numba: it looks for numba's index
    files. An install whose folder is not writable caches elsewhere: nothing is said then."""
    here = here or Path(__file__).parent
    cache = here / "__pycache__"
    if not _writable(here):
        return []
    return [name for name in KERNEL_MODULES if not any(cache.glob(f"{name}.*.nbi"))]


def _writable(folder: Path) -> bool:
    return os.access(folder, os.W_OK)
