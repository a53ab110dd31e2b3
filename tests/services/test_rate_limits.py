"""The rate-limit service on the real Redis (127.0.0.1:6379, db 15) and in memory.

Two `RateLimits` built from one REDIS_URL stand for two Lumi processes: each has its own connections and
nothing in common but Redis. Every test uses its own key prefix and deletes its keys afterwards.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
from limits import RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage
from redis import asyncio as redis_asyncio

from bot.services.rate_limits import (
    COMMAND_LIMIT,
    LimitsUnavailable,
    MemoryClaims,
    RateLimits,
    build_rate_limits,
)
from tests.fakes.redis_keys import DEAD_REDIS_URL, REDIS_URL

USER = 4242
CHANNEL = 777


@pytest.fixture
async def two_processes(redis_prefix: str) -> AsyncIterator[tuple[RateLimits, RateLimits]]:
    first = build_rate_limits(REDIS_URL, key_prefix=redis_prefix)
    second = build_rate_limits(REDIS_URL, key_prefix=redis_prefix)
    yield first, second
    await first.close()
    await second.close()


async def test_two_processes_share_one_window_per_user_exactly(
    two_processes: tuple[RateLimits, RateLimits],
) -> None:
    first, second = two_processes
    # Twelve uses at once, alternating between the processes: one window of five, not five in each.
    answers = await asyncio.gather(*(process.hit_command("scan", USER) for process in (first, second) * 6))
    allowed = [answer for answer in answers if answer is None]
    refused = [answer for answer in answers if answer is not None]
    assert len(allowed) == COMMAND_LIMIT.amount == 5
    assert len(refused) == 7
    assert all(50.0 < refusal.retry_after_s <= 60.0 for refusal in refused)
    # Another user, and the same user's other command, have windows of their own.
    assert await second.hit_command("scan", USER + 1) is None
    assert await first.hit_command("comment", USER) is None


async def test_the_window_moves_and_frees_uses_as_they_age(
    two_processes: tuple[RateLimits, RateLimits],
) -> None:
    first, second = two_processes
    two_per_second = RateLimitItemPerSecond(2)
    assert await first.hit_command("scan", USER, two_per_second) is None
    assert await second.hit_command("scan", USER, two_per_second) is None
    refusal = await first.hit_command("scan", USER, two_per_second)
    assert refusal is not None and 0.0 <= refusal.retry_after_s <= 1.0
    await asyncio.sleep(1.1)
    assert await second.hit_command("scan", USER, two_per_second) is None


async def test_a_channel_cooldown_claim_is_exclusive_across_processes(
    two_processes: tuple[RateLimits, RateLimits], redis_prefix: str
) -> None:
    first, second = two_processes
    tokens = await asyncio.gather(*(process.claim_channel(CHANNEL, 60) for process in (first, second) * 5))
    held = [token for token in tokens if token is not None]
    assert len(held) == 1
    assert await first.claim_channel(CHANNEL + 1, 60) is not None  # another channel is free
    # Only the holder's token gives the cooldown back.
    await second.release_channel(CHANNEL, "not-the-holder")
    assert await first.claim_channel(CHANNEL, 60) is None
    await second.release_channel(CHANNEL, held[0])
    assert await first.claim_channel(CHANNEL, 60) is not None
    client = redis_asyncio.Redis.from_url(REDIS_URL)
    try:
        assert await client.pttl(f"{redis_prefix}:cooldown:channel:{CHANNEL}") > 59_000
    finally:
        await client.aclose()


async def test_a_late_release_cannot_drop_a_newer_claim(two_processes: tuple[RateLimits, RateLimits]) -> None:
    first, second = two_processes
    old = await first.claim_channel(CHANNEL, 0.2)
    assert old is not None
    await asyncio.sleep(0.3)  # the first cooldown ran out; the second process claims the channel
    assert await second.claim_channel(CHANNEL, 60) is not None
    await first.release_channel(CHANNEL, old)
    assert await first.claim_channel(CHANNEL, 60) is None


async def test_restart_makes_the_cooldown_run_from_now(two_processes: tuple[RateLimits, RateLimits]) -> None:
    first, second = two_processes
    token = await first.claim_channel(CHANNEL, 0.4)
    assert token is not None
    await asyncio.sleep(0.3)
    await first.restart_channel(CHANNEL, token, 0.4)
    await asyncio.sleep(0.2)  # past the claim's own expiry, within the restarted one
    assert await second.claim_channel(CHANNEL, 0.4) is None
    await asyncio.sleep(0.3)
    assert await second.claim_channel(CHANNEL, 0.4) is not None


async def test_a_zero_cooldown_never_holds_a_channel(two_processes: tuple[RateLimits, RateLimits]) -> None:
    first, second = two_processes
    assert await first.claim_channel(CHANNEL, 0) is not None
    assert await second.claim_channel(CHANNEL, 0) is not None


async def test_a_message_is_handled_once_across_processes(
    two_processes: tuple[RateLimits, RateLimits],
) -> None:
    first, second = two_processes
    assert await first.claim_message("comment", 99) is True
    assert await second.claim_message("comment", 99) is False
    assert await first.claim_message("comment", 99) is False
    assert await second.claim_message("reply", 99) is True  # another kind of handling, its own claim


async def test_without_redis_a_claim_answers_what_the_caller_chose() -> None:
    limits = build_rate_limits(DEAD_REDIS_URL, key_prefix="unused")
    try:
        assert await limits.claim_message("comment", 5) is False
        assert await limits.claim_message("interaction", 5, when_unreachable=True) is True
    finally:
        await limits.close()


async def test_handled_messages_in_memory_run_out_and_are_swept() -> None:
    claims = MemoryClaims()
    limits = RateLimits(MemoryStorage(), claims, key_prefix="lumi", where="memory")
    assert await limits.claim_message("comment", 1, ttl_s=0.05) is True
    assert await limits.claim_message("comment", 1, ttl_s=0.05) is False
    await asyncio.sleep(0.06)
    assert await limits.claim_message("comment", 1, ttl_s=0.05) is True
    await asyncio.sleep(0.06)
    for message_id in range(2, 2 + MemoryClaims.SWEEP_EVERY):
        await limits.claim_message("comment", message_id, ttl_s=600)
    # Every claim still running is kept; the one that ran out was dropped by the sweep.
    assert len(claims) == MemoryClaims.SWEEP_EVERY
    assert await limits.claim_message("comment", 2) is False


async def test_in_memory_limits_keep_the_embedded_behaviour() -> None:
    limits = build_rate_limits(None)
    assert limits.where == "memory"
    assert [await limits.hit_command("scan", USER) for _ in range(5)] == [None] * 5
    refusal = await limits.hit_command("scan", USER)
    assert refusal is not None and 59.0 < refusal.retry_after_s <= 60.0
    assert await limits.hit_command("scan", USER + 1) is None
    token = await limits.claim_channel(CHANNEL, 60)
    assert token is not None and await limits.claim_channel(CHANNEL, 60) is None
    await limits.release_channel(CHANNEL, "not-the-holder")
    assert await limits.claim_channel(CHANNEL, 60) is None
    await limits.release_channel(CHANNEL, token)
    assert await limits.claim_channel(CHANNEL, 60) is not None
    # The cooldown is compared when the claim is asked for: a shorter one applies at once.
    assert await limits.claim_channel(CHANNEL, 0.000_001) is not None
    await limits.close()


async def test_a_dead_redis_refuses_with_a_message_and_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    limits = build_rate_limits(DEAD_REDIS_URL, key_prefix="unused")
    caplog.set_level(logging.INFO, logger="bot.services.rate_limits")
    try:
        for _ in range(3):
            with pytest.raises(LimitsUnavailable) as refused:
                await limits.hit_command("scan", USER)
            message = refused.value.message
            assert "cannot check its rate limits" in message and "/scan" in message
        # No automatic comment while the claims cannot be reached; giving back and restarting do not raise.
        assert await limits.claim_channel(CHANNEL, 60) is None
        await limits.release_channel(CHANNEL, "token")
        await limits.restart_channel(CHANNEL, "token", 60)
    finally:
        await limits.close()
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    (warning,) = warnings
    assert warning.exc_info is None and "\n" not in warning.getMessage()
    assert "Redis at redis://127.0.0.1:1/0 is unreachable" in warning.getMessage()


async def test_the_log_names_redis_without_its_password() -> None:
    limits = build_rate_limits("redis://lumi:s3cret@redis.internal:6379/0")
    assert limits.where == "Redis at redis://redis.internal:6379/0"
    await limits.close()
