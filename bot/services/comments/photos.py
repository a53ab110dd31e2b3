"""A post's photos on their way to a comment: the ones moderation downloaded taken from it, the rest fetched.

In a channel where moderation runs too, moderation hands over the bytes it downloaded and the frames it
decoded with its verdict (`VerdictFeed.wait_and_take`), so a commented photo is fetched once and, where
moderation's frames are at perception's scale (an image small enough that neither shrinks it), decoded
once; a larger one is decoded again here at 640 px, since moderation's models decode it smaller.
Whatever moderation did not hand over (it is not running, the post is exempt, the image was past its
per-post limit, the verdict came late) is downloaded here, once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bot.services.image_fetch import ImageFetcher
from bot.services.moderation import CheckedImage, HeldImage
from bot.services.posts import ImageSource
from inference.images import DecodedImage, ImageLimits

__all__ = ["Photo", "gather_photos"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Photo:
    """One photo to comment on: its bytes, and moderation's verdict on it with the frames it decoded
    when moderation has looked at it (None until then)."""

    data: bytes
    checked: CheckedImage | None = None

    def for_perception(self, limits: ImageLimits) -> bytes | DecodedImage:
        """The frames moderation decoded when they were decoded under ``limits``, else the bytes."""
        frames = self.checked.frames_under(limits) if self.checked is not None else None
        return frames if frames is not None else self.data


async def gather_photos(
    sources: Sequence[ImageSource], held: Mapping[str, HeldImage], fetcher: ImageFetcher
) -> list[Photo] | None:
    """Each source as a photo, in order: taken from ``held`` (moderation's downloads, by URL) or fetched.

    None when any photo could not be downloaded: it was not checked, so the post as a whole gets no
    comment (fail closed, as the moderation gate does).
    """
    missing = [source for source in sources if source.url not in held]
    downloads = await fetcher.fetch_all(missing)
    if downloads.failures:
        for filename, error in downloads.failures:
            log.info("photo %s not fetched: %s", filename, error.message)
        return None
    fetched = iter(downloads.images)
    photos = []
    for source in sources:
        taken = held.get(source.url)
        photos.append(Photo(taken.image.data, taken.checked) if taken else Photo(next(fetched).data))
    return photos
