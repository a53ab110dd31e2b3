"""When a gateway shard may IDENTIFY: discord.py's own pacing in one process, a Redis lock across many.

Discord starts sessions in buckets, `shard_id % max_concurrency`, one IDENTIFY per bucket per 5 s, counted
over every process of the bot; an IDENTIFY too soon is refused (op 9, Invalid Session) and spends one of
the day's 1,000. discord.py paces the shards of one process (5 s between them); processes know nothing of
each other. In distributed mode each IDENTIFY therefore first takes the bucket's lock,
`SET <REDIS_KEY_PREFIX>:identify:<bucket> <owner> NX PX <window>` (prefix `lumi`), and waits while
another process holds it. The lock is never released: it expires when the bucket's window has passed,
which is the point.

Redis unreachable: the shard waits and tries again (1 s, doubling to 15 s), with one warning a try, for
up to `patience_s` (60 s). Then it identifies anyway, after a full window plus a random share of another
(so that processes cut off together spread out), with a warning saying so: a gateway must not stay off
Discord because Redis is down, and the worst an unguarded IDENTIFY costs is Discord refusing it (discord.py
then identifies again, through this gate). It never identifies unguarded without saying so.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Final, Protocol

from redis import asyncio as redis_asyncio
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

# Discord's window per bucket; the lock is held a little longer, for the IDENTIFY's own trip.
DISCORD_IDENTIFY_WINDOW_S: Final = 5.0
LOCK_MARGIN_S: Final = 0.25
REDIS_TIMEOUT_S: Final = 2.0
RETRY_FIRST_S: Final = 1.0
RETRY_MAX_S: Final = 15.0
PATIENCE_S: Final = 60.0


class IdentifyGate(Protocol):
    async def wait_turn(self, shard_id: int, *, initial: bool) -> None: ...
    async def close(self) -> None: ...


class LocalPacing:
    """discord.py's default: a process's first IDENTIFY at once, every later one after the window."""

    def __init__(self, window_s: float = DISCORD_IDENTIFY_WINDOW_S) -> None:
        self.window_s = window_s

    async def wait_turn(self, shard_id: int, *, initial: bool) -> None:
        if not initial:
            await asyncio.sleep(self.window_s)

    async def close(self) -> None:
        return None


class RedisIdentifyLock:
    """One IDENTIFY per bucket per window across every process, through a Redis key per bucket."""

    def __init__(
        self,
        redis_url: str,
        *,
        max_concurrency: Callable[[], Awaitable[int]],
        window_s: float = DISCORD_IDENTIFY_WINDOW_S,
        patience_s: float = PATIENCE_S,
        key_prefix: str = "lumi",
        owner: str | None = None,
    ) -> None:
        self.redis_url = redis_url
        self.window_s = window_s
        self.patience_s = patience_s
        self.key_prefix = key_prefix
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}"
        self._fetch_max_concurrency = max_concurrency
        self._max_concurrency: int | None = None
        self._redis = redis_asyncio.from_url(
            redis_url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S
        )

    async def bucket(self, shard_id: int) -> int:
        if self._max_concurrency is None:
            try:
                self._max_concurrency = max(1, await self._fetch_max_concurrency())
            except Exception as error:
                # One bucket for every shard is the slowest plan and never too fast.
                log.warning("cannot read max_concurrency from Discord (%s); taking 1", error)
                self._max_concurrency = 1
        return shard_id % self._max_concurrency

    async def wait_turn(self, shard_id: int, *, initial: bool) -> None:
        bucket = await self.bucket(shard_id)
        key = f"{self.key_prefix}:identify:{bucket}"
        hold_ms = int((self.window_s + LOCK_MARGIN_S) * 1000)
        started = time.monotonic()
        delay = RETRY_FIRST_S
        waited_for_others = False
        while True:
            try:
                if await self._redis.set(key, f"{self.owner}:{shard_id}", nx=True, px=hold_ms):
                    if waited_for_others:
                        log.info(
                            "shard %d identifies after waiting %.1f s for bucket %d",
                            shard_id,
                            time.monotonic() - started,
                            bucket,
                        )
                    return
                remaining_ms = await self._redis.pttl(key)
            except (RedisError, OSError) as error:
                unreachable_s = time.monotonic() - started
                if unreachable_s + delay > self.patience_s:
                    await self._identify_unguarded(shard_id, error)
                    return
                log.warning(
                    "identify lock: Redis at %s is unreachable (%s); shard %d waits %.0f s and tries again",
                    self.redis_url,
                    error,
                    shard_id,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            waited_for_others = True
            # -2: the key expired between SET and PTTL; -1 cannot happen (always set with PX).
            wait_s = max(remaining_ms, 20) / 1000 if remaining_ms > 0 else 0.02
            await asyncio.sleep(min(wait_s, self.window_s) + random.uniform(0, 0.05))

    async def _identify_unguarded(self, shard_id: int, error: BaseException) -> None:
        pause = self.window_s * (1 + random.random())
        log.warning(
            "identify lock: Redis at %s unreachable for %.0f s (%s); shard %d identifies WITHOUT the "
            "cluster-wide lock in %.1f s (Discord may refuse it; discord.py then identifies again)",
            self.redis_url,
            self.patience_s,
            error,
            shard_id,
            pause,
        )
        await asyncio.sleep(pause)

    async def close(self) -> None:
        await self._redis.aclose()
