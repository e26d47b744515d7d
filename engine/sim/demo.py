"""The built-in demo campaign: a folder with the demo campaign TOML, simulated data and results.

Shared by `vison-engine demo` and the app's `vison demo`, so both open the same thing.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from ..campaign.chamber import load_chamber
from ..campaign.config import Campaign
from ..formats.geometry import SMALL, CCDGeometry
from ..paths import configs_dir
from .elvis import SimulationRequest, SimulationResult, simulate
from .housekeeping import HKExcursion
from .records import Equipment

DEMO_SESSION = "D11"
# one HK excursion, so the checks and the monitor have something to find
DEMO_EXCURSIONS = (HKExcursion("CCD2_TEMP_T", -125.5, 1003),)


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


def demo_request(campaign: Campaign, session: str = DEMO_SESSION, geometry: CCDGeometry = SMALL,
                 jobs: int = 1) -> SimulationRequest:
    """The session's tests, with the campaign's serials, one HK excursion (same bytes whatever `jobs`)."""
    equipment = dataclasses.replace(Equipment(), **campaign.hardware.serials(), operator=campaign.info.operator)
    return SimulationRequest(
        tests=tuple(t.name for t in campaign.session(session).tests), out=campaign.paths.data,
        chamber=load_chamber(campaign.info.chamber), geometry=geometry, equipment=equipment,
        hk_excursions=DEMO_EXCURSIONS, jobs=jobs,
    )


def simulate_demo(request: SimulationRequest) -> SimulationResult | None:
    """Simulate the demo session's data unless its day folder is already there (then None)."""
    if request.day_folder.exists():
        return None
    return simulate(request)
