"""Benchmark: FOCUS00_800 end to end (9 exposures x 3 CCDs = 27 FITS, ~950 MB at full size) next to
the time to read every frame once, on the same machine in the same run.

The data are simulated once into a cache folder (per geometry) and reused. Then, each round, back
to back, in fresh processes timed from their start: (1) every frame read whole once (the floor any
analysis pays), (2) the analysis (aim mode, every sub-task of FOCUS00: lock, check, basic, meta,
report; `--jobs`) until its result.json is read back, with peak memory (summed RSS of the process
and its workers, sampled every 20 ms), each sub-task's time and the load average before and after.
The aim of issue 13: end to end <= 3x the read time.

Run: .venv/bin/python bench/bench_focus00.py [--geometry full|medium|small] [--jobs 2] [--repeat 2] [--profile]
The page cache is warm (the frames were just written or read): this times the analysis, not the disk.
"""

from __future__ import annotations

import benchkit  # bench/benchkit.py: scripts run from bench/


def best_focus(record: dict) -> dict:
    return {"best_focus_mm": record["values"].get("best_focus_mm")}


BENCH = benchkit.Bench(test="FOCUS00_800", frames=27, cache="focus00", read="pixels", families=True, extra=best_focus)

if __name__ == "__main__":
    BENCH.main_against_read(__doc__, lambda m: f"; block best focus {m['best_focus_mm']} mm",
                            geometries=("full", "medium", "small"))
