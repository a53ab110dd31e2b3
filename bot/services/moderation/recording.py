"""Writing a flagged post's case, its evidence, and what the Discord layer then managed to do.

A case and the private copy of a post's images are committed before the post is removed: when the copy
cannot be stored the post stays up and the case asks the moderators instead. What happened on Discord
afterwards (removal, timeout, alert message, problems) is added to the case by `record_enforcement`.

A message gets one case: when Discord delivers it twice (a resume, two sessions on one shard), the
second `record_case` finds the first one's case (a unique index on guild and message) and returns None,
so the post is not removed, nor its author timed out, nor the moderators alerted a second time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.services.image_fetch import FetchedImage
from bot.services.moderation.cases import case_or_error
from bot.services.moderation.check_results import Verdict
from bot.services.moderation.evidence import EvidenceStore
from bot.services.moderation.policy import Action
from bot.services.moderation.problems import ProblemLog
from storage.db import Database
from storage.models import CaseAction, CaseStatus, ModerationCase, utcnow
from storage.repo import cases as repo_cases

__all__ = ["CaseRecorder", "PostContext"]

log = logging.getLogger(__name__)

_ACTION_TO_CASE: dict[Action, CaseAction] = {
    Action.DELETE: CaseAction.DELETED,
    Action.HOLD: CaseAction.HELD,
    Action.ALERT: CaseAction.ALERTED,
    Action.NONE: CaseAction.NONE,
}


@dataclass(frozen=True)
class PostContext:
    guild_id: int
    channel_id: int
    message_id: int
    author_id: int


class CaseRecorder:
    """``case_locks`` is shared with moderator decisions, so that one case changes one way at a time."""

    def __init__(
        self,
        *,
        database: Database,
        evidence: EvidenceStore,
        problem_log: ProblemLog,
        case_locks: dict[int, asyncio.Lock],
    ) -> None:
        self.database = database
        self.evidence = evidence
        self.problem_log = problem_log
        self._case_locks = case_locks

    async def record_case(
        self,
        post: PostContext,
        images: Sequence[FetchedImage],
        flagged_index: int | None,
        verdict: Verdict,
        remove: bool,
    ) -> tuple[ModerationCase, bool] | None:
        """The new case, and whether the evidence was stored (only then may the post be removed); None
        when the message already has a case (handled already, by this process or another)."""
        decision = verdict.decision
        action = decision.action
        status = CaseStatus.AUTO_ACTIONED if action is Action.DELETE else CaseStatus.OPEN
        reason = decision.reason
        if decision.matched_case_id is not None:
            reason = f"{reason} (case id {decision.matched_case_id})"
        try:
            return await self._record(post, images, flagged_index, verdict, remove, status, reason)
        except repo_cases.CaseExists:
            log.info(
                "message %s in guild %s already has a case: delivered twice, handled once",
                post.message_id,
                post.guild_id,
            )
            return None

    async def _record(
        self,
        post: PostContext,
        images: Sequence[FetchedImage],
        flagged_index: int | None,
        verdict: Verdict,
        remove: bool,
        status: CaseStatus,
        reason: str,
    ) -> tuple[ModerationCase, bool]:
        decision = verdict.decision
        action = decision.action
        written: list[str] = []
        async with self.database.session() as session:
            case = await repo_cases.create_case(
                session=session,
                guild_id=post.guild_id,
                channel_id=post.channel_id,
                message_id=post.message_id,
                author_id=post.author_id,
                status=status,
                action=_ACTION_TO_CASE[action],
                scores=verdict.scores,
                labels=verdict.labels,
                reason=reason,
                image_phash=verdict.phash,
            )
            stored = False
            if remove:
                assert case.id is not None
                try:
                    written = await self.evidence.store(
                        session, case_id=case.id, guild_id=post.guild_id, images=images
                    )
                    stored = True
                except Exception:
                    # Never remove what could not be kept: the post stays up and the moderators decide.
                    log.exception("evidence for case %s could not be stored", case.case_number)
                    await self.evidence.delete_blobs(written)
                    written = []
                    problem = "the image could not be stored as evidence, so the post was left up"
                    self.problem_log.report(post.guild_id, f"case #{case.case_number}: {problem}")
                    case = await repo_cases.update_case(
                        session=session,
                        case=case,
                        status=CaseStatus.OPEN,
                        action=CaseAction.ALERTED,
                        reason=f"{reason}\n{problem}",
                    )
                if stored:
                    case = await repo_cases.update_case(
                        session=session,
                        case=case,
                        evidence_key=written[flagged_index or 0],
                        evidence_expires_at=utcnow() + self.evidence.retention,
                    )
            try:
                await session.commit()
            except BaseException:
                await self.evidence.delete_blobs(written)
                raise
        log.info(
            "case #%s in guild %s: %s (%s)",
            case.case_number,
            post.guild_id,
            case.action.value,
            decision.reason,
        )
        return case, stored

    async def record_enforcement(
        self,
        case_id: int,
        *,
        post_removed: bool | None = None,
        timed_out: bool = False,
        alert: tuple[int, int] | None = None,
        problems: Sequence[str] = (),
    ) -> ModerationCase:
        """What the Discord layer managed to do for a new case (``post_removed`` None: not attempted)."""
        orphaned: list[str] = []
        async with self._case_locks[case_id], self.database.session() as session:
            case = await case_or_error(session, case_id)
            changes: dict[str, Any] = {}
            lines = []
            if post_removed is False and case.action in (CaseAction.DELETED, CaseAction.HELD):
                # The post is still up: a moderator has to act, and the private copy is not needed.
                changes.update(status=CaseStatus.OPEN, action=CaseAction.ALERTED)
                orphaned = await self.evidence.detach(session, case)
                changes.update(evidence_key=None, evidence_expires_at=None)
            if timed_out:
                lines.append("author timed out automatically")
            lines.extend(f"problem: {problem}" for problem in problems)
            if lines:
                changes["reason"] = "\n".join([case.reason, *lines])
            if alert is not None:
                changes.update(alert_channel_id=alert[0], alert_message_id=alert[1])
            if changes:
                case = await repo_cases.update_case(session=session, case=case, **changes)
            await session.commit()
        await self.evidence.delete_blobs(orphaned)
        for problem in problems:
            self.problem_log.report(case.guild_id, f"case #{case.case_number}: {problem}")
        return case
