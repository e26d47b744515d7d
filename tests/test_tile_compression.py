"""The product planes' own tile compression (tile_compression, compiled/tile_kernels) writes the
file astropy's CompImageHDU writes for the same plane, step and cards: the same table and heap
bytes (so the same pixels for every reader: astropy, ds9, cfitsio), the same header values. It
needs no astropy, and hands what it cannot write (NaN, a range beyond an int32's levels) to
astropy."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.io.fits.card import Card

from engine.formats.fits import image_extension
from engine.formats.fitscards import commentary_cards, format_value, value_card
from engine.tasks.compiled.tile_kernels import DITHER_VALUES, dither_table, rice_encode
from engine.tasks.stacking import (
    allocate_fits,
    compress_plane,
    quantised_plane,
    write_quantised_plane,
)

RNG = np.random.default_rng(20261130)
CARDS = (("CCDSN", "14173-14-01", "serial"), ("NFRAMES", 10, "frames stacked"), ("OFFSET", 1000.25, "ADU"))
REFERENCE = ("QRON", 4.5, "read noise (ADU) the step is a fraction of")


def astropy_file(path: Path, data: np.ndarray, step: float, unit: str = "ADU") -> Path:
    hdu = quantised_plane(data, "STACK", step, unit, CARDS, REFERENCE, "the read noise")
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
    return path


def ours(path: Path, data: np.ndarray, step: float, unit: str = "ADU") -> Path:
    write_quantised_plane(path, data, "STACK", step, unit, CARDS, REFERENCE, "the read noise")
    return path


def table_and_heap(path: Path) -> tuple[list[tuple[str, object]], bytes]:
    """The extension's header (keyword, value) and its data bytes (table and heap) as stored."""
    with fits.open(path, disable_image_compression=True) as hdus:
        header = [(card.keyword, card.value) for card in hdus[1].header.cards]
        start, size = hdus[1].fileinfo()["datLoc"], hdus[1].header["NAXIS1"] * hdus[1].header["NAXIS2"]
        size += hdus[1].header["PCOUNT"]
    return header, path.read_bytes()[start:start + size]


PLANES = {
    # a master bias: offset-subtracted, a fraction of an ADU of noise; TILE_ROWS do not divide 200
    "master": lambda: RNG.normal(0.0, 1.4, (200, 97)),
    "big endian, offset kept": lambda: RNG.normal(1000.0, 3.0, (130, 77)).astype(">f4"),
    "fewer rows than a tile": lambda: RNG.normal(-5.0, 1.0, (40, 33)),
    "flat (all-zero blocks)": lambda: np.zeros((70, 64)),
    # heavy tails: blocks coded verbatim (fs >= 25) and codes of hundreds of leading zeros
    "outliers": lambda: RNG.standard_cauchy((66, 50)) * 1e4,
    "a hot column": lambda: np.where(np.arange(90)[None, :] == 17, 6e4, RNG.normal(0.0, 1.0, (65, 90))),
}


@pytest.mark.parametrize("name", PLANES)
@pytest.mark.parametrize("step", [4.5 / 64, 0.07, 1.0])
def test_the_plane_is_the_one_astropy_writes(tmp_path, name, step):
    data = PLANES[name]()
    data = data if data.dtype == ">f4" else data.astype(np.float32)
    header, stored = table_and_heap(ours(tmp_path / "ours.fits", data, step))
    reference_header, reference = table_and_heap(astropy_file(tmp_path / "astropy.fits", data, step))
    assert stored == reference
    assert header == reference_header
    with fits.open(tmp_path / "ours.fits") as hdus:
        back = hdus["STACK"].data
        # half a step, and the float32 rounding of the value read back
        bound = float(np.float32(step)) / 2 + 2 * float(np.spacing(np.abs(data).max().astype(np.float32)))
        assert np.abs(back - data.astype(np.float32)).max() <= bound
        assert hdus["STACK"].header["QSTEP"] == step and hdus["STACK"].header["CCDSN"] == "14173-14-01"


def test_a_plane_with_a_nan_or_beyond_the_levels_of_an_int32_is_written_by_astropy(tmp_path):
    """astropy keeps a NaN as ZBLANK, and writes a tile whose levels overflow an int32 without
    quantising it (GZIP): the same file as astropy's own, readable, NaN where it was."""
    with_nan = RNG.normal(0.0, 1.0, (80, 40)).astype(np.float32)
    with_nan[5, 7] = np.nan
    wide = (RNG.standard_cauchy((70, 40)) * 1e6).astype(np.float32)
    for data, step in ((with_nan, 0.05), (wide, 1e-4)):
        ours(tmp_path / "ours.fits", data, step)
        astropy_file(tmp_path / "astropy.fits", data, step)
        assert (tmp_path / "ours.fits").read_bytes() == (tmp_path / "astropy.fits").read_bytes()
        (tmp_path / "ours.fits").unlink()
        (tmp_path / "astropy.fits").unlink()
    ours(tmp_path / "nan.fits", with_nan, 0.05)
    with fits.open(tmp_path / "nan.fits") as hdus:
        assert np.isnan(hdus[1].data[5, 7]) and np.isfinite(np.delete(hdus[1].data.ravel(), 5 * 40 + 7)).all()


def test_rice_coding_matches_cfitsio_on_extreme_values():
    """The wrapping int32 differences of the extreme values, a lone value, a short last block."""
    from astropy.io.fits.hdu.compressed._compression import compress_rice_1_c

    out = np.empty(4096, np.uint8)
    for values in ([5], [0] * 33, [2**31 - 1, -2**31, 7, -7] * 20, list(range(-50, 50, 3)),
                   RNG.integers(-2**31, 2**31 - 1, 100)):
        values = np.asarray(values, np.int32)
        size = rice_encode(values, values.size, out)
        assert bytes(out[:size]) == compress_rice_1_c(values.tobytes(), 32, 4)


