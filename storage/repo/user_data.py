"""Removal of one user's personal data from one guild, across cases, comments, jobs and assets.

Session handling follows `storage.repo.common`: flush, never commit.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import (
    ANONYMOUS_USER_ID,
    AssetOwner,
    CommentRecord,
    GenerationJob,
    ModerationCase,
    StoredAsset,
    utcnow,
)


@dataclass(frozen=True, slots=True)
class DeletedUserData:
    """What `delete_user_data` changed, and the blobs the caller must delete once the transaction commits."""

    cases_anonymised: int
    decisions_anonymised: int
    comments_deleted: int
    jobs_deleted: int
    assets_deleted: int
    blob_keys: tuple[str, ...]

    def counts(self) -> dict[str, int]:
        return {
            "cases_anonymised": self.cases_anonymised,
            "decisions_anonymised": self.decisions_anonymised,
            "comments_deleted": self.comments_deleted,
            "jobs_deleted": self.jobs_deleted,
            "assets_deleted": self.assets_deleted,
            "blobs": len(self.blob_keys),
        }


async def delete_user_data(*, session: AsyncSession, guild_id: int, user_id: int) -> DeletedUserData:
    """Remove one user's personal data from one guild.

    Moderation cases stay (the guild's mod-log must keep its numbering and decisions) but lose everything
    that points at the user: author, message, evidence; a moderator's decisions lose the moderator's id.
    Comment records and generation jobs (with their assets) are deleted. Image hashes of confirmed images
    stay: they identify content, not people. Cancel the user's running jobs first: a worker still updating
    a deleted job fails at its next flush.

    Blob deletion cannot be rolled back, so the blob keys are returned for the caller to delete after
    `session.commit()` succeeds.
    """
    blob_keys: set[str] = set()
    now = utcnow()

    authored = await session.exec(
        select(ModerationCase).where(ModerationCase.guild_id == guild_id, ModerationCase.author_id == user_id)
    )
    cases_anonymised = 0
    evidence_keys: set[str] = set()
    for case in authored.all():
        if case.evidence_key is not None:
            evidence_keys.add(case.evidence_key)
        case.author_id = ANONYMOUS_USER_ID
        case.message_id = None
        case.evidence_key = None
        case.evidence_expires_at = None
        case.updated_at = now
        cases_anonymised += 1

    decided = await session.exec(
        select(ModerationCase).where(
            ModerationCase.guild_id == guild_id, ModerationCase.decided_by == user_id
        )
    )
    decisions_anonymised = 0
    for case in decided.all():
        case.decided_by = ANONYMOUS_USER_ID
        case.updated_at = now
        decisions_anonymised += 1
    await session.flush()

    comments = await session.exec(
        sa.delete(CommentRecord).where(
            col(CommentRecord.guild_id) == guild_id, col(CommentRecord.author_id) == user_id
        )
    )

    job_ids = list(
        (
            await session.exec(
                select(GenerationJob.id).where(
                    GenerationJob.guild_id == guild_id, GenerationJob.user_id == user_id
                )
            )
        ).all()
    )
    owned_assets = sa.or_(
        sa.and_(col(StoredAsset.owner_kind) == AssetOwner.JOB.value, col(StoredAsset.owner_id).in_(job_ids)),
        col(StoredAsset.key).in_(evidence_keys),
    )
    asset_keys = list((await session.exec(select(StoredAsset.key).where(owned_assets))).all())
    blob_keys.update(evidence_keys, asset_keys)
    assets = await session.exec(sa.delete(StoredAsset).where(owned_assets))
    jobs = await session.exec(sa.delete(GenerationJob).where(col(GenerationJob.id).in_(job_ids)))

    return DeletedUserData(
        cases_anonymised=cases_anonymised,
        decisions_anonymised=decisions_anonymised,
        comments_deleted=comments.rowcount,
        jobs_deleted=jobs.rowcount,
        assets_deleted=assets.rowcount,
        blob_keys=tuple(sorted(blob_keys)),
    )
