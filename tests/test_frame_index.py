"""A frame's index (fits.index_frame): the work units map a frame's pixels from where one walk over
its headers found them, instead of astropy parsing the headers in each of the four quadrant units.
The pixels must be those astropy reads, and a file changed since it was indexed is opened the
usual way (its new pixels, or the usual error), never read at a stale offset."""

from __future__ import annotations

import os

import numpy as np
from astropy.io import fits

from engine.formats.fits import index_frame, read_frame, write_frame
from engine.formats.geometry import QUADRANTS, SMALL


def _counts(seed: int) -> np.ndarray:
    data = np.random.default_rng(seed).integers(0, 65536, SMALL.shape, dtype=np.uint16)
    data[0, 0], data[1, 1] = 0, 65535
    return data


def test_an_indexed_frame_reads_the_pixels_and_header_astropy_reads(tmp_path):
    data = _counts(1)
    path = write_frame(tmp_path / "f.fits", data, {"OBSID": 77, "EXPTIME": 2.5})
    index = index_frame(path)
    assert index is not None and index.shape == SMALL.shape and index.bzero == 32768
    with read_frame(path, index) as mapped, read_frame(path) as opened:
        assert mapped._hdul is None  # no astropy parse: the point of the index
        for q in QUADRANTS:
            rows, cols = SMALL.quadrant_slices(q)
            assert np.array_equal(mapped.section(rows, cols), opened.section(rows, cols))
        assert np.array_equal(mapped.data, data)
        assert mapped.header["OBSID"] == 77 and mapped.primary_header == opened.primary_header


def test_a_frame_rewritten_after_it_was_indexed_is_read_as_it_is_now(tmp_path):
    path = write_frame(tmp_path / "f.fits", _counts(1), {"OBSID": 1, "LONGNOTE": "x" * 60})
    index = index_frame(path)
    path.unlink()
    # the same size, another header length: the pixels now start elsewhere
    with fits.open(write_frame(tmp_path / "g.fits", _counts(2), {"OBSID": 2, **{f"K{i}": i for i in range(40)}})) as h:
        h.writeto(path)
    os.utime(path, ns=(index.mtime_ns + 10**9, index.mtime_ns + 10**9))
    with read_frame(path, index) as frame:
        assert np.array_equal(frame.data, _counts(2))


def test_only_whole_16_bit_frames_are_indexed(tmp_path):
    whole = write_frame(tmp_path / "f.fits", _counts(1))
    truncated = tmp_path / "t.fits"
    truncated.write_bytes(whole.read_bytes()[:-5000])
    floats = tmp_path / "float.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.zeros(SMALL.shape, np.float32))]).writeto(floats)
    assert index_frame(whole) is not None
    assert index_frame(truncated) is None and index_frame(floats) is None
    assert index_frame(tmp_path / "missing.fits") is None
