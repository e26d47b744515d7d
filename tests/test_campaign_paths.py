"""Where a campaign's results may go: a folder of its own, never /, home, or the raw data."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from engine.campaign.config import ConfigError, load_campaign, quick_campaign
from engine.cli.main import main as cli

CAMPAIGN = """
    [campaign]
    block = "NOSTROMO"
    [paths]
    data = "data"
    results = {results}
    [sessions.D11]
    day_folder = "12_Mar_19"
    tests = ["BIAS01"]
"""


@pytest.fixture
def campaign_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "data" / "12_Mar_19").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    return tmp_path


def results_problem(folder: Path, results: str) -> str:
    path = folder / "campaign.toml"
    path.write_text(textwrap.dedent(CAMPAIGN.format(results=f'"{results}"')).lstrip("\n"))
    with pytest.raises(ConfigError) as caught:
        load_campaign(path)
    (problem,) = caught.value.problems
    assert (Path(problem.path), problem.line, problem.key) == (path, 5, "paths.results")
    return problem.message


@pytest.mark.parametrize("results, reason", [
    ("/", "is the filesystem root"),
    ("~", "is your home folder"),
    ("{tmp}", "holds your home folder"),
    ("data", "is the data folder"),
    ("data/results", "lies inside the data folder"),
    ("data/12_Mar_19/results", "lies inside the day folder 12_Mar_19"),
])
def test_results_in_a_dangerous_place_are_refused_with_file_line_and_key(campaign_dir, results, reason):
    message = results_problem(campaign_dir, results.format(tmp=campaign_dir))
    assert reason in message and 'expected a folder of its own, e.g. results = "results"' in message


def test_a_link_into_the_data_is_seen_through(campaign_dir):
    (campaign_dir / "results_link").symlink_to(campaign_dir / "data" / "12_Mar_19")
    assert "lies inside the day folder 12_Mar_19" in results_problem(campaign_dir, "results_link/results")


def test_results_beside_the_data_are_fine(campaign_dir):
    path = campaign_dir / "campaign.toml"
    path.write_text(textwrap.dedent(CAMPAIGN.format(results='"results"')).lstrip("\n"))
    assert load_campaign(path).paths.results == campaign_dir / "results"


def test_the_quick_form_refuses_results_inside_the_day_folder(campaign_dir, capsys, monkeypatch):
    day = campaign_dir / "data" / "12_Mar_19"
    with pytest.raises(ConfigError, match="lies inside the day folder 12_Mar_19"):
        quick_campaign(day, ["BIAS01"], None, day / "results")
    monkeypatch.chdir(day)  # the default --results is ./results
    assert cli(["run", "--data", str(day), "--tests", "BIAS01"]) == 2
    assert "lies inside the day folder 12_Mar_19" in capsys.readouterr().err
    assert sorted(p.name for p in day.iterdir()) == []
