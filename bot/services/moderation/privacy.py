"""Deleting moderation data: everything about one user on request, and evidence past its retention time.

Rows change in one transaction; blobs are deleted after it commits, since a blob deletion cannot be
rolled back. Both return what the Discord layer still has to clean up: alert messages that show the
user or a preview of deleted evidence.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from bot.services.moderation.cases import case_id_of
from bot.services.moderation.evidence import EvidenceStore
from storage.db import Database
from storage.models import AssetOwner, utcnow
from storage.repo import assets as repo_assets
from storage.repo import cases as repo_cases
from storage.repo import user_data as repo_user_data

__all__ = ["ForgetReport", "PurgedEvidence", "forget_user", "purge_expired_evidence"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ForgetReport:
    counts: dict[str, int]
    # (channel id, message id, case number) of alerts that showed the user; the caller scrubs them.
    alerts: list[tuple[int, int, int]]


@dataclass(frozen=True)
class PurgedEvidence:
    case_id: int
    guild_id: int
    case_number: int
    alert_channel_id: int | None
    alert_message_id: int | None


async def forget_user(
    database: Database, evidence: EvidenceStore, guild_id: int, user_id: int
) -> ForgetReport:
    """Delete a user's moderation data in one guild: evidence, author and message ids, decisions."""
    async with database.session() as session:
        authored = await repo_cases.list_cases(
            session=session, guild_id=guild_id, author_id=user_id, limit=1_000_000
        )
        alerts = [
            (case.alert_channel_id, case.alert_message_id, case.case_number)
            for case in authored
            if case.alert_channel_id is not None and case.alert_message_id is not None
        ]
        keys: set[str] = set()
        for case in authored:
            for asset in await repo_assets.list_case_assets(session=session, case_id=case_id_of(case)):
                keys.add(asset.key)
                await repo_assets.delete_asset(session=session, key=asset.key)
        deleted = await repo_user_data.delete_user_data(session=session, guild_id=guild_id, user_id=user_id)
        keys.update(deleted.blob_keys)
        await session.commit()
    await evidence.delete_blobs(sorted(keys))
    counts = deleted.counts()
    counts["blobs"] = len(keys)
    log.info("forgot user %s in guild %s: %s", user_id, guild_id, counts)
    return ForgetReport(counts=counts, alerts=[(c, m, n) for c, m, n in alerts if c and m])


async def purge_expired_evidence(
    database: Database, evidence: EvidenceStore, *, now: datetime | None = None
) -> list[PurgedEvidence]:
    """Delete evidence past its retention time; returns the cases whose alerts still show a preview."""
    now = now or utcnow()
    purged: list[PurgedEvidence] = []
    keys: list[str] = []
    async with database.session() as session:
        for case in await repo_cases.expired_evidence(session=session, now=now):
            keys.extend(await evidence.detach(session, case))
            await repo_cases.update_case(
                session=session, case=case, evidence_key=None, evidence_expires_at=None
            )
            purged.append(
                PurgedEvidence(
                    case_id_of(case),
                    case.guild_id,
                    case.case_number,
                    case.alert_channel_id,
                    case.alert_message_id,
                )
            )
        # Evidence of cases whose key was already cleared (a failed clean-up half-way) expires too.
        for asset in await repo_assets.expired_assets(session=session, now=now):
            if asset.owner_kind == AssetOwner.CASE.value:
                keys.append(asset.key)
                await repo_assets.delete_asset(session=session, key=asset.key)
        await session.commit()
    await evidence.delete_blobs(keys)
    if purged:
        log.info("deleted expired evidence of %d case(s)", len(purged))
    return purged
