"""The FPA master bias in the LE1 layout (`fpa run`'s meta sub-task, engine/tasks/fpa_products.py).

On 10 simulated small LE1 BIAS01 frames: the product and its spread file are each an LE1-layout
FITS (145 HDUs, the input's extension names in order, astropy's verify passes, provenance in the
primary); a fixed pattern put at canonical (0, 0) of 8 quadrants (the four LE1 positions of a
left-column and of a right-column CCD) comes back at the very pixel where the raw LE1 extension
holds it; every quadrant is the per-pixel median (and std) of the offset-subtracted frames within
the quantisation error each extension states (QMAXERR = QSTEP / 2, QSTEP = QRON / 64 for the
median, / 32 for the std) plus float32 rounding (the kernel subtracts the offset in float32:
half a unit in the last place of a ~2900 ADU offset is 1.2e-4 ADU). A unit that fails or is
killed leaves no product under the final name.
"""

from __future__ import annotations

import errno
import hashlib
import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from engine import __version__
from engine.cli.main import main as cli
from engine.formats.geometry import QUADRANTS
from engine.formats.le1 import read_le1
from engine.pipeline.fpa_run import FPARequest, run_fpa
from engine.sim.le1 import simulate_le1
from engine.tasks import fpa_products
from engine.tasks.bandpass import prescan_stats
from engine.tasks.executor import LocalExecutor

FRAMES = 10
MARKED = [f"1-1.{q}" for q in QUADRANTS] + [f"4-4.{q}" for q in QUADRANTS]  # C_11 and C_44: all 4 positions
NODE_ADU, NEXT_ADU = 500.0, 300.0  # added at canonical (0, 0) and (0, 1) in every frame
FLOAT32_ADU = 2.5e-4  # float32 rounding of offset-subtracted counts near 3000 ADU, with margin
PRODUCTS = ("products/EUC_MASTERBIAS_FPA.fits", "products/EUC_MASTERBIAS_FPA_STD.fits")
MASK = "products/EUC_MASK_FPA.fits"


@pytest.fixture(scope="module")
def fpa_master(tmp_path_factory):
    root = tmp_path_factory.mktemp("fpa_products")
    marks = {name: [(0, 0, NODE_ADU), (0, 1, NEXT_ADU)] for name in MARKED}
    sim = simulate_le1(root / "data", frames=FRAMES, seed=11, marks=marks)
    code = cli(["fpa", "run", "--data", str(sim.day_folder), "--test", "BIAS01", "--results", str(root / "results"),
                "-m", "2"])
    assert code == 0
    folder = root / "results" / "FPA" / "BIAS01"
    return sim, folder, json.loads((folder / "result.json").read_text())


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_master_and_its_spread_have_the_le1_layout_of_their_input(fpa_master):
    sim, folder, record = fpa_master
    assert record["subtasks"] == {"basic": "done", "meta": "done"} and record["products"] == [*PRODUCTS, MASK]
    with fits.open(sim.frames[0]) as raw:
        names = [hdu.name for hdu in raw]
        shapes = [hdu.shape for hdu in raw[1:]]
    assert len(names) == 145
    for product, kind, method in zip(PRODUCTS, ("MASTERBIAS", "MASTERBIAS_STD"),
                                     ("median of offset-subtracted frames", "std (ddof 1) of offset-subtracted frames")):
        with fits.open(folder / product) as hdul:
            hdul.verify("exception")
            assert [hdu.name for hdu in hdul] == names
            assert [hdu.shape for hdu in hdul[1:]] == shapes
            primary = hdul[0].header
            assert hdul[0].data is None and primary["NAXIS"] == 0
            assert (primary["PRODUCT"], primary["TEST"], primary["SESSION"], primary["METHOD"]) == (
                kind, "BIAS01", "FPA", method)
            assert (primary["OBSIDS"], primary["NCOMB"], primary["VISON"]) == ("1000-1009", FRAMES, __version__)
            assert primary["DATE"] and len(primary["HISTORY"]) == FRAMES
            assert all(hdu.header["BUNIT"] == "ADU" for hdu in hdul[1:])
            # each extension says which quadrant it is and what was subtracted, as the input does
            for hdu, raw_name in zip(hdul[1:], names[1:]):
                ccdid, quadrant = raw_name.split(".")
                assert (hdu.header["CCDID"], hdu.header["QUADID"]) == (ccdid, quadrant)
                assert hdu.header["FPACCD"] == "C_" + ccdid.replace("-", "")
                assert 500 < hdu.header["OFFSET"] < 5000
    report = (folder / "report.md").read_text()
    assert "## FPA products (meta)" in report and f"`{PRODUCTS[0]}`" in report
    assert "master std |" in report


