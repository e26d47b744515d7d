"""What the analysis benchmarks in bench/ share: a simulated day folder cached per test and geometry,
the timed child processes (every frame read once; one aim-mode run of a test until its result.json),
peak memory (summed RSS of a process and its workers, sampled from /proc every 20 ms) and the machine.

A benchmark script declares its `Bench` (the test, its frame count, its cache folder, how the read
child reads a frame, what else of result.json it reports), calls `Bench.serve_child(args)` first
(the script runs itself as the timed children) and prints its own lines.
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

STARTED = time.perf_counter()  # process start, as near as a bench script can see it (it imports benchkit first)
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine import cpu_model  # bench/machine.py: scripts run from bench/
from engine.process import descendants

SERIALS = {"roe": "FM14", "rpsu": "FM14", "ccd1": "14888-88-81", "ccd2": "14888-88-82", "ccd3": "14888-88-83"}
CACHE_ROOT = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vison-bench"


def machine() -> str:
    return f"{os.cpu_count()} cores, {cpu_model()}"


# ---------------------------------------------------------------------------------------------
# The data
# ---------------------------------------------------------------------------------------------

def simulate_day(out: Path, test: str, geometry: str = "full") -> Path:
    """A simulated day folder of `test` (seed 0) in `out`: its path."""
    from engine.campaign.chamber import load_chamber
    from engine.formats.geometry import GEOMETRIES
    from engine.sim.elvis import SimulationRequest, simulate
    from engine.sim.records import Equipment

    equipment = Equipment(sn_roe=SERIALS["roe"], sn_rpsu=SERIALS["rpsu"], sn_ccd1=SERIALS["ccd1"],
                          sn_ccd2=SERIALS["ccd2"], sn_ccd3=SERIALS["ccd3"])
    return simulate(SimulationRequest(tests=(test,), out=out, chamber=load_chamber("B_NOSTROMO"),
                                      geometry=GEOMETRIES[geometry], equipment=equipment, jobs=2)).day_folder


def ensure_data(cache: Path, test: str, frames: int, geometry: str = "full", described: str | None = None) -> Path:
    """The cached day folder; simulated (seed 0) when missing or incomplete. `described`: how the
    progress line names the geometry (default "full-size" or the geometry's name)."""
    import fcntl

    ensure_bytecode()
    cache.parent.mkdir(parents=True, exist_ok=True)
    # one simulation at a time per cache: another bench finding the folder half-written waits for
    # it (an incomplete folder was deleted under the process still writing it)
    with open(cache.parent / f".{cache.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        days = sorted(cache.glob("*/EXP_LOG_*.txt"))
        if days and len(frames_of(days[0].parent)) == frames and (cache / "truths.json").is_file():
            return days[0].parent
        shutil.rmtree(cache, ignore_errors=True)
        cache.mkdir(parents=True)
        described = described or ("full-size" if geometry == "full" else geometry)
        print(f"simulating a {described} {test} into {cache} (once) ...", flush=True)
        return simulate_day(cache, test, geometry)


def ensure_bytecode() -> None:
    """Write the bytecode of vison's modules, as Python does on a user's first run: a machine
    with PYTHONDONTWRITEBYTECODE set (this one) otherwise compiles the engine from source in
    every process of every run (about 0.2 s of CPU in the run's process and in its fork server),
    a cost the benches would count and a user does not pay."""
    import compileall

    for package in ("engine", "vison_tui"):
        compileall.compile_dir(str(ROOT / package), quiet=1)


def frames_of(day: Path) -> list[Path]:
    return sorted(day.glob("EUC_*.fits"))


def size_of(day: Path) -> int:
    """Bytes of the day's frames."""
    return sum(p.stat().st_size for p in frames_of(day))


# ---------------------------------------------------------------------------------------------
# Peak memory
# ---------------------------------------------------------------------------------------------

PSS_EVERY = 10  # MemorySampler ticks between reads of PSS (0.2 s: the peaks last seconds)


class MemorySampler(threading.Thread):
    """Peak of the summed RSS of a process (default this one) and its descendants, from /proc."""

    def __init__(self, pid: int | None = None, interval: float = 0.02):
        super().__init__(daemon=True)
        self.pid = os.getpid() if pid is None else pid
        self.interval, self.peak_kb, self._done = interval, 0, threading.Event()
        self._ticks: dict[int, int] = {}  # pid -> CPU clock ticks (user + system) last seen
        # RSS counts a page shared by n processes (the fork server's modules, the workers' copies of
        # them) n times; PSS counts 1/n in each: its sum is the memory the run really holds
        self.peak_pss_kb = 0
        self.peak_root_kb = 0  # the process itself (the run's main process), without its workers

    def run(self) -> None:
        tick = 0
        while not self._done.is_set():
            pids = [self.pid, *descendants(self.pid)]
            each = [_rss_kb(p) for p in pids]
            rss = sum(each)
            self.peak_root_kb = max(self.peak_root_kb, each[0])
            # PSS (smaps_rollup walks each process's page tables: 1-2 ms for a worker mapping its
            # frames) read at every tick took a fifth of a core from the run measured
            if tick % PSS_EVERY == 0:
                self.peak_pss_kb = max(self.peak_pss_kb, sum(_pss_kb(p) for p in pids))
            self.peak_kb = max(self.peak_kb, rss)
            for p in pids:
                self._ticks[p] = max(self._ticks.get(p, 0), _cpu_ticks(p))
            tick += 1
            time.sleep(self.interval)

    @property
    def cpu_s(self) -> float:
        """CPU seconds (user + system) of the process and its descendants, as last sampled: the
        work done, which other sessions' load changes much less than the wall time."""
        return sum(self._ticks.values()) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self._done.set()
        self.join()


def _cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    except (OSError, IndexError, ValueError):
        return 0


def _pss_kb(pid: int) -> int:
    return _proc_kb(pid, "smaps_rollup", "Pss:")


def _rss_kb(pid: int) -> int:
    return _proc_kb(pid, "status", "VmRSS:")


def _proc_kb(pid: int, file: str, key: str) -> int:
    """A kB figure of /proc/<pid>/<file> (0 once the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/{file}").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


# ---------------------------------------------------------------------------------------------
# The timed children (run in the script's own process, started with an internal option)
# ---------------------------------------------------------------------------------------------

def read_all(day: Path, how: str) -> dict:
    """Every frame opened once and read `how`: "quadrants" (each quadrant's pixels copied out of the
    memory map, as the analyses read them), "pixels" (the whole frame), "saturated" (every pixel
    compared with 65535). `wall_s`: since the process start; `read_s`: the reading alone."""
    import numpy as np

    from engine.formats.fits import read_frame
    from engine.formats.geometry import QUADRANTS

    started, total = time.perf_counter(), 0
    for path in frames_of(day):
        with read_frame(path) as frame:
            if how == "quadrants":
                total += sum(int(frame.quadrant(q, canonical=False)[0, 0]) for q in QUADRANTS)
            elif how == "pixels":
                total += int(frame.data.size)
            else:
                total += int(np.count_nonzero(frame.section() == 65535))
    done = time.perf_counter()
    own = resource.getrusage(resource.RUSAGE_SELF)
    return {"wall_s": done - STARTED, "read_s": done - started, {"quadrants": "checksum"}.get(how, how): total,
            "cpu_s": own.ru_utime + own.ru_stime}


def _limit_unit(paths: list[str], quadrant: str, target: str, offsets_at: dict) -> float:
    """One (CCD, quadrant) of the read-and-stack limit: prescan statistics of each frame (its offset),
    then the per-pixel median of the offset-subtracted frames band by band, written into the target."""
    import numpy as np

    from engine.formats.fits import read_frame
    from engine.formats.geometry import QUADRANTS  # noqa: F401
    from engine.tasks.stacking import band_rows_for, quadrant_bands, sort_frames
    from engine.tasks.stats import region_stats

    frames = [read_frame(p) for p in paths]
    try:
        geometry = frames[0].geometry
        offsets = np.array([region_stats(f.region(quadrant, "prescan", geometry)).clipped_mean for f in frames],
                           np.float32)[:, None, None]
        out = np.memmap(target, dtype=">f4", mode="r+", offset=offsets_at["STACK"], shape=geometry.shape)
        n = len(frames)
        for band in quadrant_bands(geometry, quadrant, band_rows_for(n, geometry)):
            cube = np.stack([f.section(band.frame_rows, band.cols) for f in frames]).astype(np.float32)
            cube -= offsets
            sort_frames(cube)
            out[band.frame_rows, band.cols] = cube[n // 2] if n % 2 else (cube[n // 2 - 1] + cube[n // 2]) * 0.5
        out.flush()
        del out
    finally:
        for f in frames:
            f.close()
    return float(offsets.mean())


def read_and_stack(day: Path, jobs: int) -> dict:
    """The read-and-stack limit of a test's analysis: every frame read once (one unit per CCD and
    quadrant on `jobs` processes), the prescan statistics of each quadrant (its offset), the
    per-pixel median of each CCD's offset-subtracted frames (a master) written as a float32 FITS.
    `wall_s`: since the process start."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from astropy.io import fits

    from engine.formats.fits import read_frame
    from engine.formats.geometry import QUADRANTS
    from engine.tasks.stacking import allocate_fits

    by_ccd: dict[str, list[str]] = {}
    for path in frames_of(day):
        by_ccd.setdefault(path.stem.rsplit("_", 1)[-1], []).append(str(path))
    with read_frame(next(iter(by_ccd.values()))[0]) as first:
        shape = first.geometry.shape
    out = Path(tempfile.mkdtemp(prefix="vison-bench-limit-"))
    try:
        calls = []
        for ccd, paths in sorted(by_ccd.items()):
            target = out / f"MASTER_{ccd}.fits"
            offsets = allocate_fits(target, fits.Header(), ("STACK",), shape)
            calls += [(paths, q, str(target), offsets) for q in QUADRANTS]
        with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("fork")) as pool:
            list(pool.map(_limit_unit, *zip(*calls)))
        written = sum(p.stat().st_size for p in out.iterdir())
    finally:
        shutil.rmtree(out, ignore_errors=True)
    own, workers = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = own.ru_utime + own.ru_stime + workers.ru_utime + workers.ru_stime  # the pool's workers were joined
    return {"wall_s": time.perf_counter() - STARTED, "masters": len(by_ccd), "written_mb": written / 1e6,
            "cpu_s": cpu_s}


