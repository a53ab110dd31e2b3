"""The image moderation cog: the message listener, `/moderation`, `/scan`, "Scan image" and the case
buttons in one class, with what starts and stops alongside them (evidence retention, verdict publishing)."""

from __future__ import annotations

from discord import app_commands

from bot.client import LumiBot
from bot.services.in_flight import InFlight
from bot.services.moderation import EvidenceRetentionJob, ModerationService, classifier_file_sweep
from cogs.moderation.decisions import ModerationDecisions
from cogs.moderation.enforcement import Enforcer
from cogs.moderation.events import ModerationEvents
from cogs.moderation.privacy import ModerationPrivacy
from cogs.moderation.scan import ModerationScan
from cogs.moderation.settings import ModerationSettings
from cogs.moderation.views import CaseButton

_SHUTDOWN_GRACE_S = 10.0


class Moderation(
    ModerationEvents,
    ModerationDecisions,
    ModerationScan,
    ModerationPrivacy,
    # discord.py collects app commands from the last base first: `/moderation` is registered before `/scan`.
    ModerationSettings,
):
    def __init__(self, bot: LumiBot) -> None:
        self.bot = bot
        self.service: ModerationService = bot.runtime.moderation
        self.enforcer = Enforcer(bot, self.service)
        self.retention = EvidenceRetentionJob(
            self.service, interval_s=self.service.config.cleanup_interval_s, on_purged=self._scrub_previews
        )
        catalog = self.service.classifiers
        # Distributed mode with a remote blob store: files under classifiers/ that no registration names.
        self.classifier_sweep = (
            None
            if catalog is None
            else classifier_file_sweep(
                catalog.store, self.service.database, interval_s=self.service.config.cleanup_interval_s
            )
        )
        self._in_flight = InFlight("moderation check")
        self.scan_menu = app_commands.ContextMenu(name="Scan image", callback=self.scan_message)

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(CaseButton)
        self.bot.tree.add_command(self.scan_menu)
        if self.bot.runs("worker"):
            self.retention.start()
            if self.classifier_sweep is not None:
                self.classifier_sweep.start()
        self.service.verdict_feed.start_publishing()

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.scan_menu.name, type=self.scan_menu.type)
        self.bot.remove_dynamic_items(CaseButton)
        await self.retention.stop()
        if self.classifier_sweep is not None:
            await self.classifier_sweep.stop()
        # Posts being checked finish (their evidence is stored before anything is deleted).
        await self._in_flight.wait(_SHUTDOWN_GRACE_S)
        self.service.verdict_feed.stop_publishing()

    async def finish_in_flight(self, timeout: float) -> None:  # noqa: ASYNC109
        """Shutdown: the posts being checked are dealt with within ``timeout`` seconds, the rest stopped."""
        await self._in_flight.finish(timeout)
