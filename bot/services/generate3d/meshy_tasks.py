"""Create each Meshy task of a job exactly once, waiting in line while the account is full.

Meshy has no idempotency key, so creation is bracketed by two commits: the time of the request before it
is sent, the returned task id right after the answer, before anything else. A job that finds a request
time but no task id (Lumi died in between, or the request timed out after it was sent) first looks for
the task among every task Meshy created since the request (its newest, page after page, however many
other jobs created meanwhile): same type and prompt, owned by no other job. Only when there is none is
a task created; while Meshy cannot list its tasks nothing is created, and the step fails after
``create_attempts`` tries.

A claimed job (distributed mode) may be taken over while its create request is on its way: the request
time is a fenced write right before the request, so a worker that lost its lease before then sends
nothing, but one that stalls after it (or whose request is slow) can still create a task at Meshy while
the new holder adopts that task or creates its own. The first worker then cannot record its task (the
write is fenced) and deletes it at Meshy, unless a job row names it (the new holder adopted it); while no
row says either way it waits a few seconds for the new holder to decide, then leaves the task alone.

429 ``NoMoreConcurrentTasks``/``NoMorePendingTasks`` means "wait", never "fail": the job joins the
``AccountQueue`` and retries when it is its turn. A request-rate 429 is retried after its ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from bot.services.generate3d.config import GenerationConfig
from bot.services.generate3d.queue import AccountQueue
from bot.services.generate3d.shapes import GenerationOptions, JobGone
from inference.remote.meshy import (
    MeshyClient,
    MeshyConnectionError,
    MeshyError,
    MeshyProtocolError,
    MeshyQueueFull,
    MeshyRateLimited,
    MeshyServerError,
    MeshyTask,
    MeshyTimeout,
)
from storage.db import Database
from storage.models import GenerationJob
from storage.repo import jobs as repo_jobs

log = logging.getLogger(__name__)

# Meshy's clock and ours differ; a task stamped up to this long before our request time still counts.
CLOCK_SKEW_MS = 120_000
# Request-rate limits pass within seconds; this many in a row means something else is wrong.
MAX_RATE_LIMITED = 10
# How long a worker that lost its job waits for the new holder to adopt or replace a task it created.
ABANDON_WAIT_S = 10.0
ABANDON_POLL_S = 0.5
# Meshy's newest tasks are read a page at a time (50 at most), back to the request time, up to this many.
LIST_PAGE_SIZE = 50
MAX_LIST_PAGES = 20


class SaveJob(Protocol):
    def __call__(self, job_id: str, **changes: Any) -> Awaitable[GenerationJob]: ...


WaitingCallback = Callable[[str, int | None], None]


class MeshyWait(Protocol):
    """Shows "waiting for Meshy" in a job's progress while a block runs longer than ``after_s``."""

    def __call__(self, job_id: str, *, after_s: float) -> AbstractAsyncContextManager[None]: ...


