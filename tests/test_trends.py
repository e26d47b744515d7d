"""Campaign trends across 3 simulated blocks: `vison-engine trends` writes the table (CSV, xlsx),
compares each quadrant across blocks with the limits, follows a block over two sessions (drift),
and names the one quadrant whose injected read noise is above the RON limits; the app's Trends
screen shows the same outlier.

Error budget: the simulator's RON truths are 1.0-1.4 ADU, inside the bias family's `ron_adu`
limits [0.86, 1.44]; BIAS01's image-area RON on the small geometry is good to 0.4 % (1 sigma,
tests/test_analysis_bias_dark.py), so no honest quadrant lands outside (1.4 ADU + 4 sigma =
1.42). Block OUTLIER's CCD2 F gets 2.0 ADU: 30 % above the upper limit, 75 sigma.
"""

from __future__ import annotations

import asyncio
import csv
from pathlib import Path

import pytest
from openpyxl import load_workbook

import engine.sim.elvis as elvis
from engine.campaign.chamber import load_chamber
from engine.campaign.config import campaign_from_dict
from engine.cli import main as cli
from engine.formats.geometry import SMALL
from engine.pipeline.runner import PipelineRun, RunOptions
from engine.pipeline.trends import gather_trends, limit_of
from engine.sim.records import Equipment
from engine.tasks.registry import campaign_schema

EQUIPMENT = Equipment(sn_roe="FM14", sn_rpsu="FM14", sn_ccd1="14888-88-81", sn_ccd2="14888-88-82",
                      sn_ccd3="14888-88-83")
LOUD = (2, "F", 2.0)  # CCD, quadrant, injected RON (ADU) of block OUTLIER
# (block, session, data) for each analysis: NOSTROMO is analysed twice (sessions D11, D12)
RUNS = (("NOSTROMO", "D11", "seed0"), ("NOSTROMO", "D12", "seed1"), ("SULACO", "D11", "seed1"),
        ("OUTLIER", "D11", "loud"))


def simulate(out: Path, seed: int, loud: bool = False) -> Path:
    draw = elvis.draw_truths

    def louder(*args, **kwargs):
        truths = draw(*args, **kwargs)
        ccd, quadrant, ron = LOUD
        truths.ccds[ccd].quadrants[quadrant].ron_adu = ron
        return truths

    with pytest.MonkeyPatch.context() as patch:
        if loud:
            patch.setattr(elvis, "draw_truths", louder)
        elvis.simulate(elvis.SimulationRequest(tests=("BIAS01",), out=out, chamber=load_chamber("B_NOSTROMO"),
                                               geometry=SMALL, equipment=EQUIPMENT, jobs=1, seed=seed))
    return out


@pytest.fixture(scope="module")
def blocks(tmp_path_factory) -> dict[str, Path]:
    """block -> its results folder, each block a campaign of its own (as on separate machines)."""
    root = tmp_path_factory.mktemp("trends")
    data = {"seed0": simulate(root / "seed0", 0), "seed1": simulate(root / "seed1", 1),
            "loud": simulate(root / "loud", 2, loud=True)}
    folders = {}
    for block, session, source in RUNS:
        results = folders.setdefault(block, root / block / "results")
        results.parent.mkdir(exist_ok=True)
        campaign = campaign_from_dict({
            "campaign": {"block": block, "chamber": "B_NOSTROMO"},
            "paths": {"data": str(data[source]), "results": str(results)},
            # the master bias (meta) is not what is compared here
            "sessions": {session: {"tests": [{"name": "BIAS01", "subtasks": {"meta": False}}]}},
        }, base_dir=root, families=campaign_schema())
        PipelineRun(campaign, RunOptions(session=session, jobs=1)).run_aim()
    return folders


