"""Benchmark: the full analysis of a full-size CHINJ01 (36 exposures x 3 CCDs = 108 FITS, 3.8 GB)
next to the time to read every frame once, in the same run on the same machine.

The data are simulated once into a cache folder and reused while it holds a complete day folder.
Then, each in a fresh process: (1) every frame read once (each quadrant's pixels copied out of
the memory map, as the analyses read them), (2) the analysis (aim mode, every sub-task of
CHINJ01, `--jobs`), timed from process start to result.json, with its peak memory (summed RSS of
the process and its workers, sampled from /proc every 20 ms) and each sub-task's time.

Run: .venv/bin/python bench/bench_chinj01.py [--jobs 2] [--cache DIR] [--small]
`--small` uses the small test geometry (a quick check that the script works, not a benchmark).
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

STARTED = time.perf_counter()  # process start, as near as the script can see it
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine import cpu_model  # bench/machine.py: scripts run from bench/

SERIALS = {"roe": "FM14", "rpsu": "FM14", "ccd1": "14888-88-81", "ccd2": "14888-88-82", "ccd3": "14888-88-83"}
CACHE_ROOT = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vison-bench"
TEST = "CHINJ01"
FRAMES = 108


def ensure_data(cache: Path, small: bool) -> Path:
    """The cached day folder; simulated (seed 0) when missing or incomplete."""
    days = sorted(cache.glob("*/EXP_LOG_*.txt"))
    if days and len(list(days[0].parent.glob("EUC_*.fits"))) == FRAMES and (cache / "truths.json").is_file():
        return days[0].parent
    from engine.campaign.chamber import load_chamber
    from engine.formats.geometry import FULL, SMALL
    from engine.sim.elvis import SimulationRequest, simulate
    from engine.sim.records import Equipment

    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True)
    print(f"simulating a {'small' if small else 'full-size'} {TEST} into {cache} (once) ...", flush=True)
    equipment = Equipment(sn_roe=SERIALS["roe"], sn_rpsu=SERIALS["rpsu"], sn_ccd1=SERIALS["ccd1"],
                          sn_ccd2=SERIALS["ccd2"], sn_ccd3=SERIALS["ccd3"])
    result = simulate(SimulationRequest(tests=(TEST,), out=cache, chamber=load_chamber("B_NOSTROMO"),
                                        geometry=SMALL if small else FULL, equipment=equipment, jobs=2))
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


def read_all(day: Path) -> dict:
    """Every frame opened once, each quadrant's pixels copied out (what an analysis reads)."""
    from engine.formats.fits import read_frame
    from engine.formats.geometry import QUADRANTS

    checksum = 0
    for path in sorted(day.glob("EUC_*.fits")):
        with read_frame(path) as frame:
            for q in QUADRANTS:
                checksum += int(frame.quadrant(q, canonical=False)[0, 0])
    return {"wall_s": time.perf_counter() - STARTED, "checksum": checksum}


def measure(day: Path, jobs: int) -> dict:
    """The timed part, in its own process: one aim-mode run of CHINJ01 with every sub-task."""
    from engine.campaign.config import campaign_from_dict
    from engine.pipeline.runner import PipelineRun, RunOptions

    results = Path(tempfile.mkdtemp(prefix="vison-bench-chinj01-"))
    try:
        campaign = campaign_from_dict({
            "campaign": {"block": "NOSTROMO", "chamber": "B_NOSTROMO"}, "hardware": SERIALS,
            "paths": {"data": str(day.parent), "results": str(results)},
            "sessions": {"BENCH": {"day_folder": day.name, "tests": [TEST]}},
        }, base_dir=results)
        sampler = MemorySampler()
        sampler.start()
        PipelineRun(campaign, RunOptions(session="BENCH", jobs=jobs)).run_aim()
        record = json.loads((results / "BENCH" / TEST / "result.json").read_text())
        wall = time.perf_counter() - STARTED  # process start to result.json
        sampler.stop()
        thresholds = [q.get("ig1_threshold_v") for c in record["ccds"].values() for q in c.values()]
        return {
            "wall_s": wall,
            "peak_self_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "peak_worker_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
            "peak_total_mb": sampler.peak_kb / 1024,
            "timings_s": record["timings_s"], "errors": record["errors"], "flags": record["flags"],
            "fitted": sum(1 for t in thresholds if isinstance(t, (int, float))),
        }
    finally:
        shutil.rmtree(results, ignore_errors=True)


def _child(*args: str) -> dict:
    done = subprocess.run([sys.executable, __file__, *args], check=True, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--cache", type=Path, help=f"data cache (default {CACHE_ROOT}/chinj01-full or chinj01-small)")
    parser.add_argument("--small", action="store_true", help="small geometry: checks the script, times nothing useful")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # internal: the timed analysis
    parser.add_argument("--read", type=Path, help=argparse.SUPPRESS)  # internal: the timed read
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.jobs)))
        return
    if args.read:
        print(json.dumps(read_all(args.read)))
        return
    cache = args.cache or CACHE_ROOT / ("chinj01-small" if args.small else "chinj01-full")
    day = ensure_data(cache, args.small)
    read = _child("--read", str(day))
    m = _child("--measure", str(day), "--jobs", str(args.jobs))
    size = sum(p.stat().st_size for p in day.glob("EUC_*.fits")) / 1e6
    subtasks = ", ".join(f"{name} {seconds:.1f}" for name, seconds in m["timings_s"].items())
    print(f"sub-task seconds: {subtasks}; errors {m['errors']}; flags {m['flags'] or 'none'}; "
          f"quadrants fitted {m['fitted']}/12")
    print(f"| {TEST} full analysis (aim, all sub-tasks){' [small geometry]' * args.small} | {FRAMES} FITS, "
          f"{size:.0f} MB | {m['wall_s']:.1f} s | read once {read['wall_s']:.1f} s (x{m['wall_s'] / read['wall_s']:.1f}) | "
          f"{m['peak_total_mb']:.0f} MB total ({m['peak_self_mb']:.0f} MB main, {m['peak_worker_mb']:.0f} MB largest "
          f"worker) | {args.jobs} | {os.cpu_count()} cores, {cpu_model()} |")


if __name__ == "__main__":
    main()
