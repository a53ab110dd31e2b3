"""Job rows as the 3D service reads and writes them: lookups by id, the guarded write, a finished job's
files, and whether another job shares a Meshy task. The queries themselves live in `storage.repo`."""

from __future__ import annotations

import re
from typing import Any

from bot.services.generate3d.job_files import JobFiles, job_files
from bot.services.generate3d.shapes import JobGone, JobNotFound
from storage.db import Database
from storage.models import GenerationJob, JobState
from storage.repo import assets as repo_assets
from storage.repo import jobs as repo_jobs

_JOB_ID = re.compile(r"[0-9a-f]{32}")


async def get_job(database: Database, job_id: str) -> GenerationJob | None:
    """The row, or None for unknown ids and strings that cannot be job ids."""
    if not _JOB_ID.fullmatch(job_id):
        return None
    async with database.session() as session:
        return await repo_jobs.get_job(session=session, job_id=job_id)


async def require_job(database: Database, job_id: str) -> GenerationJob:
    job = await get_job(database, job_id)
    if job is None:
        raise JobNotFound("That 3D job does not exist any more.")
    return job


async def write_job(database: Database, job_id: str, **changes: Any) -> GenerationJob:
    """Write changes to the row, refusing to touch a row that was canceled or deleted meanwhile."""
    async with database.session() as session:
        job = await repo_jobs.get_job(session=session, job_id=job_id)
        if job is None or job.state is JobState.CANCELED:
            raise JobGone(job_id)
        await repo_jobs.update_job(session=session, job=job, **changes)
        await session.commit()
    return job


async def stored_files(database: Database, job: GenerationJob) -> JobFiles:
    """The job's files as its asset rows list them (none once they expired)."""
    async with database.session() as session:
        rows = await repo_assets.list_job_assets(session=session, job_id=job.id)
    return job_files(job, rows)


async def task_shared(database: Database, task_id: str, job_id: str) -> bool:
    """Whether another job still uses the task (a refine job reuses its parent's preview)."""
    async with database.session() as session:
        other = await repo_jobs.find_job_using_task(session=session, task_id=task_id, other_than=job_id)
    return other is not None
