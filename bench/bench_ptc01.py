"""Benchmark: PTC01 end to end (92 exposures x 3 CCDs = 276 FITS, ~9.7 GB at full size) next to the
time to read every frame once, on the same machine in the same run, and the peak memory.

- end to end: a fresh process started, the campaign loaded, PTC01 analysed in aim mode with every
  sub-task, until its result.json is written (timed from the parent: process start included);
- read once: a fresh process opening every frame and reading all its pixels (what any analysis
  must at least do);
- peak memory: summed RSS of the analysis process and its workers (sampled every 20 ms).

The data are simulated once into a cache folder and reused while it holds a complete day folder.
Run: .venv/bin/python bench/bench_ptc01.py [--jobs 2] [--cache DIR] [--small]
`--small` runs the same on the small test geometry (a check that the script works, seconds).
The page cache is warm (the frames were just written or read): this times the analysis, not the disk.
"""

from __future__ import annotations

from pathlib import Path

import benchkit  # bench/benchkit.py: scripts run from bench/

BENCH = benchkit.Bench(test="PTC01", frames=276, cache="ptc01", read="pixels")


def main() -> None:
    parser = BENCH.parser(__doc__)
    parser.add_argument("--small", action="store_true", help="small test geometry: checks the script in seconds")
    parser.add_argument("--cache", type=Path, help="data cache (default under ~/.cache/vison-bench)")
    args = parser.parse_args()
    if BENCH.serve_child(args):
        return
    geometry = "small" if args.small else "full"
    day = benchkit.ensure_data(args.cache or BENCH.cache_for(geometry), BENCH.test, BENCH.frames, geometry)
    size = benchkit.size_of(day) / 1e9
    read_s, _, _ = benchkit.run_child("--read", str(day))  # timed from the parent: process start included
    wall_s, _, m = BENCH.timed_analysis(day, args.jobs)
    print(f"sub-task seconds: {benchkit.subtasks(m)}; errors {m['errors']}; flags {m['flags'] or 'none'}")
    print("| test | data | end to end | read every frame once | ratio | peak memory | jobs | machine |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| PTC01{' (small)' if args.small else ''} | {BENCH.frames} FITS, {size:.2f} GB | {wall_s:.1f} s | "
          f"{read_s:.1f} s | {wall_s / read_s:.2f} | {m['peak_total_mb']:.0f} MB | {args.jobs} | {benchkit.cpu_model()} |")


if __name__ == "__main__":
    main()
