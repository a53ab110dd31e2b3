"""What the Confirm, Restore, Timeout author and Dismiss buttons under an alert do."""

from __future__ import annotations

import logging
from datetime import timedelta

import discord

from bot.errors import UserFacingError
from bot.services.moderation import CaseChoice, PendingDecision
from cogs.moderation import render
from cogs.moderation.base import ModerationBase
from cogs.moderation.enforcement import image_file
from cogs.moderation.views import case_view

log = logging.getLogger(__name__)


class ModerationDecisions(ModerationBase):
    async def on_case_button(
        self, interaction: discord.Interaction, choice: CaseChoice, case_id: int
    ) -> None:
        guild = interaction.guild
        permissions = interaction.permissions
        if guild is None:
            return
        if not permissions.manage_messages:
            await interaction.response.send_message(
                "You need the Manage Messages permission.", ephemeral=True
            )
            return
        if choice is CaseChoice.TIMEOUT and not permissions.moderate_members:
            await interaction.response.send_message(
                "You need the Moderate Members permission.", ephemeral=True
            )
            return
        await interaction.response.defer()
        try:
            async with self.service.decide(
                guild_id=guild.id, case_id=case_id, choice=choice, moderator_id=interaction.user.id
            ) as pending:
                await self._carry_out(guild, pending)
        except UserFacingError as error:
            answer = error.message
            case = await self.service.get_case(case_id)
        except Exception:
            log.exception("%s on case id %s failed", choice.value, case_id)
            await interaction.followup.send(
                "That did not work; the details are in Lumi's log.", ephemeral=True
            )
            return
        else:
            case = pending.case
            answer = render.decision_summary(case, pending.problem)
        # The alert first, so that whoever reads the answer already sees the updated alert.
        if case is not None and case.guild_id == guild.id:
            try:
                await interaction.edit_original_response(embed=render.alert_embed(case), view=case_view(case))
            except discord.HTTPException as error:
                log.info("could not update the alert of case id %s: %s", case_id, error)
        await interaction.followup.send(answer, ephemeral=True)

    async def _carry_out(self, guild: discord.Guild, pending: PendingDecision) -> None:
        case = pending.case
        if pending.choice in (CaseChoice.CONFIRM, CaseChoice.TIMEOUT) and pending.post_still_up:
            await self._remove_post(guild, pending)
            if pending.problem is not None:
                return
        if pending.choice is CaseChoice.TIMEOUT:
            await self._timeout_author(guild, pending)
        elif pending.choice is CaseChoice.RESTORE:
            channel = guild.get_channel_or_thread(case.channel_id)
            if not isinstance(channel, discord.abc.Messageable):
                pending.fail("the post's channel no longer exists")
                return
            files = [image_file(f.filename, f.data, spoiler=False) for f in pending.evidence]
            text = (
                f"Restored post by <@{case.author_id}> (moderation case #{case.case_number}, "
                f"restored by <@{pending.moderator_id}>)."
            )
            try:
                await channel.send(text, files=files, allowed_mentions=discord.AllowedMentions.none())
            except discord.HTTPException as error:
                pending.fail(f"Lumi could not post in <#{case.channel_id}> (HTTP {error.status})")

    async def _remove_post(self, guild: discord.Guild, pending: PendingDecision) -> None:
        case = pending.case
        assert case.message_id is not None
        message = self.bot.get_partial_messageable(case.channel_id, guild_id=guild.id).get_partial_message(
            case.message_id
        )
        try:
            await message.delete()
        except discord.NotFound:
            pass
        except discord.Forbidden:
            pending.fail(f"Lumi cannot delete messages in <#{case.channel_id}> (needs Manage Messages)")
            return
        except discord.HTTPException as error:
            pending.fail(f"deleting the post failed (HTTP {error.status})")
            return
        pending.post_removed = True

    async def _timeout_author(self, guild: discord.Guild, pending: PendingDecision) -> None:
        author_id = pending.case.author_id
        try:
            member = guild.get_member(author_id) or await guild.fetch_member(author_id)
            await member.timeout(
                timedelta(minutes=pending.timeout_minutes),
                reason=f"Lumi moderation case #{pending.case.case_number}",
            )
        except discord.NotFound:
            pending.fail("the author is no longer in this server")
        except discord.Forbidden:
            pending.fail("Lumi cannot time out this member (needs Moderate Members and a higher role)")
        except discord.HTTPException as error:
            pending.fail(f"the timeout failed (HTTP {error.status})")
