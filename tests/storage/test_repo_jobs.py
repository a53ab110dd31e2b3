from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from storage.db import Database
from storage.locks import lock_key
from storage.models import (
    ANONYMOUS_USER_ID,
    AssetOwner,
    CaseStatus,
    CommentRecord,
    GenerationJob,
    GenerationJobPublic,
    JobState,
)
from storage.repo import assets as repo_assets
from storage.repo import cases as repo_cases
from storage.repo import comments as repo_comments
from storage.repo import jobs as repo_jobs
from storage.repo import user_data as repo_user_data
from tests.storage.rows import add_asset_row, add_comment_row

GUILD = 900_000_000_000_000_001
OTHER_GUILD = 900_000_000_000_000_002
USER = 800_000_000_000_000_001
OTHER_USER = 800_000_000_000_000_002


async def test_job_lifecycle(database: Database) -> None:
    async with database.session() as session:
        job = await repo_jobs.create_job(
            session=session,
            user_id=USER,
            guild_id=GUILD,
            channel_id=5,
            prompt="a red fox",
            options={"art_style": "realistic", "topology": "quad"},
            interaction_token="tok",
            application_id=77,
        )
        await session.commit()
    assert len(job.id) == 32 and int(job.id, 16) >= 0
    assert job.state is JobState.QUEUED and job.progress == 0 and job.finished_at is None

    async with database.session() as session:
        loaded = await repo_jobs.get_job(session=session, job_id=job.id)
        assert loaded is not None
        assert loaded.options == {"art_style": "realistic", "topology": "quad"}
        await repo_jobs.update_job(
            session=session, job=loaded, state=JobState.PREVIEW, preview_task_id="task-1", progress=40
        )
        assert loaded.finished_at is None
        with pytest.raises(ValueError, match="between 0 and 100"):
            await repo_jobs.update_job(session=session, job=loaded, progress=101)
        with pytest.raises(ValueError, match="id cannot be changed"):
            await repo_jobs.update_job(session=session, job=loaded, id="x")
        await repo_jobs.update_job(
            session=session, job=loaded, state="done", progress=100, stage_detail="ready"
        )
        assert loaded.state is JobState.DONE
        assert loaded.finished_at is not None and loaded.finished_at.tzinfo == UTC
        await session.commit()

    async with database.session() as session:
        done = await repo_jobs.get_job(session=session, job_id=job.id)
    assert done is not None
    assert (done.state, done.preview_task_id, done.progress, done.stage_detail) == (
        JobState.DONE,
        "task-1",
        100,
        "ready",
    )
    public = GenerationJobPublic.model_validate(done, from_attributes=True)
    assert public.state is JobState.DONE
    assert "interaction_token" not in public.model_dump()


async def test_progress_outside_0_to_100_is_refused_by_the_schema(database: Database) -> None:
    async with database.session() as session:
        job = await repo_jobs.create_job(session=session, user_id=USER, prompt="p")
        job.progress = 150
        with pytest.raises(IntegrityError):
            await session.flush()


async def test_unfinished_user_jobs_and_counts(database: Database) -> None:
    now = datetime.now(UTC)
    async with database.session() as session:
        states = [JobState.QUEUED, JobState.REFINING, JobState.DONE, JobState.FAILED, JobState.CANCELED]
        jobs = []
        for index, state in enumerate(states):
            job = await repo_jobs.create_job(
                session=session, user_id=USER, guild_id=GUILD, prompt=f"p{index}"
            )
            job.created_at = now - timedelta(minutes=10 - index)
            if state is not JobState.QUEUED:
                await repo_jobs.update_job(session=session, job=job, state=state)
            jobs.append(job)
        yesterday = await repo_jobs.create_job(session=session, user_id=USER, guild_id=GUILD, prompt="old")
        yesterday.created_at = now - timedelta(days=1, minutes=1)
        await repo_jobs.create_job(session=session, user_id=OTHER_USER, guild_id=GUILD, prompt="theirs")
        await repo_jobs.create_job(session=session, user_id=USER, guild_id=OTHER_GUILD, prompt="elsewhere")
        await repo_jobs.create_job(session=session, user_id=USER, prompt="from the command line")
        await session.commit()

    day_ago = now - timedelta(days=1)
    async with database.session() as session:
        unfinished = await repo_jobs.list_unfinished_jobs(session=session)
        assert {job.prompt for job in unfinished} == {
            "p0",
            "p1",
            "old",
            "theirs",
            "elsewhere",
            "from the command line",
        }
        assert unfinished[0].prompt == "old"  # oldest first

        recent = await repo_jobs.list_user_jobs(session=session, user_id=USER, limit=3, guild_id=GUILD)
        assert [job.prompt for job in recent] == ["p4", "p3", "p2"]
        assert len(await repo_jobs.list_user_jobs(session=session, user_id=USER, limit=50)) == 8

        count = repo_jobs.count_jobs_since
        assert await count(session=session, since=day_ago, user_id=USER, guild_id=GUILD) == 5
        assert await count(session=session, since=day_ago, user_id=USER) == 7
        assert await count(session=session, since=day_ago, guild_id=GUILD) == 6
        assert await count(session=session, since=day_ago) == 8
        assert await count(session=session, since=day_ago - timedelta(days=1)) == 9
        failed_or_canceled = [JobState.FAILED, JobState.CANCELED]
        assert (
            await count(
                session=session,
                since=day_ago,
                user_id=USER,
                guild_id=GUILD,
                exclude_states=failed_or_canceled,
            )
            == 3
        )


