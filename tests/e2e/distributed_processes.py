"""Real `lumi run` processes in distributed mode, as the process tests and `bench/distributed.py` start
them: one environment for every process of a deployment (one PostgreSQL database, one Redis prefix, one
DATA_DIR standing for shared storage), started together and stopped together, and the Discord set-up
(commands published to every guild, moderation set up in a guild) that their work needs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from tests.e2e.lumi_process import START_S, LumiProcess, base_env
from tests.fakes.discord_api.entities import FakeGuild
from tests.fakes.discord_api.server import FakeDiscord
from tests.fakes.redis_keys import REDIS_URL

__all__ = ["distributed_env", "publish_globally", "running", "setup_moderation"]


def distributed_env(
    data_dir: Path, server: FakeDiscord, database_url: str, redis_prefix: str, *, roles: str, **settings: str
) -> dict[str, str]:
    """One process's environment: distributed mode with ``roles`` on the deployment's database and Redis
    prefix, ``data_dir`` standing for the storage LUMI_SHARED_DATA_DIR vouches every process shares (unless
    ``settings`` say otherwise), then ``settings`` (environment names and values) on top."""
    env = base_env(data_dir, server.base_url, server.token or "", server.guild.id)
    env.update(
        {
            "LUMI_MODE": "distributed",
            "LUMI_ROLES": roles,
            "DATABASE_URL": database_url,
            "REDIS_URL": REDIS_URL,
            "REDIS_KEY_PREFIX": redis_prefix,
            "LUMI_SHARED_DATA_DIR": "true",
            **settings,
        }
    )
    return env


@contextlib.asynccontextmanager
async def running(*processes: LumiProcess, timeout: float = START_S) -> AsyncIterator[None]:  # noqa: ASYNC109
    """Start every process at once and wait until each is connected to Discord; stop them all after."""
    try:
        await asyncio.gather(*(process.start() for process in processes))
        await asyncio.gather(*(process.wait_for_log("connected as", timeout) for process in processes))
        yield
    finally:
        await asyncio.gather(*(process.stop() for process in processes))


def publish_globally(server: FakeDiscord) -> None:
    """As `lumi sync` would: the dev guild's commands, globally, so the other guilds can run them."""
    dev_guild = server.commands[server.guild.id]
    server.commands[None] = [{k: v for k, v in c.items() if k != "guild_id"} for c in dev_guild]


async def setup_moderation(server: FakeDiscord, guild: FakeGuild, *, timeout: float) -> None:  # noqa: ASYNC109
    """`/moderation setup` by the owner: every image becomes a case (review from score 0), its alert in
    the guild's mod-log channel."""
    options = {"mod_channel": guild.channel_named("mod-log"), "review_threshold": 0.0}
    interaction = await server.slash_command(
        "moderation",
        subcommand="setup",
        user="owner",
        channel=guild.channel_named("general"),
        options=options,
    )
    await server.wait_for_reply(interaction, timeout=timeout)
