"""Fixtures for the Discord layer's tests: a real discord.py client on the local Discord-compatible server,
handing over the messages it receives as discord.py builds them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import discord
import pytest

from tests.fakes.discord_api.server import FakeDiscord, redirect_discord_py, running_client


class MessageListener(discord.Client):
    """A plain client with the Message Content intent (without it attachments arrive empty)."""

    def __init__(self) -> None:
        intents = discord.Intents.default()
        intents.message_content = True
        super().__init__(intents=intents, guild_ready_timeout=0.05)
        self.received: asyncio.Queue[discord.Message] = asyncio.Queue()

    async def on_message(self, message: discord.Message) -> None:
        await self.received.put(message)

    async def next_message(self) -> discord.Message:
        return await asyncio.wait_for(self.received.get(), 10.0)


@pytest.fixture
async def fake_discord() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as server:
        with redirect_discord_py(server):
            yield server


@pytest.fixture
async def listener(fake_discord: FakeDiscord) -> AsyncIterator[MessageListener]:
    client = MessageListener()
    async with running_client(client, fake_discord):
        yield client
