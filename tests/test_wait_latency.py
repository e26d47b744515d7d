"""Issue 17, item 4: how soon after its last frame wait mode starts a test, and how soon its
result lands.

- On the virtual clock (acquisition_replay): the look that confirms the last frames is made
  `stable_s` after their last change, not at the next rescan, whatever the phase of the looks.
- On the real clock: a small BIAS01 streamed one exposure a second into `vison-engine run -W`,
  result.json against the last frame's mtime, median of 3 wait runs, against a budget measured in
  the same test (see test_a_streamed_bias01_lands_within_stability_and_a_warm_analysis).
- The local executor's warm(): the units of the first map run in workers started before it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest
from sim_days import EQUIPMENT, SERIALS
from test_pipeline_modes import _campaign, _replayed, _virtual_events, _wait_run

from engine.campaign.chamber import load_chamber
from engine.formats.geometry import SMALL
from engine.formats.names import frame_filename, hk_filename
from engine.pipeline.runner import PipelineRun, RunOptions
from engine.pipeline.wait import WaitSettings
from engine.sim.elvis import SimulationRequest, SimulationResult, simulate
from engine.tasks.executor import LocalExecutor, default_workers

CCDS = (1, 2, 3)


@pytest.fixture(autouse=True)
def state_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("VISON_STATE_DIR", str(tmp_path / "state"))


# -- the confirming look, on the virtual clock -------------------------------------------------

def test_the_confirming_look_comes_stable_s_after_the_last_frame_not_at_the_next_look(tmp_path, monkeypatch):
    """Each file lands in two halves 0.07 s apart, the EXP_LOG rows after the frames: the last
    exposure is all logged 0.07 s after its last frame (CCD3) is whole. Stability is 0.2 s and
    the rescan 0.5 s. Looking every stable_s / 2 from the rows' arrival (the old schedule) found
    the frame stable at 0.07 + 0.2 = 0.27 s; the look due stable_s after the frame's mtime finds
    it at 0.2 s (plus the 2 ms margin). Exact: the clock is virtual, mtimes are on it."""
    from golden_run import generic_only

    generic_only(monkeypatch)  # the modes, not the analyses
    campaign = _campaign(tmp_path)
    acquisition, clock = _replayed(tmp_path, interval_s=0.4, tests=("BIAS01",), partial_pause_s=0.07)
    seen, on_event = _virtual_events(clock)
    _, wait = _wait_run(campaign, on_event, idle_s=1.0, clock=clock)
    stable_s = wait.settings.stable_s
    assert (stable_s, wait.settings.poll_seconds) == (0.2, 0.5)
    wait.execute()
    started = next(t for t, kind, p in seen if kind == "test_started" and p["test"] == "BIAS01")
    frames = [p for p in acquisition.last_write if p.name.startswith("EUC_") and p.name.endswith(".fits")]
    last_frame = max(acquisition.last_write[p] for p in frames)
    rows_logged = acquisition.last_frame["BIAS01"]  # the EXP_LOG rows of the last exposure whole
    assert rows_logged - last_frame == pytest.approx(0.07)  # the rows came after the frame
    delay = started - last_frame
    assert stable_s - 1e-6 <= delay <= stable_s + 0.005, delay
    assert json.loads((campaign.paths.results / "D11" / "BIAS01" / "result.json").read_text())["flags"] == []


def test_a_frame_dated_in_the_future_is_confirmed_stable_s_after_it_was_seen(tmp_path, monkeypatch):
    """Frames whose mtime is 100 s ahead of this machine's clock (a file server's clock off): the
    policy counts their stability from when it first saw them, and so does the confirming look,
    which comes stable_s after the first look, not 100 s later (the idle stop would come first)."""
    from acquisition_replay import VirtualClock
    from golden_run import generic_only

    generic_only(monkeypatch)
    campaign = _campaign(tmp_path)
    day = simulate(SimulationRequest(tests=("BIAS01",), out=tmp_path / "data", chamber=load_chamber("B_NOSTROMO"),
                                     geometry=SMALL, jobs=1)).day_folder
    clock = VirtualClock()
    ahead = int((clock.wall() + 100) * 1e9)
    for frame in day.glob("EUC_*.fits"):
        os.utime(frame, ns=(ahead, ahead))
    seen, on_event = _virtual_events(clock)
    _, wait = _wait_run(campaign, on_event, idle_s=5.0, clock=clock)
    wait.execute()
    started = next(t for t, kind, _ in seen if kind == "test_started")
    assert wait.settings.stable_s <= started <= wait.settings.stable_s + 0.005, started


# -- warm workers ------------------------------------------------------------------------------

def _started_ticks(meeting: str | None, name: str) -> tuple[int, int]:
    """This process's pid and start time (clock ticks since boot, /proc/self/stat field 22). With a
    `meeting` folder, first wait (up to a minute) until the other unit is there too: two units
    that both return ran in two live workers at once."""
    if meeting:
        (Path(meeting) / name).touch()
        deadline = time.monotonic() + 60
        while len(list(Path(meeting).iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    return os.getpid(), int(fields[19])


def _uptime_ticks() -> int:
    return int(float(Path("/proc/uptime").read_text().split()[0]) * os.sysconf("SC_CLK_TCK"))


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process start times from /proc")
def test_warm_starts_every_worker_before_the_first_units(tmp_path):
    with LocalExecutor(2) as executor:
        assert executor.warm().wait(120), "the workers never started"
        time.sleep(2 / os.sysconf("SC_CLK_TCK"))  # start times count in ticks: leave warm()'s tick behind
        before_map = _uptime_ticks()
        workers = executor.map(_started_ticks, [(str(tmp_path), "a"), (str(tmp_path), "b")])
        assert len({pid for pid, _ in workers}) == 2  # two workers at once
        assert all(started < before_map for _, started in workers), (workers, before_map)  # both started by warm()


def _imported(name: str) -> bool:
    import sys

    return name in sys.modules


def test_warm_workers_import_the_modules_they_are_given(tmp_path):
    """The fork server loads no family module (a small test's first unit would wait for them
    all): warm(modules) has every worker import the run's own as it starts. `wave` stands for a
    family module: nothing the fork server or a worker loads imports it. A module that does not
    import leaves the pool working (its unit reports it)."""
    with LocalExecutor(2) as executor:
        assert not any(executor.map(_imported, [("wave",), ("wave",)]))  # the server does not load it
    with LocalExecutor(2) as executor:
        assert executor.warm(["wave"]).wait(120), "the workers never started"
        found = executor.map(_started_and_imported, [(str(tmp_path), "a", "wave"), (str(tmp_path), "b", "wave")])
        assert len({pid for pid, _ in found}) == 2 and all(imported for _, imported in found), found
    with LocalExecutor(2) as executor:
        assert executor.warm(["engine.tasks.no_such_family"]).wait(120)
        assert executor.map(_imported, [("sys",), ("sys",)]) == [True, True]


def _started_and_imported(meeting: str, name: str, module: str) -> tuple[int, bool]:
    return _started_ticks(meeting, name)[0], _imported(module)


def test_warm_with_one_worker_starts_nothing():
    with LocalExecutor(1) as executor:
        assert executor.warm().is_set()
        assert {pid for pid, _ in executor.map(_started_ticks, [(None, "a"), (None, "b")])} == {os.getpid()}  # run here


# -- the real clock: a streamed small BIAS01 ---------------------------------------------------

STREAMED = 5  # the last exposures, one a second (the first ones land at once)
ROUNDS = 3  # a median of 3 runs: one slow run (a load spike) does not decide it
OVERHEAD_S = 0.5  # what wait mode may add to stability + analysis: detection, logs, scheduling
LOG_TIME = "%Y-%m-%d %H:%M:%S,%f"  # the pipeline log's timestamps (milliseconds)


@pytest.fixture(scope="module")
def staged_bias01(tmp_path_factory) -> SimulationResult:
    out = tmp_path_factory.mktemp("staged")
    return simulate(SimulationRequest(tests=("BIAS01",), out=out, chamber=load_chamber("B_NOSTROMO"),
                                      geometry=SMALL, equipment=EQUIPMENT, jobs=1))


class _Stream(threading.Thread):
    """The staged exposures copied into `day` in ELVIS order (HK file, frames, then the EXP_LOG
    rows), the last STREAMED of them one every `interval_s`. Frames land whole (a copy, then a
    rename), as the simulator's stream writes them."""

    def __init__(self, staged: SimulationResult, day: Path, interval_s: float = 1.0):
        super().__init__(daemon=True)
        self.staged, self.day, self.interval_s = staged, day, interval_s
        self.stop = threading.Event()
        self.frames: list[Path] = []

    def run(self) -> None:
        header, *rows = self.staged.explog_path.read_bytes().splitlines(keepends=True)
        log = self.day / self.staged.explog_path.name
        log.write_bytes(header)
        exposures = self.staged.exposures
        for i, exposure in enumerate(exposures):
            if i >= len(exposures) - STREAMED and self.stop.wait(self.interval_s):
                return
            hk = hk_filename(exposure.obsid, exposure.when)
            shutil.copyfile(self.staged.day_folder / hk, self.day / hk)
            for ccd in CCDS:
                name = frame_filename(exposure.obsid, exposure.when, ccd)
                part = self.day / f".{name}.part"
                shutil.copyfile(self.staged.day_folder / name, part)
                os.replace(part, self.day / name)
                self.frames.append(self.day / name)
            with open(log, "ab") as out:
                out.write(b"".join(rows[len(CCDS) * i: len(CCDS) * (i + 1)]))


