"""PostgreSQL LISTEN/NOTIFY between Lumi processes on one database: hints, never the truth.

``notify`` sends on a channel through the database's own pool. A ``ChannelListener`` holds one asyncpg
connection listening on its channels and calls a callback per message. A notification is best effort:
one sent while a listener is reconnecting is lost, so every receiver must also be right without it (the
rows stay the truth). Payloads are text of at most 8000 bytes (PostgreSQL's limit).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

import asyncpg
import sqlalchemy as sa

from storage.db import Database

__all__ = ["MAX_PAYLOAD_BYTES", "ChannelListener", "notify"]

log = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = 7999

Callback = Callable[[str], None]


async def notify(database: Database, channel: str, payload: str) -> None:
    """Send ``payload`` on ``channel`` to every listening process (PostgreSQL only)."""
    if len(payload.encode()) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"a NOTIFY payload must stay under 8000 bytes, got {len(payload.encode())}")
    async with database.engine.connect() as connection:
        await connection.execute(sa.select(sa.func.pg_notify(channel, payload)))
        await connection.commit()


class ChannelListener:
    """LISTEN on ``callbacks``' channels over one connection of its own, reconnecting when it drops."""

    def __init__(self, dsn: str, callbacks: Mapping[str, Callback], *, retry_s: float = 2.0) -> None:
        self._dsn = dsn
        self._callbacks = dict(callbacks)
        self._retry_s = retry_s
        self._connection: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()
        self.ready = asyncio.Event()

    async def start(self) -> None:
        """Listen from now on; returns once the first connection listens (raises if it cannot connect)."""
        await self._connect()
        self._task = asyncio.create_task(self._keep_listening(), name="pg-channel-listener")

    async def _connect(self) -> None:
        connection = await asyncpg.connect(self._dsn)
        for channel, callback in self._callbacks.items():
            await connection.add_listener(channel, self._relay(channel, callback))
        connection.add_termination_listener(lambda _connection: self._lost.set())
        self._connection = connection
        self._lost.clear()
        self.ready.set()

    def _relay(self, channel: str, callback: Callback) -> Callable[..., None]:
        def relay(_connection: Any, _pid: int, _channel: str, payload: str) -> None:
            try:
                callback(payload)
            except Exception:
                log.exception("a listener of %s failed on %r", channel, payload[:200])

        return relay

    async def _keep_listening(self) -> None:
        while True:
            await self._lost.wait()
            self.ready.clear()
            log.warning("lost the LISTEN connection (%s); reconnecting", ", ".join(self._callbacks))
            while True:
                try:
                    await self._connect()
                except (OSError, asyncpg.PostgresError) as error:
                    log.warning("cannot LISTEN yet (%s); retrying in %.0f s", error, self._retry_s)
                    await asyncio.sleep(self._retry_s)
                else:
                    log.info("listening again on %s", ", ".join(self._callbacks))
                    break

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed():
            await connection.close()
