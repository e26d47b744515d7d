"""`vison-engine scripts INPUTS.toml`: write a campaign's ELVIS scripts, checksums, inventory, scheduler."""

from __future__ import annotations

import argparse
import json
import sys

from ..campaign.chamber import ChamberError
from ..campaign.scripts import OutputFolderError, load_script_inputs, write_scripts
from ..formats.tomlfile import ConfigError

NAME = "scripts"
HELP = "write the ELVIS acquisition scripts (.xlsx) of a campaign, with checksums, inventory and scheduler"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", help="scripts inputs TOML (template: configs/scripts_template.toml)")
    parser.add_argument("--force", action="store_true", help="replace the output folder if it exists and is not empty")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    try:
        written = write_scripts(load_script_inputs(args.inputs), force=args.force)
    except (ConfigError, OutputFolderError, ChamberError, ValueError, OSError) as exc:
        return report_failure(exc, args.json)
    if args.json:
        print(json.dumps(written.as_dict(), indent=2))
        return 0
    print(f"Wrote {len(written.scripts)} scripts to {written.folder}")
    print(f"  with {written.checksums}, {written.inventory}, {written.scheduler}")
    print()
    print(written.inventory_text, end="")
    return 0


def report_failure(exc: Exception, as_json: bool) -> int:
    """A failure as a message (or JSON) and exit code 1, never a traceback."""
    problems = getattr(exc, "problems", None)
    if as_json:
        payload: dict = {"error": str(exc)}
        if problems is not None:
            payload["problems"] = [{"path": str(p.path), "line": p.line, "key": p.key, "message": p.message}
                                   for p in problems]
        print(json.dumps(payload, indent=2))
    elif problems is not None:
        print(f"error: {len(problems)} problem(s), nothing written:", file=sys.stderr)
        print(exc, file=sys.stderr)
    else:
        print(f"error: {exc}", file=sys.stderr)
    return 1