def test_a_pattern_at_canonical_origin_comes_back_where_the_raw_frame_holds_it(fpa_master):
    sim, folder, _ = fpa_master
    layout = read_le1(sim.frames[0]).layout
    with fits.open(sim.frames[0]) as raw, fits.open(folder / PRODUCTS[0]) as master:
        for name in MARKED:
            place = layout.by_extname(name)
            frame, stacked = raw[name].data.astype(float), master[name].data
            height, width = frame.shape
            # the LE1 position's flips (docs/fpa.md): where canonical (0, 0) and (0, 1) are stored
            node = (height - 1 if place.flip_rows else 0, width - 1 if place.flip_cols else 0)
            after = (node[0], node[1] - 1 if place.flip_cols else node[1] + 1)
            assert np.unravel_index(np.argmax(frame), frame.shape) == node, name  # the raw frame, by astropy
            assert np.unravel_index(np.argmax(stacked), stacked.shape) == node, name  # the master: same pixel
            assert stacked[node] == pytest.approx(NODE_ADU, abs=5) and stacked[after] == pytest.approx(NEXT_ADU, abs=5)
            assert np.count_nonzero(stacked > 50) == 2, name


def test_the_bias_mask_has_the_le1_layout_and_judges_only_the_image_area(fpa_master):
    """The marks sit in the prescan (canonical (0, 0), (0, 1)), the biases have no hot pixel:
    an LE1-layout mask with no pixel flagged (tests/test_fpa_dark.py finds injected ones)."""
    sim, folder, record = fpa_master
    with fits.open(sim.frames[0]) as raw, fits.open(folder / MASK) as mask:
        mask.verify("exception")
        assert [hdu.name for hdu in mask] == [hdu.name for hdu in raw]
        assert (mask[0].header["PRODUCT"], mask[0].header["TEST"], mask[0].header["NCOMB"]) == ("MASK", "BIAS01", FRAMES)
        for hdu in mask[1:]:
            assert hdu.data.dtype == np.uint8 and hdu.data.shape == raw[hdu.name].data.shape
            assert not hdu.data.any() and hdu.header["NHOT"] == 0, hdu.name
    assert all(v["mask_hot_pixels"] == 0 for quads in record["ccds"].values() for v in quads.values())


def test_every_quadrant_is_the_median_of_the_offset_subtracted_frames_within_its_stated_step(fpa_master):
    sim, folder, record = fpa_master
    le1s = [read_le1(path) for path in sim.frames]
    geometry = le1s[0].geometry
    rows = slice(0, geometry.image_rows)
    raws = [fits.open(path) for path in sim.frames]
    try:
        with fits.open(folder / PRODUCTS[0]) as master, fits.open(folder / PRODUCTS[1]) as spread:
            for place in le1s[0].layout.quadrants:
                name = place.extname
                offsets = []
                for le1 in le1s:
                    with le1.open(name) as view:  # the offset the run subtracts: each frame's prescan clipped mean
                        offsets.append(prescan_stats(view, place.quadrant, geometry, rows).clipped_mean)
                cube = np.stack([raw[name].data.astype(np.float64) for raw in raws]) - np.array(offsets)[:, None, None]
                header, std_header = master[name].header, spread[name].header
                ron = header["QRON"]
                truth = sim.truths[place.ccd.ccdid][place.quadrant]["ron_adu"]
                assert ron == pytest.approx(truth, rel=0.15), name  # the quadrant's own read noise
                assert header["QSTEP"] == pytest.approx(ron / 64, rel=1e-12)
                assert header["QMAXERR"] == pytest.approx(header["QSTEP"] / 2, rel=1e-12)
                assert std_header["QSTEP"] == pytest.approx(ron / 32, rel=1e-12) and std_header["QRON"] == ron
                error = np.abs(master[name].data - np.median(cube, axis=0))
                assert error.max() <= header["QMAXERR"] + FLOAT32_ADU, name
                assert error.max() > header["QMAXERR"] / 4  # quantised indeed, not float32 copied
                std_error = np.abs(spread[name].data - cube.std(axis=0, ddof=1))
                assert std_error.max() <= std_header["QMAXERR"] + FLOAT32_ADU, name
                values = record["ccds"][place.ccd.ccdid][place.quadrant]
                assert 0 < values["master_bias_std_adu"] < truth  # the median of 10 frames is less noisy
    finally:
        for raw in raws:
            raw.close()


