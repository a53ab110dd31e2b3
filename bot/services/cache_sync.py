"""Per-guild caches kept in step across Lumi processes: what changed is announced on PostgreSQL's
`lumi_cache` channel, `{"guild": <id>, "what": "comments" | "hashes", "origin": <process>}`, and every
other process forgets that guild's cached copy. Notifications are best effort (lost while a listening
connection is down), so every cached copy also expires after `CACHE_TTL_S`. On SQLite (one process)
nothing is announced; the caches are updated in place as before.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from typing import Any, Final, Generic, TypeVar

from storage.db import Database
from storage.notify import Notifications

__all__ = ["CACHE_CHANNEL", "CACHE_TTL_S", "CacheSync", "GuildCache"]

log = logging.getLogger(__name__)

CACHE_CHANNEL: Final = "lumi_cache"
# The longest another process's change goes unseen when its notification was lost.
CACHE_TTL_S: Final = 30.0

T = TypeVar("T")


class GuildCache(Generic[T]):
    """Values per guild that expire after ``ttl_s`` and can be forgotten at once."""

    def __init__(self, ttl_s: float = CACHE_TTL_S) -> None:
        self.ttl_s = ttl_s
        self._entries: dict[int, tuple[T, float]] = {}

    def get(self, guild_id: int) -> T | None:
        entry = self._entries.get(guild_id)
        if entry is None or time.monotonic() - entry[1] >= self.ttl_s:
            return None
        return entry[0]

    def put(self, guild_id: int, value: T) -> None:
        self._entries[guild_id] = (value, time.monotonic())

    def forget(self, guild_id: int) -> None:
        self._entries.pop(guild_id, None)


class CacheSync:
    def __init__(self, database: Database | None) -> None:
        self.origin = secrets.token_hex(8)
        self._notifications = Notifications(database, CACHE_CHANNEL) if database is not None else None
        self._handlers: dict[str, list[Callable[[int], None]]] = {}

    @property
    def connected(self) -> bool:
        return self._notifications is not None and self._notifications.connected.is_set()

    def on(self, what: str, forget: Callable[[int], None]) -> None:
        self._handlers.setdefault(what, []).append(forget)

    def start(self) -> None:
        if self._notifications is not None:
            self._notifications.listen(self._received)

    async def changed(self, guild_id: int, what: str) -> None:
        """Tell the other processes that ``what`` changed for the guild (its row is committed)."""
        if self._notifications is None:
            return
        payload = {"guild": guild_id, "what": what, "origin": self.origin}
        try:
            await self._notifications.notify(payload)
        except Exception as error:
            # The change is committed; the other processes see it when their copy expires.
            log.warning("could not announce a %s change of guild %s (%s)", what, guild_id, error)

    def _received(self, payload: dict[str, Any]) -> None:
        if payload.get("origin") == self.origin:
            return
        guild, what = payload.get("guild"), payload.get("what")
        if not isinstance(guild, int) or not isinstance(what, str):
            log.warning("ignoring a cache notification without guild and what: %.200r", payload)
            return
        for forget in self._handlers.get(what, []):
            forget(guild)

    async def close(self) -> None:
        if self._notifications is not None:
            await self._notifications.close()
