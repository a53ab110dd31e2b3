"""A guild's moderation configuration with a real SQLite database: validating and merging policy changes,
exempt channels and roles, resetting, and a stored policy this version of Lumi cannot read."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.errors import UserFacingError
from bot.services.moderation.policy import DEFAULT_POLICY
from storage.db import Database
from storage.repo import guilds as repo_guilds
from tests.services.moderation.parts import moderation
from tests.services.moderation.photo_parts import CHANNEL, GUILD


async def test_configuration_is_validated_and_merged(sqlite_database: Database, tmp_path: Path) -> None:
    async with moderation(sqlite_database, tmp_path) as service:
        config = await service.guild_config(GUILD)
        assert config.enabled and config.policy == DEFAULT_POLICY and config.mod_channel_id is None
        with pytest.raises(UserFacingError, match=r"sexual_explicit: the auto-action threshold \(0.3\)"):
            await service.configure(GUILD, policy_changes={"categories": {"sexual_explicit": {"act": 0.3}}})
        config = await service.configure(
            GUILD,
            mod_channel_id=CHANNEL + 1,
            policy_changes={"categories": {"sexual_explicit": {"review": 0.4}}},
            exempt_channels_add=[5, 6],
            exempt_roles_add=[7],
        )
        config = await service.configure(
            GUILD,
            policy_changes={"categories": {"sexual_explicit": {"act": 0.7}}},
            exempt_channels_remove=[5],
        )
        assert config.policy.rules["sexual_explicit"].review == 0.4
        assert config.policy.rules["sexual_explicit"].act == 0.7
        assert config.mod_channel_id == CHANNEL + 1
        assert config.exempt_channel_ids == {6} and config.exempt_role_ids == {7}
        assert config.exemption(channel_ids=[6], channel_nsfw=False, role_ids=[]) == "exempt channel"
        assert config.exemption(channel_ids=[1, 6], channel_nsfw=False, role_ids=[]) == "exempt channel"
        assert config.exemption(channel_ids=[1], channel_nsfw=False, role_ids=[7]) == "exempt role"
        assert config.exemption(channel_ids=[1], channel_nsfw=True, role_ids=[]) == "age-restricted channel"
        assert config.exemption(channel_ids=[1], channel_nsfw=False, role_ids=[8]) is None
        config = await service.configure(GUILD, enabled=False, policy_changes={"exempt_nsfw_channels": False})
        assert config.exemption(channel_ids=[1], channel_nsfw=True, role_ids=[]) is not None
        config = await service.configure(GUILD, enabled=True, reset_policy=True, clear_mod_channel=True)
        assert config.policy == DEFAULT_POLICY and config.mod_channel_id is None
        assert config.exemption(channel_ids=[1], channel_nsfw=True, role_ids=[]) == "age-restricted channel"
        # A policy a newer Lumi wrote (unknown key) does not stop moderation: defaults apply, problem shown.
        async with sqlite_database.session() as session:
            await repo_guilds.update_guild_settings(
                session=session, guild_id=GUILD, moderation_policy={"future": 1}
            )
            await session.commit()
        config = await service.guild_config(GUILD)
        assert config.policy == DEFAULT_POLICY and config.policy_problem and "future" in config.policy_problem
