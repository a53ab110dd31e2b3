"""`ModerationService.screen_post`: a new post screened in one call (exemptions, downloads, what could not be
checked, the check, the case), with its verdict and downloads handed to whoever waits for them.

The images come from a local CDN double over real HTTP, through the real fetcher; the models are the real
ones. A review threshold of 0 flags any image, so a harmless package photo stands in for a flagged one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from bot.services.image_fetch import ImageFetcher
from bot.services.moderation.checker import ImageChecker
from bot.services.moderation.config import ModerationConfig
from bot.services.moderation.service import ModerationService
from bot.services.posts import ImageSource, IncomingPost, PostPlace
from inference.registry import ModelRegistry
from storage.blob_stores import LocalBlobStore
from storage.db import Database
from storage.models import CaseAction
from tests.fakes import images as corpus
from tests.fakes.cdn import FakeCdn, running_cdn

GUILD = 111_111_111_111_111_111
CHANNEL = 222_222_222_222_222_222
MOD_CHANNEL = 333_333_333_333_333_333
AUTHOR = 444_444_444_444_444_444
FLAG_EVERY_IMAGE = {"categories": {"sexual_explicit": {"review": 0}}}
MB = 1024 * 1024
WAIT_S = 60.0


@pytest.fixture
async def cdn() -> AsyncIterator[FakeCdn]:
    async with running_cdn() as server:
        yield server


@pytest.fixture
def photo() -> bytes:
    data = corpus.photo_bytes("chelsea")
    if data is None:
        pytest.skip("the package that ships the chelsea photo is not installed")
    return data


@pytest.fixture
async def service(
    sqlite_database: Database, tmp_path: Path, cdn: FakeCdn
) -> AsyncIterator[ModerationService]:
    registry = ModelRegistry(device="cpu")
    config = ModerationConfig(fetch_hosts=(cdn.host,), max_images_per_post=2)
    moderation = ModerationService(
        database=sqlite_database,
        blobs=LocalBlobStore(tmp_path / "blobs"),
        checker=ImageChecker(registry, limits=config.image_limits),
        fetcher=ImageFetcher(allowed_hosts=config.fetch_hosts, max_bytes=config.max_image_bytes),
        config=config,
    )
    moderation.verdict_feed.start_publishing()
    await moderation.configure(GUILD, mod_channel_id=MOD_CHANNEL)
    try:
        yield moderation
    finally:
        await moderation.close()
        await registry.close()


def new_post(message_id: int, *sources: ImageSource, place: PostPlace | None = None) -> IncomingPost:
    return IncomingPost(
        guild_id=GUILD,
        channel_id=CHANNEL,
        message_id=message_id,
        author_id=AUTHOR,
        place=place or PostPlace(channel_ids=(CHANNEL,)),
        sources=sources,
        channel_name="photos",
    )


def problems(service: ModerationService) -> list[str]:
    return [text for _, text in service.problems(GUILD)]


async def test_a_passing_post_hands_its_downloads_to_the_reader_waiting_for_its_verdict(
    service: ModerationService, cdn: FakeCdn, photo: bytes
) -> None:
    cdn.files["cat.png"] = photo
    source = cdn.source("cat.png")
    # Photo comments wait for the verdict before moderation has even taken the post.
    reader = asyncio.create_task(service.verdict_feed.wait_and_take(1, timeout_s=WAIT_S, new_post=True))
    await asyncio.sleep(0)
    assert await service.screen_post(new_post(1, source)) is None
    verdict, downloads = await asyncio.wait_for(reader, WAIT_S)
    assert verdict is not None and not verdict.flagged
    held = downloads[source.url]
    assert held.image.data == photo and held.checked.verdict.checked
    # The frames moderation decoded come along for a reader decoding under the same caps.
    decoded = held.checked.frames_under(service.config.image_limits)
    assert decoded is not None and decoded.width == 451
    assert cdn.hits == {"cat.png": 1}
    # Nothing is held for anyone else: a later reader gets the verdict, not the images.
    assert await service.verdict_feed.wait_and_take(1, timeout_s=0.1, new_post=False) == (verdict, {})


async def test_a_flagged_post_comes_back_as_what_to_enforce_and_alert(
    service: ModerationService, cdn: FakeCdn, photo: bytes
) -> None:
    await service.configure(GUILD, policy_changes=FLAG_EVERY_IMAGE)
    cdn.files["cat.png"] = photo
    reader = asyncio.create_task(service.verdict_feed.wait_and_take(2, timeout_s=WAIT_S, new_post=True))
    await asyncio.sleep(0)
    outcome = await service.screen_post(new_post(2, cdn.source("cat.png")))
    assert outcome is not None
    assert outcome.alert_channel_id == MOD_CHANNEL and outcome.remove_post and outcome.evidence_stored
    assert outcome.flagged_image is not None and outcome.flagged_image.data == photo
    assert outcome.case.action is CaseAction.HELD and outcome.case.message_id == 2
    verdict, downloads = await asyncio.wait_for(reader, WAIT_S)
    # A flagged post gets no comment, so its images are not handed over.
    assert verdict is not None and verdict.flagged and downloads == {}


async def test_an_exempt_post_is_neither_downloaded_nor_left_waiting(
    service: ModerationService, cdn: FakeCdn, photo: bytes
) -> None:
    await service.configure(GUILD, policy_changes=FLAG_EVERY_IMAGE, exempt_channels_add=[CHANNEL])
    cdn.files["cat.png"] = photo
    thread = PostPlace(channel_ids=(999, CHANNEL))  # a thread of the exempt channel
    assert await service.screen_post(new_post(3, cdn.source("cat.png"), place=thread)) is None
    assert cdn.hits == {}
    # The post was announced and withdrawn: a reader learns at once that no verdict comes.
    assert await asyncio.wait_for(service.verdict_feed.wait(3, timeout_s=WAIT_S, new_post=True), 1.0) is None


async def test_files_too_large_and_images_past_the_limit_go_to_the_moderators(
    service: ModerationService, cdn: FakeCdn, photo: bytes
) -> None:
    cdn.files["cat.png"] = photo
    post = new_post(
        4,
        cdn.source("poster.png", size=40 * MB),  # declared over the 25 MB limit: never requested
        cdn.source("cat.png"),
        cdn.source("third.png"),  # past the first 2
        cdn.source("fourth.png"),
    )
    outcome = await service.screen_post(post)
    assert outcome is not None and outcome.flagged_image is None and not outcome.remove_post
    reason = outcome.case.reason
    assert "image too large for Lumi to download (`poster.png`, 40 MB, limit 25 MB)" in reason
    assert "2 images past the first 2 of the post not checked (`third.png`, ...)" in reason
    assert cdn.hits == {"cat.png": 1}


async def test_every_download_failing_points_at_the_set_up(service: ModerationService, cdn: FakeCdn) -> None:
    assert await service.screen_post(new_post(5, cdn.source("gone.png"), cdn.source("lost.png"))) is None
    assert problems(service) == [
        "no image of a post in #photos could be downloaded: "
        "The image could not be downloaded: HTTP 404 (the link may have expired)."
    ]
    # Links to hosts Lumi does not fetch from are not downloaded at all, and nothing is reported.
    elsewhere = ImageSource("https://example.com/a.png", "a.png")
    assert await service.screen_post(new_post(6, elsewhere)) is None
    assert len(problems(service)) == 1 and cdn.hits == {"gone.png": 1, "lost.png": 1}


async def test_a_failing_screening_is_reported_and_never_raises(
    service: ModerationService, sqlite_database: Database, cdn: FakeCdn, photo: bytes
) -> None:
    await service.configure(GUILD, policy_changes=FLAG_EVERY_IMAGE)
    cdn.files["cat.png"] = photo
    # The case cannot be written: the failure stays with this post.
    async with sqlite_database.session() as session:
        await session.exec(sa.text("DROP TABLE moderation_case"))  # type: ignore[call-overload]
        await session.commit()
    assert await service.screen_post(new_post(7, cdn.source("cat.png"))) is None
    assert problems(service) == ["checking a post failed (see the log)"]
