"""Moderation cases with the real models, a real database (SQLite and PostgreSQL) and a real blob store:
held posts and their evidence, confirmed images caught again by their perceptual hash, failed removals,
and the choices a moderator has on each case.

Flagging a harmless package photo is done the way a moderator would: with a policy whose threshold is 0,
or by confirming the photo once so that its re-posts match the stored perceptual hash.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from bot.errors import UserFacingError
from bot.services.moderation.cases import CaseChoice, allowed_choices
from bot.services.moderation.check_results import CheckStatus
from bot.services.moderation.decisions import Level
from bot.services.moderation.policy import DEFAULT_POLICY
from storage.db import Database
from storage.models import CaseAction, CaseStatus
from storage.repo import cases as repo_cases
from tests.fakes import images as corpus
from tests.services.moderation.parts import fetched, moderation
from tests.services.moderation.photo_parts import (
    CHANNEL,
    GUILD,
    MODERATOR,
    _id,
    _seed_confirmed_hash,
    photo,
    post,
)


def reencoded(data: bytes, *, scale: float = 0.8) -> bytes:
    """The same picture saved again at another size and quality, as a re-upload would be."""
    with Image.open(io.BytesIO(data)) as image:
        smaller = image.convert("RGB").resize((int(image.width * scale), int(image.height * scale)))
    return corpus.encode(smaller, "JPEG", quality=70)


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
