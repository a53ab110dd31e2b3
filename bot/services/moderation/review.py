"""A moderator's choice on a case (confirm, restore, time out, dismiss), checked and then written down.

The Discord layer carries the choice out inside `CaseReview.decide`; the case changes when that block
ends, or records why it failed. Confirming adds the image's hash to the guild's known hashes, so a
re-post of it is acted on without the models; restoring or dismissing deletes the private copy.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from bot.errors import UserFacingError
from bot.services.moderation.cases import (
    CaseChoice,
    PendingDecision,
    allowed_choices,
    case_category,
    case_id_of,
    case_or_error,
    refusal,
)
from bot.services.moderation.check_results import KnownHash
from bot.services.moderation.evidence import EvidenceStore
from bot.services.moderation.guild_config import GuildModeration
from bot.services.moderation.known_hashes import KnownHashes
from bot.services.moderation.problems import ProblemLog
from storage.db import Database
from storage.models import CaseAction, CaseStatus
from storage.repo import cases as repo_cases

__all__ = ["CaseReview"]

log = logging.getLogger(__name__)


class CaseReview:
    """``case_locks`` is shared with the case recorder, so that one case changes one way at a time."""

    def __init__(
        self,
        *,
        database: Database,
        evidence: EvidenceStore,
        known_hashes: KnownHashes,
        problem_log: ProblemLog,
        case_locks: dict[int, asyncio.Lock],
        guild_config: Callable[[int], Awaitable[GuildModeration]],
    ) -> None:
        self.database = database
        self.evidence = evidence
        self.known_hashes = known_hashes
        self.problem_log = problem_log
        self._case_locks = case_locks
        self._guild_config = guild_config

    @asynccontextmanager
    async def decide(
        self, *, guild_id: int, case_id: int, choice: CaseChoice, moderator_id: int
    ) -> AsyncIterator[PendingDecision]:
        """Validate a moderator's choice and hold the case while the caller carries it out on Discord.

        The case is updated when the block exits normally; ``pending.fail(...)`` records a problem
        instead. Raises ``UserFacingError`` when the case is unknown or already past that choice.
        """
        async with self._case_locks[case_id]:
            async with self.database.session() as session:
                case = await repo_cases.get_case_by_id(session=session, case_id=case_id)
            if case is None or case.guild_id != guild_id:
                raise UserFacingError("That case does not exist in this server (any more).")
            if choice not in allowed_choices(case):
                raise UserFacingError(refusal(case, choice))
            config = await self._guild_config(guild_id)
            pending = PendingDecision(
                case=case,
                choice=choice,
                moderator_id=moderator_id,
                timeout_minutes=config.policy.timeout_minutes,
            )
            if choice is CaseChoice.RESTORE:
                pending.evidence = await self.evidence.load(case)
                if not pending.evidence:
                    raise UserFacingError(refusal(case, choice, evidence_missing=True))
            yield pending
            await self._apply_decision(pending)

    async def _apply_decision(self, pending: PendingDecision) -> None:
        case, choice, mention = pending.case, pending.choice, f"<@{pending.moderator_id}>"
        orphaned: list[str] = []
        confirmed_hash: str | None = None
        async with self.database.session() as session:
            case = await case_or_error(session, case_id_of(case))
            if pending.problem is not None:
                reason = f"{case.reason}\n{choice.value} by {mention} failed: {pending.problem}"
                pending.case = await repo_cases.update_case(session=session, case=case, reason=reason)
                await session.commit()
                self.problem_log.report(case.guild_id, f"case #{case.case_number}: {pending.problem}")
                return
            changes: dict[str, Any] = {"decided_by": pending.moderator_id}
            if choice in (CaseChoice.CONFIRM, CaseChoice.TIMEOUT):
                if case.status is not CaseStatus.CONFIRMED and case.image_phash:
                    await repo_cases.add_image_hash(
                        session=session, guild_id=case.guild_id, phash=case.image_phash, case_id=case.id
                    )
                    confirmed_hash = case.image_phash
                changes["status"] = CaseStatus.CONFIRMED
                if choice is CaseChoice.TIMEOUT:
                    changes["action"] = CaseAction.TIMED_OUT
                    line = f"author timed out for {pending.timeout_minutes} min by {mention}"
                else:
                    line = f"confirmed by {mention}"
                if pending.post_removed:
                    changes["action"] = changes.get("action", CaseAction.DELETED)
                    line += " (post removed)"
            elif choice is CaseChoice.RESTORE:
                changes["status"] = CaseStatus.RESTORED
                line = f"restored by {mention}"
            else:
                changes["status"] = CaseStatus.DISMISSED
                line = f"dismissed by {mention}"
            if choice in (CaseChoice.RESTORE, CaseChoice.DISMISS):
                # The image is public again, or judged harmless: keeping a private copy serves nobody.
                orphaned = await self.evidence.detach(session, case)
                changes.update(evidence_key=None, evidence_expires_at=None)
            changes["reason"] = f"{case.reason}\n{line}"
            pending.case = await repo_cases.update_case(session=session, case=case, **changes)
            await session.commit()
        await self.evidence.delete_blobs(orphaned)
        if confirmed_hash is not None:
            await self.known_hashes.add(
                case.guild_id, KnownHash(confirmed_hash, case.id, case_category(case))
            )
        log.info("case #%s in guild %s: %s", case.case_number, case.guild_id, line)
