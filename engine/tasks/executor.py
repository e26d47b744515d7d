"""Where the work units of a run execute: a process pool here, or a dask.distributed cluster.

A work unit is a module-level function and its arguments (paths and small numbers, never
frames: see TaskContext.map_units); its result comes back to the run's process. The same
units, the same code, hence the same numbers, whatever the executor.

    executor = open_executor(parse_executor("dask://lab-srv:8786"))   # ExecutorUnavailable
    results = executor.map(noise_unit, calls)                        # in call order
    underway = executor.start(compress_plane, calls)                 # the same, without waiting:
    first = underway.result(0)                                       # each result as it is wanted
    executor.close()

- `LocalExecutor(workers)`: a process pool of `workers` processes (default: the machine's cores)
  kept for the run; one unit, or one worker, runs in the run's own process. `warm()` starts the
  workers ahead of the first units (wait mode does, while the data come).
- `DaskExecutor(address)`: the units are submitted to the cluster's scheduler, whose workers
  must see the data and results folders under the same paths (a lab's shared filesystem) and run
  the same vison. A worker that dies mid-unit: the scheduler gives its units to another worker
  (Dask's `distributed.scheduler.allowed-failures`, 3 by default, before it gives up with
  KilledWorker, which fails the sub-task like any error). `check_cluster` says, before a run
  starts, whether the scheduler answers, has workers, and whether they see the paths.

Dask is imported only when a Dask executor is made: a local run never pays for it.
"""

from __future__ import annotations

import concurrent.futures
import importlib
import multiprocessing
import multiprocessing.context
import os
import sys
import threading
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from ..campaign.executor_spec import ExecutorSpec, parse_executor
from ..process import process_start_ticks

__all__ = ["CONNECT_TIMEOUT_S", "ClusterFacts", "DaskExecutor", "Executor", "ExecutorUnavailable", "LocalExecutor",
           "Underway", "check_cluster", "default_workers", "open_executor", "parse_executor", "start_worker_server"]

CONNECT_TIMEOUT_S = 5.0  # seconds to reach a scheduler before the run gives up (before anything starts)


class ExecutorUnavailable(RuntimeError):
    """The executor cannot be used (scheduler unreachable, no workers, paths not shared): one line."""


def default_workers() -> int:
    """The local executor's default: as many worker processes as the machine has cores."""
    return max(1, os.cpu_count() or 1)


class Underway:
    """Units started without waiting (Executor.start): each one's result, or its exception, when
    asked; `results()` all of them in call order."""

    def __init__(self, calls: int, result: Callable[[int], Any]):
        self.count, self._result = calls, result

    def result(self, index: int) -> Any:
        return self._result(index)

    def results(self) -> list[Any]:
        return [self.result(i) for i in range(self.count)]


