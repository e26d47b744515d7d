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

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_bias01 import SERIALS, MemorySampler  # bench/: scripts run from bench/
from machine import cpu_model

TEST = "FOCUS00_800"
FRAMES = 27
CACHE_ROOT = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vison-bench"


def ensure_data(cache: Path, geometry_name: str) -> Path:
    """The cached day folder; simulated (seed 0) when missing or incomplete."""
    days = sorted(cache.glob("*/EXP_LOG_*.txt"))
    if days and len(list(days[0].parent.glob("EUC_*.fits"))) == FRAMES and (cache / "truths.json").is_file():
        return days[0].parent
    from engine.campaign.chamber import load_chamber
    from engine.formats.geometry import GEOMETRIES
    from engine.sim.elvis import SimulationRequest, simulate
    from engine.sim.records import Equipment

    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True)
    print(f"simulating a {geometry_name} {TEST} into {cache} (once) ...", flush=True)
    equipment = Equipment(sn_roe=SERIALS["roe"], sn_rpsu=SERIALS["rpsu"], sn_ccd1=SERIALS["ccd1"],
                          sn_ccd2=SERIALS["ccd2"], sn_ccd3=SERIALS["ccd3"])
    result = simulate(SimulationRequest(tests=(TEST,), out=cache, chamber=load_chamber("B_NOSTROMO"),
                                        geometry=GEOMETRIES[geometry_name], equipment=equipment, jobs=2))
    return result.day_folder


def read_all(day: Path) -> dict:
    """Every frame read whole once, one after the other."""
    from engine.formats.fits import read_frame

    started = time.perf_counter()
    pixels = 0
    for path in sorted(day.glob("EUC_*.fits")):
        with read_frame(path) as frame:
            pixels += int(frame.data.size)
    return {"read_s": time.perf_counter() - started, "pixels": pixels}


def measure(day: Path, jobs: int) -> dict:
    """The timed analysis, in its own process: one aim-mode run of FOCUS00_800, every sub-task."""
    from engine.campaign.config import campaign_from_dict
    from engine.pipeline.runner import PipelineRun, RunOptions
    from engine.tasks import registry

    results = Path(tempfile.mkdtemp(prefix="vison-bench-focus00-"))
    try:
        campaign = campaign_from_dict({
            "campaign": {"block": "NOSTROMO", "chamber": "B_NOSTROMO"}, "hardware": SERIALS,
            "paths": {"data": str(day.parent), "results": str(results)},
            "sessions": {"BENCH": {"day_folder": day.name, "tests": [TEST]}},
        }, base_dir=results, families=registry.campaign_schema())
        run = PipelineRun(campaign, RunOptions(session="BENCH", jobs=jobs))
        sampler = MemorySampler()
        sampler.start()
        started = time.perf_counter()
        run.run_aim()
        wall = time.perf_counter() - started
        sampler.stop()
        record = json.loads((results / "BENCH" / TEST / "result.json").read_text())
        return {
            "wall_s": wall, "done_at": time.time(),
            "peak_self_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "peak_worker_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
            "peak_total_mb": sampler.peak_kb / 1024,
            "timings_s": record["timings_s"], "errors": record["errors"], "flags": record["flags"],
            "best_focus_mm": record["values"].get("best_focus_mm"),
        }
    finally:
        shutil.rmtree(results, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--geometry", choices=("full", "medium", "small"), default="full")
    parser.add_argument("--cache", type=Path, default=None, help=f"data cache (default {CACHE_ROOT}/focus00-<geometry>)")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # internal: the timed analysis
    parser.add_argument("--read", type=Path, help=argparse.SUPPRESS)  # internal: the read-once floor
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.jobs)))
        return
    if args.read:
        print(json.dumps(read_all(args.read)))
        return
    day = ensure_data(args.cache or CACHE_ROOT / f"focus00-{args.geometry}", args.geometry)
    reading = subprocess.run([sys.executable, __file__, "--read", str(day)], check=True, stdout=subprocess.PIPE,
                             text=True, cwd=ROOT)
    read = json.loads(reading.stdout.strip().splitlines()[-1])
    started = time.time()  # process start: interpreter and imports count
    child = subprocess.run([sys.executable, __file__, "--measure", str(day), "--jobs", str(args.jobs)], check=True,
                           stdout=subprocess.PIPE, text=True, cwd=ROOT)
    m = json.loads(child.stdout.strip().splitlines()[-1])
    end_to_end = m["done_at"] - started
    size = sum(p.stat().st_size for p in day.glob("EUC_*.fits")) / 1e6
    subtasks = ", ".join(f"{name} {seconds:.2f}" for name, seconds in m["timings_s"].items())
    print(f"sub-task seconds: {subtasks}; errors {m['errors']}; flags {m['flags'] or 'none'}; "
          f"block best focus {m['best_focus_mm']} mm")
    print(f"read every frame once: {read['read_s']:.2f} s; analysis {m['wall_s']:.2f} s; process start to "
          f"result.json {end_to_end:.2f} s = {end_to_end / read['read_s']:.1f} x the read (aim <= 3x)")
    print(f"| {TEST} end to end (aim, all sub-tasks, {args.geometry}) | {FRAMES} FITS, {size:.0f} MB | "
          f"{end_to_end:.1f} s (read once {read['read_s']:.1f} s) | {m['peak_total_mb']:.0f} MB total "
          f"({m['peak_self_mb']:.0f} MB main, {m['peak_worker_mb']:.0f} MB largest worker) | {args.jobs} | "
          f"{os.cpu_count()} cores, {cpu_model()} |")


if __name__ == "__main__":
    main()
