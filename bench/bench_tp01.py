"""Benchmark: the full analysis of a full-size TP01 (50 exposures x 3 CCDs = 150 FITS, 5.3 GB)
next to the time to read every frame once, in the same run on the same machine.

The data are simulated once into a cache folder and reused while it holds a complete day folder.
Then, each in a fresh process: (1) every frame read once (each quadrant's pixels copied out of
the memory map, as the analyses read them), (2) the analysis (aim mode, every sub-task of TP01,
`--jobs`), timed from process start to result.json, with its peak memory (summed RSS of the
process and its workers, sampled from /proc every 20 ms) and each sub-task's time.

Run: .venv/bin/python bench/bench_tp01.py [--jobs 2] [--repeat 2] [--cache DIR] [--small] [--profile]
`--small` uses the small test geometry (a quick check that the script works, not a benchmark).
The page cache is warm (the frames were just written or read): this times the analysis, not the disk.
"""

from __future__ import annotations

import benchkit  # bench/benchkit.py: scripts run from bench/


def traps(record: dict) -> dict:
    return {"traps": sum(q.get("trap_count", 0) for c in record["ccds"].values() for q in c.values())}


BENCH = benchkit.Bench(test="TP01", frames=150, cache="tp01", extra=traps)

if __name__ == "__main__":
    BENCH.main_against_read(__doc__, lambda m: f"; traps {m['traps']}")
