"""`vison-engine demo`: the built-in demo campaign on simulated data, end to end."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..tasks.registry import load_campaign_checked
from ..campaign.progress import acquisition_progress
from ..formats.explog import read_explog
from ..formats.geometry import FULL, SMALL
from ..formats.hk import read_hk
from ..formats.hklimits import load_hk_limits
from ..formats.tomlfile import ConfigError
from ..pipeline.results import read_result, result_folder
from ..sim.demo import demo_request, prepare_demo_folder, simulate_demo
from ..sim.elvis import SimulationRequest
from ..sim.truths import Truths

NAME = "demo"
HELP = "the built-in demo: simulate a session with known truths, run the pipeline on it, compare"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo", help="demo folder (default ./demo): campaign.toml, data/, results/")
    parser.add_argument("--session", default="D11", help="session of the demo campaign (default D11)")
    parser.add_argument("--full", action="store_true", help="full-size frames (default: the small geometry)")


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    existed = (out / "campaign.toml").exists()
    config_path = prepare_demo_folder(out)
    if not existed:
        print(f"demo campaign copied to {config_path}")
    try:
        campaign = load_campaign_checked(config_path)
        campaign.session(args.session)
    except (ConfigError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    request = demo_request(campaign, args.session, FULL if args.full else SMALL, jobs=2)
    result = simulate_demo(request)
    if result is None:
        print(f"reusing simulated data in {request.day_folder}")
    else:
        print(f"simulated session {args.session}: {len(result.exposures)} exposures of {', '.join(result.tests)} "
              f"in {result.seconds:.1f} s -> {result.day_folder}")
    _check(request, campaign)
    print(f"\n$ vison-engine run {config_path} --session {args.session} --jobs 2")
    from .main import main as cli_main  # the same command a user would type

    code = cli_main(["run", str(config_path), "--session", args.session, "--jobs", "2"])
    _compare_with_truths(request, campaign, args.session)
    print(f"\nresults: {campaign.paths.results / args.session}/<TEST>/ (result.json, report.md, products/, figs/)")
    print("next: open the same campaign in the terminal app with `vison demo`, or watch data land with\n"
          "  vison-engine simulate --tests BIAS01 --out /tmp/stream --small --stream &\n"
          "  vison-engine run --data /tmp/stream/12_Mar_19 --tests BIAS01 --results /tmp/stream-results -W")
    return code


def _check(request: SimulationRequest, campaign) -> None:
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


def _compare_with_truths(request: SimulationRequest, campaign, session: str) -> None:
    """What the pipeline measured next to what the simulator injected (CCD1)."""
    truths = Truths.load(request.truths_path)
    record = read_result(result_folder(campaign.paths.results, session, "BIAS01"))
    if not record:
        return
    measured = record.get("ccds", {}).get("CCD1", {})
    print("\nBIAS01, CCD1: injected truth vs measured")
    print("  Q   offset ADU (truth / measured)   RON ADU (truth / measured)")
    for quadrant, truth in truths.ccds[1].quadrants.items():
        values = measured.get(quadrant, {})
        offset, ron = values.get("offset_prescan_adu"), values.get("ron_image_adu")
        print(f"  {quadrant}   {truth.offset_adu:8.2f} / {_num(offset, 8.2)}          "
              f"{truth.ron_adu:.3f} / {_num(ron, 5.3)}")


def _num(value, spec: float) -> str:
    width, precision = str(spec).split(".")
    return f"{value:{width}.{precision}f}" if isinstance(value, (int, float)) else "n/a".rjust(int(width))
