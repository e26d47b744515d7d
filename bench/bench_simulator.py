"""Benchmark: write a full-size simulated BIAS01 (10 exposures x 3 CCDs = 30 FITS) and report
wall time and peak memory. Run: .venv/bin/python bench/bench_simulator.py [--jobs 2] [--tests BIAS01]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

from machine import cpu_model  # bench/machine.py (scripts run from bench/)
from engine.campaign.chamber import load_chamber
from engine.sim.elvis import SimulationRequest, simulate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--tests", default="BIAS01")
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="vison-bench-sim-"))
    try:
        started = time.perf_counter()
        result = simulate(SimulationRequest(tests=tuple(args.tests.split(",")), out=out,
                                            chamber=load_chamber("B_NOSTROMO"), jobs=args.jobs))
        wall = time.perf_counter() - started
        files = list(result.day_folder.glob("*.fits"))
        size = sum(p.stat().st_size for p in files) / 1e6
        peak_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        peak_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"| simulate {args.tests} full size | {len(files)} FITS ({size:.0f} MB) | {wall:.1f} s | "
              f"peak {peak_self:.0f} MB main, {peak_children:.0f} MB largest worker | jobs {args.jobs} | "
              f"{os.cpu_count()} cores, {cpu_model()} |")
    finally:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
