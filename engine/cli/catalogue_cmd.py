"""`vison-engine catalogue`: the tests, their columns, frames and durations."""

from __future__ import annotations

import argparse
import json

from ..campaign.catalogue import CATALOGUE, resolve
from ..campaign.chamber import ChamberError, load_chamber
from ..campaign.timing import duration_minutes

NAME = "catalogue"
HELP = "list the calibration tests: columns, frames per column, duration with a chamber profile"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("tests", nargs="*", help="test names or generic handles (default: all)")
    parser.add_argument("--chamber", default="B_NOSTROMO", help="chamber profile name or .toml path")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    try:
        chamber = load_chamber(args.chamber)
        tests = [t for name in args.tests for t in resolve(name)] if args.tests else list(CATALOGUE.values())
    except (ChamberError, KeyError) as exc:
        print(f"error: {exc}")
        return 2
    rows = []
    for test in tests:
        frames = test.frames_per_column(chamber)
        rows.append({
            "test": test.name, "handle": test.handle, "family": test.family, "columns": len(frames),
            "frames": frames, "total_frames": sum(frames),
            "minutes": round(duration_minutes(test, chamber), 2) if test.acquires else 0.0,
            "surrogate": test.surrogate, "purpose": test.purpose,
        })
    if args.json:
        print(json.dumps({"chamber": chamber.name, "tests": rows}, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Test catalogue (chamber {chamber.name})")
    for header in ("test", "handle", "cols", "frames", "minutes", "purpose"):
        table.add_column(header, justify="right" if header in ("cols", "frames", "minutes") else "left")
    for row in rows:
        minutes = f"{row['minutes']:.2f}" if row["surrogate"] is None else f"uses {row['surrogate']}"
        table.add_row(row["test"], row["handle"], str(row["columns"]), str(row["total_frames"]), minutes, row["purpose"])
    Console().print(table)
    return 0
