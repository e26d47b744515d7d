"""Issue 16, item 15 (rest): what a restarted wait run may take as already analysed.

A result stands for the data set only if it has no errors, and its day folder and input files
are those on disk now; anything else is analysed again (the earlier result kept as .previous).
"""

import json
import os
import shutil

import pytest

from acquisition_replay import VirtualClock
from engine.pipeline.results import read_result
from engine.sim.elvis import simulate
from test_pipeline_modes import _campaign, _log_text, _request, _virtual_events, _wait_run, generic_tasks  # noqa: F401


def _again(campaign, **options):
    clock = VirtualClock()
    seen, on_event = _virtual_events(clock)
    run, wait = _wait_run(campaign, on_event, idle_s=1.0, clock=clock, **options)
    wait.execute()
    started = [p["test"] for _, kind, p in seen if kind == "test_started"]
    skipped = [p["test"] for _, kind, p in seen if kind == "test_skipped"]
    return run, started, skipped


@pytest.fixture
def analysed(tmp_path):
    campaign = _campaign(tmp_path)
    simulate(_request(tmp_path))
    _, wait = _wait_run(campaign, None, idle_s=1.0, tag="_first")
    wait.execute()
    return campaign


def test_a_result_with_errors_is_redone_after_a_restart(analysed):
    folder = analysed.paths.results / "D11" / "BIAS01"
    record = read_result(folder)
    record.update(errors=True, error_messages=["meta: OSError: [Errno 28] No space left on device"])
    (folder / "result.json").write_text(json.dumps(record))
    run, started, skipped = _again(analysed, tag="_again")
    assert started == ["BIAS01"] and skipped == ["DARK01"]
    assert read_result(folder)["errors"] is False
    assert "is not reused: it has errors" in _log_text(run)


def test_the_same_obsids_in_another_day_folder_are_analysed_again(analysed, tmp_path):
    other = tmp_path / "data" / "13_Mar_19"
    shutil.copytree(tmp_path / "data" / "12_Mar_19", other)
    run, started, skipped = _again(analysed, tag="_other", day_folder=other)
    assert started == ["BIAS01", "DARK01"] and skipped == []
    assert read_result(analysed.paths.results / "D11" / "BIAS01")["day_folder"] == str(other)
    assert "it was made from the day folder" in _log_text(run)


def test_a_frame_rewritten_since_is_analysed_again(analysed, tmp_path):
    frame = next((tmp_path / "data" / "12_Mar_19").glob("EUC_1003_*_CCD2.fits"))
    info = frame.stat()
    os.utime(frame, ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000_000))
    run, started, skipped = _again(analysed, tag="_rewritten")
    assert started == ["BIAS01"] and skipped == ["DARK01"]
    assert "input files differ" in _log_text(run)


def test_an_unchanged_result_is_still_reused(analysed):
    _, started, skipped = _again(analysed, tag="_same")
    assert started == [] and skipped == ["BIAS01", "DARK01"]
