"""ELVIS frames: round trip, lazy section reads, names, and clear errors on broken files."""

from datetime import datetime

import numpy as np
import pytest
from astropy.io import fits

from engine.formats.fits import FrameError, read_frame, read_header, write_frame
from engine.formats.geometry import SMALL
from engine.formats.names import frame_filename, parse_frame_name


def _frame(seed=0):
    return np.random.default_rng(seed).integers(0, 65536, SMALL.shape, dtype=np.uint16)


def test_round_trip_keeps_counts_and_header(tmp_path):
    data = _frame()
    data[0, 0], data[1, 1] = 0, 65535  # lost pixel and saturated ADC survive
    path = write_frame(tmp_path / "f.fits", data, {"OBSID": 1234, "EXPTIME": 1.5, "TEST": "BIAS01"}, extname="ROE1_CCD2")
    with read_frame(path) as frame:
        assert np.array_equal(frame.data, data)
        assert frame.header["OBSID"] == 1234 and frame.header["EXTNAME"] == "ROE1_CCD2"
        assert frame.geometry is SMALL


def test_file_is_laid_out_as_elvis_writes_it(tmp_path):
    path = write_frame(tmp_path / "f.fits", _frame(), {"OBSID": 1})
    with fits.open(path, do_not_scale_image_data=True) as hdul:
        assert len(hdul) == 2 and hdul[0].data is None
        assert hdul[1].header["BITPIX"] == 16 and hdul[1].header["BZERO"] == 32768
    # and astropy's own scaled reading gives the same counts
    with fits.open(path) as hdul:
        assert np.array_equal(hdul[1].data, _frame())


def test_region_reads_match_the_geometry_views(tmp_path):
    data = _frame(3)
    path = write_frame(tmp_path / "f.fits", data)
    with read_frame(path) as frame:
        for q in "EFGH":
            for region in ("prescan", "image", "overscan", "parallel_overscan"):
                assert np.array_equal(frame.region(q, region), SMALL.region(data, q, region))
            assert np.array_equal(frame.quadrant(q), SMALL.quadrant(data, q))
    assert read_header(path)["EXTNAME"] == "ROE1_CCD1"


def test_write_refuses_to_overwrite(tmp_path):
    path = write_frame(tmp_path / "f.fits", _frame())
    with pytest.raises(FileExistsError):
        write_frame(path, _frame(1))
    with read_frame(path) as frame:
        assert np.array_equal(frame.data, _frame())  # untouched


@pytest.mark.filterwarnings("ignore::astropy.io.fits.verify.VerifyWarning")  # the truncation, expected
def test_broken_file_names_the_file(tmp_path):
    good = write_frame(tmp_path / "good.fits", _frame())
    broken = tmp_path / "broken.fits"
    broken.write_bytes(good.read_bytes()[:5000])
    with pytest.raises(FrameError, match="broken.fits"):
        read_frame(broken).data
    junk = tmp_path / "junk.fits"
    junk.write_text("not fits at all")
    with pytest.raises(FrameError, match="junk.fits"):
        read_frame(junk)


def test_frame_names_both_date_forms():
    when = datetime(2016, 11, 25, 15, 6, 14)
    name = frame_filename(191, when, 1)
    assert name == "EUC_191_251116D150614T_ROE1_CCD1.fits"
    parsed = parse_frame_name(name)
    assert (parsed.obsid, parsed.when, parsed.ccd) == (191, when, 1)
    old = parse_frame_name("EUC_2112_231016D_135042T_ROE1_CCD3.fits")
    assert (old.obsid, old.ccd, old.when) == (2112, 3, datetime(2016, 10, 23, 13, 50, 42))
    assert parse_frame_name("EUC_191_251116D150614T_ROE1_CCD2").ccd == 2
    with pytest.raises(ValueError, match="not an ELVIS frame name"):
        parse_frame_name("image.fits")