def test_trends_writes_the_table_and_names_the_loud_quadrant(blocks, tmp_path, capsys):
    out = tmp_path / "trends"
    code = cli(["trends", *map(str, blocks.values()), "--test", "BIAS01", "--value", "ron_image_adu",
                "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    ccd, quadrant, ron = LOUD
    outliers = [line.strip() for line in printed.splitlines() if line.startswith("  OUTLIER") or " high " in line]
    assert len(outliers) == 1, printed
    assert outliers[0].startswith(f"OUTLIER CCD{ccd} {quadrant}: ron_image_adu = ")
    assert "high (ron_adu [0.86, 1.44] ADU); BIAS01, session D11" in outliers[0]

    with (out / "trends.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(RUNS) * 12  # every quadrant of every analysis
    assert {r["block"] for r in rows} == set(blocks) and {r["value"] for r in rows} == {"ron_image_adu"}
    loud = [r for r in rows if r["verdict"] == "high"]
    assert [(r["block"], r["ccd"], r["quadrant"]) for r in loud] == [("OUTLIER", str(ccd), quadrant)]
    assert float(loud[0]["number"]) == pytest.approx(ron, rel=0.03)

    book = load_workbook(out / "trends.xlsx")
    assert book.sheetnames == ["values", "compare", "drift", "outliers"]
    compare = [list(r) for r in book["compare"].iter_rows(values_only=True)]
    assert compare[1] == ["ccd", "quadrant", "NOSTROMO", "OUTLIER", "SULACO", "spread"]
    row = next(i for i, r in enumerate(compare) if r[:2] == [ccd, quadrant])
    assert book["compare"].cell(row + 1, 4).fill.start_color.rgb.endswith("FFC7CE")  # OUTLIER's cell in red
    assert compare[row][3] == pytest.approx(ron, rel=0.03)
    # NOSTROMO's newest is its D12 analysis, on the same data as SULACO's: the same numbers
    assert all(r[2] == r[4] for r in compare[2:14])
    drift = list(book["drift"].iter_rows(values_only=True))
    assert len(drift) == 1 + 12 and {r[0] for r in drift[1:]} == {"NOSTROMO"}  # two sessions of one block
    assert all(r[6] == 2 and r[15] == "D11 D12" for r in drift[1:])
    outlier_sheet = list(book["outliers"].iter_rows(values_only=True))
    assert outlier_sheet[1][:4] == ("OUTLIER", ccd, quadrant, "ron_image_adu")
    assert (out / "compare_BIAS01_ron_image_adu.png").stat().st_size > 10_000


def test_nothing_to_gather_is_said_in_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert cli(["trends", str(tmp_path / "empty")]) == 2
    assert capsys.readouterr().err.strip() == f"error: no result.json under {tmp_path / 'empty'}"


def test_values_are_held_to_the_limits_their_family_checks(blocks):
    ranges = {"ron_adu": (0.86, 1.44), "gain_e_per_adu": (3.1, 3.5), "offset_gradient_adu": (-10.0, 10.0)}
    assert limit_of("ron_image_adu", ranges)[0] == "ron_adu"
    assert limit_of("ron_image_e", ranges)[0] == ""  # electrons are not held to an ADU limit
    assert limit_of("std_image_raw_adu", ranges)[0] == "ron_adu"  # the bias family's raw check
    assert limit_of("gain_e_per_adu", ranges)[0] == "gain_e_per_adu"
    assert limit_of("gain_e_per_adu_used", ranges)[0] == ""
    assert limit_of("offset_image_adu", ranges)[0] == ""
    trends = gather_trends(list(blocks.values()), tests=["BIAS01"])
    # the loud quadrant's noise in every region, and nothing else (offsets, electrons: no limit broken)
    assert [(p.block, p.ccd, p.quadrant, p.value) for p in trends.outliers()] == [
        ("OUTLIER", LOUD[0], LOUD[1], name) for name in ("ron_image_adu", "ron_overscan_adu", "ron_prescan_adu",
                                                         "std_image_raw_adu")]


def test_the_trends_screen_shows_the_outlier(blocks, tmp_path, monkeypatch):
    from vison_tui.app import VisonApp
    from vison_tui.screens.trends import TrendsScreen
    from engine.sim.demo import prepare_demo_folder

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VISON_STATE_DIR", str(tmp_path / "state"))
    app = VisonApp(prepare_demo_folder(tmp_path / "demo"), demo=True, simulate=False)
    app.animation_level = "none"

    async def scenario() -> None:
        async with app.run_test(size=(140, 40)) as pilot:
            await pilot.pause()
            await pilot.press("escape", "8")
            await until(pilot, lambda: isinstance(app.screen, TrendsScreen))
            screen = app.screen
            await pilot.press("o")
            await pilot.pause()
            await pilot.press("ctrl+u", *" ".join(str(p) for p in blocks.values()), "enter")
            await until(pilot, lambda: screen.query_one("#outliers").row_count == 4)  # its 4 noise values
            table = screen.query_one("#outliers")
            rows = [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]
            ccd, quadrant, ron = LOUD
            assert rows[0][:4] == ["OUTLIER", str(ccd), quadrant, "ron_image_adu"]
            assert float(rows[0][4]) == pytest.approx(ron, rel=0.03) and rows[0][5] == "ron_adu [0.86, 1.44] ADU"
            assert {tuple(r[:3]) for r in rows} == {("OUTLIER", str(ccd), quadrant)}
            compare = screen.query_one("#compare")
            assert [str(c.label) for c in compare.columns.values()] == ["CCD Q", "NOSTROMO", "OUTLIER", "SULACO",
                                                                        "spread"]
            loud = next(compare.get_row_at(i) for i in range(compare.row_count)
                        if str(compare.get_row_at(i)[0]) == f"{ccd}{quadrant}")
            assert "red" in str(loud[2].style)  # OUTLIER's cell
            assert screen.query_one("#drift").row_count == 12  # NOSTROMO over D11 and D12
            await pilot.press("x")
            await until(pilot, lambda: (blocks["NOSTROMO"] / "trends" / "trends.xlsx").exists())

    asyncio.run(scenario())


async def until(pilot, condition, seconds: float = 30.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError("the app did not get there in time")
