"""Benchmark: the full analysis of a full-size BIAS01 (10 exposures x 3 CCDs = 30 FITS, 1 GB).

The data are simulated once into a cache folder and reused while it holds a complete day folder.
The analysis (aim mode, every sub-task of BIAS01, `--jobs`) then runs in a fresh process, so its
peak memory is its own: wall seconds, peak RSS of the main process, of the largest worker, and
of all of them together (sampled from /proc every 20 ms), plus each sub-task's time.

Run: .venv/bin/python bench/bench_bias01.py [--jobs 2] [--cache DIR] [--profile]
The page cache is warm (the frames were just written or read): this times the analysis, not the disk.
"""

from __future__ import annotations

from pathlib import Path

import benchkit  # bench/benchkit.py: scripts run from bench/

BENCH = benchkit.Bench(test="BIAS01", frames=30, cache="bias01")
DEFAULT_CACHE = BENCH.cache_for("full")


def main() -> None:
    parser = BENCH.parser(__doc__)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"data cache (default {DEFAULT_CACHE})")
    parser.add_argument("--profile", action="store_true", help="cProfile the analysis (to stderr); times are inflated")
    args = parser.parse_args()
    if BENCH.serve_child(args):
        return
    day = benchkit.ensure_data(args.cache, BENCH.test, BENCH.frames)
    m = BENCH.measure(day, args.jobs, *["--profile"] * args.profile)
    size = benchkit.size_of(day) / 1e6
    print(f"sub-task seconds: {benchkit.subtasks(m)}; errors {m['errors']}; flags {m['flags'] or 'none'}")
    print(f"| BIAS01 full analysis (aim, all sub-tasks) | {BENCH.frames} FITS, {size:.0f} MB | {m['wall_s']:.1f} s | "
          f"{m['peak_total_mb']:.0f} MB total ({m['peak_self_mb']:.0f} MB main, {m['peak_worker_mb']:.0f} MB largest "
          f"worker) | {args.jobs} | {benchkit.machine()} |")


if __name__ == "__main__":
    main()