class TaskCreator:
    def __init__(
        self,
        *,
        meshy: MeshyClient,
        database: Database,
        queue: AccountQueue,
        config: GenerationConfig,
        save: SaveJob,
        on_waiting: WaitingCallback,
        waiting_on_meshy: MeshyWait,
        confirm_lease: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self.meshy = meshy
        self.database = database
        self.queue = queue
        self.config = config
        self._save = save
        self._on_waiting = on_waiting
        self._waiting_on_meshy = waiting_on_meshy
        # Raises when the job's lease moved to another worker (a claimed job); the writes check it too,
        # but looking for an orphan task asks Meshy before anything is written.
        self._confirm_lease = confirm_lease

    async def create(self, job: GenerationJob, kind: str) -> GenerationJob:
        """Give ``job`` its ``kind`` ("preview" or "refine") task; returns the row with the id recorded."""
        field_name = f"{kind}_task_id"
        stamp_name = f"{kind}_requested_at"
        stamp = job.options.get(stamp_name)
        if isinstance(stamp, int):
            found = await self._search_patiently(job, kind, stamp)
            if found is not None:
                log.info("3D job %s adopts Meshy %s task %s created before a restart", job.id, kind, found)
                return await self._save(job.id, **{field_name: found})
        failures = rate_limited = 0
        while True:
            await self.queue.turn(job.id)
            stamp = int(time.time() * 1000)
            job = await self._save(job.id, options={**job.options, stamp_name: stamp})
            try:
                async with self._waiting_on_meshy(job.id, after_s=self.config.meshy_wait_notice_s):
                    task_id = await self._send(job, kind)
            except MeshyQueueFull as error:
                position = await self.queue.full(job.id)
                log.info("3D job %s waits for a Meshy slot (%s), position %d", job.id, error.reason, position)
                self._on_waiting(job.id, position)
                continue
            except MeshyRateLimited as error:
                # Refused before anything was created: safe to send again.
                await self.queue.discard(job.id)
                rate_limited += 1
                if rate_limited > MAX_RATE_LIMITED:
                    raise
                await asyncio.sleep(error.retry_after or self._backoff(rate_limited))
                continue
            except (MeshyTimeout, MeshyConnectionError, MeshyServerError, MeshyProtocolError) as error:
                # The request may have created a task whose id never reached us.
                await self.queue.discard(job.id)
                # A worker paused through its request (and past its heartbeat) asks Meshy nothing more.
                await self._check_lease(job.id)
                async with self._waiting_on_meshy(job.id, after_s=0):
                    found = await self._search_patiently(job, kind, stamp)
                    if found is None:
                        failures += 1
                        if failures >= self.config.create_attempts:
                            raise
                        delay = self._backoff(failures)
                        log.warning(
                            "creating the %s task of job %s failed (%s); retry in %.1f s",
                            kind,
                            job.id,
                            error.detail,
                            delay,
                        )
                        await asyncio.sleep(delay)
                        continue
                task_id, created_here = found, False
            else:
                created_here = True
            try:
                job = await self._save(job.id, **{field_name: task_id})
            except JobGone:
                if created_here:
                    # Canceled, deleted or taken over while the request was on its way.
                    await self._abandon(job.id, kind, task_id)
                raise
            await self.queue.created(job.id)
            self._on_waiting(job.id, None)
            log.info("3D job %s: Meshy %s task %s", job.id, kind, task_id)
            return job

    async def _check_lease(self, job_id: str) -> None:
        if self._confirm_lease is not None:
            await self._confirm_lease(job_id)

    async def _abandon(self, job_id: str, kind: str, task_id: str) -> None:
        """Delete a task this worker created but could not record, once no job can use it: the job is
        gone or ended, or its row names another task for this stage. A task some row names is kept."""
        if self.meshy.is_test_mode:
            return
        field_name = f"{kind}_task_id"
        deadline = time.monotonic() + ABANDON_WAIT_S
        while True:
            async with self.database.session() as session:
                # The row first, then who uses the task: a new holder's write that settles the row (its
                # task id recorded, maybe this very task) is then seen by the second read too.
                row = await repo_jobs.get_job(session=session, job_id=job_id)
                settled = row is None or row.state.is_terminal or getattr(row, field_name) is not None
                if (
                    settled
                    and await repo_jobs.find_job_using_task(session=session, task_id=task_id) is not None
                ):
                    log.info(
                        "3D job %s: Meshy %s task %s is used by the job's new holder", job_id, kind, task_id
                    )
                    return
            if settled:
                break
            if time.monotonic() >= deadline:
                log.warning(
                    "3D job %s: Meshy %s task %s was created after this worker lost the job; left at Meshy "
                    "(the job's new holder has not recorded a task yet)",
                    job_id,
                    kind,
                    task_id,
                )
                return
            await asyncio.sleep(ABANDON_POLL_S)
        try:
            await self.meshy.delete_task(task_id)
        except MeshyError as error:
            log.warning(
                "3D job %s: could not delete its unused Meshy task %s: %s", job_id, task_id, error.detail
            )
            return
        log.info(
            "3D job %s: deleted Meshy %s task %s, created after this worker lost the job",
            job_id,
            kind,
            task_id,
        )

    def _backoff(self, attempt: int) -> float:
        return float(self.config.create_backoff_s * (2 ** (attempt - 1)) * random.uniform(0.75, 1.0))

    async def _send(self, job: GenerationJob, kind: str) -> str:
        options = GenerationOptions.from_json(job.options)
        config = self.config
        if kind == "preview":
            assert job.enhanced_prompt is not None
            return await self.meshy.create_preview(
                job.enhanced_prompt,
                ai_model=config.ai_model,
                model_type="lowpoly" if options.style == "low-poly" else None,
                should_remesh=True if options.polycount else None,
                topology="triangle" if options.polycount else None,
                target_polycount=options.polycount,
                target_formats=list(options.formats),
            )
        assert job.preview_task_id is not None
        return await self.meshy.create_refine(
            job.preview_task_id,
            enable_pbr=config.enable_pbr,
            ai_model=config.ai_model,
            target_formats=list(options.formats),
        )

    async def _search_patiently(self, job: GenerationJob, kind: str, requested_at_ms: int) -> str | None:
        """``find_orphan``, retried while Meshy cannot list its tasks: creating a task without having
        looked could make a second one, so after ``create_attempts`` failed searches the step fails."""
        failures = 0
        while True:
            try:
                return await self.find_orphan(job, kind, requested_at_ms)
            except MeshyError as error:
                failures += 1
                if failures >= self.config.create_attempts:
                    log.warning(
                        "3D job %s: could not list Meshy's tasks to look for its %s task (%s); not creating "
                        "another without knowing",
                        job.id,
                        kind,
                        error.detail,
                    )
                    raise
                delay = self._backoff(failures)
                log.warning(
                    "3D job %s: could not list Meshy's tasks to look for its %s task (%s); retry in %.1f s",
                    job.id,
                    kind,
                    error.detail,
                    delay,
                )
                await asyncio.sleep(delay)

    async def find_orphan(self, job: GenerationJob, kind: str, requested_at_ms: int) -> str | None:
        """A task this job asked for whose id was never recorded, from Meshy's newest tasks; raises
        ``MeshyError`` when Meshy cannot list them."""
        if self.meshy.is_test_mode:
            # The test-mode key answers every request with the same sample task.
            return None
        tasks = await self._tasks_since(requested_at_ms - CLOCK_SKEW_MS)
        candidates = sorted(
            (
                task
                for task in tasks
                if task.type == f"text-to-3d-{kind}"
                and task.prompt == (job.enhanced_prompt or "")
                and task.created_at >= requested_at_ms - CLOCK_SKEW_MS
            ),
            key=lambda task: task.created_at,
        )
        for task in candidates:
            if not await self._claimed(task.id):
                return task.id
        return None

    async def _tasks_since(self, since_ms: int) -> list[MeshyTask]:
        """Meshy's tasks created at or after ``since_ms``, newest first, a page at a time: while one job
        waited to be taken over, the others may have created far more than one page of tasks."""
        found: list[MeshyTask] = []
        for page in range(1, MAX_LIST_PAGES + 1):
            tasks = await self.meshy.list_tasks(
                page_num=page, page_size=LIST_PAGE_SIZE, sort_by="-created_at"
            )
            found.extend(task for task in tasks if task.created_at >= since_ms)
            if len(tasks) < LIST_PAGE_SIZE or min(task.created_at for task in tasks) < since_ms:
                return found
        log.warning("looked through Meshy's %d newest tasks only", MAX_LIST_PAGES * LIST_PAGE_SIZE)
        return found

    async def _claimed(self, task_id: str) -> bool:
        async with self.database.session() as session:
            return await repo_jobs.find_job_using_task(session=session, task_id=task_id) is not None
