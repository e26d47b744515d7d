"""The monitor never takes someone else's file as its state, nor its own data as a backup."""

import json
import shutil
import time
from pathlib import Path

import pytest

from engine.campaign.chamber import load_chamber
from engine.cli.main import main as cli
from engine.formats.geometry import SMALL
from engine.monitor import Monitor, MonitorSettings
from engine.monitor.state import StateLocked
from engine.paths import configs_dir
from engine.sim.elvis import SimulationRequest, simulate

NOSTROMO = load_chamber("B_NOSTROMO")
FAST = MonitorSettings(settle_seconds=0.1, poll_seconds=0.1, polling="events")


@pytest.fixture(scope="module")
def day(tmp_path_factory) -> Path:
    """A whole simulated day folder `<data>/12_Mar_19`, settled."""
    out = tmp_path_factory.mktemp("data")
    result = simulate(SimulationRequest(tests=("BIAS01",), out=out, chamber=NOSTROMO, geometry=SMALL, jobs=1))
    time.sleep(0.15)
    return result.day_folder


def _tree(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*"))}


# -- the state file ----------------------------------------------------------------------------

def test_a_campaign_toml_given_as_state_is_left_alone(day, tmp_path, capsys):
    campaign = tmp_path / "campaign.toml"
    shutil.copy(configs_dir() / "examples" / "demo_campaign.toml", campaign)
    text = campaign.read_text()
    code = cli(["monitor", str(day), "--once", "--state", str(campaign)])
    err = capsys.readouterr().err
    assert code == 2
    assert f"state file {campaign} is not a monitor state" in err and "Traceback" not in err
    assert campaign.read_text() == text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["campaign.toml"]  # nothing set aside, no lock


def test_other_json_and_foreign_lock_files_are_refused_too(day, tmp_path):
    other = tmp_path / "results.json"
    other.write_text(json.dumps({"test": "BIAS01", "flags": []}))
    with pytest.raises(StateLocked, match="is not a monitor state"):
        Monitor(day, FAST, state_path=other).run_once()
    assert json.loads(other.read_text()) == {"test": "BIAS01", "flags": []}
    notes = tmp_path / "state.json.lock"
    notes.write_text("my notes")
    with pytest.raises(StateLocked, match="not a monitor's lock file"):
        Monitor(day, FAST, state_path=tmp_path / "state.json").run_once()
    assert notes.read_text() == "my notes"


def test_its_own_state_is_recognised_and_resumed(day, tmp_path):
    state = tmp_path / "state.json"
    Monitor(day, FAST, state_path=state).run_once()
    assert json.loads(state.read_text())["kind"] == "vison monitor state"
    again = Monitor(day, FAST, state_path=state)
    again.run_once()
    assert again.store.resumed
    empty = tmp_path / "empty.json"
    empty.write_text("")  # nothing in it to lose
    Monitor(day, FAST, state_path=empty).run_once()
    assert json.loads(empty.read_text())["day_folder"] == str(day)


# -- backup targets ----------------------------------------------------------------------------

@pytest.mark.parametrize("where, reason", [
    ("data", "is the day folder itself"),
    ("day", "lies inside the day folder"),
    ("inside", "lies inside the day folder"),
])
def test_a_backup_into_its_own_day_folder_is_refused(day, tmp_path, capsys, where, reason):
    spec = {"data": day.parent, "day": day, "inside": day / "copies"}[where]
    made = not spec.exists()
    spec.mkdir(exist_ok=True)
    before = _tree(day.parent)
    try:
        code = cli(["monitor", str(day), "--once", "--backup", str(spec), "--state", str(tmp_path / "s.json")])
        err = capsys.readouterr().err
        assert code == 2
        assert reason in err and "a backup must be outside the data it copies" in err
        assert "copied" not in err and _tree(day.parent) == before
    finally:
        if made:
            spec.rmdir()


def test_a_backup_around_its_day_folder_is_refused(tmp_path):
    # <data>/12_Mar_19/12_Mar_19: a backup of the inner day folder into <data> would hold it
    outer = tmp_path / "12_Mar_19"
    inner = outer / "12_Mar_19"
    inner.mkdir(parents=True)
    with pytest.raises(ValueError, match="holds the day folder"):
        Monitor(inner, FAST, targets=[str(tmp_path)], state_path=tmp_path / "s.json")
    # a symbolic link to the data folder is the data folder
    (tmp_path / "backup_disk").symlink_to(tmp_path)
    with pytest.raises(ValueError, match="is the day folder itself"):
        Monitor(outer, FAST, targets=[str(tmp_path / "backup_disk")], state_path=tmp_path / "s.json")
