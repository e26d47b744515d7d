"""`vison-engine simulate`: write a day folder as ELVIS would, with known injected truths."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from datetime import datetime
from pathlib import Path

from ..campaign.chamber import ChamberError, load_chamber
from ..tasks.registry import load_campaign_checked
from ..campaign.script_params import DIFFERENTIAL_KEYS
from ..formats.geometry import FULL, SMALL
from ..formats.tomlfile import ConfigError
from ..sim.elvis import SimulationError, SimulationRequest, StreamPacing, simulate
from ..sim.housekeeping import HKExcursion
from ..sim.plan import expand_tests
from ..sim.records import Equipment

NAME = "simulate"
HELP = "simulate ELVIS data (FITS, EXP_LOG, HK) for tests or a campaign session, with truths.json"


def configure(parser: argparse.ArgumentParser) -> None:
    what = parser.add_argument_group("what to acquire")
    what.add_argument("--tests", help="comma-separated tests or handles, e.g. BIAS01,DARK01,FOCUS00_800")
    what.add_argument("--session", help="a session of the campaign given with --config, e.g. D11")
    what.add_argument("--config", help="campaign TOML: serials, chamber, sessions, data folder")
    where = parser.add_argument_group("where and how")
    where.add_argument("--out", help="output folder (gets DD_Mmm_YY/ and truths.json); "
                       "default with --config: the campaign's data folder")
    where.add_argument("--small", action="store_true", help=f"small test geometry {SMALL.naxis1}x{SMALL.naxis2} "
                       f"instead of the full {FULL.naxis1}x{FULL.naxis2}")
    where.add_argument("--seed", type=int, default=0, help="random seed: same seed, same bytes (default 0)")
    where.add_argument("--first-obsid", type=int, default=1000, help="OBSID of the first exposure (default 1000)")
    where.add_argument("--start", default="2019-03-12T09:00:00", help="acquisition start, ISO time (sets the day folder)")
    where.add_argument("--chamber", help="chamber profile (default: the campaign's, else 'default')")
    where.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    stream = parser.add_argument_group("streaming (for wait mode and the monitor)")
    stream.add_argument("--stream", action="store_true", help="write exposures one by one over time, in ELVIS order")
    stream.add_argument("--interval", type=float, default=1.0, help="seconds between exposures when streaming")
    stream.add_argument("--partial-pause", type=float, default=0.0,
                        help="leave each file and EXP_LOG line half-written this many seconds (slow copy)")
    faults = parser.add_argument_group("injected faults")
    faults.add_argument("--hk-excursion", action="append", default=[], metavar="KEY=VALUE@OBSID",
                        help="out-of-limit HK reading, e.g. CCD1_TEMP_T=-246@1003 (repeatable)")
    faults.add_argument("--wrong-serial", action="append", default=[], metavar="sn_ccd2=SERIAL",
                        help="the data carry this serial instead of the campaign's (repeatable)")
    faults.add_argument("--exptime-factor", action="append", default=[], metavar="TEST=FACTOR",
                        help="the EXP_LOG records exptime x FACTOR for TEST (repeatable)")
    faults.add_argument("--missing", action="append", default=[], metavar="OBSID:CCD",
                        help="a frame logged but never written (repeatable)")
    faults.add_argument("--abort", action="append", default=[], metavar="TEST=N",
                        help="TEST aborts after N frames and is resubmitted in full (repeatable)")
    parser.add_argument("--json", action="store_true", help="machine-readable summary")


def run(args: argparse.Namespace) -> int:
    try:
        request = build_request(args)
    except (ValueError, KeyError, ChamberError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    pacing = StreamPacing(args.interval, args.partial_pause) if args.stream else None

    def report(exposure) -> None:
        if args.stream and not args.json:
            print(f"OBSID {exposure.obsid} {exposure.test} column {exposure.column_index + 1}", flush=True)

    try:
        result = simulate(request, pacing, report)
    except SimulationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    summary = {
        "day_folder": str(result.day_folder), "truths": str(result.truths_path), "explog": str(result.explog_path),
        "tests": result.tests, "obsids": list(result.obsid_range), "exposures": len(result.exposures),
        "geometry": request.geometry.name, "seconds": round(result.seconds, 2),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        first, last = result.obsid_range
        print(f"wrote {len(result.exposures)} exposures (OBSIDs {first}-{last}) of {', '.join(result.tests)}")
        print(f"  day folder: {result.day_folder}")
        print(f"  truths:     {result.truths_path}")
        print(f"  geometry {request.geometry.name}, {result.seconds:.1f} s")
    return 0


def build_request(args: argparse.Namespace) -> SimulationRequest:
    campaign = load_campaign_checked(args.config) if args.config else None
    if args.session and not campaign:
        raise ValueError("--session needs --config CAMPAIGN.toml")
    if args.session:
        tests = tuple(t.name for t in campaign.session(args.session).tests)
    elif args.tests:
        tests = tuple(t.strip() for t in args.tests.split(",") if t.strip())
    else:
        raise ValueError("say what to acquire: --tests BIAS01,DARK01 or --session D11 --config CAMPAIGN.toml")
    expand_tests(tests)  # unknown names fail here, before anything is written
    out = Path(args.out) if args.out else (campaign.paths.data if campaign else None)
    if out is None:
        raise ValueError("--out DIR is required without --config")
    chamber = load_chamber(args.chamber or (campaign.info.chamber if campaign else None))
    equipment = Equipment()
    if campaign:
        equipment = dataclasses.replace(equipment, **campaign.hardware.serials(),
                                        operator=campaign.info.operator or "sim", elvis=campaign.info.elvis)
    return SimulationRequest(
        tests=tests, out=out, chamber=chamber, geometry=SMALL if args.small else FULL, seed=args.seed,
        first_obsid=args.first_obsid, start=datetime.fromisoformat(args.start),
        equipment=dataclasses.replace(equipment, overrides=_serial_overrides(args.wrong_serial)),
        hk_excursions=tuple(HKExcursion.parse(text) for text in args.hk_excursion),
        exptime_factors=_pairs(args.exptime_factor, "--exptime-factor", float),
        missing_frames=frozenset(_obsid_ccd(text) for text in args.missing),
        aborted=_pairs(args.abort, "--abort", int),
        jobs=args.jobs,
    )


def _pairs(items: list[str], option: str, convert) -> dict:
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{option} {item!r}: expected NAME=VALUE")
        try:
            pairs[key.strip()] = convert(value.strip())
        except ValueError:
            raise ValueError(f"{option} {item!r}: {value!r} is not a valid value") from None
    return pairs


def _serial_overrides(items: list[str]) -> dict[str, str]:
    overrides = _pairs(items, "--wrong-serial", str)
    for key in overrides:
        if key not in DIFFERENTIAL_KEYS:
            raise ValueError(f"--wrong-serial {key}=...: expected one of {', '.join(DIFFERENTIAL_KEYS)}")
    return overrides


def _obsid_ccd(text: str) -> tuple[int, int]:
    obsid, sep, ccd = text.partition(":")
    if not sep or not obsid.isdigit() or ccd not in ("1", "2", "3"):
        raise ValueError(f"--missing {text!r}: expected OBSID:CCD with CCD 1, 2 or 3")
    return int(obsid), int(ccd)
