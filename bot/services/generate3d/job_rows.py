"""Job rows as the 3D service reads and writes them: lookups by id, the guarded write, and the counts and
checks that need their own queries."""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.services.generate3d.shapes import JobGone, JobNotFound
from storage.db import Database
from storage.models import TERMINAL_JOB_STATES, GenerationJob, JobState
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


async def count_active(session: AsyncSession, *, user_id: int) -> int:
    """The user's jobs that have not ended."""
    statement = (
        select(sa.func.count())
        .select_from(GenerationJob)
        .where(GenerationJob.user_id == user_id, col(GenerationJob.state).not_in(sorted(TERMINAL_JOB_STATES)))
    )
    return int((await session.exec(statement)).one())


async def task_shared(database: Database, task_id: str, job_id: str) -> bool:
    """Whether another job still uses the task (a refine job reuses its parent's preview)."""
    async with database.session() as session:
        statement = select(GenerationJob.id).where(
            sa.or_(
                col(GenerationJob.preview_task_id) == task_id, col(GenerationJob.refine_task_id) == task_id
            ),
            GenerationJob.id != job_id,
        )
        return (await session.exec(statement)).first() is not None
