"""FPA mode: LE1 frames of the whole focal plane (145 HDUs, `j-i.Q` extensions) read through the
formats layer, BIAS01 analysed per quadrant over the FPA, results per CCD C_11..C_66, FPA maps.

End-to-end error budget (small LE1 geometry, n = 10 frames, every quadrant a bias of injected
offset and RON sigma = 1.00-1.35 ADU; one quadrant, C_41 G, injected at 2.0 ADU):
- offset of a region: the 5-sigma clipped mean of each frame's trimmed region, averaged over the
  frames: n x rows x columns independent pixels, std sigma / sqrt(n R C); prescan 10 x 64 x 6
  pixels: 0.019 ADU at 1.2 ADU. Rounding to whole ADU adds no bias at sigma >= 1 ADU (its periodic
  bias is ~exp(-2 pi^2 sigma^2) < 1e-8 ADU); a 5-sigma clip drops 6e-7 of a Gaussian: no bias.
- RON of a region: residuals to the per-pixel mean of the frames carry (n - 1) R C degrees of
  freedom; the relative std of a std is 1 / sqrt(2 dof): 1.2 % for the prescan, 0.3 % for the
  image. The simulator scales its noise so the digitised std is the truth (quantisation in).
Each value is held to 5 of its sigmas: over 144 quadrants x 6 values the chance of one honest
miss is 5e-4, and the seed is fixed (the same pixels every run).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from engine.cli.main import main as cli
from engine.formats.explog import ExpLogError, write_explog
from engine.formats.fits import read_frame
from engine.formats.fpa import LE1_EXTENSIONS, fpa_layout
from engine.formats.geometry import QUADRANTS
from engine.formats.le1 import (
    LE1_SMALL,
    LE1Error,
    MissingExtension,
    OddExtension,
    read_fpa_explog,
    read_le1,
    write_fpa_explog,
)
from engine.sim.le1 import (
    bias_quadrant,
    draw_quadrant_truths,
    simulate_le1,
    write_le1_frame,
)
from engine.tasks.bias import noise_unit
from fpa_frames import elvis_frames_of
from engine.tasks.measures import REGIONS, quadrant_stats, region_columns

FRAMES = 10
LOUD = ("C_41", "G", 2.0)  # CCD, quadrant, injected RON (ADU): above the RON limits [0.86, 1.44]


# -- the layout ------------------------------------------------------------------------------------

def test_every_quadrant_has_its_hdu_by_the_index_formula_and_its_block_ccd():
    layout = fpa_layout("final")
    hdus = [q.hdu for q in layout.quadrants]
    assert hdus == list(range(1, LE1_EXTENSIONS + 1))  # HDU order = layout order, no gap, no repeat
    for q in layout.quadrants:
        j, i = q.ccd.slice, q.ccd.column
        assert q.hdu == (j - 1) * 24 + (i - 1) * 4 + 1 + q.position
        assert q.extname == f"{j}-{i}.{q.quadrant}"
    order = {i: [q.quadrant for q in layout.quadrants if q.ccd.slice == 2 and q.ccd.column == i] for i in (1, 5)}
    assert order == {1: ["E", "F", "G", "H"], 5: ["G", "H", "E", "F"]}
    c11, c14, c44 = layout.ccd("C_11"), layout.ccd("C_14"), layout.ccd("C_44")
    assert (c11.block, c11.block_ccd, c11.serial) == ("BORN", 1, "15081-08-02")
    assert (c14.block, c14.block_ccd) == ("DIRAC", 3)  # columns 4-6 hold their block as CCD3, CCD2, CCD1
    assert (c44.block, fpa_layout("initial").ccd("C_44").block) == ("OWEN", "SKLODOWSKA")
    assert fpa_layout("final").ccd("C_54").block == "EINSTEIN" and fpa_layout("initial").ccd("C_54").block == "MAX"
    assert layout.position_of("JULES2", 1).ccdid == "C_41"
    cells = {q.mosaic_cell for q in layout.quadrants}
    assert cells == {(x, y) for x in range(12) for y in range(12)}  # the mosaic is tiled once
    assert layout.quadrant("C_14", "G").mosaic_cell == (6, 0) and layout.quadrant("C_11", "G").mosaic_cell == (1, 1)


def test_a_pixel_at_canonical_origin_comes_back_there_whatever_the_position(tmp_path):
    """C_41 G and the four positions of C_11 and C_44: the file holds each canonical quadrant
    flipped as the LE1 layout says (checked with astropy, not with our reader), and the reader
    gives it back canonical, and in ELVIS frame orientation when read as a frame."""
    geometry = LE1_SMALL
    height, width = geometry.quad_height, geometry.quad_width
    marked = {("C_41", "G"), *(("C_11", q) for q in QUADRANTS), *(("C_44", q) for q in QUADRANTS)}

    def quadrant(place):
        data = np.full((height, width), 2700, np.uint16)
        if (place.ccd.ccdid, place.quadrant) in marked:
            data[0, 0] = 60000  # the output node
            data[0, 1] = 50000  # the next pixel read: tells rows from columns
        return data

    path = write_le1_frame(tmp_path / "marked.fits", quadrant, geometry)
    # stored position of canonical [0, 0] per the notes: k=0 (0,0), k=1 flip x, k=2 flip x and y, k=3 flip y
    expected_stored = {("C_11", "E"): (0, 0), ("C_11", "F"): (0, width - 1), ("C_11", "G"): (height - 1, width - 1),
                       ("C_11", "H"): (height - 1, 0), ("C_44", "G"): (0, 0), ("C_44", "H"): (0, width - 1),
                       ("C_44", "E"): (height - 1, width - 1), ("C_44", "F"): (height - 1, 0),
                       ("C_41", "G"): (height - 1, width - 1)}
    le1 = read_le1(path)
    with fits.open(path) as hdul:
        for (ccdid, letter), (row, col) in expected_stored.items():
            place = le1.layout.quadrant(ccdid, letter)
            stored = hdul[place.extname].data  # astropy applies BZERO itself
            assert stored[row, col] == 60000, (ccdid, letter)
            assert hdul.index_of(place.extname) == place.hdu
    for ccdid, letter in expected_stored:
        with le1.open(le1.layout.quadrant(ccdid, letter).extname) as view:
            canonical = view.canonical()
            assert (canonical[0, 0], canonical[0, 1], canonical[1, 0]) == (60000, 50000, 2700), (ccdid, letter)
            assert np.count_nonzero(canonical != 2700) == 2
            # as quadrant Q of an ELVIS frame: the node where that quadrant's node is in a frame
            frame_view = view.quadrant(letter, canonical=False)
            flip_rows, flip_cols = geometry.flips(letter)
            assert frame_view[height - 1 if flip_rows else 0, width - 1 if flip_cols else 0] == 60000
            rows, cols = geometry.frame_region_slices(letter, "prescan")
            assert np.array_equal(view.section(rows, cols)[:: -1 if flip_rows else 1, :: -1 if flip_cols else 1],
                                  canonical[geometry.canonical_region("prescan")])


# -- the reader's named errors -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def one_frame(tmp_path_factory) -> Path:
    rng = np.random.default_rng(5)
    path = tmp_path_factory.mktemp("le1") / "one.fits"
    return write_le1_frame(path, lambda place: bias_quadrant(LE1_SMALL, 2800.0, 1.2, rng), LE1_SMALL)


def _rewrite(source: Path, target: Path, change) -> Path:
    with fits.open(source, do_not_scale_image_data=True) as hdul:
        hdus = [hdul[0].copy()] + [h.copy() for h in hdul[1:]]
    hdus = change(hdus)
    fits.HDUList(hdus).writeto(target)
    return target


def test_a_missing_extension_is_named(one_frame, tmp_path):
    path = _rewrite(one_frame, tmp_path / "missing.fits", lambda h: [x for x in h if x.name != "3-2.F"])
    with pytest.raises(MissingExtension) as caught:
        read_le1(path)
    assert caught.value.extension == "3-2.F"
    assert "missing.fits" in str(caught.value) and "3-2.F" in str(caught.value) and "HDU 54" in str(caught.value)


def test_a_misplaced_an_extra_and_an_odd_extension_are_named(one_frame, tmp_path):
    def swap(h):
        h[1], h[2] = h[2], h[1]
        return h
    with pytest.raises(OddExtension, match=r"HDU 1 is '1-1.F', the LE1 layout puts 1-1.E there"):
        read_le1(_rewrite(one_frame, tmp_path / "swapped.fits", swap))

    extra = fits.ImageHDU(np.zeros((2, 2), np.int16), name="SPARE")
    with pytest.raises(OddExtension, match=r"146 HDUs, an LE1 frame has 145 .*SPARE"):
        read_le1(_rewrite(one_frame, tmp_path / "extra.fits", lambda h: h + [extra]))

    def floats(h):
        h[75] = fits.ImageHDU(np.zeros((LE1_SMALL.quad_height, LE1_SMALL.quad_width), np.float32), name="4-1.G")
        return h
    with pytest.raises(OddExtension) as caught:
        read_le1(_rewrite(one_frame, tmp_path / "floats.fits", floats))
    assert caught.value.extension == "4-1.G" and "BITPIX -32" in str(caught.value)

    (tmp_path / "text.fits").write_text("not a FITS file\n")
    with pytest.raises(LE1Error, match="text.fits: not a readable FITS file"):
        read_le1(tmp_path / "text.fits")


def test_the_fpa_explog_has_five_columns_and_a_block_log_is_refused(tmp_path):
    rows = [{"ObsID": 7, "File_name": "VIS_A_00007", "date": "021219D090000T", "program": "FPACAMP", "test": "BIAS01"}]
    log = read_fpa_explog(write_fpa_explog(tmp_path / "EXP_LOG_021219.txt", rows))
    assert [(e.obsid, e.file_name, e.test, e.line) for e in log.exposures] == [(7, "VIS_A_00007", "BIAS01", 2)]
    assert log.frame_path(log.exposures[0]) == tmp_path / "VIS_A_00007.fits"
    with pytest.raises(FileExistsError):
        write_fpa_explog(tmp_path / "EXP_LOG_021219.txt", rows)

    block_log = write_explog(tmp_path / "EXP_LOG_031219.txt", [{"ObsID": 1, "File_name": "x", "CCD": "CCD1"}])
    with pytest.raises(ExpLogError, match=r"EXP_LOG_031219.txt: not an FPA EXP_LOG.*5 columns ObsID, File_name, "
                                          r"date, program, test"):
        read_fpa_explog(block_log)
    (tmp_path / "EXP_LOG_041219.txt").write_text("ObsID\tFile_name\tdate\tprogram\ttest\n8\t\t0\tP\tBIAS01\n")
    with pytest.raises(ExpLogError, match="EXP_LOG_041219.txt line 2: column 'File_name' is empty"):
        read_fpa_explog(tmp_path / "EXP_LOG_041219.txt")


# -- BIAS01 of the FPA, end to end -----------------------------------------------------------------

@pytest.fixture(scope="module")
def fpa_bias(tmp_path_factory):
    """10 simulated small LE1 BIAS01 frames (C_41 G loud), analysed by `vison-engine fpa run` on
    a local pool of 2 workers; then `vison-engine trends` over the result."""
    root = tmp_path_factory.mktemp("fpa")
    truths = draw_quadrant_truths(seed=3)
    ccd, quadrant, ron = LOUD
    truths[ccd][quadrant] = {**truths[ccd][quadrant], "ron_adu": ron}
    sim = simulate_le1(root / "data", frames=FRAMES, seed=3, truths=truths)
    code = cli(["fpa", "run", "--data", str(sim.day_folder), "--test", "BIAS01", "--results", str(root / "results"),
                "-m", "2"])
    assert code == 0
    folder = root / "results" / "FPA" / "BIAS01"
    return sim, folder, json.loads((folder / "result.json").read_text())


def _pixels(region: str) -> int:
    rows = LE1_SMALL.image_rows
    cols = region_columns(LE1_SMALL, region)
    return rows * (cols.stop - cols.start)


def test_offsets_and_read_noise_of_all_144_quadrants_are_recovered(fpa_bias):
    sim, _, record = fpa_bias
    assert record["block"] == "FPA" and record["family"] == "bias" and record["exposures"] == FRAMES
    assert list(record["ccds"]) == [f"C_{j}{i}" for j in range(1, 7) for i in range(1, 7)]
    checked = 0
    for ccdid, quadrants in record["ccds"].items():
        assert list(quadrants) == (["E", "F", "G", "H"] if int(ccdid[3]) <= 3 else ["G", "H", "E", "F"])
        for q, values in quadrants.items():
            truth = sim.truths[ccdid][q]
            sigma = truth["ron_adu"]
            for region in REGIONS:
                pixels = _pixels(region)
                offset_error = sigma / math.sqrt(FRAMES * pixels)
                assert abs(values[f"offset_{region}_adu"] - truth["offset_adu"]) < 5 * offset_error, (ccdid, q, region)
                ron_error = sigma / math.sqrt(2 * (FRAMES - 1) * pixels)
                assert abs(values[f"ron_{region}_adu"] - sigma) < 5 * ron_error, (ccdid, q, region)
                assert values[f"ron_{region}_e"] == pytest.approx(values[f"ron_{region}_adu"] * 3.5, abs=2e-3)
                checked += 1
    assert checked == 144 * 3
    loud = [(r["flag"], r["ccd"], r["quadrant"]) for r in record["flag_reasons"]]
    assert set(loud) == {("RON_OOL", "C_41", "G")}  # the loud quadrant, and no other
    assert record["fpa_positions"]["C_41"] == {"block": "JULES2", "ccd": 1, "serial": "14462-02-01"}


def test_the_fpa_map_figures_exist(fpa_bias):
    _, folder, record = fpa_bias
    assert record["figures"] == ["figs/BIAS01_fpa_offset_prescan_adu.png", "figs/BIAS01_fpa_ron_image_adu.png"]
    for name in record["figures"]:
        data = (folder / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    assert "| C_41 | JULES2 CCD1 | G |" in (folder / "report.md").read_text()


def test_the_fpa_numbers_are_the_block_analysis_numbers(fpa_bias, tmp_path):
    """C_41's quadrants put into ELVIS frames and measured by the block's functions (the check's
    quadrant_stats, BIAS01's noise_unit) give the FPA's values to the last digit kept."""
    sim, _, record = fpa_bias
    geometry = LE1_SMALL
    paths = elvis_frames_of(sim.frames, "C_41", tmp_path, geometry)
    rows = slice(0, geometry.image_rows)
    for q in QUADRANTS:
        stats = []
        for path in paths:
            with read_frame(path) as frame:
                stats.append(quadrant_stats(frame, q, geometry, rows))
        offsets = [s.prescan.clipped_mean for s in stats]
        noise = noise_unit((1, q), paths, offsets, geometry)
        values = record["ccds"]["C_41"][q]
        for region in REGIONS:
            assert values[f"offset_{region}_adu"] == pytest.approx(np.mean([getattr(s, region).clipped_mean
                                                                            for s in stats]), abs=1e-4)
            assert values[f"ron_{region}_adu"] == pytest.approx(noise.ron[region], abs=1e-4)


def test_trends_map_and_name_the_fpa_quadrant(fpa_bias, tmp_path, capsys):
    _, folder, _ = fpa_bias
    code = cli(["trends", str(folder.parent.parent), "--value", "ron_image_adu", "--value", "offset_prescan_adu",
                "--out", str(tmp_path)])
    assert code == 0
    out = capsys.readouterr().out
    assert "JULES2 CCD1 G (C_41): ron_image_adu = 2" in out and "high (ron_adu [0.86, 1.44] ADU)" in out
    for value in ("ron_image_adu", "offset_prescan_adu"):  # offsets have no limit: mapped because named
        assert (tmp_path / f"fpa_BIAS01_{value}.png").read_bytes()[:4] == b"\x89PNG"
    with open(tmp_path / "trends.csv") as handle:
        rows = [r for r in csv.DictReader(handle) if r["value"] == "ron_image_adu"]
    assert len(rows) == 144 and len({r["fpa"] for r in rows}) == 36
    assert {(r["block"], r["ccd"], r["quadrant"]) for r in rows if r["fpa"] == "C_41"} == {
        ("JULES2", "1", q) for q in QUADRANTS}


def test_fpa_run_says_what_is_missing(tmp_path, capsys):
    (tmp_path / "day").mkdir()
    code = cli(["fpa", "run", "--data", str(tmp_path / "day"), "--test", "BIAS01", "--results", str(tmp_path / "r")])
    assert code == 2 and "no FPA EXP_LOG in" in capsys.readouterr().err
    code = cli(["fpa", "run", "--data", str(tmp_path / "day"), "--test", "NL01", "--results", str(tmp_path / "r")])
    assert code == 2
    assert ("NL01 is not available in FPA mode (family nl: it runs per block, vison-engine run); the FPA mode "
            "analyses BIAS01, BIAS02, DARK01, FLAT01, FLAT02_590") in capsys.readouterr().err
    code = cli(["fpa", "run", "--data", str(tmp_path / "day"), "--test", "BIAS99", "--results", str(tmp_path / "r")])
    assert code == 2 and "unknown test 'BIAS99'" in capsys.readouterr().err
