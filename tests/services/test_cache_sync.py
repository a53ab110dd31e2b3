"""Cached guild settings and confirmed hashes kept in step across two Lumi processes on one PostgreSQL
database (two `Database` engines, two services each: nothing shared but the database)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from bot.services.cache_sync import CacheSync, GuildCache
from bot.services.comments.backends import CommentWriter
from bot.services.comments.service import CommentService
from bot.services.moderation.check_results import KnownHash
from bot.services.moderation.known_hashes import KnownHashes
from bot.services.rate_limits import build_rate_limits
from inference.perception import Perceiver
from inference.registry import ModelRegistry
from storage.db import Database
from storage.repo import cases as repo_cases
from tests.fakes.databases import temporary_postgres_database
from tests.waiting import eventually

GUILD = 888_888_888_888_888_888


@pytest.fixture
async def two_processes() -> AsyncIterator[tuple[tuple[Database, CacheSync], tuple[Database, CacheSync]]]:
    async with temporary_postgres_database() as url:
        databases = [Database(url), Database(url)]
        await databases[0].upgrade()
        syncs = [CacheSync(database) for database in databases]
        for sync in syncs:
            sync.start()
        try:
            await eventually(lambda: all(sync.connected for sync in syncs), "both listening")
            yield (databases[0], syncs[0]), (databases[1], syncs[1])
        finally:
            for sync in syncs:
                await sync.close()
            for database in databases:
                await database.close()


def comment_service(database: Database, sync: CacheSync, registry: ModelRegistry) -> CommentService:
    service = CommentService(
        database=database,
        perceiver=Perceiver(registry),
        writer=CommentWriter({}),
        cooldowns=build_rate_limits(None),
    )
    service.share_through(sync)
    return service


@pytest.mark.postgres
async def test_comment_settings_changed_in_one_process_are_seen_in_the_other(
    two_processes: tuple[tuple[Database, CacheSync], tuple[Database, CacheSync]],
) -> None:
    registry = ModelRegistry("cpu")
    first, second = (comment_service(db, sync, registry) for db, sync in two_processes)
    try:
        assert (await first.guild_config(GUILD)).cooldown_s == 30  # read and cached
        await second.configure(GUILD, cooldown_s=5, enable_channels=[42])
        started = time.monotonic()
        while (await first.guild_config(GUILD)).cooldown_s != 5:
            assert time.monotonic() - started < 5.0, "the other process kept its stale copy"
            await asyncio.sleep(0.02)
        assert (await first.guild_config(GUILD)).channel_ids == frozenset({42})
        # Well before the copies would have expired by themselves.
        assert time.monotonic() - started < 5.0
        # The process that made the change keeps its fresh copy (its own notification is ignored).
        assert (await second.guild_config(GUILD)).cooldown_s == 5
    finally:
        await first.close()
        await second.close()
        await registry.close()


@pytest.mark.postgres
async def test_a_hash_confirmed_in_one_process_reaches_the_other(
    two_processes: tuple[tuple[Database, CacheSync], tuple[Database, CacheSync]],
) -> None:
    (first_db, first_sync), (second_db, second_sync) = two_processes
    first, second = KnownHashes(first_db), KnownHashes(second_db)
    first.share_through(first_sync)
    second.share_through(second_sync)
    assert await first.of_guild(GUILD) == []
    async with second_db.session() as session:
        case = await repo_cases.create_case(session=session, guild_id=GUILD, channel_id=1, author_id=2)
        await repo_cases.add_image_hash(
            session=session, guild_id=GUILD, phash="ff00ff00ff00ff00", case_id=case.id
        )
        await session.commit()
    await second.add(GUILD, KnownHash("ff00ff00ff00ff00", case.id, None))
    started = time.monotonic()
    while not await first.of_guild(GUILD):
        assert time.monotonic() - started < 5.0, "the other process never read the guild's hashes again"
        await asyncio.sleep(0.02)
    assert [known.phash for known in await first.of_guild(GUILD)] == ["ff00ff00ff00ff00"]


async def test_a_cached_copy_expires_by_itself() -> None:
    cache: GuildCache[str] = GuildCache(ttl_s=0.05)
    cache.put(GUILD, "settings")
    assert cache.get(GUILD) == "settings"
    await asyncio.sleep(0.06)
    assert cache.get(GUILD) is None
    cache.put(GUILD, "again")
    cache.forget(GUILD)
    assert cache.get(GUILD) is None


async def test_without_postgresql_nothing_is_announced_or_listened_to(sqlite_database: Database) -> None:
    sync = CacheSync(sqlite_database)
    sync.start()
    await sync.changed(GUILD, "comments")  # no error, nothing to do
    assert not sync.connected
    await sync.close()
