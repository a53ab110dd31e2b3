"""`lumi sync`: publish slash commands globally (or to one guild); never done implicitly at start."""

from __future__ import annotations

import argparse
import asyncio

import aiohttp
import discord

from bot.cli.common import settings_and_logging
from bot.client import LumiBot
from bot.errors import UserFacingError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("sync", help="publish slash commands to Discord (globally by default)")
    parser.add_argument("--guild", type=int, help="sync to this guild only (instant, for testing)")
    parser.set_defaults(func=_sync)


def _sync(args: argparse.Namespace) -> int:
    settings = settings_and_logging()
    if settings.discord_token is None:
        raise UserFacingError("DISCORD_TOKEN is not set; syncing commands needs the bot's token")
    token = settings.discord_token.get_secret_value()
    # Not serving: a Lumi may be running with the same database, and its jobs and clean-ups are its own.
    bot = LumiBot(settings, serve=False)
    return asyncio.run(publish_commands(bot, token, args.guild))


async def publish_commands(bot: LumiBot, token: str, guild_id: int | None) -> int:
    """Log in, build the command tree from the cogs and replace the published commands with it."""
    async with bot:
        try:
            await bot.login(token)
            if bot.failed_extensions:
                # The sync replaces the whole list: publishing now would delete the broken cogs' commands.
                failed = "; ".join(f"{name} ({error})" for name, error in bot.failed_extensions.items())
                raise UserFacingError(f"commands not synced: could not load {failed}")
            if guild_id is not None:
                guild = discord.Object(id=guild_id)
                bot.tree.copy_global_to(guild=guild)
                synced = await bot.tree.sync(guild=guild)
                print(f"synced {len(synced)} commands to guild {guild_id}")
            else:
                synced = await bot.tree.sync()
                print(f"synced {len(synced)} commands globally (Discord may take up to an hour to show them)")
        except discord.LoginFailure:
            raise UserFacingError("Discord rejected DISCORD_TOKEN; copy the bot's token again") from None
        except discord.HTTPException as error:
            raise UserFacingError(f"Discord refused the commands: {error}") from None
        except aiohttp.ClientError as error:
            raise UserFacingError(f"could not reach Discord: {error}") from None
    return 0
