"""Posts with an image too large for Lumi to check: Discord shows it, so moderators hear of it.

The huge image is a real, highly compressible 10000x5000 PNG (a few kilobytes), over the 40 MP cap.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from bot.services.image_fetch import FetchedImage
from bot.services.moderation import ModerationService, PostContext
from bot.services.moderation_checker import CheckStatus, ImageChecker
from inference.registry import ModelRegistry
from storage.blobs import LocalBlobStore
from storage.db import Database
from storage.models import CaseAction, CaseStatus
from tests.fakes import images as corpus

GUILD = 555_555_555_555_555_555
CHANNEL = 666_666_666_666_666_666
AUTHOR = 777_777_777_777_777_777
HUGE_PNG = corpus.real_bilevel_png(10_000, 5_000)
TOO_LARGE_REASON = "image too large for Lumi to check (10000×5000 px); please look at it"


def post(message_id: int = 1) -> PostContext:
    return PostContext(guild_id=GUILD, channel_id=CHANNEL, message_id=message_id, author_id=AUTHOR)


def fetched(name: str, data: bytes) -> FetchedImage:
    return FetchedImage(url=f"https://cdn.discordapp.com/attachments/1/2/{name}", filename=name, data=data)


@asynccontextmanager
async def moderation(db: Database, root: Path) -> AsyncIterator[ModerationService]:
    registry = ModelRegistry(device="cpu")
    service = ModerationService(
        database=db, blobs=LocalBlobStore(root / "blobs"), checker=ImageChecker(registry)
    )
    try:
        yield service
    finally:
        await service.close()
        await registry.close()


async def test_image_too_large_to_check_is_alerted_by_default(database: Database, tmp_path: Path) -> None:
    async with moderation(database, tmp_path) as service:
        config = await service.guild_config(GUILD)
        huge = fetched("huge.png", HUGE_PNG)
        outcome = await service.moderate_post(post(), [huge], config=config)
        assert outcome is not None
        assert outcome.flagged_image is huge and not outcome.remove_post
        case = outcome.case
        assert (case.status, case.action, case.reason) == (
            CaseStatus.OPEN,
            CaseAction.ALERTED,
            TOO_LARGE_REASON,
        )
        assert case.scores == {} and case.image_phash is None and case.evidence_key is None
        verdict = outcome.verdicts[0][1]
        assert verdict.status is CheckStatus.UNREADABLE and verdict.problem_code == "too_many_pixels"
        # Not "flagged" for the features reading the post's verdict, but not checked either.
        published = await service.post_verdicts.wait(1, timeout_s=0.1, new_post=False)
        assert published is not None and not published.flagged
        assert [v.checked for v in published.images.values()] == [False]
        assert not any(status.loaded for status in service.checker.registry.snapshot())


@pytest.mark.parametrize("action", ["hold", "none"])
async def test_unchecked_action_holds_or_only_logs(
    action: str, sqlite_database: Database, tmp_path: Path
) -> None:
    async with moderation(sqlite_database, tmp_path) as service:
        config = await service.configure(GUILD, policy_changes={"unchecked_action": action})
        images = [fetched("huge.png", HUGE_PNG), fetched("notes.jpg", corpus.PLAIN_TEXT)]
        outcome = await service.moderate_post(post(), images, config=config)
        if action == "none":
            assert outcome is None
            assert await service.list_cases(GUILD) == []
            return
        assert outcome is not None and outcome.remove_post and outcome.evidence_stored
        case = outcome.case
        assert (case.status, case.action, case.reason) == (CaseStatus.OPEN, CaseAction.HELD, TOO_LARGE_REASON)
        assert case.evidence_key is not None
        preview = await service.evidence_preview(case)
        assert preview is not None and preview.data == HUGE_PNG


async def test_corrupt_files_alone_raise_no_case(sqlite_database: Database, tmp_path: Path) -> None:
    async with moderation(sqlite_database, tmp_path) as service:
        config = await service.guild_config(GUILD)
        truncated = corpus.encode(corpus.gradient(400, 300), "PNG")[:200]
        images = [fetched("broken.png", truncated), fetched("notes.jpg", corpus.PLAIN_TEXT)]
        assert await service.moderate_post(post(), images, config=config) is None
        assert await service.list_cases(GUILD) == []


async def test_a_flagged_image_takes_precedence(sqlite_database: Database, tmp_path: Path) -> None:
    photo = corpus.photo_bytes("chelsea")
    if photo is None:
        pytest.skip("the package that ships the chelsea photo is not installed")
    async with moderation(sqlite_database, tmp_path) as service:
        config = await service.configure(
            GUILD, policy_changes={"categories": {"sexual_explicit": {"review": 0}}}
        )
        cat = fetched("cat.png", photo)
        outcome = await service.moderate_post(post(), [fetched("huge.png", HUGE_PNG), cat], config=config)
        assert outcome is not None and outcome.flagged_image is cat
        assert outcome.case.reason.startswith("sexual_explicit")
        assert outcome.case.action is CaseAction.HELD and outcome.case.image_phash
        published = await service.post_verdicts.wait(1, timeout_s=0.1, new_post=False)
        assert published is not None and published.flagged
