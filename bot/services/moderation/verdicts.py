"""The verdict feed: moderation's verdict on each recent post, for the features that answer the same post.

Photo comments must not comment on an image that moderation flagged or could not check. Both react to
the same new message, so instead of checking its images a second time the comment path waits here for
the verdict the moderation path publishes. Whichever listener runs first, they meet at one future per
message id: moderation announces a post it takes (`expect`), publishes its verdict as soon as the images
are checked (before any case is written), and withdraws the post when it gives no verdict (moderation
off, an exempt channel or role, a failure), so that nobody waits in vain (`wait`).

A verdict covers images by the SHA-256 of their bytes. Both paths see the same attachments, but they
cap the number of images per post differently and a download can fail on one side only: an image
moderation did not see is simply not in the verdict, and whoever needs it checks it.

With the verdict, moderation hands over the images it downloaded and the frames it decoded
(`wait_and_take`), so a commented photo is fetched once (and decoded once where moderation's frames are
at the reader's scale, `CheckedImage.frames_under`). Those are held only for a reader already
waiting when the verdict comes, and only until that reader resumes: the feed never keeps image bytes
for the lifetime of a verdict, so its memory is bounded by the readers in flight, each holding one
post's images (at most `MODERATION_MAX_IMAGES_PER_MESSAGE` of at most `MODERATION_MAX_IMAGE_MB`).
A reader that arrives after the verdict, or gives up first, fetches the images itself.

At most `max_posts` verdicts are kept, each for `ttl_s` seconds (oldest dropped first). A post dropped
while still pending, and every pending post when publishing stops, resolves to "no verdict".
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from bot.services.image_fetch import FetchedImage
from bot.services.moderation.check_results import CheckedImage, Verdict

__all__ = ["HeldImage", "PostVerdict", "VerdictFeed", "image_digests"]

log = logging.getLogger(__name__)

MAX_POSTS: Final = 1000
# Long enough for "Comment on this photo" on a post from the last few minutes to reuse the verdict.
TTL_S: Final = 600.0


@dataclass(frozen=True)
class PostVerdict:
    """Moderation's verdict on one post: whether it flagged it, and each image it looked at."""

    flagged: bool
    images: Mapping[str, Verdict]

    def image(self, digest: str) -> Verdict | None:
        return self.images.get(digest)


@dataclass(frozen=True)
class HeldImage:
    """An image moderation downloaded and checked, handed with its verdict to the reader that waited."""

    image: FetchedImage
    checked: CheckedImage


async def image_digests(images: Sequence[bytes]) -> list[str]:
    """The key of each image in a `PostVerdict`, hashed on a worker thread (images can be megabytes)."""
    return await asyncio.to_thread(lambda: [hashlib.sha256(data).hexdigest() for data in images])


@dataclass
class _Post:
    verdict: asyncio.Future[PostVerdict | None]
    expires_at: float
    # Readers in `wait_and_take`: only for them are the downloaded images held, and only until they resume.
    takers: int = 0
    held: dict[str, HeldImage] | None = None


