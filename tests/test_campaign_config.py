"""The campaign config: TOML with positions, validation that reports every problem with its line."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from engine.campaign.config import ConfigError, quick_campaign
from engine.tasks.registry import load_campaign_checked as load_campaign  # what users' files go through
from engine.formats.tomlfile import ConfigProblem, load_toml
from engine.paths import configs_dir
from engine.tasks.registry import family


def write(folder: Path, text: str, name: str = "campaign.toml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def problems_of(path: Path) -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as caught:
        load_campaign(path)
    return caught.value.problems


MINIMAL = """
    [campaign]
    block = "NOSTROMO"
    [paths]
    data = "data"
    results = "results"
    [sessions.D11]
    tests = ["BIAS01"]
"""


@pytest.fixture
def campaign_dir(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    return tmp_path


# -- shipped files ---------------------------------------------------------------------------------
def test_template_parses_and_validates_once_its_paths_exist(tmp_path: Path) -> None:
    config = tmp_path / "campaign_NOSTROMO_APR19.toml"
    shutil.copy(configs_dir() / "campaign_template.toml", config)
    with pytest.raises(ConfigError) as caught:  # nothing created yet: data folder and masks missing
        load_campaign(config)
    assert any(p.key == "paths.data" for p in caught.value.problems)

    (tmp_path / "data").mkdir()
    (tmp_path / "calproducts" / "masks").mkdir(parents=True)
    for ccd in (1, 2, 3):
        (tmp_path / "calproducts" / "masks" / f"EUC_MASK_NOSTROMO_CCD{ccd}_SN_14888-88-8{ccd}.fits").touch()
    campaign = load_campaign(config)

    assert campaign.info.block == "NOSTROMO" and campaign.info.chamber == "B_NOSTROMO"
    assert campaign.hardware.serials()["sn_ccd2"] == "14888-88-82"
    assert campaign.paths.data == tmp_path / "data"
    assert campaign.paths.results == tmp_path / "results"
    assert campaign.calproducts.masks["CCD3"].is_file()
    assert list(campaign.sessions) == ["D11", "D12"]
    d11, d12 = campaign.session("D11"), campaign.session("D12")
    assert [t.name for t in d11.tests] == ["BIAS01", "BIAS02"] and d11.day_folder == "12_Mar_19"
    chinj = d12.test("CHINJ01")
    assert chinj.obsids == (17283, 17292)
    assert chinj.subtasks == {"check": True, "basic": False}
    assert d12.test("FOCUS00_800").subtasks["lock"] is True
    assert campaign.limit("ron_adu") == (0.86, 1.44)
    focus = campaign.limits_for(family("focus").limits, "focus")
    assert focus.fwhm_px == (1.2, 3.0)  # the template's commented default
    assert campaign.watch.polling == "auto" and campaign.watch.idle_stop_minutes == 240
    assert campaign.day_path("D11") == tmp_path / "data" / "12_Mar_19"
    assert campaign.source == config


def test_demo_campaign_is_valid_once_its_folders_exist(tmp_path: Path) -> None:
    config = tmp_path / "demo_campaign.toml"
    shutil.copy(configs_dir() / "examples" / "demo_campaign.toml", config)
    (tmp_path / "data").mkdir()
    campaign = load_campaign(config)
    assert campaign.paths.results == tmp_path / "results"
    assert campaign.sessions["D12"].tests[0].subtasks["report"] is True


# -- all mistakes at once, each with its line and key ----------------------------------------------
def test_every_mistake_is_reported_at_once_with_line_and_key(campaign_dir: Path) -> None:
    path = write(campaign_dir, """
        [campaign]
        block = "NOSTROMO"
        operater = "raf"
        chamber = "B_NOSTROM"

        [hardware]
        roe = "FM14"
        ccd1 = 14888

        [paths]
        data = "data"

        [sessions.D11]
        tests = [
            "BIAS01",
            "BIAS99",
            { name = "CHINJ01", obsids = [17292, 17283] },
            "BIAS01",
        ]

        [[sessions.D12.tests]]
        name = "CHINJ02"
        subtasks = { check = true, chekc = false }

        [sessions.D13]
        day_folder = "12_Mar_19"
    """)
    found = {(p.line, p.key): p.message for p in problems_of(path)}

    assert set(found) == {
        (3, "campaign.operater"),
        (4, "campaign.chamber"),
        (8, "hardware.ccd1"),
        (10, "paths.results"),  # missing: reported at its table's header
        (16, "sessions.D11.tests[1]"),
        (17, "sessions.D11.tests[2].obsids"),
        (18, "sessions.D11.tests[3]"),
        (23, "sessions.D12.tests[0].subtasks.chekc"),
        (25, "sessions.D13"),
    }
    assert "did you mean 'operator'?" in found[(3, "campaign.operater")]
    assert "did you mean 'B_NOSTROMO'?" in found[(4, "campaign.chamber")]
    assert "expected a non-empty string" in found[(8, "hardware.ccd1")] and "14888" in found[(8, "hardware.ccd1")]
    assert "missing required key 'results'" in found[(10, "paths.results")]
    assert "BIAS99" in found[(16, "sessions.D11.tests[1]")]
    assert found[(17, "sessions.D11.tests[2].obsids")] == (
        "OBSID range reversed (17292 > 17283); expected [first, last] with first <= last")
    assert "listed twice" in found[(18, "sessions.D11.tests[3]")] and "line 15" in found[(18, "sessions.D11.tests[3]")]
    subtask_message = found[(23, "sessions.D12.tests[0].subtasks.chekc")]
    assert "did you mean 'check'?" in subtask_message and "injection" not in subtask_message
    assert "no tests" in found[(25, "sessions.D13")]


def test_config_error_lists_one_problem_per_line_in_file_order(campaign_dir: Path) -> None:
    path = write(campaign_dir, """
        [campaign]
        block = 7
        [paths]
        data = "data"
        results = "results"
        [sessions.D11]
        tests = [{ name = "CHINJ01", obsids = [17292, 17283] }]
    """)
    with pytest.raises(ConfigError) as caught:
        load_campaign(path)
    lines = str(caught.value).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{path}:2: campaign.block: expected a non-empty string")
    assert lines[1] == (f"{path}:7: sessions.D11.tests[0].obsids: OBSID range reversed (17292 > 17283); "
                        "expected [first, last] with first <= last")


def test_problem_text_format() -> None:
    problem = ConfigProblem("campaign.toml", 12, ("sessions", "D11", "tests", 2, "obsids"),
                            "OBSID range reversed (17292 > 17283); expected [first, last] with first <= last")
    assert str(problem) == ("campaign.toml:12: sessions.D11.tests[2].obsids: OBSID range reversed "
                            "(17292 > 17283); expected [first, last] with first <= last")
    assert str(ConfigProblem("c.toml", None, "", "cannot read file")) == "c.toml: cannot read file"


def test_obsids_must_be_two_positive_integers(campaign_dir: Path) -> None:
    path = write(campaign_dir, """
        [campaign]
        block = "NOSTROMO"
        [paths]
        data = "data"
        results = "results"
        [sessions.D11]
        tests = [
          { name = "BIAS01", obsids = [17283] },
          { name = "BIAS02", obsids = [0, 12] },
          { name = "DARK01", obsids = [1.5, 3] },
          { name = "CHINJ01", obsids = [true, 3] },
          { name = "CHINJ02", obsids = [17283, 17283] },
        ]
    """)
    problems = problems_of(path)
    assert [p.line for p in problems] == [8, 9, 10, 11]
    assert all("two positive integers [first, last]" in p.message for p in problems)


def test_type_and_value_checks_of_optional_sections(campaign_dir: Path) -> None:
    path = write(campaign_dir, MINIMAL + """
        [limits]
        ron_adu = 1.2
        offset_margin_adu = "50"
        fwhm_px = [3.0, 1.2]
        rons = [0.8, 1.5]
        [watch]
        polling = "inotify"
        idle_stop_minutes = -1
    """)
    found = {p.key: p.message for p in problems_of(path)}
    assert "a range [low, high]" in found["limits.ron_adu"]
    assert "a number" in found["limits.offset_margin_adu"]
    assert "range reversed" in found["limits.fwhm_px"]
    assert "did you mean 'ron_adu'?" in found["limits.rons"]
    assert '"polling"' in found["watch.polling"] and "inotify" in found["watch.polling"]
    assert "0 = wait forever" in found["watch.idle_stop_minutes"]


def test_generic_handle_and_misspelt_section_names(campaign_dir: Path) -> None:
    path = write(campaign_dir, """
        [campaign]
        block = "NOSTROMO"
        [path]
        data = "data"
        [sessions.D00]
        tests = ["FOCUS00"]
    """)
    found = {p.key: (p.line, p.message) for p in problems_of(path)}
    assert found["path"] == (3, found["path"][1])
    assert "did you mean 'paths'?" in found["path"][1]
    assert "missing required key 'paths'" in found["paths"][1]
    assert "FOCUS00_800" in found["sessions.D00.tests[0]"][1]  # the catalogue names the instances


def test_long_form_under_the_singular_name_is_pointed_to_tests(campaign_dir: Path) -> None:
    path = write(campaign_dir, """
        [campaign]
        block = "NOSTROMO"
        [paths]
        data = "data"
        results = "results"
        [[sessions.D12.test]]
        name = "CHINJ01"
    """)
    found = {p.key: (p.line, p.message) for p in problems_of(path)}
    assert found["sessions.D12.test"][0] == 6 and "did you mean 'tests'?" in found["sessions.D12.test"][1]
    assert "no tests" in found["sessions.D12"][1]


def test_missing_calproduct_files_and_day_folder_format(campaign_dir: Path) -> None:
    (campaign_dir / "cdp").mkdir()
    (campaign_dir / "cdp" / "m1.fits").touch()
    path = write(campaign_dir, """
        [campaign]
        block = "NOSTROMO"
        [paths]
        data = "data"
        results = "results"
        calproducts = "cdp"
        [calproducts]
        masks = { CCD1 = "m1.fits", CCD2 = "m2.fits", CCD4 = "m4.fits" }
        [sessions.D11]
        day_folder = "2019-03-12"
        tests = ["BIAS01"]
    """)
    found = {p.key: p.message for p in problems_of(path)}
    assert set(found) == {"sessions.D11.day_folder", "calproducts.masks.CCD2", "calproducts.masks.CCD4"}
    assert "DD_Mmm_YY" in found["sessions.D11.day_folder"]
    assert str(campaign_dir / "cdp" / "m2.fits") in found["calproducts.masks.CCD2"]
    assert "CCD1, CCD2, CCD3" in found["calproducts.masks.CCD4"]


def test_results_parent_must_exist(campaign_dir: Path) -> None:
    path = write(campaign_dir, MINIMAL.replace('results = "results"', 'results = "nowhere/results"'))
    (problem,) = problems_of(path)
    assert problem.key == "paths.results" and problem.line == 5 and "parent" in problem.message


# -- TOML itself ------------------------------------------------------------------------------------
def test_syntax_error_names_file_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, """
        [campaign]
        block = "NOSTROMO"
        [sessions.D11]
        tests = ["BIAS01" "BIAS02"]
    """)
    with pytest.raises(ConfigError) as caught:
        load_campaign(path)
    (problem,) = caught.value.problems
    assert (problem.line, problem.column) == (4, 19)
    assert str(problem).startswith(f"{path}:4:19: TOML syntax error: ")


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read file"):
        load_campaign(tmp_path / "absent.toml")
    (tmp_path / "latin1.toml").write_bytes(b'# ok\nblock = "caf\xe9"\n')
    with pytest.raises(ConfigError, match=r"latin1.toml:2: file is not UTF-8"):
        load_toml(tmp_path / "latin1.toml")


def test_comments_everywhere_are_fine(campaign_dir: Path) -> None:
    path = write(campaign_dir, """
        # header comment
        [campaign] # after a header
        block = "NOSTROMO" # after a value
        # chamber = "B_NOSTROMO"   commented-out key
        operator = "raf # not a comment"

        [paths]
        data = "data"        # data root
        results = "results"  # results root

        [sessions.D11]
        tests = [            # a comment after the bracket
            "BIAS01",        # first
            # "BIAS02",      a commented-out element
            "DARK01",
        ]                    # closing

        [[sessions.D12.tests]]   # long form
        # a comment line inside the table
        name = "CHINJ01"         # name
        obsids = [ 17283,        # first
                   17292 ]       # last
    """)
    campaign = load_campaign(path)
    assert campaign.info.operator == "raf # not a comment"
    assert [t.name for t in campaign.sessions["D11"].tests] == ["BIAS01", "DARK01"]
    assert campaign.sessions["D12"].tests[0].obsids == (17283, 17292)


def test_relative_paths_resolve_against_the_files_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    analysis = tmp_path / "ANALYSIS"
    analysis.mkdir()
    (tmp_path / "atCALDATA" / "data").mkdir(parents=True)
    path = write(analysis, MINIMAL.replace('"data"', '"../atCALDATA/data"'))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    campaign = load_campaign(Path("..") / "ANALYSIS" / path.name)
    assert campaign.paths.data == tmp_path / "atCALDATA" / "data"
    assert campaign.paths.results == analysis / "results"
    assert campaign.paths.config_dir == analysis


# -- positions ---------------------------------------------------------------------------------------
def test_line_of_tables_arrays_of_tables_and_array_elements(tmp_path: Path) -> None:
    path = write(tmp_path, '''
        title = "x"
        [sessions.D11]
        tests = ["BIAS01", "BIAS02",
                 "DARK01"]
        [[sessions.D12.tests]]
        name = "CHINJ01"
        subtasks = { check = true, basic = false }
        [[sessions.D12.tests]]
        name = "TP01"
        [sessions.D12.tests.extra]
        note = """two
        lines"""
        "quoted.key" = 1
        a.b = [[1, 2], [3,
                        4]]
        [[sessions.D12.tests]]
        obsids = [17283, 17292]
    ''')
    doc = load_toml(path)
    assert doc.data["sessions"]["D12"]["tests"][1]["extra"]["a"]["b"] == [[1, 2], [3, 4]]
    expected = {
        ("title",): 1,
        ("sessions",): 2,
        ("sessions", "D11"): 2,
        ("sessions", "D11", "tests"): 3,
        ("sessions", "D11", "tests", 0): 3,
        ("sessions", "D11", "tests", 1): 3,
        ("sessions", "D11", "tests", 2): 4,
        ("sessions", "D12", "tests"): 5,
        ("sessions", "D12", "tests", 0): 5,
        ("sessions", "D12", "tests", 0, "name"): 6,
        ("sessions", "D12", "tests", 0, "subtasks", "basic"): 7,
        ("sessions", "D12", "tests", 1): 8,
        ("sessions", "D12", "tests", 1, "extra"): 10,
        ("sessions", "D12", "tests", 1, "extra", "note"): 11,
        ("sessions", "D12", "tests", 1, "extra", "quoted.key"): 13,
        ("sessions", "D12", "tests", 1, "extra", "a", "b"): 14,
        ("sessions", "D12", "tests", 1, "extra", "a", "b", 1, 1): 15,
        ("sessions", "D12", "tests", 2, "obsids", 1): 17,
    }
    assert {key: doc.line_of(key) for key in expected} == expected
    assert doc.line_of(("sessions", "D12", "tests", 3)) is None
    assert doc.nearest_line(("sessions", "D12", "tests", 0, "obsids")) == 5


# -- the command line's quick form -------------------------------------------------------------------
def test_quick_campaign_takes_a_day_folder_and_applies_the_obsid_range(tmp_path: Path) -> None:
    day = tmp_path / "data" / "12_Mar_19"
    day.mkdir(parents=True)
    campaign = quick_campaign(day, ["BIAS01", "bias02"], (17273, 17292), tmp_path / "results")
    (session,) = campaign.sessions.values()
    assert campaign.paths.data == tmp_path / "data" and session.day_folder == "12_Mar_19"
    assert [(t.name, t.obsids) for t in session.tests] == [("BIAS01", (17273, 17292)), ("BIAS02", (17273, 17292))]
    assert campaign.source is None and campaign.info.chamber is None


def test_quick_campaign_problems_name_the_command_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        quick_campaign(tmp_path / "nodata", ["BIAS01", "NOPE01"], (5, 1), tmp_path / "results")
    text = str(caught.value)
    assert all(line.startswith("<command line>: ") for line in text.splitlines())
    assert "NOPE01" in text and "OBSID range reversed (5 > 1)" in text and "nodata" in text


def _key_paths(value, prefix=()):
    if isinstance(value, dict):
        for key, item in value.items():
            yield prefix + (key,)
            yield from _key_paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield prefix + (index,)
            yield from _key_paths(item, prefix + (index,))


@pytest.mark.parametrize("name", ["campaign_template.toml", "examples/demo_campaign.toml",
                                  "chambers/B_NOSTROMO.toml"])
def test_every_key_and_element_of_shipped_files_has_a_line(name: str) -> None:
    doc = load_toml(configs_dir() / name)
    missing = [path for path in _key_paths(doc.data) if doc.line_of(path) is None]
    assert missing == []
    lines = (configs_dir() / name).read_text().splitlines()
    for path in _key_paths(doc.data):  # the line named really holds the key (or opens its table)
        key = next((p for p in reversed(path) if isinstance(p, str)), None)
        if path[-1] == key:
            assert key in lines[doc.line_of(path) - 1], (path, doc.line_of(path))


def test_block_offsets_and_gains_per_quadrant(campaign_dir: Path) -> None:
    path = write(campaign_dir, MINIMAL + """
    [offsets]
    CCD1 = { E = 2713, F = 2671, G = 2831, H = 2571 }
    [calproducts.gains]
    CCD2 = { E = 3.3, F = 3.4 }
    """)
    campaign = load_campaign(path)
    assert campaign.nominal_offset(1, "G") == 2831.0
    assert campaign.nominal_offset(2, "E") is None  # no table entry, no [limits] override
    assert campaign.calproducts.gains == {"CCD2": {"E": 3.3, "F": 3.4}}
    bad = write(campaign_dir, MINIMAL + """
    [offsets]
    CCD1 = { E = "high", X = 2 }
    CCD4 = { E = 1 }
    """, name="bad.toml")
    found = {(p.key, p.line) for p in problems_of(bad)}
    assert ("offsets.CCD1.E", 10) in found and ("offsets.CCD1.X", 10) in found and ("offsets.CCD4", 11) in found