def campaign_toml(day: Path, results: Path, test: str) -> str:
    """A campaign file for `test` on `day`, results in `results` (as a user writes one)."""
    hardware = "\n".join(f'{key} = "{value}"' for key, value in SERIALS.items())
    return (f'[campaign]\nblock = "NOSTROMO"\nchamber = "B_NOSTROMO"\n\n[hardware]\n{hardware}\n\n'
            f'[paths]\ndata = "{day.parent}"\nresults = "{results}"\n\n'
            f'[sessions.BENCH]\nday_folder = "{day.name}"\ntests = ["{test}"]\n')


def run_as_user(day: Path, test: str, results: Path | None = None, jobs: int | None = None,
                extra: Callable[[dict], dict] | None = None) -> dict:
    """`vison-engine run CAMPAIGN --session BENCH` as a user types it (default jobs, else `--jobs`),
    timed from the process start to its result.json (`end_s`, from the file's mtime) and to the
    exit (`exit_s`); peak summed RSS and PSS of the process and its workers, and of the process
    alone; CPU seconds of them all; the result's timings (and `extra(record)`); the results
    folder's size."""
    folder = results or Path(tempfile.mkdtemp(prefix=f"vison-bench-user-{test.lower()}-"))
    try:
        config = folder / "campaign.toml"
        config.write_text(campaign_toml(day, folder / "results", test))
        command = [str(Path(sys.executable).with_name("vison-engine")), "run", str(config), "--session", "BENCH",
                   *(("--jobs", str(jobs)) if jobs else ())]
        started_at = time.time()
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=folder)
        sampler = MemorySampler(process.pid)
        sampler.start()
        out, _ = process.communicate()
        exit_s = time.perf_counter() - started
        sampler.stop()
        result = folder / "results" / "BENCH" / test / "result.json"
        if process.returncode or not result.is_file():
            raise RuntimeError(f"vison-engine run failed ({process.returncode}):\n{out[-3000:]}")
        record = json.loads(result.read_text())
        test_folder = result.parent
        size = sum(p.stat().st_size for p in test_folder.rglob("*") if p.is_file())
        products = {p.name: p.stat().st_size for p in sorted((test_folder / "products").glob("*")) if p.is_file()}
        return {"end_s": result.stat().st_mtime - started_at, "exit_s": exit_s, "peak_total_mb": sampler.peak_kb / 1024,
                "cpu_s": sampler.cpu_s, "peak_pss_mb": sampler.peak_pss_kb / 1024,
                "peak_self_mb": sampler.peak_root_kb / 1024, **(extra(record) if extra else {}),
                "timings_s": record["timings_s"], "errors": record["errors"], "flags": record["flags"],
                "results_mb": size / 1e6, "products": products}
    finally:
        if results is None:
            shutil.rmtree(folder, ignore_errors=True)


