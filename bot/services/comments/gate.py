"""The moderation gate of photo comments: no comment on an image moderation flagged or could not check.

A new photo post reaches the moderation listener and the comment listener at the same time, so the gate
first waits (at most `VERDICT_WAIT_S`) for the verdict moderation publishes on that post
(`ModerationService.post_verdicts`) and uses it instead of running the models again. It checks images
itself, with the guild's policy and confirmed-image hashes, when moderation has nothing to say about
them: moderation is off or the post is exempt (then nothing can flag it), an image was not among those
moderation looked at, or no verdict came in time. It fails closed: an image that could not be checked
gets no comment either.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from bot.services.moderation import ModerationService, PostVerdict, Verdict, image_digests

__all__ = ["VERDICT_WAIT_S", "ModerationGate", "ScreenContext"]

log = logging.getLogger(__name__)

# Moderation downloads the same images (at most MODERATION_FETCH_TIMEOUT_S, 15 s by default) and then
# checks them; past this, checking here is quicker than waiting longer.
VERDICT_WAIT_S: Final = 30.0
_FLAGGED: Final = "it did not pass this server's image moderation"


@dataclass(frozen=True)
class ScreenContext:
    """Where a post is, for the moderation gate's exemptions (the same ones moderation applies), and
    which message it is, for moderation's verdict on it (None: images that belong to no message)."""

    channel_ids: tuple[int, ...]
    channel_nsfw: bool = False
    role_ids: tuple[int, ...] = ()
    message_id: int | None = None


class ModerationGate:
    def __init__(self, moderation: ModerationService, *, verdict_wait_s: float = VERDICT_WAIT_S) -> None:
        self.moderation = moderation
        self.verdict_wait_s = verdict_wait_s

    async def problem(
        self, guild_id: int, images: Sequence[bytes], screen: ScreenContext, *, new_post: bool
    ) -> str | None:
        """Why moderation keeps these images from getting a comment (safe to show), or None when every
        image passes. ``new_post``: the post has just arrived, so moderation's verdict may still come."""
        published = await self._published(screen.message_id, new_post=new_post)
        if published is not None and published.flagged:
            log.info("no comment on message %s: moderation flagged it", screen.message_id)
            return _FLAGGED
        verdicts, unseen = await _reuse(published, images)
        if published is not None:
            log.debug(
                "message %s: %d image(s) judged by moderation's verdict, %d to check here",
                screen.message_id,
                len(verdicts),
                len(unseen),
            )
        verdicts += await self._check(guild_id, unseen, screen)
        for verdict in verdicts:
            if verdict.flagged or not verdict.checked:
                log.info("no comment in guild %s: moderation says %s", guild_id, verdict.summary)
                if verdict.flagged:
                    return _FLAGGED
                return verdict.problem or "it could not be checked"
        return None

    async def _published(self, message_id: int | None, *, new_post: bool) -> PostVerdict | None:
        if message_id is None:
            return None
        return await self.moderation.post_verdicts.wait(
            message_id, timeout_s=self.verdict_wait_s, new_post=new_post
        )

    async def _check(self, guild_id: int, images: Sequence[bytes], screen: ScreenContext) -> list[Verdict]:
        if not images:
            return []
        config = await self.moderation.guild_config(guild_id)
        exemption = config.exemption(
            channel_ids=screen.channel_ids, channel_nsfw=screen.channel_nsfw, role_ids=screen.role_ids
        )
        if exemption is not None:
            # Moderation does not look at this post, so nothing can flag it.
            return []
        return list(
            await asyncio.gather(
                *(
                    self.moderation.check_image(data, guild_policy=config.policy, guild_id=guild_id)
                    for data in images
                )
            )
        )


async def _reuse(published: PostVerdict | None, images: Sequence[bytes]) -> tuple[list[Verdict], list[bytes]]:
    """Moderation's verdicts on the images it looked at, and the images it did not."""
    if published is None:
        return [], list(images)
    reused: list[Verdict] = []
    unseen: list[bytes] = []
    for data, digest in zip(images, await image_digests(images), strict=True):
        verdict = published.image(digest)
        if verdict is None:
            unseen.append(data)
        else:
            reused.append(verdict)
    return reused, unseen
