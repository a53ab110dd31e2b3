"""Small messages between Lumi processes over PostgreSQL `LISTEN/NOTIFY` (best effort).

`notify` sends one JSON payload on a channel, inside its own short transaction; `listen` keeps one
connection of its own (asyncpg, outside the engine's pool) listening, and calls back with each payload.
Notifications are lost while that connection is down (it reconnects, 1 s doubling to 30 s), so what
they announce must also be found out some other way (a cache expires by itself). On SQLite, with one
process by definition, nothing is sent and nothing is listened to.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

import asyncpg
import sqlalchemy as sa

from storage.db import Database

__all__ = ["Notifications"]

log = logging.getLogger(__name__)

RECONNECT_FIRST_S = 1.0
RECONNECT_MAX_S = 30.0


class Notifications:
    def __init__(self, database: Database, channel: str) -> None:
        self.database = database
        self.channel = channel
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    @property
    def shared(self) -> bool:
        return self.database.backend == "postgresql"

    async def notify(self, payload: dict[str, Any]) -> None:
        if not self.shared:
            return
        async with self.database.engine.begin() as connection:
            await connection.execute(
                sa.text("SELECT pg_notify(:channel, :payload)"),
                {"channel": self.channel, "payload": json.dumps(payload)},
            )

    def listen(self, callback: Callable[[dict[str, Any]], None]) -> None:
        """Start listening in the background (PostgreSQL only); `close` stops it."""
        if self.shared and self._task is None:
            self._task = asyncio.create_task(self._listen(callback), name=f"listen-{self.channel}")

    async def _listen(self, callback: Callable[[dict[str, Any]], None]) -> None:
        dsn = self.database.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)

        def receive(_connection: object, _pid: int, _channel: str, text: str) -> None:
            try:
                payload = json.loads(text)
            except ValueError:
                log.warning("ignoring a notification on %s that is not JSON: %.80r", self.channel, text)
                return
            if isinstance(payload, dict):
                callback(payload)

        delay = RECONNECT_FIRST_S
        while True:
            lost = asyncio.Event()
            try:
                connection = await asyncpg.connect(dsn)
            except (OSError, asyncpg.PostgresError) as error:
                log.warning("cannot listen on %s (%s); trying again in %.0f s", self.channel, error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_S)
                continue
            try:
                connection.add_termination_listener(_setter(lost))
                await connection.add_listener(self.channel, receive)
                delay = RECONNECT_FIRST_S
                self.connected.set()
                await lost.wait()
                log.warning("the connection listening on %s was lost; reconnecting", self.channel)
            finally:
                self.connected.clear()
                with contextlib.suppress(Exception):
                    await connection.close(timeout=2)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


def _setter(event: asyncio.Event) -> Callable[[object], None]:
    return lambda _connection: event.set()
