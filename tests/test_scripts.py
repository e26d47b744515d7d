"""The script writer reproduces the cookbook's NOSTROMO scripts folder; its inputs report every mistake."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil
import textwrap
from datetime import datetime
from pathlib import Path

import pytest
from openpyxl import load_workbook

import engine
from engine.campaign.catalogue import resolve_test
from engine.campaign.chamber import load_chamber
from engine.campaign.script_params import SCRIPT_ROWS
from engine.campaign.scripts import OUTPUT_MARKER, OutputFolderError, load_script_inputs, write_scripts
from engine.cli.main import main
from engine.formats.tomlfile import ConfigError
from engine.paths import configs_dir

EXAMPLE = configs_dir() / "examples" / "nostromo"
OUTPUT = "Scripts_NOSTROMO_APR19_W18"

# The cookbook's `cat Scripts_NOSTROMO_APR19_W18/TESTS_INVENTORY_01Apr19.txt`, after its date/time line
# (its vison version line is the old pipeline's; ours names ours).
COOKBOOK_INVENTORY = """\
checksumf: CHECK_SUMS_01Apr19.txt
vison version: 0.8+69.gf135883
CHINJ02: 26 [42.31 min] cols: [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]
BIAS01: 1 [15.58 min] cols: [10]
TP01: 50 [120.31 min] cols: [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]
BIAS02: 1 [15.58 min] cols: [10]
CHINJ01: 36 [58.58 min] cols: [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]
FOCUS00_590: 9 [15.11 min] cols: [1, 1, 1, 1, 1, 1, 1, 1, 1]
FOCUS00_730: 9 [14.25 min] cols: [1, 1, 1, 1, 1, 1, 1, 1, 1]
FOCUS00_800: 9 [14.22 min] cols: [1, 1, 1, 1, 1, 1, 1, 1, 1]
FOCUS00_880: 9 [14.39 min] cols: [1, 1, 1, 1, 1, 1, 1, 1, 1]
168 Frames Total
310.33 Minutes Total
"""

# The cookbook's `ls -1 Scripts_NOSTROMO_APR19_W18/`.
COOKBOOK_LISTING = """\
CHECK_SUMS_01Apr19.txt
TESTS_INVENTORY_01Apr19.txt
TESTS_SCHEDULER_01Apr19.xlsx
vis_CalCamp_BIAS01_01Apr19_v7.5.X.xlsx
vis_CalCamp_BIAS02_01Apr19_v7.5.X.xlsx
vis_CalCamp_CHINJ01_01Apr19_v7.5.X.xlsx
vis_CalCamp_CHINJ02_01Apr19_v7.5.X.xlsx
vis_CalCamp_FOCUS00_590_01Apr19_v7.5.X.xlsx
vis_CalCamp_FOCUS00_730_01Apr19_v7.5.X.xlsx
vis_CalCamp_FOCUS00_800_01Apr19_v7.5.X.xlsx
vis_CalCamp_FOCUS00_880_01Apr19_v7.5.X.xlsx
vis_CalCamp_TP01_01Apr19_v7.5.X.xlsx
""".split()

_TEST_LINE = re.compile(r"^(?P<name>\S+): (?P<ncols>\d+) \[(?P<minutes>[\d.]+) min\] cols: (?P<cols>\[.*\])$")


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """The shipped NOSTROMO inputs, copied where the test may write."""
    for name in ("scripts.toml", "sessions.toml"):
        shutil.copy(EXAMPLE / name, tmp_path / name)
    return tmp_path


def write(folder: Path, text: str, name: str = "scripts.toml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


def compare_inventory_line(ours: str, expected: str) -> None:
    got, want = _TEST_LINE.match(ours), _TEST_LINE.match(expected)
    if want is None:  # header and totals
        total = re.match(r"^([\d.]+) Minutes Total$", expected)
        if total:
            assert float(ours.split()[0]) == pytest.approx(float(total.group(1)), rel=0.05), ours
        elif expected.startswith("vison version:"):
            assert ours == f"vison version: {engine.__version__}"
        else:
            assert ours == expected
        return
    assert got is not None, ours
    assert (got["name"], got["ncols"], got["cols"]) == (want["name"], want["ncols"], want["cols"])
    assert float(got["minutes"]) == pytest.approx(float(want["minutes"]), rel=0.05), ours


def test_nostromo_inventory_matches_the_cookbook_line_by_line(example: Path) -> None:
    written = write_scripts(load_script_inputs(example / "scripts.toml"))
    lines = (example / OUTPUT / "TESTS_INVENTORY_01Apr19.txt").read_text().splitlines()
    assert re.fullmatch(r"Scripts written on \d{2}[A-Z][a-z]{2}\d{2} \d{2}:\d{2}:\d{2}", lines[0])
    expected = COOKBOOK_INVENTORY.splitlines()
    assert len(lines) - 1 == len(expected)
    for ours, theirs in zip(lines[1:], expected):
        compare_inventory_line(ours, theirs)
    assert written.total_frames == 168
    assert sorted(p.name for p in (example / OUTPUT).iterdir() if not p.name.startswith(".")) == COOKBOOK_LISTING
    assert (example / OUTPUT / OUTPUT_MARKER).is_file()  # hidden, like `ls -1` hides it


def test_durations_match_the_cookbook_to_the_hundredth(example: Path) -> None:
    text = write_scripts(load_script_inputs(example / "scripts.toml")).inventory_text
    assert text.splitlines()[1:] == COOKBOOK_INVENTORY.replace("0.8+69.gf135883", engine.__version__).splitlines()


def test_script_cells_follow_the_elvis_layout(example: Path) -> None:
    write_scripts(load_script_inputs(example / "scripts.toml"))
    workbook = load_workbook(example / OUTPUT / "vis_CalCamp_FOCUS00_800_01Apr19_v7.5.X.xlsx")
    assert workbook.sheetnames == ["Sheet1"]
    rows = list(workbook["Sheet1"].iter_rows(values_only=True))
    assert [row[0] for row in rows] == list(SCRIPT_ROWS)  # no header row
    by_name = {row[0]: row[1:] for row in rows}
    assert by_name["frames"] == (1, 2, 3, 4, 5, 6, 7, 8, 9, "End")  # cumulative, then End
    assert all(values[9] is None for name, values in by_name.items() if name != "frames")
    assert set(by_name["test"][:9]) == {"FOCUS00_800"}
    for key, serial in (("sn_roe", "FM15"), ("sn_rpsu", "FM15"), ("sn_ccd1", "14888-88-81"),
                        ("sn_ccd2", "14888-88-82"), ("sn_ccd3", "14888-88-83"), ("operator", "unk")):
        assert set(by_name[key][:9]) == {serial}
    # exposure and mirror positions: the catalogue's, for the B_NOSTROMO chamber
    chamber = load_chamber("B_NOSTROMO")
    columns = resolve_test("FOCUS00_800").script_columns(chamber)
    assert list(by_name["exptime"][:9]) == pytest.approx([c["exptime"] for c in columns])
    assert list(by_name["mirr_pos"][:9]) == pytest.approx([c["mirr_pos"] for c in columns])
    assert by_name["mirr_pos"][4] == pytest.approx(chamber.focus(800))  # the sweep centres on best focus
    assert len(set(by_name["mirr_pos"][:9])) == 9 and len(set(by_name["exptime"][:9])) == 1
    assert by_name["exptime"][0] == pytest.approx(0.6 * chamber.tfwc_point[800])  # 60 % of full well

    bias = load_workbook(example / OUTPUT / "vis_CalCamp_BIAS01_01Apr19_v7.5.X.xlsx")["Sheet1"]
    assert (bias["B1"].value, bias["C1"].value, bias["D1"].value) == (10, "End", None)
    assert bias.cell(row=SCRIPT_ROWS.index("sn_ccd3") + 1, column=2).value == "14888-88-83"


def test_checksums_and_scheduler(example: Path) -> None:
    written = write_scripts(load_script_inputs(example / "scripts.toml"))
    folder = example / OUTPUT
    lines = (folder / "CHECK_SUMS_01Apr19.txt").read_text().splitlines()
    assert len(lines) == 9
    for line, script in zip(lines, written.scripts):
        name, md5 = line.split()
        assert name == script.filename
        assert md5 == hashlib.md5((folder / name).read_bytes()).hexdigest() == script.md5
    rows = list(load_workbook(folder / "TESTS_SCHEDULER_01Apr19.xlsx")["Sheet1"].iter_rows(values_only=True))
    assert rows[0] == ("test", "columns", "frames", "minutes")
    assert rows[1] == ("CHINJ02", 26, 26, 42.31)
    assert rows[2] == ("BIAS01", 1, 10, 15.58)
    assert rows[-1][0] == "Total" and rows[-1][2] == 168


def test_same_inputs_give_the_same_bytes_and_checksums(example: Path) -> None:
    inputs = load_script_inputs(example / "scripts.toml")
    write_scripts(inputs, written_at=datetime(2019, 4, 1, 12, 56, 31))
    first = snapshot(example / OUTPUT)
    write_scripts(inputs, force=True, written_at=datetime(2019, 4, 2, 9, 0, 0))
    second = snapshot(example / OUTPUT)
    assert first.keys() == second.keys()
    for name in first:
        if name.startswith("TESTS_INVENTORY") or name == OUTPUT_MARKER:  # the inventory says when it was
            continue  # written, and the marker lists the inventory's checksum
        assert first[name][0] == second[name][0], name


def test_rewriting_refuses_without_force_and_leaves_the_folder_untouched(example: Path, capsys) -> None:
    inputs = load_script_inputs(example / "scripts.toml")
    write_scripts(inputs)
    (example / OUTPUT / "notes.txt").write_text("mine")
    before = snapshot(example / OUTPUT)
    with pytest.raises(OutputFolderError, match="not empty"):
        write_scripts(inputs)
    assert main(["scripts", str(example / "scripts.toml")]) == 1
    assert "--force" in capsys.readouterr().err
    assert snapshot(example / OUTPUT) == before
    (example / OUTPUT / "notes.txt").unlink()
    assert main(["scripts", str(example / "scripts.toml"), "--force"]) == 0  # replaces what it wrote
    assert snapshot(example / OUTPUT).keys() == before.keys() - {"notes.txt"}


def test_force_never_removes_what_it_did_not_write(example: Path, capsys) -> None:
    inputs = load_script_inputs(example / "scripts.toml")
    write_scripts(inputs)
    (example / OUTPUT / "notes.txt").write_text("mine")
    before = snapshot(example / OUTPUT)
    assert main(["scripts", str(example / "scripts.toml"), "--force"]) == 1
    err = capsys.readouterr().err
    assert "files vison-engine scripts did not write: notes.txt" in err and "nothing was written" in err
    assert snapshot(example / OUTPUT) == before
    # a script edited by hand after it was written is not ours any more either
    (example / OUTPUT / "notes.txt").unlink()
    script = example / OUTPUT / "vis_CalCamp_BIAS01_01Apr19_v7.5.X.xlsx"
    script.write_bytes(b"edited by hand")
    with pytest.raises(OutputFolderError, match="changed since vison-engine scripts wrote them: vis_CalCamp_BIAS01"):
        write_scripts(inputs, force=True)
    assert script.read_bytes() == b"edited by hand"


def test_force_refuses_a_folder_it_did_not_create(example: Path, capsys) -> None:
    (example / OUTPUT).mkdir()
    (example / OUTPUT / "vis_CalCamp_BIAS01_01Apr19_v7.5.X.xlsx").write_text("a script from elsewhere")
    assert main(["scripts", str(example / "scripts.toml"), "--force"]) == 1
    assert f"was not written by vison-engine scripts (no readable {OUTPUT_MARKER}" in capsys.readouterr().err
    assert [p.name for p in (example / OUTPUT).iterdir()] == ["vis_CalCamp_BIAS01_01Apr19_v7.5.X.xlsx"]


def test_force_refuses_the_home_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    home, inputs_folder = tmp_path / "home", tmp_path / "inputs"
    home.mkdir()
    inputs_folder.mkdir()
    (home / "thesis.tex").write_text("years of work")
    monkeypatch.setenv("HOME", str(home))
    text = (EXAMPLE / "scripts.toml").read_text().replace('output = "Scripts_NOSTROMO_APR19_W18"', 'output = "~"')
    path = write(inputs_folder, text)
    assert main(["scripts", str(path), "--force"]) == 1
    assert f"output folder {home} is your home folder" in capsys.readouterr().err
    assert [p.name for p in home.iterdir()] == ["thesis.tex"]


def test_the_filesystem_root_and_what_holds_home_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    inputs = load_script_inputs(EXAMPLE / "scripts.toml")
    with pytest.raises(OutputFolderError, match="is the filesystem root"):
        write_scripts(dataclasses.replace(inputs, output=Path("/")))
    with pytest.raises(OutputFolderError, match="holds your home folder"):
        write_scripts(dataclasses.replace(inputs, output=tmp_path))


def test_a_failure_half_way_leaves_nothing_written(example: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.campaign.scripts as scripts

    def broken(_scripts):
        raise OSError("disk full")

    monkeypatch.setattr(scripts, "scheduler_workbook", broken)  # fails after the scripts are written
    inputs = load_script_inputs(example / "scripts.toml")
    with pytest.raises(OSError):
        write_scripts(inputs)
    assert sorted(p.name for p in example.iterdir()) == ["scripts.toml", "sessions.toml"]  # no staging left
    monkeypatch.undo()
    write_scripts(inputs)
    before = snapshot(example / OUTPUT)
    monkeypatch.setattr(scripts, "scheduler_workbook", broken)
    with pytest.raises(OSError):
        write_scripts(inputs, force=True)
    assert snapshot(example / OUTPUT) == before


def test_cli_json_reports_what_was_written(example: Path, capsys) -> None:
    assert main(["scripts", str(example / "scripts.toml"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["date"] == "01Apr19" and report["total_frames"] == 168
    assert report["total_minutes"] == pytest.approx(310.33, abs=0.01)
    assert [s["test"] for s in report["scripts"]][:2] == ["CHINJ02", "BIAS01"]
    assert report["inventory"] == "TESTS_INVENTORY_01Apr19.txt"


def test_cli_human_summary_includes_the_inventory(example: Path, capsys) -> None:
    assert main(["scripts", str(example / "scripts.toml")]) == 0
    out = capsys.readouterr().out
    assert "Wrote 9 scripts" in out and "168 Frames Total" in out and "FOCUS00_880: 9 [14.39 min]" in out


def test_comments_everywhere_are_fine(tmp_path: Path) -> None:
    path = write(tmp_path, """
        # inputs for the NOSTROMO block
        elvis = "7.5.X"   # elvis version
        chamber = "B_NOSTROMO"  # chamber profile
        # the folder
        output = "out"  # relative to this file
        date = 2019-04-01  # fixed date

        [equipment]  # serials
        sn_roe = "FM15"  # substitute NN with the right serial
        sn_rpsu = "FM15"
        # operator = "raf"
        sn_ccd1 = "14888-88-81"  # CCD1
        sn_ccd2 = "14888-88-82"
        sn_ccd3 = "14888-88-83"

        [write]  # true = write
        # BIAS01 = true
        BIAS02 = true  # reverse readout
        FOCUS00 = true  # four wavelengths
        FOCUS00_880 = false  # the instance's own key wins
    """)
    inputs = load_script_inputs(path)
    assert inputs.tests == ("BIAS02", "FOCUS00_590", "FOCUS00_730", "FOCUS00_800")
    assert inputs.equipment["operator"] == "unk" and inputs.output == tmp_path / "out"


def test_wrong_keys_give_file_line_and_key_all_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, """
        elvis = "7.4.X"
        chamber = "B_NOSTROMO"
        outpath = "out"

        [equipment]
        sn_roe = "FM15"
        sn_rpsu = "FM15"
        sn_ccd1 = "14888-88-81"
        sn_ccd2 = "14888-88-82"
        sn_ccd4 = "14888-88-83"

        [write]
        BIAS1 = true
        BF01 = true
        TP01 = 1
    """)
    with pytest.raises(ConfigError) as caught:
        load_script_inputs(path)
    found = {(p.line, p.key): p.message for p in caught.value.problems}
    assert all(Path(p.path) == path for p in caught.value.problems)
    assert "7.5.X" in found[(1, "elvis")]
    assert "did you mean 'output'" in found[(3, "outpath")]
    assert "missing required key 'output'" in found[(None, "output")]
    assert "did you mean 'sn_ccd3'" in found[(10, "equipment.sn_ccd4")]
    assert "did you mean BIAS01" in found[(13, "write.BIAS1")]
    assert "PTC01" in found[(14, "write.BF01")]  # BF01 analyses PTC01's frames: no script of its own
    assert "true or false" in found[(15, "write.TP01")]
    assert str(caught.value).startswith(f"{path}:1: elvis: ")


def test_template_placeholders_and_unknown_chamber_are_refused(tmp_path: Path) -> None:
    template = (configs_dir() / "scripts_template.toml").read_text()
    path = tmp_path / "scripts.toml"
    path.write_text(template.replace('"B_NOSTROMO"', '"B_NOSTROMOO"'))
    with pytest.raises(ConfigError) as caught:
        load_script_inputs(path)
    keys = {p.key for p in caught.value.problems}
    assert keys == {"chamber", "equipment.sn_roe", "equipment.sn_rpsu", "equipment.sn_ccd1",
                    "equipment.sn_ccd2", "equipment.sn_ccd3"}
    # with real serials the template is valid and writes every selected test
    path.write_text(template.replace('"FMNN"', '"FM15"').replace('"14XXX-XX-XX"', '"14888-88-81"'))
    inputs = load_script_inputs(path)
    assert {"MOT_WARM", "PTC02_730", "PSF01_880", "FOCUS00_800"} <= set(inputs.tests)
    assert not {"TP11", "NL01", "BF01"} & set(inputs.tests)


def test_output_may_not_hold_the_inputs(tmp_path: Path) -> None:
    text = (EXAMPLE / "scripts.toml").read_text().replace('output = "Scripts_NOSTROMO_APR19_W18"', 'output = "."')
    path = write(tmp_path, text)
    with pytest.raises(OutputFolderError, match="would replace"):
        write_scripts(load_script_inputs(path), force=True)
    assert path.read_text() == text


def test_output_may_not_be_a_parent_of_the_inputs(tmp_path: Path) -> None:
    (tmp_path / "campaign").mkdir()
    (tmp_path / "raw.txt").write_text("kept")
    text = (EXAMPLE / "scripts.toml").read_text().replace('output = "Scripts_NOSTROMO_APR19_W18"', 'output = ".."')
    path = write(tmp_path / "campaign", text)
    with pytest.raises(OutputFolderError, match=f"output folder {tmp_path} holds the input {path}, which it would replace"):
        write_scripts(load_script_inputs(path), force=True)
    assert path.read_text() == text and (tmp_path / "raw.txt").read_text() == "kept"
