"""The moderation service's image checks with the real models and a real SQLite database: package photos
come out safe, hostile files get clear outcomes, photos edited so that only viewers still show them are
checked like the originals, a missing model file is reported, and the OpenAI second opinion adds scores
without ever blocking."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from bot.services.moderation.check_results import CheckStatus, KnownHash, Verdict
from bot.services.moderation.checker import ImageChecker
from bot.services.moderation.decisions import Level
from bot.services.moderation.detector_frames import DetectorFrames
from bot.services.moderation.openai_detector import OpenAIImageDetector
from bot.services.moderation.policy_json import parse_policy
from inference.images import ImageLimits
from inference.moderation import NUDENET, OPEN_NSFW
from inference.registry import ModelRegistry
from inference.remote.moderation_api import OpenAIModerationClient
from inference.runners.nudenet import NudeNetRunner
from inference.runners.open_nsfw import OpenNsfwRunner
from storage.db import Database
from storage.models import CaseAction
from tests.fakes import hostile_images as hostile
from tests.fakes import images as corpus
from tests.fakes.openai_server import FakeOpenAI
from tests.services.moderation.parts import fetched, moderation
from tests.services.moderation.photo_parts import GUILD, photo, post


async def test_package_photos_come_out_safe(sqlite_database: Database, tmp_path: Path) -> None:
    async with moderation(sqlite_database, tmp_path) as service:
        names = corpus.PHOTO_NAMES
        verdicts = await asyncio.gather(*(service.check_image(photo(name)) for name in names))
    for name, verdict in zip(names, verdicts, strict=True):
        assert verdict.status is CheckStatus.CHECKED, (name, verdict.problem)
        assert not verdict.flagged, (name, verdict.scores, verdict.labels)
        # Nothing uses a safe photo's hash when the guild has no confirmed hashes: none is computed.
        assert verdict.phash is None
        assert set(verdict.scores) >= {"sexual_explicit", "suggestive"}


async def test_a_photo_is_hashed_only_where_the_hash_is_used(tmp_path: Path) -> None:
    """Matching a guild's confirmed hashes, and a flagged photo's case, need the hash; nothing else does."""
    registry = ModelRegistry(device="cpu")
    checker, scanner = ImageChecker(registry), ImageChecker(registry, hash_every_image=True)
    data = photo(corpus.PHOTO_NAMES[0])
    try:
        unknown = KnownHash("0" * 16, case_id=None)
        matched = await checker.check_image(data, known_hashes=[unknown])
        plain = await checker.check_image(data)
        flagged = await checker.check_image(data, guild_policy=FLAG_EVERY_IMAGE)
        scanned = await scanner.check_image(data)
    finally:
        await checker.close()
        await scanner.close()
        await registry.close()
    assert matched.status is CheckStatus.CHECKED and matched.phash is not None
    assert plain.phash is None and not plain.flagged
    assert flagged.flagged and flagged.phash == matched.phash == scanned.phash


HOSTILE: list[tuple[str, bytes, CheckStatus, str | None]] = [
    ("zero bytes", b"", CheckStatus.UNREADABLE, "empty"),
    (
        "truncated PNG",
        corpus.encode(corpus.gradient(400, 300), "PNG")[:200],
        CheckStatus.UNREADABLE,
        "corrupt",
    ),
    (
        "truncated JPEG",
        corpus.encode(corpus.gradient(400, 300), "JPEG")[:300],
        CheckStatus.UNREADABLE,
        "corrupt",
    ),
    ("text renamed .jpg", corpus.PLAIN_TEXT, CheckStatus.UNREADABLE, "not_an_image"),
    (
        "decompression bomb",
        corpus.png_declaring(1_000_000, 1_000_000),
        CheckStatus.UNREADABLE,
        "too_many_pixels",
    ),
    ("20000x20000", corpus.real_bilevel_png(20_000, 20_000), CheckStatus.UNREADABLE, "too_many_pixels"),
    ("SVG", corpus.SVG_TEXT, CheckStatus.UNREADABLE, "vector_image"),
    ("300-frame GIF", corpus.animated_gif(300), CheckStatus.CHECKED, None),
    (
        "JPEG without its end",
        hostile.jpeg_without_eoi(corpus.encode(corpus.gradient(), "JPEG")),
        CheckStatus.CHECKED,
        None,
    ),
    (
        "PNG with a zTXt bomb",
        hostile.png_ztxt_bomb(corpus.encode(corpus.gradient(), "PNG")),
        CheckStatus.CHECKED,
        None,
    ),
    ("CMYK JPEG", corpus.cmyk_jpeg(), CheckStatus.CHECKED, None),
    ("16-bit PNG", corpus.png_16bit_grey(), CheckStatus.CHECKED, None),
]


async def test_hostile_files_get_clear_outcomes(sqlite_database: Database, tmp_path: Path) -> None:
    async with moderation(sqlite_database, tmp_path) as service:
        started = time.monotonic()
        verdicts = await asyncio.wait_for(
            asyncio.gather(*(service.check_image(data) for _, data, _, _ in HOSTILE)), timeout=60
        )
        for (name, _, status, code), verdict in zip(HOSTILE, verdicts, strict=True):
            assert verdict.status is status, (name, verdict)
            assert verdict.problem_code == code, name
            assert not verdict.flagged, name
            if status is CheckStatus.UNREADABLE:
                assert verdict.problem and verdict.problem.endswith("."), name
                assert verdict.summary.startswith("not checked: "), name
        assert 3 <= verdicts[7].frames_checked <= 8  # sampled, not all 300
        # The truncated PNG and JPEG start like images: a viewer may show part of them.
        assert [v.image_format for v in verdicts[1:3]] == ["PNG", "JPEG"]
        assert [v.may_be_shown for v in verdicts[:4]] == [False, True, True, False]
        # The same files as one message: nothing is flagged and nothing raises. The decompression bomb
        # is an image too large to check, so the moderators are alerted about it (Pillow refused it
        # before its size was read, so none is given), and about the other images Discord may show.
        files = [fetched(f"file{i}.jpg", data) for i, (_, data, _, _) in enumerate(HOSTILE)]
        config = await service.guild_config(GUILD)
        outcome = await service.moderate_post(post(), files, config=config)
        assert outcome is not None and outcome.flagged_image is files[4]
        assert outcome.case.reason == (
            "image too large for Lumi to check and 3 other images Lumi could not check; please look at it"
        )
        assert outcome.case.action is CaseAction.ALERTED
        assert len(await service.list_cases(GUILD)) == 1
        assert time.monotonic() - started < 60


# A review threshold of 0 flags any image it checks as sexual_explicit: the photos stand in for one.
FLAG_EVERY_IMAGE = parse_policy({"categories": {"sexual_explicit": {"review": 0}}})


async def test_edited_photos_that_viewers_show_are_flagged_like_the_originals(
    sqlite_database: Database, tmp_path: Path
) -> None:
    """The bypass: edits anyone can make (a JPEG without its end, a PNG text bomb, ...) made Lumi call
    the photo damaged, and a damaged image was only logged."""
    edits = hostile.SHOWN
    files = [(edit.build(), hostile.original_of(edit)) for edit in edits]
    if any(edited is None or original is None for edited, original in files):
        pytest.skip("the packages that ship the corpus photos are not installed")
    async with moderation(sqlite_database, tmp_path) as service:

        async def check(data: bytes | None) -> Verdict:
            assert data is not None
            return await service.check_image(data, guild_policy=FLAG_EVERY_IMAGE)

        verdicts = await asyncio.gather(*(check(edited) for edited, _ in files))
        originals = await asyncio.gather(*(check(original) for _, original in files))
    for edit, verdict, original in zip(edits, verdicts, originals, strict=True):
        assert verdict.status is CheckStatus.CHECKED, (edit.name, verdict.problem)
        assert verdict.flagged and verdict.decision.category == "sexual_explicit", edit.name
        assert original.flagged and verdict.decision.action is original.decision.action, edit.name
        if edit.keeps_pixels:
            # The same pixels: the same scores and hash, so any threshold flags both or neither.
            assert (verdict.scores, verdict.phash) == (original.scores, original.phash), edit.name


async def test_missing_model_file_is_reported_not_raised(sqlite_database: Database, tmp_path: Path) -> None:
    registry = ModelRegistry(device="cpu")
    registry.register(NUDENET, lambda device: NudeNetRunner(device, model_path=tmp_path / "missing.onnx"))
    registry.register(OPEN_NSFW, OpenNsfwRunner)
    checker = ImageChecker(registry)
    try:
        verdict = await checker.check_image(photo("chelsea"))
    finally:
        await checker.close()
        await registry.close()
    assert verdict.status is CheckStatus.ERROR
    assert verdict.problem and "nudenet" in verdict.summary.lower()


async def test_openai_second_opinion_adds_scores_and_never_blocks() -> None:
    photo_data = photo("grace_hopper")
    async with FakeOpenAI(moderation_scores={"sexual": 0.01, "violence/graphic": 0.93}) as fake:
        registry = ModelRegistry(device="cpu")
        client = OpenAIModerationClient(fake.api_key, base_url=fake.base_url, max_retries=0)
        checker = ImageChecker(registry, extra_detectors=[OpenAIImageDetector(client)])
        try:
            verdict = await checker.check_image(photo_data)
            assert verdict.scores["violence_graphic"] == 0.93
            assert (verdict.decision.level, verdict.decision.category) == (Level.ACT, "violence_graphic")
            (request,) = fake.moderation_requests
            url = request.json["input"][0]["image_url"]["url"]
            assert url.startswith("data:image/jpeg;base64,")  # the downscaled frame, not the original

            fake.fail_next(500, count=5)
            verdict = await checker.check_image(photo_data)
            assert verdict.status is CheckStatus.CHECKED and not verdict.flagged
            assert "violence_graphic" not in verdict.scores
        finally:
            await checker.close()
            await registry.close()


class _FrameSizes:
    """An extra detector that only notes the size of the frames it is given."""

    name = "frame-sizes"

    def __init__(self) -> None:
        self.sizes: list[tuple[int, int]] = []

    async def scores(
        self, data: bytes, frames: DetectorFrames, *, guild_id: int | None = None
    ) -> dict[str, float]:
        self.sizes.append((await frames.get()).frames[0].size)
        return {}

    async def close(self) -> None:
        return None


async def test_the_models_see_their_scale_and_extra_detectors_the_caps_fixed_side() -> None:
    """A 1600x1200 JPEG: NudeNet and open_nsfw get it decoded at 1/4 scale, the extra detectors (custom
    classifiers, OpenAI) at the 640 px they were built on, from the same bytes."""
    registry = ModelRegistry(device="cpu")
    detector = _FrameSizes()
    checker = ImageChecker(registry, extra_detectors=[detector])
    data = corpus.encode(corpus.gradient(1600, 1200), "JPEG")
    try:
        checked = await checker.inspect(data)
    finally:
        await checker.close()
        await registry.close()
    assert checked.verdict.status is CheckStatus.CHECKED
    assert checked.decoded is not None and checked.decoded.frames[0].size == (400, 300)
    assert detector.sizes == [(640, 480)]
    # Photo comments decode at 640 px under the same caps: these frames are not theirs to take.
    assert checked.frames_under(ImageLimits()) is None
