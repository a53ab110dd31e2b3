"""3D jobs claimed across processes (distributed mode, PostgreSQL): a job runs in whichever worker claims
it, not in the process that submitted it.

- Submit: the new row is committed, then enqueued on pgqueuer's ``gen3d.run`` with the job id as its
  dedupe key (``enqueue``).
- Reconcile: every worker, at start and every ``reconcile_interval_s``, enqueues every unfinished row again.
  The dedupe key makes that free for jobs already queued or running, and it picks up a job whose enqueue
  was lost (a crash between commit and enqueue) — this replaces resuming every unfinished job at start.
- Claim and run: the worker's queue manager claims a job (never more than ``max_concurrent_jobs`` at once
  across all workers) and hands it to ``JobRunner.run_claimed``, which raises the row's lease epoch and
  fences every later write on it. pgqueuer heartbeats the claim; a worker silent for
  ``heartbeat_timeout_s`` loses the job to the next worker that asks, which resumes it from the row, as a
  restarted Lumi does. A worker that stops hands its jobs back at once (they are queued again). What a
  worker writes to a queue entry is fenced on the worker that claimed it (``storage.job_queue``), so one
  that lost its job to another leaves the new owner's entry alone.
- Cancel and delete, from any process: ``lumi_job_control`` carries ``{"job": id, "do": "cancel"}``; the
  worker running that job stops its task at once. The fenced write stays the backstop when a notification
  is lost: a canceled or deleted row refuses the worker's next write. A delete also waits (at most
  ``RELEASE_WAIT_S``) until no live worker runs the job before it removes the row and files.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket

from bot.services.generate3d.config import GenerationConfig
from bot.services.generate3d.events import JobEvents
from bot.services.generate3d.fanout import EVENTS_CHANNEL, EventFanout
from bot.services.generate3d.runner import JobRunner
from storage.db import Database
from storage.job_queue import Job, JobQueue, RetryRequested
from storage.pg_channels import ChannelListener, notify
from storage.repo import jobs as repo_jobs

log = logging.getLogger(__name__)

ENTRYPOINT = "gen3d.run"
CONTROL_CHANNEL = "lumi_job_control"
# How long a delete waits for the worker running the job to stop; a stop takes milliseconds once the
# notification arrives, so this only runs out when the notification was lost or the worker is stalled.
RELEASE_WAIT_S = 5.0


def process_owner() -> str:
    """This process's name on the leases it takes: host, pid and a random tail (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class JobClaims:
    def __init__(
        self,
        *,
        database: Database,
        runner: JobRunner,
        events: JobEvents,
        config: GenerationConfig,
        owner: str | None = None,
    ) -> None:
        self.database = database
        self.runner = runner
        self.config = config
        self.owner = owner or process_owner()
        self.queue = JobQueue(database.libpq_dsn)
        self.fanout = EventFanout(database, events, origin=self.owner)
        self._listener: ChannelListener | None = None
        self._worker: asyncio.Task[None] | None = None
        self._reconciler: asyncio.Task[None] | None = None
        self._stops: set[asyncio.Task[None]] = set()
        self._closing = False

    # -- every process ------------------------------------------------------------------------------

    async def listen(self) -> None:
        """Hear cancels and other processes' progress from now on; sends this process's progress."""
        if self._listener is not None:
            return
        self._listener = ChannelListener(
            self.database.libpq_dsn,
            {CONTROL_CHANNEL: self._on_control, EVENTS_CHANNEL: self.fanout.received},
        )
        await self._listener.start()
        self.fanout.attach()

    async def enqueue(self, job_id: str) -> None:
        """Queue a committed job for whichever worker claims it first."""
        await self.queue.enqueue(ENTRYPOINT, [job_id])

    async def reconcile(self) -> int:
        """Enqueue every unfinished job that is neither queued nor running; returns how many were."""
        async with self.database.session() as session:
            jobs = await repo_jobs.list_unfinished_jobs(session=session)
        added = await self.queue.enqueue(ENTRYPOINT, [job.id for job in jobs])
        if added:
            log.info("queued %d unfinished 3D job(s) again", added)
        return added

    async def send_cancel(self, job_id: str) -> None:
        """Tell the worker running ``job_id``, wherever it is, to stop it now (the row says why)."""
        await notify(self.database, CONTROL_CHANNEL, json.dumps({"job": job_id, "do": "cancel"}))

    async def wait_released(self, job_id: str, *, timeout_s: float = RELEASE_WAIT_S) -> bool:
        """Return once no live worker runs ``job_id`` (True), or False after ``timeout_s``."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while await self.queue.running(
            ENTRYPOINT, job_id, heartbeat_within_s=self.config.heartbeat_timeout_s
        ):
            if asyncio.get_running_loop().time() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    def _on_control(self, payload: str) -> None:
        try:
            message = json.loads(payload)
            job_id, action = str(message["job"]), str(message["do"])
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed job control message: %r", payload[:200])
            return
        if action != "cancel":
            log.warning("ignored an unknown job control action %r for job %s", action, job_id)
            return
        if self.runner.is_running(job_id):
            log.info("3D job %s: stopping it here, it was canceled in another process", job_id)
            task = asyncio.create_task(self.runner.stop(job_id), name=f"gen3d-stop-{job_id}")
            self._stops.add(task)
            task.add_done_callback(self._stops.discard)

    # -- workers ------------------------------------------------------------------------------------

    async def start_worker(self) -> int:
        """Claim and run jobs from now on, and reconcile the queue with the rows now and periodically;
        returns how many unfinished jobs were queued again at start."""
        if self._worker is not None:
            return 0
        await self.listen()
        added = await self.reconcile()
        timeout = self.config.heartbeat_timeout_s
        self._worker = asyncio.create_task(
            self.queue.run_worker(
                ENTRYPOINT,
                self._run,
                concurrency_limit=self.config.max_concurrent_jobs,
                heartbeat_timeout_s=timeout,
                # A dead worker's job is found by polling (no notification says it died).
                poll_interval_s=max(0.5, timeout / 4),
            ),
            name="gen3d-claims",
        )
        self._worker.add_done_callback(self._worker_ended)
        self._reconciler = asyncio.create_task(self._reconcile_periodically(), name="gen3d-reconcile")
        log.info(
            "3D jobs: claiming as %s (at most %d at once across workers, heartbeat timeout %g s)",
            self.owner,
            self.config.max_concurrent_jobs,
            timeout,
        )
        return added

    def _worker_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None and not self._closing:
            log.error("3D job claiming stopped", exc_info=task.exception())

    async def _run(self, job: Job) -> None:
        if job.payload is None:
            return
        job_id = job.payload.decode()
        ended = await self.runner.run_claimed(job_id, owner=self.owner)
        if not ended and self._closing:
            # Stopped because this process stops: any worker may take the job at once.
            raise RetryRequested(reason="the worker stopped")

    async def _reconcile_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.config.reconcile_interval_s)
            try:
                await self.reconcile()
            except Exception:
                log.exception("could not reconcile the 3D job queue with the job rows")

    # -- shutdown -----------------------------------------------------------------------------------

    async def close(self) -> None:
        """Hand this worker's jobs back to the queue (rows unchanged), then close the connections."""
        self._closing = True
        if self._reconciler is not None:
            self._reconciler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconciler
        self.queue.stop_worker()
        await self.runner.close()
        if self._worker is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(10):
                    await asyncio.shield(self._worker)
            if not self._worker.done():
                self._worker.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._worker
        for task in list(self._stops):
            task.cancel()
        await self.fanout.close()
        if self._listener is not None:
            await self._listener.close()
        await self.queue.close()
