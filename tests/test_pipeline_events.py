"""The run's typed events (engine/pipeline/events.py): written beside the log, each pointing at the
log record that tells it; the Log screen's index takes tests and errors from them, not from the
log's text."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import engine.sim.elvis as elvis
from engine.campaign.chamber import load_chamber
from engine.campaign.config import campaign_from_dict
from engine.formats.geometry import SMALL
from engine.pipeline.events import events_path, read_events
from engine.pipeline.runner import PipelineRun, RunOptions
from engine.sim.records import Equipment
from engine.tasks import bias as bias_module
from engine.tasks import registry
from golden_run import SERIALS
from vison_tui.log_file import LogIndex, index_lines

EQUIPMENT = Equipment(sn_roe="FM14", sn_rpsu="FM14", sn_ccd1=SERIALS["ccd1"], sn_ccd2=SERIALS["ccd2"],
                      sn_ccd3=SERIALS["ccd3"])


@pytest.fixture(scope="module")
def day(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("events") / "data"
    elvis.simulate(elvis.SimulationRequest(tests=("BIAS01", "DARK01"), out=out, chamber=load_chamber("B_NOSTROMO"),
                                           geometry=SMALL, equipment=EQUIPMENT, jobs=1))
    return out


@pytest.fixture
def broken_run(day, tmp_path, monkeypatch):
    """BIAS01's `basic` fails; a note in the log mentions a "Running Task:" that is no task."""
    def broken(self, ctx):
        raise RuntimeError("injected failure")

    monkeypatch.setattr(bias_module.BiasTask, "basic", broken)
    campaign = campaign_from_dict({
        "campaign": {"block": "NOSTROMO", "chamber": "B_NOSTROMO"}, "hardware": SERIALS,
        "paths": {"data": str(day), "results": str(tmp_path / "results")},
        "sessions": {"D11": {"tests": ["BIAS01", "DARK01"]}},
    }, base_dir=tmp_path, families=registry.campaign_schema())
    heard = []
    run = PipelineRun(campaign, RunOptions(session="D11", notes=("operator: Running Task: NOT_A_TEST was a typo",)),
                      on_event=lambda kind, payload: heard.append((kind, dict(payload))))
    run.run_aim()
    return run, heard


def _line_at(log: bytes, offset: int) -> str:
    end = log.find(b"\n", offset)
    return log[offset:end].decode()


def test_events_point_at_their_log_records(broken_run):
    run, heard = broken_run
    log = run.log_path.read_bytes()
    events = read_events(events_path(run.log_path))
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    started = [e for e in events if e["kind"] == "test_started"]
    assert [e["test"] for e in started] == ["BIAS01", "DARK01"]
    for event in started:
        assert _line_at(log, event["log_offset"]).endswith(f"Running Task: {event['test']}")
    [failed] = [e for e in events if e["kind"] == "subtask_ended" and e["status"] == "failed"]
    assert failed["severity"] == "error" and failed["test"] == "BIAS01" and failed["subtask"] == "basic"
    assert failed["error"] == "RuntimeError: injected failure"
    assert _line_at(log, failed["log_offset"]).endswith("Sub-task basic of BIAS01 failed:")
    finished = {e["test"]: e for e in events if e["kind"] == "test_finished"}
    assert finished["BIAS01"]["severity"] == "error" and finished["DARK01"]["severity"] == "info"
    # listeners still hear (kind, payload) of the same events
    assert [k for k, _ in heard] == kinds
    assert dict(heard[kinds.index("test_started")][1]) == {"test": "BIAS01"}


def test_the_log_index_takes_tests_and_errors_from_the_events(broken_run):
    run, _ = broken_run
    log = run.log_path.read_bytes()
    index = LogIndex(run.log_path)
    index.open()
    index.add_tail(index_lines(0, log))
    text_tasks = [name for _, name in index.task_lines()]
    assert "NOT_A_TEST" in text_tasks  # what matching the text finds: the operator's note too
    index.add_events(read_events(events_path(run.log_path)))
    tasks = index.task_lines()
    assert [name for _, name in tasks] == ["BIAS01", "DARK01"]
    lines = log.decode().splitlines()
    assert lines[tasks[0][0]].endswith("Running Task: BIAS01")
    errors = index.error_lines()
    assert any(lines[i].endswith("Sub-task basic of BIAS01 failed:") for i in errors)
    assert all(i < tasks[1][0] for i in errors if "BIAS01" in lines[i])  # BIAS01's errors inside its block
    index.close()


def test_an_unwritable_events_file_is_said_once_and_the_run_goes_on(day, tmp_path):
    campaign = campaign_from_dict({
        "campaign": {"block": "NOSTROMO", "chamber": "B_NOSTROMO"}, "hardware": SERIALS,
        "paths": {"data": str(day), "results": str(tmp_path / "results")},
        "sessions": {"D11": {"tests": ["DARK01"]}},
    }, base_dir=tmp_path, families=registry.campaign_schema())
    run = PipelineRun(campaign, RunOptions(session="D11"))
    events_path(run.log_path).parent.mkdir(parents=True, exist_ok=True)
    os.mkdir(events_path(run.log_path))  # a folder where the file should be
    run.run_aim()
    assert run.end_state == "finished"
    assert run.event_log.problem and "cannot write" in run.event_log.problem
    assert (tmp_path / "results" / "D11" / "DARK01" / "result.json").is_file()
