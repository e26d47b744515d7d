"""Runs sharing a results root never lose a result or share a log; a run's tag never leaves the root."""

import multiprocessing
import threading
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from engine.campaign.chamber import load_chamber
from engine.campaign.config import load_campaign
from engine.cli.main import main as cli
from engine.formats.geometry import SMALL
from engine.pipeline.launch import RunInputError, start_background_run
from engine.pipeline.results import publish, read_result
from engine.pipeline.runner import PipelineRun, RunError, RunOptions
from engine.pipeline.runs import new_run_id
from engine.sim.elvis import SimulationRequest, simulate

NOSTROMO = load_chamber("B_NOSTROMO")
SAME_SECOND = datetime(2019, 3, 12, 9, 0, 0)
CAMPAIGN = """
[campaign]
block = "TESTBLOCK"
chamber = "B_NOSTROMO"

[paths]
data = "data"
results = "results"

[sessions.D11]
day_folder = "12_Mar_19"
tests = ["BIAS01"]
"""


@pytest.fixture(autouse=True)
def own_run_index(monkeypatch, tmp_path):
    monkeypatch.setenv("VISON_STATE_DIR", str(tmp_path / "state"))


def _campaign(root: Path) -> Path:
    (root / "data" / "12_Mar_19").mkdir(parents=True)
    (root / "campaign.toml").write_text(CAMPAIGN)
    return root / "campaign.toml"


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


# -- tags are names ----------------------------------------------------------------------------

def test_a_tag_that_is_a_path_is_refused_in_one_line_before_anything_is_written(tmp_path, capsys):
    simulate(SimulationRequest(tests=("BIAS01",), out=tmp_path / "data", chamber=NOSTROMO, geometry=SMALL, jobs=1))
    (tmp_path / "work").mkdir()
    before = _files(tmp_path)
    code = cli(["run", "--data", str(tmp_path / "data" / "12_Mar_19"), "--tests", "BIAS01",
                "--results", str(tmp_path / "work" / "results"), "-t", "/../../x"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines() == [err.strip()] and "Traceback" not in err
    assert "tag '/../../x'" in err and "not a path" in err
    assert _files(tmp_path) == before  # no log, no results root, nothing outside it either


def test_the_app_and_the_runner_refuse_such_tags_too(tmp_path):
    config = _campaign(tmp_path)
    with pytest.raises(RunInputError, match="not a path"):
        start_background_run(config, "D11", wait=True, tag="/../x")
    with pytest.raises(RunError, match="not a path"):
        PipelineRun(load_campaign(config), RunOptions(session="D11", tag="_D11/.."))
    assert not (tmp_path / "results").exists()


# -- run ids, logs -----------------------------------------------------------------------------

def test_runs_started_in_the_same_second_get_ids_of_their_own(tmp_path):
    results = tmp_path / "results"
    ids: list[str] = []
    start = threading.Barrier(8)

    def start_run() -> None:
        start.wait()
        ids.append(new_run_id(results, "_D11", SAME_SECOND))

    threads = [threading.Thread(target=start_run) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(ids)) == 8
    assert "FM20190312_090000_D11" in ids and "FM20190312_090000_D11-8" in ids
    assert sorted(p.name for p in (results / "logs").iterdir()) == sorted(f"Calib_{i}.log" for i in ids)


def test_two_runs_of_the_same_second_write_their_own_logs_under_their_own_ids(tmp_path):
    campaign = load_campaign(_campaign(tmp_path))
    first = PipelineRun(campaign, RunOptions(session="D11", tag="_D11"), started=SAME_SECOND)
    second = PipelineRun(campaign, RunOptions(session="D11", tag="_D11"), started=SAME_SECOND)
    assert first.run_id != second.run_id and first.log_path != second.log_path
    for run in (first, second):
        run.open()
        run.close()
    for run, other in ((first, second), (second, first)):
        log = run.log_path.read_text()
        assert f"Pipeline ID: {run.run_id}\n" in log and f"Pipeline ID: {other.run_id}\n" not in log
        assert log.count("Starting FM Calib. Pipeline") == 1


def test_a_cli_run_refused_for_its_inputs_leaves_no_log_behind(tmp_path, capsys):
    config = _campaign(tmp_path)  # the day folder is empty: no EXP_LOG
    assert cli(["run", str(config), "--session", "D11"]) == 2
    assert "EXP_LOG" in capsys.readouterr().err
    assert list((tmp_path / "results" / "logs").glob("*.log")) == []


# -- publishing --------------------------------------------------------------------------------

def _staging(session: Path, name: str) -> SimpleNamespace:
    workdir = session / f".BIAS01.staging-{name}"
    workdir.mkdir(parents=True)
    (workdir / "analysed_by.txt").write_text(name)
    return SimpleNamespace(workdir=workdir)


def _kept(session: Path) -> dict[str, str]:
    """Published folder name -> which run's analysis it holds."""
    return {p.name: (p / "analysed_by.txt").read_text() for p in session.iterdir()
            if not p.name.startswith(".") and read_result(p) is not None}


def test_results_published_at_once_are_all_kept(tmp_path):
    session = tmp_path / "results" / "D11"
    runs = [f"run{n}" for n in range(6)]
    stagings = [_staging(session, name) for name in runs]
    start = threading.Barrier(len(runs))
    failures: list[BaseException] = []

    def publish_one(ctx: SimpleNamespace) -> None:
        start.wait()
        try:
            publish(ctx, {"test": "BIAS01"}, session / "BIAS01", clock=lambda: SAME_SECOND)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=publish_one, args=(ctx,)) for ctx in stagings]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    kept = _kept(session)
    assert sorted(kept.values()) == runs  # every analysis is somewhere
    assert "BIAS01" in kept and len([n for n in kept if n.startswith("BIAS01.previous-2019031")]) == 5
    assert "BIAS01.previous-20190312T090000" in kept  # the names clean-up knows


def _publish_in_a_process(session: str, name: str, start) -> None:
    ctx = _staging(Path(session), name)
    start.wait()
    publish(ctx, {"test": "BIAS01"}, Path(session) / "BIAS01", clock=lambda: SAME_SECOND)


def test_results_published_by_processes_at_once_are_all_kept(tmp_path):
    session = tmp_path / "results" / "D11"
    session.mkdir(parents=True)
    context = multiprocessing.get_context("fork")
    start = context.Barrier(3)
    processes = [context.Process(target=_publish_in_a_process, args=(str(session), f"run{n}", start))
                 for n in range(3)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(30)
    assert [p.exitcode for p in processes] == [0, 0, 0]
    assert sorted(_kept(session).values()) == ["run0", "run1", "run2"]
