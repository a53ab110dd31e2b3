"""Redis for tests: the real server on 127.0.0.1:6379, database 15, each test under a key prefix of its own.

`redis_prefix` is a fresh prefix (`lumi-test-<hex>`) whose keys are deleted after the test, so tests
running at once, or one that failed half-way, never see each other's keys. Import it into a test module
or a conftest.py:

    from tests.fakes.redis_keys import REDIS_URL, redis_prefix
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from redis import asyncio as redis_asyncio

__all__ = ["DEAD_REDIS_URL", "REDIS_URL", "delete_keys", "new_prefix", "redis_prefix"]

REDIS_URL = "redis://127.0.0.1:6379/15"
# Nothing listens on port 1: connecting is refused at once, as with a Redis that is down.
DEAD_REDIS_URL = "redis://127.0.0.1:1/0"


def new_prefix() -> str:
    return f"lumi-test-{uuid.uuid4().hex}"


async def delete_keys(prefix: str, url: str = REDIS_URL) -> None:
    """Delete every key under `prefix:`."""
    client = redis_asyncio.Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    prefix = new_prefix()
    try:
        yield prefix
    finally:
        await delete_keys(prefix)
