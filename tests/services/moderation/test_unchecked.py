"""Posts with an image Lumi could not check although Discord shows it, so moderators hear of it.

The huge image is a real, highly compressible 10000x5000 PNG (a few kilobytes), over the 40 MP cap. An
image too large to download is one the fetcher refused from its declared size, before any request. A
damaged image is one that starts like an image (or that Discord's metadata describes as one of a size)
but that Lumi cannot decode.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.services.image_fetch import FetchError, ImageFetcher
from bot.services.moderation.cases import CaseChoice, allowed_choices
from bot.services.moderation.check_results import CheckStatus
from bot.services.moderation.recording import PostContext
from bot.services.moderation.unchecked import RefusedDownload, images_past_limit, refused_downloads
from storage.db import Database
from storage.models import CaseAction, CaseStatus
from tests.fakes import hostile_images as hostile
from tests.fakes import images as corpus
from tests.services.moderation.parts import declared, fetched, moderation

GUILD = 555_555_555_555_555_555
CHANNEL = 666_666_666_666_666_666
AUTHOR = 777_777_777_777_777_777
HUGE_PNG = corpus.real_bilevel_png(10_000, 5_000)
# Files Lumi cannot decode that start like images: a viewer may show part of them.
DAMAGED_PNG = corpus.encode(corpus.gradient(400, 300), "PNG")[:500]
DAMAGED_JPEG = corpus.encode(corpus.gradient(400, 300), "JPEG")[:300]
TOO_LARGE_REASON = "image too large for Lumi to check (10000×5000 px); please look at it"
MB = 1024 * 1024
TOO_LARGE_TO_DOWNLOAD = "image too large for Lumi to download (`poster.png`, 38.2 MB, limit 25 MB)"

# A review threshold of 0 flags any image as sexual_explicit: the harmless cat photo stands in for one.
FLAG_EVERY_IMAGE = {"categories": {"sexual_explicit": {"review": 0}}}


@pytest.fixture
def cat_photo() -> bytes:
    photo = corpus.photo_bytes("chelsea")
    if photo is None:
        pytest.skip("the package that ships the chelsea photo is not installed")
    return photo


def post(message_id: int = 1) -> PostContext:
    return PostContext(guild_id=GUILD, channel_id=CHANNEL, message_id=message_id, author_id=AUTHOR)


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
        published = await service.verdict_feed.wait(1, timeout_s=0.1, new_post=False)
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


async def test_files_that_are_not_images_raise_no_case(sqlite_database: Database, tmp_path: Path) -> None:
    """Neither starting like an image nor described by Discord as one of a size: nobody sees them."""
    async with moderation(sqlite_database, tmp_path) as service:
        config = await service.guild_config(GUILD)
        images = [
            fetched("notes.jpg", corpus.PLAIN_TEXT),
            fetched("page.png", corpus.HTML_TEXT),
            # Discord names a type from the file name, but gives no size to what it could not read.
            declared("noise.png", bytes(range(256)) * 8, "image/png", None),
        ]
        assert await service.moderate_post(post(), images, config=config) is None
        assert await service.list_cases(GUILD) == []


async def test_a_damaged_image_discord_may_show_is_alerted_by_default(
    sqlite_database: Database, tmp_path: Path
) -> None:
    """A PNG cut short in its image data: browsers show the rows that arrived, Lumi cannot decode it."""
    async with moderation(sqlite_database, tmp_path) as service:
        config = await service.guild_config(GUILD)
        damaged = fetched("cut.png", DAMAGED_PNG)
        outcome = await service.moderate_post(
            post(), [fetched("notes.jpg", corpus.PLAIN_TEXT), damaged], config=config
        )
        assert outcome is not None and outcome.flagged_image is damaged and not outcome.remove_post
        case = outcome.case
        assert (case.status, case.action, case.reason) == (
            CaseStatus.OPEN,
            CaseAction.ALERTED,
            "PNG image Lumi could not read (damaged or incomplete); please look at it",
        )
        verdict = outcome.verdicts[1][1]
        assert (verdict.status, verdict.problem_code, verdict.image_format) == (
            CheckStatus.UNREADABLE,
            "corrupt",
            "PNG",
        )
        published = await service.verdict_feed.wait(1, timeout_s=0.1, new_post=False)
        assert published is not None and not published.flagged


async def test_an_image_discord_describes_is_alerted_whatever_its_bytes(
    sqlite_database: Database, tmp_path: Path
) -> None:
    """Discord gave the attachment an image type and a size: its clients show it, whatever Lumi makes of
    the bytes."""
    async with moderation(sqlite_database, tmp_path) as service:
        config = await service.guild_config(GUILD)
        shown = declared("odd.png", bytes(range(256)) * 8, "image/png", (800, 600))
        outcome = await service.moderate_post(post(), [shown], config=config)
        assert outcome is not None and outcome.flagged_image is shown
        assert outcome.case.reason == (
            "image Lumi could not read (not a format Lumi recognises, 800×600 px); please look at it"
        )


@pytest.mark.parametrize("action", ["hold", "none"])
async def test_a_damaged_image_is_held_or_only_logged_as_the_guild_says(
    action: str, sqlite_database: Database, tmp_path: Path
) -> None:
    async with moderation(sqlite_database, tmp_path) as service:
        config = await service.configure(GUILD, policy_changes={"unchecked_action": action})
        outcome = await service.moderate_post(post(), [fetched("cut.png", DAMAGED_PNG)], config=config)
        if action == "none":
            assert outcome is None
            assert await service.list_cases(GUILD) == []
            return
        assert outcome is not None and outcome.remove_post and outcome.evidence_stored
        assert outcome.case.action is CaseAction.HELD
        preview = await service.evidence_preview(outcome.case)
        assert preview is not None and preview.data == DAMAGED_PNG


async def test_one_case_for_images_too_large_and_damaged(sqlite_database: Database, tmp_path: Path) -> None:
    async with moderation(sqlite_database, tmp_path) as service:
        config = await service.guild_config(GUILD)
        huge = fetched("huge.png", HUGE_PNG)
        images = [fetched("cut.png", DAMAGED_PNG), huge, fetched("cut.jpg", DAMAGED_JPEG)]
        outcome = await service.moderate_post(post(), images, config=config)
        assert outcome is not None and outcome.flagged_image is huge
        assert outcome.case.reason == (
            "image too large for Lumi to check (10000×5000 px) and 2 other images Lumi could not check; "
            "please look at it"
        )
        assert len(await service.list_cases(GUILD)) == 1


async def test_an_edited_photo_viewers_show_is_flagged_like_the_original(
    sqlite_database: Database, tmp_path: Path, cat_photo: bytes
) -> None:
    """A photo whose PNG carries a text chunk inflating past 1 MB: before, it was "damaged", logged only."""
    async with moderation(sqlite_database, tmp_path) as service:
        config = await service.configure(GUILD, policy_changes=FLAG_EVERY_IMAGE)
        edited = fetched("cat.png", hostile.png_ztxt_bomb(cat_photo))
        outcome = await service.moderate_post(
            post(), [edited, fetched("cut.png", DAMAGED_PNG)], config=config
        )
        assert outcome is not None and outcome.flagged_image is edited
        assert outcome.case.reason.startswith("sexual_explicit")
        assert outcome.case.action is CaseAction.HELD and outcome.case.image_phash


async def test_a_flagged_image_takes_precedence(
    sqlite_database: Database, tmp_path: Path, cat_photo: bytes
) -> None:
    async with moderation(sqlite_database, tmp_path) as service:
        config = await service.configure(GUILD, policy_changes=FLAG_EVERY_IMAGE)
        cat = fetched("cat.png", cat_photo)
        outcome = await service.moderate_post(post(), [fetched("huge.png", HUGE_PNG), cat], config=config)
        assert outcome is not None and outcome.flagged_image is cat
        assert outcome.case.reason.startswith("sexual_explicit")
        assert outcome.case.action is CaseAction.HELD and outcome.case.image_phash
        published = await service.verdict_feed.wait(1, timeout_s=0.1, new_post=False)
        assert published is not None and published.flagged


async def refused_poster() -> list[RefusedDownload]:
    """What the fetcher says of a 38.2 MB attachment (25 MB limit), as moderation takes it."""
    fetcher = ImageFetcher(max_bytes=25 * MB)
    url = "https://cdn.discordapp.com/attachments/1/2/poster.png"
    try:
        with pytest.raises(FetchError) as caught:
            await fetcher.fetch(url, filename="poster.png", declared_size=int(38.2 * MB))
    finally:
        await fetcher.close()
    network = FetchError("network", "The image could not be downloaded (network error).")
    return refused_downloads([("poster.png", caught.value), ("other.png", network)])


async def test_image_too_large_to_download_is_alerted_by_default(
    sqlite_database: Database, tmp_path: Path
) -> None:
    refused = await refused_poster()
    assert [download.filename for download in refused] == ["poster.png"]
    async with moderation(sqlite_database, tmp_path) as service:
        config = await service.guild_config(GUILD)
        outcome = await service.moderate_post(post(), [], config=config, refused=refused)
        assert outcome is not None
        assert outcome.flagged_image is None and not outcome.remove_post and not outcome.evidence_stored
        case = outcome.case
        assert (case.status, case.action, case.reason) == (
            CaseStatus.OPEN,
            CaseAction.ALERTED,
            f"{TOO_LARGE_TO_DOWNLOAD}; please look at it",
        )
        assert case.scores == {} and case.image_phash is None and case.evidence_key is None
        assert await service.evidence_preview(case) is None
        assert CaseChoice.RESTORE not in allowed_choices(case)


@pytest.mark.parametrize("action", ["hold", "none"])
async def test_images_too_large_to_download_are_never_held(
    action: str, sqlite_database: Database, tmp_path: Path
) -> None:
    async with moderation(sqlite_database, tmp_path) as service:
        config = await service.configure(GUILD, policy_changes={"unchecked_action": action})
        outcome = await service.moderate_post(post(), [], config=config, refused=await refused_poster())
        if action == "none":
            assert outcome is None
            assert await service.list_cases(GUILD) == []
            return
        # Holding removes the post to restore it from a copy; there is no copy, so it stays up.
        assert outcome is not None and not outcome.remove_post
        case = outcome.case
        assert (case.status, case.action) == (CaseStatus.OPEN, CaseAction.ALERTED)
        assert case.reason.startswith(f"{TOO_LARGE_TO_DOWNLOAD}; please look at it (not held: ")


async def test_too_large_to_decode_and_to_download_in_one_post_give_one_case(
    sqlite_database: Database, tmp_path: Path
) -> None:
    async with moderation(sqlite_database, tmp_path) as service:
        config = await service.configure(GUILD, policy_changes={"unchecked_action": "hold"})
        huge = fetched("huge.png", HUGE_PNG)
        outcome = await service.moderate_post(post(), [huge], config=config, refused=await refused_poster())
        assert outcome is not None and outcome.flagged_image is huge and not outcome.remove_post
        assert outcome.case.action is CaseAction.ALERTED
        assert outcome.case.reason.startswith(
            f"image too large for Lumi to check (10000×5000 px) and {TOO_LARGE_TO_DOWNLOAD}; please look"
        )
        assert len(await service.list_cases(GUILD)) == 1


async def test_a_flagged_image_takes_precedence_over_one_too_large_to_download(
    sqlite_database: Database, tmp_path: Path, cat_photo: bytes
) -> None:
    async with moderation(sqlite_database, tmp_path) as service:
        config = await service.configure(GUILD, policy_changes=FLAG_EVERY_IMAGE)
        cat = fetched("cat.png", cat_photo)
        outcome = await service.moderate_post(post(), [cat], config=config, refused=await refused_poster())
        assert outcome is not None and outcome.flagged_image is cat
        assert outcome.case.reason.startswith("sexual_explicit")
        assert len(await service.list_cases(GUILD)) == 1


async def test_images_past_the_per_post_limit_give_one_alert_never_a_hold(
    sqlite_database: Database, tmp_path: Path
) -> None:
    assert images_past_limit([], limit=10) == []
    skipped = images_past_limit(["a.png", "b.png", "c.png"], limit=10)
    async with moderation(sqlite_database, tmp_path) as service:
        config = await service.configure(GUILD, policy_changes={"unchecked_action": "hold"})
        cat = fetched("cat.png", corpus.encode(corpus.gradient(), "PNG"))
        outcome = await service.moderate_post(post(), [cat], config=config, refused=skipped)
        assert outcome is not None and not outcome.remove_post and outcome.flagged_image is None
        case = outcome.case
        assert (case.status, case.action) == (CaseStatus.OPEN, CaseAction.ALERTED)
        assert case.reason.startswith(
            "3 images past the first 10 of the post not checked (`a.png`, ...); please look at it (not held: "
        )