def _campaign_toml(day: Path, results: Path) -> str:
    hardware = "\n".join(f'{key} = "{value}"' for key, value in SERIALS.items())
    return (f'[campaign]\nblock = "NOSTROMO"\nchamber = "B_NOSTROMO"\n\n[hardware]\n{hardware}\n\n'
            f'[paths]\ndata = "{day.parent}"\nresults = "{results}"\n\n'
            f'[sessions.D11]\nday_folder = "{day.name}"\ntests = ["BIAS01"]\n')


def _until(condition, what: str, process: subprocess.Popen, timeout: float = 120.0):
    """Poll `condition` until it holds; fail saying `what` if the process ends or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        found = condition()
        if found:
            return found
        time.sleep(0.02)
    found = condition()
    assert found, f"{what} (process exit code {process.poll()})"
    return found


def _log_line_time(log: Path, text: str) -> float:
    line = next(line for line in log.read_text().splitlines() if text in line)
    return datetime.strptime(line[:23], LOG_TIME).timestamp()


def _wait_run_as_a_user(staged: SimulationResult, root: Path) -> dict[str, float]:
    """`vison-engine run CAMPAIGN -W` in a fresh process (default jobs and [watch] settings: file
    events, 5 s rescan, 1 s stability), fed by the stream once it watches the day folder; stopped
    (SIGTERM, as `vison-engine stop` does) once BIAS01's result.json is there."""
    day = root / "data" / staged.day_folder.name
    day.mkdir(parents=True)
    config = root / "campaign.toml"
    config.write_text(_campaign_toml(day, root / "results"))
    logs = root / "results" / "logs"
    result = root / "results" / "D11" / "BIAS01" / "result.json"
    stream = _Stream(staged, day)
    with open(root / "run.out", "w") as out:
        run = subprocess.Popen([str(Path(sys.executable).with_name("vison-engine")), "run", str(config), "--session",
                                "D11", "-W"], stdout=out, stderr=subprocess.STDOUT, cwd=root,
                               env=dict(os.environ, VISON_STATE_DIR=str(root / "state")))
    try:
        log = _until(lambda: next((p for p in logs.glob("Calib_*.log") if "Waiting for data in" in p.read_text()),
                                  None), "the wait run never watched the day folder", run)
        stream.start()
        stream.join()
        _until(result.is_file, f"no {result}", run)
    finally:
        stream.stop.set()
        if run.poll() is None:
            run.send_signal(signal.SIGTERM)
        run.wait(timeout=60)
    assert json.loads(result.read_text())["errors"] is False, (root / "run.out").read_text()[-2000:]
    last_frame = max(p.stat().st_mtime for p in stream.frames)
    started = _log_line_time(log, "Running Task: BIAS01")
    landed = result.stat().st_mtime
    return {"latency": landed - last_frame, "start": started - last_frame, "analysis": landed - started}


