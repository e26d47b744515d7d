"""Entry point: one sub-command per module, registered here.

Only the module of the command given is imported: `vison-engine run` starts its workers' fork
server before the pipeline's imports (run_cmd), and neither it nor the workers (which import the
entry point's module again, as multiprocessing does) pay for the simulator's scipy, the scripts'
spreadsheet reader or the monitor. `vison-engine --help` imports them all, to list them.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

from .. import __version__

# command -> module of engine.cli defining it (NAME, HELP, configure, run), in the help's order;
# runs_cmd defines several (its COMMANDS, each with those four)
COMMAND_MODULES = {
    "catalogue": "catalogue_cmd", "validate": "validate_cmd", "scripts": "scripts_cmd", "sessions": "sessions_cmd",
    "simulate": "simulate_cmd", "demo": "demo_cmd", "clean": "clean_cmd", "monitor": "monitor_cmd", "run": "run_cmd",
    "runs": "runs_cmd", "monitors": "runs_cmd", "status": "runs_cmd", "stop": "runs_cmd", "tail": "runs_cmd",
    "trends": "trends_cmd", "fpa": "fpa_cmd",
}


def command(name: str) -> Any:
    """The command `name` (its module, or its class in runs_cmd), imported now."""
    module = importlib.import_module(f".{COMMAND_MODULES[name]}", __package__)
    return next((c for c in getattr(module, "COMMANDS", ()) if c.NAME == name), module)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or of the command `only` alone (one module imported)."""
    parser = argparse.ArgumentParser(
        prog="vison-engine",
        description="Ground calibration of CCD273 blocks: catalogue, configs, ELVIS simulator, pipeline.",
    )
    parser.add_argument("--version", action="version", version=f"vison {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in [only] if only else COMMAND_MODULES:
        found = command(name)
        sub = commands.add_parser(found.NAME, help=found.HELP, description=found.HELP)
        found.configure(sub)
        sub.set_defaults(run=found.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv[0] if argv and argv[0] in COMMAND_MODULES else None)
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into head & co.
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
