"""The moderation service's image checks with the real models and a real SQLite database: package photos
come out safe, hostile files get clear outcomes, a missing model file is reported, and the OpenAI second
opinion adds scores without ever blocking."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from bot.services.moderation.checker import CheckStatus, ImageChecker
from bot.services.moderation.decisions import Level
from bot.services.moderation.openai_detector import OpenAIImageDetector
from inference.moderation import NUDENET, OPEN_NSFW
from inference.registry import ModelRegistry
from inference.remote.moderation_api import OpenAIModerationClient
from inference.runners.nudenet import NudeNetRunner
from inference.runners.open_nsfw import OpenNsfwRunner
from storage.db import Database
from storage.models import CaseAction
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
        assert verdict.phash is not None and len(verdict.phash) == 16
        assert set(verdict.scores) >= {"sexual_explicit", "suggestive"}


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
        # The same files as one message: nothing is flagged and nothing raises. The decompression bomb
        # is an image too large to check, so the moderators are alerted (Pillow refused it before its
        # size was read, so none is given).
        files = [fetched(f"file{i}.jpg", data) for i, (_, data, _, _) in enumerate(HOSTILE)]
        config = await service.guild_config(GUILD)
        outcome = await service.moderate_post(post(), files, config=config)
        assert outcome is not None and outcome.flagged_image is files[4]
        assert outcome.case.reason == "image too large for Lumi to check; please look at it"
        assert outcome.case.action is CaseAction.ALERTED
        assert len(await service.list_cases(GUILD)) == 1
        assert time.monotonic() - started < 60


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
