"""Background runs: started detached, listed, followed through state.json, stopped gracefully,
seen as died when killed, restarted without redoing finished tests."""

import os
import shutil
import signal
import time
from pathlib import Path

import pytest

import engine.pipeline.runner as runner
from engine.campaign.chamber import load_chamber
from engine.campaign.config import load_campaign
from engine.cli.main import main as cli
from engine.formats.geometry import SMALL
from engine.pipeline.results import read_result
from engine.pipeline.runner import PipelineRun, RunOptions
from engine.process import ENDED, check_process, descendants, process_command, process_start_ticks
from engine.pipeline.runs import (RunRecord, find_run, list_runs, restart_run, run_status, start_detached,
                                  stop_run, tail_run)
from engine.sim.elvis import SimulationRequest, simulate
from engine.tasks.base import AnalysisTask

NOSTROMO = load_chamber("B_NOSTROMO")
CAMPAIGN = """
[campaign]
block = "TESTBLOCK"
chamber = "B_NOSTROMO"

[paths]
data = "data"
results = "results"

[sessions.D11]
day_folder = "12_Mar_19"
tests = ["BIAS01", "DARK01"]
"""


@pytest.fixture(autouse=True)
def own_run_index(monkeypatch, tmp_path):
    monkeypatch.setenv("VISON_STATE_DIR", str(tmp_path / "state"))  # inherited by background runs
    yield
    # a failed test must not leave its background run waiting for data
    for folder in (tmp_path / "results" / "runs").glob("*"):
        record = RunRecord.load(folder)
        if run_status(record).alive:
            stop_run(record, timeout=5, force=True)


@pytest.fixture(scope="module")
def acquired(tmp_path_factory):
    """A whole D11 acquisition, from which tests copy exposures into a watched day folder."""
    out = tmp_path_factory.mktemp("acquired")
    result = simulate(SimulationRequest(tests=("BIAS01", "DARK01"), out=out, chamber=NOSTROMO, geometry=SMALL, jobs=1))
    return result.day_folder


def _campaign(root: Path) -> Path:
    (root / "data" / "12_Mar_19").mkdir(parents=True)
    (root / "campaign.toml").write_text(CAMPAIGN)
    return root / "campaign.toml"


def _land(source: Path, day: Path, obsids: range) -> None:
    """Exposures arriving as ELVIS writes them: HK and frames, then their EXP_LOG rows."""
    for obsid in obsids:
        for path in sorted(source.glob(f"HK_{obsid}_*")) + sorted(source.glob(f"EUC_{obsid}_*")):
            shutil.copy(path, day / path.name)
    explog = next(source.glob("EXP_LOG_*.txt"))
    lines = explog.read_bytes().splitlines(keepends=True)
    target = day / explog.name
    with open(target, "ab") as handle:
        if not target.stat().st_size:
            handle.write(lines[0])
        handle.writelines(line for line in lines[1:] if int(line.split(b"\t", 1)[0]) in obsids)