async def test_active_jobs_and_the_jobs_using_a_meshy_task(database: Database) -> None:
    now = datetime.now(UTC)
    async with database.session() as session:
        made: list[GenerationJob] = []

        async def job(state: JobState, *, user_id: int = USER, **tasks: str) -> GenerationJob:
            row = await repo_jobs.create_job(session=session, user_id=user_id, prompt=f"p{len(made)}")
            row.created_at = now - timedelta(minutes=10 - len(made))  # in the order they are made
            if state is not JobState.QUEUED or tasks:
                await repo_jobs.update_job(session=session, job=row, state=state, **tasks)
            made.append(row)
            return row

        parent = await job(JobState.DONE, preview_task_id="shape-1", refine_task_id="paint-1")
        # A refine job reuses its parent's shape and paints it again.
        child = await job(JobState.REFINING, preview_task_id="shape-1", refine_task_id="paint-2")
        await job(JobState.QUEUED)
        await job(JobState.FAILED, preview_task_id="shape-2")
        await job(JobState.CANCELED)
        await job(JobState.PREVIEW, user_id=OTHER_USER, preview_task_id="shape-3")
        await session.commit()

    async with database.session() as session:
        assert await repo_jobs.count_active_jobs(session=session, user_id=USER) == 2
        assert await repo_jobs.count_active_jobs(session=session, user_id=OTHER_USER) == 1
        assert await repo_jobs.count_active_jobs(session=session, user_id=12345) == 0

        using = repo_jobs.find_job_using_task
        assert await using(session=session, task_id="shape-1") == parent.id  # the oldest first
        assert await using(session=session, task_id="shape-1", other_than=parent.id) == child.id
        assert await using(session=session, task_id="paint-1", other_than=parent.id) is None
        assert await using(session=session, task_id="paint-1") == parent.id
        assert await using(session=session, task_id="paint-2") == child.id
        assert await using(session=session, task_id="shape-2") is not None  # failed jobs still own theirs
        assert await using(session=session, task_id="no-such-task") is None


async def test_comment_records(database: Database) -> None:
    async with database.session() as session:
        record = await repo_comments.add_comment_record(
            session=session,
            guild_id=GUILD,
            channel_id=1,
            message_id=2,
            author_id=USER,
            labels=["기쁨", "고양이"],
            backend="local",
            language="ko",
            comment="너무 귀여워요!",
            latency_ms=12.5,
        )
        await session.commit()
    assert record.id is not None
    async with database.session() as session:
        stored = await session.get(CommentRecord, record.id)
    assert stored is not None
    assert (stored.labels, stored.comment, stored.latency_ms) == (["기쁨", "고양이"], "너무 귀여워요!", 12.5)


