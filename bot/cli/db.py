"""`lumi db upgrade|current`: schema migrations (also applied automatically at start-up)."""

from __future__ import annotations

import argparse
import asyncio

from sqlalchemy.engine import make_url

from bot.cli.common import settings_and_logging
from storage import migrate


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("db", help="database migrations")
    actions = parser.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    upgrade = actions.add_parser("upgrade", help="migrate the database to the latest schema")
    upgrade.add_argument("revision", nargs="?", default="head")
    upgrade.set_defaults(func=_upgrade)
    current = actions.add_parser("current", help="print the schema revision the database is at")
    current.set_defaults(func=_current)


def _upgrade(args: argparse.Namespace) -> int:
    settings = settings_and_logging()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    url = settings.resolved_database_url
    asyncio.run(migrate.upgrade(url, args.revision))
    shown = make_url(url).render_as_string(hide_password=True)
    print(f"database at {shown} upgraded to {args.revision}")
    return 0


def _current(args: argparse.Namespace) -> int:
    settings = settings_and_logging()
    revision = asyncio.run(migrate.current(settings.resolved_database_url))
    print(revision or "empty (no migrations applied)")
    return 0
