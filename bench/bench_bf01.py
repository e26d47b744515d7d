"""Benchmark: BF01 end to end on PTC01's frames (BF01 has no acquisition of its own: the catalogue
makes it a surrogate of PTC01, so a session listing BF01 on a PTC01 day folder analyses PTC01's
92 exposures x 3 CCDs = 276 FITS, ~9.7 GB at full size), next to the time to read every frame once,
on the same machine in the same run, and the peak memory.

Each round, back to back, in fresh processes timed from their start:
- read once: every frame's pixels read once (what any analysis must at least do);
- end to end: BF01 analysed in aim mode with every sub-task until its result.json is written and
  read back. Alone in its results folder, it finds no PTC01 gain and goes on with the nominal one
  (flag MISSCALPROD): the covariances, the work timed here, do not depend on the gain;
- peak memory and the load average, as bench_ptc01.py.

The data are PTC01's cached day folder (bench_ptc01.py's, simulated once as PTC01 when missing:
BF01 itself cannot be simulated). The page cache is warm: this times the analysis, not the disk.
Run: .venv/bin/python bench/bench_bf01.py [--jobs 2] [--repeat 2] [--small]
"""

from __future__ import annotations

import argparse

import benchkit  # bench/benchkit.py: scripts run from bench/


def correlations(record: dict) -> dict:
    values = [q.get("nn_corr_serial_ref") for c in record["ccds"].values() for q in c.values()]
    return {"nn_serial": [round(v, 4) for v in values if isinstance(v, (int, float))]}


BENCH = benchkit.Bench(test="BF01", frames=276, cache="ptc01", read="pixels", extra=correlations)


def ensure_ptc01_day() -> None:
    """PTC01's day folder in the cache BF01 reads (simulated as PTC01 if missing), so that the
    Bench never tries to simulate BF01. Not in the timed children."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--geometry", default="full")
    parser.add_argument("--cache")
    parser.add_argument("--measure")
    parser.add_argument("--read")
    args, _ = parser.parse_known_args()
    if args.measure or args.read:
        return
    geometry = "small" if args.small else args.geometry
    cache = benchkit.Path(args.cache) if args.cache else BENCH.cache_for(geometry)
    benchkit.ensure_data(cache, "PTC01", BENCH.frames, geometry)


if __name__ == "__main__":
    ensure_ptc01_day()
    BENCH.main_against_read(__doc__, lambda m: f"; serial nn correlations {m['nn_serial']}")
