"""SNS-style photo comments: per-guild settings, the moderation gate, perception, writing, records.

No Discord here. For each new photo post the comments cog calls ``comment_post``, which runs the whole
pipeline: it admits the post (enabled channel, cooldown over), takes moderation's verdict on it with
the photos moderation downloaded and decoded, fetches any photo moderation did not hand over, passes
the photos through the moderation gate and comments only when none is flagged. After the reply is
posted the cog calls ``record`` (or ``release`` when the reply could not be posted).

The gate (`gate`) uses the verdict the moderation listener publishes on the same post, so a commented
photo is fetched once and checked by the moderation models once. Where moderation has no verdict to
give (it is off, the post is exempt, an image was not among those it looked at, or the verdict is
late) the gate checks the images itself, with the guild's policy and confirmed-image hashes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Final

from bot.errors import UserFacingError
from bot.services.cache_sync import CacheSync, GuildCache
from bot.services.comments.backends import BACKEND_NAMES, BackendName, CommentWriter, WrittenComment
from bot.services.comments.gate import VERDICT_WAIT_S, ModerationGate
from bot.services.comments.photos import gather_photos
from bot.services.image_fetch import ImageFetcher
from bot.services.in_flight import InFlight
from bot.services.moderation import HeldImage, ModerationService, PostVerdict
from bot.services.posts import ImageSource, IncomingPost, PostPlace
from bot.services.rate_limits import RateLimits, build_rate_limits
from inference.images import DecodedImage, ImageLimits, ImageRejected, decode_image_async
from inference.labels import LANGUAGES, Label, Language, label_from_text
from inference.perception import Perceiver, Perception, merge_labels
from storage.db import Database
from storage.models import GuildSettings
from storage.repo import comments as repo_comments
from storage.repo import guilds as repo_guilds

__all__ = ["CommentService", "GuildComments", "PhotoComment"]

log = logging.getLogger(__name__)

MAX_COOLDOWN_S: Final = 24 * 3600


@dataclass(frozen=True)
class GuildComments:
    guild_id: int
    channel_ids: frozenset[int]
    language: Language
    backend: BackendName
    cooldown_s: int

    def enabled_in(self, channel_ids: Iterable[int]) -> bool:
        """``channel_ids``: the channel and, for a thread, its parent (a thread follows its channel)."""
        return not self.channel_ids.isdisjoint(channel_ids)


@dataclass(frozen=True)
class PhotoComment:
    labels: list[Label]
    comment: str
    backend: BackendName
    language: Language
    latency_ms: float
    perceptions: list[Perception] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def label_names(self) -> list[str]:
        return [label.name(self.language) for label in self.labels]


class CommentService:
    def __init__(
        self,
        *,
        database: Database | None,
        perceiver: Perceiver,
        writer: CommentWriter,
        moderation: ModerationService | None = None,
        fetcher: ImageFetcher | None = None,
        max_images: int = 4,
        image_limits: ImageLimits | None = None,
        decode_threads: int = 2,
        verdict_wait_s: float = VERDICT_WAIT_S,
        cooldowns: RateLimits | None = None,
    ) -> None:
        self.database = database
        self.perceiver = perceiver
        self.writer = writer
        self.moderation = moderation
        self.gate = (
            ModerationGate(moderation, verdict_wait_s=verdict_wait_s) if moderation is not None else None
        )
        # Downloads posted images (Discord's CDN only); the bot shares moderation's, the CLI needs none.
        self.fetcher = fetcher or ImageFetcher()
        self._owns_fetcher = fetcher is None
        self.max_images = max_images
        self.image_limits = image_limits or ImageLimits()
        self._decode_pool = ThreadPoolExecutor(max_workers=decode_threads, thread_name_prefix="lumi-comment")
        # Settings change through `configure`, here or in another process (see `share_through`); a copy
        # is kept for CACHE_TTL_S at most.
        self._configs: GuildCache[GuildComments] = GuildCache()
        self._sync: CacheSync | None = None
        # Channel cooldowns are claims (in memory, or in Redis shared by every process); this process
        # keeps the token of each claim it holds, to give back or restart that claim and no other.
        self.cooldowns = cooldowns or build_rate_limits(None)
        self._owns_cooldowns = cooldowns is None
        self._claims: dict[int, str] = {}
        # Every comment being written, whoever asked for it: shutdown lets them finish before models close.
        self.in_flight = InFlight("photo comment")

    # -- guild settings ---------------------------------------------------------------------------------

    def _db(self) -> Database:
        if self.database is None:
            raise RuntimeError("this CommentService has no database (command-line use)")
        return self.database

    def share_through(self, sync: CacheSync) -> None:
        """Announce settings changes to the other processes, and forget a guild's copy on theirs."""
        self._sync = sync
        sync.on("comments", self._configs.forget)

    async def guild_config(self, guild_id: int) -> GuildComments:
        cached = self._configs.get(guild_id)
        if cached is not None:
            return cached
        async with self._db().session() as session:
            row = await repo_guilds.get_guild_settings(session=session, guild_id=guild_id)
            await session.commit()
        config = _config_from_row(row)
        self._configs.put(guild_id, config)
        return config

    async def configure(
        self,
        guild_id: int,
        *,
        enable_channels: Iterable[int] = (),
        disable_channels: Iterable[int] = (),
        language: str | None = None,
        backend: str | None = None,
        cooldown_s: int | None = None,
    ) -> GuildComments:
        """Apply a moderator's changes; raises ``UserFacingError`` naming an invalid value."""
        changes: dict[str, object] = {}
        if language is not None:
            if language not in LANGUAGES:
                raise UserFacingError(f"Comment language must be one of {', '.join(LANGUAGES)}.")
            changes["comment_language"] = language
        if backend is not None:
            if backend not in BACKEND_NAMES:
                raise UserFacingError(f"Comment backend must be one of {', '.join(BACKEND_NAMES)}.")
            changes["comment_backend"] = backend
        if cooldown_s is not None:
            if not 0 <= cooldown_s <= MAX_COOLDOWN_S:
                raise UserFacingError(f"The cooldown must be between 0 and {MAX_COOLDOWN_S} seconds.")
            changes["comment_cooldown_s"] = cooldown_s
        async with self._db().session() as session:
            row = await repo_guilds.get_guild_settings(session=session, guild_id=guild_id)
            removed = set(disable_channels)
            channels = [channel for channel in row.comment_channel_ids if channel not in removed]
            for channel in enable_channels:
                if channel not in channels and channel not in removed:
                    channels.append(channel)
            if channels != list(row.comment_channel_ids):
                changes["comment_channel_ids"] = channels
            if changes:
                row = await repo_guilds.update_guild_settings(session=session, guild_id=guild_id, **changes)
            await session.commit()
        config = _config_from_row(row)
        self._configs.put(guild_id, config)
        if changes and self._sync is not None:
            await self._sync.changed(guild_id, "comments")
        return config

    # -- automatic comments -----------------------------------------------------------------------------

    async def admit(
        self, guild_id: int, channel_ids: Sequence[int], *, message_id: int | None = None
    ) -> GuildComments | None:
        """The guild's settings when a photo post in this channel should get a comment now, else None.

        Admitting claims the channel's cooldown at once, so a burst of posts gets one comment rather
        than one per post that arrived before the first comment was written. With ``message_id`` it
        first claims the message itself: a second delivery of one post (Discord may send it twice, to
        this process or another) is not admitted, whatever the cooldown.
        """
        config = await self.guild_config(guild_id)
        if not config.enabled_in(channel_ids):
            return None
        if message_id is not None and not await self.cooldowns.claim_message("comment", message_id):
            log.info("no comment on message %s: handled already (or claims unreachable)", message_id)
            return None
        channel_id = channel_ids[0]
        token = await self.cooldowns.claim_channel(channel_id, config.cooldown_s)
        if token is None:
            return None
        self._claims[channel_id] = token
        return config

    async def release(self, channel_id: int) -> None:
        """Give back a cooldown claimed by ``admit`` when no comment was posted after all."""
        token = self._claims.pop(channel_id, None)
        if token is not None:
            await self.cooldowns.release_channel(channel_id, token)

    async def comment_post(self, post: IncomingPost) -> PhotoComment | None:
        """The automatic comment on a new post's photos, or None: not a photo post in an enabled
        channel, the cooldown runs, a photo could not be downloaded, moderation flagged or could not
        check a photo, or nothing in them is recognisable.

        Admitting the post claims the channel's cooldown; it is given back when no comment comes of it
        (``release`` is the caller's once it holds a comment it could not post).
        """
        photos = post.attachments[: self.max_images]
        if post.guild_id is None or not photos:
            return None
        config = await self.admit(post.guild_id, post.place.channel_ids, message_id=post.message_id)
        if config is None:
            return None
        result = None
        try:
            result = await self._comment_new_post(post, post.guild_id, photos, config)
        finally:
            if result is None:
                await self.release(post.place.channel_ids[0])
        return result

    async def _comment_new_post(
        self, post: IncomingPost, guild_id: int, sources: Sequence[ImageSource], config: GuildComments
    ) -> PhotoComment | None:
        published: PostVerdict | None = None
        held: dict[str, HeldImage] = {}
        if self.gate is not None:
            published, held = await self.gate.verdict_on_new_post(post.message_id)
            if published is not None and published.flagged:
                log.info("no comment on message %s: moderation flagged it", post.message_id)
                return None
        photos = await gather_photos(sources, held, self.fetcher)
        if photos is None:
            # Fail closed, as the moderation gate does: a photo Lumi could not download (one over the
            # download limit, say) was not checked, so the post as a whole gets no comment.
            log.info("no comment on message %s: a photo could not be downloaded", post.message_id)
            return None
        if self.gate is not None:
            problem, photos = await self.gate.screen(guild_id, photos, post.place, published)
            if problem is not None:
                return None
        images = [photo.for_perception(self.image_limits) for photo in photos]
        try:
            return await self.comment_on_images(images, language=config.language, backend=config.backend)
        except ImageRejected as rejected:
            log.info("no comment: %s", rejected.message)
            return None

    async def moderation_problem(
        self,
        guild_id: int,
        images: Sequence[bytes],
        place: PostPlace,
        *,
        message_id: int | None = None,
        new_post: bool = False,
    ) -> str | None:
        """Why moderation keeps these images from getting a comment (safe to show), or None when every
        image passes. ``message_id``: the message they come from, whose moderation verdict is used if
        known; ``new_post``: a post that has just arrived, whose verdict is awaited."""
        if self.gate is None:
            return None
        return await self.gate.problem(guild_id, images, place, message_id=message_id, new_post=new_post)

    async def record(self, post: IncomingPost, result: PhotoComment) -> None:
        """Store a posted comment. The channel's cooldown runs from now: writing it may have taken long."""
        if post.guild_id is None:
            raise ValueError("only posts in a server get automatic comments")
        token = self._claims.pop(post.channel_id, None)
        if token is not None:
            config = await self.guild_config(post.guild_id)
            await self.cooldowns.restart_channel(post.channel_id, token, config.cooldown_s)
        async with self._db().session() as session:
            await repo_comments.add_comment_record(
                session=session,
                guild_id=post.guild_id,
                channel_id=post.channel_id,
                message_id=post.message_id,
                author_id=post.author_id,
                labels=[label.ko for label in result.labels],
                backend=result.backend,
                language=result.language,
                comment=result.comment,
                latency_ms=result.latency_ms,
            )
            await session.commit()

    # -- comments on request (also used by the command line) --------------------------------------------

    async def perceive(self, image: bytes | DecodedImage) -> Perception:
        """Labels of one image, from its bytes or from frames already decoded under ``image_limits``;
        raises ``ImageRejected`` (a safe message) for files that are not images."""
        if isinstance(image, DecodedImage):
            decoded = image
        else:
            decoded = await decode_image_async(image, limits=self.image_limits, executor=self._decode_pool)
        return await self.perceiver.perceive(decoded.frames[0])

    async def comment_on_images(
        self, images: Sequence[bytes | DecodedImage], *, language: Language, backend: BackendName
    ) -> PhotoComment | None:
        """One comment for all the images together (their labels merged), or None without any label.
        Raises ``ImageRejected`` when none of the files is a readable image."""
        started = time.perf_counter()
        results = await asyncio.gather(*(self.perceive(data) for data in images), return_exceptions=True)
        perceptions: list[Perception] = []
        rejected: list[ImageRejected] = []
        for result in results:
            if isinstance(result, Perception):
                perceptions.append(result)
            elif isinstance(result, ImageRejected):
                rejected.append(result)
            elif isinstance(result, BaseException):
                raise result
        if rejected and not perceptions:
            # Nothing to look at: the caller can say why (the first file's problem stands for all).
            raise rejected[0]
        labels = merge_labels(perceptions, self.perceiver.config.max_labels)
        if not labels:
            return None
        written = await self.writer.write(labels, language, backend=backend)
        return _photo_comment(labels, written, language, started, perceptions)

    async def comment_on_labels(
        self, labels: Sequence[Label | str], *, language: Language, backend: BackendName
    ) -> PhotoComment:
        started = time.perf_counter()
        parsed = [label if isinstance(label, Label) else label_from_text(label) for label in labels]
        if not parsed:
            raise UserFacingError("Give at least one label, e.g. 기쁨, 재킷.")
        written = await self.writer.write(parsed, language, backend=backend)
        return _photo_comment(parsed, written, language, started, [])

    async def close(self) -> None:
        try:
            await self.writer.close()
            if self._owns_fetcher:
                await self.fetcher.close()
            if self._owns_cooldowns:
                await self.cooldowns.close()
        finally:
            self._decode_pool.shutdown(wait=False)


def _photo_comment(
    labels: list[Label],
    written: WrittenComment,
    language: Language,
    started: float,
    perceptions: list[Perception],
) -> PhotoComment:
    return PhotoComment(
        labels=labels,
        comment=written.text,
        backend=written.backend,
        language=language,
        latency_ms=(time.perf_counter() - started) * 1000.0,
        perceptions=perceptions,
        skipped=written.skipped,
    )


def _config_from_row(row: GuildSettings) -> GuildComments:
    language: Language = "en" if row.comment_language == "en" else "ko"
    backend: BackendName = "local"
    for name in BACKEND_NAMES:
        if row.comment_backend == name:
            backend = name
    return GuildComments(
        guild_id=row.guild_id,
        channel_ids=frozenset(row.comment_channel_ids or ()),
        language=language,
        backend=backend,
        cooldown_s=max(0, row.comment_cooldown_s),
    )
