"""Moderation evidence with a real database (SQLite and PostgreSQL) and a real blob store: the retention job
deletes expired evidence, and forgetting a user deletes their evidence and anonymises their cases.

A harmless package photo is flagged the way a moderator would flag it: by confirming it once so that its
re-posts match the stored perceptual hash.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from bot.services.moderation.evidence_retention import EvidenceRetentionJob
from storage.db import Database
from storage.models import ANONYMOUS_USER_ID, utcnow
from storage.repo import cases as repo_cases
from tests.services.moderation.parts import fetched, moderation
from tests.services.moderation.photo_parts import (
    AUTHOR,
    CHANNEL,
    GUILD,
    _id,
    _seed_confirmed_hash,
    photo,
    post,
)


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
