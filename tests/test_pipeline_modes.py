"""Pipeline modes on simulated sessions: aim, check only, dry, the quick form, and wait mode."""

import dataclasses
import time
from pathlib import Path

import pytest

from golden_run import generic_only
from engine.campaign.chamber import load_chamber
from engine.campaign.config import load_campaign
from engine.cli.main import main as cli
from engine.formats.geometry import SMALL
from engine.pipeline.results import read_result
from engine.pipeline.runner import PipelineRun, RunOptions
from engine.pipeline.wait import WaitMode, WaitSettings
from engine.sim.elvis import SimulationRequest, simulate
from engine.sim.records import Equipment
from engine.sim.truths import Truths

from acquisition_replay import ReplayedAcquisition, VirtualClock

NOSTROMO = load_chamber("B_NOSTROMO")
FAST_WAIT = dict(stable_s=0.2, settle_s=1.0, poll_seconds=0.5)

CAMPAIGN = """
[campaign]
block = "TESTBLOCK"
chamber = "B_NOSTROMO"

[hardware]   # what the simulator stamps by default
roe = "ROE-SIM"
rpsu = "RPSU-SIM"
ccd1 = "CCD1-SIM"
ccd2 = "CCD2-SIM"
ccd3 = "CCD3-SIM"

[paths]
data = "data"
results = "results"

[sessions.D11]
day_folder = "12_Mar_19"
tests = ["BIAS01", "DARK01"]
"""


@pytest.fixture(autouse=True)
def generic_tasks(monkeypatch, tmp_path):
    # the generic init/check/report: these tests are about the modes, not the analyses
    generic_only(monkeypatch)
    monkeypatch.setenv("VISON_STATE_DIR", str(tmp_path / "state"))


def _campaign(root: Path):
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "campaign.toml").write_text(CAMPAIGN)
    return load_campaign(root / "campaign.toml")


def _request(root: Path, **changes) -> SimulationRequest:
    values = dict(tests=("BIAS01", "DARK01"), out=root / "data", chamber=NOSTROMO, geometry=SMALL, jobs=1)
    values.update(changes)
    return SimulationRequest(**values)


def _events():
    seen = []

    def on_event(kind, payload):
        seen.append((time.monotonic(), kind, dict(payload)))
    return seen, on_event


def _log_text(run: PipelineRun) -> str:
    return run.log_path.read_text()


# -- aim, check only, dry, quick form ----------------------------------------------------------

@pytest.fixture(scope="module")
def faulty_session(tmp_path_factory):
    """D11 with a frame never written (OBSID 1003, CCD2) and a wrong CCD2 serial in DARK01's data."""
    root = tmp_path_factory.mktemp("aim")
    (root / "data").mkdir()
    (root / "campaign.toml").write_text(CAMPAIGN)
    bias = _request(root, tests=("BIAS01",), missing_frames=frozenset({(1003, 2)}))
    # one day folder per simulation: the second one starts a day later, with its own OBSIDs
    from datetime import datetime
    dark = _request(root, tests=("DARK01",), first_obsid=2000, start=datetime(2019, 3, 13, 9, 0, 0),
                    equipment=Equipment(overrides={"sn_ccd2": "14888-99-99"}))
    simulate(bias)
    (root / "data" / "truths.json").unlink()  # the simulator refuses to overwrite its truths
    simulate(dark)
    return root, bias, dark


def test_aim_mode_flags_missing_frame_and_wrong_serial_with_reasons(faulty_session):
    root, bias, dark = faulty_session
    campaign = load_campaign(root / "campaign.toml")
    seen, on_event = _events()
    run = PipelineRun(campaign, RunOptions(session="D11", day_folder=str(bias.day_folder), tag="_aim"), on_event)
    run.run_aim()
    record = read_result(campaign.paths.results / "D11" / "BIAS01")
    assert record["obsids"] == [1000, 1009] and "MISSDATA" in record["flags"]
    missing = [r for r in record["flag_reasons"] if r["flag"] == "MISSDATA" and r.get("obsid") == 1003]
    assert missing and missing[0]["ccd"] == 2 and "EUC_1003_" in missing[0]["reason"] and "CCD2" in missing[0]["reason"]
    assert [k for _, k, _ in seen].count("test_finished") == 2
    assert run.end_state == "finished"

    run = PipelineRun(campaign, RunOptions(session="D11", day_folder=str(dark.day_folder), tag="_aim2"))
    run.run_aim()
    record = read_result(campaign.paths.results / "D11" / "DARK01")
    serial = [r["reason"] for r in record["flag_reasons"] if "sn_ccd2" in r["reason"]]
    assert "MISSDATA" in record["flags"] and serial
    assert "14888-99-99" in serial[0] and "CCD2-SIM" in serial[0]  # what the data say, what the campaign says
    log = _log_text(run)
    assert "Task DARK01 exited with Errors: False" in log and "OBSIDs range = [2000,2003]" in log


