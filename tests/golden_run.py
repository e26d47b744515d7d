"""Shared by the pipeline tests: the numbers of BIAS01, BIAS02 and DARK01 result.json on the small
simulated day (seed 0, one job), what the before/after comparison of the family contract holds
fixed; and `generic_only`, which makes every family run its generic sub-tasks alone."""

from __future__ import annotations

import json
from pathlib import Path

import engine.sim.elvis as elvis
from engine.campaign.chamber import load_chamber
from engine.campaign.config import campaign_from_dict
from engine.formats.geometry import SMALL
from engine.pipeline.runner import PipelineRun, RunOptions
from sim_days import EQUIPMENT, SERIALS

GOLDEN_TESTS = ("BIAS01", "BIAS02", "DARK01")
KEPT = ("values", "ccds", "flags", "flag_reasons", "products", "figures", "errors")


def golden_numbers(tmp: Path) -> dict[str, dict]:
    data, results = tmp / "data", tmp / "results"
    elvis.simulate(elvis.SimulationRequest(tests=GOLDEN_TESTS, out=data, chamber=load_chamber("B_NOSTROMO"),
                                           geometry=SMALL, equipment=EQUIPMENT, jobs=1))
    campaign = campaign_from_dict({
        "campaign": {"block": "NOSTROMO", "chamber": "B_NOSTROMO"}, "hardware": SERIALS,
        "paths": {"data": str(data), "results": str(results)},
        "sessions": {"D11": {"tests": list(GOLDEN_TESTS)}},
    }, base_dir=tmp)
    PipelineRun(campaign, RunOptions(session="D11", jobs=1)).run_aim()
    numbers = {}
    for test in GOLDEN_TESTS:
        record = json.loads((results / "D11" / test / "result.json").read_text())
        numbers[test] = {key: record[key] for key in KEPT}
    return numbers


def generic_only(monkeypatch) -> None:
    """Make every family run only the generic init, check and report (tests of the run modes,
    not of the analyses): its other sub-tasks read as not implemented."""
    import dataclasses

    from engine.pipeline import runner
    from engine.tasks import registry
    from engine.tasks.base import AnalysisTask
    from engine.tasks.family import ALWAYS

    def generic(name: str):
        declared = registry.family(name)
        return dataclasses.replace(declared, task=AnalysisTask, checks=(), needs=(), required=(),
                                   not_implemented=frozenset(set(declared.subtasks) - set(ALWAYS)))

    monkeypatch.setattr(runner, "family", generic)
    monkeypatch.setattr(runner, "task_for", lambda name: AnalysisTask())
