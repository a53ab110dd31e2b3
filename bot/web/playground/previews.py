"""Small JPEG previews of decoded frames, sent inline (``data:`` URLs) so that nothing is stored.

They are made from the frames the models saw (already oriented and converted to RGB), so formats a
browser cannot show (HEIC, 16-bit PNG, CMYK JPEG) preview too, and boxes line up with them.
"""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import Sequence
from typing import Final

from PIL import Image

__all__ = ["PREVIEW_SIDE", "THUMB_SIDE", "data_urls"]

PREVIEW_SIDE: Final = 480
THUMB_SIDE: Final = 160


def _jpeg_data_url(frame: Image.Image, side: int) -> str:
    picture = frame.copy()
    picture.thumbnail((side, side))
    buffer = io.BytesIO()
    picture.convert("RGB").save(buffer, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


async def data_urls(frames: Sequence[Image.Image], side: int) -> list[str]:
    """One JPEG ``data:`` URL per frame, at most ``side`` pixels on the long edge (off the event loop)."""
    return await asyncio.to_thread(lambda: [_jpeg_data_url(frame, side) for frame in frames])
