"""What the parts of the 3D cog share: the bot, the generation service, the moderation service (for blocked
prompts) and the helpers its parts share."""

from __future__ import annotations

import contextlib

import discord
from discord.ext import commands

from bot.client import LumiBot
from bot.services.generate3d import GenerationService
from bot.services.moderation import ModerationService


class Generate3DBase(commands.Cog):
    """Declares the state that `Generate3D.__init__` sets up, for the mixins that use it.

    A cog itself because discord.py types command callbacks as methods of a cog; the one class that
    the bot loads is `Generate3D`, which combines the mixins.
    """

    bot: LumiBot
    service: GenerationService
    # Blocked prompts are moderation's business: alerts and the problems `/moderation status` lists.
    moderation: ModerationService

    def viewer_url(self, job_id: str) -> str:
        return f"{self.bot.runtime.public_base_url}/view/{job_id}"

    async def _defer_thinking(self, interaction: discord.Interaction) -> int | None:
        """Defer with the public "thinking" reply; that reply's message id when Discord says it."""
        response = await interaction.response.defer(thinking=True)
        return response.message_id if response is not None else None

    async def _reply_message_id(self, interaction: discord.Interaction, known: int | None) -> int | None:
        """The deferred reply's message id: `known`, else asked of Discord (None when that fails)."""
        if known is not None:
            return known
        with contextlib.suppress(discord.HTTPException):
            return (await interaction.original_response()).id
        return None

    async def _refuse_after_defer(self, interaction: discord.Interaction, text: str) -> None:
        # The public "thinking" message goes; the refusal is for the user's eyes only.
        with contextlib.suppress(discord.HTTPException):
            await interaction.delete_original_response()
        await interaction.followup.send(text, ephemeral=True)
