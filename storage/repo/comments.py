"""Queries over the records of comments Lumi wrote on posted photos (`CommentRecord`).

Session handling follows `storage.repo.common`: flush, never commit.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import CommentRecord


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
