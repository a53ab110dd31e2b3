"""Private copies of removed images ("evidence"), kept in the blob store and listed as a case's assets.

Rows and blobs are changed in two steps on purpose: rows inside the caller's transaction, blobs after it
commits (`delete_blobs`), because a blob deletion cannot be rolled back.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from datetime import timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.services.image_fetch import FetchedImage
from bot.services.moderation.cases import EvidenceFile
from storage.blobs import BlobStore
from storage.db import Database
from storage.models import AssetOwner, ModerationCase, utcnow
from storage.repo import assets as repo_assets

__all__ = ["EvidenceStore"]

log = logging.getLogger(__name__)

_FILENAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class EvidenceStore:
    def __init__(self, database: Database, blobs: BlobStore, *, retention: timedelta) -> None:
        self.database = database
        self.blobs = blobs
        self.retention = retention

    async def store(
        self, session: AsyncSession, *, case_id: int, guild_id: int, images: Sequence[FetchedImage]
    ) -> list[str]:
        """Write every image of a post and register it as the case's asset; returns the keys in order."""
        keys: list[str] = []
        expires = utcnow() + self.retention
        infos = []
        try:
            for index, image in enumerate(images):
                key = f"moderation/{guild_id}/{case_id}/{index}-{_safe_filename(image.filename)}"
                infos.append((image, await self.blobs.put(key, image.data, image.content_type)))
                keys.append(key)
        except BaseException:
            await self.delete_blobs(keys)
            raise
        for image, info in infos:
            await repo_assets.record_blob(
                session=session,
                blob=info,
                filename=image.filename[:255] or "image",
                owner_kind=AssetOwner.CASE.value,
                owner_id=str(case_id),
                expires_at=expires,
            )
        return keys

    async def load(self, case: ModerationCase) -> list[EvidenceFile]:
        """Every stored image of a case, in posting order (what Restore re-posts)."""
        async with self.database.session() as session:
            assets = await repo_assets.list_case_assets(session=session, case_id=_case_id(case))
        files = []
        for asset in assets:
            try:
                data = await self.blobs.read(asset.key)
            except Exception:
                log.warning("evidence %s of case %s is missing", asset.key, case.case_number)
                continue
            files.append(EvidenceFile(asset.filename, data, asset.content_type))
        return files

    async def preview(self, case: ModerationCase) -> EvidenceFile | None:
        """The flagged image of a case, while its evidence is kept."""
        if case.evidence_key is None:
            return None
        async with self.database.session() as session:
            asset = await repo_assets.get_asset(session=session, key=case.evidence_key)
        try:
            data = await self.blobs.read(case.evidence_key)
        except Exception:
            return None
        if asset is None:
            return EvidenceFile("image", data, "application/octet-stream")
        return EvidenceFile(asset.filename, data, asset.content_type)

    async def detach(self, session: AsyncSession, case: ModerationCase) -> list[str]:
        """Forget the case's evidence rows; returns the blob keys to delete once the transaction commits."""
        assets = await repo_assets.list_case_assets(session=session, case_id=_case_id(case))
        keys = {asset.key for asset in assets}
        if case.evidence_key is not None:
            keys.add(case.evidence_key)
        for key in keys:
            await repo_assets.delete_asset(session=session, key=key)
        return sorted(keys)

    async def delete_blobs(self, keys: Iterable[str]) -> None:
        for key in keys:
            try:
                await self.blobs.delete(key)
            except Exception:
                log.exception("could not delete blob %s", key)


def _case_id(case: ModerationCase) -> int:
    if case.id is None:  # pragma: no cover - every case read from the database has an id
        raise RuntimeError("moderation case without an id")
    return case.id


def _safe_filename(name: str) -> str:
    cleaned = _FILENAME_UNSAFE.sub("_", name).lstrip("._")[:80]
    return cleaned or "image"
