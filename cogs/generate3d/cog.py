"""`/3d create|history|cancel` and the job buttons; progress shown by editing one message per job.

Progress goes to the deferred interaction reply while its token is valid (15 minutes); shortly before
that a job moves to an ordinary channel message and keeps editing that one. Which message shows a job
is stored on its row, so after a restart the resumed jobs keep updating the same messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
from dataclasses import dataclass, replace
from typing import Any, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.client import LumiBot
from bot.errors import UserFacingError
from bot.services.generation import (
    DEFAULT_FORMATS,
    GenerationOptions,
    GenerationRequest,
    GenerationService,
    ModeratorAlert,
    PromptRejected,
)
from bot.services.generation_progress import EditThrottle, JobSnapshot
from bot.services.generation_retention import GeneratedFileCleanup
from cogs.generate3d import render
from cogs.generate3d.views import JobAction, JobButton, failed_view, result_view, running_view
from storage.models import JobState

log = logging.getLogger(__name__)

# The prompt check normally takes milliseconds; only a cold profanity model takes longer, and Discord
# wants an answer within 3 s.
_CHECK_BEFORE_DEFER_S = 2.0
_KNOWN_FORMATS = ("glb", "fbx", "obj", "usdz", "stl", "3mf")
Style = Literal["realistic", "cartoon", "low-poly", "sculpture"]


@dataclass
class ProgressTarget:
    """Where a job is shown: its interaction reply (while the token lives) or a channel message."""

    job_id: str
    channel_id: int | None
    application_id: int | None
    token: str | None
    message_id: int | None
    channel_message_id: int | None
    started: float  # time.time() when the interaction token was issued

    def token_alive(self, ttl_s: float) -> bool:
        return (
            self.token is not None and self.application_id is not None and time.time() - self.started < ttl_s
        )


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


class Generate3D(commands.Cog):
    three_d = app_commands.Group(name="3d", description="Generate 3D models from text", guild_only=True)

    def __init__(self, bot: LumiBot) -> None:
        self.bot = bot
        self.service: GenerationService = bot.runtime.generation
        settings = bot.settings
        self.token_ttl_s = settings.generation_interaction_ttl_s
        self.throttle: EditThrottle[JobSnapshot] = EditThrottle(
            self._show, interval_s=settings.generation_progress_interval_s
        )
        self._targets: dict[str, ProgressTarget] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self.file_cleanup = GeneratedFileCleanup(
            self.service.file_retention, interval_s=settings.generation_cleanup_interval_s
        )

    # -- lifecycle ---------------------------------------------------------------------------------------

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(JobButton)
        self.service.add_listener(self._on_snapshot)
        if not self.bot.serving:
            return
        self._spawn(self.service.checker.warm_up(), "warm up the prompt checker")
        await self.service.resume_unfinished()
        self.file_cleanup.start()

    async def cog_unload(self) -> None:
        await self.file_cleanup.stop()
        self.service.remove_listener(self._on_snapshot)
        self.bot.remove_dynamic_items(JobButton)
        await self.throttle.close()
        for task in list(self._background):
            task.cancel()

    def _spawn(self, coroutine: Any, what: str) -> None:
        async def guarded() -> None:
            try:
                await coroutine
            except Exception:
                log.exception("could not %s", what)

        task = asyncio.create_task(guarded())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _on_snapshot(self, snapshot: JobSnapshot) -> None:
        if snapshot.channel_id is not None:
            self.throttle.submit(snapshot.job_id, snapshot)

    def viewer_url(self, job_id: str) -> str:
        return f"{self.bot.runtime.public_base_url}/view/{job_id}"

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
        outcome = await self._check_prompt(interaction, request)
        if outcome is None:
            return
        deferred, message_id = outcome
        if not deferred:
            await self.service.check_quotas(request)
            response = await interaction.response.defer(thinking=True)
            message_id = response.message_id if response is not None else None
        if message_id is None:
            with contextlib.suppress(discord.HTTPException):
                message_id = (await interaction.original_response()).id
        try:
            await self.service.submit(replace(request, message_id=message_id), checked=True)
        except UserFacingError as error:
            await self._refuse_after_defer(interaction, error.message)

    async def _check_prompt(
        self, interaction: discord.Interaction, request: GenerationRequest
    ) -> tuple[bool, int | None] | None:
        """Check the prompt. None when refused; else whether the interaction had to be deferred meanwhile
        (a cold profanity model), with the deferred reply's message id."""
        check = asyncio.create_task(
            self.service.check_prompt(
                request.prompt,
                user_id=request.user_id,
                guild_id=request.guild_id,
                channel_id=request.channel_id,
            )
        )
        done, _ = await asyncio.wait({check}, timeout=_CHECK_BEFORE_DEFER_S)
        deferred = not done
        message_id = None
        if deferred:
            await self.service.check_quotas(request)
            response = await interaction.response.defer(thinking=True)
            message_id = response.message_id if response is not None else None
        try:
            await check
        except PromptRejected as rejection:
            if deferred:
                await self._refuse_after_defer(interaction, rejection.message)
            else:
                await interaction.response.send_message(rejection.message, ephemeral=True)
            if rejection.alert is not None:
                await self._alert_moderators(rejection.alert)
            return None
        return deferred, message_id

    async def _refuse_after_defer(self, interaction: discord.Interaction, text: str) -> None:
        # The public "thinking" message goes; the refusal is for the user's eyes only.
        with contextlib.suppress(discord.HTTPException):
            await interaction.delete_original_response()
        await interaction.followup.send(text, ephemeral=True)

    async def _alert_moderators(self, alert: ModeratorAlert) -> None:
        if alert.mod_channel_id is None:
            report = getattr(self.bot.runtime.moderation, "report_problem", None)
            if report is not None:
                report(
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
        await interaction.response.send_message(
            f"Stopped the 3D job for “{canceled.prompt[:80]}”.", ephemeral=True
        )

    # -- buttons -----------------------------------------------------------------------------------------

    async def on_job_button(self, interaction: discord.Interaction, action: JobAction, job_id: str) -> None:
        try:
            if action in (JobAction.REFINE, JobAction.REGENERATE):
                await self._new_job_from(interaction, action, job_id)
            elif action is JobAction.DELETE:
                await self._delete(interaction, job_id)
            else:
                await self.service.cancel(
                    job_id, user_id=interaction.user.id, is_moderator=interaction.permissions.manage_messages
                )
                await interaction.response.send_message("Stopping that 3D job.", ephemeral=True)
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
        response = await interaction.response.defer(thinking=True)
        message_id = response.message_id if response is not None else None
        if message_id is None:
            with contextlib.suppress(discord.HTTPException):
                message_id = (await interaction.original_response()).id
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

    async def _delete(self, interaction: discord.Interaction, job_id: str) -> None:
        await self.service.delete(
            job_id, user_id=interaction.user.id, is_moderator=interaction.permissions.manage_messages
        )
        await interaction.response.edit_message(
            content="This 3D model was deleted.", embed=None, attachments=[], view=None
        )

    # -- showing progress --------------------------------------------------------------------------------

    async def _target(self, job_id: str) -> ProgressTarget | None:
        target = self._targets.get(job_id)
        if target is not None:
            return target
        job = await self.service.get_job(job_id)
        if job is None or job.channel_id is None:
            return None
        target = ProgressTarget(
            job_id=job.id,
            channel_id=job.channel_id,
            application_id=job.application_id,
            token=job.interaction_token,
            message_id=job.message_id,
            channel_message_id=job.channel_message_id,
            # The row is created right after the interaction arrives, so its age is the token's age.
            started=job.created_at.timestamp(),
        )
        self._targets[job.id] = target
        return target

    async def _show(self, job_id: str, snapshot: JobSnapshot) -> None:
        target = await self._target(job_id)
        if target is None:
            return
        files: list[discord.File] = []
        if snapshot.state is JobState.DONE:
            result = await self.service.result(job_id)
            thumbnail = result.thumbnail
            if thumbnail is not None:
                data = await self.service.read_asset(thumbnail.key)
                files.append(discord.File(io.BytesIO(data), filename=render.THUMBNAIL_NAME))
            embed = render.result_embed(
                snapshot,
                result,
                sign=self.bot.runtime.download_url,
                viewer_url=self.viewer_url(job_id),
                has_thumbnail=bool(files),
            )
            view = result_view(job_id)
        elif snapshot.is_terminal:
            embed, view = render.ended_embed(snapshot), failed_view(job_id)
        else:
            embed = render.progress_embed(snapshot, viewer_url=self.viewer_url(job_id))
            view = running_view(job_id)
        await self._edit(target, embed=embed, view=view, files=files)
        if snapshot.is_terminal:
            self._targets.pop(job_id, None)
            self.throttle.forget(job_id)

    async def _edit(
        self,
        target: ProgressTarget,
        *,
        embed: discord.Embed,
        view: discord.ui.View,
        files: list[discord.File],
    ) -> None:
        if target.channel_message_id is None and target.token_alive(self.token_ttl_s) and target.message_id:
            assert target.application_id is not None and target.token is not None
            webhook = discord.Webhook.partial(target.application_id, target.token, client=self.bot)
            try:
                await webhook.edit_message(
                    target.message_id, content=None, embed=embed, view=view, attachments=files
                )
                return
            except discord.NotFound:
                log.info("the reply of 3D job %s is gone; continuing in a channel message", target.job_id)
            except discord.HTTPException as error:
                if error.status != 401:
                    raise
        elif target.channel_message_id is None and target.message_id and target.token is not None:
            # The token is about to expire: say where the job continues, while the old reply can still
            # be edited, then continue in a channel message.
            await self._hand_over(target)
        await self._edit_channel_message(target, embed=embed, view=view, files=files)

    async def _hand_over(self, target: ProgressTarget) -> None:
        if target.application_id is None or target.token is None or target.message_id is None:
            return
        webhook = discord.Webhook.partial(target.application_id, target.token, client=self.bot)
        with contextlib.suppress(discord.HTTPException):
            await webhook.edit_message(
                target.message_id,
                content="This job is taking a while: its progress continues in a new message below.",
                embed=None,
                view=None,
            )
        target.token = None

    async def _edit_channel_message(
        self,
        target: ProgressTarget,
        *,
        embed: discord.Embed,
        view: discord.ui.View,
        files: list[discord.File],
    ) -> None:
        if target.channel_id is None:
            return
        channel = self.bot.get_partial_messageable(target.channel_id)
        if target.channel_message_id is not None:
            message = channel.get_partial_message(target.channel_message_id)
            try:
                await message.edit(content=None, embed=embed, view=view, attachments=files)
                return
            except discord.NotFound:
                log.info("the channel message of 3D job %s is gone; posting a new one", target.job_id)
        sent = await channel.send(embed=embed, view=view, files=files)
        target.channel_message_id = sent.id
        target.token = None
        await self.service.set_message(target.job_id, channel_message_id=sent.id)
