"""The 3D generation cog: the `/3d` commands, the job buttons and the progress messages in one class,
with what starts and stops alongside them (prompt checker warm-up, resumed jobs, file clean-up)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from bot.client import LumiBot
from bot.services.generate3d import EditThrottle, GeneratedFileCleanup, GenerationService, JobSnapshot
from cogs.generate3d.buttons import JobButtons
from cogs.generate3d.progress import ProgressMessages, ProgressTarget
from cogs.generate3d.slash_commands import Generate3DCommands
from cogs.generate3d.views import JobButton

log = logging.getLogger(__name__)


class Generate3D(Generate3DCommands, JobButtons, ProgressMessages):
    def __init__(self, bot: LumiBot) -> None:
        self.bot = bot
        self.service: GenerationService = bot.runtime.generation
        self.moderation = bot.runtime.moderation
        # The feature's settings come with its service (built once in bot/services/generate3d/build.py).
        config = self.service.config
        self.token_ttl_s = config.interaction_ttl_s
        self.throttle: EditThrottle[JobSnapshot] = EditThrottle(
            self._show, interval_s=config.progress_interval_s
        )
        self._targets: dict[str, ProgressTarget] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self.file_cleanup = GeneratedFileCleanup(
            self.service.file_retention, interval_s=config.cleanup_interval_s
        )

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(JobButton)
        self.service.add_listener(self._on_snapshot)
        if not self.bot.serving:
            return
        self._spawn(self.service.checker.warm_up(), "warm up the prompt checker")
        # Distributed mode: every process hears cancels and the progress of jobs run elsewhere.
        await self.service.start()
        if self.bot.runs("worker"):
            # Embedded: resume every unfinished job here. Distributed: claim jobs from the shared queue
            # (a gateway only queues what it is asked for). The clean-up is a worker's too.
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
