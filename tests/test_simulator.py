"""The ELVIS simulator writes day folders as ELVIS would, carrying the truths it records."""

import hashlib
import threading
import time

import numpy as np
import pytest

from engine.campaign.chamber import load_chamber
from engine.campaign.progress import acquisition_progress
from engine.cli.main import main as cli
from engine.formats import read_explog, read_frame, read_hk
from engine.formats.explog import ExpLogFollower
from engine.formats.geometry import SMALL
from engine.formats.hklimits import load_hk_limits
from engine.sim.elvis import SimulationError, SimulationRequest, StreamPacing, simulate
from engine.sim.housekeeping import HKExcursion
from engine.sim.records import Equipment
from engine.sim.truths import Truths

NOSTROMO = load_chamber("B_NOSTROMO")


def _request(out, **changes):
    values = dict(tests=("BIAS01",), out=out, chamber=NOSTROMO, geometry=SMALL, jobs=1)
    values.update(changes)
    return SimulationRequest(**values)


@pytest.fixture(scope="module")
def bias_day(tmp_path_factory):
    return simulate(_request(tmp_path_factory.mktemp("sim"), tests=("BIAS01", "DARK01")))


def test_day_folder_holds_what_elvis_writes(bias_day):
    day = bias_day.day_folder
    assert day.name == "12_Mar_19"
    assert (day.parent / "truths.json").is_file()
    assert len(list(day.glob("EUC_*_ROE1_CCD?.fits"))) == 3 * 14
    assert len(list(day.glob("HK_*_ROE1.txt"))) == 14
    log = read_explog(bias_day.explog_path)
    assert log.pending is None and log.version == "7.5.X"
    assert log.obsids() == list(range(1000, 1014))
    assert log.frames_per_test() == {"BIAS01": 10, "DARK01": 4}
    for row in log.rows:  # every logged frame exists under its File_name
        assert (day / f"{row['File_name']}.fits").is_file()
    assert [p.describe() for p in acquisition_progress(log.rows, NOSTROMO, day)] == [
        "BIAS01 10/10 frames (complete)", "DARK01 4/4 frames (complete)"]


def test_frames_carry_the_injected_offset_and_ron(bias_day):
    truths = Truths.load(bias_day.truths_path)
    log = read_explog(bias_day.explog_path)
    for ccd in (1, 2, 3):
        names = [r["File_name"] for r in log.rows_for_test("BIAS01") if r["CCD"] == f"CCD{ccd}"]
        for quadrant, truth in truths.ccds[ccd].quadrants.items():
            pixels = []
            for name in names:
                with read_frame(bias_day.day_folder / f"{name}.fits") as frame:
                    pixels.append(frame.region(quadrant, "prescan").astype(float))
            stack = np.stack(pixels)
            assert stack.mean() == pytest.approx(truth.offset_adu, abs=0.3), (ccd, quadrant)
            # RON from frame-to-frame differences: immune to fixed pattern
            ron = np.std(np.diff(stack, axis=0)) / np.sqrt(2)
            assert ron == pytest.approx(truth.ron_adu, rel=0.05), (ccd, quadrant)


def test_headers_and_log_agree(bias_day):
    log = read_explog(bias_day.explog_path)
    row = log.rows_for_test("DARK01")[0]
    with read_frame(bias_day.day_folder / f"{row['File_name']}.fits") as frame:
        assert frame.header["OBSID"] == row["ObsID"] and frame.header["OBJECT"] == "DARK01"
        assert frame.header["EXPTIME"] == row["exptime"] == 565.0
        assert frame.header["EXTNAME"] == row["CCD"].replace("CCD", "ROE1_CCD")


