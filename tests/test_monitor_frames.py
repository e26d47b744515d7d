"""A valid FITS frame of the wrong shape in the day folder (a truncated readout, a frame of another
geometry): the monitor backs it up as it is (a backup never drops data) and says so, naming the
file, the shape found and the shape expected."""

import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from engine.campaign.chamber import load_chamber
from engine.cli.main import main as cli
from engine.formats.fits import check_fits, write_frame
from engine.formats.geometry import MEDIUM, SMALL
from engine.monitor import FrameShapeMismatch, Monitor, MonitorSettings
from engine.sim.elvis import SimulationRequest, simulate

FAST = MonitorSettings(settle_seconds=0.1, poll_seconds=0.1, polling="events")


def _later() -> float:
    return time.time() + 3600


@pytest.fixture(scope="module")
def sim_day(tmp_path_factory) -> Path:
    return simulate(SimulationRequest(tests=("BIAS01",), out=tmp_path_factory.mktemp("data"),
                                      chamber=load_chamber("B_NOSTROMO"), geometry=SMALL, jobs=1)).day_folder


@pytest.fixture
def day(sim_day, tmp_path) -> Path:
    copy = tmp_path / "data" / sim_day.name
    shutil.copytree(sim_day, copy)
    return copy


def _frame(day: Path, obsid: int, ccd: int) -> Path:
    return next(day.glob(f"EUC_{obsid}_*_CCD{ccd}.fits"))


def _replace(path: Path, shape: tuple[int, int]) -> None:
    write_frame(path, np.full(shape, 1000, np.uint16), overwrite=True)


def _run(day: Path, tmp_path: Path, state: str = "state.json"):
    events = []
    backup = tmp_path / "backup"
    backup.mkdir(exist_ok=True)
    monitor = Monitor(day, FAST, targets=[str(backup)], state_path=tmp_path / state, clock=_later)
    monitor.subscribe(events.append)
    monitor.run_once()
    return [e for e in events if isinstance(e, FrameShapeMismatch)], backup / day.name


def test_check_fits_gives_the_image_shape(day):
    check = check_fits(_frame(day, 1000, 1))
    assert check.complete and check.shape == SMALL.shape


def test_a_truncated_frame_is_named_with_found_and_expected_shape_and_backed_up(day, tmp_path):
    odd = _frame(day, 1004, 2)
    _replace(odd, (50, 60))
    warnings, copies = _run(day, tmp_path)
    assert len(warnings) == 1
    [warning] = warnings
    assert warning.name == odd.name and warning.found == (50, 60) and warning.severity == "warning"
    assert warning.expected == f"{SMALL.shape} as the day's other frames"
    assert f"{odd.name}: image shape (50, 60) (no CCD273 geometry), expected {SMALL.shape}" in warning.message()
    assert (copies / odd.name).read_bytes() == odd.read_bytes()  # backed up all the same


def test_a_frame_of_another_geometry_is_named(day, tmp_path):
    odd = _frame(day, 1007, 3)
    _replace(odd, MEDIUM.shape)
    [warning], copies = _run(day, tmp_path)
    assert warning.name == odd.name and warning.found == MEDIUM.shape
    assert "(medium geometry)" in warning.message() and str(SMALL.shape) in warning.expected
    assert (copies / odd.name).exists()


def test_the_day_shape_is_remembered_across_restarts(day, tmp_path):
    late = _frame(day, 1009, 1)
    moved = tmp_path / late.name
    late.rename(moved)  # not there for the first run
    assert _run(day, tmp_path)[0] == []
    _replace(moved, (50, 60))
    moved.rename(late)
    [warning], _ = _run(day, tmp_path)  # a restarted monitor: only the new frame is read
    assert warning.name == late.name and str(SMALL.shape) in warning.expected


def test_without_a_day_shape_the_known_geometries_are_expected(tmp_path):
    day = tmp_path / "data" / "12_Mar_19"
    day.mkdir(parents=True)
    write_frame(day / "EUC_1000_120319D090134T_ROE1_CCD1.fits", np.zeros((50, 60), np.uint16))
    [warning], copies = _run(day, tmp_path)
    assert warning.found == (50, 60) and "a CCD273 frame: full (4172, 4238)" in warning.expected
    assert (copies / "EUC_1000_120319D090134T_ROE1_CCD1.fits").exists()


def test_cli_once_exits_one_and_names_the_frame(day, tmp_path, capsys):
    odd = _frame(day, 1002, 1)
    _replace(odd, (50, 60))
    backup = tmp_path / "bk"
    backup.mkdir()
    code = cli(["monitor", str(day), "--once", "--backup", str(backup), "--state", str(tmp_path / "s.json"),
                "--settle", "0"])
    out = capsys.readouterr().out
    assert code == 1 and f"WARNING   {odd.name}: image shape (50, 60)" in out and "41 copied" in out
