"""Generated files expire after GENERATION_KEEP_DAYS; the jobs stay, marked, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.services.generate3d.prompts.check import PromptChecker
from bot.services.generate3d.prompts.enhancer import PromptEnhancer
from bot.services.generate3d.prompts.keywords import KeywordEnhancer
from bot.services.generate3d.retention import GeneratedFileCleanup
from bot.services.generate3d.service import GenerationConfig, GenerationService, files_expired_note
from cogs.generate3d.render import history_embed
from storage.blob_stores import LocalBlobStore
from storage.db import Database
from storage.models import AssetOwner, GenerationJob, JobState, utcnow
from storage.repo import assets as repo_assets
from storage.repo import jobs as repo_jobs

USER = 800_000_000_000_000_001
GUILD = 900_000_000_000_000_001
FILES = ("model.glb", "model.fbx", "preview.png")


def make_service(database: Database, blobs: LocalBlobStore, *, keep_days: int) -> GenerationService:
    return GenerationService(
        database=database,
        blobs=blobs,
        meshy=None,
        enhancer=PromptEnhancer([KeywordEnhancer()]),
        checker=PromptChecker(use_profanity_model=False),
        config=GenerationConfig(keep_days=keep_days),
    )


@pytest.fixture
async def blobs(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs")


@pytest.fixture
async def service(database: Database, blobs: LocalBlobStore) -> AsyncIterator[GenerationService]:
    generation = make_service(database, blobs, keep_days=30)
    try:
        yield generation
    finally:
        await generation.close()


async def finished_job(
    database: Database,
    blobs: LocalBlobStore,
    prompt: str,
    *,
    age_days: float,
    state: JobState = JobState.DONE,
    newest_age_days: float | None = None,
) -> str:
    """A job in ``state`` whose files were stored ``age_days`` ago (the last one ``newest_age_days`` ago)."""
    async with database.session() as session:
        job = await repo_jobs.create_job(session=session, user_id=USER, guild_id=GUILD, prompt=prompt)
        await repo_jobs.update_job(
            session=session, job=job, state=state, progress=100 if state.is_terminal else 50
        )
        for index, name in enumerate(FILES):
            key = f"jobs/{job.id}/{name}"
            info = await blobs.put(key, f"{prompt}:{name}".encode())
            asset = await repo_assets.add_asset(
                session=session,
                key=key,
                content_type=info.content_type,
                size=info.size,
                sha256=info.sha256,
                filename=name,
                owner_kind=AssetOwner.JOB.value,
                owner_id=job.id,
            )
            last = index == len(FILES) - 1 and newest_age_days is not None
            asset.created_at = utcnow() - timedelta(days=newest_age_days if last else age_days)
        await session.commit()
        return job.id


async def job_files(database: Database, job_id: str) -> list[str]:
    async with database.session() as session:
        return [asset.key for asset in await repo_assets.list_job_assets(session=session, job_id=job_id)]


async def test_old_files_are_deleted_and_new_ones_kept(
    database: Database, blobs: LocalBlobStore, service: GenerationService
) -> None:
    old = await finished_job(database, blobs, "an old fox", age_days=31)
    new = await finished_job(database, blobs, "a new fox", age_days=29)
    old_keys, new_keys = await job_files(database, old), await job_files(database, new)

    assert await service.purge_expired_files() == [old]

    assert await job_files(database, old) == []
    assert [await blobs.exists(key) for key in old_keys] == [False] * len(FILES)
    assert await job_files(database, new) == new_keys
    assert all([await blobs.exists(key) for key in new_keys])
    # A second round finds nothing left to do and does not mark the job again.
    assert await service.purge_expired_files() == []

    expired = await service.get_job(old)
    assert expired is not None and expired.state is JobState.DONE
    note = files_expired_note(expired)
    assert note is not None and "expired after 30 days" in note
    kept = await service.get_job(new)
    assert kept is not None and files_expired_note(kept) is None
    assert await service.expired_file_note(old_keys[0]) == note
    assert await service.expired_file_note(new_keys[0]) is None
    assert await service.expired_file_note("moderation/1/2/0-image.png") is None

    result = await service.result(old)
    assert result.assets == [] and result.job.id == old


async def test_running_jobs_are_left_alone(
    database: Database, blobs: LocalBlobStore, service: GenerationService
) -> None:
    # Resumed after a downtime longer than the retention time: its partial files are old but still needed.
    running = await finished_job(database, blobs, "a resumed fox", age_days=40, state=JobState.DOWNLOADING)
    keys = await job_files(database, running)

    assert await service.purge_expired_files() == []

    assert await job_files(database, running) == keys
    assert all([await blobs.exists(key) for key in keys])
    job = await service.get_job(running)
    assert job is not None and files_expired_note(job) is None

    # Once it finishes, its files age like any other job's.
    async with database.session() as session:
        row = await repo_jobs.get_job(session=session, job_id=running)
        assert row is not None
        await repo_jobs.update_job(session=session, job=row, state=JobState.FAILED)
        await session.commit()
    assert await service.purge_expired_files() == [running]


async def test_a_job_is_aged_by_its_newest_file(
    database: Database, blobs: LocalBlobStore, service: GenerationService
) -> None:
    job_id = await finished_job(database, blobs, "a refined fox", age_days=40, newest_age_days=2)
    keys = await job_files(database, job_id)

    assert await service.purge_expired_files() == []

    assert await job_files(database, job_id) == keys
    assert all([await blobs.exists(key) for key in keys])
    assert await service.purge_expired_files(now=utcnow() + timedelta(days=29)) == [job_id]
    assert await job_files(database, job_id) == []


async def test_history_says_the_files_expired(
    database: Database, blobs: LocalBlobStore, service: GenerationService
) -> None:
    old = await finished_job(database, blobs, "an old fox", age_days=40)
    new = await finished_job(database, blobs, "a new fox", age_days=1)
    await service.purge_expired_files()

    jobs: list[GenerationJob] = await service.history(user_id=USER, guild_id=GUILD)
    assert {job.id for job in jobs} == {old, new}
    text = history_embed(jobs, viewer_url=lambda job_id: f"https://lumi.test/view/{job_id}").description
    assert text is not None
    lines = {job_id: next(line for line in text.splitlines() if job_id in line) for job_id in (old, new)}
    assert "files expired after 30 days" in lines[old] and "view/" not in lines[old]
    assert f"[view and download](https://lumi.test/view/{new})" in lines[new]


async def test_keep_days_zero_keeps_files_forever(database: Database, blobs: LocalBlobStore) -> None:
    job_id = await finished_job(database, blobs, "an ancient fox", age_days=3650)
    service = make_service(database, blobs, keep_days=0)
    try:
        assert await service.purge_expired_files() == []
        assert len(await job_files(database, job_id)) == len(FILES)
        cleanup = GeneratedFileCleanup(service.file_retention, interval_s=60)
        cleanup.start()
        assert not cleanup.running
    finally:
        await service.close()


class ObservedCleanup(GeneratedFileCleanup):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ran = asyncio.Event()

    async def run_once(self) -> list[str]:
        expired = await super().run_once()
        self.ran.set()
        return expired


async def test_the_cleanup_runs_at_start(
    database: Database, blobs: LocalBlobStore, service: GenerationService
) -> None:
    job_id = await finished_job(database, blobs, "an old fox", age_days=31)
    cleanup = ObservedCleanup(service.file_retention, interval_s=3600)
    cleanup.start()
    try:
        async with asyncio.timeout(10):
            await cleanup.ran.wait()
    finally:
        await cleanup.stop()
    assert not cleanup.running and cleanup.runs == 1
    assert await job_files(database, job_id) == []
