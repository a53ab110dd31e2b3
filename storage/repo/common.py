"""Conventions and helpers shared by the `storage.repo.*` query modules.

Transaction convention: every query function takes the session as the keyword `session=`, flushes what it
wrote (so ids, defaults and constraint errors show up at the call) and never commits. The caller owns the
unit of work, which lets a service group several calls atomically:

    async with db.session() as session:
        case = await repo_cases.create_case(session=session, guild_id=..., ...)
        await repo_cases.add_image_hash(session=session, guild_id=..., phash=..., case_id=case.id)
        await session.commit()

Leaving the block without `commit()` rolls everything back.

`update_*` functions accept model field names as keywords, refuse unknown or immutable ones, and set
`updated_at`. A JSON dict or list mutated in place is saved only when passed to an `update_*` function.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy.orm.attributes import flag_modified
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import (
    CaseAction,
    CaseStatus,
    GenerationJob,
    GuildSettings,
    JobState,
    ModerationCase,
    utcnow,
)

_ENUM_FIELDS: dict[str, type[CaseStatus] | type[CaseAction] | type[JobState]] = {
    "status": CaseStatus,
    "action": CaseAction,
    "state": JobState,
}


def apply_changes(
    row: GuildSettings | ModerationCase | GenerationJob,
    changes: Mapping[str, Any],
    *,
    immutable: Iterable[str],
) -> None:
    """Set `changes` on `row` for an `update_*` function, refusing unknown and immutable fields."""
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


def backend_name(session: AsyncSession) -> str:
    """The session's database dialect: "postgresql" or "sqlite"."""
    return session.get_bind().dialect.name
