"""Merging the FPA masks of several runs (`vison-engine fpa masks`, engine/tasks/fpa_masks.py).

Three small LE1-geometry masks: a BIAS01 and a DARK01 hot-pixel mask (bit 1) and a FLAT01
flat-defect mask (bits 2, 4, 8, 16), each with random defects in every quadrant and one shared
pixel of C_34 G; the FLAT01 one written by the runs' own writer (fpa_products.write_mask_plane per
quadrant, provenance_header, write_product), the BIAS01 and DARK01 ones with the same headers
uncompressed (the merge reads both kinds; 2 s of CPU a mask saved). The merge must be, in every extension by name, exactly the bitwise or of
the three (integers: no error budget), in the layout's order and the sources' orientation (the
shared pixel holds 1|2|4 where the sources hold it); each extension's counts per bit are those of
the or; the primary names every source (TEST, RUNID, OBSIDs, file) and the five bits. A source
whose layout differs (one extension's shape, two extensions swapped) is refused naming the file
and the extension; an existing --out is replaced with --force and kept without it; a missing or
unreadable input is named. Nearly all the CPU is astropy's header handling of the compressed
HDUs: about 2 s to write the flat mask, 3-4 s to merge, 1 s to read the merge.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from engine.cli.main import main as cli
from engine.formats.fpa import fpa_layout
from engine.formats.le1 import LE1_SMALL
from engine.tasks import fpa_products as fp
from engine.tasks.cosmetics import BAD_COLUMN, DEAD, HIGH, HOT, LOW
from engine.tasks.fpa_masks import (
    MaskMergeError,
    MergedMask,
    history_lines,
    merge_fpa_masks,
    merged_header,
    read_source,
)

LAYOUT = fpa_layout("final")
SHAPE = (LE1_SMALL.quad_height, LE1_SMALL.quad_width)
SHARED = ("3-4.G", 5, 20)  # stored row, column of one pixel every source flags
RUNS = {  # test -> (product, bits it may hold, OBSIDs, run id)
    "BIAS01": (fp.MASK_PRODUCT, fp.HOT_BITS, [1000, 1001, 1002], "run-bias"),
    "DARK01": (fp.MASK_PRODUCT, fp.HOT_BITS, [2000, 2001], "run-dark"),
    "FLAT01": (fp.FLAT_MASK_PRODUCT, fp.FLAT_BITS, [3000, 3001, 3002, 3005], "run-flat"),
}
SHARED_BITS = {"BIAS01": HOT, "DARK01": HOT, "FLAT01": DEAD | LOW}


def random_bits(rng: np.random.Generator, values: list[int]) -> np.ndarray:
    """Sparse defects: about 2 % of the pixels, each with one or two of `values`."""
    bits = np.zeros(SHAPE, np.uint8)
    for value in values:
        bits[rng.random(SHAPE) < 0.01] |= value
    return bits


def write_run_mask(folder: Path, test: str, planes: dict[str, np.ndarray], compressed: bool = True) -> Path:
    """A run's EUC_MASK_FPA.fits, as `fpa run`'s meta step writes it, from stored-orientation bits;
    not `compressed`: the same headers and pixels in plain image extensions (a mask rewritten by
    another tool, which the merge reads as well)."""
    product, bits, obsids, run_id = RUNS[test]
    header = fp.provenance_header(product, test=test, session="FPA", obsids=obsids,
                                  frames=[f"VIS_{o}.fits" for o in obsids], design="final", geometry=LE1_SMALL,
                                  when=datetime(2026, 1, 2, tzinfo=UTC), run_id=run_id)
    if not compressed:
        (folder / "products").mkdir(parents=True)
        extensions = [fits.ImageHDU(planes[p.extname], fits.Header(fp.place_cards(p)), name=p.extname)
                      for p in LAYOUT.quadrants]
        fits.HDUList([fits.PrimaryHDU(header=header), *extensions]).writeto(folder / "products" / fp.MASK_PRODUCT.file)
        return folder / "products" / fp.MASK_PRODUCT.file
    work = folder / ".planes"
    work.mkdir(parents=True, exist_ok=True)
    paths = [fp.write_mask_plane(work / f"{place.extname}.fits", place.extname, planes[place.extname],
                                 fp.place_cards(place), bits) for place in LAYOUT.quadrants]
    path = fp.write_product(folder / "products", fp.MASK_PRODUCT.file, header, paths)
    work.rmdir()
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """test -> (its result folder, its planes by extname)."""
    root = tmp_path_factory.mktemp("fpa_masks")
    rng = np.random.default_rng(14)
    made = {}
    for test, (_, bits, _, _) in RUNS.items():
        planes = {place.extname: random_bits(rng, [value for _, _, value in bits]) for place in LAYOUT.quadrants}
        name, row, col = SHARED
        planes[name][row, col] |= SHARED_BITS[test]
        folder = root / "results" / "FPA" / test
        write_run_mask(folder, test, planes, compressed=test == "FLAT01")
        made[test] = (folder, planes)
    return made


@pytest.fixture(scope="module")
def merged(runs, tmp_path_factory):
    """The three merged by the CLI (result folders and a mask file), over an earlier file (--force)."""
    out = tmp_path_factory.mktemp("merged") / "EUC_MASK_FPA_MERGED.fits"
    out.write_bytes(b"earlier")
    sources = [runs["BIAS01"][0], runs["DARK01"][0] / "products" / fp.MASK_PRODUCT.file, runs["FLAT01"][0]]
    assert cli(["fpa", "masks", *map(str, sources), "--out", str(out), "--force"]) == 0
    return out


@pytest.fixture(scope="module")
def merged_hdus(merged):
    """The merged file's extensions, in file order: (name, data, header); read once."""
    with fits.open(merged) as hdus:
        return [(hdu.name, hdu.data, hdu.header) for hdu in hdus[1:]]


