"""Alembic driven from Python, for start-up (`Database.upgrade`), `lumi db` and tests.

The script location is resolved from this package's own files, so migrations run the same from a checkout,
an installed wheel or a Docker image, whatever the working directory. Every function takes either a URL
(an engine is opened and disposed around the call) or an `AsyncEngine` the caller keeps.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from storage.models import metadata

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

_T = TypeVar("_T")


def make_config(url: str | None = None) -> Config:
    """An Alembic config needing no alembic.ini; `url` only matters for the `alembic` command line path."""
    config = Config()
    # ConfigParser interpolates '%', which can appear in paths and percent-encoded passwords.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


# pgqueuer's tables (revision 0003, PostgreSQL only) are the library's, not `storage.models`'.
QUEUE_TABLE_PREFIX = "pgqueuer"


def lumi_owns(name: str | None, type_: str, _parents: Any) -> bool:
    """Whether a database object is Lumi's to compare with the models (the job queue's are not)."""
    return not (type_ == "table" and name is not None and name.startswith(QUEUE_TABLE_PREFIX))


def head_revision() -> str | None:
    """The newest revision shipped with this code."""
    return ScriptDirectory.from_config(make_config()).get_current_head()


@asynccontextmanager
async def _connect(target: str | AsyncEngine) -> AsyncIterator[AsyncConnection]:
    if isinstance(target, AsyncEngine):
        async with target.connect() as connection:
            yield connection
        return
    engine = create_async_engine(target, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            yield connection
    finally:
        await engine.dispose()


async def _run(target: str | AsyncEngine, fn: Callable[[Connection], _T]) -> _T:
    async with _connect(target) as connection:
        result = await connection.run_sync(fn)
        await connection.commit()
        return result


def _command_runner(action: Callable[[Config], None]) -> Callable[[Connection], None]:
    def run(connection: Connection) -> None:
        config = make_config()
        config.attributes["connection"] = connection
        action(config)

    return run


async def upgrade(target: str | AsyncEngine, revision: str = "head") -> None:
    """Migrate the database at `target` up to `revision`."""
    await _run(target, _command_runner(lambda config: command.upgrade(config, revision)))


async def downgrade(target: str | AsyncEngine, revision: str) -> None:
    """Migrate down to `revision` (`"base"` drops everything the migrations created)."""
    await _run(target, _command_runner(lambda config: command.downgrade(config, revision)))


async def current(target: str | AsyncEngine) -> str | None:
    """The revision the database is at, or None when no migration has run there."""

    def read(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    return await _run(target, read)


async def schema_diff(target: str | AsyncEngine) -> list[Any]:
    """Differences between the migrated schema and `storage.models` (empty when they agree).

    A non-empty list means a model changed without a migration; CI fails on it.
    """

    def diff(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "include_name": lumi_owns}
        )
        return list(compare_metadata(context, metadata))

    return await _run(target, diff)
