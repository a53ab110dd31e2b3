"""The two waiting lines a 3D job can stand in, both first come, first served, both with positions.

- ``LocalSlots``: Lumi's own cap on jobs running at once (CPU, connections, the database);
- ``AccountQueue``: Meshy answered 429 ``NoMoreConcurrentTasks``/``NoMorePendingTasks``, so the account
  is full. Only the job at the head retries task creation: when a followed task ends (a slot freed),
  when the job ahead of it got its task (there may be more room), or every ``retry_s`` seconds (other
  clients of the same account may have freed a slot). Jobs arriving while others wait line up behind
  them instead of jumping the queue.
Both call ``on_change`` with every waiting job's 1-based position whenever the line moves.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

PositionsCallback = Callable[[dict[str, int]], None]


def _positions(order: list[str]) -> dict[str, int]:
    return {job_id: index + 1 for index, job_id in enumerate(order)}


class LocalSlots:
    def __init__(self, capacity: int, on_change: PositionsCallback) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._on_change = on_change
        self._running: set[str] = set()
        self._waiting: list[str] = []
        self._cond = asyncio.Condition()

    @property
    def running(self) -> int:
        return len(self._running)

    def position(self, job_id: str) -> int | None:
        return self._waiting.index(job_id) + 1 if job_id in self._waiting else None

    @asynccontextmanager
    async def slot(self, job_id: str) -> AsyncIterator[None]:
        async with self._cond:
            if len(self._running) >= self.capacity or self._waiting:
                self._waiting.append(job_id)
                self._on_change(_positions(self._waiting))
                try:
                    await self._cond.wait_for(
                        lambda: self._waiting[0] == job_id and len(self._running) < self.capacity
                    )
                finally:
                    self._waiting.remove(job_id)
                    self._on_change(_positions(self._waiting))
                    # The next in line may also fit (several slots can free at once).
                    self._cond.notify_all()
            self._running.add(job_id)
        try:
            yield
        finally:
            async with self._cond:
                self._running.discard(job_id)
                self._cond.notify_all()


class AccountQueue:
    def __init__(self, retry_s: float, on_change: PositionsCallback) -> None:
        self.retry_s = retry_s
        self._on_change = on_change
        self._order: list[str] = []
        self._go = True
        self._cond = asyncio.Condition()

    def position(self, job_id: str) -> int | None:
        return self._order.index(job_id) + 1 if job_id in self._order else None

    @property
    def waiting(self) -> int:
        return len(self._order)

    async def turn(self, job_id: str) -> None:
        """Return when ``job_id`` may try to create a task: at once when nobody waits."""
        async with self._cond:
            if not self._order:
                return
            if job_id not in self._order:
                self._order.append(job_id)
                self._on_change(_positions(self._order))
            while not (self._order[0] == job_id and self._go):
                head = self._order[0] == job_id
                try:
                    async with asyncio.timeout(self.retry_s if head else None):
                        await self._cond.wait()
                except TimeoutError:
                    if self._order and self._order[0] == job_id:
                        self._go = True
            # One attempt at a time: the next try waits for this one's outcome.
            self._go = False

    async def full(self, job_id: str) -> int:
        """The account refused ``job_id``'s task: it waits in line (at the head if it was there)."""
        async with self._cond:
            if job_id not in self._order:
                self._order.append(job_id)
                self._on_change(_positions(self._order))
            if self._order[0] == job_id:
                self._go = False
            return self._order.index(job_id) + 1

    async def created(self, job_id: str) -> None:
        """``job_id`` got its task; the next in line tries at once."""
        await self._leave(job_id, go=True)

    async def discard(self, job_id: str) -> None:
        """``job_id`` left the line without a task (canceled, failed, shutting down)."""
        await self._leave(job_id, go=False)

    async def slot_freed(self) -> None:
        """A task of this account ended: the head may try again."""
        async with self._cond:
            self._go = True
            self._cond.notify_all()

    async def _leave(self, job_id: str, *, go: bool) -> None:
        async with self._cond:
            was_head = bool(self._order) and self._order[0] == job_id
            if job_id in self._order:
                self._order.remove(job_id)
                self._on_change(_positions(self._order))
            if go or was_head:
                # A head that leaves without a task hands its turn on; otherwise the line would stall
                # until the retry timer.
                self._go = True
            self._cond.notify_all()
