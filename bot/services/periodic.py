"""Background work that runs once at start and then every ``interval_s`` seconds until it is stopped.

With a ``cluster_lock`` (PostgreSQL, several Lumi processes) only the process holding the lock runs the
passes; the others check again every interval and take over when the holder stops or dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod

from storage.locks import ClusterLock

__all__ = ["PeriodicTask"]

log = logging.getLogger(__name__)


class PeriodicTask(ABC):
    """Calls ``run_once`` on the event loop; a failed round is logged ("<description> failed") and retried."""

    def __init__(
        self,
        *,
        interval_s: float,
        name: str,
        description: str,
        logger: logging.Logger = log,
        cluster_lock: ClusterLock | None = None,
    ) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.interval_s = interval_s
        self.task_name = name
        self.description = description
        self.logger = logger
        self.cluster_lock = cluster_lock
        # Rounds skipped because another process held the lock.
        self.skipped = 0
        self._task: asyncio.Task[None] | None = None

    @abstractmethod
    async def run_once(self) -> object:
        """One round of the work."""

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name=self.task_name)
            # Says which process runs the loop: with several processes only workers do.
            self.logger.info("%s runs every %.0f s", self.description, self.interval_s)

    async def stop(self) -> None:
        """Cancel the loop and wait until it has ended; stopping a task that never started does nothing."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.cluster_lock is not None:
            await self.cluster_lock.release()

    async def _loop(self) -> None:
        while True:
            try:
                await self._round()
            except asyncio.CancelledError:
                raise
            except Exception:
                # A passing failure (a database hiccup) must not end the loop: the next round tries again.
                self.logger.exception("%s failed; retrying in %.0f s", self.description, self.interval_s)
            await asyncio.sleep(self.interval_s)

    async def _round(self) -> None:
        if self.cluster_lock is not None:
            was_held = self.cluster_lock.held
            if not await self.cluster_lock.hold():
                self.skipped += 1
                return
            if self.cluster_lock.held and not was_held:  # never on SQLite, where no lock is taken
                self.logger.info("%s: this process runs it for the deployment", self.description)
        await self.run_once()