def expected_or(runs, extname: str) -> np.ndarray:
    expected = np.zeros(SHAPE, np.uint8)
    for _, planes in runs.values():
        expected |= planes[extname]
    return expected


def test_merged_bits_are_the_or_of_the_sources_at_each_le1_pixel(runs, merged_hdus):
    assert [name for name, _, _ in merged_hdus] == [place.extname for place in LAYOUT.quadrants]
    for name, data, header in merged_hdus:
        assert data.dtype == np.uint8
        np.testing.assert_array_equal(data, expected_or(runs, name), err_msg=name)
        assert header["BLOCK"] == LAYOUT.by_extname(name).ccd.block
    name, row, col = SHARED
    assert {n: d for n, d, _ in merged_hdus}[name][row, col] == HOT | DEAD | LOW


def test_counts_per_bit_and_extension(runs, merged, merged_hdus):
    cards = {HOT: "NHOT", DEAD: "NDEAD", LOW: "NLOW", HIGH: "NHIGH", BAD_COLUMN: "NBADCPX"}
    totals = dict.fromkeys(cards, 0)
    for name, _, header in merged_hdus:
        expected = expected_or(runs, name)
        for bit, keyword in cards.items():
            assert header[keyword] == np.count_nonzero(expected & bit), (name, keyword)
            totals[bit] += header[keyword]
        assert header["NMASKED"] == np.count_nonzero(expected)
        assert header["NBADCOL"] == np.count_nonzero((expected & BAD_COLUMN).any(axis=0))
    primary = fits.getheader(merged)
    assert all(primary[f"T{keyword}"] == totals[bit] for bit, keyword in cards.items())
    assert totals[HOT] > 1000 and totals[BAD_COLUMN] > 500  # every bit is exercised


def test_provenance_of_every_source_and_the_bit_definitions(runs, merged):
    primary = fits.getheader(merged)
    assert (primary["PRODUCT"], primary["LAYOUT"], primary["FPADESGN"], primary["GEOMETRY"]) == \
        ("MASK", "LE1", "final", LE1_SMALL.name)
    assert primary["NSOURCE"] == 3 and primary["TEST"] == "BIAS01+DARK01+FLAT01"
    history = "".join(primary["HISTORY"])  # astropy cuts a long HISTORY line into cards
    for n, (test, (_, _, obsids, run_id)) in enumerate(RUNS.items(), start=1):
        mask = (runs[test][0] / "products" / fp.MASK_PRODUCT.file).resolve()
        assert (primary[f"TEST{n}"], primary[f"RUNID{n}"], primary[f"FILE{n}"]) == (test, run_id, str(mask))
        assert primary[f"OBSIDS{n}"] == fits.getheader(mask)["OBSIDS"]
        assert run_id in history and str(mask) in history
    assert primary["OBSIDS"] == "1000-1002,2000-2001,3000-3002,3005"
    assert [primary[f"BIT{k}"] for k in range(5)] == ["hot", "dead", "low response", "high response", "bad column"]
    assert primary["HOTLIM"] == fp.MASK_THRESHOLD_ADU and "DEADMAX" in primary