def analyse(day: Path, test: str, jobs: int, results: Path | None = None, *, executor: str | None = None,
            families: bool = False, sample: bool = True, profile: bool = False,
            extra: Callable[[dict], dict] | None = None) -> dict:
    """One aim-mode run of `test` with every sub-task, results in `results` (default a temporary
    folder, removed). `wall_s`: the run alone; `end_s`: process start to result.json read;
    `done_at`: then, as time.time(); peak memory: this process, its largest worker, all summed."""
    from engine.campaign.config import campaign_from_dict
    from engine.pipeline.runner import PipelineRun, RunOptions

    folder = results or Path(tempfile.mkdtemp(prefix=f"vison-bench-{test.lower()}-"))
    try:
        schema = {}
        if families:
            from engine.tasks.registry import campaign_schema

            schema = {"families": campaign_schema()}
        campaign = campaign_from_dict({
            "campaign": {"block": "NOSTROMO", "chamber": "B_NOSTROMO"}, "hardware": SERIALS,
            "paths": {"data": str(day.parent), "results": str(folder)},
            "sessions": {"BENCH": {"day_folder": day.name, "tests": [test]}},
        }, base_dir=folder, **schema)
        options = {}
        if executor is not None:
            from engine.campaign.executor_spec import parse_executor

            options["executor"] = parse_executor(executor)
        run = PipelineRun(campaign, RunOptions(session="BENCH", jobs=jobs, **options))
        sampler = MemorySampler() if sample else None
        if sampler:
            sampler.start()
        started = time.perf_counter()
        if profile:
            import cProfile
            import pstats

            profiler = cProfile.Profile()
            profiler.runcall(run.run_aim)
            stats = pstats.Stats(profiler, stream=sys.stderr)
            stats.sort_stats("cumulative").print_stats(25)
            stats.sort_stats("tottime").print_stats(15)
        else:
            run.run_aim()
        wall = time.perf_counter() - started
        record = json.loads((folder / "BENCH" / test / "result.json").read_text())
        end, done_at = time.perf_counter() - STARTED, time.time()
        if sampler:
            sampler.stop()
        return {
            "wall_s": wall, "end_s": end, "done_at": done_at,
            "peak_self_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "peak_worker_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
            "peak_total_mb": sampler.peak_kb / 1024 if sampler else None,
            "cpu_s": sampler.cpu_s if sampler else None,  # this process and its workers (sampled)
            "peak_pss_mb": sampler.peak_pss_kb / 1024 if sampler else None,  # shared pages split
            "timings_s": record["timings_s"], "errors": record["errors"], "flags": record["flags"],
            **(extra(record) if extra else {}),
        }
    finally:
        if results is None:
            shutil.rmtree(folder, ignore_errors=True)


