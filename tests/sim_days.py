"""Shared by the end-to-end tests: the hardware serials of their campaigns and simulated days, a
small-geometry BIAS01 + DARK01 day, and one aim-mode run of a session over a day folder."""

from __future__ import annotations

import json
from pathlib import Path

from engine.campaign.chamber import load_chamber
from engine.campaign.config import campaign_from_dict
from engine.formats.geometry import SMALL
from engine.pipeline.runner import PipelineRun, RunOptions
from engine.sim.elvis import SimulationRequest, simulate
from engine.sim.records import Equipment

SERIALS = {"roe": "FM14", "rpsu": "FM14", "ccd1": "14888-88-81", "ccd2": "14888-88-82", "ccd3": "14888-88-83"}
EQUIPMENT = Equipment(sn_roe="FM14", sn_rpsu="FM14", sn_ccd1=SERIALS["ccd1"], sn_ccd2=SERIALS["ccd2"],
                      sn_ccd3=SERIALS["ccd3"])


def bias_dark_day(out: Path) -> Path:
    """A small-geometry BIAS01 + DARK01 day (seed 0, the simulator's own serials): its day folder."""
    return simulate(SimulationRequest(tests=("BIAS01", "DARK01"), out=out, chamber=load_chamber("B_NOSTROMO"),
                                      geometry=SMALL, jobs=1)).day_folder


def run_session(data: Path, results: Path, tests, jobs: int = 1) -> dict[str, dict]:
    """Session D11 of `tests` on the day folders in `data`, aim mode: each test's result.json."""
    campaign = campaign_from_dict({
        "campaign": {"block": "NOSTROMO", "chamber": "B_NOSTROMO"}, "hardware": SERIALS,
        "paths": {"data": str(data), "results": str(results)},
        "sessions": {"D11": {"tests": list(tests)}},
    }, base_dir=results.parent)
    PipelineRun(campaign, RunOptions(session="D11", jobs=jobs)).run_aim()
    return {test: json.loads((results / "D11" / test / "result.json").read_text()) for test in tests}
