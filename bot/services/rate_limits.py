"""Per-user command rate limits and per-channel comment cooldowns, shared by every Lumi process.

One small service holds both, on the `limits` library's moving window: in memory in an embedded Lumi
(one process, exactly the limits it always had), in Redis (`REDIS_URL`) in distributed mode, so that
every process counts against one window: a user who sends `/scan` through two shards still gets five a
minute, and a channel gets one automatic comment per cooldown whichever process saw the post.

A channel's cooldown is a claim: ``claim`` takes it only if nobody holds it (Redis ``SET NX PX``),
``release`` gives it back only if this claim still holds it (compare-and-delete, so a late release
cannot drop someone else's newer claim), ``restart`` makes it run from now once a comment is posted.

Redis unreachable: limits **fail closed**. A command is refused with a message saying why
(`LimitsUnavailable`), and a photo gets no automatic comment; one line is logged (no traceback, at most
one every `OUTAGE_LOG_INTERVAL_S`), and everything else keeps working. Failing open would let a dead
Redis turn every process into an unthrottled model runner and comment spammer.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from dataclasses import dataclass
from typing import Final, Protocol

from limits import RateLimitItem, RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from redis import asyncio as redis_asyncio
from redis.exceptions import RedisError

from bot.errors import UserFacingError

__all__ = [
    "COMMAND_LIMIT",
    "LimitsUnavailable",
    "RateLimits",
    "Refusal",
    "build_rate_limits",
]

log = logging.getLogger(__name__)

# `/scan` and `/comment`: five a minute per user (what discord.py's `checks.cooldown(5, 60.0)` gave).
COMMAND_LIMIT: Final[RateLimitItem] = RateLimitItemPerMinute(5)
# A dead Redis is logged once per this many seconds, not once per message or command.
OUTAGE_LOG_INTERVAL_S: Final = 60.0
# How long a message stays "handled": far longer than Discord keeps replaying events after a resume.
HANDLED_TTL_S: Final = 600.0
# Redis answers in milliseconds; a black-holed address must not hold a command for long.
REDIS_TIMEOUT_S: Final = 2.0

# Delete the key only when it still holds this claim's token.
_COMPARE_AND_DELETE: Final = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""


class LimitsUnavailable(UserFacingError):
    """The shared limits cannot be checked (Redis is unreachable), so the command is refused."""


@dataclass(frozen=True)
class Refusal:
    """A command over its limit: how long until the user may try again."""

    retry_after_s: float


class ChannelClaims(Protocol):
    """Where channel cooldown claims live: this process's memory or Redis."""

    async def claim(self, key: str, token: str, cooldown_s: float) -> bool: ...
    async def release(self, key: str, token: str) -> None: ...
    async def restart(self, key: str, token: str, cooldown_s: float) -> None: ...
    async def close(self) -> None: ...


class MemoryClaims:
    """Claims in this process (embedded mode): the time each claim started, and when it ran out.

    The cooldown is compared when a claim is asked for, as Lumi always did, so a guild that shortens its
    cooldown sees the shorter one at once. Claims that ran out are dropped every `SWEEP_EVERY` claims, so
    one claim per handled message does not grow the memory without end.
    """

    SWEEP_EVERY: Final = 256

    def __init__(self) -> None:
        self._held: dict[str, tuple[str, float, float]] = {}  # key -> (token, started, runs out)
        self._claims_since_sweep = 0

    async def claim(self, key: str, token: str, cooldown_s: float) -> bool:
        now = time.monotonic()
        self._sweep(now)
        held = self._held.get(key)
        if held is not None and now - held[1] < cooldown_s:
            return False
        self._held[key] = (token, now, now + cooldown_s)
        return True

    def _sweep(self, now: float) -> None:
        self._claims_since_sweep += 1
        if self._claims_since_sweep >= self.SWEEP_EVERY:
            self._claims_since_sweep = 0
            self._held = {key: held for key, held in self._held.items() if held[2] > now}

    def __len__(self) -> int:
        return len(self._held)

    async def release(self, key: str, token: str) -> None:
        held = self._held.get(key)
        if held is not None and held[0] == token:
            del self._held[key]

    async def restart(self, key: str, token: str, cooldown_s: float) -> None:
        now = time.monotonic()
        self._held[key] = (token, now, now + cooldown_s)

    async def close(self) -> None:
        return None


class RedisClaims:
    """Claims in Redis (distributed mode): a key per channel that expires with its cooldown."""

    def __init__(self, client: redis_asyncio.Redis) -> None:
        self._client = client
        self._release = client.register_script(_COMPARE_AND_DELETE)

    async def claim(self, key: str, token: str, cooldown_s: float) -> bool:
        return bool(await self._client.set(key, token, nx=True, px=_milliseconds(cooldown_s)))

    async def release(self, key: str, token: str) -> None:
        await self._release(keys=[key], args=[token])

    async def restart(self, key: str, token: str, cooldown_s: float) -> None:
        await self._client.set(key, token, px=_milliseconds(cooldown_s))

    async def close(self) -> None:
        await self._client.aclose()


def _milliseconds(seconds: float) -> int:
    # PX must be positive; a zero cooldown never reaches here (see RateLimits.claim_channel).
    return max(1, math.ceil(seconds * 1000))


