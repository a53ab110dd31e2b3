"""Query functions over `storage.models`.

Transaction convention: every function takes the session as the keyword `session=`, flushes what it wrote
(so ids, defaults and constraint errors show up at the call) and never commits. The caller owns the unit of
work, which lets a service group several calls atomically:

    async with db.session() as session:
        case = await repo.create_case(session=session, guild_id=..., ...)
        await repo.add_image_hash(session=session, guild_id=..., phash=..., case_id=case.id)
        await session.commit()

Leaving the block without `commit()` rolls everything back.

`update_*` functions accept model field names as keywords, refuse unknown or immutable ones, and set
`updated_at`. A JSON dict or list mutated in place is saved only when passed to an `update_*` function.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import flag_modified
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import (
    ANONYMOUS_USER_ID,
    TERMINAL_JOB_STATES,
    AssetOwner,
    CaseAction,
    CaseStatus,
    CommentRecord,
    GenerationJob,
    GuildSettings,
    ImageHash,
    JobState,
    ModerationCase,
    StoredAsset,
    utcnow,
)

# Each clash means another creator committed a case in between, so every retry makes progress; this many
# concurrent creators for one guild would be extraordinary.
CASE_NUMBER_ATTEMPTS = 25
_CASE_NUMBER_CONSTRAINT = "uq_moderation_case_guild_number"

_ENUM_FIELDS: dict[str, type[CaseStatus] | type[CaseAction] | type[JobState]] = {
    "status": CaseStatus,
    "action": CaseAction,
    "state": JobState,
}


def _apply_changes(
    row: GuildSettings | ModerationCase | GenerationJob,
    changes: Mapping[str, Any],
    *,
    immutable: Iterable[str],
) -> None:
    model = type(row)
    unknown = sorted(set(changes) - set(model.model_fields))
    if unknown:
        raise TypeError(f"{model.__name__} has no field {', '.join(unknown)}")
    frozen = sorted(set(changes) & {*immutable, "created_at", "updated_at"})
    if frozen:
        raise ValueError(f"{model.__name__}.{', '.join(frozen)} cannot be changed")
    for name, value in changes.items():
        enum_cls = _ENUM_FIELDS.get(name)
        setattr(row, name, enum_cls(value) if enum_cls is not None and value is not None else value)
        # A JSON list/dict mutated in place and passed back compares equal to itself, so SQLAlchemy would
        # otherwise see no change and skip it in the UPDATE.
        flag_modified(row, name)
    row.updated_at = utcnow()


def _backend(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


# --- guild settings -------------------------------------------------------------------------------------


async def get_guild_settings(*, session: AsyncSession, guild_id: int) -> GuildSettings:
    """The guild's settings, inserting a row of defaults the first time (safe when two callers race)."""
    settings = await session.get(GuildSettings, guild_id)
    if settings is not None:
        return settings
    values = GuildSettings(guild_id=guild_id).model_dump()
    insert = postgresql.insert if _backend(session) == "postgresql" else sqlite.insert
    await session.exec(
        insert(GuildSettings).values(values).on_conflict_do_nothing(index_elements=["guild_id"])
    )
    settings = await session.get(GuildSettings, guild_id)
    if settings is None:  # pragma: no cover - the row was just inserted or already existed
        raise RuntimeError(f"guild settings for {guild_id} vanished right after insertion")
    return settings


async def update_guild_settings(*, session: AsyncSession, guild_id: int, **changes: Any) -> GuildSettings:
    settings = await get_guild_settings(session=session, guild_id=guild_id)
    _apply_changes(settings, changes, immutable={"guild_id"})
    await session.flush()
    return settings


# --- moderation cases -----------------------------------------------------------------------------------


def _is_case_number_clash(exc: IntegrityError) -> bool:
    return _CASE_NUMBER_CONSTRAINT in str(exc.orig)


