"""Checking images on request: `/scan` and the "Scan image" context menu; only the asker sees the result."""

from __future__ import annotations

import asyncio

import discord
from discord import app_commands

from bot.services.moderation import Verdict
from cogs.moderation import render
from cogs.moderation.base import ModerationBase
from cogs.moderation.enforcement import fetch_images, image_sources


class ModerationScan(ModerationBase):
    @app_commands.command(name="scan")
    @app_commands.checks.cooldown(5, 60.0)
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
        sources = image_sources(message, self.service.fetcher)
        limit = self.enforcer.max_images
        images, failures = await fetch_images(self.service.fetcher, sources[:limit])
        verdicts = await asyncio.gather(*(self._check(interaction, image.data) for image in images))
        results: list[tuple[str, Verdict | str]] = [
            (i.filename, v) for i, v in zip(images, verdicts, strict=True)
        ]
        results.extend((filename, error.message) for filename, error in failures)
        results.extend(
            (source.filename, f"not checked: past the first {limit} images") for source in sources[limit:]
        )
        await interaction.followup.send(render.scan_report(results), ephemeral=True)

    async def _check(self, interaction: discord.Interaction, data: bytes) -> Verdict:
        if interaction.guild is None:
            return await self.service.check_image(data)
        config = await self.service.guild_config(interaction.guild.id)
        return await self.service.check_image(data, guild_policy=config.policy, guild_id=interaction.guild.id)
