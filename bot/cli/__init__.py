"""The `lumi` command line. Each module here registers one command (group) on the parser."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from bot import __version__
from bot.cli import comment as comment_command
from bot.cli import data as data_command
from bot.cli import db as db_command
from bot.cli import enhance as enhance_command
from bot.cli import gen3d as gen3d_command
from bot.cli import models as models_command
from bot.cli import run as run_command
from bot.cli import scan as scan_command
from bot.cli import serve_models as serve_models_command
from bot.cli import sync as sync_command
from bot.cli import train as train_command
from bot.config import SettingsError
from bot.errors import UserFacingError
from storage.db import DatabaseUnavailable

log = logging.getLogger("lumi")

COMMANDS = (
    run_command,
    sync_command,
    db_command,
    models_command,
    scan_command,
    comment_command,
    data_command,
    train_command,
    enhance_command,
    gen3d_command,
    serve_models_command,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lumi",
        description="Lumi: Discord image moderation, SNS-style photo comments and text-to-3D generation.",
    )
    parser.add_argument("--version", action="version", version=f"lumi {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        result: int = args.func(args)
        return result
    except (SettingsError, DatabaseUnavailable, UserFacingError) as error:
        print(f"lumi: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        # The machine said no (full disk, permissions, a port in use): its words in one line. The traceback
        # is kept for whoever debugs with LOG_LEVEL=DEBUG.
        log.debug("stopped by an operating system error", exc_info=True)
        print(f"lumi: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
