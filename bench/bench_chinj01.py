"""Benchmark: the full analysis of a full-size CHINJ01 (36 exposures x 3 CCDs = 108 FITS, 3.8 GB)
next to the time to read every frame once, in the same run on the same machine.

The data are simulated once into a cache folder and reused while it holds a complete day folder.
Then, each in a fresh process: (1) every frame read once (each quadrant's pixels copied out of
the memory map, as the analyses read them), (2) the analysis (aim mode, every sub-task of
CHINJ01, `--jobs`), timed from process start to result.json, with its peak memory (summed RSS of
the process and its workers, sampled from /proc every 20 ms) and each sub-task's time.

Run: .venv/bin/python bench/bench_chinj01.py [--jobs 2] [--repeat 2] [--cache DIR] [--small] [--profile]
`--small` uses the small test geometry (a quick check that the script works, not a benchmark).
The page cache is warm (the frames were just written or read): this times the analysis, not the disk.
"""

from __future__ import annotations

import benchkit  # bench/benchkit.py: scripts run from bench/


def fitted(record: dict) -> dict:
    thresholds = [q.get("ig1_threshold_v") for c in record["ccds"].values() for q in c.values()]
    return {"fitted": sum(1 for t in thresholds if isinstance(t, (int, float)))}


BENCH = benchkit.Bench(test="CHINJ01", frames=108, cache="chinj01", extra=fitted)

if __name__ == "__main__":
    BENCH.main_against_read(__doc__, lambda m: f"; quadrants fitted {m['fitted']}/12")
