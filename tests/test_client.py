"""Start-up while Discord cannot be reached: Lumi waits, says so, and logs in once Discord answers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import discord
import pytest

from bot.client import LumiBot, login_with_retry
from bot.errors import UserFacingError
from tests.conftest import make_settings
from tests.fakes.discord_api.server import FakeDiscord, redirect_discord_py


@pytest.fixture
def unreachable_discord() -> Iterator[None]:
    """discord.py pointed at a closed port (1, on loopback: refused at once)."""
    saved = discord.http.Route.BASE
    discord.http.Route.BASE = "http://127.0.0.1:1/api/v10"
    try:
        yield
    finally:
        discord.http.Route.BASE = saved


def _bot(tmp_path: Path) -> LumiBot:
    # No cogs and nothing served: only the login path is under test.
    return LumiBot(make_settings(tmp_path), extensions=(), serve=False)


async def test_login_waits_for_discord_and_says_so(
    tmp_path: Path, unreachable_discord: None, caplog: pytest.LogCaptureFixture
) -> None:
    async with FakeDiscord() as server:
        assert server.token is not None
        bot = _bot(tmp_path)
        try:
            with caplog.at_level(logging.INFO, logger="bot.client"):
                login = asyncio.create_task(
                    login_with_retry(bot, server.token, first_delay_s=0.05, max_delay_s=0.2)
                )
                async with asyncio.timeout(10):
                    while caplog.text.count("cannot reach Discord") < 3:
                        assert not login.done(), login
                        await asyncio.sleep(0.02)
                # Discord comes back: the next attempt logs in.
                with redirect_discord_py(server):
                    async with asyncio.timeout(10):
                        await login
            assert bot.user is not None and bot.setup_started
            assert "127.0.0.1:1" in caplog.text and "trying again in" in caplog.text
            assert "reached Discord after" in caplog.text
            assert [r for r in server.requests if r.path == "/users/@me"]
        finally:
            await bot.close()


async def test_a_rejected_token_is_not_retried(tmp_path: Path) -> None:
    async with FakeDiscord() as server, asyncio.timeout(10):
        bot = _bot(tmp_path)
        try:
            with redirect_discord_py(server), pytest.raises(UserFacingError, match="rejected DISCORD_TOKEN"):
                await login_with_retry(bot, "not-the-token", first_delay_s=0.05)
        finally:
            await bot.close()
