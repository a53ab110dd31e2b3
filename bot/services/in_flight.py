"""The work a feature has in flight, so that shutdown can let it finish before the models and the gateway
close, and stop what is left, quietly, when the time allowed for that runs out.

A feature starts its background work through ``start`` (a task per post, say) and marks a handler that
already runs in a task of its own (a slash command) with ``track``. At shutdown ``finish`` waits for all
of it, work that started meanwhile included, up to a deadline; whatever still runs then is cancelled, and
waited for briefly so that its cleanup runs while the resources it cleans up with are still open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Coroutine
from typing import Any, Final, TypeVar

__all__ = ["InFlight"]

log = logging.getLogger(__name__)

T = TypeVar("T")

# How long cancelled work gets for its own cleanup (a `finally` releasing a cooldown, say).
_CANCEL_GRACE_S: Final = 5.0


class InFlight:
    """Tasks of one feature that are running now. ``what`` names one of them in log lines."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._tasks: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def start(self, work: Coroutine[Any, Any, T], *, name: str) -> asyncio.Task[T]:
        """Run ``work`` in a task of its own, tracked until it ends."""
        task = asyncio.create_task(work, name=name)
        self._add(task)
        return task

    @contextlib.asynccontextmanager
    async def track(self) -> AsyncIterator[None]:
        """Track the current task while the block runs (a handler that the library started)."""
        task = asyncio.current_task()
        if task is None:
            yield
            return
        self._tasks.add(task)
        try:
            yield
        finally:
            self._tasks.discard(task)

    def _add(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait(self, timeout: float) -> bool:  # noqa: ASYNC109
        """Wait until nothing is in flight, at most ``timeout`` seconds; whether that happened."""
        deadline = time.monotonic() + timeout
        current = asyncio.current_task()
        while True:
            # Work may start while we wait (a post that arrived just before shutdown); it is waited for too.
            running = {task for task in self._tasks if not task.done() and task is not current}
            if not running:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            await asyncio.wait(running, timeout=remaining)

    async def finish(self, timeout: float) -> int:  # noqa: ASYNC109
        """Let the work in flight finish within ``timeout`` seconds, then cancel what is left.

        Returns how many tasks were cancelled. Each cancelled task stops at the point it had reached; the
        line logged says how many there were, so that an operator can give shutdown more time.
        """
        if await self.wait(timeout):
            return 0
        current = asyncio.current_task()
        left = [task for task in self._tasks if not task.done() and task is not current]
        for task in left:
            task.cancel()
        log.warning(
            "shutdown: %d %s(s) still running after %g s were stopped (SHUTDOWN_DRAIN_S gives them longer)",
            len(left),
            self.what,
            timeout,
        )
        if left:
            await asyncio.wait(left, timeout=_CANCEL_GRACE_S)
        return len(left)
