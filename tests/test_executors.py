"""The work units on a real dask.distributed cluster (a scheduler and 2 worker processes on
loopback) give the result.json numbers and products of the local process pool; a worker killed
while it runs a unit changes nothing (Dask gives the unit to another worker); a scheduler that
cannot be reached is one line on stderr and exit status 2, before any run starts.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import cloudpickle
import numpy as np
import pytest
from astropy.io import fits

pytest.importorskip("distributed")
from distributed import LocalCluster, WorkerPlugin  # noqa: E402

import engine.sim.elvis as elvis  # noqa: E402
from engine.campaign.chamber import load_chamber  # noqa: E402
from engine.campaign.config import campaign_from_dict  # noqa: E402
from engine.campaign.executor_spec import ExecutorSpec, parse_executor  # noqa: E402
from engine.cli import main as cli  # noqa: E402
from engine.formats.geometry import SMALL  # noqa: E402
from engine.pipeline.runner import PipelineRun, RunOptions  # noqa: E402
from engine.sim.records import Equipment  # noqa: E402
from engine.tasks.registry import campaign_schema  # noqa: E402

SERIALS = {"roe": "FM14", "rpsu": "FM14", "ccd1": "14888-88-81", "ccd2": "14888-88-82", "ccd3": "14888-88-83"}
EQUIPMENT = Equipment(sn_roe="FM14", sn_rpsu="FM14", sn_ccd1=SERIALS["ccd1"], sn_ccd2=SERIALS["ccd2"],
                      sn_ccd3=SERIALS["ccd3"])
TESTS = ("BIAS01", "DARK01", "FLATFLUX00_800")  # a bias, a dark and a flat-illumination family
RUN_SPECIFIC = {"run_id", "started", "finished", "timings_s"}  # what differs between any two runs

cloudpickle.register_pickle_by_value(__import__(__name__))  # the plugin below, sent to the workers


@pytest.fixture(scope="module")
def day(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("exeday") / "data"
    elvis.simulate(elvis.SimulationRequest(tests=TESTS, out=out, chamber=load_chamber("B_NOSTROMO"),
                                           geometry=SMALL, equipment=EQUIPMENT, jobs=2))
    return out


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=":0") as running:  # any free port
        yield running


def write_campaign(data: Path, results: Path, executor: str | None = None) -> Path:
    config = results.parent / "campaign.toml"
    run = f'\n[run]\nexecutor = "{executor}"\n' if executor else ""
    config.write_text(f'[campaign]\nblock = "NOSTROMO"\nchamber = "B_NOSTROMO"\n\n[paths]\ndata = "{data}"\n'
                      f'results = "{results}"\n{run}\n[sessions.D11]\ntests = {json.dumps(list(TESTS))}\n')
    return config


def run_here(data: Path, results: Path, executor: ExecutorSpec | None = None, jobs: int = 2) -> None:
    campaign = campaign_from_dict({
        "campaign": {"block": "NOSTROMO", "chamber": "B_NOSTROMO"}, "hardware": SERIALS,
        "paths": {"data": str(data), "results": str(results)}, "sessions": {"D11": {"tests": list(TESTS)}},
    }, base_dir=results.parent, families=campaign_schema())
    PipelineRun(campaign, RunOptions(session="D11", jobs=jobs, executor=executor)).run_aim()


def comparable(results: Path, test: str) -> dict:
    record = json.loads((results / "D11" / test / "result.json").read_text())
    text = json.dumps({k: v for k, v in record.items() if k not in RUN_SPECIFIC}, sort_keys=True)
    return json.loads(text.replace(str(results), "<results>"))  # the nominal gain's note names the folder


@pytest.fixture(scope="module")
def local(day, tmp_path_factory) -> Path:
    results = tmp_path_factory.mktemp("local") / "results"
    run_here(day, results, ExecutorSpec("local"), jobs=2)
    return results


def assert_same_results(one: Path, two: Path) -> None:
    for test in TESTS:
        first, second = comparable(one, test), comparable(two, test)
        assert first["errors"] is False, first["error_messages"]
        assert second == first, test
    for product in sorted((one / "D11" / "BIAS01" / "products").glob("*.fits")):
        with fits.open(product) as a, fits.open(two / "D11" / "BIAS01" / "products" / product.name) as b:
            for name in ("STACK", "STD"):
                assert np.array_equal(a[name].data, b[name].data), (product.name, name)


def test_dask_cluster_gives_the_local_results(day, local, cluster, tmp_path, capsys):
    results = tmp_path / "results"
    address = "dask://" + cluster.scheduler_address.removeprefix("tcp://")
    config = write_campaign(day, results, executor=address)  # the campaign's [run] executor
    assert cli(["run", str(config), "--session", "D11"]) == 0, capsys.readouterr().err
    assert_same_results(local, results)
    log = next((results / "logs").glob("*.log")).read_text()
    assert f"Work units run on {address} (2 workers, 2 threads)" in log
    # the units did run on the cluster (its scheduler lives in this process)
    assert {"quadrant_pass_unit", "compress_plane"} <= set(cluster.scheduler.task_prefixes)


class KillOnce(WorkerPlugin):
    """Kills its worker (SIGKILL, no goodbye) a moment after the first unit named `prefix` starts
    executing there: once in the whole cluster, decided by creating `marker`."""

    name = "kill-once"

    def __init__(self, prefix: str, marker: str):
        self.prefix, self.marker = prefix, marker

    def transition(self, key, start, finish, **kwargs):
        if finish != "executing" or not str(key).startswith(self.prefix):
            return
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(fd, f"{os.getpid()} {key}".encode())
        os.close(fd)
        threading.Timer(0.02, os.kill, (os.getpid(), signal.SIGKILL)).start()  # mid-unit


def test_a_worker_killed_mid_unit_changes_nothing(day, local, cluster, tmp_path):
    marker = tmp_path / "killed"
    with cluster.get_client() as client:
        client.register_plugin(KillOnce("quadrant_pass_unit-", str(marker)))
        try:
            results = tmp_path / "results"
            run_here(day, results, parse_executor("dask://" + cluster.scheduler_address.removeprefix("tcp://")))
        finally:
            client.unregister_worker_plugin(KillOnce.name)
    pid, key = marker.read_text().split()
    assert key.startswith("quadrant_pass_unit-")  # a BIAS01 one-pass unit (CCD, quadrant) was being run
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid), 0)  # its worker is gone
    assert_same_results(local, results)


def test_an_unreachable_scheduler_is_one_line_and_status_2(day, tmp_path, capsys):
    results = tmp_path / "results"
    config = write_campaign(day, results)
    code = cli(["run", str(config), "--session", "D11", "--executor", "dask://127.0.0.1:9"])  # port 9: discard
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: cannot reach the Dask scheduler at tcp://127.0.0.1:9"), err
    assert not (results / "D11").exists() and not list(results.glob("logs/*.log"))  # nothing started


def test_executor_words_are_checked_with_their_line(day, tmp_path, capsys):
    config = write_campaign(day, tmp_path / "results", executor="tcp://lab-srv:8786")
    assert cli(["run", str(config), "--session", "D11"]) == 2
    err = capsys.readouterr().err
    assert f"{config}:10: run.executor: expected" in err and "dask://lab-srv:8786" in err, err
    config = write_campaign(day, tmp_path / "results")
    assert cli(["run", str(config), "--session", "D11", "--executor", "dask://lab-srv:8786", "--jobs", "2"]) == 2
    assert "--jobs 2 sizes the local executor" in capsys.readouterr().err
    assert parse_executor("dask://lab-srv") == ExecutorSpec("dask", "tcp://lab-srv:8786")  # dask's default port
    assert str(parse_executor(" LOCAL ")) == "local"
