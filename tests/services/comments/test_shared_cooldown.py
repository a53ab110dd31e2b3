"""Channel cooldowns of two comment services (two Lumi processes) that share the real Redis.

The services are the ones the bot runs, with Redis-backed `RateLimits` each, on one SQLite database for
the guild settings; the key prefix is unique per test and its keys are deleted afterwards.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis import asyncio as redis_asyncio

from bot.services.comments.backends import CommentWriter
from bot.services.comments.service import CommentService
from bot.services.posts import IncomingPost, PostPlace
from bot.services.rate_limits import build_rate_limits
from inference.perception import Perceiver
from inference.registry import ModelRegistry
from storage.db import Database
from tests.fakes.redis_keys import REDIS_URL

GUILD = 555_555_555_555_555_555
CHANNEL = 666_666_666_666_666_666


@pytest.fixture
async def services(
    sqlite_database: Database, redis_prefix: str
) -> AsyncIterator[tuple[CommentService, CommentService]]:
    registry = ModelRegistry("cpu")
    built = [
        CommentService(
            database=sqlite_database,
            perceiver=Perceiver(registry),
            writer=CommentWriter({}),
            cooldowns=build_rate_limits(REDIS_URL, key_prefix=redis_prefix),
        )
        for _ in range(2)
    ]
    yield built[0], built[1]
    for service in built:
        await service.close()
        await service.cooldowns.close()
    await registry.close()


async def test_a_channel_admitted_by_one_process_waits_in_the_other(
    services: tuple[CommentService, CommentService],
) -> None:
    first, second = services
    await first.configure(GUILD, enable_channels=[CHANNEL], cooldown_s=60)
    assert await first.admit(GUILD, (CHANNEL,)) is not None
    assert await second.admit(GUILD, (CHANNEL,)) is None
    # The second process gives back nothing it does not hold; the first's release frees the channel.
    await second.release(CHANNEL)
    assert await second.admit(GUILD, (CHANNEL,)) is None
    await first.release(CHANNEL)
    assert await second.admit(GUILD, (CHANNEL,)) is not None
    assert await first.admit(GUILD, (CHANNEL,)) is None


async def test_a_posted_comment_keeps_the_cooldown_for_every_process(
    services: tuple[CommentService, CommentService],
) -> None:
    first, second = services
    await first.configure(GUILD, enable_channels=[CHANNEL], cooldown_s=60)
    assert await first.admit(GUILD, (CHANNEL,)) is not None
    result = await first.comment_on_labels(["기쁨"], language="ko", backend="template")
    post = IncomingPost(
        guild_id=GUILD, channel_id=CHANNEL, message_id=42, author_id=7, place=PostPlace((CHANNEL,))
    )
    await first.record(post, result)
    # Recorded, the claim is no longer this process's to give back: the cooldown runs its course.
    await first.release(CHANNEL)
    assert await second.admit(GUILD, (CHANNEL,)) is None


async def test_no_automatic_comment_while_redis_is_unreachable(sqlite_database: Database) -> None:
    registry = ModelRegistry("cpu")
    # Nothing listens on port 1: as a Redis that is down.
    cooldowns = build_rate_limits("redis://127.0.0.1:1/0")
    service = CommentService(
        database=sqlite_database, perceiver=Perceiver(registry), writer=CommentWriter({}), cooldowns=cooldowns
    )
    try:
        await service.configure(GUILD, enable_channels=[CHANNEL], cooldown_s=60)
        assert await service.admit(GUILD, (CHANNEL,)) is None
        await service.release(CHANNEL)  # nothing held, nothing raised
    finally:
        await service.close()
        await cooldowns.close()
        await registry.close()


async def test_a_message_delivered_to_both_processes_is_admitted_once(
    services: tuple[CommentService, CommentService],
) -> None:
    # No cooldown: only the message's own claim keeps a second delivery from a second comment.
    first, second = services
    await first.configure(GUILD, enable_channels=[CHANNEL], cooldown_s=0)
    assert await first.admit(GUILD, (CHANNEL,), message_id=77) is not None
    assert await second.admit(GUILD, (CHANNEL,), message_id=77) is None
    assert await first.admit(GUILD, (CHANNEL,), message_id=77) is None
    assert await second.admit(GUILD, (CHANNEL,), message_id=78) is not None
    client = redis_asyncio.Redis.from_url(REDIS_URL)
    try:
        key = f"{second.cooldowns.key_prefix}:handled:comment:77"
        ttl_ms = await client.pttl(key)
    finally:
        await client.aclose()
    assert 590_000 < ttl_ms <= 600_000
