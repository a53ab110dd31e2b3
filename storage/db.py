"""The async database handle: one engine per process, short sessions per unit of work.

SQLite (the default, a file under the data directory) and PostgreSQL are supported, both through async
drivers (`sqlite+aiosqlite://`, `postgresql+asyncpg://`). The schema comes from Alembic (`upgrade()`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from storage import migrate
from storage.locks import session_lock
from storage.models import metadata

Backend = Literal["sqlite", "postgresql"]

# The advisory lock `upgrade` holds on PostgreSQL (storage/locks.py).
MIGRATION_LOCK = "migrations"

# How long a SQLite writer waits for another connection's write lock before "database is locked".
SQLITE_BUSY_TIMEOUT_S = 30.0


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached or opened; the message says where and what to check."""


def default_sqlite_url(data_dir: Path) -> str:
    """`sqlite+aiosqlite:///<absolute data_dir>/lumi.db`, creating `data_dir` if needed."""
    data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite+aiosqlite:///{(data_dir.resolve() / 'lumi.db').as_posix()}"


def _sqlite_on_connect(dbapi_connection: Any, _connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # WAL lets readers continue while one connection writes; NORMAL sync is safe under WAL.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # SQLite ignores declared foreign keys (ON DELETE SET NULL included) unless asked, per connection.
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def _sqlite_hint(reason: str) -> str:
    """What to check, from SQLite's own words for the fault."""
    lowered = reason.lower()
    if "not a database" in lowered or "malformed" in lowered:
        return (
            "the file is damaged or is not a SQLite database: restore it from a backup, or move it aside to "
            "start with an empty database"
        )
    if "full" in lowered or "i/o error" in lowered:
        return "the disk may be full (or failing): free some space and try again"
    return "check that its directory exists and is writable by this user"


class Database:
    """An async SQLAlchemy engine plus a session factory.

    ```python
    db = Database(url)
    await db.upgrade()
    async with db.session() as session:
        case = await repo_cases.create_case(session=session, ...)
        await session.commit()
    await db.close()
    ```
    """

    def __init__(self, url: str, *, echo: bool = False, connect_timeout_s: float = 10.0) -> None:
        self._url: URL = make_url(url)
        backend = self._url.get_backend_name()
        if backend not in ("sqlite", "postgresql"):
            raise ValueError(
                f"unsupported database {backend!r}: use sqlite+aiosqlite:// or postgresql+asyncpg://"
            )
        self._backend: Backend = "sqlite" if backend == "sqlite" else "postgresql"
        if self._backend == "sqlite":
            self._engine = create_async_engine(
                self._url, echo=echo, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S}
            )
            event.listen(self._engine.sync_engine, "connect", _sqlite_on_connect)
        else:
            self._engine = create_async_engine(
                self._url,
                echo=echo,
                # A server restart leaves dead connections in the pool; test each one before use.
                pool_pre_ping=True,
                connect_args={"timeout": connect_timeout_s},
            )
        self._sessions = async_sessionmaker(self._engine, class_=AsyncSession, expire_on_commit=False)

    @property
    def backend(self) -> Backend:
        return self._backend

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    @property
    def url(self) -> str:
        """The URL with any password masked, for logs and status pages."""
        return self._url.render_as_string(hide_password=True)

    @property
    def libpq_dsn(self) -> str:
        """PostgreSQL only: the URL as asyncpg and libpq take it (no driver suffix), password included,
        for the connections that are not SQLAlchemy's (the job queue, LISTEN)."""
        if self._backend != "postgresql":
            raise ValueError("only a PostgreSQL database has a libpq DSN")
        return self._url.set(drivername="postgresql").render_as_string(hide_password=False)

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite database file; None for PostgreSQL, in-memory SQLite and URI filenames."""
        return self._sqlite_file()

    def __repr__(self) -> str:
        return f"Database({self.url!r})"

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session for one unit of work; anything not committed is rolled back when the block exits."""
        async with self._sessions() as session:
            yield session

    async def ping(self) -> None:
        """Run `SELECT 1`; raises `DatabaseUnavailable` when the database cannot be reached."""
        sqlite_path = self._sqlite_file()
        if sqlite_path is not None and not await asyncio.to_thread(sqlite_path.parent.is_dir):
            raise DatabaseUnavailable(self._unavailable_message(FileNotFoundError("no such directory")))
        try:
            async with self._engine.connect() as connection:
                await connection.execute(sa.text("SELECT 1"))
        except (OSError, sa.exc.DBAPIError) as exc:
            raise DatabaseUnavailable(self._unavailable_message(exc)) from exc

    async def check_tables(self) -> None:
        """Read one row of every table Lumi uses; `DatabaseUnavailable` names the first that fails.

        Cheap (an indexed first row each), for health checks: a reachable database whose table was dropped
        or damaged is as broken for Lumi as an unreachable one, and `ping` alone cannot see it.
        """
        await self.ping()
        async with self._engine.connect() as connection:
            for table in metadata.sorted_tables:
                try:
                    await connection.execute(sa.select(sa.literal(1)).select_from(table).limit(1))
                except (OSError, sa.exc.DBAPIError) as exc:
                    reason = str(exc.orig) if isinstance(exc, sa.exc.DBAPIError) else str(exc)
                    first_line = reason.splitlines()[0] if reason else type(exc).__name__
                    raise DatabaseUnavailable(
                        f"the {table.name} table cannot be read ({first_line}); run `lumi db upgrade` if the "
                        "schema is behind, or restore the database from a backup"
                    ) from exc

    async def upgrade(self, revision: str = "head") -> None:
        """Apply Alembic migrations up to `revision`; `DatabaseUnavailable` when the database fails."""
        # Connectivity first, so an unreachable server is reported as such and not as a migration failure.
        await self.ping()
        try:
            # Processes starting together on one PostgreSQL migrate it once: the others wait, then find
            # it at the head. (On SQLite the lock is a no-op.)
            async with session_lock(
                self._engine,
                MIGRATION_LOCK,
                waiting="another Lumi process is migrating the database; waiting",
            ):
                await self._upgrade_unlocked(revision)
        except (OSError, sa.exc.DBAPIError) as exc:
            # A full disk, a damaged file or a server going away mid-migration: one sentence, not a traceback.
            raise DatabaseUnavailable(self._unavailable_message(exc)) from exc

    async def _upgrade_unlocked(self, revision: str) -> None:
        if self._is_in_memory_sqlite():
            # A second engine would open a different, empty in-memory database.
            await migrate.upgrade(self._engine, revision)
        else:
            # A separate connection without this engine's per-connection pragmas: SQLite table rebuilds
            # in future migrations must be able to switch foreign keys off.
            await migrate.upgrade(self._url.render_as_string(hide_password=False), revision)

    async def revision(self) -> str | None:
        """The schema revision the database is at (None: none ran); `DatabaseUnavailable` on a fault."""
        await self.ping()
        try:
            return await migrate.current(self._engine)
        except (OSError, sa.exc.DBAPIError) as exc:
            raise DatabaseUnavailable(self._unavailable_message(exc)) from exc

    async def close(self) -> None:
        await self._engine.dispose()

    async def __aenter__(self) -> Database:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    def _is_in_memory_sqlite(self) -> bool:
        return self._backend == "sqlite" and self._url.database in (None, "", ":memory:")

    def _sqlite_file(self) -> Path | None:
        if self._backend != "sqlite" or self._is_in_memory_sqlite() or self._url.database is None:
            return None
        if self._url.database.startswith("file:"):  # URI filenames are left to SQLite
            return None
        return Path(self._url.database)

    def _unavailable_message(self, exc: BaseException) -> str:
        reason = str(exc.orig) if isinstance(exc, sa.exc.DBAPIError) else (str(exc) or type(exc).__name__)
        if self._backend == "sqlite":
            return (
                f"cannot use the SQLite database at {self._url.database or ':memory:'} ({reason}); "
                + _sqlite_hint(reason)
            )
        host = self._url.host or "localhost"
        port = self._url.port or 5432
        return (
            f"cannot reach PostgreSQL at {host}:{port} (database {self._url.database!r}, "
            f"user {self._url.username!r}): {reason}. Check that the server is running and accepts TCP "
            "connections on that host and port, that the database and role exist, and that DATABASE_URL is "
            "right"
        )
