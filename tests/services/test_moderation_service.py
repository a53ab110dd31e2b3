"""The moderation service with the real models, a real database (SQLite and PostgreSQL) and a real blob store.

Flagging a harmless package photo is done the way a moderator would: with a policy whose threshold is 0,
or by confirming the photo once so that its re-posts match the stored perceptual hash.
"""

from __future__ import annotations

import asyncio
import io
import time
from datetime import timedelta
from pathlib import Path

import pytest
from PIL import Image

from bot.errors import UserFacingError
from bot.services.moderation import ModerationService
from bot.services.moderation_cases import CaseChoice, allowed_choices
from bot.services.moderation_checker import CheckStatus, ImageChecker
from bot.services.moderation_decisions import Level
from bot.services.moderation_extra import OpenAIImageDetector
from bot.services.moderation_policy import DEFAULT_POLICY
from bot.services.moderation_recording import PostContext
from bot.services.retention import EvidenceRetentionJob
from inference.image_hash import phash
from inference.images import decode_image
from inference.moderation import NUDENET, OPEN_NSFW
from inference.registry import ModelRegistry
from inference.remote.moderation_api import OpenAIModerationClient
from inference.runners.nudenet import NudeNetRunner
from inference.runners.open_nsfw import OpenNsfwRunner
from storage import repo_cases, repo_guilds
from storage.db import Database
from storage.models import ANONYMOUS_USER_ID, CaseAction, CaseStatus, utcnow
from tests.fakes import images as corpus
from tests.fakes.openai_server import FakeOpenAI
from tests.services.moderation_parts import fetched, moderation

GUILD = 111_111_111_111_111_111
CHANNEL = 222_222_222_222_222_222
AUTHOR = 333_333_333_333_333_333
MODERATOR = 444_444_444_444_444_444


def photo(name: str) -> bytes:
    data = corpus.photo_bytes(name)
    if data is None:
        pytest.skip(f"the package that ships the {name} photo is not installed")
    return data


def reencoded(data: bytes, *, scale: float = 0.8) -> bytes:
    """The same picture saved again at another size and quality, as a re-upload would be."""
    with Image.open(io.BytesIO(data)) as image:
        smaller = image.convert("RGB").resize((int(image.width * scale), int(image.height * scale)))
    return corpus.encode(smaller, "JPEG", quality=70)


def post(message_id: int = 1, author_id: int = AUTHOR) -> PostContext:
    return PostContext(guild_id=GUILD, channel_id=CHANNEL, message_id=message_id, author_id=author_id)


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


async def test_held_post_keeps_evidence_until_restored(database: Database, tmp_path: Path) -> None:
    async with moderation(database, tmp_path) as service:
        config = await service.configure(
            GUILD, policy_changes={"categories": {"sexual_explicit": {"review": 0}}}
        )
        images = [fetched("cat.png", photo("chelsea")), fetched("rocket.jpg", photo("rocket"))]
        outcome = await service.moderate_post(post(), images, config=config)
        assert outcome is not None
        case = outcome.case
        assert (case.case_number, case.status, case.action) == (1, CaseStatus.OPEN, CaseAction.HELD)
        assert outcome.decision.level is Level.REVIEW and outcome.remove_post and outcome.evidence_stored
        assert outcome.timeout_minutes is None
        assert case.evidence_key is not None and case.evidence_expires_at is not None
        assert case.scores["sexual_explicit"] >= 0 and case.image_phash
        assert allowed_choices(case) == set(CaseChoice)

        case = await service.record_enforcement(_id(case), post_removed=True, alert=(CHANNEL + 1, 999))
        assert (case.alert_channel_id, case.alert_message_id) == (CHANNEL + 1, 999)
        preview = await service.evidence_preview(case)
        assert (
            preview is not None
            and preview.data
            == images[
                outcome.verdicts.index(
                    next(pair for pair in outcome.verdicts if pair[0] is outcome.flagged_image)
                )
            ].data
        )

        async with service.decide(
            guild_id=GUILD, case_id=_id(case), choice=CaseChoice.RESTORE, moderator_id=MODERATOR
        ) as pending:
            assert [file.data for file in pending.evidence] == [image.data for image in images]
            assert [file.filename for file in pending.evidence] == ["cat.png", "rocket.jpg"]
        restored = pending.case
        assert (restored.status, restored.decided_by) == (CaseStatus.RESTORED, MODERATOR)
        assert restored.evidence_key is None
        assert f"restored by <@{MODERATOR}>" in restored.reason
        assert not list((tmp_path / "blobs" / "moderation").rglob("*.png"))
        with pytest.raises(UserFacingError, match="already restored"):
            async with service.decide(
                guild_id=GUILD, case_id=_id(case), choice=CaseChoice.CONFIRM, moderator_id=MODERATOR
            ):
                pass


