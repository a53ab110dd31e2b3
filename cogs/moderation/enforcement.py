"""Carrying out a case on Discord: remove the post, time the author out, alert the moderators.

The service has screened the post and recorded the case by then (`ModerationService.screen_post`);
every Discord call that can fail for lack of permissions is caught here and turned into a problem
written on the case and shown in `/moderation status`.
"""

from __future__ import annotations

import io
import logging
from datetime import timedelta

import discord

from bot.services.image_fetch import FetchedImage
from bot.services.moderation import ModerationCase, ModerationService, PostOutcome
from cogs.moderation import render
from cogs.moderation.views import case_view
from cogs.shared.posts import has_image_extension

log = logging.getLogger(__name__)

# Discord refuses bigger uploads from bots without boosts; a preview is not worth a failed alert.
MAX_PREVIEW_BYTES = 8 * 1024 * 1024
# Written on the case when carrying it out failed in a way Discord's errors do not explain.
_FAILED = "carrying out the case failed (see the log)"


class Enforcer:
    """Carries out what the service decided for a post."""

    def __init__(self, bot: discord.Client, service: ModerationService) -> None:
        self.bot = bot
        self.service = service

    async def enforce(self, message: discord.Message, outcome: PostOutcome) -> ModerationCase:
        """Remove, time out and alert as ``outcome`` asks, with at most two calls into the service:
        `record_enforcement` with what the removal and timeout did (the alert shows it), then, when an
        alert was posted or something went wrong, `record_enforcement` with the alert and its problems.
        An unexpected failure on the way makes the second call record what is known, the failure being
        one of its problems, so the case says what happened."""
        case = outcome.case
        case_id = case.id
        assert case_id is not None
        problems: list[str] = []
        removed: bool | None = None
        timed_out = False
        recorded = False
        alert: tuple[int, int] | None = None
        alert_problems: list[str] = []
        try:
            if outcome.remove_post:
                removed = await self._delete(message, problems)
            if outcome.timeout_minutes and isinstance(message.author, discord.Member):
                timed_out = await self._timeout(message.author, outcome.timeout_minutes, case, problems)
            case = await self.service.record_enforcement(
                case_id, post_removed=removed, timed_out=timed_out, problems=problems
            )
            recorded = True
            alert = await self.post_alert(
                message.guild, outcome.alert_channel_id, case, outcome.flagged_image, alert_problems
            )
        except Exception:
            log.exception("carrying out case #%s failed", case.case_number)
            alert_problems.append(_FAILED)
        if recorded and (alert is not None or alert_problems):
            case = await self.service.record_enforcement(case_id, alert=alert, problems=alert_problems)
        elif not recorded:
            # What the removal and timeout did has not reached the case yet: it goes with the failure.
            case = await self.service.record_enforcement(
                case_id, post_removed=removed, timed_out=timed_out, problems=[*problems, *alert_problems]
            )
        return case

    async def _delete(self, message: discord.Message, problems: list[str]) -> bool:
        try:
            await message.delete()
        except discord.NotFound:
            # Already gone (its author or a moderator was faster); the evidence copy is kept all the same.
            return True
        except discord.Forbidden:
            problems.append(f"Lumi cannot delete messages in #{message.channel} (needs Manage Messages)")
            return False
        except discord.HTTPException as error:
            problems.append(f"deleting the post failed (HTTP {error.status})")
            return False
        return True

    async def _timeout(
        self, member: discord.Member, minutes: int, case: ModerationCase, problems: list[str]
    ) -> bool:
        try:
            await member.timeout(
                timedelta(minutes=minutes), reason=f"Lumi moderation case #{case.case_number}"
            )
        except discord.Forbidden:
            problems.append(f"Lumi cannot time out {member} (needs Moderate Members and a higher role)")
            return False
        except discord.HTTPException as error:
            problems.append(f"timing out the author failed (HTTP {error.status})")
            return False
        return True

    async def post_alert(
        self,
        guild: discord.Guild | None,
        mod_channel_id: int | None,
        case: ModerationCase,
        preview: FetchedImage | None,
        problems: list[str],
    ) -> tuple[int, int] | None:
        """Post the alert with a spoilered preview and the buttons; None (and a problem) when impossible."""
        if guild is None:
            return None
        if mod_channel_id is None:
            problems.append(
                "no moderation channel is set (`/moderation setup mod_channel:`), so no alert was posted"
            )
            return None
        channel = guild.get_channel(mod_channel_id)
        if not isinstance(channel, discord.TextChannel | discord.Thread):
            problems.append("the moderation channel no longer exists; set a new one with `/moderation setup`")
            return None
        files = []
        if preview is not None and len(preview.data) <= MAX_PREVIEW_BYTES:
            if channel.permissions_for(guild.me).attach_files:
                files.append(image_file(preview.filename, preview.data, spoiler=True))
            else:
                problems.append(f"Lumi cannot attach files in #{channel}, so the alert has no preview")
        try:
            sent = await channel.send(
                embed=render.alert_embed(case),
                files=files,
                view=case_view(case),
                allowed_mentions=discord.AllowedMentions.none(),
            )
        except discord.Forbidden:
            problems.append(
                f"Lumi cannot post in the moderation channel #{channel} (needs Send Messages, Embed Links)"
            )
            return None
        except discord.HTTPException as error:
            problems.append(f"posting the alert failed (HTTP {error.status})")
            return None
        return channel.id, sent.id


def image_file(filename: str, data: bytes, *, spoiler: bool) -> discord.File:
    # Discord shows a preview only for names with an image extension.
    name = filename if has_image_extension(filename) else f"{filename}.png"
    return discord.File(io.BytesIO(data), filename=name, spoiler=spoiler)