def test_check_only_runs_init_check_and_the_report(faulty_session, tmp_path):
    root, bias, _ = faulty_session
    campaign = load_campaign(root / "campaign.toml")
    results = tmp_path / "results"
    campaign = dataclasses.replace(campaign, paths=dataclasses.replace(campaign.paths, results=results))
    run = PipelineRun(campaign, RunOptions(session="D11", check_only=True, day_folder=str(bias.day_folder)))
    run.run_aim()
    record = read_result(results / "D11" / "BIAS01")
    assert set(record["timings_s"]) == {"init", "check", "report"}
    assert record["subtasks"]["check"] == "done" and record["report"] == "report.md"
    assert record["mode"] == "check/aim"


def test_dry_mode_creates_folders_only(faulty_session, tmp_path):
    root, bias, _ = faulty_session
    code = cli(["run", str(root / "campaign.toml"), "--session", "D11", "--dry", "--day", str(bias.day_folder)])
    assert code == 0
    results = root / "results" / "D11"
    for test in ("BIAS01", "DARK01"):
        assert (results / test / "products").is_dir() and (results / test / "figs").is_dir()
    fresh = tmp_path / "fresh"
    code = cli(["run", "--data", str(bias.day_folder), "--tests", "BIAS01", "--results", str(fresh), "--dry"])
    assert code == 0
    files = sorted(p.relative_to(fresh).as_posix() for p in fresh.rglob("*") if p.is_file())
    assert len(files) == 2 and files[0].startswith("logs/Calib_FM")  # the log, its events, folders: nothing analysed
    assert files[1] == files[0] + ".events.jsonl"
    assert (fresh / "QUICK" / "BIAS01" / "products").is_dir()


def test_quick_form_without_campaign_file(faulty_session, tmp_path, capsys):
    _, bias, _ = faulty_session
    results = tmp_path / "quick"
    code = cli(["run", "--data", str(bias.day_folder), "--tests", "BIAS01", "--obsids", "1000-1009",
                "--results", str(results), "--check"])
    out = capsys.readouterr().out
    assert code == 0  # MISSDATA is a result, not a failure
    assert "BIAS01 started" in out and "MISSDATA" in out
    record = read_result(results / "QUICK" / "BIAS01")
    assert record["obsids"] == [1000, 1009]
    log = next((results / "logs").glob("Calib_*.log")).read_text()
    assert "Quick run without a campaign file; defaults: block UNKNOWN" in log


def test_bad_input_says_what_is_wrong_without_traceback(tmp_path, capsys):
    assert cli(["run", "--data", str(tmp_path / "nowhere"), "--tests", "BIAS01"]) == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and "does not exist" in err and "Traceback" not in err
    assert cli(["run", "--data", str(tmp_path), "--tests", "BIAS77"]) == 2
    assert "unknown test 'BIAS77'" in capsys.readouterr().err
    _campaign(tmp_path)
    assert cli(["run", str(tmp_path / "campaign.toml"), "--session", "D99"]) == 2
    assert "no session 'D99'" in capsys.readouterr().err


# -- wait mode ---------------------------------------------------------------------------------
# On a virtual clock (acquisition_replay): the acquisition is replayed at virtual times and wait
# mode's stability, rescans and idle stop run on the same clock, so these tests say the same on
# an idle and on a loaded machine. One test runs on the real clock, without timing claims.

def _replayed(root: Path, interval_s: float, **replay) -> tuple[ReplayedAcquisition, VirtualClock]:
    tests = replay.pop("tests", ("BIAS01", "DARK01"))
    aborted = replay.pop("aborted", {})
    staged = _request(root / "staging", tests=tests, aborted=aborted)
    acquisition = ReplayedAcquisition(staged, root / "data" / "12_Mar_19", interval_s, **replay)
    return acquisition, VirtualClock(acquisition)


def _wait_run(campaign, on_event, idle_s=3.0, polling="auto", clock=None, **options):
    run = PipelineRun(campaign, RunOptions(session="D11", mode="wait", check_only=True, **options), on_event)
    settings = WaitSettings(idle_stop_s=idle_s, polling=polling, **FAST_WAIT)
    return run, WaitMode(run, settings, clock or VirtualClock())


def _virtual_events(clock: VirtualClock):
    seen = []

    def on_event(kind, payload):
        seen.append((clock.now(), kind, dict(payload)))
    return seen, on_event


