"""`CommentService.comment_post` takes the photos moderation downloaded and decoded, and fetches once
itself what moderation did not hand over. Real fetcher over real HTTP (a local CDN double counts the
downloads), real moderation and perception models.

Decoding is counted where it happens: the comment service decodes on its own thread pool, whose threads
start only when it decodes something.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.services.comments.backends import CommentWriter
from bot.services.comments.build import CommentOptions, build_perceiver
from bot.services.comments.service import CommentService, PhotoComment
from bot.services.image_fetch import ImageFetcher
from bot.services.moderation.checker import ImageChecker
from bot.services.moderation.config import ModerationConfig
from bot.services.moderation.service import ModerationService
from bot.services.posts import ImageSource, IncomingPost, PostPlace
from inference.registry import ModelRegistry
from storage.blob_stores import LocalBlobStore
from storage.db import Database
from tests.fakes import images as corpus
from tests.fakes.cdn import FakeCdn, running_cdn

GUILD = 555_555_555_555_555_555
CHANNEL = 666_666_666_666_666_666
AUTHOR = 888_888_888_888_888_888
FLAG_EVERY_IMAGE = {"categories": {"sexual_explicit": {"review": 0}}}


@dataclass
class World:
    cdn: FakeCdn
    moderation: ModerationService
    comments: CommentService

    def post(self, message_id: int, *sources: ImageSource) -> IncomingPost:
        return IncomingPost(GUILD, CHANNEL, message_id, AUTHOR, PostPlace((CHANNEL,)), sources, "photos")

    async def both_listeners(self, post: IncomingPost) -> PhotoComment | None:
        """What the bot does with a new post in a channel with comments on: both features answer it."""
        comment = asyncio.create_task(self.comments.comment_post(post))
        await self.moderation.screen_post(post)
        return await comment

    def comments_decoded(self) -> bool:
        return bool(self.comments._decode_pool._threads)  # the pool starts threads on first use


@pytest.fixture
def astronaut() -> bytes:
    data = corpus.photo_bytes("astronaut")
    if data is None:
        pytest.skip("the package that ships the astronaut photo is not installed")
    return data


@pytest.fixture
async def world(sqlite_database: Database, tmp_path: Path) -> AsyncIterator[World]:
    registry = ModelRegistry("cpu")
    async with running_cdn() as cdn:
        config = ModerationConfig(fetch_hosts=(cdn.host,))
        moderation = ModerationService(
            database=sqlite_database,
            blobs=LocalBlobStore(tmp_path / "blobs"),
            checker=ImageChecker(registry, limits=config.image_limits),
            fetcher=ImageFetcher(allowed_hosts=config.fetch_hosts),
            config=config,
        )
        comments = CommentService(
            database=sqlite_database,
            perceiver=build_perceiver(registry, CommentOptions(objects_download=False)),
            writer=CommentWriter({}),
            moderation=moderation,
            fetcher=moderation.fetcher,
            image_limits=config.image_limits,
        )
        await comments.configure(GUILD, enable_channels=[CHANNEL], cooldown_s=0)
        try:
            yield World(cdn, moderation, comments)
        finally:
            await comments.close()
            await moderation.close()
            await registry.close()


async def test_a_photo_moderation_screened_is_fetched_and_decoded_once(
    world: World, astronaut: bytes
) -> None:
    world.cdn.files["me.png"] = astronaut
    # As when the moderation cog is loaded: its listener publishes a verdict on every post.
    world.moderation.verdict_feed.start_publishing()
    result = await world.both_listeners(world.post(1, world.cdn.source("me.png")))
    assert result is not None and [label.ko for label in result.labels] == ["기쁨"]
    assert world.cdn.hits == {"me.png": 1}
    assert not world.comments_decoded()


async def test_without_moderation_screening_comments_fetch_the_photo_once_themselves(
    world: World, astronaut: bytes
) -> None:
    world.cdn.files["me.png"] = astronaut
    # Comments only: no moderation listener publishes verdicts, so the gate checks the photo itself ...
    result = await world.comments.comment_post(world.post(2, world.cdn.source("me.png")))
    assert result is not None and [label.ko for label in result.labels] == ["기쁨"]
    assert world.cdn.hits == {"me.png": 1}
    # ... and perception takes the frames that check decoded.
    assert not world.comments_decoded()


async def test_flagged_or_undownloadable_posts_get_no_comment_and_keep_no_cooldown(
    world: World, astronaut: bytes
) -> None:
    world.cdn.files["me.png"] = astronaut
    world.moderation.verdict_feed.start_publishing()
    await world.comments.configure(GUILD, cooldown_s=3600)
    await world.moderation.configure(GUILD, policy_changes=FLAG_EVERY_IMAGE)
    assert await world.both_listeners(world.post(3, world.cdn.source("me.png"))) is None
    # Moderation's download only: comments do not fetch a post moderation flagged.
    assert world.cdn.hits == {"me.png": 1}

    await world.moderation.configure(GUILD, reset_policy=True)
    post = world.post(4, world.cdn.source("me.png"), world.cdn.source("expired.png"))
    assert await world.both_listeners(post) is None
    # The photo moderation handed over is not fetched again; the one nobody could download stops the post.
    assert world.cdn.hits == {"me.png": 2, "expired.png": 2}
    # Neither post used up the channel's cooldown.
    assert await world.comments.admit(GUILD, (CHANNEL,)) is not None
