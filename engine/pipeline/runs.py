"""Run records: every pipeline run (in the background or not) leaves a folder the console and the
app read to list runs, follow them, re-attach and stop them.

`<results>/runs/<run_id>/` holds `run.json` (what was started: id, pid, command, log path),
`state.json` (where it is: rewritten atomically on each runner event) and, for a background
run, `output.txt` (its console output). Formats are described in docs/runs.md.

A background run is `vison-engine run ...` (the same Python) in its own session and process group
(start_new_session): closing the terminal or the SSH connection does not reach it. `stop_run`
sends SIGTERM; the run abandons its current analysis, writes its summary and ends "stopped".
A run whose process is gone while its state still says running is reported as "died".

Run folders are also listed, one a line, in a per-user index (`$VISON_STATE_DIR`, default
`~/.local/state/vison/runs.txt`) so that `vison-engine status RUN` finds a run by its id alone.
"""

from __future__ import annotations

import itertools
import os
import socket
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator, Mapping

from .log import LOGS_FOLDER, log_filename, pipeline_id, tag_problem
from ..process import ProcessCheck, process_start_ticks  # noqa: F401 (process_start_ticks: for callers)
from .records import (END_STATES, LIVE_STATES, OUTPUT_FILE, STATE_FILE, RecordFolder, engine_command, liveness,  # noqa: F401
                      locked as _locked, now_iso as _now, own_identity, read_json, recorded_process, spawn_detached,
                      state_dir, stop_recorded, update_info, user_name as _user, write_json_atomic)

RUNS_FOLDER = "runs"
RUN_FILE = "run.json"
WAIT_STATES = ("waiting", "acquiring", "writing", "complete")  # a test's data, in wait mode


# -- files -------------------------------------------------------------------------------------

def runs_root(results_root: str | os.PathLike[str]) -> Path:
    return Path(results_root) / RUNS_FOLDER


def update_run_info(folder: Path, changes: Mapping[str, Any]) -> dict[str, Any]:
    return update_info(folder, RUN_FILE, changes)


