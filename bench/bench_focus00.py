"""Benchmark: FOCUS00_800 end to end (9 exposures x 3 CCDs = 27 FITS, ~950 MB at full size) next to
the time to read every frame once, on the same machine in the same run.

The data are simulated once into a cache folder (per geometry) and reused. Then, each in a fresh
process: (1) every frame read whole once (the floor any analysis pays), (2) the analysis (aim
mode, every sub-task of FOCUS00: lock, check, basic, meta, report; `--jobs`), timed from process
start to its result.json, with peak RSS (main, largest worker, all together sampled every 20 ms)
and each sub-task's time. The aim of issue 13: end to end <= 3x the read time.

Run: .venv/bin/python bench/bench_focus00.py [--geometry full|medium|small] [--jobs 2] [--cache DIR]
The page cache is warm (the frames were just written or read): this times the analysis, not the disk.
"""

from __future__ import annotations

import time
from pathlib import Path

import benchkit  # bench/benchkit.py: scripts run from bench/


def best_focus(record: dict) -> dict:
    return {"best_focus_mm": record["values"].get("best_focus_mm")}


BENCH = benchkit.Bench(test="FOCUS00_800", frames=27, cache="focus00", read="pixels", families=True, extra=best_focus)


def main() -> None:
    parser = BENCH.parser(__doc__)
    parser.add_argument("--geometry", choices=("full", "medium", "small"), default="full")
    parser.add_argument("--cache", type=Path, default=None,
                        help=f"data cache (default {benchkit.CACHE_ROOT}/focus00-<geometry>)")
    args = parser.parse_args()
    if BENCH.serve_child(args):
        return
    day = benchkit.ensure_data(args.cache or BENCH.cache_for(args.geometry), BENCH.test, BENCH.frames, args.geometry,
                               described=args.geometry)
    read = benchkit.child("--read", str(day))  # read_s: the reading alone
    started = time.time()  # process start: interpreter and imports count
    m = BENCH.measure(day, args.jobs)
    end_to_end = m["done_at"] - started
    size = benchkit.size_of(day) / 1e6
    print(f"sub-task seconds: {benchkit.subtasks(m, 2)}; errors {m['errors']}; flags {m['flags'] or 'none'}; "
          f"block best focus {m['best_focus_mm']} mm")
    print(f"read every frame once: {read['read_s']:.2f} s; analysis {m['wall_s']:.2f} s; process start to "
          f"result.json {end_to_end:.2f} s = {end_to_end / read['read_s']:.1f} x the read (aim <= 3x)")
    print(f"| {BENCH.test} end to end (aim, all sub-tasks, {args.geometry}) | {BENCH.frames} FITS, {size:.0f} MB | "
          f"{end_to_end:.1f} s (read once {read['read_s']:.1f} s) | {m['peak_total_mb']:.0f} MB total "
          f"({m['peak_self_mb']:.0f} MB main, {m['peak_worker_mb']:.0f} MB largest worker) | {args.jobs} | "
          f"{benchkit.machine()} |")


if __name__ == "__main__":
    main()
