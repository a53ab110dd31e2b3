"""Rows the repository tests need as background, with every column they do not look at filled in."""

from __future__ import annotations

from datetime import datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import AssetOwner, CommentRecord, StoredAsset
from storage.repo import assets as repo_assets
from storage.repo import comments as repo_comments


async def add_asset_row(
    session: AsyncSession,
    key: str,
    *,
    owner_kind: AssetOwner | str,
    owner_id: str,
    content_type: str = "application/octet-stream",
    expires_at: datetime | None = None,
) -> StoredAsset:
    """An asset row of one byte named after the last part of its key."""
    return await repo_assets.add_asset(
        session=session,
        key=key,
        content_type=content_type,
        size=1,
        sha256="0" * 64,
        filename=key.rsplit("/", 1)[-1],
        owner_kind=owner_kind,
        owner_id=owner_id,
        expires_at=expires_at,
    )


async def add_comment_row(
    session: AsyncSession, *, guild_id: int, author_id: int, message_id: int = 1
) -> CommentRecord:
    """A comment record of an empty label list."""
    return await repo_comments.add_comment_record(
        session=session,
        guild_id=guild_id,
        channel_id=1,
        message_id=message_id,
        author_id=author_id,
        labels=[],
        backend="local",
        language="ko",
        comment="hi",
        latency_ms=1.0,
    )
