"""The periodic evidence clean-up: removed images are kept only for the retention period.

The job runs once at start (catching up on whatever expired while Lumi was down) and then every
``interval_s``. ``on_purged`` lets the Discord layer remove the previews from the alerts of those cases.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from bot.services.moderation.privacy import PurgedEvidence
from bot.services.moderation.service import ModerationService
from bot.services.periodic import PeriodicTask
from storage.locks import ClusterLock

__all__ = ["EvidenceRetentionJob"]

log = logging.getLogger(__name__)

PurgeCallback = Callable[[Sequence[PurgedEvidence]], Awaitable[None]]


class EvidenceRetentionJob(PeriodicTask):
    def __init__(
        self, service: ModerationService, *, interval_s: float, on_purged: PurgeCallback | None = None
    ) -> None:
        super().__init__(
            interval_s=interval_s,
            name="lumi-evidence-retention",
            description="evidence clean-up",
            logger=log,
            # One process of a deployment on PostgreSQL purges; the others would race it for the same rows.
            cluster_lock=ClusterLock(service.database.engine, "evidence clean-up"),
        )
        self.service = service
        self.on_purged = on_purged
        self.runs = 0

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
