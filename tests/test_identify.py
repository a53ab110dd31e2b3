"""The IDENTIFY gate on the real Redis (127.0.0.1:6379, db 15): two locks built from one URL stand for two
Lumi processes; each test has its own key prefix and deletes its keys afterwards."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from redis import asyncio as redis_asyncio

from bot.identify import LOCK_MARGIN_S, LocalPacing, RedisIdentifyLock
from tests.fakes.redis_keys import DEAD_REDIS_URL, REDIS_URL

WINDOW_S = 0.5


def lock(
    prefix: str, *, max_concurrency: int = 1, url: str = REDIS_URL, **options: float
) -> RedisIdentifyLock:
    async def concurrency() -> int:
        return max_concurrency

    return RedisIdentifyLock(
        url, max_concurrency=concurrency, window_s=WINDOW_S, key_prefix=prefix, **options
    )


async def timed_turn(gate: RedisIdentifyLock, shard_id: int) -> float:
    await gate.wait_turn(shard_id, initial=True)
    return time.monotonic()


async def test_two_processes_in_one_bucket_identify_a_window_apart(redis_prefix: str) -> None:
    first, second = lock(redis_prefix, owner="a"), lock(redis_prefix, owner="b")
    try:
        times = sorted(await asyncio.gather(timed_turn(first, 0), timed_turn(second, 1)))
        assert times[1] - times[0] >= WINDOW_S
        client = redis_asyncio.Redis.from_url(REDIS_URL)
        try:
            holder = await client.get(f"{redis_prefix}:identify:0")
        finally:
            await client.aclose()
        assert holder in (b"a:0", b"b:1")
    finally:
        await first.close()
        await second.close()


async def test_a_third_shard_waits_for_both_before_it(redis_prefix: str) -> None:
    gates = [lock(redis_prefix, owner=str(n)) for n in range(3)]
    try:
        started = time.monotonic()
        times = sorted(await asyncio.gather(*(timed_turn(g, n) for n, g in enumerate(gates))))
        assert times[2] - started >= 2 * WINDOW_S
        assert times[2] - started < 2 * (WINDOW_S + LOCK_MARGIN_S) + 1.0
    finally:
        for gate in gates:
            await gate.close()


async def test_shards_of_different_buckets_identify_together(redis_prefix: str) -> None:
    first, second = lock(redis_prefix, max_concurrency=2), lock(redis_prefix, max_concurrency=2)
    try:
        times = await asyncio.gather(timed_turn(first, 0), timed_turn(second, 1))
        assert abs(times[1] - times[0]) < WINDOW_S
        assert await first.bucket(3) == 1 and await first.bucket(4) == 0
    finally:
        await first.close()
        await second.close()


async def test_without_redis_a_shard_retries_then_identifies_unguarded_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gate = lock("unused", url=DEAD_REDIS_URL, patience_s=1.5)
    caplog.set_level(logging.WARNING, logger="bot.identify")
    try:
        started = time.monotonic()
        await gate.wait_turn(0, initial=True)
        elapsed = time.monotonic() - started
    finally:
        await gate.close()
    # One retry after 1 s, then a full window (and up to another) before the unguarded IDENTIFY.
    assert 1.0 + WINDOW_S <= elapsed < 1.0 + 2 * WINDOW_S + 1.0
    messages = [record.getMessage() for record in caplog.records]
    assert any("is unreachable" in m and "tries again" in m for m in messages)
    assert any("WITHOUT the cluster-wide lock" in m for m in messages)


async def test_local_pacing_is_discord_py_s_default() -> None:
    pacing = LocalPacing(0.2)
    started = time.monotonic()
    await pacing.wait_turn(0, initial=True)
    assert time.monotonic() - started < 0.1
    await pacing.wait_turn(1, initial=False)
    assert time.monotonic() - started >= 0.2
