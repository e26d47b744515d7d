"""A real pipeline run for the app's tests: the demo campaign with its session cut to a few tests,
simulated (small geometry, the demo's HK excursion) and analysed by the engine's CLI in this
process, which leaves what the screens read: result.json, report.md, products, the pipeline log
and the run record."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from engine.campaign.config import load_campaign
from engine.cli.main import main as engine_cli
from engine.sim.demo import DEMO_SESSION, demo_request, prepare_demo_folder, simulate_demo


def analyse_demo_day(root: Path, tests: tuple[str, ...] = ("BIAS01", "DARK01")) -> Path:
    """root/demo/campaign.toml with session D11 = `tests`, simulated and analysed; run records in
    root/state. Returns the campaign file."""
    config = prepare_demo_folder(root / "demo")
    text = config.read_text()
    session = re.compile(rf"(\[sessions\.{DEMO_SESSION}\][^\n]*\ntests = )\[[^\]]*\]")
    assert session.search(text), "the demo campaign's session D11 is no longer written in its short form"
    config.write_text(session.sub(lambda m: m.group(1) + json.dumps(list(tests)), text, count=1))
    simulate_demo(demo_request(load_campaign(config)))
    before = os.environ.get("VISON_STATE_DIR")
    os.environ["VISON_STATE_DIR"] = str(root / "state")
    try:
        assert engine_cli(["run", str(config), "--session", DEMO_SESSION]) == 0
    finally:
        if before is None:
            os.environ.pop("VISON_STATE_DIR")
        else:
            os.environ["VISON_STATE_DIR"] = before
    return config


def result_of(config: Path, test: str) -> dict:
    return json.loads((config.parent / "results" / DEMO_SESSION / test / "result.json").read_text())
