"""Starting a pipeline run: its inputs checked, then (optionally) a background process.

`vison-engine run` (engine.cli.run_cmd) and the app both start runs through here, so a run
started from either is validated the same way and leaves the same run record.

    start_background_run(config, "D11", wait=True) -> RunRecord    # raises RunInputError

The pieces (`campaign_plan`, `check_inputs`, `launch_detached`) are public for the CLI, which
also has the quick form (no campaign file) and options the app does not offer.
"""

from __future__ import annotations

import os
import dataclasses
from dataclasses import dataclass
from pathlib import Path

from ..campaign.config import Campaign, load_campaign
from ..campaign.executor_spec import ExecutorSpec, parse_executor
from ..formats.tomlfile import ConfigError
from ..tasks.executor import ExecutorUnavailable, check_cluster, default_workers
from ..tasks.registry import campaign_schema
from .runner import PipelineRun, RunError, RunOptions
from .log import tag_problem
from .runs import RunRecord, new_run_id, release_run_id, start_detached


class RunInputError(ValueError):
    """The run's inputs are wrong; the message says why in one go (the CLI exits with status 2)."""


@dataclass
class RunPlan:
    campaign: Campaign
    session: str
    run_id: str
    notes: list[str]
    config: Path | None

    @property
    def results(self) -> Path:
        return self.campaign.paths.results


def check_jobs(jobs: int | None) -> int:
    """The local executor's worker processes: `jobs`, or the machine's cores when not given."""
    if jobs is None:
        return default_workers()
    if jobs < 1:
        raise RunInputError(f"jobs {jobs}: expected a number >= 1")
    if jobs > (os.cpu_count() or 1):
        raise RunInputError(f"--jobs {jobs}: this machine has {os.cpu_count()} cores")
    return jobs


def choose_executor(campaign: Campaign, executor: str | ExecutorSpec | None, jobs: int | None) -> ExecutorSpec:
    """The run's executor: `executor` (run --executor, the app's dialog), else the campaign's [run]
    executor; `jobs` sizes a local one only (a Dask cluster's workers are its own)."""
    if isinstance(executor, str):
        try:
            executor = parse_executor(executor)
        except ValueError as exc:
            raise RunInputError(f"--executor: {exc}") from None
    spec = executor or campaign.run.executor
    if jobs is not None and not spec.is_local:
        raise RunInputError(f"--jobs {jobs} sizes the local executor, and this run's is {spec} (its workers are "
                            "those started with `dask worker`): drop --jobs, or give --executor local")
    return spec


def load_campaign_file(config: str | os.PathLike[str]) -> Campaign:
    try:
        return load_campaign(config, families=campaign_schema())
    except ConfigError as exc:
        raise RunInputError(f"{config} has {len(exc.problems)} problem(s):\n{exc}") from None
    except OSError as exc:
        raise RunInputError(f"cannot read the campaign file {config}: {exc.strerror or exc}") from None


def with_results(campaign: Campaign, results: str | os.PathLike[str] | None) -> Campaign:
    """The campaign with another results folder (`run --results DIR`); relative: from the working folder."""
    if not results:
        return campaign
    paths = dataclasses.replace(campaign.paths, results=Path(os.path.abspath(results)))
    return dataclasses.replace(campaign, paths=paths)


def only_session(campaign: Campaign, config: str | os.PathLike[str]) -> str:
    if len(campaign.sessions) == 1:
        return next(iter(campaign.sessions))
    raise RunInputError(f"--session is needed: {config} has sessions {', '.join(campaign.sessions)}")


def finish_plan(campaign: Campaign, session: str, config: Path | None, notes: list[str], *, tag: str = "",
                run_id: str | None = None, wait: bool = False, dry: bool = False) -> RunPlan:
    """The plan of a campaign already loaded: the session must exist; the run gets its id."""
    try:
        campaign.session(session)
    except KeyError as exc:
        raise RunInputError(exc.args[0]) from None
    problem = tag_problem(tag)  # the tag ends file names under the results root
    if problem:
        raise RunInputError(problem)
    if run_id is not None and (not run_id or "/" in run_id or run_id.startswith(".")):
        raise RunInputError(f"run id {run_id!r}: expected a name such as FM20190312_090000_D11, not a path")
    try:
        run_id = run_id or new_run_id(campaign.paths.results, tag)
    except OSError as exc:  # read-only, full, denied, or a file where the folder should be
        raise RunInputError(f"results folder {campaign.paths.results} cannot be written "
                            f"({exc.strerror or exc}): choose a writable results folder (--results or "
                            "[paths] results)") from None
    if wait and dry:
        notes.append("Dry run: the data are not waited for; what is there now is checked")
    return RunPlan(campaign, session, run_id, notes, config)


