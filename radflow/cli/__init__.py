"""The `radflow` command line. Subcommands map to functions, one module per command group;
settings come from the environment."""

from __future__ import annotations

import argparse
import logging
import sys

from kernel.errors import RadflowError
from kernel.settings import Settings
from radflow.cli import archive, data, evaluation, journal, model, serving, training


def _configure_logging(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def cmd_settings(settings: Settings, args: argparse.Namespace) -> int:
    for var, default, doc in Settings.table():
        print(f"{var:<30} {default!s:<14} {doc}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="radflow", description="Draft radiology impressions from HL7 in real time.")
    sub = parser.add_subparsers(dest="command", required=True)
    # the order here is the order `radflow --help` lists the commands in
    serving.add_commands(sub)
    journal.add_commands(sub)
    model.add_commands(sub)
    data.add_commands(sub)
    archive.add_commands(sub)
    sub.add_parser("settings", help="list the settings and their variables").set_defaults(func=cmd_settings)
    training.add_commands(sub)
    evaluation.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        _configure_logging(settings)
        return int(args.func(settings, args) or 0)
    except RadflowError as exc:
        print(f"radflow: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C before a command had anything to stop (loading, training)
        return 130
