"""Shared by the FPA tests: one CCD of LE1 frames copied into ELVIS frames, so the block
family's own workers can be run on the same pixels as the FPA mode."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.formats.fits import write_frame
from engine.formats.geometry import QUADRANTS
from engine.formats.le1 import LE1_SMALL, read_le1


def elvis_frames_of(le1_paths, ccd: str, out: Path, geometry=LE1_SMALL) -> list[Path]:
    """CCD `ccd` (e.g. "C_41") of each LE1 frame as an ELVIS frame of CCD1 in `out`, in order."""
    paths = []
    for n, path in enumerate(le1_paths):
        le1 = read_le1(path)
        frame = np.zeros(geometry.shape, np.uint16)
        for q in QUADRANTS:
            with le1.open(le1.layout.quadrant(ccd, q).extname) as view:
                geometry.put_quadrant(frame, q, view.canonical())
        paths.append(write_frame(out / f"EUC_{n}_ROE1_CCD1.fits", frame))
    return paths


def run_fpa(day: Path, test: str, results: Path, *options: str) -> tuple[Path, dict]:
    """`vison-engine fpa run` of `test` on the LE1 day folder `day` on a local pool of 2 workers
    (more `options` after): its result folder and result.json, the run having exited 0."""
    import json

    from engine.cli.main import main as cli

    code = cli(["fpa", "run", "--data", str(day), "--test", test, "--results", str(results), "-m", "2", *options])
    assert code == 0, f"fpa run {test} exited {code}"
    folder = results / "FPA" / test
    return folder, json.loads((folder / "result.json").read_text())
