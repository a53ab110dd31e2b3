"""Background work that runs once at start and then every ``interval_s`` seconds until it is stopped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod

__all__ = ["PeriodicTask"]

log = logging.getLogger(__name__)


class PeriodicTask(ABC):
    """Calls ``run_once`` on the event loop; a failed round is logged ("<description> failed") and retried."""

    def __init__(
        self, *, interval_s: float, name: str, description: str, logger: logging.Logger = log
    ) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.interval_s = interval_s
        self.task_name = name
        self.description = description
        self.logger = logger
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

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                # A passing failure (a database hiccup) must not end the loop: the next round tries again.
                self.logger.exception("%s failed; retrying in %.0f s", self.description, self.interval_s)
            await asyncio.sleep(self.interval_s)
