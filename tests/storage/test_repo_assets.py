"""`storage.repo.assets` on SQLite and PostgreSQL: asset rows of jobs and cases, their expiry and listing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError

from storage.blob_stores import LocalBlobStore
from storage.db import Database
from storage.models import AssetOwner
from storage.repo import assets as repo_assets
from storage.repo import jobs as repo_jobs
from tests.storage.rows import add_asset_row

USER = 800_000_000_000_000_001


async def test_assets(database: Database) -> None:
    now = datetime.now(UTC)
    async with database.session() as session:
        job = await repo_jobs.create_job(session=session, user_id=USER, prompt="p")
        glb = await repo_assets.add_asset(
            session=session,
            key=f"jobs/{job.id}/model.glb",
            content_type="model/gltf-binary",
            size=3_000_000_000,
            sha256="ab" * 32,
            filename="red fox.glb",
            owner_kind=AssetOwner.JOB,
            owner_id=job.id,
        )
        await add_asset_row(
            session,
            f"jobs/{job.id}/preview.png",
            owner_kind="job",
            owner_id=job.id,
            expires_at=now - timedelta(seconds=1),
        )
        await add_asset_row(
            session,
            "evidence/1.jpg",
            owner_kind=AssetOwner.CASE,
            owner_id="1",
            expires_at=now + timedelta(days=1),
        )
        await session.commit()

    async with database.session() as session:
        fetched = await repo_assets.get_asset(session=session, key=glb.key)
        assert fetched is not None
        assert (fetched.size, fetched.filename, fetched.owner_kind) == (3_000_000_000, "red fox.glb", "job")
        assert await repo_assets.get_asset(session=session, key="jobs/none") is None
        listed = await repo_assets.list_job_assets(session=session, job_id=job.id)
        assert [asset.key.rsplit("/", 1)[1] for asset in listed] == ["model.glb", "preview.png"]
        expired = await repo_assets.expired_assets(session=session, now=now)
        assert [asset.key for asset in expired] == [f"jobs/{job.id}/preview.png"]
        assert await repo_assets.delete_asset(session=session, key=expired[0].key) is True
        assert await repo_assets.delete_asset(session=session, key=expired[0].key) is False
        await session.commit()

    async with database.session() as session:
        assert len(await repo_assets.list_job_assets(session=session, job_id=job.id)) == 1
        with pytest.raises(IntegrityError):
            await add_asset_row(session, glb.key, owner_kind="job", owner_id=job.id)


async def test_a_stored_blob_is_recorded_as_the_store_described_it(
    database: Database, tmp_path: Path
) -> None:
    blobs = LocalBlobStore(tmp_path / "blobs")
    expires = datetime.now(UTC) + timedelta(days=30)
    first = await blobs.put("moderation/1/7/0-cat.png", b"\x89PNG first", "image/png")
    second = await blobs.put("moderation/1/7/1-dog.jpg", b"\xff\xd8 second image", "image/jpeg")
    elsewhere = await blobs.put("moderation/1/8/0-cat.png", b"another case", "image/png")
    async with database.session() as session:
        # Recorded out of key order: a case's evidence is listed in the order it was recorded.
        for info, filename, case_id in (
            (second, "dog.jpg", 7),
            (first, "cat.png", 7),
            (elsewhere, "x.png", 8),
        ):
            await repo_assets.record_blob(
                session=session,
                blob=info,
                filename=filename,
                owner_kind=AssetOwner.CASE.value,
                owner_id=str(case_id),
                expires_at=expires,
            )
        job = await repo_jobs.create_job(session=session, user_id=USER, prompt="p")
        model = await blobs.put(f"jobs/{job.id}/model.glb", b"glTF", "model/gltf-binary")
        await repo_assets.record_blob(
            session=session, blob=model, filename="p.glb", owner_kind=AssetOwner.JOB.value, owner_id=job.id
        )
        await session.commit()

    async with database.session() as session:
        listed = await repo_assets.list_case_assets(session=session, case_id=7)
        assert [(row.key, row.filename) for row in listed] == [
            (second.key, "dog.jpg"),
            (first.key, "cat.png"),
        ]
        assert [(row.size, row.sha256, row.content_type) for row in listed] == [
            (second.size, second.sha256, "image/jpeg"),
            (first.size, first.sha256, "image/png"),
        ]
        assert all(row.expires_at is not None for row in listed)
        assert [row.key for row in await repo_assets.list_case_assets(session=session, case_id=8)] == [
            elsewhere.key
        ]
        assert await repo_assets.list_case_assets(session=session, case_id=9) == []
        job_rows = await repo_assets.list_job_assets(session=session, job_id=job.id)
        assert [(row.key, row.owner_kind, row.expires_at) for row in job_rows] == [(model.key, "job", None)]
        with pytest.raises(IntegrityError):
            await repo_assets.record_blob(
                session=session, blob=first, filename="again", owner_kind=AssetOwner.CASE.value, owner_id="7"
            )
