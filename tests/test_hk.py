"""HK files: reading, following and writing (engine/formats/hk.py)."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from engine.formats import read_hk
from engine.formats.hk import (
    HK_COLUMNS,
    INTERNAL_KEYS,
    HKFollower,
    append_hk_rows,
    format_hk_rows,
    write_hk,
)
from engine.formats.names import hk_filename

START = datetime(2019, 7, 25, 12, 16, 3)
NAME = hk_filename(1191, START)  # HK_1191_250719D121603T_ROE1.txt


def nominal_values(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    values = {key: np.full(n, 0.0) for key in INTERNAL_KEYS}
    for n_ccd in (1, 2, 3):
        for half in "TB":
            values[f"CCD{n_ccd}_TEMP_{half}"] = -120.0 + rng.normal(0, 0.05, n)
            values[f"CCD{n_ccd}_OD_{half}"] = np.full(n, 26.02)
    values["COMM_RD_T"] = np.full(n, 16.0)
    values["RPSU_28V_PRI_V"] = np.full(n, 28.1)
    values["SPW_STATUS_REG"] = np.full(n, 12192.0)
    return values


def sample_times(n: int, start: datetime = START) -> list[datetime]:
    return [start + timedelta(seconds=i) for i in range(n)]


def write_nominal(folder: Path, n: int = 71, name: str = NAME) -> Path:
    return write_hk(folder / name, sample_times(n), nominal_values(n))


# ---------------------------------------------------------------- 7.5.X


def test_round_trip_7_5_X(tmp_path):
    values = nominal_values(71)
    path = write_hk(tmp_path / NAME, sample_times(71), values)
    hk = read_hk(path)
    assert hk.version == "7.5.X"
    assert hk.keys == list(INTERNAL_KEYS) and len(hk.keys) == 82
    assert hk.times == sample_times(71)
    assert hk.problems == [] and hk.pending is None
    for key in INTERNAL_KEYS:
        np.testing.assert_allclose(hk.values[key], values[key], rtol=0, atol=0, err_msg=key)


def test_written_layout(tmp_path):
    path = write_nominal(tmp_path, n=3)
    raw = path.read_bytes()
    lines = raw.split(b"\r\n")
    assert lines[-1] == b"" and len(lines) == 5
    header = lines[0].decode().split("\t")
    assert header == list(HK_COLUMNS["7.5.X"]) and len(header) == 83
    first = dict(zip(header, lines[1].decode().split("\t")))
    assert first["TimeStamp"] == "25-07-19_12:16:03"
    assert first["SPW_STATUS_REG"] == "12192"  # flags as integers
    assert first["hkInvalidFlg"] == "0"
    assert first["RPSU_28V_PRI_V"] == "28.1"
    assert first["COMM_RD_T"] == "16.0"


def test_stats_and_mean(tmp_path):
    values = nominal_values(71)
    hk = read_hk(write_hk(tmp_path / NAME, sample_times(71), values))
    mean, std, low, high = hk.stats("CCD1_TEMP_T")
    data = values["CCD1_TEMP_T"]
    assert mean == pytest.approx(data.mean())
    assert std == pytest.approx(data.std())
    assert (low, high) == (data.min(), data.max())
    means = hk.mean()
    assert set(means) == set(INTERNAL_KEYS)
    assert means["SPW_STATUS_REG"] == 12192.0


def test_non_numeric_cell_is_reported_and_the_rest_used(tmp_path):
    path = write_nominal(tmp_path, n=10, name="HK_191_050800D000000T_ROE1.txt")
    lines = path.read_bytes().decode().split("\r\n")
    header = lines[0].split("\t")
    fields = lines[6].split("\t")  # line 7 of the file
    fields[header.index("CCD1_TEMP_T")] = "x"
    lines[6] = "\t".join(fields)
    path.write_bytes("\r\n".join(lines).encode())

    hk = read_hk(path)
    assert len(hk.problems) == 1
    problem = hk.problems[0]
    assert str(problem) == "HK_191_050800D000000T_ROE1.txt line 7: key 'CCD1_TEMP_T' expects a number, found 'x'"
    assert (problem.line, problem.key) == (7, "CCD1_TEMP_T")
    assert len(hk.times) == 10  # the row is kept...
    temps = hk.values["CCD1_TEMP_T"]
    assert math.isnan(temps[5]) and np.isfinite(np.delete(temps, 5)).all()  # ...its bad cell NaN
    assert hk.values["CCD2_TEMP_T"][5] == pytest.approx(-120, abs=1)  # other keys of that row used
    assert hk.stats("CCD1_TEMP_T")[0] == pytest.approx(np.nanmean(temps))


def test_wrong_field_count_skips_the_row(tmp_path):
    path = write_nominal(tmp_path, n=5)
    lines = path.read_bytes().decode().split("\r\n")
    lines[3] = "\t".join(lines[3].split("\t")[:10])
    path.write_bytes("\r\n".join(lines).encode())
    hk = read_hk(path)
    assert len(hk.times) == 4
    assert "line 4: expected 83 tab-separated fields, found 10" in hk.problems[0].message


def test_spw_status_register_in_hex(tmp_path):
    path = write_nominal(tmp_path, n=2)
    text = path.read_bytes().decode().replace("\t12192\t", "\t2FA0\t")
    path.write_bytes(text.encode())
    hk = read_hk(path)
    assert hk.problems == []
    assert list(hk.values["SPW_STATUS_REG"]) == [12192.0, 12192.0]


def test_unterminated_last_line(tmp_path):
    path = write_nominal(tmp_path, n=5)
    extra = format_hk_rows(sample_times(1, START + timedelta(seconds=5)), nominal_values(1))
    with open(path, "ab") as handle:
        handle.write(extra.rstrip("\r\n").encode())
    assert len(read_hk(path).times) == 6  # complete=True: the file is finished
    held = read_hk(path, complete=False)
    assert len(held.times) == 5 and held.pending.startswith("25-07-19_12:16:08")


# ---------------------------------------------------------------- ELVIS 5.7


def elvis_57_file(folder: Path) -> Path:
    """A 5.7-style file as the lab wrote it: padded names, HH:MM:SS, CRLF, blank last line."""
    keys = HK_COLUMNS["5.7.09"][1:]
    header = ["HK_timestamp    "] + [f"{key:<20}" for key in keys]
    rows = []
    for second, clock in enumerate(["23:59:58", "23:59:59", "00:00:00", "00:00:01"]):
        cells = [clock]
        for key in keys:
            if key.startswith("HK_temp_"):
                value = -246.08 if key.endswith("CCD1") else -119.9 - 0.01 * second
            elif key.startswith("HK_OD_"):
                value = 26.0
            elif key == "HK_VCCD_RPSU":
                value = 33.5
            elif key == "HK_DD_bias":
                value = 22.01
            elif key.startswith("Video_"):
                value = -273.15
            else:
                value = 1.5
            cells.append(f"{value:.3f}")
        rows.append("\t".join(cells))
    text = "\r\n".join(["\t".join(header)] + rows) + "\r\n\r\n"
    path = folder / "HK_191_050800D235958T_ROE1.txt"
    path.write_bytes(text.encode())
    return path


def test_elvis_5_7_file_parses(tmp_path):
    hk = read_hk(elvis_57_file(tmp_path))
    assert hk.version is not None and hk.version.startswith("5.7")
    assert hk.problems == []
    assert len(hk.times) == 4
    # date from the file name (05-08-2000), rolling over at midnight
    assert hk.times[0] == datetime(2000, 8, 5, 23, 59, 58)
    assert hk.times[2] == datetime(2000, 8, 6, 0, 0, 0)
    # 5.7 names mapped onto the 7.5.X ones where the meaning is clear
    assert hk.values["CCD1_OD_T"][0] == 26.0
    assert hk.values["CCD1_TEMP_T"][0] == -246.08
    assert hk.stats("CCD2_TEMP_B")[0] == pytest.approx(-119.915)
    assert hk.values["RPSU_VCCD_V"][0] == 33.5
    assert hk.values["FPGA_BIAS_DD"][0] == 22.01
    assert hk.values["VID_PCB_TEMP_T"][0] == -273.15
    # the rest kept under their stripped names
    assert "HK_RD_Top_CCD1" in hk.keys and "HK_IG1_top" in hk.keys
    assert all(key == key.strip() for key in hk.keys)


def test_write_and_read_5_7_layout(tmp_path):
    values = nominal_values(3)
    path = write_hk(tmp_path / "HK_5_050800D120000T_ROE1.txt", sample_times(3, datetime(2000, 8, 5, 12)),
                    values, version="5.7.09")
    header = path.read_bytes().decode().split("\r\n")[0].split("\t")
    assert header[0] == "HK_timestamp" and "HK_temp_top_CCD1" in header
    hk = read_hk(path)
    assert hk.times[0] == datetime(2000, 8, 5, 12, 0, 0)
    np.testing.assert_allclose(hk.values["CCD1_TEMP_T"], values["CCD1_TEMP_T"])
    assert np.isnan(hk.values["HK_IG1_top"]).all()  # not given: written empty, read as NaN


def test_unknown_keys_are_refused():
    with pytest.raises(ValueError, match="not HK keys of any ELVIS version: NOT_A_KEY"):
        format_hk_rows(sample_times(1), {"NOT_A_KEY": [1.0]})
    with pytest.raises(ValueError, match="2 values for 3 times"):
        format_hk_rows(sample_times(3), {"CCD1_TEMP_T": [1.0, 2.0]})


# ---------------------------------------------------------------- following


def test_follower_new_rows_only_and_resume(tmp_path):
    path = tmp_path / NAME
    follower = HKFollower(path)
    assert follower.read_new() == []

    append_hk_rows(path, sample_times(3), nominal_values(3))
    partial = format_hk_rows(sample_times(1, START + timedelta(seconds=3)), nominal_values(1))
    with open(path, "ab") as handle:
        handle.write(partial[:25].encode())

    rows = follower.read_new()
    assert [r["line"] for r in rows] == [2, 3, 4]
    assert rows[0]["time"] == START and rows[0]["SPW_STATUS_REG"] == 12192.0
    assert follower.read_new() == []  # partial line waits

    with open(path, "ab") as handle:
        handle.write(partial[25:].encode())
    rows = follower.read_new()
    assert [(r["line"], r["time"]) for r in rows] == [(5, START + timedelta(seconds=3))]

    state = json.loads(json.dumps(follower.state()))
    append_hk_rows(path, sample_times(2, START + timedelta(seconds=4)), nominal_values(2))
    resumed = HKFollower.from_state(state)
    rows = resumed.read_new()
    assert [r["line"] for r in rows] == [6, 7]
    assert resumed.version == "7.5.X"
    assert path.read_bytes().decode().count("TimeStamp") == 1


def test_follower_reports_bad_cells(tmp_path):
    path = write_nominal(tmp_path, n=3)
    text = path.read_bytes().decode().split("\r\n")
    text[2] = text[2].replace("\t26.02\t", "\tbad\t", 1)
    path.write_bytes("\r\n".join(text).encode())
    follower = HKFollower(path)
    rows = follower.read_new()
    assert len(rows) == 3
    assert [p.line for p in follower.problems] == [3]
    assert "expects a number, found 'bad'" in follower.problems[0].message


# ---------------------------------------------------------------- bad input (issue 16)


def set_cells(path: Path, changes: dict[tuple[int, str], str]) -> None:
    """Set cells by (line number, key), as a damaged file would have them."""
    lines = path.read_bytes().decode().split("\r\n")
    header = lines[0].split("\t")
    for (number, key), text in changes.items():
        fields = lines[number - 1].split("\t")
        fields[header.index(key)] = text
        lines[number - 1] = "\t".join(fields)
    path.write_bytes("\r\n".join(lines).encode())


def test_nan_and_empty_cells_are_said_once_per_key_with_file_and_line(tmp_path):
    path = write_nominal(tmp_path, n=6)
    set_cells(path, {(3, "CCD1_TEMP_T"): "", (5, "CCD1_TEMP_T"): "", (4, "CCD2_OD_B"): "NaN"})
    hk = read_hk(path)
    assert [(p.line, p.key) for p in hk.problems] == [(3, "CCD1_TEMP_T"), (4, "CCD2_OD_B")]
    assert hk.problems[0].message.startswith(f"{NAME} line 3: key 'CCD1_TEMP_T' is empty: no reading")
    assert hk.problems[1].message.startswith(f"{NAME} line 4: key 'CCD2_OD_B' reads 'NaN': no reading")
    assert np.isnan(hk.values["CCD1_TEMP_T"]).sum() == 2  # still read as gaps, the mean over the rest
    follower = HKFollower(path)
    follower.read_new()
    assert [(p.line, p.key) for p in follower.problems] == [(3, "CCD1_TEMP_T"), (4, "CCD2_OD_B")]


def test_an_empty_file_is_said(tmp_path):
    path = tmp_path / NAME
    path.write_bytes(b"")
    hk = read_hk(path)
    assert len(hk) == 0
    assert [(p.line, p.key) for p in hk.problems] == [(None, None)]
    assert hk.problems[0].message == f"{NAME}: empty file (no header, no sample): no HK for this exposure"
    follower = HKFollower(path)
    assert follower.read_new() == [] and follower.problems == []  # may still be written
    follower.read_new(final=True)
    assert [p.message for p in follower.problems] == [hk.problems[0].message]


def test_a_header_without_samples_is_said(tmp_path):
    path = write_hk(tmp_path / NAME, [], {})
    assert [p.message for p in read_hk(path).problems] == [f"{NAME}: a header but no sample: no HK for this exposure"]


def test_a_binary_file_is_said_and_never_echoed_raw(tmp_path):
    path = tmp_path / NAME
    path.write_bytes(bytes(range(256)) * 4)
    hk = read_hk(path)
    assert len(hk) == 0 and hk.keys == []
    assert len(hk.problems) == 1
    assert hk.problems[0].line is None
    assert hk.problems[0].message.startswith(f"{NAME}: binary data where the header of key names should be (line 1)")
    assert hk.problems[0].message.isprintable()


def test_binary_rows_are_skipped_once_said_and_quoted_text_is_escaped(tmp_path):
    path = write_nominal(tmp_path, n=5)
    set_cells(path, {(2, "CCD1_TEMP_T"): "12\u202e34"})  # a right-to-left override would turn the console text
    with open(path, "ab") as handle:
        handle.write(b"\x00\x01\x02garbage\r\n\x00\xff\xfe\r\n")
    hk = read_hk(path)
    assert len(hk) == 5
    messages = [p.message for p in hk.problems]
    assert messages[0] == f"{NAME} line 2: key 'CCD1_TEMP_T' expects a number, found '12\\u202e34'"
    assert messages[1].startswith(f"{NAME} line 7: binary data (non-printable bytes), not an HK row: skipped")
    assert len(messages) == 2 and all(m.isprintable() for m in messages)
