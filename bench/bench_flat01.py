"""Benchmark: FLAT01 end to end (170 exposures x 3 CCDs = 510 FITS, ~9 GB at full size) next to the
time it takes to read every frame once, on the same machine in the same run, with peak memory.

The data are simulated once into a cache folder and reused while it holds a complete day folder.
Two fresh processes are timed from their start: one reads every frame's pixels once (the floor any
analysis pays), one runs FLAT01 in aim mode with every sub-task until its result.json is written.
Peak memory: the summed RSS of the analysis process and its workers (sampled every 20 ms).

Run: .venv/bin/python bench/bench_flat01.py [--jobs 2] [--cache DIR] [--small]
`--small` uses the small test geometry (seconds; checks the script, says nothing about speed).
The page cache is warm for both (the frames were just written or read): this compares the analysis
with a warm read, not the disk.
"""

from __future__ import annotations

import argparse
import json
import os
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
CACHE_ROOT = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vison-bench"
FRAMES = 170 * 3
TEST = "FLAT01"


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
    print(f"simulating {'a small' if small else 'a full-size'} {TEST} into {cache} (once) ...", flush=True)
    equipment = Equipment(sn_roe=SERIALS["roe"], sn_rpsu=SERIALS["rpsu"], sn_ccd1=SERIALS["ccd1"],
                          sn_ccd2=SERIALS["ccd2"], sn_ccd3=SERIALS["ccd3"])
    result = simulate(SimulationRequest(tests=(TEST,), out=cache, chamber=load_chamber("B_NOSTROMO"),
                                        geometry=SMALL if small else FULL, equipment=equipment, jobs=2))
    return result.day_folder


class MemorySampler(threading.Thread):
    """Peak of the summed RSS of a process and its descendants, from /proc."""

    def __init__(self, pid: int, interval: float = 0.02):
        super().__init__(daemon=True)
        self.pid, self.interval, self.peak_kb, self._done = pid, interval, 0, threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            self.peak_kb = max(self.peak_kb, sum(_rss_kb(p) for p in [self.pid, *_children(self.pid)]))
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


def read_all(day: Path) -> None:
    """Child: every frame's pixels read once, as the analyses read them (formats.fits)."""
    import numpy as np

    from engine.formats.fits import read_frame

    total = 0
    for path in sorted(day.glob("EUC_*.fits")):
        with read_frame(path) as frame:
            total += int(np.count_nonzero(frame.section() == 65535))
    print(json.dumps({"saturated": total}))


def analyse(day: Path, jobs: int, results: Path) -> None:
    """Child: one aim-mode run of FLAT01 with every sub-task."""
    from engine.campaign.config import campaign_from_dict
    from engine.pipeline.runner import PipelineRun, RunOptions
    from engine.tasks.registry import campaign_schema

    campaign = campaign_from_dict({
        "campaign": {"block": "NOSTROMO", "chamber": "B_NOSTROMO"}, "hardware": SERIALS,
        "paths": {"data": str(day.parent), "results": str(results)},
        "sessions": {"BENCH": {"day_folder": day.name, "tests": [TEST]}},
    }, base_dir=results, families=campaign_schema())
    PipelineRun(campaign, RunOptions(session="BENCH", jobs=jobs)).run_aim()


def timed(command: list[str]) -> tuple[float, float, str]:
    """(wall seconds from process start to exit, peak summed RSS MB, stdout)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    sampler = MemorySampler(process.pid)
    sampler.start()
    out, _ = process.communicate()
    wall = time.perf_counter() - started
    sampler.stop()
    if process.returncode:
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode})")
    return wall, sampler.peak_kb / 1024, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--cache", type=Path, help=f"data cache (default {CACHE_ROOT}/flat01-<size>)")
    parser.add_argument("--small", action="store_true", help="small geometry: a check of the script, not a benchmark")
    parser.add_argument("--read", type=Path, help=argparse.SUPPRESS)  # internal: the read-once child
    parser.add_argument("--analyse", nargs=2, type=Path, help=argparse.SUPPRESS)  # internal: the analysis child
    args = parser.parse_args()
    if args.read:
        read_all(args.read)
        return
    if args.analyse:
        analyse(args.analyse[0], args.jobs, args.analyse[1])
        return
    cache = args.cache or CACHE_ROOT / f"flat01-{'small' if args.small else 'full'}"
    day = ensure_data(cache, args.small)
    size = sum(p.stat().st_size for p in day.glob("EUC_*.fits")) / 1e6
    read_s, read_mb, _ = timed([sys.executable, __file__, "--read", str(day)])
    results = Path(tempfile.mkdtemp(prefix="vison-bench-flat01-"))
    try:
        wall_s, peak_mb, _ = timed([sys.executable, __file__, "--analyse", str(day), str(results),
                                    "--jobs", str(args.jobs)])
        record = json.loads((results / "BENCH" / TEST / "result.json").read_text())
    finally:
        shutil.rmtree(results, ignore_errors=True)
    subtasks = ", ".join(f"{name} {seconds:.1f}" for name, seconds in record["timings_s"].items())
    print(f"sub-task seconds: {subtasks}; errors {record['errors']}; flags {record['flags'] or 'none'}")
    print(f"| {TEST} end to end (aim, all sub-tasks){' [small geometry]' * args.small} | {FRAMES} FITS, "
          f"{size:.0f} MB | {wall_s:.1f} s | read once {read_s:.1f} s ({wall_s / read_s:.1f}x) | "
          f"{peak_mb:.0f} MB peak (read: {read_mb:.0f} MB) | {args.jobs} | {os.cpu_count()} cores, {cpu_model()} |")


if __name__ == "__main__":
    main()