def _uncompressed_mask(run, target: Path, change=lambda hdus: None) -> Path:
    """A run's mask rewritten uncompressed (the merge reads that as well) after `change(hdus)`."""
    folder, planes = run
    hdus = fits.HDUList([fits.PrimaryHDU(header=fits.getheader(folder / "products" / fp.MASK_PRODUCT.file))]
                        + [fits.ImageHDU(planes[p.extname], name=p.extname) for p in LAYOUT.quadrants])
    change(hdus)
    hdus.writeto(target)
    return target


def test_layout_mismatch_is_refused_with_file_and_extension(runs, tmp_path, capsys):
    def shorter(hdus):
        hdus["2-3.F"].data = hdus["2-3.F"].data[:-1]

    plain = _uncompressed_mask(runs["DARK01"], tmp_path / "plain.fits")
    odd = _uncompressed_mask(runs["BIAS01"], tmp_path / "short.fits", shorter)
    out = tmp_path / "merged.fits"
    assert cli(["fpa", "masks", str(plain), str(odd), "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and str(odd) in error and "2-3.F" in error and "69 x 85" in error
    assert not out.exists()

    def swapped(hdus):
        hdus[1], hdus[2] = hdus[2], hdus[1]

    with pytest.raises(MaskMergeError, match=r"swapped.fits: HDU 1 is 1-1.F where the LE1 layout has 1-1.E"):
        merge_fpa_masks([_uncompressed_mask(runs["BIAS01"], tmp_path / "swapped.fits", swapped)], out)
    assert not out.exists() and not list(tmp_path.glob(".merged.fits*"))  # nothing half-written either


def test_no_overwrite_without_force_and_missing_input_named(runs, merged, tmp_path, capsys):
    earlier = merged.read_bytes()
    bias, dark = str(runs["BIAS01"][0]), str(runs["DARK01"][0])
    assert cli(["fpa", "masks", bias, dark, "--out", str(merged)]) == 2
    assert capsys.readouterr().err.strip() == f"error: {merged} exists: not overwritten without --force"
    assert merged.read_bytes() == earlier
    missing = tmp_path / "nowhere"
    assert cli(["fpa", "masks", bias, str(missing), "--out", str(tmp_path / "other.fits")]) == 2
    assert capsys.readouterr().err.strip() == f"error: no such file or folder: {missing}"
    assert cli(["fpa", "masks", bias, str(tmp_path), "--out", str(tmp_path / "other.fits")]) == 2
    assert f"no {fp.MASK_PRODUCT.file} in {tmp_path}" in capsys.readouterr().err
    (tmp_path / "broken.fits").write_bytes(b"not a FITS file")
    assert cli(["fpa", "masks", bias, str(tmp_path / "broken.fits"), "--out", str(tmp_path / "other.fits")]) == 2
    assert capsys.readouterr().err.startswith(f"error: cannot read {tmp_path / 'broken.fits'} as FITS")
    assert not (tmp_path / "other.fits").exists()


def test_a_merge_merged_again_keeps_its_sources(merged):
    with fits.open(merged) as hdus:
        again = read_source(merged, hdus)
    lines = history_lines(merged_header([again], [], MergedMask(merged, [again])))
    assert lines[0].startswith("source 1: BIAS01+DARK01+FLAT01 OBSIDs 1000-1002,2000-2001,3000-3002,3005 ")
    for n, (test, (_, _, _, run_id)) in enumerate(RUNS.items(), start=1):
        assert lines[n].startswith(f"1> source {n}: {test} run {run_id} OBSIDs ")
        assert lines[n].endswith(f"/{test}/products/{fp.MASK_PRODUCT.file}")
