"""Extra detectors for the image checker: OpenAI's moderation endpoint as a second opinion.

What leaves the machine is the first sampled frame, already downscaled for the models and re-encoded
as JPEG: no metadata (EXIF location), no full-resolution original, and a small request.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Mapping

from bot.services.moderation.detector_frames import DetectorFrames
from inference.images import DecodedImage
from inference.remote.moderation_api import OpenAIModerationClient

__all__ = ["OpenAIImageDetector"]


class OpenAIImageDetector:
    """Scores under OpenAI's names (``sexual``, ``violence/graphic``...); the policy maps them."""

    name = "openai-moderation"

    def __init__(self, client: OpenAIModerationClient) -> None:
        self.client = client

    async def scores(
        self, data: bytes, frames: DetectorFrames, *, guild_id: int | None = None
    ) -> Mapping[str, float]:
        jpeg = await asyncio.to_thread(_jpeg, await frames.get())
        return await self.client.score_image(jpeg, mime_type="image/jpeg")

    async def close(self) -> None:
        await self.client.close()


def _jpeg(decoded: DecodedImage) -> bytes:
    buffer = io.BytesIO()
    decoded.frames[0].save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()