def test_meta_switched_off_writes_no_master(fpa_master, tmp_path):
    sim, _, _ = fpa_master
    outcome = run_fpa(FPARequest(day=sim.day_folder, test="BIAS01", results=tmp_path, obsids=(1000, 1002), maps=(),
                                 meta=False), LocalExecutor(1))
    assert outcome.record["subtasks"] == {"basic": "done", "meta": "off"}
    assert outcome.record["subtasks_skipped"] == ["meta"] and outcome.record["products"] == []
    assert not (outcome.folder / "products").exists() and not (outcome.folder / ".work").exists()
    assert "switched off" in (outcome.folder / "report.md").read_text()
    assert "master_bias_std_adu" not in outcome.record["ccds"]["C_11"]["E"]


def test_failed_units_leave_no_product_and_say_why(fpa_master, tmp_path, monkeypatch, capsys):
    """The disk fills up while the units compress their planes (every quadrant but the first):
    the numbers are measured and written, the meta sub-task fails, no product and no plane stays."""
    sim, _, _ = fpa_master
    compress = fpa_products.compress_plane

    def disk_full(raw, name, step, ron, out, *cards):
        if name != "1-1.E":
            raise OSError(errno.ENOSPC, "No space left on device", str(out))
        return compress(raw, name, step, ron, out, *cards)

    monkeypatch.setattr(fpa_products, "compress_plane", disk_full)
    code = cli(["fpa", "run", "--data", str(sim.day_folder), "--test", "BIAS01", "--results", str(tmp_path),
                "--obsids", "1000-1002", "-m", "1"])  # one worker: the units run in this process
    assert code == 1
    assert "error: meta: 1-1.F: master planes not written (No space left on device) (and 142 more quadrants)" \
        in capsys.readouterr().err
    folder = tmp_path / "FPA" / "BIAS01"
    record = json.loads((folder / "result.json").read_text())
    assert record["subtasks"]["meta"] == "failed" and record["errors"] and record["products"] == []
    assert "SUBTASKCRASH" in record["flags"] and len(record["ccds"]) == 36
    left = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file() and p.suffix != ".png")
    assert left == ["FPA/.BIAS01.lock", "FPA/BIAS01/report.md", "FPA/BIAS01/result.json"]  # no plane, no product


KILL_IN_UNIT = """
import os, signal, sys
from engine.tasks import fpa_products
def killed(*args):  # the process running the unit dies while it compresses its planes
    os.kill(os.getpid(), signal.SIGKILL)
fpa_products.compress_plane = killed
from engine.cli.main import main
sys.exit(main(sys.argv[1:]))
"""

KILL_IN_ASSEMBLY = """
import os, signal, sys
from pathlib import Path
from engine.tasks import fpa_products
def half_written(final, primary, planes):  # killed half-way through writing the product
    Path(final).write_bytes(b"SIMPLE  =                    T" + bytes(100))
    os.kill(os.getpid(), signal.SIGKILL)
fpa_products.assemble_product = half_written
fpa_products.write_product(Path(sys.argv[1]), "EUC_MASTERBIAS_FPA.fits", None, [])
"""


def test_a_killed_run_leaves_the_earlier_product_whole(fpa_master, tmp_path):
    sim, folder, _ = fpa_master
    results = tmp_path / "results"
    shutil.copytree(folder.parent.parent, results)  # an earlier result with its products
    product = results / "FPA" / "BIAS01" / PRODUCTS[0]
    before = _sha256(product)

    killed = subprocess.run([sys.executable, "-c", KILL_IN_UNIT, "fpa", "run", "--data", str(sim.day_folder),
                             "--test", "BIAS01", "--results", str(results), "--obsids", "1000-1002", "-m", "1"],
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert _sha256(product) == before  # the earlier product, whole
    masters = sorted(p.relative_to(results).as_posix() for p in results.rglob("EUC_MASTERBIAS*"))
    assert masters == ["FPA/BIAS01/" + name for name in sorted(PRODUCTS)]  # nothing else of that name anywhere

    killed = subprocess.run([sys.executable, "-c", KILL_IN_ASSEMBLY, str(product.parent)], capture_output=True,
                            text=True, timeout=60)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert _sha256(product) == before  # the half-written file never took the product's name
    assert [p.name for p in product.parent.glob(".EUC_MASTERBIAS_FPA.fits.part-*")]
