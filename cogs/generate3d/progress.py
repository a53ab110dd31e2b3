"""Live progress of 3D jobs, shown by editing one message per job.

Progress goes to the deferred interaction reply while its token is valid (15 minutes); shortly before
that a job moves to an ordinary channel message and keeps editing that one. Which message shows a job
is stored on its row, so after a restart the resumed jobs keep updating the same messages.

Every snapshot says where its job is shown, and the final one of a finished job carries its files, so
showing the result goes down to the service once, for the thumbnail's bytes (``read_asset``), plus
``set_message`` when the job moves to a channel message. It used to go down 3-4 times: ``get_job`` for
where to show it, ``result`` (the job row and its assets again), ``read_asset``, and ``set_message``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
from dataclasses import dataclass

import discord

from bot.services.generate3d import EditThrottle, JobFiles, JobMessage, JobSnapshot, JobState
from cogs.generate3d import render
from cogs.generate3d.base import Generate3DBase
from cogs.generate3d.views import failed_view, result_view, running_view

log = logging.getLogger(__name__)


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


class ProgressMessages(Generate3DBase):
    token_ttl_s: float
    throttle: EditThrottle[JobSnapshot]
    _targets: dict[str, ProgressTarget]

    def _target(self, snapshot: JobSnapshot) -> ProgressTarget | None:
        target = self._targets.get(snapshot.job_id)
        if target is not None:
            return target
        if snapshot.channel_id is None:
            return None
        shown = snapshot.message or JobMessage()
        target = ProgressTarget(
            job_id=snapshot.job_id,
            channel_id=snapshot.channel_id,
            application_id=shown.application_id,
            token=shown.interaction_token,
            message_id=shown.message_id,
            channel_message_id=shown.channel_message_id,
            # The row is created right after the interaction arrives, so its age is the token's age.
            started=snapshot.created_at.timestamp(),
        )
        self._targets[snapshot.job_id] = target
        return target

    async def _show(self, job_id: str, snapshot: JobSnapshot) -> None:
        if not await self.service.may_show(job_id):
            # Another worker took the job from this one and shows it now: an edit waiting here is stale.
            self._targets.pop(job_id, None)
            self.throttle.forget(job_id)
            return
        target = self._target(snapshot)
        if target is None:
            return
        files: list[discord.File] = []
        if snapshot.state is JobState.DONE:
            stored = snapshot.files
            if stored is None:
                log.warning("3D job %s finished without its files on the snapshot", job_id)
                stored = JobFiles()
            thumbnail = stored.thumbnail
            if thumbnail is not None:
                data = await self.service.read_asset(thumbnail.key)
                files.append(discord.File(io.BytesIO(data), filename=render.THUMBNAIL_NAME))
            embed = render.result_embed(
                snapshot,
                stored,
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
