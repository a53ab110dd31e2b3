"""Queries over moderation cases (numbered per guild) and the image hashes of confirmed cases.

Session handling follows `storage.repo.common`: flush, never commit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import CaseAction, CaseStatus, ImageHash, ModerationCase, utcnow
from storage.repo.common import apply_changes, backend_name

# Each clash means another creator committed a case in between, so every retry makes progress; this many
# concurrent creators for one guild would be extraordinary.
CASE_NUMBER_ATTEMPTS = 25
_CASE_NUMBER_CONSTRAINT = "uq_moderation_case_guild_number"
_MESSAGE_INDEX = "uq_moderation_case_guild_message"
# SQLite names the columns of a failed unique index, not the index.
_SQLITE_MESSAGE_CLASH = "moderation_case.guild_id, moderation_case.message_id"


class CaseExists(Exception):
    """The message already has a case (Discord delivered it twice); nothing was inserted."""

    def __init__(self, guild_id: int, message_id: int) -> None:
        super().__init__(f"message {message_id} in guild {guild_id} already has a case")
        self.guild_id = guild_id
        self.message_id = message_id


def _is_case_number_clash(exc: IntegrityError) -> bool:
    return _CASE_NUMBER_CONSTRAINT in str(exc.orig)


def _is_message_clash(exc: IntegrityError) -> bool:
    text = str(exc.orig)
    return _MESSAGE_INDEX in text or _SQLITE_MESSAGE_CLASH in text


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
    """Insert a case numbered one past the guild's highest; `CaseExists` when `message_id` has one.

    The number is computed inside the INSERT itself. On SQLite that statement takes the database write lock
    before reading, so writers are serialised. On PostgreSQL two transactions can compute the same number;
    the loser hits the unique constraint once the winner commits, and retries inside a SAVEPOINT so the
    caller's other work in the transaction survives. A second case for one message (Discord delivered it
    twice) fails on the partial unique index `uq_moderation_case_guild_message`, on PostgreSQL once the
    first one's transaction commits.
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
    try:
        if backend_name(session) != "postgresql":
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
    except IntegrityError as exc:
        if message_id is not None and _is_message_clash(exc):
            raise CaseExists(guild_id, message_id) from None
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
    apply_changes(case, changes, immutable={"id", "guild_id", "case_number"})
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
