"""A guild's moderation configuration: the stored row turned into a validated, immutable snapshot."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from bot.services.moderation.policy import DEFAULT_POLICY, Policy
from bot.services.moderation.policy_json import PolicyError, parse_policy
from storage.db import Database, DatabaseUnavailable
from storage.models import GuildSettings
from storage.repo import guilds as repo_guilds

__all__ = ["GuildModeration", "config_from_row", "edit_ids", "merge_policy", "stored_guild_config"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GuildModeration:
    guild_id: int
    enabled: bool
    policy: Policy
    mod_channel_id: int | None
    exempt_channel_ids: frozenset[int]
    exempt_role_ids: frozenset[int]
    # Set when the stored policy no longer validates; the defaults apply meanwhile.
    policy_problem: str | None = None

    def exemption(
        self, *, channel_ids: Iterable[int], channel_nsfw: bool, role_ids: Iterable[int]
    ) -> str | None:
        """Why a post is not checked, or None. ``channel_ids``: the channel and, for threads, its parent."""
        if not self.enabled:
            return "moderation is turned off in this server"
        if channel_nsfw and self.policy.exempt_nsfw_channels:
            return "age-restricted channel"
        if self.exempt_channel_ids.intersection(channel_ids):
            return "exempt channel"
        if self.exempt_role_ids.intersection(role_ids):
            return "exempt role"
        return None


def merge_policy(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in changes.items():
        if key == "categories" and isinstance(value, dict):
            categories = {name: dict(rule) for name, rule in dict(merged.get("categories", {})).items()}
            for name, rule in value.items():
                categories[name] = {**categories.get(name, {}), **rule} if isinstance(rule, dict) else rule
            merged["categories"] = categories
        else:
            merged[key] = value
    return merged


def edit_ids(current: Iterable[int], add: Iterable[int], remove: Iterable[int]) -> list[int]:
    removed = set(remove)
    result = [value for value in current if value not in removed]
    for value in add:
        if value not in result and value not in removed:
            result.append(value)
    return result


def config_from_row(row: GuildSettings) -> GuildModeration:
    problem = None
    try:
        policy = parse_policy(row.moderation_policy)
    except PolicyError as error:
        # A policy written by an older or newer Lumi must not stop moderation: defaults apply meanwhile.
        log.warning("guild %s: stored moderation policy ignored: %s", row.guild_id, error)
        policy, problem = DEFAULT_POLICY, str(error)
    return GuildModeration(
        guild_id=row.guild_id,
        enabled=row.moderation_enabled,
        policy=policy,
        mod_channel_id=row.mod_channel_id,
        exempt_channel_ids=frozenset(row.exempt_channel_ids or ()),
        exempt_role_ids=frozenset(row.exempt_role_ids or ()),
        policy_problem=problem,
    )


async def stored_guild_config(database: Database, guild_id: int) -> GuildModeration | None:
    """The guild's stored moderation settings, read only (no row is created); None when it has none.

    Raises ``DatabaseUnavailable`` when the database cannot be opened or read: a SQLite file that does
    not exist yet is reported as such, not created.
    """
    path = database.sqlite_path
    if path is not None and not await asyncio.to_thread(path.is_file):
        raise DatabaseUnavailable(f"there is no SQLite database at {path}")
    await database.ping()
    try:
        async with database.session() as session:
            row = await repo_guilds.find_guild_settings(session=session, guild_id=guild_id)
    except sa.exc.SQLAlchemyError as error:  # e.g. a database that was never migrated
        reason = str(error.orig) if isinstance(error, sa.exc.DBAPIError) else str(error)
        raise DatabaseUnavailable(f"cannot read guild settings from {database.url}: {reason}") from error
    return None if row is None else config_from_row(row)
