"""Stopping and removing 3D jobs: cancel (the row stays, marked canceled) and delete (the row, its stored
files and, unless another job uses them, its Meshy tasks).

In distributed mode the job may run in another process. A delete then marks the row canceled (the worker's
next write fails), tells that worker to stop, and waits a few seconds for it to let go of the job before
the row and files go, so that no file is stored for a job whose rows are gone. Should the worker still
be running after that (stalled), its own row write finds the job gone and it removes what it stored.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from bot.errors import UserFacingError
from bot.services.generate3d.events import JobEvents
from bot.services.generate3d.job_rows import require_job, task_shared
from bot.services.generate3d.runner import JobRunner
from bot.services.generate3d.shapes import JobNotFound, snapshot_from_row
from inference.remote.meshy import MeshyClient, MeshyError
from storage.blobs import BlobStore
from storage.db import Database
from storage.models import GenerationJob, JobState
from storage.repo import assets as repo_assets
from storage.repo import jobs as repo_jobs

log = logging.getLogger(__name__)


class JobRemoval:
    def __init__(
        self,
        *,
        database: Database,
        blobs: BlobStore,
        meshy: MeshyClient | None,
        runner: JobRunner,
        events: JobEvents,
        stop_elsewhere: Callable[[str], Awaitable[None]] | None = None,
        wait_elsewhere: Callable[[str], Awaitable[bool]] | None = None,
    ) -> None:
        self.database = database
        self.blobs = blobs
        self.meshy = meshy
        self.runner = runner
        self.events = events
        # Distributed mode: tells whichever process runs the job to stop it (the row tells it too).
        self._stop_elsewhere = stop_elsewhere
        # Distributed mode: returns once no live worker runs the job (False when it gave up waiting).
        self._wait_elsewhere = wait_elsewhere

    async def cancel(self, job_id: str, *, user_id: int, is_moderator: bool = False) -> GenerationJob:
        job = await require_job(self.database, job_id)
        if job.user_id != user_id and not is_moderator:
            raise UserFacingError("Only the person who started a 3D job (or a moderator) can stop it.")
        if job.state.is_terminal:
            raise UserFacingError(f"That 3D job already ended ({job.state.value}).")
        await self.runner.stop(job_id)
        async with self.database.session() as session:
            row = await repo_jobs.get_job(session=session, job_id=job_id)
            if row is None:
                raise JobNotFound("That 3D job does not exist any more.")
            if not row.state.is_terminal:
                await repo_jobs.update_job(
                    session=session, job=row, state=JobState.CANCELED, stage_detail="canceled"
                )
            await session.commit()
        await self._tell_holder(job_id)
        await self._delete_meshy_tasks(row, only_running=True)
        self.events.publish(snapshot_from_row(row).evolve(detail="canceled by request"))
        log.info("3D job %s canceled by user %s", job_id, user_id)
        return row

    async def delete(self, job_id: str, *, user_id: int, is_moderator: bool = False) -> GenerationJob:
        """Remove a job, its stored files and (unless another job uses them) its Meshy tasks."""
        job = await require_job(self.database, job_id)
        if job.user_id != user_id and not is_moderator:
            raise UserFacingError("Only the person who made this 3D model (or a moderator) can delete it.")
        await self.runner.stop(job_id)
        if not job.state.is_terminal:
            await self._stop_holder(job_id)
        async with self.database.session() as session:
            rows = await repo_assets.list_job_assets(session=session, job_id=job_id)
            keys = [row.key for row in rows]
            for key in keys:
                await repo_assets.delete_asset(session=session, key=key)
            row = await repo_jobs.get_job(session=session, job_id=job_id)
            if row is not None:
                await session.delete(row)
            await session.commit()
        for key in keys:
            try:
                await self.blobs.delete(key)
            except Exception:
                log.exception("could not delete blob %s of job %s", key, job_id)
        await self._delete_meshy_tasks(job, only_running=False)
        self.events.forget(job_id)
        log.info("3D job %s deleted by user %s (%d files)", job_id, user_id, len(keys))
        return job

    async def _stop_holder(self, job_id: str) -> None:
        """Before a delete: stop the worker running the job, wherever it is, and wait for it to stop."""
        if self._stop_elsewhere is None:
            return
        async with self.database.session() as session:
            row = await repo_jobs.get_job(session=session, job_id=job_id)
            if row is not None and not row.state.is_terminal:
                await repo_jobs.update_job(
                    session=session, job=row, state=JobState.CANCELED, stage_detail="deleted"
                )
            await session.commit()
        await self._tell_holder(job_id)
        if self._wait_elsewhere is not None and not await self._wait_elsewhere(job_id):
            log.warning("3D job %s: its worker did not stop in time; deleting it anyway", job_id)

    async def _tell_holder(self, job_id: str) -> None:
        if self._stop_elsewhere is None:
            return
        try:
            await self._stop_elsewhere(job_id)
        except Exception as error:
            # The row refuses the holder's next write anyway: the job still stops, a little later.
            log.warning("could not tell the worker running 3D job %s to stop: %s", job_id, error)

    async def _delete_meshy_tasks(self, job: GenerationJob, *, only_running: bool) -> None:
        if self.meshy is None or self.meshy.is_test_mode:
            return
        for task_id in (job.refine_task_id, job.preview_task_id):
            if task_id is None:
                continue
            try:
                if await task_shared(self.database, task_id, job.id):
                    continue
                if only_running:
                    task = await self.meshy.get_task(task_id)
                    if task.is_terminal:
                        continue
                await self.meshy.delete_task(task_id)
            except MeshyError as error:
                log.info("could not delete Meshy task %s of job %s: %s", task_id, job.id, error.detail)
