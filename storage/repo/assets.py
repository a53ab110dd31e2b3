"""Queries over stored assets: the rows recording blobs (job outputs, case evidence) and their expiry.

The blobs themselves live in `storage.blobs`. Session handling follows `storage.repo.common`: flush,
never commit.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.blobs import BlobInfo
from storage.models import TERMINAL_JOB_STATES, AssetOwner, GenerationJob, StoredAsset


async def add_asset(
    *,
    session: AsyncSession,
    key: str,
    content_type: str,
    size: int,
    sha256: str,
    filename: str,
    owner_kind: str,
    owner_id: str,
    expires_at: datetime | None = None,
) -> StoredAsset:
    """Record a blob; the key is unique, so registering one twice raises `IntegrityError`."""
    row = StoredAsset(
        key=key,
        content_type=content_type,
        size=size,
        sha256=sha256,
        filename=filename,
        owner_kind=str(owner_kind),
        owner_id=owner_id,
        expires_at=expires_at,
    )
    session.add(row)
    await session.flush()
    return row


async def record_blob(
    *,
    session: AsyncSession,
    blob: BlobInfo,
    filename: str,
    owner_kind: str,
    owner_id: str,
    expires_at: datetime | None = None,
) -> StoredAsset:
    """Record a blob just written to the blob store, with what `BlobStore.put` said about it.

    The one shape for job outputs and case evidence alike: key, content type, size and digest come from
    the store, so callers cannot record a size or digest other than the stored bytes'.
    """
    return await add_asset(
        session=session,
        key=blob.key,
        content_type=blob.content_type,
        size=blob.size,
        sha256=blob.sha256,
        filename=filename,
        owner_kind=owner_kind,
        owner_id=owner_id,
        expires_at=expires_at,
    )


async def get_asset(*, session: AsyncSession, key: str) -> StoredAsset | None:
    return (await session.exec(select(StoredAsset).where(StoredAsset.key == key))).first()


async def list_job_assets(*, session: AsyncSession, job_id: str) -> list[StoredAsset]:
    statement = (
        select(StoredAsset)
        .where(StoredAsset.owner_kind == AssetOwner.JOB.value, StoredAsset.owner_id == job_id)
        .order_by(col(StoredAsset.id))
    )
    return list((await session.exec(statement)).all())


async def list_case_assets(*, session: AsyncSession, case_id: int) -> list[StoredAsset]:
    """A moderation case's stored evidence, in the order it was recorded (the post's image order)."""
    statement = (
        select(StoredAsset)
        .where(StoredAsset.owner_kind == AssetOwner.CASE.value, StoredAsset.owner_id == str(case_id))
        .order_by(col(StoredAsset.id))
    )
    return list((await session.exec(statement)).all())


async def jobs_with_files_before(*, session: AsyncSession, before: datetime, limit: int = 100) -> list[str]:
    """Ids of finished jobs (done, failed, canceled) whose newest stored file is from `before` or earlier.

    Jobs still running are never returned, whatever the age of their partial files. The oldest come first.
    """
    newest = sa.func.max(StoredAsset.created_at)
    statement = (
        select(StoredAsset.owner_id)
        .join(GenerationJob, col(GenerationJob.id) == col(StoredAsset.owner_id))
        .where(
            StoredAsset.owner_kind == AssetOwner.JOB.value,
            col(GenerationJob.state).in_(sorted(TERMINAL_JOB_STATES)),
        )
        .group_by(col(StoredAsset.owner_id))
        .having(newest <= before)
        .order_by(newest, col(StoredAsset.owner_id))
        .limit(limit)
    )
    return list((await session.exec(statement)).all())


async def expired_assets(*, session: AsyncSession, now: datetime, limit: int = 500) -> list[StoredAsset]:
    """Assets past their `expires_at`, oldest first; delete the blob, then the row."""
    statement = (
        select(StoredAsset)
        .where(col(StoredAsset.expires_at) <= now)
        .order_by(col(StoredAsset.expires_at))
        .limit(limit)
    )
    return list((await session.exec(statement)).all())


async def delete_asset(*, session: AsyncSession, key: str) -> bool:
    """Forget an asset row (the blob itself is the caller's to delete). True when a row existed."""
    result = await session.exec(sa.delete(StoredAsset).where(col(StoredAsset.key) == key))
    return result.rowcount > 0
