"""Running one 3D job against Meshy: enhance the prompt, preview, refine, download, done.

A job moves queued → enhancing → preview → refining → downloading → done (or failed/canceled). The row is
the job's memory; the ``asyncio`` task here only executes it, so a restarted Lumi starts every unfinished
row again and each stage continues where the row says it was. Meshy tasks are created at most once per
job and stage (``meshy_tasks``), then followed by their event stream or by polling, and their files
copied into the blob store (``assets``). A job first waits for one of Lumi's own slots
(``queue.LocalSlots``).

In distributed mode a worker that claimed the job runs it (``run_claimed``) under a lease (``leases``):
every write is fenced on the lease epoch, and the lease is confirmed before Meshy is asked anything, so a
worker whose job was taken over stops (``LeaseLost``) and the new holder resumes from the row.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from bot.services.generate3d.assets import AssetSaver
from bot.services.generate3d.config import GenerationConfig
from bot.services.generate3d.events import JobEvents
from bot.services.generate3d.job_rows import claim_job, require_job, stored_files, write_job
from bot.services.generate3d.leases import Leases
from bot.services.generate3d.meshy_tasks import TaskCreator
from bot.services.generate3d.progress import overall_percent
from bot.services.generate3d.prompts import PromptEnhancer
from bot.services.generate3d.queue import AccountQueue, LocalSlots
from bot.services.generate3d.shapes import (
    GenerationOptions,
    JobGone,
    LeaseLost,
    failure_message,
    require_meshy,
    snapshot_from_row,
)
from inference.remote.meshy import (
    MeshyAuthError,
    MeshyClient,
    MeshyError,
    MeshyForbidden,
    MeshyNoCredits,
    MeshyStatus,
    MeshyTask,
)
from storage.blobs import BlobStore
from storage.db import Database
from storage.models import GenerationJob, JobState

log = logging.getLogger(__name__)

_STAGE_ORDER = {state: rank for rank, state in enumerate(JobState)}


class JobRunner:
    """One ``asyncio`` task per running job, and the waiting lines those tasks stand in."""

    def __init__(
        self,
        *,
        database: Database,
        blobs: BlobStore,
        meshy: MeshyClient | None,
        enhancer: PromptEnhancer,
        config: GenerationConfig,
        events: JobEvents,
    ) -> None:
        self.database = database
        self.blobs = blobs
        self.meshy = meshy
        self.enhancer = enhancer
        self.config = config
        self.events = events
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._saved_at: dict[str, float] = {}
        self.leases = Leases(database, trust_s=config.heartbeat_timeout_s / 4)
        self.local_slots = LocalSlots(config.max_concurrent_jobs, events.local_positions)
        self.account_queue = AccountQueue(config.queue_retry_s, events.account_positions)
        self._tasks_creator: TaskCreator | None = None
        if meshy is not None:
            self._tasks_creator = TaskCreator(
                meshy=meshy,
                database=database,
                queue=self.account_queue,
                config=config,
                save=self.save,
                on_waiting=events.waiting_for_meshy,
                waiting_on_meshy=events.waiting_on_meshy,
                confirm_lease=self.leases.confirm,
            )

    @property
    def running_jobs(self) -> int:
        return len(self._tasks)

    def is_running(self, job_id: str) -> bool:
        return job_id in self._tasks

    # -- starting, waiting, stopping ----------------------------------------------------------------

    def start(self, job: GenerationJob) -> None:
        self.events.publish(snapshot_from_row(job))
        task = asyncio.create_task(self._run(job.id), name=f"gen3d-{job.id}")
        self._tasks[job.id] = task

    async def wait(self, job_id: str) -> None:
        """Return once the job's task here has ended (at once when none runs)."""
        task = self._tasks.get(job_id)
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(task)

    async def stop(self, job_id: str) -> None:
        """End the job's task and take it out of the account's line; the row is the caller's to change."""
        task = self._tasks.get(job_id)
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.account_queue.discard(job_id)

    async def close(self) -> None:
        """Stop every task without changing the rows (they resume at the next start)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def run_claimed(self, job_id: str, *, owner: str) -> bool:
        """Take the job's lease for ``owner`` and run it here until it ends; the caller (the job queue's
        worker) already holds one of the deployment's job slots. Returns False when the task was stopped
        (a cancel, or this process shutting down) rather than ending by itself."""
        if job_id in self._tasks:
            return True
        epoch = await claim_job(self.database, job_id, owner)
        if epoch is None:
            return True
        self.leases.take(job_id, epoch)
        log.info("3D job %s claimed by %s (lease epoch %d)", job_id, owner, epoch)
        job = await require_job(self.database, job_id)
        self.events.publish(snapshot_from_row(job))
        task = asyncio.create_task(self._run(job_id, leased=True), name=f"gen3d-{job_id}")
        self._tasks[job_id] = task
        try:
            await asyncio.wait({task})
        finally:
            if not task.done():
                # The caller itself was canceled: the job's task ends with it.
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        return not task.cancelled()

    # -- the job's task -----------------------------------------------------------------------------

    async def _run(self, job_id: str, *, leased: bool = False) -> None:
        try:
            if leased:
                await self._pipeline(job_id)
            else:
                async with self.local_slots.slot(job_id):
                    live = self.events.live(job_id)
                    if live is not None and live.queue_position is not None:
                        self.events.update(job_id, queue_position=None, detail="")
                    await self._pipeline(job_id)
        except asyncio.CancelledError:
            # Shutdown (the row stays as it is and resumes at the next start) or a cancel/delete, whose
            # caller updates the row after this task has stopped.
            raise
        except LeaseLost:
            self.leases.lost(job_id)
            log.warning("3D job %s: lease lost, another worker holds it now; stopping here", job_id)
        except JobGone:
            log.info("3D job %s stopped: it was canceled or deleted elsewhere", job_id)
        except Exception as error:
            await self._fail(job_id, error)
        finally:
            self._tasks.pop(job_id, None)
            self._saved_at.pop(job_id, None)
            self.leases.drop(job_id)
            with contextlib.suppress(Exception):
                await self.account_queue.discard(job_id)

    async def _fail(self, job_id: str, error: Exception) -> None:
        message = failure_message(error, deadline_s=self.config.task_deadline_s)
        if isinstance(error, MeshyAuthError | MeshyNoCredits | MeshyForbidden):
            log.error("3D job %s failed, an operator must act: %s", job_id, error)
        elif isinstance(error, MeshyError):
            log.warning("3D job %s failed: %s", job_id, error.detail)
        else:
            log.error("3D job %s failed", job_id, exc_info=error)
        try:
            job = await self.save(job_id, state=JobState.FAILED, error=message, stage_detail="failed")
        except JobGone:
            return
        except Exception:
            log.exception("could not record the failure of 3D job %s", job_id)
            return
        self.events.publish(snapshot_from_row(job))

    async def save(self, job_id: str, **changes: Any) -> GenerationJob:
        """Write changes to the row, refusing to touch a row that was canceled or deleted meanwhile."""
        job = await write_job(self.database, job_id, epoch=self.leases.epoch(job_id), **changes)
        self._saved_at[job_id] = time.monotonic()
        self.leases.confirmed(job_id)
        return job

    async def _enter(self, job_id: str, state: JobState, *, textured: bool) -> GenerationJob:
        progress = overall_percent(state, 0, textured=textured)
        job = await self.save(job_id, state=state, progress=progress, stage_detail="")
        self.events.update(
            job_id, state=state, progress=progress, stage_progress=0, detail="", queue_position=None
        )
        return job

    async def _reach(self, job: GenerationJob, state: JobState, *, textured: bool) -> GenerationJob:
        """Enter ``state``, unless the job (resumed after a restart) is there or past it already."""
        if _STAGE_ORDER[job.state] < _STAGE_ORDER[state]:
            return await self._enter(job.id, state, textured=textured)
        return job

    def _creator(self) -> TaskCreator:
        require_meshy(self.meshy)
        assert self._tasks_creator is not None
        return self._tasks_creator

    async def _pipeline(self, job_id: str) -> None:
        job = await require_job(self.database, job_id)
        if job.state.is_terminal:
            return
        options = GenerationOptions.from_json(job.options)
        textured = options.texture

        if job.enhanced_prompt is None:
            job = await self._enter(job_id, JobState.ENHANCING, textured=textured)
            if options.enhance:
                enhancement = await self.enhancer.enhance(job.prompt, style=options.style)
                text, backend = enhancement.text, enhancement.backend
            else:
                text, backend = job.prompt, "none"
            job = await self.save(job_id, enhanced_prompt=text, options={**job.options, "enhancer": backend})
            self.events.update(job_id, enhanced_prompt=text, enhancer=backend)

        final: MeshyTask | None = None
        if job.refine_task_id is None and not job.options.get("preview_from_parent"):
            job = await self._reach(job, JobState.PREVIEW, textured=textured)
            if job.preview_task_id is None:
                job = await self._creator().create(job, "preview")
            assert job.preview_task_id is not None
            final = await self._follow(job_id, job.preview_task_id, JobState.PREVIEW, textured=textured)

        if textured:
            job = await self._reach(job, JobState.REFINING, textured=textured)
            if job.refine_task_id is None:
                job = await self._creator().create(job, "refine")
            assert job.refine_task_id is not None
            final = await self._follow(job_id, job.refine_task_id, JobState.REFINING, textured=textured)

        assert final is not None
        job = await self._reach(job, JobState.DOWNLOADING, textured=textured)
        await self._download(job, final, textured=textured)
        job = await self.save(job_id, state=JobState.DONE, progress=100, stage_detail="")
        # The final snapshot carries the files, so the message that shows them asks for nothing more.
        self.events.publish(snapshot_from_row(job, await stored_files(self.database, job)))
        log.info("3D job %s done", job_id)

    # -- Meshy tasks --------------------------------------------------------------------------------

    async def _follow(self, job_id: str, task_id: str, stage: JobState, *, textured: bool) -> MeshyTask:
        meshy = require_meshy(self.meshy)

        async def on_update(task: MeshyTask) -> None:
            await self._task_progress(job_id, stage, task, textured=textured)

        async def before_request() -> None:
            await self.leases.confirm(job_id)

        try:
            task = await meshy.follow_task(
                task_id,
                on_update=on_update,
                poll_initial=self.config.poll_initial_s,
                poll_max=self.config.poll_max_s,
                deadline=self.config.task_deadline_s,
                use_stream=self.config.use_stream,
                before_request=before_request,
            )
        finally:
            # Whether it ended or broke, one of the account's slots may have freed.
            await self.account_queue.slot_freed()
        task.raise_for_failure()
        return task

    async def _task_progress(self, job_id: str, stage: JobState, task: MeshyTask, *, textured: bool) -> None:
        # A worker paused past its heartbeat reports nothing for a job another worker holds now.
        await self.leases.confirm(job_id)
        progress = overall_percent(stage, task.progress, textured=textured)
        if task.status is MeshyStatus.PENDING:
            ahead = task.preceding_tasks
            detail = "waiting at the 3D service" + (f" ({ahead} ahead)" if ahead else "")
        else:
            detail = ""
        self.events.update(
            job_id, progress=progress, stage_progress=task.progress, detail=detail, queue_position=None
        )
        # The row is the job's memory, not its display: it gets progress at most every few seconds.
        if time.monotonic() - self._saved_at.get(job_id, 0.0) >= self.config.progress_save_interval_s:
            await self.save(job_id, progress=progress, stage_detail=detail[:256])

    # -- downloads ----------------------------------------------------------------------------------

    async def _download(self, job: GenerationJob, task: MeshyTask, *, textured: bool) -> None:
        def progress(done: int, total: int) -> None:
            percent = int(100 * done / total)
            self.events.update(
                job.id,
                progress=overall_percent(JobState.DOWNLOADING, percent, textured=textured),
                stage_progress=percent,
                detail=f"{done}/{total} files",
            )

        saver = AssetSaver(
            meshy=require_meshy(self.meshy),
            blobs=self.blobs,
            database=self.database,
            max_bytes=self.config.max_asset_bytes,
            concurrency=self.config.download_concurrency,
        )
        await self.leases.confirm(job.id)
        await saver.save(job, task, progress, epoch=self.leases.epoch(job.id))
