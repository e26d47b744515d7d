"""Benchmark: the same BIAS01 analysis on the `local` executor and on a 2-worker Dask cluster.

The full-size data (10 exposures x 3 CCDs, 1 GB, seed 0) are bench_bias01.py's cache, simulated
once; `--small` simulates the small geometry into a temporary folder instead (a quick check of
this script). A scheduler and one `dask worker --nworkers 2 --nthreads 1` are started on
loopback as a lab would start them (docs/scaling.md), outside the timing; one untimed Dask run
warms the workers (they import the analysis modules once, as long-lived workers do; the local
pool's processes are forks of a run that has them already). Then `--repeat` runs of each,
alternated, each in a fresh process: wall seconds and sub-task seconds; the result.json values
of every run must be those of the first local run, else the script fails.

Run: .venv/bin/python bench/bench_executors.py [--jobs 2] [--repeat 3] [--cache DIR] [--small]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import benchkit  # bench/benchkit.py: scripts run from bench/
from bench_bias01 import BENCH as BIAS01
from bench_bias01 import DEFAULT_CACHE

# the same BIAS01 analysis, every executor alike: no memory sampling in the timed process
BENCH = benchkit.Bench(test=BIAS01.test, frames=BIAS01.frames, cache=BIAS01.cache, sample=False,
                       extra=lambda record: {"ccds": record["ccds"]})
BIN = Path(sys.executable).parent  # the venv's `dask` command


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Cluster:
    """`dask scheduler` and `dask worker --nworkers N --nthreads 1` on loopback, as processes."""

    def __init__(self, workers: int, logs: Path):
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.processes: list[subprocess.Popen] = []
        self.logs = logs
        self.start(["scheduler", "--host", "127.0.0.1", "--port", str(self.port), "--no-dashboard"], "scheduler")
        self.start(["worker", self.address, "--nworkers", str(workers), "--nthreads", "1", "--no-dashboard"],
                   "workers")
        self.wait_for(workers)

    def start(self, arguments: list[str], name: str) -> None:
        log = (self.logs / f"{name}.log").open("w")
        self.processes.append(subprocess.Popen([str(BIN / "dask"), *arguments], stdout=log, stderr=subprocess.STDOUT,
                                               cwd=benchkit.ROOT))

    def wait_for(self, workers: int, timeout: float = 60.0) -> None:
        from distributed import Client

        with Client(self.address, timeout="30s") as client:
            client.wait_for_workers(workers, timeout=timeout)

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
        for process in reversed(self.processes):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def child(day: Path, executor: str, jobs: int) -> dict:
    return BENCH.measure(day, jobs, "--executor", executor)


def main() -> None:
    parser = BENCH.parser(__doc__, jobs_help="local worker processes, and Dask workers (default 2)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"data cache (default {DEFAULT_CACHE})")
    parser.add_argument("--small", action="store_true", help="small geometry in a temporary folder (a quick check)")
    parser.add_argument("--executor", default="local", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if BENCH.serve_child(args):
        return
    scratch = Path(tempfile.mkdtemp(prefix="vison-bench-executors-"))
    try:
        day = (benchkit.simulate_day(scratch / "data", BENCH.test, "small") if args.small
               else benchkit.ensure_data(args.cache, BENCH.test, BENCH.frames))
        cluster = Cluster(args.jobs, scratch)
        try:
            dask = "dask://" + cluster.address.removeprefix("tcp://")
            child(day, dask, args.jobs)  # warm the workers (untimed)
            runs: dict[str, list[dict]] = {"local": [], "dask": []}
            for _ in range(args.repeat):
                runs["local"].append(child(day, "local", args.jobs))
                runs["dask"].append(child(day, dask, args.jobs))
        finally:
            cluster.stop()
        reference = runs["local"][0]
        for name, measured in runs.items():
            for m in measured:
                if m["errors"] or m["ccds"] != reference["ccds"] or m["flags"] != reference["flags"]:
                    raise SystemExit(f"{name}: result.json differs from the first local run (or has errors)")
        size, frames = benchkit.size_of(day) / 1e6, len(benchkit.frames_of(day))
        print(f"BIAS01 {'small' if args.small else 'full size'}: {frames} FITS, {size:.0f} MB; result.json values "
              f"identical in all {2 * args.repeat} runs; {benchkit.machine()}")
        print("| executor | wall (best; all) | per sub-task of the best (s) |")
        print("|---|---|---|")
        for name, label in (("local", f"local, {args.jobs} processes"), ("dask", f"Dask, {args.jobs} workers x 1 thread")):
            walls = [m["wall_s"] for m in runs[name]]
            best = runs[name][walls.index(min(walls))]
            subtasks = ", ".join(f"{k} {v:.1f}" for k, v in best["timings_s"].items() if v >= 0.05)
            print(f"| {label} | {min(walls):.1f} s ({', '.join(f'{w:.1f}' for w in walls)}) | {subtasks} |")
        best_local = min(m["wall_s"] for m in runs["local"])
        best_dask = min(m["wall_s"] for m in runs["dask"])
        print(f"Dask overhead: {best_dask - best_local:+.1f} s ({(best_dask / best_local - 1) * 100:+.0f} %)")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
