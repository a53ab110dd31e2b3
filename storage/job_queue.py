"""The job queue on PostgreSQL (pgqueuer 1.6, its tables from migration 0003): what is to be run, and which
worker runs it now.

A job is one queue row, enqueued with a dedupe key (Lumi's own id for the work), so enqueueing the same
work again while it is queued or running adds nothing. A worker's ``QueueManager`` claims rows with
``FOR UPDATE SKIP LOCKED`` and sends heartbeats for the rows it runs; a row whose heartbeat is older than
the heartbeat timeout is claimed again by the next worker that asks (its worker is taken to be dead). A
per-entrypoint concurrency limit is enforced in the claiming query, across every worker.

A re-claimed row names its new worker (``queue_manager_id``). Everything a worker writes to a row it
claimed is fenced on that name (``FencedQueries``): once a paused worker's job was re-claimed, its
heartbeats, its "done" (which deletes the row) and its hand-back on a clean stop (which queues the row
again) match nothing, so the row stays the new worker's, as the job row's lease epoch stays the new
holder's.

Each ``JobQueue`` keeps its own asyncpg connections (one to enqueue, one for the worker's claims and
heartbeats), separate from SQLAlchemy's pool: pgqueuer listens on its channel on the worker's connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import timedelta

import asyncpg
from pgqueuer import AsyncpgDriver, Job, Queries, QueueManager
from pgqueuer.errors import RetryRequested
from pgqueuer.models import TracebackRecord
from pgqueuer.types import JOB_STATUS, JobId

__all__ = ["Job", "JobQueue", "RetryRequested"]

log = logging.getLogger(__name__)

Handler = Callable[[Job], Awaitable[None]]


@dataclasses.dataclass
class FencedQueries(Queries):
    """pgqueuer's queries for one worker, with every write to a claimed row fenced on the worker that
    claimed it (the row's ``queue_manager_id``). pgqueuer 1.6 matches these rows by id alone; the
    statements below are its own (``QueryQueueBuilder``: log, retry, heartbeat) plus that condition."""

    owner: uuid.UUID | None = None

    async def log_jobs(self, job_status: list[tuple[Job, JOB_STATUS, TracebackRecord | None]]) -> None:
        names = self.qbq.qualified
        sql = f"""WITH job_status AS (
            SELECT UNNEST($1::bigint[]) AS id, UNNEST($2::{names.queue_status_type}[]) AS status,
                   UNNEST($3::JSONB[]) AS traceback, UNNEST($4::uuid[]) AS owner
        ), deleted AS (
            DELETE FROM {names.queue_table} queue USING job_status js
            WHERE queue.id = js.id AND js.status != 'failed' AND queue.queue_manager_id = js.owner
            RETURNING queue.id, queue.entrypoint, queue.priority
        ), held AS (
            UPDATE {names.queue_table} queue
            SET status = 'failed', updated = NOW(), queue_manager_id = NULL
            FROM job_status js
            WHERE queue.id = js.id AND js.status = 'failed' AND queue.queue_manager_id = js.owner
            RETURNING queue.id, queue.entrypoint, queue.priority
        ), resolved AS (
            SELECT id, entrypoint, priority FROM deleted UNION ALL SELECT id, entrypoint, priority FROM held
        )
        INSERT INTO {names.queue_table_log} (job_id, status, entrypoint, priority, traceback)
        SELECT js.id, js.status, resolved.entrypoint, resolved.priority, js.traceback
        FROM job_status js JOIN resolved ON resolved.id = js.id
        RETURNING job_id"""
        rows = await self.driver.fetch(
            sql,
            [job.id for job, _, _ in job_status],
            [status for _, status, _ in job_status],
            [None if tb is None else tb.model_dump_json() for _, _, tb in job_status],
            [job.queue_manager_id for job, _, _ in job_status],
        )
        _report_fenced("ended", [job for job, _, _ in job_status], {int(str(row["job_id"])) for row in rows})

    async def retry_job(self, job: Job, delay: timedelta, traceback_record: TracebackRecord | None) -> None:
        names = self.qbq.qualified
        sql = f"""WITH retry AS (
            UPDATE {names.queue_table}
            SET status = 'queued', execute_after = NOW() + $2::interval, attempts = attempts + 1,
                updated = NOW(), queue_manager_id = NULL
            WHERE id = $1::bigint AND queue_manager_id = $4::uuid
            RETURNING id, entrypoint, priority
        )
        INSERT INTO {names.queue_table_log} (job_id, status, entrypoint, priority, traceback)
        SELECT id, 'queued', entrypoint, priority, $3::JSONB FROM retry
        RETURNING job_id"""
        rows = await self.driver.fetch(
            sql,
            job.id,
            delay,
            None if traceback_record is None else traceback_record.model_dump_json(),
            job.queue_manager_id,
        )
        _report_fenced("handed back", [job], {int(str(row["job_id"])) for row in rows})

    async def update_heartbeat(self, job_ids: list[JobId]) -> None:
        if self.owner is None:
            await super().update_heartbeat(job_ids)
            return
        await self.driver.execute(
            f"UPDATE {self.qbq.qualified.queue_table} SET heartbeat = NOW() "
            "WHERE id = ANY($1::bigint[]) AND queue_manager_id = $2::uuid",
            list(set(job_ids)),
            self.owner,
        )


def _report_fenced(what: str, jobs: list[Job], written: set[int]) -> None:
    for job in jobs:
        if int(job.id) not in written:
            log.info(
                "queue row %s (%s) was not %s here: another worker claimed it meanwhile",
                job.id,
                (job.payload or b"").decode(errors="replace"),
                what,
            )


class JobQueue:
    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._connection: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()
        self._manager: QueueManager | None = None
        self._worker_connection: asyncpg.Connection | None = None

    @contextlib.asynccontextmanager
    async def _queries(self) -> AsyncIterator[Queries]:
        """The queue's queries on its own connection, for one operation at a time: an asyncpg connection
        runs one query at once, and two jobs stored at the same moment must both be queued."""
        async with self._lock:
            if self._connection is None or self._connection.is_closed():
                self._connection = await asyncpg.connect(self._dsn)
            yield Queries(AsyncpgDriver(self._connection))

    async def enqueue(self, entrypoint: str, payloads: Sequence[str]) -> int:
        """Queue one job per payload, each deduplicated by its payload; returns how many were new."""
        if not payloads:
            return 0
        async with self._queries() as queries:
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
        async with self._queries() as queries:
            rows = await queries.driver.fetch(
                f"SELECT status::text AS status FROM {queries.qbe.settings.queue_table} "
                "WHERE entrypoint = $1 AND dedupe_key = $2 AND status IN ('queued', 'picked')",
                entrypoint,
                payload,
            )
        return str(rows[0]["status"]) if rows else None

    async def running(self, entrypoint: str, payload: str, *, heartbeat_within_s: float) -> bool:
        """Whether a worker that is alive runs the payload's job now: its row is picked and its heartbeat
        is younger than ``heartbeat_within_s`` (a dead worker's row only waits to be claimed again)."""
        async with self._queries() as queries:
            rows = await queries.driver.fetch(
                f"SELECT 1 FROM {queries.qbe.settings.queue_table} WHERE entrypoint = $1 "
                "AND dedupe_key = $2 AND status = 'picked' AND heartbeat > NOW() - $3::interval",
                entrypoint,
                payload,
                timedelta(seconds=heartbeat_within_s),
            )
        return bool(rows)

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
        queries = FencedQueries(AsyncpgDriver(connection))
        manager = QueueManager(queries)
        queries.owner = manager.queue_manager_id
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