def run_child(*arguments: str, sample: bool = False) -> tuple[float, float | None, dict]:
    """This script run again with internal `arguments`: (wall seconds from the parent's start of the
    process to its exit, peak summed RSS MB of it and its workers if `sample`, its last JSON line)."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, sys.modules["__main__"].__file__, *arguments],
                               stdout=subprocess.PIPE, text=True, cwd=ROOT)
    sampler = MemorySampler(process.pid) if sample else None
    if sampler:
        sampler.start()
    out, _ = process.communicate()
    wall = time.perf_counter() - started
    if sampler:
        sampler.stop()
    if process.returncode:
        raise subprocess.CalledProcessError(process.returncode, process.args, out)
    return wall, sampler.peak_kb / 1024 if sampler else None, json.loads(out.strip().splitlines()[-1])


def child(*arguments: str) -> dict:
    """The last JSON line of this script run again with internal `arguments`."""
    return run_child(*arguments)[2]


def subtasks(m: dict, digits: int = 1) -> str:
    return ", ".join(f"{name} {seconds:.{digits}f}" for name, seconds in m["timings_s"].items())


# ---------------------------------------------------------------------------------------------
# A benchmark's declaration
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Bench:
    test: str
    frames: int
    cache: str  # the cache folder under CACHE_ROOT is "<cache>-<geometry>"
    read: str = "quadrants"  # how the read child reads a frame (read_all)
    families: bool = False  # the campaign loaded with every family's schema
    sample: bool = True  # peak memory sampled in the analysis child
    extra: Callable[[dict], dict] | None = None  # more of result.json for the report

    def cache_for(self, geometry: str) -> Path:
        return CACHE_ROOT / f"{self.cache}-{geometry}"

    def parser(self, doc: str, jobs_help: str | None = None) -> argparse.ArgumentParser:
        """--jobs and the internal options of the timed children; a script adds its own (and
        --executor or --profile, which the analysis child passes on when the script has them)."""
        parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
        parser.add_argument("--jobs", type=int, default=2, help=jobs_help)
        parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # internal: the timed analysis
        parser.add_argument("--read", type=Path, help=argparse.SUPPRESS)  # internal: the timed read
        parser.add_argument("--results", type=Path, help=argparse.SUPPRESS)  # internal: the analysis's results
        return parser

    def serve_child(self, args: argparse.Namespace) -> bool:
        """In a timed child (`--measure DAY` or `--read DAY`): do it, print its JSON, True."""
        if args.measure:
            print(json.dumps(analyse(args.measure, self.test, args.jobs, args.results,
                                     executor=getattr(args, "executor", None), families=self.families,
                                     sample=self.sample, profile=getattr(args, "profile", False),
                                     extra=self.extra)))
            return True
        if args.read:
            print(json.dumps(read_all(args.read, self.read)))
            return True
        return False

    def timed_analysis(self, day: Path, jobs: int, sample: bool = False) -> tuple[float, float | None, dict]:
        """The analysis child timed from the parent, process start to exit (`run_child`), its
        results in a temporary folder removed after the timing."""
        results = Path(tempfile.mkdtemp(prefix=f"vison-bench-{self.cache}-"))
        try:
            return run_child("--measure", str(day), "--results", str(results), "--jobs", str(jobs), sample=sample)
        finally:
            shutil.rmtree(results, ignore_errors=True)

    def measure(self, day: Path, jobs: int, *more: str) -> dict:
        """The analysis child's figures (`more`: further internal options)."""
        return child("--measure", str(day), "--jobs", str(jobs), *more)

    def main_against_read(self, doc: str, note: Callable[[dict], str] = lambda m: "",
                          geometries: tuple[str, ...] = ("full", "small")) -> None:
        """A script's main(): `--repeat` rounds (default 2) of, back to back, a read of every frame
        (a fresh process timed from its start, benchkit's import, to the last frame read) and the
        analysis as a user runs it (`vison-engine run`, `--jobs`, run_as_user: from the process's
        start to its result.json), with peak memory (summed RSS and PSS of the process and its
        workers), the load average before and after, and their ratio (the figure to compare: both
        share the load of the moment). `note(m)` ends the sub-task line; `--small`: the small
        geometry (a check of the script); `--profile`: cProfile of the analysis's main process
        instead, run inside a bench process (stderr; with `--jobs 1` the work units run in it too)."""
        parser = self.parser(doc)
        name = self.cache
        parser.add_argument("--cache", type=Path, help=f"data cache (default {CACHE_ROOT}/{name}-<geometry>)")
        parser.add_argument("--geometry", choices=geometries, default="full", help="frame geometry (default full)")
        parser.add_argument("--small", action="store_true", help="small geometry: checks the script, times nothing useful")
        parser.add_argument("--repeat", type=int, default=2, help="rounds of read + analysis (default 2)")
        parser.add_argument("--profile", action="store_true", help="cProfile of the analysis's main process (stderr)")
        args = parser.parse_args()
        if self.serve_child(args):
            return
        geometry = "small" if args.small else args.geometry
        day = ensure_data(args.cache or self.cache_for(geometry), self.test, self.frames, geometry)
        size = size_of(day) / 1e9
        label = "" if geometry == "full" else f" [{geometry} geometry]"
        print(f"{self.test}{label}: {self.frames} FITS, {size:.2f} GB; jobs {args.jobs}; {machine()}")
        print("| run | read once | end to end | ratio | CPU s: read, analysis (ratio) | per sub-task (s) | peak memory "
              "| load average (before; after) |")
        print("|---|---|---|---|---|---|---|---|")
        ratios = []
        for index in range(1, args.repeat + 1):
            before = load_average()
            read = child("--read", str(day))
            m = (self.measure(day, args.jobs, "--profile") if args.profile
                 else run_as_user(day, self.test, jobs=args.jobs, extra=self.extra))
            read_s, end = read["wall_s"], m["end_s"]
            ratios.append(end / read_s)
            cpu = (f"{read['cpu_s']:.1f}, {m['cpu_s']:.1f} (x{m['cpu_s'] / read['cpu_s']:.1f})"
                   if m.get("cpu_s") and read.get("cpu_s") else "-")
            print(f"| {index} | {read_s:.1f} s | {end:.1f} s | x{end / read_s:.2f} | {cpu} | {subtasks(m)} | "
                  f"{m['peak_total_mb']:.0f} MB RSS, {m.get('peak_pss_mb') or 0:.0f} MB PSS ({m['peak_self_mb']:.0f} MB "
                  f"main) | {before}; {load_average()} |", flush=True)
            print(f"    errors {m['errors']}; flags {m['flags'] or 'none'}{note(m)}", flush=True)
        print(f"{self.test}{label}: end to end / read once x{min(ratios):.2f} to x{max(ratios):.2f} "
              f"over {len(ratios)} runs")


def load_average() -> str:
    """The 1, 5 and 15 minute load averages (other sessions share the machine)."""
    return "/".join(f"{value:.2f}" for value in os.getloadavg())
