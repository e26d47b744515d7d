"""Benchmark: FLAT01 end to end (170 exposures x 3 CCDs = 510 FITS, 18 GB at full size:
more than the page cache of a 24 GB machine holds, so both read from the disk) next to the
time it takes to read every frame once, on the same machine in the same run, with peak memory.

The data are simulated once into a cache folder and reused while it holds a complete day folder.
Each round, back to back, two fresh processes are timed from their start: one reads every frame's
pixels once (each compared with the ADC ceiling: the floor any analysis pays), one runs FLAT01 in
aim mode with every sub-task until its result.json is read back. Peak memory: the summed RSS of the
analysis process and its workers (sampled every 20 ms); the load average before and after; per
column the PRNU and the master flats' noise, means over the quadrants (to set versions side by side).

Run: .venv/bin/python bench/bench_flat01.py [--jobs 2] [--repeat 2] [--cache DIR] [--small] [--profile]
`--small` uses the small test geometry (seconds; checks the script, says nothing about speed).
The page cache is warm for both when the frames fit in it (they were just written or read): this compares the analysis
with a warm read, not the disk.
"""

from __future__ import annotations

import benchkit  # bench/benchkit.py: scripts run from bench/


def column_figures(record: dict) -> dict:
    """Per column, over the 12 quadrants: mean PRNU and mean master-flat noise (%), so a run's
    numbers can be set beside another's (the combination changed: the noise, not the PRNU)."""
    quadrants = [q for c in record["ccds"].values() for q in c.values() if "prnu_pct" in q]

    def mean(key: str) -> list[float]:
        lists = [q[key] for q in quadrants]
        return [round(sum(v[i] for v in lists) / len(lists), 4) for i in range(len(lists[0]))] if lists else []

    return {"prnu_pct": mean("prnu_pct"), "noise_pct": mean("flat_noise_pct")}


def note(m: dict) -> str:
    return f"; per column, mean over quadrants: PRNU {m['prnu_pct']} %, master noise {m['noise_pct']} %"


BENCH = benchkit.Bench(test="FLAT01", frames=170 * 3, cache="flat01", read="saturated", families=True,
                       extra=column_figures)

if __name__ == "__main__":
    BENCH.main_against_read(__doc__, note)
