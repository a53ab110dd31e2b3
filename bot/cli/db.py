"""`lumi db upgrade|current`: schema migrations (also applied automatically at start-up).

Any database fault (server down, damaged or unwritable SQLite file, full disk) ends in one line saying
where and what to check, with the URL's password masked.
"""

from __future__ import annotations

import argparse
import asyncio

from alembic.util import CommandError

from bot.cli.common import settings_and_logging
from bot.errors import UserFacingError
from storage.db import Database


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
    settings.ensure_data_dir()
    database = Database(settings.resolved_database_url)
    asyncio.run(_upgrade_and_close(database, args.revision))
    print(f"database at {database.url} upgraded to {args.revision}")
    return 0


async def _upgrade_and_close(database: Database, revision: str) -> None:
    try:
        await database.upgrade(revision)
    except CommandError as error:
        # Alembic's own words, e.g. "Can't locate revision identified by 'x'".
        raise UserFacingError(
            f"cannot migrate the database at {database.url} to {revision!r}: {error}"
        ) from None
    finally:
        await database.close()


def _current(args: argparse.Namespace) -> int:
    settings = settings_and_logging()
    revision = asyncio.run(_revision_and_close(Database(settings.resolved_database_url)))
    print(revision or "empty (no migrations applied)")
    return 0


async def _revision_and_close(database: Database) -> str | None:
    try:
        return await database.revision()
    finally:
        await database.close()
