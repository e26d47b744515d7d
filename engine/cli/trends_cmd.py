"""`vison-engine trends`: result.json of many blocks, sessions and runs in one table.

    vison-engine trends RESULTS... [--test BIAS01] [--value ron_image_adu] [--out DIR]
                        [--config CAMPAIGN] [--no-figures] [--json]

RESULTS: results folders, session or test folders, or result.json files (searched below; staging
folders left out, earlier results `<TEST>.previous-<time>` kept for the drift only). Writes
trends.csv (every value), outliers.csv and trends.xlsx (sheets values, compare, drift, outliers)
and a comparison figure per value with a limit, and an FPA map (fpa_<TEST>_<value>.png) per value
with a limit or named by --value whose quadrants can be placed on the focal plane (FPA results, or
blocks of the FPA layout), into DIR (default ./trends), then names each
outlier: block, CCD, quadrant, value, limit. Limits: the families' defaults, or those of
--config (its [limits] and [limits.<family>]). Exit status 0 (outliers are results), 2 nothing
found or bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

NAME = "trends"
HELP = "compare result.json across blocks, sessions and runs: one table (CSV, xlsx), drift, outliers"
EXIT_OK, EXIT_INPUT = 0, 2


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", nargs="+", metavar="RESULTS",
                        help="results folders, session or test folders, or result.json files")
    parser.add_argument("--test", action="append", default=[], metavar="TEST",
                        help="only these tests (name or handle; repeat or comma-separate), e.g. BIAS01")
    parser.add_argument("--value", action="append", default=[], metavar="NAME",
                        help="only these values (repeat or comma-separate), e.g. ron_image_adu")
    parser.add_argument("--out", default="trends", metavar="DIR", help="where the table and figures go (./trends)")
    parser.add_argument("--config", metavar="CAMPAIGN", help="take the limits of this campaign file")
    parser.add_argument("--no-figures", action="store_true", help="tables only")
    parser.add_argument("--json", action="store_true", help="the summary and outliers as JSON")


def run(args: argparse.Namespace) -> int:
    from ..pipeline.launch import RunInputError, load_campaign_file
    from ..pipeline.trends import TrendsError, gather_trends, write_trends

    tests = [t.strip() for item in args.test for t in item.split(",") if t.strip()]
    values = [v.strip() for item in args.value for v in item.split(",") if v.strip()]
    try:
        campaign = load_campaign_file(args.config) if args.config else None
        trends = gather_trends([Path(p) for p in args.results], tests=tests, values=values, campaign=campaign)
    except (TrendsError, RunInputError) as exc:
        _error(args, str(exc))
        return EXIT_INPUT
    try:
        files = write_trends(trends, Path(args.out), figures=not args.no_figures, maps_of=values)
    except OSError as exc:
        _error(args, f"cannot write {args.out}: {exc.strerror or exc}")
        return EXIT_INPUT
    outliers = trends.outliers()
    if args.json:
        print(json.dumps({"records": len(trends.records), "blocks": trends.blocks(), "tests": trends.tests(),
                          "points": len(trends.points), "drift_series": len(trends.drift()),
                          "files": [str(f) for f in files], "skipped": trends.skipped,
                          "outliers": [{k: v for k, v in p.row().items() if k != "current"} for p in outliers]},
                         indent=2, default=str))
        return EXIT_OK
    sessions = sorted({p.session for p in trends.points})
    print(f"Gathered {len(trends.records)} result.json: blocks {', '.join(trends.blocks()) or '-'}; sessions "
          f"{', '.join(sessions) or '-'}; tests {', '.join(trends.tests()) or '-'}; {len(trends.points)} values")
    for problem in trends.skipped:
        print(f"  skipped {problem}")
    drift = trends.drift()
    if drift:
        print(f"Drift: {len(drift)} series seen more than once (sheet drift)")
    print(f"Wrote {', '.join(str(f) for f in files)}")
    if not outliers:
        print("No value outside its limit.")
    else:
        print(f"Outside the limits ({len(outliers)}):")
        for point in outliers:
            print(f"  {point.describe()}")
    return EXIT_OK


def _error(args: argparse.Namespace, message: str) -> None:
    if args.json:
        print(json.dumps({"event": "error", "message": message}))
    print(f"error: {message}", file=sys.stderr)
