"""Deleting moderation data: `/moderation forget` for one user, and scrubbing alert previews whose
stored images were purged (by `forget` or by evidence retention)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import discord
from discord import app_commands

from bot.services.moderation import PurgedEvidence
from cogs.moderation import render
from cogs.moderation.base import ModerationBase
from cogs.moderation.settings import moderation_group
from cogs.moderation.views import case_view

log = logging.getLogger(__name__)


class ModerationPrivacy(ModerationBase):
    @moderation_group.command(name="forget")
    @app_commands.checks.has_permissions(manage_guild=True)
    @app_commands.describe(user="The member whose moderation data should be deleted")
    async def forget(self, interaction: discord.Interaction, user: discord.User) -> None:
        """Delete a user's moderation data here: stored images, their id on cases, alert previews."""
        assert interaction.guild is not None
        await interaction.response.defer(ephemeral=True, thinking=True)
        report = await self.service.forget_user(interaction.guild.id, user.id)
        scrubbed = 0
        for channel_id, message_id, _number in report.alerts:
            if await self._redraw_alert(channel_id, message_id, drop_preview=True):
                scrubbed += 1
        counts = report.counts
        await interaction.followup.send(
            f"Deleted {user.mention}'s moderation data: {counts['cases_anonymised']} case(s) anonymised, "
            f"{counts['blobs']} stored image(s) deleted, {scrubbed} alert(s) scrubbed.",
            ephemeral=True,
            allowed_mentions=discord.AllowedMentions.none(),
        )

    async def _redraw_alert(self, channel_id: int, message_id: int, *, drop_preview: bool) -> bool:
        """Re-render an alert from its case (found through its buttons' custom ids), maybe without preview."""
        channel = self.bot.get_partial_messageable(channel_id)
        message = channel.get_partial_message(message_id)
        try:
            full = await message.fetch()
            case_id = _case_id_from(full)
            case = await self.service.get_case(case_id) if case_id is not None else None
            kwargs: dict[str, Any] = {"attachments": []} if drop_preview else {}
            if case is not None:
                kwargs.update(embed=render.alert_embed(case), view=case_view(case))
            await message.edit(**kwargs)
        except discord.HTTPException as error:
            log.info("could not update alert %s: %s", message_id, error)
            return False
        return True

    async def _scrub_previews(self, purged: Sequence[PurgedEvidence]) -> None:
        for item in purged:
            if item.alert_channel_id and item.alert_message_id:
                await self._redraw_alert(item.alert_channel_id, item.alert_message_id, drop_preview=True)


def _case_id_from(message: discord.Message) -> int | None:
    for row in message.components:
        for item in getattr(row, "children", []):
            custom_id = getattr(item, "custom_id", None) or ""
            if custom_id.startswith("lumi:mod:"):
                return int(custom_id.rsplit(":", 1)[1])
    return None
