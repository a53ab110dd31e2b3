"""The message listener: every post with an image or a link in a server is handed to the enforcer."""

from __future__ import annotations

import logging

import discord
from discord.ext import commands

from bot.services.in_flight import InFlight
from cogs.moderation.base import ModerationBase

log = logging.getLogger(__name__)


class ModerationEvents(ModerationBase):
    _in_flight: InFlight

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        # Text-only messages stop here: no database read, no model call.
        if message.guild is None or message.author.bot:
            return
        if not (message.attachments or message.embeds or "http" in message.content):
            return
        if not self.bot.accepting_work:
            return
        # Photo comments on this post wait for its verdict rather than check the images again.
        self.service.post_verdicts.expect(message.id)
        self._in_flight.start(self._moderate(message), name=f"moderate-{message.id}")

    async def _moderate(self, message: discord.Message) -> None:
        try:
            await self.enforcer.handle_message(message)
        except Exception:
            # One bad message must not stop moderation of the next one.
            log.exception("moderating message %s failed", message.id)
            if message.guild is not None:
                self.service.report_problem(message.guild.id, "checking a post failed (see the log)")
        finally:
            # Posts that were not checked (exempt, no image) or whose check failed get no verdict.
            self.service.post_verdicts.withdraw(message.id)