class RateLimits:
    """Command rate limits and channel cooldown claims over one storage (memory or Redis).

    ``where``: how the storage is named in log lines ("memory", or the Redis address without its
    password). Every method that talks to Redis turns its failure into a refusal (see the module).
    """

    def __init__(self, storage: Storage, claims: ChannelClaims, *, key_prefix: str, where: str) -> None:
        self._storage = storage
        self._limiter = MovingWindowRateLimiter(storage)
        self._claims = claims
        self._prefix = key_prefix
        self.where = where
        self._outage_logged_at: float | None = None

    @property
    def key_prefix(self) -> str:
        return self._prefix

    async def hit_command(
        self, command: str, user_id: int, limit: RateLimitItem = COMMAND_LIMIT
    ) -> Refusal | None:
        """Count one use of ``command`` by ``user_id``; a `Refusal` when the user is over ``limit``.

        Raises `LimitsUnavailable` (a message for the user) when the shared window cannot be reached.
        """
        identity = (command, "user", str(user_id))
        try:
            if await self._limiter.hit(limit, *identity):
                self._outage_over()
                return None
            stats = await self._limiter.get_window_stats(limit, *identity)
        except (StorageError, RedisError, OSError) as error:
            self._outage(error, f"/{command} refused")
            raise LimitsUnavailable(
                f"Lumi cannot check its rate limits right now, so /{command} is paused; "
                "try again in a minute."
            ) from None
        self._outage_over()
        return Refusal(retry_after_s=max(0.0, stats.reset_time - time.time()))

    async def claim_channel(self, channel_id: int, cooldown_s: float) -> str | None:
        """Start ``channel_id``'s cooldown; the claim's token when it was free, None while it runs (or
        when the claims cannot be reached: no automatic comment then). A zero cooldown is always free."""
        token = secrets.token_hex(8)
        if cooldown_s <= 0:
            return token
        try:
            claimed = await self._claims.claim(self._channel_key(channel_id), token, cooldown_s)
        except (RedisError, OSError) as error:
            self._outage(error, f"no automatic comment in channel {channel_id}")
            return None
        self._outage_over()
        return token if claimed else None

    async def claim_message(
        self,
        kind: str,
        message_id: int,
        ttl_s: float = HANDLED_TTL_S,
        *,
        when_unreachable: bool = False,
    ) -> bool:
        """Whether this is the first time ``kind`` handles the message (``<prefix>:handled:<kind>:<id>``,
        ``SET NX`` for ``ttl_s``): False for a second delivery of one message or interaction (Discord
        may send it twice). When the claims cannot be reached: ``when_unreachable`` (False: nothing is
        done then, as for the cooldowns)."""
        key = f"{self._prefix}:handled:{kind}:{message_id}"
        try:
            claimed = await self._claims.claim(key, secrets.token_hex(8), ttl_s)
        except (RedisError, OSError) as error:
            consequence = "handled anyway" if when_unreachable else "not handled"
            self._outage(error, f"{kind} {message_id} {consequence}")
            return when_unreachable
        self._outage_over()
        return claimed

    async def release_channel(self, channel_id: int, token: str) -> None:
        """Give the cooldown back, if ``token``'s claim still holds it; a failure only costs a cooldown."""
        try:
            await self._claims.release(self._channel_key(channel_id), token)
        except (RedisError, OSError) as error:
            self._outage(error, f"the cooldown of channel {channel_id} runs out by itself")

    async def restart_channel(self, channel_id: int, token: str, cooldown_s: float) -> None:
        """Let the cooldown run from now (a comment was just posted; writing it may have taken long)."""
        if cooldown_s <= 0:
            return
        try:
            await self._claims.restart(self._channel_key(channel_id), token, cooldown_s)
        except (RedisError, OSError) as error:
            self._outage(error, f"the cooldown of channel {channel_id} runs from its claim")

    async def close(self) -> None:
        try:
            await self._claims.close()
        finally:
            await _close_storage(self._storage)

    def _channel_key(self, channel_id: int) -> str:
        return f"{self._prefix}:cooldown:channel:{channel_id}"

    def _outage(self, error: BaseException, consequence: str) -> None:
        now = time.monotonic()
        if self._outage_logged_at is None or now - self._outage_logged_at >= OUTAGE_LOG_INTERVAL_S:
            self._outage_logged_at = now
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            log.warning("rate limits: %s is unreachable (%s); %s", self.where, reason, consequence)

    def _outage_over(self) -> None:
        if self._outage_logged_at is not None:
            self._outage_logged_at = None
            log.info("rate limits: %s answers again", self.where)


def build_rate_limits(redis_url: str | None, *, key_prefix: str = "lumi") -> RateLimits:
    """In memory without ``redis_url`` (embedded mode), else in the Redis it names (distributed mode).

    Nothing connects here: Redis is reached on the first limit checked, so a dead one refuses commands
    instead of stopping start-up.
    """
    if not redis_url:
        return RateLimits(MemoryStorage(), MemoryClaims(), key_prefix=key_prefix, where="memory")
    options = {"socket_timeout": REDIS_TIMEOUT_S, "socket_connect_timeout": REDIS_TIMEOUT_S}
    storage = RedisStorage(
        f"async+{redis_url}",
        implementation="redispy",
        key_prefix=f"{key_prefix}:limits",
        wrap_exceptions=True,
        **options,
    )
    client = redis_asyncio.Redis.from_url(
        redis_url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S
    )
    where = "Redis at " + _without_password(redis_url)
    return RateLimits(storage, RedisClaims(client), key_prefix=key_prefix, where=where)


async def _close_storage(storage: Storage) -> None:
    """Close the connections of `limits`' Redis storage, which offers no close of its own."""
    client = getattr(getattr(storage, "bridge", None), "storage", None)
    closing = getattr(client, "aclose", None)
    if closing is not None:
        await closing()


def _without_password(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rpartition('@')[2]}"
