"""Checking images on request: `/scan` and the "Scan image" context menu; only the asker sees the result."""

from __future__ import annotations

import discord
from discord import app_commands

from bot.services.moderation import Verdict
from cogs.moderation import render
from cogs.moderation.base import ModerationBase
from cogs.shared.posts import read_post
from cogs.shared.rate_limits import per_user_rate_limit


class ModerationScan(ModerationBase):
    @app_commands.command(name="scan")
    @per_user_rate_limit("scan")
    @app_commands.describe(image="The image to check (only you see the result; nothing is stored)")
    async def scan(self, interaction: discord.Interaction, image: discord.Attachment) -> None:
        """Check an image against this server's moderation policy."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            data = await self.service.fetcher.fetch(
                image.url, filename=image.filename, declared_size=image.size
            )
        except Exception as error:
            message = getattr(error, "message", None) or "the download failed"
            await interaction.followup.send(render.scan_report([(image.filename, message)]), ephemeral=True)
            return
        verdict = await self._check(interaction, data.data)
        await interaction.followup.send(render.scan_report([(image.filename, verdict)]), ephemeral=True)

    async def scan_message(self, interaction: discord.Interaction, message: discord.Message) -> None:
        """Context menu "Scan image": check the images of a message, privately."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        guild_id = interaction.guild.id if interaction.guild is not None else None
        report = await self.service.scan_post(read_post(message), guild_id=guild_id)
        await interaction.followup.send(render.scan_report(report), ephemeral=True)

    async def _check(self, interaction: discord.Interaction, data: bytes) -> Verdict:
        if interaction.guild is None:
            return await self.service.check_image(data)
        config = await self.service.guild_config(interaction.guild.id)
        return await self.service.check_image(data, guild_policy=config.policy, guild_id=interaction.guild.id)
