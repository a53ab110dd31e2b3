"""The job queue on PostgreSQL (pgqueuer 1.6, its tables from migration 0003): what is to be run, and which
worker runs it now.

A job is one queue row, enqueued with a dedupe key (Lumi's own id for the work), so enqueueing the same
work again while it is queued or running adds nothing. A worker's ``QueueManager`` claims rows with
``FOR UPDATE SKIP LOCKED`` and sends heartbeats for the rows it runs; a row whose heartbeat is older than
the heartbeat timeout is claimed again by the next worker that asks (its worker is taken to be dead). A
per-entrypoint concurrency limit is enforced in the claiming query, across every worker.

Each ``JobQueue`` keeps its own asyncpg connections (one to enqueue, one for the worker's claims and
heartbeats), separate from SQLAlchemy's pool: pgqueuer listens on its channel on the worker's connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta

import asyncpg
from pgqueuer import AsyncpgDriver, Job, Queries, QueueManager
from pgqueuer.errors import RetryRequested

__all__ = ["Job", "JobQueue", "RetryRequested"]

log = logging.getLogger(__name__)

Handler = Callable[[Job], Awaitable[None]]


class JobQueue:
    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._connection: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()
        self._manager: QueueManager | None = None
        self._worker_connection: asyncpg.Connection | None = None

    async def _queries(self) -> Queries:
        async with self._lock:
            if self._connection is None or self._connection.is_closed():
                self._connection = await asyncpg.connect(self._dsn)
            return Queries(AsyncpgDriver(self._connection))

    async def enqueue(self, entrypoint: str, payloads: Sequence[str]) -> int:
        """Queue one job per payload, each deduplicated by its payload; returns how many were new."""
        if not payloads:
            return 0
        queries = await self._queries()
        ids = await queries.enqueue(
            [entrypoint] * len(payloads),
            [payload.encode() for payload in payloads],
            [0] * len(payloads),
            dedupe_key=list(payloads),
            on_conflict="skip",
        )
        return sum(1 for job_id in ids if job_id is not None)

    async def queued(self, entrypoint: str, payload: str) -> str | None:
        """The status of the payload's live queue row ("queued" or "picked"); None when there is none."""
        queries = await self._queries()
        rows = await queries.driver.fetch(
            f"SELECT status::text AS status FROM {queries.qbe.settings.queue_table} "
            "WHERE entrypoint = $1 AND dedupe_key = $2 AND status IN ('queued', 'picked')",
            entrypoint,
            payload,
        )
        return str(rows[0]["status"]) if rows else None

    async def run_worker(
        self,
        entrypoint: str,
        handler: Handler,
        *,
        concurrency_limit: int,
        heartbeat_timeout_s: float,
        poll_interval_s: float,
    ) -> None:
        """Claim and run ``entrypoint`` jobs until ``stop_worker``. A job whose handler returns or raises
        is done (pgqueuer logs it); ``RetryRequested`` puts it back in the queue for any worker."""
        connection = await asyncpg.connect(self._dsn)
        self._worker_connection = connection
        manager = QueueManager(Queries(AsyncpgDriver(connection)))
        manager.entrypoint(entrypoint, concurrency_limit=concurrency_limit)(handler)
        self._manager = manager
        try:
            await manager.run(
                dequeue_timeout=timedelta(seconds=poll_interval_s),
                batch_size=1,
                heartbeat_timeout=timedelta(seconds=heartbeat_timeout_s),
                # Statistics are not Lumi's; no periodic aggregation on every worker.
                log_aggregation_interval=timedelta(0),
            )
        finally:
            self._manager = None
            self._worker_connection = None
            await connection.close()

    def stop_worker(self) -> None:
        """Claim nothing more; ``run_worker`` returns once the running handlers have returned."""
        if self._manager is not None:
            self._manager.shutdown.set()

    async def close(self) -> None:
        async with self._lock:
            connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed():
            await connection.close()
