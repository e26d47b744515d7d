"""Benchmark: FLAT01 end to end (170 exposures x 3 CCDs = 510 FITS, ~9 GB at full size) next to the
time it takes to read every frame once, on the same machine in the same run, with peak memory.

The data are simulated once into a cache folder and reused while it holds a complete day folder.
Two fresh processes are timed from their start: one reads every frame's pixels once (the floor any
analysis pays), one runs FLAT01 in aim mode with every sub-task until its result.json is written.
Peak memory: the summed RSS of the analysis process and its workers (sampled every 20 ms).

Run: .venv/bin/python bench/bench_flat01.py [--jobs 2] [--cache DIR] [--small]
`--small` uses the small test geometry (seconds; checks the script, says nothing about speed).
The page cache is warm for both (the frames were just written or read): this compares the analysis
with a warm read, not the disk.
"""

from __future__ import annotations

from pathlib import Path

import benchkit  # bench/benchkit.py: scripts run from bench/

BENCH = benchkit.Bench(test="FLAT01", frames=170 * 3, cache="flat01", read="saturated", families=True)


def main() -> None:
    parser = BENCH.parser(__doc__)
    parser.add_argument("--cache", type=Path, help=f"data cache (default {benchkit.CACHE_ROOT}/flat01-<size>)")
    parser.add_argument("--small", action="store_true", help="small geometry: a check of the script, not a benchmark")
    args = parser.parse_args()
    if BENCH.serve_child(args):
        return
    geometry = "small" if args.small else "full"
    day = benchkit.ensure_data(args.cache or BENCH.cache_for(geometry), BENCH.test, BENCH.frames, geometry)
    size = benchkit.size_of(day) / 1e6
    # both timed from the parent, process start to exit, peak memory sampled from the parent
    read_s, read_mb, _ = benchkit.run_child("--read", str(day), sample=True)
    wall_s, peak_mb, m = BENCH.timed_analysis(day, args.jobs, sample=True)
    print(f"sub-task seconds: {benchkit.subtasks(m)}; errors {m['errors']}; flags {m['flags'] or 'none'}")
    print(f"| {BENCH.test} end to end (aim, all sub-tasks){' [small geometry]' * args.small} | {BENCH.frames} FITS, "
          f"{size:.0f} MB | {wall_s:.1f} s | read once {read_s:.1f} s ({wall_s / read_s:.1f}x) | "
          f"{peak_mb:.0f} MB peak (read: {read_mb:.0f} MB) | {args.jobs} | {benchkit.machine()} |")


if __name__ == "__main__":
    main()
