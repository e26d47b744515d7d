"""Entry point: one sub-command per module, registered here."""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from . import catalogue_cmd, clean_cmd, demo_cmd, monitor_cmd, scripts_cmd, sessions_cmd, simulate_cmd, validate_cmd
from . import fpa_cmd, run_cmd, runs_cmd, trends_cmd

COMMANDS = (catalogue_cmd, validate_cmd, scripts_cmd, sessions_cmd, simulate_cmd, demo_cmd, clean_cmd, monitor_cmd,
            run_cmd, *runs_cmd.COMMANDS, trends_cmd, fpa_cmd)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vison-engine",
        description="Ground calibration of CCD273 blocks: catalogue, configs, ELVIS simulator, pipeline.",
    )
    parser.add_argument("--version", action="version", version=f"vison {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        sub = commands.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.configure(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
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