class Executor:
    """Runs `function(*call)` for each call; results in call order; a unit's exception is raised."""

    spec: ExecutorSpec

    def map(self, function: Callable[..., Any], calls: Sequence[tuple]) -> list[Any]:
        raise NotImplementedError

    def start(self, function: Callable[..., Any], calls: Sequence[tuple]) -> Underway:
        """`map` without waiting: the units are queued behind those already started and run
        while the caller goes on (here: each when its result is first asked for)."""
        done: dict[int, Any] = {}

        def result(index: int) -> Any:
            if index not in done:
                done[index] = self.map(function, [calls[index]])[0]
            return done[index]

        return Underway(len(calls), result)

    def warm(self, modules: Sequence[str] = ()) -> threading.Event:
        """Start the workers now, without waiting, each importing `modules` (the run's analysis
        modules): the first units then pay no start-up. The event is set once they are ready (at
        once here: nothing to start)."""
        ready = threading.Event()
        ready.set()
        return ready

    def describe(self) -> str:
        return str(self.spec)

    def close(self) -> None:
        pass

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def worker_context() -> multiprocessing.context.BaseContext:
    """Worker processes start from a fork server, never by forking the run itself: a fork copies
    the locks other threads hold at that moment (the log, a file watcher, BLAS pools), and a worker
    born with one held waits for ever (seen: an aim run hung under load). The server starts once
    with the task framework and the generic kernels loaded, so a worker costs a fork and its
    family's modules, not every import."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["engine.worker_preload"])  # task framework, generic compiled kernels
    _say_first_compilation()
    return context


_COMPILATION_SAID = False


def _say_first_compilation() -> None:
    """The first run after an install compiles the kernels in the fork server: say why it waits."""
    global _COMPILATION_SAID
    from .compiled import uncompiled_modules

    if not _COMPILATION_SAID and uncompiled_modules():
        _COMPILATION_SAID = True
        print("vison: the first run after an install compiles the analysis kernels it uses (up to 40 s of CPU on "
              "2 cores, once: cached for every later run)", file=sys.stderr, flush=True)


def start_worker_server() -> None:
    """Start the fork server now, in the background (it loads the task framework and the generic
    compiled kernels, about 0.5 s, while this process goes on): the local pools made later fork from it. A run
    that ends up on Dask, or runs its units itself, has started it for nothing, which costs no wait."""
    import multiprocessing.forkserver

    worker_context()
    try:
        multiprocessing.forkserver.ensure_running()
    except OSError:  # no fork server here: the pool starts it (and says why) when it is needed
        pass


class LocalExecutor(Executor):
    """A pool of worker processes kept for the whole run (warm workers between sub-tasks and tests)."""

    def __init__(self, workers: int | None = None):
        self.spec = ExecutorSpec("local")
        self.workers = max(1, workers or default_workers())
        self._pool: ProcessPoolExecutor | None = None
        self._modules: tuple[str, ...] = ()  # what each worker imports as it starts (warm)

    def map(self, function: Callable[..., Any], calls: Sequence[tuple]) -> list[Any]:
        if self.workers <= 1 or len(calls) <= 1:
            return [function(*call) for call in calls]
        return self.start(function, calls).results()

    def start(self, function: Callable[..., Any], calls: Sequence[tuple]) -> Underway:
        if self.workers <= 1:  # the units run in this process, each when its result is asked for
            return super().start(function, calls)
        try:
            futures = [self._started_pool().submit(function, *call) for call in calls]
        except BrokenProcessPool:
            self.close()  # a worker died (killed, out of memory): the next map starts a new pool
            raise

        def result(index: int) -> Any:
            try:
                return futures[index].result()
            except BrokenProcessPool:
                self.close()
                raise

        return Underway(len(calls), result)

    def _started_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=worker_context(),
                                             initializer=_start_worker,
                                             initargs=(os.getpid(), process_start_ticks(os.getpid()),
                                                       self._modules))
        return self._pool

    def warm(self, modules: Sequence[str] = ()) -> threading.Event:
        """Start all `workers` processes in a background thread (starting one blocks until the
        fork server has its modules and kernels loaded, worker_preload: about 0.5 s on 2 cores),
        each importing `modules` as it starts (the run's analysis modules, which the fork server
        does not load: a small test's first unit would wait for them; a pool started already keeps
        its own); the event is set when they have. With one worker the units run in this process:
        nothing to start."""
        ready = threading.Event()
        if self.workers <= 1:
            ready.set()
            return ready
        if self._pool is None:
            self._modules = tuple(modules)
        pool = self._started_pool()
        threading.Thread(target=_start_workers, args=(pool, self.workers, ready),
                         name="vison-pool-warm-up", daemon=True).start()
        return ready

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def describe(self) -> str:
        return f"local ({self.workers} worker process{'es' if self.workers != 1 else ''})"


def _nothing() -> None:
    pass


RUN_WATCH_S = 1.0  # how often a worker looks whether its run's process is still there


def _start_worker(run_pid: int, run_start_ticks: int | None, modules: tuple[str, ...]) -> None:
    """Worker initializer: _end_with_run, then the `modules` imported (one that fails to import is
    left for the unit that needs it to report: an initializer's exception breaks the whole pool)."""
    _end_with_run(run_pid, run_start_ticks)
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001, S110 - see above
            pass


def _end_with_run(run_pid: int, run_start_ticks: int | None) -> None:
    """A thread ends this worker once the run's process has ended (gone, a
    zombie, or its pid taken by another process: process.check_process). A run killed with SIGKILL
    (or by the out-of-memory killer) otherwise leaves its workers blocked on their queue for ever,
    holding memory and its fork server alive (seen: night after night)."""
    from ..process import ENDED, check_process

    def watch() -> None:
        while check_process(run_pid, run_start_ticks).state != ENDED:
            time.sleep(RUN_WATCH_S)
        os._exit(1)

    threading.Thread(target=watch, name="vison-run-watch", daemon=True).start()


def _start_workers(pool: ProcessPoolExecutor, workers: int, ready: threading.Event) -> None:
    # The pool starts a process per submission while none is idle: `workers` submissions in a row
    # start them all (a new worker imports for longer than the next submission takes).
    try:
        futures = [pool.submit(_nothing) for _ in range(workers)]
        concurrent.futures.wait(futures)
    except (RuntimeError, BrokenProcessPool):  # the run closed the pool meanwhile, or a worker died:
        pass  # its next map says so (or starts a new pool)
    finally:
        ready.set()


class DaskExecutor(Executor):
    """A client of a dask.distributed scheduler, connected for the whole run."""

    def __init__(self, address: str, *, timeout: float | None = None):
        self.spec = ExecutorSpec("dask", address)
        self.address = address
        self.client = _connect(address, CONNECT_TIMEOUT_S if timeout is None else timeout)

    def map(self, function: Callable[..., Any], calls: Sequence[tuple]) -> list[Any]:
        if not calls:
            return []
        batch = uuid.uuid4().hex[:12]
        name = getattr(function, "__name__", "unit")
        # one graph for the batch; pure=False: every unit runs (never a result cached from an
        # earlier run), each under its own key (the unit's function and place, for the dashboard)
        keys = [f"{name}-{batch}-{i}" for i in range(len(calls))]
        futures = self.client.map(function, *zip(*calls), key=keys, pure=False)
        try:
            return self.client.gather(futures)
        except BaseException:  # a unit failed, or the run is stopping: the others are not wanted
            self.client.cancel(futures)
            raise

    def start(self, function: Callable[..., Any], calls: Sequence[tuple]) -> Underway:
        if not calls:
            return Underway(0, lambda index: None)
        name = getattr(function, "__name__", "unit")
        batch = uuid.uuid4().hex[:12]
        keys = [f"{name}-{batch}-{i}" for i in range(len(calls))]
        futures = self.client.map(function, *zip(*calls), key=keys, pure=False)
        return Underway(len(calls), lambda index: futures[index].result())

    def workers(self) -> dict[str, dict[str, Any]]:
        """The cluster's workers now (address -> their facts: nthreads, memory_limit, ...)."""
        try:  # newer clients list only the first few workers unless asked for all
            info = self.client.scheduler_info(n_workers=-1)
        except TypeError:
            info = self.client.scheduler_info()
        return dict(info.get("workers", {}))

    def describe(self) -> str:
        workers = self.workers()
        threads = sum(int(w.get("nthreads", 0)) for w in workers.values())
        return f"{self.spec} ({len(workers)} worker{'s' if len(workers) != 1 else ''}, {threads} threads)"

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:  # the scheduler went away meanwhile: nothing left to close
            pass


def open_executor(spec: ExecutorSpec | str | None = None, workers: int | None = None) -> Executor:
    """The executor of `spec` (default local); `workers` sizes the local pool. ExecutorUnavailable
    when a Dask scheduler cannot be reached."""
    spec = parse_executor(spec) if isinstance(spec, str) else (spec or ExecutorSpec("local"))
    if spec.is_local:
        return LocalExecutor(workers)
    return DaskExecutor(spec.address or "")


@dataclass(frozen=True)
class ClusterFacts:
    workers: int
    threads: int
    description: str


def check_cluster(spec: ExecutorSpec, *, read: Iterable[Path] = (), write: Iterable[Path] = (),
                  timeout: float | None = None) -> ClusterFacts:
    """Before a run starts: the scheduler answers, has workers running this vison, and every
    worker can read the `read` folders (the data) and write in the `write` ones (the results: the
    units write products there), under the same paths. ExecutorUnavailable (one line saying what
    to do) otherwise."""
    from .. import __version__

    executor = DaskExecutor(spec.address or "", timeout=timeout)
    try:
        client = executor.client
        if not executor.workers():
            try:  # workers may be on their way (started together with the scheduler)
                client.wait_for_workers(1, timeout=CONNECT_TIMEOUT_S if timeout is None else timeout)
            except Exception:
                raise ExecutorUnavailable(f"the Dask scheduler at {spec} has no workers: start some with "
                                          f"`dask worker {spec.address}` (docs/scaling.md)") from None
        folders = {str(Path(p).resolve()): False for p in read}
        folders.update({str(Path(p).resolve()): True for p in write})
        try:  # the scheduler unpickles the units' arguments: it needs vison too
            answers = {"scheduler": client.run_on_scheduler(_worker_facts, {})}
            answers.update(client.run(_worker_facts, folders))
        except Exception as exc:  # a worker without vison cannot even load the check
            raise ExecutorUnavailable(f"the cluster {spec} cannot run vison ({type(exc).__name__}: "
                                      f"{str(exc).splitlines()[0] if str(exc) else ''}): start `dask scheduler` "
                                      "and `dask worker` from an environment where this vison is installed") from None
        for worker, facts in sorted(answers.items()):
            if facts["version"] != __version__:
                raise ExecutorUnavailable(f"{worker} of {spec} runs vison {facts['version']}, this run "
                                          f"{__version__}: start the scheduler and workers from the same vison")
            missing = [folder for folder, ok in facts["folders"].items() if not ok]
            if missing:
                raise ExecutorUnavailable(f"worker {worker} of {spec} (host {facts['host']}) cannot reach "
                                          f"{', '.join(missing)}: the data and results folders must be shared "
                                          "under the same paths (docs/scaling.md)")
        workers = executor.workers()
        threads = sum(int(w.get("nthreads", 0)) for w in workers.values())
        return ClusterFacts(len(workers), threads, executor.describe())
    finally:
        executor.close()


def _worker_facts(folders: dict[str, bool]) -> dict[str, Any]:
    """Run on each worker by check_cluster: its vison, and whether it sees each folder (folder ->
    to be written in; the run has made it already on its own machine)."""
    import socket

    from .. import __version__

    seen = {folder: os.path.isdir(folder) and os.access(folder, os.R_OK | os.X_OK | (os.W_OK if write else 0))
            for folder, write in folders.items()}
    return {"version": __version__, "host": socket.gethostname(), "folders": seen}


def _connect(address: str, timeout: float) -> Any:
    try:
        from distributed import Client
    except ImportError:  # pragma: no cover - a dependency of vison
        raise ExecutorUnavailable("dask.distributed is not installed: pip install 'dask[distributed]'") from None
    try:
        return Client(address, timeout=f"{timeout}s", set_as_default=False)
    except (OSError, TimeoutError) as exc:
        reason = str(exc).split("\n")[0].strip() or type(exc).__name__
        raise ExecutorUnavailable(f"cannot reach the Dask scheduler at {address} within {timeout:g} s ({reason}): "
                                  f"is `dask scheduler` running there? (docs/scaling.md)") from None
