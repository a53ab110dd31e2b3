"""The moderation gate of photo comments: no comment on an image moderation flagged or could not check.

A new photo post reaches the moderation listener and the comment listener at the same time, so the gate
first waits (at most `VERDICT_WAIT_S`) for the verdict moderation publishes on that post (moderation's
`VerdictFeed`) and uses it instead of running the models again; with the verdict come the images
moderation downloaded and decoded. It checks images itself (`ModerationService.screen_images`: the
guild's policy and confirmed-image hashes) when moderation has nothing to say about them: moderation is
off or the post is exempt (then nothing can flag it), an image was not among those moderation looked
at, or no verdict came in time. It fails closed: an image that could not be checked gets no comment
either.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Final

from bot.services.comments.photos import Photo
from bot.services.moderation import HeldImage, ModerationService, PostVerdict, Verdict, image_digests
from bot.services.posts import PostPlace

__all__ = ["FLAGGED", "VERDICT_WAIT_S", "ModerationGate"]

log = logging.getLogger(__name__)

# Moderation downloads the same images (at most MODERATION_FETCH_TIMEOUT_S, 15 s by default) and then
# checks them; past this, checking here is quicker than waiting longer.
VERDICT_WAIT_S: Final = 30.0
FLAGGED: Final = "it did not pass this server's image moderation"


class ModerationGate:
    def __init__(self, moderation: ModerationService, *, verdict_wait_s: float = VERDICT_WAIT_S) -> None:
        self.moderation = moderation
        self.verdict_wait_s = verdict_wait_s

    async def verdict_on_new_post(self, message_id: int) -> tuple[PostVerdict | None, dict[str, HeldImage]]:
        """Moderation's verdict on a post that has just arrived (None: none, or none in time), and the
        images it downloaded for it, by URL."""
        return await self.moderation.verdict_feed.wait_and_take(
            message_id, timeout_s=self.verdict_wait_s, new_post=True
        )

    async def problem(
        self,
        guild_id: int,
        images: Sequence[bytes],
        place: PostPlace,
        *,
        message_id: int | None = None,
        new_post: bool = False,
    ) -> str | None:
        """Why moderation keeps these images from getting a comment (safe to show), or None when every
        image passes. ``message_id``: the message they come from, whose verdict is used when there is
        one; ``new_post``: it has just arrived, so moderation's verdict may still come."""
        published = None
        if message_id is not None:
            published = await self.moderation.verdict_feed.wait(
                message_id, timeout_s=self.verdict_wait_s, new_post=new_post
            )
        problem, _ = await self.screen(guild_id, [Photo(data) for data in images], place, published)
        return problem

    async def screen(
        self, guild_id: int, photos: Sequence[Photo], place: PostPlace, published: PostVerdict | None
    ) -> tuple[str | None, list[Photo]]:
        """Why moderation keeps these photos from getting a comment (None: every one passes), and the
        photos with the verdicts and decoded frames the check produced on the way."""
        if published is not None and published.flagged:
            log.info("no comment: moderation flagged the post")
            return FLAGGED, list(photos)
        known, unseen = await _judged(photos, published)
        if published is not None:
            log.debug("%d image(s) judged by moderation's verdict, %d to check here", len(known), len(unseen))
        screened = list(photos)
        checked = (
            await self.moderation.screen_images(guild_id, [photos[i].data for i in unseen], place)
            if unseen
            else []
        )
        if checked is not None:
            for index, result in zip(unseen, checked, strict=True):
                screened[index] = Photo(photos[index].data, result)
            known += [result.verdict for result in checked]
        # Otherwise moderation does not look at this post, so nothing can flag what it has not seen.
        for verdict in known:
            if verdict.flagged or not verdict.checked:
                log.info("no comment in guild %s: moderation says %s", guild_id, verdict.summary)
                if verdict.flagged:
                    return FLAGGED, screened
                return verdict.problem or "it could not be checked", screened
        return None, screened


async def _judged(photos: Sequence[Photo], published: PostVerdict | None) -> tuple[list[Verdict], list[int]]:
    """Moderation's verdicts on the photos it looked at, and the indices of those it did not."""
    known: list[Verdict] = []
    unseen: list[int] = []
    pending = [index for index, photo in enumerate(photos) if photo.checked is None]
    known += [photo.checked.verdict for photo in photos if photo.checked is not None]
    if published is None:
        return known, pending
    digests = await image_digests([photos[index].data for index in pending])
    for index, digest in zip(pending, digests, strict=True):
        verdict = published.image(digest)
        if verdict is None:
            unseen.append(index)
        else:
            known.append(verdict)
    return known, unseen