async def test_confirmed_image_is_caught_again_without_the_models(database: Database, tmp_path: Path) -> None:
    original = photo("astronaut")
    async with moderation(database, tmp_path) as service:
        config = await service.configure(
            GUILD, policy_changes={"categories": {"sexual_explicit": {"review": 0, "act": 0}}}
        )
        outcome = await service.moderate_post(post(1), [fetched("a.png", original)], config=config)
        assert outcome is not None
        assert (outcome.case.status, outcome.case.action) == (CaseStatus.AUTO_ACTIONED, CaseAction.DELETED)
        async with service.decide(
            guild_id=GUILD, case_id=_id(outcome.case), choice=CaseChoice.CONFIRM, moderator_id=MODERATOR
        ) as pending:
            assert not pending.post_still_up
        assert pending.case.status is CaseStatus.CONFIRMED
        assert allowed_choices(pending.case) == {CaseChoice.TIMEOUT}
        async with database.session() as session:
            hashes = await repo_cases.list_image_hashes(session=session, guild_id=GUILD)
        assert [(row.phash, row.case_id) for row in hashes] == [(outcome.case.image_phash, outcome.case.id)]
        await service.configure(GUILD, reset_policy=True)

    # A restarted Lumi (new service, models not loaded) with default thresholds still catches a re-upload.
    async with moderation(database, tmp_path) as service:
        config = await service.guild_config(GUILD)
        assert config.policy == DEFAULT_POLICY
        repost = await service.moderate_post(post(2), [fetched("b.jpg", reencoded(original))], config=config)
        assert repost is not None
        verdict = repost.verdicts[0][1]
        assert verdict.status is CheckStatus.REPEAT and verdict.scores == {}
        assert verdict.decision.matched_case_id == outcome.case.id
        assert (repost.case.case_number, repost.case.status) == (2, CaseStatus.AUTO_ACTIONED)
        assert "re-post of an image a moderator confirmed" in repost.case.reason
        assert not any(status.loaded for status in service.checker.registry.snapshot())
        # A different photo is still judged by the models.
        assert (
            await service.moderate_post(post(3), [fetched("c.png", photo("coffee"))], config=config) is None
        )


