"""Fixtures for end-to-end tests: a local Discord-compatible server and a real Lumi connected to it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.fakes.discord_api.protocol import JsonDict
from tests.fakes.discord_api.recording import RecordedRequest
from tests.fakes.discord_api.server import FakeDiscord, redirect_discord_py, running_client

if TYPE_CHECKING:
    from bot.client import LumiBot
    from bot.config import Settings

# discord.py holds on_ready back until no GUILD_CREATE arrived for this long; the fake sends them at once.
GUILD_READY_TIMEOUT_S = 0.05


@pytest.fixture
async def fake_discord() -> AsyncIterator[FakeDiscord]:
    """A started FakeDiscord with discord.py pointed at it for the duration of the test."""
    async with FakeDiscord() as server:
        with redirect_discord_py(server):
            yield server


@dataclass
class LumiHarness:
    """A running Lumi and the fake Discord it talks to."""

    server: FakeDiscord
    bot: LumiBot
    settings: Settings
    commands_sync: RecordedRequest

    @property
    def guild_id(self) -> int:
        return self.server.guild.id

    async def stop(self) -> None:
        """Close Lumi before the test ends (a restart test then calls `make_lumi` again)."""
        await self.bot.close()

    async def slash(self, name: str, **kwargs: Any) -> JsonDict:
        """Run a slash command and return the first visible reply (see `FakeDiscord.slash_command`)."""
        interaction = await self.server.slash_command(name, **kwargs)
        return await self.server.wait_for_reply(interaction)


LumiFactory = Callable[..., Awaitable[LumiHarness]]


@pytest.fixture
async def make_lumi(fake_discord: FakeDiscord, tmp_path: Path) -> AsyncIterator[LumiFactory]:
    """`await make_lumi(**settings_overrides)` starts Lumi against the fake and waits until it is ready
    and its commands are synced to the dev guild. Everything started is stopped at teardown."""
    # Imported here so that the fake's own tests still run while Lumi's code does not import.
    from bot.client import LumiBot
    from tests.conftest import make_settings

    async with contextlib.AsyncExitStack() as stack:

        async def start(**overrides: Any) -> LumiHarness:
            values: dict[str, Any] = {
                "discord_token": fake_discord.token,
                "discord_dev_guild_id": fake_discord.guild.id,
                "discord_guild_ready_timeout_s": GUILD_READY_TIMEOUT_S,
                "inference_device": "cpu",
                # Attachment links point at the fake CDN, which Lumi must be allowed to download from.
                "moderation_fetch_hosts": [f"127.0.0.1:{fake_discord.port}"],
                **overrides,
            }
            settings = make_settings(tmp_path, **values)
            since = len(fake_discord.requests)
            bot = LumiBot(settings)
            await stack.enter_async_context(running_client(bot, fake_discord))
            sync = await fake_discord.wait_for_request(
                "PUT", rf"/applications/\d+/guilds/{fake_discord.guild.id}/commands", since=since
            )
            return LumiHarness(server=fake_discord, bot=bot, settings=settings, commands_sync=sync)

        yield start


@pytest.fixture
async def lumi(make_lumi: LumiFactory) -> LumiHarness:
    """Lumi with default test settings, logged in and ready."""
    return await make_lumi()
