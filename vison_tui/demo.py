"""The built-in demo campaign for `vison demo`, set up as `vison-engine demo` sets it up.

TODO(engine): `engine/cli/demo_cmd.py` does this inside its `run()` with prints; once it offers
`prepare_demo(out)` / `demo_request(campaign)` functions, call them and delete this module's copies.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from engine.campaign.chamber import load_chamber
from engine.campaign.config import Campaign
from engine.formats.geometry import SMALL
from engine.paths import configs_dir
from engine.sim.elvis import SimulationRequest, SimulationResult, simulate
from engine.sim.housekeeping import HKExcursion
from engine.sim.records import Equipment

DEMO_SESSION = "D11"


def prepare_demo_folder(out: Path) -> Path:
    """`out/campaign.toml` (copied from the example unless already there), `out/data`, `out/results`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config_path = out / "campaign.toml"
    if not config_path.exists():
        shutil.copy(configs_dir() / "examples" / "demo_campaign.toml", config_path)
    for folder in ("data", "results"):
        (out / folder).mkdir(exist_ok=True)
    return config_path


def demo_request(campaign: Campaign, session: str = DEMO_SESSION) -> SimulationRequest:
    """The simulation `vison-engine demo` runs: the session's tests, small frames, one HK excursion."""
    equipment = dataclasses.replace(Equipment(), **campaign.hardware.serials(), operator=campaign.info.operator)
    return SimulationRequest(
        tests=tuple(t.name for t in campaign.session(session).tests), out=campaign.paths.data,
        chamber=load_chamber(campaign.info.chamber), geometry=SMALL, equipment=equipment,
        hk_excursions=(HKExcursion("CCD2_TEMP_T", -125.5, 1003),),
        jobs=1,  # no process pool forked from inside the app's threads; same bytes either way
    )


def simulate_demo(campaign: Campaign, session: str = DEMO_SESSION) -> SimulationResult | None:
    """Simulate the demo session's data unless its day folder is already there (then None)."""
    request = demo_request(campaign, session)
    if request.day_folder.exists():
        return None
    return simulate(request)