async def test_failed_removal_keeps_the_case_and_drops_the_copy(
    sqlite_database: Database, tmp_path: Path
) -> None:
    async with moderation(sqlite_database, tmp_path) as service:
        await _seed_confirmed_hash(service, sqlite_database, photo("rocket"))
        config = await service.configure(
            GUILD, policy_changes={"auto_action": "hold", "timeout_on_auto_action": True}
        )
        outcome = await service.moderate_post(post(5), [fetched("r.jpg", photo("rocket"))], config=config)
        assert outcome is not None and outcome.remove_post
        assert outcome.timeout_minutes == 60
        assert outcome.case.action is CaseAction.HELD
        case = await service.record_enforcement(
            _id(outcome.case), post_removed=False, problems=["cannot delete messages in #general (403)"]
        )
        assert (case.status, case.action, case.evidence_key) == (CaseStatus.OPEN, CaseAction.ALERTED, None)
        assert "problem: cannot delete messages in #general (403)" in case.reason
        assert [text for _, text in service.problems(GUILD)] == [
            "case #2: cannot delete messages in #general (403)"
        ]
        assert not list((tmp_path / "blobs" / "moderation").rglob("*-r.jpg"))
        assert CaseChoice.RESTORE not in allowed_choices(case)
        with pytest.raises(UserFacingError, match="never removed"):
            async with service.decide(
                guild_id=GUILD, case_id=_id(case), choice=CaseChoice.RESTORE, moderator_id=MODERATOR
            ):
                pass
        # Confirming an alert-only case removes the post; a failure on Discord is recorded, not applied.
        async with service.decide(
            guild_id=GUILD, case_id=_id(case), choice=CaseChoice.CONFIRM, moderator_id=MODERATOR
        ) as pending:
            assert pending.post_still_up
            pending.fail("Lumi lacks Manage Messages")
        assert pending.case.status is CaseStatus.OPEN
        assert (
            "confirm by" in pending.case.reason
            and "failed: Lumi lacks Manage Messages" in pending.case.reason
        )
        async with service.decide(
            guild_id=GUILD, case_id=_id(case), choice=CaseChoice.TIMEOUT, moderator_id=MODERATOR
        ) as pending:
            pending.post_removed = True
        assert (pending.case.status, pending.case.action) == (CaseStatus.CONFIRMED, CaseAction.TIMED_OUT)
        with pytest.raises(UserFacingError, match="already timed out"):
            async with service.decide(
                guild_id=GUILD, case_id=_id(case), choice=CaseChoice.TIMEOUT, moderator_id=MODERATOR
            ):
                pass
        with pytest.raises(UserFacingError, match="does not exist"):
            async with service.decide(
                guild_id=GUILD + 1, case_id=_id(case), choice=CaseChoice.DISMISS, moderator_id=MODERATOR
            ):
                pass


async def test_configuration_is_validated_and_merged(sqlite_database: Database, tmp_path: Path) -> None:
    async with moderation(sqlite_database, tmp_path) as service:
        config = await service.guild_config(GUILD)
        assert config.enabled and config.policy == DEFAULT_POLICY and config.mod_channel_id is None
        with pytest.raises(UserFacingError, match=r"sexual_explicit: the auto-action threshold \(0.3\)"):
            await service.configure(GUILD, policy_changes={"categories": {"sexual_explicit": {"act": 0.3}}})
        config = await service.configure(
            GUILD,
            mod_channel_id=CHANNEL + 1,
            policy_changes={"categories": {"sexual_explicit": {"review": 0.4}}},
            exempt_channels_add=[5, 6],
            exempt_roles_add=[7],
        )
        config = await service.configure(
            GUILD,
            policy_changes={"categories": {"sexual_explicit": {"act": 0.7}}},
            exempt_channels_remove=[5],
        )
        assert config.policy.rules["sexual_explicit"].review == 0.4
        assert config.policy.rules["sexual_explicit"].act == 0.7
        assert config.mod_channel_id == CHANNEL + 1
        assert config.exempt_channel_ids == {6} and config.exempt_role_ids == {7}
        assert config.exemption(channel_ids=[6], channel_nsfw=False, role_ids=[]) == "exempt channel"
        assert config.exemption(channel_ids=[1, 6], channel_nsfw=False, role_ids=[]) == "exempt channel"
        assert config.exemption(channel_ids=[1], channel_nsfw=False, role_ids=[7]) == "exempt role"
        assert config.exemption(channel_ids=[1], channel_nsfw=True, role_ids=[]) == "age-restricted channel"
        assert config.exemption(channel_ids=[1], channel_nsfw=False, role_ids=[8]) is None
        config = await service.configure(GUILD, enabled=False, policy_changes={"exempt_nsfw_channels": False})
        assert config.exemption(channel_ids=[1], channel_nsfw=True, role_ids=[]) is not None
        config = await service.configure(GUILD, enabled=True, reset_policy=True, clear_mod_channel=True)
        assert config.policy == DEFAULT_POLICY and config.mod_channel_id is None
        assert config.exemption(channel_ids=[1], channel_nsfw=True, role_ids=[]) == "age-restricted channel"
        # A policy a newer Lumi wrote (unknown key) does not stop moderation: defaults apply, problem shown.
        async with sqlite_database.session() as session:
            await repo_guilds.update_guild_settings(
                session=session, guild_id=GUILD, moderation_policy={"future": 1}
            )
            await session.commit()
        config = await service.guild_config(GUILD)
        assert config.policy == DEFAULT_POLICY and config.policy_problem and "future" in config.policy_problem


