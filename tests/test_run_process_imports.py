"""What the run's own process imports: it hands the frames to workers forked from a server that
has the compiled kernels loaded, so importing numba there (0.4 s of CPU, with scipy.linalg) is a
cost every run pays for nothing, and scipy (0.3 s) is for the families whose fits need it, when
they run. A family module that imports either at the top does that through the registry (which
imports every family): this test names it."""

from __future__ import annotations

import subprocess
import sys


def test_loading_every_family_and_the_run_machinery_imports_neither_numba_nor_scipy():
    code = ("import sys\n"
            "import engine.cli.run_cmd, engine.pipeline.launch, engine.pipeline.runner, engine.tasks.registry\n"
            "engine.tasks.registry.families()\n"
            "print(sorted(m for m in ('numba', 'llvmlite', 'scipy') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", f"the run's process imported {out.strip()}: import them where they are used"


def test_the_fork_server_preload_imports_neither_astropy_nor_a_family_module():
    """Every run waits for the fork server's preload before its first unit can start (it was most of
    a small test's run). A worker maps frames from their index (fits.index_frame) and never needs
    astropy (0.3 s) unless its family writes FITS; the family modules come with warm(modules)."""
    code = ("import sys\n"
            "import engine.worker_preload\n"
            "print(sorted(m for m in sys.modules if m == 'astropy' or m in ('engine.tasks.bias', 'engine.tasks.focus')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", f"the fork server's preload imported {out.strip()}"