async def test_delete_user_data(database: Database) -> None:
    async with database.session() as session:
        authored = await repo_cases.create_case(
            session=session,
            guild_id=GUILD,
            channel_id=1,
            message_id=42,
            author_id=USER,
            evidence_key="evidence/a.jpg",
            evidence_expires_at=datetime.now(UTC) + timedelta(days=30),
        )
        await add_asset_row(session, "evidence/a.jpg", owner_kind=AssetOwner.CASE, owner_id=str(authored.id))
        decided = await repo_cases.create_case(
            session=session, guild_id=GUILD, channel_id=1, author_id=OTHER_USER
        )
        await repo_cases.update_case(
            session=session, case=decided, status=CaseStatus.CONFIRMED, decided_by=USER
        )
        elsewhere_case = await repo_cases.create_case(
            session=session, guild_id=OTHER_GUILD, channel_id=1, author_id=USER
        )

        await add_comment_row(session, guild_id=GUILD, author_id=USER)
        await add_comment_row(session, guild_id=GUILD, author_id=USER)
        await add_comment_row(session, guild_id=GUILD, author_id=OTHER_USER)
        await add_comment_row(session, guild_id=OTHER_GUILD, author_id=USER)

        mine = await repo_jobs.create_job(session=session, user_id=USER, guild_id=GUILD, prompt="mine")
        await add_asset_row(session, f"jobs/{mine.id}/model.glb", owner_kind=AssetOwner.JOB, owner_id=mine.id)
        remix = await repo_jobs.create_job(
            session=session, user_id=OTHER_USER, guild_id=GUILD, prompt="remix", parent_job_id=mine.id
        )
        mine_elsewhere = await repo_jobs.create_job(
            session=session, user_id=USER, guild_id=OTHER_GUILD, prompt="x"
        )
        await session.commit()

    async with database.session() as session:
        result = await repo_user_data.delete_user_data(session=session, guild_id=GUILD, user_id=USER)
        await session.commit()

    assert result.blob_keys == ("evidence/a.jpg", f"jobs/{mine.id}/model.glb")
    assert result.counts() == {
        "cases_anonymised": 1,
        "decisions_anonymised": 1,
        "comments_deleted": 2,
        "jobs_deleted": 1,
        "assets_deleted": 2,
        "blobs": 2,
    }

    async with database.session() as session:
        case = await repo_cases.get_case_by_id(session=session, case_id=authored.id or 0)
        assert case is not None
        assert (case.author_id, case.message_id, case.evidence_key, case.evidence_expires_at) == (
            ANONYMOUS_USER_ID,
            None,
            None,
            None,
        )
        assert case.case_number == authored.case_number
        other = await repo_cases.get_case_by_id(session=session, case_id=decided.id or 0)
        assert other is not None and other.decided_by == ANONYMOUS_USER_ID and other.author_id == OTHER_USER
        untouched = await repo_cases.get_case_by_id(session=session, case_id=elsewhere_case.id or 0)
        assert untouched is not None and untouched.author_id == USER

        comments = (
            await session.exec(select(col(CommentRecord.guild_id), col(CommentRecord.author_id)))
        ).all()
        assert sorted(tuple(row) for row in comments) == [(GUILD, OTHER_USER), (OTHER_GUILD, USER)]

        assert await repo_jobs.get_job(session=session, job_id=mine.id) is None
        assert await repo_assets.get_asset(session=session, key="evidence/a.jpg") is None
        surviving_remix = await session.get(GenerationJob, remix.id, populate_existing=True)
        assert surviving_remix is not None and surviving_remix.parent_job_id is None
        assert await repo_jobs.get_job(session=session, job_id=mine_elsewhere.id) is not None

    async with database.session() as session:
        again = await repo_user_data.delete_user_data(session=session, guild_id=GUILD, user_id=USER)
    assert again.counts() == dict.fromkeys(again.counts(), 0)


async def test_quota_locks_are_held_until_the_transaction_ends(database: Database) -> None:
    """On PostgreSQL no other session can take a user's or guild's quota lock meanwhile; SQLite takes none."""

    async def free_elsewhere(name: str) -> bool:
        async with database.engine.connect() as other:
            got = bool(
                (await other.execute(sa.select(sa.func.pg_try_advisory_xact_lock(lock_key(name))))).scalar()
            )
            await other.rollback()
            return got

    async with database.session() as session:
        await repo_jobs.lock_quotas(session=session, user_id=5, guild_id=9)
        if database.backend == "sqlite":
            return
        assert not await free_elsewhere("quota:user:5")
        assert not await free_elsewhere("quota:guild:9")
        assert await free_elsewhere("quota:user:6")
        await session.commit()
    assert await free_elsewhere("quota:user:5")
