"""EXP_LOG reading, following and writing (engine/formats/explog.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.formats import ExpLogError, read_explog
from engine.formats.explog import (
    EXPLOG_COLUMNS,
    INTERNAL_COLUMNS,
    ExpLogFollower,
    append_explog_rows,
    column_type,
    format_explog_header,
    format_explog_rows,
    write_explog,
)

# The real lab sample (ELVIS 5.7, lab version 13.0.1f2), kept byte for byte in the repo.
SAMPLE = Path(__file__).parent / "data" / "EXP_LOG_050800.txt"


@pytest.fixture
def sample() -> Path:
    assert SAMPLE.exists(), f"real EXP_LOG sample missing: {SAMPLE}"
    return SAMPLE


def make_row(obsid: int, ccd: int, test: str = "BIAS01", **changes) -> dict:
    row = {
        "ObsID": obsid,
        "File_name": f"EUC_{obsid}_250719D121603T_ROE1_CCD{ccd}",
        "CCD": f"CCD{ccd}",
        "ROE": "ROE1",
        "date": "250719D121603T",
        "program": "CALCAMP",
        "test": test,
        "calscrpt": "vis_CalCamp_BIAS01_25Jul19_v7.5.X.xlsx",
        "sn_ccd1": "14471-19-01",
        "sn_ccd2": "14471-19-02",
        "sn_ccd3": "14471-19-03",
        "sn_roe": "FM14",
        "sn_rpsu": "FM14",
        "BUNIT": "ADU",
        "operator": "raf",
        "con_file": "vis_roe_config_cotsqm_273_vn.txt",
        "exptime": 0.0,
        "fl_rdout": 0.0,
        "ci_rdout": 0.0,
        "IPHI": "I1I2I3",
        "vstart": 0,
        "vend": 2086,
        "rdmode": "fwd_bas",
        "flushes": 7,
        "siflsh": 1,
        "siflsh_p": 500.0,
        "swellw": 8.4,
        "swelldly": 5.625,
        "chinj": 0,
        "toi_fl": 143,
        "toi_ro": 1000,
        "wave": 4,
        "mirr_pos": 12.4,
        "R1C1_TT": -120.3,
        "IDL": 13.0,
        "IDH": 18.0,
        "OD_1_T": 26.0,
        "RD_T": 16.0,
        "source": "flat",
        "egse_ver": "7.5.X",
    }
    row.update(changes)
    return row


def good_log(tmp_path: Path, rows: list[dict] | None = None, name: str = "EXP_LOG_250719.txt") -> Path:
    rows = rows if rows is not None else [make_row(1000 + i // 3, i % 3 + 1) for i in range(6)]
    return write_explog(tmp_path / name, rows)


# ---------------------------------------------------------------- the real sample


def test_real_sample_parses_under_internal_names(sample):
    log = read_explog(sample)
    assert log.version is not None and log.version.startswith("5.7")
    assert len(log.rows) == 6
    assert log.obsids() == [191, 192]
    assert [sum(r["ObsID"] == o for r in log.rows) for o in (191, 192)] == [3, 3]
    assert [r["CCD"] for r in log.rows[:3]] == ["CCD1", "CCD2", "CCD3"]
    assert [r["line"] for r in log.rows] == [2, 3, 4, 5, 6, 7]
    assert log.pending is None and log.problems == []

    first = log.rows[0]
    assert first["File_name"] == "EUC_191_251116D150614T_ROE1_CCD1"
    assert first["date"] == "251116D150614T"
    assert first["test"] == "Test"
    assert first["exptime"] == 0.0 and isinstance(first["exptime"], float)
    assert first["R1C1_TT"] == -246.08
    assert first["R1C1_TB"] == -246.86
    assert first["R1C2_TT"] == -180.17
    # names with stray spaces ("Vstart ", "TOI _pump") and typed
    assert first["vstart"] == 1 and isinstance(first["vstart"], int)
    assert first["vend"] == 100
    assert first["toi_tp"] == 1000
    # one old voltage fills every 7.5.X column it stands for
    assert {first[f"IG1_{n}_{h}"] for n in (1, 2, 3) for h in "TB"} == {3.0}
    assert first["OD_2_T"] == first["OD_2_B"] == 26.0
    assert first["RD_T"] == first["RD_B"] == 16.0
    assert first["IDL"] == 11.0 and first["IDH"] == 13.0
    assert first["sn_roe"] == "EM_XX"
    assert first["chinj"] == 0 and first["chinj_on"] == 1000
    # unmappable names kept under their stripped original name
    assert first["Lab_ver"] == "13.0.1f2"
    assert first["Lim_scan"] == 1
    # 7.5.X columns this version lacks are present and empty
    assert first["cdpu_clk"] is None and "cdpu_clk" not in log.columns
    assert "exptime" in log.columns and "Exptime" not in log.columns


def test_real_sample_test_bookkeeping(sample):
    log = read_explog(sample)
    assert log.tests() == ["Test"]
    assert len(log.rows_for_test("Test")) == 6
    assert log.rows_for_test("BIAS01") == []
    assert log.frames_per_test() == {"Test": 2.0}


# ---------------------------------------------------------------- writing, round trip


def test_round_trip_7_5_X(tmp_path):
    rows = [make_row(1000 + i // 3, i % 3 + 1) for i in range(6)]
    path = good_log(tmp_path, rows)
    log = read_explog(path)
    assert log.version == "7.5.X"
    assert log.columns == list(INTERNAL_COLUMNS)
    assert len(log.rows) == 6
    for written, read in zip(rows, log.rows):
        for name in INTERNAL_COLUMNS:
            expected = written.get(name)
            if expected is None and column_type(name) is str:
                expected = ""  # an empty text cell is an empty string; an empty number is None
            assert read[name] == expected, name
            assert expected is None or type(read[name]) is column_type(name), name
    assert log.frames_per_test() == {"BIAS01": 2.0}


def test_written_layout_matches_the_lab(tmp_path):
    path = good_log(tmp_path)
    raw = path.read_bytes()
    lines = raw.split(b"\r\n")
    assert lines[-1] == b""  # every line CRLF-terminated
    assert all(line.endswith(b"\t") for line in lines[:-1])  # trailing tab, as ELVIS
    assert b"\n" not in raw.replace(b"\r\n", b"")
    header = lines[0].decode().split("\t")
    assert header[:-1] == list(EXPLOG_COLUMNS["7.5.X"]) and len(header[:-1]) == 81


def test_float_formatting_without_noise():
    text = format_explog_rows([make_row(7, 1, exptime=0.0, OD_1_T=26.0, mirr_pos=12.4)])
    cells = dict(zip(EXPLOG_COLUMNS["7.5.X"], text.split("\t")))
    assert cells["exptime"] == "0"
    assert cells["OD_1_T"] == "26.0"
    assert cells["mirr_pos"] == "12.4"
    assert cells["vend"] == "2086"
    assert cells["IG2_T"] == ""  # missing columns are left empty


def test_header_format():
    header = format_explog_header()
    assert header.startswith("ObsID\tFile_name\tCCD\t") and header.endswith("RD_B\t\r\n")


def test_append_writes_header_once(tmp_path):
    path = tmp_path / "EXP_LOG_250719.txt"
    append_explog_rows(path, [make_row(1000, c) for c in (1, 2, 3)])
    append_explog_rows(path, [make_row(1001, c) for c in (1, 2, 3)])
    text = path.read_bytes().decode()
    assert text.count("ObsID\t") == 1
    log = read_explog(path)
    assert log.obsids() == [1000, 1001]
    assert [r["line"] for r in log.rows] == [2, 3, 4, 5, 6, 7]


def test_append_refuses_another_version(tmp_path, sample):
    path = tmp_path / sample.name
    path.write_bytes(sample.read_bytes())
    with pytest.raises(ValueError, match="7.5.X"):
        append_explog_rows(path, [make_row(193, 1)])


def test_old_version_written_and_read_back(tmp_path):
    path = write_explog(tmp_path / "EXP_LOG_010118.txt", [make_row(5, 1, IG1_1_T=6.0)], version="6.0.0")
    header = path.read_text().splitlines()[0].split("\t")
    assert "Exptime" in header and "IG1_T1_V" in header
    log = read_explog(path)
    assert log.version in ("6.0.0", "6.1.0")
    row = log.rows[0]
    assert row["ObsID"] == 5 and row["test"] == "BIAS01"
    assert row["IG1_1_T"] == 6.0 and row["OD_1_T"] == 26.0 and row["toi_ro"] == 1000
    assert row["rdmode"] is None  # 6.0.0 has no such column


# ---------------------------------------------------------------- tolerated quirks


def test_lf_blank_lines_and_trailing_empties(tmp_path):
    path = good_log(tmp_path)
    text = path.read_bytes().decode().replace("\r\n", "\n")
    lines = text.split("\n")
    lines[2] = lines[2] + "\t\t"  # extra trailing empty fields
    lines.insert(3, "")  # a blank line
    lines.insert(5, "\t\t\t")  # a line of nothing but tabs
    path.write_text("\n".join(lines))
    log = read_explog(path)
    assert len(log.rows) == 6
    assert log.problems == []
    assert [r["line"] for r in log.rows] == [2, 3, 5, 7, 8, 9]


def test_explicit_version_names_fields_by_position(tmp_path):
    path = good_log(tmp_path)
    text = path.read_bytes().decode()
    # A garbled header: the explicit version still names the fields.
    header_end = text.index("\r\n")
    garbled = "\t".join(f"c{i}" for i in range(81)) + "\t"
    path.write_bytes((garbled + text[header_end:]).encode())
    log = read_explog(path, version="7.5.X")
    assert log.version == "7.5.X"
    assert log.obsids() == [1000, 1001]
    with pytest.raises(ValueError, match="unknown ELVIS version"):
        read_explog(path, version="9.9.9")


def test_explicit_version_with_mismatched_header(tmp_path, sample):
    with pytest.raises(ExpLogError, match=r"line 1: header has 69 names, ELVIS 7.5.X logs have 81"):
        read_explog(sample, version="7.5.X")


# ---------------------------------------------------------------- a line still being written


def test_unterminated_last_line_is_held_back(tmp_path):
    path = good_log(tmp_path)
    partial = format_explog_rows([make_row(1002, 1)])[:-30]
    with open(path, "ab") as handle:
        handle.write(partial.encode())
    log = read_explog(path, complete=False)
    assert len(log.rows) == 6
    assert log.pending == partial
    assert log.problems == []


def test_complete_true_parses_an_unterminated_last_line(tmp_path):
    path = good_log(tmp_path)
    whole = format_explog_rows([make_row(1002, 1)]).rstrip("\r\n")
    with open(path, "ab") as handle:
        handle.write(whole.encode())
    assert len(read_explog(path, complete=False).rows) == 6
    log = read_explog(path, complete=True)
    assert len(log.rows) == 7 and log.pending is None
    assert log.rows[-1]["ObsID"] == 1002 and log.rows[-1]["line"] == 8


# ---------------------------------------------------------------- malformed lines


def corrupt(path: Path, line_number: int, column: str, value: str) -> None:
    lines = path.read_bytes().decode().split("\r\n")
    fields = lines[line_number - 1].split("\t")
    fields[EXPLOG_COLUMNS["7.5.X"].index(column)] = value
    lines[line_number - 1] = "\t".join(fields)
    path.write_bytes("\r\n".join(lines).encode())


def test_non_numeric_value_names_file_line_and_column(tmp_path):
    path = good_log(tmp_path, name="EXP_LOG_050800.txt")
    corrupt(path, 5, "exptime", "abc")
    with pytest.raises(ExpLogError) as caught:
        read_explog(path)
    assert str(caught.value) == "EXP_LOG_050800.txt line 5: column 'exptime' expects a number, found 'abc'"
    assert caught.value.line == 5 and caught.value.path == path


def test_non_integer_in_integer_column(tmp_path):
    path = good_log(tmp_path)
    corrupt(path, 3, "vend", "20.5")
    with pytest.raises(ExpLogError, match=r"line 3: column 'vend' expects an integer, found '20.5'"):
        read_explog(path)


def test_wrong_field_count_names_file_and_line(tmp_path):
    path = good_log(tmp_path, name="EXP_LOG_050800.txt")
    lines = path.read_bytes().decode().split("\r\n")
    lines[4] = "\t".join(lines[4].split("\t")[:12])
    path.write_bytes("\r\n".join(lines).encode())
    with pytest.raises(ExpLogError) as caught:
        read_explog(path)
    assert str(caught.value) == "EXP_LOG_050800.txt line 5: expected 81 tab-separated fields, found 12"


def test_collect_keeps_the_good_lines(tmp_path):
    path = good_log(tmp_path)
    corrupt(path, 3, "exptime", "abc")
    corrupt(path, 6, "ObsID", "x1001")
    log = read_explog(path, errors="collect")
    assert [r["line"] for r in log.rows] == [2, 4, 5, 7]
    assert [p.line for p in log.problems] == [3, 6]
    assert "line 3: column 'exptime' expects a number, found 'abc'" in str(log.problems[0])
    assert "line 6: column 'ObsID' expects a number, found 'x1001'" in log.problems[1].message
    with pytest.raises(ValueError):
        read_explog(path, errors="ignore")


# ---------------------------------------------------------------- following a growing log


def test_follower_reads_only_new_rows_and_waits_for_partial_lines(tmp_path):
    path = tmp_path / "EXP_LOG_250719.txt"
    follower = ExpLogFollower(path)
    assert follower.read_new() == []  # not there yet

    append_explog_rows(path, [make_row(1000, c) for c in (1, 2, 3)])
    new_line = format_explog_rows([make_row(1001, 1)])
    with open(path, "ab") as handle:
        handle.write(new_line[:40].encode())  # ELVIS is mid-line

    rows = follower.read_new()
    assert [(r["ObsID"], r["CCD"], r["line"]) for r in rows] == [
        (1000, "CCD1", 2), (1000, "CCD2", 3), (1000, "CCD3", 4),
    ]
    assert follower.version == "7.5.X"
    assert follower.read_new() == []  # the partial line waits

    with open(path, "ab") as handle:
        handle.write(new_line[40:].encode())
    rows = follower.read_new()
    assert [(r["ObsID"], r["CCD"], r["line"]) for r in rows] == [(1001, "CCD1", 5)]
    assert rows[0]["exptime"] == 0.0 and rows[0]["mirr_pos"] == 12.4
    assert follower.offset == path.stat().st_size


def test_follower_resumes_from_saved_state(tmp_path):
    path = good_log(tmp_path)
    follower = ExpLogFollower(path)
    assert len(follower.read_new()) == 6
    state = json.loads(json.dumps(follower.state()))  # survives a trip through JSON

    append_explog_rows(path, [make_row(1002, c) for c in (1, 2, 3)])
    resumed = ExpLogFollower.from_state(state)
    rows = resumed.read_new()
    assert [r["ObsID"] for r in rows] == [1002, 1002, 1002]
    assert [r["line"] for r in rows] == [8, 9, 10]
    assert resumed.version == "7.5.X"


def test_follower_collects_bad_lines_and_keeps_going(tmp_path):
    path = good_log(tmp_path)
    corrupt(path, 4, "exptime", "abc")
    follower = ExpLogFollower(path)
    rows = follower.read_new()
    assert len(rows) == 5
    assert [p.line for p in follower.problems] == [4]


def test_follower_raise_mode_returns_good_rows_first(tmp_path):
    path = good_log(tmp_path)
    corrupt(path, 4, "exptime", "abc")
    follower = ExpLogFollower(path, errors="raise")
    assert [r["line"] for r in follower.read_new()] == [2, 3]
    with pytest.raises(ExpLogError, match="line 4"):
        follower.read_new()
    assert [r["line"] for r in follower.read_new()] == [5, 6, 7]


def test_follower_starts_over_when_the_file_is_replaced(tmp_path):
    path = good_log(tmp_path)
    follower = ExpLogFollower(path)
    assert len(follower.read_new()) == 6
    good_log(tmp_path, [make_row(2000, 1)])  # rewritten, shorter
    rows = follower.read_new()
    assert [r["ObsID"] for r in rows] == [2000]


def test_follower_does_not_skip_a_refused_header(tmp_path, sample):
    path = tmp_path / sample.name
    path.write_bytes(sample.read_bytes())
    follower = ExpLogFollower(path, version="7.5.X")
    for _ in range(2):  # refused every time, never reading a data row as the header
        with pytest.raises(ExpLogError, match="line 1: header has 69 names"):
            follower.read_new()
    assert follower.offset == 0


# ---------------------------------------------------------------- bad input (issue 16)


def test_a_duplicate_obsid_ccd_row_keeps_the_first_and_says_so(tmp_path):
    rows = [make_row(1000, 1), make_row(1000, 2), make_row(1000, 2, exptime=99.0), make_row(1000, 3)]
    path = good_log(tmp_path, rows)
    log = read_explog(path, errors="collect")
    assert [(r["ObsID"], r["CCD"], r["exptime"]) for r in log.rows] == [
        (1000, "CCD1", 0.0), (1000, "CCD2", 0.0), (1000, "CCD3", 0.0)]
    assert [p.line for p in log.problems] == [4]
    assert log.problems[0].message == ("EXP_LOG_250719.txt line 4: ObsID 1000 'CCD2' was already logged on line 3: "
                                       "this row is ignored, the first one kept")
    follower = ExpLogFollower(path)  # the monitor and wait mode likewise
    assert [r["exptime"] for r in follower.read_new() if r["CCD"] == "CCD2"] == [0.0]
    assert [p.line for p in follower.problems] == [4]


@pytest.mark.parametrize("obsid", ["1e9", "-1001", "12.5"])
def test_an_absurd_obsid_rejects_the_row_naming_what_was_expected(tmp_path, obsid):
    path = good_log(tmp_path)
    corrupt(path, 3, "ObsID", obsid)
    log = read_explog(path, errors="collect")
    assert [r["line"] for r in log.rows] == [2, 4, 5, 6, 7]
    assert all(isinstance(r["ObsID"], int) and r["ObsID"] in (1000, 1001) for r in log.rows)
    assert [p.line for p in log.problems] == [3]
    message = log.problems[0].message
    assert message.startswith("EXP_LOG_250719.txt line 3: column 'ObsID' expects ") and f"found '{obsid}'" in message


def test_a_byte_order_mark_does_not_hide_the_obsid_column(tmp_path):
    path = good_log(tmp_path)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    log = read_explog(path, errors="collect")
    assert log.problems == [] and len(log.rows) == 6 and log.version == "7.5.X"
    assert ExpLogFollower(path).read_new()[0]["ObsID"] == 1000


def test_a_closed_log_keeps_its_last_row_without_a_newline(tmp_path):
    # aim mode reads the day's log whole, once acquired, as the pipeline does
    path = good_log(tmp_path)
    with open(path, "ab") as handle:
        handle.write(format_explog_rows([make_row(1002, 1)]).rstrip("\r\n").encode())
    log = read_explog(path, errors="collect")
    assert [(r["ObsID"], r["line"]) for r in log.rows][-1] == (1002, 8)
    assert log.problems == [] and log.pending is None


def test_messages_escape_what_they_quote(tmp_path):
    path = good_log(tmp_path)
    corrupt(path, 3, "exptime", "\x1b[31mred\x07")
    log = read_explog(path, errors="collect")
    assert "found '\\x1b[31mred\\x07'" in log.problems[0].message
    assert log.problems[0].message.isprintable()