def test_wait_mode_analyses_each_test_within_seconds_of_its_last_frame(tmp_path):
    """Each test starts once its last frame has been unchanged for stable_s (0.2 s), and before
    the next rescan after that (poll 0.5 s, settling looks every stable_s / 2): a window of
    [stable_s, stable_s + poll) virtual seconds, exact on a virtual clock."""
    campaign = _campaign(tmp_path)
    acquisition, clock = _replayed(tmp_path, interval_s=0.3)
    seen, on_event = _virtual_events(clock)
    run, wait = _wait_run(campaign, on_event, clock=clock)
    wait.execute()
    started = {p["test"]: t for t, kind, p in seen if kind == "test_started"}
    assert list(started) == ["BIAS01", "DARK01"]
    for test, when in started.items():
        delay = when - acquisition.last_frame[test]
        # 1 us of slack: virtual times are floats near the epoch's 1.7e9 s, exact to ~0.2 us
        assert FAST_WAIT["stable_s"] - 1e-6 <= delay < FAST_WAIT["stable_s"] + FAST_WAIT["poll_seconds"], (test, delay)
    # test by test: BIAS01 was analysed while DARK01 was still being acquired
    assert started["BIAS01"] < acquisition.last_frame["DARK01"]
    assert run.end_state == "finished"
    log = _log_text(run)
    assert log.count("Pipeline sleeping") < 8  # said when the state changes, not at every look
    assert "finished: all 2 tests analysed" in log
    for test in ("BIAS01", "DARK01"):
        assert read_result(campaign.paths.results / "D11" / test)["flags"] == []


def test_wait_mode_never_analyses_half_written_files(tmp_path):
    """The EXP_LOG rows land before the frames, which land in halves 0.5 s apart, longer than the
    stable time (0.2 s): wait mode sees every exposure logged while frames are half-written and
    unchanged for longer than stable_s, so only the FITS structure check keeps it from starting.
    When DARK01 starts, every one of its frames must hold its final bytes and have been unchanged
    for stable_s (the policy's claim; no tolerance: the clock is virtual)."""
    campaign = _campaign(tmp_path)
    acquisition, clock = _replayed(tmp_path, interval_s=0.05, tests=("DARK01",), partial_pause_s=0.5,
                                   rows_first=True)
    at_start = {}

    def on_event(kind, payload):
        if kind == "test_started":
            frames = sorted(acquisition.day_folder.glob("EUC_*.fits"))
            at_start.update(now=clock.now(), frames={f: f.read_bytes() for f in frames})

    run, wait = _wait_run(campaign, on_event, idle_s=5.0, clock=clock)
    wait.execute()
    frames = at_start["frames"]
    assert len(frames) == 4 * 3
    for path, data in frames.items():
        assert data == acquisition.final_bytes(path), path.name
        # mtimes are whole nanoseconds of the wall clock: equal to 1 us
        assert at_start["now"] - acquisition.last_write[path] >= FAST_WAIT["stable_s"] - 1e-6, path.name
    assert "frame(s) to be complete on disk" in _log_text(run)  # half-written frames were seen, and waited for
    record = read_result(campaign.paths.results / "D11" / "DARK01")
    assert record["flags"] == [] and record["obsids"] == [1000, 1003]


def test_wait_mode_takes_the_newest_complete_set_after_an_aborted_attempt(tmp_path):
    campaign = _campaign(tmp_path)
    acquisition, clock = _replayed(tmp_path, interval_s=0.15, aborted={"BIAS01": 3})
    run, wait = _wait_run(campaign, None, clock=clock)
    wait.execute()
    record = read_result(campaign.paths.results / "D11" / "BIAS01")
    assert record["obsids"] == [1003, 1012]  # 3 aborted exposures, then the 10 of the resubmission
    assert any("aborted attempt" in note for note in record["notes"])
    assert read_result(campaign.paths.results / "D11" / "DARK01")["obsids"] == [1013, 1016]


def test_start_obsid_picks_the_resubmitted_test(tmp_path):
    campaign = _campaign(tmp_path)
    simulate(_request(tmp_path, tests=("BIAS01",), aborted={"BIAS01": 4}))
    run, wait = _wait_run(campaign, None, idle_s=1.0, start_obsid=1004)
    wait.execute()
    record = read_result(campaign.paths.results / "D11" / "BIAS01")
    assert record["obsids"] == [1004, 1013] and record["notes"] == []


def test_wait_mode_stops_cleanly_after_the_idle_time(tmp_path):
    """Idle stop 1.5 s after the last news (BIAS01's analysis): the last sleep is cut to end exactly
    then, so the stop comes at 1.5 s virtual, give or take float rounding."""
    campaign = _campaign(tmp_path)
    simulate(_request(tmp_path, tests=("BIAS01",)))  # DARK01 never comes
    clock = VirtualClock()
    seen, on_event = _virtual_events(clock)
    run, wait = _wait_run(campaign, on_event, idle_s=1.5, polling="polling", clock=clock)  # as on an NFS mount
    summaries = wait.execute()
    analysed = next(t for t, kind, p in seen if kind == "test_finished")
    finished_at, finished = next((t, p) for t, kind, p in seen if kind == "run_finished")
    assert finished_at - analysed == pytest.approx(1.5, abs=1e-6)
    assert {s.test: s.state for s in summaries} == {"BIAS01": "done", "DARK01": "skipped"}
    assert finished["state"] == "finished" and "no new data for" in finished["reason"]
    log = _log_text(run)
    assert "polling (asked for)" in log
    assert "No new data for" in log and "DARK01 (nothing logged yet)" in log
    assert "DARK01\nNot executed" in log