def _until(condition, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _test_state(run: RunRecord, test: str) -> str | None:
    run.reload()
    return next((t["state"] for t in run.state.get("tests", []) if t["test"] == test), None)


def test_detached_run_is_listed_progresses_and_stops_gracefully(tmp_path, acquired, capsys):
    config = _campaign(tmp_path)
    day = tmp_path / "data" / "12_Mar_19"
    _land(acquired, day, range(1000, 1010))  # BIAS01; DARK01 never comes
    results = load_campaign(config).paths.results
    run = start_detached([str(config), "--session", "D11", "--wait", "--check", "--idle-stop", "10"], results,
                         tag="_D11")
    assert run.run_id.endswith("_D11") and run.pid
    assert [r.run_id for r in list_runs(results)] == [run.run_id]
    _until(lambda: _test_state(run, "BIAS01") == "done" and run.state["activity"] == "waiting for data",
           what="BIAS01 analysed by the background run, which then waits for DARK01")
    status = run_status(run)
    assert status.state == "running" and status.alive and status.progress["done"] == 1
    assert _test_state(run, "DARK01") == "waiting" and status.activity == "waiting for data"
    assert status.mode == "wait" and status.session == "D11" and Path(status.log).is_file()
    assert status.check_only and status.message and status.current is None

    assert cli(["runs", str(results)]) == 0
    assert run.run_id in capsys.readouterr().out
    assert find_run("last").run_id == run.run_id and find_run(run.run_id[:12]).run_id == run.run_id

    stopped = stop_run(run, timeout=20)
    assert stopped.state == "stopped" and stopped.alive is False and stopped.exit_code == 130
    log = Path(stopped.log).read_text()
    assert "Pipeline stopped (SIGTERM received)." in log and "DARK01\nNot executed" in log
    assert any("Pipeline stopped" in line for line in tail_run(run, lines=3))
    assert "Summary of run" in Path(stopped.output).read_text()
    assert read_result(results / "D11" / "BIAS01")["obsids"] == [1000, 1009]


def test_killed_wait_run_shows_died_and_its_restart_skips_finished_tests(tmp_path, acquired):
    config = _campaign(tmp_path)
    day = tmp_path / "data" / "12_Mar_19"
    _land(acquired, day, range(1000, 1010))
    results = load_campaign(config).paths.results
    first = start_detached([str(config), "--session", "D11", "--wait", "--check", "--idle-stop", "10"], results)
    _until(lambda: _test_state(first, "BIAS01") == "done", what="BIAS01 analysed")
    analysed = read_result(results / "D11" / "BIAS01")

    helpers = {pid: process_start_ticks(pid) for pid in descendants(first.pid)}  # fork server, workers
    assert helpers, "the run's workers"
    os.kill(first.pid, signal.SIGKILL)  # no chance to say goodbye
    _until(lambda: not first.process().running, what="the run to die")
    assert run_status(first).state == "died"
    # workers blocked on the dead run's queue would stay for ever, holding memory: they end
    left = lambda: [(pid, process_command(pid)) for pid, ticks in helpers.items()  # noqa: E731
                    if check_process(pid, ticks).state != ENDED]
    try:
        _until(lambda: not left(), what="the killed run's workers and fork server to end")
    except AssertionError:
        raise AssertionError(f"still running: {left()}") from None

    _land(acquired, day, range(1010, 1014))  # DARK01 arrives while nothing watches
    again = restart_run(first)
    assert again.info["restarted_from"] == first.run_id
    _until(lambda: _test_state(again, "DARK01") == "done", what="DARK01 analysed by the restarted run")
    assert _test_state(again, "BIAS01") == "done"
    assert read_result(results / "D11" / "BIAS01")["started"] == analysed["started"]  # not redone
    assert not list((results / "D11").glob("BIAS01.previous-*"))
    log = Path(run_status(again).log).read_text()
    assert "BIAS01: already analysed for OBSIDs 1000-1009" in log
    assert stop_run(again, timeout=20).state == "stopped"


def test_a_stop_during_an_analysis_abandons_it_cleanly(tmp_path, monkeypatch):
    config = _campaign(tmp_path)
    shutil.rmtree(tmp_path / "data" / "12_Mar_19")
    simulate(SimulationRequest(tests=("BIAS01",), out=tmp_path / "data", chamber=NOSTROMO, geometry=SMALL, jobs=1))
    pipeline = PipelineRun(load_campaign(config), RunOptions(session="D11"))

    class StoppedMidway(AnalysisTask):
        def check(self, ctx):
            (ctx.workdir / "half-done.txt").write_text("partial")
            pipeline.request_stop("SIGTERM received")  # what the signal handler does

    monkeypatch.setattr(runner, "task_for", lambda family: StoppedMidway())
    events = []
    pipeline.on_event = lambda kind, payload: events.append(kind)
    pipeline.run_aim()
    assert pipeline.end_state == "stopped"
    assert "test_abandoned" in events and "test_finished" not in events
    session = pipeline.campaign.paths.results / "D11"
    assert not (session / "BIAS01").exists() and not list(session.glob(".*staging*"))
    assert "Task BIAS01 abandoned" in pipeline.log_path.read_text()


def test_start_background_run_refuses_bad_input_as_the_cli_does(tmp_path):
    from engine.pipeline.launch import RunInputError, start_background_run

    config = _campaign(tmp_path)
    with pytest.raises(RunInputError, match="D99"):
        start_background_run(config, "D99")
    with pytest.raises(RunInputError, match="EXP_LOG|does not exist|day folder"):
        start_background_run(config, "D11")  # aim mode: no data yet
    with pytest.raises(RunInputError, match="cores"):
        start_background_run(config, "D11", jobs=10_000)
    assert list_runs(load_campaign(config).paths.results) == []  # nothing was started
