"""Benchmark: the full analysis of a full-size BIAS01 (10 exposures x 3 CCDs = 30 FITS, 1 GB).

The data are simulated once into a cache folder and reused while it holds a complete day folder.
The analysis (aim mode, every sub-task of BIAS01, `--jobs`) then runs in a fresh process, so its
peak memory is its own: wall seconds, peak RSS of the main process, of the largest worker, and
of all of them together (sampled from /proc every 20 ms), plus each sub-task's time.

It prints, in one run, the read-and-stack limit (a fresh process reads every frame once, takes the
prescan statistics of each quadrant, stacks the three masters and writes them, `--jobs` workers)
and the pipeline end to end as a user runs it (`vison-engine run CAMPAIGN --session BENCH`, default
jobs: process start to result.json), their ratio, peak memory and the results folder's size;
`--dark` the same for DARK01.

Run: .venv/bin/python bench/bench_bias01.py [--jobs 2] [--dark] [--repeat N] [--cache DIR] [--profile]
The page cache is warm (the frames were just written or read): this times the analysis, not the disk.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import benchkit  # bench/benchkit.py: scripts run from bench/

BENCH = benchkit.Bench(test="BIAS01", frames=30, cache="bias01")
DEFAULT_CACHE = BENCH.cache_for("full")


DARK = benchkit.Bench(test="DARK01", frames=12, cache="dark01")


def limit_and_user(bench: benchkit.Bench, day: Path, jobs: int) -> tuple[dict, dict]:
    """The read-and-stack limit (fresh process, `jobs` workers) and the pipeline as a user runs it
    (`vison-engine run`, default jobs), back to back."""
    limit = benchkit.child("--limit", str(day), "--jobs", str(jobs))
    user = benchkit.run_as_user(day, bench.test)
    return limit, user


def report(bench: benchkit.Bench, day: Path, limit: dict, user: dict, jobs: int) -> None:
    size = benchkit.size_of(day) / 1e6
    ratio = user["end_s"] / limit["wall_s"]
    print(f"{bench.test}: sub-task seconds: {benchkit.subtasks(user)}; errors {user['errors']}; "
          f"flags {user['flags'] or 'none'}; results folder {user['results_mb']:.0f} MB")
    print(f"| {bench.test} | {bench.frames} FITS, {size:.0f} MB | read-and-stack limit {limit['wall_s']:.1f} s "
          f"(jobs {jobs}) | end to end {user['end_s']:.1f} s (exit {user['exit_s']:.1f} s; default jobs) | "
          f"ratio x{ratio:.2f} | CPU {limit['cpu_s']:.1f} s and {user['cpu_s']:.1f} s: "
          f"x{user['cpu_s'] / limit['cpu_s']:.2f} | peak {user['peak_pss_mb']:.0f} MB PSS "
          f"({user['peak_total_mb']:.0f} MB summed RSS) | results {user['results_mb']:.0f} MB | "
          f"load {os.getloadavg()[0]:.1f} | {benchkit.machine()} |", flush=True)


def main() -> None:
    parser = BENCH.parser(__doc__)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"data cache (default {DEFAULT_CACHE})")
    parser.add_argument("--profile", action="store_true", help="cProfile the analysis (to stderr); times are inflated")
    parser.add_argument("--dark", action="store_true", help="DARK01 (4 exposures x 3 CCDs) as well")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each (limit and pipeline alternated)")
    parser.add_argument("--limit", type=Path, help=argparse.SUPPRESS)  # internal: the timed read-and-stack
    args = parser.parse_args()
    if args.limit:
        print(json.dumps(benchkit.read_and_stack(args.limit, args.jobs)))
        return
    if BENCH.serve_child(args):
        return
    day = benchkit.ensure_data(args.cache, BENCH.test, BENCH.frames)
    if args.profile:
        m = BENCH.measure(day, args.jobs, "--profile")
        print(f"sub-task seconds: {benchkit.subtasks(m)} (profiled)")
        return
    benches = [(BENCH, day)]
    if args.dark:
        benches.append((DARK, benchkit.ensure_data(DARK.cache_for("full"), DARK.test, DARK.frames)))
    print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    for bench, folder in benches:
        for _ in range(args.repeat):
            limit, user = limit_and_user(bench, folder, args.jobs)
            report(bench, folder, limit, user, args.jobs)


if __name__ == "__main__":
    main()
