"""The `lumi` command line. Each module here registers one command (group) on the parser.

Only the command being run is imported: the modules import what their command needs (Discord, the
database, the models), and `lumi comment --labels` should not wait for `lumi run`'s imports. The full
parser, every command registered, is built for `lumi --help` and whenever the first word is no command.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import Protocol, cast

from bot import __version__
from bot.config import SettingsError
from bot.errors import UserFacingError

log = logging.getLogger("lumi")

# Command name -> the module that registers it, in the order `lumi --help` lists them.
COMMANDS: dict[str, str] = {
    "run": "bot.cli.run",
    "sync": "bot.cli.sync",
    "db": "bot.cli.db",
    "models": "bot.cli.models",
    "scan": "bot.cli.scan",
    "comment": "bot.cli.comment",
    "data": "bot.cli.data",
    "train": "bot.cli.train",
    "enhance": "bot.cli.enhance",
    "gen3d": "bot.cli.gen3d",
    "serve-models": "bot.cli.serve_models",
}


class _CommandModule(Protocol):
    def register(self, subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None: ...


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser for `argv`: with only its command registered when `argv` names one, else with all."""
    parser = argparse.ArgumentParser(
        prog="lumi",
        description="Lumi: Discord image moderation, SNS-style photo comments and text-to-3D generation.",
    )
    parser.add_argument("--version", action="version", version=f"lumi {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    named = _command_named(argv)
    for name, module_name in COMMANDS.items():
        if named is None or name == named:
            cast(_CommandModule, importlib.import_module(module_name)).register(subparsers)
    return parser


def _command_named(argv: Sequence[str] | None) -> str | None:
    """The command `argv` runs, when its first word is one (the only options before it are -h and
    --version, which need the full parser or none)."""
    words = list(sys.argv[1:] if argv is None else argv)
    if words and words[0] in COMMANDS:
        return words[0]
    return None


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    return build_parser(argv).parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(parse(argv))


def run_command(args: argparse.Namespace) -> int:
    if not getattr(args, "func", None):
        build_parser([]).print_help()
        return 2
    try:
        result: int = args.func(args)
        return result
    except KeyboardInterrupt:
        return 130
    except Exception as error:
        if isinstance(error, _one_line_errors()):
            print(f"lumi: {error}", file=sys.stderr)
            return 2
        if isinstance(error, OSError):
            # The machine said no (full disk, permissions, a port in use): its words in one line. The
            # traceback is kept for whoever debugs with LOG_LEVEL=DEBUG.
            log.debug("stopped by an operating system error", exc_info=True)
            print(f"lumi: {error}", file=sys.stderr)
            return 2
        raise


def _one_line_errors() -> tuple[type[Exception], ...]:
    """Errors whose message says it all. `DatabaseUnavailable` is among them once the command loaded the
    database code: a command that never imported it cannot have raised it, and importing it only to
    catch it would cost every command SQLAlchemy's and Alembic's import."""
    db = sys.modules.get("storage.db")
    storage_errors: tuple[type[Exception], ...] = (db.DatabaseUnavailable,) if db is not None else ()
    return (SettingsError, UserFacingError, *storage_errors)


def entry() -> int:
    """The `lumi` program: `main` on the process's arguments, ending the process at once after a command
    that asks for it (``skip_teardown``).

    The interpreter's own exit runs every atexit hook and joins the threads torch and TensorFlow start,
    which took ~2.7 s after `lumi comment` had printed its comment. A command sets ``skip_teardown`` only
    when it has closed everything it opened before returning (models, files, event loop); what is left
    to do here is flushing the output and the log handlers, then `os._exit`.
    """
    args = parse()
    status = run_command(args)
    if getattr(args, "skip_teardown", False):
        os._exit(_flushed(status))
    return status


def _flushed(status: int) -> int:
    logging.shutdown()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:
        # What the interpreter does when its own final flush fails (a closed pipe, a full disk).
        return 120
    return status
