"""Queries over each guild's settings row (`GuildSettings`), created with defaults on first read.

Session handling follows `storage.repo.common`: flush, never commit.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import GuildSettings
from storage.repo.common import apply_changes, backend_name


async def get_guild_settings(*, session: AsyncSession, guild_id: int) -> GuildSettings:
    """The guild's settings, inserting a row of defaults the first time (safe when two callers race)."""
    settings = await find_guild_settings(session=session, guild_id=guild_id)
    if settings is not None:
        return settings
    values = GuildSettings(guild_id=guild_id).model_dump()
    insert = postgresql.insert if backend_name(session) == "postgresql" else sqlite.insert
    await session.exec(
        insert(GuildSettings).values(values).on_conflict_do_nothing(index_elements=["guild_id"])
    )
    settings = await session.get(GuildSettings, guild_id)
    if settings is None:  # pragma: no cover - the row was just inserted or already existed
        raise RuntimeError(f"guild settings for {guild_id} vanished right after insertion")
    return settings


async def find_guild_settings(*, session: AsyncSession, guild_id: int) -> GuildSettings | None:
    """The guild's settings row, or None when it has none; unlike `get_guild_settings`, writes nothing."""
    return await session.get(GuildSettings, guild_id)


async def update_guild_settings(*, session: AsyncSession, guild_id: int, **changes: Any) -> GuildSettings:
    settings = await get_guild_settings(session=session, guild_id=guild_id)
    apply_changes(settings, changes, immutable={"guild_id"})
    await session.flush()
    return settings
