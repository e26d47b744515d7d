"""What the run's own process imports: it hands the frames to workers forked from a server that
has the compiled kernels loaded, so importing numba there (0.4 s of CPU, with scipy.linalg) is a
cost every run pays for nothing, scipy (0.3 s) is for the families whose fits need it, when
they run, and astropy (0.3 s) for the code reading or writing a FITS file with it (frames are
mapped from their index). A family module that imports either at the top does that through the registry (which
imports every family): this test names it."""

from __future__ import annotations

import subprocess
import sys


def test_loading_every_family_and_the_run_machinery_imports_neither_numba_scipy_nor_astropy():
    code = ("import sys\n"
            "import engine.cli.run_cmd, engine.pipeline.launch, engine.pipeline.runner, engine.tasks.registry\n"
            "engine.tasks.registry.families()\n"
            "print(sorted(m for m in ('numba', 'llvmlite', 'scipy', 'astropy') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", f"the run's process imported {out.strip()}: import them where they are used"


def test_the_fork_server_preload_imports_neither_astropy_scipy_nor_a_family_module():
    """Every run waits for the fork server's preload before its first unit can start (it was most of
    a small test's run). A worker maps frames from their index (fits.index_frame) and never needs
    astropy (0.3 s) unless its family writes FITS; the family modules come with warm(modules);
    scipy (0.2 s) came with numba's BLAS probe. After the preload, numba's BLAS functions still
    compile (they import scipy then)."""
    code = ("import sys\n"
            "import engine.worker_preload\n"
            "print(sorted(m for m in sys.modules if m in ('astropy', 'scipy', 'engine.tasks.bias', 'engine.tasks.focus')))\n"
            "import numpy as np\n"
            "from numba import njit\n"
            "print(njit(lambda a, b: np.dot(a, b))(np.ones((2, 2)), np.ones((2, 2))).sum())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["[]", "8.0"], f"the fork server's preload imported, then np.dot gave: {out}"


def test_the_warm_up_imports_astropy_only_for_a_session_writing_fits_products():
    """A run imports the analyses and matplotlib while its units run; astropy too when a family of
    the session writes FITS products from the run's process (Family.fits_products: TP01's trap
    catalogue waited 0.3 s for it after the units), never for one that writes none (FOCUS00)."""
    code = ("import sys\n"
            "from engine.pipeline.runner import _load_analyses_and_figures\n"
            "_load_analyses_and_figures(['focus', 'psflux'])\n"
            "print('astropy' in sys.modules, 'matplotlib' in sys.modules)\n"
            "_load_analyses_and_figures(['focus', 'tp'])\n"
            "print('astropy' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True", "True"], out
