"""Benchmark: PTC01 end to end (92 exposures x 3 CCDs = 276 FITS, ~9.7 GB at full size) next to the
time to read every frame once, on the same machine in the same run, and the peak memory.

Each round, back to back, in fresh processes timed from their start:
- read once: every frame's pixels read once (what any analysis must at least do);
- end to end: the campaign loaded, PTC01 analysed in aim mode with every sub-task, until its
  result.json is written and read back;
- peak memory: summed RSS of the analysis process and its workers (sampled every 20 ms);
- the load average before and after (other sessions share the machine: compare the ratios).

The data are simulated once into a cache folder and reused while it holds a complete day folder.
Run: .venv/bin/python bench/bench_ptc01.py [--jobs 2] [--repeat 2] [--cache DIR] [--small] [--profile]
`--small` runs the same on the small test geometry (a check that the script works, seconds).
The page cache is warm (the frames were just written or read): this times the analysis, not the disk.
"""

from __future__ import annotations

import benchkit  # bench/benchkit.py: scripts run from bench/


def gains(record: dict) -> dict:
    values = [q.get("gain_e_per_adu") for c in record["ccds"].values() for q in c.values()]
    return {"gains": [round(v, 4) for v in values if isinstance(v, (int, float))]}


BENCH = benchkit.Bench(test="PTC01", frames=276, cache="ptc01", read="pixels", extra=gains)

if __name__ == "__main__":
    BENCH.main_against_read(__doc__, lambda m: f"; gains {m['gains']}")
