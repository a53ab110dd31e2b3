"""Discord's sharding rules, as the fake Discord applies them.

A guild's events go to shard `(guild_id >> 22) % shard_count`; DMs and other events of no guild go to
shard 0. A session that identified without `shard` gets everything. IDENTIFYs start in buckets
`shard_id % max_concurrency`, one per bucket per window (5 s on Discord; tests choose a shorter one): an
IDENTIFY that comes too soon after the last accepted one of its bucket is answered with op 9 Invalid
Session (`d: false`), and the client must identify again later. Several sessions may hold the same
`[shard_id, shard_count]` (Discord allows it, for hand-overs): each of them gets the shard's events.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

INVALID_SHARD = 4010

# Events whose guild is the data's `id`, not its `guild_id`.
GUILD_OBJECT_EVENTS = frozenset({"GUILD_CREATE", "GUILD_UPDATE", "GUILD_DELETE"})


def shard_for(guild_id: int, shard_count: int) -> int:
    return (guild_id >> 22) % shard_count


def event_guild_id(event: str, data: Any) -> int | None:
    """The guild an event belongs to, or None for DMs and events of no guild."""
    if not isinstance(data, dict):
        return None
    key = "id" if event in GUILD_OBJECT_EVENTS else "guild_id"
    value = data.get(key)
    return int(value) if value is not None else None


def parse_shard(value: Any) -> tuple[int, int] | None:
    """IDENTIFY's `shard` as (shard_id, shard_count); `ValueError` for a pair Discord would refuse."""
    if value is None:
        return None
    try:
        shard_id, shard_count = (int(part) for part in value)
    except (TypeError, ValueError):
        raise ValueError(f"shard must be [shard_id, num_shards], not {value!r}") from None
    if shard_count < 1 or not 0 <= shard_id < shard_count:
        raise ValueError(f"shard {shard_id} is outside 0..{shard_count - 1}")
    return shard_id, shard_count


def owns(shard: tuple[int, int] | None, guild_id: int | None) -> bool:
    """Whether a session on `shard` (None: unsharded) receives an event of `guild_id` (None: no guild)."""
    if shard is None:
        return True
    shard_id, shard_count = shard
    if guild_id is None:
        return shard_id == 0
    return shard_for(guild_id, shard_count) == shard_id


@dataclass(frozen=True)
class IdentifyRecord:
    at: float  # time.monotonic()
    shard: tuple[int, int] | None
    accepted: bool

    @property
    def shard_id(self) -> int:
        return self.shard[0] if self.shard is not None else 0


@dataclass
class IdentifyLimiter:
    """One IDENTIFY per bucket per `window_s` (0: no limit, the fake's default for single-client tests)."""

    max_concurrency: int = 1
    window_s: float = 0.0
    records: list[IdentifyRecord] = field(default_factory=list)

    def bucket(self, shard: tuple[int, int] | None) -> int:
        return (shard[0] if shard is not None else 0) % self.max_concurrency

    def admit(self, shard: tuple[int, int] | None) -> bool:
        now = time.monotonic()
        bucket = self.bucket(shard)
        last = max(
            (r.at for r in self.records if r.accepted and self.bucket(r.shard) == bucket), default=None
        )
        accepted = self.window_s <= 0 or last is None or now - last >= self.window_s
        self.records.append(IdentifyRecord(at=now, shard=shard, accepted=accepted))
        return accepted

    @property
    def accepted(self) -> list[IdentifyRecord]:
        return [record for record in self.records if record.accepted]

    @property
    def rejected(self) -> list[IdentifyRecord]:
        return [record for record in self.records if not record.accepted]