def test_hk_files_are_in_limits_unless_an_excursion_is_asked(tmp_path):
    result = simulate(_request(tmp_path, hk_excursions=(HKExcursion.parse("CCD1_TEMP_T=-246@1004"),)))
    limits = load_hk_limits()
    log = read_explog(result.explog_path)
    flagged = {}
    for path in sorted(result.day_folder.glob("HK_*.txt")):
        obsid = int(path.name.split("_")[1])
        commanded = next(r for r in log.rows if r["ObsID"] == obsid)
        hk = read_hk(path)
        assert hk.problems == [] and len(hk.times) == 71
        bad = [v for v in limits.check_file(hk, commanded) if v.status != "ok"]
        if bad:
            flagged[obsid] = bad
    assert list(flagged) == [1004]
    assert [(v.key, v.status) for v in flagged[1004]] == [("CCD1_TEMP_T", "critical")]
    assert "disconnected" in flagged[1004][0].reason


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    def digest(out, seed):
        result = simulate(_request(out, seed=seed, tests=("BIAS01",)))
        files = sorted(p for p in result.day_folder.parent.rglob("*") if p.is_file())
        return {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}

    first, again, other = digest(tmp_path / "a", 7), digest(tmp_path / "b", 7), digest(tmp_path / "c", 8)
    assert first == again
    fits_names = [n for n in first if n.endswith(".fits")]
    assert all(first[n] != other[n] for n in fits_names)


def test_faults_on_request(tmp_path):
    equipment = Equipment(sn_ccd2="14888-88-82", overrides={"sn_ccd2": "99999-99-99"})
    result = simulate(_request(tmp_path, tests=("DARK01",), equipment=equipment,
                               exptime_factors={"DARK01": 0.5}, missing_frames=frozenset({(1001, 3)})))
    log = read_explog(result.explog_path)
    assert {r["sn_ccd2"] for r in log.rows} == {"99999-99-99"}
    assert {r["exptime"] for r in log.rows} == {282.5}
    missing = next(r for r in log.rows if r["ObsID"] == 1001 and r["CCD"] == "CCD3")
    assert not (result.day_folder / f"{missing['File_name']}.fits").exists()
    progress = acquisition_progress(log.rows, NOSTROMO, result.day_folder)[0]
    assert (progress.logged, progress.on_disk, progress.state) == (4, 3, "files missing or still being written")


def test_aborted_test_is_resubmitted_in_full(tmp_path):
    result = simulate(_request(tmp_path, aborted={"BIAS01": 4}))
    log = read_explog(result.explog_path)
    assert log.obsids() == list(range(1000, 1014))  # 4 aborted + 10 complete
    progress = acquisition_progress(log.rows, NOSTROMO)[0]
    assert progress.state == "extra frames (an aborted attempt?)"


def test_refuses_to_write_over_existing_data(tmp_path):
    simulate(_request(tmp_path))
    with pytest.raises(SimulationError, match="already holds data"):
        simulate(_request(tmp_path))


def test_stream_lands_exposures_over_time_with_half_written_files(tmp_path):
    request = _request(tmp_path, tests=("DARK01",))
    explog_path = request.day_folder / "EXP_LOG_120319.txt"
    seen_rows = []

    def watch():
        deadline = time.monotonic() + 20
        while not explog_path.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        follower = ExpLogFollower(explog_path)
        while len(seen_rows) < 12 and time.monotonic() < deadline:
            seen_rows.extend((time.monotonic(), row["ObsID"]) for row in follower.read_new())
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    result = simulate(request, StreamPacing(frame_interval_s=0.2, partial_pause_s=0.1))
    watcher.join()
    assert [obsid for _, obsid in seen_rows] == [1000] * 3 + [1001] * 3 + [1002] * 3 + [1003] * 3
    times = [t for t, _ in seen_rows[::3]]
    assert all(later - earlier > 0.15 for earlier, later in zip(times, times[1:]))  # spread over time
    assert read_explog(result.explog_path).frames_per_test() == {"DARK01": 4}


def test_cli_simulate_small_with_json(tmp_path, capsys):
    assert cli(["simulate", "--tests", "BIAS02", "--out", str(tmp_path), "--small", "--json", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert '"tests": [\n    "BIAS02"\n  ]' in out and '"geometry": "small"' in out
    assert cli(["simulate", "--tests", "NOPE", "--out", str(tmp_path)]) == 2
    assert "unknown test 'NOPE'" in capsys.readouterr().err
