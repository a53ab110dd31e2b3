"""Queries over 3D generation jobs: creation, state updates, resumption after a restart, quotas, which job
uses a Meshy task, and the lease a claiming worker holds on a job.

Session handling follows `storage.repo.common`: flush, never commit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.locks import lock_key
from storage.models import TERMINAL_JOB_STATES, GenerationJob, JobState, utcnow
from storage.repo.common import apply_changes


async def create_job(
    *,
    session: AsyncSession,
    user_id: int,
    prompt: str,
    guild_id: int | None = None,
    channel_id: int | None = None,
    options: Mapping[str, Any] | None = None,
    parent_job_id: str | None = None,
    interaction_token: str | None = None,
    application_id: int | None = None,
    job_id: str | None = None,
) -> GenerationJob:
    job = GenerationJob(
        user_id=user_id,
        prompt=prompt,
        guild_id=guild_id,
        channel_id=channel_id,
        options=dict(options or {}),
        parent_job_id=parent_job_id,
        interaction_token=interaction_token,
        application_id=application_id,
    )
    if job_id is not None:
        job.id = job_id
    session.add(job)
    await session.flush()
    return job


async def get_job(*, session: AsyncSession, job_id: str) -> GenerationJob | None:
    return await session.get(GenerationJob, job_id)


async def update_job(*, session: AsyncSession, job: GenerationJob, **changes: Any) -> GenerationJob:
    """Change fields of a job; entering done/failed/canceled stamps `finished_at` unless given."""
    progress = changes.get("progress")
    if progress is not None and not 0 <= progress <= 100:
        raise ValueError(f"progress must be between 0 and 100, got {progress}")
    state = changes.get("state")
    if state is not None and JobState(state) in TERMINAL_JOB_STATES and "finished_at" not in changes:
        changes["finished_at"] = job.finished_at or utcnow()
    apply_changes(job, changes, immutable={"id"})
    await session.flush()
    return job


async def list_unfinished_jobs(*, session: AsyncSession) -> list[GenerationJob]:
    """Jobs not yet done, failed or canceled, oldest first: what to resume after a restart."""
    statement = (
        select(GenerationJob)
        .where(col(GenerationJob.state).not_in(sorted(TERMINAL_JOB_STATES)))
        .order_by(col(GenerationJob.created_at))
    )
    return list((await session.exec(statement)).all())


async def list_user_jobs(
    *, session: AsyncSession, user_id: int, limit: int = 10, guild_id: int | None = None
) -> list[GenerationJob]:
    """Newest first."""
    statement = select(GenerationJob).where(GenerationJob.user_id == user_id)
    if guild_id is not None:
        statement = statement.where(GenerationJob.guild_id == guild_id)
    statement = statement.order_by(col(GenerationJob.created_at).desc()).limit(limit)
    return list((await session.exec(statement)).all())


async def count_jobs_since(
    *,
    session: AsyncSession,
    since: datetime,
    user_id: int | None = None,
    guild_id: int | None = None,
    exclude_states: Iterable[JobState] = (),
) -> int:
    """Jobs created at or after `since`, for daily quotas."""
    statement = (
        select(sa.func.count()).select_from(GenerationJob).where(col(GenerationJob.created_at) >= since)
    )
    if user_id is not None:
        statement = statement.where(GenerationJob.user_id == user_id)
    if guild_id is not None:
        statement = statement.where(GenerationJob.guild_id == guild_id)
    excluded = [JobState(state) for state in exclude_states]
    if excluded:
        statement = statement.where(col(GenerationJob.state).not_in(excluded))
    return int((await session.exec(statement)).one())


async def lock_quotas(*, session: AsyncSession, user_id: int, guild_id: int | None = None) -> None:
    """On PostgreSQL, lock the user's (and the guild's) 3D quotas until the session's transaction ends.

    Taken before counting and held through the insert, so two submissions of one user (or in one guild),
    from any processes, count one after the other and cannot both pass a limit they reach together. The
    user's lock is always taken before the guild's, so two transactions never wait on each other in a
    circle. SQLite has no such lock (an embedded Lumi is one process): nothing is taken there.
    """
    connection = await session.connection()
    if connection.dialect.name != "postgresql":
        return
    names = [f"quota:user:{user_id}"] + ([f"quota:guild:{guild_id}"] if guild_id is not None else [])
    for name in names:
        await connection.execute(sa.select(sa.func.pg_advisory_xact_lock(lock_key(name))))


async def count_active_jobs(*, session: AsyncSession, user_id: int) -> int:
    """The user's jobs that have not ended (queued or running), for the concurrent-jobs quota."""
    statement = (
        select(sa.func.count())
        .select_from(GenerationJob)
        .where(GenerationJob.user_id == user_id, col(GenerationJob.state).not_in(sorted(TERMINAL_JOB_STATES)))
    )
    return int((await session.exec(statement)).one())


async def find_job_using_task(
    *, session: AsyncSession, task_id: str, other_than: str | None = None
) -> str | None:
    """The id of a job whose preview or refine task is `task_id`, ignoring job `other_than`; else None.

    A refine job reuses its parent's preview task, so a task may belong to more than one job: deleting a
    job deletes its tasks only when no other job uses them, and a task found after a restart is adopted
    only when no job owns it yet.
    """
    statement = select(GenerationJob.id).where(
        sa.or_(col(GenerationJob.preview_task_id) == task_id, col(GenerationJob.refine_task_id) == task_id)
    )
    if other_than is not None:
        statement = statement.where(GenerationJob.id != other_than)
    return (await session.exec(statement.order_by(col(GenerationJob.created_at)))).first()


async def get_job_for_update(*, session: AsyncSession, job_id: str) -> GenerationJob | None:
    """The row, locked until the session's transaction ends (PostgreSQL; SQLite has one writer anyway), so
    a check of its lease and the write after it cannot be split by another process's claim."""
    statement = select(GenerationJob).where(GenerationJob.id == job_id).with_for_update()
    return (await session.exec(statement)).first()


async def claim_job(*, session: AsyncSession, job_id: str, owner: str) -> int | None:
    """Take the job's lease: its epoch goes up by one and `owner` holds it. Returns the new epoch, or None
    when the job is gone or has ended (nothing to run). Every later write of the holder is fenced on
    that epoch, so a worker the claim moved away from can no longer change the row."""
    table = GenerationJob.__table__  # type: ignore[attr-defined]
    statement = (
        sa.update(table)
        .where(table.c.id == job_id, table.c.state.not_in(sorted(TERMINAL_JOB_STATES)))
        .values(lease_epoch=table.c.lease_epoch + 1, lease_owner=owner, updated_at=utcnow())
        .returning(table.c.lease_epoch)
    )
    connection = await session.connection()
    epoch = (await connection.execute(statement)).scalar_one_or_none()
    return None if epoch is None else int(epoch)


async def lease_epoch(*, session: AsyncSession, job_id: str) -> int | None:
    """The job's current lease epoch; None when the row is gone."""
    statement = select(GenerationJob.lease_epoch).where(GenerationJob.id == job_id)
    epoch = (await session.exec(statement)).first()
    return None if epoch is None else int(epoch)
