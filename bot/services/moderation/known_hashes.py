"""Perceptual hashes of images moderators confirmed, per guild: a re-post of one skips the models.

Each guild's list is read from the database, then kept in memory for `CACHE_TTL_S` and extended as
moderators confirm more cases. With `share_through`, a confirm in another process (announced on
PostgreSQL's `lumi_cache` channel) makes this one read the guild's list again at its next post.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

from bot.services.cache_sync import CacheSync, GuildCache
from bot.services.moderation.cases import case_category
from bot.services.moderation.check_results import KnownHash
from storage.db import Database
from storage.repo import cases as repo_cases

__all__ = ["KnownHashes"]


class KnownHashes:
    def __init__(self, database: Database) -> None:
        self.database = database
        self._hashes: GuildCache[list[KnownHash]] = GuildCache()
        self._locks: dict[int, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._sync: CacheSync | None = None

    def share_through(self, sync: CacheSync) -> None:
        """Announce confirms to the other processes, and forget a guild's list when they confirm one."""
        self._sync = sync
        sync.on("hashes", self._hashes.forget)

    async def of_guild(self, guild_id: int) -> list[KnownHash]:
        cached = self._hashes.get(guild_id)
        if cached is not None:
            return cached
        async with self._locks[guild_id]:
            cached = self._hashes.get(guild_id)
            if cached is not None:
                return cached
            async with self.database.session() as session:
                rows = await repo_cases.list_image_hashes(session=session, guild_id=guild_id)
                known = []
                for row in rows:
                    case = (
                        await repo_cases.get_case_by_id(session=session, case_id=row.case_id)
                        if row.case_id
                        else None
                    )
                    known.append(KnownHash(row.phash, row.case_id, case_category(case) if case else None))
            self._hashes.put(guild_id, known)
            return known

    async def add(self, guild_id: int, known: KnownHash) -> None:
        """A hash a moderator just confirmed (its row is already committed)."""
        (await self.of_guild(guild_id)).append(known)
        if self._sync is not None:
            await self._sync.changed(guild_id, "hashes")
