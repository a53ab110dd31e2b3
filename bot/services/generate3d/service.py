"""Text-to-3D jobs: the service the cogs, the web server and the command line talk to.

``GenerationService`` puts the parts together and is the only way in:
- ``submission``: a request admitted once (style, prompt check, quotas), then stored and started; new
  jobs from finished ones (refine, regenerate);
- ``runner``: each job's task against Meshy (enhance, preview, refine, download), resumable;
- ``removal``: cancel and delete;
- ``retention``: files older than ``keep_days`` deleted, their jobs marked as expired;
- ``events``: live snapshots for listeners (the Discord cog) and subscribers (the web page);
- ``job_rows``: the job-row reads and writes they share.
Every job is a ``GenerationJob`` row; the row is the job's memory, so a restarted Lumi picks every
unfinished row up again (``resume_unfinished``) and continues where the row says it was. In distributed
mode (``config.claimed_jobs``, PostgreSQL) ``claims`` queues the jobs instead and workers claim them, so
each runs in exactly one process at a time. Nothing here knows Discord.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, Unpack

from bot.services.generate3d.assets import job_of_key
from bot.services.generate3d.claims import JobClaims
from bot.services.generate3d.config import GenerationConfig
from bot.services.generate3d.events import JobEvents, Listener
from bot.services.generate3d.job_files import JobAsset, job_files
from bot.services.generate3d.job_rows import get_job, require_job
from bot.services.generate3d.progress import JobSnapshot
from bot.services.generate3d.prompts import PromptChecker, PromptEnhancer, PromptVerdict
from bot.services.generate3d.removal import JobRemoval
from bot.services.generate3d.retention import (
    GeneratedFileRetention,
    files_expired_after_days,
    files_expired_note,
)
from bot.services.generate3d.runner import JobRunner
from bot.services.generate3d.shapes import (
    DEFAULT_FORMATS,
    GENERIC_FAILURE,
    Admission,
    GenerationDisabled,
    GenerationOptions,
    GenerationRequest,
    JobNotFound,
    JobOrigin,
    JobResult,
    ModeratorAlert,
    PromptRejected,
    QuotaExceeded,
    failure_message,
    snapshot_from_row,
)
from bot.services.generate3d.submission import JobSubmission
from inference.remote.meshy import MeshyClient
from storage.blobs import BlobStore
from storage.db import Database
from storage.models import GenerationJob
from storage.repo import assets as repo_assets
from storage.repo import jobs as repo_jobs

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_FORMATS",
    "GENERIC_FAILURE",
    "Admission",
    "GenerationConfig",
    "GenerationDisabled",
    "GenerationOptions",
    "GenerationRequest",
    "GenerationService",
    "JobAsset",
    "JobNotFound",
    "JobOrigin",
    "JobResult",
    "ModeratorAlert",
    "PromptRejected",
    "QuotaExceeded",
    "failure_message",
    "files_expired_after_days",
    "files_expired_note",
]


class GenerationService:
    """Runs text-to-3D jobs. ``meshy`` None means the feature is not configured (no API key)."""

    def __init__(
        self,
        *,
        database: Database,
        blobs: BlobStore,
        meshy: MeshyClient | None,
        enhancer: PromptEnhancer,
        checker: PromptChecker,
        config: GenerationConfig | None = None,
    ) -> None:
        self.database = database
        self.blobs = blobs
        self.meshy = meshy
        self.enhancer = enhancer
        self.checker = checker
        self.config = config or GenerationConfig()
        self.events = JobEvents()
        self.runner = JobRunner(
            database=database,
            blobs=blobs,
            meshy=meshy,
            enhancer=enhancer,
            config=self.config,
            events=self.events,
        )
        self.claims: JobClaims | None = None
        if self.config.claimed_jobs:
            if database.backend != "postgresql":
                raise ValueError("3D jobs are claimed across processes on PostgreSQL only")
            self.claims = JobClaims(
                database=database, runner=self.runner, events=self.events, config=self.config
            )
        self.submission = JobSubmission(
            database=database, meshy=meshy, checker=checker, config=self.config, start=self._start
        )
        self.removal = JobRemoval(
            database=database,
            blobs=blobs,
            meshy=meshy,
            runner=self.runner,
            events=self.events,
            stop_elsewhere=None if self.claims is None else self.claims.send_cancel,
            wait_elsewhere=None if self.claims is None else self.claims.wait_released,
        )
        self.file_retention = GeneratedFileRetention(database, blobs, keep_days=self.config.keep_days)

    @property
    def enabled(self) -> bool:
        return self.meshy is not None

    @property
    def running_jobs(self) -> int:
        return self.runner.running_jobs

    # -- listeners and live snapshots ---------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        self.events.add_listener(listener)

    def remove_listener(self, listener: Listener) -> None:
        self.events.remove_listener(listener)

    @contextlib.asynccontextmanager
    async def subscribe(self, job_id: str) -> AsyncIterator[asyncio.Queue[JobSnapshot]]:
        """A queue receiving every snapshot of ``job_id`` from now on (the newest when the reader lags)."""
        async with self.events.subscribe(job_id) as queue:
            yield queue

    async def snapshot(self, job_id: str) -> JobSnapshot | None:
        """The live snapshot, or one built from the row for jobs not running in this process."""
        live = self.events.live(job_id)
        if live is not None:
            return live
        job = await self.get_job(job_id)
        return None if job is None else snapshot_from_row(job)

    async def may_show(self, job_id: str) -> bool:
        """Whether this process may still edit the job's message: False once another worker took the job
        from it (a worker that was paused past its heartbeat), since that worker shows it from then on."""
        return await self.runner.leases.shows(job_id)

    # -- reading ------------------------------------------------------------------------------------

    async def get_job(self, job_id: str) -> GenerationJob | None:
        return await get_job(self.database, job_id)

    async def result(self, job_id: str) -> JobResult:
        async with self.database.session() as session:
            job = await repo_jobs.get_job(session=session, job_id=job_id)
            if job is None:
                raise JobNotFound("That 3D job does not exist (it may have been deleted).")
            rows = await repo_assets.list_job_assets(session=session, job_id=job_id)
        return JobResult(job, list(job_files(job, rows).assets))

    async def read_asset(self, key: str) -> bytes:
        return await self.blobs.read(key)

    async def expired_file_note(self, key: str) -> str | None:
        """Why a stored file is gone, when it belonged to a job whose files expired; else None."""
        job_id = job_of_key(key)
        job = None if job_id is None else await self.get_job(job_id)
        return None if job is None else files_expired_note(job)

    async def history(
        self, *, user_id: int, guild_id: int | None = None, limit: int = 10
    ) -> list[GenerationJob]:
        async with self.database.session() as session:
            return await repo_jobs.list_user_jobs(
                session=session, user_id=user_id, guild_id=guild_id, limit=limit
            )

    # -- checks and new jobs ------------------------------------------------------------------------

    async def check_quotas(self, request: GenerationRequest) -> None:
        """Raise ``QuotaExceeded`` when the request's person or guild is at a limit (the job buttons ask
        before they defer; `/3d create` uses ``admit``)."""
        await self.submission.check_quotas(request)

    async def admit(self, request: GenerationRequest, *, checked: bool = False) -> Admission:
        """Check a request once: style, prompt (unless ``checked``), quotas (a guild's limits read once,
        its active and daily jobs counted once). Raises a ``UserFacingError`` saying why it is refused."""
        return await self.submission.admit(request, checked=checked)

    async def check_prompt(
        self, prompt: str, *, user_id: int, guild_id: int | None = None, channel_id: int | None = None
    ) -> PromptVerdict:
        """The prompt check alone, without quotas (the playground's preview): raises ``PromptRejected``
        (with a moderator alert for abusive prompts) or returns the verdict."""
        return await self.submission.check_prompt(
            prompt, user_id=user_id, guild_id=guild_id, channel_id=channel_id
        )

    async def submit(self, request: GenerationRequest | Admission, *, checked: bool = False) -> GenerationJob:
        """Store a job and start it; returns the new row.

        An ``Admission`` from ``admit`` is stored as it is, checked nothing again (the `/3d create` path:
        admit, defer, submit). A plain request is admitted first (``checked`` skips its prompt check).
        """
        admission = request if isinstance(request, Admission) else await self.admit(request, checked=checked)
        return await self.submission.submit(admission)

    async def refine(
        self,
        job_id: str,
        *,
        user_id: int,
        **origin: Unpack[JobOrigin],
    ) -> GenerationJob:
        """A new job that textures ``job_id``'s finished shape (its Meshy preview), skipping the preview."""
        return await self.submission.refine(job_id, user_id=user_id, **origin)

    async def regenerate(
        self,
        job_id: str,
        *,
        user_id: int,
        **origin: Unpack[JobOrigin],
    ) -> GenerationJob:
        """A new job with the same prompt, enhanced prompt and options: a new shape from Meshy."""
        return await self.submission.regenerate(job_id, user_id=user_id, **origin)

    async def set_message(
        self, job_id: str, *, message_id: int | None = None, channel_message_id: int | None = None
    ) -> None:
        """Remember which Discord message shows the job (the bot edits it after a restart too)."""
        changes: dict[str, Any] = {}
        if message_id is not None:
            changes["message_id"] = message_id
        if channel_message_id is not None:
            changes["channel_message_id"] = channel_message_id
        if changes:
            async with self.database.session() as session:
                job = await repo_jobs.get_job(session=session, job_id=job_id)
                if job is not None:
                    await repo_jobs.update_job(session=session, job=job, **changes)
                    await session.commit()
            self.events.shown_in(job_id, message_id=message_id, channel_message_id=channel_message_id)

    # -- running ------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Distributed mode: hear cancels and the progress of jobs other processes run (every process)."""
        if self.claims is not None:
            await self.claims.listen()

    async def _start(self, job: GenerationJob) -> None:
        if self.claims is None:
            self.runner.start(job)
            return
        try:
            await self.claims.enqueue(job.id)
        except Exception as error:
            # The row is committed: a worker's next reconcile queues it. Nothing is lost, only later.
            log.error(
                "3D job %s is stored but could not be queued now (%s); a worker will queue it", job.id, error
            )

    async def resume_unfinished(self) -> int:
        """Start every unfinished job not already running here (oldest first, so queues keep their order).

        In distributed mode this process becomes a worker instead: it queues every unfinished job that is
        neither queued nor claimed (returning how many) and claims jobs from then on."""
        if self.meshy is None:
            return 0
        if self.claims is not None:
            return await self.claims.start_worker()
        async with self.database.session() as session:
            jobs = await repo_jobs.list_unfinished_jobs(session=session)
        started = 0
        for job in jobs:
            if not self.runner.is_running(job.id):
                self.runner.start(job)
                started += 1
        if started:
            log.info("resumed %d unfinished 3D job(s)", started)
        return started

    async def wait(self, job_id: str) -> GenerationJob:
        """Wait for a job running in this process to end; returns the final row."""
        await self.runner.wait(job_id)
        return await require_job(self.database, job_id)

    # -- cancel and delete --------------------------------------------------------------------------

    async def find_cancelable(self, *, user_id: int, guild_id: int | None = None) -> GenerationJob | None:
        """The user's newest unfinished job."""
        for job in await self.history(user_id=user_id, guild_id=guild_id, limit=20):
            if not job.state.is_terminal:
                return job
        return None

    async def cancel(self, job_id: str, *, user_id: int, is_moderator: bool = False) -> GenerationJob:
        return await self.removal.cancel(job_id, user_id=user_id, is_moderator=is_moderator)

    async def delete(self, job_id: str, *, user_id: int, is_moderator: bool = False) -> GenerationJob:
        """Remove a job, its stored files and (unless another job uses them) its Meshy tasks."""
        return await self.removal.delete(job_id, user_id=user_id, is_moderator=is_moderator)

    # -- stored files -------------------------------------------------------------------------------

    async def purge_expired_files(self, *, now: datetime | None = None) -> list[str]:
        """Delete the files of jobs older than the retention time; returns those jobs' ids."""
        return await self.file_retention.purge_expired(now=now)

    # -- shutdown -----------------------------------------------------------------------------------

    async def close(self) -> None:
        """Stop running jobs without changing their rows (they resume at the next start, or at once in
        another worker)."""
        if self.claims is not None:
            await self.claims.close()
        await self.runner.close()
        self.events.close()
        try:
            await self.enhancer.close()
        finally:
            if self.meshy is not None:
                await self.meshy.close()
