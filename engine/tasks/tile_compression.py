"""A float32 plane written as a tile-compressed FITS extension (RICE_1, SUBTRACTIVE_DITHER_1) by
the compiled loop of compiled/tile_kernels, without astropy: the same file astropy's CompImageHDU
writes for the same plane, step and cards (tests/test_tile_compression.py compares them), in a
fifth of its CPU time and without astropy's import in the process that writes it.

The file is an empty primary HDU, then the extension: the binary table of the tiles (each row
the tile's place in the heap, an unused GZIP descriptor, its scale and zero), then the heap of
Rice-coded tiles, written tile by tile as they are coded (memory: one tile). The header is
written last, when the heap's size is known. A plane the loop does not take (a NaN or an
infinite pixel, levels beyond an int32, a card only astropy can write) is left to the caller
(`write_tiles` returns False), which has astropy write it: astropy handles those its own way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..formats.fitscards import BLOCK, commentary_cards, header_bytes, value_card

DITHER_SEED = 1  # ZDITHER0: fixed, the same product byte for byte from the same frames
_TABLE_ROW = np.dtype([("data", ">i4", (2,)), ("gzip", ">i4", (2,)), ("scale", ">f8"), ("zero", ">f8")])
_PRIMARY = (value_card("SIMPLE", True, "conforms to FITS standard"), value_card("BITPIX", 8, "array data type"),
            value_card("NAXIS", 0, "number of array dimensions"), value_card("EXTEND", True))


def _structure_cards(shape: tuple[int, int], tile_rows: int, step: float, name: str, tiles: int, heap: int,
                     longest: int) -> list[str]:
    """The extension's cards before the caller's, in astropy's order and words."""
    rows, cols = shape
    return [
        value_card("XTENSION", "BINTABLE", "binary table extension"),
        value_card("BITPIX", 8, "array data type"),
        value_card("NAXIS", 2, "number of array dimensions"),
        value_card("NAXIS1", _TABLE_ROW.itemsize, "width of table in bytes"),
        value_card("NAXIS2", tiles, "number of rows in table"),
        value_card("PCOUNT", heap, "number of group parameters"),
        value_card("GCOUNT", 1, "number of groups"),
        value_card("TFIELDS", 4, "number of fields in each row"),
        value_card("TTYPE1", "COMPRESSED_DATA"), value_card("TFORM1", f"1PB({longest})"),
        value_card("TTYPE2", "GZIP_COMPRESSED_DATA"), value_card("TFORM2", "1PB(0)"),
        value_card("TTYPE3", "ZSCALE"), value_card("TFORM3", "1D"),
        value_card("TTYPE4", "ZZERO"), value_card("TFORM4", "1D"),
        value_card("ZIMAGE", True, "extension contains compressed image"),
        value_card("ZTENSION", "IMAGE", "Image extension"),
        value_card("ZBITPIX", -32, "array data type"),
        value_card("ZNAXIS", 2, "number of array dimensions"),
        value_card("ZNAXIS1", cols), value_card("ZNAXIS2", rows),
        value_card("ZPCOUNT", 0, "number of parameters"),
        value_card("ZGCOUNT", 1, "number of groups"),
        value_card("ZTILE1", cols, "size of tiles to be compressed"),
        value_card("ZTILE2", tile_rows, "size of tiles to be compressed"),
        value_card("ZCMPTYPE", "RICE_1", "compression algorithm"),
        value_card("ZNAME1", "BLOCKSIZE", "compression block size"),
        value_card("ZVAL1", 32, "pixels per block"),
        value_card("ZNAME2", "BYTEPIX", "bytes per pixel (1, 2, 4, or 8)"),
        value_card("ZVAL2", 4, "bytes per pixel (1, 2, 4, or 8)"),
        value_card("ZNAME3", "NOISEBIT", "floating point quantization level"),
        value_card("ZVAL3", -step, "floating point quantization level"),
        value_card("ZQUANTIZ", "SUBTRACTIVE_DITHER_1", "Pixel Quantization Algorithm"),
        value_card("ZDITHER0", DITHER_SEED, "dithering offset when quantizing floats"),
        value_card("EXTNAME", name, "name of this binary table extension"),
    ]


def write_tiles(out: Path, data: np.ndarray, name: str, step: float, tile_rows: int,
                cards: Sequence[tuple[str, Any, str]], comments: Sequence[str] = ()) -> bool:
    """Write `data` (2-D float32, either byte order; a memory map is read a tile at a time) to
    `out` as a FITS file whose extension `name` is the plane tile-compressed (tiles of
    `tile_rows` whole rows) and quantised with `step`, the extra `cards` (keyword, value,
    comment) and `comments` (COMMENT text) after astropy's own. False, nothing left at `out`,
    when the plane or a card is one for astropy's writer."""
    from .compiled.tile_kernels import (
        TILE_DONE,
        dither_table,
        quantise_tile,
        rice_encode,
    )

    rows, cols = data.shape
    tiles = -(-rows // tile_rows)
    most = min(tile_rows, rows) * cols  # pixels of the largest tile
    try:
        extra = [value_card(keyword, value, comment) for keyword, value, comment in cards]
        extra += [card for text in comments for card in commentary_cards("COMMENT", text)]
        primary = header_bytes(_PRIMARY)
        header_size = len(header_bytes(_structure_cards(data.shape, tile_rows, step, name, tiles, 0, 0) + extra))
    except ValueError:
        return False
    table = np.zeros(tiles, _TABLE_ROW)
    table["scale"] = float(np.float32(step))  # the step as the quantiser takes it (ZVAL3 is a float32)
    table_at = len(primary) + header_size
    quantised = np.empty(most, np.int32)
    coded = np.empty(4 * most + most // 8 + 16, np.uint8)
    table_dither = dither_table()
    heap = 0
    with open(out, "wb") as handle:
        handle.seek(table_at + table.nbytes)
        for index in range(tiles):
            tile = np.ascontiguousarray(data[index * tile_rows:(index + 1) * tile_rows], np.float32)
            status, zero = quantise_tile(tile, np.float32(step), index + DITHER_SEED, table_dither, quantised)
            if status != TILE_DONE:
                handle.close()
                out.unlink(missing_ok=True)
                return False
            size = rice_encode(quantised, tile.size, coded)
            handle.write(coded[:size].data)
            table["data"][index] = (size, heap)
            table["zero"][index] = zero
            heap += size
        handle.write(bytes(-(table.nbytes + heap) % BLOCK))
        handle.seek(0)
        handle.write(primary)
        handle.write(header_bytes(_structure_cards(data.shape, tile_rows, step, name, tiles, heap,
                                                  int(table["data"][:, 0].max())) + extra))
        handle.write(table.tobytes())
    return True