def _warm_analyses(campaign_file: str) -> None:
    """The baseline process (this file run as a script): the campaign's BIAS01 analysed once to
    warm everything (workers, modules, matplotlib), then once per line read from stdin, each time
    printing test start to result.json in seconds."""
    from engine.campaign.config import load_campaign

    run = PipelineRun(load_campaign(campaign_file), RunOptions(session="D11", jobs=default_workers()))
    with run.opened():
        rows = run.read_rows()
        test = run.session.tests[0]
        result = run.campaign.paths.results / "D11" / "BIAS01" / "result.json"
        run.run_test(test, rows)
        print("warm", flush=True)
        for _ in sys.stdin:
            started = time.time()
            run.run_test(test, rows)
            print(result.stat().st_mtime - started, flush=True)


def test_a_streamed_bias01_lands_within_stability_and_a_warm_analysis(staged_bias01, tmp_path):
    """result.json of a streamed small BIAS01 against its last frame's mtime, median of 3 wait runs,
    each as a user starts it (a fresh `vison-engine run -W` process).

    The issue's figure is 2 s on a quiet machine: 1 s of stability, then the analysis. On the
    shared 2-core machine the same analysis takes 0.7-4 s with the other sessions' load, so an
    absolute 2 s here would fail for reasons that are not wait mode's; the absolute figure is
    bench/bench_wait_latency.py's job (it prints it with the load average). What wait mode owns,
    and what this asserts whatever the load, is that it adds next to nothing to stability and the
    analysis itself: the budget is stable_s + 1.25 x the same analysis timed in this test by a
    process whose workers, modules and matplotlib are warm (one timing per round, interleaved with
    the wait runs; median) + 0.5 s. A cold pool and matplotlib's import, what a wait run's result
    waited for before, cost 1.5 s on a quiet machine and more under load, and fail it; so does a
    confirming look left to the 5 s rescan. The start is held to stable_s + 0.5 s."""
    baseline_root = tmp_path / "baseline"
    baseline_day = baseline_root / "data" / staged_bias01.day_folder.name
    shutil.copytree(staged_bias01.day_folder, baseline_day)
    (baseline_root / "campaign.toml").write_text(_campaign_toml(baseline_day, baseline_root / "results"))
    baseline = subprocess.Popen([sys.executable, __file__, str(baseline_root / "campaign.toml")], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, cwd=baseline_root,
                                env=dict(os.environ, VISON_STATE_DIR=str(baseline_root / "state")))
    rounds, analyses = [], []
    try:
        assert baseline.stdout.readline().strip() == "warm"
        for i in range(ROUNDS):
            rounds.append(_wait_run_as_a_user(staged_bias01, tmp_path / f"round{i}"))
            baseline.stdin.write("go\n")
            baseline.stdin.flush()
            analyses.append(float(baseline.stdout.readline()))
    finally:
        baseline.stdin.close()
        baseline.wait(timeout=120)
    median = {key: statistics.median(r[key] for r in rounds) for key in ("latency", "start", "analysis")}
    stable_s = WaitSettings().stable_s
    warm_analysis = statistics.median(analyses)
    budget = stable_s + 1.25 * warm_analysis + OVERHEAD_S
    each = ", ".join(f"{r['latency']:.2f}" for r in rounds)
    said = (f"result.json after the last frame: median {median['latency']:.2f} s ({each}); start "
            f"{median['start']:.2f} s, analysis {median['analysis']:.2f} s; warm analysis "
            f"{warm_analysis:.2f} s ({', '.join(f'{a:.2f}' for a in analyses)}); budget {budget:.2f} s; "
            f"load {os.getloadavg()[0]:.1f}")
    print(said)
    assert median["start"] <= stable_s + OVERHEAD_S, said
    assert median["latency"] <= budget, said


if __name__ == "__main__":  # the baseline process of the test above
    _warm_analyses(sys.argv[1])
