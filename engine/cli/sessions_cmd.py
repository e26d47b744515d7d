"""`vison-engine sessions INPUTS.toml`: a folder per session with its scripts and sequence file."""

from __future__ import annotations

import argparse
import json

from ..campaign.scripts import OutputFolderError
from ..campaign.sessions import build_sessions, load_session_inputs
from ..formats.tomlfile import ConfigError
from .scripts_cmd import report_failure

NAME = "sessions"
HELP = "build session folders (D00, D11, ...) from written scripts, each with its ELVIS sequence file"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", help="sessions inputs TOML (template: configs/sessions_template.toml)")
    parser.add_argument("--force", action="store_true", help="replace the output folder if it exists and is not empty")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    try:
        built = build_sessions(load_session_inputs(args.inputs), force=args.force)
    except (ConfigError, OutputFolderError, OSError) as exc:
        return report_failure(exc, args.json)
    if args.json:
        print(json.dumps(built.as_dict(), indent=2))
        return 0
    print(f"Built {len(built.sessions)} session(s) in {built.folder} from {built.scripts_folder}")
    for session in built.sessions:
        print(f"session: {session.name} ({session.sequence})")
        for name in session.scripts:
            print(f"  {name}")
    return 0
