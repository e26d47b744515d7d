"""Benchmark: wait-mode latency, result.json of a streamed small BIAS01 after its last frame.

Each round, as a user runs it, in a fresh temporary folder:
1. `vison-engine run CAMPAIGN --session BENCH -W` (default jobs, default [watch] settings: file
   events, 5 s rescan, 1 s stability), started on an empty day folder;
2. once it says it is waiting for data, `vison-engine simulate --tests BIAS01 --small --stream
   --interval 1`: the 10 exposures x 3 CCDs land one exposure a second, in ELVIS order (HK file,
   frames, EXP_LOG rows);
3. when BIAS01's result.json is there, the run is stopped (SIGTERM, as `vison-engine stop` does).

Per round it prints result.json's mtime minus the last frame's mtime (the figure of issue 17, item 4),
split into the start (the log's "exposures ready" line, millisecond timestamps) and the analysis,
plus the sub-task times of result.json; then the median and each value of the `--rounds` rounds,
the load average before and after, and the machine. `--source DIR` runs another checkout's
engine/ (e.g. `git archive HEAD~1 engine configs | tar -x -C DIR`), to compare before and after
under the same load: other sessions share the machine.

Run: .venv/bin/python bench/bench_wait_latency.py [--rounds 5] [--interval 1] [--source DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import benchkit  # bench/benchkit.py: scripts run from bench/

TEST = "BIAS01"
DAY = "12_Mar_19"  # the simulator's default start, 2019-03-12
WAIT_UP = "Waiting for data in "  # the wait run's log line once it watches the day folder
READY = f"{TEST}: 10 exposures ready"


def engine_command(*arguments: str) -> list[str]:
    return [str(Path(sys.executable).with_name("vison-engine")), *arguments]


def log_time(line: str) -> float:
    """A pipeline log line's timestamp ("2019-03-12 09:00:00,123 - INFO - ..."), as time.time()."""
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()


def wait_for(condition, timeout: float, what: str, process: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        if process is not None and process.poll() is not None:
            break
        time.sleep(0.02)
    raise RuntimeError(f"{what}: not within {timeout:g} s" + (f" (the run exited with {process.returncode})"
                                                              if process is not None and process.poll() is not None
                                                              else ""))


def one_round(work: Path, interval: float, source: str | None) -> dict:
    data, results = work / "data", work / "results"
    (data / DAY).mkdir(parents=True)
    config = work / "campaign.toml"
    config.write_text(benchkit.campaign_toml(data / DAY, results, TEST))
    env = dict(os.environ, VISON_STATE_DIR=str(work / "state"))
    if source:
        env["PYTHONPATH"] = str(Path(source).resolve())  # before the editable install's import hook
    with open(work / "run.out", "w") as out:
        run = subprocess.Popen(engine_command("run", str(config), "--session", "BENCH", "-W"), stdout=out,
                               stderr=subprocess.STDOUT, cwd=work, env=env)
    try:
        def log_text() -> str:
            logs = sorted((results / "logs").glob("Calib_*.log"))
            return logs[0].read_text(errors="replace") if logs else ""

        wait_for(lambda: WAIT_UP in log_text(), 60, "the wait run never said it was waiting for data", run)
        simulated = subprocess.run(engine_command("simulate", "--tests", TEST, "--small", "--stream", "--interval",
                                                  str(interval), "--out", str(data)),
                                   check=False, capture_output=True, text=True, cwd=work, env=env)
        if simulated.returncode:
            raise RuntimeError(f"vison-engine simulate failed:\n{simulated.stderr[-2000:]}")
        result = results / "BENCH" / TEST / "result.json"
        wait_for(result.is_file, 120, f"no {result}", run)
    finally:
        if run.poll() is None:
            run.send_signal(signal.SIGTERM)
        try:
            run.wait(timeout=60)
        except subprocess.TimeoutExpired:
            run.kill()
            run.wait()
    last_frame = max(p.stat().st_mtime for p in (data / DAY).glob("EUC_*.fits"))
    landed = result.stat().st_mtime
    ready = next(log_time(line) for line in log_text().splitlines() if READY in line)
    record = json.loads(result.read_text())
    return {"latency": landed - last_frame, "start": ready - last_frame, "analysis": landed - ready,
            "timings_s": record["timings_s"], "errors": record["errors"]}


def load_average() -> str:
    """The 1, 5 and 15 minute load averages (other sessions share the machine)."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="wait runs, each on its own stream (default 5)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between exposures (default 1)")
    parser.add_argument("--source", help="run this folder's engine/ (another checkout) instead of this one")
    args = parser.parse_args()
    print(f"{TEST} small, streamed one exposure every {args.interval:g} s; wait mode with the default jobs; "
          f"source {args.source or benchkit.ROOT}; {benchkit.machine()}")
    print(f"load average before: {load_average()}")
    print("| round | result.json after the last frame | start | analysis | per sub-task (s) |")
    print("|---|---|---|---|---|")
    rounds = []
    for index in range(1, args.rounds + 1):
        work = Path(tempfile.mkdtemp(prefix="vison-bench-wait-"))
        try:
            m = one_round(work, args.interval, args.source)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        rounds.append(m)
        print(f"| {index} | {m['latency']:.2f} s | {m['start']:.2f} s | {m['analysis']:.2f} s | "
              f"{benchkit.subtasks(m, 2)}{'; ERRORS' if m['errors'] else ''} |", flush=True)
    each = ", ".join(f"{m['latency']:.2f}" for m in rounds)
    print(f"result.json after the last frame: median {statistics.median(m['latency'] for m in rounds):.2f} s "
          f"({each}); start median {statistics.median(m['start'] for m in rounds):.2f} s, analysis median "
          f"{statistics.median(m['analysis'] for m in rounds):.2f} s")
    print(f"load average after: {load_average()}")


if __name__ == "__main__":
    main()
