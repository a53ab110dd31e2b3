"""Job rows as the 3D service reads and writes them: lookups by id, the guarded write, a finished job's
files, and whether another job shares a Meshy task. The queries themselves live in `storage.repo`."""

from __future__ import annotations

import re
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.services.generate3d.job_files import JobFiles, job_files
from bot.services.generate3d.shapes import JobGone, JobNotFound, LeaseLost
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


async def write_job(
    database: Database, job_id: str, *, epoch: int | None = None, **changes: Any
) -> GenerationJob:
    """Write changes to the row, refusing to touch a row that was canceled or deleted meanwhile.

    With ``epoch`` (a claimed job) the write is fenced: it happens only while the row's lease epoch is
    still this one, checked on the row locked for the write; otherwise ``LeaseLost`` and nothing changes.
    """
    async with database.session() as session:
        job = await hold_job(session, job_id, epoch)
        await repo_jobs.update_job(session=session, job=job, **changes)
        await session.commit()
    return job


async def hold_job(session: AsyncSession, job_id: str, epoch: int | None) -> GenerationJob:
    """The row, for a write in this session's transaction: ``JobGone`` when it was canceled or deleted,
    ``LeaseLost`` when ``epoch`` is given and is no longer the row's (the row stays locked until the
    transaction ends, so no claim slips in between this check and the write)."""
    if epoch is None:
        job = await repo_jobs.get_job(session=session, job_id=job_id)
    else:
        job = await repo_jobs.get_job_for_update(session=session, job_id=job_id)
    if job is None or job.state is JobState.CANCELED:
        raise JobGone(job_id)
    if epoch is not None and job.lease_epoch != epoch:
        raise LeaseLost(job_id)
    return job


async def claim_job(database: Database, job_id: str, owner: str) -> int | None:
    """Take the job's lease for ``owner``; the new epoch, or None when the job is gone or ended."""
    async with database.session() as session:
        epoch = await repo_jobs.claim_job(session=session, job_id=job_id, owner=owner)
        await session.commit()
    return epoch


async def lease_epoch(database: Database, job_id: str) -> int | None:
    async with database.session() as session:
        return await repo_jobs.lease_epoch(session=session, job_id=job_id)


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
