"""The frames the extra detectors (custom classifiers, OpenAI's second opinion) look at.

NudeNet and open_nsfw see frames decoded at their own scale (``inference.moderation.at_moderation_scale``).
The extra detectors keep the scale they were built on: a custom classifier was trained on frames brought
to the caps' fixed side (640 px by default, ``inference.classifier.data``), and OpenAI is sent a JPEG of
that frame. Those frames are decoded from the same bytes only when a detector asks for them, once per
check, so a server without custom classifiers or OpenAI costs no second decode.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from functools import partial

from inference.images import DecodedImage, ImageLimits, decode_image

__all__ = ["DetectorFrames"]


class DetectorFrames:
    """One image's frames under ``limits``, decoded on the first ``get`` and shared by later ones."""

    def __init__(self, data: bytes, limits: ImageLimits, executor: Executor | None = None) -> None:
        self._data = data
        self.limits = limits
        self._executor = executor
        self._decoding: asyncio.Future[DecodedImage] | None = None

    async def get(self) -> DecodedImage:
        """The frames; raises ``ImageRejected`` if the bytes cannot be decoded under these caps."""
        if self._decoding is None:
            loop = asyncio.get_running_loop()
            self._decoding = loop.run_in_executor(
                self._executor, partial(decode_image, self._data, limits=self.limits)
            )
        # Shielded: one detector giving up must not cancel the decode another one is waiting on.
        return await asyncio.shield(self._decoding)
