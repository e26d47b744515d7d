"""The catalogue yields the structures of tests.md, resolves names, and drives the timing model."""

import pytest

from engine.campaign.catalogue import CATALOGUE, HANDLES, UnknownTestError, resolve, resolve_test
from engine.campaign.chamber import ChamberError, load_chamber
from engine.campaign.script_params import SCRIPT_ROWS
from engine.campaign.timing import duration_minutes

NOSTROMO = load_chamber("B_NOSTROMO")

EXPECTED_STRUCTURES = {
    # name: (columns, frames per column or total frames)
    "MOT_WARM": (8, [1] * 8),
    "COSMETICS00": (2, [5, 5]),
    "BIAS01": (1, [10]),
    "BIAS02": (1, [10]),
    "DARK01": (1, [4]),
    "CHINJ01": (36, [1] * 36),
    "CHINJ02": (26, [1] * 26),
    "TP01": (50, [1] * 50),
    "TP11": (50, [1] * 50),
    "TP02": (18, [1] * 18),
    "TP21": (18, [1] * 18),
    "FLATFLUX00_800": (4, [1] * 4),
    "FLAT01": (3, [80, 60, 30]),
    "FLAT02_590": (2, [80, 30]),
    "PTC01": (11, [10] * 8 + [4] * 3),
    "PTC02_730": (6, [4] * 6),
    "PTC02_148K": (6, [4] * 6),
    "PTC02_160R": (6, [4] * 6),
    "NL01": (36, 89),
    "NL02": (44, 109),
    "NL02_155R": (36, 89),
    "PSFLUX00_880": (4, [1] * 4),
    "PSF01_800": (5, [20, 15, 10, 4, 4]),
    "PSF02_148K": (5, [20, 14, 10, 4, 4]),
    "FOCUS00_590": (9, [1] * 9),
    "FOCUS00_800": (9, [1] * 9),
    "PERSIST01": (4, [5, 3, 1, 3]),
}


@pytest.mark.parametrize("name", sorted(EXPECTED_STRUCTURES))
def test_structure_matches_tests_md(name):
    columns, frames = EXPECTED_STRUCTURES[name]
    test = resolve_test(name)
    assert len(test.columns(NOSTROMO)) == columns
    if isinstance(frames, list):
        assert test.frames_per_column(NOSTROMO) == frames
    else:
        assert test.total_frames(NOSTROMO) == frames


def test_every_test_of_tests_md_is_in_the_catalogue():
    handles = {"MOT_WARM", "COSMETICS00", "BIAS01", "BIAS02", "DARK01", "CHINJ01", "CHINJ02", "TP01", "TP02",
               "TP11", "TP21", "FLATFLUX00", "FLAT01", "FLAT02", "PTC01", "PTC02WAVE", "PTC02TEMP", "PTC02RD",
               "NL01", "NL02", "NL02RD", "BF01", "BF01WAVE", "PSFLUX00", "PSF01", "PSF02", "FOCUS00", "PERSIST01"}
    assert handles <= set(HANDLES)


def test_every_column_is_a_complete_script_column():
    for test in CATALOGUE.values():
        for column in test.script_columns(NOSTROMO, {"sn_ccd1": "14888-88-81"}):
            assert set(column) == set(SCRIPT_ROWS)
            assert column["test"] == test.name and column["sn_ccd1"] == "14888-88-81"


def test_names_and_handles_resolve():
    assert [t.name for t in resolve("FOCUS00")] == ["FOCUS00_590", "FOCUS00_730", "FOCUS00_800", "FOCUS00_880"]
    assert [t.name for t in resolve("PTC02WAVE")] == ["PTC02_590", "PTC02_730", "PTC02_880"]
    assert resolve_test("focus00_800").handle == "FOCUS00"
    assert resolve_test("BIAS01").name == "BIAS01"
    with pytest.raises(UnknownTestError, match="generic handle"):
        resolve_test("FOCUS00")
    with pytest.raises(UnknownTestError, match="did you mean BIAS01"):
        resolve_test("BIAS1")


def test_test_values_follow_the_chamber_and_the_structure():
    focus = resolve_test("FOCUS00_800").script_columns(NOSTROMO)
    assert [c["mirr_pos"] for c in focus] == pytest.approx([47.2 + 0.2 * j for j in range(-4, 5)])
    assert all(c["exptime"] == pytest.approx(0.6 * 2.2) and c["wave"] == 4 for c in focus)
    chinj = resolve_test("CHINJ01").script_columns(NOSTROMO)
    assert [c["IG1_1_T"] for c in chinj[:18]] == pytest.approx([2.5 + 0.25 * i for i in range(18)])
    assert {c["id_dly"] for c in chinj[:18]} == {1250} and {c["id_dly"] for c in chinj[18:]} == {750}
    bias02 = resolve_test("BIAS02").script_columns(NOSTROMO)[0]
    assert (bias02["rdmode"], bias02["swellw"], bias02["swelldly"]) == ("rwd_bas_v", 8.4, 5.625)
    ptc_rd = resolve_test("PTC02_155R").script_columns(NOSTROMO)[0]
    assert ptc_rd["RD_T"] == ptc_rd["RD_B"] == 15.5
    assert resolve_test("BF01").surrogate == "PTC01" and not resolve_test("BF01").acquires


@pytest.mark.parametrize(
    "name, minutes",
    [("BIAS01", 15.58), ("CHINJ01", 58.58), ("CHINJ02", 42.31), ("TP01", 120.31),
     ("FOCUS00_590", 15.11), ("FOCUS00_730", 14.25), ("FOCUS00_800", 14.22), ("FOCUS00_880", 14.39),
     ("DARK01", 43.9), ("PTC01", 146.2), ("PERSIST01", 85.2), ("TP02", 13.6)],
)
def test_durations_reproduce_the_cookbook_inventory(name, minutes):
    # the cookbook gives two decimals; the derived totals one
    tolerance = 0.005 if round(minutes, 1) != minutes else 0.05
    assert duration_minutes(resolve_test(name), NOSTROMO) == pytest.approx(minutes, abs=tolerance)


def test_unknown_chamber_says_what_exists():
    with pytest.raises(ChamberError, match="B_NOSTROMO"):
        load_chamber("NO_SUCH_CHAMBER")
