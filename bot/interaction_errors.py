"""One tree-level handler: a UserFacingError becomes an ephemeral reply, anything else is logged in full."""

from __future__ import annotations

import logging

import discord
from discord import app_commands

from bot.errors import UserFacingError

log = logging.getLogger(__name__)

GENERIC_FAILURE = "Something went wrong on Lumi's side. The operators have the details in the log."


class RefusedByCheck(app_commands.CheckFailure):
    """A check that refused a command for a reason the user should read (e.g. limits unavailable)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class HandledElsewhere(app_commands.CheckFailure):
    """Discord delivered this interaction twice and it has been claimed already (see bot.command_tree):
    nothing to do, nothing to say."""

    def __init__(self, interaction_id: int) -> None:
        super().__init__(f"interaction {interaction_id} is handled already")
        self.interaction_id = interaction_id


def _unwrap(error: app_commands.AppCommandError) -> BaseException:
    if isinstance(error, app_commands.CommandInvokeError):
        return error.original
    return error


def message_for(error: app_commands.AppCommandError) -> tuple[str, bool]:
    """The text to show the user and whether the error is expected (no traceback needed)."""
    original = _unwrap(error)
    if isinstance(original, UserFacingError):
        return original.message, True
    if isinstance(error, app_commands.MissingPermissions):
        return "You need the " + ", ".join(error.missing_permissions) + " permission for this.", True
    if isinstance(error, app_commands.BotMissingPermissions):
        return "Lumi lacks the " + ", ".join(error.missing_permissions) + " permission here.", True
    if isinstance(error, app_commands.CommandOnCooldown):
        return f"Slow down: try again in {error.retry_after:.0f} s.", True
    if isinstance(error, RefusedByCheck):
        return error.message, True
    if isinstance(error, app_commands.NoPrivateMessage):
        return "This command works only in a server.", True
    if isinstance(error, app_commands.CheckFailure):
        return "You are not allowed to use this command here.", True
    return GENERIC_FAILURE, False


async def send_ephemeral(interaction: discord.Interaction, text: str) -> None:
    try:
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=True)
        else:
            await interaction.response.send_message(text, ephemeral=True)
    except discord.HTTPException:
        log.warning("could not tell the user about an error in interaction %s", interaction.id)


def install_error_handler(tree: app_commands.CommandTree[discord.Client]) -> None:
    async def on_app_command_error(
        interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        if isinstance(error, HandledElsewhere):
            log.info("interaction %s handled already (Discord delivered it twice)", error.interaction_id)
            return
        text, expected = message_for(error)
        name = interaction.command.qualified_name if interaction.command else "?"
        if expected:
            log.info("/%s by %s refused: %s", name, interaction.user, text)
        else:
            log.error("/%s by %s failed", name, interaction.user, exc_info=_unwrap(error))
        await send_ephemeral(interaction, text)

    tree.on_error = on_app_command_error  # type: ignore[method-assign]
