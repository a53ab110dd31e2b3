"""Parts the moderation service tests share: a service on the real models, and fetched images."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

from bot.services.image_fetch import FetchedImage
from bot.services.moderation.checker import ImageChecker
from bot.services.moderation.service import ModerationService
from inference.registry import ModelRegistry
from storage.blob_stores import LocalBlobStore
from storage.db import Database


def fetched(name: str, data: bytes) -> FetchedImage:
    return FetchedImage(url=f"https://cdn.discordapp.com/attachments/1/2/{name}", filename=name, data=data)


def declared(
    name: str, data: bytes, content_type: str | None, dimensions: tuple[int, int] | None
) -> FetchedImage:
    """An attachment as downloaded, with the content type and size Discord's metadata gave it."""
    return replace(fetched(name, data), declared_type=content_type, declared_dimensions=dimensions)


@asynccontextmanager
async def moderation(db: Database, root: Path) -> AsyncIterator[ModerationService]:
    registry = ModelRegistry(device="cpu")
    service = ModerationService(
        database=db, blobs=LocalBlobStore(root / "blobs"), checker=ImageChecker(registry)
    )
    try:
        yield service
    finally:
        await service.close()
        await registry.close()