def campaign_plan(config: str | os.PathLike[str], session: str | None = None, *, tag: str = "",
                  run_id: str | None = None, wait: bool = False, dry: bool = False,
                  results: str | os.PathLike[str] | None = None) -> RunPlan:
    """The plan of a run from a campaign file (session: the campaign's only one if not given;
    results: instead of the campaign's results folder)."""
    campaign = with_results(load_campaign_file(config), results)
    return finish_plan(campaign, session or only_session(campaign, config), Path(config).resolve(), [],
                       tag=tag, run_id=run_id, wait=wait, dry=dry)


def check_inputs(plan: RunPlan, options: RunOptions) -> PipelineRun:
    """The pipeline for `options`, once its data are where they should be."""
    pipeline = PipelineRun(plan.campaign, options)
    if options.mode == "aim":  # the data must be there now; in wait mode they may come later
        try:
            folders = pipeline.day_folders()
        except RunError as exc:
            raise RunInputError(str(exc)) from None
        for folder in folders:
            if not any(folder.glob("EXP_LOG_*.txt")):
                raise RunInputError(f"no EXP_LOG_*.txt in {folder}: is it a day folder?")
        shared = folders
    elif not plan.campaign.paths.data.is_dir():
        raise RunInputError(f"data folder {plan.campaign.paths.data} does not exist")
    else:
        shared = [plan.campaign.paths.data]
    executor = pipeline.executor_spec
    if not executor.is_local:  # before anything starts: the cluster answers and sees the folders
        try:
            check_cluster(executor, read=shared, write=[plan.results])
        except ExecutorUnavailable as exc:
            raise RunInputError(str(exc)) from None
    return pipeline


def launch_detached(plan: RunPlan, argv: list[str], *, wait: bool, check_only: bool, tag: str = "",
                    cwd: str | os.PathLike[str] | None = None) -> RunRecord:
    """Start the planned run in the background with `argv` (run's arguments, paths absolute)."""
    # the fields run.json holds before the run itself adds its own (docs/runs.md)
    extra = {"config": str(plan.config) if plan.config else None, "session": plan.session,
             "mode": "wait" if wait else "aim", "check_only": check_only, "tag": tag}
    return start_detached(argv, plan.results, run_id=plan.run_id, tag=tag, cwd=cwd, extra=extra)


def day_argument(day: str) -> str:
    """A day folder as the background run must see it: a path made absolute, a bare name kept."""
    return str(Path(day).resolve()) if ("/" in day or Path(day).exists()) else day


def start_background_run(config: str | os.PathLike[str], session: str | None = None, *, wait: bool = False,
                         check_only: bool = False, day_folder: str | None = None, start_obsid: int | None = None,
                         jobs: int | None = None, tag: str = "", idle_stop: float | None = None,
                         results: str | os.PathLike[str] | None = None,
                         executor: str | ExecutorSpec | None = None) -> RunRecord:
    """Check the run's inputs as `vison-engine run` does, then start it in the background, in its
    own session (it outlives its starter); return its record at once. Raises RunInputError.
    `results`: a results folder instead of the campaign's (`--results`); `jobs`: the local
    executor's worker processes (default: the cores); `executor`: instead of the campaign's."""
    workers = check_jobs(jobs)
    if start_obsid is not None and start_obsid < 1:
        raise RunInputError(f"start OBSID {start_obsid}: expected a number >= 1")
    if idle_stop is not None and idle_stop < 0:
        raise RunInputError("idle stop: expected minutes >= 0 (0 = never stop)")
    plan = campaign_plan(config, session, tag=tag, wait=wait, results=results)
    try:
        spec = choose_executor(plan.campaign, executor, jobs)
        check_inputs(plan, RunOptions(session=plan.session, mode="wait" if wait else "aim", check_only=check_only,
                                      day_folder=day_folder, start_obsid=start_obsid, jobs=workers, tag=tag,
                                      run_id=plan.run_id, executor=spec))
    except RunInputError:
        release_run_id(plan.results, plan.run_id)
        raise
    argv = [str(plan.config), "--session", plan.session]
    argv += ["--wait"] if wait else []
    argv += ["--check"] if check_only else []
    if day_folder:
        argv += ["--day", day_argument(day_folder)]
    if start_obsid is not None:
        argv += ["--start-obsid", str(start_obsid)]
    if idle_stop is not None and wait:
        argv += ["--idle-stop", str(idle_stop)]
    if jobs is not None:
        argv += ["--jobs", str(jobs)]
    if executor is not None:
        argv += ["--executor", str(spec)]
    if tag:
        argv += [f"--tag={tag}"]  # a tag may start with "-"
    if results:
        argv += ["--results", str(plan.results)]
    # relative paths in the campaign are the campaign file's
    return launch_detached(plan, argv, wait=wait, check_only=check_only, tag=tag, cwd=Path(config).resolve().parent)
