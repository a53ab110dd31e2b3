"""`lumi sync`: publish slash commands globally (or to one guild); never done implicitly at start."""

from __future__ import annotations

import argparse
import asyncio

import discord

from bot.cli.common import settings_and_logging
from bot.client import LumiBot
from bot.errors import UserFacingError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("sync", help="publish slash commands to Discord (globally by default)")
    parser.add_argument("--guild", type=int, help="sync to this guild only (instant, for testing)")
    parser.set_defaults(func=_sync)


def _sync(args: argparse.Namespace) -> int:
    # Port 0: syncing must not collide with a running Lumi's web server.
    settings = settings_and_logging(web_port=0, discord_dev_guild_id=None)
    if settings.discord_token is None:
        raise UserFacingError("DISCORD_TOKEN is not set; syncing commands needs the bot's token")
    token = settings.discord_token.get_secret_value()
    return asyncio.run(_sync_async(settings, token, args.guild))


async def _sync_async(settings: object, token: str, guild_id: int | None) -> int:
    from bot.config import Settings

    assert isinstance(settings, Settings)
    bot = LumiBot(settings)
    async with bot:
        await bot.login(token)
        if guild_id is not None:
            guild = discord.Object(id=guild_id)
            bot.tree.copy_global_to(guild=guild)
            synced = await bot.tree.sync(guild=guild)
            print(f"synced {len(synced)} commands to guild {guild_id}")
        else:
            synced = await bot.tree.sync()
            print(f"synced {len(synced)} commands globally (Discord may take up to an hour to show them)")
    return 0
