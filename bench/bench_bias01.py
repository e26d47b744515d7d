"""Benchmark: the full analysis of a full-size BIAS01 (10 exposures x 3 CCDs = 30 FITS, 1 GB).

The data are simulated once into a cache folder and reused while it holds a complete day folder.
The analysis (aim mode, every sub-task of BIAS01, `--jobs`) then runs in a fresh process, so its
peak memory is its own: wall seconds, peak RSS of the main process, of the largest worker, and
of all of them together (sampled from /proc every 20 ms), plus each sub-task's time.

Run: .venv/bin/python bench/bench_bias01.py [--jobs 2] [--cache DIR] [--profile]
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
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine import cpu_model  # bench/machine.py: scripts run from bench/

SERIALS = {"roe": "FM14", "rpsu": "FM14", "ccd1": "14888-88-81", "ccd2": "14888-88-82", "ccd3": "14888-88-83"}
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vison-bench" / "bias01-full"
FRAMES = 30


def ensure_data(cache: Path) -> Path:
    """The cached day folder; simulated (full size, seed 0) when missing or incomplete."""
    days = sorted(cache.glob("*/EXP_LOG_*.txt"))
    if days and len(list(days[0].parent.glob("EUC_*.fits"))) == FRAMES and (cache / "truths.json").is_file():
        return days[0].parent
    from engine.campaign.chamber import load_chamber
    from engine.sim.elvis import SimulationRequest, simulate
    from engine.sim.records import Equipment

    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True)
    print(f"simulating a full-size BIAS01 into {cache} (once) ...", flush=True)
    equipment = Equipment(sn_roe=SERIALS["roe"], sn_rpsu=SERIALS["rpsu"], sn_ccd1=SERIALS["ccd1"],
                          sn_ccd2=SERIALS["ccd2"], sn_ccd3=SERIALS["ccd3"])
    result = simulate(SimulationRequest(tests=("BIAS01",), out=cache, chamber=load_chamber("B_NOSTROMO"),
                                        equipment=equipment, jobs=2))
    return result.day_folder


class MemorySampler(threading.Thread):
    """Peak of the summed RSS of this process and its children (workers), from /proc."""

    def __init__(self, interval: float = 0.02):
        super().__init__(daemon=True)
        self.interval, self.peak_kb, self._done = interval, 0, threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            self.peak_kb = max(self.peak_kb, sum(_rss_kb(pid) for pid in [os.getpid(), *_children(os.getpid())]))
            time.sleep(self.interval)

    def stop(self) -> None:
        self._done.set()
        self.join()


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return found + [g for c in found for g in _children(c)]


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def measure(day: Path, jobs: int, profile: bool) -> dict:
    """The timed part, run in its own process: one aim-mode run of BIAS01 with every sub-task."""
    from engine.campaign.config import campaign_from_dict
    from engine.pipeline.runner import PipelineRun, RunOptions

    results = Path(tempfile.mkdtemp(prefix="vison-bench-bias01-"))
    try:
        campaign = campaign_from_dict({
            "campaign": {"block": "NOSTROMO", "chamber": "B_NOSTROMO"}, "hardware": SERIALS,
            "paths": {"data": str(day.parent), "results": str(results)},
            "sessions": {"BENCH": {"day_folder": day.name, "tests": ["BIAS01"]}},
        }, base_dir=results)
        run = PipelineRun(campaign, RunOptions(session="BENCH", jobs=jobs))
        sampler = MemorySampler()
        sampler.start()
        started = time.perf_counter()
        if profile:
            import cProfile
            import pstats

            profiler = cProfile.Profile()
            profiler.runcall(run.run_aim)
            pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(25)
        else:
            run.run_aim()
        wall = time.perf_counter() - started
        sampler.stop()
        record = json.loads((results / "BENCH" / "BIAS01" / "result.json").read_text())
        return {
            "wall_s": wall,
            "peak_self_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "peak_worker_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
            "peak_total_mb": sampler.peak_kb / 1024,
            "timings_s": record["timings_s"], "errors": record["errors"], "flags": record["flags"],
        }
    finally:
        shutil.rmtree(results, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"data cache (default {DEFAULT_CACHE})")
    parser.add_argument("--profile", action="store_true", help="cProfile the analysis (to stderr); times are inflated")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # internal: the timed child process
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.jobs, args.profile)))
        return
    day = ensure_data(args.cache)
    command = [sys.executable, __file__, "--measure", str(day), "--jobs", str(args.jobs)]
    if args.profile:
        command.append("--profile")
    child = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    m = json.loads(child.stdout.strip().splitlines()[-1])
    size = sum(p.stat().st_size for p in day.glob("EUC_*.fits")) / 1e6
    subtasks = ", ".join(f"{name} {seconds:.1f}" for name, seconds in m["timings_s"].items())
    print(f"sub-task seconds: {subtasks}; errors {m['errors']}; flags {m['flags'] or 'none'}")
    print(f"| BIAS01 full analysis (aim, all sub-tasks) | {FRAMES} FITS, {size:.0f} MB | {m['wall_s']:.1f} s | "
          f"{m['peak_total_mb']:.0f} MB total ({m['peak_self_mb']:.0f} MB main, {m['peak_worker_mb']:.0f} MB largest "
          f"worker) | {args.jobs} | {os.cpu_count()} cores, {cpu_model()} |")


if __name__ == "__main__":
    main()
