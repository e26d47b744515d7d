"""Issue 16, item 10: one bad file costs one frame, not a test.

A frame of the wrong size, a frame all saturated or all zero, an HK path that cannot be read:
the file is named and flagged (MISSDATA, POORQUALDATA), left out, and the rest is analysed, for
every CCD; NaN never reaches a product header nor result.json as a number.
"""

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from engine.cli.main import main as cli
from sim_days import bias_dark_day


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    return bias_dark_day(tmp_path_factory.mktemp("data"))


@pytest.fixture
def day(pristine, tmp_path) -> Path:
    copy = tmp_path / "data" / pristine.name
    shutil.copytree(pristine, copy)
    return copy


def frame(day: Path, obsid: int, ccd: int) -> Path:
    return next(day.glob(f"EUC_{obsid}_*_CCD{ccd}.fits"))


def fill(path: Path, value: int) -> None:
    with fits.open(path) as hdus:
        for hdu in hdus:
            if hdu.data is not None:
                hdu.data[:] = value
        hdus.writeto(path.with_suffix(".tmp"))
    os.replace(path.with_suffix(".tmp"), path)


def strict_json(path: Path) -> dict:
    def refuse(constant):
        raise AssertionError(f"{path} holds {constant}, which is not a JSON number")
    return json.loads(path.read_text(), parse_constant=refuse)


def run(day: Path, results: Path, test: str, capsys) -> dict:
    code = cli(["run", "--data", str(day), "--tests", test, "--results", str(results)])
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    assert code == 0, out.out + out.err
    return strict_json(results / "QUICK" / test / "result.json")


def masters(results: Path, test: str) -> dict[int, fits.Header]:
    headers = {}
    for path in sorted((results / "QUICK" / test / "products").glob("EUC_MASTER*_CCD*.fits")):
        with fits.open(path) as hdus:
            headers[int(hdus[0].header["CCD"][3:])] = hdus[0].header.copy()
    return headers


def assert_all_ccds_analysed(record: dict, results: Path, test: str, short_ccd: int) -> None:
    assert record["errors"] is False and "SUBTASKCRASH" not in record["flags"]
    assert all(status == "done" for status in record["subtasks"].values()), record["subtasks"]
    headers = masters(results, test)
    assert sorted(headers) == [1, 2, 3]
    for ccd, header in headers.items():
        expected = 10 if test == "BIAS01" else 4
        assert header["NCOMB"] == (expected - 1 if ccd == short_ccd else expected)
        for q in "EFGH":
            assert math.isfinite(header[f"OFFS_{q}"])
    for q in "EFGH":
        values = record["ccds"][f"CCD{short_ccd}"][q]
        assert 2000 < values["offset_prescan_adu"] < 4000
        if test == "BIAS01":
            assert 0.5 < values["ron_prescan_adu"] < 3 and 0.5 < values["ron_image_adu"] < 3


def reasons(record: dict, flag: str) -> list[dict]:
    return [r for r in record["flag_reasons"] if r["flag"] == flag]


def test_a_frame_of_the_wrong_size_costs_that_frame(day, tmp_path, capsys):
    bad = frame(day, 1002, 2)
    fits.HDUList([fits.PrimaryHDU(np.full((50, 60), 1000, np.uint16))]).writeto(bad, overwrite=True)
    record = run(day, tmp_path / "r", "BIAS01", capsys)
    [missing] = reasons(record, "MISSDATA")
    assert bad.name in missing["reason"] and (missing["ccd"], missing["obsid"]) == (2, 1002)
    assert_all_ccds_analysed(record, tmp_path / "r", "BIAS01", short_ccd=2)


@pytest.mark.parametrize("value, said", [(65535, "saturated"), (0, "lost (0 ADU)")])
def test_a_saturated_or_zero_bias_frame_is_left_out(day, tmp_path, capsys, value, said):
    bad = frame(day, 1003, 2)
    fill(bad, value)
    record = run(day, tmp_path / "r", "BIAS01", capsys)
    [poor] = [r for r in reasons(record, "POORQUALDATA") if r.get("obsid") == 1003]
    assert bad.name in poor["reason"] and said in poor["reason"] and poor["ccd"] == 2
    assert "values_not_measured" not in record
    assert_all_ccds_analysed(record, tmp_path / "r", "BIAS01", short_ccd=2)


def test_a_saturated_dark_frame_is_left_out(day, tmp_path, capsys):
    darks = sorted(day.glob("EUC_*_CCD3.fits"))[-4:]  # DARK01 comes after the 10 biases
    fill(darks[1], 65535)
    record = run(day, tmp_path / "r", "DARK01", capsys)
    assert any(darks[1].name in r["reason"] for r in reasons(record, "POORQUALDATA"))
    assert_all_ccds_analysed(record, tmp_path / "r", "DARK01", short_ccd=3)


def test_an_hk_path_that_is_a_folder_costs_its_hk_check_only(day, tmp_path, capsys):
    hk = next(day.glob("HK_1004_*.txt"))
    hk.unlink()
    hk.mkdir()
    record = run(day, tmp_path / "r", "BIAS01", capsys)
    [missing] = reasons(record, "MISSDATA")
    assert hk.name in missing["reason"] and "cannot be read" in missing["reason"] and missing["obsid"] == 1004
    assert record["errors"] is False and sorted(masters(tmp_path / "r", "BIAS01")) == [1, 2, 3]
    assert all(len(record["ccds"][f"CCD{c}"]) >= 4 for c in (1, 2, 3))


def test_nan_is_written_as_null_and_named():
    from engine.pipeline.results import finite_json

    record = {"ccds": {"CCD2": {"E": {"ron_prescan_adu": float("nan"), "x": 1.5}}}, "values": [float("inf"), 2]}
    clean, unknown = finite_json(record)
    assert clean == {"ccds": {"CCD2": {"E": {"ron_prescan_adu": None, "x": 1.5}}}, "values": [None, 2]}
    assert unknown == ["ccds.CCD2.E.ron_prescan_adu", "values[0]"]
    json.dumps(clean, allow_nan=False)


def test_a_binary_hk_file_is_named_and_flagged(day, tmp_path, capsys):
    hk = next(day.glob("HK_1005_*.txt"))
    hk.write_bytes(bytes(range(256)) * 8)
    record = run(day, tmp_path / "r", "BIAS01", capsys)
    [missing] = reasons(record, "MISSDATA")
    assert hk.name in missing["reason"] and "holds no HK table" in missing["reason"] and missing["obsid"] == 1005
    assert record["errors"] is False and sorted(masters(tmp_path / "r", "BIAS01")) == [1, 2, 3]
