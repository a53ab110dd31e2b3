"""Database fixtures shared by every test folder.

`database` is parametrized: each test using it runs once on a fresh SQLite file and once on PostgreSQL.
The PostgreSQL server comes from LUMI_TEST_POSTGRES_URL (default
postgresql+asyncpg://postgres@127.0.0.1:5432/postgres; that database is only used to create and drop
`lumi_test_<hex>` databases). An unusable server skips the PostgreSQL half, unless LUMI_REQUIRE_POSTGRES=1
(CI), where it fails.

Creating a PostgreSQL database costs over a second on an fsync'd server, so one `lumi_test_<hex>` database
is created and migrated per test session and emptied before each test that takes `database`. Tests that
change the schema itself take `fresh_database` instead: a database of their own, dropped afterwards.

Re-export the fixtures from a folder's conftest.py:

    from tests.fakes.databases import database, fresh_database, postgres_session_url, sqlite_database
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, Result, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool
from sqlmodel.ext.asyncio.session import AsyncSession

from storage import migrate
from storage.db import Database, default_sqlite_url
from storage.models import metadata

POSTGRES_URL_ENV = "LUMI_TEST_POSTGRES_URL"
REQUIRE_POSTGRES_ENV = "LUMI_REQUIRE_POSTGRES"
DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
TEST_DATABASE_PREFIX = "lumi_test_"

_T = TypeVar("_T")


def postgres_admin_url() -> URL:
    return make_url(os.environ.get(POSTGRES_URL_ENV) or DEFAULT_POSTGRES_URL)


def postgres_required() -> bool:
    return os.environ.get(REQUIRE_POSTGRES_ENV, "").strip() == "1"


def _postgres_unavailable(reason: str) -> NoReturn:
    if postgres_required():
        pytest.fail(f"{REQUIRE_POSTGRES_ENV}=1 but PostgreSQL is unusable: {reason}", pytrace=False)
    pytest.skip(
        f"PostgreSQL unusable ({reason}); point {POSTGRES_URL_ENV} at a server where the role may "
        "CREATE DATABASE"
    )


def _admin_engine(admin: URL) -> AsyncEngine:
    # CREATE/DROP DATABASE refuse to run inside a transaction block.
    return create_async_engine(
        admin, isolation_level="AUTOCOMMIT", poolclass=NullPool, connect_args={"timeout": 5}
    )


async def create_postgres_database(admin: URL | None = None) -> str:
    """Create an empty `lumi_test_<hex>` database, return its URL; skip or fail if the server is unusable."""
    admin = admin or postgres_admin_url()
    name = f"{TEST_DATABASE_PREFIX}{secrets.token_hex(6)}"
    engine = _admin_engine(admin)
    try:
        async with engine.connect() as connection:
            await connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except (OSError, sa.exc.DBAPIError) as exc:
        reason = exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc
        _postgres_unavailable(f"{admin.host or 'localhost'}:{admin.port or 5432}: {reason}")
    finally:
        await engine.dispose()
    return admin.set(database=name).render_as_string(hide_password=False)


async def drop_postgres_database(url: str) -> None:
    """Drop a database made by `create_postgres_database`, first closing any session still attached."""
    name = make_url(url).database
    if not name or not name.startswith(TEST_DATABASE_PREFIX):
        raise ValueError(f"refusing to drop {name!r}: not a test database")
    engine = _admin_engine(make_url(url).set(database=postgres_admin_url().database))
    try:
        async with engine.connect() as connection:
            # FORCE ends the sessions still attached and waits for them (PostgreSQL 13+).
            await connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await engine.dispose()


@asynccontextmanager
async def temporary_postgres_database() -> AsyncIterator[str]:
    url = await create_postgres_database()
    try:
        yield url
    finally:
        await drop_postgres_database(url)


@asynccontextmanager
async def open_database(url: str, *, migrated: bool = True) -> AsyncIterator[Database]:
    db = Database(url)
    try:
        if migrated:
            await db.upgrade()
        yield db
    finally:
        await db.close()


async def empty_all_tables(db: Database) -> None:
    """Remove every row, and any session a previous test leaked, keeping the migrated schema."""
    async with db.engine.begin() as connection:
        if db.backend == "postgresql":
            await connection.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
        # DELETE rather than TRUNCATE: for a few rows it avoids rewriting every table's files.
        for table in reversed(metadata.sorted_tables):
            await connection.execute(table.delete())
        if db.backend == "postgresql":
            # The job queue's tables (migration 0003) are not in the models.
            await connection.execute(sa.text("DELETE FROM pgqueuer"))
            await connection.execute(sa.text("DELETE FROM pgqueuer_log"))


async def run_sql(session: AsyncSession, sql: str, **params: Any) -> Result[Any]:
    """Plain SQL inside the session's transaction, for asserting on what is really stored."""
    connection = await session.connection()
    return await connection.execute(sa.text(sql), params)


def _run_on_own_loop(coroutine: Coroutine[Any, Any, _T]) -> _T:
    # Session-scoped set-up happens outside the tests' event loops; a separate thread keeps asyncio.run
    # from touching the loop pytest-asyncio has installed on the main thread.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def _create_and_migrate() -> str:
    url = await create_postgres_database()
    try:
        await migrate.upgrade(url)
    except BaseException:
        await drop_postgres_database(url)
        raise
    return url


@pytest.fixture(scope="session")
def postgres_session_url() -> Iterator[str]:
    """URL of a migrated `lumi_test_<hex>` database that lives for the whole test session."""
    url = _run_on_own_loop(_create_and_migrate())
    try:
        yield url
    finally:
        _run_on_own_loop(drop_postgres_database(url))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A migrated, empty database: a SQLite file in tmp_path, then the session's PostgreSQL database."""
    if request.param == "sqlite":
        async with open_database(default_sqlite_url(tmp_path / "db")) as db:
            yield db
        return
    url: str = request.getfixturevalue("postgres_session_url")
    async with open_database(url, migrated=False) as db:
        await empty_all_tables(db)
        yield db


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def fresh_database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A migrated database used by this test alone (its schema may be altered), dropped afterwards."""
    if request.param == "sqlite":
        async with open_database(default_sqlite_url(tmp_path / "db")) as db:
            yield db
        return
    async with temporary_postgres_database() as url, open_database(url) as db:
        yield db


@pytest.fixture
async def sqlite_database(tmp_path: Path) -> AsyncIterator[Database]:
    """A migrated SQLite database only, for tests that do not depend on the backend."""
    async with open_database(default_sqlite_url(tmp_path / "db")) as db:
        yield db
