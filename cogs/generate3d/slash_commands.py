"""`/3d create`, `/3d history` and `/3d cancel`, and the moderator alert for a blocked prompt."""

from __future__ import annotations

import asyncio
import logging
from typing import Literal

import discord
from discord import app_commands

from bot.errors import UserFacingError
from bot.services.generate3d import (
    DEFAULT_FORMATS,
    Admission,
    GenerationOptions,
    GenerationRequest,
    ModeratorAlert,
    PromptRejected,
)
from cogs.generate3d import render
from cogs.generate3d.base import Generate3DBase

log = logging.getLogger(__name__)

# The prompt check normally takes milliseconds; only a cold profanity model takes longer, and Discord
# wants an answer within 3 s.
_CHECK_BEFORE_DEFER_S = 2.0
_KNOWN_FORMATS = ("glb", "fbx", "obj", "usdz", "stl", "3mf")
Style = Literal["realistic", "cartoon", "low-poly", "sculpture"]


def parse_formats(raw: str | None) -> tuple[str, ...]:
    if not raw:
        return DEFAULT_FORMATS
    wanted = [part.strip().lower().lstrip(".") for part in raw.replace(" ", ",").split(",") if part.strip()]
    unknown = [fmt for fmt in wanted if fmt not in _KNOWN_FORMATS]
    if unknown:
        raise UserFacingError(
            f"Unknown format(s): {', '.join(unknown)}. Choose from {', '.join(_KNOWN_FORMATS)}."
        )
    # GLB is what the viewer shows, so it is always produced.
    return tuple(dict.fromkeys(["glb", *wanted]))


class Generate3DCommands(Generate3DBase):
    three_d = app_commands.Group(name="3d", description="Generate 3D models from text", guild_only=True)

    # -- /3d create --------------------------------------------------------------------------------------

    @three_d.command(name="create")
    @app_commands.describe(
        prompt="What to make, e.g. 'a small wooden treasure chest with iron bands'",
        style="Art style",
        texture="Paint textures on the shape (takes about twice as long)",
        enhance="Let Lumi add modelling detail to the prompt first",
        polycount="Target number of polygons (100-300000)",
        formats="File formats, comma-separated: glb, fbx, obj, usdz, stl, 3mf (GLB is always included)",
    )
    async def create(
        self,
        interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, 600],
        style: Style | None = None,
        texture: bool = True,
        enhance: bool = True,
        polycount: app_commands.Range[int, 100, 300_000] | None = None,
        formats: str | None = None,
    ) -> None:
        """Generate a 3D model from a text prompt."""
        if not self.service.enabled:
            raise UserFacingError(
                "3D generation is not set up on this Lumi: an operator needs to set MESHY_API_KEY "
                "(the Meshy test-mode key works for a first try)."
            )
        options = GenerationOptions(
            texture=texture, enhance=enhance, style=style, polycount=polycount, formats=parse_formats(formats)
        )
        request = GenerationRequest(
            user_id=interaction.user.id,
            prompt=prompt,
            options=options,
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id,
            interaction_token=interaction.token,
            application_id=interaction.application_id,
        )
        admitted = await self._admit(interaction, request)
        if admitted is None:
            return
        admission, message_id = admitted
        message_id = await self._reply_message_id(interaction, message_id)
        try:
            await self.service.submit(admission.shown_in(message_id))
        except UserFacingError as error:
            await self._refuse_after_defer(interaction, error.message)

    async def _admit(
        self, interaction: discord.Interaction, request: GenerationRequest
    ) -> tuple[Admission, int | None] | None:
        """Admit the request (prompt check and quotas, once, in the service) and defer the interaction.

        None when refused, the user told privately why. Else the admission and the deferred reply's message
        id when Discord said it. The check normally answers before the defer, so a refusal is a plain
        private reply; one that outlasts Discord's patience (a cold profanity model) is deferred meanwhile.
        """
        admitting = asyncio.create_task(self.service.admit(request))
        done, _ = await asyncio.wait({admitting}, timeout=_CHECK_BEFORE_DEFER_S)
        deferred = not done
        message_id = await self._defer_thinking(interaction) if deferred else None
        try:
            admission = await admitting
        except UserFacingError as refusal:
            if deferred:
                await self._refuse_after_defer(interaction, refusal.message)
            elif isinstance(refusal, PromptRejected):
                await interaction.response.send_message(refusal.message, ephemeral=True)
            else:
                raise  # the tree's error handler answers it privately, as every refusal
            if isinstance(refusal, PromptRejected) and refusal.alert is not None:
                await self._alert_moderators(refusal.alert)
            return None
        if not deferred:
            message_id = await self._defer_thinking(interaction)
        return admission, message_id

    async def _alert_moderators(self, alert: ModeratorAlert) -> None:
        if alert.mod_channel_id is None:
            # Moderation's problem log is what `/moderation status` shows, where the channel gets set.
            self.moderation.report_problem(
                alert.guild_id,
                f"a 3D prompt by user {alert.user_id} was blocked, but no moderation "
                "channel is set for alerts",
            )
            return
        channel = self.bot.get_channel(alert.mod_channel_id)
        if not isinstance(channel, discord.abc.Messageable):
            log.warning("moderation channel %s of guild %s is gone", alert.mod_channel_id, alert.guild_id)
            return
        try:
            await channel.send(
                embed=render.alert_embed(alert), allowed_mentions=discord.AllowedMentions.none()
            )
        except discord.HTTPException as error:
            log.warning("could not post a blocked-prompt alert in %s: %s", alert.mod_channel_id, error)

    # -- /3d history and /3d cancel ----------------------------------------------------------------------

    @three_d.command(name="history")
    async def history(self, interaction: discord.Interaction) -> None:
        """Your recent 3D models with links."""
        jobs = await self.service.history(user_id=interaction.user.id, guild_id=interaction.guild_id)
        embed = render.history_embed(jobs, viewer_url=self.viewer_url)
        await interaction.response.send_message(embed=embed, ephemeral=True)

    @three_d.command(name="cancel")
    @app_commands.describe(job="Job id from /3d history (default: your newest running job)")
    async def cancel(self, interaction: discord.Interaction, job: str | None = None) -> None:
        """Stop one of your running 3D jobs."""
        # Stopping asks Meshy to drop the job's task, which may take longer than Discord's 3 s to answer.
        await interaction.response.defer(ephemeral=True, thinking=True)
        job_id = job.strip().lower() if job else None
        if job_id is None:
            running = await self.service.find_cancelable(
                user_id=interaction.user.id, guild_id=interaction.guild_id
            )
            if running is None:
                raise UserFacingError("You have no 3D job running.")
            job_id = running.id
        canceled = await self.service.cancel(
            job_id, user_id=interaction.user.id, is_moderator=interaction.permissions.manage_messages
        )
        await interaction.followup.send(f"Stopped the 3D job for “{canceled.prompt[:80]}”.", ephemeral=True)
