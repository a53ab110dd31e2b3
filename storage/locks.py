"""PostgreSQL advisory locks: work that several Lumi processes on one database must do only once.

Session locks (`pg_advisory_lock`) belong to a connection and end when it closes, so a process that
dies frees its locks with its connections; nothing is left to clean up. Keys are 64-bit numbers
derived from a name (`lock_key`), the same in every process and every version.

On SQLite there is one process by design (the embedded mode): every lock here is granted at once.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

__all__ = ["ClusterLock", "lock_key", "session_lock"]

log = logging.getLogger(__name__)


def lock_key(name: str) -> int:
    """A signed 64-bit key for `name` (PostgreSQL's bigint), stable across processes and releases."""
    digest = hashlib.sha256(f"lumi:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _is_postgresql(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "postgresql"


@asynccontextmanager
async def session_lock(engine: AsyncEngine, name: str, *, waiting: str) -> AsyncIterator[None]:
    """Hold the lock `name` for the block, waiting for whoever holds it; `waiting` is logged if one does."""
    if not _is_postgresql(engine):
        yield
        return
    key = lock_key(name)
    async with engine.connect() as connection:
        got = (await connection.execute(sa.select(sa.func.pg_try_advisory_lock(key)))).scalar_one()
        if not got:
            log.info("%s", waiting)
            await connection.execute(sa.select(sa.func.pg_advisory_lock(key)))
        # Committed at once: the lock is the session's, and an open transaction would pin old snapshots.
        await connection.commit()
        try:
            yield
        finally:
            await connection.execute(sa.select(sa.func.pg_advisory_unlock(key)))
            await connection.commit()


class ClusterLock:
    """A lock one process of the deployment holds for as long as it runs some recurring work.

    `hold()` takes the lock, or confirms it is still held, on a connection of its own kept between calls;
    it returns False while another process holds it. The holder keeps it until `release()` or until its
    connection ends (the process stopped or died), so the work moves to another process only then, at
    that process's next `hold()`. On SQLite `hold()` is always True.
    """

    def __init__(self, engine: AsyncEngine, name: str) -> None:
        self.engine = engine
        self.name = name
        self._key = lock_key(name)
        self._connection: AsyncConnection | None = None

    @property
    def held(self) -> bool:
        return self._connection is not None

    async def hold(self) -> bool:
        if not _is_postgresql(self.engine):
            return True
        if self._connection is not None:
            try:
                # A connection the server dropped has lost the lock with it: then try to take it anew.
                await self._connection.execute(sa.select(sa.literal(1)))
                await self._connection.commit()
                return True
            except (OSError, sa.exc.DBAPIError):
                log.warning("lost the connection holding the %s lock; trying to take it again", self.name)
                await self._discard()
        connection = await self.engine.connect()
        try:
            got = bool(
                (await connection.execute(sa.select(sa.func.pg_try_advisory_lock(self._key)))).scalar_one()
            )
            await connection.commit()
        except BaseException:
            await connection.close()
            raise
        if not got:
            await connection.close()
            return False
        self._connection = connection
        return True

    async def release(self) -> None:
        if self._connection is None:
            return
        try:
            await self._connection.execute(sa.select(sa.func.pg_advisory_unlock(self._key)))
            await self._connection.commit()
        except (OSError, sa.exc.DBAPIError):
            # The lock ends with the connection anyway.
            log.debug("could not unlock %s; closing its connection frees it", self.name, exc_info=True)
        await self._discard()

    async def _discard(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                await connection.close()
            except (OSError, sa.exc.DBAPIError):
                # A broken connection is invalidated and dropped by the pool either way.
                await connection.invalidate()
