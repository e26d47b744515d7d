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

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_bias01 import SERIALS, MemorySampler  # bench/: scripts run from here
from machine import cpu_model

CACHE_ROOT = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vison-bench"
FRAMES = 276


def ensure_data(cache: Path, small: bool) -> Path:
    days = sorted(cache.glob("*/EXP_LOG_*.txt"))
    if days and len(list(days[0].parent.glob("EUC_*.fits"))) == FRAMES and (cache / "truths.json").is_file():
        return days[0].parent
    from engine.campaign.chamber import load_chamber
    from engine.formats.geometry import FULL, SMALL
    from engine.sim.elvis import SimulationRequest, simulate
    from engine.sim.records import Equipment

    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True)
    print(f"simulating a {'small' if small else 'full-size'} PTC01 into {cache} (once) ...", flush=True)
    equipment = Equipment(sn_roe=SERIALS["roe"], sn_rpsu=SERIALS["rpsu"], sn_ccd1=SERIALS["ccd1"],
                          sn_ccd2=SERIALS["ccd2"], sn_ccd3=SERIALS["ccd3"])
    result = simulate(SimulationRequest(tests=("PTC01",), out=cache, chamber=load_chamber("B_NOSTROMO"),
                                        geometry=SMALL if small else FULL, equipment=equipment, jobs=2))
    return result.day_folder


def analyse(day: Path, jobs: int, results: Path) -> dict:
    """The timed child: one aim-mode run of PTC01 with every sub-task; peak memory sampled."""
    from engine.campaign.config import campaign_from_dict
    from engine.pipeline.runner import PipelineRun, RunOptions

    sampler = MemorySampler()
    sampler.start()
    campaign = campaign_from_dict({
        "campaign": {"block": "NOSTROMO", "chamber": "B_NOSTROMO"}, "hardware": SERIALS,
        "paths": {"data": str(day.parent), "results": str(results)},
        "sessions": {"BENCH": {"day_folder": day.name, "tests": ["PTC01"]}},
    }, base_dir=results)
    PipelineRun(campaign, RunOptions(session="BENCH", jobs=jobs)).run_aim()
    sampler.stop()
    record = json.loads((results / "BENCH" / "PTC01" / "result.json").read_text())
    return {"peak_total_mb": sampler.peak_kb / 1024, "timings_s": record["timings_s"], "errors": record["errors"],
            "flags": record["flags"]}


def read_all(day: Path) -> dict:
    """The reference child: every frame opened and all its pixels read once."""
    from engine.formats.fits import read_frame

    total = 0
    for path in sorted(day.glob("EUC_*.fits")):
        with read_frame(path) as frame:
            total += int(frame.data.size)
    return {"pixels": total}


def timed_child(*arguments: str) -> tuple[float, dict]:
    started = time.perf_counter()
    child = subprocess.run([sys.executable, __file__, *arguments], check=True, stdout=subprocess.PIPE, text=True,
                           cwd=ROOT)
    return time.perf_counter() - started, json.loads(child.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--small", action="store_true", help="small test geometry: checks the script in seconds")
    parser.add_argument("--cache", type=Path, help="data cache (default under ~/.cache/vison-bench)")
    parser.add_argument("--analyse", type=Path, help=argparse.SUPPRESS)  # internal: the timed children
    parser.add_argument("--read", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--results", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.analyse:
        print(json.dumps(analyse(args.analyse, args.jobs, args.results)))
        return
    if args.read:
        print(json.dumps(read_all(args.read)))
        return
    cache = args.cache or CACHE_ROOT / ("ptc01-small" if args.small else "ptc01-full")
    day = ensure_data(cache, args.small)
    size = sum(p.stat().st_size for p in day.glob("EUC_*.fits")) / 1e9
    read_s, _ = timed_child("--read", str(day))
    results = Path(tempfile.mkdtemp(prefix="vison-bench-ptc01-"))
    try:
        wall_s, m = timed_child("--analyse", str(day), "--jobs", str(args.jobs), "--results", str(results))
    finally:
        shutil.rmtree(results, ignore_errors=True)
    subtasks = ", ".join(f"{name} {seconds:.1f}" for name, seconds in m["timings_s"].items())
    print(f"sub-task seconds: {subtasks}; errors {m['errors']}; flags {m['flags'] or 'none'}")
    print("| test | data | end to end | read every frame once | ratio | peak memory | jobs | machine |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| PTC01{' (small)' if args.small else ''} | {FRAMES} FITS, {size:.2f} GB | {wall_s:.1f} s | {read_s:.1f} s | "
          f"{wall_s / read_s:.2f} | {m['peak_total_mb']:.0f} MB | {args.jobs} | {cpu_model()} |")


if __name__ == "__main__":
    main()
