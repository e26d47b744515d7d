"""`vison-engine validate CONFIG`: check a campaign TOML and list every problem at once."""

from __future__ import annotations

import argparse
import json

from ..tasks.registry import load_campaign_checked
from ..formats.tomlfile import ConfigError

NAME = "validate"
HELP = "validate a campaign TOML: every error with file, line, key and what was expected"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="campaign TOML file")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    try:
        campaign = load_campaign_checked(args.config)
    except ConfigError as exc:
        if args.json:
            print(json.dumps({"valid": False, "problems": [
                {"path": str(p.path), "line": p.line, "key": p.key, "message": p.message} for p in exc.problems
            ]}, indent=2))
        else:
            print(f"{len(exc.problems)} problem(s):")
            print(exc)
        return 1
    sessions = {name: [t.name for t in s.tests] for name, s in campaign.sessions.items()}
    if args.json:
        print(json.dumps({"valid": True, "sessions": sessions}, indent=2))
    else:
        print(f"{args.config}: valid; sessions: " + ", ".join(f"{k} ({len(v)} tests)" for k, v in sessions.items()))
    return 0
