"""The message listener: every post with an image or a link in a server is screened by the service."""

from __future__ import annotations

import logging

import discord
from discord.ext import commands

from bot.services.in_flight import InFlight
from cogs.moderation.base import ModerationBase
from cogs.shared.posts import read_post

log = logging.getLogger(__name__)


class ModerationEvents(ModerationBase):
    _in_flight: InFlight

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        # Text-only messages stop here: no database read, no model call.
        if message.guild is None or message.author.bot or message.webhook_id is not None:
            return
        if not (message.attachments or message.embeds or "http" in message.content):
            return
        if not self.bot.accepting_work:
            return
        self._in_flight.start(self._moderate(message), name=f"moderate-{message.id}")

    async def _moderate(self, message: discord.Message) -> None:
        """Screen one post and carry out its case: at most three calls into the moderation service.

        1. `screen_post`: exemptions, downloads, unchecked accounting, the check and the case, in one
           call (it never raises: a failure is logged and shown in `/moderation status`);
        2. when there is a case, `record_enforcement` with what the removal and timeout did;
        3. `record_enforcement` with the alert and its problems, when there are any.
        """
        try:
            outcome = await self.service.screen_post(read_post(message))
            if outcome is not None:
                await self.enforcer.enforce(message, outcome)
        except Exception:
            # One bad message must not stop moderation of the next one; the case, if any, is stored.
            log.exception("moderating message %s failed", message.id)
