"""What the Refine texture, Regenerate, Delete and Cancel buttons under a 3D job message do.

Delete and Cancel may wait on others before they can answer: a delete in distributed mode waits (up to
5 s) for the worker running the job to let go, and both ask Meshy to drop the job's tasks. Discord wants
an answer within 3 s, so these clicks are acknowledged first, privately ("thinking"), and answered by a
follow-up once done.
"""

from __future__ import annotations

import contextlib

import discord

from bot.errors import UserFacingError
from bot.services.generate3d import GenerationRequest
from cogs.generate3d.base import Generate3DBase
from cogs.generate3d.views import JobAction

DELETED_TEXT = "This 3D model was deleted."


class JobButtons(Generate3DBase):
    async def on_job_button(self, interaction: discord.Interaction, action: JobAction, job_id: str) -> None:
        try:
            if action in (JobAction.REFINE, JobAction.REGENERATE):
                await self._new_job_from(interaction, action, job_id)
            elif action is JobAction.DELETE:
                await self._delete(interaction, job_id)
            else:
                await self._cancel(interaction, job_id)
        except UserFacingError as error:
            if interaction.response.is_done():
                await interaction.followup.send(error.message, ephemeral=True)
            else:
                await interaction.response.send_message(error.message, ephemeral=True)

    async def _new_job_from(self, interaction: discord.Interaction, action: JobAction, job_id: str) -> None:
        if not self.service.enabled:
            raise UserFacingError("3D generation is not set up on this Lumi.")
        await self.service.check_quotas(
            GenerationRequest(user_id=interaction.user.id, prompt="", guild_id=interaction.guild_id)
        )
        start = self.service.refine if action is JobAction.REFINE else self.service.regenerate
        message_id = await self._reply_message_id(interaction, await self._defer_thinking(interaction))
        try:
            await start(
                job_id,
                user_id=interaction.user.id,
                guild_id=interaction.guild_id,
                channel_id=interaction.channel_id,
                interaction_token=interaction.token,
                application_id=interaction.application_id,
                message_id=message_id,
            )
        except UserFacingError as error:
            await self._refuse_after_defer(interaction, error.message)

    async def _cancel(self, interaction: discord.Interaction, job_id: str) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        await self.service.cancel(
            job_id, user_id=interaction.user.id, is_moderator=interaction.permissions.manage_messages
        )
        await interaction.followup.send("Stopping that 3D job.", ephemeral=True)

    async def _delete(self, interaction: discord.Interaction, job_id: str) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        await self.service.delete(
            job_id, user_id=interaction.user.id, is_moderator=interaction.permissions.manage_messages
        )
        if interaction.message is not None:
            # The job's message loses its embed, links and buttons; should that edit fail, the reply
            # below still says the model is gone.
            with contextlib.suppress(discord.HTTPException):
                await interaction.message.edit(content=DELETED_TEXT, embed=None, attachments=[], view=None)
        await interaction.followup.send(DELETED_TEXT, ephemeral=True)
