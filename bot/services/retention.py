"""The periodic evidence clean-up: removed images are kept only for the retention period.

The job runs once at start (catching up on whatever expired while Lumi was down) and then every
``interval_s``. ``on_purged`` lets the Discord layer remove the previews from the alerts of those cases.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from bot.services.moderation import ModerationService, PurgedEvidence

__all__ = ["EvidenceRetentionJob"]

log = logging.getLogger(__name__)

PurgeCallback = Callable[[Sequence[PurgedEvidence]], Awaitable[None]]


class EvidenceRetentionJob:
    def __init__(
        self, service: ModerationService, *, interval_s: float, on_purged: PurgeCallback | None = None
    ) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.service = service
        self.interval_s = interval_s
        self.on_purged = on_purged
        self._task: asyncio.Task[None] | None = None
        self.runs = 0

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def run_once(self) -> list[PurgedEvidence]:
        purged = await self.service.purge_expired_evidence()
        self.runs += 1
        if purged and self.on_purged is not None:
            try:
                await self.on_purged(purged)
            except Exception:
                # The evidence itself is gone already; only the cosmetic follow-up failed.
                log.exception("after deleting expired evidence, updating the alerts failed")
        return purged

    def start(self) -> None:
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="lumi-evidence-retention")

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                # A database hiccup must not end the job: the next round tries again.
                log.exception("evidence clean-up failed; retrying in %.0f s", self.interval_s)
            await asyncio.sleep(self.interval_s)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