class VerdictFeed:
    """Per-message verdicts, published by the moderation listener and awaited by other features.

    Moderation's side: `start_publishing`, `expect`, `publish`, `withdraw`, `stop_publishing`.
    Readers' side: `wait` (the verdict), `wait_and_take` (the verdict and the downloaded images).
    """

    def __init__(
        self,
        *,
        max_posts: int = MAX_POSTS,
        ttl_s: float = TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_posts = max_posts
        self.ttl_s = ttl_s
        self._clock = clock
        self._posts: OrderedDict[int, _Post] = OrderedDict()
        self._publishing = False

    @property
    def publishing(self) -> bool:
        """Whether a moderation listener is running, so that a new post's verdict is worth waiting for."""
        return self._publishing

    def __len__(self) -> int:
        return len(self._posts)

    # -- the moderation side ------------------------------------------------------------------------

    def start_publishing(self) -> None:
        self._publishing = True

    def stop_publishing(self) -> None:
        """No verdicts will come any more: everyone waiting gets "no verdict" now."""
        self._publishing = False
        for post in self._posts.values():
            _settle(post, None)

    def expect(self, message_id: int) -> None:
        """Moderation has taken this post; readers wait for its verdict."""
        self._post(message_id, create=True)

    def publish(
        self, message_id: int, verdict: PostVerdict, *, downloads: Mapping[str, HeldImage] | None = None
    ) -> None:
        """Moderation's verdict on a post, with the images it downloaded by URL (``downloads``), which
        go to a reader waiting in `wait_and_take` and are otherwise dropped at once."""
        post = self._post(message_id, create=True)
        assert post is not None
        if post.verdict.done():
            # Checked again (the same message handed to moderation twice): the latest verdict stands.
            post.verdict = asyncio.get_running_loop().create_future()
        if post.takers and downloads and not verdict.flagged:
            post.held = dict(downloads)
        post.verdict.set_result(verdict)
        log.debug(
            "moderation verdict on message %s: %s, %d image(s), %d handed over",
            message_id,
            "flagged" if verdict.flagged else "passed",
            len(verdict.images),
            len(post.held or ()),
        )

    def withdraw(self, message_id: int) -> None:
        """Moderation gives no verdict on this post: it was not checked, or the check failed.

        A verdict already published stays.
        """
        post = self._posts.get(message_id)
        if post is not None and not post.verdict.done():
            _settle(post, None)
            log.debug("no moderation verdict on message %s", message_id)

    # -- readers ------------------------------------------------------------------------------------

    async def wait(self, message_id: int, *, timeout_s: float, new_post: bool) -> PostVerdict | None:
        """Moderation's verdict on a post, or None when there is none (or none came within ``timeout_s``).

        ``new_post``: the post has just arrived, so the moderation listener may not have taken it yet;
        its verdict is awaited even before it is announced, as long as moderation is publishing. For
        an older post only a verdict already published, or announced as coming, is used.
        """
        post = self._post(message_id, create=new_post and self._publishing)
        if post is None:
            return None
        return await _verdict_of(post, message_id, timeout_s)

    async def wait_and_take(
        self, message_id: int, *, timeout_s: float, new_post: bool
    ) -> tuple[PostVerdict | None, dict[str, HeldImage]]:
        """`wait`, and take the images moderation downloaded for the post, by URL.

        The images come only when this reader was waiting as the verdict was published (none when the
        post is flagged); any the reader does not get, it downloads itself. Nothing is held once this
        returns.
        """
        post = self._post(message_id, create=new_post and self._publishing)
        if post is None:
            return None, {}
        post.takers += 1
        try:
            verdict = await _verdict_of(post, message_id, timeout_s)
            held, post.held = post.held or {}, None
            return verdict, held
        finally:
            post.takers -= 1
            if not post.takers:
                post.held = None

    # -- bookkeeping --------------------------------------------------------------------------------

    def _post(self, message_id: int, *, create: bool) -> _Post | None:
        now = self._clock()
        self._expire(now)
        post = self._posts.get(message_id)
        if post is None and create:
            post = _Post(asyncio.get_running_loop().create_future(), now + self.ttl_s)
            self._posts[message_id] = post
            while len(self._posts) > self.max_posts:
                _, oldest = self._posts.popitem(last=False)
                _settle(oldest, None)
        return post

    def _expire(self, now: float) -> None:
        # Entries are in creation order and share one lifetime, so the expired ones come first.
        while self._posts:
            message_id, post = next(iter(self._posts.items()))
            if post.expires_at > now:
                return
            del self._posts[message_id]
            _settle(post, None)


async def _verdict_of(post: _Post, message_id: int, timeout_s: float) -> PostVerdict | None:
    if not post.verdict.done():
        log.debug("waiting for moderation's verdict on message %s", message_id)
    try:
        # Shielded: a reader that gives up must not cancel the verdict for the others.
        return await asyncio.wait_for(asyncio.shield(post.verdict), timeout_s)
    except TimeoutError:
        log.info("no moderation verdict on message %s within %.0f s", message_id, timeout_s)
        return None


def _settle(post: _Post, verdict: PostVerdict | None) -> None:
    if not post.verdict.done():
        post.verdict.set_result(verdict)