async def test_retention_job_deletes_expired_evidence(database: Database, tmp_path: Path) -> None:
    async with moderation(database, tmp_path) as service:
        await _seed_confirmed_hash(service, database, photo("flower"))
        config = await service.configure(GUILD, policy_changes={"auto_action": "hold"})
        outcome = await service.moderate_post(post(7), [fetched("f.jpg", photo("flower"))], config=config)
        assert outcome is not None and outcome.case.evidence_key
        await service.record_enforcement(_id(outcome.case), post_removed=True, alert=(CHANNEL, 77))
        assert await service.purge_expired_evidence() == []  # not expired yet

        seen: list[int] = []

        async def scrub(purged: object) -> None:
            seen.extend(item.case_number for item in purged)  # type: ignore[attr-defined]

        service.evidence_retention = timedelta(seconds=0)
        job = EvidenceRetentionJob(service, interval_s=3600, on_purged=scrub)
        async with database.session() as session:
            case = await repo_cases.get_case_by_id(session=session, case_id=_id(outcome.case))
            assert case is not None
            await repo_cases.update_case(
                session=session, case=case, evidence_expires_at=utcnow() - timedelta(seconds=1)
            )
            await session.commit()
        job.start()
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.05)
        await job.stop()
        assert seen == [outcome.case.case_number]
        case = await service.get_case(_id(outcome.case))
        assert case is not None and case.evidence_key is None
        assert not list((tmp_path / "blobs" / "moderation").rglob("*-f.jpg"))
        assert await service.evidence_preview(case) is None


async def test_forget_deletes_a_users_evidence(database: Database, tmp_path: Path) -> None:
    async with moderation(database, tmp_path) as service:
        await _seed_confirmed_hash(service, database, photo("china"))
        config = await service.configure(GUILD, policy_changes={"auto_action": "hold"})
        mine = await service.moderate_post(post(8), [fetched("c.jpg", photo("china"))], config=config)
        other = await service.moderate_post(
            post(9, author_id=AUTHOR + 1), [fetched("d.jpg", photo("china"))], config=config
        )
        assert mine is not None and other is not None
        await service.record_enforcement(_id(mine.case), post_removed=True, alert=(CHANNEL, 88))
        report = await service.forget_user(GUILD, AUTHOR)
        assert report.alerts == [(CHANNEL, 88, mine.case.case_number)]
        assert report.counts["cases_anonymised"] == 2  # the seeded confirmed case was by AUTHOR too
        assert report.counts["blobs"] >= 1
        case = await service.get_case(_id(mine.case))
        assert case is not None
        assert (case.author_id, case.message_id, case.evidence_key) == (ANONYMOUS_USER_ID, None, None)
        assert not list((tmp_path / "blobs" / "moderation").rglob("*-c.jpg"))
        assert list((tmp_path / "blobs" / "moderation").rglob("*-d.jpg"))  # another user's stays
        assert await service.list_cases(GUILD, author_id=AUTHOR) == []


async def _seed_confirmed_hash(service: ModerationService, db: Database, data: bytes) -> None:
    """Confirm ``data`` once (case #1), the way a moderator's Confirm click does; no model runs."""
    image_hash = phash(decode_image(data).frames[0])
    async with db.session() as session:
        case = await repo_cases.create_case(
            session=session, guild_id=GUILD, channel_id=CHANNEL, author_id=AUTHOR, image_phash=image_hash
        )
        await session.commit()
    async with service.decide(
        guild_id=GUILD, case_id=_id(case), choice=CaseChoice.CONFIRM, moderator_id=MODERATOR
    ):
        pass


def _id(case: object) -> int:
    value = getattr(case, "id", None)
    assert isinstance(value, int)
    return value


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