def new_run_id(results_root: str | os.PathLike[str], tag: str = "", when: datetime | None = None) -> str:
    """The pipeline id (FM<date>_<time><tag>, `-2`, `-3`... if taken), reserved at once.

    The reservation is the run's log, `<results>/logs/Calib_<id>.log`, created empty and
    exclusively: runs started in the same second, even by other processes, never share an id,
    a log or a staging folder. `release_run_id` gives back an id whose run never started.
    """
    problem = tag_problem(tag)
    if problem:
        raise ValueError(problem)
    base = pipeline_id(when or datetime.now(), tag)
    logs = Path(results_root) / LOGS_FOLDER
    logs.mkdir(parents=True, exist_ok=True)
    for n in itertools.count(1):
        candidate = base if n == 1 else f"{base}-{n}"
        if (runs_root(results_root) / candidate).exists():
            continue  # a run recorded before ids were reserved by their log
        try:
            os.close(os.open(logs / log_filename(candidate), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        except FileExistsError:
            continue
        return candidate
    raise AssertionError("unreachable")


def release_run_id(results_root: str | os.PathLike[str], run_id: str) -> None:
    """Give back an id reserved by new_run_id for a run that did not start (its log still empty)."""
    log = Path(results_root) / LOGS_FOLDER / log_filename(run_id)
    try:
        if log.stat().st_size == 0 and not (runs_root(results_root) / run_id).exists():
            log.unlink()
    except OSError:
        pass


# -- the record, as read back ------------------------------------------------------------------

class RunRecord(RecordFolder):
    """A run folder; `info` is run.json, `state` is state.json as last read."""

    INFO_FILE = RUN_FILE

    @property
    def run_id(self) -> str:
        return str(self.info.get("id") or self.folder.name)

    @property
    def log_path(self) -> Path | None:
        return Path(self.info["log"]) if self.info.get("log") else None

    @property
    def output_path(self) -> Path | None:
        return Path(self.info["output"]) if self.info.get("output") else None


@dataclass(frozen=True)
class RunStatus:
    run_id: str
    state: str  # starting | running | finished | stopped | failed | died | unknown
    alive: bool | None  # None: cannot be told (the run is on another host, or its pid is not confirmed ours)
    pid: int | None
    host: str
    mode: str
    session: str
    started: str
    updated: str
    activity: str  # what it is doing now ("analysing BIAS01: check", "waiting for data")
    progress: dict[str, int]
    tests: list[dict[str, Any]]
    end_reason: str | None
    exit_code: int | None
    log: str | None
    output: str | None
    folder: str
    check_only: bool = False  # init and check sub-tasks only (run.json, or --check in its argv)
    message: str = ""  # the wait loop's last line ("Pipeline sleeping ... Waiting for: ...")
    current: dict[str, Any] | None = None  # {"test", "subtask"} being analysed, None between tests
    process_note: str = ""  # why a live pid is not taken for this run ("" when it is, or when it is gone)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def run_status(run: RunRecord) -> RunStatus:
    run.reload()
    info, state = run.info, run.state
    recorded = str(state.get("state") or ("starting" if info else "unknown"))
    host = str(info.get("host") or "")
    # died: the process is gone; unknown: a live pid that may or may not be the run's (records.py)
    life = liveness(info, recorded)
    alive, note, effective = life.alive, life.note.replace("this record's process", "this run's process"), life.state
    return RunStatus(
        run_id=run.run_id, state=effective, alive=alive, pid=run.pid, host=host,
        mode=str(info.get("mode") or ""), session=str(info.get("session") or ""), started=run.started,
        updated=str(state.get("updated") or ""), activity=str(state.get("activity") or ""),
        progress=dict(state.get("progress") or {}), tests=list(state.get("tests") or []),
        end_reason=state.get("end_reason"), exit_code=state.get("exit_code"),
        log=info.get("log"), output=info.get("output"), folder=str(run.folder),
        check_only=bool(info.get("check_only") or "--check" in (info.get("argv") or [])),
        message=str(state.get("message") or ""),
        current=dict(state["current"]) if isinstance(state.get("current"), dict) else None, process_note=note)


def list_runs(results_root: str | os.PathLike[str]) -> list[RunRecord]:
    """The runs recorded under a results root, newest first."""
    root = runs_root(results_root)
    if not root.is_dir():
        return []
    runs = [RunRecord.load(p) for p in root.iterdir() if (p / RUN_FILE).is_file()]
    return sorted(runs, key=lambda r: (r.started, r.run_id), reverse=True)


# -- the per-user index and finding a run by name ----------------------------------------------

def register_run(folder: Path) -> None:
    try:
        index = state_dir()
        index.mkdir(parents=True, exist_ok=True)
        with open(index / "runs.txt", "a") as handle:
            handle.write(f"{Path(folder).resolve()}\n")
    except OSError:
        pass  # the index is a convenience; the run record itself is what counts


def indexed_runs() -> list[RunRecord]:
    """Every run in the per-user index whose folder still exists, newest first."""
    try:
        lines = (state_dir() / "runs.txt").read_text().splitlines()
    except OSError:
        return []
    folders = dict.fromkeys(Path(line) for line in lines if line.strip())
    runs = [RunRecord.load(f) for f in folders if (f / RUN_FILE).is_file()]
    return sorted(runs, key=lambda r: (r.started, r.run_id), reverse=True)


def find_run(ref: str, results_root: str | os.PathLike[str] | None = None) -> RunRecord:
    """A run by folder path, id, unique id prefix, or "last"; raises LookupError saying why."""
    path = Path(ref)
    if (path / RUN_FILE).is_file():
        return RunRecord.load(path)
    candidates = list_runs(results_root) if results_root is not None else indexed_runs()
    where = f"under {runs_root(results_root)}" if results_root is not None else "in the index of your runs"
    if not candidates:
        raise LookupError(f"no runs recorded {where}")
    if ref in ("last", "latest"):
        return candidates[0]
    exact = [r for r in candidates if r.run_id == ref]
    matches = exact or [r for r in candidates if r.run_id.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        known = ", ".join(r.run_id for r in candidates[:5])
        raise LookupError(f"no run {ref!r} {where} (latest: {known})")
    raise LookupError(f"{ref!r} matches several runs: {', '.join(r.run_id for r in matches[:5])}")


# -- starting, stopping, following -------------------------------------------------------------

def record_info(run_id: str, folder: Path, **fields: Any) -> dict[str, Any]:
    """The fields of run.json describing this process (the run itself writes them)."""
    return {"id": run_id, "folder": str(folder), **own_identity(), **fields}


def start_detached(argv: list[str], results_root: str | os.PathLike[str], *, run_id: str | None = None,
                   tag: str = "", cwd: str | os.PathLike[str] | None = None, python: str | None = None,
                   extra: Mapping[str, Any] | None = None) -> RunRecord:
    """Start `run <argv>` in the background, in its own session; return its record at once.

    `argv` are the run command's arguments (CONFIG --session D11 --wait ...), without --detach;
    paths in it are taken from `cwd` (default: the current folder).
    """
    run_id = run_id or new_run_id(results_root, tag)
    folder = runs_root(results_root) / run_id
    folder.mkdir(parents=True, exist_ok=False)
    output = folder / OUTPUT_FILE
    cwd = Path(cwd or os.getcwd()).resolve()
    command = engine_command("run", *argv, "--run-id", run_id, "--record", str(folder.resolve()), python=python)
    info = {"id": run_id, "folder": str(folder.resolve()), "argv": list(argv), "cwd": str(cwd),
            "results": str(Path(results_root).resolve()), "output": str(output.resolve()), "detached": True,
            "started": _now(), "host": socket.gethostname(),
            "user": _user(), "command": command, **(extra or {})}
    update_run_info(folder, info)
    write_json_atomic(folder / STATE_FILE, {"run_id": run_id, "state": "starting", "activity": "starting",
                                            "updated": info["started"]})
    spawn_detached(command, folder, RUN_FILE, cwd=cwd)
    register_run(folder)
    return RunRecord.load(folder)


def restart_run(run: RunRecord) -> RunRecord:
    """Start the same run again in the background (a wait run skips the tests it already did)."""
    info = run.reload().info
    if not info.get("argv") or not info.get("results"):
        raise LookupError(f"run {run.run_id} does not record how it was started; start it again by hand")
    status = run_status(run)
    if status.alive:
        raise LookupError(f"run {run.run_id} is still running (pid {status.pid}); stop it first")
    return start_detached(list(info["argv"]), info["results"], tag=str(info.get("tag") or ""), cwd=info.get("cwd"),
                          extra={"restarted_from": run.run_id, **{k: info[k] for k in ("config", "session", "mode", "tag")
                                                                 if k in info}})


def stop_run(run: RunRecord, timeout: float = 30.0, force: bool = False) -> RunStatus:
    """SIGTERM, then wait up to `timeout` s for it to end; `force`: SIGKILL it after that.

    Only a process confirmed to be the run's is signalled (see process.py); otherwise the status
    comes back unchanged, its `process_note` saying why."""
    status = run_status(run)
    if not status.alive:
        return status
    stop_recorded(run.folder, RUN_FILE, timeout=timeout, force=force)
    return run_status(run)


def tail_run(run: RunRecord, follow: bool = False, lines: int = 20, source: str = "log",
             poll_s: float = 0.5) -> Iterator[str]:
    """The last `lines` lines of the run's pipeline log (source="log") or console output
    ("output"); with `follow`, then every new line until the run has ended."""

    def path() -> Path | None:
        run.reload()
        return run.log_path if source == "log" else run.output_path

    target = path()
    while follow and (target is None or not target.exists()) and run_status(run).alive:
        time.sleep(poll_s)  # a starting run names its log once it has opened it
        target = path()
    if target is None or not target.exists():
        return
    with open(target, "r", errors="replace") as handle:
        for line in _last_lines(handle, lines):
            yield line
        if not follow:
            return
        pending = ""
        while True:
            chunk = handle.read()
            if chunk:
                pending += chunk
                *complete, pending = pending.split("\n")
                yield from complete
                continue
            if not run_status(run).alive:
                if pending:
                    yield pending
                return
            time.sleep(poll_s)


def _last_lines(handle, count: int) -> list[str]:
    text = handle.read()
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines[-count:] if count > 0 else []


# -- the run's own bookkeeping -----------------------------------------------------------------

class RunRecorder:
    """Keeps state.json current from the runner's events; runs inside the run's process."""

    def __init__(self, folder: Path, info: Mapping[str, Any]):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.info = update_run_info(self.folder, info)
        if not self.info.get("output"):
            register_run(self.folder)  # a background run was registered by its starter
        now = _now()
        self.state: dict[str, Any] = {
            "run_id": self.info.get("id"), "state": "starting", "activity": "starting", "started": now,
            "updated": now, "mode": self.info.get("mode"), "session": self.info.get("session"),
            "current": None, "message": "", "tests": [], "progress": {}, "end_reason": None, "exit_code": None,
        }
        self._write()

    def __call__(self, kind: str, payload: Mapping[str, Any]) -> None:
        handler = getattr(self, f"_on_{kind}", None)
        if handler is not None:
            handler(payload)
            self._write()

    def finish(self, state: str, reason: str, exit_code: int) -> None:
        """The run's end as the command saw it (overrides what the events said, e.g. failed)."""
        if self.state.get("state") not in END_STATES or state == "failed":
            self.state["state"] = state
            self.state["end_reason"] = reason
        self.state["exit_code"] = exit_code
        self.state["activity"] = self.state["state"]
        self.state["current"] = None
        self._write()

    # -- events ---------------------------------------------------------------------------------

    def _on_run_started(self, p: Mapping[str, Any]) -> None:
        self.info = update_run_info(self.folder, {"log": p.get("log")})
        self.state.update(state="running", activity="started", mode_detail=p.get("mode"))
        self.state["tests"] = [_test_entry(name) for name in p.get("tests", [])]

    def _on_watching(self, p: Mapping[str, Any]) -> None:
        self.state.update(activity="waiting for data", message=f"watching {p.get('folder')} ({p.get('observer')})")

    def _on_waiting(self, p: Mapping[str, Any]) -> None:
        self.state.update(activity="waiting for data", message=p.get("message", ""), current=None)

    def _on_test_progress(self, p: Mapping[str, Any]) -> None:
        test = self._test(p["test"])
        test["frames"] = [p.get("logged"), p.get("expected")]
        if p.get("obsids"):
            test["obsids"] = p["obsids"]
        # before its analysis, a test's state is the wait loop's view of its data
        if test["state"] in WAIT_STATES and p.get("state") in (*WAIT_STATES, "settling"):
            test["state"] = "acquiring" if p["state"] == "settling" else p["state"]

    def _on_test_started(self, p: Mapping[str, Any]) -> None:
        test = self._test(p["test"])
        test.update(state="running", subtask=None, started=_now(), finished=None)
        self.state.update(activity=f"analysing {p['test']}", current={"test": p["test"], "subtask": None})

    def _on_subtask_started(self, p: Mapping[str, Any]) -> None:
        self._test(p["test"])["subtask"] = p["subtask"]
        self.state.update(activity=f"analysing {p['test']}: {p['subtask']}",
                          current={"test": p["test"], "subtask": p["subtask"]})

    def _on_test_finished(self, p: Mapping[str, Any]) -> None:
        test = self._test(p["test"])
        test.update(state=p.get("state", "done"), subtask=None, flags=p.get("flags", []), minutes=p.get("minutes"),
                    obsids=p.get("obsids"), finished=_now(), note=None)
        self.state.update(current=None, activity="between tests")

    def _on_test_abandoned(self, p: Mapping[str, Any]) -> None:
        self._test(p["test"]).update(state="abandoned", subtask=None, note=p.get("reason"))
        self.state["current"] = None

    def _on_test_skipped(self, p: Mapping[str, Any]) -> None:
        test = self._test(p["test"])
        note = "analysed by an earlier run" if p.get("reason") == "already analysed" else p.get("reason")
        test.update(state=p.get("state", "skipped"), note=note)
        for key in ("flags", "obsids"):
            if p.get(key) is not None:
                test[key] = p[key]

    def _on_test_prepared(self, p: Mapping[str, Any]) -> None:
        self._test(p["test"]).update(state="prepared", obsids=p.get("obsids"),
                                     frames=[p.get("exposures"), p.get("expected")])

    def _on_run_finished(self, p: Mapping[str, Any]) -> None:
        self.state.update(state=p.get("state", "finished"), end_reason=p.get("reason"), current=None,
                          activity=p.get("state", "finished"))

    # -- helpers --------------------------------------------------------------------------------

    def _test(self, name: str) -> dict[str, Any]:
        for entry in self.state["tests"]:
            if entry["test"] == name:
                return entry
        entry = _test_entry(name)
        self.state["tests"].append(entry)
        return entry

    def _write(self) -> None:
        tests = self.state["tests"]
        counts = {"tests": len(tests)}
        for key in ("done", "errors", "running", "skipped", "abandoned", "prepared"):
            counts[key] = sum(1 for t in tests if t["state"] == key)
        counts["waiting"] = counts["tests"] - sum(v for k, v in counts.items() if k != "tests")
        self.state["progress"] = counts
        self.state["updated"] = _now()
        try:
            write_json_atomic(self.folder / STATE_FILE, self.state)
        except OSError as exc:
            # a full or read-only results disk must not end the run: the analyses go on, and the
            # state is written again at the next event (the log and the console still say it all)
            self.write_error = f"{exc.strerror or exc}"
            try:
                (self.folder / f".{STATE_FILE}.{os.getpid()}.part").unlink(missing_ok=True)
            except OSError:
                pass
        else:
            self.write_error = None


def _test_entry(name: str) -> dict[str, Any]:
    return {"test": name, "state": "waiting", "subtask": None, "frames": None, "obsids": None, "flags": [],
            "minutes": None, "started": None, "finished": None, "note": None}


def discard_orphan_staging(results_root: Path, session: str, keep_run_id: str) -> list[str]:
    """Remove staging folders left by runs that were killed (their run not alive); say which."""
    import shutil

    said = []
    for staging in sorted((Path(results_root) / session).glob(".*.staging-*")):
        owner = staging.name.split(".staging-", 1)[1]
        if owner == keep_run_id:
            continue
        record = runs_root(results_root) / owner
        if not (record / RUN_FILE).is_file() or run_status(RunRecord.load(record)).alive is not False:
            continue  # its run may still be going (no record, or on another host): leave it
        shutil.rmtree(staging, ignore_errors=True)
        said.append(f"Removed {staging.name}: partial results of run {owner}, which is not running")
    return said