def test_the_dither_table_is_the_standards():
    """Park & Miller's generator from seed 1 (the table's check of its 10 000th seed passed)."""
    table = dither_table()
    assert table.size == DITHER_VALUES and table.dtype == np.float32
    assert table[0] == np.float32(16807 / 2147483647) and table[1] == np.float32(282475249 / 2147483647)


def test_a_master_plane_is_compressed_from_the_staging_stack_without_astropy(tmp_path):
    """compress_plane in a fresh process (as a worker runs it): the staging stack's plane found
    from its headers, astropy never imported (0.3 s a worker), the product as astropy's."""
    raw = tmp_path / "stack.float32.fits"
    offsets = allocate_fits(raw, fits.Header([("OBSID", 7)]), ("MEDIAN", "STD"), (150, 60),
                            ext_headers={"STD": fits.Header([("BUNIT", "e-/s")])})
    data = RNG.normal(0.0, 1.2, (150, 60)).astype(">f4")
    with open(raw, "r+b") as handle:
        handle.seek(offsets["STD"])
        handle.write(data.tobytes())
    out = tmp_path / "std.fits"
    code = ("import sys\nfrom pathlib import Path\nfrom engine.tasks.stacking import compress_plane\n"
            f"compress_plane(Path({str(raw)!r}), 'STD', 0.1, 4.0, Path({str(out)!r}), [('NFRAMES', 10, 'frames')])\n"
            "print('astropy' in sys.modules)\n")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.split() == ["False"]
    reference = tmp_path / "reference.fits"
    hdu = quantised_plane(data, "STD", 0.1, "e-/s", [("NFRAMES", 10, "frames")],
                          ("QRON", 4.0, "read noise (ADU) the step is a fraction of"), "the read noise")
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(reference)
    assert out.read_bytes() == reference.read_bytes()
    assert compress_plane(raw, "STD", 0.1, 4.0, tmp_path / "again.fits", [("NFRAMES", 10, "frames")]).read_bytes() \
        == out.read_bytes()


def test_a_plane_not_in_the_stack_is_named_with_the_file(tmp_path):
    raw = tmp_path / "stack.fits"
    allocate_fits(raw, fits.Header(), ("MEDIAN",), (10, 10))
    with pytest.raises(ValueError, match=r"stack\.fits: no image extension named SPREAD"):
        compress_plane(raw, "SPREAD", 0.1, 4.0, tmp_path / "out.fits")
    assert image_extension(raw, "median").shape == (10, 10)


@pytest.mark.parametrize("value", [0.1, 1e-5, 1.0, -0.0703125, 1 / 3, 5e-324, 1e300, 12345678901234567890.0,
                                   -2.5e-17, 100.0, np.float32(0.07), np.float64(4.5), True, False, 0, -32,
                                   np.int64(4238), "ADU", "e-/s", "it's", "", "SUBTRACTIVE_DITHER_1"])
def test_a_card_is_written_as_astropy_writes_it(value):
    assert value_card("KEY", value, "a comment") == str(Card("KEY", value, "a comment"))
    assert value_card("KEY", value) == str(Card("KEY", value))


def test_what_only_astropy_writes_is_refused():
    for value in (math.nan, math.inf, "x" * 69, "caf\u00e9", None, [1]):
        with pytest.raises(ValueError):
            format_value(value)
    with pytest.raises(ValueError):
        value_card("lower", 1)


def test_a_long_comment_takes_cards_as_astropy_cuts_it():
    for text in ["Tile-compressed (RICE_1), quantised with step 0.0703 ADU (0.01562 of the read noise), "
                 "SUBTRACTIVE_DITHER_1: a pixel is within QMAXERR of the float32 value.",
                 "x" * 150, "short", "y" * 72, "z" * 71 + " q", ""]:
        header = fits.Header()
        header.add_comment(text)
        assert "".join(commentary_cards("COMMENT", text)) == "".join(str(card) for card in header.cards)


@pytest.mark.parametrize("kernel_copy", [True, False])
def test_the_product_is_its_planes_end_to_end_whoever_copies_them(tmp_path, monkeypatch, kernel_copy):
    """assemble_product appends each plane's extension by copy_file_range, or by reads and writes
    where the file system refuses it (EXDEV, ENOSYS): the same product, every byte of it."""
    import os

    from engine.tasks.stacking import assemble_product

    if not kernel_copy:
        def refuse(*args):
            raise OSError(18, "Invalid cross-device link")
        monkeypatch.setattr(os, "copy_file_range", refuse)
    planes, data = [], {}
    for name in ("STACK", "STD"):
        data[name] = RNG.normal(0.0, 1.0, (300, 128)).astype(np.float32)
        planes.append(tmp_path / f"{name}.fits")
        write_quantised_plane(planes[-1], data[name], name, 0.05, "ADU", (), REFERENCE, "the read noise")
    expected = b"".join(p.read_bytes()[2880:] for p in planes)
    size = assemble_product(tmp_path / "MASTER.fits", fits.Header([("TEST", "BIAS01")]), planes)
    product = (tmp_path / "MASTER.fits").read_bytes()
    assert size == len(product) and product.endswith(expected) and not any(p.exists() for p in planes)
    with fits.open(tmp_path / "MASTER.fits") as hdus:
        assert hdus[0].header["TEST"] == "BIAS01"
        for name in ("STACK", "STD"):
            assert np.abs(hdus[name].data - data[name]).max() <= 0.025 + 1e-6
