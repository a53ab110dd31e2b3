"""The comments' moderation gate with the real moderation service and models: it takes moderation's
verdict on a post instead of running the models a second time, and checks by itself when none comes.

Model passes are counted where the models count them: requests to NudeNet's batcher (each image goes
to NudeNet and open_nsfw once per check).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from bot.services.comments.backends import CommentWriter
from bot.services.comments.service import CommentService
from bot.services.image_fetch import FetchedImage
from bot.services.moderation.checker import ImageChecker
from bot.services.moderation.recording import PostContext
from bot.services.moderation.service import ModerationService
from bot.services.posts import PostPlace
from inference.perception import Perceiver
from inference.registry import ModelRegistry
from storage.blob_stores import LocalBlobStore
from storage.db import Database
from tests.fakes import images as corpus

GUILD = 555_555_555_555_555_555
CHANNEL = 666_666_666_666_666_666
AUTHOR = 888_888_888_888_888_888
FLAGGED = "it did not pass this server's image moderation"


@dataclass
class Services:
    moderation: ModerationService
    comments: CommentService

    async def moderate(self, message_id: int, *images: bytes) -> bool:
        """What the moderation listener does with a new post; True when it flagged it."""
        config = await self.moderation.guild_config(GUILD)
        fetched = [
            FetchedImage(f"https://cdn.example/{n}.png", f"{n}.png", data) for n, data in enumerate(images)
        ]
        post = PostContext(guild_id=GUILD, channel_id=CHANNEL, message_id=message_id, author_id=AUTHOR)
        return await self.moderation.moderate_post(post, fetched, config=config) is not None

    async def comment_problem(self, message_id: int, *images: bytes) -> str | None:
        """What the comment listener's gate says about the same new post."""
        place = PostPlace(channel_ids=(CHANNEL,))
        return await self.comments.moderation_problem(
            GUILD, list(images), place, message_id=message_id, new_post=True
        )


def photo(name: str) -> bytes:
    data = corpus.photo_bytes(name)
    if data is None:
        pytest.skip(f"the package that ships the {name} photo is not installed")
    return data


def model_passes() -> float:
    return REGISTRY.get_sample_value("lumi_inference_request_seconds_count", {"model": "nudenet"}) or 0.0


@asynccontextmanager
async def services(database: Database, tmp_path: Path, *, verdict_wait_s: float) -> AsyncIterator[Services]:
    registry = ModelRegistry("cpu")
    moderation = ModerationService(
        database=database, blobs=LocalBlobStore(tmp_path / "blobs"), checker=ImageChecker(registry)
    )
    comments = CommentService(
        database=database,
        perceiver=Perceiver(registry),
        writer=CommentWriter({}),
        moderation=moderation,
        verdict_wait_s=verdict_wait_s,
    )
    # What the moderation cog does when it loads: its listener publishes a verdict on every post.
    moderation.verdict_feed.start_publishing()
    try:
        yield Services(moderation, comments)
    finally:
        await comments.close()
        await moderation.close()
        await registry.close()


@pytest.fixture
async def world(sqlite_database: Database, tmp_path: Path) -> AsyncIterator[Services]:
    async with services(sqlite_database, tmp_path, verdict_wait_s=30.0) as built:
        yield built


@pytest.fixture
async def impatient_world(sqlite_database: Database, tmp_path: Path) -> AsyncIterator[Services]:
    async with services(sqlite_database, tmp_path, verdict_wait_s=0.2) as built:
        yield built


async def test_a_published_verdict_spares_the_second_model_pass(world: Services) -> None:
    astronaut, coffee = photo("astronaut"), photo("coffee")
    assert not await world.moderate(1, astronaut)
    before = model_passes()
    assert await world.comment_problem(1, astronaut) is None
    assert model_passes() == before
    # An image moderation did not look at (it caps images per post differently) is checked here.
    assert await world.comment_problem(1, astronaut, coffee) is None
    assert model_passes() == before + 1

    # A review threshold of 0 flags every image, the way a strict moderator could set it.
    await world.moderation.configure(
        GUILD, policy_changes={"categories": {"sexual_explicit": {"review": 0.0}}}
    )
    assert await world.moderate(2, astronaut)
    before = model_passes()
    assert await world.comment_problem(2, astronaut) == FLAGGED
    assert model_passes() == before


async def test_the_gate_waits_for_a_verdict_still_being_made(world: Services) -> None:
    astronaut = photo("astronaut")
    assert not await world.moderate(1, astronaut)  # loads the models before counting
    before = model_passes()
    # The comment listener reaches the gate before the moderation listener has even taken the post.
    gate = asyncio.create_task(world.comment_problem(2, astronaut))
    await asyncio.sleep(0.05)
    assert not gate.done()
    world.moderation.verdict_feed.expect(2)
    assert not await world.moderate(2, astronaut)
    assert await asyncio.wait_for(gate, 5.0) is None
    assert model_passes() == before + 1  # moderation's pass only


async def test_without_a_verdict_in_time_the_gate_checks_by_itself_and_fails_closed(
    impatient_world: Services,
) -> None:
    astronaut = photo("astronaut")
    # Announced by the moderation listener, never published (stuck behind a slow download, say).
    impatient_world.moderation.verdict_feed.expect(1)
    started = time.perf_counter()
    assert await impatient_world.comment_problem(1, astronaut) is None
    assert time.perf_counter() - started >= 0.2
    before = model_passes()
    impatient_world.moderation.verdict_feed.expect(2)
    assert await impatient_world.comment_problem(2, astronaut) is None
    assert model_passes() == before + 1
    # An image nobody could check gets no comment.
    problem = await impatient_world.comment_problem(3, corpus.PLAIN_TEXT)
    assert problem is not None and problem != FLAGGED


async def test_an_image_too_large_to_check_gets_no_comment(world: Services) -> None:
    huge = corpus.real_bilevel_png(10_000, 5_000)
    # Moderation records a case for the moderators (the default `unchecked_action` is alert) ...
    assert await world.moderate(1, huge)
    # ... without calling the post flagged; the gate still fails closed on the image it could not check.
    problem = await world.comment_problem(1, huge)
    assert problem == "This image's dimensions are too large to check."