def test_restarted_wait_run_does_not_redo_finished_tests(tmp_path):
    campaign = _campaign(tmp_path)
    simulate(_request(tmp_path))
    first, wait = _wait_run(campaign, None, idle_s=1.0, tag="_first")
    wait.execute()
    clock = VirtualClock()
    seen, on_event = _virtual_events(clock)
    again, wait = _wait_run(campaign, on_event, idle_s=1.0, tag="_again", clock=clock)
    wait.execute()
    assert not [p for _, kind, p in seen if kind == "test_started"]
    skipped = [p["test"] for _, kind, p in seen if kind == "test_skipped"]
    assert skipped == ["BIAS01", "DARK01"]
    assert "BIAS01: already analysed for OBSIDs 1000-1009" in _log_text(again)
    assert not list((campaign.paths.results / "D11").glob("*.previous-*"))  # nothing redone, nothing moved


def test_wait_mode_on_the_real_clock_analyses_a_finished_day(tmp_path):
    """The default clock and a real watcher, end to end; no timing asserted (a loaded machine
    only makes it slower)."""
    campaign = _campaign(tmp_path)
    simulate(_request(tmp_path, tests=("BIAS01",)))
    run = PipelineRun(campaign, RunOptions(session="D11", mode="wait", check_only=True))
    WaitMode(run, WaitSettings(idle_stop_s=0.5, **FAST_WAIT)).execute()
    assert read_result(campaign.paths.results / "D11" / "BIAS01")["flags"] == []
    assert run.end_state == "finished"


def test_a_frame_with_a_bad_header_is_named_and_skipped(tmp_path):
    """A logged frame whose header says NAXIS1 = -15 (it once sent the FITS walk backwards for
    ever) never hangs wait mode: it is named while waiting, and the test is analysed without it
    once the settle time has passed (MISSDATA)."""
    campaign = _campaign(tmp_path)
    result = simulate(_request(tmp_path, tests=("DARK01",)))
    bad = next(result.day_folder.glob("EUC_1002_*_CCD2.fits"))
    _set_header_card(bad, "NAXIS1", -15)
    run, wait = _wait_run(campaign, None, idle_s=5.0)
    wait.execute()
    log = _log_text(run)
    assert f"{bad.name} is not a valid frame (bad header in HDU 1: NAXIS1 = -15 outside" in log
    record = read_result(campaign.paths.results / "D11" / "DARK01")
    reasons = [r for r in record["flag_reasons"] if r["flag"] == "MISSDATA"]
    assert reasons and any(r.get("obsid") == 1002 and r.get("ccd") == 2 for r in reasons), reasons


def _set_header_card(path: Path, key: str, value: int) -> None:
    """Overwrite one card of the image extension's header in place (same size)."""
    data = bytearray(path.read_bytes())
    at = data.index(f"{key:<8}= ".encode(), 2880)
    data[at:at + 80] = f"{key:<8}= {value:>20d}".ljust(80).encode()
    path.write_bytes(bytes(data))


def test_offsets_are_checked_against_the_blocks_nominal_when_the_campaign_gives_it(tmp_path):
    simulate(_request(tmp_path, tests=("BIAS01",)))
    truths = Truths.load(tmp_path / "data" / "truths.json")
    true_e = truths.ccds[1].quadrants["E"].offset_adu
    true_f = truths.ccds[1].quadrants["F"].offset_adu
    # CCD1 E's nominal is 100 ADU off the truth, F's is right; the others have none
    (tmp_path / "campaign.toml").write_text(CAMPAIGN + f"\n[offsets]\nCCD1 = {{ E = {true_e + 100:.1f}, F = {true_f:.1f} }}\n")
    campaign = load_campaign(tmp_path / "campaign.toml")
    PipelineRun(campaign, RunOptions(session="D11", check_only=True)).run_aim()
    record = read_result(campaign.paths.results / "D11" / "BIAS01")
    offsets = [r for r in record["flag_reasons"] if r["flag"] == "POORQUALDATA" and "offset" in r["reason"]]
    assert offsets and {(r["ccd"], r["quadrant"]) for r in offsets} == {(1, "E")}
    assert "the block's nominal" in offsets[0]["reason"]
