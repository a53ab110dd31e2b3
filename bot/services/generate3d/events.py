"""The live side of 3D jobs: the newest snapshot of each running job, and who hears about changes.

Listeners (the Discord cog) get every snapshot of every job; subscribers (the web page's event stream) get
one job's snapshots through a small queue that keeps the newest when the reader lags. The waiting lines
report positions here, which become the "detail" line people see. Nothing here knows Discord.

In distributed mode ``relay`` sends each published snapshot to the other processes (``fanout``), and
``deliver`` hands theirs to this process's subscribers only.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

from bot.services.generate3d.progress import WAITING_FOR_MESHY, JobMessage, JobSnapshot

log = logging.getLogger(__name__)

Listener = Callable[[JobSnapshot], Awaitable[None] | None]


class JobEvents:
    def __init__(self) -> None:
        self._live: dict[str, JobSnapshot] = {}
        self._listeners: list[Listener] = []
        self._subscribers: dict[str, set[asyncio.Queue[JobSnapshot]]] = {}
        self._listener_tasks: set[asyncio.Task[Any]] = set()
        self.relay: Callable[[JobSnapshot], None] | None = None

    def live(self, job_id: str) -> JobSnapshot | None:
        return self._live.get(job_id)

    def forget(self, job_id: str) -> None:
        self._live.pop(job_id, None)

    # -- listeners and subscribers ------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    @contextlib.asynccontextmanager
    async def subscribe(self, job_id: str) -> AsyncIterator[asyncio.Queue[JobSnapshot]]:
        """A queue receiving every snapshot of ``job_id`` from now on (the newest when the reader lags)."""
        queue: asyncio.Queue[JobSnapshot] = asyncio.Queue(maxsize=16)
        self._subscribers.setdefault(job_id, set()).add(queue)
        try:
            yield queue
        finally:
            subscribers = self._subscribers.get(job_id)
            if subscribers is not None:
                subscribers.discard(queue)
                if not subscribers:
                    del self._subscribers[job_id]

    def publish(self, snapshot: JobSnapshot) -> None:
        self._live[snapshot.job_id] = snapshot
        self.deliver(snapshot)
        if self.relay is not None:
            self.relay(snapshot)
        for listener in list(self._listeners):
            try:
                result = listener(snapshot)
            except Exception:
                log.exception("a job listener failed on %s", snapshot.job_id)
                continue
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._listener_tasks.add(task)
                task.add_done_callback(self._listener_done)

    def deliver(self, snapshot: JobSnapshot) -> None:
        """Hand a snapshot to the job's subscribers only (one from another process arrives here)."""
        for queue in self._subscribers.get(snapshot.job_id, ()):
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(snapshot)

    def _listener_done(self, task: asyncio.Future[Any]) -> None:
        self._listener_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a job listener failed", exc_info=task.exception())

    def update(self, job_id: str, **changes: Any) -> JobSnapshot | None:
        """Publish the live snapshot with ``changes``; None when the job is not live here."""
        current = self._live.get(job_id)
        if current is None:
            return None
        snapshot = current.evolve(**changes)
        self.publish(snapshot)
        return snapshot

    def shown_in(
        self, job_id: str, *, message_id: int | None = None, channel_message_id: int | None = None
    ) -> None:
        """Note in the live snapshot which message shows the job now, telling no listener: it is no news,
        but a listener that starts over (a reloaded cog) finds the message in the next snapshot."""
        current = self._live.get(job_id)
        if current is None:
            return
        message = current.message or JobMessage()
        if message_id is not None:
            message = replace(message, message_id=message_id)
        if channel_message_id is not None:
            message = replace(message, channel_message_id=channel_message_id)
        self._live[job_id] = replace(current, message=message)

    # -- positions in the waiting lines -------------------------------------------------------------

    def waiting_for_meshy(self, job_id: str, position: int | None) -> None:
        if position is None:
            self.update(job_id, queue_position=None, detail="")
        else:
            self.update(
                job_id,
                queue_position=position,
                detail=f"waiting for a free slot at the 3D service (position {position})",
            )

    @contextlib.asynccontextmanager
    async def waiting_on_meshy(self, job_id: str, *, after_s: float) -> AsyncIterator[None]:
        """While the block (a request to Meshy and its retries) runs, the job's detail line says
        "waiting for Meshy" once ``after_s`` seconds have passed. The line stays when the block ends:
        the next thing the job does (a created task, its progress, a failure) replaces it."""

        async def notice() -> None:
            await asyncio.sleep(after_s)
            self.update(job_id, detail=WAITING_FOR_MESHY)

        timer = asyncio.create_task(notice(), name=f"meshy-wait-{job_id}")
        try:
            yield
        finally:
            timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await timer

    def local_positions(self, positions: dict[str, int]) -> None:
        for job_id, position in positions.items():
            live = self._live.get(job_id)
            if live is not None and live.queue_position != position:
                self.update(job_id, queue_position=position, detail=f"position {position} in Lumi's queue")

    def account_positions(self, positions: dict[str, int]) -> None:
        for job_id, position in positions.items():
            live = self._live.get(job_id)
            if live is not None and live.queue_position != position:
                self.waiting_for_meshy(job_id, position)

    def close(self) -> None:
        for task in list(self._listener_tasks):
            task.cancel()