async def create_case(
    *,
    session: AsyncSession,
    guild_id: int,
    channel_id: int,
    author_id: int,
    message_id: int | None = None,
    status: CaseStatus = CaseStatus.OPEN,
    action: CaseAction = CaseAction.NONE,
    scores: Mapping[str, float] | None = None,
    labels: Sequence[Mapping[str, Any]] | None = None,
    reason: str = "",
    evidence_key: str | None = None,
    evidence_expires_at: datetime | None = None,
    image_phash: str | None = None,
    alert_channel_id: int | None = None,
    alert_message_id: int | None = None,
) -> ModerationCase:
    """Insert a case numbered one past the guild's highest.

    The number is computed inside the INSERT itself. On SQLite that statement takes the database write lock
    before reading, so writers are serialised. On PostgreSQL two transactions can compute the same number;
    the loser hits the unique constraint once the winner commits, and retries inside a SAVEPOINT so the
    caller's other work in the transaction survives.
    """
    now = utcnow()
    values: dict[str, Any] = {
        "guild_id": guild_id,
        "channel_id": channel_id,
        "author_id": author_id,
        "message_id": message_id,
        "status": CaseStatus(status),
        "action": CaseAction(action),
        "scores": dict(scores or {}),
        "labels": [dict(label) for label in labels or ()],
        "reason": reason,
        "evidence_key": evidence_key,
        "evidence_expires_at": evidence_expires_at,
        "image_phash": image_phash,
        "alert_channel_id": alert_channel_id,
        "alert_message_id": alert_message_id,
        "created_at": now,
        "updated_at": now,
        "case_number": (
            sa.select(sa.func.coalesce(sa.func.max(ModerationCase.case_number), 0) + 1)
            .where(col(ModerationCase.guild_id) == guild_id)
            .scalar_subquery()
        ),
    }
    statement = sa.insert(ModerationCase).values(values).returning(col(ModerationCase.id))
    if _backend(session) != "postgresql":
        case_id = (await session.exec(statement)).scalar_one()
    else:
        for attempt in range(1, CASE_NUMBER_ATTEMPTS + 1):
            try:
                async with session.begin_nested():
                    case_id = (await session.exec(statement)).scalar_one()
                break
            except IntegrityError as exc:
                if not _is_case_number_clash(exc) or attempt == CASE_NUMBER_ATTEMPTS:
                    raise
    case = await session.get(ModerationCase, case_id)
    if case is None:  # pragma: no cover - inserted just above in this transaction
        raise RuntimeError(f"moderation case {case_id} vanished right after insertion")
    return case


async def get_case(*, session: AsyncSession, guild_id: int, case_number: int) -> ModerationCase | None:
    statement = select(ModerationCase).where(
        ModerationCase.guild_id == guild_id, ModerationCase.case_number == case_number
    )
    return (await session.exec(statement)).first()


async def get_case_by_id(*, session: AsyncSession, case_id: int) -> ModerationCase | None:
    return await session.get(ModerationCase, case_id)


async def list_cases(
    *,
    session: AsyncSession,
    guild_id: int,
    status: CaseStatus | None = None,
    author_id: int | None = None,
    limit: int = 20,
) -> list[ModerationCase]:
    """Newest first."""
    statement = select(ModerationCase).where(ModerationCase.guild_id == guild_id)
    if status is not None:
        statement = statement.where(ModerationCase.status == CaseStatus(status))
    if author_id is not None:
        statement = statement.where(ModerationCase.author_id == author_id)
    statement = statement.order_by(col(ModerationCase.case_number).desc()).limit(limit)
    return list((await session.exec(statement)).all())


async def update_case(*, session: AsyncSession, case: ModerationCase, **changes: Any) -> ModerationCase:
    """Change fields of a case; `decided_at` defaults to now when `decided_by` is given."""
    if changes.get("decided_by") is not None and "decided_at" not in changes:
        changes["decided_at"] = utcnow()
    _apply_changes(case, changes, immutable={"id", "guild_id", "case_number"})
    await session.flush()
    return case


async def expired_evidence(*, session: AsyncSession, now: datetime, limit: int = 500) -> list[ModerationCase]:
    """Cases whose evidence blob is past its retention time, oldest first."""
    statement = (
        select(ModerationCase)
        .where(col(ModerationCase.evidence_key).is_not(None))
        .where(col(ModerationCase.evidence_expires_at) <= now)
        .order_by(col(ModerationCase.evidence_expires_at))
        .limit(limit)
    )
    return list((await session.exec(statement)).all())


async def add_image_hash(
    *, session: AsyncSession, guild_id: int, phash: str, case_id: int | None = None
) -> ImageHash:
    row = ImageHash(guild_id=guild_id, phash=phash, case_id=case_id)
    session.add(row)
    await session.flush()
    return row


async def list_image_hashes(*, session: AsyncSession, guild_id: int) -> list[ImageHash]:
    statement = select(ImageHash).where(ImageHash.guild_id == guild_id).order_by(col(ImageHash.id))
    return list((await session.exec(statement)).all())


# --- comments -------------------------------------------------------------------------------------------


async def add_comment_record(
    *,
    session: AsyncSession,
    guild_id: int,
    channel_id: int,
    message_id: int,
    author_id: int,
    labels: Sequence[str],
    backend: str,
    language: str,
    comment: str,
    latency_ms: float,
) -> CommentRecord:
    row = CommentRecord(
        guild_id=guild_id,
        channel_id=channel_id,
        message_id=message_id,
        author_id=author_id,
        labels=list(labels),
        backend=backend,
        language=language,
        comment=comment,
        latency_ms=latency_ms,
    )
    session.add(row)
    await session.flush()
    return row


# --- generation jobs ------------------------------------------------------------------------------------


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
    _apply_changes(job, changes, immutable={"id"})
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


# --- stored assets --------------------------------------------------------------------------------------


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


async def get_asset(*, session: AsyncSession, key: str) -> StoredAsset | None:
    return (await session.exec(select(StoredAsset).where(StoredAsset.key == key))).first()


async def list_job_assets(*, session: AsyncSession, job_id: str) -> list[StoredAsset]:
    statement = (
        select(StoredAsset)
        .where(StoredAsset.owner_kind == AssetOwner.JOB.value, StoredAsset.owner_id == job_id)
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


# --- user data deletion ---------------------------------------------------------------------------------


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
