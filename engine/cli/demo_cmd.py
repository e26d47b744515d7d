"""`vison-engine demo`: the built-in demo campaign on simulated data, end to end."""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
from pathlib import Path

from ..campaign.chamber import load_chamber
from ..campaign.config import load_campaign
from ..campaign.progress import acquisition_progress
from ..formats.explog import read_explog
from ..formats.geometry import FULL, SMALL
from ..formats.hk import read_hk
from ..formats.hklimits import load_hk_limits
from ..formats.tomlfile import ConfigError
from ..paths import configs_dir
from ..sim.elvis import SimulationRequest, simulate
from ..sim.housekeeping import HKExcursion
from ..sim.records import Equipment
from ..sim.truths import Truths

NAME = "demo"
HELP = "simulate the demo campaign's session into a folder and check it (frames, serials, HK)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo", help="demo folder (default ./demo): campaign.toml, data/, results/")
    parser.add_argument("--session", default="D11", help="session of the demo campaign (default D11)")
    parser.add_argument("--full", action="store_true", help="full-size frames (default: the small geometry)")


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    config_path = out / "campaign.toml"
    out.mkdir(parents=True, exist_ok=True)
    if not config_path.exists():
        shutil.copy(configs_dir() / "examples" / "demo_campaign.toml", config_path)
        print(f"demo campaign copied to {config_path}")
    for folder in ("data", "results"):
        (out / folder).mkdir(exist_ok=True)
    try:
        campaign = load_campaign(config_path)
        session = campaign.session(args.session)
    except (ConfigError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    chamber = load_chamber(campaign.info.chamber)
    equipment = dataclasses.replace(Equipment(), **campaign.hardware.serials(), operator=campaign.info.operator)
    request = SimulationRequest(
        tests=tuple(t.name for t in session.tests), out=campaign.paths.data, chamber=chamber,
        geometry=FULL if args.full else SMALL, equipment=equipment,
        # one HK excursion, so the check below has something to find
        hk_excursions=(HKExcursion("CCD2_TEMP_T", -125.5, 1003),),
    )
    if request.day_folder.exists():
        print(f"reusing simulated data in {request.day_folder}")
    else:
        result = simulate(request)
        print(f"simulated session {args.session}: {len(result.exposures)} exposures of {', '.join(result.tests)} "
              f"in {result.seconds:.1f} s -> {result.day_folder}")
    return _check(request, campaign)


def _check(request: SimulationRequest, campaign) -> int:
    explogs = sorted(request.day_folder.glob("EXP_LOG_*.txt"))
    log = read_explog(explogs[0], complete=True)
    print(f"\n{log.path.name}: {len(log.rows)} rows, ELVIS {log.version}, OBSIDs {log.obsids()[0]}-{log.obsids()[-1]}")
    print("acquisition against the catalogue:")
    for progress in acquisition_progress(log.rows, request.chamber, request.day_folder):
        print(f"  {progress.describe()}")
    wanted = campaign.hardware.serials()
    mismatched = sorted({f"{k}={row[k]}" for row in log.rows for k, v in wanted.items() if row.get(k) != v})
    print("serials: " + ("as the campaign says" if not mismatched else "MISMATCH " + ", ".join(mismatched)))
    limits = load_hk_limits()
    alerts = []
    for path in sorted(request.day_folder.glob("HK_*.txt")):
        hk = read_hk(path)
        obsid = int(path.name.split("_")[1])
        commanded = next((r for r in log.rows if r["ObsID"] == obsid), None)
        alerts += [(obsid, v) for v in limits.check_file(hk, commanded) if v.status != "ok"]
    print(f"HK: {len(alerts)} out-of-limit reading(s)")
    for obsid, verdict in alerts:
        print(f"  OBSID {obsid}: [{verdict.status}] {verdict.reason}")
    truths = Truths.load(request.truths_path)
    print("injected truths, CCD1 (offset ADU / RON ADU / gain e-/ADU):")
    for quadrant, truth in truths.ccds[1].quadrants.items():
        print(f"  {quadrant}: {truth.offset_adu:7.1f} / {truth.ron_adu:.3f} / {truth.gain_e_per_adu:.3f}")
    print("\nnext: the pipeline will analyse this session (vison-engine run, in progress)")
    return 0
